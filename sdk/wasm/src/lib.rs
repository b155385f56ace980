//! # arcane-sdk-wasm
//!
//! The client's checks compiled to WebAssembly: what the TypeScript SDK (`sdk/js`) runs in
//! Node.js and in browsers. Nothing here is a second implementation — every check, wire format
//! and decision is `arcane-verifier`'s or `arcane-client`'s (built without its `net` shell), the
//! same code the Rust SDK runs. This crate holds a request's state between the calls and moves
//! bytes; TypeScript does the I/O (fetch, streams, storage of the saved checkpoint and wallet)
//! and asks, after each answer, what comes next.
//!
//! One [`Session`] per trust configuration. A request, in order (the Rust client's order):
//! 1. `showCheckpoint(note)`, then `viewStep()` until it is done (answering each consistency
//!    question it asks with `viewProof`); save the note it says to save;
//! 2. `gatewayKeys(answer)` with the gateway's `/v1/keys`, then `viewStep()` again;
//! 3. `refillStart()` / `refillAnswer()` while they return a post (save `walletJson()` after each);
//! 4. `nodesRequest()` / `nodesAnswer()` when `poolSize()` is 0, then `verifyCandidates()` and
//!    `viewStep()`;
//! 5. `chatRequest(request)` — sealed only now — then the answer through an [`AnswerStream`].
//!
//! Errors are thrown as a JSON string `{"kind", "check"?, "message", "evidence"?}` that the
//! TypeScript side turns into typed errors.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Result as IoResult;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use arcane_client::answer::{AnswerOpener, ReceiptContext, prepare_chat, seal_chat};
use arcane_client::checks::{Candidate, Checks, GatewayKeys, ModelListing, NodeList, Passed};
use arcane_client::transport::{self, InnerHttp, OHTTP_CHUNKED_REQ, OHTTP_REQ};
use arcane_client::trust::{Relay, Trust, TrustFile};
use arcane_client::view::{LogView, SplitView, Verdict, check_checkpoint};
use arcane_client::wallet::{Refill, RefillStep, Tokens};
use arcane_client::{ChatEvent, Check, ClientError};
use arcane_verifier::checkpoint::VerifiedCheckpoint;
use arcane_verifier::inner::ChatCompletionRequest;
use arcane_verifier::log_api::{self, ConsistencyReply};
use arcane_verifier::streamed_response::{self, Part};
use arcane_verifier::timeline::{Question, Step};
use arcane_verifier::tokens::Token;
use futures::FutureExt as _;
use futures::io::{AsyncRead, AsyncWriteExt};
use serde_json::json;
use wasm_bindgen::prelude::*;

mod explorer;
pub use explorer::Explorer;

/// Where an OHTTP request is posted on the gateway.
const OHTTP_PATH: &str = "/.well-known/ohttp-gateway";
/// Most bytes of an error answer kept for its message.
const MAX_ERROR_BODY: usize = 4096;

/// An error as the TypeScript side reads it.
fn error_json(
    kind: &str,
    check: Option<Check>,
    message: String,
    evidence: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut e = json!({ "kind": kind, "message": message });
    if let Some(c) = check {
        e["check"] = json!(c.name());
    }
    if let Some(ev) = evidence {
        e["evidence"] = ev;
    }
    e
}

/// The same, thrown.
fn thrown(
    kind: &str,
    check: Option<Check>,
    message: String,
    evidence: Option<serde_json::Value>,
) -> JsValue {
    JsValue::from_str(&error_json(kind, check, message, evidence).to_string())
}

fn client_error(e: ClientError) -> JsValue {
    JsValue::from_str(&client_error_json(e).to_string())
}

fn client_error_json(e: ClientError) -> serde_json::Value {
    let kind = match &e {
        ClientError::Refused { .. } => "refused",
        ClientError::SplitView { .. } => "split-view",
        ClientError::Config(_) => "config",
        ClientError::State { .. } => "state",
        ClientError::Unreachable { .. } => "unreachable",
        ClientError::Status { .. } => "status",
        ClientError::TokenRefused { .. } => "token-refused",
        ClientError::TokensExhausted(_) => "tokens-exhausted",
        ClientError::Answer(_) => "answer",
        ClientError::Interrupted { .. } => "interrupted",
        ClientError::Node { .. } => "node",
        ClientError::Local(_) => "local",
        ClientError::Verifier(_) => "verifier",
    };
    let check = e.check();
    error_json(kind, check, e.to_string(), None)
}

