//! `receipt verify`: a client's receipts checked offline, with the log's key and the Nitro root
//! alone ([`arcane_verifier::signed_answer::verify_receipt_evidence`]): the release entry is in a
//! checkpoint the log signed, the node's document chains to the root and binds that release,
//! its model and the node's answer key, and the node signed the statement naming the request,
//! the answer, the model, the release and the document.

use arcane_verifier::nitro::{NitroRoot, RootKind};
use arcane_verifier::note::VerifierKey;
use arcane_verifier::signed_answer::{SignedAnswer, verify_receipt_evidence};

/// What a receipt carries for the check (other fields are the client's own record).
#[derive(serde::Deserialize)]
struct ReceiptEvidence {
    outcome: String,
    signed_answer: Option<SignedAnswer>,
}

/// One receipt's outcome.
#[derive(Debug, serde::Serialize)]
pub struct ReceiptOutcome {
    /// Its line in the file, from 1.
    pub line: usize,
    /// Whether everything verified.
    pub valid: bool,
    /// What verified, or what failed.
    pub detail: String,
}

/// Checks every receipt in `text` (one JSON object per line, as `receipts.jsonl` holds them). A
/// receipt without the node's statement (an interrupted answer has none) does not verify, and
/// says so.
pub fn verify_receipts(text: &str, log_key: &VerifierKey, root: &NitroRoot) -> Vec<ReceiptOutcome> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let (valid, detail) = match verify_one(line, log_key, root) {
                Ok(detail) => (true, detail),
                Err(detail) => (false, detail),
            };
            ReceiptOutcome {
                line: i + 1,
                valid,
                detail,
            }
        })
        .collect()
}

fn verify_one(line: &str, log_key: &VerifierKey, root: &NitroRoot) -> Result<String, String> {
    let receipt: ReceiptEvidence =
        serde_json::from_str(line).map_err(|e| format!("not a receipt: {e}"))?;
    let Some(signed) = &receipt.signed_answer else {
        return Err(format!(
            "{} answer without the node's signed statement",
            receipt.outcome
        ));
    };
    let verified = verify_receipt_evidence(signed, log_key, root).map_err(|e| e.to_string())?;
    let root = match verified.root {
        RootKind::Aws => "the AWS Nitro root",
        RootKind::Development => "a DEVELOPMENT root",
    };
    Ok(format!(
        "signed by the node of release entry {} (log size {}), attested at {} ms under {root}; \
         request {}, answer {}",
        verified.release_index,
        verified.checkpoint_size,
        verified.attested_at_ms,
        hex::encode(verified.statement.request_sha256),
        hex::encode(verified.statement.answer_sha256),
    ))
}
