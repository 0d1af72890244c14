//! Serving the router over HTTP, or HTTPS (rustls) when a certificate is configured, until
//! shutdown; in-flight requests get a bounded grace period.

use std::time::Duration;

use axum_server::Handle;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio_util::sync::CancellationToken;

use crate::config::ApiConfig;
use crate::routes::router;
use crate::state::AppState;

/// How long in-flight requests may finish after shutdown is asked for.
const GRACE: Duration = Duration::from_secs(10);

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Only one of `tls_cert` and `tls_key` is set.
    #[error("TLS needs both api.tls_cert and api.tls_key")]
    HalfTls,
    /// The certificate or key cannot be loaded.
    #[error("loading the TLS certificate and key: {0}")]
    Tls(std::io::Error),
    /// Binding or serving failed.
    #[error("serving on {addr}: {source}")]
    Io {
        /// The listen address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Serves `state` on `config.listen` until `shutdown`.
pub async fn serve(
    state: AppState,
    config: &ApiConfig,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let app = router(state).into_make_service();
    let handle = Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stopper.graceful_shutdown(Some(GRACE));
    });
    let addr = config.listen;
    let io = |source| ServeError::Io { addr, source };
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            // Several crypto providers may be linked in; pick one for the whole process.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let tls = RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(ServeError::Tls)?;
            tracing::info!(%addr, "serving HTTPS");
            // Small responses must leave at once, not wait for Nagle's algorithm.
            let acceptor = RustlsAcceptor::new(tls).acceptor(NoDelayAcceptor::new());
            axum_server::bind(addr)
                .acceptor(acceptor)
                .handle(handle)
                .serve(app)
                .await
                .map_err(io)
        }
        (None, None) => {
            tracing::info!(%addr, "serving HTTP");
            axum_server::bind(addr)
                .acceptor(NoDelayAcceptor::new())
                .handle(handle)
                .serve(app)
                .await
                .map_err(io)
        }
        _ => Err(ServeError::HalfTls),
    }
}
