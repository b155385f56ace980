//! A model file sealed as it streams (64 KiB at a time, so a model of many gigabytes never has to
//! fit in memory), under the key the store holds for it. The model is read twice: once for the
//! SHA-256 of its plaintext, which names its key (and is the digest its release entries name),
//! then to seal it, checking that the second read gives the same digest. The sealed file is
//! written beside its destination and linked into place once it is whole and on disk: a
//! destination path holds a complete sealed model or nothing, and is never replaced.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use arcane_verifier::sealed_model::{CHUNK_LEN, ModelKey, ModelSealer};
use sha2::{Digest, Sha256};

use crate::error::{KeyReleaseError, Result};
use crate::store::{KeyStore, now_seconds};

/// What [`seal_model`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedModel {
    /// SHA-256 of the plaintext model: the digest a release names, and the key's name.
    pub model_sha256: [u8; 32],
    /// Plaintext length in bytes.
    pub model_len: u64,
    /// Length of the sealed file in bytes.
    pub sealed_len: u64,
}

fn file_error(path: &Path) -> impl Fn(std::io::Error) -> KeyReleaseError + '_ {
    move |e| KeyReleaseError::File {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

/// Seals the model at `model` into a new file at `out` (refused when `out` exists) under the
/// model's key in `store`, made and stored first when the model has none.
pub async fn seal_model(store: &KeyStore, model: &Path, out: &Path) -> Result<SealedModel> {
    if out.exists() {
        return Err(KeyReleaseError::File {
            path: out.display().to_string(),
            why: "exists; a sealed model is never overwritten".into(),
        });
    }
    let path = model.to_path_buf();
    let digest = blocking(move || digest_of(&path)).await?;
    let key = store.key_or_new(&digest, now_seconds()).await?;
    let (model, out) = (model.to_path_buf(), out.to_path_buf());
    blocking(move || seal_file(&key, &model, &out, &digest)).await
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| KeyReleaseError::Config(format!("the sealing task failed: {e}")))?
}

/// Up to [`CHUNK_LEN`] bytes; fewer only at the end of the file.
fn read_chunk(input: &mut impl Read, path: &Path) -> Result<Vec<u8>> {
    let mut chunk = Vec::with_capacity(CHUNK_LEN);
    input
        .take(CHUNK_LEN as u64)
        .read_to_end(&mut chunk)
        .map_err(file_error(path))?;
    Ok(chunk)
}

fn digest_of(path: &Path) -> Result<[u8; 32]> {
    let mut input = File::open(path).map_err(file_error(path))?;
    let mut hasher = Sha256::new();
    loop {
        let chunk = read_chunk(&mut input, path)?;
        if chunk.is_empty() {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&chunk);
    }
}

fn seal_file(key: &ModelKey, model: &Path, out: &Path, digest: &[u8; 32]) -> Result<SealedModel> {
    let mut name: OsString = out.as_os_str().to_owned();
    name.push(".partial");
    let partial = PathBuf::from(name);
    let written = write_sealed(key, model, &partial, digest);
    let placed = written.and_then(|sealed| {
        // A link, not a rename: it fails when `out` appeared meanwhile instead of replacing it.
        std::fs::hard_link(&partial, out).map_err(file_error(out))?;
        std::fs::remove_file(&partial).map_err(file_error(&partial))?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(file_error(dir))?;
        }
        Ok(sealed)
    });
    if placed.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    placed
}

fn write_sealed(
    key: &ModelKey,
    model: &Path,
    partial: &Path,
    digest: &[u8; 32],
) -> Result<SealedModel> {
    let mut input = File::open(model).map_err(file_error(model))?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(partial)
        .map_err(file_error(partial))?;
    let mut output = BufWriter::new(file);
    let (header, mut sealer) = ModelSealer::start(key);
    output.write_all(&header).map_err(file_error(partial))?;
    let mut sealed_len = header.len() as u64;
    let mut model_len = 0u64;
    let mut hasher = Sha256::new();
    let mut current = read_chunk(&mut input, model)?;
    loop {
        let next = read_chunk(&mut input, model)?;
        let last = next.is_empty();
        // An empty model is refused here, by the sealer.
        let sealed = sealer.seal_chunk(&current, last)?;
        hasher.update(&current);
        model_len += current.len() as u64;
        sealed_len += sealed.len() as u64;
        output.write_all(&sealed).map_err(file_error(partial))?;
        if last {
            break;
        }
        current = next;
    }
    if <[u8; 32]>::from(hasher.finalize()) != *digest {
        return Err(KeyReleaseError::ModelChanged {
            path: model.display().to_string(),
        });
    }
    let file = output
        .into_inner()
        .map_err(|e| file_error(partial)(e.into_error()))?;
    file.sync_all().map_err(file_error(partial))?;
    Ok(SealedModel {
        model_sha256: *digest,
        model_len,
        sealed_len,
    })
}
