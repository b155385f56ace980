//! Decode speed and time to first token of one model directory split across a 2-member ensemble
//! (`arcane_compute::ensemble`: mistral.rs's ring over attested, sealed links, each member's
//! engine in a process of its own), against the same model in one engine in this process (the
//! baseline), on the same machine in the same run, rounds interleaved.
//!
//! On one host the ensemble can only lose: its members share the host's cores (each gets
//! `RAYON_NUM_THREADS=1` of the two here, as two enclaves would split them), and every layer adds
//! two all-reduces that cross the links (seal, loopback TCP, open) twice per token.
//!
//! `cargo test --workspace --bench ensemble_bench`; `ARCANE_BENCH_ROUNDS` (default 3),
//! `ARCANE_BENCH_TOKENS` (default 32), `ARCANE_BENCH_HIDDEN` (default 512: 8 layers, 8 heads, a
//! generated llama of about 25 M parameters). Lines starting `summary |` are rows of
//! `bench/all.sh`'s table.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arcane_cli::demo::{demo_measurements, release_entry};
use arcane_compute::ensemble::{Ensemble, EnsembleConfig, LinkIdentity};
use arcane_engine::gguf::TinyLlama;
use arcane_engine::model_dir::{ModelDir, write_tiny_llama_dir};
use arcane_engine::{EngineEvent, InferenceEngine, MistralEngine, RingMember};
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};
use arcane_verifier::nitro::{AttestationPolicy, NitroRoot};

const MEMBER_ENV: &str = "ARCANE_ENSEMBLE_BENCH_MEMBER";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn request(max_tokens: usize) -> ChatCompletionRequest {
    ChatCompletionRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "Write a short story about a lighthouse keeper.".into(),
        }],
        max_tokens: Some(max_tokens as u32),
        temperature: Some(0.0),
        ..Default::default()
    }
}

/// Time to first token, and decode tokens per second after it.
async fn round(engine: &MistralEngine, max_tokens: usize) -> (Duration, f64) {
    let started = Instant::now();
    let mut events = engine.generate(&request(max_tokens), max_tokens).unwrap();
    let mut first = None;
    let mut deltas = 0u64;
    while let Some(event) = events.recv().await {
        match event {
            EngineEvent::Delta(_) => {
                first.get_or_insert_with(Instant::now);
                deltas += 1;
            }
            EngineEvent::Finished {
                completion_tokens, ..
            } => {
                let first = first.unwrap_or_else(Instant::now);
                let decode = first.elapsed().as_secs_f64().max(1e-9);
                let tokens = completion_tokens.max(deltas).saturating_sub(1);
                return (first - started, tokens as f64 / decode);
            }
            EngineEvent::Failed(e) => panic!("generation failed: {e}"),
        }
    }
    panic!("the engine stopped without finishing")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A member's engine, in this binary started again: rank 0 runs the rounds and prints them.
fn member(spec: &str) {
    let spec: serde_json::Value = serde_json::from_str(spec).unwrap();
    let model = ModelDir::open(std::path::Path::new(spec["model"].as_str().unwrap())).unwrap();
    let port = |k: &str| spec[k].as_u64().unwrap() as u16;
    let ring = RingMember {
        rank: spec["rank"].as_u64().unwrap() as usize,
        world_size: 2,
        left_port: port("left_port"),
        right_port: port("right_port"),
        master_port: port("master_port"),
    };
    if ring.rank != 0 {
        arcane_engine::serve_ring_follower(&model, &ring).unwrap();
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = MistralEngine::load_dir(&model, 1, Some(&ring))
            .await
            .unwrap();
        engine.warm_up().await.unwrap();
        for _ in 0..spec["rounds"].as_u64().unwrap() {
            let (ttft, speed) = round(&engine, spec["tokens"].as_u64().unwrap() as usize).await;
            println!("ROUND {} {speed}", ttft.as_secs_f64());
        }
    });
    std::process::exit(0);
}

