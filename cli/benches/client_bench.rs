//! What the client costs, measured in one run against baselines from the same run:
//!
//! 1. warm per-request client cost — every check on already-seen inputs (cached signatures,
//!    proofs and chains; the policy evaluated again), the inner request sealed, the DEK wrapped,
//!    the envelope encapsulated for OHTTP; no network — against one raw HPKE seal of a DEK;
//! 2. the cold first request: the same with empty caches (every signature, proof and
//!    certificate chain verified);
//! 3. end to end through relay, gateway and node (every network check included) against the
//!    same mistral.rs model called directly in this process: time to first token and decode
//!    speed;
//! 4. requests per second with 1, 4 and 16 requests at once through one client (as the OpenAI
//!    proxy shares one) against the same number at once to mistral.rs directly, its sequences
//!    limited to the node's default capacity; a request the gateway answers "busy" is retried
//!    with backoff (50 ms doubling to 1 s) and counted.
//!
//! Lines starting `summary |` are rows of `bench/all.sh`'s table.
//!
//! `cargo test --workspace --bench client_bench` (the test profile optimises dependencies and
//! the verifier and client crates, see the workspace `Cargo.toml`; a release build of mistral.rs
//! takes ~25 min).
//! `ARCANE_BENCH_MODEL=/path/model.gguf` serves another model (in a directory of its own);
//! `ARCANE_BENCH_ROUNDS` (default 5) and `ARCANE_BENCH_TOKENS` (default 48) tune the end-to-end
//! part.

use std::time::{Duration, Instant};

use arcane_cli::demo::{Stack, StackOptions};
use arcane_client::checks::{Checks, ModelListing};
use arcane_client::transport::InnerHttp;
use arcane_client::{ChatEvent, Client, ClientConfig, ClientError, Route, Trust};
use arcane_engine::{EngineEvent, InferenceEngine, MistralEngine};
use arcane_verifier::inner::{
    ChatCompletionRequest, ChatMessage, InnerRequest, encode_inner_request,
};
use arcane_verifier::sealed::{self, RekSecret};
use arcane_verifier::tokens::{
    IssuerSecret, OTT_ISSUER, TGT_ISSUER, Token, TokenChallenge, TokenMaterial, ott_nonce,
    request_token, tgt_nonce,
};
use hpke::{Deserializable, OpModeS, Serializable};

const PROMPT: &str = "Write a short story about a lighthouse keeper.";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn chat(model: &str, max_tokens: u32) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: model.into(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: PROMPT.into(),
        }],
        max_tokens: Some(max_tokens),
        // Greedy (with the node's repetition penalty), like the node's inference benchmark.
        temperature: Some(0.0),
        stream: Some(true),
        ..Default::default()
    }
}

fn token(issuer: &IssuerSecret, challenge: &str, nonce: [u8; 32]) -> Token {
    let (request, pending) = request_token(
        issuer.public(),
        &TokenChallenge::for_issuer(challenge),
        nonce,
    )
    .unwrap();
    pending.finalize(&issuer.issue(&request).unwrap()).unwrap()
}

struct Inputs {
    note: Vec<u8>,
    keys: Vec<u8>,
    node: serde_json::Value,
    models: Vec<ModelListing>,
    material: TokenMaterial,
    request: ChatCompletionRequest,
}

/// Everything a request costs the client except the network.
fn per_request(checks: &mut Checks, inputs: &Inputs) -> usize {
    let now_ms = arcane_client::session::now_ms();
    checks.checkpoint(&inputs.note).unwrap();
    let keys = checks.keys(&inputs.keys, now_ms / 1000).unwrap();
    let candidate = checks.node(&inputs.node, &inputs.models, now_ms).unwrap();
    seal_and_encapsulate(inputs, &candidate.node.rek, &keys.ohttp_config)
}

/// The part no check can skip: the inner request sealed, the DEK wrapped (one HPKE seal), the
/// envelope encapsulated for OHTTP (a second HPKE seal).
fn seal_and_encapsulate(
    inputs: &Inputs,
    rek: &arcane_verifier::sealed::RekPublicKey,
    ohttp_config: &[u8],
) -> usize {
    let now_ms = arcane_client::session::now_ms();
    let inner = zeroize::Zeroizing::new(
        encode_inner_request(&InnerRequest {
            chat: inputs.request.clone(),
            token: Some(inputs.material.encode().to_vec()),
            badge: None,
        })
        .unwrap(),
    );
    let (wrapped, ciphertext, _opener) =
        sealed::seal_request(&inner, std::slice::from_ref(rek), now_ms / 1000).unwrap();
    let mut envelope = inputs.material.ott.encode();
    envelope.push(1);
    envelope.extend_from_slice(&wrapped[0].encode());
    envelope.extend_from_slice(&ciphertext);
    let bhttp = InnerHttp {
        method: "POST",
        path: "/v1/chat",
        headers: &[],
        body: &envelope,
    }
    .encode()
    .unwrap();
    let (encapsulated, _response) = ohttp::ClientRequest::from_encoded_config(ohttp_config)
        .unwrap()
        .encapsulate(&bhttp)
        .unwrap();
    encapsulated.len()
}

