//! C2SP tiled logs (`c2sp.org/tlog-tiles`): tile coordinates and paths, entry bundles, and
//! computing subtree hashes from tiles.
//!
//! Tiles have height 8: the tile at level `L`, index `N` holds up to 256 hashes of Merkle level
//! `8·L`, those of nodes `256·N ..`. A tile is full at width 256 and partial below. Paths are
//! `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`, with `N` written as zero-padded
//! three-digit groups, all but the last prefixed with `x` (1234067 → `x001/x234/067`).

use std::collections::BTreeSet;

use crate::merkle::{Hash, node_hash, split_point};
use crate::{Error, Result};

/// Levels of the Merkle tree covered by one tile.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// Highest tile level a path may name.
pub const MAX_TILE_LEVEL: u8 = 63;

/// Which tile: hashes at a level, or entry bundles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TileKind {
    /// A tile of Merkle hashes at tile level `L` (Merkle level `8·L`).
    Hashes(u8),
    /// An entry bundle: the log entries themselves.
    Entries,
}

/// A tile or entry bundle, with its width (256 for a full one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileCoord {
    /// Hash tile level or entry bundle.
    pub kind: TileKind,
    /// Index of the tile within its level.
    pub index: u64,
    /// Number of hashes or entries, 1..=256.
    pub width: u16,
}

impl TileCoord {
    /// Whether the tile is full.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The tile's path (without a leading slash).
    pub fn path(&self) -> String {
        let mut out = match self.kind {
            TileKind::Hashes(level) => format!("tile/{level}/"),
            TileKind::Entries => "tile/entries/".to_owned(),
        };
        out.push_str(&encode_index(self.index));
        if !self.is_full() {
            out.push_str(&format!(".p/{}", self.width));
        }
        out
    }

