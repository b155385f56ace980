//! A real AWS Nitro Enclaves attestation document (production enclave, 2023-01-18), verified
//! against the built-in AWS root at its own time, and every way it must fail.

mod common;

use arcane_verifier::Error;
use arcane_verifier::nitro::*;

const AT: u64 = 1_674_054_914;

fn document() -> Vec<u8> {
    let text = std::fs::read(common::nitro_dir().join("02_evervault_cert_embedded_2023-01-18.b64"))
        .unwrap();
    decode_maybe_base64(&text)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn verifies_at_its_time_with_the_published_pcrs() {
    let bytes = document();
    assert_eq!(bytes[0], 0x84, "untagged COSE_Sign1");
    let verified = verify_document(&bytes, &NitroRoot::aws(), AT).unwrap();
    let doc = &verified.document;
    assert_eq!(verified.root, RootKind::Aws);
    assert_eq!(doc.digest, "SHA384");
    assert_eq!(doc.timestamp_ms, 1_674_047_239_280);
    assert_eq!(
        hex(doc.pcr(0).unwrap()),
        "d265a83faa7b4fa0d73b82b6d06253e894445922937d0ee5a74fe4891da9817611a71e71b98e5329232902de3cf419af"
    );
    assert_eq!(
        hex(doc.pcr(1).unwrap()),
        "bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99aa19e6b29c37ee80b214a414b7607236edf26fcb78654e63f"
    );
    assert_eq!(
        hex(doc.pcr(2).unwrap()),
        "e4f634d24ad83b7f6e49fe283bafdb220f6252fb4a278a858e19d15b7cd0f263b9168ed0bacefb4444266df9f9a77f24"
    );
    assert_eq!(
        hex(doc.pcr(8).unwrap()),
        "97c5395a83c0d6a04d53ff962663c714c178c24500bf97f78456ed3721d922cf3f940614da4bb90107c439bc4a1443ca"
    );
    assert_eq!(doc.pcrs.len(), 16);
    assert_eq!(doc.user_data.as_ref().map(Vec::len), Some(120));
    assert_eq!(doc.nonce.as_ref().map(Vec::len), Some(256));
    assert_eq!(doc.public_key, None);
    assert_eq!(doc.cabundle.len(), 4);
    // The leaf lives about three hours: 13:07:13 to 16:07:16 UTC.
    assert_eq!(verified.valid_until - verified.valid_from, 3 * 3600 + 3);
}

#[test]
fn fails_one_second_after_the_leaf_expires_and_before_it_starts() {
    let bytes = document();
    let verified = verify_document(&bytes, &NitroRoot::aws(), AT).unwrap();
    verify_document(&bytes, &NitroRoot::aws(), verified.valid_until).unwrap();
    assert_eq!(
        verify_document(&bytes, &NitroRoot::aws(), verified.valid_until + 1).unwrap_err(),
        Error::AttestationExpired {
            at: verified.valid_until + 1
        }
    );
    assert!(matches!(
        verify_document(&bytes, &NitroRoot::aws(), verified.valid_from - 1),
        Err(Error::AttestationExpired { .. })
    ));
    // The cache applies the same window.
    let mut cache = DocumentCache::default();
    cache.verify(&bytes, &NitroRoot::aws(), AT).unwrap();
    cache.verify(&bytes, &NitroRoot::aws(), AT + 60).unwrap();
    assert!(
        cache
            .verify(&bytes, &NitroRoot::aws(), verified.valid_until + 1)
            .is_err()
    );
}

#[test]
fn fails_with_another_root() {
    let bytes = document();
    let verified = verify_document(&bytes, &NitroRoot::aws(), AT).unwrap();
    // A root that is not the bundle's first certificate.
    let other = NitroRoot::development(verified.document.cabundle[1].clone());
    assert_eq!(
        verify_document(&bytes, &other, AT).unwrap_err(),
        Error::AttestationRootMismatch
    );
}

#[test]
fn any_flipped_bit_fails() {
    let bytes = document();
    let root = NitroRoot::aws();
    // Every 5th byte, each time a different bit: payload, certificates and signature all covered.
    let mut checked = 0;
    for i in (0..bytes.len()).step_by(5) {
        let mut tampered = bytes.clone();
        tampered[i] ^= 1 << (i % 8);
        assert!(
            verify_document(&tampered, &root, AT).is_err(),
            "bit flip at byte {i} accepted"
        );
        checked += 1;
    }
    // And every byte of the 96-byte signature at the end.
    for i in bytes.len() - 96..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[i] ^= 0x80;
        assert_eq!(
            verify_document(&tampered, &root, AT).unwrap_err(),
            Error::AttestationSignature,
            "signature byte {i}"
        );
        checked += 1;
    }
    assert!(checked > 1000);
}

#[test]
fn garbage_is_refused_cleanly() {
    let bytes = document();
    for len in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(verify_document(&bytes[..len], &NitroRoot::aws(), AT).is_err());
    }
    let mut tagged = vec![0xd2];
    tagged.extend_from_slice(&bytes);
    assert!(
        verify_document(&tagged, &NitroRoot::aws(), AT).is_err(),
        "only untagged COSE_Sign1"
    );
}

#[test]
fn random_mutations_never_panic_and_never_verify() {
    let bytes = document();
    let root = NitroRoot::aws();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..400 {
        let mut mutated = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % mutated.len();
            match next() % 3 {
                0 => mutated[at] = next() as u8,
                1 => mutated.insert(at, next() as u8),
                _ => {
                    mutated.remove(at);
                }
            }
        }
        if mutated == bytes {
            continue; // the edits cancelled out
        }
        let _ = parse_document(&mutated);
        assert!(
            verify_document(&mutated, &root, AT).is_err(),
            "a mutated document verified"
        );
    }
}
