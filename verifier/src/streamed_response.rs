//! The streamed inner answer: an indeterminate-length Binary HTTP response (RFC 9292 §3.2) that
//! the gateway writes piece by piece into a chunked OHTTP answer as the node's sealed chunks
//! arrive — a [`head`], any number of [`chunk`]s, then [`END`]. Clients read it with any RFC 9292
//! reader (the `bhttp` crate's streaming reader in the SDK); [`parse`] is this module's own
//! strict reader, for tests and tools.

use crate::error::{Error, Result};

/// QUIC variable-length integer (RFC 9000 §16), as BHTTP frames with.
pub fn encode_varint(v: u64, out: &mut Vec<u8>) {
    match v {
        0..=63 => out.push(v as u8),
        64..=16_383 => out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes()),
        16_384..=1_073_741_823 => out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes()),
        // Values of 2^62 and above cannot be encoded; nothing here comes near (lengths, statuses).
        _ => out.extend_from_slice(
            &((v & 0x3fff_ffff_ffff_ffff) | 0xc000_0000_0000_0000).to_be_bytes(),
        ),
    }
}

/// Reads one QUIC varint from the front of `bytes`: the value and the bytes after it.
pub fn decode_varint(bytes: &[u8]) -> Result<(u64, &[u8])> {
    let first = *bytes
        .first()
        .ok_or(Error::MalformedBhttp("truncated varint"))?;
    let len = 1usize << (first >> 6);
    if bytes.len() < len {
        return Err(Error::MalformedBhttp("truncated varint"));
    }
    let mut value = u64::from(first & 0x3f);
    for b in &bytes[1..len] {
        value = (value << 8) | u64::from(*b);
    }
    Ok((value, &bytes[len..]))
}

/// Framing indicator of an indeterminate-length response.
const INDETERMINATE_RESPONSE: u64 = 3;

/// The response's start: framing indicator, final status and one `content-type` field.
pub fn head(status: u16, content_type: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + content_type.len());
    encode_varint(INDETERMINATE_RESPONSE, &mut out);
    encode_varint(u64::from(status), &mut out);
    encode_varint(b"content-type".len() as u64, &mut out);
    out.extend_from_slice(b"content-type");
    encode_varint(content_type.len() as u64, &mut out);
    out.extend_from_slice(content_type.as_bytes());
    encode_varint(0, &mut out); // end of header fields
    out
}

/// One content chunk. Empty data gives nothing: a zero-length chunk would end the content.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(data.len() + 8);
    encode_varint(data.len() as u64, &mut out);
    out.extend_from_slice(data);
    out
}

/// The end: a zero-length chunk closes the content, then an empty trailer section.
pub const END: [u8; 2] = [0, 0];

/// Header or trailer fields: (name, value) pairs in order.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// A whole streamed response, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamedResponse {
    /// The final status.
    pub status: u16,
    /// Header fields, in order.
    pub fields: Fields,
    /// The content, its chunks joined.
    pub content: Vec<u8>,
}

fn length_prefixed(bytes: &[u8]) -> Result<(&[u8], &[u8])> {
    let (len, rest) = decode_varint(bytes)?;
    let len = usize::try_from(len).map_err(|_| Error::MalformedBhttp("length out of range"))?;
    if rest.len() < len {
        return Err(Error::MalformedBhttp("truncated field"));
    }
    Ok(rest.split_at(len))
}

/// A field section (ended by a zero-length name).
fn fields(mut bytes: &[u8]) -> Result<(Fields, &[u8])> {
    let mut out = Vec::new();
    loop {
        let (name, rest) = length_prefixed(bytes)?;
        if name.is_empty() {
            return Ok((out, rest));
        }
        let (value, rest) = length_prefixed(rest)?;
        out.push((name.to_vec(), value.to_vec()));
        bytes = rest;
    }
}

/// Parses a whole indeterminate-length response strictly: one final status (no informational
/// ones), the fields, the chunks, an empty trailer and nothing after it.
pub fn parse(bytes: &[u8]) -> Result<StreamedResponse> {
    let (framing, rest) = decode_varint(bytes)?;
    if framing != INDETERMINATE_RESPONSE {
        return Err(Error::MalformedBhttp(
            "not an indeterminate-length response",
        ));
    }
    let (status, rest) = decode_varint(rest)?;
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (200..600).contains(s))
        .ok_or(Error::MalformedBhttp("not a final status"))?;
    let (fields, mut rest) = fields(rest)?;
    let mut content = Vec::new();
    loop {
        let (data, after) = length_prefixed(rest)?;
        rest = after;
        if data.is_empty() {
            break;
        }
        content.extend_from_slice(data);
    }
    let (trailer, rest) = self::fields(rest)?;
    if !trailer.is_empty() || !rest.is_empty() {
        return Err(Error::MalformedBhttp(
            "trailer fields or bytes after the end",
        ));
    }
    Ok(StreamedResponse {
        status,
        fields,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varints_match_rfc_9000_appendix_a() {
        for (hex, value) in [
            ("25", 37u64),
            ("7bbd", 15_293),
            ("9d7f3e7d", 494_878_333),
            ("c2197c5eff14e88c", 151_288_809_941_952_652),
        ] {
            let bytes = hex::decode(hex).unwrap();
            let mut out = Vec::new();
            encode_varint(value, &mut out);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(decode_varint(&bytes).unwrap(), (value, &[][..]));
        }
        // The two-byte form of 37 (RFC 9000 A.1) decodes too; truncations do not.
        assert_eq!(decode_varint(&[0x40, 0x25]).unwrap().0, 37);
        assert!(decode_varint(&[0x7b]).is_err());
        assert!(decode_varint(&[]).is_err());
    }

    fn stream(status: u16, content_type: &str, pieces: &[Vec<u8>]) -> Vec<u8> {
        let mut out = head(status, content_type);
        for piece in pieces {
            out.extend(chunk(piece));
        }
        out.extend_from_slice(&END);
        out
    }

    proptest! {
        /// However the content is split, the bytes read back (here, and by the bhttp crate the
        /// SDK uses) as one response with that content.
        #[test]
        fn any_split_reads_back(
            status in 200u16..600,
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        ) {
            let bytes = stream(status, "application/x-test", &pieces);
            let joined: Vec<u8> = pieces.concat();
            let parsed = parse(&bytes).unwrap();
            prop_assert_eq!(parsed.status, status);
            prop_assert_eq!(&parsed.fields, &vec![(b"content-type".to_vec(), b"application/x-test".to_vec())]);
            prop_assert_eq!(&parsed.content, &joined);

            let message = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&bytes[..])).unwrap();
            prop_assert_eq!(message.control().status().map(u16::from), Some(status));
            prop_assert_eq!(message.header().get(b"content-type"), Some(&b"application/x-test"[..]));
            prop_assert_eq!(message.content(), &joined[..]);
        }

        /// No truncation of a response parses, and no input panics.
        #[test]
        fn truncations_are_refused(cut in 0usize..40, junk in proptest::collection::vec(any::<u8>(), 0..64)) {
            let bytes = stream(200, "text/plain", &[b"hello".to_vec(), b"world".to_vec()]);
            prop_assert!(parse(&bytes[..cut.min(bytes.len() - 1)]).is_err());
            let _ = parse(&junk);
        }
    }
}
