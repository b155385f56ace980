//! The client end to end over 127.0.0.1: the whole stack of the demo (log on SQLite, gateway,
//! relay, a compute node with the simulated NSM and a tiny generated model) and the SDK against
//! it. The happy path streams a verified answer; every refusal happens before any DEK is wrapped,
//! which the tests observe at the gateway: it never redeems a chat token.

use std::time::Duration;

use arcane_cli::demo::{Stack, release_entry};
use arcane_client::receipts::read_all;
use arcane_client::{ChatEvent, Check, Client, ClientConfig, ClientError, Route, Trust};
use arcane_compute::attestation::{DeclaredMeasurements, SimulatedNsm};
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};
use arcane_verifier::nitro::NitroRoot;
use sha2::Digest;

fn quiet(_: &str) {}

/// The value of `field` in a signed answer.
fn signed_field<'a>(
    signed: &'a arcane_verifier::signed_answer::SignedAnswer,
    field: &str,
) -> &'a str {
    match field {
        "answer_sha256" => &signed.answer_sha256,
        _ => &signed.request_sha256,
    }
}

mod common;
use common::{
    bundle_from, client_with, forked_log, impostor_log_key, list_unverified, now_ms,
    random_measurements, redeemed_at_gateway, releases, stack, trusting_root,
};

fn client(stack: &Stack) -> Client {
    client_with(stack, |t| t)
}

fn request(prompt: &str, max_tokens: u32) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: String::new(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: prompt.into(),
        }],
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        stream: Some(true),
        ..Default::default()
    }
}

