//! Every failure the edge answers with, as `{code, message}` JSON and a status that says who
//! should act: the caller (4xx) or the operator (5xx).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: String,
    /// Explanation for people.
    pub message: String,
}

/// A request the edge cannot answer with what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body, a path segment or a query parameter is malformed.
    #[error("{message}")]
    BadRequest {
        /// Stable code, e.g. `invalid_body`.
        code: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No valid bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token whose roles do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there (or nothing the caller may see, which is said the same way).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The path exists but not with this method.
    #[error("this path does not take that method")]
    MethodNotAllowed,
    /// The command's `expected_version` did not match.
    #[error("{message}")]
    Conflict {
        /// Stable code from the processor.
        code: String,
        /// Its explanation.
        message: String,
    },
    /// The aggregate refused the command.
    #[error("{message}")]
    Rejected {
        /// Stable domain code, e.g. `order.unknown_sku`.
        code: String,
        /// Its explanation.
        message: String,
    },
    /// The `Idempotency-Key` is bound to another caller or another request.
    #[error("{0}")]
    KeyReused(String),
    /// The body is not JSON.
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// The body is larger than allowed.
    #[error("request body over {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A server the answer depends on is unreachable.
    #[error("{what} is unavailable: {reason}")]
    Unavailable {
        /// Stable code, e.g. `read_model_unavailable`.
        code: &'static str,
        /// Which dependency.
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The read model did not reach the version asked for in time.
    #[error(
        "the read model did not reach version {wanted} within {waited_ms} ms (it holds {held})"
    )]
    VersionNotReached {
        /// Version asked for.
        wanted: u64,
        /// Version held when giving up (0: none).
        held: u64,
        /// How long the request waited.
        waited_ms: u64,
    },
    /// A bug or an unexpected state; details are logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 404 for `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Rejected { .. } | ApiError::KeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::VersionNotReached { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code this error is answered with.
    pub fn code(&self) -> String {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Unavailable { code, .. } => {
                (*code).to_owned()
            }
            ApiError::Unauthorized(_) => "unauthorized".into(),
            ApiError::Forbidden(_) => "forbidden".into(),
            ApiError::NotFound { .. } => "not_found".into(),
            ApiError::MethodNotAllowed => "method_not_allowed".into(),
            ApiError::Conflict { code, .. } | ApiError::Rejected { code, .. } => code.clone(),
            ApiError::KeyReused(_) => "idempotency_key_reused".into(),
            ApiError::TooLarge { .. } => "body_too_large".into(),
            ApiError::UnsupportedMediaType => "unsupported_media_type".into(),
            ApiError::VersionNotReached { .. } => "version_not_reached".into(),
            ApiError::Internal(_) => "internal".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let body = ErrorBody {
            code: self.code(),
            message: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"streamcart\""),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
