//! Getting checkpoints cosigned: after the sequencer stores a checkpoint, the log sends it to its
//! witnesses (C2SP tlog-witness `add-checkpoint`, with a consistency proof from the size each
//! witness last cosigned, resynchronising on 409), appends the cosignatures it gets, and publishes
//! the checkpoint only once its witness policy is met.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use arcane_verifier::cosignature::{PolicyWitness, WitnessPolicy, verify_cosignature};
use arcane_verifier::note::{Note, NoteSignature};
use arcane_verifier::proof::consistency_proof;
use arcane_verifier::witness::AddCheckpoint;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::error::{LogError, Result};
use crate::storage::{Store, StoredCheckpoint};

/// The log's witnesses and its policy.
#[derive(Debug)]
pub struct Witnessing {
    policy: WitnessPolicy,
    witnesses: Vec<PolicyWitness>,
    /// The size each witness last cosigned, as far as this process knows.
    last_size: Mutex<HashMap<String, u64>>,
    /// When a round last failed to meet the policy: rounds are spaced out after a failure.
    last_failure: Mutex<Option<std::time::Instant>>,
    http: reqwest::Client,
}

/// Least time between two attempts after a round that did not meet the policy.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Witnessing {
    /// From a parsed policy file.
    pub fn new(policy: WitnessPolicy, witnesses: Vec<PolicyWitness>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LogError::Config(e.to_string()))?;
        Ok(Witnessing {
            policy,
            witnesses,
            last_size: Mutex::default(),
            last_failure: Mutex::default(),
            http,
        })
    }

    /// Whether a note meets the policy (what may be published).
    pub fn satisfied(&self, note: &str) -> bool {
        Note::parse(note.as_bytes()).is_ok_and(|n| self.policy.check(&n).is_ok())
    }

    /// Asks every witness with a URL, all at once and each independently, to cosign
    /// `checkpoint`; returns the note with the verified cosignatures gathered as soon as they
    /// meet the policy. A witness that is down, slow, refuses, or answers with anything but a
    /// valid cosignature of its own key costs only its own line: nothing it sends is kept
    /// unverified, so no single witness can stop a quorum of others from publishing.
    pub async fn cosign(
        &self,
        store: &Store,
        checkpoint: &StoredCheckpoint,
    ) -> Result<Option<String>> {
        if self
            .last_failure
            .lock()
            .expect("lock")
            .is_some_and(|at| at.elapsed() < RETRY_AFTER)
        {
            return Ok(None);
        }
        let mut note = Note::parse(checkpoint.note.as_bytes())?;
        let body = note.text.clone();
        let mut asked: FuturesUnordered<_> = self
            .witnesses
            .iter()
            .filter_map(|w| Some((w, w.url.as_deref()?)))
            .map(|(witness, url)| async move {
                let line = self.ask(store, checkpoint, witness, url).await;
                (witness, line)
            })
            .collect();
        let mut met = self.satisfied(&note.to_text());
        while !met {
            let Some((witness, line)) = asked.next().await else {
                break;
            };
            let line = match line {
                Ok(line) => line,
                Err(why) => {
                    tracing::warn!(witness = %witness.key.name(), %why, "no cosignature from this witness");
                    continue;
                }
            };
            match verify_cosignature(&witness.key, &body, &line) {
                Ok(_) => {
                    note.add_signature(line);
                    met = self.satisfied(&note.to_text());
                }
                Err(error) => {
                    tracing::warn!(witness = %witness.key.name(), %error, "the witness's cosignature does not verify; left out");
                }
            }
        }
        *self.last_failure.lock().expect("lock") = (!met).then(std::time::Instant::now);
        Ok(met.then(|| note.to_text()))
    }

    /// One witness's cosignature line for `checkpoint` (its key's line, not yet verified), with
    /// one resynchronisation when it answers 409 with the size it has.
    async fn ask(
        &self,
        store: &Store,
        checkpoint: &StoredCheckpoint,
        witness: &PolicyWitness,
        url: &str,
    ) -> std::result::Result<NoteSignature, String> {
        let name = witness.key.name().to_owned();
        for _attempt in 0..2 {
            let old = self
                .last_size
                .lock()
                .expect("lock")
                .get(&name)
                .copied()
                .unwrap_or(0);
            if old > checkpoint.size {
                return Err(format!(
                    "it has cosigned size {old}, beyond {}",
                    checkpoint.size
                ));
            }
            let proof = if old == 0 || old == checkpoint.size {
                Vec::new()
            } else {
                crate::proofs::prove(
                    checkpoint.size,
                    |l, i, w| crate::proofs::stored_tile_tree(store, l, i, w),
                    |f| consistency_proof(old, checkpoint.size, f),
                )
                .await
                .map_err(|e| format!("no consistency proof from {old}: {e}"))?
            };
            let request = AddCheckpoint {
                old_size: old,
                proof,
                checkpoint: checkpoint.note.clone(),
            };
            let response = self
                .http
                .post(format!("{}/add-checkpoint", url.trim_end_matches('/')))
                .body(request.to_text())
                .send()
                .await
                .map_err(|e| format!("unreachable: {e}"))?;
            let status = response.status().as_u16();
            let body = read_limited(response, MAX_WITNESS_ANSWER).await?;
            match status {
                200 => {
                    let lines = Note::parse(format!("{}{body}", checkpoint.note).as_bytes())
                        .map_err(|e| format!("its answer is not signature lines: {e}"))?;
                    let line = lines
                        .signatures
                        .into_iter()
                        .find(|l| witness.key.matches(l))
                        .ok_or("its answer has no line for its key")?;
                    self.last_size
                        .lock()
                        .expect("lock")
                        .insert(name.clone(), checkpoint.size);
                    return Ok(line);
                }
                409 => {
                    let size = body
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| "a 409 without its size".to_owned())?;
                    self.last_size
                        .lock()
                        .expect("lock")
                        .insert(name.clone(), size);
                }
                _ => return Err(format!("refused ({status}): {}", body.trim())),
            }
        }
        Err("still out of step after resynchronising".into())
    }
}

/// Largest witness answer read (a cosignature line is ~150 bytes).
const MAX_WITNESS_ANSWER: usize = 16 * 1024;

/// A witness's answer as text, refused once it grows past `limit` bytes.
async fn read_limited(
    response: reqwest::Response,
    limit: usize,
) -> std::result::Result<String, String> {
    let bytes = arcane_log_client::read_limited(response, limit)
        .await
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "answer is not UTF-8".into())
}