/// Asserts a refusal at `check` with `needle` in its reason, and that nothing reached the gateway.
async fn assert_refused_before_wrap(
    stack: &Stack,
    result: Result<impl std::fmt::Debug, ClientError>,
    check: Check,
    needle: &str,
) {
    let e = result.expect_err("the request must be refused");
    assert_eq!(e.check(), Some(check), "{e}");
    assert!(
        e.to_string().contains(needle),
        "{e} should mention {needle:?}"
    );
    assert_eq!(
        redeemed_at_gateway(stack).await,
        0,
        "a request reached the gateway"
    );
    assert!(read_all(&client(stack).state().clone()).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_request_streams_its_answer_and_leaves_a_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let mut c = client(&stack);
    let passed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = passed.clone();
    c.on_passed(move |p| seen.lock().unwrap().push(p.check));

    let mut answer = c
        .chat(request("Hello there", 24), Route::Cloud)
        .await
        .unwrap();
    let (mut deltas, mut text, mut summary) = (0, String::new(), None);
    while let Some(event) = answer.next().await {
        match event.unwrap() {
            ChatEvent::Delta(d) => {
                deltas += 1;
                text.push_str(&d);
            }
            ChatEvent::Done(s) => summary = Some(s),
        }
    }
    assert_eq!(
        *passed.lock().unwrap(),
        Check::ALL.to_vec(),
        "every check, in order"
    );
    assert!(deltas >= 2, "the answer streams in pieces ({deltas})");
    let summary = summary.expect("a summary ends the stream");
    assert_eq!(summary.route, Route::Cloud);
    assert!(summary.usage.unwrap().completion_tokens > 0);
    let receipt = summary.receipt.expect("a receipt");
    let node = stack.node.as_ref().unwrap();
    let attested = node.node.attested().unwrap();
    assert_eq!(receipt.rek_id, hex::encode(node.node.rek().id()));
    assert_eq!(receipt.model_sha256, hex::encode(stack.model.sha256));
    assert_eq!(
        receipt.release_leaf_hash,
        attested.release.verified.leaf_hash.to_hex()
    );
    assert_eq!(
        receipt.checks.iter().map(|p| p.check).collect::<Vec<_>>(),
        Check::ALL.to_vec(),
        "the receipt records every check passed"
    );
    assert_eq!(read_all(c.state()).unwrap(), vec![receipt.clone()]);
    assert_eq!(redeemed_at_gateway(&stack).await, 1);

    // The node signed the answer inside the enclave: the receipt carries its statement, whose
    // answer hash is this text's, and it verifies offline with the log's key and the root alone.
    let signed = receipt.signed_answer.as_ref().expect("a signed answer");
    assert_eq!(
        signed.answer_sha256,
        hex::encode(sha2::Sha256::digest(&text))
    );
    assert_eq!(signed.release_leaf_hash, receipt.release_leaf_hash);
    let receipts =
        std::fs::read_to_string(c.state().file(arcane_client::state::RECEIPTS_FILE)).unwrap();
    let root = NitroRoot::development(stack.nsm.root_der().to_vec());
    let verified = arcane_audit::receipts::verify_receipts(&receipts, &stack.log_key, &root);
    assert!(verified.len() == 1 && verified[0].valid, "{verified:?}");
    // Any other answer, request or document in it, and it no longer verifies.
    for (field, other) in [
        ("answer_sha256", hex::encode([1u8; 32])),
        ("request_sha256", hex::encode([2u8; 32])),
    ] {
        let tampered = receipts.replace(signed_field(signed, field), &other);
        assert_ne!(tampered, receipts);
        let outcome = arcane_audit::receipts::verify_receipts(&tampered, &stack.log_key, &root);
        assert!(!outcome[0].valid, "a receipt with another {field} verified");
    }
    // Not under AWS's root: these documents are the simulated NSM's.
    let aws = arcane_audit::receipts::verify_receipts(&receipts, &stack.log_key, &NitroRoot::aws());
    assert!(!aws[0].valid);

    // The same model on the device gives the same (greedy) answer: the cloud path changed nothing.
    let local = arcane_client::local::LocalModel::load(&stack.model, 64)
        .await
        .unwrap();
    c.set_local_model(local);
    let (local_text, local_summary) = c
        .chat(request("Hello there", 24), Route::Local)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(local_summary.route, Route::Local);
    assert_eq!(local_text, text);
    // Auto keeps small requests on the device and sends what does not fit to the cloud.
    let (_, auto_small) = c
        .chat(request("Hi", 8), Route::Auto)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(auto_small.route, Route::Local);
    let auto_large = c
        .chat(request(&"word ".repeat(40), 8), Route::Auto)
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(auto_large.unwrap().1.route, Route::Cloud);

    // A second process (state on disk): the saved checkpoint is extended, the wallet reused —
    // the same TGT (the identity service would not issue a second one this period anyway).
    drop(c);
    let wallet_tgt = || {
        let path = client(&stack)
            .state()
            .file(arcane_client::state::WALLET_FILE);
        let wallet: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        wallet["tgt"]["token"].as_str().unwrap().to_owned()
    };
    let tgt_before = wallet_tgt();
    let mut again = client(&stack);
    let (second, _) = again
        .chat(request("Hello there", 24), Route::Cloud)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(second, text);
    assert_eq!(wallet_tgt(), tgt_before);
    assert_eq!(read_all(again.state()).unwrap().len(), 3);
    // Three requests went to the cloud (two here, one routed there by `Auto`), each redeemed
    // once; the local ones never reached the gateway.
    assert_eq!(redeemed_at_gateway(&stack).await, 3);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_pcrs_are_not_in_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), false).await;
    let other = SimulatedNsm::new(&random_measurements(), now_ms() / 1000).unwrap();
    let bundle = bundle_from(
        &other,
        &releases(&stack).await[0],
        stack.model.sha256,
        now_ms(),
    );
    list_unverified(&stack, &bundle).await;
    let mut c = client_with(&stack, trusting_root(&stack, &other));
    let result = c.chat(request("secret prompt", 8), Route::Cloud).await;
    assert_refused_before_wrap(&stack, result, Check::Nodes, "PCR0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_release_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), false).await;
    stack
        .publish(
            release_entry(&stack.options.measurements, stack.model.sha256),
            Duration::from_secs(4),
        )
        .await
        .unwrap();
    let short = releases(&stack)
        .await
        .into_iter()
        .min_by_key(|p| p.verified.entry.entry.not_after)
        .unwrap();
    let bundle = bundle_from(&stack.nsm, &short, stack.model.sha256, now_ms());
    list_unverified(&stack, &bundle).await;
    let mut c = client(&stack);
    c.preflight(None).await.expect("valid while the release is");
    let expired_at_ms = (short.verified.entry.entry.not_after + 1) * 1000 + 100;
    tokio::time::sleep(Duration::from_millis(
        expired_at_ms.saturating_sub(now_ms()),
    ))
    .await;
    list_unverified(&stack, &bundle).await;
    let result = c.chat(request("secret prompt", 8), Route::Cloud).await;
    assert_refused_before_wrap(&stack, result, Check::Nodes, "expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_attestation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), false).await;
    let eleven_minutes_ago = now_ms() - 11 * 60 * 1000;
    let bundle = bundle_from(
        &stack.nsm,
        &releases(&stack).await[0],
        stack.model.sha256,
        eleven_minutes_ago,
    );
    list_unverified(&stack, &bundle).await;
    let result = client(&stack)
        .chat(request("secret prompt", 8), Route::Cloud)
        .await;
    assert_refused_before_wrap(&stack, result, Check::Nodes, "old").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debug_enclave_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), false).await;
    let debug = SimulatedNsm::new(
        &DeclaredMeasurements {
            pcr0: [0; 48],
            pcr1: [0; 48],
            pcr2: [0; 48],
            pcr8: None,
        },
        now_ms() / 1000,
    )
    .unwrap();
    let bundle = bundle_from(
        &debug,
        &releases(&stack).await[0],
        stack.model.sha256,
        now_ms(),
    );
    list_unverified(&stack, &bundle).await;
    let mut c = client_with(&stack, trusting_root(&stack, &debug));
    let result = c.chat(request("secret prompt", 8), Route::Cloud).await;
    assert_refused_before_wrap(&stack, result, Check::Nodes, "debug").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ohttp_key_that_is_not_in_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    // A second gateway on the same keys and database, serving an unpublished OHTTP key under
    // the published key's proof.
    let options = &stack.gateway_options;
    let lying = arcane_gateway::service::build_gateway(options)
        .await
        .unwrap();
    let mut ring = arcane_gateway::proven::load_key_ring(
        &arcane_log_client::LogClient::new(&options.log).unwrap(),
        &options.data_dir,
        &options.trust,
        now_ms() / 1000,
    )
    .await
    .unwrap();
    let unpublished =
        arcane_gateway::keys::generate_ohttp_key(&dir.path().join("unpublished.key"), 1).unwrap();
    ring.ohttp[0].encoded = unpublished.encode().unwrap();
    ring.ohttp[0].config = unpublished;
    lying.replace_keys(ring);
    let lying = arcane_gateway::service::serve_gateway(
        std::sync::Arc::new(lying),
        "127.0.0.1:0".parse().unwrap(),
        options,
    )
    .await
    .unwrap();
    let honest = stack.gateway.url();
    let mut c = client_with(&stack, |t| t.replace(&honest, &lying.url()));
    let result = c.chat(request("secret prompt", 8), Route::Cloud).await;
    assert_refused_before_wrap(
        &stack,
        result,
        Check::OhttpKeys,
        "not the one its proof logs",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_signed_by_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let mut c = client_with(&stack, impostor_log_key(&stack));
    let result = c.chat(request("secret prompt", 8), Route::Cloud).await;
    assert_refused_before_wrap(&stack, result, Check::Checkpoint, "signature").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_without_the_required_cosignatures_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let witness = arcane_verifier::note::NoteSigner::from_seed(
        "witness.example",
        arcane_verifier::note::ALG_COSIGNATURE_V1,
        &[9; 32],
    )
    .unwrap()
    .verifier()
    .to_text();
    let mut c = client_with(&stack, |t| {
        format!("{t}witnesses = [{witness:?}]\nwitness_threshold = 1\n")
    });
    let result = c.chat(request("secret prompt", 8), Route::Cloud).await;
    assert_refused_before_wrap(&stack, result, Check::Witnesses, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_log_is_reported_as_a_split_view_with_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let mut c = client(&stack);
    let saved = c.preflight(None).await.unwrap().checkpoint;
    let fork = forked_log(&stack, dir.path(), saved.checkpoint.size + 1).await;
    let fork_url = format!("http://{}", fork.addr());
    assert_eq!(fork.vkey(), stack.log_key.to_text(), "same key");
    let honest = stack.log_url.clone();
    let mut forked = client_with(&stack, |t| t.replace(&honest, &fork_url));
    let e = forked
        .chat(request("secret prompt", 8), Route::Cloud)
        .await
        .expect_err("a split view must stop the client");
    let ClientError::SplitView { evidence, .. } = &e else {
        panic!("expected a split view, got {e}")
    };
    assert_eq!(e.check(), Some(Check::Consistency));
    let saved_note = std::fs::read_to_string(evidence.join("saved.checkpoint")).unwrap();
    let shown_note = std::fs::read_to_string(evidence.join("shown.checkpoint")).unwrap();
    assert_eq!(saved_note, saved.note.to_text());
    assert!(shown_note.starts_with(stack.log_key.name()));
    assert_ne!(saved_note, shown_note);
    assert_eq!(redeemed_at_gateway(&stack).await, 0);
    // The saved checkpoint is still the honest one: the honest log keeps working.
    client(&stack).preflight(None).await.unwrap();
    fork.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let mut c = client(&stack);
    c.preflight(None).await.unwrap();
    let wallet = c.state().file(arcane_client::state::WALLET_FILE);
    let copy = std::fs::read(&wallet).unwrap();
    drop(c);
    client(&stack)
        .chat(request("one", 4), Route::Cloud)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    // The wallet as it was before: its tokens were spent since.
    arcane_client::state::write_private(&wallet, &copy).unwrap();
    let e = client(&stack)
        .chat(request("two", 4), Route::Cloud)
        .await
        .expect_err("a spent token is refused");
    assert!(matches!(e, ClientError::TokenRefused { .. }), "{e}");
    assert!(e.to_string().contains("spent"), "{e}");
    assert_eq!(redeemed_at_gateway(&stack).await, 1);
}

/// Forwards to `target`; once a connection carries `POST /v1/infer` (connections are reused),
/// cuts both sides after `limit` more bytes of the answer.
async fn cutting_proxy(target: std::net::SocketAddr, limit: usize) -> String {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                let (mut ri, mut wi) = inbound.into_split();
                let (mut ro, mut wo) = outbound.into_split();
                let inferring = Arc::new(AtomicBool::new(false));
                let seen = inferring.clone();
                let up = tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let n = match ri.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if buf[..n].windows(14).any(|w| w == b"POST /v1/infer") {
                            seen.store(true, Ordering::SeqCst);
                        }
                        if wo.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut sent = 0usize;
                let mut buf = vec![0u8; 256];
                loop {
                    let n = match ro.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let cutting = inferring.load(Ordering::SeqCst);
                    let n = if cutting { n.min(limit - sent) } else { n };
                    if wi.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    if cutting {
                        sent += n;
                        if sent >= limit {
                            break;
                        }
                    }
                }
                up.abort();
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_disappears_mid_stream_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let node = stack.node.as_ref().unwrap();
    let addr = node.addr();
    // Headers, the sealed head and a few chunks, then the connection is gone.
    let proxy = cutting_proxy(addr, 900).await;
    arcane_compute::registration::Registration {
        gateway: stack.gateway.url(),
        advertise: proxy,
    }
    .register(&reqwest::Client::new(), &node.node)
    .await
    .unwrap();
    let mut c = client(&stack);
    let mut answer = c
        .chat(request("tell me a long story", 200), Route::Cloud)
        .await
        .unwrap();
    let mut deltas = 0;
    let error = loop {
        match answer.next().await {
            Some(Ok(ChatEvent::Delta(_))) => deltas += 1,
            Some(Ok(ChatEvent::Done(_))) => panic!("the answer cannot complete"),
            Some(Err(e)) => break e,
            None => panic!("the stream ended without saying why"),
        }
    };
    assert!(deltas >= 1, "some of the answer arrived first");
    let ClientError::Interrupted { chunks, .. } = &error else {
        panic!("expected an interruption, got {error}")
    };
    assert!(*chunks >= 1);
    let receipts = read_all(c.state()).unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].outcome, "interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_is_reported_and_the_next_request_goes_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut stack = stack(dir.path(), true).await;
    let second = stack.start_node(&quiet).await.unwrap();
    let mut nodes = vec![stack.node.take().unwrap(), second];
    let ids: Vec<[u8; 32]> = nodes.iter().map(|n| n.node.rek().id()).collect();
    let mut c = client(&stack);
    let mut answer = c
        .chat(request("tell me a very long story", 1000), Route::Cloud)
        .await
        .unwrap();
    assert!(matches!(answer.next().await, Some(Ok(ChatEvent::Delta(_)))));
    // The node answering is the one the gateway has a request in flight to; it is killed (its
    // server and every connection of it end at once, as when its process dies).
    let serving: Vec<_> = stack
        .gateway_state
        .registry
        .pick(&ids, arcane_gateway::server::now_ms())
        .into_iter()
        .filter(|n| n.in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0)
        .collect();
    assert_eq!(serving.len(), 1, "one node is answering");
    let killed = nodes.remove(
        nodes
            .iter()
            .position(|n| n.url() == serving[0].url)
            .unwrap(),
    );
    let killed_rek = killed.node.rek().id();
    drop(killed);
    let error = loop {
        match answer.next().await {
            Some(Ok(ChatEvent::Delta(_))) => {}
            Some(Ok(ChatEvent::Done(_))) => {
                panic!("the answer cannot complete once its node is killed")
            }
            Some(Err(e)) => break e,
            None => panic!("the stream ended without saying why"),
        }
    };
    assert!(
        matches!(error, ClientError::Interrupted { chunks, .. } if chunks >= 1),
        "expected an interruption, got {error}"
    );

    // The gateway saw the answer break off: it tries the killed node last from now on, and the
    // next request is answered by the node still running.
    c.chat(request("and another", 8), Route::Cloud)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let receipts = read_all(c.state()).unwrap();
    let outcomes: Vec<_> = receipts.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["interrupted", "answered"]);
    assert_eq!(receipts[1].rek_id, hex::encode(nodes[0].node.rek().id()));
    let killed_first = [killed_rek, nodes[0].node.rek().id()];
    let order: Vec<_> = stack
        .gateway_state
        .registry
        .pick(&killed_first, arcane_gateway::server::now_ms())
        .iter()
        .map(|n| n.verified.rek.id())
        .collect();
    assert_eq!(
        order.last(),
        Some(&killed_rek),
        "the killed node is tried last"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_is_refused_before_anything_is_fetched_or_spent() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let mut c = client(&stack);
    let mut empty = request("x", 8);
    empty.messages.clear();
    let e = c.chat(empty, Route::Cloud).await.unwrap_err();
    assert!(matches!(e, ClientError::Config(_)), "{e}");
    assert_eq!(c.tokens_on_hand(), 0, "no token was even fetched");
    assert_eq!(
        c.state().saved_checkpoint().unwrap(),
        None,
        "the log was not asked"
    );
    // With no local model, a forced local route is an error, not a silent trip to the cloud.
    let e = c.chat(request("x", 8), Route::Local).await.unwrap_err();
    assert!(matches!(e, ClientError::Local(_)), "{e}");
    assert_eq!(redeemed_at_gateway(&stack).await, 0);
}

