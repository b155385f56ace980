//! The node: its REK, its attestation bundle (document + proven release), and the handling of
//! one sealed request from the wrapped DEK to the last sealed chunk.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arcane_verifier::attested::{NodeBundle, registration_nonce};
use arcane_verifier::envelope::NodeRequest;
use arcane_verifier::inner::{
    ChatCompletionChunk, ChunkChoice, ChunkContent, Delta, ErrorBody, Usage, decode_inner_request,
};
use arcane_verifier::nitro::{binding_user_data, parse_document};
use arcane_verifier::sealed::{
    self, KEY_LEN, OpenedRequest, RekPublicKey, RekSecret, ResponseSealer,
};
use arcane_verifier::signed_answer::{AnswerSigningKey, AnswerStatement, SignedAnswer};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use zeroize::{Zeroize, Zeroizing};

use crate::attestation::AttestationProvider;
use crate::error::{ComputeError, Result};
use crate::release::{LogSource, LogTrust, OwnMeasurements, ProvenEntry};
use crate::tokens::TokenVerifier;
use arcane_engine::model::ModelFile;
use arcane_engine::model_dir::ModelDir;
use arcane_engine::{EngineEvent, InferenceEngine, SamplingDefaults};
use arcane_verifier::nitro::ensemble_binding_user_data;

/// The model a node serves: what requests name and the release's digest, and the GGUF file when
/// it is one (an ensemble serves a model directory).
#[derive(Clone, Debug)]
pub struct ServedModel {
    /// The name requests use.
    pub name: String,
    /// The digest the release names (a GGUF file's SHA-256, or a directory's digest).
    pub sha256: [u8; 32],
    /// The GGUF file, when the model is one.
    pub file: Option<ModelFile>,
}

impl From<ModelFile> for ServedModel {
    fn from(file: ModelFile) -> Self {
        ServedModel {
            name: file.name.clone(),
            sha256: file.sha256,
            file: Some(file),
        }
    }
}

impl From<&ModelDir> for ServedModel {
    fn from(dir: &ModelDir) -> Self {
        ServedModel {
            name: dir.name.clone(),
            sha256: dir.sha256,
            file: None,
        }
    }
}

/// Tunables of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Requests served at once; more are answered "busy".
    pub max_concurrent: usize,
    /// Upper bound on `max_tokens` (and the default when a request gives none).
    pub max_tokens: usize,
    /// Pad each chunk's plaintext to a multiple of this many bytes (0: no padding).
    pub pad_to: usize,
    /// How far a request's issue time may lie from the node's clock.
    pub request_window: Duration,
    /// How often the release proof and the document are renewed.
    pub refresh_every: Duration,
    /// Most request keys remembered for replay detection; when full of unexpired keys, new
    /// requests are refused as busy rather than any key forgotten.
    pub replay_capacity: usize,
    /// Sampling for what requests leave out.
    pub sampling: SamplingDefaults,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            max_concurrent: 2,
            max_tokens: 512,
            pad_to: 64,
            request_window: Duration::from_secs(120),
            refresh_every: Duration::from_secs(60),
            replay_capacity: 1 << 18,
            sampling: SamplingDefaults::default(),
        }
    }
}

/// Why a request was refused before any sealed answer began. The gateway sees these; none of
/// them depends on the request's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken: route elsewhere.
    Busy,
    /// The node has no valid release proof or document right now.
    NotServing(String),
    /// The wrapped DEK names another REK (misrouted).
    UnknownRek,
    /// The body is not `wrapped DEK ‖ ciphertext`, or the wrap does not open.
    BadRequest(&'static str),
    /// The request was seen before.
    Replayed,
    /// The request's issue time is outside the window.
    Stale,
}

/// Current time, seconds since the epoch.
pub fn now_seconds() -> u64 {
    now_ms() / 1000
}

/// Current time, milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The node's own PCRs, read from a document its provider makes for no one.
pub fn own_measurements(provider: &dyn AttestationProvider) -> Result<OwnMeasurements> {
    let own = provider.attest(None, None, None)?;
    let (_, document) = parse_document(&own)?;
    let pcr = |i: u8| {
        document
            .pcr(i)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| ComputeError::Attestation(format!("own document lacks PCR{i}")))
    };
    Ok(OwnMeasurements {
        pcr0: pcr(0)?,
        pcr1: pcr(1)?,
        pcr2: pcr(2)?,
        pcr8: document.pcr(8).map(<[u8]>::to_vec),
    })
}

