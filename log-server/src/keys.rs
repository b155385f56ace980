//! Key files and the publisher policy file.
//!
//! Secret keys are written in the signed-note signer-key text form, with mode 0600, and refused
//! when group- or world-readable. The policy file lists the publishers this log accepts, one
//! verifier key per line (`#` starts a comment).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use arcane_verifier::note::{ALG_ED25519, NoteSigner, VerifierKey};
use zeroize::Zeroizing;

use crate::error::{LogError, Result};

/// Makes a new Ed25519 signing key from the operating system's randomness.
pub fn generate_signer(name: &str) -> Result<NoteSigner> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *seed).map_err(|e| LogError::Config(format!("no randomness: {e}")))?;
    Ok(NoteSigner::from_seed(name, ALG_ED25519, &seed)?)
}

/// Writes a secret key to a new file with mode 0600 (refuses to overwrite).
pub fn write_secret_key(path: &Path, signer: &NoteSigner) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| LogError::io(path, e))?;
    let mut text = signer.to_secret_text();
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| LogError::io(path, e))?;
    Ok(())
}

/// Reads a secret key, refusing files that others can read.
pub fn read_secret_key(path: &Path) -> Result<NoteSigner> {
    let meta = std::fs::metadata(path).map_err(|e| LogError::io(path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(LogError::Config(format!(
            "{} is readable by group or others; run chmod 600 on it",
            path.display()
        )));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| LogError::io(path, e))?);
    Ok(NoteSigner::parse(text.trim())?)
}

/// The policy file as last read: its modification time, and each key with its text form.
#[derive(Debug, Default)]
struct PolicySnapshot {
    modified: Option<SystemTime>,
    keys: Vec<(String, VerifierKey)>,
}

/// The publishers allowed to submit, reloaded when the policy file changes.
#[derive(Debug)]
pub struct PublisherPolicy {
    path: PathBuf,
    cached: Mutex<PolicySnapshot>,
}

impl PublisherPolicy {
    /// A policy backed by `path` (a missing file means nobody may publish).
    pub fn new(path: PathBuf) -> Self {
        PublisherPolicy {
            path,
            cached: Mutex::default(),
        }
    }

    /// The policy file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The allowed key whose text form is `text`, if any (no parsing of untrusted key text).
    pub fn find(&self, text: &str) -> Result<Option<VerifierKey>> {
        let cached = self.refresh()?;
        Ok(cached
            .keys
            .iter()
            .find(|(t, _)| t == text)
            .map(|(_, k)| k.clone()))
    }

    /// The allowed keys, rereading the file if it changed since the last call.
    pub fn keys(&self) -> Result<Vec<VerifierKey>> {
        Ok(self
            .refresh()?
            .keys
            .iter()
            .map(|(_, k)| k.clone())
            .collect())
    }

    fn refresh(&self) -> Result<std::sync::MutexGuard<'_, PolicySnapshot>> {
        let modified = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.modified().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(LogError::io(&self.path, e)),
        };
        let mut cached = self.cached.lock().expect("policy lock");
        if cached.modified != modified || modified.is_none() {
            let keys = match modified {
                None => Vec::new(),
                Some(_) => parse_policy(
                    &std::fs::read_to_string(&self.path)
                        .map_err(|e| LogError::io(&self.path, e))?,
                )?,
            };
            *cached = PolicySnapshot {
                modified,
                keys: keys.into_iter().map(|k| (k.to_text(), k)).collect(),
            };
        }
        Ok(cached)
    }

    /// Adds a publisher key to the file (idempotent). Returns false if it was already there.
    pub fn allow(&self, key: &VerifierKey) -> Result<bool> {
        if key.algorithm() != ALG_ED25519 {
            return Err(LogError::Config(
                "publisher keys are Ed25519 note keys".into(),
            ));
        }
        let existing = match std::fs::read_to_string(&self.path) {
            Ok(text) => parse_policy(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(LogError::io(&self.path, e)),
        };
        if existing.contains(key) {
            return Ok(false);
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(&self.path)
            .map_err(|e| LogError::io(&self.path, e))?;
        writeln!(file, "{}", key.to_text())
            .and_then(|()| file.sync_all())
            .map_err(|e| LogError::io(&self.path, e))?;
        Ok(true)
    }
}

fn parse_policy(text: &str) -> Result<Vec<VerifierKey>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            VerifierKey::parse(l)
                .map_err(|e| LogError::Config(format!("publisher policy line {l:?}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let signer = generate_signer("pub").unwrap();
        write_secret_key(&path, &signer).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            read_secret_key(&path).unwrap().verifier(),
            signer.verifier()
        );
        assert!(
            write_secret_key(&path, &signer).is_err(),
            "never overwrites"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secret_key(&path).is_err(), "refuses a readable key");
    }

    #[test]
    fn policy_allows_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let policy = PublisherPolicy::new(dir.path().join("publishers"));
        assert!(policy.keys().unwrap().is_empty());
        let key = generate_signer("p1").unwrap().verifier();
        assert!(policy.allow(&key).unwrap());
        assert!(!policy.allow(&key).unwrap());
        assert_eq!(policy.keys().unwrap(), vec![key]);
    }
}
