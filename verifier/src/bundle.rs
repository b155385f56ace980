//! Proof bundles: one self-contained, offline-checkable unit per log entry.
//!
//! A bundle is a C2SP `tlog-proof@v1` text whose `extra` line carries the entry's bytes (base64):
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 entry>
//! index <leaf index>
//! <base64 proof hash>…
//!
//! <the checkpoint note, verbatim, with any cosignatures>
//! ```
//!
//! Generic tlog tools check the proof part given the leaf hash; [`verify_bundle`] checks all of it
//! and returns the typed, validated entry.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::{Checkpoint, VerifiedCheckpoint, verify_checkpoint};
use crate::cosignature::WitnessPolicy;
use crate::entry::{EntryPolicy, SignedEntry};
use crate::merkle::{Hash, leaf_hash};
use crate::note::VerifierKey;
use crate::proof::verify_inclusion;
use crate::{Error, Result};

/// First line of every bundle.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Largest bundle accepted, in bytes.
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;
/// Most proof hashes accepted (a tree of 2^63 leaves needs 63).
const MAX_PROOF_HASHES: usize = 64;

/// A parsed (not yet verified) proof bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofBundle {
    /// The entry's bytes (the log leaf's data).
    pub entry: Vec<u8>,
    /// The leaf index.
    pub index: u64,
    /// The inclusion proof, leaf side first.
    pub proof: Vec<Hash>,
    /// The checkpoint note, verbatim.
    pub checkpoint: String,
}

impl ProofBundle {
    /// The bundle's proof, whoever published its entry: the checkpoint's log signature and
    /// witness policy, and the inclusion proof of the entry's leaf hash in that checkpoint.
    /// Returns the verified checkpoint and the leaf hash.
    pub fn prove(
        &self,
        log_key: &VerifierKey,
        witnesses: &WitnessPolicy,
    ) -> Result<(VerifiedCheckpoint, Hash)> {
        let checkpoint = verify_checkpoint(self.checkpoint.as_bytes(), log_key, witnesses)?;
        let leaf = leaf_hash(&self.entry);
        verify_inclusion(
            self.index,
            checkpoint.checkpoint.size,
            &leaf,
            &self.proof,
            &checkpoint.checkpoint.root,
        )?;
        Ok((checkpoint, leaf))
    }

    /// The bundle's text form.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{TLOG_PROOF_HEADER}\nextra {}\nindex {}\n",
            BASE64.encode(&self.entry),
            self.index
        );
        for hash in &self.proof {
            out.push_str(&BASE64.encode(hash.0));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses the text form strictly (an `extra` line is required: it is the entry).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(Error::MalformedBundle("bundle too large"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| Error::MalformedBundle("not UTF-8"))?;
        let (head, checkpoint) = text.split_once("\n\n").ok_or(Error::MalformedBundle(
            "no blank line before the checkpoint",
        ))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(Error::MalformedBundle(
                "first line must be c2sp.org/tlog-proof@v1",
            ));
        }
        let extra = lines
            .next()
            .and_then(|l| l.strip_prefix("extra "))
            .ok_or(Error::MalformedBundle("missing extra line with the entry"))?;
        let entry = BASE64
            .decode(extra)
            .map_err(|_| Error::MalformedBundle("extra is not valid base64"))?;
        let index_text = lines
            .next()
            .and_then(|l| l.strip_prefix("index "))
            .ok_or(Error::MalformedBundle("missing index line"))?;
        if index_text.is_empty()
            || !index_text.bytes().all(|b| b.is_ascii_digit())
            || (index_text.len() > 1 && index_text.starts_with('0'))
        {
            return Err(Error::MalformedBundle(
                "index must be decimal without leading zeros",
            ));
        }
        let index = index_text
            .parse()
            .map_err(|_| Error::MalformedBundle("index out of range"))?;
        let mut proof = Vec::new();
        for line in lines {
            if proof.len() == MAX_PROOF_HASHES {
                return Err(Error::MalformedBundle("too many proof hashes"));
            }
            let raw = BASE64
                .decode(line)
                .map_err(|_| Error::MalformedBundle("proof line is not valid base64"))?;
            proof.push(
                Hash::from_slice(&raw)
                    .map_err(|_| Error::MalformedBundle("proof hash is not 32 bytes"))?,
            );
        }
        Ok(ProofBundle {
            entry,
            index,
            proof,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

/// What a verifier trusts when it checks a bundle.
#[derive(Clone, Copy, Debug)]
pub struct TrustAnchors<'a> {
    /// The log's verifier key.
    pub log_key: &'a VerifierKey,
    /// The witnesses and how many must cosign.
    pub witnesses: &'a WitnessPolicy,
    /// Publisher keys whose entries are accepted.
    pub publishers: &'a [VerifierKey],
    /// Kind rules.
    pub policy: &'a EntryPolicy,
}

/// The owned form of [`TrustAnchors`], for services that keep what they trust of the log.
#[derive(Clone, Debug)]
pub struct LogTrust {
    /// The log's verifier key.
    pub log_key: VerifierKey,
    /// The witnesses and how many must cosign.
    pub witnesses: WitnessPolicy,
    /// Publisher keys whose entries are accepted.
    pub publishers: Vec<VerifierKey>,
    /// Kind rules.
    pub policy: EntryPolicy,
}

impl LogTrust {
    /// The anchors for [`verify_bundle`].
    pub fn anchors(&self) -> TrustAnchors<'_> {
        TrustAnchors {
            log_key: &self.log_key,
            witnesses: &self.witnesses,
            publishers: &self.publishers,
            policy: &self.policy,
        }
    }
}

/// A bundle that verified: the entry, where it sits, and the checkpoint that vouches for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEntry {
    /// The typed, validated, signed entry.
    pub entry: SignedEntry,
    /// Its leaf index.
    pub index: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// The checkpoint it is included in.
    pub checkpoint: VerifiedCheckpoint,
    /// The publisher that signed it.
    pub publisher: VerifierKey,
}

/// Verifies a proof bundle in one call: the checkpoint's log signature and witness policy, the
/// checkpoint against the caller's `current` one (same size and root, when given), the inclusion
/// proof of the entry's leaf hash, the entry's canonical encoding and publisher signature, its kind
/// rules, and that `now` (seconds since the epoch) lies in its validity window.
pub fn verify_bundle(
    bytes: &[u8],
    anchors: &TrustAnchors<'_>,
    current: Option<&Checkpoint>,
    now: u64,
) -> Result<VerifiedEntry> {
    let bundle = ProofBundle::parse(bytes)?;
    let (checkpoint, leaf) = bundle.prove(anchors.log_key, anchors.witnesses)?;
    if let Some(current) = current {
        let (b, c) = (checkpoint.checkpoint.size, current.size);
        if b < c {
            return Err(Error::StaleCheckpoint {
                bundle: b,
                current: c,
            });
        }
        if b > c {
            return Err(Error::CheckpointAhead {
                bundle: b,
                current: c,
            });
        }
        if checkpoint.checkpoint.root != current.root {
            return Err(Error::ForkedCheckpoint { size: b });
        }
    }
    let entry = SignedEntry::decode(&bundle.entry)?;
    let publisher = entry.verify_signature(anchors.publishers)?.clone();
    anchors.policy.validate(&entry.entry)?;
    entry.entry.check_time(now)?;
    Ok(VerifiedEntry {
        entry,
        index: bundle.index,
        leaf_hash: leaf,
        checkpoint,
        publisher,
    })
}
