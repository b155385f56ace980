//! The gateway and the relay killed (SIGKILL) while they redeem one-time tokens: after a restart
//! on the same data no token is accepted twice, and every token whose redemption was answered
//! stays spent.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arcane_gateway::keys;
use arcane_verifier::entry::{EntryBody, TokenKey, TokenRole};
use arcane_verifier::tokens::{IssuerSecret, OTT_ISSUER, Token, TokenChallenge, request_token};
use base64::Engine as _;
use common::{Log, SMALL_LIMITS, random, spawn_gateway_with, spawn_relay};

/// What a redemption attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Outcome {
    /// Redeemed: the token was accepted (and the request then failed for want of a node).
    Accepted,
    /// Refused as spent.
    Spent,
    /// No answer: the server died meanwhile.
    Lost,
}

/// A chat envelope with `ott` sent to the gateway over standard OHTTP.
async fn chat_at_gateway(http: &reqwest::Client, gw: &str, config: &[u8], ott: &Token) -> Outcome {
    let mut envelope = ott.encode();
    envelope.push(1);
    envelope.extend_from_slice(&[0u8; arcane_verifier::sealed::WRAPPED_DEK_LEN + 16]);
    let mut m = bhttp::Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"gateway".to_vec(),
        b"/v1/chat".to_vec(),
    );
    m.write_content(&envelope);
    let mut inner = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut inner).unwrap();
    let (enc, response) = ohttp::ClientRequest::from_encoded_config(config)
        .unwrap()
        .encapsulate(&inner)
        .unwrap();
    let Ok(reply) = http
        .post(format!("{gw}/.well-known/ohttp-gateway"))
        .header("content-type", "message/ohttp-req")
        .body(enc)
        .send()
        .await
    else {
        return Outcome::Lost;
    };
    let Ok(body) = reply.bytes().await else {
        return Outcome::Lost;
    };
    let plain = response.decapsulate(&body).expect("a whole answer opens");
    let answer = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&plain[..])).unwrap();
    match answer.control().status().unwrap().code() {
        503 => Outcome::Accepted, // redeemed, then no candidate node
        403 => Outcome::Spent,
        other => panic!(
            "unexpected inner status {other}: {}",
            String::from_utf8_lossy(answer.content())
        ),
    }
}

/// A request carrying `ott` as its PrivateToken sent to the relay.
async fn through_relay(http: &reqwest::Client, relay: &str, ott: &Token) -> Outcome {
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ott.encode());
    let Ok(reply) = http
        .post(format!("{relay}/.well-known/ohttp-gateway"))
        .header("content-type", "message/ohttp-req")
        .header("authorization", format!("PrivateToken token=\"{token}\""))
        .body(vec![0u8; 64])
        .send()
        .await
    else {
        return Outcome::Lost;
    };
    match reply.status().as_u16() {
        401 => Outcome::Spent,
        // Admitted: the gateway behind it answers (or is unreachable), but the token was taken.
        _ => Outcome::Accepted,
    }
}

struct Keys {
    log: Log,
    gw_dir: std::path::PathBuf,
    root_pem: std::path::PathBuf,
    config: Vec<u8>,
    ott: IssuerSecret,
}

async fn set_up(dir: &std::path::Path) -> Keys {
    let log = common::start_log(&dir.join("log")).await;
    let gw_dir = dir.join("gateway");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let config = log.publish_ohttp_key(&gw_dir.join("ohttp.key"), 1).await;
    let mut ott = None;
    for (file, role) in [("tgt.key", TokenRole::Tgt), ("ott.key", TokenRole::Ott)] {
        let secret = keys::generate_issuer_key(&gw_dir.join(file)).unwrap();
        log.publish(EntryBody::TokenKey(TokenKey {
            role,
            token_type: arcane_verifier::tokens::TOKEN_TYPE,
            spki_der: secret.public().spki().to_vec(),
        }))
        .await;
        ott = Some(secret);
    }
    let root_pem = common::development_root_pem(dir);
    Keys {
        log,
        gw_dir,
        root_pem,
        config,
        ott: ott.unwrap(),
    }
}

fn tokens(issuer: &IssuerSecret, n: usize) -> Vec<Token> {
    let challenge = TokenChallenge::for_issuer(OTT_ISSUER);
    (0..n)
        .map(|_| {
            let (r, p) = request_token(issuer.public(), &challenge, random()).unwrap();
            p.finalize(&issuer.issue(&r).unwrap()).unwrap()
        })
        .collect()
}

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
