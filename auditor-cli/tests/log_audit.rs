//! The log audits against real log servers on 127.0.0.1: checkpoint, inclusion at several sizes,
//! consistency across growth and against a forked log (same key, other entries), current entries.

use std::path::PathBuf;

mod common;
use common::{add, args, audit};
use std::time::Duration;

use arcane_log::keys::generate_signer;
use arcane_log::publish::publish;
use arcane_verifier::bundle::ProofBundle;
use arcane_verifier::entry::{EntryBody, KEM_X25519_SHA256, OhttpKeyConfig};
use arcane_verifier::merkle::leaf_hash;
use arcane_verifier::note::VerifierKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_inclusion_consistency_and_forks() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base, vkey, writer, client) = common::log_with_writer(dir.path()).await;
    let data = dir.path().join("log");
    let entries: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("audited entry {i}").into_bytes())
        .collect();
    add(&client, &writer, &entries[..10]).await;

    let (code, v, _) = audit(args(&[
        "checkpoint",
        "--url",
        &base,
        "--vkey",
        &vkey,
        "--json",
    ]))
    .await;
    assert_eq!(code, Some(0));
    assert_eq!(v["size"], 10);

    let state = dir.path().join("state");
    let consistency = |url: &str| {
        args(&[
            "consistency",
            "--url",
            url,
            "--vkey",
            &vkey,
            "--state",
            state.to_str().unwrap(),
            "--json",
        ])
    };
    let (code, v, err) = audit(consistency(&base)).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["size"], 10);
    add(&client, &writer, &entries[10..40]).await;
    let (code, v, err) = audit(consistency(&base)).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["size"], 40);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("extends the saved size 10")
    );

    // Inclusion at several sizes, by index, leaf hash and file.
    let file = dir.path().join("entry");
    std::fs::write(&file, &entries[7]).unwrap();
    for (selector, value) in [
        ("--index", "7".to_owned()),
        ("--leaf-hash", leaf_hash(&entries[7]).to_hex()),
        ("--file", file.to_str().unwrap().to_owned()),
    ] {
        for size in ["10", "25", "40"] {
            let (code, v, err) = audit(args(&[
                "inclusion",
                "--url",
                &base,
                "--vkey",
                &vkey,
                selector,
                &value,
                "--size",
                size,
                "--json",
            ]))
            .await;
            assert_eq!(code, Some(0), "{selector} {size}: {err}");
            assert_eq!(v["index"], 7);
            assert_eq!(v["tree_size"].to_string(), size);
            let bundle = ProofBundle::parse(v["bundle"].as_str().unwrap().as_bytes()).unwrap();
            assert_eq!(bundle.entry, entries[7]);
        }
    }

    // A second log with the same key and other entries: a fork, caught and kept as evidence.
    let forked_data = dir.path().join("fork");
    std::fs::create_dir_all(&forked_data).unwrap();
    std::fs::copy(data.join("log.key"), forked_data.join("log.key")).unwrap();
    let (fork, fork_base) = common::start_log(&forked_data).await;
    common::allow(&forked_data, &writer, "opaque");
    let fork_client = arcane_log::client::LogClient::new(&fork_base).unwrap();
    let other: Vec<Vec<u8>> = (0..41)
        .map(|i| format!("another history {i}").into_bytes())
        .collect();
    add(&fork_client, &writer, &other).await;
    let (code, v, err) = audit(consistency(&fork_base)).await;
    assert_eq!(code, Some(1), "{v} {err}");
    assert!(err.contains("possible fork"), "{err}");
    let evidence: Vec<PathBuf> = std::fs::read_dir(state.join("evidence"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(evidence.len(), 1);
    let saved = std::fs::read_to_string(evidence[0].join("saved.checkpoint")).unwrap();
    let current = std::fs::read_to_string(evidence[0].join("shown.checkpoint")).unwrap();
    assert!(saved.contains("\n40\n") && current.contains("\n41\n"));

    // Unreachable is its own exit status.
    let (code, _, _) = audit(args(&[
        "checkpoint",
        "--url",
        "http://127.0.0.1:9",
        "--vkey",
        &vkey,
    ]))
    .await;
    assert_eq!(code, Some(3));
    fork.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_keys_with_publisher_trust() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let (server, base) = common::start_log(&data).await;
    let log_key = VerifierKey::parse(server.vkey()).unwrap();
    let (gateway, rogue) = (
        generate_signer("gateway").unwrap(),
        generate_signer("rogue").unwrap(),
    );
    common::allow(&data, &gateway, "ohttp-keys");
    common::allow(&data, &rogue, "ohttp-keys");
    let client = arcane_log::client::LogClient::new(&base).unwrap();
    for (publisher, key_id) in [(&gateway, 1u8), (&rogue, 2)] {
        let body = EntryBody::OhttpKeys(OhttpKeyConfig {
            key_id,
            kem_id: KEM_X25519_SHA256,
            public_key: vec![key_id; 32],
            symmetric: vec![(1, 1)],
        });
        publish(
            &client,
            publisher,
            &log_key,
            body,
            Duration::from_secs(86_400),
        )
        .await
        .unwrap();
    }
    let vkey = server.vkey().to_owned();
    let (code, v, err) = audit(args(&[
        "keys",
        "--url",
        &base,
        "--vkey",
        &vkey,
        "--publisher",
        &gateway.verifier().to_text(),
        "--json",
    ]))
    .await;
    assert_eq!(code, Some(0), "{err}");
    let rows = v["entries"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["trusted_publisher"], true);
    assert_eq!(rows[1]["trusted_publisher"], false);
    let (code, v, _) = audit(args(&[
        "releases", "--url", &base, "--vkey", &vkey, "--json",
    ]))
    .await;
    assert_eq!(code, Some(0));
    assert_eq!(v["entries"].as_array().unwrap().len(), 0);
    server.shutdown().await;
}
