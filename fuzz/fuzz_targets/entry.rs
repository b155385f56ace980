//! Log entries from untrusted bytes: never panic; whatever decodes re-encodes to the same bytes.
#![no_main]

use arcane_verifier::entry::{EntryPolicy, SignedEntry, decode_key_config, encode_key_config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = SignedEntry::decode(data) {
        let mut again = entry.entry.signed_bytes().unwrap();
        again.extend_from_slice(&entry.signature);
        assert_eq!(again, data);
        let _ = EntryPolicy::default().validate(&entry.entry);
        let _ = entry.view();
    }
    if let Ok(config) = decode_key_config(data) {
        assert_eq!(encode_key_config(&config).unwrap(), data);
    }
});