/// Encapsulated keys seen within the request window.
#[derive(Debug, Default)]
struct ReplayGuard {
    seen: HashMap<[u8; KEY_LEN], u64>,
    order: VecDeque<([u8; KEY_LEN], u64)>,
}

impl ReplayGuard {
    /// Admits a request key issued at `issued_at`: refused as stale outside `now ± window`, as a
    /// replay when seen before, as busy when the guard is full of keys that could still be
    /// replayed. A key is remembered for as long as a request carrying it could be accepted: up
    /// to and including `max(issued_at, now) + window`.
    fn admit(
        &mut self,
        enc: [u8; KEY_LEN],
        issued_at: u64,
        now: u64,
        window: u64,
        capacity: usize,
    ) -> std::result::Result<(), Refusal> {
        if issued_at.abs_diff(now) > window {
            return Err(Refusal::Stale);
        }
        // Forget only keys whose last acceptable second has passed.
        while let Some((old, last)) = self.order.front().copied() {
            if last >= now {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if self.seen.contains_key(&enc) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= capacity {
            return Err(Refusal::Busy);
        }
        let last = issued_at.max(now).saturating_add(window);
        self.seen.insert(enc, last);
        self.order.push_back((enc, last));
        Ok(())
    }
}

/// The node's attested state while it serves.
#[derive(Clone, Debug)]
pub struct Attested {
    /// The bundle clients and the gateway verify.
    pub bundle: NodeBundle,
    /// The release that vouches for the node.
    pub release: ProvenEntry,
}

/// A compute node.
pub struct Node {
    config: NodeConfig,
    rek: RekSecret,
    answer_key: AnswerSigningKey,
    provider: Arc<dyn AttestationProvider>,
    engine: Arc<dyn InferenceEngine>,
    tokens: Arc<dyn TokenVerifier>,
    model: ServedModel,
    members: u8,
    /// Set once, for good, when the node must never serve again (its ensemble failed).
    halted: std::sync::OnceLock<String>,
    halted_notify: tokio::sync::Notify,
    log: LogSource,
    trust: LogTrust,
    measurements: OwnMeasurements,
    attested: RwLock<std::result::Result<Attested, String>>,
    replay: Mutex<ReplayGuard>,
    slots: Arc<Semaphore>,
    /// Requests refused because every slot was taken.
    busy_refusals: std::sync::atomic::AtomicU64,
    /// The most requests served at once so far.
    peak_in_flight: std::sync::atomic::AtomicUsize,
    /// The URLs this node registered under (the only ones it answers registration challenges
    /// for).
    advertised: RwLock<Vec<String>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("model", &self.model.name)
            .field("rek", &self.rek)
            .finish_non_exhaustive()
    }
}

/// The parts a node is made of.
pub struct NodeParts {
    /// Tunables.
    pub config: NodeConfig,
    /// The NSM (real or simulated).
    pub provider: Arc<dyn AttestationProvider>,
    /// The key the node signs its answers with (bound in every document it attests).
    pub answer_key: AnswerSigningKey,
    /// The inference engine, with the model loaded.
    pub engine: Arc<dyn InferenceEngine>,
    /// The token check.
    pub tokens: Arc<dyn TokenVerifier>,
    /// The model the engine loaded (checked and digested).
    pub model: ServedModel,
    /// How many nodes compute its answers: 1 alone, the ensemble's size for an ensemble's leader
    /// (attested in its `user_data`, `spec/compute.md` §7.4).
    pub members: u8,
    /// Where the log is.
    pub log: LogSource,
    /// What the node trusts of the log.
    pub trust: LogTrust,
}

impl Node {
    /// Boots a node: reads its own PCRs from its provider, generates the REK, finds its release
    /// in the log (refusing to start without one, naming what is missing), and attests the REK
    /// bound to the model digest and the release's leaf hash.
    pub async fn boot(parts: NodeParts) -> Result<Arc<Node>> {
        let measurements = own_measurements(parts.provider.as_ref())?;
        let release = parts
            .log
            .find_release(
                &parts.trust,
                &measurements,
                &parts.model.sha256,
                now_seconds(),
            )
            .await?;
        let node = Arc::new(Node {
            slots: Arc::new(Semaphore::new(parts.config.max_concurrent.max(1))),
            busy_refusals: Default::default(),
            peak_in_flight: Default::default(),
            config: parts.config,
            rek: RekSecret::generate(),
            answer_key: parts.answer_key,
            provider: parts.provider,
            engine: parts.engine,
            tokens: parts.tokens,
            model: parts.model,
            members: parts.members,
            halted: std::sync::OnceLock::new(),
            halted_notify: tokio::sync::Notify::new(),
            log: parts.log,
            trust: parts.trust,
            measurements,
            attested: RwLock::new(Err("booting".into())),
            replay: Mutex::new(ReplayGuard::default()),
            advertised: RwLock::new(Vec::new()),
        });
        let document = node.attest_release(&release, None)?;
        *node.attested.write().expect("attested lock") = Ok(Attested {
            bundle: NodeBundle {
                document,
                release: release.bundle.clone(),
            },
            release,
        });
        tracing::info!(
            model = %node.model.name,
            rek = %hex::encode(&node.rek.public().id()[..8]),
            "node attested and serving"
        );
        Ok(node)
    }

