//! Trillian's `LogRootV1` (what a Trillian server sends arcane-log) from untrusted bytes: never
//! panic; whatever decodes re-encodes to the same bytes.
#![no_main]

use arcane_log::trillian::log_root::LogRootV1;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = LogRootV1::decode(data) {
        assert_eq!(root.encode().unwrap(), data);
        let _ = root.root();
    }
});
