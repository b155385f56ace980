//! Locating the published test vectors and the real Nitro data in the repository's `testdata/`.

use std::path::PathBuf;

/// The vectors folder: `$ARCANE_VECTORS`, else `testdata/vectors` in the repository.
/// Panics with a loud message when it is missing: these tests must not pass without their data.
#[allow(dead_code)]
pub fn vectors_dir() -> PathBuf {
    let dir = match std::env::var_os("ARCANE_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors"),
    };
    assert!(
        dir.is_dir(),
        "TEST VECTORS MISSING: {} does not exist. Set ARCANE_VECTORS to the folder of published \
         RFC / C2SP vectors (testdata/vectors in the repository).",
        dir.display()
    );
    dir
}

/// The real Nitro data in the repository (`testdata/nitro`, or `$ARCANE_NITRO_DATA`).
#[allow(dead_code)]
pub fn nitro_dir() -> PathBuf {
    let dir = match std::env::var_os("ARCANE_NITRO_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/nitro"),
    };
    assert!(
        dir.is_dir(),
        "NITRO TEST DATA MISSING: {} does not exist (set ARCANE_NITRO_DATA)",
        dir.display()
    );
    dir
}
