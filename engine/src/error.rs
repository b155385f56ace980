//! The engine's one error type.

use thiserror::Error;

/// What can go wrong with a model file or a generation.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The model file cannot be read, or is not one the engine may load.
    #[error("model file: {0}")]
    Model(String),
    /// mistral.rs refused or failed to load the model.
    #[error("inference engine: {0}")]
    Engine(String),
}

/// Result with [`EngineError`].
pub type Result<T> = std::result::Result<T, EngineError>;