type Kem = hpke::kem::X25519HkdfSha256;

/// The baseline: one HPKE seal of a 40-byte DEK ‖ issue time to an X25519 key, the same suite.
fn raw_seal(pk: &<Kem as hpke::Kem>::PublicKey) -> usize {
    let (enc, ct) = hpke::single_shot_seal::<
        hpke::aead::ChaCha20Poly1305,
        hpke::kdf::HkdfSha256,
        Kem,
    >(&OpModeS::Base, pk, b"arcane-aip bench", &[7u8; 40], b"aad")
    .unwrap();
    enc.to_bytes().len() + ct.len()
}

fn time_per_op(n: usize, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed().as_secs_f64() / n as f64
}

/// One raw P-384 ECDSA verification with ring, the implementation the Nitro chain's checks use.
fn raw_p384_verify() -> f64 {
    use p384::ecdsa::signature::Signer;
    let key = p384::ecdsa::SigningKey::from_slice(&[0x17; 48]).unwrap();
    let message = b"client benchmark message";
    let signature: p384::ecdsa::Signature = key.sign(message);
    let point = key.verifying_key().to_encoded_point(false);
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P384_SHA384_FIXED,
        point.as_bytes().to_vec(),
    );
    let bytes = signature.to_bytes();
    time_per_op(200, || assert!(public.verify(message, &bytes).is_ok()))
}

/// `yes` or `no`.
fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "no" }
}

/// Requests per second with `at_once` requests at a time to mistral.rs directly, `total` in all.
async fn direct_rate(engine: &MistralEngine, at_once: usize, total: usize, max_tokens: u32) -> f64 {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    futures::future::join_all((0..at_once).map(|_| async {
        while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
            direct(engine, max_tokens).await;
        }
    }))
    .await;
    total as f64 / started.elapsed().as_secs_f64()
}

/// Requests per second with `at_once` requests at a time through `client` (held only while a
/// request is sent, as the proxy holds it), `total` in all; and how many "busy" answers were
/// retried.
async fn stack_rate(
    client: &tokio::sync::Mutex<Client>,
    at_once: usize,
    total: usize,
    max_tokens: u32,
) -> (f64, usize) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let busy = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    futures::future::join_all((0..at_once).map(|_| async {
        while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
            // Backing off as a client should: 50 ms, doubled up to 1 s (each try spends the
            // relay's OTT; the gateway's is handed back while every node is full).
            let mut wait = Duration::from_millis(50);
            let mut answer = loop {
                let sent = client
                    .lock()
                    .await
                    .chat(chat("", max_tokens), Route::Cloud)
                    .await;
                match sent {
                    Ok(answer) => break answer,
                    Err(ClientError::Status { status: 503, .. }) => {
                        busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(1));
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            while let Some(event) = answer.next().await {
                if let ChatEvent::Done(_) = event.unwrap() {
                    break;
                }
            }
        }
    }))
    .await;
    (
        total as f64 / started.elapsed().as_secs_f64(),
        busy.into_inner(),
    )
}

struct Run {
    ttft: Duration,
    tokens: u64,
    decode: Duration,
}

impl Run {
    fn tokens_per_second(&self) -> f64 {
        self.tokens.saturating_sub(1) as f64 / self.decode.as_secs_f64().max(1e-9)
    }
}

async fn direct(engine: &MistralEngine, max_tokens: u32) -> Run {
    let started = Instant::now();
    let mut events = engine
        .generate(&chat(engine.model_name(), max_tokens), max_tokens as usize)
        .unwrap();
    let mut first = None;
    loop {
        match events.recv().await.expect("finished event") {
            // As on the client's side, where empty deltas are not passed on.
            EngineEvent::Delta(text) if !text.is_empty() => {
                first.get_or_insert_with(Instant::now);
            }
            EngineEvent::Delta(_) => {}
            EngineEvent::Finished {
                completion_tokens, ..
            } => {
                let first = first.unwrap_or_else(Instant::now);
                return Run {
                    ttft: first - started,
                    tokens: completion_tokens,
                    decode: first.elapsed(),
                };
            }
            EngineEvent::Failed(e) => panic!("{e}"),
        }
    }
}

