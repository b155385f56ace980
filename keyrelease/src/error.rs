//! The key release service's one error type.

use thiserror::Error;

/// Everything that can go wrong in the key release service.
#[derive(Debug, Error)]
pub enum KeyReleaseError {
    /// A bad configuration or command line.
    #[error("configuration: {0}")]
    Config(String),
    /// The key database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored model key is not one (the database was changed by hand, or is corrupt).
    #[error("the stored key of model {model_sha256} is not a model key")]
    CorruptKey {
        /// The model it is stored for.
        model_sha256: String,
    },
    /// The stored challenge secret is not one.
    #[error("the stored challenge secret is not 32 bytes of hex")]
    CorruptSecret,
    /// The challenge was answered before: a key is released once per challenge.
    #[error("this challenge was answered before")]
    ChallengeUsed,
    /// No key is stored for the model a request names.
    #[error("no key is held for model {model_sha256}")]
    UnknownModel {
        /// The model.
        model_sha256: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What failed.
        why: String,
    },
    /// The model changed while it was being sealed (its digest differs between the two reads).
    #[error("{path} changed while it was being sealed")]
    ModelChanged {
        /// The model file.
        path: String,
    },
    /// A check or format of the verifier failed: sealing (an empty model), or a key request
    /// (malformed, or refused by the release decision).
    #[error("{0}")]
    Verifier(#[from] arcane_verifier::Error),
}

/// Result with [`KeyReleaseError`].
pub type Result<T> = std::result::Result<T, KeyReleaseError>;

impl From<arcane_db::DbError> for KeyReleaseError {
    fn from(e: arcane_db::DbError) -> Self {
        match e {
            arcane_db::DbError::Sqlx(e) => KeyReleaseError::Database(e),
            other => KeyReleaseError::Config(other.to_string()),
        }
    }
}
