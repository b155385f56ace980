//! EIF measurement of untrusted bytes: never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = arcane_verifier::eif::measure(data);
});
