//! The storage conformance suite and multi-process tests against a real PostgreSQL server.
//!
//! Needs `ARCANE_TEST_POSTGRES_URL` (a role allowed to create databases); each test makes its own
//! database. Without it the tests say so and skip; `.ci/run` always sets it.

mod common;
mod suite;
mod trillian_fake;

use std::time::Duration;

use arcane_test_support::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_postgres() {
    let Some(db) = TestDatabase::create("suite").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = common::start(&dir.path().join("data"), Some(db.url.clone())).await;
    suite::appends_proofs_and_tiles(&log).await;
    suite::duplicates_get_the_same_index(&log).await;
    log.server.shutdown().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_entries_on_postgres() {
    let Some(db) = TestDatabase::create("typed").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = common::start(&dir.path().join("data"), Some(db.url.clone())).await;
    suite::typed::publishing_rules_lookups_and_bundles(&log).await;
    log.server.shutdown().await;
    db.drop().await;
}

/// PostgreSQL as the personality's database, Trillian as the sequencer: the same suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_over_trillian_on_postgres() {
    let Some(db) = TestDatabase::create("trillian").await else {
        return;
    };
    let fake = trillian_fake::FakeTrillian::default();
    fake.auto_sequence
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let addr = fake.serve().await.to_string();
    let retry = arcane_log::trillian::client::RetryPolicy {
        first_backoff: Duration::from_millis(5),
        ..Default::default()
    };
    let tree_id =
        arcane_log::trillian::client::TrillianClient::create_log(&addr, "pg", retry.clone())
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(&dir.path().join("data"), Some(db.url.clone()));
    config.trillian = Some(arcane_log::trillian::follower::TrillianConfig {
        addr,
        tree_id,
        retry,
    });
    let log = common::start_with(config).await;
    suite::appends_proofs_and_tiles(&log).await;
    suite::duplicates_get_the_same_index(&log).await;
    log.server.shutdown().await;
    db.drop().await;
}