/// TGTs the identity service issued to accounts, per the gateway's database.
async fn tgts_issued(stack: &Stack) -> i64 {
    let db = arcane_gateway::store::TokenStore::open_file(
        &stack.options.data_dir.join("gateway/gateway.db"),
    )
    .await
    .unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COALESCE(SUM(issued), 0) FROM tgt_budget")
        .fetch_one(db.pool())
        .await
        .unwrap();
    db.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_token_limits_serve_many_requests_and_several_devices() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    // More requests than one TGT's allotment pays for (each spends two or three OTTs): the
    // wallet renews its TGT ahead of need and no request fails for tokens.
    let limits = arcane_gateway::tokens::TokenLimits::default();
    let requests = limits.otts_per_tgt / 2 + 8;
    let mut c = client(&stack);
    for i in 0..requests {
        let (text, summary) = c
            .chat(request(&format!("request {i}"), 2), Route::Cloud)
            .await
            .unwrap_or_else(|e| panic!("request {i} of {requests}: {e}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("request {i} of {requests}: {e}"));
        assert!(!text.is_empty() || summary.usage.is_some(), "request {i}");
    }
    assert_eq!(redeemed_at_gateway(&stack).await, i64::from(requests));
    assert_eq!(
        tgts_issued(&stack).await,
        2,
        "one renewal past the first TGT's allotment"
    );
    // Another device of the same account (a state folder of its own, the same API key) gets
    // its own TGT and is answered: an account holds a budget of TGTs per period, not one.
    let other_device = dir.path().join("other-device");
    let text = std::fs::read_to_string(&stack.trust_file).unwrap();
    let trust = Trust::from_toml(&text, stack.trust_file.parent().unwrap()).unwrap();
    let mut config = ClientConfig::new(trust);
    config.state_root = other_device;
    let mut second = Client::new(config).unwrap();
    second
        .chat(request("from the second device", 2), Route::Cloud)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(tgts_issued(&stack).await, 3);
}
