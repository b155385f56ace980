//! Requests per second through relay (HTTP/2, PrivateToken) + gateway (OHTTP, OTT redemption,
//! routing) to a compute node whose engine answers at once, against the same sealed requests
//! sent straight to that node, each pair measured back to back in the same run: one request in
//! flight and eight, on SQLite (one gateway and one relay process, as the operations guide runs
//! them) and, with `ARCANE_BENCH_POSTGRES_URL` (an empty database), on PostgreSQL with 1, 2 and 4
//! gateway processes (each behind a relay of its own, requests spread over the relays, the node
//! registered with every gateway). Every gateway and relay runs with its production defaults.
//!
//! `cargo test --workspace --bench relay_bench`; `ARCANE_BENCH_REQUESTS` (default 300) per
//! measurement. Lines starting `summary |` are rows of `bench/all.sh`'s table.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use arcane_compute::attestation::{DeclaredMeasurements, SimulatedNsm};
use arcane_compute::node::{Node, NodeConfig, NodeParts};
use arcane_compute::registration::Registration;
use arcane_compute::release::LogSource;
use arcane_compute::tokens::DevelopmentWithoutTokens;
use arcane_engine::gguf::{TinyLlama, write_tiny_llama};
use arcane_engine::model::ModelFile;
use arcane_engine::{EngineEvent, FinishReason, InferenceEngine};
use arcane_gateway::keys;
use arcane_gateway::server::now_seconds;
use arcane_verifier::bundle::LogTrust;
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::entry::{EntryBody, EntryPolicy, TokenKey, TokenRole, decode_key_config};
use arcane_verifier::inner::{
    ChatCompletionRequest, ChatMessage, InnerRequest, encode_inner_request,
};
use arcane_verifier::sealed::{self, RekPublicKey, ResponseReader};
use arcane_verifier::tokens::{IssuerSecret, OTT_ISSUER, Token, TokenChallenge, request_token};
use base64::Engine as _;

/// An engine that answers "ok" at once: the benchmark measures everything but inference.
struct NoopEngine;

impl InferenceEngine for NoopEngine {
    fn model_name(&self) -> &str {
        "noop"
    }
    fn generate(
        &self,
        _: &ChatCompletionRequest,
        _: usize,
    ) -> arcane_engine::Result<tokio::sync::mpsc::Receiver<EngineEvent>> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tx.try_send(EngineEvent::Delta("ok".into()))
            .expect("capacity 2");
        tx.try_send(EngineEvent::Finished {
            reason: FinishReason::Stop,
            prompt_tokens: 1,
            completion_tokens: 1,
        })
        .expect("capacity 2");
        Ok(rx)
    }
}

struct Bench {
    rek: RekPublicKey,
    model: String,
    node_url: String,
    config: Vec<u8>,
    http: reqwest::Client,
    h2: reqwest::Client,
}

impl Bench {
    fn sealed(&self) -> (Vec<u8>, Vec<u8>, sealed::ClientRequest) {
        let inner = encode_inner_request(&InnerRequest {
            chat: ChatCompletionRequest {
                model: self.model.clone(),
                messages: vec![ChatMessage {
                    role: "user".into(),
                    content: "benchmark".into(),
                }],
                max_tokens: Some(4),
                temperature: None,
                stream: Some(true),
                ..Default::default()
            },
            token: None,
            badge: None,
        })
        .unwrap();
        let (wrapped, ciphertext, state) =
            sealed::seal_request(&inner, &[self.rek], now_seconds()).unwrap();
        (wrapped[0].encode().to_vec(), ciphertext, state)
    }

    async fn direct(&self) {
        let (wrapped, ciphertext, state) = self.sealed();
        let body = [wrapped, ciphertext].concat();
        let reply = self
            .http
            .post(format!("{}/v1/infer", self.node_url))
            .body(body)
            .send()
            .await
            .unwrap();
        open(reply.bytes().await.unwrap().to_vec(), state);
    }

