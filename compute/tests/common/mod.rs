//! A log, a simulated NSM, the tiny model and a client-side harness, all on 127.0.0.1.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arcane_compute::attestation::{DeclaredMeasurements, SimulatedNsm};
use arcane_compute::node::{Node, NodeConfig, NodeParts, now_ms, now_seconds};
use arcane_compute::release::{LogSource, LogTrust};
use arcane_compute::service::ModelSource;
use arcane_compute::tokens::{DevelopmentWithoutTokens, TokenVerifier};
use arcane_engine::gguf::{TinyLlama, write_tiny_llama};
use arcane_engine::model::ModelFile;
use arcane_engine::{InferenceEngine, MistralEngine};
use arcane_log::keys::{AllowedKinds, PublisherPolicy};
use arcane_verifier::attested::{NodeBundle, NodeTrust, VerifiedNode, verify_node_bundle};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::entry::{EntryBody, EntryPolicy, Release};
use arcane_verifier::inner::{
    ChatCompletionRequest, ChatMessage, ChunkContent, InnerRequest, encode_inner_request,
};
use arcane_verifier::nitro::{AttestationPolicy, DocumentCache, NitroRoot};
use arcane_verifier::note::{ALG_ED25519, NoteSigner, VerifierKey};
use arcane_verifier::sealed::{self, ClientRequest, RekPublicKey, ResponseReader};

/// Everything around a node, before the node.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub log: Option<arcane_log::RunningServer>,
    pub log_url: String,
    pub log_key: VerifierKey,
    pub publisher: NoteSigner,
    pub nsm: Arc<SimulatedNsm>,
    pub measurements: DeclaredMeasurements,
    pub model: ModelFile,
}

/// Starts a log with a trusted publisher, makes the tiny model and a simulated NSM with random
/// PCRs. Nothing is published yet.
pub async fn stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let mut config = arcane_log::ServeConfig::new(data.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.sequencer.batch_delay = Duration::from_millis(10);
    let log = arcane_log::start(config).await.unwrap();
    let log_url = format!("http://{}", log.addr());
    let log_key = VerifierKey::parse(log.vkey()).unwrap();
    let publisher = NoteSigner::from_seed("releases.test", ALG_ED25519, &random::<32>()).unwrap();
    PublisherPolicy::new(data.join(arcane_log::POLICY_FILE))
        .allow(
            &publisher.verifier(),
            &AllowedKinds::parse("release,token-key").unwrap(),
        )
        .unwrap();
    let measurements = DeclaredMeasurements {
        pcr0: random(),
        pcr1: random(),
        pcr2: random(),
        pcr8: None,
    };
    let nsm = Arc::new(SimulatedNsm::new(&measurements, now_seconds()).unwrap());
    let model = tiny_model(&dir.path().join("model"));
    Stack {
        dir,
        log: Some(log),
        log_url,
        log_key,
        publisher,
        nsm,
        measurements,
        model,
    }
}

/// The tiny model, written into `dir` (a directory of its own).
pub fn tiny_model(dir: &std::path::Path) -> ModelFile {
    std::fs::create_dir_all(dir).unwrap();
    let path: PathBuf = dir.join("tiny.gguf");
    write_tiny_llama(&path, &TinyLlama::default()).unwrap();
    ModelFile::open(&path).unwrap()
}

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

impl Stack {
    /// Publishes a release for the stack's PCRs naming `model_sha256`; returns its bundle text.
    pub async fn publish_release(&self, model_sha256: [u8; 32]) -> String {
        let body = release_body(&self.measurements, model_sha256);
        publish(self, &self.publisher, body, Duration::from_secs(3600))
            .await
            .0
    }