fn split_view(split: &SplitView) -> JsValue {
    thrown(
        "split-view",
        Some(Check::Consistency),
        format!("possible split view of the log: {}", split.fork),
        Some(json!({
            "reason": split.fork.to_string(),
            "saved": split.saved,
            "shown": split.shown,
        })),
    )
}

fn no_question() -> JsValue {
    thrown(
        "config",
        None,
        "no consistency question is open".into(),
        None,
    )
}

/// The log's answer to a consistency question: the proof's hashes, for the sizes asked.
fn consistency_answer(
    reply: &[u8],
    question: &Question,
) -> Result<Vec<arcane_verifier::Hash>, JsValue> {
    ConsistencyReply::parse(reply, question.old.size, question.new.size).map_err(|e| {
        client_error(ClientError::Unreachable {
            service: "log",
            reason: e.to_string(),
        })
    })
}

fn refused(check: Check, reason: impl std::fmt::Display) -> JsValue {
    client_error(ClientError::Refused {
        check,
        reason: reason.to_string(),
    })
}

/// A request for the TypeScript side to send: `POST url` with this content type, optional
/// `authorization` header and body; the answer's body goes back to the call it names.
#[wasm_bindgen(getter_with_clone)]
pub struct Outgoing {
    /// Where to post it.
    pub url: String,
    /// Its `content-type`.
    #[wasm_bindgen(js_name = contentType)]
    pub content_type: String,
    /// The `authorization` header (a one-time token for the relay), if any.
    pub authorization: Option<String>,
    /// The encapsulated request.
    pub body: Vec<u8>,
    /// `relay` or `gateway`, for error messages (the relay's 401 is a refused token).
    pub service: String,
}

/// One trust configuration's checks, view of the log, wallet and candidate pool.
#[wasm_bindgen]
pub struct Session {
    checks: Checks,
    view: LogView,
    /// Checkpoints to make consistent with the view, and the check a failure is reported as.
    to_anchor: VecDeque<(VerifiedCheckpoint, Check)>,
    /// The checkpoint whose consistency proof was asked for.
    asking: Option<(VerifiedCheckpoint, Check, Question)>,
    /// The newest note adopted since the last `viewStep` that reported done.
    to_save: Option<String>,
    report: Vec<Passed>,
    keys: Option<GatewayKeys>,
    tokens: Tokens,
    refill: Option<Refill>,
    waiting: Option<ohttp::ClientResponse>,
    pool: VecDeque<serde_json::Value>,
    models: Vec<ModelListing>,
    candidates: Vec<Candidate>,
    wanted: usize,
    answer: Option<AnswerStream>,
}

fn keys_of(session: &Session) -> Result<&GatewayKeys, JsValue> {
    session.keys.as_ref().ok_or_else(|| {
        thrown(
            "config",
            None,
            "the gateway's keys are not verified yet".into(),
            None,
        )
    })
}

#[wasm_bindgen]
impl Session {
    /// A session for the trust file `trust_toml`; `files_json` maps the file names it refers to
    /// (`api_key_file`, `development_nitro_root`) to their text; `candidates` is how many
    /// verified nodes each request names.
    #[wasm_bindgen(constructor)]
    pub fn new(trust_toml: &str, files_json: &str, candidates: usize) -> Result<Session, JsValue> {
        let files: std::collections::HashMap<String, String> = serde_json::from_str(files_json)
            .map_err(|e| thrown("config", None, format!("the trust files: {e}"), None))?;
        let file: TrustFile = toml_file(trust_toml)?;
        let trust = Trust::from_file_reading(file, |p: &Path| {
            files
                .get(&p.to_string_lossy().into_owned())
                .cloned()
                .ok_or_else(|| format!("{}: not given", p.display()))
        })
        .map_err(client_error)?;
        Ok(Session {
            checks: Checks::new(trust),
            view: LogView::default(),
            to_anchor: VecDeque::new(),
            asking: None,
            to_save: None,
            report: Vec::new(),
            keys: None,
            tokens: Tokens::default(),
            refill: None,
            waiting: None,
            pool: VecDeque::new(),
            models: Vec::new(),
            candidates: Vec::new(),
            wanted: candidates.max(1),
            answer: None,
        })
    }

