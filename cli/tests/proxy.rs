//! `arcane proxy` end to end over 127.0.0.1 against the demo stack (tiny generated model): an
//! OpenAI-shaped chat, streamed as server-sent events and whole, with its verification record;
//! the models list; refusals arriving as OpenAI errors with the right status (a failed check is a
//! 502 naming the check, an unsupported field a 400 naming the field, a missing key a 401).

use arcane_cli::proxy::{ProxyOptions, start};
use serde_json::{Value, json};

mod common;
use common::{impostor_log_key, proxy_with as proxy, stack};

fn chat(stream: bool) -> Value {
    json!({
        "model": "",
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 24,
        // Greedy, so that the streamed answer can be compared with the whole one.
        "temperature": 0,
        "stream": stream,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_shaped_chats_streamed_and_whole_with_their_verification() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let proxy = proxy(&stack, |t| t, ProxyOptions::default()).await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", proxy.url());

    // Whole.
    let response = http.post(&url).json(&chat(false)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    let whole = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    let record = &body["arcane_verification"];
    let checks: Vec<&str> = record["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for check in [
        "checkpoint",
        "consistency",
        "ohttp-keys",
        "token-keys",
        "nodes",
    ] {
        assert!(checks.contains(&check), "{check} missing from {checks:?}");
    }
    let receipt = &record["receipt"];
    assert_eq!(receipt["outcome"], "answered");
    let node = stack.node.as_ref().unwrap();
    assert_eq!(receipt["rek_id"], hex::encode(node.node.rek().id()));

    // Streamed: server-sent events, deltas, a last chunk with usage and the record, then [DONE].
    let response = http.post(&url).json(&chat(true)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .expect("every event is a data line")
        })
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.len() >= 3, "the answer streams in pieces: {text}");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    // Greedy decoding: the streamed answer is the whole one, piece by piece.
    assert_eq!(streamed, whole);
    let last = chunks.last().unwrap();
    assert!(last["choices"][0]["finish_reason"].is_string());
    assert_eq!(
        last["arcane_verification"]["receipt"]["outcome"],
        "answered"
    );

    // The latest record, and the models the verified nodes serve.
    let get = |path: &str| {
        let request = http.get(format!("{}{path}", proxy.url()));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let latest = get("/v1/verification").await;
    assert_eq!(latest, last["arcane_verification"]);
    let models = get("/v1/models").await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], stack.model.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_arrive_as_openai_errors() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let http = reqwest::Client::new();

    // A checkpoint signed by another key: 502, naming the check, streamed or not.
    let refusing = proxy(&stack, impostor_log_key(&stack), ProxyOptions::default()).await;
    for stream in [false, true] {
        let response = http
            .post(format!("{}/v1/chat/completions", refusing.url()))
            .json(&chat(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "verification_error");
        assert_eq!(body["error"]["code"], "checkpoint");
    }

    // An unsupported field: 400 naming it, before anything is fetched.
    let proxy = proxy(
        &stack,
        |t| t,
        ProxyOptions {
            api_key: Some("local-secret".into()),
            allow_remote: false,
        },
    )
    .await;
    let url = format!("{}/v1/chat/completions", proxy.url());
    let mut with_tools = chat(false);
    with_tools["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    let response = http
        .post(&url)
        .bearer_auth("local-secret")
        .json(&with_tools)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "tools");
    assert_eq!(body["error"]["code"], "unsupported_parameter");

    // Without the key, or with another: 401.
    for key in [None, Some("guess")] {
        let mut request = http.post(&url).json(&chat(false));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    // With it, answered.
    let response = http
        .post(&url)
        .bearer_auth("local-secret")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_stays_on_loopback_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let refused = start(
        common::client_with(&stack, |t| t),
        listener,
        ProxyOptions::default(),
    );
    assert!(
        refused
            .err()
            .unwrap()
            .to_string()
            .contains("not a loopback address")
    );
}
