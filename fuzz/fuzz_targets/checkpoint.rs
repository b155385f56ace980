//! Checkpoints from untrusted bytes: never panic; a parsed body re-serialises to itself.
#![no_main]

use arcane_verifier::checkpoint::{Checkpoint, verify_checkpoint};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::note::NoteSigner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(checkpoint) = Checkpoint::parse_body(text)
    {
        assert_eq!(checkpoint.to_body(), text);
    }
    let key = NoteSigner::from_seed("fuzz", 1, &[1; 32]).unwrap().verifier();
    let _ = verify_checkpoint(data, &key, &WitnessPolicy::none());
});
