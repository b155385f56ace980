//! [`InferenceEngine`]: what callers see of a generation, and its mistral.rs implementation
//! over a local GGUF file, or over a model directory split across the processes of a ring
//! ([`RingMember`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};
use mistralrs::{
    GgufModelBuilder, ModelDType, RequestBuilder, Response, TextMessageRole, TextModelBuilder,
    TokenSource,
};
use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::model::ModelFile;
use crate::model_dir::ModelDir;
use crate::sampling::{SamplingDefaults, sampling_params};

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its answer.
    Stop,
    /// `max_tokens` was reached.
    Length,
}

impl FinishReason {
    /// The OpenAI name.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One event of a generation.
#[derive(Debug, PartialEq)]
pub enum EngineEvent {
    /// Text produced since the previous event.
    Delta(String),
    /// Generation ended.
    Finished {
        /// Why.
        reason: FinishReason,
        /// Tokens in the prompt.
        prompt_tokens: u64,
        /// Tokens generated.
        completion_tokens: u64,
    },
    /// Generation failed; the message never quotes the prompt.
    Failed(String),
}

/// Something that runs chat completions and streams their text.
pub trait InferenceEngine: Send + Sync + 'static {
    /// The model name requests must ask for.
    fn model_name(&self) -> &str;
    /// Starts a generation of at most `max_tokens` tokens; events arrive on the receiver. Dropping
    /// the receiver stops the generation.
    fn generate(
        &self,
        request: &ChatCompletionRequest,
        max_tokens: usize,
    ) -> Result<mpsc::Receiver<EngineEvent>>;
}

/// The prompt of [`MistralEngine::warm_up`]: a chat's first turn, of a typical length.
const WARM_UP_PROMPT: &str = "Say hello in one short sentence.";
/// Tokens [`MistralEngine::warm_up`] generates: enough to run the decoding path after the prompt's.
const WARM_UP_TOKENS: usize = 4;

/// mistral.rs running a GGUF model on the CPU.
pub struct MistralEngine {
    model: Arc<mistralrs::Model>,
    name: String,
    sampling: SamplingDefaults,
}

impl std::fmt::Debug for MistralEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MistralEngine")
            .field("name", &self.name)
            .field("sampling", &self.sampling)
            .finish_non_exhaustive()
    }
}

