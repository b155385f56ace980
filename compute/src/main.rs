//! `arcane-compute`: the compute node.
//!
//! `serve` boots the node (model, REK, release proof, attestation), serves the sealed request API
//! and keeps its proof and document fresh — alone, or as a member of an ensemble that splits a
//! model directory (`--model-dir`, `--ensemble-*`); `tiny-model` and `tiny-model-dir` write the
//! tiny test models; `inspect` prints a model's name and digest (what a release entry must name).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arcane_compute::attestation::{AttestationProvider, DeclaredMeasurements, SimulatedNsm};
use arcane_compute::ensemble::EnsembleConfig;
use arcane_compute::error::ComputeError;
use arcane_compute::node::{NodeConfig, now_seconds};
use arcane_compute::release::LogTrust;
use arcane_compute::sealed_model::SealedModel;
use arcane_compute::service::{self, MemberOptions, ModelSource, NodeOptions, TokenCheck};
use arcane_engine::SamplingDefaults;
use arcane_engine::gguf::{TinyLlama, write_tiny_llama};
use arcane_engine::model::ModelFile;
use arcane_engine::model_dir::{ModelDir, write_tiny_llama_dir};
use arcane_verifier::cosignature::{WitnessPolicy, parse_policy_file};
use arcane_verifier::entry::EntryPolicy;
use arcane_verifier::nitro::NitroRoot;
use arcane_verifier::note::VerifierKey;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

