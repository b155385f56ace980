//! Typed entries: canonical round trips, every non-canonical variant refused, each validation
//! rule, and the worked examples of `spec/entries.md`.

use arcane_verifier::Error;
use arcane_verifier::entry::*;
use arcane_verifier::note::{ALG_ED25519, NoteSigner};
use proptest::prelude::*;
use std::path::PathBuf;

fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/entries")
            .join(name),
    )
    .unwrap()
}

fn publisher() -> NoteSigner {
    NoteSigner::from_seed("operator.example/releases", ALG_ED25519, &[0x42; 32]).unwrap()
}

fn publisher_id() -> PublisherId {
    PublisherId::of(publisher().verifier().public_key())
}

fn release() -> Entry {
    Entry {
        not_before: 1_767_225_600, // 2026-01-01
        not_after: 1_767_225_600 + 30 * 86_400,
        publisher: publisher_id(),
        body: EntryBody::Release(Box::new(Release {
            pcr0: [0x11; 48],
            pcr1: [0x22; 48],
            pcr2: [0x33; 48],
            pcr8: None,
            model_sha256: [0x44; 32],
            engine: "mistral.rs".into(),
            engine_version: "0.8.1".into(),
            source_commit: "0123456789abcdef0123456789abcdef01234567".into(),
            eif_sha384: [0x55; 48],
            notes: "example".into(),
        })),
    }
}

fn ohttp_keys() -> Entry {
    Entry {
        not_before: 1_767_225_600,
        not_after: 1_767_225_600 + 7 * 86_400,
        publisher: publisher_id(),
        body: EntryBody::OhttpKeys(OhttpKeyConfig {
            key_id: 1,
            kem_id: KEM_X25519_SHA256,
            public_key: vec![0x66; 32],
            symmetric: vec![(KDF_HKDF_SHA256, 0x0001), (KDF_HKDF_SHA256, 0x0003)],
        }),
    }
}

