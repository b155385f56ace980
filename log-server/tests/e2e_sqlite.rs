//! End-to-end tests of the log server on its embedded SQLite default, over real sockets.

mod common;
mod suite;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

use arcane_log::keys::generate_signer;
use arcane_log::submission::{MAX_ENTRY_BYTES, Submission};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::start(&dir.path().join("data"), None).await;
    suite::appends_proofs_and_tiles(&log).await;
    suite::duplicates_get_the_same_index(&log).await;
    log.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_key_tree_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = common::start(&data, None).await;
    log.add_all(&common::entries("before", 10)).await;
    let before = log.checkpoint().await;
    let vkey = log.server.vkey().to_owned();
    log.server.shutdown().await;

    let log = common::start(&data, None).await;
    assert_eq!(log.server.vkey(), vkey, "same log key after restart");
    assert_eq!(
        std::fs::read_to_string(data.join("log.vkey"))
            .unwrap()
            .trim(),
        vkey
    );
    let after = log.checkpoint().await;
    assert_eq!(after.checkpoint, before.checkpoint);
    log.add_all(&common::entries("after", 3)).await;
    assert_eq!(log.checkpoint().await.checkpoint.size, 13);
    log.server.shutdown().await;

    // A different origin for the same data directory is refused.
    let mut config = common::config(&data, None);
    config.origin = Some("example.com/other".into());
    assert!(arcane_log::start(config).await.is_err());
}

async fn status_and_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("errors are JSON");
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_json_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::start(&dir.path().join("data"), None).await;
    log.add_all(&common::entries("base", 3)).await;
    let before = log.checkpoint().await;
    let post = |body: Vec<u8>| {
        log.http
            .post(format!("{}/v1/entries", log.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let good = Submission::sign(b"a good entry", &log.publisher);
    let stranger = generate_signer("stranger").unwrap();
    let mut forged = good.clone();
    forged.entry = BASE64.encode(b"another entry");
    let mut bad_b64 = good.clone();
    bad_b64.entry = "@@@".into();
    let mut bad_key = good.clone();
    bad_key.publisher = "not a key".into();
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "bad_request"),
        (b"{}".to_vec(), 400, "bad_request"),
        (
            serde_json::to_vec(
                &json!({"entry": "AA==", "publisher": "x", "signature": "AA==", "extra": 1}),
            )
            .unwrap(),
            400,
            "bad_request",
        ),
        (serde_json::to_vec(&bad_b64).unwrap(), 400, "bad_request"),
        (serde_json::to_vec(&bad_key).unwrap(), 400, "bad_request"),
        (serde_json::to_vec(&forged).unwrap(), 403, "bad_signature"),
        (
            serde_json::to_vec(&Submission::sign(b"x", &stranger)).unwrap(),
            403,
            "unknown_publisher",
        ),
        (
            serde_json::to_vec(&Submission::sign(
                &vec![1u8; MAX_ENTRY_BYTES + 1],
                &log.publisher,
            ))
            .unwrap(),
            413,
            "entry_too_large",
        ),
        (vec![b' '; 200_000], 413, "body_too_large"),
    ];
    for (body, want_status, want_code) in cases {
        let response = post(body).await.unwrap();
        let (status, code) = status_and_code(response).await;
        assert_eq!((status, code.as_str()), (want_status, want_code));
    }
    for (path, want) in [
        ("/tile/0/0", 400),
        ("/tile/0/x000/000", 400),
        ("/tile/0/000.p/0", 400),
        ("/tile/0/000.p/03", 400),
        ("/tile/99/000", 400),
        ("/tile/0/000", 404),
        ("/tile/0/000.p/4", 404),
        ("/tile/entries/001.p/1", 404),
        ("/v1/proof/inclusion?index=3", 400),
        ("/v1/proof/inclusion?index=0&size=4", 400),
        ("/v1/proof/inclusion?index=01", 400),
        ("/v1/proof/inclusion?index=-1", 400),
        ("/v1/proof/inclusion?index=0&leaf_hash=00", 400),
        ("/v1/proof/inclusion?leaf_hash=zz", 400),
        ("/v1/proof/inclusion?index=99999999999999999999", 400),
        ("/v1/proof/consistency?old=0&new=3", 400),
        ("/v1/proof/consistency?old=3&new=2", 400),
        ("/v1/proof/consistency?old=1&new=4", 400),
        ("/v1/proof/consistency?old=x", 400),
        ("/v1/proof/consistency", 400),
        ("/v1/entries/3", 404),
        ("/v1/entries/abc", 400),
        ("/v1/entries/by-hash/1234", 400),
        ("/nope", 404),
    ] {
        let response = log.get(path).await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("errors are JSON");
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        log.checkpoint().await.checkpoint,
        before.checkpoint,
        "nothing changed"
    );
    let health = log.json("/healthz").await;
    assert_eq!(health["pending"], 0);
    let metrics = log.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("arcane_log_tree_size 3"), "{metrics}");
    assert!(
        metrics.contains("arcane_log_submissions_rejected_total 9"),
        "{metrics}"
    );
    assert!(
        metrics.contains("arcane_log_integration_latency_seconds_count 3"),
        "{metrics}"
    );
    log.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_allowed_while_running_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = common::start(&data, None).await;
    let late = generate_signer("late").unwrap();
    let refused = log.client.add(b"late entry", &late).await;
    assert!(refused.is_err());
    arcane_log::keys::PublisherPolicy::new(data.join(arcane_log::POLICY_FILE))
        .allow(
            &late.verifier(),
            &arcane_log::keys::AllowedKinds::parse("release,ohttp-keys,token-key,opaque").unwrap(),
        )
        .unwrap();
    let accepted = log.client.add(b"late entry", &late).await.unwrap();
    assert!(!accepted.duplicate);
    log.server.shutdown().await;
}