    /// `{log, gateway, relays, development}`: where the services are and whether node
    /// documents are checked against a development root.
    pub fn trust(&self) -> String {
        let t = self.checks.trust();
        json!({
            "log": t.log_url,
            "gateway": t.gateway_url,
            "relays": t.relays.iter().map(|r| json!({
                "url": r.url, "token": r.token, "chunked": r.chunked, "http3": r.http3,
            })).collect::<Vec<_>>(),
            "development": t.is_development(),
            "origin": t.log.log_key.name(),
        })
        .to_string()
    }

    /// Starts the view from the checkpoint saved last time (verified again under this trust).
    #[wasm_bindgen(js_name = restoreCheckpoint)]
    pub fn restore_checkpoint(&mut self, note: &str) -> Result<(), JsValue> {
        let saved = check_checkpoint(note.as_bytes(), &self.checks.trust().log).map_err(|e| {
            thrown(
                "state",
                None,
                format!("the saved checkpoint no longer verifies: {e}"),
                None,
            )
        })?;
        self.view.restore(saved);
        Ok(())
    }

    /// The log's checkpoint for a new request: its signature and witness policy now, its
    /// consistency with the view at the next `viewStep`. Empties the report.
    #[wasm_bindgen(js_name = showCheckpoint)]
    pub fn show_checkpoint(&mut self, note: &[u8]) -> Result<(), JsValue> {
        self.report.clear();
        self.candidates.clear();
        let shown = self.checks.checkpoint(note).map_err(client_error)?;
        self.report
            .extend(Passed::checkpoint(&shown, &self.checks.trust().log));
        self.to_anchor.push_back((shown, Check::Consistency));
        Ok(())
    }

    fn passed(&mut self, check: Check, detail: String) {
        self.report.push(Passed { check, detail });
    }

    /// Works through the checkpoints waiting to be made consistent with the view:
    /// `{"prove": {"path"}}` when the log must answer a consistency question (fetch the path
    /// from the log, give the body to `viewProof`), or `{"done": true, "save": note|null}` —
    /// save that note (the view's newest) before going on.
    #[wasm_bindgen(js_name = viewStep)]
    pub fn view_step(&mut self) -> Result<String, JsValue> {
        if let Some((_, _, q)) = &self.asking {
            return Ok(
                json!({ "prove": { "path": log_api::consistency(q.old.size, q.new.size) } })
                    .to_string(),
            );
        }
        while let Some((shown, check)) = self.to_anchor.pop_front() {
            match self.view.observe(&shown) {
                Ok(Step::Prove(question)) => {
                    let path = log_api::consistency(question.old.size, question.new.size);
                    self.asking = Some((shown, check, question));
                    return Ok(json!({ "prove": { "path": path } }).to_string());
                }
                step => self.conclude(shown, check, step)?,
            }
        }
        Ok(json!({ "done": true, "save": self.to_save.take() }).to_string())
    }

    /// The log's answer to the consistency question `viewStep` asked.
    #[wasm_bindgen(js_name = viewProof)]
    pub fn view_proof(&mut self, reply: &[u8]) -> Result<(), JsValue> {
        let (shown, check, question) = self.asking.take().ok_or_else(no_question)?;
        let proof = consistency_answer(reply, &question)?;
        let step = self.view.settle(&question, &proof);
        self.conclude(shown, check, step)
    }

    fn conclude(
        &mut self,
        shown: VerifiedCheckpoint,
        check: Check,
        step: Result<Step, arcane_verifier::timeline::Fork>,
    ) -> Result<(), JsValue> {
        let report = match self
            .view
            .conclude(shown, step)
            .map_err(|s| split_view(&s))?
        {
            Verdict::Adopted { report, note } => {
                self.to_save = Some(note);
                report
            }
            Verdict::Kept(report) => report,
        };
        // Checkpoints anchored for the keys and nodes report under those checks.
        if check == Check::Consistency {
            self.passed(check, report);
        }
        Ok(())
    }

