//! The simulated NSM: AWS's exact format, trusted only with its root given explicitly, and the
//! release policy applied to its documents.

use arcane_compute::attestation::{
    AttestationProvider, DeclaredMeasurements, LEAF_LIFETIME_SECS, SimulatedNsm,
};
use arcane_verifier::Error;
use arcane_verifier::bundle::{ProofBundle, TrustAnchors, VerifiedEntry, verify_bundle};
use arcane_verifier::cbor::{Value, decode};
use arcane_verifier::checkpoint::Checkpoint;
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::entry::{Entry, EntryBody, EntryPolicy, PublisherId, Release};
use arcane_verifier::merkle::leaf_hash;
use arcane_verifier::nitro::*;
use arcane_verifier::note::{ALG_ED25519, NoteSigner};

const NOW: u64 = 1_800_000_000;

fn measurements() -> DeclaredMeasurements {
    DeclaredMeasurements {
        pcr0: [0xa0; 48],
        pcr1: [0xa1; 48],
        pcr2: [0xa2; 48],
        pcr8: None,
    }
}

/// A release entry for `m`, proven in a one-entry log.
fn release(m: &DeclaredMeasurements, model: [u8; 32]) -> VerifiedEntry {
    let publisher = NoteSigner::from_seed("operator", ALG_ED25519, &[4; 32]).unwrap();
    let log = NoteSigner::from_seed("example.com/log", ALG_ED25519, &[5; 32]).unwrap();
    let entry = Entry {
        not_before: NOW - 3600,
        not_after: NOW + 86_400,
        publisher: PublisherId::of(publisher.verifier().public_key()),
        body: EntryBody::Release(Box::new(Release {
            pcr0: m.pcr0,
            pcr1: m.pcr1,
            pcr2: m.pcr2,
            pcr8: m.pcr8,
            model_sha256: model,
            engine: "mistral.rs".into(),
            engine_version: "0.8.1".into(),
            source_commit: "abc".into(),
            eif_sha384: [9; 48],
            notes: String::new(),
        })),
    }
    .sign(&publisher)
    .unwrap();
    let checkpoint = Checkpoint::new("example.com/log", 1, leaf_hash(entry.as_bytes()))
        .sign(&log)
        .unwrap()
        .to_text();
    let bundle = ProofBundle {
        entry: entry.as_bytes().to_vec(),
        index: 0,
        proof: vec![],
        checkpoint,
    }
    .to_text();
    let publishers = [publisher.verifier()];
    let anchors = TrustAnchors {
        log_key: &log.verifier(),
        witnesses: &WitnessPolicy::none(),
        publishers: &publishers,
        policy: &EntryPolicy::default(),
    };
    verify_bundle(bundle.as_bytes(), &anchors, None, NOW).unwrap()
}

#[test]
fn documents_have_aws_format() {
    let nsm = SimulatedNsm::new(&measurements(), NOW).unwrap();
    let doc = nsm
        .attest_at(Some(&[7; 32]), None, Some(b"nonce"), NOW * 1000)
        .unwrap();
    assert_eq!(doc[0], 0x84, "untagged COSE_Sign1");
    let Value::Array(parts) = decode(&doc).unwrap() else {
        panic!("not an array")
    };
    assert_eq!(
        parts[0],
        Value::Bytes(vec![0xa1, 0x01, 0x38, 0x22]),
        "protected header {{1: -35}}"
    );
    assert_eq!(parts[1], Value::Map(vec![]), "empty unprotected header");
    let Value::Bytes(payload) = &parts[2] else {
        panic!()
    };
    assert_eq!(payload[0], 0xbf, "indefinite-length payload map");
    assert!(
        matches!(&parts[3], Value::Bytes(signature) if signature.len() == 96),
        "a 96-byte r ‖ s signature"
    );
    let (_, parsed) = parse_document(&doc).unwrap();
    assert_eq!(parsed.pcrs.len(), 32);
    assert!(parsed.pcrs.values().all(|v| v.len() == 48));
    assert_eq!(parsed.cabundle.len(), 4);
    assert_eq!(parsed.user_data, None, "unset fields are null");
    assert_eq!(parsed.nonce.as_deref(), Some(&b"nonce"[..]));
    assert_eq!(parsed.digest, "SHA384");
    let verified =
        verify_document(&doc, &NitroRoot::development(nsm.root_der().to_vec()), NOW).unwrap();
    assert_eq!(verified.root, RootKind::Development);
    assert!(verified.valid_until - verified.valid_from <= LEAF_LIFETIME_SECS + 60);
}