    fn attest_release(&self, release: &ProvenEntry, nonce: Option<&[u8]>) -> Result<Vec<u8>> {
        let (model, leaf, answer_key) = (
            &self.model.sha256,
            &release.verified.leaf_hash.0,
            &self.answer_key.public(),
        );
        let user_data = match self.members {
            1 => binding_user_data(model, leaf, answer_key),
            members => ensemble_binding_user_data(model, leaf, answer_key, members),
        };
        self.provider
            .attest(Some(&self.rek.public().0), Some(&user_data), nonce)
    }

    /// The REK public key.
    pub fn rek(&self) -> RekPublicKey {
        self.rek.public()
    }

    /// The model the node serves.
    pub fn model(&self) -> &ServedModel {
        &self.model
    }

    /// Stops serving for good: every request is refused with `why`, refreshes do not revive the
    /// node, and [`Node::halted`] resolves (its server stops listening, so its gateways drop it).
    pub fn halt(&self, why: String) {
        tracing::warn!(reason = %why, "node halted; not serving");
        if self.halted.set(why.clone()).is_ok() {
            *self.attested.write().expect("attested lock") = Err(why);
            self.halted_notify.notify_waiters();
        }
    }

    /// Resolves once the node is halted.
    pub async fn halted(&self) {
        loop {
            let notified = self.halted_notify.notified();
            if self.halted.get().is_some() {
                return;
            }
            notified.await;
        }
    }

    /// The node's measurements.
    pub fn measurements(&self) -> &OwnMeasurements {
        &self.measurements
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.config.max_concurrent.max(1) - self.slots.available_permits()
    }

    /// Requests refused so far because every slot was taken.
    pub fn busy_refusals(&self) -> u64 {
        self.busy_refusals
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The most requests served at once so far.
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Configured capacity.
    pub fn capacity(&self) -> usize {
        self.config.max_concurrent.max(1)
    }

    /// The current attested state, or why the node is not serving.
    pub fn attested(&self) -> std::result::Result<Attested, String> {
        self.attested.read().expect("attested lock").clone()
    }

    /// A fresh document for a challenger's `nonce`, with the current release proof.
    pub fn attest_with_nonce(&self, nonce: &[u8]) -> Result<NodeBundle> {
        let attested = self.attested().map_err(ComputeError::Serve)?;
        let document = self.attest_release(&attested.release, Some(nonce))?;
        Ok(NodeBundle {
            document,
            release: attested.release.bundle,
        })
    }

    /// Records that this node registers under `url` (before it registers): only for such URLs
    /// does it answer a registration challenge.
    pub fn advertise(&self, url: &str) {
        let url = url.trim_end_matches('/').to_owned();
        let mut advertised = self.advertised.write().expect("advertised lock");
        if !advertised.contains(&url) {
            advertised.push(url);
        }
    }

    /// The answer to a gateway's registration challenge for `url`: a fresh document whose nonce
    /// binds the challenge to `url` ([`registration_nonce`]). Refused for a URL this node did not
    /// register under — a relayed challenge for someone else's URL fails here.
    pub fn answer_registration(&self, challenge: &[u8], url: &str) -> Result<NodeBundle> {
        let url = url.trim_end_matches('/');
        if !self
            .advertised
            .read()
            .expect("advertised lock")
            .iter()
            .any(|u| u == url)
        {
            return Err(ComputeError::Serve(format!(
                "this node did not register under {url:?}"
            )));
        }
        self.attest_with_nonce(&registration_nonce(challenge, url))
    }

    /// Renews the release proof (newest checkpoint) and the document. On failure the node stops
    /// serving until a later refresh succeeds: it never serves without a valid proof.
    pub async fn refresh(&self) -> Result<()> {
        if let Some(why) = self.halted.get() {
            return Err(ComputeError::Serve(why.clone()));
        }
        let result = self.try_refresh().await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "release refresh failed; not serving");
            *self.attested.write().expect("attested lock") = Err(e.to_string());
        }
        result
    }