    /// The gateway's `/v1/keys` answer at `now_s` (seconds): every key with a verified entry;
    /// the checkpoints its proofs name wait for the next `viewStep`.
    #[wasm_bindgen(js_name = gatewayKeys)]
    pub fn gateway_keys(&mut self, answer: &[u8], now_s: f64) -> Result<(), JsValue> {
        let keys = self
            .checks
            .keys(answer, now_s as u64)
            .map_err(client_error)?;
        for c in &keys.checkpoints {
            self.to_anchor.push_back((c.clone(), Check::OhttpKeys));
        }
        self.report.extend(Passed::keys(&keys));
        self.keys = Some(keys);
        Ok(())
    }

    /// Loads the wallet's JSON form (as `walletJson` wrote it).
    #[wasm_bindgen(js_name = loadWallet)]
    pub fn load_wallet(&mut self, json: &[u8]) -> Result<(), JsValue> {
        self.tokens = Tokens::from_json(json)
            .map_err(|e| thrown("state", None, format!("wallet: {e}"), None))?;
        Ok(())
    }

    /// The wallet's JSON form: save it (privately: it holds the TGT's secret) after every
    /// call that changes it, before sending what that call returned.
    #[wasm_bindgen(js_name = walletJson)]
    pub fn wallet_json(&self) -> Vec<u8> {
        self.tokens.to_json().to_vec()
    }

    /// OTTs on hand.
    #[wasm_bindgen(js_name = tokensOnHand)]
    pub fn tokens_on_hand(&self) -> usize {
        self.tokens.available()
    }

    /// Starts a refill (to the low-water mark): the first request to post to the gateway, or
    /// `undefined` when enough tokens are on hand.
    #[wasm_bindgen(js_name = refillStart)]
    pub fn refill_start(&mut self) -> Result<Option<Outgoing>, JsValue> {
        let keys = keys_of(self)?;
        let token_keys = keys.token_keys();
        let has_api_key = self.checks.trust().api_key.is_some();
        let mut refill = self.tokens.refill(token_keys, has_api_key);
        let step = refill.start(&mut self.tokens).map_err(client_error)?;
        self.refill_step(refill, step)
    }

    /// The gateway's answer (the encapsulated body) to the refill's last request: the next
    /// request, or `undefined` when the refill is done.
    #[wasm_bindgen(js_name = refillAnswer)]
    pub fn refill_answer(&mut self, body: &[u8]) -> Result<Option<Outgoing>, JsValue> {
        let (mut refill, response) =
            self.refill.take().zip(self.waiting.take()).ok_or_else(|| {
                thrown(
                    "config",
                    None,
                    "no refill is waiting for an answer".into(),
                    None,
                )
            })?;
        let (status, content) = transport::decapsulate(response, body).map_err(client_error)?;
        let step = refill
            .answer(&mut self.tokens, status, &content)
            .map_err(client_error)?;
        self.refill_step(refill, step)
    }

    fn refill_step(
        &mut self,
        refill: Refill,
        step: RefillStep,
    ) -> Result<Option<Outgoing>, JsValue> {
        let post = match step {
            RefillStep::Done(_) => return Ok(None),
            RefillStep::Post(post) => post,
        };
        let trust = self.checks.trust();
        let bearer = trust
            .api_key
            .as_ref()
            .map(|k| zeroize::Zeroizing::new(format!("Bearer {}", k.as_str())));
        let headers = post.headers(bearer.as_ref().map(|b| b.as_str()));
        let keys = keys_of(self)?;
        let (body, response) = transport::encapsulate(
            &keys.ohttp_config,
            &InnerHttp {
                method: "POST",
                path: post.path,
                headers: &headers,
                body: &post.body,
            },
        )
        .map_err(client_error)?;
        let url = format!("{}{OHTTP_PATH}", trust.gateway_url);
        self.refill = Some(refill);
        self.waiting = Some(response);
        Ok(Some(Outgoing {
            url,
            content_type: OHTTP_REQ.into(),
            authorization: None,
            body,
            service: "gateway".into(),
        }))
    }

    /// Candidate bundles not yet tried.
    #[wasm_bindgen(js_name = poolSize)]
    pub fn pool_size(&self) -> usize {
        self.pool.len()
    }

