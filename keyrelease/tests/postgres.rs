//! The model keys on a real PostgreSQL server, as replicas of the service share them: two
//! processes asked at once for the key of a new model both get the one key stored first.
//!
//! Needs `ARCANE_TEST_POSTGRES_URL` (a role allowed to create databases); without it the test
//! says so and skips; `.ci/run` always sets it.

use arcane_keyrelease::store::KeyStore;
use arcane_test_support::TestDatabase;

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