    async fn through_relay(&self, relay_url: &str, ott: &Token, relay_ott: &Token) {
        let (wrapped, ciphertext, state) = self.sealed();
        let mut envelope = ott.encode();
        envelope.push(1);
        envelope.extend_from_slice(&wrapped);
        envelope.extend_from_slice(&ciphertext);
        let mut m = bhttp::Message::request(
            b"POST".to_vec(),
            b"https".to_vec(),
            b"gateway".to_vec(),
            b"/v1/chat".to_vec(),
        );
        m.write_content(&envelope);
        let mut inner = Vec::new();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut inner).unwrap();
        let (enc, response) = ohttp::ClientRequest::from_encoded_config(&self.config)
            .unwrap()
            .encapsulate(&inner)
            .unwrap();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(relay_ott.encode());
        let reply = self
            .h2
            .post(format!("{relay_url}/.well-known/ohttp-gateway"))
            .header("content-type", "message/ohttp-req")
            .header("authorization", format!("PrivateToken token=\"{token}\""))
            .body(enc)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        let plain = response.decapsulate(&reply.bytes().await.unwrap()).unwrap();
        let answer = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&plain[..])).unwrap();
        assert_eq!(answer.control().status().unwrap().code(), 200);
        open(answer.content().to_vec(), state);
    }
}

fn open(stream: Vec<u8>, state: sealed::ClientRequest) {
    let mut reader = ResponseReader::new(state);
    reader.push(&stream);
    while reader.next_chunk().unwrap().is_some() {}
    reader.finish().unwrap();
}

