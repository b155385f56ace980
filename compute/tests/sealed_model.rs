//! A model its owner sealed, served by a node that proves it may have the key: the owner's key
//! release service, a log, a simulated NSM and the tiny model, all on 127.0.0.1.
//!
//! The node boots from the sealed file alone and answers; every way of asking for the key that
//! the protocol refuses is refused (other PCRs, an expired release, a replayed or stale
//! attestation, a release naming another model, an access entry not the owner's, a document made
//! for another challenge, a forged challenge, a model the service holds no key for); a tampered
//! chunk stops the node before it serves; the model is never written to a disk in the clear; and
//! an auditor decides every recorded release again from the record alone.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arcane_compute::attestation::{DeclaredMeasurements, SimulatedNsm};
use arcane_compute::node::{now_ms, now_seconds};
use arcane_compute::sealed_model::SealedModel;
use arcane_compute::service::ModelSource;
use arcane_verifier::model_key::{
    ChallengeSecret, KeyReply, KeyRequest, key_request_nonce, unwrap_model_key,
};
use arcane_verifier::nitro::{NitroRoot, binding_user_data};
use arcane_verifier::sealed::RekSecret;
use common::{
    MAX_DOCUMENT_AGE_MS, access_body, node_options, owner, publish, random, release_body, stack,
};
use sha2::{Digest, Sha256};

/// What a node sends: a document from `nsm` (made at `at_ms`) answering `challenge`.
struct Asking {
    request: KeyRequest,
    recipient: RekSecret,
    model_sha256: [u8; 32],
}

#[allow(clippy::too_many_arguments)]
fn ask_as_node(
    nsm: &SimulatedNsm,
    challenge: Vec<u8>,
    nonce: [u8; 32],
    release: (&str, [u8; 32]),
    access: &str,
    model_sha256: [u8; 32],
    at_ms: u64,
) -> Asking {
    let recipient = RekSecret::generate();
    let document = nsm
        .attest_at(
            Some(&recipient.public().0),
            Some(&binding_user_data(&model_sha256, &release.1, &[0x5a; 32])),
            Some(&nonce),
            at_ms,
        )
        .unwrap();
    Asking {
        request: KeyRequest {
            challenge,
            document,
            release: release.0.to_owned(),
            access: access.to_owned(),
        },
        recipient,
        model_sha256,
    }
}

/// Asks `owner`'s service for the key as a node of `nsm` would, answering a fresh challenge
/// with a document made at `at_ms`: what it sent, and the service's status and body.
async fn ask_fresh(
    owner: &common::Owner,
    nsm: &SimulatedNsm,
    release: &(String, [u8; 32]),
    access: &str,
    model_sha256: [u8; 32],
    at_ms: u64,
) -> (Asking, u16, String) {
    let challenge = owner.challenge().await;
    let nonce = key_request_nonce(&challenge);
    let release = (release.0.as_str(), release.1);
    let asking = ask_as_node(nsm, challenge, nonce, release, access, model_sha256, at_ms);
    let (status, body) = owner.send(&asking.request).await;
    (asking, status, body)
}

