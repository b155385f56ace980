//! Keys over time, through the gateway and relay binaries: new key files and entries are picked
//! up by the periodic refresh (no restart), an expired entry's key is neither served nor used —
//! not for signing, not for redeeming, not at the relay — the moment its window ends.

mod common;

use std::time::{Duration, Instant};

use arcane_gateway::keys;
use arcane_verifier::entry::{EntryBody, TokenKey, TokenRole};
use arcane_verifier::tokens::{
    IssuerKey, IssuerSecret, OTT_ISSUER, TGT_ISSUER, Token, TokenChallenge, ott_nonce,
    request_token, tgt_nonce,
};
use base64::Engine as _;
use common::{Log, SMALL_LIMITS, ohttp_call, random, spawn_gateway_with, spawn_relay_with};

async fn publish_token_key(log: &Log, secret: &IssuerSecret, role: TokenRole, validity: Duration) {
    log.publish_for(
        EntryBody::TokenKey(TokenKey {
            role,
            token_type: arcane_verifier::tokens::TOKEN_TYPE,
            spki_der: secret.public().spki().to_vec(),
        }),
        validity,
    )
    .await;
}

/// The `/v1/keys` answer: (kind, role, key bytes) per listed key, in order.
async fn listed(http: &reqwest::Client, gw: &str) -> Vec<(String, Option<String>, Vec<u8>)> {
    let v: serde_json::Value = http
        .get(format!("{gw}/v1/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kind"].as_str().unwrap().to_owned(),
                k["role"].as_str().map(str::to_owned),
                base64::engine::general_purpose::STANDARD
                    .decode(k["key"].as_str().unwrap())
                    .unwrap(),
            )
        })
        .collect()
}

