//! The GGUF reader the node runs before the engine sees a file, and the tiny-model writer.

use std::io::Cursor;

use arcane_engine::EngineError;
use arcane_engine::gguf::{
    MetaValue, TinyLlama, read_metadata, read_metadata_from, write_tiny_llama,
};
use arcane_engine::model::ModelFile;

fn tiny_bytes(shape: &TinyLlama) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_tiny_llama(&path, shape).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn the_tiny_model_is_deterministic_and_loadable() {
    let a = tiny_bytes(&TinyLlama::default());
    let b = tiny_bytes(&TinyLlama::default());
    assert_eq!(a, b, "same shape and seed, same bytes");
    let c = tiny_bytes(&TinyLlama {
        seed: 8,
        ..TinyLlama::default()
    });
    assert_ne!(a, c, "another seed, other weights");
    let meta = read_metadata_from(Cursor::new(&a)).unwrap();
    meta.check_loadable().unwrap();
    assert_eq!(meta.architecture(), Some("llama"));
    assert_eq!(meta.get("llama.block_count"), Some(&MetaValue::Int(2)));
    assert!(matches!(
        meta.get("tokenizer.ggml.tokens"),
        Some(MetaValue::Array { element_type: 8, len }) if *len > 256
    ));
    assert!(a.len() < 1 << 20, "tiny: {} bytes", a.len());
}

/// Rewrites the string value of `key` in a GGUF image (same length), to make variants.
fn replace_value(bytes: &mut [u8], old: &str, new: &str) {
    assert_eq!(old.len(), new.len());
    let at = bytes
        .windows(old.len())
        .position(|w| w == old.as_bytes())
        .unwrap();
    bytes[at..at + new.len()].copy_from_slice(new.as_bytes());
}

#[test]
fn unsupported_or_broken_files_are_refused_with_a_reason() {
    let good = tiny_bytes(&TinyLlama::default());
    let check =
        |bytes: &[u8]| read_metadata_from(Cursor::new(bytes)).and_then(|m| m.check_loadable());

    let mut magic = good.clone();
    magic[0] = b'X';
    assert!(matches!(check(&magic), Err(EngineError::Model(m)) if m.contains("magic")));

    // An architecture the engine cannot load (it would panic inside the engine).
    let mut gemma = good.clone();
    replace_value(
        &mut gemma,
        "\u{5}\0\0\0\0\0\0\0llama",
        "\u{5}\0\0\0\0\0\0\0gemma",
    );
    assert!(matches!(check(&gemma), Err(EngineError::Model(m)) if m.contains("gemma")));

    // No chat template: every chat request would fail, so the file is refused up front.
    let mut no_template = good.clone();
    replace_value(
        &mut no_template,
        "tokenizer.chat_template",
        "tokenizer.chat_templatX",
    );
    assert!(
        matches!(check(&no_template), Err(EngineError::Model(m)) if m.contains("chat_template"))
    );

    // Every truncation of the metadata is an error, never a panic and never a partial read
    // (the reader stops after the metadata, so cuts in the tensor section read it whole).
    let full = read_metadata_from(Cursor::new(&good))
        .unwrap()
        .entries
        .len();
    let mut first_whole = None;
    for cut in 0..8192.min(good.len()) {
        if let Ok(meta) = read_metadata_from(Cursor::new(&good[..cut])) {
            assert_eq!(meta.entries.len(), full, "cut at {cut}");
            first_whole.get_or_insert(cut);
        }
    }
    assert!(first_whole.is_some_and(|c| c > 3000), "{first_whole:?}");
}

#[test]
fn a_huge_declared_length_is_refused_without_allocating() {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&u64::MAX.to_le_bytes()); // key length
    assert!(read_metadata_from(Cursor::new(&bytes)).is_err());
}

#[test]
fn files_that_would_override_the_model_metadata_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write_tiny_llama(&path, &TinyLlama::default()).unwrap();
    let model = ModelFile::open(&path).unwrap();
    assert_eq!(model.name, "arcane-tiny-llama");
    assert_eq!(read_metadata(&path).unwrap().tensor_count, 3 + 2 * 9);
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    assert!(
        matches!(ModelFile::open(&path), Err(EngineError::Model(m)) if m.contains("tokenizer.json"))
    );
}
