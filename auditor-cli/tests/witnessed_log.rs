//! A log with a witness policy publishes a checkpoint only once its quorum of witnesses has
//! cosigned it; clients enforce the same policy file.

mod common;
use std::process::Command;
use std::time::{Duration, Instant};

use arcane_log::keys::{AllowedKinds, PublisherPolicy, generate_signer};
use arcane_verifier::note::VerifierKey;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn published_size(client: &arcane_log::client::LogClient) -> u64 {
    let text = client.checkpoint().await.unwrap();
    text.lines().nth(1).unwrap().parse().unwrap()
}

async fn wait_for_size(client: &arcane_log::client::LogClient, size: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if published_size(client).await >= size {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_only_with_a_quorum_of_cosignatures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    arcane_log::init_data_dir(&data, None).unwrap();
    let log_vkey = std::fs::read_to_string(data.join("log.vkey"))
        .unwrap()
        .trim()
        .to_owned();
    let (k1, v1) = common::witness_keygen(dir.path(), "w1.example");
    let (k2, v2) = common::witness_keygen(dir.path(), "w2.example");
    let (port1, port2) = (free_port(), free_port());
    let w1 = common::start_witness(
        &k1,
        &dir.path().join("w1"),
        &log_vkey,
        &format!("127.0.0.1:{port1}"),
    );
    let w2 = common::start_witness(
        &k2,
        &dir.path().join("w2"),
        &log_vkey,
        &format!("127.0.0.1:{port2}"),
    );
    let hex = |k: &VerifierKey| {
        k.public_key()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let policy = dir.path().join("policy");
    std::fs::write(
        &policy,
        format!(
            "witness w1.example {} http://{}\nwitness w2.example {} http://{}\ngroup both 2 w1.example w2.example\nquorum both\n",
            hex(&v1), w1.1, hex(&v2), w2.1
        ),
    )
    .unwrap();

    let (server, base) = common::start_log_with(&data, Some(policy.clone())).await;
    let writer = generate_signer("writer").unwrap();
    PublisherPolicy::new(data.join(arcane_log::POLICY_FILE))
        .allow(&writer.verifier(), &AllowedKinds::parse("opaque").unwrap())
        .unwrap();
    let client = arcane_log::client::LogClient::new(&base).unwrap();
    for i in 0..5 {
        client
            .add(format!("entry {i}").as_bytes(), &writer)
            .await
            .unwrap();
    }
    assert!(
        wait_for_size(&client, 5).await,
        "published with both cosignatures"
    );

    let audit = |args: Vec<String>| {
        let output = Command::new(env!("CARGO_BIN_EXE_arcane-audit"))
            .args(&args)
            .output()
            .unwrap();
        (
            output.status.code(),
            serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default(),
        )
    };
    let args = vec![
        "checkpoint".into(),
        "--url".into(),
        base.clone(),
        "--vkey".into(),
        log_vkey.clone(),
        "--witness-policy".into(),
        policy.to_str().unwrap().to_owned(),
        "--json".into(),
    ];
    let (code, v) = tokio::task::spawn_blocking({
        let args = args.clone();
        move || audit(args)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["cosignatures"].as_array().unwrap().len(), 2);

    // One witness down: new entries are stored but no checkpoint is published without quorum.
    drop(w2);
    for i in 5..9 {
        client
            .add(format!("entry {i}").as_bytes(), &writer)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(published_size(&client).await, 5);
    // A restart meanwhile still serves only the last cosigned checkpoint.
    server.shutdown().await;
    let (server, base) = common::start_log_with(&data, Some(policy.clone())).await;
    let client = arcane_log::client::LogClient::new(&base).unwrap();
    assert_eq!(published_size(&client).await, 5);
    // It comes back (same state): the next round publishes, with a proof from what it cosigned.
    let _w2 = common::start_witness(
        &k2,
        &dir.path().join("w2"),
        &log_vkey,
        &format!("127.0.0.1:{port2}"),
    );
    assert!(
        wait_for_size(&client, 9).await,
        "published again once the quorum is back"
    );
    let mut args = args;
    args[2] = base.clone(); // the restarted server's address
    let (code, v) = tokio::task::spawn_blocking(move || audit(args))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["size"], 9);
    drop(w1);
    server.shutdown().await;
}

/// A witness that answers every `add-checkpoint` with `200` and `answer` as its body.
async fn hostile_witness(answer: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Head, then as much body as Content-Length says.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_witnesses_cannot_stop_a_quorum_of_others() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    arcane_log::init_data_dir(&data, None).unwrap();
    let log_vkey = std::fs::read_to_string(data.join("log.vkey"))
        .unwrap()
        .trim()
        .to_owned();
    let (_, forger) = common::witness_keygen(dir.path(), "forger.example");
    let (_, babbler) = common::witness_keygen(dir.path(), "babbler.example");
    let (honest_key, honest) = common::witness_keygen(dir.path(), "honest.example");
    // A line with the forger's name and key id whose signature is zeros; an answer that is
    // no signature line at all.
    let mut forged = forger.key_id().to_be_bytes().to_vec();
    forged.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    forged.extend_from_slice(&[0u8; 64]);
    let forged_line = format!(
        "— forger.example {}\n",
        base64::engine::general_purpose::STANDARD.encode(&forged)
    );
    let forger_addr = hostile_witness(forged_line).await;
    let babbler_addr = hostile_witness("this is not a cosignature\n".into()).await;
    let honest_witness = common::start_witness(
        &honest_key,
        &dir.path().join("honest"),
        &log_vkey,
        "127.0.0.1:0",
    );
    let hex = |k: &VerifierKey| hex::encode(k.public_key().as_bytes());
    let policy = dir.path().join("policy");
    // The hostile witnesses come first: each used to stop the round before the honest one.
    std::fs::write(
        &policy,
        format!(
            "witness forger.example {} http://{forger_addr}\nwitness babbler.example {} http://{babbler_addr}\nwitness honest.example {} http://{}\ngroup any-one 1 forger.example babbler.example honest.example\nquorum any-one\n",
            hex(&forger),
            hex(&babbler),
            hex(&honest),
            honest_witness.1
        ),
    )
    .unwrap();
    let (server, base) = common::start_log_with(&data, Some(policy.clone())).await;
    let writer = generate_signer("writer").unwrap();
    PublisherPolicy::new(data.join(arcane_log::POLICY_FILE))
        .allow(&writer.verifier(), &AllowedKinds::parse("opaque").unwrap())
        .unwrap();
    let client = arcane_log::client::LogClient::new(&base).unwrap();
    for i in 0..3 {
        client
            .add(format!("entry {i}").as_bytes(), &writer)
            .await
            .unwrap();
    }
    assert!(
        wait_for_size(&client, 3).await,
        "published on the honest witness's cosignature"
    );
    // What is published carries the honest line only, and meets the policy for a client.
    let note = client.checkpoint().await.unwrap();
    assert!(note.contains("— honest.example "), "{note}");
    assert!(!note.contains("— forger.example "), "{note}");
    let policy_text = std::fs::read_to_string(&policy).unwrap();
    let (witnesses, _) = arcane_verifier::cosignature::parse_policy_file(&policy_text).unwrap();
    arcane_verifier::checkpoint::verify_checkpoint(
        note.as_bytes(),
        &VerifierKey::parse(&log_vkey).unwrap(),
        &witnesses,
    )
    .unwrap();
    server.shutdown().await;
}
