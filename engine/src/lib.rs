//! # arcane-engine
//!
//! Inference, in one place for the compute node and the client's on-device route: the model file
//! and the engine that runs it.
//!
//! - [`gguf`]: a strict reader of the GGUF metadata checked before the engine sees a file, and
//!   a writer of tiny llama-architecture models for tests and benchmarks;
//! - [`model`]: the model file a node or a client serves, checked and digested, never fetched;
//! - [`model_dir`]: a model directory in the Hugging Face layout, what an ensemble splits across
//!   processes (mistral.rs's GGUF models have no tensor parallelism), checked and digested too;
//! - [`requantize`]: a GGUF's tensors rewritten into types the engine multiplies fast on a CPU;
//! - [`sampling`]: a request's sampling fields over the node's defaults for its model;
//! - [`InferenceEngine`]: what a generation looks like to its callers (a stream of
//!   [`EngineEvent`]s), and [`MistralEngine`], mistral.rs running a GGUF model on the CPU, or a
//!   model directory, alone or split across a ring of processes ([`RingMember`]).
//!
//! Nothing here logs a prompt or an engine message (engine messages may quote the input).

pub mod error;
pub mod gguf;
mod mistral;
pub mod model;
pub mod model_dir;
pub mod requantize;
pub mod sampling;

pub use error::{EngineError, Result};
pub use mistral::{
    EngineEvent, FinishReason, InferenceEngine, MistralEngine, RingMember, serve_ring_follower,
};
pub use sampling::SamplingDefaults;
