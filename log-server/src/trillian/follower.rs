//! arcane-log as a personality over Trillian: submissions (validated and stored by arcane-log as
//! always) are queued in Trillian, which sequences them; each round the sequencer takes
//! Trillian's newest root and the leaves since the last checkpoint arcane-log signed, and signs a
//! new checkpoint only when those leaves, appended to its own tree, give exactly Trillian's root
//! and Trillian's consistency proof from the last signed size verifies. A Trillian that rewinds
//! (a smaller tree), forks (another root for a size already signed, or leaves that do not hash to
//! its root), or holds leaves this log never accepted is refused and reported — never signed over.

use std::collections::HashSet;
use std::sync::Mutex;

use arcane_verifier::Hash;
use arcane_verifier::merkle::leaf_hash;
use arcane_verifier::proof::verify_consistency;
use arcane_verifier::timeline::{Fork, Step, Timeline, TreeHead};

use super::client::{RetryPolicy, TrillianClient};
use crate::error::{LogError, Result};
use crate::storage::Store;
use crate::tree_state::TreeState;

/// Where the Trillian log tree is.
#[derive(Clone, Debug)]
pub struct TrillianConfig {
    /// `host:port` of Trillian's log server (gRPC).
    pub addr: String,
    /// The LOG tree's id.
    pub tree_id: i64,
    /// Retries and deadlines.
    pub retry: RetryPolicy,
}

/// Most leaves fetched from Trillian per round.
const MAX_LEAVES_PER_ROUND: u64 = 65_536;

/// The Trillian side of the sequencer.
#[derive(Debug)]
pub struct TrillianFollower {
    client: TrillianClient,
    /// Pending entries already queued in Trillian by this process (re-queued after a restart:
    /// queueing is idempotent).
    forwarded: Mutex<HashSet<Hash>>,
}

fn inconsistent(why: String) -> LogError {
    LogError::TrillianInconsistent(why)
}

impl TrillianFollower {
    /// Connects (lazily) and checks that the tree exists, is a LOG tree and is active.
    pub async fn connect(config: &TrillianConfig) -> Result<Self> {
        let client = TrillianClient::connect(&config.addr, config.tree_id, config.retry.clone())?;
        client.check_tree().await?;
        Ok(TrillianFollower {
            client,
            forwarded: Mutex::new(HashSet::new()),
        })
    }

    /// Queues every pending entry not yet queued by this process.
    pub async fn forward(&self, store: &Store, limit: usize) -> Result<usize> {
        let pending = store.pending_entries(limit).await?;
        let mut queued = 0;
        for (hash, data) in pending {
            if self
                .forwarded
                .lock()
                .expect("forwarded lock")
                .contains(&hash)
            {
                continue;
            }
            self.client.queue_leaf(&data, &hash).await?;
            let mut forwarded = self.forwarded.lock().expect("forwarded lock");
            if forwarded.len() > 1 << 20 {
                forwarded.clear();
            }
            forwarded.insert(hash);
            queued += 1;
        }
        Ok(queued)
    }

    /// The leaf hashes Trillian sequenced after `current`, in order, once they check out against
    /// Trillian's root; `None` when Trillian has nothing new.
    pub async fn next_leaves(&self, current: &TreeState) -> Result<Option<Vec<Hash>>> {
        let root = self.client.latest_root().await?;
        let trillian_root = root.root()?;
        let ours = current.size();
        let target = root.tree_size.min(ours + MAX_LEAVES_PER_ROUND);
        // The timeline check every party runs, with the log's own policy on top: Trillian is
        // this log's storage, so a smaller tree is a rewind even when it is a prefix.
        let mut timeline = Timeline::new(Some(TreeHead {
            size: ours,
            root: current.root(),
        }));
        let shown = TreeHead {
            size: root.tree_size,
            root: trillian_root,
        };
        let fork = |fork: Fork| {
            inconsistent(format!(
                "Trillian's tree disagrees with the one this log signed (a fork): {fork}"
            ))
        };
        match timeline.observe(shown).map_err(fork)? {
            _ if root.tree_size < ours => {
                return Err(inconsistent(format!(
                    "Trillian's tree has {} leaves, fewer than the {ours} this log already signed (a rewind)",
                    root.tree_size
                )));
            }
            Step::Keep => return Ok(None),
            Step::Adopt => {}
            // A partial round is checked below, once its leaves are appended.
            Step::Prove(_) if target < root.tree_size => {}
            Step::Prove(question) => {
                let proof = self.client.consistency_proof(ours, root.tree_size).await?;
                timeline.settle(&question, &proof).map_err(fork)?;
            }
        }
        let mut hashes = Vec::with_capacity((target - ours) as usize);
        while (hashes.len() as u64) < target - ours {
            let start = ours + hashes.len() as u64;
            let page = self.client.leaves(start, target - start).await?;
            if page.is_empty() {
                return Err(LogError::Trillian(format!(
                    "no leaves from {start} although the root has {}",
                    root.tree_size
                )));
            }
            hashes.extend(page.iter().map(|l| leaf_hash(&l.value)));
        }
        // Our tree with these leaves must be Trillian's tree (or, for a partial round, a prefix
        // of it, by Trillian's consistency proof).
        let mut probe = current.clone();
        probe.append(&hashes);
        let extended = probe.root();
        let matches = if target == root.tree_size {
            extended == trillian_root
        } else {
            let proof = self
                .client
                .consistency_proof(target, root.tree_size)
                .await?;
            verify_consistency(target, root.tree_size, &extended, &trillian_root, &proof).is_ok()
        };
        if !matches {
            return Err(inconsistent(format!(
                "Trillian's leaves {ours}..{target} do not lead to its root for size {} (a fork)",
                root.tree_size
            )));
        }
        Ok(Some(hashes))
    }
}
