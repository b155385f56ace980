//! The streamed inner answer: an indeterminate-length Binary HTTP response (RFC 9292 §3.2) that
//! the gateway writes piece by piece into a chunked OHTTP answer as the node's sealed chunks
//! arrive — a [`head`], any number of [`chunk`]s, then [`END`]. Clients read it with any RFC 9292
//! reader: the [`Reader`] here (fed bytes as they arrive, as the WebAssembly build does) or the
//! `bhttp` crate's streaming reader (the Rust SDK); [`parse`] reads a whole one.

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

/// Largest header section the reader buffers (a peer cannot make it hold more).
pub const MAX_HEAD: usize = 64 * 1024;

/// What the reader took from the front of its buffer.
enum Taken<T> {
    /// The value and how many bytes it used.
    Whole(T, usize),
    /// The buffer ends inside it.
    Partial,
}

/// A varint at `at`, or `Partial` when the buffer ends first.
fn varint_at(bytes: &[u8], at: usize) -> Taken<u64> {
    let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) else {
        return Taken::Partial;
    };
    let len = 1usize << (rest[0] >> 6);
    match decode_varint(rest) {
        Ok((v, _)) => Taken::Whole(v, at + len),
        Err(_) => Taken::Partial,
    }
}

/// A field section at `at` (ended by a zero-length name): the fields and where it ends.
fn fields_at(bytes: &[u8], mut at: usize) -> Result<Taken<Fields>> {
    let mut out = Vec::new();
    let item = |at: usize| -> Result<Taken<&[u8]>> {
        let Taken::Whole(len, start) = varint_at(bytes, at) else {
            return Ok(Taken::Partial);
        };
        let len = usize::try_from(len).map_err(|_| Error::MalformedBhttp("length out of range"))?;
        if len > MAX_HEAD {
            return Err(Error::MalformedBhttp(
                "a field longer than the header limit",
            ));
        }
        Ok(match bytes.get(start..start + len) {
            Some(value) => Taken::Whole(value, start + len),
            None => Taken::Partial,
        })
    };
    loop {
        let Taken::Whole(name, after) = item(at)? else {
            return Ok(Taken::Partial);
        };
        if name.is_empty() {
            return Ok(Taken::Whole(out, after));
        }
        let Taken::Whole(value, after) = item(after)? else {
            return Ok(Taken::Partial);
        };
        out.push((name.to_vec(), value.to_vec()));
        at = after;
    }
}

/// One part of a streamed response, in order: the head once, content pieces, then the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// The final status and the header fields.
    Head {
        /// The status.
        status: u16,
        /// Header fields, in order.
        fields: Fields,
    },
    /// Content bytes as they arrived (chunk boundaries are not kept: content is a byte stream).
    Content(Vec<u8>),
    /// The last chunk and an empty trailer: the response is complete.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Head,
    ChunkLength,
    InChunk(u64),
    Trailer,
    Done,
}

/// The strict reader of an indeterminate-length response, fed bytes as they arrive, without
/// I/O: one final status (no informational ones), the fields (at most [`MAX_HEAD`] bytes), the
/// content as it comes, an empty trailer and nothing after it.
#[derive(Debug)]
pub struct Reader {
    buf: Vec<u8>,
    state: State,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            buf: Vec::new(),
            state: State::Head,
        }
    }
}

