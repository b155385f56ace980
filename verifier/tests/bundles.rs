//! Proof bundles: verify in one call; fail for a wrong log key, a stale, newer or forked
//! checkpoint, an expired entry, an untrusted publisher, a tampered byte.

use arcane_verifier::Error;
use arcane_verifier::bundle::{ProofBundle, TrustAnchors, verify_bundle};
use arcane_verifier::checkpoint::Checkpoint;
use arcane_verifier::cosignature::{WitnessPolicy, cosign};
use arcane_verifier::entry::*;
use arcane_verifier::merkle::{Hash, leaf_hash, root_from_leaf_hashes};
use arcane_verifier::note::{ALG_COSIGNATURE_V1, ALG_ED25519, NoteSigner, VerifierKey};
use arcane_verifier::proof::inclusion_proof;

const NOW: u64 = 1_767_225_600 + 86_400;

fn publisher() -> NoteSigner {
    NoteSigner::from_seed("operator.example", ALG_ED25519, &[9; 32]).unwrap()
}

fn log_key() -> NoteSigner {
    NoteSigner::from_seed("example.com/log", ALG_ED25519, &[1; 32]).unwrap()
}

fn witness() -> NoteSigner {
    NoteSigner::from_seed("witness.example", ALG_COSIGNATURE_V1, &[2; 32]).unwrap()
}

fn ohttp_entry(key_id: u8, not_after: u64) -> Vec<u8> {
    Entry {
        not_before: 1_767_225_600,
        not_after,
        publisher: PublisherId::of(publisher().verifier().public_key()),
        body: EntryBody::OhttpKeys(OhttpKeyConfig {
            key_id,
            kem_id: KEM_X25519_SHA256,
            public_key: vec![key_id; 32],
            symmetric: vec![(KDF_HKDF_SHA256, 1)],
        }),
    }
    .sign(&publisher())
    .unwrap()
    .as_bytes()
    .to_vec()
}

struct Log {
    entries: Vec<Vec<u8>>,
}

impl Log {
    fn new(n: u8) -> Self {
        let mut entries: Vec<Vec<u8>> = (0..n)
            .map(|i| ohttp_entry(i, 1_767_225_600 + 7 * 86_400))
            .collect();
        entries.push(ohttp_entry(200, NOW)); // expires exactly now
        Log { entries }
    }

    fn leaves(&self, size: usize) -> Vec<Hash> {
        self.entries[..size].iter().map(|e| leaf_hash(e)).collect()
    }

    fn checkpoint(&self, size: usize, cosigned: bool) -> (Checkpoint, String) {
        let checkpoint = Checkpoint::new(
            "example.com/log",
            size as u64,
            root_from_leaf_hashes(&self.leaves(size)),
        );
        let mut note = checkpoint.sign(&log_key()).unwrap();
        if cosigned {
            let text = note.text.clone();
            note.add_signature(cosign(&witness(), &text, NOW).unwrap());
        }
        (checkpoint, note.to_text())
    }

    fn bundle(&self, index: usize, size: usize) -> String {
        let leaves = self.leaves(size);
        let proof = inclusion_proof(index as u64, size as u64, |s, e| {
            Ok::<_, ()>(root_from_leaf_hashes(&leaves[s as usize..e as usize]))
        })
        .unwrap();
        ProofBundle {
            entry: self.entries[index].clone(),
            index: index as u64,
            proof,
            checkpoint: self.checkpoint(size, true).1,
        }
        .to_text()
    }
}

fn anchors<'a>(
    log: &'a VerifierKey,
    witnesses: &'a WitnessPolicy,
    publishers: &'a [VerifierKey],
    policy: &'a EntryPolicy,
) -> TrustAnchors<'a> {
    TrustAnchors {
        log_key: log,
        witnesses,
        publishers,
        policy,
    }
}

