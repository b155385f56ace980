//! `key-releases`: a model owner's record of every model key it released
//! (`GET /v1/releases` of `arcane-keyrelease serve`), decided again and compared with the log.
//!
//! For each record: the recorded request passes the same decision the service made
//! (`arcane_verifier::model_key::check_key_request`, at the recorded time), the record says what
//! that decision says (model, PCR0, document, entries), and the checkpoints its two proof bundles
//! were proven in are states of the log this auditor sees (a consistency proof to its current
//! checkpoint): a release justified only by a forked view of the log is caught here.

use arcane_verifier::bundle::TrustAnchors;
use arcane_verifier::checkpoint::Checkpoint;
use arcane_verifier::entry::EntryPolicy;
use arcane_verifier::model_key::{
    ApprovedKeyRequest, KeyReleaseTrust, KeyRequest, MAX_RECORDS_PER_READ, ReleaseRecord,
    check_key_request,
};
use arcane_verifier::nitro::{AttestationPolicy, DocumentCache, NitroRoot};
use arcane_verifier::note::VerifierKey;
use arcane_verifier::proof::verify_consistency;

use crate::http::Http;
use crate::log_commands::{AuditError, Log};

/// What the owner's service is trusted with, as the auditor configures it.
pub struct KeyReleaseAudit<'a> {
    /// The key release service.
    pub service: &'a Http,
    /// Publishers whose `release` entries count.
    pub publishers: &'a [VerifierKey],
    /// The owner's publisher key.
    pub owner: &'a VerifierKey,
    /// The Nitro root documents must chain to.
    pub root: &'a NitroRoot,
    /// The service's maximum document age, in milliseconds.
    pub max_document_age_ms: u64,
}

/// One record's outcome.
#[derive(Debug, serde::Serialize)]
pub struct RecordOutcome {
    /// The record's `seq`.
    pub seq: u64,
    /// The model, hex.
    pub model_sha256: String,
    /// `None` when every check held; otherwise what failed.
    pub problem: Option<String>,
}

/// Reads the whole record and checks every row; fails when any row fails.
pub fn key_releases(log: &Log, audit: &KeyReleaseAudit<'_>, json: bool) -> Result<(), AuditError> {
    let (current, _) = log.checkpoint()?;
    let mut publishers = audit.publishers.to_vec();
    publishers.push(audit.owner.clone());
    let policy = EntryPolicy::default();
    let attestation = AttestationPolicy {
        max_age_ms: audit.max_document_age_ms,
        ..AttestationPolicy::default()
    };
    let trust = KeyReleaseTrust {
        anchors: TrustAnchors {
            log_key: log.key(),
            witnesses: log.witness_policy(),
            publishers: &publishers,
            policy: &policy,
        },
        owner: audit.owner,
        nitro_root: audit.root,
        attestation: &attestation,
    };
    let mut documents = DocumentCache::default();
    let mut outcomes = Vec::new();
    let mut after = 0;
    loop {
        let body = audit
            .service
            .get(&format!(
                "/v1/releases?after={after}&limit={MAX_RECORDS_PER_READ}"
            ))
            .map_err(AuditError::Unreachable)?;
        let records: Vec<ReleaseRecord> = serde_json::from_slice(&body)
            .map_err(|e| AuditError::Failed(format!("the record is not the expected JSON: {e}")))?;
        let Some(last) = records.last().map(|r| r.seq) else {
            break;
        };
        if last <= after {
            return Err(AuditError::Failed(
                "the record went backwards (seq not increasing)".into(),
            ));
        }
        for record in &records {
            outcomes.push(RecordOutcome {
                seq: record.seq,
                model_sha256: record.model_sha256.clone(),
                problem: check_record(log, &trust, &mut documents, record, &current.checkpoint)
                    .err(),
            });
        }
        after = last;
    }
    let failures = outcomes.iter().filter(|o| o.problem.is_some()).count();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": failures == 0,
                "checkpoint_size": current.checkpoint.size,
                "records": outcomes,
            }))
            .expect("JSON")
        );
    } else {
        for o in &outcomes {
            match &o.problem {
                None => println!("ok      #{} model {}", o.seq, o.model_sha256),
                Some(p) => println!("FAILED  #{} model {}: {p}", o.seq, o.model_sha256),
            }
        }
        println!(
            "{} release(s) of a model key, {failures} failed, against the log at size {}",
            outcomes.len(),
            current.checkpoint.size
        );
    }
    if failures > 0 {
        return Err(AuditError::Failed(format!(
            "{failures} recorded release(s) of a model key do not hold"
        )));
    }
    Ok(())
}