async fn integrated_by(log: &common::TestLog) -> u64 {
    let text = log.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("arcane_log_entries_integrated_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_elect_one_sequencer_and_fail_over() {
    let Some(db) = TestDatabase::create("election").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let mut config_a = common::config(&data_a, Some(db.url.clone()));
    config_a.sequencer.lease_ttl = Duration::from_millis(600);
    let a = common::start_with(config_a.clone()).await;
    // The second replica shares the log key and the database.
    std::fs::create_dir_all(&data_b).unwrap();
    std::fs::copy(data_a.join("log.key"), data_b.join("log.key")).unwrap();
    let mut config_b = common::config(&data_b, Some(db.url.clone()));
    config_b.sequencer.lease_ttl = Duration::from_millis(600);
    let b = common::start_with(config_b).await;
    // Each replica's own publisher policy allows both publishers.
    for (log, other) in [(&a, &b), (&b, &a)] {
        arcane_log::keys::PublisherPolicy::new(log.policy_path())
            .allow(
                &other.publisher.verifier(),
                &arcane_log::keys::AllowedKinds::parse("release,ohttp-keys,token-key,opaque")
                    .unwrap(),
            )
            .unwrap();
    }
    assert_eq!(a.server.vkey(), b.server.vkey());

    let mut expected = 0u64;
    for round in 0..3 {
        a.add_all(&common::entries(&format!("a{round}"), 20)).await;
        b.add_all(&common::entries(&format!("b{round}"), 20)).await;
        expected += 40;
    }
    // Both replicas serve the same, newest checkpoint.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (cp_a, cp_b) = (a.checkpoint().await, b.checkpoint().await);
    assert_eq!(cp_a.checkpoint, cp_b.checkpoint);
    assert_eq!(cp_a.checkpoint.size, expected);
    // Exactly one of them integrated everything.
    let (ia, ib) = (integrated_by(&a).await, integrated_by(&b).await);
    assert!(ia == 0 || ib == 0, "both sequenced: {ia} and {ib}");
    assert_eq!(ia + ib, expected);

    // Stop the sequencer; the other takes over.
    let (leader, follower) = if ia > 0 { (a, b) } else { (b, a) };
    leader.server.shutdown().await;
    follower
        .add_all(&common::entries("after failover", 10))
        .await;
    assert_eq!(follower.checkpoint().await.checkpoint.size, expected + 10);
    assert_eq!(integrated_by(&follower).await, 10);
    follower.server.shutdown().await;
    db.drop().await;
}

/// PostgreSQL itself restarted (crashed, with `-m immediate`) under a stream of appends: the log
/// rides it out, every entry it acknowledged is integrated afterwards, and no two checkpoints of
/// one size differ. Needs `ARCANE_TEST_POSTGRES_RESTART`, a command that restarts the server
/// (`.ci/run` sets it to the local cluster's `pg_ctlcluster … restart -m immediate`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_appends_loses_nothing() {
    let Ok(restart) = std::env::var("ARCANE_TEST_POSTGRES_RESTART") else {
        eprintln!(
            "SKIPPED PostgreSQL restart test: set ARCANE_TEST_POSTGRES_RESTART (`.ci/run` does)"
        );
        return;
    };
    let Some(db) = TestDatabase::create("restart").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log =
        std::sync::Arc::new(common::start(&dir.path().join("data"), Some(db.url.clone())).await);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let (log, acked, stop) = (log.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let entry = format!("restart test {writer} {i}");
                i += 1;
                match log.client.add(entry.as_bytes(), &log.publisher).await {
                    Ok(status) => acked.lock().unwrap().push(status.leaf_hash),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    {
        let (log, seen, stop) = (log.clone(), seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(text) = log.client.checkpoint().await {
                    seen.lock().unwrap().push(text);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    let acked_count = || acked.lock().unwrap().len();
    while acked_count() < 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = acked_count();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .args(["-c", &restart])
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "the restart command failed");
    // Appends go on once PostgreSQL is back.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked_count() < before + 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "no appends after the restart ({} before, {} now)",
            before,
            acked_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    for leaf in &acked {
        let status = log
            .client
            .wait_integrated(leaf, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("acknowledged entry {leaf} lost: {e}"));
        assert!(status.index.is_some());
    }
    let mut by_size = std::collections::BTreeMap::new();
    let key = log.log_key();
    for text in seen.lock().unwrap().iter() {
        let cp = arcane_verifier::checkpoint::verify_checkpoint(
            text.as_bytes(),
            &key,
            &arcane_verifier::cosignature::WitnessPolicy::none(),
        )
        .unwrap()
        .checkpoint;
        if let Some(root) = by_size.insert(cp.size, cp.root) {
            assert_eq!(root, cp.root, "two roots for size {}", cp.size);
        }
    }
    eprintln!(
        "PostgreSQL restart: {} acknowledged entries ({} before the restart) all integrated; {} checkpoints seen",
        acked.len(),
        before,
        by_size.len()
    );
    let log = std::sync::Arc::try_unwrap(log).ok().expect("tasks ended");
    log.server.shutdown().await;
    db.drop().await;
}

/// The same entries submitted to two log processes at once, in opposite orders (two group
/// commits that meet each other's rows the other way round): every submission is stored, with
/// no error, and each entry is new exactly once. This deadlocked while a group commit inserted
/// its rows in arrival order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_entries_in_opposite_orders_at_two_processes_are_each_stored_once() {
    use arcane_log::storage::{NewEntry, Store};
    let Some(db) = TestDatabase::create("opposite_orders").await else {
        return;
    };
    let (a, b) = (
        Store::open(&db.url).await.unwrap(),
        Store::open(&db.url).await.unwrap(),
    );
    for round in 0..20u32 {
        let entries: Vec<NewEntry> = (0..64u32)
            .map(|i| {
                let data = format!("round {round} entry {i}").into_bytes();
                NewEntry {
                    leaf_hash: arcane_verifier::merkle::leaf_hash(&data),
                    data,
                    publisher: "test".into(),
                    typed: None,
                }
            })
            .collect();
        let mut reversed = entries.clone();
        reversed.reverse();
        let (at_a, at_b) = tokio::join!(a.submit_batch(&entries, 1), b.submit_batch(&reversed, 1));
        let (at_a, at_b) = (
            at_a.unwrap_or_else(|e| panic!("round {round}: {e}")),
            at_b.unwrap_or_else(|e| panic!("round {round}: {e}")),
        );
        for (i, first) in at_a.iter().enumerate() {
            let second = &at_b[entries.len() - 1 - i];
            assert!(
                first.duplicate != second.duplicate,
                "round {round}, entry {i}: new at both or at neither"
            );
        }
    }
    db.drop().await;
}
