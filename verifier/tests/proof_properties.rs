//! Property tests: proofs and roots against a naive recursive RFC 9162 reference, an independent
//! Merkle implementation (`rs_merkle`), and tampering.

use arcane_verifier::merkle::{CompactRange, Hash, leaf_hash, node_hash, root_from_leaf_hashes};
use arcane_verifier::proof::{
    consistency_proof, inclusion_proof, verify_consistency, verify_inclusion,
};
use arcane_verifier::tiles::{
    TileTree, range_hash_from_tile_trees, range_hash_from_tiles, tiles_for_ranges,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const MAX: u64 = 3000;

fn all_leaves() -> &'static [Hash] {
    static LEAVES: OnceLock<Vec<Hash>> = OnceLock::new();
    LEAVES.get_or_init(|| {
        (0..MAX)
            .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
            .collect()
    })
}

/// RFC 9162 §2.1.1 MTH, written as the RFC does: recursively.
fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => Hash(Sha256::digest([]).into()),
        1 => d[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

fn largest_pow2_below(n: usize) -> usize {
    1usize << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// RFC 9162 §2.1.3.1 PATH.
fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() <= 1 {
        return vec![];
    }
    let k = largest_pow2_below(d.len());
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF.
fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = largest_pow2_below(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn from_leaves(s: u64, e: u64) -> Result<Hash, ()> {
    Ok(root_from_leaf_hashes(&all_leaves()[s as usize..e as usize]))
}

#[derive(Clone)]
struct Rfc6962;
impl rs_merkle::Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(right) => node_hash(&Hash(*left), &Hash(*right)).0,
            None => *left,
        }
    }
}

#[test]
fn roots_of_every_size_match_reference_and_rs_merkle() {
    let leaves = all_leaves();
    let mut range = CompactRange::new();
    for size in 0..=MAX as usize {
        let root = range.root();
        assert_eq!(root, mth(&leaves[..size]), "size {size}");
        if size > 0 && (size % 97 == 0 || size.is_power_of_two() || size < 40) {
            let raw: Vec<[u8; 32]> = leaves[..size].iter().map(|h| h.0).collect();
            let tree = rs_merkle::MerkleTree::<Rfc6962>::from_leaves(&raw);
            assert_eq!(
                tree.root(),
                Some(root.0),
                "rs_merkle disagrees at size {size}"
            );
        }
        if size < MAX as usize {
            range.append(leaves[size]);
        }
    }
}

/// Stored tiles for a tree of `size` leaves, built the way the log server builds them.
fn tiles(size: u64) -> std::collections::HashMap<(u8, u64), Vec<Hash>> {
    let mut out: std::collections::HashMap<(u8, u64), Vec<Hash>> = Default::default();
    let mut range = CompactRange::new();
    for leaf in &all_leaves()[..size as usize] {
        range.append_with(*leaf, |level, index, hash| {
            if level % 8 == 0 {
                out.entry((level / 8, index / 256)).or_default().push(*hash);
            }
        });
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn inclusion_matches_reference(size in 1..=MAX, index_seed in any::<u64>()) {
        let index = index_seed % size;
        let leaves = &all_leaves()[..size as usize];
        let root = mth(leaves);
        let proof = inclusion_proof(index, size, from_leaves).unwrap();
        prop_assert_eq!(&proof, &path(index as usize, leaves));
        verify_inclusion(index, size, &leaves[index as usize], &proof, &root).unwrap();
        // A wrong index or a wrong leaf fails. (A wrong size may not: sizes whose paths have the same
        // shape share proofs, which is why the size comes from a signed checkpoint.)
        if size > 1 {
            let other = (index + 1) % size;
            prop_assert!(verify_inclusion(other, size, &leaves[index as usize], &proof, &root).is_err());
        }
        prop_assert!(verify_inclusion(index, size, &leaf_hash(b"other"), &proof, &root).is_err());
    }

    #[test]
    fn tampered_inclusion_proofs_fail(size in 2..=MAX, index_seed in any::<u64>(), which in any::<usize>(), bit in 0..256usize) {
        let index = index_seed % size;
        let leaves = &all_leaves()[..size as usize];
        let root = mth(leaves);
        let mut proof = inclusion_proof(index, size, from_leaves).unwrap();
        let i = which % proof.len();
        proof[i].0[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &proof, &root).is_err());
        let mut bad_root = root;
        bad_root.0[bit / 8] ^= 1 << (bit % 8);
        let good = inclusion_proof(index, size, from_leaves).unwrap();
        prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &good, &bad_root).is_err());
        let mut short = good.clone();
        short.pop();
        prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &short, &root).is_err());
        let mut long = good;
        long.push(root);
        prop_assert!(verify_inclusion(index, size, &leaves[index as usize], &long, &root).is_err());
    }

    #[test]
    fn consistency_matches_reference(a in 1..=MAX, b in 1..=MAX, which in any::<usize>(), bit in 0..256usize) {
        let (old, new) = (a.min(b), a.max(b));
        let leaves = all_leaves();
        let (old_root, new_root) = (mth(&leaves[..old as usize]), mth(&leaves[..new as usize]));
        let proof = consistency_proof(old, new, from_leaves).unwrap();
        let reference = if old == new { vec![] } else { subproof(old as usize, &leaves[..new as usize], true) };
        prop_assert_eq!(&proof, &reference);
        verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let i = which % bad.len();
            bad[i].0[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &bad).is_err());
        }
        let mut bad_old = old_root;
        bad_old.0[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_consistency(old, new, &bad_old, &new_root, &proof).is_err());
        let mut bad_new = new_root;
        bad_new.0[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_consistency(old, new, &old_root, &bad_new, &proof).is_err());
    }

    #[test]
    fn subtree_hashes_from_tiles_match(size in 1..=MAX, a in any::<u64>(), b in any::<u64>()) {
        let stored = tiles(size);
        // Ranges a proof asks for: any inclusion proof's ranges.
        let index = a % size;
        let mut ranges = Vec::new();
        let _ = inclusion_proof(index, size, |s, e| { ranges.push((s, e)); Ok::<_, ()>(Hash([0; 32])) });
        let old = 1 + b % size;
        let _ = consistency_proof(old, size, |s, e| { ranges.push((s, e)); Ok::<_, ()>(Hash([0; 32])) });
        ranges.push((0, size));
        let needed = tiles_for_ranges(ranges.iter().copied());
        let trees: std::collections::HashMap<(u8, u64), TileTree> =
            stored.iter().map(|(k, v)| (*k, TileTree::new(v.clone()))).collect();
        for (s, e) in ranges {
            let lookup = |l: u8, i: u64| needed.contains(&(l, i)).then(|| stored.get(&(l, i)).map(Vec::as_slice)).flatten();
            let want = mth(&all_leaves()[s as usize..e as usize]);
            prop_assert_eq!(range_hash_from_tiles(s, e, &lookup).unwrap(), want);
            let tree_lookup = |l: u8, i: u64| needed.contains(&(l, i)).then(|| trees.get(&(l, i))).flatten();
            prop_assert_eq!(range_hash_from_tile_trees(s, e, &tree_lookup).unwrap(), want);
        }
    }
}