    async fn try_refresh(&self) -> Result<()> {
        let previous = self.attested();
        let now = now_seconds();
        let release = match &previous {
            // The release is about to expire: move to the newest one for this node, if the log
            // has one valid longer (proven in a tree no smaller than the one before).
            Ok(a) if a.release.verified.entry.entry.retiring(now) => {
                let current = &a.release.verified;
                match self
                    .log
                    .find_release(&self.trust, &self.measurements, &self.model.sha256, now)
                    .await
                {
                    Ok(next)
                        if next.verified.entry.entry.not_after > current.entry.entry.not_after
                            && next.verified.checkpoint.checkpoint.size
                                >= current.checkpoint.checkpoint.size =>
                    {
                        tracing::info!(
                            index = next.verified.index,
                            "moving to a newer release entry before the current one expires"
                        );
                        next
                    }
                    _ => {
                        self.log
                            .refresh_release(
                                &self.trust,
                                &current.leaf_hash,
                                current.checkpoint.checkpoint.size,
                                now,
                            )
                            .await?
                    }
                }
            }
            Ok(a) => {
                self.log
                    .refresh_release(
                        &self.trust,
                        &a.release.verified.leaf_hash,
                        a.release.verified.checkpoint.checkpoint.size,
                        now,
                    )
                    .await?
            }
            Err(_) => {
                self.log
                    .find_release(&self.trust, &self.measurements, &self.model.sha256, now)
                    .await?
            }
        };
        // A different release (after a gap) needs a new binding; the same one keeps it.
        let document = self.attest_release(&release, None)?;
        let mut attested = self.attested.write().expect("attested lock");
        // Halted meanwhile: stays halted.
        if let Some(why) = self.halted.get() {
            return Err(ComputeError::Serve(why.clone()));
        }
        *attested = Ok(Attested {
            bundle: NodeBundle {
                document,
                release: release.bundle.clone(),
            },
            release,
        });
        Ok(())
    }

    /// When the current release entry stops being valid (seconds), if serving.
    pub fn release_not_after(&self) -> Option<u64> {
        self.attested()
            .ok()
            .map(|a| a.release.verified.entry.entry.not_after)
    }

