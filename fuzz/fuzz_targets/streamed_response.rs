//! Streamed BHTTP answers (what a client reads from the gateway) and QUIC varints from untrusted
//! bytes: never panic; a response that parses, re-framed by the encoder, parses to the same
//! response; a varint re-encoded decodes to the same value.
#![no_main]

use arcane_verifier::streamed_response::{END, chunk, decode_varint, encode_varint, head, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((value, _)) = decode_varint(data) {
        let mut out = Vec::new();
        encode_varint(value, &mut out);
        assert_eq!(decode_varint(&out).unwrap().0, value);
    }
    if let Ok(response) = parse(data)
        && let [(name, value)] = response.fields.as_slice()
        && name.as_slice() == b"content-type"
        && let Ok(content_type) = std::str::from_utf8(value)
    {
        let mut again = head(response.status, content_type);
        again.extend(chunk(&response.content));
        again.extend_from_slice(&END);
        assert_eq!(parse(&again).unwrap(), response);
    }
});