impl MistralEngine {
    /// Loads `model` (already checked by [`ModelFile::open`]) from its local directory: no hub,
    /// no token, no network. `max_sequences` bounds concurrent generations.
    pub async fn load(model: &ModelFile, max_sequences: usize) -> Result<Self> {
        let (dir, file) = model.dir_and_file();
        let started = Instant::now();
        let loaded = GgufModelBuilder::new(dir, vec![file])
            .with_force_cpu()
            .with_token_source(TokenSource::None)
            .with_max_num_seqs(max_sequences.max(1))
            .with_prefix_cache_n(None)
            .build()
            .await
            .map_err(|e| EngineError::Engine(format!("loading {}: {e}", model.name)))?;
        tracing::info!(
            model = %model.name,
            load_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        Ok(MistralEngine {
            model: Arc::new(loaded),
            name: model.name.clone(),
            sampling: SamplingDefaults::default(),
        })
    }

    /// Loads the model directory `model` (already checked by [`ModelDir::open`]) from its local
    /// path, as F32 on the CPU. With `ring`, this process is rank 0 of a ring of processes that
    /// split the model (mistral.rs's `ring` backend; the other ranks run [`serve_ring_follower`])
    /// and serves one sequence at a time: the ranks replay the leader's requests in order, and
    /// sequences batched differently on different ranks would not add up.
    pub async fn load_dir(
        model: &ModelDir,
        max_sequences: usize,
        ring: Option<&RingMember>,
    ) -> Result<Self> {
        let max_sequences = match ring {
            Some(member) => {
                if member.rank != 0 {
                    return Err(EngineError::Engine(
                        "only rank 0 of a ring serves requests".into(),
                    ));
                }
                member.install()?;
                1
            }
            None => max_sequences.max(1),
        };
        let started = Instant::now();
        let loaded = dir_builder(model, max_sequences)
            .build()
            .await
            .map_err(|e| EngineError::Engine(format!("loading {}: {e}", model.name)))?;
        tracing::info!(
            model = %model.name,
            load_ms = started.elapsed().as_millis() as u64,
            ring = ring.map_or(1, |r| r.world_size),
            "model loaded"
        );
        Ok(MistralEngine {
            model: Arc::new(loaded),
            name: model.name.clone(),
            sampling: SamplingDefaults::default(),
        })
    }

    /// The same engine with other sampling for what requests leave out.
    pub fn with_sampling(mut self, sampling: SamplingDefaults) -> Self {
        self.sampling = sampling;
        self
    }

    /// The mistral.rs request for `request`: its messages and [`sampling_params`].
    pub fn build_request(
        request: &ChatCompletionRequest,
        max_tokens: usize,
        defaults: &SamplingDefaults,
    ) -> RequestBuilder {
        let mut builder = RequestBuilder::new();
        for message in &request.messages {
            let role = match message.role.as_str() {
                "system" => TextMessageRole::System,
                "assistant" => TextMessageRole::Assistant,
                _ => TextMessageRole::User,
            };
            builder = builder.add_message(role, &message.content);
        }
        builder.set_sampling(sampling_params(request, max_tokens, defaults))
    }

    /// Runs one short greedy generation of a fixed prompt and discards it, so that the first
    /// request does not pay for what only a first generation does: faulting in every page of
    /// the weights, starting the thread pool, the first buffers of each size. Nothing of a
    /// user's is in it. An engine that cannot answer this fails here, before a node offers it.
    pub async fn warm_up(&self) -> Result<Duration> {
        let request = ChatCompletionRequest {
            model: self.name.clone(),
            messages: vec![ChatMessage {
                role: "user".into(),
                content: WARM_UP_PROMPT.into(),
            }],
            temperature: Some(0.0),
            ..ChatCompletionRequest::default()
        };
        let started = Instant::now();
        let mut events = self.generate(&request, WARM_UP_TOKENS)?;
        while let Some(event) = events.recv().await {
            match event {
                EngineEvent::Delta(_) => {}
                EngineEvent::Finished { .. } => {
                    let took = started.elapsed();
                    tracing::info!(warm_up_ms = took.as_millis() as u64, "engine warmed up");
                    return Ok(took);
                }
                EngineEvent::Failed(message) => {
                    return Err(EngineError::Engine(format!("warm-up failed: {message}")));
                }
            }
        }
        Err(EngineError::Engine(
            "warm-up: the engine stopped without finishing".into(),
        ))
    }

    /// The loaded mistral.rs model (benchmarks call it directly as their baseline).
    pub fn inner(&self) -> &Arc<mistralrs::Model> {
        &self.model
    }
}

impl InferenceEngine for MistralEngine {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn generate(
        &self,
        request: &ChatCompletionRequest,
        max_tokens: usize,
    ) -> Result<mpsc::Receiver<EngineEvent>> {
        let builder = Self::build_request(request, max_tokens, &self.sampling);
        let model = Arc::clone(&self.model);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut stream = match model.stream_chat_request(builder).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx
                        .send(EngineEvent::Failed(engine_error(&e.to_string())))
                        .await;
                    return;
                }
            };
            // The last chunk carries the usage; its choice (with the finish reason) is missing
            // when the final token decodes to no text, so the usage alone also ends a generation.
            let finished = |reason: Option<&str>, usage: Option<&mistralrs::Usage>| {
                let completion = usage.map_or(0, |u| u.completion_tokens as u64);
                EngineEvent::Finished {
                    reason: match reason {
                        Some("length") => FinishReason::Length,
                        Some(_) => FinishReason::Stop,
                        None if completion >= max_tokens as u64 => FinishReason::Length,
                        None => FinishReason::Stop,
                    },
                    prompt_tokens: usage.map_or(0, |u| u.prompt_tokens as u64),
                    completion_tokens: completion,
                }
            };
            let mut deltas = 0u64;
            while let Some(response) = stream.next().await {
                let event = match response {
                    Response::Chunk(chunk) => {
                        let choice = chunk.choices.first();
                        let text = choice
                            .and_then(|c| c.delta.content.clone())
                            .unwrap_or_default();
                        deltas += 1;
                        if !text.is_empty() && tx.send(EngineEvent::Delta(text)).await.is_err() {
                            return;
                        }
                        let reason = choice.and_then(|c| c.finish_reason.as_deref());
                        if reason.is_none() && chunk.usage.is_none() {
                            continue;
                        }
                        finished(reason, chunk.usage.as_ref())
                    }
                    Response::Done(done) => finished(None, Some(&done.usage)),
                    Response::ModelError(message, _) => EngineEvent::Failed(engine_error(&message)),
                    Response::ValidationError(e) | Response::InternalError(e) => {
                        EngineEvent::Failed(engine_error(&e.to_string()))
                    }
                    _ => EngineEvent::Failed("unexpected engine response".into()),
                };
                let _ = tx.send(event).await;
                return;
            }
            // mistral.rs 0.8 sends nothing more when the last token decodes to no text (a partial
            // UTF-8 sequence, or a special token): the sequence has ended all the same. The counts
            // are then ours: one token per chunk received, the prompt's unknown.
            let _ = tx
                .send(EngineEvent::Finished {
                    reason: if deltas + 1 >= max_tokens as u64 {
                        FinishReason::Length
                    } else {
                        FinishReason::Stop
                    },
                    prompt_tokens: 0,
                    completion_tokens: deltas,
                })
                .await;
        });
        Ok(rx)
    }
}

