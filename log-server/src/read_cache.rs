//! The read side's caches: hash tiles and their inner nodes (the widest version seen of each —
//! a tile's first W hashes never change once written), and full entry bundles (which never
//! change), each bounded; entries read from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;

use arcane_verifier::tiles::{
    TILE_WIDTH, TileCoord, TileTree, encode_entry_bundle, parse_hash_tile,
};

use crate::error::{LogError, Result};
use crate::storage::{EntryRecord, Store};

/// Most entries each cache holds before it is emptied.
const TILE_CACHE_ENTRIES: usize = 8192;

/// The log's reads, cached where what is read cannot change.
pub struct ReadCache {
    store: Store,
    /// Hash tiles, the widest version seen.
    hash_tiles: Mutex<HashMap<(u8, u64), Bytes>>,
    /// Tiles with their inner nodes, for proofs: the widest version seen of each.
    tile_trees: Mutex<HashMap<(u8, u64), Arc<TileTree>>>,
    /// Full entry bundles.
    full_bundles: Mutex<HashMap<u64, Bytes>>,
}

impl ReadCache {
    /// Empty caches over `store`.
    pub fn new(store: Store) -> Self {
        ReadCache {
            store,
            hash_tiles: Mutex::new(HashMap::new()),
            tile_trees: Mutex::new(HashMap::new()),
            full_bundles: Mutex::new(HashMap::new()),
        }
    }

    /// A hash tile at least `min_width` wide, from the cache or the database.
    pub async fn hash_tile(&self, level: u8, index: u64, min_width: u16) -> Result<Bytes> {
        let need = usize::from(min_width) * 32;
        if let Some(bytes) = self
            .hash_tiles
            .lock()
            .expect("tile cache")
            .get(&(level, index))
            && bytes.len() >= need
        {
            return Ok(bytes.clone());
        }
        let bytes = Bytes::from(
            self.store
                .tile(level, index)
                .await?
                .ok_or_else(|| LogError::Corrupt(format!("tile {level}/{index} not stored")))?,
        );
        if bytes.len() < need || bytes.len() % 32 != 0 {
            return Err(LogError::Corrupt(format!(
                "tile {level}/{index} stored too narrow"
            )));
        }
        let mut cache = self.hash_tiles.lock().expect("tile cache");
        if cache.len() >= TILE_CACHE_ENTRIES {
            cache.clear();
        }
        let slot = cache.entry((level, index)).or_default();
        if slot.len() < bytes.len() {
            *slot = bytes.clone();
        }
        Ok(bytes)
    }

    /// A tile's inner nodes, at least `min_width` wide.
    pub async fn tile_tree(&self, level: u8, index: u64, min_width: u16) -> Result<Arc<TileTree>> {
        if let Some(tree) = self
            .tile_trees
            .lock()
            .expect("tree cache")
            .get(&(level, index))
            && tree.width() >= usize::from(min_width)
        {
            return Ok(tree.clone());
        }
        let bytes = self.hash_tile(level, index, min_width).await?;
        let hashes = parse_hash_tile(&bytes, (bytes.len() / 32) as u16)
            .map_err(|e| LogError::Corrupt(e.to_string()))?;
        let tree = Arc::new(TileTree::new(hashes));
        let mut cache = self.tile_trees.lock().expect("tree cache");
        if cache.len() >= TILE_CACHE_ENTRIES {
            cache.clear();
        }
        let slot = cache.entry((level, index)).or_insert_with(|| tree.clone());
        if slot.width() < tree.width() {
            *slot = tree.clone();
        }
        Ok(tree)
    }

    /// The integrated entry at `index` (the caller has checked it is below the tree size).
    pub async fn entry(&self, index: u64) -> Result<EntryRecord> {
        self.store
            .entries_range(index, index + 1)
            .await?
            .pop()
            .ok_or_else(|| LogError::Corrupt(format!("entry {index} missing")))
    }

    /// An entry bundle of exactly `coord.width` entries.
    pub async fn bundle(&self, coord: TileCoord) -> Result<Bytes> {
        if let Some(bytes) = self
            .full_bundles
            .lock()
            .expect("bundle cache")
            .get(&coord.index)
        {
            return Ok(bytes.clone());
        }
        let width = usize::from(coord.width);
        let start = coord.index * TILE_WIDTH;
        let entries = self
            .store
            .entries_range(start, start + width as u64)
            .await?;
        if entries.len() != width {
            return Err(LogError::Corrupt(format!(
                "bundle {} incomplete",
                coord.path()
            )));
        }
        let bytes = Bytes::from(encode_entry_bundle(
            entries.iter().map(|e| e.data.as_slice()),
        )?);
        if coord.is_full() {
            let mut cache = self.full_bundles.lock().expect("bundle cache");
            if cache.len() >= TILE_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(coord.index, bytes.clone());
        }
        Ok(bytes)
    }
}
