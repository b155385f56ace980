//! The key release protocol's messages and a node's signed answer from untrusted bytes: never
//! panic, and what parses encodes to what parses the same again.
#![no_main]

use arcane_verifier::model_key::{ChallengeReply, ChallengeSecret, KeyReply, KeyRequest};
use arcane_verifier::nitro::NitroRoot;
use arcane_verifier::note::{ALG_ED25519, NoteSigner};
use arcane_verifier::signed_answer::{SignedAnswer, verify_receipt_evidence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = KeyRequest::parse(data) {
        let again = KeyRequest::parse(request.to_json().as_bytes()).expect("re-encoded request");
        assert_eq!(again, request);
    }
    let _ = ChallengeReply::parse(data);
    let _ = KeyReply::parse(data);
    let secret = ChallengeSecret::from_bytes(&[7; 32]).expect("32 bytes");
    let _ = secret.check(data, 1_700_000_000);
    if let Ok(signed) = serde_json::from_slice::<SignedAnswer>(data) {
        let _ = signed.decode();
        let log = NoteSigner::from_seed("fuzz.example/log", ALG_ED25519, &[1; 32])
            .expect("a key")
            .verifier();
        let _ = verify_receipt_evidence(&signed, &log, &NitroRoot::aws());
    }
});
