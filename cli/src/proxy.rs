//! `arcane proxy`: an OpenAI-compatible endpoint on loopback for any OpenAI client, unmodified.
//! Every request runs every check of the SDK before its DEK is wrapped, exactly as `arcane chat`
//! does, and spends its tokens the same way; the request and reply shapes are
//! [`arcane_verifier::openai`]'s. Each answer carries its verification record (the checks passed,
//! the checkpoint, the release, the model digest, the node's document and REK) in an
//! `arcane_verification` field clients ignore, and the latest is at `GET /v1/verification`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use arcane_client::{ChatEvent, Client, ClientError, Passed, Route, Summary};
use arcane_verifier::openai::{
    self, ApiError, DONE_EVENT, MAX_REQUEST_BYTES, chunk_event, completion, error_event,
};

/// How the proxy is exposed.
#[derive(Clone, Debug, Default)]
pub struct ProxyOptions {
    /// When set, callers must send `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Allow a listening address beyond loopback (off: the proxy holds the user's tokens).
    pub allow_remote: bool,
}

struct Proxy {
    client: tokio::sync::Mutex<Client>,
    /// The checks passed by the request in progress (the client is locked per request).
    passed: Arc<Mutex<Vec<Passed>>>,
    api_key_digest: Option<[u8; 32]>,
    latest: Mutex<Option<Value>>,
}

/// A proxy being served; dropping it stops it.
pub struct RunningProxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RunningProxy {
    /// `http://host:port`, the base URL without `/v1`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, axum::Json(error.to_json())).into_response()
}

/// What an OpenAI client is told when the SDK refuses or fails: a failed check is the upstream's
/// fault (502, its check named), never a 500.
pub fn api_error(e: &ClientError) -> ApiError {
    let (status, kind, code) = match e {
        ClientError::Refused { check, .. } => (502, "verification_error", check.name().to_owned()),
        ClientError::SplitView { .. } => (502, "verification_error", "split_view".into()),
        ClientError::TokensExhausted(_) => (429, "rate_limit_error", "tokens_exhausted".into()),
        ClientError::TokenRefused { .. } => (502, "token_error", "token_refused".into()),
        ClientError::Unreachable { service, .. } => {
            (503, "service_unavailable", format!("{service}_unreachable"))
        }
        ClientError::Status { service, .. } => (502, "upstream_error", format!("{service}_status")),
        ClientError::Node { kind, .. } if kind == "invalid_request_error" => {
            (400, "invalid_request_error", "node_refused".into())
        }
        ClientError::Node { kind, .. } if kind == "busy" => {
            (503, "service_unavailable", "busy".into())
        }
        ClientError::Node { .. } => (502, "upstream_error", "node_error".into()),
        ClientError::Answer(_) | ClientError::Interrupted { .. } | ClientError::Verifier(_) => {
            (502, "upstream_error", "answer_rejected".into())
        }
        ClientError::Config(_) | ClientError::State { .. } | ClientError::Local(_) => {
            (500, "server_error", "proxy_error".into())
        }
    };
    ApiError {
        status,
        message: e.to_string(),
        kind,
        param: None,
        code: Some(code),
    }
}

fn authorized(proxy: &Proxy, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &proxy.api_key_digest else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Digests compared, so the comparison says nothing about the key's bytes.
    if <[u8; 32]>::from(Sha256::digest(given.as_bytes())) == *expected {
        return Ok(());
    }
    Err(ApiError {
        status: 401,
        message: "a valid API key for this proxy is required".into(),
        kind: "authentication_error",
        param: None,
        code: Some("invalid_api_key".into()),
    })
}

fn now_seconds() -> u64 {
    arcane_client::session::now_ms() / 1000
}

fn answer_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("operating system randomness");
    format!("chatcmpl-{}", hex::encode(bytes))
}

/// The verification record of one answer (the checks it passed and its receipt), kept as the
/// latest.
fn record_answer(proxy: &Proxy, passed: &[Passed], summary: &Summary) -> Value {
    let record = json!({
        "checks": passed,
        "receipt": summary.receipt,
    });
    *proxy.latest.lock().expect("latest") = Some(record.clone());
    record
}