/// Held by the tests that boot nodes from sealed files, so that one test's look at this
/// process's descriptors does not see another's memory file.
static BOOTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every file below `dir`, read whole.
fn files_below(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_below(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_an_allowed_release_boots_from_the_sealed_file_and_answers() {
    let _booting = BOOTING.lock().await;
    let stack = stack().await;
    let owner = owner(&stack).await;
    publish(
        &stack,
        &stack.publisher,
        release_body(&stack.measurements, owner.model_sha256),
        Duration::from_secs(3600),
    )
    .await;
    publish(
        &stack,
        &owner.signer,
        access_body(
            owner.model_sha256,
            vec![[0x77; 48], stack.measurements.pcr0],
        ),
        Duration::from_secs(3600),
    )
    .await;
    // The operator's copy of the plaintext goes: the node has the sealed file only.
    let plaintext = std::fs::read(&stack.model.path).unwrap();
    std::fs::remove_file(&stack.model.path).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = arcane_compute::service::start(
        node_options(&stack, &owner, owner.sealed_model()),
        listener,
    )
    .await
    .unwrap();
    let node = &running.node;
    assert_eq!(node.model().sha256, stack.model.sha256);
    // The decrypted model lived in an anonymous memory file, released once the engine loaded
    // it: no descriptor of this process (the node's) names it, and no path of the node's model
    // opens anything.
    let file = node.model().file.as_ref().expect("a GGUF file");
    assert!(!file.is_in_memory() && file.path.as_os_str().is_empty());
    for fd in std::fs::read_dir("/proc/self/fd").unwrap() {
        let target = std::fs::read_link(fd.unwrap().path()).unwrap_or_default();
        assert!(
            !target.to_string_lossy().contains("arcane-model"),
            "the memory file is still open: {}",
            target.display()
        );
    }
    let answer = stack.client(&running.url()).chat("Hello", 8).await;
    assert!(!answer.text.is_empty(), "the node answered nothing");

    // No file the host holds contains a window of the plaintext.
    let window = &plaintext[plaintext.len() / 2..plaintext.len() / 2 + 64];
    for (path, bytes) in files_below(stack.dir.path()) {
        assert!(
            !bytes.windows(window.len()).any(|w| w == window),
            "{} contains plaintext of the model",
            path.display()
        );
    }

    // The release is on record; an auditor decides it again from the record and the log.
    let records = owner.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].model_sha256, hex::encode(owner.model_sha256));
    assert_eq!(records[0].pcr0, hex::encode(stack.measurements.pcr0));
    let audit = |stack: &common::Stack, owner: &common::Owner| {
        let (log_url, log_key) = (stack.log_url.clone(), stack.log_key.to_text());
        let (service, publisher) = (owner.service.url(), stack.publisher.verifier());
        let owner_key = owner.signer.verifier();
        let root = NitroRoot::development(stack.nsm.root_der().to_vec());
        // The auditor's commands block: run them off the test's runtime.
        std::thread::spawn(move || {
            use arcane_audit::{http::Http, key_releases, log_commands::Log};
            let log = Log::new(Http::new(&log_url, None)?, Some(&log_key), None, None)
                .map_err(|e| e.to_string())?;
            let service = Http::new(&service, None)?;
            let audit = key_releases::KeyReleaseAudit {
                service: &service,
                publishers: &[publisher],
                owner: &owner_key,
                root: &root,
                max_document_age_ms: MAX_DOCUMENT_AGE_MS,
            };
            key_releases::key_releases(&log, &audit, false).map_err(|e| e.to_string())
        })
        .join()
        .unwrap()
    };
    audit(&stack, &owner).unwrap();
    // A record that says something its request does not is caught.
    let db = stack.dir.path().join("owner").join("keys.db");
    let mut connection =
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite:{}", db.display()))
            .await
            .unwrap();
    sqlx::query("UPDATE key_releases SET pcr0 = $1")
        .bind(hex::encode([0x77u8; 48]))
        .execute(&mut connection)
        .await
        .unwrap();
    let caught = audit(&stack, &owner).unwrap_err();
    assert!(caught.contains("do not hold"), "{caught}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_the_protocol_refuses_is_refused() {
    let stack = stack().await;
    let owner = owner(&stack).await;
    let model = owner.model_sha256;
    let hour = Duration::from_secs(3600);
    let release = publish(
        &stack,
        &stack.publisher,
        release_body(&stack.measurements, model),
        hour,
    )
    .await;
    let (access, _) = publish(
        &stack,
        &owner.signer,
        access_body(model, vec![stack.measurements.pcr0]),
        hour,
    )
    .await;
    let fresh = |challenge: &[u8]| key_request_nonce(challenge);

    // The request a node makes: granted, and the key opens the sealed file.
    let (asking, status, body) =
        ask_fresh(&owner, &stack.nsm, &release, &access, model, now_ms()).await;
    let challenge = asking.request.challenge.clone();
    assert_eq!(status, 200, "{body}");
    let wrapped = KeyReply::parse(body.as_bytes()).unwrap();
    let document_hash: [u8; 32] = Sha256::digest(&asking.request.document).into();
    let key = unwrap_model_key(
        &asking.recipient,
        &wrapped,
        &asking.model_sha256,
        &document_hash,
        &challenge,
    )
    .unwrap();
    let opened =
        arcane_verifier::sealed_model::open(&key, &std::fs::read(&owner.sealed).unwrap()).unwrap();
    assert_eq!(Sha256::digest(&opened[..])[..], model[..]);
    // The same key does not open for anyone else, nor under another challenge.
    assert!(
        unwrap_model_key(
            &RekSecret::generate(),
            &wrapped,
            &model,
            &document_hash,
            &challenge
        )
        .is_err()
    );
    assert!(
        unwrap_model_key(
            &asking.recipient,
            &wrapped,
            &model,
            &document_hash,
            &owner.challenge().await
        )
        .is_err()
    );

    // Replayed: the same attestation, answering the same challenge, a second time.
    let (status, body) = owner.send(&asking.request).await;
    assert_eq!(status, 409, "a replay: {body}");

    // Stale: a document older than the service accepts.
    let (_, status, body) = ask_fresh(
        &owner,
        &stack.nsm,
        &release,
        &access,
        model,
        now_ms() - MAX_DOCUMENT_AGE_MS - 5_000,
    )
    .await;
    assert_eq!(status, 403, "a stale document: {body}");
    assert!(body.contains("old"), "{body}");

    // A document made for another challenge (or for a gateway's registration).
    let challenge = owner.challenge().await;
    let other = ask_as_node(
        &stack.nsm,
        challenge.clone(),
        fresh(&owner.challenge().await),
        (&release.0, release.1),
        &access,
        model,
        now_ms(),
    );
    let (status, body) = owner.send(&other.request).await;
    assert_eq!(status, 403, "a document for another challenge: {body}");
    assert!(body.contains("nonce"), "{body}");

    // A challenge this service did not issue.
    let forged = ChallengeSecret::generate()
        .issue(now_seconds(), [1; 16])
        .to_vec();
    let asking = ask_as_node(
        &stack.nsm,
        forged.clone(),
        fresh(&forged),
        (&release.0, release.1),
        &access,
        model,
        now_ms(),
    );
    let (status, body) = owner.send(&asking.request).await;
    assert_eq!(status, 403, "a forged challenge: {body}");

    // Other PCRs: an image with its own logged release naming the model, which the owner's
    // access entry does not name.
    let other_measurements = DeclaredMeasurements {
        pcr0: random(),
        pcr1: random(),
        pcr2: random(),
        pcr8: None,
    };
    let other_nsm = SimulatedNsm::new(&other_measurements, now_seconds()).unwrap();
    let other_release = publish(
        &stack,
        &stack.publisher,
        release_body(&other_measurements, model),
        hour,
    )
    .await;
    let challenge = owner.challenge().await;
    let mut asking = ask_as_node(
        &other_nsm,
        challenge.clone(),
        fresh(&challenge),
        (&other_release.0, other_release.1),
        &access,
        model,
        now_ms(),
    );
    let (status, body) = owner.send(&asking.request).await;
    // The other image's documents chain to its own (development) root: refused for that first.
    assert_eq!(status, 403, "{body}");
    // With the same root as the service trusts, it is refused for its PCR0.
    asking.request.document = stack
        .nsm
        .attest_at(
            Some(&asking.recipient.public().0),
            Some(&binding_user_data(&model, &other_release.1, &[0x5a; 32])),
            Some(&fresh(&challenge)),
            now_ms(),
        )
        .unwrap();
    let (status, body) = owner.send(&asking.request).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("PCR"),
        "the stack's NSM reports the stack's PCRs, which the other release does not name: {body}"
    );
    let (access_other, _) = publish(
        &stack,
        &owner.signer,
        access_body(model, vec![other_measurements.pcr0]),
        hour,
    )
    .await;
    let (_, status, body) =
        ask_fresh(&owner, &stack.nsm, &release, &access_other, model, now_ms()).await;
    assert_eq!(status, 403, "access for another image: {body}");
    assert!(body.contains("does not name this image"), "{body}");

    // An access entry published by the operator, not the owner.
    let (operator_access, _) = publish(
        &stack,
        &stack.publisher,
        access_body(model, vec![stack.measurements.pcr0]),
        hour,
    )
    .await;
    let (_, status, body) = ask_fresh(
        &owner,
        &stack.nsm,
        &release,
        &operator_access,
        model,
        now_ms(),
    )
    .await;
    assert_eq!(status, 403, "the operator's access entry: {body}");
    assert!(body.contains("not the owner's"), "{body}");

    // A release that does not name the model.
    let other_model: [u8; 32] = random();
    let wrong_release = publish(
        &stack,
        &stack.publisher,
        release_body(&stack.measurements, other_model),
        hour,
    )
    .await;
    let (_, status, body) = ask_fresh(
        &owner,
        &stack.nsm,
        &wrong_release,
        &access,
        other_model,
        now_ms(),
    )
    .await;
    assert_eq!(status, 403, "a release of another model: {body}");
    assert!(body.contains("names model"), "{body}");

    // A model the service holds no key for, with a release and an access entry of its own.
    let (access_unknown, _) = publish(
        &stack,
        &owner.signer,
        access_body(other_model, vec![stack.measurements.pcr0]),
        hour,
    )
    .await;
    let (_, status, body) = ask_fresh(
        &owner,
        &stack.nsm,
        &wrong_release,
        &access_unknown,
        other_model,
        now_ms(),
    )
    .await;
    assert_eq!(status, 404, "no key for the model: {body}");

    // An expired release.
    let short = publish(
        &stack,
        &stack.publisher,
        release_body(&stack.measurements, model),
        Duration::from_secs(2),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (_, status, body) = ask_fresh(&owner, &stack.nsm, &short, &access, model, now_ms()).await;
    assert_eq!(status, 403, "an expired release: {body}");
    assert!(body.contains("expired"), "{body}");

    // Not a key request at all.
    let reply = owner
        .http
        .post(format!("{}/v1/model-key", owner.service.url()))
        .body("{\"version\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);

    // Only the one granted request is on record.
    assert_eq!(owner.records().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refused_the_key_or_given_a_tampered_file_does_not_serve() {
    let _booting = BOOTING.lock().await;
    let stack = stack().await;
    let owner = owner(&stack).await;
    publish(
        &stack,
        &stack.publisher,
        release_body(&stack.measurements, owner.model_sha256),
        Duration::from_secs(3600),
    )
    .await;
    // No access entry yet: the node finds none and does not even ask.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = arcane_compute::service::start(
        node_options(&stack, &owner, owner.sealed_model()),
        listener,
    )
    .await
    .err()
    .expect("a node without an access entry must not boot");
    assert!(refused.to_string().contains("model-access"), "{refused}");
    // The owner allows this image: the node gets the key, and now the file must open.
    publish(
        &stack,
        &owner.signer,
        access_body(
            owner.model_sha256,
            vec![[0x55; 48], stack.measurements.pcr0],
        ),
        Duration::from_secs(3600),
    )
    .await;
    // One chunk of the sealed file altered on the host: refused before the model loads.
    let mut bytes = std::fs::read(&owner.sealed).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let tampered = owner.sealed.with_file_name("tampered.sealed");
    std::fs::write(&tampered, &bytes).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let model = ModelSource::Sealed(SealedModel {
        path: tampered,
        model_sha256: owner.model_sha256,
        key_release_url: owner.service.url(),
    });
    let refused = arcane_compute::service::start(node_options(&stack, &owner, model), listener)
        .await
        .err()
        .expect("a tampered sealed file must not be served");
    assert!(refused.to_string().contains("sealed"), "{refused}");
    // A node whose provider reports other PCRs (with a release and the owner's access for
    // them, but a root the service does not trust) is refused the key.
    let other = DeclaredMeasurements {
        pcr0: random(),
        pcr1: random(),
        pcr2: random(),
        pcr8: None,
    };
    publish(
        &stack,
        &stack.publisher,
        release_body(&other, owner.model_sha256),
        Duration::from_secs(3600),
    )
    .await;
    publish(
        &stack,
        &owner.signer,
        access_body(owner.model_sha256, vec![other.pcr0]),
        Duration::from_secs(3600),
    )
    .await;
    let mut options = node_options(&stack, &owner, owner.sealed_model());
    options.provider = Arc::new(SimulatedNsm::new(&other, now_seconds()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = arcane_compute::service::start(options, listener)
        .await
        .err()
        .expect("a node the service cannot verify must not get the key");
    assert!(
        matches!(
            refused,
            arcane_compute::error::ComputeError::KeyRefused { status: 403, .. }
        ),
        "{refused}"
    );
    // On record: only the release to the node that then found its file tampered with.
    assert_eq!(owner.records().await.len(), 1);
}