#[test]
fn bundles_verify_and_fail_for_the_right_reasons() {
    let log = Log::new(9);
    let size = log.entries.len();
    let (current, _) = log.checkpoint(size, true);
    let (log_vkey, publishers, policy) = (
        log_key().verifier(),
        vec![publisher().verifier()],
        EntryPolicy::default(),
    );
    let witnesses = WitnessPolicy::new(vec![witness().verifier()], 1).unwrap();
    let trust = anchors(&log_vkey, &witnesses, &publishers, &policy);

    for index in 0..size - 1 {
        let bundle = log.bundle(index, size);
        let verified = verify_bundle(bundle.as_bytes(), &trust, Some(&current), NOW).unwrap();
        assert_eq!(verified.index, index as u64);
        assert_eq!(verified.leaf_hash, leaf_hash(&log.entries[index]));
        assert_eq!(verified.checkpoint.cosignatures.len(), 1);
        assert!(
            matches!(&verified.entry.entry.body, EntryBody::OhttpKeys(c) if c.key_id == index as u8)
        );
        // The text form round-trips.
        assert_eq!(
            ProofBundle::parse(bundle.as_bytes()).unwrap().to_text(),
            bundle
        );
    }
    let bundle = log.bundle(3, size);

    // Wrong log key.
    let other_log = NoteSigner::from_seed("example.com/log", ALG_ED25519, &[5; 32])
        .unwrap()
        .verifier();
    let err = verify_bundle(
        bundle.as_bytes(),
        &anchors(&other_log, &witnesses, &publishers, &policy),
        None,
        NOW,
    );
    assert_eq!(err.unwrap_err(), Error::NoKnownSignature);
    // Witness policy not met.
    let two = NoteSigner::from_seed("witness2.example", ALG_COSIGNATURE_V1, &[3; 32]).unwrap();
    let strict = WitnessPolicy::new(vec![witness().verifier(), two.verifier()], 2).unwrap();
    assert!(matches!(
        verify_bundle(
            bundle.as_bytes(),
            &anchors(&log_vkey, &strict, &publishers, &policy),
            None,
            NOW
        ),
        Err(Error::NotEnoughCosignatures { .. })
    ));
    // Stale: the client already saw a bigger tree.
    let old = log.bundle(3, 5);
    assert_eq!(
        verify_bundle(old.as_bytes(), &trust, Some(&current), NOW).unwrap_err(),
        Error::StaleCheckpoint {
            bundle: 5,
            current: size as u64
        }
    );
    // The same old bundle is fine for a client at that size.
    verify_bundle(
        old.as_bytes(),
        &trust,
        Some(&log.checkpoint(5, false).0),
        NOW,
    )
    .unwrap();
    // Ahead of the client.
    assert!(matches!(
        verify_bundle(
            bundle.as_bytes(),
            &trust,
            Some(&log.checkpoint(5, false).0),
            NOW
        ),
        Err(Error::CheckpointAhead { .. })
    ));
    // Forked: same size, another root.
    let forked = Checkpoint::new(
        "example.com/log",
        size as u64,
        leaf_hash(b"another history"),
    );
    assert_eq!(
        verify_bundle(bundle.as_bytes(), &trust, Some(&forked), NOW).unwrap_err(),
        Error::ForkedCheckpoint { size: size as u64 }
    );
    // Expired entry (the last one expires at NOW), and entries before their window.
    let expiring = log.bundle(size - 1, size);
    verify_bundle(expiring.as_bytes(), &trust, None, NOW - 1).unwrap();
    assert!(matches!(
        verify_bundle(expiring.as_bytes(), &trust, None, NOW),
        Err(Error::EntryExpired { .. })
    ));
    assert!(matches!(
        verify_bundle(bundle.as_bytes(), &trust, None, 0),
        Err(Error::EntryNotYetValid { .. })
    ));
    // Untrusted publisher.
    let stranger = vec![
        NoteSigner::from_seed("x", ALG_ED25519, &[6; 32])
            .unwrap()
            .verifier(),
    ];
    assert_eq!(
        verify_bundle(
            bundle.as_bytes(),
            &anchors(&log_vkey, &witnesses, &stranger, &policy),
            None,
            NOW
        )
        .unwrap_err(),
        Error::UnknownPublisher
    );
    // Wrong index claimed for the entry.
    let mut parsed = ProofBundle::parse(bundle.as_bytes()).unwrap();
    parsed.index = 4;
    assert!(verify_bundle(parsed.to_text().as_bytes(), &trust, None, NOW).is_err());

    // Every single-byte change is caught.
    for i in 0..bundle.len() {
        let mut tampered = bundle.as_bytes().to_vec();
        tampered[i] ^= if tampered[i] == b'\n' { 0x20 } else { 0x01 };
        assert!(
            verify_bundle(&tampered, &trust, Some(&current), NOW).is_err(),
            "byte {i} of\n{bundle}"
        );
    }
}

#[test]
fn malformed_bundles_are_refused() {
    let log = Log::new(3);
    let good = log.bundle(1, 4);
    for bad in [
        good.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
        good.replacen("extra ", "extras ", 1),
        good.replacen("index 1", "index 01", 1),
        good.replacen("index 1", "index +1", 1),
        good.replacen("\n\n", "\n", 1),
        good.replacen("index 1\n", "index 1\nAAAA\n", 1),
        good.replacen("index 1\n", "index 1\n!!!!\n", 1),
    ] {
        assert!(ProofBundle::parse(bad.as_bytes()).is_err(), "{bad}");
    }
    // Without the extra line the entry is missing: refused.
    let lines: Vec<&str> = good.split('\n').collect();
    let without_extra = [&lines[..1], &lines[2..]].concat().join("\n");
    assert!(ProofBundle::parse(without_extra.as_bytes()).is_err());
    assert!(ProofBundle::parse(&vec![b'a'; 300 * 1024]).is_err());
}
