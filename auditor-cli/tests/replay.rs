//! `arcane-audit replay` recomputes the same root as the server for thousands of entries, counts
//! kinds, and resumes from saved progress.

use std::process::Command;
use std::time::Duration;

use arcane_log::keys::{AllowedKinds, PublisherPolicy, generate_signer};

async fn replay(args: Vec<String>) -> (Option<i32>, serde_json::Value) {
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_arcane-audit"))
            .args(&args)
            .output()
            .unwrap();
        (
            output.status.code(),
            serde_json::from_slice(&output.stdout).unwrap_or_default(),
        )
    })
    .await
    .unwrap()
}

async fn add(
    client: &arcane_log::client::LogClient,
    writer: &arcane_verifier::note::NoteSigner,
    from: usize,
    to: usize,
) {
    let mut last = None;
    for i in from..to {
        last = Some(
            client
                .add(format!("replayed entry {i}").as_bytes(), writer)
                .await
                .unwrap(),
        );
    }
    client
        .wait_integrated(&last.unwrap().leaf_hash, Duration::from_secs(60))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_thousands_of_entries_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let mut config = arcane_log::ServeConfig::new(data.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.sequencer.batch_delay = Duration::from_millis(10);
    let server = arcane_log::start(config).await.unwrap();
    let base = format!("http://{}", server.addr());
    let writer = generate_signer("writer").unwrap();
    PublisherPolicy::new(data.join(arcane_log::POLICY_FILE))
        .allow(&writer.verifier(), &AllowedKinds::parse("opaque").unwrap())
        .unwrap();
    let client = arcane_log::client::LogClient::new(&base).unwrap();
    add(&client, &writer, 0, 2000).await;
    let state = dir.path().join("state");
    let args = |state: &std::path::Path| -> Vec<String> {
        [
            "replay",
            "--url",
            &base,
            "--vkey",
            server.vkey(),
            "--state",
            state.to_str().unwrap(),
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let (code, v) = replay(args(&state)).await;
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["tree_size"], 2000);
    assert_eq!(v["root_matches"], true);
    assert_eq!(v["recomputed_root"], v["root"]);
    assert_eq!(v["entries_per_kind"]["opaque"], 2000);
    assert_eq!(v["resumed_from"], 0);

    add(&client, &writer, 2000, 3100).await;
    let (code, v) = replay(args(&state)).await;
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["tree_size"], 3100);
    assert_eq!(
        v["resumed_from"], 1792,
        "resumes at the last whole bundle (7 × 256)"
    );
    assert_eq!(v["root_matches"], true);
    server.shutdown().await;
}
