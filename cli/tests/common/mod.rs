//! What the CLI's end-to-end tests share: the demo stack on a tiny generated model, clients (and
//! proxies) of it whose trust file a test may edit, the edit that swaps in an impostor log key, and
//! our relay over TLS (and HTTP/3) with a test CA.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use arcane_verifier::note::{ALG_COSIGNATURE_V1, NoteSigner};
use arcane_verifier::witness::{AddCheckpoint, Refusal, cosignature_response, decide};

use arcane_cli::demo::{Stack, StackOptions};
use arcane_cli::proxy::{ProxyOptions, RunningProxy};
use arcane_client::{Client, ClientConfig, Trust};
use arcane_compute::attestation::{DeclaredMeasurements, SimulatedNsm};
use arcane_engine::gguf::{TinyLlama, write_tiny_llama};
use arcane_gateway::proven::{Proven, bundles_of_kind};
use arcane_gateway::service::{RelayOptions, RunningService, Transport, start_relay};
use arcane_serve::tls::TlsIdentity;
use arcane_verifier::attested::{NodeBundle, NodeRegistration};
use arcane_verifier::nitro::binding_user_data;
use arcane_verifier::sealed::RekSecret;

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    arcane_client::session::now_ms()
}

fn quiet(_: &str) {}

/// The demo stack in `dir` on a tiny generated model, with or without its compute node.
pub async fn stack(dir: &Path, with_node: bool) -> Stack {
    let model = dir.join("tiny.gguf");
    write_tiny_llama(&model, &TinyLlama::default()).unwrap();
    let mut options = StackOptions::new(dir.join("stack"), model);
    options.with_node = with_node;
    Stack::start(options, &quiet).await.unwrap()
}

/// A client of `stack` whose trust file is the stack's, changed by `edit`.
pub fn client_with(stack: &Stack, edit: impl FnOnce(String) -> String) -> Client {
    let text = edit(std::fs::read_to_string(&stack.trust_file).unwrap());
    let trust = Trust::from_toml(&text, stack.trust_file.parent().unwrap()).unwrap();
    let mut config = ClientConfig::new(trust);
    config.state_root = stack.client_state.clone();
    Client::new(config).unwrap()
}

/// `arcane proxy` on 127.0.0.1 for a client of `stack` (trust file changed by `edit`).
pub async fn proxy_with(
    stack: &Stack,
    edit: impl FnOnce(String) -> String,
    options: ProxyOptions,
) -> RunningProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    arcane_cli::proxy::start(client_with(stack, edit), listener, options).unwrap()
}

/// A trust-file edit that names another key, under the log's name, as the log's key: every
/// checkpoint the genuine log signs is then refused.
pub fn impostor_log_key(stack: &Stack) -> impl FnOnce(String) -> String {
    let impostor = arcane_verifier::note::NoteSigner::from_seed(
        stack.log_key.name(),
        arcane_verifier::note::ALG_ED25519,
        &[7; 32],
    )
    .unwrap()
    .verifier()
    .to_text();
    let genuine = stack.log_key.to_text();
    move |trust: String| trust.replace(&genuine, &impostor)
}

/// Chat tokens the gateway redeemed: a request that reached it spent one.
pub async fn redeemed_at_gateway(stack: &Stack) -> i64 {
    spent(stack, "gateway/gateway.db", "gateway").await
}

/// Tokens spent in `scope` in the stack's database at `db` (relative to its data folder).
pub async fn spent(stack: &Stack, db: &str, scope: &str) -> i64 {
    let db = arcane_gateway::store::TokenStore::open_file(&stack.options.data_dir.join(db))
        .await
        .unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM spent_tokens WHERE scope = $1")
        .bind(scope)
        .fetch_one(db.pool())
        .await
        .unwrap();
    db.close().await;
    n
}

pub async fn releases(stack: &Stack) -> Vec<Proven> {
    bundles_of_kind(
        &arcane_log_client::LogClient::new(&stack.log_url).unwrap(),
        &stack.log_trust(),
        "release",
        now_ms() / 1000,
    )
    .await
    .unwrap()
}

/// The release entry in `stack`'s log that names the model `model_sha256`.
pub async fn release_for_model(stack: &Stack, model_sha256: &[u8; 32]) -> Proven {
    releases(stack)
        .await
        .into_iter()
        .find(|r| {
            matches!(&r.verified.entry.entry.body,
                arcane_verifier::entry::EntryBody::Release(b) if &b.model_sha256 == model_sha256)
        })
        .expect("the model's release is in the log")
}

