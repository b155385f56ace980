//! The client's state on disk, per user and per log: the last verified checkpoint, evidence of
//! split views, the token wallet and the receipt log. Folders are 0700, files 0600, and every
//! file is replaced atomically (written beside, synced, renamed) so a crash leaves the old or the
//! new contents, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

use arcane_verifier::note::VerifierKey;
use arcane_verifier::timeline::Fork;

use crate::error::{ClientError, Result};

/// The saved checkpoint note.
const CHECKPOINT_FILE: &str = "checkpoint";
/// Pairs of checkpoints that do not extend each other.
const EVIDENCE_DIR: &str = "evidence";
/// Tokens.
pub const WALLET_FILE: &str = "wallet.json";
/// One JSON receipt per line.
pub const RECEIPTS_FILE: &str = "receipts.jsonl";

/// The default state folder: `$ARCANE_STATE_DIR`, else `$XDG_STATE_HOME/arcane`, else
/// `~/.local/state/arcane`.
pub fn default_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ARCANE_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("arcane");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/arcane")
}

/// One log's state folder.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

fn state_error(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::State {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| state_error(dir, e))
}

/// Replaces `path` with `bytes` atomically, mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(|e| state_error(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| state_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| state_error(path, e))?;
    // The rename is durable only once the folder itself is on disk: without this a power loss
    // can bring back the previous file (an older saved checkpoint would hide a split view).
    sync_parent(path)
}

/// Flushes the folder holding `path`, so a rename or a new file in it survives a power loss.
pub fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| state_error(parent, e))
}

impl StateDir {
    /// The folder for the log with `log_key` under `root` (created 0700): one per log name and
    /// key id, so trusting another log never mixes their checkpoints.
    pub fn open(root: &Path, log_key: &VerifierKey) -> Result<StateDir> {
        let name: String = log_key
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = root.join(format!("{name}-{:08x}", log_key.key_id()));
        create_private_dir(&dir)?;
        Ok(StateDir { dir })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A file in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The last verified checkpoint note, if any.
    pub fn saved_checkpoint(&self) -> Result<Option<String>> {
        let path = self.file(CHECKPOINT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state_error(&path, e)),
        }
    }

    /// Saves a verified checkpoint note.
    pub fn save_checkpoint(&self, note: &str) -> Result<()> {
        write_private(&self.file(CHECKPOINT_FILE), note.as_bytes())
    }

    /// Keeps the evidence of a fork (the saved and the shown signed note, and why they
    /// conflict) in the layout of [`arcane_verifier::timeline::Fork::evidence`]; returns its
    /// folder.
    pub fn save_evidence(&self, fork: &Fork, saved: &str, shown: &str) -> Result<PathBuf> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let dir = self.dir.join(EVIDENCE_DIR).join(format!(
            "{}-{:09}",
            now.as_secs(),
            now.subsec_nanos()
        ));
        create_private_dir(&dir)?;
        for (name, bytes) in fork.evidence(saved, shown) {
            write_private(&dir.join(name), &bytes)?;
        }
        Ok(dir)
    }

    /// Appends one line to a 0600 file.
    pub fn append_line(&self, name: &str, line: &str) -> Result<()> {
        let path = self.file(name);
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(|e| state_error(&path, e))?;
        file.write_all(format!("{line}\n").as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| state_error(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let key = arcane_verifier::note::NoteSigner::from_seed("log.example/a:b", 1, &[1; 32])
            .unwrap()
            .verifier();
        let state = StateDir::open(dir.path(), &key).unwrap();
        assert!(
            state
                .path()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("log.example_a_b-")
        );
        assert_eq!(state.saved_checkpoint().unwrap(), None);
        state.save_checkpoint("one").unwrap();
        state.save_checkpoint("two").unwrap();
        assert_eq!(state.saved_checkpoint().unwrap().as_deref(), Some("two"));
        state.append_line("log.jsonl", "a").unwrap();
        state.append_line("log.jsonl", "b").unwrap();
        assert_eq!(
            std::fs::read_to_string(state.file("log.jsonl")).unwrap(),
            "a\nb\n"
        );
        let head = |size| arcane_verifier::timeline::TreeHead {
            size,
            root: arcane_verifier::Hash([size as u8; 32]),
        };
        let fork = Fork {
            accepted: head(3),
            shown: arcane_verifier::timeline::TreeHead {
                root: arcane_verifier::Hash([9; 32]),
                ..head(3)
            },
            reason: arcane_verifier::timeline::ForkReason::TwoRoots,
        };
        let evidence = state.save_evidence(&fork, "old", "new").unwrap();
        assert_eq!(
            std::fs::read_to_string(evidence.join("shown.checkpoint")).unwrap(),
            "new"
        );
        assert!(
            std::fs::read_to_string(evidence.join("reason.txt"))
                .unwrap()
                .starts_with("two different roots for tree size 3")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&state.file("checkpoint")), 0o600);
            assert_eq!(mode(&state.file("log.jsonl")), 0o600);
            assert_eq!(mode(&evidence.join("saved.checkpoint")), 0o600);
            assert_eq!(mode(state.path()), 0o700);
        }
        assert!(!state.file("checkpoint.tmp").exists());
    }
}