async fn chat_completions(
    State(proxy): State<Arc<Proxy>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = authorized(&proxy, &headers) {
        return reply(&e);
    }
    let (request, stream) = match openai::parse_chat_request(&body) {
        Ok(parsed) => parsed,
        Err(e) => return reply(&e),
    };
    let model = request.model.clone();
    // The checks this request passed are collected while it holds the client.
    let (answer, passed) = {
        let mut client = proxy.client.lock().await;
        proxy.passed.lock().expect("passed").clear();
        let answer = client.chat(request, Route::Cloud).await;
        (
            answer,
            std::mem::take(&mut *proxy.passed.lock().expect("passed")),
        )
    };
    let mut answer = match answer {
        Ok(answer) => answer,
        Err(e) => return reply(&api_error(&e)),
    };
    let (id, created) = (answer_id(), now_seconds());
    if !stream {
        let mut text = String::new();
        while let Some(event) = answer.next().await {
            match event {
                Ok(ChatEvent::Delta(d)) => text.push_str(&d),
                Ok(ChatEvent::Done(summary)) => {
                    let record = record_answer(&proxy, &passed, &summary);
                    let body = completion(
                        &id,
                        created,
                        &model,
                        &text,
                        summary.finish_reason.as_deref(),
                        summary.usage.as_ref(),
                        Some(&record),
                    );
                    return axum::Json(body).into_response();
                }
                Err(e) => return reply(&api_error(&e)),
            }
        }
        return reply(&api_error(&ClientError::Interrupted {
            chunks: 0,
            reason: "the answer ended without a summary".into(),
        }));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let send = |text: String| {
            let tx = tx.clone();
            async move { tx.send(Ok(Bytes::from(text))).await.is_ok() }
        };
        while let Some(event) = answer.next().await {
            let more = match event {
                Ok(ChatEvent::Delta(d)) => {
                    send(chunk_event(
                        &id,
                        created,
                        &model,
                        Some(&d),
                        None,
                        None,
                        None,
                    ))
                    .await
                }
                Ok(ChatEvent::Done(summary)) => {
                    let record = record_answer(&proxy, &passed, &summary);
                    let last = chunk_event(
                        &id,
                        created,
                        &model,
                        None,
                        Some(summary.finish_reason.as_deref().unwrap_or("stop")),
                        summary.usage.as_ref(),
                        Some(&record),
                    );
                    let _ = send(last).await && send(DONE_EVENT.to_owned()).await;
                    return;
                }
                Err(e) => {
                    let _ = send(error_event(&api_error(&e))).await;
                    return;
                }
            };
            if !more {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn models(State(proxy): State<Arc<Proxy>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorized(&proxy, &headers) {
        return reply(&e);
    }
    let preflight = {
        let mut client = proxy.client.lock().await;
        let preflight = client.preflight(None).await;
        proxy.passed.lock().expect("passed").clear();
        preflight
    };
    match preflight {
        Ok(p) => {
            let mut names: Vec<String> = p.candidates.iter().map(|c| c.model.clone()).collect();
            names.sort();
            names.dedup();
            axum::Json(openai::model_list(&names, now_seconds())).into_response()
        }
        Err(e) => reply(&api_error(&e)),
    }
}

async fn latest_verification(State(proxy): State<Arc<Proxy>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorized(&proxy, &headers) {
        return reply(&e);
    }
    match proxy.latest.lock().expect("latest").clone() {
        Some(record) => axum::Json(record).into_response(),
        None => reply(&ApiError {
            status: 404,
            message: "no answer yet".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("not_found".into()),
        }),
    }
}

/// Serves `client` on `listener` with the default connection limits until the returned handle
/// is dropped. Refuses an address beyond loopback unless `options.allow_remote`.
pub fn start(
    mut client: Client,
    listener: tokio::net::TcpListener,
    options: ProxyOptions,
) -> Result<RunningProxy, ClientError> {
    let addr = listener
        .local_addr()
        .map_err(|e| ClientError::Config(format!("proxy socket: {e}")))?;
    if !addr.ip().is_loopback() && !options.allow_remote {
        return Err(ClientError::Config(format!(
            "{addr} is not a loopback address; the proxy spends this user's tokens — pass \
             --allow-remote (and set --api-key) to listen there"
        )));
    }
    let passed = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&passed);
    client.on_passed(move |p| seen.lock().expect("passed").push(p.clone()));
    let proxy = Arc::new(Proxy {
        client: tokio::sync::Mutex::new(client),
        passed,
        api_key_digest: options
            .api_key
            .as_deref()
            .map(|k| Sha256::digest(k.as_bytes()).into()),
        latest: Mutex::new(None),
    });
    let router = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/v1/verification", get(latest_verification))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(proxy);
    let task = tokio::spawn(async move {
        if let Err(e) = arcane_serve::serve(
            listener,
            router,
            arcane_serve::ServeLimits::default(),
            std::future::pending(),
        )
        .await
        {
            eprintln!("arcane proxy: {e}");
        }
    });
    Ok(RunningProxy { addr, task })
}
