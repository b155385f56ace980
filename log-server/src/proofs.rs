//! Proofs computed from stored tiles: the tiles a proof needs are worked out first (a dry run of
//! the proof over dummy hashes), fetched, and the proof is then computed from their inner nodes.
//! The HTTP API fetches through its tile cache; the witness client reads the store directly.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use arcane_verifier::Hash;
use arcane_verifier::proof::ProofError;
use arcane_verifier::tiles::{
    TileKind, TileTree, parse_hash_tile, range_hash_from_tile_trees, tile_width, tiles_for_ranges,
};

use crate::error::{LogError, Result};
use crate::storage::Store;

/// The subtree-hash source a proof builder is given.
pub type SubtreeSource<'a> = &'a mut dyn FnMut(u64, u64) -> std::result::Result<Hash, LogError>;

/// Computes the proof that `build` describes, in the tree of `size` leaves, with hash tiles from
/// `fetch(level, index, min_width)`.
pub async fn prove<F, Fut>(
    size: u64,
    fetch: F,
    build: impl Fn(SubtreeSource<'_>) -> std::result::Result<Vec<Hash>, ProofError<LogError>>,
) -> Result<Vec<Hash>>
where
    F: Fn(u8, u64, u16) -> Fut,
    Fut: Future<Output = Result<Arc<TileTree>>>,
{
    let mut ranges = Vec::new();
    build(&mut |s, e| {
        ranges.push((s, e));
        Ok(Hash([0; 32]))
    })
    .map_err(proof_error)?;
    let mut tiles: BTreeMap<(u8, u64), Arc<TileTree>> = BTreeMap::new();
    for (level, index) in tiles_for_ranges(ranges.iter().copied()) {
        let width = tile_width(TileKind::Hashes(level), index, size);
        tiles.insert((level, index), fetch(level, index, width).await?);
    }
    let lookup = |l: u8, i: u64| tiles.get(&(l, i)).map(|t| &**t);
    build(&mut |s, e| {
        range_hash_from_tile_trees(s, e, &lookup).map_err(|e| LogError::Corrupt(e.to_string()))
    })
    .map_err(proof_error)
}

/// A hash tile read from the store, at least `min_width` wide, with its inner nodes.
pub async fn stored_tile_tree(
    store: &Store,
    level: u8,
    index: u64,
    min_width: u16,
) -> Result<Arc<TileTree>> {
    let bytes = store
        .tile(level, index)
        .await?
        .ok_or_else(|| LogError::Corrupt(format!("tile {level}/{index} missing")))?;
    if bytes.len() < usize::from(min_width) * 32 {
        return Err(LogError::Corrupt(format!(
            "tile {level}/{index} stored too narrow"
        )));
    }
    let hashes = parse_hash_tile(&bytes, (bytes.len() / 32) as u16)
        .map_err(|e| LogError::Corrupt(format!("tile {level}/{index}: {e}")))?;
    Ok(Arc::new(TileTree::new(hashes)))
}

fn proof_error(error: ProofError<LogError>) -> LogError {
    match error {
        ProofError::Invalid(e) => LogError::BadRequest(e.to_string()),
        ProofError::Source(e) => e,
    }
}
