//! Any relay: the client through relays that are not ours, over 127.0.0.1 against the demo
//! stack. The relay here is written from RFC 9458 §2 alone — it forwards the encapsulated
//! request's body and media type to one gateway and the answer's status, media type and body
//! back, and adds nothing — and knows nothing of our tokens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arcane_cli::demo::Stack;
use arcane_client::receipts::read_all;
use arcane_client::{ChatEvent, Client, Route};
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

mod common;
use common::{client_with, redeemed_at_gateway, stack};

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

/// The stack's trust file with its relay line replaced by `relays`.
fn relays_instead(relays: String) -> impl FnOnce(String) -> String {
    move |text| {
        let ours = text
            .lines()
            .find(|l| l.starts_with("relay = "))
            .expect("the stack's trust file names its relay")
            .to_owned();
        text.replace(&ours, &relays)
    }
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
    // Each of the chats (and the one node list) went through one of the two; both were used
    // (all 17 through one relay: 2 in 2^17).
    let through_other = seen.forwarded.load(Ordering::SeqCst);
    assert!(
        through_other > 0 && through_other < chats + 1,
        "{through_other} of {} through the other relay",
        chats + 1
    );
}
