//! The gateway's one error type.

use thiserror::Error;

/// Everything that can go wrong in the gateway, relay and token services.
#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("key file {path}: {why}")]
    KeyFile { path: String, why: String },
    #[error(transparent)]
    LogClient(#[from] arcane_log_client::LogClientError),
    #[error("no proof in the log: {0}")]
    Unproven(String),
    #[error("OHTTP: {0}")]
    Ohttp(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("verification: {0}")]
    Verifier(#[from] arcane_verifier::Error),
    #[error("serving: {0}")]
    Serve(String),
}

/// Result with [`GatewayError`].
pub type Result<T> = std::result::Result<T, GatewayError>;
