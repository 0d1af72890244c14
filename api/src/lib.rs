//! The HTTP edge: the query API over the read models and the command gateway over Kafka.
//!
//! # Layout
//! - [`config`]: the `[api]` settings.
//! - [`auth`]: JWT verification (HS256 / RS256) and roles.
//! - [`reads`]: the read side, Redis first for products, with single-flight and negative
//!   caching ([`single_flight`]).
//! - [`gateway`]: request–reply over Kafka for commands; [`idempotency`]: what an
//!   `Idempotency-Key` is bound to.
//! - [`routes`]: the endpoints; [`extract`]: strict extractors; [`error`]: `{code, message}`.
//! - [`openapi`]: the document at `/openapi.json`; [`metrics`]: counters at `/metrics`.
//! - [`server`]: HTTP or HTTPS until shutdown.

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod idempotency;
pub mod ledger;
pub mod metrics;
pub mod openapi;
pub mod reads;
pub mod routes;
pub mod server;
pub mod single_flight;
pub mod state;

pub use config::{ApiConfig, JwtConfig};
pub use error::{ApiError, ErrorBody};
pub use state::AppState;
