//! The Trillian client against a Trillian speaking the real gRPC wire format (a test server from
//! the same generated code over an in-memory tree), and golden protobuf encodings derived by hand
//! from Trillian's field numbers, so both directions of the wire format are pinned down.

mod trillian_fake;

use std::sync::atomic::Ordering;
use std::time::Duration;

use arcane_log::trillian::client::{Queued, RetryPolicy, TrillianClient};
use arcane_log::trillian::proto::google::rpc::Status as RpcStatus;
use arcane_log::trillian::proto::trillian::*;
use arcane_verifier::merkle::{leaf_hash, root_from_leaf_hashes};
use arcane_verifier::proof::{verify_consistency, verify_inclusion};
use prost::Message;
use trillian_fake::FakeTrillian;

fn quick() -> RetryPolicy {
    RetryPolicy {
        attempts: 6,
        first_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(40),
        timeout: Duration::from_secs(5),
    }
}

/// Each message's bytes, laid out by hand: tag = field number << 3 | wire type (0 varint,
/// 2 length-delimited), then the value.
#[test]
fn golden_encodings_match_trillians_field_numbers() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            // log_id (1) = 42; leaf (2) { leaf_value (2) = "ab", leaf_identity_hash (5) = 11 11 }
            QueueLeafRequest {
                log_id: 42,
                leaf: Some(LogLeaf {
                    leaf_value: b"ab".to_vec(),
                    leaf_identity_hash: vec![0x11, 0x11],
                    ..Default::default()
                }),
                charge_to: None,
            }
            .encode_to_vec(),
            "082a 1208 12026162 2a021111",
        ),
        (
            // log_id (1) = 1, leaf_index (2) = 300, tree_size (3) = 1000
            GetInclusionProofRequest {
                log_id: 1,
                leaf_index: 300,
                tree_size: 1000,
                charge_to: None,
            }
            .encode_to_vec(),
            "0801 10ac02 18e807",
        ),
        (
            // signed_log_root (2) { log_root (8) = 00 01 }
            GetLatestSignedLogRootResponse {
                signed_log_root: Some(SignedLogRoot {
                    log_root: vec![0, 1],
                }),
                proof: None,
            }
            .encode_to_vec(),
            "1204 42020001",
        ),
        (
            // leaves (1) [ { leaf_value (2) = "x", leaf_index (4) = 5 } ]
            GetLeavesByRangeResponse {
                leaves: vec![LogLeaf {
                    leaf_value: b"x".to_vec(),
                    leaf_index: 5,
                    ..Default::default()
                }],
                signed_log_root: None,
            }
            .encode_to_vec(),
            "0a05 120178 2005",
        ),
        (
            // queued_leaf (2) { status (2) { code (1) = 6 (ALREADY_EXISTS) } }
            QueueLeafResponse {
                queued_leaf: Some(QueuedLogLeaf {
                    leaf: None,
                    status: Some(RpcStatus {
                        code: 6,
                        message: String::new(),
                    }),
                }),
            }
            .encode_to_vec(),
            "1204 1202 0806",
        ),
        (
            // tree (1) { tree_state (2) = ACTIVE, tree_type (3) = LOG, display_name (8) = "a" }
            CreateTreeRequest {
                tree: Some(Tree {
                    tree_state: TreeState::Active as i32,
                    tree_type: TreeType::Log as i32,
                    display_name: "a".into(),
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
            "0a07 1001 1801 420161",
        ),
        (
            // first_tree_size (2) = 3, second_tree_size (3) = -1 (ten varint bytes)
            GetConsistencyProofRequest {
                log_id: 0,
                first_tree_size: 3,
                second_tree_size: -1,
                charge_to: None,
            }
            .encode_to_vec(),
            "1003 18ffffffffffffffffff01",
        ),
    ];
    for (encoded, golden) in cases {
        assert_eq!(hex::encode(&encoded), golden.replace(' ', ""));
    }
    // And back: the golden bytes decode to the same messages.
    let decoded =
        QueueLeafRequest::decode(&hex::decode("082a1208120261622a021111").unwrap()[..]).unwrap();
    assert_eq!(decoded.log_id, 42);
    assert_eq!(decoded.leaf.unwrap().leaf_identity_hash, vec![0x11, 0x11]);
    // Fields this subset leaves out (Tree.hash_strategy = 4, SignedLogRoot.key_hint = 7 and
    // log_root_signature = 9) are skipped, not refused.
    let tree = Tree::decode(&hex::decode("08e807200110011801").unwrap()[..]).unwrap();
    assert_eq!(
        (tree.tree_id, tree.tree_state, tree.tree_type),
        (1000, 1, 1)
    );
    let root =
        SignedLogRoot::decode(&hex::decode("3a0100420200014a03010203").unwrap()[..]).unwrap();
    assert_eq!(root.log_root, vec![0, 1]);
}

#[tokio::test]
async fn queue_sequence_prove_and_read_back() {
    let fake = FakeTrillian::default();
    let addr = fake.serve().await;
    let client = TrillianClient::connect(&addr.to_string(), 7, quick()).unwrap();
    let values: Vec<Vec<u8>> = (0..13).map(|i| format!("entry {i}").into_bytes()).collect();
    for v in &values {
        assert_eq!(
            client.queue_leaf(v, &leaf_hash(v)).await.unwrap(),
            Queued::New
        );
    }
    // Queued twice before sequencing, and again after: the existing leaf, not an error.
    assert_eq!(
        client
            .queue_leaf(&values[3], &leaf_hash(&values[3]))
            .await
            .unwrap(),
        Queued::Existing(None)
    );
    assert_eq!(client.latest_root().await.unwrap().tree_size, 0);
    fake.sequence();
    assert!(matches!(
        client
            .queue_leaf(&values[3], &leaf_hash(&values[3]))
            .await
            .unwrap(),
        Queued::Existing(_)
    ));
    let root = client.latest_root().await.unwrap();
    let hashes: Vec<_> = values.iter().map(|v| leaf_hash(v)).collect();
    assert_eq!(root.tree_size, 13);
    assert_eq!(root.root().unwrap(), root_from_leaf_hashes(&hashes));

    // Leaves come back in pages, in order.
    let leaves = client.leaves(2, 5).await.unwrap();
    assert_eq!(leaves.len(), 5);
    assert_eq!(leaves[0].index, 2);
    assert_eq!(leaves[4].value, values[6]);
    assert!(client.leaves(13, 5).await.unwrap().is_empty());

    // Proofs verify against our own root computation.
    for index in [0u64, 5, 12] {
        let proof = client.inclusion_proof(index, 13).await.unwrap();
        verify_inclusion(
            index,
            13,
            &hashes[index as usize],
            &proof,
            &root.root().unwrap(),
        )
        .unwrap();
    }
    let (index, proof) = client
        .inclusion_proof_by_hash(&hashes[9], 13)
        .await
        .unwrap();
    assert_eq!(index, 9);
    verify_inclusion(9, 13, &hashes[9], &proof, &root.root().unwrap()).unwrap();
    let proof = client.consistency_proof(4, 13).await.unwrap();
    verify_consistency(
        4,
        13,
        &root_from_leaf_hashes(&hashes[..4]),
        &root.root().unwrap(),
        &proof,
    )
    .unwrap();
}

#[tokio::test]
async fn a_lagging_instance_is_waited_for_and_unavailable_is_retried() {
    let fake = FakeTrillian::default();
    let addr = fake.serve().await;
    let client = TrillianClient::connect(&addr.to_string(), 7, quick()).unwrap();
    for i in 0..8u8 {
        client.queue_leaf(&[i], &leaf_hash(&[i])).await.unwrap();
    }
    fake.sequence();
    // Two answers from an instance that does not have the tree yet, then a full one.
    fake.lagging.store(2, Ordering::SeqCst);
    let before = fake.calls.load(Ordering::SeqCst);
    assert_eq!(client.consistency_proof(3, 8).await.unwrap().len(), 4);
    assert_eq!(fake.calls.load(Ordering::SeqCst) - before, 3);
    fake.lagging.store(2, Ordering::SeqCst);
    client.inclusion_proof(6, 8).await.unwrap();
    // UNAVAILABLE three times, then an answer.
    fake.unavailable.store(3, Ordering::SeqCst);
    assert_eq!(client.latest_root().await.unwrap().tree_size, 8);
    // A proof for a tree the server never reaches: an error once the attempts run out.
    let e = client.inclusion_proof(1, 9).await.unwrap_err();
    assert!(e.to_string().contains("no full proof for size 9"), "{e}");
    // Unavailable for longer than the policy allows: the error says so.
    fake.unavailable.store(100, Ordering::SeqCst);
    let e = client.latest_root().await.unwrap_err();
    assert!(e.to_string().contains("Unavailable"), "{e}");
}

#[tokio::test]
async fn trees_are_created_initialised_and_checked() {
    let fake = FakeTrillian::default();
    let addr = fake.serve().await;
    let id = TrillianClient::create_log(&addr.to_string(), "arcane test", quick())
        .await
        .unwrap();
    let client = TrillianClient::connect(&addr.to_string(), id, quick()).unwrap();
    let tree = client.check_tree().await.unwrap();
    assert_eq!(tree.display_name, "arcane test");
    let missing = TrillianClient::connect(&addr.to_string(), id + 1, quick()).unwrap();
    assert!(
        missing
            .check_tree()
            .await
            .unwrap_err()
            .to_string()
            .contains("NotFound")
    );
    fake.state.lock().unwrap().trees[0].tree_state = TreeState::Frozen as i32;
    assert!(
        client
            .check_tree()
            .await
            .unwrap_err()
            .to_string()
            .contains("not active")
    );
}
