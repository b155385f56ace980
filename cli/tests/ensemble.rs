//! Ensembles (`arcane_compute::ensemble`, `spec/compute.md` §7) over 127.0.0.1 with simulated-NSM
//! documents and a release published in a real log: a model directory split by mistral.rs's ring
//! across two engine processes answers with the same greedy text as one engine; every byte
//! between the members crosses as a sealed record (a recording proxy on each link sees no prompt
//! and only ciphertext); a member of another image is refused before any engine starts.
//!
//! mistral.rs keeps one ring per process, so each member's engine runs in a process of its own:
//! this test binary again, running [`ensemble_member_process`]. The members' link shells run in
//! this process, where one simulated NSM root signs every member's documents.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcane_cli::demo::{Stack, demo_measurements, release_entry};
use arcane_compute::attestation::{AttestationProvider, SimulatedNsm};
use arcane_compute::ensemble::{Ensemble, EnsembleConfig, Health, LinkIdentity};
use arcane_engine::gguf::TinyLlama;
use arcane_engine::model_dir::{ModelDir, write_tiny_llama_dir};
use arcane_engine::{EngineEvent, InferenceEngine, MistralEngine, RingMember};
use arcane_gateway::proven::Proven;
use arcane_verifier::ensemble_link::HELLO_LEN;
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};
use arcane_verifier::nitro::{AttestationPolicy, NitroRoot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;
use common::{now_ms, random_measurements, stack};

/// What a member process is told, in this variable, as JSON.
const MEMBER_ENV: &str = "ARCANE_ENSEMBLE_TEST_MEMBER";
/// A prompt no byte on a link may show.
const PROMPT: &str = "Ensemble prompt 4c1d9e: name three rivers that cross a border.";
const MAX_TOKENS: usize = 24;

fn chat() -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: "model".into(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: PROMPT.into(),
        }],
        temperature: Some(0.0),
        ..ChatCompletionRequest::default()
    }
}

async fn greedy(engine: &MistralEngine) -> String {
    let mut events = engine.generate(&chat(), MAX_TOKENS).unwrap();
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event {
            EngineEvent::Delta(d) => text.push_str(&d),
            EngineEvent::Finished { .. } => return text,
            EngineEvent::Failed(e) => panic!("generation failed: {e}"),
        }
    }
    panic!("the engine stopped without finishing")
}

/// One member's engine, in a process of its own: rank 0 prints its greedy answer, the others
/// serve the ring until they are killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a member process of the ensemble tests, started by them"]
async fn ensemble_member_process() {
    let spec: serde_json::Value =
        serde_json::from_str(&std::env::var(MEMBER_ENV).expect("started by a test")).unwrap();
    let model = ModelDir::open(std::path::Path::new(spec["model"].as_str().unwrap())).unwrap();
    let port = |k: &str| spec[k].as_u64().unwrap() as u16;
    let member = RingMember {
        rank: spec["rank"].as_u64().unwrap() as usize,
        world_size: spec["world_size"].as_u64().unwrap() as usize,
        left_port: port("left_port"),
        right_port: port("right_port"),
        master_port: port("master_port"),
    };
    if member.rank == 0 {
        let engine = MistralEngine::load_dir(&model, 4, Some(&member))
            .await
            .unwrap();
        let text = greedy(&engine).await;
        println!("GREEDY:{}", serde_json::to_string(&text).unwrap());
        // The followers' rings end with this process.
        std::process::exit(0);
    }
    let model = model.clone();
    tokio::task::spawn_blocking(move || arcane_engine::serve_ring_follower(&model, &member))
        .await
        .unwrap()
        .unwrap();
}

/// The children's errors: shown with `ARCANE_ENSEMBLE_TEST_STDERR=1`, else dropped.
fn child_stderr() -> std::process::Stdio {
    if std::env::var_os("ARCANE_ENSEMBLE_TEST_STDERR").is_some() {
        std::process::Stdio::inherit()
    } else {
        std::process::Stdio::null()
    }
}

