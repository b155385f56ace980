//! Any relay: the client through relays that are not ours, and through ours over HTTPS and
//! HTTP/3, over 127.0.0.1 against the demo stack. The third-party relay here is written from
//! RFC 9458 §2 alone — it forwards the encapsulated request's body and media type to one gateway
//! and the answer's status, media type and body back, and adds nothing — and knows nothing of our
//! tokens. Our relay's certificate comes from a test CA the trust file names (`tls_roots`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arcane_cli::demo::Stack;
use arcane_client::receipts::read_all;
use arcane_client::{ChatEvent, Client, Route};
use arcane_gateway::service::Transport;
use arcane_serve::tls::TlsIdentity;
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

mod common;
use common::{
    client_with, our_relay, over_tls, redeemed_at_gateway, relays_instead, spent, stack, test_ca,
};

/// What the minimal relay saw.
#[derive(Default)]
struct Seen {
    /// Requests forwarded.
    forwarded: AtomicUsize,
    /// The header names of every request it was sent.
    headers: Mutex<Vec<Vec<String>>>,
}

struct MinimalRelay {
    gateway: String,
    /// The media types it forwards (RFC 9458 names only `message/ohttp-req`).
    media_types: &'static [&'static str],
    http: reqwest::Client,
    seen: Arc<Seen>,
}

async fn forward(
    State(relay): State<Arc<MinimalRelay>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    relay
        .seen
        .headers
        .lock()
        .unwrap()
        .push(headers.keys().map(|k| k.as_str().to_owned()).collect());
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !relay.media_types.contains(&media_type) {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let Ok(answer) = relay
        .http
        .post(format!("{}/.well-known/ohttp-gateway", relay.gateway))
        .header(header::CONTENT_TYPE, media_type)
        .body(body)
        .send()
        .await
    else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    relay.seen.forwarded.fetch_add(1, Ordering::SeqCst);
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let media_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let mut out = Response::new(Body::from_stream(answer.bytes_stream()));
    *out.status_mut() = status;
    if let Some(t) = media_type {
        out.headers_mut().insert(header::CONTENT_TYPE, t);
    }
    out
}

/// A relay resource at `http://127.0.0.1:PORT/arcane` in front of `stack`'s gateway.
async fn minimal_relay(stack: &Stack, media_types: &'static [&'static str]) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let relay = Arc::new(MinimalRelay {
        gateway: stack.gateway.url(),
        media_types,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        seen: Arc::clone(&seen),
    });
    let router = axum::Router::new()
        .route("/arcane", axum::routing::post(forward))
        .with_state(relay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/arcane", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

fn request(prompt: &str) -> ChatCompletionRequest {
    ChatCompletionRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: prompt.into(),
        }],
        max_tokens: Some(16),
        temperature: Some(0.0),
        ..Default::default()
    }
}

