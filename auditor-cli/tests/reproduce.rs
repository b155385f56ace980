//! `arcane-audit reproduce`: an EIF whose measurements a logged release names is reproduced; any
//! other is not.

use std::process::Command;
use std::time::Duration;

use arcane_log::keys::{AllowedKinds, PublisherPolicy, generate_signer};
use arcane_log::publish::{ReleaseInfo, publish, release_body};
use arcane_verifier::eif::{SECTION_CMDLINE, SECTION_KERNEL, SECTION_RAMDISK, build, measure};
use arcane_verifier::note::VerifierKey;

fn eif(app: &[u8]) -> Vec<u8> {
    build(&[
        (SECTION_KERNEL, b"kernel"),
        (SECTION_CMDLINE, b"console=ttyS0"),
        (SECTION_RAMDISK, b"init"),
        (SECTION_RAMDISK, app),
    ])
    .unwrap()
}

#[derive(Clone)]
struct Args {
    path: std::path::PathBuf,
    base: String,
    vkey: String,
    publisher: String,
}

async fn reproduce(args: Args, image: Vec<u8>) -> (Option<i32>, serde_json::Value) {
    tokio::task::spawn_blocking(move || {
        std::fs::write(&args.path, image).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_arcane-audit"))
            .args([
                "reproduce",
                "--eif",
                args.path.to_str().unwrap(),
                "--url",
                &args.base,
            ])
            .args([
                "--log-key",
                &args.vkey,
                "--publisher",
                &args.publisher,
                "--json",
            ])
            .output()
            .unwrap();
        (
            output.status.code(),
            serde_json::from_slice(&output.stdout).unwrap(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reproduces_only_logged_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = arcane_log::ServeConfig::new(data.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.sequencer.batch_delay = Duration::from_millis(10);
    let server = arcane_log::start(config).await.unwrap();
    let base = format!("http://{}", server.addr());
    let operator = generate_signer("operator").unwrap();
    PublisherPolicy::new(data.join(arcane_log::POLICY_FILE))
        .allow(
            &operator.verifier(),
            &AllowedKinds::parse("release").unwrap(),
        )
        .unwrap();
    let client = arcane_log::client::LogClient::new(&base).unwrap();
    let log_key = VerifierKey::parse(server.vkey()).unwrap();
    let logged = eif(b"application v1");
    let info = ReleaseInfo {
        model_sha256: [1; 32],
        engine: "mistral.rs".into(),
        engine_version: "0.8.1".into(),
        source_commit: "abc".into(),
        notes: String::new(),
    };
    publish(
        &client,
        &operator,
        &log_key,
        release_body(&measure(&logged[..]).unwrap(), info),
        Duration::from_secs(86_400),
    )
    .await
    .unwrap();

    let args = Args {
        path: dir.path().join("image.eif"),
        base,
        vkey: server.vkey().to_owned(),
        publisher: operator.verifier().to_text(),
    };
    let (code, reply) = reproduce(args.clone(), logged).await;
    assert_eq!(code, Some(0), "{reply}");
    assert_eq!(reply["reproduced"], true);
    assert_eq!(reply["index"], 0);
    let (code, reply) = reproduce(args, eif(b"application v2, never published")).await;
    assert_eq!(code, Some(1), "{reply}");
    assert_eq!(reply["reproduced"], false);
    server.shutdown().await;
}
