//! Getting checkpoints cosigned: after the sequencer stores a checkpoint, the log sends it to its
//! witnesses (C2SP tlog-witness `add-checkpoint`, with a consistency proof from the size each
//! witness last cosigned, resynchronising on 409), appends the cosignatures it gets, and publishes
//! the checkpoint only once its witness policy is met.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use arcane_verifier::cosignature::{PolicyWitness, WitnessPolicy};
use arcane_verifier::note::Note;
use arcane_verifier::proof::consistency_proof;
use arcane_verifier::witness::AddCheckpoint;

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

    /// Asks every witness with a URL to cosign `checkpoint`; returns the note with the
    /// cosignatures gathered when they meet the policy.
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
        for witness in &self.witnesses {
            let Some(url) = &witness.url else { continue };
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
                    break;
                }
                let proof = if old == 0 || old == checkpoint.size {
                    Vec::new()
                } else {
                    crate::proofs::prove(
                        checkpoint.size,
                        |l, i, w| crate::proofs::stored_tile_tree(store, l, i, w),
                        |f| consistency_proof(old, checkpoint.size, f),
                    )
                    .await?
                };
                let request = AddCheckpoint {
                    old_size: old,
                    proof,
                    checkpoint: checkpoint.note.clone(),
                };
                let response = match self
                    .http
                    .post(format!("{}/add-checkpoint", url.trim_end_matches('/')))
                    .body(request.to_text())
                    .send()
                    .await
                {
                    Ok(r) => r,
                    Err(error) => {
                        tracing::warn!(witness = %name, %error, "witness unreachable");
                        break;
                    }
                };
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                match status {
                    200 => {
                        let lines = Note::parse(format!("{}{body}", checkpoint.note).as_bytes())?;
                        for line in lines
                            .signatures
                            .into_iter()
                            .filter(|l| witness.key.matches(l))
                        {
                            note.add_signature(line);
                        }
                        self.last_size
                            .lock()
                            .expect("lock")
                            .insert(name.clone(), checkpoint.size);
                        break;
                    }
                    409 => match body.trim().parse::<u64>() {
                        Ok(size) => {
                            self.last_size
                                .lock()
                                .expect("lock")
                                .insert(name.clone(), size);
                        }
                        Err(_) => break,
                    },
                    _ => {
                        tracing::warn!(witness = %name, status, body = %body.trim(), "witness refused the checkpoint");
                        break;
                    }
                }
            }
        }
        let text = note.to_text();
        let met = self.satisfied(&text);
        *self.last_failure.lock().expect("lock") = (!met).then(std::time::Instant::now);
        Ok(met.then_some(text))
    }
}
