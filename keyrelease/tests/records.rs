//! The record of released keys and the challenge secret on the embedded SQLite store: append
//! only, one row per challenge, read back in order page by page, kept across restarts.

mod common;

use arcane_keyrelease::KeyReleaseError;
use arcane_keyrelease::store::KeyStore;
use common::record;

#[tokio::test]
async fn a_challenge_is_recorded_once_and_the_record_reads_back_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let store = KeyStore::open_file(&path).await.unwrap();
    let secret = store.challenge_secret().await.unwrap();
    for i in 0..250 {
        store.record_release(&record(i)).await.unwrap();
    }
    assert!(matches!(
        store.record_release(&record(7)).await,
        Err(KeyReleaseError::ChallengeUsed)
    ));
    let first = store.releases(0, 1_000).await.unwrap();
    assert_eq!(first.len(), 100, "one read returns at most 100 rows");
    let mut all = first;
    while let Some(last) = all.last().map(|r| r.seq) {
        let page = store.releases(last, 100).await.unwrap();
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    assert_eq!(all.len(), 250);
    for (i, row) in all.iter().enumerate() {
        let mut want = record(i as u32);
        want.seq = row.seq;
        assert_eq!(row, &want);
    }
    store.close().await;

    // After a restart: the same secret (outstanding challenges stay valid), the same record.
    let again = KeyStore::open_file(&path).await.unwrap();
    assert_eq!(
        again.challenge_secret().await.unwrap().as_bytes(),
        secret.as_bytes()
    );
    assert_eq!(again.releases(0, 100).await.unwrap()[0], all[0]);
    again.close().await;
}