/// Key ids in the RFC 9540 key configuration list.
async fn offered_ohttp_ids(http: &reqwest::Client, gw: &str) -> Vec<u8> {
    let list = http
        .get(format!("{gw}/.well-known/ohttp-gateway"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut ids = Vec::new();
    let mut rest = &list[..];
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        ids.push(rest[2]);
        rest = &rest[2 + len..];
    }
    ids
}

async fn until(what: &str, deadline: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !condition().await {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A batch of `n` OTT requests for indices `first..` under `ott_key`, after `tgt`.
fn ott_batch(
    tgt: &Token,
    secret: &[u8; 32],
    ott_key: &IssuerKey,
    first: u32,
    n: u32,
) -> (Vec<u8>, Vec<arcane_verifier::tokens::PendingToken>) {
    let mut body = tgt.encode();
    let mut pendings = Vec::new();
    for i in first..first + n {
        let (r, p) = request_token(
            ott_key,
            &TokenChallenge::for_issuer(OTT_ISSUER),
            ott_nonce(secret, i),
        )
        .unwrap();
        body.extend_from_slice(&r.encode());
        pendings.push(p);
    }
    (body, pendings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_refreshed_and_expired_keys_stop_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = common::start_log(&dir.path().join("log")).await;
    let gw_dir = dir.path().join("gateway");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let first_config = log.publish_ohttp_key(&gw_dir.join("ohttp.key"), 1).await;
    let tgt_secret = keys::generate_issuer_key(&gw_dir.join("tgt.key")).unwrap();
    publish_token_key(&log, &tgt_secret, TokenRole::Tgt, Duration::from_secs(3600)).await;
    // The first OTT key lives for a few seconds only.
    let short_ott = keys::generate_issuer_key(&gw_dir.join("ott.key")).unwrap();
    let short_lived = Duration::from_secs(8);
    publish_token_key(&log, &short_ott, TokenRole::Ott, short_lived).await;
    let short_ott_expires = Instant::now() + short_lived;
    let db = arcane_gateway::store::TokenStore::open_file(&gw_dir.join("gateway.db"))
        .await
        .unwrap();
    let api_key = arcane_gateway::tokens::TokenServices::add_account(&db, "alice")
        .await
        .unwrap();
    db.close().await;
    let root_pem = common::development_root_pem(dir.path());
    let refresh = ["--key-refresh-secs", "1"];
    let gateway = spawn_gateway_with(
        &gw_dir,
        &log,
        &root_pem,
        &[&refresh[..], &SMALL_LIMITS[..]].concat(),
    )
    .unwrap();
    let gw = gateway.1.clone();
    let relay = spawn_relay_with(&dir.path().join("relay"), &gw, &log, &refresh);
    let http = reqwest::Client::new();
    assert_eq!(offered_ohttp_ids(&http, &gw).await, vec![1]);

    // --- tokens under the short-lived OTT key --------------------------------------------------
    let secret = random::<32>();
    let (request, pending) = request_token(
        tgt_secret.public(),
        &TokenChallenge::for_issuer(TGT_ISSUER),
        tgt_nonce(&secret),
    )
    .unwrap();
    let bearer = format!("Bearer {api_key}");
    let (status, response) = ohttp_call(
        &http,
        &gw,
        &first_config,
        "POST",
        "/v1/tokens/tgt",
        &[("authorization", &bearer)],
        &request.encode(),
    )
    .await;
    assert_eq!(status, 200);
    let tgt = pending.finalize(&response).unwrap();
    let grant = async |config: &[u8], key: &IssuerKey, first: u32| -> Vec<Token> {
        let (body, pendings) = ott_batch(&tgt, &secret, key, first, 2);
        let (status, responses) =
            ohttp_call(&http, &gw, config, "POST", "/v1/tokens/ott", &[], &body).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&responses));
        pendings
            .into_iter()
            .zip(responses.chunks(arcane_verifier::tokens::NK))
            .map(|(p, r)| p.finalize(r).unwrap())
            .collect()
    };
    let short_otts = grant(&first_config, short_ott.public(), 0).await;

    // --- a rotation: new key files and entries, picked up without a restart ------------------
    tokio::time::sleep(Duration::from_millis(1100)).await; // a later not_before: the newest
    let second_config = log.publish_ohttp_key(&gw_dir.join("ohttp-2.key"), 2).await;
    let next_ott = keys::generate_issuer_key(&gw_dir.join("ott-2.key")).unwrap();
    publish_token_key(&log, &next_ott, TokenRole::Ott, Duration::from_secs(3600)).await;
    until(
        "the new OHTTP key is offered",
        Duration::from_secs(10),
        async || offered_ohttp_ids(&http, &gw).await.contains(&2),
    )
    .await;
    until(
        "the new OTT key is listed first",
        Duration::from_secs(10),
        async || {
            let keys = listed(&http, &gw).await;
            let otts: Vec<&Vec<u8>> = keys
                .iter()
                .filter(|(_, role, _)| role.as_deref() == Some("ott"))
                .map(|(_, _, k)| k)
                .collect();
            otts.first() == Some(&&next_ott.public().spki().to_vec())
        },
    )
    .await;
    // The second OHTTP key decrypts.
    let (status, _) = ohttp_call(&http, &gw, &second_config, "GET", "/v1/models", &[], b"").await;
    assert_eq!(status, 200);

    // --- the short-lived entry expires ---------------------------------------------------------
    tokio::time::sleep(
        short_ott_expires.saturating_duration_since(Instant::now()) + Duration::from_millis(1200),
    )
    .await;
    let keys = listed(&http, &gw).await;
    assert!(
        !keys.iter().any(|(_, _, k)| k == short_ott.public().spki()),
        "an expired key is no longer listed"
    );
    // Not signed under any more…
    let (body, _) = ott_batch(&tgt, &secret, short_ott.public(), 2, 2);
    let (status, answer) = ohttp_call(
        &http,
        &gw,
        &first_config,
        "POST",
        "/v1/tokens/ott",
        &[],
        &body,
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&answer));
    // …not redeemed at the gateway (the chat envelope's OTT is refused before anything else)…
    let mut envelope = short_otts[0].encode();
    envelope.push(1);
    envelope.extend_from_slice(&[0u8; arcane_verifier::sealed::WRAPPED_DEK_LEN + 16]);
    let (status, answer) = ohttp_call(
        &http,
        &gw,
        &first_config,
        "POST",
        "/v1/chat",
        &[],
        &envelope,
    )
    .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&answer));
    let reason: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(reason["reason"], "ott-key-invalid");
    // …and not admitted by the relay.
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(short_otts[1].encode());
    let refused = http
        .post(format!("{}/.well-known/ohttp-gateway", relay.1))
        .header("content-type", "message/ohttp-req")
        .header("authorization", format!("PrivateToken token=\"{token}\""))
        .body(vec![1u8; 64])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // The same TGT gets OTTs under the new key, continuing its indices.
    let fresh = grant(&second_config, next_ott.public(), 2).await;
    // The relay admits the new key's tokens (its own refresh picked it up), once.
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fresh[0].encode());
    for expected in [true, false] {
        let answer = http
            .post(format!("{}/.well-known/ohttp-gateway", relay.1))
            .header("content-type", "message/ohttp-req")
            .header("authorization", format!("PrivateToken token=\"{token}\""))
            .body(vec![1u8; 64])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status() != 401, expected, "{:?}", answer.status());
    }
}
