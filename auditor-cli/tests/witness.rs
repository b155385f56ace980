//! `arcane-audit witness serve` against a real log on 127.0.0.1: cosigns consistent checkpoints,
//! answers 409 with its latest size, refuses a checkpoint not consistent with what it cosigned
//! (422), unknown logs (404) and forged signatures (403), and keeps its state across restarts.

mod common;

use common::Witness;
use std::process::Command;
use std::time::Duration;

use arcane_log::keys::{AllowedKinds, PublisherPolicy, generate_signer};
use arcane_verifier::Hash;
use arcane_verifier::checkpoint::Checkpoint;
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::note::{ALG_ED25519, Note, NoteSigner, VerifierKey};
use arcane_verifier::witness::AddCheckpoint;
use base64::Engine;

async fn add(
    http: &reqwest::Client,
    witness: &Witness,
    request: &AddCheckpoint,
) -> (u16, String, Option<String>) {
    let response = http
        .post(format!("http://{}/add-checkpoint", witness.1))
        .body(request.to_text())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), content_type)
}

fn proof(reply: &serde_json::Value) -> Vec<Hash> {
    reply["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            Hash::from_slice(
                &base64::engine::general_purpose::STANDARD
                    .decode(h.as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_cosigns_only_consistent_checkpoints() {
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
    let http = reqwest::Client::new();
    let add_entries = |from: u32, to: u32| {
        let (client, writer) = (client.clone(), &writer);
        async move {
            for i in from..to {
                let s = client
                    .add(format!("witnessed {i}").as_bytes(), writer)
                    .await
                    .unwrap();
                client
                    .wait_integrated(&s.leaf_hash, Duration::from_secs(30))
                    .await
                    .unwrap();
            }
        }
    };
    add_entries(0, 5).await;

    let key_file = dir.path().join("witness.key");
    let out = Command::new(env!("CARGO_BIN_EXE_arcane-audit"))
        .args([
            "witness",
            "keygen",
            "--out",
            key_file.to_str().unwrap(),
            "--name",
            "witness.example/w1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let witness_key = VerifierKey::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let policy = WitnessPolicy::new(vec![witness_key], 1).unwrap();
    let state = dir.path().join("witness-state");
    let witness = common::start_witness(&key_file, &state, server.vkey(), "127.0.0.1:0");

    // First contact, then a cosignature that verifies on the log's note.
    let first = client.checkpoint().await.unwrap();
    let (status, body, _) = add(
        &http,
        &witness,
        &AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: first.clone(),
        },
    )
    .await;
    assert_eq!(status, 200, "{body}");
    policy
        .check(&Note::parse(format!("{first}{body}").as_bytes()).unwrap())
        .unwrap();
    // Asking from 0 again: 409 with the size it holds.
    let (status, body, content_type) = add(
        &http,
        &witness,
        &AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: first.clone(),
        },
    )
    .await;
    assert_eq!(
        (status, body.as_str(), content_type.as_deref()),
        (409, "5\n", Some("text/x.tlog.size"))
    );

    // Growth with the log's consistency proof.
    add_entries(5, 12).await;
    let second = client.checkpoint().await.unwrap();
    let reply: serde_json::Value = http
        .get(format!("{base}/v1/proof/consistency?old=5&new=12"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, body, _) = add(
        &http,
        &witness,
        &AddCheckpoint {
            old_size: 5,
            proof: proof(&reply),
            checkpoint: second.clone(),
        },
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Another history under the same key, larger: not consistent with what was cosigned.
    let log_key_text = std::fs::read_to_string(data.join("log.key")).unwrap();
    let log_signer = NoteSigner::parse(log_key_text.trim()).unwrap();
    let forged_tree = Checkpoint::new(
        log_signer.name(),
        20,
        arcane_verifier::merkle::leaf_hash(b"another history"),
    );
    let forged = forged_tree.sign(&log_signer).unwrap().to_text();
    let (status, _, _) = add(
        &http,
        &witness,
        &AddCheckpoint {
            old_size: 12,
            proof: proof(&reply),
            checkpoint: forged,
        },
    )
    .await;
    assert_eq!(status, 422);
    // The same size with another root: 409.
    let same_size = Checkpoint::new(
        log_signer.name(),
        12,
        arcane_verifier::merkle::leaf_hash(b"x"),
    )
    .sign(&log_signer)
    .unwrap()
    .to_text();
    assert_eq!(
        add(
            &http,
            &witness,
            &AddCheckpoint {
                old_size: 12,
                proof: vec![],
                checkpoint: same_size
            }
        )
        .await
        .0,
        409
    );
    // Unknown log: 404. Signed by another key under the same origin: 403. Garbage: 400.
    let other = NoteSigner::from_seed("example.com/unknown", ALG_ED25519, &[1; 32]).unwrap();
    let unknown = Checkpoint::new(
        "example.com/unknown",
        1,
        arcane_verifier::merkle::leaf_hash(b"y"),
    )
    .sign(&other)
    .unwrap()
    .to_text();
    assert_eq!(
        add(
            &http,
            &witness,
            &AddCheckpoint {
                old_size: 0,
                proof: vec![],
                checkpoint: unknown
            }
        )
        .await
        .0,
        404
    );
    let impostor = NoteSigner::from_seed(log_signer.name(), ALG_ED25519, &[2; 32]).unwrap();
    let forged_sig = Checkpoint::new(
        log_signer.name(),
        12,
        arcane_verifier::merkle::leaf_hash(b"z"),
    )
    .sign(&impostor)
    .unwrap()
    .to_text();
    assert_eq!(
        add(
            &http,
            &witness,
            &AddCheckpoint {
                old_size: 12,
                proof: vec![],
                checkpoint: forged_sig
            }
        )
        .await
        .0,
        403
    );
    let garbage = http
        .post(format!("http://{}/add-checkpoint", witness.1))
        .body("nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status().as_u16(), 400);

    // The state survives a restart.
    drop(witness);
    let witness = common::start_witness(&key_file, &state, server.vkey(), "127.0.0.1:0");
    let (status, body, _) = add(
        &http,
        &witness,
        &AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: second,
        },
    )
    .await;
    assert_eq!((status, body.as_str()), (409, "12\n"));
    drop(witness);
    server.shutdown().await;
}
