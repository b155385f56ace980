//! The `arcane-compute` binary: boots on a log, answers a verified sealed request, exits cleanly;
//! refuses production mode without an NSM and token verifier.

mod common;

use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_arcane-compute");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_binary_serves_a_verified_request_and_stops_on_sigterm() {
    let stack = common::stack().await;
    stack.publish_release(stack.model.sha256).await;
    let mut node = stack.spawn_node(BINARY, &["--refresh-secs", "1"]);
    let client = stack.process_client(&node);
    let answer = client.chat("Hello there", 16).await;
    assert!(!answer.chunks.is_empty());
    // Refreshed documents keep verifying.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = client.chat("And again", 8).await;
    assert!(!again.chunks.is_empty());
    let status: serde_json::Value = client
        .http
        .get(format!("{}/v1/status", node.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["serving"], true);
    assert_eq!(status["model_sha256"], hex::encode(stack.model.sha256));
    let pid = node.process.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = node.process.0.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_binary_without_its_release_exits_with_status_3() {
    let stack = common::stack().await;
    let out = std::process::Command::new(BINARY)
        .args([
            "serve",
            "--development",
            "--no-token-check",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--model")
        .arg(&stack.model.path)
        .args([
            "--log",
            &stack.log_url,
            "--log-key",
            &stack.log_key.to_text(),
        ])
        .args(["--publisher", &stack.publisher.verifier().to_text()])
        .arg("--simulated-pcrs")
        .arg({
            let p = stack.dir.path().join("p.json");
            std::fs::write(
                &p,
                format!(
                    r#"{{"pcr0":"{}","pcr1":"{}","pcr2":"{}"}}"#,
                    "11".repeat(48),
                    "22".repeat(48),
                    "33".repeat(48)
                ),
            )
            .unwrap();
            p
        })
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&"11".repeat(48)), "{stderr}");
}

#[test]
fn production_mode_refuses_to_start_without_nsm_and_token_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(dir.path());
    let out = std::process::Command::new(BINARY)
        .args([
            "serve",
            "--log",
            "http://127.0.0.1:9",
            "--log-key",
            "x+00000000+AA",
            "--publisher",
            "y",
        ])
        .arg("--model")
        .arg(&model.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nsm") || stderr.contains("token verifier"),
        "{stderr}"
    );
    // The development-only option is refused without --development.
    let out = std::process::Command::new(BINARY)
        .args([
            "serve",
            "--log",
            "http://127.0.0.1:9",
            "--publisher",
            "y",
            "--simulated-pcrs",
            "p.json",
        ])
        .arg("--model")
        .arg(&model.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Nothing to serve without a model, a log and a publisher.
    let out = std::process::Command::new(BINARY)
        .args(["serve", "--development"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("required"));
}

/// Two stand-ins for gateway replicas' registration endpoint that, like the gateway, challenge
/// the registered URL with a nonce before accepting: the node (given `--gateway` twice)
/// registers with both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_binary_registers_with_each_gateway_and_answers_its_challenge() {
    use arcane_verifier::attested::{NodeBundle, NodeRegistration};
    let stack = common::stack().await;
    stack.publish_release(stack.model.sha256).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, NodeRegistration)>(8);
    let mut gateways = Vec::new();
    for replica in 0..2usize {
        let tx = tx.clone();
        let app = axum::Router::new().route(
            "/v1/nodes",
            axum::routing::post(move |axum::Json(reg): axum::Json<NodeRegistration>| {
                let tx = tx.clone();
                async move {
                    let nonce = [7u8 + replica as u8; 16];
                    let url = format!("{}/v1/attestation?nonce={}", reg.url, hex::encode(nonce));
                    let answered = match reqwest::get(url).await {
                        Ok(r) if r.status() == 200 => NodeBundle::parse(&r.bytes().await.unwrap())
                            .ok()
                            .and_then(|b| arcane_verifier::nitro::parse_document(&b.document).ok())
                            .is_some_and(|(_, doc)| doc.nonce.as_deref() == Some(&nonce[..])),
                        _ => false,
                    };
                    if answered {
                        tx.send((replica, reg)).await.unwrap();
                        axum::http::StatusCode::OK
                    } else {
                        axum::http::StatusCode::FORBIDDEN
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        gateways.push(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    // A free port for the node, so that its advertised URL is known before it starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let advertise = format!("http://{listen}");
    let _node = stack.spawn_node(
        BINARY,
        &[
            "--listen",
            &listen,
            "--gateway",
            &gateways[0],
            "--gateway",
            &gateways[1],
            "--advertise",
            &advertise,
        ],
    );
    let mut registered = [false; 2];
    while registered != [true, true] {
        let (replica, registration) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("the node registered with both within 20 s")
            .unwrap();
        assert_eq!(registration.url, advertise);
        assert_eq!(registration.model, stack.model.name);
        assert!(registration.bundle().is_ok());
        registered[replica] = true;
    }
}
