//! Typed entries through the log, for every storage back end: publishing rules per publisher and
//! kind, nothing stored when refused, lookups answered as proof bundles.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use arcane_log::keys::{AllowedKinds, PublisherPolicy, generate_signer};
use arcane_log::publish::{ReleaseInfo, now_seconds, publish, release_body};
use arcane_verifier::bundle::{TrustAnchors, verify_bundle};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::eif::{SECTION_CMDLINE, SECTION_KERNEL, SECTION_RAMDISK, build, measure};
use arcane_verifier::entry::*;
use arcane_verifier::merkle::leaf_hash;
use arcane_verifier::note::{NoteSigner, VerifierKey};

use crate::common;

fn verifier_testdata(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../verifier/testdata/entries")
            .join(name),
    )
    .unwrap()
}

pub fn test_eif(app: &[u8]) -> Vec<u8> {
    build(&[
        (SECTION_KERNEL, b"kernel image"),
        (SECTION_CMDLINE, b"console=ttyS0"),
        (SECTION_RAMDISK, b"init"),
        (SECTION_RAMDISK, app),
    ])
    .unwrap()
}

fn release(app: &[u8]) -> EntryBody {
    let measured = measure(&test_eif(app)[..]).unwrap();
    release_body(
        &measured,
        ReleaseInfo {
            model_sha256: [7; 32],
            engine: "mistral.rs".into(),
            engine_version: "0.8.1".into(),
            source_commit: "abc123".into(),
            notes: String::new(),
        },
    )
}

fn ohttp_body(key_id: u8) -> EntryBody {
    EntryBody::OhttpKeys(OhttpKeyConfig {
        key_id,
        kem_id: KEM_X25519_SHA256,
        public_key: vec![key_id; 32],
        symmetric: vec![(1, 1)],
    })
}

fn signed(publisher: &NoteSigner, body: EntryBody, not_before: u64, not_after: u64) -> Vec<u8> {
    Entry {
        not_before,
        not_after,
        publisher: PublisherId::of(publisher.verifier().public_key()),
        body,
    }
    .sign(publisher)
    .unwrap()
    .as_bytes()
    .to_vec()
}

fn allow(log: &common::TestLog, key: &NoteSigner, kinds: &str) {
    PublisherPolicy::new(log.policy_path())
        .allow(&key.verifier(), &AllowedKinds::parse(kinds).unwrap())
        .unwrap();
}

