//! The node's HTTP API, the same over TCP (development) and vsock (inside an enclave).
//!
//! - `GET /v1/attestation[?nonce=HEX]`: the node bundle (JSON, `spec/attestation.md`); with a
//!   nonce (at most 64 bytes), a fresh document carrying it; with `?registration=HEX&for=URL`
//!   (a gateway's registration challenge), a fresh document carrying
//!   `registration_nonce(challenge, URL)` — only for a URL this node registered under.
//! - `POST /v1/infer`: body `wrapped DEK (120 bytes) ‖ request ciphertext`; answer `200` with the
//!   sealed stream (`spec/sealed.md`), or a refusal before anything is opened or generated:
//!   `503` busy or not serving, `421` another REK, `409` replayed, `400` malformed or stale.
//! - `GET /v1/status`: model, digest, capacity, requests in flight, serving or why not.
//! - `GET /healthz`.

use std::sync::Arc;

use arcane_verifier::sealed::{MAX_REQUEST_CIPHERTEXT, WRAPPED_DEK_LEN};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::node::{Node, Refusal};

/// Media type of a sealed request body.
pub const SEALED_REQUEST_TYPE: &str = "application/arcane-sealed-request";
/// Media type of a sealed answer stream.
pub const SEALED_STREAM_TYPE: &str = "application/arcane-sealed-stream";
/// Header naming why a request was refused, so the gateway can route around without parsing
/// bodies.
pub use arcane_verifier::envelope::NODE_REFUSAL_HEADER as REFUSAL_HEADER;
/// Header in which the gateway forwards the nonce of the OTT it checked (hex).
pub const OTT_NONCE_HEADER: &str = "arcane-ott-nonce";
/// Longest challenge nonce, in bytes.
pub const MAX_NONCE_BYTES: usize = 64;

/// Serves `node`'s API on a TCP listener under `limits` until `shutdown` completes, with
/// TCP_NODELAY on every connection (chunks are small and latency matters: without it TTFT
/// through the node was +16 ms).
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    node: Arc<Node>,
    limits: arcane_serve::ServeLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    arcane_serve::serve(listener, router(node), limits, shutdown).await
}

/// The node's routes.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/v1/attestation", get(attestation))
        .route("/v1/infer", post(infer))
        .route("/v1/status", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(
            WRAPPED_DEK_LEN + MAX_REQUEST_CIPHERTEXT,
        ))
        .with_state(node)
}

fn json_error(status: StatusCode, refusal: &'static str, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(serde_json::json!({ "error": message, "refusal": refusal })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(REFUSAL_HEADER, HeaderValue::from_static(refusal));
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NonceQuery {
    nonce: Option<String>,
    /// A gateway's registration challenge (hex), with `for`: the URL it is for.
    registration: Option<String>,
    #[serde(rename = "for")]
    for_url: Option<String>,
}

fn challenge_bytes(hex_nonce: &str) -> Option<Vec<u8>> {
    hex::decode(hex_nonce)
        .ok()
        .filter(|n| !n.is_empty() && n.len() <= MAX_NONCE_BYTES)
}

async fn attestation(
    State(node): State<Arc<Node>>,
    query: Result<Query<NonceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "the only parameter is nonce",
        );
    };
    let bad_nonce = || {
        json_error(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "a nonce or challenge must be 1 to 64 bytes in hex",
        )
    };
    let bundle = match (query.nonce, query.registration, query.for_url) {
        (None, None, None) => match node.attested() {
            Ok(a) => Ok(a.bundle),
            Err(why) => {
                return json_error(StatusCode::SERVICE_UNAVAILABLE, "not-serving", &why);
            }
        },
        (Some(hex_nonce), None, None) => {
            let Some(nonce) = challenge_bytes(&hex_nonce) else {
                return bad_nonce();
            };
            node.attest_with_nonce(&nonce)
        }
        (None, Some(hex_challenge), Some(url)) => {
            let Some(challenge) = challenge_bytes(&hex_challenge) else {
                return bad_nonce();
            };
            if url.len() > arcane_verifier::attested::MAX_NODE_URL_BYTES {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    "the URL is too long",
                );
            }
            match node.answer_registration(&challenge, &url) {
                Ok(bundle) => Ok(bundle),
                Err(e) => {
                    return json_error(StatusCode::FORBIDDEN, "not-mine", &e.to_string());
                }
            }
        }
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "either nonce, or registration with for",
            );
        }
    };
    match bundle {
        Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b.to_json()).into_response(),
        Err(e) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-serving",
            &e.to_string(),
        ),
    }
}

async fn infer(
    State(node): State<Arc<Node>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let gateway_ott_nonce = match headers.get(OTT_NONCE_HEADER) {
        None => None,
        Some(v) => match hex::decode(v.as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        {
            Some(n) => Some(n),
            None => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    "arcane-ott-nonce must be 64 hex digits",
                );
            }
        },
    };
    match node.serve(&body, gateway_ott_nonce) {
        Ok(mut rx) => {
            let stream = futures::stream::poll_fn(move |cx| {
                rx.poll_recv(cx)
                    .map(|frame| frame.map(|b| Ok::<_, std::io::Error>(Bytes::from(b))))
            });
            (
                [(header::CONTENT_TYPE, SEALED_STREAM_TYPE)],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Err(refusal) => refusal_response(&refusal),
    }
}

/// The HTTP answer for a refusal.
pub fn refusal_response(refusal: &Refusal) -> Response {
    match refusal {
        Refusal::Busy => {
            let mut r = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                arcane_verifier::envelope::NODE_BUSY,
                "every slot is taken",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Refusal::NotServing(why) => json_error(StatusCode::SERVICE_UNAVAILABLE, "not-serving", why),
        Refusal::UnknownRek => json_error(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown-rek",
            "the wrapped DEK is for another node's REK",
        ),
        Refusal::BadRequest(why) => json_error(StatusCode::BAD_REQUEST, "bad-request", why),
        Refusal::Replayed => json_error(
            StatusCode::CONFLICT,
            "replayed",
            "this request was already served",
        ),
        Refusal::Stale => json_error(
            StatusCode::BAD_REQUEST,
            "stale",
            "the request's issue time is outside the node's window",
        ),
    }
}

/// What `GET /v1/status` reports.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeStatus {
    /// The model name requests use.
    pub model: String,
    /// SHA-256 of the model file, hex.
    pub model_sha256: String,
    /// Requests served at once.
    pub capacity: usize,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Whether the node serves (a valid release proof and document).
    pub serving: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

async fn status(State(node): State<Arc<Node>>) -> Response {
    let attested = node.attested();
    axum::Json(NodeStatus {
        model: node.model().name.clone(),
        model_sha256: hex::encode(node.model().sha256),
        capacity: node.capacity(),
        in_flight: node.in_flight(),
        serving: attested.is_ok(),
        reason: attested.err(),
    })
    .into_response()
}
