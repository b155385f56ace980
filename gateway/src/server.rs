//! The gateway's HTTP surface.
//!
//! Outer (plain HTTP, what a relay and nodes reach):
//! - `GET /.well-known/ohttp-gateway`: the proven key configurations, `application/ohttp-keys`
//!   (RFC 9540).
//! - `POST /.well-known/ohttp-gateway`: `message/ohttp-req` (RFC 9458) or
//!   `message/ohttp-chunked-req` (chunked OHTTP, streamed answer).
//! - `GET /v1/keys`: each proven key configuration and token key with its proof bundle (JSON).
//! - `POST /v1/nodes`: a node's registration (verified before listing).
//! - `GET /healthz`.
//!
//! Inner (inside OHTTP, BHTTP requests): `GET /v1/models`, `GET /v1/nodes`,
//! `POST /v1/tokens/tgt`, `POST /v1/fraud-data`, `POST /v1/tokens/ott` (with fraud data in
//! `arcane-fraud-data` when it has some), `POST /v1/chat`; anything else is a BHTTP 404.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arcane_verifier::attested::NodeRegistration;
use arcane_verifier::entry::TokenRole;
use arcane_verifier::envelope::{
    BusyAnswer, ChatEnvelope, MAX_CANDIDATES, NODE_BUSY, NODE_REFUSAL_HEADER, NodeRequest,
    OttGrantRequest,
};
use arcane_verifier::fraud_data::FRAUD_DATA_FIELD;
use arcane_verifier::streamed_response;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::proven::KeyRing;
use crate::registry::Registry;
use crate::tokens::{Refusal, TokenServices};

/// Media types.
pub const OHTTP_KEYS: &str = "application/ohttp-keys";
/// See [`OHTTP_KEYS`].
pub const OHTTP_REQ: &str = "message/ohttp-req";
/// See [`OHTTP_KEYS`].
pub const OHTTP_RES: &str = "message/ohttp-res";
/// See [`OHTTP_KEYS`].
pub const OHTTP_CHUNKED_REQ: &str = "message/ohttp-chunked-req";
/// See [`OHTTP_KEYS`].
pub const OHTTP_CHUNKED_RES: &str = "message/ohttp-chunked-res";
/// Largest encapsulated request (the sealed chat request is at most ~1 MiB plus wraps).
pub const MAX_OHTTP_REQUEST: usize = (1 << 20) + 64 * 1024;
/// Longest a client may take to send a request body, by default; a slower one gets `408`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a chat waits for a place at one of its candidate nodes, by default, before it is
/// answered busy (its OTT unspent).
pub const DEFAULT_PLACE_WAIT: Duration = Duration::from_secs(5);
/// How often a waiting chat looks at its candidates again when no place was given back here
/// (a node that refused as busy frees places this gateway does not see).
const PLACE_POLL: Duration = Duration::from_millis(250);

/// Everything the handlers share.
pub struct Gateway {
    /// The proven keys as of the last refresh from the log (each use re-checks validity).
    keys: RwLock<Arc<KeyRing>>,
    /// Token services.
    pub tokens: TokenServices,
    /// Listed nodes.
    pub registry: Registry,
    /// HTTP client towards nodes (no redirects).
    pub http: reqwest::Client,
    /// Longest a client may take to send a request body.
    pub body_timeout: Duration,
    /// Longest a chat waits for a place at a candidate node before it is answered busy.
    pub place_wait: Duration,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway serving `keys`.
    pub fn new(
        keys: KeyRing,
        tokens: TokenServices,
        registry: Registry,
        http: reqwest::Client,
        body_timeout: Duration,
    ) -> Self {
        Gateway {
            keys: RwLock::new(Arc::new(keys)),
            tokens,
            registry,
            http,
            body_timeout,
            place_wait: DEFAULT_PLACE_WAIT,
        }
    }