    /// The request for the gateway's node list, through the relay: it spends one OTT (save the
    /// wallet before sending it).
    #[wasm_bindgen(js_name = nodesRequest)]
    pub fn nodes_request(&mut self) -> Result<Outgoing, JsValue> {
        let relay = pick_relay(self, false)?;
        let ott = if relay.token {
            Some(self.tokens.take(1).map_err(client_error)?.remove(0))
        } else {
            None
        };
        let keys = keys_of(self)?;
        let (body, response) = transport::encapsulate(
            &keys.ohttp_config,
            &InnerHttp {
                method: "GET",
                path: "/v1/nodes",
                headers: &[],
                body: b"",
            },
        )
        .map_err(client_error)?;
        self.waiting = Some(response);
        Ok(Outgoing {
            url: relay.url,
            content_type: OHTTP_REQ.into(),
            authorization: ott.map(|o| transport::token_authorization(&o.token)),
            body,
            service: "relay".into(),
        })
    }

    /// The relay's answer to `nodesRequest`: the bundles join the pool (each is used at most
    /// once). Returns how many.
    #[wasm_bindgen(js_name = nodesAnswer)]
    pub fn nodes_answer(&mut self, body: &[u8]) -> Result<usize, JsValue> {
        let response = self
            .waiting
            .take()
            .ok_or_else(|| thrown("config", None, "no node list was asked for".into(), None))?;
        let (status, content) = transport::decapsulate(response, body).map_err(client_error)?;
        if status != 200 {
            return Err(client_error(ClientError::Status {
                service: "gateway",
                status,
                message: String::from_utf8_lossy(&content[..content.len().min(300)]).into_owned(),
            }));
        }
        let list: NodeList = serde_json::from_slice(&content)
            .map_err(|e| refused(Check::Nodes, format!("the node list is unreadable: {e}")))?;
        let n = list.nodes.len();
        self.pool.extend(list.nodes);
        self.models = list.models;
        Ok(n)
    }

    /// Verifies candidates from the pool at `now_ms` until enough passed (those serving
    /// `model`, when given): every check of a node bundle; their release checkpoints wait for
    /// the next `viewStep`. Returns how many passed; throws the first refusal when none did.
    #[wasm_bindgen(js_name = verifyCandidates)]
    pub fn verify_candidates(
        &mut self,
        model: Option<String>,
        now_ms: f64,
    ) -> Result<usize, JsValue> {
        let now_ms = now_ms as u64;
        self.candidates.clear();
        let mut first_refusal = None;
        while self.candidates.len() < self.wanted {
            let Some(bundle) = self.pool.pop_front() else {
                break;
            };
            match self.checks.node(&bundle, &self.models, now_ms) {
                Ok(c) if model.as_deref().is_none_or(|m| m == c.model) => {
                    self.to_anchor
                        .push_back((c.node.release.checkpoint.clone(), Check::Nodes));
                    self.candidates.push(c);
                }
                Ok(c) => {
                    first_refusal.get_or_insert_with(|| ClientError::Refused {
                        check: Check::Nodes,
                        reason: format!("the node serves {}, not the model asked for", c.model),
                    });
                }
                Err(e) => {
                    first_refusal.get_or_insert(e);
                }
            }
        }
        if self.candidates.is_empty() {
            return Err(client_error(first_refusal.unwrap_or(
                ClientError::Refused {
                    check: Check::Nodes,
                    reason: "the gateway lists no node".into(),
                },
            )));
        }
        let line = Passed::nodes(&self.candidates, self.checks.trust(), now_ms);
        self.report.push(line);
        Ok(self.candidates.len())
    }

    /// Every check passed so far for this request, in order: `[{check, detail}]`.
    pub fn report(&self) -> String {
        serde_json::to_string(&self.report).unwrap_or_else(|_| "[]".into())
    }

