//! Trillian's `LogRootV1`, the TLS-encoded (RFC 8446 §3 presentation language) body of a
//! `SignedLogRoot`:
//!
//! ```text
//! uint16 version = 1
//! uint64 tree_size
//! opaque root_hash<0..128>       (one length byte)
//! uint64 timestamp_nanos
//! uint64 revision
//! opaque metadata<0..65535>      (two length bytes)
//! ```
//!
//! All integers big-endian. arcane-log does not check Trillian's signature (Trillian no longer
//! signs roots); it checks every root against the leaves and proofs instead and signs its own
//! C2SP checkpoint.

use arcane_verifier::Hash;

use crate::error::{LogError, Result};

/// A decoded `LogRootV1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRootV1 {
    /// Leaves in the tree.
    pub tree_size: u64,
    /// RFC 6962 root hash (32 bytes for SHA-256 trees).
    pub root_hash: Vec<u8>,
    /// When Trillian produced the root.
    pub timestamp_nanos: u64,
    /// Trillian's storage revision.
    pub revision: u64,
    /// Opaque metadata.
    pub metadata: Vec<u8>,
}

fn malformed(why: &str) -> LogError {
    LogError::Trillian(format!("malformed LogRootV1: {why}"))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        if self.0.len() < n {
            return Err(malformed(&format!("truncated {what}")));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
}

impl LogRootV1 {
    /// Decodes strictly: version 1, lengths within their bounds, nothing left over.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader(bytes);
        let version = u16::from_be_bytes(r.take(2, "version")?.try_into().expect("2"));
        if version != 1 {
            return Err(malformed(&format!("version {version}, only 1 is known")));
        }
        let tree_size = r.u64("tree_size")?;
        let hash_len = r.take(1, "root_hash length")?[0] as usize;
        if hash_len > 128 {
            return Err(malformed("root_hash longer than 128 bytes"));
        }
        let root_hash = r.take(hash_len, "root_hash")?.to_vec();
        let timestamp_nanos = r.u64("timestamp_nanos")?;
        let revision = r.u64("revision")?;
        let meta_len = u16::from_be_bytes(r.take(2, "metadata length")?.try_into().expect("2"));
        let metadata = r.take(meta_len as usize, "metadata")?.to_vec();
        if !r.0.is_empty() {
            return Err(malformed("trailing bytes"));
        }
        Ok(LogRootV1 {
            tree_size,
            root_hash,
            timestamp_nanos,
            revision,
            metadata,
        })
    }

    /// Encodes (the test Trillian server in this crate's tests produces roots with it).
    pub fn encode(&self) -> Result<Vec<u8>> {
        if self.root_hash.len() > 128 || self.metadata.len() > usize::from(u16::MAX) {
            return Err(malformed("field too long to encode"));
        }
        let mut out = Vec::with_capacity(2 + 8 + 1 + self.root_hash.len() + 16 + 2);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&self.tree_size.to_be_bytes());
        out.push(self.root_hash.len() as u8);
        out.extend_from_slice(&self.root_hash);
        out.extend_from_slice(&self.timestamp_nanos.to_be_bytes());
        out.extend_from_slice(&self.revision.to_be_bytes());
        out.extend_from_slice(&(self.metadata.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.metadata);
        Ok(out)
    }

    /// The root as a SHA-256 tree hash; an error when it is not 32 bytes.
    pub fn root(&self) -> Result<Hash> {
        Hash::from_slice(&self.root_hash)
            .map_err(|_| malformed("root_hash is not 32 bytes (not an RFC 6962 SHA-256 tree)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Laid out by hand from the structure above: version 1, size 3, a 32-byte hash of 0xab,
    /// timestamp 0x0102030405060708, revision 9, metadata "md".
    const GOLDEN: &str = concat!(
        "0001",
        "0000000000000003",
        "20",
        "abababababababababababababababababababababababababababababababab",
        "0102030405060708",
        "0000000000000009",
        "0002",
        "6d64"
    );

    #[test]
    fn decodes_the_hand_laid_encoding_and_round_trips() {
        let bytes = hex::decode(GOLDEN).unwrap();
        let root = LogRootV1::decode(&bytes).unwrap();
        assert_eq!(root.tree_size, 3);
        assert_eq!(root.root().unwrap().0, [0xab; 32]);
        assert_eq!(root.timestamp_nanos, 0x0102030405060708);
        assert_eq!(root.revision, 9);
        assert_eq!(root.metadata, b"md");
        assert_eq!(root.encode().unwrap(), bytes);
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let bytes = hex::decode(GOLDEN).unwrap();
        for n in 0..bytes.len() {
            assert!(LogRootV1::decode(&bytes[..n]).is_err(), "{n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(LogRootV1::decode(&longer).is_err());
        let mut v2 = bytes.clone();
        v2[1] = 2;
        assert!(
            LogRootV1::decode(&v2)
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
        let mut long_hash = bytes;
        long_hash[10] = 129;
        assert!(LogRootV1::decode(&long_hash).is_err());
        let short = LogRootV1 {
            root_hash: vec![1; 20],
            ..LogRootV1::decode(&hex::decode(GOLDEN).unwrap()).unwrap()
        };
        assert!(short.root().is_err());
    }
}
