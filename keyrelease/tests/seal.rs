//! Sealing a model: what the owner's host ends up with is ciphertext only, it opens under the
//! stored key to the same bytes, the digest printed is the plaintext's, one model keeps one key,
//! and nothing half-written is ever left at the destination.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use arcane_keyrelease::seal::seal_model;
use arcane_keyrelease::store::KeyStore;
use arcane_verifier::sealed_model::{CHUNK_LEN, open};
use sha2::{Digest, Sha256};

/// A model-like file: every 64-byte window differs from every other.
fn write_model(path: &Path, len: usize) -> Vec<u8> {
    let bytes: Vec<u8> = (0..len as u64)
        .flat_map(|i| i.to_le_bytes())
        .take(len)
        .collect();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn holds_any_window_of(haystack: &[u8], plain: &[u8]) -> bool {
    use std::collections::HashSet;
    let windows: HashSet<&[u8]> = plain.chunks_exact(64).step_by(16).collect();
    haystack.windows(64).any(|w| windows.contains(w))
}

#[tokio::test]
async fn a_sealed_model_opens_to_its_plaintext_under_its_one_stored_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open_file(&dir.path().join("keys.db"))
        .await
        .unwrap();
    let mode = std::fs::metadata(dir.path().join("keys.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key database is the owner's alone");
    let model = dir.path().join("model.gguf");
    let plain = write_model(&model, 3 * CHUNK_LEN + 123);
    let out = dir.path().join("model.sealed");
    let sealed = seal_model(&store, &model, &out).await.unwrap();
    let digest: [u8; 32] = Sha256::digest(&plain).into();
    assert_eq!(sealed.model_sha256, digest);
    assert_eq!(sealed.model_len, plain.len() as u64);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(sealed.sealed_len, bytes.len() as u64);
    assert!(
        !holds_any_window_of(&bytes, &plain),
        "plaintext on the host"
    );
    let key = store.key(&digest).await.unwrap().expect("stored");
    assert_eq!(&open(&key, &bytes).unwrap()[..], &plain[..]);
    // The same model again: the same key, another salt, so other bytes.
    let again = dir.path().join("again.sealed");
    seal_model(&store, &model, &again).await.unwrap();
    let again = std::fs::read(&again).unwrap();
    assert_ne!(again, bytes);
    assert_eq!(&open(&key, &again).unwrap()[..], &plain[..]);
    assert_eq!(
        store.key(&digest).await.unwrap().unwrap().as_bytes(),
        key.as_bytes()
    );
    // Another model gets another key.
    let other = dir.path().join("other.gguf");
    let other_plain = write_model(&other, 10);
    let other_out = dir.path().join("other.sealed");
    let other_sealed = seal_model(&store, &other, &other_out).await.unwrap();
    let other_key = store
        .key(&other_sealed.model_sha256)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(other_key.as_bytes(), key.as_bytes());
    let other_bytes = std::fs::read(&other_out).unwrap();
    assert_eq!(
        &open(&other_key, &other_bytes).unwrap()[..],
        &other_plain[..]
    );
    assert!(open(&key, &other_bytes).is_err());
    store.close().await;
}

#[tokio::test]
async fn nothing_is_overwritten_and_nothing_half_written_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open_file(&dir.path().join("keys.db"))
        .await
        .unwrap();
    let model = dir.path().join("model.gguf");
    write_model(&model, 1000);
    let out = dir.path().join("model.sealed");
    std::fs::write(&out, b"something else").unwrap();
    assert!(seal_model(&store, &model, &out).await.is_err());
    assert_eq!(std::fs::read(&out).unwrap(), b"something else");
    // An empty model is refused, and leaves no file behind.
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let empty_out = dir.path().join("empty.sealed");
    assert!(seal_model(&store, &empty, &empty_out).await.is_err());
    assert!(!empty_out.exists());
    assert!(!dir.path().join("empty.sealed.partial").exists());
    // A model that is not there.
    let missing_out = dir.path().join("missing.sealed");
    assert!(
        seal_model(&store, &dir.path().join("missing.gguf"), &missing_out)
            .await
            .is_err()
    );
    assert!(!missing_out.exists());
    store.close().await;
}

#[test]
fn the_command_prints_the_plaintext_digest_and_writes_the_sealed_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.gguf");
    let plain = write_model(&model, CHUNK_LEN + 1);
    let out = dir.path().join("model.sealed");
    let data = dir.path().join("owner");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_arcane-keyrelease"))
        .arg("--data-dir")
        .arg(&data)
        .arg("seal")
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8(run.stdout).unwrap();
    let digest = hex::encode(Sha256::digest(&plain));
    assert!(
        stdout.contains(&format!("model_sha256 {digest}\n")),
        "{stdout}"
    );
    assert!(out.exists() && data.join("keys.db").exists());
    // Into an existing file: refused, with the reason.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_arcane-keyrelease"))
        .arg("--data-dir")
        .arg(&data)
        .args(["seal", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
}
