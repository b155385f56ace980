//! Inclusion and consistency proofs (RFC 9162 §2.1.3 and §2.1.4): verification, and generation
//! over any source of subtree hashes.

use crate::merkle::{Hash, node_hash, split_point};
use crate::{Error, Result};

/// Checks that `leaf` is the leaf at `index` in the tree of `size` leaves whose root is `root`.
///
/// Follows RFC 9162 §2.1.3.2. Fails on `index >= size`, on a proof of the wrong length and on a
/// root mismatch.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<()> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(Error::WrongProofLength {
            got: proof.len(),
            expected,
        });
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(Error::WrongProofLength {
                got: proof.len(),
                expected,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(Error::WrongProofLength {
            got: proof.len(),
            expected,
        });
    }
    if r != *root {
        return Err(Error::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of `old_size`
/// leaves with root `old_root`.
///
/// Follows RFC 9162 §2.1.4.2. `old_size` must be at least 1: every tree extends the empty tree, so a
/// proof from size 0 proves nothing and is refused (callers handle that case without a proof).
/// Equal sizes need an empty proof and equal roots.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<()> {
    if old_size == 0 || old_size > new_size {
        return Err(Error::InvalidSizes {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(Error::WrongProofLength {
                got: proof.len(),
                expected: 0,
            });
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(Error::RootMismatch)
        };
    }
    let expected = consistency_proof_len(old_size, new_size);
    if proof.len() != expected {
        return Err(Error::WrongProofLength {
            got: proof.len(),
            expected,
        });
    }
    // When the old tree is a perfect subtree of the new one, its root is the proof's implicit
    // first element.
    let (first, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = first;
    let mut sr = first;
    for c in rest {
        if sn == 0 {
            return Err(Error::WrongProofLength {
                got: proof.len(),
                expected,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(Error::WrongProofLength {
            got: proof.len(),
            expected,
        });
    }
    if fr != *old_root {
        return Err(Error::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(Error::RootMismatch);
    }
    Ok(())
}

/// Number of hashes in the inclusion proof of `index` in a tree of `size` (requires index < size).
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let mut len = 0;
    let (mut start, mut end, m) = (0u64, size, index);
    while end - start > 1 {
        let k = split_point(end - start);
        if m - start < k {
            end = start + k;
        } else {
            start += k;
        }
        len += 1;
    }
    len
}

/// Number of hashes in the consistency proof from `old_size` to `new_size` (0 < old < new).
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let (mut m, mut n, mut complete) = (old_size, new_size, true);
    let mut len = 0;
    while m != n {
        let k = split_point(n);
        if m <= k {
            n = k;
        } else {
            m -= k;
            n -= k;
            complete = false;
        }
        len += 1;
    }
    len + usize::from(!complete)
}

/// Builds the inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1).
///
/// `subtree` returns the hash of the leaves `[start, end)`; it is only asked for ranges that are
/// subtrees in RFC 9162's sense (a start aligned to the largest power of two not above the length).
pub fn inclusion_proof<E>(
    index: u64,
    size: u64,
    mut subtree: impl FnMut(u64, u64) -> std::result::Result<Hash, E>,
) -> std::result::Result<Vec<Hash>, ProofError<E>> {
    if index >= size {
        return Err(ProofError::Invalid(Error::IndexOutOfRange { index, size }));
    }
    let mut proof = Vec::new();
    let (mut start, mut end) = (0u64, size);
    while end - start > 1 {
        let k = split_point(end - start);
        if index - start < k {
            proof.push(subtree(start + k, end).map_err(ProofError::Source)?);
            end = start + k;
        } else {
            proof.push(subtree(start, start + k).map_err(ProofError::Source)?);
            start += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Builds the consistency proof between trees of `old_size` and `new_size` leaves
/// (RFC 9162 §2.1.4.1). Requires `0 < old_size <= new_size`; equal sizes give an empty proof.
pub fn consistency_proof<E>(
    old_size: u64,
    new_size: u64,
    mut subtree: impl FnMut(u64, u64) -> std::result::Result<Hash, E>,
) -> std::result::Result<Vec<Hash>, ProofError<E>> {
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::Invalid(Error::InvalidSizes {
            old: old_size,
            new: new_size,
        }));
    }
    let mut proof = Vec::new();
    let (mut offset, mut m, mut n, mut complete) = (0u64, old_size, new_size, true);
    while m != n {
        let k = split_point(n);
        if m <= k {
            proof.push(subtree(offset + k, offset + n).map_err(ProofError::Source)?);
            n = k;
        } else {
            proof.push(subtree(offset, offset + k).map_err(ProofError::Source)?);
            offset += k;
            m -= k;
            n -= k;
            complete = false;
        }
    }
    if !complete && old_size != new_size {
        proof.push(subtree(offset, offset + m).map_err(ProofError::Source)?);
    }
    proof.reverse();
    Ok(proof)
}

/// Why a proof could not be built: the request was invalid, or the hash source failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ProofError<E> {
    /// The sizes or index were invalid.
    Invalid(Error),
    /// The subtree hash source returned an error.
    Source(E),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, root_from_leaf_hashes};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn from_slice(hashes: &[Hash]) -> impl FnMut(u64, u64) -> std::result::Result<Hash, ()> + '_ {
        |s, e| Ok(root_from_leaf_hashes(&hashes[s as usize..e as usize]))
    }

    #[test]
    fn generated_proofs_verify_for_small_trees() {
        let all = leaves(33);
        for size in 1..=33u64 {
            let root = root_from_leaf_hashes(&all[..size as usize]);
            for index in 0..size {
                let proof = inclusion_proof(index, size, from_slice(&all)).unwrap();
                assert_eq!(proof.len(), inclusion_proof_len(index, size));
                verify_inclusion(index, size, &all[index as usize], &proof, &root).unwrap();
            }
            for old in 1..=size {
                let old_root = root_from_leaf_hashes(&all[..old as usize]);
                let proof = consistency_proof(old, size, from_slice(&all)).unwrap();
                if old < size {
                    assert_eq!(proof.len(), consistency_proof_len(old, size));
                }
                verify_consistency(old, size, &old_root, &root, &proof).unwrap();
            }
        }
    }
}
