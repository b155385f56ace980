//! Replaying a whole log: download every entry bundle, recompute every leaf hash and the tree,
//! validate every entry, and compare the root with the log's signed checkpoint. Memory stays at
//! the tree's frontier (one hash per level) whatever the log's size; progress is saved after each
//! bundle so an interrupted replay resumes where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arcane_verifier::Hash;
use arcane_verifier::entry::{EntryBody, EntryPolicy, SignedEntry};
use arcane_verifier::merkle::{CompactRange, leaf_hash};
use arcane_verifier::tiles::{TILE_WIDTH, TileCoord, TileKind, parse_entry_bundle, tile_width};

/// Where entry bundles come from.
pub trait BundleSource {
    /// The bytes of the bundle at `coord`.
    fn bundle(&mut self, coord: &TileCoord) -> Result<Vec<u8>, String>;
}

/// Bundles read from a local mirror laid out like the log's URLs (`DIR/tile/entries/…`).
pub struct DirectorySource(pub PathBuf);

impl BundleSource for DirectorySource {
    fn bundle(&mut self, coord: &TileCoord) -> Result<Vec<u8>, String> {
        let path = self.0.join(coord.path());
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Where a replay stands: entries done and the tree's frontier.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// The compact range over the entries replayed so far.
    pub range: CompactRange,
    /// Entries per kind name (`opaque` for entries that are not typed entries).
    pub kinds: BTreeMap<String, u64>,
    /// Typed entries that fail their kind rules.
    pub invalid: u64,
    /// Valid typed entries whose validity window contains the replay's time, per kind.
    pub current: BTreeMap<String, u64>,
}

impl Progress {
    fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.range.size());
        for peak in self.range.peaks() {
            out.push_str(&peak.to_hex());
            out.push('\n');
        }
        out.push_str(&format!("invalid {}\n", self.invalid));
        for (kind, n) in &self.kinds {
            out.push_str(&format!("kind {kind} {n}\n"));
        }
        for (kind, n) in &self.current {
            out.push_str(&format!("current {kind} {n}\n"));
        }
        out
    }

    fn from_text(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let size: u64 = lines.next()?.parse().ok()?;
        let peaks = (0..size.count_ones())
            .map(|_| Hash::from_hex(lines.next()?).ok())
            .collect::<Option<Vec<_>>>()?;
        let invalid = lines.next()?.strip_prefix("invalid ")?.parse().ok()?;
        let (mut kinds, mut current) = (BTreeMap::new(), BTreeMap::new());
        for line in lines {
            let (map, rest) = match (line.strip_prefix("kind "), line.strip_prefix("current ")) {
                (Some(rest), _) => (&mut kinds, rest),
                (_, Some(rest)) => (&mut current, rest),
                _ => return None,
            };
            let mut parts = rest.split(' ');
            map.insert(parts.next()?.to_owned(), parts.next()?.parse().ok()?);
        }
        Some(Progress {
            range: CompactRange::from_peaks(size, peaks).ok()?,
            kinds,
            invalid,
            current,
        })
    }

    /// Loads saved progress, if any.
    pub fn load(path: &Path) -> Option<Self> {
        Self::from_text(&std::fs::read_to_string(path).ok()?)
    }

    /// Saves progress atomically.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        write_atomically(path, self.to_text().as_bytes()).map_err(|e| e.to_string())
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new contents, never a mix:
/// written beside (0600), synced, renamed over, and the folder synced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(folder) = path.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}

/// Replays entries `progress.range.size() .. size` from `source`, calling `after_bundle` after
/// each bundle (to save progress and report). Returns the recomputed root.
pub fn replay(
    source: &mut dyn BundleSource,
    size: u64,
    progress: &mut Progress,
    after_bundle: impl FnMut(&Progress) -> Result<(), String>,
) -> Result<Hash, String> {
    replay_entries(source, size, progress, |_, _| {}, after_bundle)
}

/// Like [`replay`], also handing every entry (index, bytes) to `on_entry`.
pub fn replay_entries(
    source: &mut dyn BundleSource,
    size: u64,
    progress: &mut Progress,
    mut on_entry: impl FnMut(u64, &[u8]),
    mut after_bundle: impl FnMut(&Progress) -> Result<(), String>,
) -> Result<Hash, String> {
    if !progress.range.size().is_multiple_of(TILE_WIDTH) && progress.range.size() != size {
        return Err("saved progress does not end at a bundle boundary".into());
    }
    let policy = EntryPolicy::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    while progress.range.size() < size {
        let index = progress.range.size() / TILE_WIDTH;
        let width = tile_width(TileKind::Entries, index, size);
        let coord = TileCoord {
            kind: TileKind::Entries,
            index,
            width,
        };
        let bytes = source.bundle(&coord)?;
        let entries =
            parse_entry_bundle(&bytes, width).map_err(|e| format!("{}: {e}", coord.path()))?;
        for entry in entries {
            on_entry(progress.range.size(), entry);
            progress.range.append(leaf_hash(entry));
            let kind = match SignedEntry::decode(entry) {
                Ok(signed) if !matches!(signed.entry.body, EntryBody::Unknown { .. }) => {
                    let kind = signed.entry.body.kind_name();
                    if policy.validate(&signed.entry).is_err() {
                        progress.invalid += 1;
                    } else if signed.entry.check_time(now).is_ok() {
                        *progress.current.entry(kind.clone()).or_default() += 1;
                    }
                    kind
                }
                _ => "opaque".to_owned(),
            };
            *progress.kinds.entry(kind).or_default() += 1;
        }
        after_bundle(progress)?;
    }
    Ok(progress.range.root())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips() {
        let mut p = Progress::default();
        for i in 0..300u32 {
            p.range.append(leaf_hash(&i.to_be_bytes()));
        }
        p.kinds.insert("release".into(), 3);
        p.kinds.insert("opaque".into(), 297);
        p.current.insert("release".into(), 2);
        p.invalid = 1;
        let again = Progress::from_text(&p.to_text()).unwrap();
        assert_eq!(again.range, p.range);
        assert_eq!(again.kinds, p.kinds);
        assert_eq!(again.current, p.current);
        assert_eq!(again.invalid, 1);
        assert!(Progress::from_text("garbage").is_none());
    }
}