fn check_record(
    log: &Log,
    trust: &KeyReleaseTrust<'_>,
    documents: &mut DocumentCache,
    record: &ReleaseRecord,
    current: &Checkpoint,
) -> Result<(), String> {
    let request = KeyRequest::parse(record.request.as_bytes()).map_err(|e| e.to_string())?;
    let approved = check_key_request(&request, trust, record.released_at_ms, documents)
        .map_err(|e| format!("the recorded request does not justify a release: {e}"))?;
    says_what_was_decided(record, &request, &approved)?;
    let release = &approved.release.checkpoint.checkpoint;
    let access = &approved.access.checkpoint.checkpoint;
    in_this_log(log, release, current).map_err(|e| format!("the release entry's {e}"))?;
    // Most often both were proven in one checkpoint: it is proven a state of the log once.
    if (access.size, access.root) != (release.size, release.root) {
        in_this_log(log, access, current).map_err(|e| format!("the access entry's {e}"))?;
    }
    Ok(())
}

/// The record's summary fields must be its request's and the decision's.
fn says_what_was_decided(
    record: &ReleaseRecord,
    request: &KeyRequest,
    approved: &ApprovedKeyRequest,
) -> Result<(), String> {
    let decided = [
        ("challenge", hex::encode(&request.challenge)),
        ("model_sha256", hex::encode(approved.model_sha256)),
        ("pcr0", hex::encode(approved.pcr0)),
        ("document_sha256", hex::encode(approved.document_hash)),
        ("release_leaf_hash", approved.release.leaf_hash.to_hex()),
        ("access_leaf_hash", approved.access.leaf_hash.to_hex()),
    ];
    let recorded = [
        &record.challenge,
        &record.model_sha256,
        &record.pcr0,
        &record.document_sha256,
        &record.release_leaf_hash,
        &record.access_leaf_hash,
    ];
    for ((field, want), got) in decided.iter().zip(recorded) {
        if want != got {
            return Err(format!(
                "the record's {field} is {got}, its request says {want}"
            ));
        }
    }
    Ok(())
}

/// `proven` (a checkpoint a bundle was proven in) is a state of the log whose current
/// checkpoint is `current`.
fn in_this_log(log: &Log, proven: &Checkpoint, current: &Checkpoint) -> Result<(), String> {
    if proven.origin != current.origin {
        return Err(format!("checkpoint is of another log ({})", proven.origin));
    }
    if proven.size > current.size {
        return Err(format!(
            "checkpoint (size {}) is ahead of the log this auditor sees (size {})",
            proven.size, current.size
        ));
    }
    if proven.size == current.size {
        return if proven.root == current.root {
            Ok(())
        } else {
            Err("checkpoint has another root at the current size: a fork".into())
        };
    }
    let proof = log
        .consistency_proof(proven.size, current.size)
        .map_err(|e| format!("consistency proof: {e}"))?;
    verify_consistency(
        proven.size,
        current.size,
        &proven.root,
        &current.root,
        &proof,
    )
    .map_err(|e| {
        format!(
            "checkpoint (size {}) is not a state of this log: {e}",
            proven.size
        )
    })
}
