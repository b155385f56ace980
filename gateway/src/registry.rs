//! Compute nodes the gateway may route to: each listed only after its attestation bundle verifies
//! exactly as a client verifies it, dropped when the bundle goes stale or its release leaves the
//! log's valid set, and picked by load: the least loaded node with room (requests in flight
//! against the capacity it registered with), reserved atomically, so that no node is sent more
//! than its capacity while another has room. A node that answered "busy" (its own count, which
//! other gateways' requests share) is tried last for [`BUSY_BACKOFF_MS`]; one whose answer broke
//! off is tried last until it answers again or registers anew; one the gateway cannot connect to
//! is dropped (a node re-registers after every refresh).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use arcane_verifier::attested::{
    NodeBundle, NodeRegistration, NodeTrust, VerifiedNode, verify_node_bundle,
};
use arcane_verifier::nitro::{AttestationPolicy, DocumentCache, NitroRoot};
use serde::Serialize;

use crate::error::Result;
use crate::proven::LogTrust;

/// How long a node that answered "busy" is tried after the others.
pub const BUSY_BACKOFF_MS: u64 = 2_000;

/// One listed node.
#[derive(Debug)]
pub struct ListedNode {
    /// Where the gateway reaches it.
    pub url: String,
    /// The model it serves.
    pub model: String,
    /// Requests it serves at once.
    pub capacity: usize,
    /// The bundle it registered with.
    pub bundle: NodeBundle,
    /// What verified.
    pub verified: VerifiedNode,
    /// Requests the gateway has in flight to it.
    pub in_flight: AtomicUsize,
    /// Whether the gateway's last exchange with it broke off mid-answer.
    pub unreachable: AtomicBool,
    /// Until when (ms since the epoch) it is tried last, after answering "busy".
    pub busy_until_ms: AtomicU64,
    /// The registry's signal that a place was given back somewhere.
    freed: Arc<tokio::sync::Notify>,
}

impl ListedNode {
    /// Records whether the gateway's exchange with the node just now reached it and held.
    pub fn set_reachable(&self, reachable: bool) {
        self.unreachable.store(!reachable, Ordering::Relaxed);
    }

