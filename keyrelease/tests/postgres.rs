//! The model keys on a real PostgreSQL server, as replicas of the service share them: two
//! processes asked at once for the key of a new model both get the one key stored first.
//!
//! Needs `ARCANE_TEST_POSTGRES_URL` (a role allowed to create databases); without it the test
//! says so and skips; `.ci/run` always sets it.

mod common;

use arcane_keyrelease::store::KeyStore;
use arcane_test_support::TestDatabase;
use common::record;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_asked_at_once_for_a_new_model_agree_on_its_key() {
    let Some(db) = TestDatabase::create("keyrelease").await else {
        return;
    };
    let a = KeyStore::open(&db.url).await.unwrap();
    let b = KeyStore::open(&db.url).await.unwrap();
    assert_eq!(a.backend(), arcane_db::Backend::Postgres);
    for round in 0..50u8 {
        let model = [round; 32];
        let (x, y) = tokio::join!(a.key_or_new(&model, 1), b.key_or_new(&model, 1));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(
            x.as_bytes(),
            y.as_bytes(),
            "round {round}: two keys for one model"
        );
        let stored = a.key(&model).await.unwrap().unwrap();
        assert_eq!(stored.as_bytes(), x.as_bytes());
    }
    assert!(a.key(&[255; 32]).await.unwrap().is_none());
    a.close().await;
    b.close().await;
    db.drop().await;
}

/// Two replicas on one database: they share the challenge secret (a challenge issued by one is
/// accepted by the other), and one challenge recorded at both at once is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_challenge_secret_and_record_a_challenge_once() {
    let Some(db) = TestDatabase::create("keyrelease_records").await else {
        return;
    };
    let a = KeyStore::open(&db.url).await.unwrap();
    let b = KeyStore::open(&db.url).await.unwrap();
    let (secret_a, secret_b) = tokio::join!(a.challenge_secret(), b.challenge_secret());
    let (secret_a, secret_b) = (secret_a.unwrap(), secret_b.unwrap());
    assert_eq!(secret_a.as_bytes(), secret_b.as_bytes());
    secret_b
        .check(&secret_a.issue(1_000, [3; 16]), 1_000)
        .unwrap();
    let mut recorded = 0;
    for i in 0..40 {
        let row = record(i);
        let (x, y) = tokio::join!(a.record_release(&row), b.record_release(&row));
        for outcome in [x, y] {
            match outcome {
                Ok(_) => recorded += 1,
                Err(arcane_keyrelease::KeyReleaseError::ChallengeUsed) => {}
                Err(other) => panic!("round {i}: {other}"),
            }
        }
    }
    assert_eq!(recorded, 40, "each challenge recorded exactly once");
    let all = a.releases(0, 100).await.unwrap();
    assert_eq!(all.len(), 40);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all[0].challenge, "00000000");
    a.close().await;
    b.close().await;
    db.drop().await;
}
