//! The gateway end to end over 127.0.0.1: a log holding the gateway's OHTTP and token keys and a
//! node's release; a real compute node (tiny model, simulated NSM) registered with the gateway
//! binary; a client that verifies what the gateway hands out, obtains a TGT and OTTs through
//! OHTTP, and sends a sealed chat request through chunked OHTTP.

use std::sync::Arc;
use std::time::Duration;

use arcane_compute::attestation::{DeclaredMeasurements, SimulatedNsm};
use arcane_compute::node::{Node, NodeConfig, NodeParts};
use arcane_compute::registration::Registration;
use arcane_compute::release::{LogSource, LogTrust as NodeLogTrust};
use arcane_compute::tokens::LoggedTokenKeys;
use arcane_engine::MistralEngine;
use arcane_engine::gguf::{TinyLlama, write_tiny_llama};
use arcane_engine::model::ModelFile;
use arcane_gateway::keys;
use arcane_gateway::server::{now_ms, now_seconds};
use arcane_verifier::attested::{NodeBundle, NodeTrust, verify_node_bundle};
use arcane_verifier::bundle::{TrustAnchors, verify_bundle};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::entry::{EntryBody, EntryPolicy, TokenKey, TokenRole, decode_key_config};
use arcane_verifier::inner::{
    ChatCompletionRequest, ChatMessage, ChunkContent, InnerRequest, encode_inner_request,
};
use arcane_verifier::nitro::{AttestationPolicy, DocumentCache, NitroRoot};
use arcane_verifier::sealed::{self, ResponseReader};
use arcane_verifier::tokens::{
    IssuerKey, OTT_ISSUER, TGT_ISSUER, Token, TokenChallenge, TokenMaterial, ott_nonce,
    request_token, tgt_nonce,
};
use axum::response::IntoResponse as _;
use base64::Engine as _;

mod common;

