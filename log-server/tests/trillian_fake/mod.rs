//! A Trillian log and admin server for tests, speaking the real gRPC wire format (the same
//! generated code, server side) over an in-memory RFC 6962 tree built with the verifier's own
//! Merkle functions. Knobs reproduce what a real Trillian does: leaves queued and sequenced
//! later, duplicates answered with the existing leaf, an instance lagging behind the newest
//! root, transient UNAVAILABLE.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arcane_log::trillian::log_root::LogRootV1;
use arcane_log::trillian::proto::google::rpc::Status as RpcStatus;
use arcane_log::trillian::proto::trillian::trillian_admin_server::{
    TrillianAdmin, TrillianAdminServer,
};
use arcane_log::trillian::proto::trillian::trillian_log_server::{TrillianLog, TrillianLogServer};
use arcane_log::trillian::proto::trillian::*;
use arcane_verifier::Hash;
use arcane_verifier::merkle::{leaf_hash, root_from_leaf_hashes};
use arcane_verifier::proof::{consistency_proof, inclusion_proof};
use tonic::{Request, Response, Status};

/// The fake's tree.
#[derive(Default)]
pub struct State {
    /// Sequenced leaves: (value, identity hash).
    pub leaves: Vec<(Vec<u8>, Vec<u8>)>,
    /// Queued, not yet sequenced.
    pub queue: Vec<(Vec<u8>, Vec<u8>)>,
    /// Created trees.
    pub trees: Vec<Tree>,
}

/// The fake Trillian.
#[derive(Clone, Default)]
pub struct FakeTrillian {
    /// Its tree.
    pub state: Arc<Mutex<State>>,
    /// The next this many calls fail with UNAVAILABLE.
    pub unavailable: Arc<AtomicU32>,
    /// The next this many proof calls answer as a lagging instance would: no proof, and the
    /// root of a smaller tree.
    pub lagging: Arc<AtomicU32>,
    /// Calls received.
    pub calls: Arc<AtomicU32>,
    /// Sequence the queue whenever the newest root is asked for (a log signer that keeps up).
    pub auto_sequence: Arc<std::sync::atomic::AtomicBool>,
}

fn countdown(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn proof_of(index: i64, hashes: &[Hash]) -> Proof {
    Proof {
        leaf_index: index,
        hashes: hashes.iter().map(|h| h.0.to_vec()).collect(),
    }
}

impl FakeTrillian {
    /// Sequences everything queued.
    pub fn sequence(&self) {
        let mut s = self.state.lock().unwrap();
        let queued = std::mem::take(&mut s.queue);
        s.leaves.extend(queued);
    }

    fn gate(&self) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if countdown(&self.unavailable) {
            return Err(Status::unavailable("backend briefly unavailable"));
        }
        Ok(())
    }

    fn hashes(&self) -> Vec<Hash> {
        let s = self.state.lock().unwrap();
        s.leaves.iter().map(|(v, _)| leaf_hash(v)).collect()
    }

    fn root(hashes: &[Hash], size: u64) -> SignedLogRoot {
        let size = size.min(hashes.len() as u64) as usize;
        SignedLogRoot {
            log_root: LogRootV1 {
                tree_size: size as u64,
                root_hash: root_from_leaf_hashes(&hashes[..size]).0.to_vec(),
                timestamp_nanos: 1,
                revision: size as u64,
                metadata: Vec::new(),
            }
            .encode()
            .unwrap(),
        }
    }

    fn leaf(index: usize, value: &[u8], identity: &[u8]) -> LogLeaf {
        LogLeaf {
            merkle_leaf_hash: leaf_hash(value).0.to_vec(),
            leaf_value: value.to_vec(),
            leaf_index: index as i64,
            leaf_identity_hash: identity.to_vec(),
            ..Default::default()
        }
    }

    /// Serves on 127.0.0.1; returns the address.
    pub async fn serve(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let (log, admin) = (self.clone(), self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TrillianLogServer::new(log))
                .add_service(TrillianAdminServer::new(admin))
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        addr
    }
}

fn subtree(hashes: &[Hash]) -> impl FnMut(u64, u64) -> Result<Hash, ()> + '_ {
    |a, b| Ok(root_from_leaf_hashes(&hashes[a as usize..b as usize]))
}