    /// Opens a sealed request (`wrapped DEK ‖ ciphertext`) and, if it opens, starts the sealed
    /// answer. Returns the receiver of the answer's bytes (the response head first, then one
    /// frame per chunk); the generation holds a slot until it ends or the receiver is dropped.
    pub fn serve(
        self: &Arc<Self>,
        body: &[u8],
        gateway_ott_nonce: Option<[u8; 32]>,
    ) -> std::result::Result<mpsc::Receiver<Vec<u8>>, Refusal> {
        let request =
            NodeRequest::parse(body).map_err(|_| Refusal::BadRequest("malformed wrapped DEK"))?;
        // What the node signs it answered: the sealed request exactly as it came.
        let request_sha256: [u8; 32] = Sha256::digest(body).into();
        if let Err(why) = self.attested() {
            return Err(Refusal::NotServing(why));
        }
        let permit = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| {
            self.busy_refusals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Refusal::Busy
        })?;
        self.peak_in_flight
            .fetch_max(self.in_flight(), std::sync::atomic::Ordering::Relaxed);
        let opened = match sealed::open_request(&self.rek, &request.wrap, request.ciphertext) {
            Ok(o) => o,
            Err(arcane_verifier::Error::UnknownRek) => return Err(Refusal::UnknownRek),
            Err(_) => return Err(Refusal::BadRequest("the request does not open")),
        };
        self.replay.lock().expect("replay lock").admit(
            opened.enc,
            opened.issued_at,
            now_seconds(),
            self.config.request_window.as_secs(),
            self.config.replay_capacity,
        )?;
        let (tx, rx) = mpsc::channel(32);
        let node = Arc::clone(self);
        tokio::spawn(async move {
            node.answer(opened, request_sha256, gateway_ott_nonce, tx, permit)
                .await;
        });
        Ok(rx)
    }

    async fn answer(
        &self,
        opened: OpenedRequest,
        request_sha256: [u8; 32],
        gateway_ott_nonce: Option<[u8; 32]>,
        tx: mpsc::Sender<Vec<u8>>,
        _permit: OwnedSemaphorePermit,
    ) {
        let (head, mut sealer) = opened.responder.start();
        if tx.send(head.to_vec()).await.is_err() {
            return;
        }
        let mut stream = ChunkStream {
            sealer: &mut sealer,
            tx: &tx,
            pad_to: self.config.pad_to,
            id: format!("chatcmpl-{}", hex::encode(random_id())),
            model: self.model.name.clone(),
            created: now_seconds(),
            answer: Sha256::new(),
        };
        let inner = match decode_inner_request(&opened.plaintext) {
            Ok(r) => r,
            Err(e) => {
                stream.error("invalid_request_error", &e.to_string()).await;
                return;
            }
        };
        drop(opened.plaintext);
        if let Err(why) = self
            .tokens
            .verify(inner.token.as_deref(), gateway_ott_nonce.as_ref())
        {
            stream.error("token_error", &why).await;
            return;
        }
        if !inner.chat.model.is_empty() && inner.chat.model != self.model.name {
            stream
                .error(
                    "invalid_request_error",
                    &format!("this node serves model {:?}", self.model.name),
                )
                .await;
            return;
        }
        let max_tokens = inner.chat.max_tokens.map_or(self.config.max_tokens, |m| {
            (m as usize).min(self.config.max_tokens)
        });
        let mut events = match self.engine.generate(&inner.chat, max_tokens) {
            Ok(rx) => rx,
            Err(e) => {
                stream.error("model_error", &e.to_string()).await;
                return;
            }
        };
        // `stream: false` gets the whole answer in one chunk before the final one.
        let streaming = inner.chat.stream != Some(false);
        drop(inner);
        let mut whole = Zeroizing::new(String::new());
        let mut first = true;
        while let Some(event) = events.recv().await {
            match event {
                EngineEvent::Delta(mut text) => {
                    if !streaming {
                        whole.push_str(&text);
                        text.zeroize();
                        continue;
                    }
                    let sent = stream.delta(&text, first).await;
                    text.zeroize();
                    first = false;
                    if !sent {
                        return; // the receiver is gone: dropping `events` stops the engine
                    }
                }
                EngineEvent::Finished {
                    reason,
                    prompt_tokens,
                    completion_tokens,
                } => {
                    if !streaming && !whole.is_empty() && !stream.delta(&whole, true).await {
                        return;
                    }
                    let signed = self.sign_answer(request_sha256, stream.answer_sha256());
                    stream
                        .finish(
                            reason.as_str(),
                            Usage {
                                prompt_tokens,
                                completion_tokens,
                                total_tokens: prompt_tokens + completion_tokens,
                            },
                            signed,
                        )
                        .await;
                    return;
                }
                EngineEvent::Failed(message) => {
                    stream.error("model_error", &message).await;
                    return;
                }
            }
        }
        stream
            .error("model_error", "the engine stopped without finishing")
            .await;
    }
}

impl Node {
    /// The node's signed statement that it answered `request_sha256` with `answer_sha256`,
    /// with its current document. `None` (and the answer goes unsigned, which clients refuse)
    /// only when the node stopped serving meanwhile.
    fn sign_answer(
        &self,
        request_sha256: [u8; 32],
        answer_sha256: [u8; 32],
    ) -> Option<SignedAnswer> {
        let attested = self.attested().ok()?;
        let statement = AnswerStatement {
            request_sha256,
            answer_sha256,
            model_sha256: self.model.sha256,
            release_leaf_hash: attested.release.verified.leaf_hash.0,
            document_sha256: Sha256::digest(&attested.bundle.document).into(),
        };
        Some(SignedAnswer::sign(
            &self.answer_key,
            &statement,
            &attested.bundle.document,
            &attested.release.bundle,
        ))
    }
}