impl Reader {
    /// Bytes as they came.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next part; `None` when more bytes are needed. An error is final.
    pub fn next_part(&mut self) -> Result<Option<Part>> {
        loop {
            match self.state {
                State::Head => {
                    let Taken::Whole(framing, at) = varint_at(&self.buf, 0) else {
                        return Ok(None);
                    };
                    if framing != INDETERMINATE_RESPONSE {
                        return Err(Error::MalformedBhttp(
                            "not an indeterminate-length response",
                        ));
                    }
                    let head = match varint_at(&self.buf, at) {
                        Taken::Whole(status, at) => fields_at(&self.buf, at)?.and(status),
                        Taken::Partial => None,
                    };
                    let Some((status, fields, used)) = head else {
                        if self.buf.len() > MAX_HEAD {
                            return Err(Error::MalformedBhttp("a header over the limit"));
                        }
                        return Ok(None);
                    };
                    let status = u16::try_from(status)
                        .ok()
                        .filter(|s| (200..600).contains(s))
                        .ok_or(Error::MalformedBhttp("not a final status"))?;
                    self.buf.drain(..used);
                    self.state = State::ChunkLength;
                    return Ok(Some(Part::Head { status, fields }));
                }
                State::ChunkLength => {
                    let Taken::Whole(len, used) = varint_at(&self.buf, 0) else {
                        return Ok(None);
                    };
                    self.buf.drain(..used);
                    self.state = if len == 0 {
                        State::Trailer
                    } else {
                        State::InChunk(len)
                    };
                }
                State::InChunk(left) => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.buf.len());
                    let piece: Vec<u8> = self.buf.drain(..n).collect();
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::ChunkLength
                    } else {
                        State::InChunk(left)
                    };
                    return Ok(Some(Part::Content(piece)));
                }
                State::Trailer => {
                    let Some(&first) = self.buf.first() else {
                        return Ok(None);
                    };
                    if first != 0 {
                        return Err(Error::MalformedBhttp("trailer fields after the content"));
                    }
                    self.buf.drain(..1);
                    self.state = State::Done;
                    return Ok(Some(Part::End));
                }
                State::Done => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    return Err(Error::MalformedBhttp("bytes after the end"));
                }
            }
        }
    }

    /// Whether the response was read to its end.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done && self.buf.is_empty()
    }
}

impl Taken<Fields> {
    /// The fields with the status read before them, and the bytes used by both.
    fn and(self, status: u64) -> Option<(u64, Fields, usize)> {
        match self {
            Taken::Whole(fields, used) => Some((status, fields, used)),
            Taken::Partial => None,
        }
    }
}

/// Parses a whole indeterminate-length response strictly (the [`Reader`] over all of it).
pub fn parse(bytes: &[u8]) -> Result<StreamedResponse> {
    let mut reader = Reader::default();
    reader.push(bytes);
    let mut head = None;
    let mut content = Vec::new();
    while let Some(part) = reader.next_part()? {
        match part {
            Part::Head { status, fields } => head = Some((status, fields)),
            Part::Content(piece) => content.extend_from_slice(&piece),
            Part::End => {}
        }
    }
    match head {
        Some((status, fields)) if reader.is_complete() => Ok(StreamedResponse {
            status,
            fields,
            content,
        }),
        _ => Err(Error::MalformedBhttp("truncated response")),
    }
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

    #[test]
    fn the_reader_refuses_oversized_heads_and_bytes_after_the_end() {
        let mut reader = Reader::default();
        let mut huge = Vec::new();
        encode_varint(INDETERMINATE_RESPONSE, &mut huge);
        encode_varint(200, &mut huge);
        encode_varint(4, &mut huge);
        huge.extend_from_slice(b"name");
        encode_varint(1 << 20, &mut huge);
        reader.push(&huge);
        assert!(
            reader.next_part().is_err(),
            "a field value over the header limit"
        );
        let mut reader = Reader::default();
        let mut bytes = stream(200, "a/b", &[b"x".to_vec()]);
        bytes.push(7);
        reader.push(&bytes);
        let mut result = Ok(None);
        for _ in 0..5 {
            result = reader.next_part();
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err(), "a byte after the end");
        assert!(
            parse(&stream(100, "a/b", &[])).is_err(),
            "an informational status"
        );
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

        /// Fed in pieces of any size, the reader yields the head, the same content and the end.
        #[test]
        fn the_reader_takes_any_piece_sizes(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6),
            step in 1usize..50,
        ) {
            let bytes = stream(201, "text/event-stream", &pieces);
            let mut reader = Reader::default();
            let mut parts = Vec::new();
            for piece in bytes.chunks(step) {
                reader.push(piece);
                while let Some(part) = reader.next_part().unwrap() {
                    parts.push(part);
                }
            }
            prop_assert!(reader.is_complete());
            prop_assert_eq!(&parts[0], &Part::Head { status: 201, fields: vec![(b"content-type".to_vec(), b"text/event-stream".to_vec())] });
            prop_assert_eq!(parts.last(), Some(&Part::End));
            let content: Vec<u8> = parts[1..parts.len() - 1].iter().flat_map(|p| match p {
                Part::Content(c) => c.clone(),
                other => panic!("{other:?} inside the content"),
            }).collect();
            prop_assert_eq!(content, pieces.concat());
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