#[test]
fn trusted_only_with_the_root_given() {
    let nsm = SimulatedNsm::new(&measurements(), NOW).unwrap();
    let doc = nsm.attest_at(None, None, None, NOW * 1000).unwrap();
    assert_eq!(
        verify_document(&doc, &NitroRoot::aws(), NOW).unwrap_err(),
        Error::AttestationRootMismatch
    );
    let other = SimulatedNsm::new(&measurements(), NOW).unwrap();
    assert_eq!(
        verify_document(
            &doc,
            &NitroRoot::development(other.root_der().to_vec()),
            NOW
        )
        .unwrap_err(),
        Error::AttestationRootMismatch
    );
    // A self-made root named exactly like AWS's is still not AWS's.
    let fake =
        SimulatedNsm::with_root_name(&measurements(), NOW, "aws.nitro-enclaves", "Amazon").unwrap();
    let doc = fake.attest_at(None, None, None, NOW * 1000).unwrap();
    assert_eq!(
        verify_document(&doc, &NitroRoot::aws(), NOW).unwrap_err(),
        Error::AttestationRootMismatch
    );
    // A cached verification is tied to the root it was made against.
    let mut cache = DocumentCache::default();
    let root_a = NitroRoot::development(nsm.root_der().to_vec());
    let doc_a = nsm.attest_at(None, None, None, NOW * 1000).unwrap();
    cache.verify(&doc_a, &root_a, NOW).unwrap();
    let root_b = NitroRoot::development(other.root_der().to_vec());
    assert_eq!(
        cache.verify(&doc_a, &root_b, NOW).unwrap_err(),
        Error::AttestationRootMismatch
    );
    cache.verify(&doc_a, &root_a, nsm.leaf_not_after()).unwrap();
    assert!(
        cache
            .verify(&doc_a, &root_a, nsm.leaf_not_after() + 1)
            .is_err()
    );
    // Past the leaf's three hours, the chain is expired.
    let root = NitroRoot::development(nsm.root_der().to_vec());
    let doc = nsm.attest_at(None, None, None, NOW * 1000).unwrap();
    verify_document(&doc, &root, nsm.leaf_not_after()).unwrap();
    assert!(matches!(
        verify_document(&doc, &root, nsm.leaf_not_after() + 1),
        Err(Error::AttestationExpired { .. })
    ));
}

#[test]
fn release_policy() {
    let m = measurements();
    let model = [0x33; 32];
    let rel = release(&m, model);
    let nsm = SimulatedNsm::new(&m, NOW).unwrap();
    let root = NitroRoot::development(nsm.root_der().to_vec());
    let binding = binding_user_data(&model, &rel.leaf_hash.0, &[0x5a; 32]);
    let rek = [0x42u8; 32];
    let policy = AttestationPolicy::default();
    let now_ms = NOW * 1000;
    let verify = |doc: &[u8]| verify_document(doc, &root, NOW).unwrap();

    let good = verify(
        &nsm.attest_at(Some(&rek), Some(&binding), Some(b"n1"), now_ms - 5000)
            .unwrap(),
    );
    let keys = check_attestation(&good, &rel, &policy, now_ms, Some(b"n1")).unwrap();
    assert_eq!((keys.public_key, keys.answer_key), (&rek[..], [0x5a; 32]));
    assert_eq!(
        check_attestation(&good, &rel, &policy, now_ms, None)
            .unwrap()
            .public_key,
        &rek
    );
    assert_eq!(
        check_attestation(&good, &rel, &policy, now_ms, Some(b"n2")).unwrap_err(),
        Error::AttestationBinding("nonce differs from the challenge")
    );
    assert!(matches!(
        check_attestation(&good, &rel, &policy, now_ms + policy.max_age_ms, None),
        Err(Error::StaleAttestation { .. })
    ));
    assert!(matches!(
        check_attestation(&good, &rel, &policy, now_ms - 10 * 60_000, None),
        Err(Error::AttestationFromFuture { .. })
    ));

    // Another model, another release: the binding fails.
    let other_release = release(&m, [0x44; 32]);
    assert!(matches!(
        check_attestation(&good, &other_release, &policy, now_ms, None),
        Err(Error::AttestationBinding(_))
    ));
    // No public key: nothing to wrap to.
    let keyless = verify(&nsm.attest_at(None, Some(&binding), None, now_ms).unwrap());
    assert!(matches!(
        check_attestation(&keyless, &rel, &policy, now_ms, None),
        Err(Error::AttestationBinding(_))
    ));

    // PCRs that differ from the release.
    let mut changed = m.clone();
    changed.pcr1 = [0xee; 48];
    let drifted = SimulatedNsm::new(&changed, NOW).unwrap();
    let doc = verify_document(
        &drifted
            .attest_at(Some(&rek), Some(&binding), None, now_ms)
            .unwrap(),
        &NitroRoot::development(drifted.root_der().to_vec()),
        NOW,
    )
    .unwrap();
    assert_eq!(
        check_attestation(&doc, &rel, &policy, now_ms, None).unwrap_err(),
        Error::PcrMismatch { index: 1 }
    );

    // A release naming PCR8 needs the document's PCR8 to match.
    let mut signed_build = m.clone();
    signed_build.pcr8 = Some([0x88; 48]);
    let rel8 = release(&signed_build, model);
    let binding8 = binding_user_data(&model, &rel8.leaf_hash.0, &[0x5a; 32]);
    let doc = verify(
        &nsm.attest_at(Some(&rek), Some(&binding8), None, now_ms)
            .unwrap(),
    );
    assert_eq!(
        check_attestation(&doc, &rel8, &policy, now_ms, None).unwrap_err(),
        Error::PcrMismatch { index: 8 }
    );

    // A debug enclave: validly signed, all-zero PCRs, refused by policy alone.
    let debug = DeclaredMeasurements {
        pcr0: [0; 48],
        pcr1: [0; 48],
        pcr2: [0; 48],
        pcr8: None,
    };
    let debug_nsm = SimulatedNsm::new(&debug, NOW).unwrap();
    let doc = verify_document(
        &debug_nsm
            .attest_at(Some(&rek), Some(&binding), None, now_ms)
            .unwrap(),
        &NitroRoot::development(debug_nsm.root_der().to_vec()),
        NOW,
    )
    .unwrap();
    assert_eq!(
        check_attestation(&doc, &rel, &policy, now_ms, None).unwrap_err(),
        Error::DebugEnclave
    );
}

