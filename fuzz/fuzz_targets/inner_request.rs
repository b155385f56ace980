//! Inner requests (decrypted bytes a node parses), node bundles and chunk contents from
//! untrusted bytes: never panic; a decoded inner request re-encodes to something that decodes
//! to the same request.
#![no_main]

use arcane_verifier::attested::NodeBundle;
use arcane_verifier::inner::{ChunkContent, decode_inner_request, encode_inner_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_inner_request(data) {
        let again = encode_inner_request(&request).unwrap();
        assert_eq!(decode_inner_request(&again).unwrap(), request);
    }
    let _ = NodeBundle::parse(data);
    let _ = ChunkContent::parse(data);
});