/// A node bundle from `nsm`, bound to `release` and the stack's model, dated `timestamp_ms`.
pub fn bundle_from(
    nsm: &SimulatedNsm,
    release: &Proven,
    model_sha256: [u8; 32],
    timestamp_ms: u64,
) -> NodeBundle {
    let rek = RekSecret::generate().public();
    let user_data = binding_user_data(&model_sha256, &release.verified.leaf_hash.0, &[0x5a; 32]);
    NodeBundle {
        document: nsm
            .attest_at(Some(&rek.0), Some(&user_data), None, timestamp_ms)
            .unwrap(),
        release: release.bundle.clone(),
    }
}

/// Makes the gateway lie: it lists `bundle` without verifying it (as a compromised gateway
/// would), under the verified identity of a genuine bundle.
pub async fn list_unverified(stack: &Stack, bundle: &NodeBundle) {
    let genuine = bundle_from(
        &stack.nsm,
        &releases(stack).await[0],
        stack.model.sha256,
        now_ms(),
    );
    let verified = stack
        .gateway_state
        .registry
        .check(
            &NodeRegistration::new(
                "http://127.0.0.1:9".into(),
                stack.model.name.clone(),
                1,
                &genuine,
            ),
            now_ms(),
        )
        .unwrap();
    stack
        .gateway_state
        .registry
        .list(
            &NodeRegistration::new(
                "http://127.0.0.1:9".into(),
                stack.model.name.clone(),
                1,
                bundle,
            ),
            verified,
        )
        .unwrap();
}

pub fn random_measurements() -> DeclaredMeasurements {
    let mut m = DeclaredMeasurements {
        pcr0: [0; 48],
        pcr1: [0; 48],
        pcr2: [0; 48],
        pcr8: None,
    };
    for pcr in [&mut m.pcr0, &mut m.pcr1, &mut m.pcr2] {
        getrandom::fill(pcr).unwrap();
    }
    m
}

/// The trust file edited to trust `nsm`'s root instead of the stack's.
pub fn trusting_root(stack: &Stack, nsm: &SimulatedNsm) -> impl FnOnce(String) -> String {
    let path = stack
        .options
        .data_dir
        .join(format!("other-root-{}.pem", now_ms()));
    std::fs::write(
        &path,
        arcane_verifier::nitro::certificate_pem(nsm.root_der()),
    )
    .unwrap();
    move |t: String| {
        t.replace(
            "development_nitro_root = \"nsm-root.pem\"",
            &format!("development_nitro_root = {:?}", path.display().to_string()),
        )
    }
}

