//! Replay of a large log from local entry bundles against raw SHA-256 tree hashing of the same
//! leaves, measured in the same run, and the process's peak memory as the log grows.
//! `cargo bench -p arcane-audit --bench replay_bench` (ARCANE_BENCH_ENTRIES, default 1,000,000).
//! The line starting `summary |` is a row of `bench/all.sh`'s table.

use std::time::Instant;

use arcane_audit::replay::{DirectorySource, Progress, replay};
use arcane_verifier::merkle::{CompactRange, Hash};
use arcane_verifier::tiles::{TILE_WIDTH, TileCoord, TileKind, encode_entry_bundle, tile_width};
use sha2::{Digest, Sha256};

fn entry(i: u64) -> Vec<u8> {
    format!("benchmark entry {i:010} {}", "x".repeat(40)).into_bytes()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Raw baseline: SHA-256 of every leaf (0x00 prefix) and of every interior node, from entries
/// already in memory.
fn raw_root(entries: &[Vec<u8>]) -> Hash {
    let mut range = CompactRange::new();
    for e in entries {
        let mut hasher = Sha256::new();
        hasher.update([0u8]);
        hasher.update(e);
        range.append(Hash(hasher.finalize().into()));
    }
    range.root()
}

fn write_mirror(dir: &std::path::Path, n: u64) {
    for index in 0..n.div_ceil(TILE_WIDTH) {
        let width = tile_width(TileKind::Entries, index, n);
        let coord = TileCoord {
            kind: TileKind::Entries,
            index,
            width,
        };
        let entries: Vec<Vec<u8>> = (index * TILE_WIDTH..index * TILE_WIDTH + u64::from(width))
            .map(entry)
            .collect();
        let path = dir.join(coord.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            path,
            encode_entry_bundle(entries.iter().map(Vec::as_slice)).unwrap(),
        )
        .unwrap();
    }
}

fn main() {
    let n: u64 = std::env::var("ARCANE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    // Replays first (their peak memory is read right after each), then the in-memory baselines.
    let mut replays = Vec::new();
    for size in [n / 4, n] {
        let mirror = dir.path().join(format!("mirror-{size}"));
        write_mirror(&mirror, size);
        let start = Instant::now();
        let mut progress = Progress::default();
        let root = replay(
            &mut DirectorySource(mirror.clone()),
            size,
            &mut progress,
            |_| Ok(()),
        )
        .unwrap();
        replays.push((size, start.elapsed(), root, peak_rss_mib()));
        std::fs::remove_dir_all(&mirror).unwrap();
    }
    let mut rows = Vec::new();
    for (size, replayed, root, rss) in replays {
        let entries: Vec<Vec<u8>> = (0..size).map(entry).collect();
        let start = Instant::now();
        let expected = raw_root(&entries);
        let raw = start.elapsed();
        assert_eq!(root, expected, "replay and raw hashing agree");
        rows.push((size, raw, replayed, rss));
    }
    println!(
        "\n| entries | raw SHA-256 tree hashing | replay from local bundles | replay rate / raw rate | peak RSS after the replay |"
    );
    println!("|---|---|---|---|---|");
    let largest = rows.last().copied();
    for (size, raw, replayed, rss) in rows {
        println!(
            "| {size} | {:.2} s ({:.0} entries/s) | {:.2} s ({:.0} entries/s) | {:.2}x | {rss:.0} MiB |",
            raw.as_secs_f64(),
            size as f64 / raw.as_secs_f64(),
            replayed.as_secs_f64(),
            size as f64 / replayed.as_secs_f64(),
            raw.as_secs_f64() / replayed.as_secs_f64()
        );
    }
    if let Some((size, raw, replayed, rss)) = largest {
        println!(
            "summary | audit replay of {size} entries from local bundles (peak RSS {rss:.0} MiB) | {:.0} entries/s | raw SHA-256 tree hashing: {:.0} entries/s | {:.2}× | — | — |",
            size as f64 / replayed.as_secs_f64(),
            size as f64 / raw.as_secs_f64(),
            raw.as_secs_f64() / replayed.as_secs_f64()
        );
    }
}
