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
    /// `answered` or `interrupted`.
    pub outcome: String,
    /// Tokens generated, as the node reported.
    pub completion_tokens: u64,
    /// Every check this request passed before it was sealed, in order (the verification
    /// record; absent in receipts written before it was kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::checks::Passed>,
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
