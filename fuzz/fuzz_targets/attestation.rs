//! Nitro attestation documents from untrusted bytes: never panic.
#![no_main]

use arcane_verifier::nitro::{NitroRoot, parse_document, verify_document};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_document(data);
    let _ = verify_document(data, &NitroRoot::aws(), 1_674_054_914);
});
