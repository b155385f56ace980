//! The compute node's one error type.

use thiserror::Error;

/// Everything that can go wrong in the compute node.
#[derive(Debug, Error)]
pub enum ComputeError {
    /// The attestation provider (the NSM, or the simulated one) failed or refused.
    #[error("attestation provider: {0}")]
    Attestation(String),
    /// The simulated NSM's certificate chain could not be made.
    #[error("certificate generation: {0}")]
    Certificate(String),
    /// Something the node checked does not verify (its own document, a bundle from the log).
    #[error("verification: {0}")]
    Verifier(#[from] arcane_verifier::Error),
    /// The model file or the inference engine.
    #[error(transparent)]
    Engine(#[from] arcane_engine::EngineError),
    /// The log holds no valid release for this node's measurements and model.
    #[error("no usable release in the log: {0}")]
    NoRelease(String),
    /// The log could not be read, or answered something unusable.
    #[error("log: {0}")]
    Log(String),
    /// A bad configuration or command line.
    #[error("configuration: {0}")]
    Config(String),
    /// The node's server could not start or stopped.
    #[error("serving: {0}")]
    Serve(String),
    /// A sealed model could not be opened: its file, its chunks, or its digest.
    #[error("sealed model: {0}")]
    SealedModel(String),
    /// The key release service refused the node the model's key.
    #[error("the key release service refused the model key ({status}): {why}")]
    KeyRefused {
        /// The HTTP status.
        status: u16,
        /// What the service said.
        why: String,
    },
    /// An ensemble's link was refused or broke: a peer of another release, root or model, a
    /// handshake that failed, a member that did not come up in time.
    #[error("ensemble: {0}")]
    Ensemble(String),
    /// An input over its limit.
    #[error("input too large: {what} is {len} bytes, at most {max}")]
    TooLarge {
        /// What it was.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Result with [`ComputeError`].
pub type Result<T> = std::result::Result<T, ComputeError>;
