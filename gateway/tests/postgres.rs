//! The token store on a real PostgreSQL server, as replicas share it: the conformance suite over
//! two pools, then two gateway processes and two relay processes on one database, each token
//! redeemed at both at once, thousands of times — accepted exactly once every time.
//!
//! Needs `ARCANE_TEST_POSTGRES_URL` (a role allowed to create databases); each test makes its own
//! database. Without it the tests say so and skip; `.ci/run` always sets it.

mod common;
mod store_suite;

use std::sync::Arc;

use arcane_gateway::store::{Backend, TokenStore};
use arcane_test_support::TestDatabase;
use arcane_verifier::tokens::Token;
use common::redeem::{Outcome, chat_at_gateway, set_up, through_relay, tokens};
use common::{SMALL_LIMITS, Spawned, spawn_gateway_with, spawn_relay_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_postgres() {
    let Some(db) = TestDatabase::create("gateway_suite").await else {
        return;
    };
    let a = TokenStore::open(&db.url).await.unwrap();
    let b = TokenStore::open(&db.url).await.unwrap();
    assert_eq!(a.backend(), Backend::Postgres);
    store_suite::run_all(&[a.clone(), b.clone()], 300).await;
    a.close().await;
    b.close().await;
    db.drop().await;
}

/// Each token sent to both servers at once (`at(i, token)` redeems at server `i`): accepted by
/// exactly one, refused as spent by the other, and refused by both afterwards.
async fn each_once_at_two<F, Fut>(tokens: Vec<Token>, at: F)
where
    F: Fn(usize, Token) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    let at = Arc::new(at);
    let total = tokens.len();
    // Four tokens in flight at a time, each at both servers.
    let mut workers = Vec::new();
    for part in tokens.chunks(total.div_ceil(4)) {
        let (part, at) = (part.to_vec(), Arc::clone(&at));
        workers.push(tokio::spawn(async move {
            for token in part {
                let (first, second) = tokio::join!(at(0, token.clone()), at(1, token.clone()));
                let mut outcomes = [first, second];
                outcomes.sort_by_key(|o| *o as u8);
                assert_eq!(
                    outcomes,
                    [Outcome::Accepted, Outcome::Spent],
                    "one token at two replicas"
                );
                // And it stays spent at both.
                assert_eq!(at(0, token.clone()).await, Outcome::Spent);
                assert_eq!(at(1, token).await, Outcome::Spent);
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
}

const ROUNDS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_database_accept_each_token_once() {
    let Some(db) = TestDatabase::create("two_gateways").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = set_up(dir.path()).await;
    let mut args: Vec<&str> = SMALL_LIMITS.to_vec();
    args.extend(["--database-url", db.url.as_str()]);
    let gateways: Vec<Spawned> = (0..2)
        .map(|_| spawn_gateway_with(&keys.gw_dir, &keys.log, &keys.root_pem, &args).unwrap())
        .collect();
    let urls: Vec<String> = gateways.iter().map(|g| g.1.clone()).collect();
    let (http, config) = (reqwest::Client::new(), keys.config.clone());
    each_once_at_two(tokens(&keys.ott, ROUNDS), move |i, t| {
        let (http, url, config) = (http.clone(), urls[i].clone(), config.clone());
        async move { chat_at_gateway(&http, &url, &config, &t).await }
    })
    .await;
    // Nothing lives in the data directory's SQLite file: the replicas shared PostgreSQL.
    assert!(!keys.gw_dir.join("gateway.db").exists());
    drop(gateways);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_database_accept_each_token_once() {
    let Some(db) = TestDatabase::create("two_relays").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = set_up(dir.path()).await;
    // The gateway behind them is not needed to redeem at a relay: it is never started.
    let absent_gateway = "http://127.0.0.1:9";
    let relays: Vec<Spawned> = (0..2)
        .map(|i| {
            spawn_relay_with(
                &dir.path().join(format!("relay-{i}")),
                absent_gateway,
                &keys.log,
                &["--database-url", &db.url],
            )
        })
        .collect();
    let urls: Vec<String> = relays.iter().map(|r| r.1.clone()).collect();
    let http = reqwest::Client::new();
    each_once_at_two(tokens(&keys.ott, ROUNDS), move |i, t| {
        let (http, url) = (http.clone(), urls[i].clone());
        async move { through_relay(&http, &url, &t).await }
    })
    .await;
    drop(relays);
    db.drop().await;
}
