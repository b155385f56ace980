//! The gateway's secret keys on disk (0600, refused when group- or world-readable): OHTTP key
//! configurations (derived from 32 bytes of input keying material) and token issuer keys.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use arcane_verifier::tokens::IssuerSecret;
use ohttp::hpke::{Aead, Kdf, Kem};
use ohttp::{KeyConfig, SymmetricSuite};
use zeroize::Zeroizing;

use crate::error::{GatewayError, Result};

fn key_error(path: &Path, why: impl Into<String>) -> GatewayError {
    GatewayError::KeyFile {
        path: path.display().to_string(),
        why: why.into(),
    }
}

/// Writes a new secret file with mode 0600; an existing file is never overwritten.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| key_error(path, e.to_string()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| key_error(path, e.to_string()))
}

/// Reads a secret file, refusing one that others may read.
pub fn read_secret(path: &Path) -> Result<Zeroizing<String>> {
    let meta = std::fs::metadata(path).map_err(|e| key_error(path, e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(key_error(path, "readable by group or others; chmod 600 it"));
    }
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| key_error(path, e.to_string()))
}

/// The symmetric suites every gateway key offers.
pub fn symmetric_suites() -> Vec<SymmetricSuite> {
    vec![
        SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm),
        SymmetricSuite::new(Kdf::HkdfSha256, Aead::ChaCha20Poly1305),
    ]
}

/// Creates an OHTTP key file: `arcane-ohttp-key v1`, the key id and 32 bytes of IKM in hex.
pub fn generate_ohttp_key(path: &Path, key_id: u8) -> Result<KeyConfig> {
    let mut ikm = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut ikm[..]).map_err(|e| key_error(path, e.to_string()))?;
    let text = Zeroizing::new(format!(
        "arcane-ohttp-key v1\nkey_id {key_id}\nikm {}\n",
        hex::encode(&ikm[..])
    ));
    write_secret(path, text.as_bytes())?;
    load_ohttp_key(path)
}

/// Reads an OHTTP key file into a key configuration with its private key.
pub fn load_ohttp_key(path: &Path) -> Result<KeyConfig> {
    let text = read_secret(path)?;
    let mut lines = text.lines();
    if lines.next() != Some("arcane-ohttp-key v1") {
        return Err(key_error(path, "not an arcane OHTTP key file"));
    }
    let key_id: u8 = lines
        .next()
        .and_then(|l| l.strip_prefix("key_id "))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| key_error(path, "bad key_id line"))?;
    let ikm = Zeroizing::new(
        lines
            .next()
            .and_then(|l| l.strip_prefix("ikm "))
            .and_then(|v| hex::decode(v).ok())
            .filter(|v| v.len() == 32)
            .ok_or_else(|| key_error(path, "bad ikm line"))?,
    );
    KeyConfig::derive(key_id, Kem::X25519Sha256, symmetric_suites(), &ikm)
        .map_err(|e| key_error(path, e.to_string()))
}

/// Creates a token issuer key file (PKCS#8 PEM) whose truncated key id (the last byte of its key
/// id, all a token request names its key by — RFC 9578 §6.1) differs from that of every other
/// issuer key file in the same folder: two valid keys sharing it would make the gateway sign
/// some requests with the key they were not blinded to, and those tokens never finalize.
pub fn generate_issuer_key(path: &Path) -> Result<IssuerSecret> {
    let taken = truncated_ids_beside(path);
    if taken.len() >= 256 {
        return Err(key_error(
            path,
            "256 issuer keys beside it already use every truncated key id; remove expired ones",
        ));
    }
    let secret = loop {
        let secret = IssuerSecret::generate()?;
        if !taken.contains(&secret.public().id()[31]) {
            break secret;
        }
    };
    write_secret(path, secret.to_pem()?.as_bytes())?;
    Ok(secret)
}

/// The truncated key ids of the issuer key files in `path`'s folder (other than `path`).
fn truncated_ids_beside(path: &Path) -> std::collections::HashSet<u8> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let Ok(entries) = std::fs::read_dir(dir.unwrap_or(Path::new("."))) else {
        return Default::default();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p != path && p.extension().is_some_and(|x| x == "key"))
        .filter_map(|p| load_issuer_key(&p).ok())
        .map(|k| k.public().id()[31])
        .collect()
}

/// Reads a token issuer key file.
pub fn load_issuer_key(path: &Path) -> Result<IssuerSecret> {
    Ok(IssuerSecret::from_pem(&read_secret(path)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_keys_in_one_folder_never_share_a_truncated_key_id() {
        // 30 keys drawn at random would share one of 256 values with probability 0.83.
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..30 {
            let key = generate_issuer_key(&dir.path().join(format!("tgt-{i}.key"))).unwrap();
            assert!(
                seen.insert(key.public().id()[31]),
                "key {i} repeats a truncated id"
            );
        }
    }
}
