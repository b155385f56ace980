//! On-device inference: mistral.rs in this process, for requests that fit the local model. Nothing
//! leaves the device, so nothing needs verifying; the SDK decides per request (or the caller
//! forces a route).

use std::sync::Arc;

use arcane_engine::model::ModelFile;
use arcane_engine::{EngineEvent, InferenceEngine, MistralEngine};
use arcane_verifier::inner::{ChatCompletionRequest, Usage};
use tokio::sync::mpsc;

use crate::answer::{ChatEvent, ChatStream, Route, Summary};
use crate::error::{ClientError, Result};

/// Default `max_tokens` on the device.
pub const DEFAULT_MAX_TOKENS: u32 = 256;

/// A local model and the largest request it takes.
#[derive(Clone)]
pub struct LocalModel {
    engine: Arc<dyn InferenceEngine>,
    /// Largest prompt (in estimated tokens) plus `max_tokens` routed here by [`Route::Auto`].
    pub max_context: usize,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("model", &self.engine.model_name())
            .field("max_context", &self.max_context)
            .finish()
    }
}

/// A conservative token estimate: about four bytes per token for English text, rounded up.
pub fn estimated_tokens(request: &ChatCompletionRequest) -> usize {
    request
        .messages
        .iter()
        .map(|m| m.content.len().div_ceil(3) + 4)
        .sum()
}

impl LocalModel {
    /// Loads a GGUF file (checked like a node checks its model) with mistral.rs.
    pub async fn load(model: &ModelFile, max_context: usize) -> Result<LocalModel> {
        let engine = MistralEngine::load(model, 1)
            .await
            .map_err(|e| ClientError::Local(e.to_string()))?;
        Ok(LocalModel {
            engine: Arc::new(engine),
            max_context,
        })
    }

    /// Wraps any engine.
    pub fn from_engine(engine: Arc<dyn InferenceEngine>, max_context: usize) -> LocalModel {
        LocalModel {
            engine,
            max_context,
        }
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        self.engine.model_name()
    }

    /// Whether [`Route::Auto`] sends `request` here.
    pub fn fits(&self, request: &ChatCompletionRequest) -> bool {
        let max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) as usize;
        estimated_tokens(request) + max_tokens <= self.max_context
    }

    /// Runs `request` on the device.
    pub fn chat(&self, request: &ChatCompletionRequest) -> Result<ChatStream> {
        let max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) as usize;
        let mut events = self
            .engine
            .generate(request, max_tokens)
            .map_err(|e| ClientError::Local(e.to_string()))?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let out = match event {
                    EngineEvent::Delta(text) => Ok(ChatEvent::Delta(text)),
                    EngineEvent::Finished {
                        reason,
                        prompt_tokens,
                        completion_tokens,
                    } => Ok(ChatEvent::Done(Box::new(Summary {
                        route: Route::Local,
                        usage: Some(Usage {
                            prompt_tokens,
                            completion_tokens,
                            total_tokens: prompt_tokens + completion_tokens,
                        }),
                        finish_reason: Some(reason.as_str().to_owned()),
                        receipt: None,
                    }))),
                    EngineEvent::Failed(message) => Err(ClientError::Local(message)),
                };
                let end = !matches!(out, Ok(ChatEvent::Delta(_)));
                if tx.send(out).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(ChatStream::from_channel(rx))
    }
}