async fn assert_refused(
    log: &common::TestLog,
    publisher: &NoteSigner,
    entry: &[u8],
    status: u16,
    code: &str,
) {
    let before = log.checkpoint().await.checkpoint;
    match log.client.add(entry, publisher).await {
        Err(arcane_log::client::LogClientError::Refused {
            status: s, message, ..
        }) => {
            assert_eq!(s, status, "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let response = log
        .http
        .post(format!("{}/v1/entries", log.base))
        .json(&arcane_log::submission::Submission::sign(entry, publisher))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code);
    // Stored nowhere: not pending, not found, the tree unchanged.
    assert_eq!(
        log.get(&format!(
            "/v1/entries/by-hash/{}",
            leaf_hash(entry).to_hex()
        ))
        .await
        .status(),
        404
    );
    assert_eq!(log.json("/healthz").await["pending"], 0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(log.checkpoint().await.checkpoint, before);
}

/// Expects an empty log.
pub async fn publishing_rules_lookups_and_bundles(log: &common::TestLog) {
    let log_key = log.log_key();
    let releaser = generate_signer("releases.example").unwrap();
    let gateway = generate_signer("gateway.example").unwrap();
    let stranger = generate_signer("stranger.example").unwrap();
    allow(log, &releaser, "release");
    allow(log, &gateway, "ohttp-keys,token-key");
    let now = now_seconds();

    // Allowed kinds publish, and their bundles verify.
    let first = publish(
        &log.client,
        &releaser,
        &log_key,
        release(b"app v1"),
        Duration::from_secs(30 * 86_400),
    )
    .await
    .unwrap();
    assert_eq!(first.verified.index, 0);
    let keys = publish(
        &log.client,
        &gateway,
        &log_key,
        ohttp_body(1),
        Duration::from_secs(7 * 86_400),
    )
    .await
    .unwrap();
    let token = EntryBody::TokenKey(TokenKey {
        role: TokenRole::Ott,
        token_type: TOKEN_TYPE_BLIND_RSA,
        spki_der: verifier_testdata("rsa2048.spki.der"),
    });
    publish(
        &log.client,
        &gateway,
        &log_key,
        token,
        Duration::from_secs(30 * 86_400),
    )
    .await
    .unwrap();
    let second = publish(
        &log.client,
        &releaser,
        &log_key,
        release(b"app v2"),
        Duration::from_secs(30 * 86_400),
    )
    .await
    .unwrap();

    // Refused, and stored nowhere.
    assert_refused(
        log,
        &releaser,
        &signed(&releaser, ohttp_body(2), now, now + 3600),
        403,
        "kind_not_allowed",
    )
    .await;
    assert_refused(
        log,
        &stranger,
        &signed(&stranger, release(b"x"), now, now + 3600),
        403,
        "unknown_publisher",
    )
    .await;
    assert_refused(
        log,
        &releaser,
        &signed(&gateway, release(b"y"), now, now + 3600),
        400,
        "invalid_entry",
    )
    .await;
    assert_refused(
        log,
        &releaser,
        &signed(&releaser, release(b"z"), now - 7200, now - 3600),
        400,
        "invalid_entry",
    )
    .await;
    assert_refused(
        log,
        &releaser,
        &signed(&releaser, release(b"w"), now, now + 400 * 86_400),
        400,
        "invalid_entry",
    )
    .await;
    let weak = EntryBody::TokenKey(TokenKey {
        role: TokenRole::Tgt,
        token_type: TOKEN_TYPE_BLIND_RSA,
        spki_der: verifier_testdata("rsa1024.spki.der"),
    });
    assert_refused(
        log,
        &gateway,
        &signed(&gateway, weak, now, now + 3600),
        400,
        "invalid_entry",
    )
    .await;
    assert_refused(
        log,
        &gateway,
        b"not an entry at all",
        403,
        "kind_not_allowed",
    )
    .await;

    // Lookups by kind answer with bundles that verify against the latest checkpoint.
    let trusted = [releaser.verifier(), gateway.verifier()];
    let policy = EntryPolicy::default();
    let anchors = TrustAnchors {
        log_key: &log_key,
        witnesses: &WitnessPolicy::none(),
        publishers: &trusted,
        policy: &policy,
    };
    let current = log.checkpoint().await.checkpoint;
    let releases = log.json("/v1/bundles?kind=release").await;
    assert_eq!(releases["tree_size"], 4);
    let bundles: Vec<String> = serde_json::from_value(releases["bundles"].clone()).unwrap();
    assert_eq!(bundles.len(), 2);
    for (bundle, want) in bundles.iter().zip([0u64, 3]) {
        let verified =
            verify_bundle(bundle.as_bytes(), &anchors, Some(&current), now_seconds()).unwrap();
        assert_eq!(verified.index, want);
    }
    let pcr0 = match &second.verified.entry.entry.body {
        EntryBody::Release(r) => hex::encode(r.pcr0),
        _ => unreachable!(),
    };
    let by_pcr0 = log
        .json(&format!("/v1/bundles?kind=release&pcr0={pcr0}"))
        .await;
    assert_eq!(by_pcr0["bundles"].as_array().unwrap().len(), 1);
    let one = verify_bundle(
        by_pcr0["bundles"][0].as_str().unwrap().as_bytes(),
        &anchors,
        Some(&current),
        now_seconds(),
    )
    .unwrap();
    assert_eq!(one.index, 3);
    assert_eq!(
        log.json(&format!(
            "/v1/bundles?kind=release&pcr0={}",
            "00".repeat(48)
        ))
        .await["bundles"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        log.json("/v1/bundles?kind=ohttp-keys").await["bundles"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        log.json("/v1/bundles?kind=token-key").await["bundles"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let later = now + 8 * 86_400;
    assert_eq!(
        log.json(&format!("/v1/bundles?kind=ohttp-keys&valid_at={later}"))
            .await["bundles"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "expired keys are not current"
    );
    for bad in [
        "/v1/bundles?kind=nonsense",
        "/v1/bundles",
        "/v1/bundles?kind=release&pcr0=zz",
        "/v1/bundles?kind=release&size=99",
        "/v1/bundles/9",
        "/v1/bundles/by-hash/00",
    ] {
        let status = log.get(bad).await.status().as_u16();
        assert!(status == 400 || status == 404, "{bad}: {status}");
    }

    // By index and by hash, at the latest and at an older size.
    let by_index = log.get("/v1/bundles/1").await.text().await.unwrap();
    assert_eq!(
        verify_bundle(by_index.as_bytes(), &anchors, Some(&current), now_seconds())
            .unwrap()
            .leaf_hash,
        keys.verified.leaf_hash
    );
    let old = log
        .get(&format!(
            "/v1/bundles/by-hash/{}?size=1",
            first.verified.leaf_hash
        ))
        .await
        .text()
        .await
        .unwrap();
    let at_one = verify_bundle(old.as_bytes(), &anchors, None, now_seconds()).unwrap();
    assert_eq!(at_one.checkpoint.checkpoint.size, 1);
    assert!(matches!(
        verify_bundle(old.as_bytes(), &anchors, Some(&current), now_seconds()),
        Err(arcane_verifier::Error::StaleCheckpoint { .. })
    ));
    // A bundle checked against another log's key fails.
    let other: VerifierKey = generate_signer(log_key.name()).unwrap().verifier();
    let wrong = TrustAnchors {
        log_key: &other,
        ..anchors
    };
    assert!(verify_bundle(by_index.as_bytes(), &wrong, None, now_seconds()).is_err());
}