/// Starts this binary again to run only the ignored test `process`, told `spec`.
fn spawn_self(process: &str, spec: &serde_json::Value) -> tokio::process::Child {
    tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            process,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEMBER_ENV, spec.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(child_stderr())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Starts this binary as the engine of `member`.
fn spawn_member(model: &ModelDir, member: &RingMember) -> tokio::process::Child {
    let spec = serde_json::json!({
        "model": model.path,
        "rank": member.rank,
        "world_size": member.world_size,
        "left_port": member.left_port,
        "right_port": member.right_port,
        "master_port": member.master_port,
    });
    spawn_self("ensemble_member_process", &spec)
}

/// The bytes one direction of a connection carried.
type Recording = Arc<Mutex<Vec<u8>>>;

/// A TCP proxy from a new port to `target` that records each direction's bytes.
struct Recorder {
    address: SocketAddr,
    /// (client → target, target → client) of every connection.
    streams: Arc<Mutex<Vec<(Recording, Recording)>>>,
}

async fn recorder(target: SocketAddr) -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let streams: Arc<Mutex<Vec<_>>> = Arc::default();
    let all = Arc::clone(&streams);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            // The member behind may not listen yet: members start in any order.
            let mut server = TcpStream::connect(target).await;
            for _ in 0..200 {
                if server.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
                server = TcpStream::connect(target).await;
            }
            let Ok(server) = server else {
                continue;
            };
            let (up, down): (Recording, Recording) = Default::default();
            all.lock()
                .unwrap()
                .push((Arc::clone(&up), Arc::clone(&down)));
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, up));
            tokio::spawn(pump(sr, cw, down));
        }
    });
    Recorder { address, streams }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    record: Recording,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 || to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        record.lock().unwrap().extend_from_slice(&buffer[..n]);
    }
}

/// The records' sealed bodies of one direction of a link, after its handshake part (`skip`
/// bytes, then a `u32`-prefixed document when `document` is set): fails unless the rest parses
/// exactly as `u32 length ‖ sealed` records.
fn sealed_bodies(wire: &[u8], skip: usize, document: bool) -> Vec<u8> {
    let mut at = skip;
    if document {
        let len = u32::from_be_bytes(wire[at..at + 4].try_into().unwrap()) as usize;
        at += 4 + len;
    }
    let mut bodies = Vec::new();
    while at < wire.len() {
        let len = u32::from_be_bytes(wire[at..at + 4].try_into().unwrap()) as usize;
        assert!(at + 4 + len <= wire.len(), "a record runs past the stream");
        assert!(len >= 16, "a record shorter than its tag");
        bodies.extend_from_slice(&wire[at + 4..at + 4 + len]);
        at += 4 + len;
    }
    bodies
}

