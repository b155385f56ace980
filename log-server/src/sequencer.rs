//! The sequencer: integrates pending entries in batches, extends the Merkle tiles, signs the new
//! checkpoint, and publishes it only after all of that is committed.
//!
//! Exactly one sequencer runs per log: each server process competes for a lease row in the
//! database and only the holder integrates, fencing every batch on the lease inside the batch's
//! transaction. A crash at any point loses nothing acknowledged (submissions are committed before
//! they are acknowledged) and cannot produce two checkpoints of one size (the size is the
//! checkpoint table's primary key, and the state is reloaded from the database after any doubt).

use std::sync::Arc;
use std::time::Duration;

use arcane_verifier::Hash;
use arcane_verifier::checkpoint::Checkpoint;
use arcane_verifier::note::NoteSigner;

use crate::error::{LogError, Result};
use crate::metrics::Metrics;
use crate::storage::{BatchOutcome, BatchWrite, Selection, Store, StoredCheckpoint};
use crate::tree_state::TreeState;
use crate::{Published, now_ms};

/// How the sequencer batches.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Most entries integrated per checkpoint.
    pub batch_size: usize,
    /// Longest wait between a submission and the batch that integrates it.
    pub batch_delay: Duration,
    /// Lease length; a crashed sequencer is replaced after at most this long.
    pub lease_ttl: Duration,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            batch_size: 1024,
            batch_delay: Duration::from_millis(50),
            lease_ttl: Duration::from_secs(3),
        }
    }
}

/// The sequencer of one server process, and what it needs.
pub struct Sequencer {
    /// The log's database.
    pub store: Store,
    /// The log key that signs checkpoints.
    pub signer: Arc<NoteSigner>,
    /// Batching and lease settings.
    pub config: SequencerConfig,
    /// Where new checkpoints are published.
    pub published: Arc<Published>,
    /// This process's counters.
    pub metrics: Arc<Metrics>,
    /// The witnesses to get checkpoints cosigned by, if the log has a witness policy.
    pub witnessing: Option<Arc<crate::witnessing::Witnessing>>,
    /// With a Trillian back end: Trillian sequences, this log follows and signs.
    pub trillian: Option<Arc<crate::trillian::follower::TrillianFollower>>,
}

impl Sequencer {
    /// Runs until `shutdown` fires: competes for the lease, and integrates while holding it.
    pub async fn run(
        self,
        wake: Arc<tokio::sync::Notify>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let holder = format!("{}-{}", std::process::id(), random_token());
        let mut state: Option<TreeState> = None;
        let mut leader = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let outcome = match self.step(&holder, &mut state).await {
                Ok(true) => self.witness_latest().await.map(|()| true),
                other => other,
            };
            match outcome {
                Ok(is_leader) => {
                    if is_leader && !leader {
                        tracing::info!("this process is now the sequencer");
                    } else if !is_leader && leader {
                        tracing::warn!("sequencer lease lost");
                    }
                    leader = is_leader;
                }
                Err(error @ LogError::TrillianInconsistent(_)) => {
                    // Never signed over; reported every round until an operator acts.
                    self.metrics.add_trillian_refusal();
                    tracing::error!(%error, "Trillian root refused; no checkpoint signed");
                    state = None;
                }
                Err(error) => {
                    tracing::error!(%error, "sequencer step failed; reloading state from the database");
                    state = None;
                }
            }
            let config = &self.config;
            let wait = if leader {
                config.batch_delay
            } else {
                config.lease_ttl / 3
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified(), if leader => {
                    // Let a batch gather before integrating it.
                    tokio::time::sleep(config.batch_delay).await;
                }
                _ = shutdown.changed() => {}
            }
        }
        if leader {
            let _ = self.store.release_lease(&holder).await;
        }
    }

    /// With witnesses: gets the newest stored checkpoint cosigned (when it is not yet), records
    /// the cosigned note and publishes it once the policy is met; retried every round.
    async fn witness_latest(&self) -> Result<()> {
        let Some(witnessing) = &self.witnessing else {
            return Ok(());
        };
        let Some(latest) = self.store.latest_checkpoint().await? else {
            return Ok(());
        };
        if latest.size <= self.published.size() {
            return Ok(());
        }
        if witnessing.satisfied(&latest.note) {
            self.published.update(latest);
            return Ok(());
        }
        if let Some(note) = witnessing.cosign(&self.store, &latest).await? {
            self.store
                .set_checkpoint_note(latest.size, &latest.root, &note)
                .await?;
            self.published.update(StoredCheckpoint { note, ..latest });
        } else {
            tracing::warn!(
                size = latest.size,
                "witness policy not met; checkpoint not published yet"
            );
        }
        Ok(())
    }

    /// One round: renew the lease, then integrate batches until nothing is pending. Returns
    /// whether this process holds the lease.
    async fn step(&self, holder: &str, state: &mut Option<TreeState>) -> Result<bool> {
        let ttl = self.config.lease_ttl.as_millis() as i64;
        let store = &self.store;
        if !store.acquire_lease(holder, now_ms(), ttl).await? {
            *state = None;
            return Ok(false);
        }
        loop {
            let current = match state.take() {
                Some(s) => s,
                None => {
                    let latest = store
                        .latest_checkpoint()
                        .await?
                        .ok_or_else(|| LogError::Corrupt("no checkpoint stored".into()))?;
                    let loaded = TreeState::load(store, &latest).await?;
                    self.published.update(latest);
                    loaded
                }
            };
            let mut next = current.clone();
            let origin = self.signer.name();
            let trillian_leaves = match &self.trillian {
                None => None,
                Some(follower) => {
                    // On an error the state is reloaded from the database (see `run`).
                    follower.forward(store, self.config.batch_size).await?;
                    let Some(leaves) = follower.next_leaves(&current).await? else {
                        *state = Some(current);
                        return Ok(true);
                    };
                    Some(leaves)
                }
            };
            let selection = match &trillian_leaves {
                Some(leaves) => Selection::InOrder(leaves),
                None => Selection::Oldest(self.config.batch_size),
            };
            let outcome = store
                .integrate_batch(
                    holder,
                    now_ms(),
                    ttl,
                    current.size(),
                    selection,
                    |pending| {
                        let leaves: Vec<Hash> = pending.iter().map(|p| p.leaf_hash).collect();
                        let tiles = next.append(&leaves);
                        let root = next.root();
                        let checkpoint = Checkpoint::new(origin, next.size(), root);
                        let note = checkpoint.sign(&self.signer)?.to_text();
                        Ok(BatchWrite {
                            tiles,
                            checkpoint: StoredCheckpoint {
                                size: next.size(),
                                root,
                                note,
                            },
                        })
                    },
                )
                .await?;
            match outcome {
                BatchOutcome::Empty => {
                    *state = Some(current);
                    return Ok(true);
                }
                BatchOutcome::LostLease => return Ok(false),
                BatchOutcome::Diverged { stored } => {
                    tracing::warn!(
                        stored,
                        ours = current.size(),
                        "tree advanced elsewhere; reloading"
                    );
                    continue;
                }
                BatchOutcome::Committed {
                    entries,
                    checkpoint,
                } => {
                    let now = now_ms();
                    for entry in &entries {
                        self.metrics
                            .observe_integration((now - entry.submitted_ms).max(0) as u64);
                    }
                    self.metrics.add_integrated(entries.len() as u64);
                    self.published.update(checkpoint);
                    *state = Some(next);
                    if entries.len() < self.config.batch_size || self.trillian.is_some() {
                        return Ok(true);
                    }
                }
            }
        }
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("operating system randomness");
    hex::encode(bytes)
}
