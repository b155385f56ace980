//! The compute node's one error type.

use thiserror::Error;

/// Everything that can go wrong in the compute node.
#[derive(Debug, Error)]
pub enum ComputeError {
    #[error("attestation provider: {0}")]
    Attestation(String),
    #[error("certificate generation: {0}")]
    Certificate(String),
    #[error("verification: {0}")]
    Verifier(#[from] arcane_verifier::Error),
    #[error(transparent)]
    Engine(#[from] arcane_engine::EngineError),
    #[error("no usable release in the log: {0}")]
    NoRelease(String),
    #[error("log: {0}")]
    Log(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("serving: {0}")]
    Serve(String),
    #[error("input too large: {what} is {len} bytes, at most {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

/// Result with [`ComputeError`].
pub type Result<T> = std::result::Result<T, ComputeError>;
