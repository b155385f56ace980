//! Attestation verification cost: cold (parse, full P-384 chain, COSE signature) and warm (cache
//! hit by document hash, then the release policy), against one raw P-384 signature verification
//! measured in the same run. `cargo bench -p arcane-compute --bench attestation_bench`

use std::time::{Duration, Instant};

use arcane_compute::attestation::{DeclaredMeasurements, SimulatedNsm};
use arcane_verifier::bundle::{ProofBundle, TrustAnchors, verify_bundle};
use arcane_verifier::checkpoint::Checkpoint;
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::entry::{Entry, EntryBody, EntryPolicy, PublisherId, Release};
use arcane_verifier::merkle::leaf_hash;
use arcane_verifier::nitro::*;
use arcane_verifier::note::{ALG_ED25519, NoteSigner};
use p384::ecdsa::signature::Signer;

fn per_op(iterations: u32, mut f: impl FnMut()) -> Duration {
    f(); // warm up
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

fn main() {
    // Raw primitive: one P-384 ECDSA verification with ring, the implementation the chain and
    // COSE checks use.
    let key = p384::ecdsa::SigningKey::from_slice(&[0x17; 48]).unwrap();
    let message = b"attestation benchmark message";
    let signature: p384::ecdsa::Signature = key.sign(message);
    let point = key.verifying_key().to_encoded_point(false);
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P384_SHA384_FIXED,
        point.as_bytes().to_vec(),
    );
    let signature_bytes = signature.to_bytes();
    let raw = per_op(1000, || {
        assert!(public.verify(message, &signature_bytes).is_ok())
    });

    // The real AWS document, cold.
    let dir = std::env::var_os("ARCANE_NITRO_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/nitro")
        });
    let text = std::fs::read(dir.join("02_evervault_cert_embedded_2023-01-18.b64"))
        .expect("testdata/nitro data");
    let real = decode_maybe_base64(&text);
    let aws = NitroRoot::aws();
    let cold_real = per_op(100, || {
        verify_document(&real, &aws, 1_674_054_914).unwrap();
    });

    // A simulated document with a matching release, cold and warm.
    let now = 1_800_000_000u64;
    let m = DeclaredMeasurements {
        pcr0: [1; 48],
        pcr1: [2; 48],
        pcr2: [3; 48],
        pcr8: None,
    };
    let nsm = SimulatedNsm::new(&m, now).unwrap();
    let publisher = NoteSigner::from_seed("operator", ALG_ED25519, &[4; 32]).unwrap();
    let log = NoteSigner::from_seed("example.com/log", ALG_ED25519, &[5; 32]).unwrap();
    let model = [9u8; 32];
    let entry = Entry {
        not_before: now - 60,
        not_after: now + 86_400,
        publisher: PublisherId::of(publisher.verifier().public_key()),
        body: EntryBody::Release(Box::new(Release {
            pcr0: m.pcr0,
            pcr1: m.pcr1,
            pcr2: m.pcr2,
            pcr8: None,
            model_sha256: model,
            engine: "mistral.rs".into(),
            engine_version: "0.8.1".into(),
            source_commit: "c".into(),
            eif_sha384: [8; 48],
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
    let release = verify_bundle(bundle.as_bytes(), &anchors, None, now).unwrap();
    let document = nsm
        .attest_at(
            Some(&[7; 32]),
            Some(&binding_user_data(
                &model,
                &release.leaf_hash.0,
                &[0x5a; 32],
            )),
            None,
            now * 1000,
        )
        .unwrap();
    let dev = NitroRoot::development(nsm.root_der().to_vec());
    let policy = AttestationPolicy::default();
    let cold_sim = per_op(100, || {
        let v = verify_document(&document, &dev, now).unwrap();
        check_attestation(&v, &release, &policy, now * 1000, None).unwrap();
    });
    let mut cache = DocumentCache::default();
    cache.verify(&document, &dev, now).unwrap();
    let warm = per_op(20_000, || {
        let v = cache.verify(&document, &dev, now).unwrap();
        check_attestation(&v, &release, &policy, now * 1000, None).unwrap();
    });

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "\n| measurement | per document | vs one raw P-384 verify ({:.0} µs) | goal |",
        us(raw)
    );
    println!("|---|---|---|---|");
    println!(
        "| cold, real AWS document (parse, 4 chain signatures, COSE) | {:.0} µs | {:.1}x | ≤ 5 ms |",
        us(cold_real),
        us(cold_real) / us(raw)
    );
    println!(
        "| cold, simulated document + release policy | {:.0} µs | {:.1}x | ≤ 5 ms |",
        us(cold_sim),
        us(cold_sim) / us(raw)
    );
    println!(
        "| warm (cached by hash) + release policy | {:.1} µs | {:.3}x | ≤ 50 µs |",
        us(warm),
        us(warm) / us(raw)
    );
    let met = |ok: bool| if ok { "yes" } else { "no" };
    println!(
        "summary | attestation, cold real AWS document (4 chain signatures + COSE) | {:.2} ms | one raw P-384 verify: {:.2} ms | {:.1}× | ≤ 5 ms | {} |",
        us(cold_real) / 1e3,
        us(raw) / 1e3,
        us(cold_real) / us(raw),
        met(us(cold_real) <= 5000.0)
    );
    println!(
        "summary | attestation, warm (cached by digest) + release policy | {:.1} µs | one raw P-384 verify: {:.0} µs | {:.3}× | ≤ 50 µs | {} |",
        us(warm),
        us(raw),
        us(warm) / us(raw),
        met(us(warm) <= 50.0)
    );
}
