//! The model file a node serves: checked, digested, and never fetched from anywhere.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};
use crate::gguf::{self, GgufMetadata};

/// Files that, next to a GGUF, would override its own tokenizer or chat template and so change
/// the model's behaviour without changing its digest. The node refuses to load beside them.
pub const OVERRIDING_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "generation_config.json",
];

/// A local GGUF model file, checked and digested.
#[derive(Clone, Debug)]
pub struct ModelFile {
    /// Absolute path.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes (what a `release` entry names).
    pub sha256: [u8; 32],
    /// The name requests use: `general.name`, else the file stem.
    pub name: String,
    /// The GGUF metadata.
    pub metadata: GgufMetadata,
}

impl ModelFile {
    /// Opens `path`: checks that the engine can load it and that nothing beside it overrides
    /// its metadata, and computes its SHA-256.
    pub fn open(path: &Path) -> Result<Self> {
        let path = std::fs::canonicalize(path)
            .map_err(|e| EngineError::Model(format!("{}: {e}", path.display())))?;
        let dir = path
            .parent()
            .ok_or_else(|| EngineError::Model("the model file has no directory".into()))?;
        for name in OVERRIDING_FILES {
            if dir.join(name).exists() {
                return Err(EngineError::Model(format!(
                    "{} lies next to the model and would override its metadata; keep the GGUF in \
                     a directory of its own",
                    dir.join(name).display()
                )));
            }
        }
        let metadata = gguf::read_metadata(&path)?;
        metadata.check_loadable()?;
        let sha256 = file_sha256(&path)?;
        let name = metadata
            .name()
            .map(str::to_owned)
            .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        Ok(ModelFile {
            path,
            sha256,
            name,
            metadata,
        })
    }

    /// The directory and file name, as the engine's loader wants them.
    pub fn dir_and_file(&self) -> (String, String) {
        let dir = self.path.parent().expect("checked in open");
        let file = self.path.file_name().expect("a file");
        (
            dir.to_string_lossy().into_owned(),
            file.to_string_lossy().into_owned(),
        )
    }
}

/// SHA-256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| EngineError::Model(format!("{}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| EngineError::Model(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().into())
}
