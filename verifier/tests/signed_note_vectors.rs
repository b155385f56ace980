//! C2SP signed-note and golang.org/x/mod/sumdb/note vectors, and tampering.

mod common;

use arcane_verifier::checkpoint::Checkpoint;
use arcane_verifier::note::{Note, NoteSigner, VerifierKey};
use serde::Deserialize;

#[derive(Deserialize)]
struct Valid {
    vkey: String,
    #[serde(default)]
    other_vkey: Option<String>,
    #[serde(default)]
    skey: Option<String>,
    note: String,
    text: String,
}

#[derive(Deserialize)]
struct InvalidKey {
    vkey: String,
    why: String,
}

#[derive(Deserialize)]
struct CheckpointExample {
    note: String,
    origin: String,
    size: u64,
    root: String,
}

#[derive(Deserialize)]
struct Vectors {
    valid: Vec<Valid>,
    invalid_vkeys: Vec<InvalidKey>,
    checkpoint_example_unverifiable: CheckpointExample,
}

fn vectors() -> Vectors {
    let path = common::vectors_dir().join("signed-note/signed_note_vectors.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn valid_notes_verify_and_keys_round_trip() {
    let v = vectors();
    assert!(v.valid.len() >= 3);
    for case in &v.valid {
        let key = VerifierKey::parse(&case.vkey).unwrap();
        assert_eq!(key.to_text(), case.vkey);
        let note = Note::parse(case.note.as_bytes()).unwrap();
        assert_eq!(note.text, case.text);
        assert_eq!(note.to_text(), case.note, "re-serialisation is byte-exact");
        assert_eq!(note.verify(std::slice::from_ref(&key)).unwrap().len(), 1);
        if let Some(other) = &case.other_vkey {
            let other = VerifierKey::parse(other).unwrap();
            assert_eq!(note.verify(std::slice::from_ref(&other)).unwrap().len(), 1);
            assert_eq!(note.verify(&[key.clone(), other]).unwrap().len(), 2);
        }
    }
}

#[test]
fn re_signing_with_the_signer_key_reproduces_the_note() {
    let v = vectors();
    let mut resigned = 0;
    for case in &v.valid {
        let Some(skey) = &case.skey else { continue };
        let signer = NoteSigner::parse(skey).unwrap();
        assert_eq!(signer.verifier().to_text(), case.vkey);
        assert_eq!(&*signer.to_secret_text(), skey);
        assert_eq!(signer.sign_note(&case.text).unwrap().to_text(), case.note);
        resigned += 1;
    }
    assert!(resigned > 0, "the vectors carry a signer key");
}

#[test]
fn invalid_verifier_keys_are_rejected() {
    let v = vectors();
    assert!(!v.invalid_vkeys.is_empty());
    for case in &v.invalid_vkeys {
        assert!(VerifierKey::parse(&case.vkey).is_err(), "{}", case.why);
    }
}

#[test]
fn note_files_match_json() {
    let dir = common::vectors_dir().join("signed-note");
    for i in 1..=3 {
        let note = std::fs::read(dir.join(format!("valid_{i}.note"))).unwrap();
        let vkey = std::fs::read_to_string(dir.join(format!("valid_{i}.vkey"))).unwrap();
        let key = VerifierKey::parse(vkey.trim()).unwrap();
        Note::parse(&note).unwrap().verify(&[key]).unwrap();
    }
}

#[test]
fn checkpoint_example_parses() {
    let c = vectors().checkpoint_example_unverifiable;
    let note = Note::parse(c.note.as_bytes()).unwrap();
    let body = Checkpoint::parse_body(&note.text).unwrap();
    assert_eq!(body.origin, c.origin);
    assert_eq!(body.size, c.size);
    assert_eq!(
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, body.root.0),
        c.root
    );
    assert_eq!(body.to_body(), note.text);
}

#[test]
fn every_tampered_byte_is_rejected() {
    let v = vectors();
    for case in &v.valid {
        let key = VerifierKey::parse(&case.vkey).unwrap();
        let bytes = case.note.as_bytes();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut tampered = bytes.to_vec();
                tampered[i] ^= bit;
                let verdict = Note::parse(&tampered)
                    .and_then(|n| n.verify(std::slice::from_ref(&key)).map(|_| n));
                // A flip inside another signer's line may leave our key's signature intact; then
                // the text must still be the original text.
                if let Ok(note) = verdict {
                    assert_eq!(note.text, case.text, "byte {i} flipped, still verified");
                    assert!(
                        !std::str::from_utf8(&tampered)
                            .unwrap()
                            .lines()
                            .any(|l| l.starts_with(&format!("\u{2014} {} ", key.name()))
                                && !case.note.contains(l)),
                        "tampered signature line of the verifying key accepted at byte {i}"
                    );
                }
            }
        }
    }
}