async fn through_the_stack(client: &mut Client, max_tokens: u32) -> Run {
    let started = Instant::now();
    let mut answer = client
        .chat(chat("", max_tokens), Route::Cloud)
        .await
        .unwrap();
    let mut first = None;
    loop {
        match answer.next().await.expect("an answer").unwrap() {
            ChatEvent::Delta(_) => {
                first.get_or_insert_with(Instant::now);
            }
            ChatEvent::Done(summary) => {
                let first = first.unwrap_or_else(Instant::now);
                return Run {
                    ttft: first - started,
                    tokens: summary.usage.map_or(0, |u| u.completion_tokens),
                    decode: first.elapsed(),
                };
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = match std::env::var_os("ARCANE_BENCH_MODEL") {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let p = dir.path().join("tiny.gguf");
            arcane_engine::gguf::write_tiny_llama(&p, &Default::default()).unwrap();
            p
        }
    };
    let quiet = |_: &str| {};
    let stack = Stack::start(
        StackOptions::new(dir.path().join("stack"), model_path),
        &quiet,
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        }
    };
    let issuer = IssuerSecret::generate().unwrap();
    let secret = [9u8; 32];
    let models: Vec<ModelListing> = serde_json::from_value(
        serde_json::to_value(stack.gateway_state.registry.models()).unwrap(),
    )
    .unwrap();
    let inputs = Inputs {
        note: get(format!("{}/checkpoint", stack.log_url)).await,
        keys: get(format!("{}/v1/keys", stack.gateway.url())).await,
        node: serde_json::from_str(
            &stack
                .gateway_state
                .registry
                .candidates(1, arcane_gateway::server::now_ms())[0]
                .to_json(),
        )
        .unwrap(),
        models,
        material: TokenMaterial {
            tgt: token(&issuer, TGT_ISSUER, tgt_nonce(&secret)),
            secret: zeroize::Zeroizing::new(secret),
            index: 0,
            ott: token(&issuer, OTT_ISSUER, ott_nonce(&secret, 0)),
        },
        request: chat(&stack.model.name, 64),
    };
    let trust = Trust::load(&stack.trust_file).unwrap();

    // --- 1 and 2: client CPU cost -------------------------------------------------------------
    let rek = RekSecret::generate().public();
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&rek.0).unwrap();
    let mut warm = Checks::new(trust.clone());
    per_request(&mut warm, &inputs);
    let now_ms = arcane_client::session::now_ms();
    let node_rek = warm
        .node(&inputs.node, &inputs.models, now_ms)
        .unwrap()
        .node
        .rek;
    let ohttp_config = warm.keys(&inputs.keys, now_ms / 1000).unwrap().ohttp_config;
    let (mut seal_s, mut floor_s, mut warm_s, mut cold_s, mut p384_s) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..7 {
        seal_s.push(time_per_op(2000, || {
            std::hint::black_box(raw_seal(&pk));
        }));
        floor_s.push(time_per_op(2000, || {
            std::hint::black_box(seal_and_encapsulate(&inputs, &node_rek, &ohttp_config));
        }));
        warm_s.push(time_per_op(2000, || {
            std::hint::black_box(per_request(&mut warm, &inputs));
        }));
        cold_s.push(time_per_op(40, || {
            let mut cold = Checks::new(trust.clone());
            std::hint::black_box(per_request(&mut cold, &inputs));
        }));
        p384_s.push(raw_p384_verify());
    }
    let (seal, floor, warm, cold, p384) = (
        median(seal_s),
        median(floor_s),
        median(warm_s),
        median(cold_s),
        median(p384_s),
    );

    // --- 3: end to end -------------------------------------------------------------------------
    let rounds = env_usize("ARCANE_BENCH_ROUNDS", 5);
    let max_tokens = env_usize("ARCANE_BENCH_TOKENS", 48) as u32;
    // As many sequences at once as a node serves by default (the concurrency baseline).
    let capacity = arcane_compute::node::NodeConfig::default().max_concurrent;
    let engine = MistralEngine::load(&stack.model, capacity).await.unwrap();
    let mut config = ClientConfig::new(trust);
    config.state_root = dir.path().join("client");
    config.candidates = 1;
    let mut client = Client::new(config).unwrap();
    // One of each first: model warm-up, token wallet filled, TLS-free connections opened.
    direct(&engine, max_tokens).await;
    through_the_stack(&mut client, max_tokens).await;
    let (mut d_ttft, mut s_ttft, mut d_tps, mut s_tps) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let d = direct(&engine, max_tokens).await;
        let s = through_the_stack(&mut client, max_tokens).await;
        d_ttft.push(d.ttft.as_secs_f64());
        s_ttft.push(s.ttft.as_secs_f64());
        d_tps.push(d.tokens_per_second());
        s_tps.push(s.tokens_per_second());
    }
    let (d_ttft, s_ttft, d_tps, s_tps) =
        (median(d_ttft), median(s_ttft), median(d_tps), median(s_tps));

    // --- 4: requests per second at 1, 4 and 16 at once ----------------------------------------
    let short = 16u32;
    let client = tokio::sync::Mutex::new(client);
    let mut rates = Vec::new();
    for at_once in [1usize, 4, 16] {
        let total = env_usize("ARCANE_BENCH_CONCURRENT_REQUESTS", 32).max(at_once);
        let d = direct_rate(&engine, at_once, total, short).await;
        let (s, busy) = stack_rate(&client, at_once, total, short).await;
        rates.push((at_once, total, d, s, busy));
    }

    println!("client cost per request (medians of 7 rounds, same run)");
    println!("| measure | time | ratio to one raw HPKE seal |");
    println!("|---|---|---|");
    println!(
        "| raw HPKE seal (X25519/HKDF-SHA256/ChaCha20-Poly1305, 40 B) | {:.1} µs | 1.00× |",
        seal * 1e6
    );
    println!(
        "| no checks: inner request sealed + DEK wrap + OHTTP encapsulation (two HPKE seals) | {:.1} µs | {:.2}× |",
        floor * 1e6,
        floor / seal
    );
    println!(
        "| warm request: every check (cached) + the above | {:.1} µs | {:.2}× |",
        warm * 1e6,
        warm / seal
    );
    println!(
        "| cold first request: every signature, proof and chain verified | {:.2} ms | {:.1}× |",
        cold * 1e3,
        cold / seal
    );
    println!();
    println!(
        "end to end, model {} ({rounds} rounds, {max_tokens} tokens, medians)",
        stack.model.name
    );
    println!("| path | TTFT | tokens/s |");
    println!("|---|---|---|");
    println!(
        "| mistral.rs directly | {:.1} ms | {:.1} |",
        d_ttft * 1e3,
        d_tps
    );
    println!(
        "| client → relay → gateway → node (every check) | {:.1} ms | {:.1} |",
        s_ttft * 1e3,
        s_tps
    );
    println!(
        "| ratio | {:.3}× TTFT (+{:.1} ms) | {:.3}× |",
        s_ttft / d_ttft,
        (s_ttft - d_ttft) * 1e3,
        s_tps / d_tps
    );
    println!();
    println!(
        "requests per second, {short} tokens each, node capacity {capacity} (mistral.rs direct: {capacity} sequences at once, the rest queued)"
    );
    println!(
        "| at once | requests | mistral.rs directly | through the stack | ratio | busy answers retried |"
    );
    println!("|---|---|---|---|---|---|");
    for (at_once, total, d, s, busy) in &rates {
        println!(
            "| {at_once} | {total} | {d:.2} req/s | {s:.2} req/s | {:.3}× | {busy} |",
            s / d
        );
    }
    let name = &stack.model.name;
    println!(
        "summary | client, warm request (every check, cached) | {:.1} µs | no-check floor (two HPKE seals): {:.1} µs | {:.3}× | ≤ 1.1× | {} |",
        warm * 1e6,
        floor * 1e6,
        warm / floor,
        met(warm / floor <= 1.1)
    );
    println!(
        "summary | client, cold first request (every signature, proof and chain) | {:.2} ms | five raw P-384 verifications (a Nitro chain's): {:.2} ms | {:.2}× | ≤ 5 ms | {} |",
        cold * 1e3,
        5.0 * p384 * 1e3,
        cold / (5.0 * p384),
        met(cold <= 5e-3)
    );
    println!(
        "summary | end to end TTFT, {name} | {:.1} ms | mistral.rs direct: {:.1} ms | {:.3}× | ≤ 1.05× | {} |",
        s_ttft * 1e3,
        d_ttft * 1e3,
        s_ttft / d_ttft,
        met(s_ttft / d_ttft <= 1.05)
    );
    println!(
        "summary | end to end decode, {name} | {s_tps:.1} tokens/s | mistral.rs direct: {d_tps:.1} tokens/s | {:.3}× | ≥ 0.95× | {} |",
        s_tps / d_tps,
        met(s_tps / d_tps >= 0.95)
    );
    for (at_once, _, d, s, busy) in &rates {
        println!(
            "summary | requests/s, {name}, {at_once} at once ({busy} busy retried) | {s:.2} req/s | mistral.rs direct: {d:.2} req/s | {:.3}× | — | — |",
            s / d
        );
    }
    stack.shutdown().await;
}
