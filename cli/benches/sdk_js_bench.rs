//! The TypeScript SDK's verification time against the Rust client's, in one run on one stack:
//! cold (a new client with empty state: every signature, proof and certificate chain checked —
//! for the SDK, the WebAssembly build instantiated too) and warm (the median `verify` after it),
//! each over the network to the demo stack on 127.0.0.1, as a user's `verify` runs.
//!
//! `cargo bench -p arcane-cli --bench sdk_js_bench` after `npm run build` in `sdk/js`.
//! `ARCANE_BENCH_ROUNDS` (default 20) warm rounds.

use std::path::Path;
use std::time::Instant;

use arcane_cli::demo::{Stack, StackOptions};
use arcane_client::{Client, ClientConfig, Trust};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("ARCANE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    arcane_engine::gguf::write_tiny_llama(&model, &Default::default()).unwrap();
    let stack = Stack::start(StackOptions::new(dir.path().join("stack"), model), &|_| {})
        .await
        .unwrap();

    // The Rust client: a fresh state folder, then warm rounds on the same client.
    let started = Instant::now();
    let mut config = ClientConfig::new(Trust::load(&stack.trust_file).unwrap());
    config.state_root = dir.path().join("native-state");
    let mut client = Client::new(config).unwrap();
    client.preflight(None).await.unwrap();
    let native_cold = started.elapsed().as_secs_f64() * 1e3;
    let mut warm = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        client.preflight(None).await.unwrap();
        warm.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let native_warm = median(warm);

    let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/js");
    let output = tokio::process::Command::new("node")
        .arg("bench/verify.mjs")
        .current_dir(&package)
        .env("ARCANE_SDK_TRUST", &stack.trust_file)
        .env("ARCANE_BENCH_ROUNDS", rounds.to_string())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let js: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let (js_cold, js_warm) = (
        js["cold_ms"].as_f64().unwrap(),
        js["warm_ms"].as_f64().unwrap(),
    );
    let wasm = std::fs::read(package.join("dist/wasm/arcane_sdk_wasm_bg.wasm")).unwrap();
    println!("verify (every check, over 127.0.0.1), {rounds} warm rounds:");
    println!("  Rust client:     cold {native_cold:8.1} ms   warm {native_warm:7.1} ms");
    println!(
        "  TypeScript SDK:  cold {js_cold:8.1} ms   warm {js_warm:7.1} ms   (of the cold: {:.1} ms instantiating the WebAssembly)",
        js["instantiate_ms"].as_f64().unwrap()
    );
    println!(
        "  ratio SDK/Rust:  cold {:.2}x   warm {:.2}x",
        js_cold / native_cold,
        js_warm / native_warm
    );
    println!("  production .wasm: {} bytes", wasm.len());
    stack.shutdown().await;
}
