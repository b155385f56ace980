//! A Trillian client that copes with what a real Trillian does: a server instance lagging behind
//! the root it was asked about answers with an empty or short proof (waited for and retried, not
//! a failure); `QueueLeaf` of a leaf already in the log returns the existing one (a success);
//! `UNAVAILABLE` and friends are retried with exponential backoff. Every proof and leaf is checked
//! for shape here; whether it proves anything is checked by the caller against its own tree.

use std::time::Duration;

use arcane_verifier::Hash;
use arcane_verifier::merkle::leaf_hash;
use arcane_verifier::proof::{consistency_proof_len, inclusion_proof_len};
use tonic::transport::Channel;

use super::log_root::LogRootV1;
use super::proto::trillian::trillian_admin_client::TrillianAdminClient;
use super::proto::trillian::trillian_log_client::TrillianLogClient;
use super::proto::trillian::{
    CreateTreeRequest, GetConsistencyProofRequest, GetInclusionProofByHashRequest,
    GetInclusionProofRequest, GetLatestSignedLogRootRequest, GetLeavesByRangeRequest,
    GetTreeRequest, InitLogRequest, LogLeaf, Proof, QueueLeafRequest, SignedLogRoot, Tree,
    TreeState, TreeType,
};
use crate::error::{LogError, Result};

/// `google.rpc.Code.ALREADY_EXISTS`.
const ALREADY_EXISTS: i32 = 6;

/// How calls are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Deadline of one attempt.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The outcome of queueing a leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Queued {
    /// Newly queued; Trillian will sequence it.
    New,
    /// Trillian already had a leaf with this identity hash (its index, when sequenced).
    Existing(Option<u64>),
}

/// A leaf as Trillian returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Its index in the tree.
    pub index: u64,
    /// Its value: the entry's bytes.
    pub value: Vec<u8>,
}

/// A client of one Trillian log tree.
#[derive(Clone, Debug)]
pub struct TrillianClient {
    log: TrillianLogClient<Channel>,
    admin: TrillianAdminClient<Channel>,
    tree_id: i64,
    retry: RetryPolicy,
}

fn is_transient(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::ResourceExhausted
            | tonic::Code::Aborted
    )
}

fn trillian_error(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Trillian(format!("{what}: {e}"))
}

fn to_i64(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| trillian_error(what, "out of range"))
}

fn to_u64(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| trillian_error(what, "negative"))
}

fn hashes(proof: &Proof) -> Result<Vec<Hash>> {
    proof
        .hashes
        .iter()
        .map(|h| Hash::from_slice(h).map_err(|_| trillian_error("proof", "a hash is not 32 bytes")))
        .collect()
}

fn root_of(signed: Option<&SignedLogRoot>) -> Result<Option<LogRootV1>> {
    signed.map(|s| LogRootV1::decode(&s.log_root)).transpose()
}

impl TrillianClient {
    /// A client for `tree_id` at `addr` (`host:port` or a URL). The connection is made on first
    /// use, so a Trillian that starts later is waited for by the retries.
    pub fn connect(addr: &str, tree_id: i64, retry: RetryPolicy) -> Result<Self> {
        let url = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let channel = tonic::transport::Endpoint::from_shared(url)
            .map_err(|e| LogError::Config(format!("Trillian address {addr:?}: {e}")))?
            .connect_timeout(retry.timeout)
            .timeout(retry.timeout)
            .connect_lazy();
        Ok(TrillianClient {
            log: TrillianLogClient::new(channel.clone()),
            admin: TrillianAdminClient::new(channel),
            tree_id,
            retry,
        })
    }

    /// The tree this client talks to.
    pub fn tree_id(&self) -> i64 {
        self.tree_id
    }

