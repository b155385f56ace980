//! Per-request cost of the gateway's own work — OHTTP decapsulation, BHTTP parsing, OTT
//! signature check, recording the OTT as spent in SQLite, picking a node — against the raw HPKE
//! open of a request of the same size, measured in the same run.
//!
//! `cargo test -p arcane-gateway --bench gateway_bench` (the dependencies are optimized in the
//! test profile); `ARCANE_BENCH_REQUESTS` (default 400).

use std::time::Instant;

use arcane_verifier::tokens::{IssuerSecret, OTT_ISSUER, Token, TokenChallenge, request_token};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::AesGcm128;

fn main() {
    let n: usize = std::env::var("ARCANE_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let payload = vec![0x42u8; 1024];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // Baseline: HPKE base-mode open of n requests of the same size.
    let (sk, pk) = Kem::gen_keypair();
    let sealed: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|_| {
            let (enc, ct) = hpke::single_shot_seal::<Aead, Kdf, Kem>(
                &OpModeS::Base,
                &pk,
                b"info",
                &payload,
                b"",
            )
            .unwrap();
            (enc.to_bytes().to_vec(), ct)
        })
        .collect();
    let started = Instant::now();
    for (enc, ct) in &sealed {
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).unwrap();
        let mut ctx =
            hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &sk, &enc, b"info").unwrap();
        assert_eq!(ctx.open(ct, b"").unwrap().len(), payload.len());
    }
    let raw = started.elapsed().as_secs_f64() / n as f64;

    // The gateway's work for n chat requests.
    let dir = tempfile::tempdir().unwrap();
    let config =
        arcane_gateway::keys::generate_ohttp_key(&dir.path().join("ohttp.key"), 1).unwrap();
    let encoded = config.encode().unwrap();
    let server = ohttp::Server::new(config).unwrap();
    let issuer = IssuerSecret::generate().unwrap();
    let challenge = TokenChallenge::for_issuer(OTT_ISSUER);
    let tokens: Vec<Token> = (0..n)
        .map(|i| {
            let mut nonce = [0u8; 32];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let (request, pending) = request_token(issuer.public(), &challenge, nonce).unwrap();
            pending.finalize(&issuer.issue(&request).unwrap()).unwrap()
        })
        .collect();
    let requests: Vec<Vec<u8>> = tokens
        .iter()
        .map(|t| {
            let mut m = bhttp::Message::request(
                b"POST".to_vec(),
                b"https".to_vec(),
                b"gw".to_vec(),
                b"/v1/chat".to_vec(),
            );
            let mut body = t.encode();
            body.extend_from_slice(&payload);
            m.write_content(&body);
            let mut inner = Vec::new();
            m.write_bhttp(bhttp::Mode::KnownLength, &mut inner).unwrap();
            ohttp::ClientRequest::from_encoded_config(&encoded)
                .unwrap()
                .encapsulate(&inner)
                .unwrap()
                .0
        })
        .collect();
    let db = runtime
        .block_on(arcane_gateway::store::TokenStore::open_file(
            &dir.path().join("gateway.db"),
        ))
        .unwrap();
    let registry = arcane_gateway::registry::Registry::new(
        arcane_gateway::proven::LogTrust {
            log_key: arcane_verifier::note::NoteSigner::from_seed("bench", 1, &[1; 32])
                .unwrap()
                .verifier(),
            witnesses: arcane_verifier::cosignature::WitnessPolicy::none(),
            publishers: vec![],
            policy: Default::default(),
        },
        arcane_verifier::nitro::NitroRoot::aws(),
        Default::default(),
    );
    // Each step timed on its own, summed over the run.
    let (mut t_ohttp, mut t_token, mut t_spent, mut t_pick) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    runtime.block_on(async {
        for request in &requests {
            let t = Instant::now();
            let (inner, _responder) = server.decapsulate(request).unwrap();
            let message =
                bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&inner[..])).unwrap();
            t_ohttp += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let content = message.content();
            let token = Token::decode(&content[..arcane_verifier::tokens::TOKEN_LEN]).unwrap();
            token.verify(issuer.public(), &challenge).unwrap();
            t_token += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let spent = db
                .spend("gateway", &token.nonce, u64::MAX, 0)
                .await
                .unwrap();
            assert_eq!(spent, arcane_gateway::store::Spend::Fresh);
            t_spent += t.elapsed().as_secs_f64();
            let t = Instant::now();
            assert!(registry.pick(&[[0; 32]], 0).is_empty());
            t_pick += t.elapsed().as_secs_f64();
        }
    });
    // Spends 8 at once (as 8 requests in flight make them): they share group commits.
    let at_once = runtime.block_on(async {
        let started = Instant::now();
        for _ in 0..n / 8 {
            let spends = (0..8).map(|_| {
                let db = db.clone();
                async move {
                    let mut nonce = [0u8; 32];
                    getrandom::fill(&mut nonce).unwrap();
                    db.spend("gateway", &nonce, u64::MAX, 0).await.unwrap()
                }
            });
            for spent in futures::future::join_all(spends).await {
                assert_eq!(spent, arcane_gateway::store::Spend::Fresh);
            }
        }
        started.elapsed().as_secs_f64() / (n / 8 * 8) as f64
    });
    let per = |t: f64| t / n as f64;
    let total = per(t_ohttp + t_token + t_spent + t_pick);
    println!("{n} requests of 1 KiB, per request:");
    println!("| measurement | time | ratio to raw HPKE open |");
    println!("|---|---|---|");
    println!(
        "| raw HPKE open (X25519, HKDF-SHA256, AES-128-GCM) | {:.1} µs | 1.00× |",
        raw * 1e6
    );
    for (name, t) in [
        ("OHTTP decapsulate + BHTTP parse", per(t_ohttp)),
        ("OTT signature check (RSA-2048 PSS)", per(t_token)),
        (
            "OTT recorded as spent (SQLite, synchronous=FULL), one at a time",
            per(t_spent),
        ),
        (
            "OTT recorded as spent, 8 at once (group commit), per token",
            at_once,
        ),
        ("node pick", per(t_pick)),
        ("gateway total", total),
    ] {
        println!("| {name} | {:.1} µs | {:.2}× |", t * 1e6, t / raw);
    }
    println!(
        "summary | gateway work per request (OHTTP, OTT check, spent record, pick; no network) | {:.1} µs | one raw HPKE open: {:.1} µs | {:.2}× | — | — |",
        total * 1e6,
        raw * 1e6,
        total / raw
    );
}
