//! C2SP checkpoints (`c2sp.org/tlog-checkpoint`): the signed statement of a log's size and root.
//!
//! Body: the origin line, the tree size in decimal without leading zeros, the root hash in standard
//! base64, then optional non-empty extension lines, each ending in a newline.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::cosignature::{VerifiedCosignature, WitnessPolicy};
use crate::merkle::Hash;
use crate::note::{Note, NoteSigner, VerifierKey};
use crate::{Error, Result};

/// The body of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin: a schema-less URL naming it.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
    /// Extension lines, without their newlines.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Parses a checkpoint body (the note text).
    pub fn parse_body(text: &str) -> Result<Self> {
        let body = text
            .strip_suffix('\n')
            .ok_or(Error::MalformedCheckpoint("body must end in a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(Error::MalformedCheckpoint("empty origin line"));
        }
        let size_line = lines
            .next()
            .ok_or(Error::MalformedCheckpoint("missing tree size line"))?;
        let size = parse_decimal(size_line)?;
        let root_line = lines
            .next()
            .ok_or(Error::MalformedCheckpoint("missing root hash line"))?;
        let root_bytes = BASE64
            .decode(root_line)
            .map_err(|_| Error::MalformedCheckpoint("root hash is not valid base64"))?;
        let root = Hash::from_slice(&root_bytes)
            .map_err(|_| Error::MalformedCheckpoint("root hash is not 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(Error::MalformedCheckpoint("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The body text.
    pub fn to_body(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root.0)
        );
        for line in &self.extensions {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Signs the body with the log key, giving the note.
    pub fn sign(&self, log_key: &NoteSigner) -> Result<Note> {
        if log_key.name() != self.origin {
            return Err(Error::WrongOrigin {
                expected: log_key.name().to_owned(),
                found: self.origin.clone(),
            });
        }
        log_key.sign_note(&self.to_body())
    }
}

fn parse_decimal(text: &str) -> Result<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return Err(Error::MalformedCheckpoint(
            "tree size must be decimal without leading zeros",
        ));
    }
    text.parse()
        .map_err(|_| Error::MalformedCheckpoint("tree size out of range"))
}

/// A checkpoint whose log signature and witness policy have been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The checkpoint body.
    pub checkpoint: Checkpoint,
    /// The note, as received.
    pub note: Note,
    /// The witness cosignatures that verified.
    pub cosignatures: Vec<VerifiedCosignature>,
}

/// Verifies a signed checkpoint: the log's Ed25519 signature (whose key name must equal the origin),
/// then the witness policy. Returns the parsed checkpoint only when both pass.
pub fn verify_checkpoint(
    note_bytes: &[u8],
    log_key: &VerifierKey,
    witnesses: &WitnessPolicy,
) -> Result<VerifiedCheckpoint> {
    let note = Note::parse(note_bytes)?;
    let checkpoint = Checkpoint::parse_body(&note.text)?;
    if checkpoint.origin != log_key.name() {
        return Err(Error::WrongOrigin {
            expected: log_key.name().to_owned(),
            found: checkpoint.origin,
        });
    }
    note.verify(std::slice::from_ref(log_key))?;
    let cosignatures = witnesses.check(&note)?;
    Ok(VerifiedCheckpoint {
        checkpoint,
        note,
        cosignatures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;
    use crate::note::ALG_ED25519;

    #[test]
    fn body_round_trip_with_extensions() {
        let mut c = Checkpoint::new("example.com/log", 42, leaf_hash(b"x"));
        c.extensions.push("ext line".into());
        assert_eq!(Checkpoint::parse_body(&c.to_body()).unwrap(), c);
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        let root = BASE64.encode([0u8; 32]);
        for bad in [
            String::new(),
            format!("o\n1\n{root}"),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nAAAA\n".to_owned(),
            format!("o\n1\n{root}\n\n"),
            "o\n1\n".to_owned(),
        ] {
            assert!(Checkpoint::parse_body(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn verify_requires_log_signature_and_origin() {
        let key = NoteSigner::from_seed("example.com/log", ALG_ED25519, &[3; 32]).unwrap();
        let c = Checkpoint::new("example.com/log", 5, leaf_hash(b"y"));
        let note = c.sign(&key).unwrap().to_text();
        let policy = WitnessPolicy::none();
        let verified = verify_checkpoint(note.as_bytes(), &key.verifier(), &policy).unwrap();
        assert_eq!(verified.checkpoint, c);

        let other = NoteSigner::from_seed("example.com/other", ALG_ED25519, &[3; 32]).unwrap();
        assert!(matches!(
            verify_checkpoint(note.as_bytes(), &other.verifier(), &policy),
            Err(Error::WrongOrigin { .. })
        ));
        assert!(c.sign(&other).is_err());
    }
}