/// One chat to its end: its text and how many deltas carried it; a receipt is required.
async fn chat(client: &mut Client, prompt: &str) -> (String, usize) {
    let mut answer = client.chat(request(prompt), Route::Cloud).await.unwrap();
    let (mut text, mut deltas, mut receipt) = (String::new(), 0, None);
    while let Some(event) = answer.next().await {
        match event.unwrap() {
            ChatEvent::Delta(d) => {
                deltas += 1;
                text.push_str(&d);
            }
            ChatEvent::Done(s) => receipt = s.receipt,
        }
    }
    let receipt = receipt.expect("a verified answer has a receipt");
    assert!(
        receipt.signed_answer.is_some(),
        "the node signed the answer"
    );
    (text, deltas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_chat_goes_through_a_relay_that_knows_nothing_of_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let (url, seen) =
        minimal_relay(&stack, &["message/ohttp-req", "message/ohttp-chunked-req"]).await;
    let mut client = client_with(
        &stack,
        relays_instead(format!("relays = [{{ url = \"{url}\" }}]")),
    );
    let (text, deltas) = chat(&mut client, "Hello through another relay").await;
    assert!(!text.is_empty());
    assert!(
        deltas >= 2,
        "the answer streamed through it ({deltas} deltas)"
    );
    // The node list and the chat both went through it, and the gateway redeemed the chat's OTT.
    assert_eq!(seen.forwarded.load(Ordering::SeqCst), 2);
    assert_eq!(redeemed_at_gateway(&stack).await, 1);
    // No token was offered to a relay that takes none: only the gateway's OTT was spent.
    for names in seen.headers.lock().unwrap().iter() {
        assert!(!names.iter().any(|n| n == "authorization"), "{names:?}");
    }
    assert_eq!(read_all(client.state()).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_forwards_only_standard_requests_gets_whole_answers() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let (url, seen) = minimal_relay(&stack, &["message/ohttp-req"]).await;
    // Said to forward chunked requests, it refuses the chat: the client reports the relay's
    // status, and the gateway redeemed nothing.
    let mut misdescribed = client_with(
        &stack,
        relays_instead(format!("relays = [{{ url = \"{url}\" }}]")),
    );
    let e = misdescribed
        .chat(request("Hello"), Route::Cloud)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("415"), "{e}");
    assert_eq!(redeemed_at_gateway(&stack).await, 0);
    // Described as it is, the chat goes as a standard request and the answer arrives whole.
    let mut client = client_with(
        &stack,
        relays_instead(format!("relays = [{{ url = \"{url}\", chunked = false }}]")),
    );
    let (text, _) = chat(&mut client, "Hello through a strict relay").await;
    assert!(!text.is_empty());
    assert_eq!(redeemed_at_gateway(&stack).await, 1);
    assert!(seen.forwarded.load(Ordering::SeqCst) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_spread_at_random_over_ours_and_another_relay() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let (url, seen) =
        minimal_relay(&stack, &["message/ohttp-req", "message/ohttp-chunked-req"]).await;
    let ours = format!("{}/.well-known/ohttp-gateway", stack.relay.url());
    let mut client = client_with(
        &stack,
        relays_instead(format!(
            "relays = [{{ url = \"{ours}\", token = true }}, {{ url = \"{url}\" }}]"
        )),
    );
    let chats = 16;
    for i in 0..chats {
        chat(&mut client, &format!("Request {i}")).await;
    }
    assert_eq!(redeemed_at_gateway(&stack).await, chats as i64);
    // Each chat and node list went through one of the two, and both were used (all through one
    // relay: 2 in 2^16 at most).
    let through_other = seen.forwarded.load(Ordering::SeqCst) as i64;
    let through_ours = spent(&stack, "relay/relay.db", "relay").await;
    assert!(
        through_other > 0 && through_ours > 0,
        "{through_other} and {through_ours}"
    );
    assert!(through_other + through_ours > chats as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_chat_streams_over_http3_and_over_https_when_quic_is_not_answered() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let identity = test_ca(&stack);

    // Our relay on HTTPS and HTTP/3: the client asks over HTTP/3.
    let both = our_relay(&stack, "relay-h3", Transport::TlsAndHttp3(identity.clone())).await;
    assert!(both.url().starts_with("https://127.0.0.1:"));
    let mut client = client_with(&stack, relays_instead(over_tls(&both, true)));
    let (text, deltas) = chat(&mut client, "Hello over QUIC").await;
    assert!(!text.is_empty());
    assert!(
        deltas >= 2,
        "the answer streamed over HTTP/3 ({deltas} deltas)"
    );
    assert_eq!(redeemed_at_gateway(&stack).await, 1);

    // The same relay's HTTP/3 alone — nothing listens on its TCP port — answers too: the
    // chat above could have gone over QUIC, and this one can only have.
    let tcp_port_free = both.addr();
    both.shutdown().await.unwrap();
    let quic_only = quic_only_relay(&stack, tcp_port_free, &identity).await;
    let mut client = client_with(&stack, relays_instead(over_tls_at(tcp_port_free, true)));
    chat(&mut client, "Hello over QUIC alone").await;
    assert_eq!(redeemed_at_gateway(&stack).await, 2);
    quic_only.abort();

    // A relay said to offer HTTP/3 that does not: after the QUIC attempt times out, the chat
    // goes over HTTPS (HTTP/2); the next one goes there at once.
    let tls_only = our_relay(&stack, "relay-tls", Transport::Tls(identity)).await;
    let mut client = client_with(&stack, relays_instead(over_tls(&tls_only, true)));
    chat(&mut client, "Hello after falling back").await;
    chat(&mut client, "Hello again").await;
    assert_eq!(redeemed_at_gateway(&stack).await, 4);
    // Over plain HTTPS, said to speak only TCP, it answers as well.
    let mut client = client_with(&stack, relays_instead(over_tls(&tls_only, false)));
    chat(&mut client, "Hello over HTTPS").await;
    assert_eq!(redeemed_at_gateway(&stack).await, 5);
}

fn over_tls_at(addr: std::net::SocketAddr, http3: bool) -> String {
    format!(
        "relays = [{{ url = \"https://{addr}/.well-known/ohttp-gateway\", token = true, http3 = {http3} }}]\n\
         tls_roots = \"relay-ca.pem\""
    )
}

/// Our relay's routes served over HTTP/3 only, on UDP `addr`.
async fn quic_only_relay(
    stack: &Stack,
    addr: std::net::SocketAddr,
    identity: &TlsIdentity,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let log = arcane_log_client::LogClient::new(&stack.log_url).unwrap();
    let keys = arcane_gateway::proven::bundles_of_kind(
        &log,
        &stack.log_trust(),
        "token-key",
        common::now_ms() / 1000,
    )
    .await
    .unwrap();
    let store = arcane_gateway::store::TokenStore::open_file(
        &stack.options.data_dir.join("relay-quic-only.db"),
    )
    .await
    .unwrap();
    let relay = arcane_gateway::relay::Relay::new(
        stack.gateway.url(),
        arcane_gateway::proven::LoggedOttKeys::from_entries(&keys),
        store,
        reqwest::Client::new(),
    );
    let limits = arcane_serve::ServeLimits::default();
    // The port's last owner may hold it a moment longer.
    let mut endpoint = arcane_serve::http3::endpoint(addr, identity, limits);
    for _ in 0..50 {
        if endpoint.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        endpoint = arcane_serve::http3::endpoint(addr, identity, limits);
    }
    let endpoint = endpoint.unwrap();
    tokio::spawn(arcane_serve::http3::serve(
        endpoint,
        arcane_gateway::relay::router(Arc::new(relay)),
        limits,
        std::future::pending(),
    ))
}
