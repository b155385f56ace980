//! HTTP/3 against HTTP/2 to the relay, in one run: the same relay (ours, TLS with a test CA,
//! HTTP/3 on the same port), the same stack behind it (gateway, node; every check in the client
//! included), one client per protocol. Measured, interleaved round by round so that both see the
//! same machine:
//!
//! 1. time to first token of a chat (median), each protocol's connection already open;
//! 2. requests per second, one chat in flight, then two clients at once (each its own state: the identity service grants one account 8 TGTs a period, three protocols × two clients stay within it).
//!
//! The baseline is HTTP/2 over TLS to the same relay (what a client that does not speak HTTP/3
//! gets); plain HTTP/1.1 to the demo's cleartext relay is printed beside it.
//!
//! `cargo test --workspace --bench relay_http3_bench`; `ARCANE_BENCH_MODEL=/path/model.gguf`
//! serves another model (in a directory of its own), `ARCANE_BENCH_REQUESTS` (default 24) chats
//! per protocol and measure (the production token limits — 8 TGTs an account a period, 256 OTTs
//! a TGT — bound it to about 60), `ARCANE_BENCH_TOKENS` (default 8) tokens per answer. Lines
//! starting `summary |` are rows of `bench/all.sh`'s table.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use arcane_cli::demo::{Stack, StackOptions};
use arcane_client::{ChatEvent, Client, ClientConfig, Route, Trust};
use arcane_gateway::service::Transport;
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn request(max_tokens: u32) -> ChatCompletionRequest {
    ChatCompletionRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "Write a short story about a lighthouse keeper.".into(),
        }],
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        ..Default::default()
    }
}

/// One chat to its end: its time to first token.
async fn chat(client: &mut Client, max_tokens: u32) -> Duration {
    let started = Instant::now();
    let mut answer = client
        .chat(request(max_tokens), Route::Cloud)
        .await
        .unwrap();
    let mut first = None;
    while let Some(event) = answer.next().await {
        if let ChatEvent::Delta(_) = event.unwrap() {
            first.get_or_insert_with(|| started.elapsed());
        }
    }
    first.unwrap_or_else(|| started.elapsed())
}

/// A client of `stack` through the relay `relays` names, its state in `state`.
fn client(stack: &Stack, relays: String, state: &std::path::Path) -> Client {
    let text = common::relays_instead(relays)(std::fs::read_to_string(&stack.trust_file).unwrap());
    let trust = Trust::from_toml(&text, stack.trust_file.parent().unwrap()).unwrap();
    let mut config = ClientConfig::new(trust);
    config.state_root = state.to_path_buf();
    Client::new(config).unwrap()
}

/// Requests per second of `clients` running `each` chats at once.
async fn rate(clients: &mut [Client], each: usize, max_tokens: u32) -> f64 {
    let started = Instant::now();
    let runs = clients.iter_mut().map(|c| async move {
        for _ in 0..each {
            chat(c, max_tokens).await;
        }
    });
    futures::future::join_all(runs).await;
    (clients.len() * each) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("ARCANE_BENCH_REQUESTS", 24).max(4);
    let max_tokens = env_usize("ARCANE_BENCH_TOKENS", 8) as u32;
    let dir = tempfile::tempdir().unwrap();
    let model = match std::env::var_os("ARCANE_BENCH_MODEL") {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let p = dir.path().join("tiny.gguf");
            arcane_engine::gguf::write_tiny_llama(&p, &Default::default()).unwrap();
            p
        }
    };
    let stack = Stack::start(StackOptions::new(dir.path().join("stack"), model), &|_| {})
        .await
        .unwrap();
    let identity = common::test_ca(&stack);
    let relay = common::our_relay(&stack, "relay-h3", Transport::TlsAndHttp3(identity)).await;
    let protocols = [
        ("HTTP/3", common::over_tls(&relay, true)),
        ("HTTP/2", common::over_tls(&relay, false)),
        (
            "HTTP/1.1 (cleartext)",
            format!("relay = \"{}\"", stack.relay.url()),
        ),
    ];
    let mut clients: Vec<Vec<Client>> = protocols
        .iter()
        .enumerate()
        .map(|(p, (_, relays))| {
            (0..2)
                .map(|i| {
                    client(
                        &stack,
                        relays.clone(),
                        &dir.path().join(format!("state-{p}-{i}")),
                    )
                })
                .collect()
        })
        .collect();
    // Warm: tokens, caches and each protocol's connection.
    for group in clients.iter_mut() {
        for c in group.iter_mut() {
            chat(c, max_tokens).await;
        }
    }
    let mut ttft = vec![Vec::new(); protocols.len()];
    for _ in 0..n {
        for (p, group) in clients.iter_mut().enumerate() {
            ttft[p].push(chat(&mut group[0], max_tokens).await);
        }
    }
    let rounds = 3;
    let mut one = vec![Vec::new(); protocols.len()];
    let mut four = vec![Vec::new(); protocols.len()];
    for _ in 0..rounds {
        for (p, group) in clients.iter_mut().enumerate() {
            one[p].push(rate(&mut group[..1], n / rounds, max_tokens).await);
            four[p].push(rate(&mut group[..], (n / rounds / 2).max(1), max_tokens).await);
        }
    }
    let med = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "through our relay (TLS 1.3, test CA) + gateway + node, {max_tokens} tokens per answer, \
         {n} chats per TTFT measure, medians of {rounds} rounds for requests/s"
    );
    println!(
        "| protocol to the relay | TTFT (median) | req/s, 1 at once | req/s, 2 clients at once |"
    );
    println!("|---|---|---|---|");
    for (p, (name, _)) in protocols.iter().enumerate() {
        println!(
            "| {name} | {:.1} ms | {:.1} | {:.1} |",
            median(ttft[p].clone()).as_secs_f64() * 1e3,
            med(&one[p]),
            med(&four[p]),
        );
    }
    let (h3, h2) = (median(ttft[0].clone()), median(ttft[1].clone()));
    println!(
        "summary | relay over HTTP/3: TTFT | {:.1} ms | HTTP/2 {:.1} ms | {:.2}× | report | — |",
        h3.as_secs_f64() * 1e3,
        h2.as_secs_f64() * 1e3,
        h3.as_secs_f64() / h2.as_secs_f64()
    );
    println!(
        "summary | relay over HTTP/3: req/s, 2 clients | {:.1} | HTTP/2 {:.1} | {:.2}× | report | — |",
        med(&four[0]),
        med(&four[1]),
        med(&four[0]) / med(&four[1])
    );
    drop(clients);
    relay.shutdown().await.unwrap();
    stack.shutdown().await;
}