#[derive(Parser)]
#[command(
    name = "arcane-compute",
    version,
    about = "The arcane-aip compute node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the node and serve sealed requests.
    Serve(Box<ServeArgs>),
    /// Write the tiny llama GGUF used by tests and benchmarks.
    TinyModel {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the weights.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Write the tiny llama model directory (Hugging Face layout) used by ensemble tests.
    TinyModelDir {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the weights.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Print a model file's name, architecture and SHA-256, or a model directory's name and
    /// digest (what a release entry must name).
    Inspect {
        /// The GGUF file.
        #[arg(long, required_unless_present = "model_dir")]
        model: Option<PathBuf>,
        /// A model directory instead.
        #[arg(long, conflicts_with = "model")]
        model_dir: Option<PathBuf>,
    },
    /// Rewrite a GGUF's Q4_1, Q5_0 and Q5_1 tensors as Q8_0, which the engine multiplies with
    /// SIMD kernels on a CPU (the others run scalar loops); prints the new file's SHA-256, the
    /// digest a release of it names. The same input always gives the same bytes.
    Requantize {
        /// The GGUF file.
        #[arg(long)]
        model: PathBuf,
        /// Where the converted file goes (written whole or not at all).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML file with any of `model`, `log_url`, `log_key`, `publishers`, `witness_policy`,
    /// `gateway_address` (or `gateway_addresses`, a list), `advertise_address`, `vsock_port`
    /// (inside an enclave it is part of the measured image); options given on the command line
    /// win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The GGUF model file (local; nothing is ever downloaded).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A sealed model file (`arcane-keyrelease seal`) instead of --model: its key is fetched
    /// from --key-release with a fresh attestation, and it is decrypted into memory only.
    #[arg(long, conflicts_with = "model", requires_all = ["model_sha256", "key_release"])]
    sealed_model: Option<PathBuf>,
    /// A model directory in the Hugging Face layout, split across an ensemble (with
    /// --ensemble-member; `spec/compute.md` §7), instead of --model.
    #[arg(long, conflicts_with_all = ["model", "sealed_model"], requires = "ensemble_members")]
    model_dir: Option<PathBuf>,
    /// This node's rank in its ensemble: 0 is the leader (the node clients reach); the others are
    /// members that only compute.
    #[arg(long, default_value_t = 0, requires = "model_dir")]
    ensemble_rank: usize,
    /// Where this node listens for its ensemble's links.
    #[arg(long, requires = "model_dir")]
    ensemble_listen: Option<SocketAddr>,
    /// Each ensemble member's link address, in rank order (this node's own included); 2, 4, …
    #[arg(long = "ensemble-member", requires = "model_dir")]
    ensemble_members: Vec<SocketAddr>,
    /// Seconds the ensemble's links may take to come up.
    #[arg(long, default_value_t = 120)]
    ensemble_timeout_secs: u64,
    /// The SHA-256 of the sealed model's plaintext (what `seal` printed; the release names it).
    #[arg(long, requires = "sealed_model")]
    model_sha256: Option<String>,
    /// Base URL of the model owner's key release service.
    #[arg(long, requires = "sealed_model")]
    key_release: Option<String>,
    /// Base URL of the transparency log.
    #[arg(long)]
    log: Option<String>,
    /// The log's verifier key (text form).
    #[arg(long, conflicts_with = "log_key_file")]
    log_key: Option<String>,
    /// File holding the log's verifier key.
    #[arg(long)]
    log_key_file: Option<PathBuf>,
    /// A publisher whose release entries count (verifier key text); repeatable.
    #[arg(long = "publisher")]
    publishers: Vec<String>,
    /// Witness policy file (Sigsum format); without it no cosignatures are required.
    #[arg(long)]
    witness_policy: Option<PathBuf>,
    /// TCP address to listen on.
    #[arg(long, default_value = "127.0.0.1:8760")]
    listen: SocketAddr,
    /// Listen on this vsock port instead of TCP (inside an enclave; needs the `vsock` feature).
    #[arg(long)]
    vsock_port: Option<u32>,
    /// A gateway to register with; repeated for every gateway replica that routes to this node.
    #[arg(long = "gateway")]
    gateways: Vec<String>,
    /// The node's URL as the gateway reaches it.
    #[arg(long)]
    advertise: Option<String>,
    /// Requests served at once.
    #[arg(long, default_value_t = 2)]
    max_concurrent: usize,
    /// Upper bound on max_tokens.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// Sampling temperature for requests that give none (0: greedy).
    #[arg(long, default_value_t = SamplingDefaults::CHAT.temperature)]
    temperature: f64,
    /// Nucleus (top-p) for requests that give none.
    #[arg(long, default_value_t = SamplingDefaults::CHAT.top_p)]
    top_p: f64,
    /// Repetition penalty over the whole conversation (1: off).
    #[arg(long, default_value_t = SamplingDefaults::CHAT.repetition_penalty)]
    repetition_penalty: f32,
    /// Pad chunk plaintexts to a multiple of this many bytes (0: off).
    #[arg(long, default_value_t = 64)]
    pad_to: usize,
    /// Seconds between release-proof and document renewals.
    #[arg(long, default_value_t = 60)]
    refresh_secs: u64,
    /// Development mode: the simulated NSM (and `--no-token-check` becomes possible). Never in
    /// production.
    #[arg(long)]
    development: bool,
    /// Serve without checking token material (development only).
    #[arg(long, requires = "development")]
    no_token_check: bool,
    /// OTT indices one TGT may derive: the gateway's `--otts-per-tgt`.
    #[arg(long, alias = "ott-batch-limit", default_value_t = arcane_compute::tokens::DEFAULT_OTTS_PER_TGT)]
    otts_per_tgt: u32,
    /// The PCRs the simulated NSM reports (JSON: pcr0, pcr1, pcr2 and optionally pcr8, hex).
    #[arg(long, requires = "development")]
    simulated_pcrs: Option<PathBuf>,
    /// Where to write the simulated NSM's root certificate (PEM), for verifiers told to trust it.
    #[arg(long, requires = "development")]
    simulated_root_out: Option<PathBuf>,
    /// A file keeping the simulated NSM's root (created, 0600, when missing): the members of one
    /// development ensemble share it, as enclaves share AWS's root.
    #[arg(long, requires = "development")]
    simulated_root: Option<PathBuf>,
}

/// The configuration file (`--config`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    model: Option<PathBuf>,
    log_url: Option<String>,
    log_key: Option<String>,
    #[serde(default)]
    publishers: Vec<String>,
    witness_policy: Option<PathBuf>,
    gateway_address: Option<String>,
    #[serde(default)]
    gateway_addresses: Vec<String>,
    advertise_address: Option<String>,
    vsock_port: Option<u32>,
}

impl ServeArgs {
    /// Fills what the command line left out from `--config`, then checks what is required.
    fn sampling(&self) -> SamplingDefaults {
        SamplingDefaults {
            temperature: self.temperature,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
        }
    }

    fn merge_config(mut self) -> Result<Self, ComputeError> {
        if let Some(path) = &self.config {
            let file: ConfigFile = toml::from_str(&read_text(path)?)
                .map_err(|e| ComputeError::Config(format!("{}: {e}", path.display())))?;
            self.model = self.model.or(file.model);
            self.log = self.log.or(file.log_url);
            if self.log_key.is_none() && self.log_key_file.is_none() {
                self.log_key = file.log_key;
            }
            if self.publishers.is_empty() {
                self.publishers = file.publishers;
            }
            self.witness_policy = self.witness_policy.or(file.witness_policy);
            if self.gateways.is_empty() {
                self.gateways = file.gateway_address.into_iter().collect();
                self.gateways.extend(file.gateway_addresses);
            }
            self.advertise = self.advertise.or(file.advertise_address);
            self.vsock_port = self.vsock_port.or(file.vsock_port);
        }
        if (self.model.is_none() && self.sealed_model.is_none() && self.model_dir.is_none())
            || self.log.is_none()
            || self.publishers.is_empty()
        {
            return Err(ComputeError::Config(
                "--model (or --sealed-model, or --model-dir), --log and at least one --publisher \
                 are required (or in --config)"
                    .into(),
            ));
        }
        if let Some(problem) = self.sampling().problem() {
            return Err(ComputeError::Config(format!(
                "{problem} (--temperature, --top-p, --repetition-penalty)"
            )));
        }
        if !self.gateways.is_empty() && self.advertise.is_none() {
            return Err(ComputeError::Config(
                "registering with a gateway needs the node's --advertise URL".into(),
            ));
        }
        Ok(self)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PcrFile {
    pcr0: String,
    pcr1: String,
    pcr2: String,
    pcr8: Option<String>,
}

fn pcr(hex_text: &str, name: &str) -> Result<[u8; 48], ComputeError> {
    hex::decode(hex_text)
        .ok()
        .and_then(|b| <[u8; 48]>::try_from(b).ok())
        .ok_or_else(|| ComputeError::Config(format!("{name} must be 96 hex digits")))
}

fn read_text(path: &Path) -> Result<String, ComputeError> {
    std::fs::read_to_string(path)
        .map_err(|e| ComputeError::Config(format!("{}: {e}", path.display())))
}

/// The NSM, and the root its peers' documents must chain to (an ensemble's members check each
/// other): AWS's, or the simulated NSM's in a development build (none otherwise).
fn provider(
    args: &ServeArgs,
) -> Result<(Arc<dyn AttestationProvider>, Option<NitroRoot>), ComputeError> {
    if args.development {
        let path = args.simulated_pcrs.as_ref().ok_or_else(|| {
            ComputeError::Config("--development needs --simulated-pcrs FILE".into())
        })?;
        let file: PcrFile = serde_json::from_str(&read_text(path)?)
            .map_err(|e| ComputeError::Config(format!("{}: {e}", path.display())))?;
        let measurements = DeclaredMeasurements {
            pcr0: pcr(&file.pcr0, "pcr0")?,
            pcr1: pcr(&file.pcr1, "pcr1")?,
            pcr2: pcr(&file.pcr2, "pcr2")?,
            pcr8: file.pcr8.as_deref().map(|p| pcr(p, "pcr8")).transpose()?,
        };
        let nsm = match &args.simulated_root {
            Some(path) => SimulatedNsm::with_root_file(&measurements, now_seconds(), path)?,
            None => SimulatedNsm::new(&measurements, now_seconds())?,
        };
        if let Some(out) = &args.simulated_root_out {
            std::fs::write(out, arcane_verifier::nitro::certificate_pem(nsm.root_der()))
                .map_err(|e| ComputeError::Config(format!("{}: {e}", out.display())))?;
        }
        #[cfg(feature = "development")]
        let root = Some(NitroRoot::development(nsm.root_der().to_vec()));
        #[cfg(not(feature = "development"))]
        let root = None;
        return Ok((Arc::new(nsm), root));
    }
    #[cfg(feature = "nsm")]
    {
        Ok((
            Arc::new(arcane_compute::attestation::Nsm::open()?),
            Some(NitroRoot::aws()),
        ))
    }
    #[cfg(not(feature = "nsm"))]
    Err(ComputeError::Config(
        "this build has no Nitro Security Module support (feature `nsm`); outside an enclave \
         run with --development"
            .into(),
    ))
}

fn ensemble_config(args: &ServeArgs) -> Result<EnsembleConfig, ComputeError> {
    let listen = args
        .ensemble_listen
        .ok_or_else(|| ComputeError::Config("an ensemble member needs --ensemble-listen".into()))?;
    Ok(EnsembleConfig {
        rank: args.ensemble_rank,
        listen,
        members: args.ensemble_members.clone(),
        bring_up_timeout: Duration::from_secs(args.ensemble_timeout_secs.max(1)),
    })
}

/// The root an ensemble's members check each other against.
fn peer_root(root: Option<NitroRoot>) -> Result<NitroRoot, ComputeError> {
    root.ok_or_else(|| {
        ComputeError::Config(
            "an ensemble on the simulated NSM needs a development build (feature `development`) \
             to trust the simulated root"
                .into(),
        )
    })
}

fn model_source(args: &ServeArgs, root: Option<NitroRoot>) -> Result<ModelSource, ComputeError> {
    if let Some(dir) = &args.model_dir {
        return Ok(ModelSource::EnsembleLeader {
            model: ModelDir::open(dir)?,
            ensemble: ensemble_config(args)?,
            root: peer_root(root)?,
        });
    }
    match (&args.model, &args.sealed_model) {
        (Some(path), _) => Ok(ModelFile::open(path)?.into()),
        (None, Some(path)) => {
            let digest = args.model_sha256.as_deref().unwrap_or_default();
            let model_sha256 = hex::decode(digest.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    ComputeError::Config("--model-sha256 must be 64 hex digits".into())
                })?;
            Ok(ModelSource::Sealed(SealedModel {
                path: path.clone(),
                model_sha256,
                key_release_url: args.key_release.clone().unwrap_or_default(),
            }))
        }
        (None, None) => Err(ComputeError::Config("no model given".into())),
    }
}

fn trust(args: &ServeArgs) -> Result<LogTrust, ComputeError> {
    let log_key_text = match (&args.log_key, &args.log_key_file) {
        (Some(k), _) => k.clone(),
        (None, Some(f)) => read_text(f)?,
        (None, None) => {
            return Err(ComputeError::Config(
                "give the log's key with --log-key or --log-key-file".into(),
            ));
        }
    };
    let log_key = VerifierKey::parse(log_key_text.trim())?;
    let publishers = args
        .publishers
        .iter()
        .map(|p| VerifierKey::parse(p.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let witnesses = match &args.witness_policy {
        None => WitnessPolicy::none(),
        Some(path) => parse_policy_file(&read_text(path)?)?.0,
    };
    Ok(LogTrust {
        log_key,
        witnesses,
        publishers,
        policy: EntryPolicy::default(),
    })
}

async fn serve(args: ServeArgs) -> Result<(), ComputeError> {
    let args = args.merge_config()?;
    if args.development {
        tracing::warn!(
            "DEVELOPMENT MODE: simulated NSM (documents chain to a local root, not AWS's); never \
             use this in production"
        );
    }
    let (provider, root) = provider(&args)?;
    let log_url = args.log.clone().expect("checked in merge_config");
    if args.model_dir.is_some() && args.ensemble_rank != 0 {
        return serve_as_member(&args, provider, peer_root(root)?, &log_url).await;
    }
    let options = NodeOptions {
        model: model_source(&args, root)?,
        provider,
        log_url,
        trust: trust(&args)?,
        config: NodeConfig {
            max_concurrent: args.max_concurrent,
            max_tokens: args.max_tokens,
            pad_to: args.pad_to,
            refresh_every: Duration::from_secs(args.refresh_secs.max(1)),
            sampling: args.sampling(),
            ..NodeConfig::default()
        },
        tokens: if args.no_token_check {
            TokenCheck::DevelopmentWithoutTokens
        } else {
            TokenCheck::Logged {
                otts_per_tgt: args.otts_per_tgt,
            }
        },
        gateways: args.gateways.clone(),
        advertise: args.advertise.clone(),
    };
    if let Some(port) = args.vsock_port {
        // The only peer on vsock is the parent instance, which can stop the enclave anyway.
        let (node, refresh) = service::boot(options, None).await?;
        tokio::spawn(refresh);
        return serve_vsock(arcane_compute::server::router(node), port).await;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| ComputeError::Serve(format!("{}: {e}", args.listen)))?;
    let running = service::start(options, listener).await?;
    println!("arcane-compute listening on {}", running.url());
    shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}

/// An ensemble member other than the leader: computes its part until the ensemble fails (then
/// it exits, failing) or it is stopped.
async fn serve_as_member(
    args: &ServeArgs,
    provider: Arc<dyn AttestationProvider>,
    root: NitroRoot,
    log_url: &str,
) -> Result<(), ComputeError> {
    let options = MemberOptions {
        model: ModelDir::open(args.model_dir.as_deref().expect("checked by the caller"))?,
        ensemble: ensemble_config(args)?,
        root,
        provider,
        log_url: log_url.to_owned(),
        trust: trust(args)?,
    };
    tokio::select! {
        stopped = service::run_member(options) => Err(stopped),
        () = shutdown_signal() => Ok(()),
    }
}

#[cfg(feature = "vsock")]
async fn serve_vsock(app: axum::Router, port: u32) -> Result<(), ComputeError> {
    let listener = tokio_vsock::VsockListener::bind(tokio_vsock::VsockAddr::new(
        tokio_vsock::VMADDR_CID_ANY,
        port,
    ))
    .map_err(|e| ComputeError::Serve(format!("vsock port {port}: {e}")))?;
    println!("arcane-compute listening on vsock port {port}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| ComputeError::Serve(e.to_string()))
}

#[cfg(not(feature = "vsock"))]
async fn serve_vsock(_app: axum::Router, _port: u32) -> Result<(), ComputeError> {
    Err(ComputeError::Config(
        "this build has no vsock support (feature `vsock`)".into(),
    ))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // The engine's own logs stay at warnings: nothing of a request reaches the log.
                "info,mistralrs_core=warn,mistralrs=warn,mistralrs_quant=warn,candle=warn".into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::TinyModel { out, seed } => write_tiny_llama(
            &out,
            &TinyLlama {
                seed,
                ..TinyLlama::default()
            },
        )
        .map(|()| println!("{}", out.display()))
        .map_err(ComputeError::from),
        Command::TinyModelDir { out, seed } => write_tiny_llama_dir(
            &out,
            &TinyLlama {
                seed,
                ..TinyLlama::default()
            },
        )
        .map(|()| println!("{}", out.display()))
        .map_err(ComputeError::from),
        Command::Inspect {
            model_dir: Some(dir),
            ..
        } => ModelDir::open(&dir)
            .map(|m| {
                println!("name: {}", m.name);
                println!("files: {}", m.files.len());
                println!("sha256: {}", hex::encode(m.sha256));
            })
            .map_err(ComputeError::from),
        Command::Inspect { model, .. } => ModelFile::open(&model.unwrap_or_default())
            .map(|m| {
                println!("name: {}", m.name);
                println!("architecture: {}", m.metadata.architecture().unwrap_or("?"));
                println!("sha256: {}", hex::encode(m.sha256));
            })
            .map_err(ComputeError::from),
        Command::Requantize { model, out } => {
            arcane_engine::requantize::requantize_for_cpu(&model, &out)
                .and_then(|done| {
                    let converted = ModelFile::open(&out)?;
                    println!(
                        "{} tensors re-quantized to Q8_0, {} kept",
                        done.converted, done.kept
                    );
                    println!("sha256: {}", hex::encode(converted.sha256));
                    Ok(())
                })
                .map_err(ComputeError::from)
        }
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(serve(*args))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arcane-compute: {e}");
            match e {
                ComputeError::NoRelease(_)
                | ComputeError::Engine(arcane_engine::EngineError::Model(_)) => ExitCode::from(3),
                ComputeError::Config(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
