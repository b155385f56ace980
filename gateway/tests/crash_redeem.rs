//! The gateway and the relay killed (SIGKILL) while they redeem one-time tokens: after a restart
//! on the same data no token is accepted twice, and every token whose redemption was answered
//! stays spent.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arcane_verifier::tokens::Token;
use common::redeem::{Outcome, chat_at_gateway, set_up, through_relay, tokens};
use common::{SMALL_LIMITS, spawn_gateway_with, spawn_relay};

/// Redeems every token once, from four tasks at once, while `kill` ends the server once a third
/// of the attempts have been answered; returns each token's outcome.
async fn redeem_while_killed<F, Fut>(
    tokens: &[Token],
    redeem: F,
    kill: impl FnOnce() + Send + 'static,
) -> Vec<Outcome>
where
    F: Fn(Token) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    let redeem = Arc::new(redeem);
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let third = tokens.len() / 3;
    let killer = tokio::spawn({
        let answered = Arc::clone(&answered);
        async move {
            while answered.load(std::sync::atomic::Ordering::SeqCst) < third {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            kill();
        }
    });
    let mut tasks = Vec::new();
    for part in tokens.chunks(tokens.len().div_ceil(4)) {
        let part = part.to_vec();
        let redeem = Arc::clone(&redeem);
        let answered = Arc::clone(&answered);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for t in part {
                out.push(redeem(t).await);
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            out
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.unwrap());
    }
    killer.await.unwrap();
    outcomes
}

/// After a restart: what was accepted before stays spent, what was lost is accepted at most
/// once now, and a second round accepts nothing.
async fn check_after_restart<F, Fut>(tokens: &[Token], before: &[Outcome], redeem: F)
where
    F: Fn(Token) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let mut counts: HashMap<Outcome, usize> = HashMap::new();
    for o in before {
        *counts.entry(*o).or_default() += 1;
    }
    assert!(
        counts.get(&Outcome::Accepted).copied().unwrap_or(0) > 0,
        "{counts:?}"
    );
    assert!(
        counts.get(&Outcome::Lost).copied().unwrap_or(0) > 0,
        "the kill came after every request: {counts:?}"
    );
    assert_eq!(
        counts.get(&Outcome::Spent),
        None,
        "first uses refused: {counts:?}"
    );
    for (token, first) in tokens.iter().zip(before) {
        let again = redeem(token.clone()).await;
        match first {
            Outcome::Accepted => assert_eq!(again, Outcome::Spent, "accepted twice"),
            Outcome::Lost => assert_ne!(again, Outcome::Lost),
            Outcome::Unavailable => assert_eq!(again, Outcome::Accepted, "refused, yet spent"),
            Outcome::Spent => unreachable!(),
        }
    }
    for token in tokens {
        assert_eq!(
            redeem(token.clone()).await,
            Outcome::Spent,
            "accepted twice"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_while_redeeming_accepts_no_token_twice() {
    let dir = tempfile::tempdir().unwrap();
    let keys = set_up(dir.path()).await;
    let tokens = tokens(&keys.ott, 400);
    let gateway =
        spawn_gateway_with(&keys.gw_dir, &keys.log, &keys.root_pem, &SMALL_LIMITS).unwrap();
    let (url, config) = (gateway.1.clone(), keys.config.clone());
    let mut child = gateway;
    let pid = child.0.id();
    let http = reqwest::Client::new();
    let before = redeem_while_killed(
        &tokens,
        {
            let (http, url, config) = (http.clone(), url.clone(), config.clone());
            move |t| {
                let (http, url, config) = (http.clone(), url.clone(), config.clone());
                async move { chat_at_gateway(&http, &url, &config, &t).await }
            }
        },
        move || {
            // SIGKILL: no chance to finish anything.
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        },
    )
    .await;
    let _ = child.0.wait();
    let restarted =
        spawn_gateway_with(&keys.gw_dir, &keys.log, &keys.root_pem, &SMALL_LIMITS).unwrap();
    let http = reqwest::Client::new();
    check_after_restart(&tokens, &before, |t| {
        let (http, url, config) = (http.clone(), restarted.1.clone(), config.clone());
        async move { chat_at_gateway(&http, &url, &config, &t).await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_while_redeeming_accepts_no_token_twice() {
    let dir = tempfile::tempdir().unwrap();
    let keys = set_up(dir.path()).await;
    let tokens = tokens(&keys.ott, 400);
    let relay_dir = dir.path().join("relay");
    // The gateway behind it is not needed to redeem at the relay: it is never started.
    let absent_gateway = "http://127.0.0.1:9";
    let relay = spawn_relay(&relay_dir, absent_gateway, &keys.log);
    let url = relay.1.clone();
    let pid = relay.0.id();
    let http = reqwest::Client::new();
    let before = redeem_while_killed(
        &tokens,
        {
            let (http, url) = (http.clone(), url.clone());
            move |t| {
                let (http, url) = (http.clone(), url.clone());
                async move { through_relay(&http, &url, &t).await }
            }
        },
        move || {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        },
    )
    .await;
    drop(relay);
    let restarted = spawn_relay(&relay_dir, absent_gateway, &keys.log);
    let http = reqwest::Client::new();
    check_after_restart(&tokens, &before, |t| {
        let (http, url) = (http.clone(), restarted.1.clone());
        async move { through_relay(&http, &url, &t).await }
    })
    .await;
}