    /// Publishes a `token-key` entry for `key` in `role`.
    pub async fn publish_token_key(
        &self,
        key: &arcane_verifier::tokens::IssuerKey,
        role: arcane_verifier::entry::TokenRole,
    ) {
        let client = arcane_log::client::LogClient::new(&self.log_url).unwrap();
        let body = EntryBody::TokenKey(arcane_verifier::entry::TokenKey {
            role,
            token_type: arcane_verifier::tokens::TOKEN_TYPE,
            spki_der: key.spki().to_vec(),
        });
        arcane_log::publish::publish(
            &client,
            &self.publisher,
            &self.log_key,
            body,
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    }

    pub fn trust(&self) -> LogTrust {
        LogTrust {
            log_key: self.log_key.clone(),
            witnesses: WitnessPolicy::none(),
            publishers: vec![self.publisher.verifier()],
            policy: EntryPolicy::default(),
        }
    }

    /// Loads the tiny model into mistral.rs.
    pub async fn engine(&self) -> Arc<dyn InferenceEngine> {
        Arc::new(MistralEngine::load(&self.model, 4).await.unwrap())
    }

    /// Boots a node on this stack.
    pub async fn boot(
        &self,
        engine: Arc<dyn InferenceEngine>,
        config: NodeConfig,
        tokens: Arc<dyn TokenVerifier>,
    ) -> arcane_compute::error::Result<Arc<Node>> {
        Node::boot(NodeParts {
            config,
            provider: self.nsm.clone(),
            answer_key: arcane_verifier::signed_answer::AnswerSigningKey::generate(),
            engine,
            tokens,
            model: self.model.clone().into(),
            members: 1,
            log: LogSource::new(&self.log_url).unwrap(),
            trust: self.trust(),
        })
        .await
    }

    /// Publishes the release, loads the engine, boots a node with default settings and serves
    /// it; returns the node and its base URL.
    pub async fn serving_node(&self, config: NodeConfig) -> (Arc<Node>, String) {
        self.publish_release(self.model.sha256).await;
        let node = self
            .boot(
                self.engine().await,
                config,
                Arc::new(DevelopmentWithoutTokens::for_development()),
            )
            .await
            .unwrap();
        let url = serve(Arc::clone(&node)).await;
        (node, url)
    }

    /// A client that trusts this stack's log, publisher and development NSM root.
    pub fn client(&self, node_url: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            node_url: node_url.to_owned(),
            trust: self.trust(),
            root: NitroRoot::development(self.nsm.root_der().to_vec()),
            model: self.model.name.clone(),
        }
    }
}

