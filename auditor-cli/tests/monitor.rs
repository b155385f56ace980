//! `arcane-audit monitor` against real log servers: a quiet log, then an injected second OHTTP key
//! set, an unknown publisher, and a forked log (same key, other entries).

use std::path::Path;

mod common;
use std::process::Command;
use std::time::Duration;

use arcane_log::keys::generate_signer;
use arcane_log::publish::publish;
use arcane_verifier::entry::{EntryBody, KEM_X25519_SHA256, OhttpKeyConfig};
use arcane_verifier::note::VerifierKey;

fn keys(id: u8) -> EntryBody {
    EntryBody::OhttpKeys(OhttpKeyConfig {
        key_id: id,
        kem_id: KEM_X25519_SHA256,
        public_key: vec![id; 32],
        symmetric: vec![(1, 1)],
    })
}

/// Runs one monitoring pass; returns the exit status and the anomaly kinds reported.
async fn monitor(
    url: &str,
    vkey: &str,
    state: &Path,
    publisher: &str,
) -> (Option<i32>, Vec<String>) {
    let args: Vec<String> = [
        "monitor",
        "--url",
        url,
        "--vkey",
        vkey,
        "--state",
        state.to_str().unwrap(),
        "--publisher",
        publisher,
        "--once",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_arcane-audit"))
            .args(&args)
            .output()
            .unwrap();
        let kinds = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["kind"].as_str().map(str::to_owned))
            .collect();
        (output.status.code(), kinds)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_catches_targeting_strangers_and_forks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let (server, base) = common::start_log(&data).await;
    let vkey = server.vkey().to_owned();
    let log_key = VerifierKey::parse(&vkey).unwrap();
    let (gateway, rogue) = (
        generate_signer("gateway").unwrap(),
        generate_signer("rogue").unwrap(),
    );
    common::allow(&data, &gateway, "ohttp-keys,token-key");
    common::allow(&data, &rogue, "ohttp-keys,token-key");
    let client = arcane_log::client::LogClient::new(&base).unwrap();
    let state = dir.path().join("state");
    let known = gateway.verifier().to_text();

    publish(
        &client,
        &gateway,
        &log_key,
        keys(1),
        Duration::from_secs(7 * 86_400),
    )
    .await
    .unwrap();
    assert_eq!(
        monitor(&base, &vkey, &state, &known).await,
        (Some(0), vec![])
    );
    assert_eq!(
        monitor(&base, &vkey, &state, &known).await,
        (Some(0), vec![]),
        "nothing new, nothing found"
    );

    // A second key set valid at the same time, for days: what serving one user their own key looks like.
    publish(
        &client,
        &gateway,
        &log_key,
        keys(2),
        Duration::from_secs(7 * 86_400),
    )
    .await
    .unwrap();
    let (code, found) = monitor(&base, &vkey, &state, &known).await;
    assert_eq!(code, Some(1));
    assert_eq!(found, vec!["overlapping_keys"]);

    // An entry from a publisher the auditor does not know.
    publish(
        &client,
        &rogue,
        &log_key,
        keys(3),
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let (code, found) = monitor(&base, &vkey, &state, &known).await;
    assert_eq!(code, Some(1));
    assert!(found.contains(&"unknown_publisher".to_owned()), "{found:?}");

    // The same log key, another history.
    let forked = dir.path().join("fork");
    std::fs::create_dir_all(&forked).unwrap();
    std::fs::copy(data.join("log.key"), forked.join("log.key")).unwrap();
    let (fork, fork_base) = common::start_log(&forked).await;
    common::allow(&forked, &gateway, "ohttp-keys");
    let fork_client = arcane_log::client::LogClient::new(&fork_base).unwrap();
    for id in 10..16 {
        publish(
            &fork_client,
            &gateway,
            &log_key,
            keys(id),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    }
    let (code, found) = monitor(&fork_base, &vkey, &state, &known).await;
    assert_eq!(code, Some(1));
    assert_eq!(found, vec!["fork"]);
    fork.shutdown().await;
    server.shutdown().await;
}