    /// The request through the relay, sealed to the verified candidates (only now: a fresh
    /// DEK, wrapped to each REK): `request_json` is an OpenAI-shaped chat request. Spends two
    /// OTTs (save the wallet before sending). Its answer goes to the stream `takeAnswer` gives.
    #[wasm_bindgen(js_name = chatRequest)]
    pub fn chat_request(&mut self, request_json: &str, now_ms: f64) -> Result<Outgoing, JsValue> {
        if !self.to_anchor.is_empty() || self.asking.is_some() {
            return Err(thrown(
                "config",
                None,
                "a checkpoint is not yet consistent with the view: finish viewStep first".into(),
                None,
            ));
        }
        let request: ChatCompletionRequest = serde_json::from_str(request_json)
            .map_err(|e| client_error(ClientError::Config(format!("the request: {e}"))))?;
        let (mut request, _) = prepare_chat(request).map_err(client_error)?;
        let first = self
            .candidates
            .first()
            .ok_or_else(|| refused(Check::Nodes, "no verified candidate for this request"))?;
        request.model = first.model.clone();
        let model = request.model.clone();
        let checkpoint = self
            .view
            .latest()
            .cloned()
            .ok_or_else(|| refused(Check::Checkpoint, "no verified checkpoint"))?;
        // The answer is read as it streams: a relay that forwards chunked requests.
        let relay = pick_relay(self, true)?;
        let mut otts = self
            .tokens
            .take(1 + usize::from(relay.token))
            .map_err(client_error)?;
        let gateway_ott = otts.pop().expect("one was taken");
        let relay_ott = otts.pop();
        let material = self.tokens.material(&gateway_ott).map_err(client_error)?;
        let (envelope, opener, request_hashes) = seal_chat(
            request,
            &self.candidates,
            &gateway_ott.token,
            &material,
            (now_ms as u64) / 1000,
        )
        .map_err(client_error)?;
        let keys = keys_of(self)?;
        let inner = InnerHttp {
            method: "POST",
            path: "/v1/chat",
            headers: &[],
            body: &envelope,
        }
        .encode()
        .map_err(client_error)?;
        let sink = transport::Sink::default();
        let mut writer = ohttp::ClientRequest::from_encoded_config(&keys.ohttp_config)
            .and_then(|r| r.encapsulate_stream(sink.clone()))
            .map_err(|e| client_error(ClientError::Answer(format!("OHTTP encapsulation: {e}"))))?;
        // The sink is memory: both complete at once.
        let written = async {
            writer.write_all(&inner).await?;
            writer.close().await
        }
        .now_or_never();
        if !matches!(written, Some(Ok(()))) {
            return Err(client_error(ClientError::Answer(
                "OHTTP encapsulation did not complete".into(),
            )));
        }
        let incoming = Incoming::default();
        let decrypted: Pin<Box<dyn AsyncRead>> = Box::pin(
            writer
                .response(incoming.clone())
                .map_err(|e| client_error(ClientError::Answer(format!("OHTTP answer: {e}"))))?,
        );
        let context = ReceiptContext {
            model,
            checkpoint,
            candidates: std::mem::take(&mut self.candidates),
            checks: self.report.clone(),
            request_hashes,
            log_key: self.checks.trust().log.log_key.clone(),
        };
        self.answer = Some(AnswerStream {
            incoming,
            decrypted,
            response: streamed_response::Reader::default(),
            status: None,
            error_body: Vec::new(),
            opener: AnswerOpener::new(opener, context),
        });
        Ok(Outgoing {
            url: relay.url,
            content_type: OHTTP_CHUNKED_REQ.into(),
            authorization: relay_ott.map(|o| transport::token_authorization(&o.token)),
            body: sink.take(),
            service: "relay".into(),
        })
    }

    /// The answer stream of the last `chatRequest`.
    #[wasm_bindgen(js_name = takeAnswer)]
    pub fn take_answer(&mut self) -> Option<AnswerStream> {
        self.answer.take()
    }
}

/// The relay for one request, picked at random (`streaming`: among those that forward chunked
/// requests).
fn pick_relay(session: &Session, streaming: bool) -> Result<Relay, JsValue> {
    let random = getrandom::u32().map_err(|e| {
        client_error(ClientError::Config(format!(
            "no randomness for the relay choice: {e}"
        )))
    })?;
    session
        .checks
        .trust()
        .pick_relay(random, streaming)
        .cloned()
        .map_err(client_error)
}

fn toml_file(text: &str) -> Result<TrustFile, JsValue> {
    TrustFile::parse(text).map_err(client_error)
}