#[test]
fn an_ensembles_size_is_attested_after_the_binding_and_only_powers_of_two_pass() {
    let m = measurements();
    let model = [0x33; 32];
    let rel = release(&m, model);
    let nsm = SimulatedNsm::new(&m, NOW).unwrap();
    let root = NitroRoot::development(nsm.root_der().to_vec());
    let policy = AttestationPolicy::default();
    let now_ms = NOW * 1000;
    let check = |user_data: &[u8]| {
        let doc = nsm
            .attest_at(Some(&[0x42; 32]), Some(user_data), None, now_ms)
            .unwrap();
        let verified = verify_document(&doc, &root, NOW).unwrap();
        check_attestation(&verified, &rel, &policy, now_ms, None).map(|k| (k.members, k.answer_key))
    };
    let binding = binding_user_data(&model, &rel.leaf_hash.0, &[0x5a; 32]);
    assert_eq!(check(&binding).unwrap(), (1, [0x5a; 32]));
    for members in [2u8, 4, 128] {
        let ensemble = ensemble_binding_user_data(&model, &rel.leaf_hash.0, &[0x5a; 32], members);
        assert_eq!(ensemble.len(), USER_DATA_LEN + 1);
        assert_eq!(check(&ensemble).unwrap(), (members, [0x5a; 32]));
    }
    for members in [0u8, 1, 3, 6, 255] {
        let ensemble = ensemble_binding_user_data(&model, &rel.leaf_hash.0, &[0x5a; 32], members);
        assert!(
            matches!(check(&ensemble), Err(Error::AttestationBinding(_))),
            "an ensemble of {members} is refused"
        );
    }
    // Nothing else may follow the binding.
    let mut longer = ensemble_binding_user_data(&model, &rel.leaf_hash.0, &[0x5a; 32], 2);
    longer.push(0);
    assert!(matches!(check(&longer), Err(Error::AttestationBinding(_))));
}

#[test]
fn the_provider_trait_attests_now_and_checks_sizes() {
    let nsm = SimulatedNsm::new(
        &measurements(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let provider: &dyn AttestationProvider = &nsm;
    let doc = provider
        .attest(Some(&[1; 32]), Some(&[2; 80]), None)
        .unwrap();
    let (_, parsed) = parse_document(&doc).unwrap();
    assert_eq!(parsed.user_data.as_deref(), Some(&[2u8; 80][..]));
    assert!(provider.attest(None, Some(&[0; 513]), None).is_err());
    assert!(provider.attest(None, None, Some(&[0; 513])).is_err());
    assert!(provider.attest(Some(&[0; 1025]), None, None).is_err());
}
