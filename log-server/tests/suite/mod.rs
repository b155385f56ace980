//! The conformance suite every storage back end must pass, driven through the HTTP API.
#![allow(dead_code)]

pub mod typed;

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use arcane_verifier::Hash;
use arcane_verifier::merkle::{leaf_hash, root_from_leaf_hashes};
use arcane_verifier::proof::{verify_consistency, verify_inclusion};
use arcane_verifier::tiles::{
    TILE_WIDTH, TileCoord, TileKind, parse_entry_bundle, parse_hash_tile, tile_width,
};

use crate::common::{TestLog, entries};

fn hashes(value: &serde_json::Value) -> Vec<Hash> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::from_slice(&BASE64.decode(h.as_str().unwrap()).unwrap()).unwrap())
        .collect()
}

/// Appends in several batches, then checks checkpoints, proofs, tiles and bundles against an
/// independently computed tree.
pub async fn appends_proofs_and_tiles(log: &TestLog) {
    let start = log.checkpoint().await.checkpoint.size;
    assert_eq!(start, 0, "suite expects an empty log");
    let mut all: Vec<Vec<u8>> = Vec::new();
    let mut checkpoints = Vec::new();
    for (round, n) in [1usize, 2, 300, 1, 256, 40].into_iter().enumerate() {
        let batch = entries(&format!("round {round}"), n);
        let statuses = log.add_all(&batch).await;
        for (i, status) in statuses.iter().enumerate() {
            assert_eq!(
                status.index,
                Some((all.len() + i) as u64),
                "indexes follow submission order"
            );
            assert_eq!(status.leaf_hash, leaf_hash(&batch[i]).to_hex());
        }
        all.extend(batch);
        let verified = log.checkpoint().await;
        assert_eq!(verified.checkpoint.size, all.len() as u64);
        checkpoints.push(verified.checkpoint);
    }
    let leaves: Vec<Hash> = all.iter().map(|e| leaf_hash(e)).collect();
    let size = leaves.len() as u64;
    let root = root_from_leaf_hashes(&leaves);
    assert_eq!(checkpoints.last().unwrap().root, root);

    // Inclusion proofs by index and by hash, at the latest and at an older size.
    for index in [0u64, 1, 2, 255, 256, 257, 511, 512, size - 1] {
        let reply = log
            .json(&format!("/v1/proof/inclusion?index={index}"))
            .await;
        let proof = hashes(&reply["proof"]);
        verify_inclusion(index, size, &leaves[index as usize], &proof, &root).unwrap();
        assert!(
            reply["checkpoint"]
                .as_str()
                .unwrap()
                .contains(&size.to_string())
        );
        let by_hash = log
            .json(&format!(
                "/v1/proof/inclusion?leaf_hash={}",
                leaves[index as usize].to_hex()
            ))
            .await;
        assert_eq!(by_hash["proof"], reply["proof"]);
    }
    let old = &checkpoints[2];
    let reply = log
        .json(&format!("/v1/proof/inclusion?index=5&size={}", old.size))
        .await;
    verify_inclusion(5, old.size, &leaves[5], &hashes(&reply["proof"]), &old.root).unwrap();

    // Consistency between every pair of checkpoints seen.
    for (i, a) in checkpoints.iter().enumerate() {
        for b in &checkpoints[i..] {
            let reply = log
                .json(&format!(
                    "/v1/proof/consistency?old={}&new={}",
                    a.size, b.size
                ))
                .await;
            verify_consistency(a.size, b.size, &a.root, &b.root, &hashes(&reply["proof"])).unwrap();
        }
    }

    // Every tile and bundle, full and partial, matches the leaves.
    let mut tiles: HashMap<(u8, u64), Vec<Hash>> = HashMap::new();
    for level in 0..=1u8 {
        for index in 0..=size / TILE_WIDTH {
            let width = tile_width(TileKind::Hashes(level), index, size);
            if width == 0 {
                continue;
            }
            let coord = TileCoord {
                kind: TileKind::Hashes(level),
                index,
                width,
            };
            let response = log.get(&format!("/{}", coord.path())).await;
            assert_eq!(response.status(), 200, "{}", coord.path());
            let cache = response.headers()["cache-control"]
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(
                cache.contains("immutable"),
                coord.is_full(),
                "{}",
                coord.path()
            );
            let body = response.bytes().await.unwrap();
            tiles.insert((level, index), parse_hash_tile(&body, width).unwrap());
        }
    }
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(tiles[&(0, i as u64 / TILE_WIDTH)][i % 256], *leaf);
    }
    assert_eq!(tiles[&(1, 0)][0], root_from_leaf_hashes(&leaves[..256]));
    assert_eq!(tiles[&(1, 0)][1], root_from_leaf_hashes(&leaves[256..512]));
    for index in 0..=size / TILE_WIDTH {
        let width = tile_width(TileKind::Entries, index, size);
        if width == 0 {
            continue;
        }
        let coord = TileCoord {
            kind: TileKind::Entries,
            index,
            width,
        };
        let body = log
            .get(&format!("/{}", coord.path()))
            .await
            .bytes()
            .await
            .unwrap();
        let bundle = parse_entry_bundle(&body, width).unwrap();
        let first = (index * TILE_WIDTH) as usize;
        for (i, entry) in bundle.iter().enumerate() {
            assert_eq!(*entry, all[first + i].as_slice());
        }
    }
    // A partial prefix of a full tile is served too, and equals the prefix.
    let prefix = log.get("/tile/0/000.p/3").await.bytes().await.unwrap();
    assert_eq!(
        parse_hash_tile(&prefix, 3).unwrap(),
        tiles[&(0, 0)][..3].to_vec()
    );

    // Entry lookup by index.
    let entry = log.json("/v1/entries/257").await;
    assert_eq!(
        BASE64.decode(entry["entry"].as_str().unwrap()).unwrap(),
        all[257]
    );
    assert_eq!(entry["leaf_hash"], leaves[257].to_hex());
}

/// Identical submissions deduplicate to the same index.
pub async fn duplicates_get_the_same_index(log: &TestLog) {
    let entry = b"deduplicate me".to_vec();
    let first = log.add_all(std::slice::from_ref(&entry)).await.remove(0);
    let again = log.client.add(&entry, &log.publisher).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.index, first.index);
    assert_eq!(again.status, "integrated");
    let size = log.checkpoint().await.checkpoint.size;
    let again = log.client.add(&entry, &log.publisher).await.unwrap();
    assert_eq!(again.index, first.index);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        log.checkpoint().await.checkpoint.size,
        size,
        "a duplicate never grows the log"
    );
}
