//! The oblivious relay (RFC 9458 §2): forwards encapsulated requests to one configured gateway,
//! passing on only the body and its media type, and answers with the gateway's body and media
//! type. It sees the client's address but nothing inside; the gateway sees only the relay.
//!
//! It is not an open proxy: each forwarded request must carry `Authorization: PrivateToken
//! token="<base64url>"` with an OTT (RFC 9577 §2.2) that verifies under the logged OTT issuer key
//! and has not been spent at this relay (its own set: a SQLite file, or PostgreSQL shared by the
//! relay's replicas). Clients spend a different OTT at the relay than inside the request for the
//! gateway. Clients talk HTTP/2 (or HTTP/1.1) to it. Nothing about requests is logged.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use arcane_verifier::tokens::{OTT_ISSUER, Token, TokenChallenge};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;

use crate::proven::LoggedOttKeys;
use crate::server::{
    DEFAULT_BODY_TIMEOUT, MAX_OHTTP_REQUEST, OHTTP_CHUNKED_REQ, OHTTP_REQ, now_seconds, read_body,
};
use crate::store::TokenStore;
use crate::tokens::{reason, spend};

/// The relay's state.
pub struct Relay {
    /// The gateway's base URL.
    pub gateway: String,
    /// The OTT issuer keys the log vouches for (several during a rotation), as of the last
    /// refresh; each use re-checks the key's window.
    ott_keys: RwLock<Arc<LoggedOttKeys>>,
    /// Spent tokens (shared by the relay's replicas on PostgreSQL).
    pub store: TokenStore,
    /// Client towards the gateway (no redirects).
    pub http: reqwest::Client,
    /// Where the OTT keys come from, for a refresh when a token names a key not on hand.
    log: Option<(arcane_log_client::LogClient, crate::proven::LogTrust)>,
    /// When the keys were last fetched on demand (at most once a second).
    last_on_demand: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Relay {
    /// Lets the relay fetch its OTT keys from `log` at once when a token names a key it does
    /// not hold (a key published since its last refresh), at most once a second.
    pub fn refresh_from(
        mut self,
        log: arcane_log_client::LogClient,
        trust: crate::proven::LogTrust,
    ) -> Self {
        self.log = Some((log, trust));
        self
    }

    /// Fetches the OTT keys now, unless that was done less than a second ago.
    async fn refresh_on_demand(&self) {
        let Some((log, trust)) = &self.log else {
            return;
        };
        {
            let mut last = self.last_on_demand.lock().expect("refresh lock");
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        if let Ok(entries) =
            crate::proven::bundles_of_kind(log, trust, "token-key", now_seconds()).await
        {
            self.replace_ott_keys(LoggedOttKeys::from_entries(&entries));
        }
    }

    /// A relay in front of `gateway`.
    pub fn new(
        gateway: String,
        ott_keys: LoggedOttKeys,
        store: TokenStore,
        http: reqwest::Client,
    ) -> Self {
        Relay {
            gateway,
            ott_keys: RwLock::new(Arc::new(ott_keys)),
            store,
            http,
            log: None,
            last_on_demand: std::sync::Mutex::new(None),
        }
    }

    /// Replaces the OTT keys (after a refresh from the log).
    pub fn replace_ott_keys(&self, keys: LoggedOttKeys) {
        *self.ott_keys.write().expect("OTT keys lock") = Arc::new(keys);
    }

    fn ott_keys(&self) -> Arc<LoggedOttKeys> {
        Arc::clone(&self.ott_keys.read().expect("OTT keys lock"))
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

/// The relay's routes.
pub fn router(relay: Arc<Relay>) -> Router {
    Router::new()
        .route(
            "/.well-known/ohttp-gateway",
            get(forward_keys).post(forward),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_OHTTP_REQUEST))
        .with_state(relay)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("PrivateToken"),
        );
    }
    r
}

/// The token in `Authorization: PrivateToken token="…"` (quotes optional), base64url.
pub fn private_token(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let params = value.strip_prefix("PrivateToken ")?;
    let token = params
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("token="))?
        .trim_matches('"');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .ok()
}

async fn redeem(relay: &Relay, headers: &HeaderMap) -> Result<(), Response> {
    let bytes = private_token(headers)
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "a PrivateToken is required"))?;
    let token =
        Token::decode(&bytes).map_err(|e| refuse(StatusCode::UNAUTHORIZED, &e.to_string()))?;
    let now = now_seconds();
    if relay.ott_keys().valid(&token.token_key_id, now).is_none() {
        // Perhaps a key published since the last refresh: look once more.
        relay.refresh_on_demand().await;
    }
    let keys = relay.ott_keys();
    let (key, expires_at) = keys.valid(&token.token_key_id, now).ok_or_else(|| {
        refuse(
            StatusCode::UNAUTHORIZED,
            "the token is from an unknown or expired issuer key",
        )
    })?;
    token
        .verify(key, &TokenChallenge::for_issuer(OTT_ISSUER))
        .map_err(|e| refuse(StatusCode::UNAUTHORIZED, &e.to_string()))?;
    match spend(&relay.store, "relay", &token.nonce, expires_at, now).await {
        Ok(()) => Ok(()),
        Err(r) if r.reason == reason::SPENT => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "this token was already spent",
        )),
        Err(_) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable",
        )),
    }
}

async fn forward_keys(State(relay): State<Arc<Relay>>) -> Response {
    match relay
        .http
        .get(format!("{}/.well-known/ohttp-gateway", relay.gateway))
        .timeout(Duration::from_secs(20))
        .send()
        .await
    {
        Ok(r) => pass_back(r),
        Err(_) => refuse(StatusCode::BAD_GATEWAY, "the gateway is unreachable"),
    }
}

async fn forward(State(relay): State<Arc<Relay>>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(body, MAX_OHTTP_REQUEST, DEFAULT_BODY_TIMEOUT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != OHTTP_REQ && content_type != OHTTP_CHUNKED_REQ {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected an encapsulated request",
        );
    }
    if let Err(r) = redeem(&relay, &headers).await {
        return r;
    }
    // Only the body and its media type go on: no client address, no other header.
    match relay
        .http
        .post(format!("{}/.well-known/ohttp-gateway", relay.gateway))
        .header(header::CONTENT_TYPE, content_type)
        .timeout(Duration::from_secs(600))
        .body(body)
        .send()
        .await
    {
        Ok(r) => pass_back(r),
        Err(_) => refuse(StatusCode::BAD_GATEWAY, "the gateway is unreachable"),
    }
}

/// The gateway's status, media type and (streamed) body; nothing else.
fn pass_back(response: reqwest::Response) -> Response {
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let mut out = Response::new(Body::from_stream(response.bytes_stream()));
    *out.status_mut() = status;
    if let Some(ct) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    out
}
