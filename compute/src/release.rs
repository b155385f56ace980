//! Finding the node's own `release` entry in the log, and keeping its proof current.
//!
//! Everything the log returns is verified here before use (checkpoint signature, witness policy,
//! inclusion proof, publisher signature, entry rules, validity window), so the transport to the
//! log needs no trust of its own.

use arcane_log_client::LogClient;
use arcane_verifier::bundle::{VerifiedEntry, verify_bundle};
use arcane_verifier::entry::EntryBody;

use crate::error::{ComputeError, Result};

pub use arcane_verifier::bundle::LogTrust;

/// The node's own measurements, read from a document its attestation provider produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnMeasurements {
    /// PCR0.
    pub pcr0: Vec<u8>,
    /// PCR1.
    pub pcr1: Vec<u8>,
    /// PCR2.
    pub pcr2: Vec<u8>,
    /// PCR8 (all zero when the image is unsigned).
    pub pcr8: Option<Vec<u8>>,
}

/// A verified entry (the node's release, or a token key) with its proof bundle text.
#[derive(Clone, Debug)]
pub struct ProvenEntry {
    /// The bundle as the log served it.
    pub bundle: String,
    /// The verified entry.
    pub verified: VerifiedEntry,
}

/// The log the node reads its proofs from (through `arcane-log-client`).
#[derive(Clone, Debug)]
pub struct LogSource {
    client: LogClient,
}

impl LogSource {
    /// A source for the log at `base` (for example `http://127.0.0.1:8740`).
    pub fn new(base: &str) -> Result<Self> {
        let client = LogClient::new(base).map_err(|e| ComputeError::Log(e.to_string()))?;
        Ok(LogSource { client })
    }

    /// Every currently valid entry of `kind` whose bundle verifies (others are skipped).
    pub async fn bundles_of_kind(
        &self,
        trust: &LogTrust,
        kind: &str,
        now: u64,
    ) -> Result<Vec<ProvenEntry>> {
        let reply = self
            .client
            .bundles_of_kind(kind, None)
            .await
            .map_err(|e| ComputeError::Log(e.to_string()))?;
        Ok(reply
            .bundles
            .into_iter()
            .filter_map(|bundle| {
                let verified =
                    verify_bundle(bundle.as_bytes(), &trust.anchors(), None, now).ok()?;
                Some(ProvenEntry { bundle, verified })
            })
            .collect())
    }

    /// Finds the valid `release` entry whose PCRs equal `own` and whose model digest equals
    /// `model_sha256` (of several, the one valid longest). The error names what is missing: no release for these PCRs at all, or
    /// releases for them that name another model.
    pub async fn find_release(
        &self,
        trust: &LogTrust,
        own: &OwnMeasurements,
        model_sha256: &[u8; 32],
        now: u64,
    ) -> Result<ProvenEntry> {
        let pcr0: [u8; 48] = own.pcr0.as_slice().try_into().map_err(|_| {
            ComputeError::NoRelease(format!("PCR0 is {} bytes, not 48", own.pcr0.len()))
        })?;
        let reply = self
            .client
            .bundles_of_kind("release", Some(&pcr0))
            .await
            .map_err(|e| ComputeError::Log(e.to_string()))?;
        let mut other_models = Vec::new();
        let mut rejected = Vec::new();
        // Of several valid releases for this node (a rotation), the one valid longest.
        let mut best: Option<ProvenEntry> = None;
        for bundle in reply.bundles {
            let verified = match verify_bundle(bundle.as_bytes(), &trust.anchors(), None, now) {
                Ok(v) => v,
                Err(e) => {
                    rejected.push(e.to_string());
                    continue;
                }
            };
            let EntryBody::Release(r) = &verified.entry.entry.body else {
                continue;
            };
            let pcrs_match = r.pcr0[..] == own.pcr0[..]
                && r.pcr1[..] == own.pcr1[..]
                && r.pcr2[..] == own.pcr2[..]
                && r.pcr8
                    .as_ref()
                    .is_none_or(|p| own.pcr8.as_deref() == Some(&p[..]));
            if !pcrs_match {
                continue;
            }
            if r.model_sha256 != *model_sha256 {
                other_models.push(hex::encode(r.model_sha256));
                continue;
            }
            let later = best
                .as_ref()
                .is_none_or(|b| verified.entry.entry.not_after > b.verified.entry.entry.not_after);
            if later {
                best = Some(ProvenEntry { bundle, verified });
            }
        }
        if let Some(found) = best {
            return Ok(found);
        }
        let mut why = if other_models.is_empty() {
            format!(
                "no valid release entry for PCR0 {} (with this PCR1/PCR2/PCR8) is in the log",
                hex::encode(&own.pcr0)
            )
        } else {
            format!(
                "the release entries for these PCRs name model sha256 {}, but the model file's \
                 sha256 is {}",
                other_models.join(", "),
                hex::encode(model_sha256)
            )
        };
        if !rejected.is_empty() {
            why.push_str(&format!(
                "; {} bundle(s) did not verify: {}",
                rejected.len(),
                rejected.join("; ")
            ));
        }
        Err(ComputeError::NoRelease(why))
    }

    /// The newest proof of the release with leaf hash `leaf_hash`, verified; it must be proven
    /// in a tree at least as large as `at_least`.
    pub async fn refresh_release(
        &self,
        trust: &LogTrust,
        leaf_hash: &arcane_verifier::Hash,
        at_least: u64,
        now: u64,
    ) -> Result<ProvenEntry> {
        let bundle = self
            .client
            .bundle_by_hash(&leaf_hash.to_hex())
            .await
            .map_err(|e| ComputeError::Log(e.to_string()))?;
        let verified = verify_bundle(bundle.as_bytes(), &trust.anchors(), None, now)?;
        if verified.leaf_hash != *leaf_hash {
            return Err(ComputeError::Log(
                "the log returned a bundle for another entry".into(),
            ));
        }
        if verified.checkpoint.checkpoint.size < at_least {
            return Err(ComputeError::Log(format!(
                "the log went back from size {at_least} to {}",
                verified.checkpoint.checkpoint.size
            )));
        }
        Ok(ProvenEntry { bundle, verified })
    }
}