/// This process's place in a ring of processes that split one model (mistral.rs's `ring`
/// backend, tensor parallel): the engine only connects, to ports on 127.0.0.1 where whoever gives
/// them (an ensemble's attested links) listens and carries each stream between the members. One
/// per process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingMember {
    /// This process's rank; rank 0 serves requests and replicates them to the others.
    pub rank: usize,
    /// Processes in the ring: a power of two, at least 2.
    pub world_size: usize,
    /// The port this rank's engine connects to for the stream from its left neighbour.
    pub left_port: u16,
    /// The port this rank's engine connects to for the stream to its right neighbour.
    pub right_port: u16,
    /// Rank 0: the port its engine connects to, once per other rank in rank order, to replicate
    /// each request. Other ranks: the port their engines connect to for the next request.
    pub master_port: u16,
}

impl RingMember {
    /// Writes mistral.rs's ring config for this member (a private file that lives as long as the
    /// process: mistral.rs reads it again for each request) and makes it this process's.
    fn install(&self) -> Result<()> {
        if self.world_size < 2 || !self.world_size.is_power_of_two() || self.rank >= self.world_size
        {
            return Err(EngineError::Engine(format!(
                "a ring of {} with rank {} (a power of two of at least 2, and a rank below it)",
                self.world_size, self.rank
            )));
        }
        let config = serde_json::json!({
            "master_ip": "127.0.0.1",
            "master_port": self.master_port,
            "master_connects": true,
            "port": 0,
            "left_port": self.left_port,
            "right_ip": "127.0.0.1",
            "right_port": self.right_port,
            "rank": self.rank,
            "world_size": self.world_size,
        });
        let path = std::env::temp_dir().join(format!(
            "arcane-aip-ring-{}-{}.json",
            std::process::id(),
            self.rank
        ));
        let _ = std::fs::remove_file(&path);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let io = |e: std::io::Error| EngineError::Engine(format!("{}: {e}", path.display()));
        let mut file = options.open(&path).map_err(io)?;
        std::io::Write::write_all(&mut file, config.to_string().as_bytes()).map_err(io)?;
        mistralrs_quant::distributed::set_ring_config_path(path);
        Ok(())
    }
}

/// Runs this process as rank `member.rank` (not 0) of a ring serving `model`: loads its part of
/// the model and replays what rank 0 replicates, until the process ends. Blocks the calling
/// thread for good (mistral.rs's follower never returns); returns only an error of the load.
pub fn serve_ring_follower(model: &ModelDir, member: &RingMember) -> Result<()> {
    if member.rank == 0 {
        return Err(EngineError::Engine(
            "rank 0 of a ring serves requests; load it with MistralEngine::load_dir".into(),
        ));
    }
    member.install()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EngineError::Engine(format!("a runtime for the follower: {e}")))?;
    runtime
        .block_on(dir_builder(model, 1).build())
        .map_err(|e| EngineError::Engine(format!("loading {}: {e}", model.name)))?;
    Err(EngineError::Engine(
        "the ring follower's engine returned".into(),
    ))
}

fn dir_builder(model: &ModelDir, max_sequences: usize) -> TextModelBuilder {
    TextModelBuilder::new(model.path.display().to_string())
        .with_force_cpu()
        .with_dtype(ModelDType::F32)
        .with_token_source(TokenSource::None)
        .with_max_num_seqs(max_sequences)
        .with_prefix_cache_n(None)
}

/// An engine error message fit for the client (inside the sealed stream) — bounded in length.
/// It is never logged: engine messages may quote the input.
fn engine_error(message: &str) -> String {
    let mut m: String = message.chars().take(300).collect();
    if m.len() < message.len() {
        m.push('…');
    }
    m
}
