//! The receipt log: for each answered request, which checkpoint, release entry and node
//! attestation served it (hashes only — never the prompt or the answer), one JSON object per
//! line in `receipts.jsonl`, so a user or an auditor can check afterwards that the release was
//! logged and the checkpoint is consistent with everyone else's.

use serde::{Deserialize, Serialize};

use crate::error::{ClientError, Result};
use crate::state::{RECEIPTS_FILE, StateDir};

/// One request's receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// When the answer ended, milliseconds since the epoch.
    pub at_ms: u64,
    /// The model name asked for.
    pub model: String,
    /// The log's origin.
    pub log_origin: String,
    /// The tree size of the client's checkpoint when it sent the request.
    pub checkpoint_size: u64,
    /// Its root hash, hex.
    pub checkpoint_root: String,
    /// The release entry's leaf index.
    pub release_index: u64,
    /// The release entry's leaf hash, hex.
    pub release_leaf_hash: String,
    /// SHA-256 of the model file the release names, hex.
    pub model_sha256: String,
    /// SHA-256 of the node's attestation document, hex.
    pub document_sha256: String,
    /// SHA-256 of the node's REK (the key id in the wrapped DEK), hex.
    pub rek_id: String,
    /// When the node's document was signed, milliseconds since the epoch.
    pub attested_at_ms: u64,
    /// How many verified candidates the request named.
    pub candidates: usize,
    /// How many nodes computed the answer, as the answering node's document attests: 1, or the
    /// size of the ensemble it leads (`spec/compute.md` §7.4).
    #[serde(default = "one_member", skip_serializing_if = "is_one_member")]
    pub ensemble_members: u8,
    /// `answered` or `interrupted`.
    pub outcome: String,
    /// Tokens generated, as the node reported.
    pub completion_tokens: u64,
    /// Every check this request passed before it was sealed, in order (the verification
    /// record; absent in receipts written before it was kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::checks::Passed>,
    /// The node's signed statement about this answer (request, answer, model, its release
    /// entry's proof bundle and its document), checked before the receipt was written; what
    /// `arcane-audit receipt verify` checks with the log's key and the Nitro root alone. Absent
    /// for interrupted answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_answer: Option<arcane_verifier::signed_answer::SignedAnswer>,
}

fn one_member() -> u8 {
    1
}

fn is_one_member(members: &u8) -> bool {
    *members == 1
}

/// Appends a receipt.
pub fn append(state: &StateDir, receipt: &Receipt) -> Result<()> {
    let line = serde_json::to_string(receipt).expect("receipt JSON");
    state.append_line(RECEIPTS_FILE, &line)
}

/// Every receipt in `state`, oldest first.
pub fn read_all(state: &StateDir) -> Result<Vec<Receipt>> {
    let path = state.file(RECEIPTS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ClientError::State {
                path,
                reason: e.to_string(),
            });
        }
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| ClientError::State {
                path: path.clone(),
                reason: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// One re-check of a receipt against the log, as a verification center shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Recheck {
    /// What was checked.
    pub check: &'static str,
    /// Whether it held; `None`: the receipt does not carry what it needs.
    pub passed: Option<bool>,
    /// What was found.
    pub detail: String,
}

/// What the log answered for a receipt's re-check: the consistency proof from the receipt's
/// checkpoint to `current` (absent when the sizes are equal), the release entry's inclusion
/// proof in the receipt's tree, and the entry's bytes.
pub struct LogEvidence<'a> {
    /// The newest checkpoint the checker verified itself.
    pub current: &'a arcane_verifier::checkpoint::Checkpoint,
    /// Consistency proof, receipt size → current size.
    pub consistency: &'a [arcane_verifier::Hash],
    /// Inclusion proof of the release entry at the receipt's tree size.
    pub inclusion: &'a [arcane_verifier::Hash],
    /// The entry at the receipt's release index.
    pub entry: &'a [u8],
}

