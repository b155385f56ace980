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

use arcane_verifier::entry::{
    KIND_MODEL_ACCESS, KIND_OHTTP_KEYS, KIND_RELEASE, KIND_TOKEN_KEY, kind_code, kind_name,
};
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

/// What one publisher may publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedKinds {
    /// Typed entry kinds (codes).
    pub typed: Vec<u8>,
    /// Whether arbitrary (untyped) entries are accepted from this publisher.
    pub opaque: bool,
}

impl AllowedKinds {
    /// Every typed kind, no opaque entries: the default for `publisher allow`.
    pub fn all_typed() -> Self {
        AllowedKinds {
            typed: vec![
                KIND_RELEASE,
                KIND_OHTTP_KEYS,
                KIND_TOKEN_KEY,
                KIND_MODEL_ACCESS,
            ],
            opaque: false,
        }
    }

    /// Parses `release,ohttp-keys,token-key,model-access,opaque` (any non-empty subset).
    pub fn parse(list: &str) -> Result<Self> {
        let mut allowed = AllowedKinds {
            typed: Vec::new(),
            opaque: false,
        };
        for name in list.split(',') {
            match (name, kind_code(name)) {
                ("opaque", _) => allowed.opaque = true,
                (_, Some(code)) if !allowed.typed.contains(&code) => allowed.typed.push(code),
                _ => {
                    return Err(LogError::Config(format!(
                        "unknown or repeated kind {name:?} (known: release, ohttp-keys, token-key, \
                         model-access, opaque)"
                    )));
                }
            }
        }
        Ok(allowed)
    }

    /// The comma-separated form.
    pub fn to_text(&self) -> String {
        let mut names: Vec<String> = self.typed.iter().map(|k| kind_name(*k)).collect();
        if self.opaque {
            names.push("opaque".into());
        }
        names.join(",")
    }
}

/// The policy file as last read: its modification time, and each key with its text form.
#[derive(Debug, Default)]
struct PolicySnapshot {
    /// Modification time, inode and length: file timestamps are coarser than fast rewrites, and a
    /// rewrite (by rename) always brings a new inode.
    modified: Option<(SystemTime, u64, u64)>,
    keys: Vec<(String, VerifierKey, AllowedKinds)>,
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

    /// The allowed key whose text form is `text`, and what it may publish (no parsing of
    /// untrusted key text).
    pub fn find(&self, text: &str) -> Result<Option<(VerifierKey, AllowedKinds)>> {
        let cached = self.refresh()?;
        Ok(cached
            .keys
            .iter()
            .find(|(t, _, _)| t == text)
            .map(|(_, k, a)| (k.clone(), a.clone())))
    }

    /// The allowed keys, rereading the file if it changed since the last call.
    pub fn keys(&self) -> Result<Vec<VerifierKey>> {
        Ok(self
            .refresh()?
            .keys
            .iter()
            .map(|(_, k, _)| k.clone())
            .collect())
    }

    fn refresh(&self) -> Result<std::sync::MutexGuard<'_, PolicySnapshot>> {
        let modified = match std::fs::metadata(&self.path) {
            Ok(meta) => Some((
                meta.modified().map_err(|e| LogError::io(&self.path, e))?,
                std::os::unix::fs::MetadataExt::ino(&meta),
                meta.len(),
            )),
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
                keys: keys.into_iter().map(|(k, a)| (k.to_text(), k, a)).collect(),
            };
        }
        Ok(cached)
    }

    /// Allows a publisher key to publish `kinds`, replacing what it was allowed before. Returns
    /// false if nothing changed. The file is rewritten atomically.
    pub fn allow(&self, key: &VerifierKey, kinds: &AllowedKinds) -> Result<bool> {
        if key.algorithm() != ALG_ED25519 {
            return Err(LogError::Config(
                "publisher keys are Ed25519 note keys".into(),
            ));
        }
        let mut entries = match std::fs::read_to_string(&self.path) {
            Ok(text) => parse_policy(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(LogError::io(&self.path, e)),
        };
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, existing)) if existing == kinds => return Ok(false),
            Some((_, existing)) => *existing = kinds.clone(),
            None => entries.push((key.clone(), kinds.clone())),
        }
        let mut text =
            String::from("# Publishers allowed to submit to this log: <verifier key> <kinds>\n");
        for (key, kinds) in &entries {
            text.push_str(&format!("{} {}\n", key.to_text(), kinds.to_text()));
        }
        let temporary = self.path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temporary)
            .map_err(|e| LogError::io(&temporary, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| LogError::io(&temporary, e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| LogError::io(&self.path, e))?;
        Ok(true)
    }
}

/// Policy lines: `<verifier key>` (every typed kind) or `<verifier key> <kind>,<kind>…`.
fn parse_policy(text: &str) -> Result<Vec<(VerifierKey, AllowedKinds)>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut fields = line.split_whitespace();
            let key = fields.next().unwrap_or_default();
            let key = VerifierKey::parse(key)
                .map_err(|e| LogError::Config(format!("publisher policy line {line:?}: {e}")))?;
            let kinds = match (fields.next(), fields.next()) {
                (None, _) => AllowedKinds::all_typed(),
                (Some(list), None) => AllowedKinds::parse(list)?,
                _ => {
                    return Err(LogError::Config(format!(
                        "publisher policy line {line:?}: too many fields"
                    )));
                }
            };
            Ok((key, kinds))
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
        let all = AllowedKinds::all_typed();
        assert!(policy.allow(&key, &all).unwrap());
        assert!(!policy.allow(&key, &all).unwrap());
        assert_eq!(policy.keys().unwrap(), vec![key.clone()]);
        let releases = AllowedKinds::parse("release").unwrap();
        assert!(policy.allow(&key, &releases).unwrap());
        assert_eq!(policy.find(&key.to_text()).unwrap().unwrap().1, releases);
        assert_eq!(
            AllowedKinds::parse("token-key,opaque").unwrap().to_text(),
            "token-key,opaque"
        );
        assert!(AllowedKinds::parse("release,release").is_err());
        assert!(AllowedKinds::parse("nonsense").is_err());
    }
}
