//! Prints the worked examples of `spec/entries.md`: a `release` and an `ohttp-keys` entry signed by
//! a fixed example publisher key (seed 0x42…42). `cargo run -p arcane-verifier --example entry_examples`

use arcane_verifier::entry::*;
use arcane_verifier::note::{ALG_ED25519, NoteSigner};

fn main() {
    let publisher =
        NoteSigner::from_seed("operator.example/releases", ALG_ED25519, &[0x42; 32]).unwrap();
    let id = PublisherId::of(publisher.verifier().public_key());
    println!("publisher: {}", publisher.verifier().to_text());
    let release = Entry {
        not_before: 1_767_225_600,
        not_after: 1_767_225_600 + 30 * 86_400,
        publisher: id,
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
    };
    let ohttp = Entry {
        not_before: 1_767_225_600,
        not_after: 1_767_225_600 + 7 * 86_400,
        publisher: id,
        body: EntryBody::OhttpKeys(OhttpKeyConfig {
            key_id: 1,
            kem_id: KEM_X25519_SHA256,
            public_key: vec![0x66; 32],
            symmetric: vec![(KDF_HKDF_SHA256, 0x0001), (KDF_HKDF_SHA256, 0x0003)],
        }),
    };
    for (name, entry) in [("release", release), ("ohttp-keys", ohttp)] {
        let signed = entry.sign(&publisher).unwrap();
        let hex: String = signed
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!("\n{name} ({} bytes):", signed.as_bytes().len());
        for line in hex.as_bytes().chunks(96) {
            println!("{}", std::str::from_utf8(line).unwrap());
        }
        println!("leaf hash: {}", signed.view().leaf_hash);
    }
}
