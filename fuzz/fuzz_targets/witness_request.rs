//! Witness add-checkpoint requests and policy files from untrusted bytes: never panic; a parsed
//! request re-serialises to itself.
#![no_main]

use arcane_verifier::cosignature::parse_policy_file;
use arcane_verifier::witness::AddCheckpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = AddCheckpoint::parse(data) {
        assert_eq!(request.to_text().as_bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_policy_file(text);
    }
});
