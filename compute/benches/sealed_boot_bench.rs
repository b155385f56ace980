//! What a sealed model costs a node at boot: fetching its key from the owner's key release
//! service (challenge, attestation, the service's checks, the wrapped key; over 127.0.0.1) and
//! decrypting the sealed file into memory (with its SHA-256), then loading it into mistral.rs;
//! against the baseline of the same model loaded in the clear (its SHA-256, then the same load).
//! Rounds are interleaved; medians are reported.
//!
//! `cargo bench -p arcane-compute --bench sealed_boot_bench` uses the tiny generated model;
//! `ARCANE_BENCH_MODEL=/path/model.gguf` another (in a directory of its own);
//! `ARCANE_BENCH_ROUNDS` (default 5).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use arcane_compute::release::LogSource;
use arcane_compute::sealed_model::{Attesting, SealedModel, decrypt_into_memory, fetch_key};
use arcane_engine::MistralEngine;
use arcane_engine::model::ModelFile;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("ARCANE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    let mut stack = common::stack().await;
    if let Ok(path) = std::env::var("ARCANE_BENCH_MODEL") {
        stack.model = ModelFile::open(std::path::Path::new(&path)).unwrap();
    }
    let owner = common::owner(&stack).await;
    let hour = Duration::from_secs(3600);
    common::publish(
        &stack,
        &stack.publisher,
        common::release_body(&stack.measurements, owner.model_sha256),
        hour,
    )
    .await;
    common::publish(
        &stack,
        &owner.signer,
        common::access_body(owner.model_sha256, vec![stack.measurements.pcr0]),
        hour,
    )
    .await;
    let mut trust = stack.trust();
    trust.publishers.push(owner.signer.verifier());
    let log = LogSource::new(&stack.log_url).unwrap();
    let sealed = SealedModel {
        path: owner.sealed.clone(),
        model_sha256: owner.model_sha256,
        key_release_url: owner.service.url(),
    };
    let bytes = std::fs::metadata(&stack.model.path).unwrap().len();
    println!(
        "model {} ({:.1} MiB), {rounds} rounds",
        stack.model.name,
        bytes as f64 / (1 << 20) as f64
    );

    let (mut clear, mut sealed_total, mut fetch, mut decrypt, mut load) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut raw = Vec::new();
    let sealed_bytes = std::fs::read(&sealed.path).unwrap();
    for _ in 0..rounds {
        // Baseline: the plaintext file, digested, then loaded.
        let started = Instant::now();
        let model = ModelFile::open(&stack.model.path).unwrap();
        let engine = MistralEngine::load(&model, 2).await.unwrap();
        clear.push(started.elapsed());
        drop(engine);

        // Sealed: the key fetched, the file decrypted into memory, then the same load.
        let started = Instant::now();
        let attesting = Attesting {
            provider: stack.nsm.as_ref(),
            answer_key: [1; 32],
        };
        let key = fetch_key(&sealed, &attesting, &log, &trust).await.unwrap();
        let fetched = started.elapsed();
        // The raw primitive on bytes already in memory: every chunk opened, the plaintext
        // hashed — what decrypting costs without reading the file or writing the memory file.
        let copy = arcane_verifier::sealed_model::ModelKey::from_bytes(key.as_bytes()).unwrap();
        let started_raw = Instant::now();
        let plaintext = arcane_verifier::sealed_model::open(&copy, &sealed_bytes).unwrap();
        let digest: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            &plaintext[..],
        ))
        .into();
        raw.push(started_raw.elapsed());
        assert_eq!(digest, sealed.model_sha256);
        drop(plaintext);
        // The sealed boot's clock resumes where the key fetch left it.
        let started = Instant::now() - fetched;
        let (path, digest) = (sealed.path.clone(), sealed.model_sha256);
        let model =
            tokio::task::spawn_blocking(move || decrypt_into_memory(&path, &key, &digest).unwrap())
                .await
                .unwrap();
        let decrypted = started.elapsed();
        let engine = MistralEngine::load(&model, 2).await.unwrap();
        let loaded = started.elapsed();
        drop(engine);
        drop(model);
        fetch.push(fetched);
        decrypt.push(decrypted - fetched);
        load.push(loaded - decrypted);
        sealed_total.push(loaded);
    }
    let (clear, sealed_total) = (median(clear), median(sealed_total));
    println!(
        "decrypt into memory: {:.1} ms; the raw primitive (open every chunk + SHA-256, in memory): {:.1} ms",
        ms(median(decrypt.clone())),
        ms(median(raw.clone()))
    );
    println!("boot, clear (SHA-256 + load): {:.1} ms", ms(clear));
    println!(
        "boot, sealed (key fetch {:.1} ms + decrypt into memory {:.1} ms + load {:.1} ms): {:.1} ms",
        ms(median(fetch)),
        ms(median(decrypt)),
        ms(median(load)),
        ms(sealed_total)
    );
    println!(
        "summary | node boot from a sealed model, {} (key fetch + decrypt into memory + load) | {:.0} ms | the same model loaded in the clear (SHA-256 + load): {:.0} ms | {:.2}× | — | — |",
        stack.model.name,
        ms(sealed_total),
        ms(clear),
        sealed_total.as_secs_f64() / clear.as_secs_f64()
    );
}
