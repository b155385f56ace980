//! A sealed answer stream from untrusted bytes (what a client reads from the network): never
//! panic, whatever the bytes and however they are split; wrapped DEKs decode only at 120 bytes.
#![no_main]

use arcane_verifier::sealed::{self, RekSecret, ResponseReader, WrappedDek};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(w) = WrappedDek::decode(data) {
        assert_eq!(&w.encode()[..], data);
    }
    let node = RekSecret::generate();
    let (_, _, request) = sealed::seal_request(b"x", &[node.public()], 0).unwrap();
    let mut reader = ResponseReader::new(request);
    let split = data.first().map_or(1, |b| *b as usize + 1);
    for piece in data.chunks(split) {
        reader.push(piece);
        while let Ok(Some(_)) = reader.next_chunk() {}
    }
    // Nothing forged opens: without the node's answer no chunk can decrypt.
    assert!(reader.finish().is_err());
});
