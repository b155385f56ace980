//! arcane-log as a personality over Trillian (a test Trillian speaking the real gRPC wire format):
//! the same conformance suite as SQLite and PostgreSQL, driven through the HTTP API; and the
//! refusals — a Trillian that rewinds, forks or holds leaves this log never accepted is reported
//! and never signed over.

mod common;
mod suite;
mod trillian_fake;

use std::sync::atomic::Ordering;
use std::time::Duration;

use arcane_log::trillian::client::{RetryPolicy, TrillianClient};
use arcane_log::trillian::follower::TrillianConfig;
use trillian_fake::FakeTrillian;

fn quick() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        first_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
    }
}

async fn trillian_log(dir: &std::path::Path) -> (common::TestLog, FakeTrillian) {
    let fake = FakeTrillian::default();
    fake.auto_sequence.store(true, Ordering::SeqCst);
    let addr = fake.serve().await.to_string();
    let tree_id = TrillianClient::create_log(&addr, "arcane test", quick())
        .await
        .unwrap();
    let mut config = common::config(dir, None);
    config.trillian = Some(TrillianConfig {
        addr,
        tree_id,
        retry: quick(),
    });
    (common::start_with(config).await, fake)
}

async fn refusals(log: &common::TestLog) -> u64 {
    let text = log.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("arcane_log_trillian_refusals_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_over_trillian() {
    let dir = tempfile::tempdir().unwrap();
    let (log, fake) = trillian_log(&dir.path().join("data")).await;
    // Trillian briefly unavailable at the start: retried, nothing lost.
    fake.unavailable.store(2, Ordering::SeqCst);
    // And an instance lagging behind the roots it reports, three proof requests long.
    fake.lagging.store(3, Ordering::SeqCst);
    suite::appends_proofs_and_tiles(&log).await;
    suite::duplicates_get_the_same_index(&log).await;
    // Trillian holds exactly the leaves the log signed, in the same order.
    let trillian_leaves = fake.state.lock().unwrap().leaves.len() as u64;
    assert_eq!(trillian_leaves, log.checkpoint().await.checkpoint.size);
    assert_eq!(refusals(&log).await, 0);
    log.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_entries_over_trillian() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _fake) = trillian_log(&dir.path().join("data")).await;
    suite::typed::publishing_rules_lookups_and_bundles(&log).await;
    log.server.shutdown().await;
}

/// Waits until the log has refused a Trillian root at least once, then checks nothing past
/// `signed` was signed.
async fn assert_refused_and_not_signed(log: &common::TestLog, signed: u64, why: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while refusals(log).await == 0 {
        assert!(std::time::Instant::now() < deadline, "{why}: never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        log.checkpoint().await.checkpoint.size,
        signed,
        "{why}: signed over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewinding_trillian_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, fake) = trillian_log(&dir.path().join("data")).await;
    log.add_all(&common::entries("before", 5)).await;
    fake.state.lock().unwrap().leaves.truncate(3);
    fake.auto_sequence.store(false, Ordering::SeqCst);
    log.client
        .add(&common::entries("after", 1)[0], &log.publisher)
        .await
        .unwrap();
    assert_refused_and_not_signed(&log, 5, "rewind").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forking_trillian_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, fake) = trillian_log(&dir.path().join("data")).await;
    log.add_all(&common::entries("before", 5)).await;
    // Another history of the same size: a different leaf 2.
    fake.state.lock().unwrap().leaves[2].0 = b"another entry".to_vec();
    assert_refused_and_not_signed(&log, 5, "fork at the same size").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_this_log_never_accepted_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, fake) = trillian_log(&dir.path().join("data")).await;
    log.add_all(&common::entries("before", 4)).await;
    // Someone else writes to the tree: a leaf no publisher of this log submitted.
    fake.state
        .lock()
        .unwrap()
        .leaves
        .push((b"injected".to_vec(), vec![1; 32]));
    assert_refused_and_not_signed(&log, 4, "foreign leaf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_inactive_tree_stops_the_server_at_start() {
    let fake = FakeTrillian::default();
    let addr = fake.serve().await.to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path(), None);
    config.trillian = Some(TrillianConfig {
        addr,
        tree_id: 4242,
        retry: quick(),
    });
    let e = arcane_log::start(config).await.err().expect("refused");
    assert!(e.to_string().contains("NotFound"), "{e}");
}