fn token_key(spki: &str, role: TokenRole) -> Entry {
    Entry {
        not_before: 1_767_225_600,
        not_after: 1_767_225_600 + 30 * 86_400,
        publisher: publisher_id(),
        body: EntryBody::TokenKey(TokenKey {
            role,
            token_type: TOKEN_TYPE_BLIND_RSA,
            spki_der: testdata(spki),
        }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The worked examples in spec/entries.md are exactly what this code produces.
#[test]
fn worked_examples_match_the_spec() {
    let spec = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/entries.md"),
    )
    .unwrap();
    let spec: String = spec.split_whitespace().collect();
    for (name, entry) in [("release", release()), ("ohttp-keys", ohttp_keys())] {
        let signed = entry.sign(&publisher()).unwrap();
        let encoded = hex(signed.as_bytes());
        assert!(
            spec.contains(&encoded),
            "spec/entries.md lacks the {name} example:\n{encoded}"
        );
    }
    assert!(spec.contains(&publisher().verifier().to_text()));
}

#[test]
fn every_kind_round_trips_signs_and_validates() {
    let policy = EntryPolicy::default();
    for entry in [
        release(),
        ohttp_keys(),
        token_key("rsa2048.spki.der", TokenRole::Tgt),
        token_key("rsapss2048.spki.der", TokenRole::Ott),
    ] {
        let signed = entry.clone().sign(&publisher()).unwrap();
        let decoded = SignedEntry::decode(signed.as_bytes()).unwrap();
        assert_eq!(decoded, signed);
        assert_eq!(decoded.entry, entry);
        decoded.verify_signature(&[publisher().verifier()]).unwrap();
        policy.validate(&decoded.entry).unwrap();
        let view = serde_json::to_value(decoded.view()).unwrap();
        assert_eq!(view["kind"], entry.body.kind_name());
    }
    let view = serde_json::to_value(
        token_key("rsa2048.spki.der", TokenRole::Tgt)
            .sign(&publisher())
            .unwrap()
            .view(),
    )
    .unwrap();
    assert_eq!(view["body"]["modulus_bits"], 2048);
    assert_eq!(view["body"]["role"], "tgt");
}

#[test]
fn signature_is_checked_against_the_named_publisher() {
    let signed = release().sign(&publisher()).unwrap();
    let other = NoteSigner::from_seed("other", ALG_ED25519, &[7; 32]).unwrap();
    assert_eq!(
        signed.verify_signature(&[other.verifier()]),
        Err(Error::UnknownPublisher)
    );
    assert!(
        release().sign(&other).is_err(),
        "cannot sign for another publisher id"
    );
    let mut bytes = signed.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert_eq!(
        SignedEntry::decode(&bytes)
            .unwrap()
            .verify_signature(&[publisher().verifier()]),
        Err(Error::EntrySignature)
    );
    // Any change to the signed part breaks the signature (or the decoding).
    for i in 0..signed.as_bytes().len() - 64 {
        let mut bytes = signed.as_bytes().to_vec();
        bytes[i] ^= 0x01;
        if let Ok(decoded) = SignedEntry::decode(&bytes) {
            assert!(
                decoded.verify_signature(&[publisher().verifier()]).is_err(),
                "byte {i}"
            );
        }
    }
}

#[test]
fn non_canonical_encodings_are_refused() {
    let good = release().sign(&publisher()).unwrap().as_bytes().to_vec();
    // Every truncation, and any trailing byte.
    for len in 0..good.len() {
        assert!(
            SignedEntry::decode(&good[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(SignedEntry::decode(&longer).is_err());
    // Wrong version.
    let mut bad = good.clone();
    bad[0] = 2;
    assert!(SignedEntry::decode(&bad).is_err());
    // Body length off by one either way.
    for delta in [-1i64, 1] {
        let mut bad = good.clone();
        let len = u32::from_be_bytes(bad[50..54].try_into().unwrap()) as i64 + delta;
        bad[50..54].copy_from_slice(&(len as u32).to_be_bytes());
        assert!(SignedEntry::decode(&bad).is_err(), "body length {delta:+}");
    }
    // PCR8 presence byte other than 0/1.
    let mut bad = good.clone();
    bad[54 + 3 * 48] = 2;
    assert!(SignedEntry::decode(&bad).is_err());
    // Empty engine string (length byte 0), control characters in a string.
    let engine_at = 54 + 3 * 48 + 1 + 32;
    let mut bad = good.clone();
    bad[engine_at] = 0;
    assert!(SignedEntry::decode(&bad).is_err());
    let mut bad = good.clone();
    bad[engine_at + 1] = b'\x07';
    assert!(SignedEntry::decode(&bad).is_err());
    // Invalid UTF-8.
    let mut bad = good.clone();
    bad[engine_at + 1] = 0xff;
    assert!(SignedEntry::decode(&bad).is_err());

    // ohttp-keys: trailing bytes inside the key config, odd suite length, unknown KEM.
    let config = encode_key_config(match &ohttp_keys().body {
        EntryBody::OhttpKeys(c) => c,
        _ => unreachable!(),
    })
    .unwrap();
    let mut trailing = config.clone();
    trailing.push(0);
    assert!(decode_key_config(&trailing).is_err());
    let mut odd = config.clone();
    odd[35..37].copy_from_slice(&6u16.to_be_bytes());
    assert!(decode_key_config(&odd).is_err());
    let mut kem = config.clone();
    kem[1..3].copy_from_slice(&0x0010u16.to_be_bytes());
    assert!(decode_key_config(&kem).is_err());
    assert_eq!(
        decode_key_config(&config).unwrap(),
        match ohttp_keys().body {
            EntryBody::OhttpKeys(c) => c,
            _ => unreachable!(),
        }
    );

    // token-key: role 3.
    let token = token_key("rsa2048.spki.der", TokenRole::Tgt)
        .sign(&publisher())
        .unwrap()
        .as_bytes()
        .to_vec();
    let mut bad = token.clone();
    bad[54] = 3;
    assert!(SignedEntry::decode(&bad).is_err());
}

#[test]
fn unknown_kinds_stay_unknown() {
    let entry = Entry {
        not_before: 1,
        not_after: 2,
        publisher: publisher_id(),
        body: EntryBody::Unknown {
            kind: 200,
            bytes: b"future".to_vec(),
        },
    };
    let signed = entry.sign(&publisher()).unwrap();
    let decoded = SignedEntry::decode(signed.as_bytes()).unwrap();
    assert_eq!(
        decoded.entry.body,
        EntryBody::Unknown {
            kind: 200,
            bytes: b"future".to_vec()
        }
    );
    decoded.verify_signature(&[publisher().verifier()]).unwrap();
    assert_eq!(
        EntryPolicy::default().validate(&decoded.entry),
        Err(Error::UnknownEntryKind(200))
    );
    // A release body relabelled with an unknown kind is not a release.
    let mut relabelled = release().sign(&publisher()).unwrap().as_bytes().to_vec();
    relabelled[1] = 99;
    assert!(matches!(
        SignedEntry::decode(&relabelled).unwrap().entry.body,
        EntryBody::Unknown { kind: 99, .. }
    ));
}

fn rejected(entry: Entry) -> String {
    match EntryPolicy::default().validate(&entry) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("accepted: {entry:?}"),
    }
}

#[test]
fn each_validation_rule() {
    let with_release = |f: &dyn Fn(&mut Release)| {
        let mut e = release();
        if let EntryBody::Release(r) = &mut e.body {
            f(r)
        }
        e
    };
    assert!(rejected(with_release(&|r| r.pcr0 = [0; 48])).contains("debug"));
    assert!(rejected(with_release(&|r| r.pcr2 = [0; 48])).contains("debug"));
    assert!(rejected(with_release(&|r| r.pcr8 = Some([0; 48]))).contains("PCR8"));
    assert!(rejected(with_release(&|r| r.model_sha256 = [0; 32])).contains("digests"));
    let mut e = release();
    e.not_after = e.not_before;
    assert!(rejected(e).contains("before"));
    let mut e = release();
    e.not_after = e.not_before + 367 * 86_400;
    assert!(rejected(e).contains("exceeds"));
    let mut e = ohttp_keys();
    e.not_after = e.not_before + 91 * 86_400;
    assert!(rejected(e).contains("exceeds"));

    let with_config = |f: &dyn Fn(&mut OhttpKeyConfig)| {
        let mut e = ohttp_keys();
        if let EntryBody::OhttpKeys(c) = &mut e.body {
            f(c)
        }
        e
    };
    assert!(rejected(with_config(&|c| c.kem_id = 0x0010)).contains("KEM"));
    assert!(rejected(with_config(&|c| c.public_key = vec![1; 31])).contains("32 bytes"));
    assert!(rejected(with_config(&|c| c.symmetric.clear())).contains("no symmetric"));
    assert!(rejected(with_config(&|c| c.symmetric = vec![(2, 1)])).contains("unsupported suite"));
    assert!(rejected(with_config(&|c| c.symmetric = vec![(1, 7)])).contains("unsupported suite"));
    assert!(rejected(with_config(&|c| c.symmetric = vec![(1, 1), (1, 1)])).contains("repeated"));

    assert!(rejected(token_key("rsa1024.spki.der", TokenRole::Tgt)).contains("1024 bits"));
    let mut e = token_key("rsa2048.spki.der", TokenRole::Tgt);
    if let EntryBody::TokenKey(k) = &mut e.body {
        k.token_type = 1
    }
    assert!(rejected(e).contains("token type"));
    let mut e = token_key("rsa2048.spki.der", TokenRole::Tgt);
    if let EntryBody::TokenKey(k) = &mut e.body {
        k.spki_der.push(0)
    }
    assert!(rejected(e).contains("RSA"));
    let mut e = token_key("rsa2048.spki.der", TokenRole::Tgt);
    if let EntryBody::TokenKey(k) = &mut e.body {
        k.spki_der[7] ^= 0x40
    } // the OID
    assert!(rejected(e).contains("RSA"));
}

/// An RSA SubjectPublicKeyInfo whose modulus is the DER integer zero (`02 01 00`): once a panic
/// (an empty slice indexed) that let a hostile log stop every monitor reading its entries.
const SPKI_ZERO_MODULUS: &[u8] = &[
    0x30, 0x1c, // SubjectPublicKeyInfo
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00, 0x03,
    0x0b, 0x00, // BIT STRING, no unused bits
    0x30, 0x08, 0x02, 0x01, 0x00, // modulus 0
    0x02, 0x03, 0x01, 0x00, 0x01, // exponent 65537
];

#[test]
fn a_zero_modulus_is_refused_not_a_panic() {
    let mut entry = token_key("rsa2048.spki.der", TokenRole::Tgt);
    if let EntryBody::TokenKey(k) = &mut entry.body {
        k.spki_der = SPKI_ZERO_MODULUS.to_vec();
    }
    assert!(rejected(entry.clone()).contains("RSA"));
    let EntryBody::TokenKey(key) = &entry.body else {
        unreachable!()
    };
    assert!(key.modulus_bits().is_err());
    // The whole signed entry decodes (it is well-formed TLS) and its view is readable.
    let signed = entry.sign(&publisher()).unwrap();
    let decoded = SignedEntry::decode(signed.as_bytes()).unwrap();
    let view = decoded.view();
    assert_eq!(view.kind, "token-key");
}

#[test]
fn validity_window_against_now() {
    let e = release();
    assert!(matches!(
        e.check_time(e.not_before - 1),
        Err(Error::EntryNotYetValid { .. })
    ));
    e.check_time(e.not_before).unwrap();
    e.check_time(e.not_after - 1).unwrap();
    assert!(matches!(
        e.check_time(e.not_after),
        Err(Error::EntryExpired { .. })
    ));
}

fn arb_string(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('Z'),
            Just('.'),
            Just('é'),
            Just(' '),
            Just('-')
        ],
        1..max,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>())
    .prop_filter("fits in bytes", move |s| s.len() <= max)
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    let release = (
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        proptest::option::of(any::<[u8; 32]>()),
        arb_string(64),
        arb_string(64),
        arb_string(64),
        proptest::collection::vec(any::<u8>(), 0..100),
    )
        .prop_map(|(a, b, c, engine, version, commit, notes)| {
            let widen = |x: [u8; 32]| {
                let mut out = [0u8; 48];
                out[..32].copy_from_slice(&x);
                out[32..].copy_from_slice(&x[..16]);
                out
            };
            EntryBody::Release(Box::new(Release {
                pcr0: widen(a),
                pcr1: widen(b),
                pcr2: widen(a),
                pcr8: c.map(widen),
                model_sha256: b,
                engine,
                engine_version: version,
                source_commit: commit,
                eif_sha384: widen(b),
                notes: notes.iter().map(|b| char::from(b'a' + b % 26)).collect(),
            }))
        });
    let ohttp = (
        any::<u8>(),
        any::<[u8; 32]>(),
        proptest::collection::vec((any::<u16>(), any::<u16>()), 0..5),
    )
        .prop_map(|(key_id, pk, symmetric)| {
            EntryBody::OhttpKeys(OhttpKeyConfig {
                key_id,
                kem_id: KEM_X25519_SHA256,
                public_key: pk.to_vec(),
                symmetric,
            })
        });
    let token = (
        any::<bool>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(tgt, token_type, spki_der)| {
            EntryBody::TokenKey(TokenKey {
                role: if tgt { TokenRole::Tgt } else { TokenRole::Ott },
                token_type,
                spki_der,
            })
        });
    let access = (
        any::<[u8; 32]>(),
        proptest::collection::vec(proptest::array::uniform::<_, 48>(any::<u8>()), 0..70),
    )
        .prop_map(|(model_sha256, images)| {
            EntryBody::ModelAccess(ModelAccess {
                model_sha256,
                images,
            })
        });
    let unknown = (5u8..=255, proptest::collection::vec(any::<u8>(), 0..100))
        .prop_map(|(kind, bytes)| EntryBody::Unknown { kind, bytes });
    (
        any::<u64>(),
        any::<u64>(),
        prop_oneof![release, ohttp, token, access, unknown],
    )
        .prop_map(|(not_before, not_after, body)| Entry {
            not_before,
            not_after,
            publisher: publisher_id(),
            body,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn canonical_round_trip(entry in arb_entry()) {
        let signed = entry.clone().sign(&publisher()).unwrap();
        let decoded = SignedEntry::decode(signed.as_bytes()).unwrap();
        prop_assert_eq!(&decoded.entry, &entry);
        // One encoding per value: re-encoding the decoded entry gives the same bytes.
        prop_assert_eq!(decoded.entry.signed_bytes().unwrap(), entry.signed_bytes().unwrap());
        decoded.verify_signature(&[publisher().verifier()]).unwrap();
    }

    #[test]
    fn random_mutations_never_decode_to_a_different_valid_entry(entry in arb_entry(), position in any::<usize>(), value in any::<u8>()) {
        let signed = entry.sign(&publisher()).unwrap();
        let mut bytes = signed.as_bytes().to_vec();
        let i = position % bytes.len();
        prop_assume!(bytes[i] != value);
        bytes[i] = value;
        if let Ok(decoded) = SignedEntry::decode(&bytes) {
            prop_assert!(decoded.verify_signature(&[publisher().verifier()]).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(decoded) = SignedEntry::decode(&bytes) {
            prop_assert_eq!(decoded.as_bytes(), &bytes[..]);
            let mut again = decoded.entry.signed_bytes().unwrap();
            again.extend_from_slice(&decoded.signature);
            prop_assert_eq!(&again, &bytes);
        }
        let _ = decode_key_config(&bytes);
    }
}

#[test]
fn model_access_rules() {
    let entry = |images: Vec<[u8; 48]>, model_sha256: [u8; 32]| Entry {
        not_before: 1_000,
        not_after: 2_000,
        publisher: publisher_id(),
        body: EntryBody::ModelAccess(ModelAccess {
            model_sha256,
            images,
        }),
    };
    let policy = EntryPolicy::default();
    let good = entry(vec![[1; 48], [2; 48]], [3; 32]);
    policy.validate(&good).unwrap();
    let signed = good.clone().sign(&publisher()).unwrap();
    let decoded = SignedEntry::decode(signed.as_bytes()).unwrap();
    assert_eq!(decoded.entry, good);
    assert_eq!(decoded.entry.body.kind_name(), "model-access");
    let EntryBody::ModelAccess(access) = &decoded.entry.body else {
        panic!("not model-access");
    };
    assert!(access.allows(&[2; 48]) && !access.allows(&[9; 48]));
    for (bad, why) in [
        (entry(vec![], [3; 32]), "no image"),
        (entry(vec![[0; 48]], [3; 32]), "a debug image"),
        (entry(vec![[1; 48], [1; 48]], [3; 32]), "an image twice"),
        (entry(vec![[1; 48]], [0; 32]), "no model"),
        (
            entry((1..=65u8).map(|i| [i; 48]).collect(), [3; 32]),
            "65 images",
        ),
    ] {
        assert!(
            matches!(
                policy.validate(&bad),
                Err(Error::InvalidEntry {
                    kind: "model-access",
                    ..
                })
            ),
            "{why} must be refused"
        );
    }
    let mut long = good;
    long.not_after = long.not_before + 367 * 24 * 3600;
    assert!(policy.validate(&long).is_err());
}
