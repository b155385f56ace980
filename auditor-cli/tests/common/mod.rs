//! Helpers shared by the auditor's integration tests: a log server and witnesses on 127.0.0.1.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arcane_log::keys::{AllowedKinds, PublisherPolicy};
use arcane_verifier::note::{NoteSigner, VerifierKey};

/// Starts a log server on a free port; returns it and its base URL.
pub async fn start_log(data: &Path) -> (arcane_log::RunningServer, String) {
    start_log_with(data, None).await
}

/// Like [`start_log`], with a witness policy file.
pub async fn start_log_with(
    data: &Path,
    witness_policy: Option<PathBuf>,
) -> (arcane_log::RunningServer, String) {
    let mut config = arcane_log::ServeConfig::new(data.to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.sequencer.batch_delay = Duration::from_millis(10);
    config.witness_policy = witness_policy;
    let server = arcane_log::start(config).await.unwrap();
    let base = format!("http://{}", server.addr());
    (server, base)
}

/// Allows `key` to publish `kinds` to the log in `data`.
pub fn allow(data: &Path, key: &NoteSigner, kinds: &str) {
    PublisherPolicy::new(data.join(arcane_log::POLICY_FILE))
        .allow(&key.verifier(), &AllowedKinds::parse(kinds).unwrap())
        .unwrap();
}

/// A running `arcane-audit witness serve`, stopped when dropped; `.1` is its `host:port`.
pub use arcane_test_support::Spawned as Witness;

/// Starts a witness of the log `log_vkey` listening on `listen` (`127.0.0.1:0` for any port).
pub fn start_witness(key: &Path, state: &Path, log_vkey: &str, listen: &str) -> Witness {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arcane-audit"));
    command
        .args([
            "witness",
            "serve",
            "--listen",
            listen,
            "--key",
            key.to_str().unwrap(),
        ])
        .args(["--state", state.to_str().unwrap(), "--log", log_vkey]);
    arcane_test_support::spawn_listening(command, "witness").unwrap()
}

/// Makes a witness key file in `dir`; returns its path and verifier key.
pub fn witness_keygen(dir: &Path, name: &str) -> (PathBuf, VerifierKey) {
    let path = dir.join(format!("{name}.key"));
    let out = Command::new(env!("CARGO_BIN_EXE_arcane-audit"))
        .args([
            "witness",
            "keygen",
            "--out",
            path.to_str().unwrap(),
            "--name",
            name,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    (
        path,
        VerifierKey::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap(),
    )
}

/// Runs `arcane-audit` with `args`: its exit code, its stdout as JSON (`Null` when not JSON), its
/// stderr.
pub async fn audit(args: Vec<String>) -> (Option<i32>, serde_json::Value, String) {
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_arcane-audit"))
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
        (
            output.status.code(),
            json,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// `parts` as owned arguments.
pub fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Adds `entries` signed by `publisher` and waits until each is integrated.
pub async fn add(
    client: &arcane_log::client::LogClient,
    publisher: &NoteSigner,
    entries: &[Vec<u8>],
) {
    for e in entries {
        let status = client.add(e, publisher).await.unwrap();
        client
            .wait_integrated(&status.leaf_hash, Duration::from_secs(30))
            .await
            .unwrap();
    }
}

/// A log in `dir/log` and a publisher allowed opaque entries: the server, its base URL, its
/// verifier key text, the publisher and a client of the log.
pub async fn log_with_writer(
    dir: &Path,
) -> (
    arcane_log::RunningServer,
    String,
    String,
    NoteSigner,
    arcane_log::client::LogClient,
) {
    let data = dir.join("log");
    let (server, base) = start_log(&data).await;
    let vkey = server.vkey().to_owned();
    let writer = arcane_log::keys::generate_signer("writer").unwrap();
    allow(&data, &writer, "opaque");
    let client = arcane_log::client::LogClient::new(&base).unwrap();
    (server, base, vkey, writer, client)
}
