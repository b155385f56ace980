//! Typed entries through the log: publishing rules per publisher and kind, nothing stored when
//! refused, lookups answered as proof bundles, and the operators' `publish` and `show` commands.

mod common;
mod suite;

use suite::typed::test_eif;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_rules_lookups_and_bundles_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::start(&dir.path().join("data"), None).await;
    suite::typed::publishing_rules_lookups_and_bundles(&log).await;
    log.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_release_and_show_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::start(&dir.path().join("data"), None).await;
    let bin = env!("CARGO_BIN_EXE_arcane-log");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let key = dir.path().join("operator.key");
    let public = run(&[
        "publisher",
        "keygen",
        "--out",
        key.to_str().unwrap(),
        "--name",
        "operator",
    ]);
    run(&[
        "publisher",
        "allow",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--kinds",
        "release",
        public.trim(),
    ]);
    let eif_path = dir.path().join("image.eif");
    let eif = test_eif(b"the application");
    std::fs::write(&eif_path, &eif).unwrap();
    let model = dir.path().join("model.gguf");
    std::fs::write(&model, b"GGUF pretend weights").unwrap();
    let out = run(&[
        "publish",
        "release",
        "--url",
        &log.base,
        "--key",
        key.to_str().unwrap(),
        "--log-key",
        log.server.vkey(),
        "--eif",
        eif_path.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--engine-version",
        "0.8.1",
        "--source-commit",
        "0123abcd",
        "--valid-days",
        "10",
        "--json",
    ]);
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reply["index"], 0);
    // The PCRs are those of the EIF, computed independently here.
    use sha2::{Digest, Sha256, Sha384};
    let extend = |parts: &[&[u8]]| {
        let mut inner = Sha384::new();
        parts.iter().for_each(|p| inner.update(p));
        let mut outer = Sha384::new();
        outer.update([0u8; 48]);
        outer.update(inner.finalize());
        hex::encode(outer.finalize())
    };
    let body = &reply["entry"]["body"];
    assert_eq!(
        body["pcr0"],
        extend(&[
            b"kernel image",
            b"console=ttyS0",
            b"init",
            b"the application"
        ])
    );
    assert_eq!(
        body["pcr1"],
        extend(&[b"kernel image", b"console=ttyS0", b"init"])
    );
    assert_eq!(body["pcr2"], extend(&[b"the application"]));
    assert_eq!(
        body["model_sha256"],
        hex::encode(Sha256::digest(b"GGUF pretend weights"))
    );
    assert_eq!(body["eif_sha384"], hex::encode(Sha384::digest(&eif)));
    assert_eq!(
        reply["entry"]["not_after"].as_u64().unwrap()
            - reply["entry"]["not_before"].as_u64().unwrap(),
        10 * 86_400
    );

    let bundle_path = dir.path().join("release.tlog-proof");
    std::fs::write(&bundle_path, reply["bundle"].as_str().unwrap()).unwrap();
    let shown: serde_json::Value =
        serde_json::from_str(&run(&["show", bundle_path.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(shown["index"], 0);
    assert_eq!(shown["entry"]["body"]["pcr0"], body["pcr0"]);
    assert_eq!(shown["verified"], false);

    // A corrupted EIF is refused before anything is sent.
    let mut corrupt = eif.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    std::fs::write(&eif_path, &corrupt).unwrap();
    let output = std::process::Command::new(bin)
        .args([
            "publish",
            "release",
            "--url",
            &log.base,
            "--key",
            key.to_str().unwrap(),
            "--log-key",
            log.server.vkey(),
            "--eif",
            eif_path.to_str().unwrap(),
            "--model-sha256",
            &"ab".repeat(32),
            "--engine-version",
            "1",
            "--source-commit",
            "c",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("CRC"));
    assert_eq!(log.checkpoint().await.checkpoint.size, 1);
    log.server.shutdown().await;
}
