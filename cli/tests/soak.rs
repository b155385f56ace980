//! Soak: the whole stack on its production code paths — log with one witness, gateway, relay,
//! two compute nodes, three clients — for `ARCANE_SOAK_SECS` (default 180) of wall time, with
//! validity windows and refresh intervals shortened *by configuration*: every key kind (OHTTP,
//! TGT, OTT, the fraud detection service's class keys) and the release rotate every 10 s on
//! entries valid 40 s, so entries expire all the time; one node restarts, and the log restarts.
//! The token granting service requires fraud data (class 1), so every TGT gets fraud data
//! first, and again whenever the key that signed it rotates away.
//!
//! Every request either succeeds or fails with a reason a client should see at that moment
//! (a service restarting: unreachable, a 5xx, an interrupted stream); afterwards the gateway's
//! and the relay's records show that no token was redeemed under a key whose entry had expired,
//! and every receipt names a release entry that was valid when it was answered.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arcane_cli::demo::{Stack, release_entry};
use arcane_client::{Client, ClientConfig, ClientError, Route, Trust};
use arcane_verifier::entry::{EntryBody, TokenKey, TokenRole, decode_key_config};
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};

mod common;
use common::witnessed_options;

// Keys are offered outside the first and last quarter of their window: with these, two keys of
// each kind are on offer at any time, and a rotation may run up to 20 s late (a loaded machine
// publishing slowly) before none is.
const ENTRY_VALIDITY: Duration = Duration::from_secs(40);
const ROTATE_EVERY: Duration = Duration::from_secs(10);

fn quiet(_: &str) {}

fn request(i: usize) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: String::new(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: format!("soak request {i}"),
        }],
        max_tokens: Some(4),
        temperature: None,
        stream: Some(true),
        ..Default::default()
    }
}

/// What a failed request is allowed to be while services restart and keys rotate.
fn expected_failure(e: &ClientError) -> Option<String> {
    match e {
        ClientError::Unreachable { service, .. } => Some(format!("{service} unreachable")),
        ClientError::Status {
            service, status, ..
        } if *status >= 500 => Some(format!("{service} {status}")),
        ClientError::Interrupted { .. } => Some("interrupted".into()),
        _ => None,
    }
}

/// Publishes a fresh OHTTP key, TGT, OTT and fraud-data issuer keys and a release, each valid
/// [`ENTRY_VALIDITY`], with their files beside the old ones.
async fn rotate(stack: &Stack, round: u32) {
    let gw = stack.options.data_dir.join("gateway");
    let ohttp = arcane_gateway::keys::generate_ohttp_key(
        &gw.join(format!("ohttp-{round}.key")),
        (round % 250 + 2) as u8,
    )
    .unwrap();
    stack
        .publish(
            EntryBody::OhttpKeys(decode_key_config(&ohttp.encode().unwrap()).unwrap()),
            ENTRY_VALIDITY,
        )
        .await
        .unwrap();
    for (prefix, role) in [
        ("tgt", TokenRole::Tgt),
        ("ott", TokenRole::Ott),
        ("fraud-1", TokenRole::FraudData(1)),
    ] {
        let secret =
            arcane_gateway::keys::generate_issuer_key(&gw.join(format!("{prefix}-{round}.key")))
                .unwrap();
        stack
            .publish(
                EntryBody::TokenKey(TokenKey {
                    role,
                    token_type: arcane_verifier::tokens::TOKEN_TYPE,
                    spki_der: secret.public().spki().to_vec(),
                }),
                ENTRY_VALIDITY,
            )
            .await
            .unwrap();
    }
    stack
        .publish(
            release_entry(&stack.options.measurements, stack.model.sha256),
            ENTRY_VALIDITY,
        )
        .await
        .unwrap();
}

