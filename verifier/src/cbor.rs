//! A small, strict CBOR (RFC 8949) reader for the structures this crate reads (EIF signature
//! sections, Nitro attestation payloads): integers, byte and text strings, arrays and maps of
//! definite or indefinite length, and the simple values false, true and null. Anything else
//! (tags, floats, undefined) is refused.

use crate::{Error, Result};

const MAX_DEPTH: usize = 16;

/// A decoded CBOR value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Major type 0.
    Unsigned(u64),
    /// Major type 1: -1 - n.
    Negative(u64),
    /// Major type 2.
    Bytes(Vec<u8>),
    /// Major type 3.
    Text(String),
    /// Major type 4.
    Array(Vec<Value>),
    /// Major type 5, in encoded order.
    Map(Vec<(Value, Value)>),
    /// Simple values: false, true, null.
    Simple(u8),
}

impl Value {
    /// The value under a text key of a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Bytes, from a byte string or from an array of integers 0..=255 (how serde encodes `Vec<u8>`
    /// without `serde_bytes`).
    pub fn as_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Value::Bytes(b) => Some(b.clone()),
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::Unsigned(n) => u8::try_from(*n).ok(),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
}

/// Encodes a value in the shortest form (maps with definite length, in the given order).
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, value);
    out
}

/// Encodes a map with indefinite length (`0xbf` … `0xff`), as the NSM has written attestation
/// payloads since 2025.
pub fn encode_indefinite_map(entries: &[(Value, Value)]) -> Vec<u8> {
    let mut out = vec![0xbf];
    for (key, value) in entries {
        write(&mut out, key);
        write(&mut out, value);
    }
    out.push(0xff);
    out
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let major = major << 5;
    match n {
        0..=23 => out.push(major | n as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, n as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Unsigned(n) => head(out, 0, *n),
        Value::Negative(n) => head(out, 1, *n),
        Value::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            head(out, 3, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            items.iter().for_each(|v| write(out, v));
        }
        Value::Map(entries) => {
            head(out, 5, entries.len() as u64);
            for (k, v) in entries {
                write(out, k);
                write(out, v);
            }
        }
        Value::Simple(n) => out.push(0xe0 | n),
    }
}

fn malformed(why: &'static str) -> Error {
    Error::MalformedCbor(why)
}

/// Decodes exactly one value; trailing bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<Value> {
    let mut rest = bytes;
    let value = read(&mut rest, 0)?;
    if !rest.is_empty() {
        return Err(malformed("trailing bytes"));
    }
    Ok(value)
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if input.len() < n {
        return Err(malformed("truncated"));
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

/// Reads the argument of an initial byte; `None` for indefinite length.
fn argument(input: &mut &[u8], info: u8) -> Result<Option<u64>> {
    Ok(Some(match info {
        0..=23 => u64::from(info),
        24 => u64::from(take(input, 1)?[0]),
        25 => u64::from(u16::from_be_bytes(take(input, 2)?.try_into().expect("2"))),
        26 => u64::from(u32::from_be_bytes(take(input, 4)?.try_into().expect("4"))),
        27 => u64::from_be_bytes(take(input, 8)?.try_into().expect("8")),
        31 => return Ok(None),
        _ => return Err(malformed("reserved additional information")),
    }))
}

fn length(n: u64, input: &[u8]) -> Result<usize> {
    // Every element takes at least one byte: a length beyond the input is a lie.
    let n = usize::try_from(n).map_err(|_| malformed("length out of range"))?;
    if n > input.len() {
        return Err(malformed("length beyond the input"));
    }
    Ok(n)
}

fn read(input: &mut &[u8], depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(malformed("nested too deeply"));
    }
    let initial = take(input, 1)?[0];
    let (major, info) = (initial >> 5, initial & 0x1f);
    let arg = argument(input, info)?;
    match (major, arg) {
        (0, Some(n)) => Ok(Value::Unsigned(n)),
        (1, Some(n)) => Ok(Value::Negative(n)),
        (2 | 3, Some(n)) => {
            let n = length(n, input)?;
            let raw = take(input, n)?.to_vec();
            if major == 2 {
                Ok(Value::Bytes(raw))
            } else {
                String::from_utf8(raw)
                    .map(Value::Text)
                    .map_err(|_| malformed("text is not UTF-8"))
            }
        }
        (2 | 3, None) => {
            let mut raw = Vec::new();
            loop {
                if input.first() == Some(&0xff) {
                    *input = &input[1..];
                    break;
                }
                match read(input, depth + 1)? {
                    Value::Bytes(chunk) if major == 2 => raw.extend(chunk),
                    Value::Text(chunk) if major == 3 => raw.extend(chunk.into_bytes()),
                    _ => return Err(malformed("bad chunk in an indefinite string")),
                }
            }
            if major == 2 {
                Ok(Value::Bytes(raw))
            } else {
                String::from_utf8(raw)
                    .map(Value::Text)
                    .map_err(|_| malformed("text is not UTF-8"))
            }
        }
        (4, count) => {
            let mut items = Vec::new();
            match count {
                Some(n) => {
                    for _ in 0..length(n, input)? {
                        items.push(read(input, depth + 1)?);
                    }
                }
                None => loop {
                    if input.first() == Some(&0xff) {
                        *input = &input[1..];
                        break;
                    }
                    items.push(read(input, depth + 1)?);
                },
            }
            Ok(Value::Array(items))
        }
        (5, count) => {
            let mut entries = Vec::new();
            match count {
                Some(n) => {
                    for _ in 0..length(n, input)? {
                        let key = read(input, depth + 1)?;
                        entries.push((key, read(input, depth + 1)?));
                    }
                }
                None => loop {
                    if input.first() == Some(&0xff) {
                        *input = &input[1..];
                        break;
                    }
                    let key = read(input, depth + 1)?;
                    entries.push((key, read(input, depth + 1)?));
                },
            }
            Ok(Value::Map(entries))
        }
        (7, Some(n @ 20..=22)) if info < 24 => Ok(Value::Simple(n as u8)),
        _ => Err(malformed("unsupported item")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_serde_style_byte_arrays_and_maps() {
        // {"a": [1, 2], "b": h'0304', "c": null}
        let bytes = [
            0xa3, 0x61, b'a', 0x82, 1, 2, 0x61, b'b', 0x42, 3, 4, 0x61, b'c', 0xf6,
        ];
        let v = decode(&bytes).unwrap();
        assert_eq!(v.get("a").unwrap().as_bytes().unwrap(), vec![1, 2]);
        assert_eq!(v.get("b").unwrap().as_bytes().unwrap(), vec![3, 4]);
        assert_eq!(v.get("c"), Some(&Value::Simple(22)));
        // Indefinite map and string.
        let bytes = [0xbf, 0x61, b'k', 0x5f, 0x41, 9, 0x41, 8, 0xff, 0xff];
        assert_eq!(
            decode(&bytes)
                .unwrap()
                .get("k")
                .unwrap()
                .as_bytes()
                .unwrap(),
            vec![9, 8]
        );
    }

    #[test]
    fn encoding_round_trips() {
        let value = Value::Map(vec![
            (Value::Text("a".into()), Value::Unsigned(300)),
            (Value::Text("b".into()), Value::Bytes(vec![7; 30])),
            (
                Value::Text("c".into()),
                Value::Array(vec![Value::Simple(22), Value::Negative(4)]),
            ),
            (Value::Text("d".into()), Value::Unsigned(1 << 40)),
        ]);
        assert_eq!(decode(&encode(&value)).unwrap(), value);
        let entries = vec![(Value::Text("k".into()), Value::Unsigned(1))];
        let indefinite = encode_indefinite_map(&entries);
        assert_eq!(indefinite[0], 0xbf);
        assert_eq!(decode(&indefinite).unwrap(), Value::Map(entries));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            &[][..],
            &[0x18],
            &[0x9a, 0xff, 0xff, 0xff, 0xff],
            &[0x01, 0x02],
            &[0xfb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x1c],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let mut deep = vec![0x81; 40];
        deep.push(0);
        assert!(decode(&deep).is_err());
    }
}