/// Requests per second with `parallel` workers sharing `n` requests.
async fn rate<F, Fut>(n: usize, parallel: usize, f: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let f = &f;
    let workers = (0..parallel).map(|w| async move {
        let mut i = w;
        while i < n {
            f(i).await;
            i += parallel;
        }
    });
    futures::future::join_all(workers).await;
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("ARCANE_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(n));
}

async fn run(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let log = common::start_log(&dir.path().join("log")).await;

    let gw_dir = dir.path().join("gateway");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let config = keys::generate_ohttp_key(&gw_dir.join("ohttp.key"), 1)
        .unwrap()
        .encode()
        .unwrap();
    log.publish(EntryBody::OhttpKeys(decode_key_config(&config).unwrap()))
        .await;
    let mut ott_issuer = None;
    for (path, role) in [("tgt.key", TokenRole::Tgt), ("ott.key", TokenRole::Ott)] {
        let secret = keys::generate_issuer_key(&gw_dir.join(path)).unwrap();
        log.publish(EntryBody::TokenKey(TokenKey {
            role,
            token_type: arcane_verifier::tokens::TOKEN_TYPE,
            spki_der: secret.public().spki().to_vec(),
        }))
        .await;
        ott_issuer = Some(secret);
    }
    let ott_issuer: IssuerSecret = ott_issuer.expect("the last key is the OTT issuer's");

    let measurements = DeclaredMeasurements {
        pcr0: common::random(),
        pcr1: common::random(),
        pcr2: common::random(),
        pcr8: None,
    };
    let nsm = Arc::new(SimulatedNsm::new(&measurements, now_seconds()).unwrap());
    let root_pem = dir.path().join("root.pem");
    std::fs::write(
        &root_pem,
        arcane_verifier::nitro::certificate_pem(nsm.root_der()),
    )
    .unwrap();
    let model_dir = dir.path().join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    write_tiny_llama(&model_dir.join("tiny.gguf"), &TinyLlama::default()).unwrap();
    let model = ModelFile::open(&model_dir.join("tiny.gguf")).unwrap();
    log.publish(common::release(&measurements, model.sha256))
        .await;
    let node = Node::boot(NodeParts {
        config: NodeConfig {
            max_concurrent: 16,
            ..NodeConfig::default()
        },
        provider: nsm,
        answer_key: arcane_verifier::signed_answer::AnswerSigningKey::generate(),
        engine: Arc::new(NoopEngine),
        tokens: Arc::new(DevelopmentWithoutTokens::for_development()),
        model: model.clone().into(),
        members: 1,
        log: LogSource::new(&log.url).unwrap(),
        trust: LogTrust {
            log_key: log.key.clone(),
            witnesses: WitnessPolicy::none(),
            publishers: vec![log.publisher.verifier()],
            policy: EntryPolicy::default(),
        },
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node_url = format!("http://{}", listener.local_addr().unwrap());
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = arcane_compute::server::router(Arc::clone(&node));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let http = reqwest::Client::new();
    let bench = Bench {
        rek: node.rek(),
        model: model.name.clone(),
        node_url: node_url.clone(),
        config,
        http: http.clone(),
        h2: reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap(),
    };
    let challenge = TokenChallenge::for_issuer(OTT_ISSUER);
    // Two OTTs per request (one for the relay, one inside for the gateway), issued before each
    // measurement (RSA blind signing is the issuer's cost, not the path's).
    let issue = |count: usize| -> Vec<Token> {
        (0..count)
            .map(|_| {
                let (r, p) =
                    request_token(ott_issuer.public(), &challenge, common::random()).unwrap();
                p.finalize(&ott_issuer.issue(&r).unwrap()).unwrap()
            })
            .collect()
    };

    let mut backends: Vec<(&str, Option<String>, Vec<usize>)> = vec![("SQLite", None, vec![1])];
    if let Ok(url) = std::env::var("ARCANE_BENCH_POSTGRES_URL") {
        backends.push(("PostgreSQL", Some(url), vec![1, 2, 4]));
    }
    println!("{n} sealed chat requests per measurement, to a node whose engine answers at once:");
    println!(
        "| database | gateway processes | in flight | straight to the node | relay + gateway | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for (name, url, counts) in &backends {
        for &count in counts {
            let database: Vec<&str> = match url {
                Some(u) => vec!["--database-url", u.as_str()],
                None => Vec::new(),
            };
            let mut services = Vec::new();
            let mut relays = Vec::new();
            for g in 0..count {
                // Every replica holds the same key files (the operations guide's way).
                let dir_g = dir.path().join(format!("{name}-{count}-gateway-{g}"));
                std::fs::create_dir_all(&dir_g).unwrap();
                for file in ["ohttp.key", "tgt.key", "ott.key"] {
                    std::fs::copy(gw_dir.join(file), dir_g.join(file)).unwrap();
                }
                let gateway =
                    common::spawn_gateway_with(&dir_g, &log, &root_pem, &database).unwrap();
                Registration {
                    gateway: gateway.1.clone(),
                    advertise: node_url.clone(),
                }
                .register(&http, &node)
                .await
                .unwrap();
                let relay = common::spawn_relay_with(
                    &dir.path().join(format!("{name}-{count}-relay-{g}")),
                    &gateway.1,
                    &log,
                    &database,
                );
                relays.push(relay.1.clone());
                services.push((gateway, relay));
            }
            let relay_of = |i: usize| relays[i % relays.len()].as_str();
            // Warm both paths (every relay's connection).
            bench.direct().await;
            let warm = issue(2 * relays.len());
            for (i, pair) in warm.chunks(2).enumerate() {
                bench.through_relay(relay_of(i), &pair[0], &pair[1]).await;
            }
            let parallels: &[usize] = if count == 1 { &[1, 8] } else { &[8] };
            for &parallel in parallels {
                let tokens = issue(2 * n);
                let direct = rate(n, parallel, |_| bench.direct()).await;
                let relayed = rate(n, parallel, |i| {
                    bench.through_relay(relay_of(i), &tokens[2 * i], &tokens[2 * i + 1])
                })
                .await;
                let ratio = relayed / direct;
                println!(
                    "| {name} | {count} | {parallel} | {direct:.0} req/s | {relayed:.0} req/s | {ratio:.2}× |"
                );
                if parallel == 8 {
                    summary.push(format!(
                        "summary | relay + gateway, {name}, {count} gateway process{}, 8 in flight | {relayed:.0} req/s | straight to the node: {direct:.0} req/s | {ratio:.2}× | ≥ 0.7× | {} |",
                        if count == 1 { "" } else { "es" },
                        if ratio >= 0.7 { "yes" } else { "no" }
                    ));
                }
            }
            drop(services);
        }
    }
    for line in summary {
        println!("{line}");
    }
}
