//! Tile paths and entry bundles from untrusted bytes: never panic; canonical forms round-trip.
#![no_main]

use arcane_verifier::tiles::{TileCoord, encode_entry_bundle, parse_entry_bundle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data)
        && let Ok(coord) = TileCoord::parse_path(path)
    {
        assert_eq!(TileCoord::parse_path(&coord.path()).unwrap(), coord);
    }
    if let Some((&width, bundle)) = data.split_first()
        && let Ok(entries) = parse_entry_bundle(bundle, u16::from(width))
    {
        assert_eq!(encode_entry_bundle(entries).unwrap(), bundle);
    }
});
