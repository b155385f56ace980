//! The `arcane` binary: `demo --serve` brings the whole stack up and answers; `verify`, `chat`
//! and `receipts` work against it with the trust file it prints; a wrong trust file makes
//! `verify` fail naming the check; SIGTERM stops the demo cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const ARCANE: &str = env!("CARGO_BIN_EXE_arcane");

#[test]
fn demo_serves_and_the_cli_verifies_chats_and_lists_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    arcane_engine::gguf::write_tiny_llama(&model, &Default::default()).unwrap();
    let data = dir.path().join("demo");
    let mut demo = Command::new(ARCANE)
        .args([
            "demo",
            "--serve",
            "--prompt",
            "Hello",
            "--max-tokens",
            "8",
            "--model",
        ])
        .arg(&model)
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(demo.stdout.take().unwrap());
    let mut services = std::collections::BTreeMap::new();
    let mut answer = String::new();
    while services.len() < 4 {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the demo stopped early"
        );
        match line.trim().split_once(": ") {
            Some((name @ ("log" | "gateway" | "relay" | "trust"), value)) => {
                services.insert(name.to_owned(), value.to_owned());
            }
            _ => answer.push_str(&line),
        }
    }
    assert!(
        !answer.trim().is_empty(),
        "the demo printed its answer first"
    );
    for name in ["log", "gateway", "relay"] {
        assert!(
            services[name].starts_with("http://127.0.0.1:"),
            "{services:?}"
        );
    }
    let trust = services["trust"].clone();
    let state = data.join("client-state");
    let arcane = |args: &[&str]| {
        Command::new(ARCANE)
            .args(args)
            .args(["--trust", &trust, "--state-dir"])
            .arg(&state)
            .output()
            .unwrap()
    };

    let verified = arcane(&["verify", "--json"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let checks: Vec<_> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        checks,
        [
            "checkpoint",
            "witnesses",
            "consistency",
            "ohttp-keys",
            "token-keys",
            "nodes"
        ]
    );

    let chat = arcane(&[
        "chat",
        "--quiet",
        "--route",
        "cloud",
        "--max-tokens",
        "6",
        "How are you?",
    ]);
    assert!(
        chat.status.success(),
        "{}",
        String::from_utf8_lossy(&chat.stderr)
    );
    let chatty = String::from_utf8_lossy(&chat.stderr);
    assert!(!chatty.contains("✓"), "--quiet hides the checks: {chatty}");
    assert!(chatty.contains("answered by the node"), "{chatty}");

    let receipts = arcane(&["receipts", "--json"]);
    assert!(receipts.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&receipts.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "the demo's request and the chat");
    assert!(lines.iter().all(|r| r["outcome"] == "answered"));

    // A trust file with another log key: verify fails, naming the check, exit 3.
    let text = std::fs::read_to_string(&trust).unwrap();
    let genuine = text
        .lines()
        .find_map(|l| l.strip_prefix("log_key = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let name = genuine.split('+').next().unwrap();
    let impostor = arcane_verifier::note::NoteSigner::from_seed(name, 1, &[5; 32])
        .unwrap()
        .verifier()
        .to_text();
    let wrong = dir.path().join("wrong-trust.toml");
    std::fs::write(
        &wrong,
        text.replace(&genuine, &impostor)
            .replace(
                "\"nsm-root.pem\"",
                &format!("{:?}", data.join("nsm-root.pem").display().to_string()),
            )
            .replace(
                "\"api-key\"",
                &format!("{:?}", data.join("api-key").display().to_string()),
            ),
    )
    .unwrap();
    let refused = Command::new(ARCANE)
        .args(["verify", "--trust"])
        .arg(&wrong)
        .arg("--state-dir")
        .arg(dir.path().join("other-state"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(3));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("✗ checkpoint"), "{why}");

    // SIGTERM: a clean stop.
    let pid = demo.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = demo.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_missing_trust_file_is_a_configuration_error() {
    let out = Command::new(ARCANE)
        .args(["verify", "--trust", "/nonexistent/trust.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/trust.toml"));
}