fn client(stack: &Stack, state: &Path) -> Client {
    let trust = Trust::load(&stack.trust_file).unwrap();
    let mut config = ClientConfig::new(trust);
    config.state_root = state.to_path_buf();
    Client::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_runs_through_rotations_expiries_and_restarts() {
    let seconds: u64 = std::env::var("ARCANE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let dir = tempfile::tempdir().unwrap();
    // The log publishes only checkpoints its witness cosigned; clients require one.
    let mut options = witnessed_options(dir.path()).await;
    options.validity = ENTRY_VALIDITY;
    options.key_refresh = Duration::from_secs(1);
    options.node_refresh = Duration::from_secs(2);
    // Token periods shortened like the keys (the TGT keys rotate every 10 s here, every few weeks
    // in production): the budget of TGTs per account renews every 10 s.
    options.token_limits.period_secs = 10;
    options.fraud_data = Some(toml::from_str("required = true\ndefault_class = 1\n").unwrap());
    let mut stack = Stack::start(options, &quiet).await.unwrap();
    let mut second_node = Some(stack.start_node(&quiet).await.unwrap());
    let stack_started = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<std::sync::Mutex<BTreeMap<String, usize>>> = Arc::default();
    let receipts_dirs: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("client-{i}")))
        .collect();
    let mut clients = Vec::new();
    for (c, state) in receipts_dirs.iter().enumerate() {
        let mut client = client(&stack, state);
        let (stop, outcomes) = (stop.clone(), outcomes.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            let mut unexpected = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let result = match client.chat(request(c * 100_000 + i), Route::Cloud).await {
                    Ok(stream) => stream.collect().await.map(|_| ()),
                    Err(e) => Err(e),
                };
                let outcome = match &result {
                    Ok(()) => "answered".to_owned(),
                    Err(e) => match expected_failure(e) {
                        Some(kind) => kind,
                        None => {
                            unexpected.push((stack_started.elapsed().as_secs(), format!("{e}")));
                            "unexpected".to_owned()
                        }
                    },
                };
                *outcomes.lock().unwrap().entry(outcome).or_default() += 1;
                i += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            unexpected
        }));
    }

    // Meanwhile, no token may be recorded as redeemed at or after its key's expiry (records
    // are pruned once their key has expired, so they are watched while they exist).
    let late_redemptions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watcher = tokio::spawn({
        let (stop, late) = (stop.clone(), late_redemptions.clone());
        let dbs = [
            stack.options.data_dir.join("gateway/gateway.db"),
            stack.options.data_dir.join("relay/relay.db"),
        ];
        async move {
            let mut pools = Vec::new();
            for db in &dbs {
                pools.push(
                    arcane_gateway::store::TokenStore::open_file(db)
                        .await
                        .unwrap(),
                );
            }
            let mut watched = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for pool in &pools {
                    let (n,): (i64,) = sqlx::query_as(
                        "SELECT COUNT(*) FROM spent_tokens WHERE spent_at >= expires_at",
                    )
                    .fetch_one(pool.pool())
                    .await
                    .unwrap();
                    late.fetch_add(n as usize, Ordering::Relaxed);
                    let (all,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM spent_tokens")
                        .fetch_one(pool.pool())
                        .await
                        .unwrap();
                    watched = watched.max(all as u64);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for pool in pools {
                pool.close().await;
            }
            watched
        }
    });

    let mut round = 0;
    let mut slowest_rotation = Duration::ZERO;
    let mut node_restarted = false;
    let mut log_restarted = false;
    let deadline = stack_started + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        round += 1;
        let rotating = Instant::now();
        rotate(&stack, round).await;
        slowest_rotation = slowest_rotation.max(rotating.elapsed());
        let elapsed = stack_started.elapsed();
        if !node_restarted && elapsed > Duration::from_secs(seconds / 3) {
            drop(second_node.take());
            second_node = Some(stack.start_node(&quiet).await.unwrap());
            node_restarted = true;
            eprintln!("soak: node restarted at {} s", elapsed.as_secs());
        }
        if !log_restarted && elapsed > Duration::from_secs(2 * seconds / 3) {
            stack.restart_log().await.unwrap();
            log_restarted = true;
            eprintln!("soak: log restarted at {} s", elapsed.as_secs());
        }
        tokio::time::sleep(ROTATE_EVERY).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut unexpected = Vec::new();
    for c in clients {
        unexpected.extend(c.await.unwrap());
    }
    let outcomes = outcomes.lock().unwrap().clone();
    eprintln!(
        "soak: {:?} over {:?}, {round} rotations of every key kind and the release (the slowest took {:?}), a node restart and a log restart",
        outcomes,
        stack_started.elapsed(),
        slowest_rotation
    );
    // Each distinct failure once, with how often and when (seconds into the run) it was seen.
    let mut distinct: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    for (at, e) in &unexpected {
        let seen = distinct.entry(e.as_str()).or_insert((0, *at, *at));
        seen.0 += 1;
        seen.2 = *at;
    }
    for (e, (n, first, last)) in &distinct {
        eprintln!("soak: unexpected ×{n} ({first}–{last} s): {e}");
    }
    assert!(
        unexpected.is_empty(),
        "{} unexpected failures",
        unexpected.len()
    );
    let answered = outcomes.get("answered").copied().unwrap_or(0);
    let total: usize = outcomes.values().sum();
    assert!(
        answered * 10 >= total * 9,
        "fewer than 90 % answered: {outcomes:?}"
    );
    assert!(round >= 3 && node_restarted && log_restarted);

    let watched = watcher.await.unwrap();
    assert_eq!(
        late_redemptions.load(Ordering::Relaxed),
        0,
        "tokens recorded as redeemed under expired keys"
    );
    assert!(watched > 0, "the watcher saw spent tokens");
    // Every answer names a release entry that was valid when it was sent (its receipt is
    // written when the answer ends, a moment later).
    let http = reqwest::Client::new();
    let mut receipts = 0;
    for state in &receipts_dirs {
        let client = client(&stack, state);
        for receipt in arcane_client::receipts::read_all(client.state()).unwrap() {
            if receipt.outcome != "answered" {
                continue;
            }
            receipts += 1;
            let text = http
                .get(format!(
                    "{}/v1/bundles/by-hash/{}",
                    stack.log_url, receipt.release_leaf_hash
                ))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let bundle = arcane_verifier::bundle::ProofBundle::parse(text.as_bytes()).unwrap();
            let entry = arcane_verifier::entry::SignedEntry::decode(&bundle.entry).unwrap();
            let answered_at = receipt.at_ms / 1000;
            assert!(
                entry.entry.not_before <= answered_at && answered_at < entry.entry.not_after + 2,
                "answered at {answered_at} under release {} valid {}..{}",
                receipt.release_index,
                entry.entry.not_before,
                entry.entry.not_after
            );
        }
    }
    assert_eq!(receipts, answered, "one receipt per answer");
    drop(second_node);
    stack.shutdown().await;
}