/// A log with `stack`'s signing key (the real log code) holding `entries` other release entries:
/// a fork that can show a client a larger tree than the honest log's.
pub async fn forked_log(stack: &Stack, dir: &Path, entries: u64) -> arcane_log::RunningServer {
    let fork_dir = dir.join("fork");
    std::fs::create_dir_all(&fork_dir).unwrap();
    let log_dir = stack.options.data_dir.join("log");
    for file in [arcane_log::LOG_KEY_FILE, arcane_log::POLICY_FILE] {
        std::fs::copy(log_dir.join(file), fork_dir.join(file)).unwrap();
    }
    let mut config = arcane_log::ServeConfig::new(fork_dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.sequencer.batch_delay = std::time::Duration::from_millis(5);
    let fork = arcane_log::start(config).await.unwrap();
    let client = arcane_log::client::LogClient::new(&format!("http://{}", fork.addr())).unwrap();
    for i in 0..entries {
        let mut m = random_measurements();
        m.pcr0[0] = i as u8;
        arcane_log::publish::publish(
            &client,
            &stack.publisher,
            &stack.log_key,
            arcane_cli::demo::release_entry(&m, [1; 32]),
            std::time::Duration::from_secs(3600),
        )
        .await
        .unwrap();
    }
    fork
}

/// A witness of one log, in memory: the same decision every witness takes
/// (`arcane_verifier::witness::decide`), over HTTP.
pub async fn start_witness(
    log_key: Arc<std::sync::Mutex<Option<arcane_verifier::note::VerifierKey>>>,
) -> (String, Arc<NoteSigner>) {
    let signer = Arc::new(
        NoteSigner::from_seed("soak-witness.example", ALG_COSIGNATURE_V1, &[9; 32]).unwrap(),
    );
    let state: Arc<tokio::sync::Mutex<Option<(u64, arcane_verifier::Hash)>>> = Arc::default();
    let app = axum::Router::new().route(
        "/add-checkpoint",
        axum::routing::post({
            let signer = Arc::clone(&signer);
            move |body: axum::body::Bytes| {
                let (signer, state, log_key) = (signer.clone(), state.clone(), log_key.clone());
                async move {
                    let Ok(request) = AddCheckpoint::parse(&body) else {
                        return (axum::http::StatusCode::BAD_REQUEST, String::new());
                    };
                    let Some(key) = log_key.lock().unwrap().clone() else {
                        return (axum::http::StatusCode::NOT_FOUND, String::new());
                    };
                    let mut latest = state.lock().await;
                    match decide(&request, &key, *latest) {
                        Ok(checkpoint) => {
                            *latest = Some((checkpoint.size, checkpoint.root));
                            let line = cosignature_response(&signer, &checkpoint, now_ms() / 1000)
                                .unwrap();
                            (axum::http::StatusCode::OK, line)
                        }
                        Err(Refusal::Conflict { latest }) => {
                            (axum::http::StatusCode::CONFLICT, format!("{latest}\n"))
                        }
                        Err(r) => (
                            axum::http::StatusCode::from_u16(r.status()).unwrap(),
                            String::new(),
                        ),
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, signer)
}

/// Options for the demo stack in `dir` on a tiny generated model whose log publishes only
/// checkpoints cosigned by one witness (which clients require).
pub async fn witnessed_options(dir: &Path) -> StackOptions {
    // The witness learns the log's key once it is made (the policy names the witness first).
    let log_key = Arc::new(std::sync::Mutex::new(None));
    let (witness_url, witness) = start_witness(log_key.clone()).await;
    let policy = dir.join("witness-policy");
    std::fs::write(
        &policy,
        format!(
            "witness soak-witness.example {} {witness_url}\nquorum soak-witness.example\n",
            hex::encode(witness.verifier().public_key().as_bytes())
        ),
    )
    .unwrap();
    // The log's key is made before the log starts, so the witness can know it.
    let data = dir.join("stack");
    let signer = NoteSigner::from_seed(
        "witnessed.arcane.local",
        arcane_verifier::note::ALG_ED25519,
        &[5; 32],
    )
    .unwrap();
    std::fs::create_dir_all(data.join("log")).unwrap();
    arcane_log::keys::write_secret_key(&data.join("log").join("log.key"), &signer).unwrap();
    *log_key.lock().unwrap() = Some(signer.verifier());
    let model = dir.join("tiny.gguf");
    write_tiny_llama(&model, &TinyLlama::default()).unwrap();
    let mut options = StackOptions::new(data, model);
    options.witnesses = Some((policy, vec![witness.verifier().to_text()], 1));
    options
}

/// Runs `node --test` (one file at a time) on `dir/test/` with `env`; the report, after
/// asserting that it passed with no test failed or skipped.
pub async fn node_tests(dir: &Path, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let output = tokio::process::Command::new("node")
        .args(["--test", "--test-concurrency=1", "test/"])
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "node --test failed:\n{report}");
    assert!(report.contains("# fail 0"), "{report}");
    assert!(
        !report.contains("# skipped") || report.contains("# skipped 0"),
        "{report}"
    );
    report
}

/// The stack's trust file with its relay line replaced by `relays`.
pub fn relays_instead(relays: String) -> impl FnOnce(String) -> String {
    move |text| {
        let ours = text
            .lines()
            .find(|l| l.starts_with("relay = "))
            .expect("the stack's trust file names its relay")
            .to_owned();
        text.replace(&ours, &relays)
    }
}

/// A test CA (its PEM, written to the stack's folder as `relay-ca.pem`) and a certificate it
/// issued for 127.0.0.1 and localhost.
pub fn test_ca(stack: &Stack) -> TlsIdentity {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "arcane test relay CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    std::fs::write(
        stack.trust_file.with_file_name("relay-ca.pem"),
        ca_cert.pem(),
    )
    .unwrap();
    TlsIdentity::from_pem(leaf.pem().as_bytes(), leaf_key.serialize_pem().as_bytes()).unwrap()
}

/// Our relay in front of `stack`'s gateway, on `transport`.
pub async fn our_relay(stack: &Stack, name: &str, transport: Transport) -> RunningService {
    start_relay(
        &RelayOptions {
            gateway: stack.gateway.url(),
            data_dir: stack.options.data_dir.join(name),
            database_url: None,
            log: stack.log_url.clone(),
            trust: stack.log_trust(),
            key_refresh: std::time::Duration::from_secs(60),
            limits_http: arcane_serve::ServeLimits::default(),
            transport,
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

/// Trust lines for our relay at `service` (over HTTPS), said to offer HTTP/3 or not.
pub fn over_tls(service: &RunningService, http3: bool) -> String {
    format!(
        "relays = [{{ url = \"{}/.well-known/ohttp-gateway\", token = true, http3 = {http3} }}]\n\
         tls_roots = \"relay-ca.pem\"",
        service.url()
    )
}