/// The answer's bytes as they arrive: a reader that is pending until more are pushed, and ends
/// once the stream is over.
#[derive(Clone, Default)]
struct Incoming(Rc<RefCell<(VecDeque<u8>, bool)>>);

impl AsyncRead for Incoming {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<IoResult<usize>> {
        let mut state = self.0.borrow_mut();
        let (bytes, ended) = &mut *state;
        if bytes.is_empty() {
            return if *ended {
                Poll::Ready(Ok(0))
            } else {
                Poll::Pending
            };
        }
        let n = out.len().min(bytes.len());
        for (o, b) in out.iter_mut().zip(bytes.drain(..n)) {
            *o = b;
        }
        Poll::Ready(Ok(n))
    }
}

/// A streamed answer: the relay's body pushed in as it arrives, events out — text deltas, then
/// the summary with its receipt — all opened and checked by the client's own code.
#[wasm_bindgen]
pub struct AnswerStream {
    incoming: Incoming,
    decrypted: Pin<Box<dyn AsyncRead>>,
    response: streamed_response::Reader,
    status: Option<u16>,
    error_body: Vec<u8>,
    opener: AnswerOpener,
}

#[wasm_bindgen]
impl AnswerStream {
    /// Bytes of the relay's answer body; returns the events they complete, as JSON:
    /// `[{"delta"}, …, {"done": summary}]`, or a last `{"error", "receipt"?}`.
    pub fn push(&mut self, bytes: &[u8], now_ms: f64) -> String {
        self.incoming.0.borrow_mut().0.extend(bytes);
        self.drain(now_ms as u64).to_string()
    }

    /// The body ended (`broke` undefined) or failed (`broke`: why): the last events, with an
    /// `interrupted` error (and the receipt of an interrupted answer) when the final chunk had
    /// not come.
    pub fn end(&mut self, broke: Option<String>, now_ms: f64) -> String {
        let now_ms = now_ms as u64;
        self.incoming.0.borrow_mut().1 = true;
        let mut events = if broke.is_none() {
            self.drain(now_ms)
        } else {
            json!([])
        };
        if let Some((error, receipt)) = self.opener.interrupted(broke, now_ms)
            && let Some(list) = events.as_array_mut()
        {
            list.push(error_event(error, receipt.map(|r| json!(r))));
        }
        events.to_string()
    }

    fn drain(&mut self, now_ms: u64) -> serde_json::Value {
        let mut events = Vec::new();
        if let Err(e) = self.decrypt() {
            events.push(error_event(e, None));
            return json!(events);
        }
        loop {
            match self.response.next_part() {
                Ok(Some(Part::Head { status, .. })) => self.status = Some(status),
                Ok(Some(Part::Content(piece))) if self.status == Some(200) => {
                    self.opener.push(&piece)
                }
                Ok(Some(Part::Content(piece))) => {
                    let room = MAX_ERROR_BODY.saturating_sub(self.error_body.len());
                    self.error_body
                        .extend_from_slice(&piece[..piece.len().min(room)]);
                }
                Ok(Some(Part::End)) | Ok(None) => break,
                Err(e) => {
                    events.push(error_event(
                        ClientError::Answer(format!("inner answer: {e}")),
                        None,
                    ));
                    return json!(events);
                }
            }
        }
        if let Some(status) = self.status.filter(|s| *s != 200) {
            if self.response.is_complete() && !self.opener.is_ended() {
                let message = String::from_utf8_lossy(&self.error_body).into_owned();
                let error = transport::gateway_refusal(status, message);
                // Nothing more comes from this answer.
                let _ = self.opener.interrupted(None, now_ms);
                events.push(error_event(error, None));
            }
            return json!(events);
        }
        while let Some(event) = self.opener.next_event(now_ms) {
            events.push(match event {
                Ok(ChatEvent::Delta(text)) => json!({ "delta": text }),
                Ok(ChatEvent::Done(summary)) => json!({ "done": {
                    "usage": summary.usage,
                    "finishReason": summary.finish_reason,
                    "receipt": summary.receipt,
                }}),
                Err(e) => error_event(e, None),
            });
        }
        json!(events)
    }