/// Re-runs what can be re-run of a receipt from the log alone: its checkpoint is a state of the
/// log (consistent with a checkpoint the caller verified), its release entry is in that tree,
/// is a release signed by a trusted publisher, names the model digest, and was valid when the
/// node's document was signed. The node's document is not in a receipt (only its digest): that
/// check is reported as not re-checkable.
pub fn recheck(
    receipt: &Receipt,
    log: &arcane_verifier::bundle::LogTrust,
    evidence: &LogEvidence<'_>,
) -> Vec<Recheck> {
    use arcane_verifier::Hash;
    use arcane_verifier::entry::{EntryBody, SignedEntry};
    let mut out = Vec::new();
    let mut push = |check, passed: Result<String, String>| {
        let (passed, detail) = match passed {
            Ok(d) => (Some(true), d),
            Err(d) => (Some(false), d),
        };
        out.push(Recheck {
            check,
            passed,
            detail,
        });
    };
    let current = evidence.current;
    let root = Hash::from_hex(&receipt.checkpoint_root);
    push(
        "origin",
        if receipt.log_origin == current.origin {
            Ok(format!("the receipt names this log, {}", current.origin))
        } else {
            Err(format!(
                "the receipt names the log {:?}, this is {:?}",
                receipt.log_origin, current.origin
            ))
        },
    );
    let history = match &root {
        Err(_) => Err("the receipt's root is not a hash".to_owned()),
        Ok(_) if receipt.checkpoint_size > current.size => Err(format!(
            "the receipt's tree (size {}) is newer than the verified checkpoint (size {}): reload",
            receipt.checkpoint_size, current.size
        )),
        Ok(root) if receipt.checkpoint_size == current.size => {
            if *root == current.root {
                Ok(format!(
                    "the receipt's tree is the verified checkpoint (size {})",
                    current.size
                ))
            } else {
                Err(format!(
                    "the log signed another root for size {}: a split view",
                    current.size
                ))
            }
        }
        Ok(root) => arcane_verifier::proof::verify_consistency(
            receipt.checkpoint_size,
            current.size,
            root,
            &current.root,
            evidence.consistency,
        )
        .map(|()| {
            format!(
                "the receipt's tree (size {}) is extended by the verified checkpoint (size {})",
                receipt.checkpoint_size, current.size
            )
        })
        .map_err(|e| format!("the receipt's tree is not in this log's history: {e}")),
    };
    let in_history = history.is_ok();
    push("checkpoint", history);
    let leaf = arcane_verifier::merkle::leaf_hash(evidence.entry);
    let included = match (&root, Hash::from_hex(&receipt.release_leaf_hash)) {
        (Ok(root), Ok(claimed)) if claimed == leaf => arcane_verifier::proof::verify_inclusion(
            receipt.release_index,
            receipt.checkpoint_size,
            &leaf,
            evidence.inclusion,
            root,
        )
        .map(|()| {
            format!(
                "entry {} is in the receipt's tree{}",
                receipt.release_index,
                if in_history {
                    ""
                } else {
                    " (but that tree is not this log's)"
                }
            )
        })
        .map_err(|e| format!("entry {}: {e}", receipt.release_index)),
        (Ok(_), Ok(_)) => Err(format!(
            "the log's entry {} is not the receipt's release (leaf hash {leaf})",
            receipt.release_index
        )),
        _ => Err("the receipt's hashes are not hashes".to_owned()),
    };
    push("release-inclusion", included);
    let release = match SignedEntry::decode(evidence.entry) {
        Ok(signed) => match &signed.entry.body {
            EntryBody::Release(r) => {
                let publisher = signed
                    .verify_signature(&log.publishers)
                    .map(|k| format!("signed by {}", k.name()))
                    .map_err(|e| format!("not signed by a trusted publisher: {e}"));
                push("release-publisher", publisher);
                let model = if hex::encode(r.model_sha256) == receipt.model_sha256 {
                    Ok(format!("the release names model {}", receipt.model_sha256))
                } else {
                    Err(format!(
                        "the release names model {}, the receipt {}",
                        hex::encode(r.model_sha256),
                        receipt.model_sha256
                    ))
                };
                push("model", model);
                let at = receipt.attested_at_ms / 1000;
                let when = if (signed.entry.not_before..signed.entry.not_after).contains(&at) {
                    Ok(format!(
                        "valid from {} to {}, the document was signed at {at}",
                        signed.entry.not_before, signed.entry.not_after
                    ))
                } else {
                    Err(format!(
                        "valid from {} to {}, but the document was signed at {at}",
                        signed.entry.not_before, signed.entry.not_after
                    ))
                };
                ("release-validity", when)
            }
            _ => (
                "release-entry",
                Err(format!(
                    "entry {} is a {} entry, not a release",
                    receipt.release_index,
                    signed.entry.body.kind_name()
                )),
            ),
        },
        Err(e) => (
            "release-entry",
            Err(format!("entry {}: {e}", receipt.release_index)),
        ),
    };
    push(release.0, release.1);
    out.push(Recheck {
        check: "attestation",
        passed: None,
        detail: format!(
            "the node's document (SHA-256 {}) is not in the receipt; its checks are in the \
             client's record below",
            receipt.document_sha256
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arcane_verifier::bundle::LogTrust;
    use arcane_verifier::checkpoint::Checkpoint;
    use arcane_verifier::cosignature::WitnessPolicy;
    use arcane_verifier::entry::{Entry, EntryBody, EntryPolicy, PublisherId, Release};
    use arcane_verifier::merkle::{leaf_hash, root_from_leaf_hashes};
    use arcane_verifier::note::{ALG_ED25519, NoteSigner};
    use arcane_verifier::proof::{consistency_proof, inclusion_proof};

    /// A log of five leaves whose leaf 1 is a release; a receipt for it at size 3.
    fn setup() -> (Receipt, LogTrust, Vec<Vec<u8>>) {
        let publisher = NoteSigner::from_seed("op.example", ALG_ED25519, &[1; 32]).unwrap();
        let log = NoteSigner::from_seed("log.example", ALG_ED25519, &[2; 32]).unwrap();
        let release = Entry {
            not_before: 1_000,
            not_after: 2_000,
            publisher: PublisherId::of(publisher.verifier().public_key()),
            body: EntryBody::Release(Box::new(Release {
                pcr0: [1; 48],
                pcr1: [2; 48],
                pcr2: [3; 48],
                pcr8: None,
                model_sha256: [7; 32],
                engine: "mistral.rs".into(),
                engine_version: "0.8".into(),
                source_commit: "abc".into(),
                eif_sha384: [4; 48],
                notes: String::new(),
            })),
        }
        .sign(&publisher)
        .unwrap();
        let leaves = vec![
            b"a".to_vec(),
            release.as_bytes().to_vec(),
            b"c".to_vec(),
            b"d".to_vec(),
            b"e".to_vec(),
        ];
        let hashes: Vec<_> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let receipt = Receipt {
            at_ms: 1_500_500,
            model: "m".into(),
            log_origin: "log.example".into(),
            checkpoint_size: 3,
            checkpoint_root: root_from_leaf_hashes(&hashes[..3]).to_hex(),
            release_index: 1,
            release_leaf_hash: hashes[1].to_hex(),
            model_sha256: hex::encode([7; 32]),
            document_sha256: hex::encode([9; 32]),
            rek_id: String::new(),
            attested_at_ms: 1_500_000,
            ensemble_members: 1,
            candidates: 1,
            outcome: "answered".into(),
            completion_tokens: 3,
            checks: Vec::new(),
            signed_answer: None,
        };
        let trust = LogTrust {
            log_key: log.verifier(),
            witnesses: WitnessPolicy::none(),
            publishers: vec![publisher.verifier()],
            policy: EntryPolicy::default(),
        };
        (receipt, trust, leaves)
    }

    fn run(
        receipt: &Receipt,
        trust: &LogTrust,
        leaves: &[Vec<u8>],
        entry: &[u8],
    ) -> Vec<(&'static str, Option<bool>)> {
        let hashes: Vec<_> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let sub =
            |s: u64, e: u64| Ok::<_, ()>(root_from_leaf_hashes(&hashes[s as usize..e as usize]));
        let current = Checkpoint::new("log.example", 5, root_from_leaf_hashes(&hashes));
        let consistency = consistency_proof(3, 5, sub).unwrap();
        let inclusion = inclusion_proof(1, 3, sub).unwrap();
        recheck(
            receipt,
            trust,
            &LogEvidence {
                current: &current,
                consistency: &consistency,
                inclusion: &inclusion,
                entry,
            },
        )
        .into_iter()
        .map(|r| (r.check, r.passed))
        .collect()
    }

    #[test]
    fn a_true_receipt_passes_every_recheck_but_the_document_it_does_not_carry() {
        let (receipt, trust, leaves) = setup();
        let results = run(&receipt, &trust, &leaves, &leaves[1]);
        assert_eq!(
            results,
            vec![
                ("origin", Some(true)),
                ("checkpoint", Some(true)),
                ("release-inclusion", Some(true)),
                ("release-publisher", Some(true)),
                ("model", Some(true)),
                ("release-validity", Some(true)),
                ("attestation", None),
            ]
        );
    }

    #[test]
    fn each_lie_in_a_receipt_fails_its_own_recheck() {
        let (receipt, trust, leaves) = setup();
        let failed = |r: &Receipt, entry: &[u8]| -> Vec<&'static str> {
            run(r, &trust, &leaves, entry)
                .into_iter()
                .filter(|(_, p)| *p == Some(false))
                .map(|(c, _)| c)
                .collect()
        };
        let mut model = receipt.clone();
        model.model_sha256 = hex::encode([8; 32]);
        assert_eq!(failed(&model, &leaves[1]), vec!["model"]);
        let mut root = receipt.clone();
        root.checkpoint_root = leaf_hash(b"other").to_hex();
        assert_eq!(
            failed(&root, &leaves[1]),
            vec!["checkpoint", "release-inclusion"]
        );
        let mut late = receipt.clone();
        late.attested_at_ms = 2_000_000;
        assert_eq!(failed(&late, &leaves[1]), vec!["release-validity"]);
        let mut origin = receipt.clone();
        origin.log_origin = "other.example".into();
        assert_eq!(failed(&origin, &leaves[1]), vec!["origin"]);
        // The log answering with another entry at that index.
        assert_eq!(
            failed(&receipt, b"c"),
            vec!["release-inclusion", "release-entry"]
        );
    }
}
