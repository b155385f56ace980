//! The witness killed (SIGKILL) while it cosigns a log that offers it two forks of every size at
//! once: across the crash and restart it never cosigns two roots for one size, and after the
//! restart it still stands by the root it last cosigned.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arcane_verifier::Hash;
use arcane_verifier::checkpoint::Checkpoint;
use arcane_verifier::merkle::{leaf_hash, root_from_leaf_hashes};
use arcane_verifier::note::{ALG_ED25519, NoteSigner};
use arcane_verifier::proof::consistency_proof;
use arcane_verifier::witness::AddCheckpoint;

const ORIGIN: &str = "crash.example/log";

fn log_signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, ALG_ED25519, &[7; 32]).unwrap()
}

/// `add-checkpoint` for the tree of `leaves`, from the witness's `old` size.
fn request(leaves: &[Hash], old: u64) -> AddCheckpoint {
    let size = leaves.len() as u64;
    let root = root_from_leaf_hashes(leaves);
    let proof = if old == 0 || old == size {
        Vec::new()
    } else {
        consistency_proof(old, size, |a, b| {
            Ok::<_, ()>(root_from_leaf_hashes(&leaves[a as usize..b as usize]))
        })
        .unwrap()
    };
    AddCheckpoint {
        old_size: old,
        proof,
        checkpoint: Checkpoint::new(ORIGIN, size, root)
            .sign(&log_signer())
            .unwrap()
            .to_text(),
    }
}

/// The witness's status for `request`, or `None` when it did not answer.
async fn add(http: &reqwest::Client, witness: &str, request: &AddCheckpoint) -> Option<u16> {
    let reply = http
        .post(format!("http://{witness}/add-checkpoint"))
        .body(request.to_text())
        .send()
        .await
        .ok()?;
    let status = reply.status().as_u16();
    reply.bytes().await.ok()?;
    Some(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_killed_while_cosigning_never_cosigns_two_roots_for_one_size() {
    let dir = tempfile::tempdir().unwrap();
    let log_vkey = log_signer().verifier().to_text();
    let (key, _) = common::witness_keygen(dir.path(), "crash-witness.example");
    let state = dir.path().join("state");
    let witness = common::start_witness(&key, &state, &log_vkey, "127.0.0.1:0");
    let address = witness.1.clone();
    let http = reqwest::Client::new();
    // Kill it once it has cosigned a few dozen sizes.
    let cosigned = Arc::new(AtomicU64::new(0));
    let pid = witness.0.id();
    let killer = tokio::spawn({
        let cosigned = Arc::clone(&cosigned);
        async move {
            while cosigned.load(Ordering::SeqCst) < 40 {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    });
    // Every root the witness answered 200 for, per size.
    let mut accepted: Vec<(u64, Hash)> = Vec::new();
    let mut chain: Vec<Hash> = Vec::new();
    for size in 1..=1000u64 {
        let old = size - 1;
        let forks: Vec<Vec<Hash>> = ["a", "b"]
            .iter()
            .map(|f| {
                let mut leaves = chain.clone();
                leaves.push(leaf_hash(format!("{f}{size}").as_bytes()));
                leaves
            })
            .collect();
        let (a, b) = (request(&forks[0], old), request(&forks[1], old));
        let (first, second) = tokio::join!(add(&http, &address, &a), add(&http, &address, &b));
        let mut won = None;
        for (fork, status) in forks.iter().zip([first, second]) {
            if status == Some(200) {
                accepted.push((size, root_from_leaf_hashes(fork)));
                won = Some(fork.clone());
            }
        }
        if first.is_none() && second.is_none() {
            break; // killed
        }
        match won {
            Some(fork) => {
                chain = fork;
                cosigned.fetch_add(1, Ordering::SeqCst);
            }
            None => break, // killed between the two answers
        }
    }
    killer.await.unwrap();
    drop(witness);
    for (i, (size, root)) in accepted.iter().enumerate() {
        assert!(
            !accepted[i + 1..]
                .iter()
                .any(|(s, r)| s == size && r != root),
            "two roots cosigned for size {size}"
        );
    }
    let last = accepted.last().unwrap().0;
    assert!(last >= 40, "killed after {last} sizes");

    // Restarted on the same state: it is at the last size it recorded, at most one beyond
    // what it answered (a cosignature committed but not delivered).
    let witness = common::start_witness(&key, &state, &log_vkey, "127.0.0.1:0");
    let probe = request(&chain, 0);
    let reply = http
        .post(format!("http://{}/add-checkpoint", witness.1))
        .body(probe.to_text())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 409);
    let at: u64 = reply.text().await.unwrap().trim().parse().unwrap();
    assert!(
        at == last || at == last + 1,
        "at {at}, last answered {last}"
    );
    // At that size exactly one root is its own: the same one it answered for, if it answered.
    let mut own = Vec::new();
    let candidates: Vec<Vec<Hash>> = if at == last {
        let mut other = chain.clone();
        *other.last_mut().unwrap() = leaf_hash(b"never offered");
        vec![chain.clone(), other]
    } else {
        ["a", "b"]
            .iter()
            .map(|f| {
                let mut leaves = chain.clone();
                leaves.push(leaf_hash(format!("{f}{at}").as_bytes()));
                leaves
            })
            .collect()
    };
    for fork in &candidates {
        if add(&http, &witness.1, &request(fork, at)).await == Some(200) {
            own.push(root_from_leaf_hashes(fork));
        }
    }
    assert_eq!(own.len(), 1, "it stands by exactly one root at size {at}");
    if at == last {
        assert_eq!(own[0], accepted.last().unwrap().1);
    }
}
