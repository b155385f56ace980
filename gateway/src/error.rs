//! The gateway's one error type.

use thiserror::Error;

/// Everything that can go wrong in the gateway, relay and token services.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// A bad configuration or command line.
    #[error("configuration: {0}")]
    Config(String),
    /// A key file that cannot be read, written or parsed.
    #[error("key file {path}: {why}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// The log could not be read, or answered something unusable.
    #[error(transparent)]
    LogClient(#[from] arcane_log_client::LogClientError),
    /// A key the gateway would serve has no valid entry in the log.
    #[error("no proof in the log: {0}")]
    Unproven(String),
    /// An OHTTP key or message the gateway cannot use.
    #[error("OHTTP: {0}")]
    Ohttp(String),
    /// The token database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The group commit a spent token was part of failed (or the store closed): the token is
    /// not recorded, and neither is any other in that commit.
    #[error("database: the spent token was not recorded: {0}")]
    SpendNotRecorded(String),
    /// Something checked does not verify (a bundle, a node's attestation, a token).
    #[error("verification: {0}")]
    Verifier(#[from] arcane_verifier::Error),
    /// The server could not start or stopped.
    #[error("serving: {0}")]
    Serve(String),
}

/// Result with [`GatewayError`].
pub type Result<T> = std::result::Result<T, GatewayError>;
