//! SIGKILL in the middle of a stream of appends, restart, repeat: no acknowledged entry is lost,
//! and no two checkpoints of one size have different roots.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcane_log::client::LogClient;
use arcane_log::keys::{PublisherPolicy, generate_signer};
use arcane_log::storage::Store;
use arcane_verifier::Hash;
use arcane_verifier::checkpoint::verify_checkpoint;
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::note::VerifierKey;
use arcane_verifier::proof::verify_consistency;
use base64::Engine;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_server(data: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_arcane-log"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--batch-delay-ms",
            "2",
            "--batch-size",
            "64",
        ])
        .arg("--data-dir")
        .arg(data)
        .env("ARCANE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server binary starts")
}

async fn wait_healthy(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server at {base} did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_appends_loses_nothing_and_never_forks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    arcane_log::init_data_dir(&data, None).unwrap();
    let publisher = Arc::new(generate_signer("crash-publisher").unwrap());
    PublisherPolicy::new(data.join(arcane_log::POLICY_FILE))
        .allow(
            &publisher.verifier(),
            &arcane_log::keys::AllowedKinds::parse("release,ohttp-keys,token-key,opaque").unwrap(),
        )
        .unwrap();
    let log_key = VerifierKey::parse(
        std::fs::read_to_string(data.join("log.vkey"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut next_entry = 0usize;
    for round in 0..4 {
        let mut child = spawn_server(&data, port);
        wait_healthy(&base).await;
        let client = LogClient::new(&base).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for writer in 0..6 {
            let (client, publisher, acked, stop) = (
                client.clone(),
                publisher.clone(),
                acked.clone(),
                stop.clone(),
            );
            let first = next_entry + writer * 100_000;
            tasks.push(tokio::spawn(async move {
                let mut i = first;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let entry = format!("crash test entry {i}");
                    i += 1;
                    match client.add(entry.as_bytes(), &publisher).await {
                        Ok(status) => {
                            acked.lock().unwrap().insert(status.leaf_hash);
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }));
        }
        next_entry += 1_000_000;
        {
            let (client, seen, stop) = (client.clone(), seen.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(text) = client.checkpoint().await {
                        seen.lock().unwrap().push(text);
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }));
        }
        // Let appends and integrations run, then kill without warning.
        tokio::time::sleep(Duration::from_millis(500 + 150 * round)).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
    }

    // Restart once more and let the sequencer integrate everything that was acknowledged.
    let mut child = spawn_server(&data, port);
    wait_healthy(&base).await;
    let client = LogClient::new(&base).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the test made progress ({} acknowledged)",
        acked.len()
    );
    for leaf in &acked {
        let status = client
            .wait_integrated(leaf, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("acknowledged entry {leaf} lost: {e}"));
        assert!(status.index.is_some());
    }
    let final_text = client.checkpoint().await.unwrap();
    let final_cp = verify_checkpoint(final_text.as_bytes(), &log_key, &WitnessPolicy::none())
        .unwrap()
        .checkpoint;
    assert!(final_cp.size >= acked.len() as u64);

    // Every checkpoint anyone saw, and every one stored, is signed, unique per size and
    // consistent with the final tree.
    let store = Store::open(&format!("sqlite://{}", data.join("log.db").display()))
        .await
        .unwrap();
    let mut notes: Vec<String> = seen.lock().unwrap().clone();
    notes.extend(
        store
            .all_checkpoints()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.note),
    );
    let mut by_size: BTreeMap<u64, Hash> = BTreeMap::new();
    for text in &notes {
        let cp = verify_checkpoint(text.as_bytes(), &log_key, &WitnessPolicy::none())
            .unwrap()
            .checkpoint;
        if let Some(root) = by_size.insert(cp.size, cp.root) {
            assert_eq!(root, cp.root, "two different roots for size {}", cp.size);
        }
    }
    assert!(
        by_size.len() > 4,
        "saw several checkpoints ({})",
        by_size.len()
    );
    let http = reqwest::Client::new();
    for (&size, root) in by_size.range(1..) {
        let reply: serde_json::Value = http
            .get(format!(
                "{base}/v1/proof/consistency?old={size}&new={}",
                final_cp.size
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let proof: Vec<Hash> = reply["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                Hash::from_slice(
                    &base64::engine::general_purpose::STANDARD
                        .decode(h.as_str().unwrap())
                        .unwrap(),
                )
                .unwrap()
            })
            .collect();
        verify_consistency(size, final_cp.size, root, &final_cp.root, &proof).unwrap_or_else(|e| {
            panic!("checkpoint {size} not consistent with the final tree: {e}")
        });
    }
    eprintln!(
        "crash test: {} acknowledged entries survived 4 SIGKILLs; {} distinct checkpoints, final size {}",
        acked.len(),
        by_size.len(),
        final_cp.size
    );
    store.close().await;
    child.kill().unwrap();
    child.wait().unwrap();
}
