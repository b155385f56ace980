//! The token store's conformance suite on SQLite: one file, and two pools on it (as two
//! processes of one host would open it).

mod store_suite;

use arcane_gateway::store::{Backend, TokenStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.db");
    let a = TokenStore::open_file(&path).await.unwrap();
    let b = TokenStore::open_file(&path).await.unwrap();
    assert_eq!(a.backend(), Backend::Sqlite);
    store_suite::run_all(&[a, b], 200).await;
}

#[tokio::test]
async fn a_url_of_no_known_database_is_refused() {
    let refused = TokenStore::open("mysql://localhost/db").await.unwrap_err();
    assert!(
        refused.to_string().contains("sqlite: or postgres://"),
        "{refused}"
    );
}

/// A reopened database keeps its spent tokens (its migrations are not run twice).
#[tokio::test]
async fn a_reopened_database_keeps_its_spent_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.db");
    let nonce = [7u8; 32];
    {
        let store = TokenStore::open_file(&path).await.unwrap();
        store.spend("gateway", &nonce, 1_000, 1).await.unwrap();
        store.close().await;
    }
    let store = TokenStore::open_file(&path).await.unwrap();
    assert_eq!(
        store.spend("gateway", &nonce, 1_000, 2).await.unwrap(),
        arcane_gateway::store::Spend::Again
    );
}