    /// Takes one of the node's places if it has one (fewer requests in flight from this gateway
    /// than its capacity); [`release`](Self::release) gives it back.
    pub fn try_reserve(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back a place [`try_reserve`](Self::try_reserve) took, and wakes the requests
    /// waiting for one ([`Registry::place_freed`]).
    pub fn release(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.freed.notify_waiters();
    }

    /// Records that the node answered "busy" at `now_ms`.
    pub fn mark_busy(&self, now_ms: u64) {
        self.busy_until_ms
            .store(now_ms.saturating_add(BUSY_BACKOFF_MS), Ordering::Relaxed);
    }

    /// Requests the gateway has in flight to it.
    pub fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// The registry.
pub struct Registry {
    trust: LogTrust,
    root: NitroRoot,
    policy: AttestationPolicy,
    nodes: RwLock<HashMap<[u8; 32], Arc<ListedNode>>>,
    cache: std::sync::Mutex<DocumentCache>,
    freed: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// A model and the release that vouches for it (`GET /v1/models`).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ModelInfo {
    /// Model name.
    pub id: String,
    /// `model`.
    pub object: &'static str,
    /// SHA-256 of the model file, hex.
    pub model_sha256: String,
    /// Leaf hash of the release entry, hex.
    pub release_leaf_hash: String,
    /// Leaf index of the release entry.
    pub release_index: u64,
    /// Verified nodes serving it.
    pub nodes: usize,
}

impl Registry {
    /// An empty registry verifying against `trust` and `root`.
    pub fn new(trust: LogTrust, root: NitroRoot, policy: AttestationPolicy) -> Self {
        Registry {
            trust,
            root,
            policy,
            nodes: RwLock::new(HashMap::new()),
            cache: std::sync::Mutex::new(DocumentCache::default()),
            freed: Arc::default(),
        }
    }

    /// Resolves when any listed node gives a place back after this call: made before looking
    /// for a place, it misses no release in between.
    pub fn place_freed(&self) -> std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>> {
        let mut freed = Box::pin(Arc::clone(&self.freed).notified_owned());
        freed.as_mut().enable();
        freed
    }

    fn verify(
        &self,
        bundle: &NodeBundle,
        now_ms: u64,
        nonce: Option<&[u8]>,
    ) -> Result<VerifiedNode> {
        let trust = NodeTrust {
            anchors: self.trust.anchors(),
            nitro_root: &self.root,
            attestation: &self.policy,
        };
        let mut cache = self.cache.lock().expect("cache lock");
        Ok(verify_node_bundle(
            bundle, &trust, None, now_ms, nonce, &mut cache,
        )?)
    }

    /// Verifies a registration's bundle (step one of listing a node).
    pub fn check(&self, registration: &NodeRegistration, now_ms: u64) -> Result<VerifiedNode> {
        self.verify(&registration.bundle()?, now_ms, None)
    }

    /// Verifies the answer to the gateway's challenge: a fresh document carrying `nonce`, fetched
    /// from the registration's URL, must verify and name the same REK — proof that the URL is
    /// served by the holder of that REK, not by someone who copied its public bundle.
    pub fn check_challenge(
        &self,
        answer: &NodeBundle,
        nonce: &[u8],
        registered: &VerifiedNode,
        now_ms: u64,
    ) -> Result<()> {
        let verified = self.verify(answer, now_ms, Some(nonce))?;
        if verified.rek != registered.rek {
            return Err(crate::error::GatewayError::Serve(
                "the node's URL answers for another REK".into(),
            ));
        }
        Ok(())
    }

    /// Lists a registration whose bundle and challenge verified (replacing the node's earlier
    /// one).
    pub fn list(&self, registration: &NodeRegistration, verified: VerifiedNode) -> Result<()> {
        let node = Arc::new(ListedNode {
            url: registration.url.trim_end_matches('/').to_owned(),
            model: registration.model.clone(),
            capacity: (registration.capacity as usize).max(1),
            bundle: registration.bundle()?,
            verified: verified.clone(),
            in_flight: AtomicUsize::new(0),
            unreachable: AtomicBool::new(false),
            busy_until_ms: AtomicU64::new(0),
            freed: Arc::clone(&self.freed),
        });
        let mut nodes = self.nodes.write().expect("registry lock");
        nodes.retain(|_, n| n.url != node.url);
        nodes.insert(verified.rek.id(), node);
        Ok(())
    }

    /// Drops every node whose bundle no longer verifies at `now_ms` (document too old, chain
    /// expired, release expired). Returns how many were dropped.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let listed: Vec<_> = self
            .nodes
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect();
        let stale: Vec<[u8; 32]> = listed
            .iter()
            .filter(|n| self.verify(&n.bundle, now_ms, None).is_err())
            .map(|n| n.verified.rek.id())
            .collect();
        let mut nodes = self.nodes.write().expect("registry lock");
        for id in &stale {
            nodes.remove(id);
        }
        stale.len()
    }

    /// Drops the node with this REK (the gateway could not connect to it); it is listed again
    /// when it registers again. Returns whether it was listed.
    pub fn drop_node(&self, rek_id: &[u8; 32]) -> bool {
        self.nodes
            .write()
            .expect("registry lock")
            .remove(rek_id)
            .is_some()
    }

    /// Drops nodes whose release leaf is not among `valid_release_leaves`.
    pub fn retain_releases(&self, valid_release_leaves: &[arcane_verifier::Hash]) {
        self.nodes
            .write()
            .expect("registry lock")
            .retain(|_, n| valid_release_leaves.contains(&n.verified.release.leaf_hash));
    }

    /// Up to `n` listed nodes' bundles, reachable ones first, least loaded first.
    pub fn candidates(&self, n: usize, now_ms: u64) -> Vec<NodeBundle> {
        let mut nodes: Vec<_> = self
            .nodes
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect();
        nodes.sort_by_key(|n| load_key(n, now_ms));
        nodes
            .into_iter()
            .take(n)
            .map(|n| n.bundle.clone())
            .collect()
    }

    /// The listed nodes among `rek_ids` in the order to try them: reachable and not recently
    /// busy first, then least loaded for its capacity.
    pub fn pick(&self, rek_ids: &[[u8; 32]], now_ms: u64) -> Vec<Arc<ListedNode>> {
        let nodes = self.nodes.read().expect("registry lock");
        let mut found: Vec<_> = rek_ids
            .iter()
            .filter_map(|id| nodes.get(id).cloned())
            .collect();
        found.sort_by_key(|n| load_key(n, now_ms));
        found
    }

    /// The models verified nodes serve.
    pub fn models(&self) -> Vec<ModelInfo> {
        let nodes = self.nodes.read().expect("registry lock");
        let mut models: Vec<ModelInfo> = Vec::new();
        for n in nodes.values() {
            let leaf = n.verified.release.leaf_hash.to_hex();
            match models
                .iter_mut()
                .find(|m| m.id == n.model && m.release_leaf_hash == leaf)
            {
                Some(m) => m.nodes += 1,
                None => models.push(ModelInfo {
                    id: n.model.clone(),
                    object: "model",
                    model_sha256: hex::encode(n.verified.model_sha256),
                    release_leaf_hash: leaf,
                    release_index: n.verified.release.index,
                    nodes: 1,
                }),
            }
        }
        models.sort_by(|a, b| a.id.cmp(&b.id));
        models
    }

    /// Number of listed nodes.
    pub fn len(&self) -> usize {
        self.nodes.read().expect("registry lock").len()
    }

    /// Whether no node is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Broken-off last, then recently busy, then load as in-flight per capacity (scaled to an
/// integer), then the larger capacity, for sorting.
fn load_key(n: &ListedNode, now_ms: u64) -> (bool, bool, usize, std::cmp::Reverse<usize>) {
    (
        n.unreachable.load(Ordering::Relaxed),
        n.busy_until_ms.load(Ordering::Relaxed) > now_ms,
        n.load() * 1000 / n.capacity,
        std::cmp::Reverse(n.capacity),
    )
}