    /// The keys as of the last refresh.
    pub fn keys(&self) -> Arc<KeyRing> {
        Arc::clone(&self.keys.read().expect("key ring lock"))
    }

    /// Replaces the keys (after a refresh from the log).
    pub fn replace_keys(&self, keys: KeyRing) {
        *self.keys.write().expect("key ring lock") = Arc::new(keys);
    }
}

/// Seconds since the epoch.
pub fn now_seconds() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The gateway's routes.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(
            "/.well-known/ohttp-gateway",
            get(key_configs).post(ohttp_request),
        )
        .route("/v1/keys", get(keys_with_proofs))
        .route("/v1/nodes", post(register_node))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_OHTTP_REQUEST))
        .with_state(gateway)
}

/// Reads a request body within `timeout` and `limit` bytes: a slow or oversized body is refused
/// (`408`, `413`) and its connection's task ends, so slow clients hold nothing for long.
pub async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, Response> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(plain_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large or broken",
        )),
        Err(_) => Err(plain_error(
            StatusCode::REQUEST_TIMEOUT,
            "the request body took too long",
        )),
    }
}

fn plain_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn key_configs(State(g): State<Arc<Gateway>>) -> Response {
    let keys = g.keys();
    let mut list = Vec::new();
    for key in keys.ohttp_offered(now_seconds()) {
        list.extend_from_slice(&(key.encoded.len() as u16).to_be_bytes());
        list.extend_from_slice(&key.encoded);
    }
    if list.is_empty() {
        return plain_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no OHTTP key has a valid proof in the log",
        );
    }
    ([(header::CONTENT_TYPE, OHTTP_KEYS)], list).into_response()
}

#[derive(Serialize)]
struct KeyWithProof {
    kind: &'static str,
    role: Option<String>,
    key: String,
    bundle: String,
}

/// `GET /v1/keys`: the keys on offer with their proof bundles — OHTTP keys, then per role the
/// token keys, the newest first. Nothing expired is ever listed, nor a key about to expire
/// while another can take over.
async fn keys_with_proofs(State(g): State<Arc<Gateway>>) -> Response {
    let b64 = base64::engine::general_purpose::STANDARD;
    let now = now_seconds();
    let ring = g.keys();
    let mut keys: Vec<KeyWithProof> = ring
        .ohttp_offered(now)
        .into_iter()
        .map(|k| KeyWithProof {
            kind: "ohttp-keys",
            role: None,
            key: b64.encode(&k.encoded),
            bundle: k.proof.bundle.clone(),
        })
        .collect();
    let fraud_data = ring
        .fraud_data_classes(now)
        .into_iter()
        .map(TokenRole::FraudData);
    for role in [TokenRole::Tgt, TokenRole::Ott]
        .into_iter()
        .chain(fraud_data)
    {
        for issuer in ring.issuers_offered(role, now) {
            keys.push(KeyWithProof {
                kind: "token-key",
                role: Some(role.as_str().to_owned()),
                key: b64.encode(issuer.secret.public().spki()),
                bundle: issuer.proof.bundle.clone(),
            });
        }
    }
    axum::Json(serde_json::json!({ "keys": keys })).into_response()
}

