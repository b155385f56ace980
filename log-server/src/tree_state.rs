//! The in-memory Merkle tree state of the newest checkpoint: its compact range and the
//! rightmost tile of each level, rebuilt from stored tiles (and checked against the checkpoint's
//! root), extended leaf by leaf into the tiles to write. The sequencer extends it; the Trillian
//! follower checks Trillian's leaves against it.

use std::collections::BTreeMap;

use arcane_verifier::Hash;
use arcane_verifier::merkle::CompactRange;
use arcane_verifier::tiles::{
    TILE_HEIGHT, TILE_WIDTH, parse_hash_tile, range_hash_from_tiles, tiles_for_ranges,
};

use crate::error::{LogError, Result};
use crate::storage::{Store, StoredCheckpoint};

/// The in-memory tree state matching the newest checkpoint.
#[derive(Clone, Debug)]
pub struct TreeState {
    range: CompactRange,
    /// The rightmost tile of each level that has room: (tile index, hashes so far).
    edge: BTreeMap<u8, (u64, Vec<Hash>)>,
}

impl TreeState {
    /// Rebuilds the state for `checkpoint` from stored tiles, and checks the root matches.
    pub async fn load(store: &Store, checkpoint: &StoredCheckpoint) -> Result<Self> {
        let size = checkpoint.size;
        let mut tiles: BTreeMap<(u8, u64), Vec<Hash>> = BTreeMap::new();
        let peak_ranges = peak_ranges(size);
        let mut wanted = tiles_for_ranges(peak_ranges.iter().copied());
        let mut edge = BTreeMap::new();
        for level in 0..=7u8 {
            let count = if u32::from(level) * TILE_HEIGHT >= 64 {
                0
            } else {
                size >> (u32::from(level) * TILE_HEIGHT)
            };
            if count == 0 && level > 0 {
                break;
            }
            let index = count / TILE_WIDTH;
            let width = (count % TILE_WIDTH) as usize;
            if width > 0 {
                wanted.insert((level, index));
            }
            edge.insert(level, (index, width));
        }
        for (level, index) in wanted {
            let bytes = store
                .tile(level, index)
                .await?
                .ok_or_else(|| LogError::Corrupt(format!("tile {level}/{index} missing")))?;
            let hashes = parse_hash_tile(&bytes, (bytes.len() / 32) as u16)
                .map_err(|e| LogError::Corrupt(format!("tile {level}/{index}: {e}")))?;
            tiles.insert((level, index), hashes);
        }
        let lookup = |l: u8, i: u64| tiles.get(&(l, i)).map(Vec::as_slice);
        let peaks = peak_ranges
            .iter()
            .map(|&(s, e)| range_hash_from_tiles(s, e, &lookup))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| LogError::Corrupt(format!("rebuilding the tree: {e}")))?;
        let range = CompactRange::from_peaks(size, peaks)?;
        if range.root() != checkpoint.root {
            return Err(LogError::Corrupt(format!(
                "tiles give root {} for size {size}, the checkpoint says {}",
                range.root(),
                checkpoint.root
            )));
        }
        let edge = edge
            .into_iter()
            .map(|(level, (index, width))| {
                let hashes = tiles
                    .get(&(level, index))
                    .map(|t| t.get(..width).map(<[Hash]>::to_vec))
                    .unwrap_or(Some(Vec::new()))
                    .ok_or_else(|| LogError::Corrupt(format!("tile {level}/{index} too narrow")))?;
                Ok((level, (index, hashes)))
            })
            .collect::<Result<_>>()?;
        Ok(TreeState { range, edge })
    }

    /// Tree size.
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// The root of the tree.
    pub fn root(&self) -> Hash {
        self.range.root()
    }

    /// Appends leaves; returns the tiles that changed, as (level, index, bytes).
    pub fn append(&mut self, leaves: &[Hash]) -> Vec<(u8, u64, Vec<u8>)> {
        let mut touched: BTreeMap<u8, ()> = BTreeMap::new();
        let mut full: Vec<(u8, u64, Vec<u8>)> = Vec::new();
        for leaf in leaves {
            let edge = &mut self.edge;
            self.range.append_with(*leaf, |level, index, hash| {
                if u32::from(level) % TILE_HEIGHT != 0 {
                    return;
                }
                let tile_level = (u32::from(level) / TILE_HEIGHT) as u8;
                let tile_index = index / TILE_WIDTH;
                let slot = edge.entry(tile_level).or_insert((tile_index, Vec::new()));
                debug_assert_eq!(slot.0, tile_index);
                slot.1.push(*hash);
                touched.insert(tile_level, ());
                if slot.1.len() as u64 == TILE_WIDTH {
                    full.push((tile_level, slot.0, concat(&slot.1)));
                    *slot = (slot.0 + 1, Vec::new());
                }
            });
        }
        let mut out = full;
        for level in touched.keys() {
            let (index, hashes) = &self.edge[level];
            if !hashes.is_empty() {
                out.push((*level, *index, concat(hashes)));
            }
        }
        out
    }
}

fn concat(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

/// The ranges of the perfect subtrees ("peaks") of a tree of `size` leaves, largest first.
fn peak_ranges(size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    for bit in (0..64).rev() {
        let len = 1u64 << bit;
        if size & len != 0 {
            out.push((start, start + len));
            start += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_cover_the_tree() {
        assert_eq!(peak_ranges(0), vec![]);
        assert_eq!(peak_ranges(5), vec![(0, 4), (4, 5)]);
        assert_eq!(peak_ranges(256), vec![(0, 256)]);
    }

    #[test]
    fn appending_fills_tiles_in_order() {
        let mut state = TreeState {
            range: CompactRange::new(),
            edge: BTreeMap::new(),
        };
        let leaves: Vec<Hash> = (0..600u32)
            .map(|i| arcane_verifier::merkle::leaf_hash(&i.to_be_bytes()))
            .collect();
        let written = state.append(&leaves);
        let level0: Vec<_> = written
            .iter()
            .filter(|t| t.0 == 0)
            .map(|t| (t.1, t.2.len() / 32))
            .collect();
        assert_eq!(level0, vec![(0, 256), (1, 256), (2, 88)]);
        let level1: Vec<_> = written
            .iter()
            .filter(|t| t.0 == 1)
            .map(|t| (t.1, t.2.len() / 32))
            .collect();
        assert_eq!(level1, vec![(0, 2)]);
        assert_eq!(
            state.range.root(),
            arcane_verifier::merkle::root_from_leaf_hashes(&leaves)
        );
    }
}
