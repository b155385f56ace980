//! The log server's one error type, and how each variant maps to an HTTP answer.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

/// Everything that can go wrong in the log server.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("entry is {size} bytes, the limit is {limit}")]
    EntryTooLarge { size: usize, limit: usize },
    #[error("request body over {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("publisher is not in this log's policy")]
    UnknownPublisher,
    #[error("submission signature does not verify")]
    BadSignature,
    #[error("this publisher may not publish {0}")]
    KindNotAllowed(String),
    #[error("invalid entry: {0}")]
    InvalidEntry(String),
    #[error("the log refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the log is unreachable: {0}")]
    Unreachable(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("verification failed: {0}")]
    Verifier(#[from] arcane_verifier::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("stored log state is inconsistent: {0}")]
    Corrupt(String),
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("server is shutting down")]
    ShuttingDown,
    /// Trillian answered with something unusable, or refused, or cannot be reached.
    #[error("Trillian: {0}")]
    Trillian(String),
    /// Trillian showed a root that does not extend the last one arcane-log signed: never
    /// signed over, reported.
    #[error("Trillian showed an inconsistent tree: {0}")]
    TrillianInconsistent(String),
}

impl LogError {
    /// An I/O error on a named file.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            LogError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            LogError::Verifier(_) => (StatusCode::BAD_REQUEST, "invalid"),
            LogError::EntryTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "entry_too_large"),
            LogError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            LogError::UnknownPublisher => (StatusCode::FORBIDDEN, "unknown_publisher"),
            LogError::BadSignature => (StatusCode::FORBIDDEN, "bad_signature"),
            LogError::KindNotAllowed(_) => (StatusCode::FORBIDDEN, "kind_not_allowed"),
            LogError::InvalidEntry(_) => (StatusCode::BAD_REQUEST, "invalid_entry"),
            LogError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            LogError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for LogError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        (
            status,
            Json(serde_json::json!({ "error": message, "code": code })),
        )
            .into_response()
    }
}

/// Result with [`LogError`].
pub type Result<T> = std::result::Result<T, LogError>;

impl From<arcane_log_client::LogClientError> for LogError {
    fn from(e: arcane_log_client::LogClientError) -> Self {
        use arcane_log_client::LogClientError as E;
        match e {
            E::Refused {
                status, message, ..
            } => LogError::Refused { status, message },
            E::Unreachable { .. } | E::TooLarge { .. } => LogError::Unreachable(e.to_string()),
            E::Config(_) | E::Malformed { .. } => LogError::Client(e.to_string()),
        }
    }
}
