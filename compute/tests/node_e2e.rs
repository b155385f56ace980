//! The compute node end to end over 127.0.0.1: a log holding the node's release, the simulated
//! NSM, the tiny model in real mistral.rs, and a client harness that verifies the bundle, wraps a
//! DEK, sends a sealed request and opens the sealed stream.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arcane_compute::error::ComputeError;
use arcane_compute::node::{NodeConfig, now_seconds};
use arcane_compute::tokens::{DevelopmentWithoutTokens, TokenVerifier};
use arcane_engine::{EngineEvent, InferenceEngine, MistralEngine};
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage, ChunkContent};
use arcane_verifier::sealed::{RekSecret, ResponseReader};
use common::{Client, stack};

/// The node refused with `status` and names the refusal `kind` in its header.
fn assert_refused(response: &reqwest::Response, status: u16, kind: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(refusal(response), kind);
}

fn refusal(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("arcane-refusal")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_request_is_answered_as_a_sealed_stream() {
    let stack = stack().await;
    let (node, url) = stack.serving_node(NodeConfig::default()).await;
    let client = stack.client(&url);

    let verified = client.verified_node(None).await.unwrap();
    assert_eq!(verified.rek, node.rek());
    assert_eq!(verified.model_sha256, stack.model.sha256);

    let answer = client.chat("Tell me about the sea.", 24).await;
    // First chunk names the role, the last says why it stopped and counts tokens.
    let ChunkContent::Completion(first) = &answer.chunks[0] else {
        panic!("first chunk is an error: {:?}", answer.chunks[0]);
    };
    assert_eq!(first.choices[0].delta.role.as_deref(), Some("assistant"));
    let ChunkContent::Completion(last) = answer.chunks.last().unwrap() else {
        panic!("last chunk is an error");
    };
    let usage = last.usage.expect("usage in the last chunk");
    assert!(usage.prompt_tokens > 0);
    assert!(usage.completion_tokens > 0 && usage.completion_tokens <= 24);
    assert!(matches!(
        last.choices[0].finish_reason.as_deref(),
        Some("stop" | "length")
    ));
    // Streamed: more than one content chunk for a multi-token answer.
    assert!(answer.chunks.len() >= 3, "{} chunks", answer.chunks.len());

    // The same request straight into mistral.rs (greedy, deterministic) gives the same text.
    let direct = MistralEngine::load(&stack.model, 1).await.unwrap();
    let request = ChatCompletionRequest {
        model: stack.model.name.clone(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "Tell me about the sea.".into(),
        }],
        max_tokens: Some(24),
        temperature: Some(0.0),
        stream: Some(true),
        ..Default::default()
    };
    let mut events = direct.generate(&request, 24).unwrap();
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event {
            EngineEvent::Delta(d) => text.push_str(&d),
            EngineEvent::Finished { .. } => break,
            EngineEvent::Failed(e) => panic!("direct generation failed: {e}"),
        }
    }
    assert_eq!(answer.text, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_signs_what_it_answered_with_the_key_its_attestation_binds() {
    use arcane_verifier::signed_answer::{ExpectedAnswer, check_signed_answer};
    use sha2::{Digest, Sha256};
    let stack = stack().await;
    let (_node, url) = stack.serving_node(NodeConfig::default()).await;
    let client = stack.client(&url);
    let verified = client.verified_node(None).await.unwrap();
    let (body, state) = client.seal(
        &client.inner("Tell me about the sea.", 16),
        verified.rek,
        now_seconds(),
    );
    let request_sha256: [u8; 32] = Sha256::digest(&body).into();
    let answer = client.read(client.post(body).await, state).await.unwrap();
    let ChunkContent::Completion(last) = answer.chunks.last().unwrap() else {
        panic!("the last chunk is an error");
    };
    let signed = last.arcane_signed_answer.as_ref().expect("a signed answer");
    // Only the last chunk carries it.
    assert!(
        answer.chunks[..answer.chunks.len() - 1]
            .iter()
            .all(|c| matches!(c, ChunkContent::Completion(c) if c.arcane_signed_answer.is_none()))
    );
    let expected = ExpectedAnswer {
        request_sha256,
        answer_sha256: Sha256::digest(answer.text.as_bytes()).into(),
        release: &verified.release,
        model_sha256: verified.model_sha256,
        answer_key: verified.answer_key,
        members: verified.members,
        log_key: &stack.log_key,
    };
    check_signed_answer(signed, &expected).unwrap();
    // Another request, another answer, another key: each refused.
    let mut other = expected;
    other.request_sha256[0] ^= 1;
    assert!(check_signed_answer(signed, &other).is_err());
    let mut other = expected;
    other.answer_sha256[0] ^= 1;
    assert!(check_signed_answer(signed, &other).is_err());
    let mut other = expected;
    other.answer_key = arcane_verifier::signed_answer::AnswerSigningKey::generate().public();
    assert!(check_signed_answer(signed, &other).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_another_rek_is_refused_before_anything_runs() {
    let stack = stack().await;
    let (_node, url) = stack.serving_node(NodeConfig::default()).await;
    let client = stack.client(&url);
    let other = RekSecret::generate();
    let (body, _) = client.seal(&client.inner("hi", 4), other.public(), now_seconds());
    let response = client.post(body).await;
    assert_refused(&response, 421, "unknown-rek");

    // A wrap for another REK relabelled with this node's REK id does not open either.
    let verified = client.verified_node(None).await.unwrap();
    let (mut body, _) = client.seal(&client.inner("hi", 4), other.public(), now_seconds());
    body[..32].copy_from_slice(&verified.rek.id());
    let response = client.post(body).await;
    assert_refused(&response, 400, "bad-request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_request_is_refused() {
    let stack = stack().await;
    let (_node, url) = stack.serving_node(NodeConfig::default()).await;
    let client = stack.client(&url);
    let verified = client.verified_node(None).await.unwrap();
    let (body, state) = client.seal(&client.inner("once", 4), verified.rek, now_seconds());
    let first = client.post(body.clone()).await;
    client.read(first, state).await.unwrap();
    let second = client.post(body).await;
    assert_refused(&second, 409, "replayed");

    // An old request (issued outside the window) is refused too.
    let (body, _) = client.seal(&client.inner("old", 4), verified.rek, now_seconds() - 3600);
    let old = client.post(body).await;
    assert_refused(&old, 400, "stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_truncated_streams_are_detected() {
    let stack = stack().await;
    let (_node, url) = stack.serving_node(NodeConfig::default()).await;
    let client = stack.client(&url);
    let verified = client.verified_node(None).await.unwrap();

    let fetch = |prompt: &'static str| {
        let (body, state) = client.seal(&client.inner(prompt, 12), verified.rek, now_seconds());
        let client = &client;
        async move {
            let bytes = client.post(body).await.bytes().await.unwrap().to_vec();
            (bytes, state)
        }
    };
    // Untouched: opens.
    let (bytes, state) = fetch("a").await;
    let mut reader = ResponseReader::new(state);
    reader.push(&bytes);
    while reader.next_chunk().unwrap().is_some() {}
    reader.finish().unwrap();

    // One flipped byte inside the second frame.
    let (mut bytes, state) = fetch("b").await;
    let at = bytes.len() - 10;
    bytes[at] ^= 0x20;
    let mut reader = ResponseReader::new(state);
    reader.push(&bytes);
    let mut result = Ok(());
    loop {
        match reader.next_chunk() {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    assert!(result.is_err(), "a tampered chunk opened");

    // Cut before the final chunk: everything read opens, but the end is reported as truncation.
    let (bytes, state) = fetch("c").await;
    let mut reader = ResponseReader::new(state);
    let cut = bytes.len() - 20;
    reader.push(&bytes[..cut]);
    while reader.next_chunk().unwrap().is_some() {}
    assert!(reader.finish().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_release_is_not_in_the_log_refuses_to_start() {
    let stack = stack().await;
    let engine = stack.engine().await;
    let result = stack
        .boot(
            engine,
            NodeConfig::default(),
            Arc::new(DevelopmentWithoutTokens::for_development()),
        )
        .await;
    let Err(ComputeError::NoRelease(why)) = result else {
        panic!("booted without a release: {result:?}");
    };
    assert!(
        why.contains(&hex::encode(stack.measurements.pcr0)),
        "the error names the missing PCR0: {why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_file_that_differs_from_the_release_is_refused() {
    let stack = stack().await;
    // The log vouches for these PCRs with another model.
    let other_model = [0x5a; 32];
    stack.publish_release(other_model).await;
    let engine = stack.engine().await;
    let result = stack
        .boot(
            engine,
            NodeConfig::default(),
            Arc::new(DevelopmentWithoutTokens::for_development()),
        )
        .await;
    let Err(ComputeError::NoRelease(why)) = result else {
        panic!("booted with a model the release does not name: {result:?}");
    };
    assert!(why.contains(&hex::encode(other_model)), "{why}");
    assert!(why.contains(&hex::encode(stack.model.sha256)), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_nonce_is_attested() {
    let stack = stack().await;
    let (_node, url) = stack.serving_node(NodeConfig::default()).await;
    let client = stack.client(&url);
    let nonce = common::random::<16>();
    let verified = client.verified_node(Some(&nonce)).await.unwrap();
    assert_eq!(verified.model_sha256, stack.model.sha256);
    // A nonce that is not hex is refused.
    let plain = client
        .http
        .get(format!("{url}/v1/attestation?nonce=zz"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_its_log_stops_serving() {
    let mut stack = stack().await;
    let (node, url) = stack.serving_node(NodeConfig::default()).await;
    let client = stack.client(&url);
    assert!(node.refresh().await.is_ok());
    stack.log.take().unwrap().shutdown().await;
    assert!(node.refresh().await.is_err());
    let response = client
        .http
        .get(format!("{url}/v1/attestation"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let verified_rek = node.rek();
    let (body, _) = client.seal(&client.inner("hi", 4), verified_rek, now_seconds());
    let response = client.post(body).await;
    assert_refused(&response, 503, "not-serving");
}

/// A token check that refuses everything: the refusal travels inside the sealed stream.
struct RefuseAll;

impl TokenVerifier for RefuseAll {
    fn verify(&self, _token: Option<&[u8]>, _gateway: Option<&[u8; 32]>) -> Result<(), String> {
        Err("no valid token".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_inside_the_sealed_stream() {
    let stack = stack().await;
    stack.publish_release(stack.model.sha256).await;
    let node = stack
        .boot(
            stack.engine().await,
            NodeConfig::default(),
            Arc::new(RefuseAll),
        )
        .await
        .unwrap();
    let url = common::serve(node).await;
    let client = stack.client(&url);
    let answer = client.chat("hello", 8).await;
    assert_eq!(answer.chunks.len(), 1);
    let ChunkContent::Error(e) = &answer.chunks[0] else {
        panic!("expected an error chunk");
    };
    assert_eq!(e.kind, "token_error");
    assert!(answer.text.is_empty());
}

/// An engine that holds each generation until released, to fill the node's slots.
struct HeldEngine {
    release: Arc<tokio::sync::Notify>,
}

impl InferenceEngine for HeldEngine {
    fn model_name(&self) -> &str {
        "held"
    }
    fn generate(
        &self,
        _request: &ChatCompletionRequest,
        _max_tokens: usize,
    ) -> arcane_engine::Result<tokio::sync::mpsc::Receiver<EngineEvent>> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let release = Arc::clone(&self.release);
        tokio::spawn(async move {
            let _ = tx.send(EngineEvent::Delta("held ".into())).await;
            release.notified().await;
            let _ = tx
                .send(EngineEvent::Finished {
                    reason: arcane_engine::FinishReason::Stop,
                    prompt_tokens: 1,
                    completion_tokens: 1,
                })
                .await;
        });
        Ok(rx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_answers_busy_and_frees_its_slot_afterwards() {
    let stack = stack().await;
    stack.publish_release(stack.model.sha256).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let node = stack
        .boot(
            Arc::new(HeldEngine {
                release: Arc::clone(&release),
            }),
            NodeConfig {
                max_concurrent: 1,
                ..NodeConfig::default()
            },
            Arc::new(DevelopmentWithoutTokens::for_development()),
        )
        .await
        .unwrap();
    let url = common::serve(Arc::clone(&node)).await;
    let client: Client = stack.client(&url);
    let rek = client.verified_node(None).await.unwrap().rek;

    let (body, state) = client.seal(&client.inner("first", 4), rek, now_seconds());
    let first = client.post(body).await;
    assert_eq!(first.status(), 200);
    assert_eq!(node.in_flight(), 1);
    let (body, _) = client.seal(&client.inner("second", 4), rek, now_seconds());
    let busy = client.post(body).await;
    assert_refused(&busy, 503, "busy");
    assert_eq!(busy.headers().get("retry-after").unwrap(), "1");

    release.notify_one();
    let answer = client.read(first, state).await.unwrap();
    assert_eq!(answer.text, "held ");
    // The slot is free again once the answer ended.
    for _ in 0..50 {
        if node.in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node.in_flight(), 0);
}

/// Issues a token from `issuer` for `nonce` under its role's challenge.
fn issue(
    issuer: &arcane_verifier::tokens::IssuerSecret,
    role: &str,
    nonce: [u8; 32],
) -> arcane_verifier::tokens::Token {
    use arcane_verifier::tokens::{TokenChallenge, request_token};
    let (request, pending) =
        request_token(issuer.public(), &TokenChallenge::for_issuer(role), nonce).unwrap();
    pending.finalize(&issuer.issue(&request).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_material_is_checked_against_the_logged_issuer_keys() {
    use arcane_compute::release::LogSource;
    use arcane_compute::tokens::LoggedTokenKeys;
    use arcane_verifier::entry::TokenRole;
    use arcane_verifier::tokens::{
        IssuerSecret, OTT_ISSUER, TGT_ISSUER, TokenMaterial, ott_nonce, tgt_nonce,
    };

    let stack = stack().await;
    let (tgt_issuer, ott_issuer) = (
        IssuerSecret::generate().unwrap(),
        IssuerSecret::generate().unwrap(),
    );
    stack
        .publish_token_key(tgt_issuer.public(), TokenRole::Tgt)
        .await;
    stack
        .publish_token_key(ott_issuer.public(), TokenRole::Ott)
        .await;
    stack.publish_release(stack.model.sha256).await;
    let keys = LoggedTokenKeys::fetch(
        &LogSource::new(&stack.log_url).unwrap(),
        &stack.trust(),
        now_seconds(),
    )
    .await
    .unwrap();
    assert_eq!((keys.tgt.len(), keys.ott.len()), (1, 1));
    let node = stack
        .boot(
            stack.engine().await,
            NodeConfig::default(),
            Arc::new(LoggedTokenKeys::new(keys, 8)),
        )
        .await
        .unwrap();
    let url = common::serve(node).await;
    let client = stack.client(&url);
    let rek = client.verified_node(None).await.unwrap().rek;

    let secret = common::random::<32>();
    let tgt = issue(&tgt_issuer, TGT_ISSUER, tgt_nonce(&secret));
    let material = |index: u32| TokenMaterial {
        tgt: tgt.clone(),
        secret: zeroize::Zeroizing::new(secret),
        index,
        ott: issue(&ott_issuer, OTT_ISSUER, ott_nonce(&secret, index)),
    };
    let send = |m: Option<TokenMaterial>, forwarded: Option<[u8; 32]>| {
        let client = &client;
        async move {
            let token = m.map(|m| m.encode().to_vec());
            let (body, state) =
                client.seal(&client.inner_with_token("hi", 4, token), rek, now_seconds());
            let mut request = client
                .http
                .post(format!("{}/v1/infer", client.node_url))
                .body(body);
            if let Some(n) = forwarded {
                request = request.header("arcane-ott-nonce", hex::encode(n));
            }
            client
                .read(request.send().await.unwrap(), state)
                .await
                .unwrap()
        }
    };
    let is_token_error = |a: &common::Answer| matches!(&a.chunks[0], ChunkContent::Error(e) if e.kind == "token_error");

    let good = material(2);
    let nonce = good.ott.nonce;
    let answer = send(Some(good.clone()), Some(nonce)).await;
    assert!(!is_token_error(&answer), "{:?}", answer.chunks[0]);
    // No material; the gateway's nonce missing or for another OTT; an index beyond the limit.
    assert!(is_token_error(&send(None, Some(nonce)).await));
    assert!(is_token_error(&send(Some(good.clone()), None).await));
    assert!(is_token_error(&send(Some(good), Some([1; 32])).await));
    let beyond = material(8);
    let beyond_nonce = beyond.ott.nonce;
    assert!(is_token_error(
        &send(Some(beyond), Some(beyond_nonce)).await
    ));
    // A TGT from an issuer the log does not vouch for.
    let rogue = IssuerSecret::generate().unwrap();
    let mut forged = material(1);
    forged.tgt = issue(&rogue, TGT_ISSUER, tgt_nonce(&secret));
    let forged_nonce = forged.ott.nonce;
    assert!(is_token_error(
        &send(Some(forged), Some(forged_nonce)).await
    ));
}