async fn register_node(State(g): State<Arc<Gateway>>, body: Body) -> Response {
    let body = match read_body(body, MAX_OHTTP_REQUEST, g.body_timeout).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let registration: NodeRegistration = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return plain_error(StatusCode::BAD_REQUEST, "not a node registration"),
    };
    let verified = match g.registry.check(&registration, now_ms()) {
        Ok(v) => v,
        Err(e) => {
            return plain_error(
                StatusCode::FORBIDDEN,
                &format!("the node's bundle does not verify: {e}"),
            );
        }
    };
    // Challenge the URL: only the REK's holder can produce a fresh document, and it binds our
    // challenge to the URL it registered under itself (no redirect is followed, the answer is
    // read within the bundle size limit).
    let mut challenge = [0u8; 16];
    if getrandom::fill(&mut challenge).is_err() {
        return plain_error(StatusCode::INTERNAL_SERVER_ERROR, "no randomness");
    }
    let url = registration.url.trim_end_matches('/').to_owned();
    if url.len() > arcane_verifier::attested::MAX_NODE_URL_BYTES
        || !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return plain_error(
            StatusCode::BAD_REQUEST,
            "the node URL is not a short http(s) URL",
        );
    }
    let Ok(challenge_url) = reqwest::Url::parse_with_params(
        &format!("{url}/v1/attestation"),
        &[
            ("registration", hex::encode(challenge)),
            ("for", url.clone()),
        ],
    ) else {
        return plain_error(StatusCode::BAD_REQUEST, "the node URL does not parse");
    };
    let answer = async {
        let reply = g
            .http
            .get(challenge_url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        if !reply.status().is_success() {
            return None;
        }
        let bytes = arcane_log_client::read_limited(
            reply,
            arcane_verifier::attested::MAX_NODE_BUNDLE_BYTES,
        )
        .await
        .ok()?;
        arcane_verifier::attested::NodeBundle::parse(&bytes).ok()
    }
    .await;
    let nonce = arcane_verifier::attested::registration_nonce(&challenge, &url);
    let challenged = match answer {
        Some(bundle) => g
            .registry
            .check_challenge(&bundle, &nonce, &verified, now_ms()),
        None => Err(crate::error::GatewayError::Serve(
            "the node's URL gave no attestation for the challenge".into(),
        )),
    };
    if let Err(e) = challenged {
        return plain_error(
            StatusCode::FORBIDDEN,
            &format!("the node's URL failed the challenge: {e}"),
        );
    }
    match g.registry.list(&registration, verified.clone()) {
        Ok(()) => axum::Json(serde_json::json!({
            "listed": true,
            "rek_id": hex::encode(verified.rek.id()),
            "release_index": verified.release.index,
        }))
        .into_response(),
        Err(e) => plain_error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// An inner answer: complete, or streamed (the sealed answer of a node).
enum InnerAnswer {
    Full(u16, &'static str, Vec<u8>),
    Stream(mpsc::Receiver<Bytes>),
}

fn inner_json(status: u16, value: serde_json::Value) -> InnerAnswer {
    InnerAnswer::Full(status, "application/json", value.to_string().into_bytes())
}

fn inner_refusal(r: Refusal) -> InnerAnswer {
    inner_json(
        r.status,
        serde_json::json!({ "error": r.message, "reason": r.reason }),
    )
}

/// The OHTTP key (valid now: an expired key never decrypts) that `body`'s key id names.
fn server_for(g: &Gateway, body: &[u8]) -> Option<ohttp::KeyConfig> {
    let key_id = *body.first()?;
    g.keys()
        .ohttp_at(now_seconds())
        .find(|k| k.encoded.first() == Some(&key_id))
        .map(|k| k.config.clone())
}

async fn ohttp_request(State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(body, MAX_OHTTP_REQUEST, g.body_timeout).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(key) = server_for(&g, &body) else {
        return plain_error(StatusCode::UNPROCESSABLE_ENTITY, "unknown key id");
    };
    match content_type {
        OHTTP_REQ => standard_ohttp(&g, key, &body).await,
        OHTTP_CHUNKED_REQ => chunked_ohttp(Arc::clone(&g), key, body).await,
        _ => plain_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected message/ohttp-req or message/ohttp-chunked-req",
        ),
    }
}

async fn standard_ohttp(g: &Arc<Gateway>, key: ohttp::KeyConfig, body: &[u8]) -> Response {
    let server = match ohttp::Server::new(key) {
        Ok(s) => s,
        Err(e) => return plain_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let Ok((inner, responder)) = server.decapsulate(body) else {
        return plain_error(StatusCode::BAD_REQUEST, "the request does not decapsulate");
    };
    let answer = dispatch(g, &inner).await;
    let (status, content_type, content) = match answer {
        InnerAnswer::Full(s, t, c) => (s, t, c),
        InnerAnswer::Stream(mut rx) => {
            let mut all = Vec::new();
            while let Some(b) = rx.recv().await {
                all.extend_from_slice(&b);
            }
            (200, crate::SEALED_STREAM_TYPE, all)
        }
    };
    let message = bhttp_response(status, content_type, &content);
    match responder.encapsulate(&message) {
        Ok(enc) => ([(header::CONTENT_TYPE, OHTTP_RES)], enc).into_response(),
        Err(e) => plain_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A known-length BHTTP response.
fn bhttp_response(status: u16, content_type: &str, content: &[u8]) -> Vec<u8> {
    let mut m = bhttp::Message::response(
        bhttp::StatusCode::try_from(status)
            .unwrap_or(bhttp::StatusCode::try_from(500u16).expect("500")),
    );
    m.put_header("content-type", content_type);
    m.write_content(content);
    let mut out = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut out)
        .expect("writing to a Vec");
    out
}

/// A futures `AsyncWrite` that hands each write to a channel (the HTTP body).
struct ChannelWriter(mpsc::UnboundedSender<Result<Bytes, std::io::Error>>);

impl futures::io::AsyncWrite for ChannelWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let sent = self.0.send(Ok(Bytes::copy_from_slice(buf)));
        std::task::Poll::Ready(
            sent.map(|()| buf.len())
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
        )
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Chunked OHTTP: the inner answer is an indeterminate-length BHTTP response (RFC 9292 §3.2)
/// whose content chunks are written, and so encrypted and sent, as they arrive from the node.
async fn chunked_ohttp(g: Arc<Gateway>, key: ohttp::KeyConfig, body: Bytes) -> Response {
    let server = match ohttp::Server::new(key) {
        Ok(s) => s,
        Err(e) => return plain_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut request = server.decapsulate_stream(futures::io::Cursor::new(body.to_vec()));
    let mut inner = Vec::new();
    if request.read_to_end(&mut inner).await.is_err() {
        return plain_error(
            StatusCode::BAD_REQUEST,
            "the chunked request does not decapsulate",
        );
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut writer = match request.response(ChannelWriter(tx)) {
        Ok(w) => w,
        Err(e) => return plain_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    tokio::spawn(async move {
        let answer = dispatch(&g, &inner).await;
        let (status, content_type) = match &answer {
            InnerAnswer::Full(s, t, _) => (*s, *t),
            InnerAnswer::Stream(_) => (200, crate::SEALED_STREAM_TYPE),
        };
        if writer
            .write_all(&streamed_response::head(status, content_type))
            .await
            .is_err()
        {
            return;
        }
        let mut write_chunk = async |data: &[u8]| -> bool {
            if data.is_empty() {
                return true;
            }
            writer
                .write_all(&streamed_response::chunk(data))
                .await
                .is_ok()
                && writer.flush().await.is_ok()
        };
        match answer {
            InnerAnswer::Full(_, _, content) => {
                write_chunk(&content).await;
            }
            InnerAnswer::Stream(mut from_node) => {
                while let Some(bytes) = from_node.recv().await {
                    if !write_chunk(&bytes).await {
                        return;
                    }
                }
            }
        }
        let _ = writer.write_all(&streamed_response::END).await;
        let _ = writer.close().await;
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        [(header::CONTENT_TYPE, OHTTP_CHUNKED_RES)],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn dispatch(g: &Arc<Gateway>, inner: &[u8]) -> InnerAnswer {
    let mut cursor = std::io::Cursor::new(inner);
    let Ok(message) = bhttp::Message::read_bhttp(&mut cursor) else {
        return inner_json(
            400,
            serde_json::json!({ "error": "not a Binary HTTP request" }),
        );
    };
    let control = message.control();
    let method = control.method().unwrap_or_default();
    let path = control.path().unwrap_or_default();
    let content = message.content();
    let now = now_seconds();
    match (method, path) {
        (b"GET", b"/v1/models") => inner_json(
            200,
            serde_json::json!({ "object": "list", "data": g.registry.models() }),
        ),
        (b"GET", p) if p == b"/v1/nodes" || p.starts_with(b"/v1/nodes?") => {
            let nodes: Vec<serde_json::Value> = g
                .registry
                .candidates(MAX_CANDIDATES, now_ms())
                .iter()
                .map(|b| serde_json::from_str(&b.to_json()).expect("bundle JSON"))
                .collect();
            inner_json(
                200,
                serde_json::json!({ "nodes": nodes, "models": g.registry.models() }),
            )
        }
        (b"POST", b"/v1/tokens/tgt") => {
            let api_key = bearer(&message);
            match g.tokens.issue_tgt(&g.keys(), api_key, content, now).await {
                Ok(r) => InnerAnswer::Full(200, "application/private-token-response", r),
                Err(r) => inner_refusal(r),
            }
        }
        (b"POST", b"/v1/fraud-data") => {
            let api_key = bearer(&message);
            match g
                .tokens
                .issue_fraud_data(&g.keys(), api_key, content, now)
                .await
            {
                Ok(r) => InnerAnswer::Full(200, "application/octet-stream", r),
                Err(r) => inner_refusal(r),
            }
        }
        (b"POST", b"/v1/tokens/ott") => {
            let Ok(grant) = OttGrantRequest::parse(content) else {
                return inner_json(
                    400,
                    serde_json::json!({ "error": "expected a TGT and whole token requests" }),
                );
            };
            let requests: Vec<Vec<u8>> = grant.requests.iter().map(|r| r.to_vec()).collect();
            let fraud_data = message
                .header()
                .get(FRAUD_DATA_FIELD.as_bytes())
                .map(|v| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v));
            let fraud_data = match fraud_data {
                None => None,
                Some(Ok(bytes)) => Some(bytes),
                Some(Err(_)) => {
                    return inner_json(
                        400,
                        serde_json::json!({ "error": "the fraud data is not base64url" }),
                    );
                }
            };
            match g
                .tokens
                .grant_otts(&g.keys(), grant.tgt, &requests, fraud_data.as_deref(), now)
                .await
            {
                Ok(r) => InnerAnswer::Full(200, "application/private-token-response", r.concat()),
                Err(r) => inner_refusal(r),
            }
        }
        (b"POST", b"/v1/chat") => route_chat(g, content, now).await,
        _ => inner_json(404, serde_json::json!({ "error": "not found" })),
    }
}

/// The API key in an inner request's `authorization: Bearer …`, or "".
fn bearer(message: &bhttp::Message) -> &str {
    message
        .header()
        .get(b"authorization")
        .and_then(|v| v.strip_prefix(b"Bearer "))
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("")
}

/// `POST /v1/chat` ([`ChatEnvelope`]): `OTT ‖ n ‖ n × wrapped DEK ‖ request ciphertext`. The
/// least loaded listed node among the candidates that has room gets its wrapped DEK and the
/// ciphertext; the OTT is redeemed (single use) once a place at a node is reserved and before
/// anything is forwarded, so a request turned away because every candidate is full spends no
/// token (the answer says `"ott": "unspent"` and the client may use it again). While every
/// candidate is full the request waits for a place, up to [`Gateway::place_wait`]. A request
/// none of whose candidates is listed is redeemed and refused. A node that is busy
/// or cannot be reached before the first byte means the next candidate (an unreachable one is
/// dropped from the registry).
async fn route_chat(g: &Arc<Gateway>, content: &[u8], now: u64) -> InnerAnswer {
    let Ok(envelope) = ChatEnvelope::parse(content) else {
        return inner_json(
            400,
            serde_json::json!({ "error": "malformed chat envelope" }),
        );
    };
    let rek_ids: Vec<[u8; 32]> = envelope.wraps.iter().map(|w| w.rek_id).collect();
    let waiting_until = tokio::time::Instant::now() + g.place_wait;
    let mut redeemed = None;
    let mut full;
    loop {
        // Made before the nodes are looked at: a place freed meanwhile is not missed.
        let freed = g.registry.place_freed();
        let picked = g.registry.pick(&rek_ids, now_ms());
        if picked.is_empty() && redeemed.is_none() {
            // None of the candidates is listed here (the client's list is stale): the token
            // is redeemed and the request refused, as one naming nodes that are not there.
            if let Err(r) = g
                .tokens
                .redeem(&g.keys(), "gateway", envelope.token, now)
                .await
            {
                return inner_refusal(r);
            }
        }
        full = 0usize;
        for node in picked {
            // A place at the node, taken before the request leaves: two requests racing for the
            // last place cannot both take it.
            if !node.try_reserve() {
                full += 1;
                continue;
            }
            let ott_nonce = match redeemed {
                Some(nonce) => nonce,
                None => match g
                    .tokens
                    .redeem(&g.keys(), "gateway", envelope.token, now)
                    .await
                {
                    Ok(ott) => *redeemed.insert(ott.nonce),
                    Err(r) => {
                        node.release();
                        return inner_refusal(r);
                    }
                },
            };
            let wrap = envelope
                .wraps
                .iter()
                .find(|w| w.rek_id == node.verified.rek.id())
                .expect("picked from these ids");
            let body = NodeRequest::encode(wrap, envelope.ciphertext);
            let sent = g
                .http
                .post(format!("{}/v1/infer", node.url))
                .header("content-type", "application/arcane-sealed-request")
                .header("arcane-ott-nonce", hex::encode(ott_nonce))
                .timeout(Duration::from_secs(600))
                .body(body)
                .send()
                .await;
            let mut response = match sent {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => {
                    node.release();
                    let busy = r
                        .headers()
                        .get(NODE_REFUSAL_HEADER)
                        .is_some_and(|v| v.as_bytes() == NODE_BUSY.as_bytes());
                    if busy {
                        // Full of other gateways' requests: tried last for a while.
                        node.mark_busy(now_ms());
                        full += 1;
                    }
                    tracing::info!(status = %r.status(), busy, "node refused; trying the next candidate");
                    continue;
                }
                Err(e) => {
                    node.release();
                    if e.is_connect() {
                        // Gone (its process, its host or its link): dropped until it registers again.
                        g.registry.drop_node(&node.verified.rek.id());
                        tracing::info!("node unreachable; dropped, trying the next candidate");
                    } else {
                        node.set_reachable(false);
                        tracing::info!("node failed before answering; trying the next candidate");
                    }
                    continue;
                }
            };
            node.set_reachable(true);
            let (tx, rx) = mpsc::channel(32);
            tokio::spawn(async move {
                loop {
                    match response.chunk().await {
                        Ok(Some(bytes)) => {
                            if tx.send(bytes).await.is_err() {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            // The node's answer broke off: its process or its link is gone.
                            node.set_reachable(false);
                            break;
                        }
                    }
                }
                node.release();
            });
            return InnerAnswer::Stream(rx);
        }
        // Every candidate full: the request waits for a place (a bounded time, looking again
        // at least every PLACE_POLL for nodes that refused as busy), then is answered busy.
        let left = waiting_until.saturating_duration_since(tokio::time::Instant::now());
        if full == 0 || left.is_zero() {
            break;
        }
        let _ = tokio::time::timeout(left.min(PLACE_POLL), freed).await;
    }
    if full > 0 {
        return inner_json(
            503,
            serde_json::to_value(BusyAnswer::new(redeemed.is_some())).unwrap_or_default(),
        );
    }
    inner_json(
        503,
        serde_json::json!({ "error": "no candidate node is available" }),
    )
}
