//! RFC 6962 / RFC 9162 proof vectors (transparency-dev/merkle testdata), every file, including
//! every must-fail case.

mod common;

use arcane_verifier::merkle::{Hash, leaf_hash, root_from_leaf_hashes};
use arcane_verifier::proof::{verify_consistency, verify_inclusion};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use std::path::{Path, PathBuf};

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn b64(s: &str) -> Vec<u8> {
    BASE64.decode(s).unwrap()
}

/// Parses a hash field; `None` when the vector's bytes are not a 32-byte hash, which our typed API
/// cannot even express (and so rejects before any proof check).
fn hash(s: &str) -> Option<Hash> {
    Hash::from_slice(&b64(s)).ok()
}

fn proof(items: &[String]) -> Option<Vec<Hash>> {
    items.iter().map(|s| hash(s)).collect()
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InclusionCase {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    proof: Vec<String>,
    want_err: bool,
}

#[derive(Deserialize)]
struct ConsistencyCase {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    proof: Vec<String>,
    #[serde(rename = "wantErr")]
    want_err: bool,
}

#[test]
fn inclusion_vectors() {
    let files = json_files(&common::vectors_dir().join("merkle/inclusion"));
    assert!(files.len() > 50, "expected the full inclusion vector set");
    let (mut ok, mut failing) = (0, 0);
    for file in files {
        let case: InclusionCase = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let result = match (hash(&case.root), hash(&case.leaf_hash), proof(&case.proof)) {
            (Some(root), Some(leaf), Some(proof)) => {
                verify_inclusion(case.leaf_idx, case.tree_size, &leaf, &proof, &root)
            }
            _ => Err(arcane_verifier::Error::BadHashLength(0)),
        };
        assert_eq!(
            result.is_err(),
            case.want_err,
            "{}: got {result:?}",
            file.display()
        );
        if case.want_err { failing += 1 } else { ok += 1 }
    }
    assert!(ok > 0 && failing > 0);
}

#[test]
fn consistency_vectors() {
    let files = json_files(&common::vectors_dir().join("merkle/consistency"));
    assert!(files.len() > 50, "expected the full consistency vector set");
    for file in files {
        let case: ConsistencyCase = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let typed = (hash(&case.root1), hash(&case.root2), proof(&case.proof));
        let result = match typed {
            (Some(r1), Some(r2), Some(proof)) => {
                verify_consistency(case.size1, case.size2, &r1, &r2, &proof)
            }
            _ => Err(arcane_verifier::Error::BadHashLength(0)),
        };
        if !case.want_err && result.is_err() {
            // One upstream happy case compares two equal 12-byte placeholder "roots" for equal
            // sizes. Our API only holds 32-byte hashes, so it refuses them at parse time; check
            // that this is the only reason, and that the same bytes as real hashes pass.
            assert_eq!(case.size1, case.size2, "{}", file.display());
            assert_eq!(b64(&case.root1), b64(&case.root2), "{}", file.display());
            assert!(hash(&case.root1).is_none(), "{}", file.display());
            let stand_in = leaf_hash(&b64(&case.root1));
            verify_consistency(case.size1, case.size2, &stand_in, &stand_in, &[]).unwrap();
            continue;
        }
        assert_eq!(
            result.is_err(),
            case.want_err,
            "{}: got {result:?}",
            file.display()
        );
    }
}

#[derive(Deserialize)]
struct LeavesAndRoots {
    leaf_inputs_hex: Vec<String>,
    root_hashes_hex_by_tree_size: Vec<String>,
}

#[test]
fn roots_of_reference_leaves() {
    let path = common::vectors_dir().join("merkle/leaves_and_roots.json");
    let data: LeavesAndRoots = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let leaves: Vec<Hash> = data
        .leaf_inputs_hex
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect();
    assert_eq!(data.root_hashes_hex_by_tree_size.len(), leaves.len() + 1);
    for (size, want) in data.root_hashes_hex_by_tree_size.iter().enumerate() {
        assert_eq!(
            root_from_leaf_hashes(&leaves[..size]).to_hex(),
            *want,
            "size {size}"
        );
    }
}
