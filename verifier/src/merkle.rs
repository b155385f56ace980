//! RFC 6962 / RFC 9162 Merkle tree hashing.
//!
//! Leaves are hashed as SHA-256(0x00 ‖ data), interior nodes as SHA-256(0x01 ‖ left ‖ right), and the
//! empty tree's root is SHA-256 of the empty string. The split rule for a range of `n > 1` leaves is
//! the largest power of two strictly below `n`.

use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 Merkle tree hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Parses a hash from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> crate::Result<Self> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| crate::Error::BadHashLength(bytes.len()))?;
        Ok(Hash(array))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hexadecimal form.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses the lower- or upper-case hexadecimal form (64 digits).
    pub fn from_hex(text: &str) -> crate::Result<Self> {
        if text.len() != 64 {
            return Err(crate::Error::BadHashLength(text.len() / 2));
        }
        // Hex digits only: `from_str_radix` alone would also take a sign ("+f").
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(crate::Error::BadHashLength(0));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| crate::Error::BadHashLength(0))?;
        }
        Ok(Hash(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// SHA-256(0x00 ‖ data): the hash of one log entry.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    Hash(hasher.finalize().into())
}

/// SHA-256(0x01 ‖ left ‖ right): the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The largest power of two strictly below `n` (`n` must be at least 2).
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The root hash of a tree whose leaf hashes are given, in order.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    let mut range = CompactRange::new();
    for leaf in leaves {
        range.append(*leaf);
    }
    range.root()
}

/// The hashes of the perfect subtrees that make up a tree of some size, left to right: the
/// "right edge" from which the root is computed and to which new leaves are appended.
///
/// Appending is amortised O(1) hash operations; computing the root is O(log n).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// One hash per set bit of `size`, largest subtree first.
    peaks: Vec<Hash>,
}

impl CompactRange {
    /// The range of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a range from its peaks (one per set bit of `size`, largest subtree first).
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> crate::Result<Self> {
        if peaks.len() != size.count_ones() as usize {
            return Err(crate::Error::WrongProofLength {
                got: peaks.len(),
                expected: size.count_ones() as usize,
            });
        }
        Ok(CompactRange { size, peaks })
    }

    /// Number of leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The peaks, largest subtree first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Appends a leaf hash. Calls `on_complete(level, index, hash)` for every perfect subtree
    /// completed by this leaf (level 0 is the leaf itself), so callers can store interior nodes.
    pub fn append_with(&mut self, leaf: Hash, mut on_complete: impl FnMut(u8, u64, &Hash)) {
        let mut hash = leaf;
        let mut level = 0u8;
        let mut index = self.size;
        on_complete(0, index, &hash);
        while (self.size >> level) & 1 == 1 {
            let left = self.peaks.pop().expect("one peak per set bit of size");
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            on_complete(level, index, &hash);
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// Appends a leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        self.append_with(leaf, |_, _, _| {});
    }

    /// The root hash of the tree covered so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, peak| node_hash(peak, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn hex_round_trip_and_rejects_bad_input() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
        assert!(Hash::from_hex("zz").is_err());
        assert!(Hash::from_hex(&"g".repeat(64)).is_err());
        assert!(Hash::from_hex(&"é".repeat(32)).is_err());
        // Either case is accepted; a sign is not a hex digit.
        assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()).unwrap(), h);
        assert!(Hash::from_hex(&format!("+f{}", &h.to_hex()[2..])).is_err());
    }
}