#[tonic::async_trait]
impl TrillianLog for FakeTrillian {
    async fn queue_leaf(
        &self,
        request: Request<QueueLeafRequest>,
    ) -> Result<Response<QueueLeafResponse>, Status> {
        self.gate()?;
        let leaf = request
            .into_inner()
            .leaf
            .ok_or_else(|| Status::invalid_argument("no leaf"))?;
        let identity = if leaf.leaf_identity_hash.is_empty() {
            leaf_hash(&leaf.leaf_value).0.to_vec()
        } else {
            leaf.leaf_identity_hash.clone()
        };
        let mut s = self.state.lock().unwrap();
        // Trillian answers a duplicate with the leaf it already has (index 0 while unsequenced).
        let existing = s
            .leaves
            .iter()
            .enumerate()
            .find(|(_, (_, id))| *id == identity)
            .map(|(i, (v, id))| Self::leaf(i, v, id))
            .or_else(|| {
                s.queue
                    .iter()
                    .find(|(_, id)| *id == identity)
                    .map(|(v, id)| Self::leaf(0, v, id))
            });
        let queued_leaf = match existing {
            Some(found) => QueuedLogLeaf {
                leaf: Some(found),
                status: Some(RpcStatus {
                    code: 6,
                    message: "leaf already exists".into(),
                }),
            },
            None => {
                s.queue.push((leaf.leaf_value.clone(), identity));
                QueuedLogLeaf {
                    leaf: Some(leaf),
                    status: None,
                }
            }
        };
        Ok(Response::new(QueueLeafResponse {
            queued_leaf: Some(queued_leaf),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        self.gate()?;
        let r = request.into_inner();
        let hashes = self.hashes();
        let (index, size) = (r.leaf_index as u64, r.tree_size as u64);
        if countdown(&self.lagging) || size > hashes.len() as u64 {
            return Ok(Response::new(GetInclusionProofResponse {
                proof: None,
                signed_log_root: Some(Self::root(&hashes, size.saturating_sub(1))),
            }));
        }
        let proof = inclusion_proof(index, size, subtree(&hashes))
            .map_err(|_| Status::invalid_argument("bad index"))?;
        Ok(Response::new(GetInclusionProofResponse {
            proof: Some(proof_of(r.leaf_index, &proof)),
            signed_log_root: Some(Self::root(&hashes, size)),
        }))
    }

    async fn get_inclusion_proof_by_hash(
        &self,
        request: Request<GetInclusionProofByHashRequest>,
    ) -> Result<Response<GetInclusionProofByHashResponse>, Status> {
        self.gate()?;
        let r = request.into_inner();
        let hashes = self.hashes();
        let size = r.tree_size as u64;
        let Some(index) = hashes.iter().position(|h| h.0[..] == r.leaf_hash[..]) else {
            return Err(Status::not_found("no such leaf"));
        };
        if countdown(&self.lagging) || size > hashes.len() as u64 || index as u64 >= size {
            return Ok(Response::new(GetInclusionProofByHashResponse {
                proof: Vec::new(),
                signed_log_root: Some(Self::root(&hashes, size.saturating_sub(1))),
            }));
        }
        let proof = inclusion_proof(index as u64, size, subtree(&hashes))
            .map_err(|_| Status::invalid_argument("bad size"))?;
        Ok(Response::new(GetInclusionProofByHashResponse {
            proof: vec![proof_of(index as i64, &proof)],
            signed_log_root: Some(Self::root(&hashes, size)),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        self.gate()?;
        let r = request.into_inner();
        let hashes = self.hashes();
        let (first, second) = (r.first_tree_size as u64, r.second_tree_size as u64);
        if countdown(&self.lagging) || second > hashes.len() as u64 {
            return Ok(Response::new(GetConsistencyProofResponse {
                proof: None,
                signed_log_root: Some(Self::root(&hashes, second.saturating_sub(1))),
            }));
        }
        let proof = consistency_proof(first, second, subtree(&hashes))
            .map_err(|_| Status::invalid_argument("bad sizes"))?;
        Ok(Response::new(GetConsistencyProofResponse {
            proof: Some(proof_of(0, &proof)),
            signed_log_root: Some(Self::root(&hashes, second)),
        }))
    }

    async fn get_latest_signed_log_root(
        &self,
        _: Request<GetLatestSignedLogRootRequest>,
    ) -> Result<Response<GetLatestSignedLogRootResponse>, Status> {
        self.gate()?;
        if self.auto_sequence.load(Ordering::SeqCst) {
            self.sequence();
        }
        let hashes = self.hashes();
        Ok(Response::new(GetLatestSignedLogRootResponse {
            signed_log_root: Some(Self::root(&hashes, u64::MAX)),
            proof: None,
        }))
    }

    async fn init_log(
        &self,
        _: Request<InitLogRequest>,
    ) -> Result<Response<InitLogResponse>, Status> {
        self.gate()?;
        Ok(Response::new(InitLogResponse {
            created: Some(Self::root(&[], 0)),
        }))
    }

    async fn get_leaves_by_range(
        &self,
        request: Request<GetLeavesByRangeRequest>,
    ) -> Result<Response<GetLeavesByRangeResponse>, Status> {
        self.gate()?;
        let r = request.into_inner();
        let s = self.state.lock().unwrap();
        let start = r.start_index as usize;
        // Like Trillian, at most a page of leaves at a time.
        let end = (start + (r.count as usize).min(100)).min(s.leaves.len());
        let leaves = (start..end.max(start))
            .map(|i| Self::leaf(i, &s.leaves[i].0, &s.leaves[i].1))
            .collect();
        let hashes: Vec<Hash> = s.leaves.iter().map(|(v, _)| leaf_hash(v)).collect();
        drop(s);
        Ok(Response::new(GetLeavesByRangeResponse {
            leaves,
            signed_log_root: Some(Self::root(&hashes, u64::MAX)),
        }))
    }
}

#[tonic::async_trait]
impl TrillianAdmin for FakeTrillian {
    async fn get_tree(&self, request: Request<GetTreeRequest>) -> Result<Response<Tree>, Status> {
        self.gate()?;
        let id = request.into_inner().tree_id;
        let s = self.state.lock().unwrap();
        s.trees
            .iter()
            .find(|t| t.tree_id == id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found("no such tree"))
    }

    async fn create_tree(
        &self,
        request: Request<CreateTreeRequest>,
    ) -> Result<Response<Tree>, Status> {
        self.gate()?;
        let mut tree = request
            .into_inner()
            .tree
            .ok_or_else(|| Status::invalid_argument("no tree"))?;
        let mut s = self.state.lock().unwrap();
        tree.tree_id = 1000 + s.trees.len() as i64;
        s.trees.push(tree.clone());
        Ok(Response::new(tree))
    }
}
