//! The log server's one error type, and how each variant maps to an HTTP answer.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

/// Everything that can go wrong in the log server.
#[derive(Debug, Error)]
pub enum LogError {
    /// A request that is not what the API takes (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A submitted entry over the size an entry bundle can carry (413).
    #[error("entry is {size} bytes, the limit is {limit}")]
    EntryTooLarge {
        /// The entry's size.
        size: usize,
        /// The largest accepted.
        limit: usize,
    },
    /// A request body over the limit (413).
    #[error("request body over {limit} bytes")]
    BodyTooLarge {
        /// The largest accepted body.
        limit: usize,
    },
    /// A submission by a key the log's publisher policy does not list (403).
    #[error("publisher is not in this log's policy")]
    UnknownPublisher,
    /// A submission whose signature does not verify under its publisher key (403).
    #[error("submission signature does not verify")]
    BadSignature,
    /// An entry of a kind its publisher may not publish (403).
    #[error("this publisher may not publish {0}")]
    KindNotAllowed(String),
    /// A typed entry that breaks its kind's rules or has expired (400).
    #[error("invalid entry: {0}")]
    InvalidEntry(String),
    /// As a client of a log: the log refused the request.
    #[error("the log refused the request ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The log's message.
        message: String,
    },
    /// As a client of a log: no usable answer.
    #[error("the log is unreachable: {0}")]
    Unreachable(String),
    /// Nothing at that index, hash or path (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// A proof, signature or encoding that does not verify.
    #[error("verification failed: {0}")]
    Verifier(#[from] arcane_verifier::Error),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bad configuration or command line.
    #[error("configuration: {0}")]
    Config(String),
    /// Stored state that contradicts itself (the log refuses to serve or sign over it).
    #[error("stored log state is inconsistent: {0}")]
    Corrupt(String),
    /// As a client of a log: the client could not be built, or an answer was malformed.
    #[error("HTTP client: {0}")]
    Client(String),
    /// The server is stopping and takes no more writes (503).
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
