//! Sealed requests and streamed answers: round trips, and every way of tampering with them.

mod common;

use arcane_verifier::Error;
use arcane_verifier::sealed::{
    self, FLAG_FINAL, FRAME_HEADER_LEN, RESPONSE_HEAD_LEN, RekAead, RekKdf, RekKem, RekSecret,
    ResponseReader, WRAPPED_DEK_LEN, WrappedDek,
};
use hpke::{Deserializable, Kem as _, OpModeR, Serializable};
use proptest::prelude::*;

/// A sealed exchange: the client's reader and the node's full response stream, with the chunk
/// frames kept apart so tests can reorder, drop or tamper with them.
struct Exchange {
    reader: ResponseReader,
    head: Vec<u8>,
    frames: Vec<Vec<u8>>,
}

fn exchange(chunks: &[&[u8]], pad_to: usize) -> Exchange {
    let node = RekSecret::generate();
    let (wrapped, ciphertext, client) =
        sealed::seal_request(b"{\"messages\":[]}", &[node.public()], 1_000).unwrap();
    let opened = sealed::open_request(&node, &wrapped[0], &ciphertext).unwrap();
    let (head, mut sealer) = opened.responder.start();
    let frames = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| sealer.seal_chunk(c, i + 1 == chunks.len(), pad_to).unwrap())
        .collect();
    Exchange {
        reader: ResponseReader::new(client),
        head: head.to_vec(),
        frames,
    }
}

/// Reads everything; returns the concatenated content or the first error.
fn read_all(reader: &mut ResponseReader, bytes: &[u8]) -> Result<Vec<u8>, Error> {
    reader.push(bytes);
    let mut out = Vec::new();
    while let Some(chunk) = reader.next_chunk()? {
        out.extend_from_slice(&chunk.content);
    }
    reader.finish()?;
    Ok(out)
}

#[test]
fn round_trip_with_several_candidates_answered_by_the_second() {
    let nodes: Vec<RekSecret> = (0..3).map(|_| RekSecret::generate()).collect();
    let reks: Vec<_> = nodes.iter().map(|n| n.public()).collect();
    let (wrapped, ciphertext, client) = sealed::seal_request(b"hello node", &reks, 42).unwrap();
    assert_eq!(wrapped.len(), 3);
    for (w, rek) in wrapped.iter().zip(&reks) {
        assert_eq!(w.rek_id, rek.id());
        assert_eq!(WrappedDek::decode(&w.encode()).unwrap(), *w);
    }
    // Every node can open its own wrap, none another's.
    for (i, node) in nodes.iter().enumerate() {
        for (j, w) in wrapped.iter().enumerate() {
            let result = sealed::open_request(node, w, &ciphertext);
            if i == j {
                let opened = result.unwrap();
                assert_eq!(&opened.plaintext[..], b"hello node");
                assert_eq!(opened.issued_at, 42);
            } else {
                assert_eq!(result.unwrap_err(), Error::UnknownRek);
            }
        }
    }
    let opened = sealed::open_request(&nodes[1], &wrapped[1], &ciphertext).unwrap();
    let (head, mut sealer) = opened.responder.start();
    let mut stream = head.to_vec();
    stream.extend(sealer.seal_chunk(b"token one ", false, 0).unwrap());
    stream.extend(sealer.seal_chunk(b"token two", true, 0).unwrap());
    let mut reader = ResponseReader::new(client);
    assert_eq!(
        read_all(&mut reader, &stream).unwrap(),
        b"token one token two"
    );
    assert_eq!(reader.answered_by(), Some(1));
}

#[test]
fn a_wrap_relabelled_for_another_rek_does_not_open() {
    let right = RekSecret::generate();
    let wrong = RekSecret::generate();
    let (mut wrapped, ciphertext, _) =
        sealed::seal_request(b"secret", &[right.public()], 1).unwrap();
    // The gateway (or anyone) claims the wrap is for `wrong`: the REK id matches, HPKE does not.
    wrapped[0].rek_id = wrong.public().id();
    assert!(matches!(
        sealed::open_request(&wrong, &wrapped[0], &ciphertext),
        Err(Error::SealedOpen(_))
    ));
}

