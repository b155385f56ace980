//! The model file a node serves: checked, digested, and never fetched from anywhere.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// The anonymous memory file a decrypted model lives in ([`ModelFile::in_memory`]): held
    /// open for as long as the model may be read through `path`.
    memory: Option<Arc<std::fs::File>>,
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
            memory: None,
        })
    }

    /// A model that lives in an anonymous memory file (Linux `memfd`: never on a disk, gone
    /// when the last handle closes), such as a sealed model decrypted inside an enclave. The
    /// caller computed `sha256` while writing it (and checked it against the release); the
    /// engine reads it through `/proc/self/fd`, so no other directory's files can override its
    /// metadata. `fallback_name` names it when its metadata has no `general.name`.
    pub fn in_memory(file: std::fs::File, sha256: [u8; 32], fallback_name: &str) -> Result<Self> {
        #[cfg(target_os = "linux")]
        let path = {
            use std::os::fd::AsRawFd;
            PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
        };
        #[cfg(not(target_os = "linux"))]
        let path: PathBuf = return Err(EngineError::Model(
            "a model in memory is read through /proc/self/fd, which needs Linux".into(),
        ));
        let metadata = gguf::read_metadata(&path)?;
        metadata.check_loadable()?;
        let name = metadata.name().unwrap_or(fallback_name).to_owned();
        Ok(ModelFile {
            path,
            sha256,
            name,
            metadata,
            memory: Some(Arc::new(file)),
        })
    }

    /// Whether the model lives in an anonymous memory file rather than at a path on a disk.
    pub fn is_in_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Once the engine has loaded a model that lives in memory: closes this handle of the
    /// memory file (its pages are freed with the last one), so the weights are not held twice
    /// for as long as the model is served. The model keeps its name, digest and metadata; its
    /// path becomes empty, which opens nothing (the descriptor number may be reused by another
    /// file). A model on a disk is left as it is.
    pub fn release_memory(&mut self) {
        if self.memory.take().is_some() {
            self.path = PathBuf::new();
        }
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