use common::{ohttp_call, ohttp_chunked, random, spawn_gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_a_sealed_chat_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    // --- the log, with a publisher for everything -------------------------------------------
    let log = common::start_log(&dir.path().join("log")).await;
    let (log_url, log_key, publisher) = (log.url.clone(), log.key.clone(), &log.publisher);

    // --- gateway keys, published ------------------------------------------------------------
    let gw_dir = dir.path().join("gateway");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let ohttp_config = keys::generate_ohttp_key(&gw_dir.join("ohttp.key"), 7).unwrap();
    let encoded_config = ohttp_config.encode().unwrap();
    let tgt_secret_key = keys::generate_issuer_key(&gw_dir.join("tgt.key")).unwrap();
    let ott_secret_key = keys::generate_issuer_key(&gw_dir.join("ott.key")).unwrap();
    // Before publication the gateway refuses to start (exit 3): nothing unproven is served.
    let nsm_measurements = DeclaredMeasurements {
        pcr0: random(),
        pcr1: random(),
        pcr2: random(),
        pcr8: None,
    };
    let nsm = Arc::new(SimulatedNsm::new(&nsm_measurements, now_seconds()).unwrap());
    let root_pem = dir.path().join("root.pem");
    std::fs::write(
        &root_pem,
        arcane_verifier::nitro::certificate_pem(nsm.root_der()),
    )
    .unwrap();
    let refused = spawn_gateway(&gw_dir, &log, &root_pem);
    let Err(why) = refused else {
        panic!("a gateway with unproven keys started")
    };
    assert!(
        why.starts_with("Some(3)") && why.contains("ohttp-keys"),
        "{why}"
    );

    log.publish(EntryBody::OhttpKeys(
        decode_key_config(&encoded_config).unwrap(),
    ))
    .await;
    // A rotation: the next key, published too, is served beside the current one; a third key
    // that was never published is not served at all.
    let next_config = keys::generate_ohttp_key(&gw_dir.join("ohttp-next.key"), 8)
        .unwrap()
        .encode()
        .unwrap();
    log.publish(EntryBody::OhttpKeys(
        decode_key_config(&next_config).unwrap(),
    ))
    .await;
    keys::generate_ohttp_key(&gw_dir.join("ohttp-unpublished.key"), 9).unwrap();
    for (secret, role) in [
        (&tgt_secret_key, TokenRole::Tgt),
        (&ott_secret_key, TokenRole::Ott),
    ] {
        log.publish(EntryBody::TokenKey(TokenKey {
            role,
            token_type: arcane_verifier::tokens::TOKEN_TYPE,
            spki_der: secret.public().spki().to_vec(),
        }))
        .await;
    }

    // --- an account ---------------------------------------------------------------------------
    let db = arcane_gateway::store::TokenStore::open_file(&gw_dir.join("gateway.db"))
        .await
        .unwrap();
    let api_key = arcane_gateway::tokens::TokenServices::add_account(&db, "alice")
        .await
        .unwrap();
    db.close().await;

    let gateway = spawn_gateway(&gw_dir, &log, &root_pem).unwrap();
    let gw = gateway.1.clone();
    let http = reqwest::Client::new();

    // --- a compute node, registered ---------------------------------------------------------
    let model_dir = dir.path().join("model");
    std::fs::create_dir_all(&model_dir).unwrap();
    write_tiny_llama(&model_dir.join("tiny.gguf"), &TinyLlama::default()).unwrap();
    let model = ModelFile::open(&model_dir.join("tiny.gguf")).unwrap();
    log.publish(common::release(&nsm_measurements, model.sha256))
        .await;
    let node_trust = NodeLogTrust {
        log_key: log_key.clone(),
        witnesses: WitnessPolicy::none(),
        publishers: vec![publisher.verifier()],
        policy: EntryPolicy::default(),
    };
    let log_source = LogSource::new(&log_url).unwrap();
    let token_keys = LoggedTokenKeys::fetch(&log_source, &node_trust, now_seconds())
        .await
        .unwrap();
    let node = Node::boot(NodeParts {
        config: NodeConfig::default(),
        provider: nsm.clone(),
        answer_key: arcane_verifier::signed_answer::AnswerSigningKey::generate(),
        engine: Arc::new(MistralEngine::load(&model, 2).await.unwrap()),
        tokens: Arc::new(LoggedTokenKeys::new(token_keys, 4)),
        model: model.clone().into(),
        members: 1,
        log: log_source,
        trust: node_trust,
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node_url = format!("http://{}", listener.local_addr().unwrap());
    let app = arcane_compute::server::router(Arc::clone(&node));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Registration {
        gateway: gw.clone(),
        advertise: node_url.clone(),
    }
    .register(&http, &node)
    .await
    .unwrap();

    // The node's own (public) bundle registered for a URL that does not answer for its REK:
    // the gateway's challenge fails, so nobody can divert a node's traffic by copying its bundle.
    let hijack = arcane_verifier::attested::NodeRegistration::new(
        "http://127.0.0.1:9".into(),
        model.name.clone(),
        1,
        &node.attested().unwrap().bundle,
    );
    let refused = http
        .post(format!("{gw}/v1/nodes"))
        .json(&hijack)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("challenge"));
    // A copy registered under a URL that answers the challenge with a redirect to the real node,
    // or that relays the challenge to it: both fail (no redirect is followed; the node attests
    // only the URL it registered under itself).
    for relaying in [false, true] {
        let real = node_url.clone();
        let impostor = axum::Router::new().route(
            "/v1/attestation",
            axum::routing::get(move |uri: axum::http::Uri| {
                let target = format!("{real}/v1/attestation?{}", uri.query().unwrap_or(""));
                async move {
                    if relaying {
                        let answer = reqwest::get(&target).await.unwrap();
                        let status = answer.status().as_u16();
                        let body = answer.bytes().await.unwrap();
                        (axum::http::StatusCode::from_u16(status).unwrap(), body).into_response()
                    } else {
                        axum::response::Redirect::to(&target).into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let impostor_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, impostor).await.unwrap() });
        let hijack = arcane_verifier::attested::NodeRegistration::new(
            impostor_url,
            model.name.clone(),
            1,
            &node.attested().unwrap().bundle,
        );
        let refused = http
            .post(format!("{gw}/v1/nodes"))
            .json(&hijack)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "relaying: {relaying}");
    }

    // A registration whose bundle does not verify is refused.
    let mut bad: serde_json::Value = serde_json::json!({
        "url": "http://127.0.0.1:9", "model": "x", "capacity": 1,
        "document": base64::engine::general_purpose::STANDARD.encode(b"not a document"),
        "release": node.attested().unwrap().bundle.release,
    });
    let refused = http
        .post(format!("{gw}/v1/nodes"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    bad["capacity"] = serde_json::json!("many");
    assert_eq!(
        http.post(format!("{gw}/v1/nodes"))
            .json(&bad)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    // --- the client: keys with proofs --------------------------------------------------------
    let listed = http
        .get(format!("{gw}/.well-known/ohttp-gateway"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.headers()["content-type"], "application/ohttp-keys");
    let list = listed.bytes().await.unwrap();
    let mut served = Vec::new();
    let mut rest = &list[..];
    while rest.len() >= 2 {
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        served.push(rest[2..2 + n].to_vec());
        rest = &rest[2 + n..];
    }
    served.sort();
    let mut expected = vec![encoded_config.clone(), next_config.clone()];
    expected.sort();
    assert_eq!(served, expected, "both proven keys, and only those");
    let (status, _) = ohttp_call(&http, &gw, &next_config, "GET", "/v1/models", &[], b"").await;
    assert_eq!(status, 200, "the next key decrypts too");
    let publishers = [publisher.verifier()];
    let policy = EntryPolicy::default();
    let anchors = TrustAnchors {
        log_key: &log_key,
        witnesses: &WitnessPolicy::none(),
        publishers: &publishers,
        policy: &policy,
    };
    let keys_json: serde_json::Value = http
        .get(format!("{gw}/v1/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut tgt_key = None;
    let mut ott_key = None;
    for k in keys_json["keys"].as_array().unwrap() {
        let verified = verify_bundle(
            k["bundle"].as_str().unwrap().as_bytes(),
            &anchors,
            None,
            now_seconds(),
        )
        .unwrap();
        let key = base64::engine::general_purpose::STANDARD
            .decode(k["key"].as_str().unwrap())
            .unwrap();
        match &verified.entry.entry.body {
            EntryBody::OhttpKeys(c) => {
                assert_eq!(arcane_verifier::entry::encode_key_config(c).unwrap(), key)
            }
            EntryBody::TokenKey(t) => {
                assert_eq!(t.spki_der, key);
                let issuer = IssuerKey::from_spki(&key).unwrap();
                match t.role {
                    TokenRole::Tgt => tgt_key = Some(issuer),
                    TokenRole::Ott => ott_key = Some(issuer),
                    TokenRole::FraudData(_) => panic!("this gateway has no fraud-data key"),
                }
            }
            other => panic!("unexpected entry {other:?}"),
        }
    }
    let (tgt_key, ott_key) = (tgt_key.unwrap(), ott_key.unwrap());

    // --- models and candidate nodes ----------------------------------------------------------
    let (status, models) =
        ohttp_call(&http, &gw, &encoded_config, "GET", "/v1/models", &[], b"").await;
    assert_eq!(status, 200);
    let models: serde_json::Value = serde_json::from_slice(&models).unwrap();
    assert_eq!(models["data"][0]["id"], model.name);
    assert_eq!(models["data"][0]["model_sha256"], hex::encode(model.sha256));
    let (status, nodes) =
        ohttp_call(&http, &gw, &encoded_config, "GET", "/v1/nodes", &[], b"").await;
    assert_eq!(status, 200);
    let nodes: serde_json::Value = serde_json::from_slice(&nodes).unwrap();
    let bundle = NodeBundle::parse(nodes["nodes"][0].to_string().as_bytes()).unwrap();
    let root = NitroRoot::development(nsm.root_der().to_vec());
    let attestation = AttestationPolicy::default();
    let trust = NodeTrust {
        anchors,
        nitro_root: &root,
        attestation: &attestation,
    };
    let verified_node = verify_node_bundle(
        &bundle,
        &trust,
        None,
        now_ms(),
        None,
        &mut DocumentCache::default(),
    )
    .unwrap();
    assert_eq!(verified_node.rek, node.rek());
    let (status, _) = ohttp_call(&http, &gw, &encoded_config, "GET", "/v1/unknown", &[], b"").await;
    assert_eq!(status, 404);

    // --- TGT: within the account's budget (one per period on this gateway) -------------------
    let secret = random::<32>();
    let (request, pending) = request_token(
        &tgt_key,
        &TokenChallenge::for_issuer(TGT_ISSUER),
        tgt_nonce(&secret),
    )
    .unwrap();
    let bearer = format!("Bearer {api_key}");
    let (status, response) = ohttp_call(
        &http,
        &gw,
        &encoded_config,
        "POST",
        "/v1/tokens/tgt",
        &[("authorization", &bearer)],
        &request.encode(),
    )
    .await;
    assert_eq!(status, 200);
    let tgt: Token = pending.finalize(&response).unwrap();
    let (again, _) = request_token(
        &tgt_key,
        &TokenChallenge::for_issuer(TGT_ISSUER),
        tgt_nonce(&random()),
    )
    .unwrap();
    let (status, _) = ohttp_call(
        &http,
        &gw,
        &encoded_config,
        "POST",
        "/v1/tokens/tgt",
        &[("authorization", &bearer)],
        &again.encode(),
    )
    .await;
    assert_eq!(
        status, 429,
        "a budget of one TGT per account and period here"
    );
    let (status, _) = ohttp_call(
        &http,
        &gw,
        &encoded_config,
        "POST",
        "/v1/tokens/tgt",
        &[("authorization", "Bearer arcane_wrong")],
        &again.encode(),
    )
    .await;
    assert_eq!(status, 401);

    // --- OTTs: a batch of 4, then the limit (4 per TGT) --------------------------------------
    let mut body = tgt.encode();
    let mut pendings = Vec::new();
    for i in 0..4u32 {
        let (r, p) = request_token(
            &ott_key,
            &TokenChallenge::for_issuer(OTT_ISSUER),
            ott_nonce(&secret, i),
        )
        .unwrap();
        body.extend_from_slice(&r.encode());
        pendings.push(p);
    }
    let (status, responses) = ohttp_call(
        &http,
        &gw,
        &encoded_config,
        "POST",
        "/v1/tokens/ott",
        &[],
        &body,
    )
    .await;
    assert_eq!(status, 200);
    let otts: Vec<Token> = pendings
        .into_iter()
        .zip(responses.chunks(arcane_verifier::tokens::NK))
        .map(|(p, r)| p.finalize(r).unwrap())
        .collect();
    let (status, _) = ohttp_call(
        &http,
        &gw,
        &encoded_config,
        "POST",
        "/v1/tokens/ott",
        &[],
        &body,
    )
    .await;
    assert_eq!(status, 429, "the TGT's allotment of 4 is used up");

    // --- a sealed chat through chunked OHTTP --------------------------------------------------
    let chat = |index: u32| {
        let material = TokenMaterial {
            tgt: tgt.clone(),
            secret: zeroize::Zeroizing::new(secret),
            index,
            ott: otts[index as usize].clone(),
        };
        let inner = encode_inner_request(&InnerRequest {
            chat: ChatCompletionRequest {
                model: model.name.clone(),
                messages: vec![ChatMessage {
                    role: "user".into(),
                    content: "Hello through the gateway".into(),
                }],
                max_tokens: Some(12),
                temperature: None,
                stream: Some(true),
                ..Default::default()
            },
            token: Some(material.encode().to_vec()),
            badge: None,
        })
        .unwrap();
        let (wrapped, ciphertext, state) =
            sealed::seal_request(&inner, &[verified_node.rek], now_seconds()).unwrap();
        let mut envelope = otts[index as usize].encode();
        envelope.push(1);
        envelope.extend_from_slice(&wrapped[0].encode());
        envelope.extend_from_slice(&ciphertext);
        (envelope, state)
    };
    let (envelope, state) = chat(0);
    let (status, sealed_stream) =
        ohttp_chunked(&http, &gw, &encoded_config, "/v1/chat", &envelope).await;
    assert_eq!(status, 200);
    let mut reader = ResponseReader::new(state);
    reader.push(&sealed_stream);
    let mut chunks = Vec::new();
    while let Some(chunk) = reader.next_chunk().unwrap() {
        chunks.push(ChunkContent::parse(&chunk.content).unwrap());
    }
    reader.finish().unwrap();
    assert!(
        chunks
            .iter()
            .all(|c| matches!(c, ChunkContent::Completion(_))),
        "{chunks:?}"
    );
    let ChunkContent::Completion(last) = chunks.last().unwrap() else {
        unreachable!()
    };
    assert!(last.usage.unwrap().completion_tokens > 0);

    // The same OTT again: refused as spent, before any node sees it.
    let (envelope, _) = chat(0);
    let (status, body) = ohttp_chunked(&http, &gw, &encoded_config, "/v1/chat", &envelope).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    // A different, unspent OTT works, also through standard (non-chunked) OHTTP.
    let (envelope, state) = chat(1);
    let (status, sealed_stream) = ohttp_call(
        &http,
        &gw,
        &encoded_config,
        "POST",
        "/v1/chat",
        &[],
        &envelope,
    )
    .await;
    assert_eq!(status, 200);
    let mut reader = ResponseReader::new(state);
    reader.push(&sealed_stream);
    while reader.next_chunk().unwrap().is_some() {}
    reader.finish().unwrap();

    // --- a client that announces a body and never sends it is cut off (408) ------------------
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut slow = tokio::net::TcpStream::connect(gw.trim_start_matches("http://"))
            .await
            .unwrap();
        slow.write_all(b"POST /.well-known/ohttp-gateway HTTP/1.1\r\nhost: gw\r\ncontent-type: message/ohttp-req\r\ncontent-length: 100\r\n\r\n")
            .await
            .unwrap();
        let mut answer = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&answer[..n])
        );
    }

    // --- through the relay, over HTTP/2, with an OTT of its own -----------------------------
    let relay_dir = dir.path().join("relay");
    let relay = common::spawn_relay(&relay_dir, &gw, &log);
    let relay_url = relay.1.clone();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let (envelope, state) = chat(3);
    let m = {
        let mut m = bhttp::Message::request(
            b"POST".to_vec(),
            b"https".to_vec(),
            b"gateway".to_vec(),
            b"/v1/chat".to_vec(),
        );
        m.write_content(&envelope);
        let mut inner = Vec::new();
        m.write_bhttp(bhttp::Mode::KnownLength, &mut inner).unwrap();
        inner
    };
    let send = |token: Option<&Token>| {
        let (enc, response) = ohttp::ClientRequest::from_encoded_config(&encoded_config)
            .unwrap()
            .encapsulate(&m)
            .unwrap();
        let mut request = h2
            .post(format!("{relay_url}/.well-known/ohttp-gateway"))
            .header("content-type", "message/ohttp-req")
            .body(enc);
        if let Some(t) = token {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t.encode());
            request = request.header("authorization", format!("PrivateToken token=\"{b64}\""));
        }
        (request, response)
    };
    let (request, _) = send(None);
    let no_token = request.send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    assert_eq!(no_token.headers()["www-authenticate"], "PrivateToken");
    let (request, response) = send(Some(&otts[2]));
    let reply = request.send().await.unwrap();
    assert_eq!(reply.version(), reqwest::Version::HTTP_2);
    assert_eq!(reply.status(), 200);
    let plain = response.decapsulate(&reply.bytes().await.unwrap()).unwrap();
    let answer = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&plain[..])).unwrap();
    assert_eq!(answer.control().status().unwrap().code(), 200);
    let mut reader = ResponseReader::new(state);
    reader.push(answer.content());
    while reader.next_chunk().unwrap().is_some() {}
    reader.finish().unwrap();
    // The relay's token cannot be used twice.
    let (request, _) = send(Some(&otts[2]));
    assert_eq!(request.send().await.unwrap().status(), 401);
    drop(relay);
    drop(gateway);
}