#[test]
fn the_wrap_is_bound_to_its_ciphertext() {
    let node = RekSecret::generate();
    let (wrapped_a, ciphertext_a, _) =
        sealed::seal_request(b"request A", &[node.public()], 1).unwrap();
    let (_, ciphertext_b, _) = sealed::seal_request(b"request B", &[node.public()], 1).unwrap();
    assert!(matches!(
        sealed::open_request(&node, &wrapped_a[0], &ciphertext_b),
        Err(Error::SealedOpen(_))
    ));
    // Any flipped bit of the ciphertext or of the wrap fails too.
    for i in 0..ciphertext_a.len() {
        let mut c = ciphertext_a.clone();
        c[i] ^= 0x01;
        assert!(
            sealed::open_request(&node, &wrapped_a[0], &c).is_err(),
            "byte {i}"
        );
    }
    let encoded = wrapped_a[0].encode();
    for i in 32..WRAPPED_DEK_LEN {
        let mut e = encoded;
        e[i] ^= 0x80;
        let w = WrappedDek::decode(&e).unwrap();
        assert!(
            sealed::open_request(&node, &w, &ciphertext_a).is_err(),
            "byte {i}"
        );
    }
}

#[test]
fn streamed_chunks_open_in_order_with_padding() {
    for pad_to in [0usize, 1, 16, 256] {
        let chunks: [&[u8]; 4] = [b"a", b"", b"some longer piece of text", b"!"];
        let mut ex = exchange(&chunks, pad_to);
        if pad_to == 256 {
            for f in &ex.frames {
                assert_eq!(
                    (f.len() - FRAME_HEADER_LEN - 16) % 256,
                    0,
                    "padded to the bucket"
                );
            }
        }
        let mut bytes = ex.head.clone();
        for f in &ex.frames {
            bytes.extend_from_slice(f);
        }
        assert_eq!(read_all(&mut ex.reader, &bytes).unwrap(), chunks.concat());
    }
}

#[test]
fn a_truncated_stream_is_detected() {
    let mut ex = exchange(&[b"one", b"two", b"three"], 0);
    let mut bytes = ex.head.clone();
    bytes.extend_from_slice(&ex.frames[0]);
    bytes.extend_from_slice(&ex.frames[1]);
    assert_eq!(
        read_all(&mut ex.reader, &bytes),
        Err(Error::SealedStream(
            "the stream ended before its final chunk (truncated)"
        ))
    );
    // Cut inside a frame: same.
    let mut ex = exchange(&[b"one", b"two"], 0);
    let mut bytes = ex.head.clone();
    bytes.extend_from_slice(&ex.frames[0]);
    bytes.extend_from_slice(&ex.frames[1][..4]);
    assert!(read_all(&mut ex.reader, &bytes).is_err());
}

#[test]
fn reordered_replayed_or_flag_flipped_chunks_are_refused() {
    let chunks: [&[u8]; 3] = [b"one", b"two", b"three"];
    // Reordered.
    let mut ex = exchange(&chunks, 0);
    let bytes = [
        ex.head.clone(),
        ex.frames[1].clone(),
        ex.frames[0].clone(),
        ex.frames[2].clone(),
    ]
    .concat();
    assert!(matches!(
        read_all(&mut ex.reader, &bytes),
        Err(Error::SealedStream(_))
    ));
    // Replayed.
    let mut ex = exchange(&chunks, 0);
    let bytes = [
        ex.head.clone(),
        ex.frames[0].clone(),
        ex.frames[0].clone(),
        ex.frames[2].clone(),
    ]
    .concat();
    assert!(matches!(
        read_all(&mut ex.reader, &bytes),
        Err(Error::SealedStream(_))
    ));
    // A non-final chunk relabelled final, to cut the answer short: the flag is authenticated.
    let mut ex = exchange(&chunks, 0);
    let mut early = ex.frames[0].clone();
    early[0] = FLAG_FINAL;
    let bytes = [ex.head.clone(), early].concat();
    assert!(matches!(
        read_all(&mut ex.reader, &bytes),
        Err(Error::SealedStream(_))
    ));
    // Anything after the final chunk.
    let mut ex = exchange(&chunks, 0);
    let mut bytes = [ex.head.clone(), ex.frames.concat()].concat();
    bytes.extend_from_slice(&ex.frames[2]);
    assert!(read_all(&mut ex.reader, &bytes).is_err());
}

#[test]
fn every_tampered_byte_of_a_stream_is_caught() {
    let length = {
        let ex = exchange(&[b"alpha", b"beta"], 0);
        ex.head.len() + ex.frames.iter().map(Vec::len).sum::<usize>()
    };
    // The client state is consumed by a reader, so build a fresh exchange per position and
    // tamper with the same offset.
    for i in 0..length {
        let mut ex = exchange(&[b"alpha", b"beta"], 0);
        let mut b = [ex.head.clone(), ex.frames.concat()].concat();
        b[i] ^= 0x04;
        assert!(
            read_all(&mut ex.reader, &b).is_err(),
            "byte {i} of {}",
            b.len()
        );
    }
}