fn main() {
    if let Ok(spec) = std::env::var(MEMBER_ENV) {
        member(&spec);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let rounds = env_usize("ARCANE_BENCH_ROUNDS", 3);
    let tokens = env_usize("ARCANE_BENCH_TOKENS", 32);
    let hidden = env_usize("ARCANE_BENCH_HIDDEN", 512);
    let dir = tempfile::tempdir().unwrap();
    let stack = common::stack(dir.path(), false).await;
    let shape = TinyLlama {
        layers: 8,
        hidden,
        heads: 8,
        ffn: hidden * 11 / 4,
        ..TinyLlama::default()
    };
    let path = dir.path().join("bench-llama");
    write_tiny_llama_dir(&path, &shape).unwrap();
    let model = ModelDir::open(&path).unwrap();
    stack
        .publish(
            release_entry(&demo_measurements(), model.sha256),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let release = common::release_for_model(&stack, &model.sha256).await;
    let root = NitroRoot::development(stack.nsm.root_der().to_vec());

    let alone = MistralEngine::load_dir(&model, 1, None).await.unwrap();
    alone.warm_up().await.unwrap();

    let identity = || LinkIdentity {
        attestor: Arc::clone(&stack.nsm) as _,
        root: root.clone(),
        release: release.verified.clone(),
        model_sha256: model.sha256,
        attestation: AttestationPolicy::default(),
    };
    let members: Vec<std::net::SocketAddr> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        })
        .collect();
    let config = |rank: usize| EnsembleConfig {
        rank,
        listen: members[rank],
        members: members.clone(),
        bring_up_timeout: Duration::from_secs(30),
    };
    let (leader, follower) = tokio::join!(
        Ensemble::bring_up(config(0), identity()),
        Ensemble::bring_up(config(1), identity()),
    );
    let (leader, follower) = (leader.unwrap(), follower.unwrap());
    let spawn = |ring: &RingMember| {
        let spec = serde_json::json!({
            "model": model.path, "rank": ring.rank, "left_port": ring.left_port,
            "right_port": ring.right_port, "master_port": ring.master_port,
            "rounds": rounds, "tokens": tokens,
        });
        tokio::process::Command::new(std::env::current_exe().unwrap())
            .env(MEMBER_ENV, spec.to_string())
            .env("RAYON_NUM_THREADS", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut follower_engine = spawn(follower.ring_member());
    // The baseline's rounds first, then the ensemble's (its members take both cores).
    let mut alone_ttft = Vec::new();
    let mut alone_speed = Vec::new();
    for _ in 0..rounds {
        let (ttft, speed) = round(&alone, tokens).await;
        alone_ttft.push(ttft.as_secs_f64());
        alone_speed.push(speed);
    }
    drop(alone);
    let output = spawn(leader.ring_member())
        .wait_with_output()
        .await
        .unwrap();
    let _ = follower_engine.kill().await;
    let mut ensemble_ttft = Vec::new();
    let mut ensemble_speed = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some(rest) = line.split_once("ROUND ").map(|(_, r)| r) {
            let mut parts = rest.split(' ');
            ensemble_ttft.push(parts.next().unwrap().parse::<f64>().unwrap());
            ensemble_speed.push(parts.next().unwrap().parse::<f64>().unwrap());
        }
    }
    assert_eq!(ensemble_speed.len(), rounds, "the ensemble ran every round");
    let (a_t, e_t) = (median(alone_ttft), median(ensemble_ttft));
    let (a_s, e_s) = (median(alone_speed), median(ensemble_speed));
    println!(
        "llama {} layers, hidden {hidden}, {tokens} tokens per answer, {rounds} rounds, medians",
        shape.layers
    );
    println!("| measurement | one engine | 2-member ensemble | ensemble ÷ one |");
    println!("|---|---|---|---|");
    println!(
        "| time to first token | {:.1} ms | {:.1} ms | {:.2}× |",
        a_t * 1e3,
        e_t * 1e3,
        e_t / a_t
    );
    println!(
        "| decode speed | {a_s:.1} tokens/s | {e_s:.1} tokens/s | {:.2}× |",
        e_s / a_s
    );
    println!(
        "summary | 2-member ensemble, decode (llama, hidden {hidden}) | {e_s:.1} tokens/s | one engine: {a_s:.1} tokens/s | {:.2}× | report | — |",
        e_s / a_s
    );
    println!(
        "summary | 2-member ensemble, TTFT (llama, hidden {hidden}) | {:.1} ms | one engine: {:.1} ms | {:.2}× | report | — |",
        e_t * 1e3,
        a_t * 1e3,
        e_t / a_t
    );
}
