//! Go's reference transparency-log implementation (golang.org/x/mod/sumdb/note and sumdb/tlog,
//! from Debian's golang-golang-x-mod-dev), unmodified, verifies this server's checkpoints, tiles,
//! entry bundles and proofs.
//!
//! Skipped, loudly, when Go or the package is missing, unless ARCANE_REQUIRE_INTEROP=1 (as in CI).

mod common;

use std::path::Path;
use std::process::Command;

const GO_PACKAGES: &str = "/usr/share/gocode";

fn go_available() -> bool {
    let have_go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    have_go
        && Path::new(GO_PACKAGES)
            .join("src/golang.org/x/mod/sumdb/tlog")
            .is_dir()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_sumdb_verifies_checkpoints_tiles_and_proofs() {
    if !go_available() {
        assert!(
            std::env::var("ARCANE_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "ARCANE_REQUIRE_INTEROP=1 but Go or golang-golang-x-mod-dev is missing"
        );
        eprintln!(
            "SKIPPED go_sumdb_verifies_checkpoints_tiles_and_proofs: install golang-go and \
             golang-golang-x-mod-dev to run the independent Go verifier"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = common::start(&dir.path().join("data"), None).await;
    log.add_all(&common::entries("first", 100)).await;
    let old = log.client.checkpoint().await.unwrap();
    let old_file = dir.path().join("old.checkpoint");
    std::fs::write(&old_file, &old).unwrap();
    log.add_all(&common::entries("second", 300)).await;
    log.add_all(&common::entries("third", 213)).await;
    assert_eq!(log.checkpoint().await.checkpoint.size, 613);

    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/verify_with_go.go");
    let gopath = dir.path().join("gopath");
    let base = log.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("go")
            .arg("run")
            .arg(&program)
            .arg(&base)
            .arg(&old_file)
            .env("GO111MODULE", "off")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GOPATH", format!("{}:{GO_PACKAGES}", gopath.display()))
            .env("GOCACHE", gopath.join("cache"))
            .output()
            .expect("go runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Go verifier failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("go-verifier: ok: size 613"), "{stdout}");
    assert!(stdout.contains("consistency 100 -> 613"), "{stdout}");
    eprintln!("{}", stdout.trim());
    log.server.shutdown().await;
}