#[test]
fn an_answer_to_another_request_is_refused() {
    let node = RekSecret::generate();
    let (wrapped, ciphertext, _client_a) =
        sealed::seal_request(b"request A", &[node.public()], 1).unwrap();
    let (_, _, client_b) = sealed::seal_request(b"request B", &[node.public()], 1).unwrap();
    let opened = sealed::open_request(&node, &wrapped[0], &ciphertext).unwrap();
    let (head, mut sealer) = opened.responder.start();
    let stream = [head.to_vec(), sealer.seal_chunk(b"for A", true, 0).unwrap()].concat();
    let mut reader = ResponseReader::new(client_b);
    assert!(matches!(
        read_all(&mut reader, &stream),
        Err(Error::SealedOpen(_))
    ));
}

#[test]
fn nothing_can_be_sealed_after_the_final_chunk() {
    let node = RekSecret::generate();
    let (wrapped, ciphertext, _) = sealed::seal_request(b"x", &[node.public()], 1).unwrap();
    let opened = sealed::open_request(&node, &wrapped[0], &ciphertext).unwrap();
    let (_, mut sealer) = opened.responder.start();
    sealer.seal_chunk(b"end", true, 0).unwrap();
    assert!(sealer.seal_chunk(b"more", false, 0).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However the network splits the stream, the reader yields the same content.
    #[test]
    fn any_split_of_the_stream_reads_the_same(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        pad_to in prop::sample::select(vec![0usize, 32, 128]),
    ) {
        let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
        let mut ex = exchange(&refs, pad_to);
        let bytes = [ex.head.clone(), ex.frames.concat()].concat();
        prop_assert!(bytes.len() > RESPONSE_HEAD_LEN);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len())).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let mut out = Vec::new();
        for w in points.windows(2) {
            ex.reader.push(&bytes[w[0]..w[1]]);
            while let Some(chunk) = ex.reader.next_chunk().unwrap() {
                out.extend_from_slice(&chunk.content);
            }
        }
        ex.reader.finish().unwrap();
        prop_assert_eq!(out, chunks.concat());
    }
}

/// RFC 9180's published vectors for exactly this suite (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
/// ChaCha20-Poly1305, base mode) go through the same HPKE types the sealing code uses: key
/// derivation, decryption of every vector ciphertext, and every exported value.
#[test]
fn rfc9180_vectors_for_the_rek_suite() {
    let path = common::vectors_dir()
        .join("hpke/rfc9180_x25519_sha256_aes128gcm_chacha20poly1305_modes0_1.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let vectors: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (kem, kdf, aead) = sealed::SUITE;
    let h = |v: &serde_json::Value| hex::decode(v.as_str().unwrap()).unwrap();
    let mut checked = 0;
    for v in vectors.as_array().unwrap() {
        if v["mode"] != 0 || v["kem_id"] != kem || v["kdf_id"] != kdf || v["aead_id"] != aead {
            continue;
        }
        let (sk, pk) = RekKem::derive_keypair(&h(&v["ikmR"]));
        // The crate keeps X25519 scalars clamped (RFC 7748 §5); the vector gives them unclamped.
        let mut clamped = h(&v["skRm"]);
        clamped[0] &= 248;
        clamped[31] &= 127;
        clamped[31] |= 64;
        assert_eq!(sk.to_bytes().to_vec(), clamped);
        assert_eq!(pk.to_bytes().to_vec(), h(&v["pkRm"]));
        let enc = <RekKem as hpke::Kem>::EncappedKey::from_bytes(&h(&v["enc"])).unwrap();
        let mut ctx = hpke::setup_receiver::<RekAead, RekKdf, RekKem>(
            &OpModeR::Base,
            &sk,
            &enc,
            &h(&v["info"]),
        )
        .unwrap();
        for e in v["encryptions"].as_array().unwrap() {
            assert_eq!(ctx.open(&h(&e["ct"]), &h(&e["aad"])).unwrap(), h(&e["pt"]));
        }
        for x in v["exports"].as_array().unwrap() {
            let mut out = vec![0u8; x["L"].as_u64().unwrap() as usize];
            ctx.export(&h(&x["exporter_context"]), &mut out).unwrap();
            assert_eq!(out, h(&x["exported_value"]));
        }
        checked += 1;
    }
    assert_eq!(
        checked, 1,
        "the vector file holds exactly one base-mode vector for this suite"
    );
}