fn random_id() -> [u8; 12] {
    let mut id = [0u8; 12];
    getrandom::fill(&mut id).expect("the operating system's random source");
    id
}

/// Seals and sends the chunks of one answer.
struct ChunkStream<'a> {
    sealer: &'a mut ResponseSealer,
    tx: &'a mpsc::Sender<Vec<u8>>,
    pad_to: usize,
    id: String,
    model: String,
    created: u64,
    /// SHA-256 over the answer's text, as it is sent.
    answer: Sha256,
}

impl ChunkStream<'_> {
    /// SHA-256 of the text sent so far.
    fn answer_sha256(&self) -> [u8; 32] {
        self.answer.clone().finalize().into()
    }

    async fn send(&mut self, content: &ChunkContent, last: bool) -> bool {
        let bytes = Zeroizing::new(content.to_bytes());
        match self.sealer.seal_chunk(&bytes, last, self.pad_to) {
            Ok(frame) => self.tx.send(frame).await.is_ok(),
            Err(e) => {
                tracing::warn!(error = %e, "sealing a chunk failed");
                false
            }
        }
    }

    fn chunk(
        &self,
        delta: Delta,
        finish_reason: Option<&str>,
        usage: Option<Usage>,
    ) -> ChunkContent {
        ChunkContent::Completion(ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
            }],
            usage,
            arcane_signed_answer: None,
        })
    }

    async fn delta(&mut self, text: &str, first: bool) -> bool {
        self.answer.update(text.as_bytes());
        let content = self.chunk(
            Delta {
                role: first.then(|| "assistant".to_owned()),
                content: Some(text.to_owned()),
            },
            None,
            None,
        );
        let sent = self.send(&content, false).await;
        zeroize_chunk(content);
        sent
    }

    async fn finish(&mut self, reason: &str, usage: Usage, signed: Option<SignedAnswer>) {
        let mut content = self.chunk(Delta::default(), Some(reason), Some(usage));
        if let ChunkContent::Completion(chunk) = &mut content {
            chunk.arcane_signed_answer = signed.map(Box::new);
        }
        self.send(&content, true).await;
    }

    async fn error(&mut self, kind: &str, message: &str) {
        let content = ChunkContent::Error(ErrorBody {
            message: message.to_owned(),
            kind: kind.to_owned(),
        });
        self.send(&content, true).await;
    }
}

fn zeroize_chunk(content: ChunkContent) {
    if let ChunkContent::Completion(mut c) = content {
        for choice in &mut c.choices {
            if let Some(text) = &mut choice.delta.content {
                text.zeroize();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_for_as_long_as_its_request_could_be_accepted() {
        let (issued, window) = (1_000, 120);
        let mut guard = ReplayGuard::default();
        guard
            .admit([1; KEY_LEN], issued, issued, window, 8)
            .unwrap();
        // The last second the request itself is still fresh: the key must still be remembered.
        assert!(matches!(
            guard.admit([1; KEY_LEN], issued, issued + window, window, 8),
            Err(Refusal::Replayed)
        ));
        // One second later the request is stale, and that is why it is refused.
        assert!(matches!(
            guard.admit([1; KEY_LEN], issued, issued + window + 1, window, 8),
            Err(Refusal::Stale)
        ));
        // Forgotten keys make room again; a full guard of live keys fails closed.
        guard
            .admit(
                [2; KEY_LEN],
                issued + window + 1,
                issued + window + 1,
                window,
                1,
            )
            .unwrap();
        assert!(matches!(
            guard.admit(
                [3; KEY_LEN],
                issued + window + 1,
                issued + window + 1,
                window,
                1
            ),
            Err(Refusal::Busy)
        ));
    }

    #[test]
    fn an_issue_time_in_the_future_is_remembered_past_it() {
        let mut guard = ReplayGuard::default();
        guard.admit([1; KEY_LEN], 1_100, 1_000, 120, 8).unwrap();
        assert!(matches!(
            guard.admit([1; KEY_LEN], 1_100, 1_220, 120, 8),
            Err(Refusal::Replayed)
        ));
    }
}