    /// Decrypts what has arrived into the response reader.
    fn decrypt(&mut self) -> Result<(), ClientError> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match self.decrypted.as_mut().poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(0)) | Poll::Pending => return Ok(()),
                Poll::Ready(Ok(n)) => self.response.push(&buf[..n]),
                Poll::Ready(Err(e)) => {
                    return Err(ClientError::Answer(format!("OHTTP answer: {e}")));
                }
            }
        }
    }
}

fn error_event(e: ClientError, receipt: Option<serde_json::Value>) -> serde_json::Value {
    json!({ "error": client_error_json(e), "receipt": receipt })
}

/// The verifier's primitives alone, for published test vectors (RFC 6962/9162 proofs, C2SP
/// signed notes, RFC 9578 tokens) run through this build.
#[wasm_bindgen]
pub struct Vectors;

fn hash_of(bytes: &[u8]) -> Result<arcane_verifier::Hash, JsValue> {
    arcane_verifier::Hash::from_slice(bytes).map_err(verifier_error)
}

fn hashes_of(bytes: &[u8]) -> Result<Vec<arcane_verifier::Hash>, JsValue> {
    if !bytes.len().is_multiple_of(32) {
        return Err(thrown(
            "verifier",
            None,
            "a proof is 32-byte hashes".into(),
            None,
        ));
    }
    bytes.chunks(32).map(hash_of).collect()
}

fn verifier_error(e: arcane_verifier::Error) -> JsValue {
    thrown("verifier", None, e.to_string(), None)
}

#[wasm_bindgen]
impl Vectors {
    /// Checks an inclusion proof (`proof`: the hashes concatenated); throws when it fails.
    #[wasm_bindgen(js_name = verifyInclusion)]
    pub fn verify_inclusion(
        index: f64,
        size: f64,
        leaf_hash: &[u8],
        proof: &[u8],
        root: &[u8],
    ) -> Result<(), JsValue> {
        arcane_verifier::proof::verify_inclusion(
            index as u64,
            size as u64,
            &hash_of(leaf_hash)?,
            &hashes_of(proof)?,
            &hash_of(root)?,
        )
        .map_err(verifier_error)
    }

    /// Checks a consistency proof; throws when it fails.
    #[wasm_bindgen(js_name = verifyConsistency)]
    pub fn verify_consistency(
        old_size: f64,
        new_size: f64,
        old_root: &[u8],
        new_root: &[u8],
        proof: &[u8],
    ) -> Result<(), JsValue> {
        arcane_verifier::proof::verify_consistency(
            old_size as u64,
            new_size as u64,
            &hash_of(old_root)?,
            &hash_of(new_root)?,
            &hashes_of(proof)?,
        )
        .map_err(verifier_error)
    }

    /// Verifies a signed note with the verifier key `vkey`: the note's text when it verifies.
    #[wasm_bindgen(js_name = verifyNote)]
    pub fn verify_note(note: &str, vkey: &str) -> Result<String, JsValue> {
        let key = arcane_verifier::note::VerifierKey::parse(vkey).map_err(verifier_error)?;
        let note = arcane_verifier::note::Note::parse(note.as_bytes()).map_err(verifier_error)?;
        note.verify(std::slice::from_ref(&key))
            .map_err(verifier_error)?;
        Ok(note.text.clone())
    }

    /// Verifies a Privacy Pass token (type 0x0002) under the issuer key `spki` for the encoded
    /// `challenge`; throws when it fails.
    #[wasm_bindgen(js_name = verifyToken)]
    pub fn verify_token(token: &[u8], spki: &[u8], challenge: &[u8]) -> Result<(), JsValue> {
        use arcane_verifier::tokens::{IssuerKey, TokenChallenge};
        let key = IssuerKey::from_spki(spki).map_err(verifier_error)?;
        let challenge = TokenChallenge::decode(challenge).map_err(verifier_error)?;
        Token::decode(token)
            .and_then(|t| t.verify(&key, &challenge))
            .map_err(verifier_error)
    }

    /// The RFC 6962 leaf hash of `data`.
    #[wasm_bindgen(js_name = leafHash)]
    pub fn leaf_hash(data: &[u8]) -> Vec<u8> {
        arcane_verifier::merkle::leaf_hash(data).0.to_vec()
    }
}