    /// Runs `call` with the retry policy: transient statuses are retried with backoff, others
    /// returned at once.
    async fn retrying<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let mut backoff = self.retry.first_backoff;
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(status) if is_transient(status.code()) && attempt < self.retry.attempts => {
                    tracing::debug!(what, code = ?status.code(), attempt, "Trillian call retried");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.retry.max_backoff);
                    attempt += 1;
                }
                Err(status) => {
                    return Err(trillian_error(
                        what,
                        format!("{:?}: {}", status.code(), status.message()),
                    ));
                }
            }
        }
    }

    /// Waits between attempts at an answer a lagging server could not give yet.
    async fn wait_for_lag(&self, attempt: u32) -> bool {
        if attempt >= self.retry.attempts {
            return false;
        }
        let wait = self.retry.first_backoff * 2u32.saturating_pow(attempt.min(16));
        tokio::time::sleep(wait.min(self.retry.max_backoff)).await;
        true
    }

    /// Asks until the answer is complete: `call` runs with the retry policy, `full` takes what
    /// it needs from a complete answer and returns `None` for a lagging instance's empty or short
    /// one, which is asked again after a wait until the attempts run out.
    async fn until_full<A, T, F, Fut>(
        &self,
        what: &str,
        expected: &str,
        mut call: F,
        mut full: impl FnMut(A) -> Result<Option<T>>,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<A>, tonic::Status>>,
    {
        let mut attempt = 0;
        loop {
            let answer = self.retrying(what, &mut call).await?.into_inner();
            if let Some(done) = full(answer)? {
                return Ok(done);
            }
            attempt += 1;
            if !self.wait_for_lag(attempt).await {
                return Err(trillian_error(
                    what,
                    format!(
                        "no full proof {expected} after {attempt} attempts (the server is behind)"
                    ),
                ));
            }
        }
    }

    /// Queues `value` with `identity` (its leaf hash) as the identity hash, so a second
    /// submission of the same entry is recognised as a duplicate by Trillian.
    pub async fn queue_leaf(&self, value: &[u8], identity: &Hash) -> Result<Queued> {
        let request = QueueLeafRequest {
            log_id: self.tree_id,
            leaf: Some(LogLeaf {
                leaf_value: value.to_vec(),
                leaf_identity_hash: identity.0.to_vec(),
                ..Default::default()
            }),
            charge_to: None,
        };
        let answer = self
            .retrying("QueueLeaf", || {
                let mut log = self.log.clone();
                let request = request.clone();
                async move { log.queue_leaf(request).await }
            })
            .await?
            .into_inner();
        let queued = answer
            .queued_leaf
            .ok_or_else(|| trillian_error("QueueLeaf", "no queued_leaf in the answer"))?;
        match queued.status.as_ref().map_or(0, |s| s.code) {
            0 => Ok(Queued::New),
            ALREADY_EXISTS => {
                let existing = queued.leaf.as_ref();
                if let Some(leaf) = existing
                    && !leaf.leaf_value.is_empty()
                    && leaf.leaf_value != value
                {
                    return Err(trillian_error(
                        "QueueLeaf",
                        "an existing leaf with this identity hash holds other bytes",
                    ));
                }
                // An unsequenced leaf reports index 0; only a proof can tell. Callers look
                // the index up by hash.
                Ok(Queued::Existing(None))
            }
            code => Err(trillian_error(
                "QueueLeaf",
                format!(
                    "status {code}: {}",
                    queued.status.map(|s| s.message).unwrap_or_default()
                ),
            )),
        }
    }

    /// The newest root Trillian has.
    pub async fn latest_root(&self) -> Result<LogRootV1> {
        let request = GetLatestSignedLogRootRequest {
            log_id: self.tree_id,
            ..Default::default()
        };
        let answer = self
            .retrying("GetLatestSignedLogRoot", || {
                let mut log = self.log.clone();
                let request = request.clone();
                async move { log.get_latest_signed_log_root(request).await }
            })
            .await?
            .into_inner();
        root_of(answer.signed_log_root.as_ref())?
            .ok_or_else(|| trillian_error("GetLatestSignedLogRoot", "no root in the answer"))
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves. A server that does not
    /// have `size` yet answers with no proof: waited for and asked again.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        if index >= size {
            return Err(trillian_error(
                "GetInclusionProof",
                "index beyond the tree size",
            ));
        }
        let want = inclusion_proof_len(index, size);
        let request = GetInclusionProofRequest {
            log_id: self.tree_id,
            leaf_index: to_i64(index, "leaf index")?,
            tree_size: to_i64(size, "tree size")?,
            charge_to: None,
        };
        self.until_full(
            "GetInclusionProof",
            &format!("for size {size}"),
            || {
                let mut log = self.log.clone();
                let request = request.clone();
                async move { log.get_inclusion_proof(request).await }
            },
            |answer| match &answer.proof {
                Some(proof) => {
                    let proof = hashes(proof)?;
                    Ok((proof.len() == want).then_some(proof))
                }
                None => Ok(None),
            },
        )
        .await
    }

    /// The index and inclusion proof of the leaf with `hash` in the tree of `size` leaves.
    pub async fn inclusion_proof_by_hash(
        &self,
        hash: &Hash,
        size: u64,
    ) -> Result<(u64, Vec<Hash>)> {
        let request = GetInclusionProofByHashRequest {
            log_id: self.tree_id,
            leaf_hash: hash.0.to_vec(),
            tree_size: to_i64(size, "tree size")?,
            order_by_sequence: true,
            charge_to: None,
        };
        self.until_full(
            "GetInclusionProofByHash",
            &format!("for size {size}"),
            || {
                let mut log = self.log.clone();
                let request = request.clone();
                async move { log.get_inclusion_proof_by_hash(request).await }
            },
            |answer| {
                let Some(proof) = answer.proof.first() else {
                    return Ok(None);
                };
                let index = to_u64(proof.leaf_index, "leaf index")?;
                if index >= size {
                    return Ok(None);
                }
                let hashes = hashes(proof)?;
                Ok((hashes.len() == inclusion_proof_len(index, size)).then_some((index, hashes)))
            },
        )
        .await
    }

    /// The consistency proof from `first` to `second` leaves, waiting out a lagging server.
    pub async fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>> {
        if first == 0 || first > second {
            return Err(trillian_error(
                "GetConsistencyProof",
                "need 0 < first <= second",
            ));
        }
        let want = consistency_proof_len(first, second);
        let request = GetConsistencyProofRequest {
            log_id: self.tree_id,
            first_tree_size: to_i64(first, "first tree size")?,
            second_tree_size: to_i64(second, "second tree size")?,
            charge_to: None,
        };
        self.until_full(
            "GetConsistencyProof",
            &format!("from {first} to {second}"),
            || {
                let mut log = self.log.clone();
                let request = request.clone();
                async move { log.get_consistency_proof(request).await }
            },
            |answer| {
                let proof = match &answer.proof {
                    Some(p) => hashes(p)?,
                    None => Vec::new(),
                };
                Ok((proof.len() == want).then_some(proof))
            },
        )
        .await
    }

    /// Up to `count` leaves from `start`, in order. Trillian may return fewer; every returned leaf
    /// must sit at its expected index and, when it names one, carry its own RFC 6962 leaf hash.
    pub async fn leaves(&self, start: u64, count: u64) -> Result<Vec<Leaf>> {
        let request = GetLeavesByRangeRequest {
            log_id: self.tree_id,
            start_index: to_i64(start, "start index")?,
            count: to_i64(count, "count")?,
            charge_to: None,
        };
        let answer = self
            .retrying("GetLeavesByRange", || {
                let mut log = self.log.clone();
                let request = request.clone();
                async move { log.get_leaves_by_range(request).await }
            })
            .await?
            .into_inner();
        if answer.leaves.len() as u64 > count {
            return Err(trillian_error(
                "GetLeavesByRange",
                "more leaves than asked for",
            ));
        }
        answer
            .leaves
            .into_iter()
            .enumerate()
            .map(|(i, leaf)| {
                let index = to_u64(leaf.leaf_index, "leaf index")?;
                if index != start + i as u64 {
                    return Err(trillian_error(
                        "GetLeavesByRange",
                        format!("leaf {index} where {} was expected", start + i as u64),
                    ));
                }
                if !leaf.merkle_leaf_hash.is_empty()
                    && leaf.merkle_leaf_hash != leaf_hash(&leaf.leaf_value).0
                {
                    return Err(trillian_error(
                        "GetLeavesByRange",
                        format!("leaf {index}'s hash is not the hash of its value"),
                    ));
                }
                Ok(Leaf {
                    index,
                    value: leaf.leaf_value,
                })
            })
            .collect()
    }

    /// The tree: it must be a log (not pre-ordered), not deleted, and accept writes.
    pub async fn check_tree(&self) -> Result<Tree> {
        let request = GetTreeRequest {
            tree_id: self.tree_id,
        };
        let tree = self
            .retrying("GetTree", || {
                let mut admin = self.admin.clone();
                async move { admin.get_tree(request).await }
            })
            .await?
            .into_inner();
        if tree.tree_type != TreeType::Log as i32 {
            return Err(LogError::Config(format!(
                "Trillian tree {} is not a LOG tree (type {})",
                self.tree_id, tree.tree_type
            )));
        }
        if tree.deleted || tree.tree_state != TreeState::Active as i32 {
            return Err(LogError::Config(format!(
                "Trillian tree {} is not active (state {}, deleted {})",
                self.tree_id, tree.tree_state, tree.deleted
            )));
        }
        Ok(tree)
    }

    /// Creates a new LOG tree named `display_name` and initialises it (`arcane-log trillian
    /// init`); returns its id.
    pub async fn create_log(addr: &str, display_name: &str, retry: RetryPolicy) -> Result<i64> {
        let bootstrap = TrillianClient::connect(addr, 0, retry)?;
        let request = CreateTreeRequest {
            tree: Some(Tree {
                tree_state: TreeState::Active as i32,
                tree_type: TreeType::Log as i32,
                display_name: display_name.to_owned(),
                description: "arcane-aip transparency log (arcane-log personality)".to_owned(),
                max_root_duration: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                ..Default::default()
            }),
        };
        let tree = bootstrap
            .retrying("CreateTree", || {
                let mut admin = bootstrap.admin.clone();
                let request = request.clone();
                async move { admin.create_tree(request).await }
            })
            .await?
            .into_inner();
        let init = InitLogRequest {
            log_id: tree.tree_id,
            charge_to: None,
        };
        let mut log = bootstrap.log.clone();
        match log.init_log(init).await {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::AlreadyExists => {}
            Err(s) => return Err(trillian_error("InitLog", s.message())),
        }
        Ok(tree.tree_id)
    }
}
