//! Proof bundles from untrusted bytes: never panic; a parsed bundle re-serialises to itself.
#![no_main]

use arcane_verifier::bundle::{ProofBundle, TrustAnchors, verify_bundle};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::entry::EntryPolicy;
use arcane_verifier::note::NoteSigner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = ProofBundle::parse(data) {
        assert_eq!(bundle.to_text().as_bytes(), data);
    }
    let log = NoteSigner::from_seed("fuzz", 1, &[1; 32]).unwrap().verifier();
    let publishers = [log.clone()];
    let anchors = TrustAnchors {
        log_key: &log,
        witnesses: &WitnessPolicy::none(),
        publishers: &publishers,
        policy: &EntryPolicy::default(),
    };
    let _ = verify_bundle(data, &anchors, None, 0);
});