/// Shannon entropy in bits per byte.
fn entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for b in bytes {
        counts[*b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

struct Fixture {
    dir: tempfile::TempDir,
    stack: Stack,
    model: ModelDir,
    release: Proven,
    nsm: Arc<SimulatedNsm>,
    root: NitroRoot,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), false).await;
    let model_path = dir.path().join("tiny-llama");
    write_tiny_llama_dir(&model_path, &TinyLlama::default()).unwrap();
    let model = ModelDir::open(&model_path).unwrap();
    stack
        .publish(
            release_entry(&demo_measurements(), model.sha256),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let release = common::release_for_model(&stack, &model.sha256).await;
    let nsm = Arc::clone(&stack.nsm);
    let root = NitroRoot::development(nsm.root_der().to_vec());
    Fixture {
        dir,
        stack,
        model,
        release,
        nsm,
        root,
    }
}

fn identity(f: &Fixture, attestor: Arc<dyn AttestationProvider>) -> LinkIdentity {
    LinkIdentity {
        attestor,
        root: f.root.clone(),
        release: f.release.verified.clone(),
        model_sha256: f.model.sha256,
        attestation: AttestationPolicy::default(),
    }
}

fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_answer_as_one_engine_and_only_ciphertext_crosses() {
    let f = fixture().await;

    // One engine alone: the reference answer.
    let alone = MistralEngine::load_dir(&f.model, 1, None).await.unwrap();
    let expected = greedy(&alone).await;
    drop(alone);
    assert!(!expected.is_empty());

    // Two members, each reaching the other through a recording proxy.
    let listen = [free_address(), free_address()];
    let proxies = [recorder(listen[0]).await, recorder(listen[1]).await];
    let config = |rank: usize| EnsembleConfig {
        rank,
        listen: listen[rank],
        members: vec![proxies[0].address, proxies[1].address],
        bring_up_timeout: Duration::from_secs(30),
    };
    let (leader, follower) = tokio::join!(
        Ensemble::bring_up(config(0), identity(&f, f.nsm.clone())),
        Ensemble::bring_up(config(1), identity(&f, f.nsm.clone())),
    );
    let (leader, follower) = (leader.unwrap(), follower.unwrap());
    assert_eq!(leader.health(), Health::Serving);

    let mut follower_engine = spawn_member(&f.model, follower.ring_member());
    let leader_engine = spawn_member(&f.model, leader.ring_member());
    let output = tokio::time::timeout(Duration::from_secs(300), leader_engine.wait_with_output())
        .await
        .expect("the ensemble answered in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("GREEDY:").map(|(_, answer)| answer))
        .unwrap_or_else(|| panic!("the leader printed no answer: {stdout}"));
    let answer: String = serde_json::from_str(line).unwrap();
    assert_eq!(
        answer, expected,
        "the ensemble's greedy text is one engine's"
    );

    // The leader's engine is gone: the follower's side of the ensemble fails, closed.
    let why = tokio::time::timeout(Duration::from_secs(30), follower.failed())
        .await
        .expect("the follower noticed");
    assert!(!why.is_empty());
    let _ = follower_engine.kill().await;

    // What crossed: handshakes, then sealed records only.
    let mut bodies = Vec::new();
    let mut all = Vec::new();
    for proxy in &proxies {
        for (up, down) in proxy.streams.lock().unwrap().iter() {
            let (up, down) = (up.lock().unwrap(), down.lock().unwrap());
            all.extend_from_slice(&up);
            all.extend_from_slice(&down);
            // Dialer → listener: hello, its document, records. Back: challenge, document, records.
            bodies.extend(sealed_bodies(&up, HELLO_LEN, true));
            bodies.extend(sealed_bodies(&down, 32, true));
        }
    }
    let prompt = PROMPT.as_bytes();
    assert!(
        !all.windows(12).any(|w| prompt.windows(12).any(|p| p == w)),
        "no 12 bytes of the prompt cross in the clear"
    );
    assert!(
        bodies.len() > 16 * 1024,
        "the ring's activations crossed ({} bytes sealed)",
        bodies.len()
    );
    let bits = entropy(&bodies);
    assert!(
        bits > 7.95,
        "sealed records look random ({bits:.3} bits per byte)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_image_is_refused_before_any_engine_starts() {
    let f = fixture().await;
    let other = Arc::new(
        f.nsm
            .sibling(&random_measurements(), now_ms() / 1000)
            .unwrap(),
    );
    let listen = [free_address(), free_address()];
    let config = |rank: usize| EnsembleConfig {
        rank,
        listen: listen[rank],
        members: listen.to_vec(),
        bring_up_timeout: Duration::from_secs(10),
    };
    let (leader, follower) = tokio::join!(
        Ensemble::bring_up(config(0), identity(&f, f.nsm.clone())),
        Ensemble::bring_up(config(1), identity(&f, other)),
    );
    let leader = leader
        .err()
        .expect("the leader refuses the other image")
        .to_string();
    assert!(
        leader.contains("member 1 refused") && leader.contains("PCR"),
        "{leader}"
    );
    let follower = follower.err().expect("no ensemble forms").to_string();
    assert!(follower.contains("ensemble"), "{follower}");
}

/// One node of the stack test, in a process of its own, through the compute library as the
/// `arcane-compute` binary runs it: rank 0 is served as a node registered with the stack's
/// gateway (it prints its URL, then `HALTED` once its ensemble failed); the others are members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a node process of the ensemble tests, started by them"]
async fn ensemble_node_process() {
    use arcane_compute::node::NodeConfig;
    use arcane_compute::release::LogTrust;
    use arcane_compute::service::{self, MemberOptions, ModelSource, NodeOptions, TokenCheck};
    use arcane_verifier::cosignature::WitnessPolicy;
    use arcane_verifier::entry::EntryPolicy;
    use arcane_verifier::note::VerifierKey;

    let spec: serde_json::Value =
        serde_json::from_str(&std::env::var(MEMBER_ENV).expect("started by a test")).unwrap();
    let text = |k: &str| spec[k].as_str().unwrap().to_owned();
    let model = ModelDir::open(std::path::Path::new(&text("model"))).unwrap();
    let nsm = Arc::new(
        SimulatedNsm::with_root_file(
            &demo_measurements(),
            now_ms() / 1000,
            std::path::Path::new(&text("root_file")),
        )
        .unwrap(),
    );
    let root = NitroRoot::development(nsm.root_der().to_vec());
    let trust = LogTrust {
        log_key: VerifierKey::parse(&text("log_key")).unwrap(),
        witnesses: WitnessPolicy::none(),
        publishers: vec![VerifierKey::parse(&text("publisher")).unwrap()],
        policy: EntryPolicy::default(),
    };
    let ensemble = EnsembleConfig {
        rank: spec["rank"].as_u64().unwrap() as usize,
        listen: text("listen").parse().unwrap(),
        members: serde_json::from_value(spec["members"].clone()).unwrap(),
        bring_up_timeout: Duration::from_secs(60),
    };
    if ensemble.rank != 0 {
        let stopped = service::run_member(MemberOptions {
            model,
            ensemble,
            root,
            provider: nsm,
            log_url: text("log_url"),
            trust,
        })
        .await;
        eprintln!("member stopped: {stopped}");
        std::process::exit(1);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = service::start(
        NodeOptions {
            model: ModelSource::EnsembleLeader {
                model,
                ensemble,
                root,
            },
            provider: nsm,
            log_url: text("log_url"),
            trust,
            config: NodeConfig::default(),
            tokens: TokenCheck::Logged {
                otts_per_tgt: spec["otts_per_tgt"].as_u64().unwrap() as u32,
            },
            gateways: vec![text("gateway")],
            advertise: None,
        },
        listener,
    )
    .await
    .unwrap();
    println!("NODE:{}", running.url());
    running.node.halted().await;
    println!("HALTED");
    std::future::pending::<()>().await;
}

/// Starts this binary as one node of the stack test.
fn spawn_node(spec: serde_json::Value) -> tokio::process::Child {
    spawn_self("ensemble_node_process", &spec)
}

fn stack_request() -> ChatCompletionRequest {
    ChatCompletionRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: PROMPT.into(),
        }],
        max_tokens: Some(MAX_TOKENS as u32),
        temperature: Some(0.0),
        ..ChatCompletionRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_chat_is_answered_by_a_two_node_ensemble_which_fails_closed() {
    use arcane_client::Route;
    use tokio::io::AsyncBufReadExt;

    let f = fixture().await;
    // One engine alone, with the node's sampling: the reference answer.
    let alone = MistralEngine::load_dir(&f.model, 1, None)
        .await
        .unwrap()
        .with_sampling(arcane_compute::node::NodeConfig::default().sampling);
    let mut events = alone.generate(&stack_request(), MAX_TOKENS).unwrap();
    let mut expected = String::new();
    while let Some(event) = events.recv().await {
        match event {
            EngineEvent::Delta(d) => expected.push_str(&d),
            EngineEvent::Finished { .. } => break,
            EngineEvent::Failed(e) => panic!("{e}"),
        }
    }
    drop(alone);

    // The stack's simulated root, shared with the nodes' processes.
    let root_file = f.dir.path().join("nsm-root.json");
    f.nsm.write_root_file(&root_file).unwrap();
    let listen = [free_address(), free_address()];
    let spec = |rank: usize| {
        serde_json::json!({
            "model": f.model.path,
            "root_file": root_file,
            "log_url": f.stack.log_url,
            "log_key": f.stack.log_key.to_text(),
            "publisher": f.stack.publisher.verifier().to_text(),
            "gateway": f.stack.gateway.url(),
            "otts_per_tgt": f.stack.options.token_limits.otts_per_tgt,
            "rank": rank,
            "listen": listen[rank].to_string(),
            "members": listen,
        })
    };
    let mut member = spawn_node(spec(1));
    let mut leader = spawn_node(spec(0));
    let mut lines = tokio::io::BufReader::new(leader.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, url)) = line.split_once("NODE:") {
                return url.to_owned();
            }
        }
        panic!("the leader ended without serving")
    })
    .await
    .expect("the leader served in time");
    assert!(url.starts_with("http://127.0.0.1:"));

    // A client of the stack: the leader is the only node; its document says "an ensemble of 2".
    let mut client = common::client_with(&f.stack, |t| t);
    let (text, summary) = loop {
        match client.chat(stack_request(), Route::Cloud).await {
            Ok(stream) => break stream.collect().await.unwrap(),
            // Until the gateway lists the leader.
            Err(e) if e.to_string().contains("node") => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(text, expected, "the ensemble's greedy text is one engine's");
    let receipt = summary.receipt.expect("a receipt");
    assert_eq!(receipt.ensemble_members, 2);
    assert_eq!(receipt.model_sha256, hex::encode(f.model.sha256));

    // The member dies: the leader halts (it stops listening, so the gateway drops it), and the
    // next chat is refused rather than answered by a part of the model.
    member.kill().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("HALTED") {
                return;
            }
        }
        panic!("the leader ended without halting")
    })
    .await
    .expect("the leader halted");
    let refused = match client.chat(stack_request(), Route::Cloud).await {
        Ok(stream) => stream.collect().await.map(|(text, _)| text),
        Err(e) => Err(e),
    };
    assert!(
        refused.is_err(),
        "no answer after the ensemble failed: {refused:?}"
    );
    let _ = leader.kill().await;
}