/// Serves `node` on 127.0.0.1 (any port); returns its base URL.
pub async fn serve(node: Arc<Node>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        arcane_compute::server::serve_tcp(
            listener,
            node,
            arcane_serve::ServeLimits::default(),
            std::future::pending(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

/// The client-side harness: verifies the node's bundle, seals, sends, opens the stream.
pub struct Client {
    pub http: reqwest::Client,
    pub node_url: String,
    pub trust: LogTrust,
    pub root: NitroRoot,
    pub model: String,
}

/// An opened answer.
#[derive(Debug)]
pub struct Answer {
    pub text: String,
    pub chunks: Vec<ChunkContent>,
}

impl Client {
    /// Fetches and fully verifies the node's bundle (with `nonce`, when given).
    pub async fn verified_node(&self, nonce: Option<&[u8]>) -> Result<VerifiedNode, String> {
        let url = match nonce {
            Some(n) => format!("{}/v1/attestation?nonce={}", self.node_url, hex::encode(n)),
            None => format!("{}/v1/attestation", self.node_url),
        };
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("attestation: {}", response.status()));
        }
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        let bundle = NodeBundle::parse(&bytes).map_err(|e| e.to_string())?;
        let policy = AttestationPolicy::default();
        let trust = NodeTrust {
            anchors: self.trust.anchors(),
            nitro_root: &self.root,
            attestation: &policy,
        };
        verify_node_bundle(
            &bundle,
            &trust,
            None,
            now_ms(),
            nonce,
            &mut DocumentCache::default(),
        )
        .map_err(|e| e.to_string())
    }

    /// The inner request for `prompt`.
    pub fn inner(&self, prompt: &str, max_tokens: u32) -> Vec<u8> {
        self.inner_with_token(prompt, max_tokens, None)
    }

    /// The inner request for `prompt` carrying `token` material.
    pub fn inner_with_token(
        &self,
        prompt: &str,
        max_tokens: u32,
        token: Option<Vec<u8>>,
    ) -> Vec<u8> {
        encode_inner_request(&InnerRequest {
            chat: ChatCompletionRequest {
                model: self.model.clone(),
                messages: vec![ChatMessage {
                    role: "user".into(),
                    content: prompt.into(),
                }],
                max_tokens: Some(max_tokens),
                // Greedy: the tests compare answers.
                temperature: Some(0.0),
                stream: Some(true),
                ..Default::default()
            },
            token,
            badge: None,
        })
        .unwrap()
    }

    /// Seals `inner` to `rek` issued at `issued_at`: the request body and the reader state.
    pub fn seal(
        &self,
        inner: &[u8],
        rek: RekPublicKey,
        issued_at: u64,
    ) -> (Vec<u8>, ClientRequest) {
        let (wrapped, ciphertext, state) = sealed::seal_request(inner, &[rek], issued_at).unwrap();
        let mut body = wrapped[0].encode().to_vec();
        body.extend_from_slice(&ciphertext);
        (body, state)
    }

    pub async fn post(&self, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/infer", self.node_url))
            .header("content-type", arcane_compute::server::SEALED_REQUEST_TYPE)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Reads a whole sealed answer as it streams.
    pub async fn read(
        &self,
        mut response: reqwest::Response,
        state: ClientRequest,
    ) -> Result<Answer, arcane_verifier::Error> {
        assert_eq!(
            response.status(),
            200,
            "the node refused: {:?}",
            response.headers()
        );
        let mut reader = ResponseReader::new(state);
        let mut chunks = Vec::new();
        let mut text = String::new();
        while let Some(bytes) = response.chunk().await.unwrap() {
            reader.push(&bytes);
            while let Some(chunk) = reader.next_chunk()? {
                let content = ChunkContent::parse(&chunk.content)?;
                if let ChunkContent::Completion(c) = &content {
                    text.push_str(c.choices[0].delta.content.as_deref().unwrap_or(""));
                }
                chunks.push(content);
            }
        }
        reader.finish()?;
        Ok(Answer { text, chunks })
    }

    /// Verifies the node, seals `prompt`, sends it and reads the answer.
    pub async fn chat(&self, prompt: &str, max_tokens: u32) -> Answer {
        let node = self.verified_node(None).await.unwrap();
        let (body, state) = self.seal(&self.inner(prompt, max_tokens), node.rek, now_seconds());
        let response = self.post(body).await;
        self.read(response, state).await.unwrap()
    }
}

/// A running `arcane-compute serve --development` process (killed when dropped), its URL and the
/// simulated NSM's root.
pub struct NodeProcess {
    pub process: arcane_test_support::Spawned,
    pub url: String,
    pub root: Vec<u8>,
}

impl NodeProcess {
    /// Peak resident set size of the node process so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Stack {
    /// Starts the `arcane-compute` binary in development mode on this stack's log, PCRs and
    /// model (the release must already be published); waits until it listens.
    pub fn spawn_node(&self, binary: &str, extra: &[&str]) -> NodeProcess {
        let pcrs = self.dir.path().join("pcrs.json");
        std::fs::write(
            &pcrs,
            serde_json::json!({
                "pcr0": hex::encode(self.measurements.pcr0),
                "pcr1": hex::encode(self.measurements.pcr1),
                "pcr2": hex::encode(self.measurements.pcr2),
            })
            .to_string(),
        )
        .unwrap();
        let root_path = self
            .dir
            .path()
            .join(format!("root-{}.pem", hex::encode(random::<4>())));
        // The log and the model come from a configuration file, as inside an enclave.
        let config = self
            .dir
            .path()
            .join(format!("compute-{}.toml", hex::encode(random::<4>())));
        std::fs::write(
            &config,
            format!(
                "model = {:?}\nlog_url = {:?}\nlog_key = {:?}\npublishers = [{:?}]\n",
                self.model.path.to_str().unwrap(),
                self.log_url,
                self.log_key.to_text(),
                self.publisher.verifier().to_text()
            ),
        )
        .unwrap();
        let mut command = std::process::Command::new(binary);
        command
            .args(["serve", "--development", "--no-token-check"])
            .args(if extra.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .arg("--config")
            .arg(&config)
            .arg("--simulated-pcrs")
            .arg(&pcrs)
            .arg("--simulated-root-out")
            .arg(&root_path)
            .args(extra);
        let process = arcane_test_support::spawn_listening(command, "arcane-compute").unwrap();
        let url = process.1.clone();
        let pem = std::fs::read_to_string(&root_path).unwrap();
        let root = arcane_verifier::nitro::pem_certificate(&pem).unwrap();
        NodeProcess { process, url, root }
    }

    /// A client for a node process (trusting its own development root).
    pub fn process_client(&self, node: &NodeProcess) -> Client {
        let mut client = self.client(&node.url);
        client.root = NitroRoot::development(node.root.clone());
        client
    }
}

// --- a model's owner and its key release service (sealed models) ----------------------------

/// The model's owner: its key store, its publisher key, its running service and the sealed file.
pub struct Owner {
    pub service: arcane_keyrelease::service::RunningService,
    pub signer: NoteSigner,
    pub sealed: std::path::PathBuf,
    pub model_sha256: [u8; 32],
    pub http: reqwest::Client,
}

/// How long a document may be old at the service in these tests.
pub const MAX_DOCUMENT_AGE_MS: u64 = 60_000;

pub async fn owner(stack: &Stack) -> Owner {
    let dir = stack.dir.path().join("owner");
    std::fs::create_dir_all(&dir).unwrap();
    let store = arcane_keyrelease::store::KeyStore::open_file(&dir.join("keys.db"))
        .await
        .unwrap();
    let sealed = stack.dir.path().join("operator").join("tiny.sealed");
    std::fs::create_dir_all(sealed.parent().unwrap()).unwrap();
    let result = arcane_keyrelease::seal::seal_model(&store, &stack.model.path, &sealed)
        .await
        .unwrap();
    assert_eq!(result.model_sha256, stack.model.sha256);
    let signer = NoteSigner::from_seed("owner.test", ALG_ED25519, &random::<32>()).unwrap();
    let policy = PublisherPolicy::new(stack.dir.path().join("log").join(arcane_log::POLICY_FILE));
    policy
        .allow(
            &signer.verifier(),
            &AllowedKinds::parse("model-access").unwrap(),
        )
        .unwrap();
    // The operator may publish access entries too: the service must still count only the
    // owner's.
    policy
        .allow(
            &stack.publisher.verifier(),
            &AllowedKinds::parse("release,token-key,model-access").unwrap(),
        )
        .unwrap();
    let mut log = stack.trust();
    log.publishers.push(signer.verifier());
    let trust = arcane_keyrelease::service::ServiceTrust {
        log,
        owner: signer.verifier(),
        nitro_root: NitroRoot::development(stack.nsm.root_der().to_vec()),
        attestation: AttestationPolicy {
            max_age_ms: MAX_DOCUMENT_AGE_MS,
            ..AttestationPolicy::default()
        },
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = arcane_keyrelease::service::start(store, trust, listener, Default::default())
        .await
        .unwrap();
    Owner {
        service,
        signer,
        sealed,
        model_sha256: result.model_sha256,
        http: reqwest::Client::new(),
    }
}

/// Publishes `body` signed by `signer`, valid for `validity`; returns its bundle and leaf hash.
pub async fn publish(
    stack: &Stack,
    signer: &NoteSigner,
    body: EntryBody,
    validity: Duration,
) -> (String, [u8; 32]) {
    let client = arcane_log::client::LogClient::new(&stack.log_url).unwrap();
    let published = arcane_log::publish::publish(&client, signer, &stack.log_key, body, validity)
        .await
        .unwrap();
    (published.bundle, published.verified.leaf_hash.0)
}

pub fn release_body(measurements: &DeclaredMeasurements, model_sha256: [u8; 32]) -> EntryBody {
    EntryBody::Release(Box::new(Release {
        pcr0: measurements.pcr0,
        pcr1: measurements.pcr1,
        pcr2: measurements.pcr2,
        pcr8: None,
        model_sha256,
        engine: "mistral.rs".into(),
        engine_version: "0.8.1".into(),
        source_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        eif_sha384: [9; 48],
        notes: String::new(),
    }))
}

pub fn access_body(model_sha256: [u8; 32], images: Vec<[u8; 48]>) -> EntryBody {
    EntryBody::ModelAccess(arcane_verifier::entry::ModelAccess {
        model_sha256,
        images,
    })
}

impl Owner {
    pub async fn challenge(&self) -> Vec<u8> {
        let reply = self
            .http
            .post(format!("{}/v1/challenge", self.service.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        arcane_verifier::model_key::ChallengeReply::parse(&reply.bytes().await.unwrap()).unwrap()
    }

    pub async fn send(&self, request: &arcane_verifier::model_key::KeyRequest) -> (u16, String) {
        let reply = self
            .http
            .post(format!("{}/v1/model-key", self.service.url()))
            .body(request.to_json())
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    }

    pub async fn records(&self) -> Vec<arcane_verifier::model_key::ReleaseRecord> {
        self.http
            .get(format!("{}/v1/releases", self.service.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The node's model options for the sealed file.
    pub fn sealed_model(&self) -> ModelSource {
        ModelSource::Sealed(arcane_compute::sealed_model::SealedModel {
            path: self.sealed.clone(),
            model_sha256: self.model_sha256,
            key_release_url: self.service.url(),
        })
    }
}

pub fn node_options(
    stack: &Stack,
    owner: &Owner,
    model: ModelSource,
) -> arcane_compute::service::NodeOptions {
    let mut trust = stack.trust();
    trust.publishers.push(owner.signer.verifier());
    arcane_compute::service::NodeOptions {
        model,
        provider: stack.nsm.clone(),
        log_url: stack.log_url.clone(),
        trust,
        config: NodeConfig::default(),
        tokens: arcane_compute::service::TokenCheck::DevelopmentWithoutTokens,
        gateways: Vec::new(),
        advertise: None,
    }
}