    /// Parses a canonical tile path (with or without a leading slash). Non-canonical spellings
    /// (leading zeros, needless `x000` groups, widths of 0 or 256 written as partial) are refused.
    pub fn parse_path(path: &str) -> Result<Self> {
        let path = path.strip_prefix('/').unwrap_or(path);
        let rest = path
            .strip_prefix("tile/")
            .ok_or(Error::MalformedTilePath("must start with tile/"))?;
        let (first, rest) = rest
            .split_once('/')
            .ok_or(Error::MalformedTilePath("missing tile index"))?;
        let kind = if first == "entries" {
            TileKind::Entries
        } else {
            let level = parse_small_decimal(first)
                .filter(|l| *l <= u64::from(MAX_TILE_LEVEL))
                .ok_or(Error::MalformedTilePath(
                    "level must be 0..=63 without leading zeros",
                ))?;
            TileKind::Hashes(level as u8)
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((index_part, width)) => {
                let width = parse_small_decimal(width)
                    .filter(|w| (1..TILE_WIDTH).contains(w))
                    .ok_or(Error::MalformedTilePath(
                        "partial width must be 1..=255 without leading zeros",
                    ))?;
                (index_part, width as u16)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let index = decode_index(index_part)?;
        let coord = TileCoord { kind, index, width };
        if coord.path() != path {
            return Err(Error::MalformedTilePath("not in canonical form"));
        }
        Ok(coord)
    }
}

fn parse_small_decimal(text: &str) -> Option<u64> {
    if text.is_empty()
        || text.len() > 3
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

fn encode_index(mut index: u64) -> String {
    let mut groups = vec![format!("{:03}", index % 1000)];
    index /= 1000;
    while index > 0 {
        groups.push(format!("x{:03}", index % 1000));
        index /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

fn decode_index(text: &str) -> Result<u64> {
    let groups: Vec<&str> = text.split('/').collect();
    if groups.len() > 7 {
        return Err(Error::MalformedTilePath("tile index too long"));
    }
    let mut index: u64 = 0;
    for (i, group) in groups.iter().enumerate() {
        let digits = if i + 1 < groups.len() {
            group.strip_prefix('x').ok_or(Error::MalformedTilePath(
                "inner index groups must start with x",
            ))?
        } else {
            group
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::MalformedTilePath(
                "index groups must be three digits",
            ));
        }
        let value: u64 = digits.parse().expect("three ASCII digits");
        index = index
            .checked_mul(1000)
            .and_then(|v| v.checked_add(value))
            .ok_or(Error::MalformedTilePath("tile index out of range"))?;
    }
    Ok(index)
}

/// The width of tile `index` at `level` in a tree of `size` leaves (0 if it does not exist yet).
pub fn tile_width(kind: TileKind, index: u64, size: u64) -> u16 {
    let level = match kind {
        TileKind::Hashes(level) => u32::from(level),
        TileKind::Entries => 0,
    };
    let shift = TILE_HEIGHT * level;
    let count = if shift >= 64 { 0 } else { size >> shift };
    let start = index.saturating_mul(TILE_WIDTH);
    count.saturating_sub(start).min(TILE_WIDTH) as u16
}

/// Parses a hash tile's bytes: `width` hashes of 32 bytes, nothing else.
pub fn parse_hash_tile(bytes: &[u8], width: u16) -> Result<Vec<Hash>> {
    if bytes.len() != usize::from(width) * 32 {
        return Err(Error::MalformedTile(
            "length is not 32 bytes times the width",
        ));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| Hash::from_slice(c).expect("32-byte chunk"))
        .collect())
}

/// Encodes an entry bundle: each entry prefixed with its big-endian u16 length.
pub fn encode_entry_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for entry in entries {
        let len = u16::try_from(entry.len()).map_err(|_| Error::EntryTooLarge(entry.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Parses an entry bundle that must hold exactly `width` entries.
pub fn parse_entry_bundle(bytes: &[u8], width: u16) -> Result<Vec<&[u8]>> {
    let mut entries = Vec::with_capacity(usize::from(width).min(256));
    let mut rest = bytes;
    while !rest.is_empty() {
        if entries.len() == usize::from(width) {
            return Err(Error::MalformedEntryBundle("more entries than the width"));
        }
        let [hi, lo, tail @ ..] = rest else {
            return Err(Error::MalformedEntryBundle("truncated length prefix"));
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if tail.len() < len {
            return Err(Error::MalformedEntryBundle("truncated entry"));
        }
        entries.push(&tail[..len]);
        rest = &tail[len..];
    }
    if entries.len() != usize::from(width) {
        return Err(Error::MalformedEntryBundle("fewer entries than the width"));
    }
    Ok(entries)
}

/// The hash tile `(level, index)` that holds the hashes under Merkle node `(node_level, node_index)`.
fn tile_of_node(node_level: u32, node_index: u64) -> (u8, u64) {
    let tile_level = node_level / TILE_HEIGHT;
    let first = node_index << (node_level % TILE_HEIGHT);
    (tile_level as u8, first / TILE_WIDTH)
}

/// Visits the perfect subtrees making up the range `[start, end)` (split as RFC 9162 does) and
/// combines their hashes. `node(level, index)` gives a perfect subtree's hash.
pub fn range_hash<E>(
    start: u64,
    end: u64,
    node: &mut impl FnMut(u32, u64) -> std::result::Result<Hash, E>,
) -> std::result::Result<Hash, E> {
    debug_assert!(start < end);
    let len = end - start;
    if len.is_power_of_two() && start.is_multiple_of(len) {
        let level = len.trailing_zeros();
        return node(level, start >> level);
    }
    let k = split_point(len);
    let left = range_hash(start, start + k, node)?;
    let right = range_hash(start + k, end, node)?;
    Ok(node_hash(&left, &right))
}

/// The hash tiles needed to compute the subtree hashes of the given ranges, as
/// `(tile level, tile index)`.
pub fn tiles_for_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> BTreeSet<(u8, u64)> {
    let mut needed = BTreeSet::new();
    for (start, end) in ranges {
        let _ = range_hash::<()>(start, end, &mut |level, index| {
            needed.insert(tile_of_node(level, index));
            Ok(Hash([0; 32]))
        });
    }
    needed
}

/// Computes the hash of the range `[start, end)` from hash tiles; `tile(level, index)` gives the
/// stored hashes of a tile (any width that covers the nodes asked for).
pub fn range_hash_from_tiles<'t>(
    start: u64,
    end: u64,
    tile: &impl Fn(u8, u64) -> Option<&'t [Hash]>,
) -> Result<Hash> {
    range_hash(start, end, &mut |level, index| {
        let (tile_level, tile_index) = tile_of_node(level, index);
        let hashes =
            tile(tile_level, tile_index).ok_or(Error::MalformedTile("tile not available"))?;
        let count = 1usize << (level % TILE_HEIGHT);
        let first = ((index << (level % TILE_HEIGHT)) % TILE_WIDTH) as usize;
        let row = hashes
            .get(first..first + count)
            .ok_or(Error::MalformedTile("tile too narrow for the node"))?;
        Ok(perfect_root(row))
    })
}

/// A tile with every Merkle node inside it: row 0 holds the tile's hashes, row `r` the hashes of
/// its complete, aligned groups of `2^r` (up to row 7). Built once, it answers any subtree hash
/// within the tile without hashing again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileTree {
    rows: Vec<Vec<Hash>>,
}

impl TileTree {
    /// Builds the tree of a tile's hashes (at most 256).
    pub fn new(hashes: Vec<Hash>) -> Self {
        let mut rows = vec![hashes];
        while rows.len() < TILE_HEIGHT as usize {
            let below = rows.last().expect("row 0 exists");
            if below.len() < 2 {
                break;
            }
            let row = below
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            rows.push(row);
        }
        TileTree { rows }
    }

    /// Number of hashes in the tile.
    pub fn width(&self) -> usize {
        self.rows[0].len()
    }

    /// The hash of the group of `2^row` hashes at `position` (counted in groups).
    pub fn node(&self, row: u32, position: usize) -> Option<Hash> {
        self.rows.get(row as usize)?.get(position).copied()
    }
}

/// Like [`range_hash_from_tiles`], from prebuilt [`TileTree`]s: no hashing inside tiles.
pub fn range_hash_from_tile_trees<'t>(
    start: u64,
    end: u64,
    tile: &impl Fn(u8, u64) -> Option<&'t TileTree>,
) -> Result<Hash> {
    range_hash(start, end, &mut |level, index| {
        let (tile_level, tile_index) = tile_of_node(level, index);
        let tree =
            tile(tile_level, tile_index).ok_or(Error::MalformedTile("tile not available"))?;
        let row = level % TILE_HEIGHT;
        let position = ((index << row) % TILE_WIDTH) as usize >> row;
        tree.node(row, position)
            .ok_or(Error::MalformedTile("tile too narrow for the node"))
    })
}

/// Root of a perfect tree over `row` (its length a power of two).
fn perfect_root(row: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = row.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_trees_agree_with_hashing_rows() {
        use crate::merkle::{leaf_hash, root_from_leaf_hashes};
        let leaves: Vec<Hash> = (0..700u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let trees: Vec<TileTree> = leaves
            .chunks(256)
            .map(|c| TileTree::new(c.to_vec()))
            .collect();
        let level1 = TileTree::new(vec![
            root_from_leaf_hashes(&leaves[..256]),
            root_from_leaf_hashes(&leaves[256..512]),
        ]);
        let lookup = |l: u8, i: u64| match l {
            0 => trees.get(i as usize),
            1 if i == 0 => Some(&level1),
            _ => None,
        };
        for (s, e) in [
            (0, 700),
            (0, 512),
            (256, 512),
            (512, 700),
            (640, 641),
            (0, 1),
            (512, 640),
        ] {
            assert_eq!(
                range_hash_from_tile_trees(s, e, &lookup).unwrap(),
                root_from_leaf_hashes(&leaves[s as usize..e as usize]),
                "[{s}, {e})"
            );
        }
        assert_eq!(trees[2].width(), 188);
        assert!(range_hash_from_tile_trees(0, 1024, &lookup).is_err());
    }

    #[test]
    fn paths_follow_the_spec_examples() {
        let c = TileCoord {
            kind: TileKind::Hashes(1),
            index: 1_234_067,
            width: 256,
        };
        assert_eq!(c.path(), "tile/1/x001/x234/067");
        assert_eq!(TileCoord::parse_path("/tile/1/x001/x234/067").unwrap(), c);
        let p = TileCoord {
            kind: TileKind::Entries,
            index: 0,
            width: 5,
        };
        assert_eq!(p.path(), "tile/entries/000.p/5");
        assert_eq!(TileCoord::parse_path(&p.path()).unwrap(), p);
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for bad in [
            "tile/0/0",
            "tile/00/000",
            "tile/64/000",
            "tile/0/x000/001",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/05",
            "tile/0/1000",
            "tile/0/x1/000",
            "tile/0/001/",
            "tile/entries/",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x018/x446/x744/x073/x709/x551/x616/000",
            "tiles/0/000",
            "tile/-1/000",
        ] {
            assert!(TileCoord::parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn widths_for_a_tree() {
        assert_eq!(tile_width(TileKind::Hashes(0), 0, 300), 256);
        assert_eq!(tile_width(TileKind::Hashes(0), 1, 300), 44);
        assert_eq!(tile_width(TileKind::Hashes(0), 2, 300), 0);
        assert_eq!(tile_width(TileKind::Hashes(1), 0, 300), 1);
        assert_eq!(tile_width(TileKind::Hashes(1), 0, 255), 0);
        assert_eq!(tile_width(TileKind::Entries, 1, 300), 44);
        assert_eq!(tile_width(TileKind::Hashes(63), 0, u64::MAX), 0);
    }

    #[test]
    fn entry_bundles_round_trip_and_reject_garbage() {
        let entries: Vec<&[u8]> = vec![b"", b"a", &[7u8; 300]];
        let bytes = encode_entry_bundle(entries.iter().copied()).unwrap();
        assert_eq!(parse_entry_bundle(&bytes, 3).unwrap(), entries);
        assert!(parse_entry_bundle(&bytes, 2).is_err());
        assert!(parse_entry_bundle(&bytes, 4).is_err());
        assert!(parse_entry_bundle(&bytes[..bytes.len() - 1], 3).is_err());
        assert!(parse_entry_bundle(&[0], 1).is_err());
        assert!(encode_entry_bundle([&vec![0u8; 65536][..]]).is_err());
    }
}
