//! Signed notes and key texts from untrusted bytes: never panic; whatever parses re-serialises to
//! the same bytes.
#![no_main]

use arcane_verifier::note::{Note, NoteSigner, VerifierKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = Note::parse(data) {
        assert_eq!(note.to_text().as_bytes(), data);
        let key = NoteSigner::from_seed("fuzz", 1, &[1; 32]).unwrap().verifier();
        let _ = note.verify(&[key]);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(key) = VerifierKey::parse(text) {
            assert_eq!(VerifierKey::parse(&key.to_text()).unwrap(), key);
        }
        let _ = NoteSigner::parse(text);
    }
});