/// The operator's commands, as a person would run them against a live server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keygen_allow_and_add() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = common::start(&data, None).await;
    let bin = env!("CARGO_BIN_EXE_arcane-log");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(bin).args(args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let key = dir.path().join("operator.key");
    let key_arg = key.to_str().unwrap();
    let (ok, public, _) = run(&[
        "publisher",
        "keygen",
        "--out",
        key_arg,
        "--name",
        "operator",
    ]);
    assert!(ok);
    assert!(public.starts_with("operator+"), "{public}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (ok, _, stderr) = run(&["publisher", "keygen", "--out", key_arg]);
    assert!(
        !ok && stderr.contains("arcane-log:"),
        "never overwrites a key: {stderr}"
    );

    let entry = dir.path().join("entry.bin");
    std::fs::write(&entry, b"an entry from the command line").unwrap();
    let (ok, _, stderr) = run(&[
        "add",
        "--url",
        &log.base,
        "--key",
        key_arg,
        entry.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("403"), "not yet allowed: {stderr}");
    let unreachable = std::process::Command::new(bin)
        .args([
            "add",
            "--url",
            "http://127.0.0.1:9",
            "--key",
            key_arg,
            entry.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        unreachable.status.code(),
        Some(4),
        "unreachable has its own exit status"
    );

    let (ok, said, _) = run(&[
        "publisher",
        "allow",
        "--data-dir",
        data.to_str().unwrap(),
        public.trim(),
    ]);
    assert!(ok && said.starts_with("allowed"), "{said}");
    // Allowed typed kinds only: an opaque entry is still refused, with the "refused" exit status.
    let output = std::process::Command::new(bin)
        .args([
            "add",
            "--url",
            &log.base,
            "--key",
            key_arg,
            entry.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("opaque"));
    let data_arg = data.to_str().unwrap();
    let (ok, said, _) = run(&[
        "publisher",
        "allow",
        "--data-dir",
        data_arg,
        "--kinds",
        "opaque",
        public.trim(),
    ]);
    assert!(ok && said.contains("to publish opaque"), "{said}");
    let (ok, line, stderr) = run(&[
        "add",
        "--url",
        &log.base,
        "--key",
        key_arg,
        "--wait",
        entry.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[0], "0");
    assert_eq!(
        fields[1],
        arcane_verifier::merkle::leaf_hash(b"an entry from the command line").to_hex()
    );
    assert_eq!(log.checkpoint().await.checkpoint.size, 1);

    let (ok, _, stderr) = run(&[
        "add",
        "--url",
        &log.base,
        "--key",
        "/nonexistent",
        entry.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("/nonexistent"), "{stderr}");
    let (ok, help, _) = run(&["serve", "--help"]);
    assert!(ok && help.contains("--database-url"));
    log.server.shutdown().await;
}
