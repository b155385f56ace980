//! `arcane-log`: the transparency log server and its operator commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use arcane_log::client::LogClient;
use arcane_log::keys::{
    AllowedKinds, PublisherPolicy, generate_signer, read_secret_key, write_secret_key,
};
use arcane_log::publish::{
    ReleaseInfo, file_sha256, key_config_from_file, measure_eif, release_body, token_key_from_file,
};
use arcane_log::{DEFAULT_LISTEN, LogError, POLICY_FILE, ServeConfig};
use arcane_verifier::bundle::ProofBundle;
use arcane_verifier::entry::{EntryBody, ModelAccess, SignedEntry, TokenRole};
use arcane_verifier::note::VerifierKey;

#[derive(Parser)]
#[command(
    name = "arcane-log",
    version,
    about = "The arcane-aip transparency log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the log server (creates the data directory, key and database on first run).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Directory for the log key, publisher policy and SQLite database.
        #[arg(long, default_value = "./arcane-data")]
        data_dir: PathBuf,
        /// Database URL (sqlite:… or postgres://…); default: SQLite in the data directory.
        #[arg(long, env = "ARCANE_LOG_DATABASE_URL")]
        database_url: Option<String>,
        /// Origin of a new log (a schema-less URL); an existing log keeps its own.
        #[arg(long)]
        origin: Option<String>,
        /// Most entries per checkpoint.
        #[arg(long, default_value_t = 1024)]
        batch_size: usize,
        /// Milliseconds to gather a batch before integrating it.
        #[arg(long, default_value_t = 50)]
        batch_delay_ms: u64,
        /// Witness policy (Sigsum policy format): witnesses to ask, quorum needed to publish.
        #[arg(long)]
        witness_policy: Option<PathBuf>,
        /// Serve the built verification center (`web/dist`) at `/ui/`; the page verifies
        /// everything itself.
        #[arg(long)]
        ui: Option<PathBuf>,
        /// Who sequences entries: this log (`local`) or a Trillian log tree (`trillian`; the
        /// database then holds the personality's state).
        #[arg(long, value_enum, default_value = "local")]
        backend: BackendArg,
        /// Trillian's log server (gRPC), `host:port`; with `--backend trillian`.
        #[arg(long, required_if_eq("backend", "trillian"))]
        trillian_addr: Option<String>,
        /// The Trillian LOG tree; with `--backend trillian` (`arcane-log trillian init` makes one).
        #[arg(long, required_if_eq("backend", "trillian"))]
        tree_id: Option<i64>,
    },
    /// Trillian administration.
    Trillian {
        #[command(subcommand)]
        command: TrillianCommand,
    },
    /// Create the log key in a data directory without starting the server.
    Keygen {
        #[arg(long, default_value = "./arcane-data")]
        data_dir: PathBuf,
        #[arg(long)]
        origin: Option<String>,
    },
    /// Manage publisher keys.
    Publisher {
        #[command(subcommand)]
        command: PublisherCommand,
    },
    /// Publish a typed entry: sign, submit, wait, and verify its proof bundle.
    Publish {
        #[command(subcommand)]
        what: PublishCommand,
    },
    /// Print an entry or a proof bundle (file, or - for standard input) in the JSON view. Shows;
    /// does not verify.
    Show {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Submit opaque entries, printing index (once known) and leaf hash of each.
    Add {
        /// The log's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8740")]
        url: String,
        /// The publisher's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// Wait until each entry is in a published checkpoint.
        #[arg(long)]
        wait: bool,
        /// Files whose bytes are the entries.
        #[arg(required = true)]
        entry_files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    Local,
    Trillian,
}

#[derive(Subcommand)]
enum TrillianCommand {
    /// Create and initialise a LOG tree for this personality; prints its tree id.
    Init {
        /// Trillian's admin and log server (gRPC), `host:port`.
        #[arg(long)]
        trillian_addr: String,
        /// The tree's display name.
        #[arg(long, default_value = "arcane-log")]
        name: String,
    },
}

#[derive(Subcommand)]
enum PublisherCommand {
    /// Make a publisher key: writes the secret key (mode 0600), prints the public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// The key's name.
        #[arg(long, default_value = "publisher")]
        name: String,
    },
    /// Allow a publisher key to submit to the log in a data directory.
    Allow {
        #[arg(long, default_value = "./arcane-data")]
        data_dir: PathBuf,
        /// What it may publish: any of release, ohttp-keys, token-key, model-access, opaque,
        /// comma-separated.
        #[arg(long, default_value = "release,ohttp-keys,token-key")]
        kinds: String,
        /// The publisher's verifier key text.
        public_key: String,
    },
}

#[derive(clap::Args)]
struct PublishArgs {
    /// The log's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8740")]
    url: String,
    /// The publisher's secret key file.
    #[arg(long)]
    key: PathBuf,
    /// The log's verifier key (text, or a file holding it). Without it the key the server states
    /// is trusted, with a warning.
    #[arg(long)]
    log_key: Option<String>,
    /// How long the entry is valid, in days.
    #[arg(long, default_value_t = 30)]
    valid_days: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum PublishCommand {
    /// Publish a release: PCRs from an EIF, the model's digest, engine and source.
    Release {
        #[command(flatten)]
        common: PublishArgs,
        /// The Nitro Enclave Image File.
        #[arg(long)]
        eif: PathBuf,
        /// The model file (GGUF) whose SHA-256 the release names.
        #[arg(long, conflicts_with = "model_sha256")]
        model: Option<PathBuf>,
        /// The model's SHA-256 (hex), instead of --model.
        #[arg(long)]
        model_sha256: Option<String>,
        #[arg(long, default_value = "mistral.rs")]
        engine: String,
        #[arg(long)]
        engine_version: String,
        #[arg(long)]
        source_commit: String,
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// Publish an OHTTP key configuration (RFC 9458) created by the gateway.
    OhttpKeys {
        #[command(flatten)]
        common: PublishArgs,
        /// One binary key configuration, or an application/ohttp-keys list holding one.
        #[arg(long)]
        key_config: PathBuf,
    },
    /// Publish a token issuer's RSA public key.
    TokenKey {
        #[command(flatten)]
        common: PublishArgs,
        /// tgt, ott or fraud-data.
        #[arg(long, value_parser = ["tgt", "ott", "fraud-data"])]
        role: String,
        /// The class a fraud-data key vouches for (0–255; with `--role fraud-data` only).
        #[arg(long)]
        class: Option<u8>,
        /// DER or PEM SubjectPublicKeyInfo.
        #[arg(long)]
        public_key: PathBuf,
    },
    /// Publish, as a model's owner, which enclave images may receive the model's key from the
    /// owner's key release service.
    ModelAccess {
        #[command(flatten)]
        common: PublishArgs,
        /// The SHA-256 of the model's plaintext (what `arcane-keyrelease seal` prints).
        #[arg(long)]
        model_sha256: String,
        /// An image allowed, by its PCR0 (96 hex digits); repeat for more.
        #[arg(long = "image")]
        images: Vec<String>,
        /// An image allowed, by its Nitro Enclave Image File (its PCR0 is computed); repeat.
        #[arg(long = "eif")]
        eifs: Vec<PathBuf>,
    },
}

/// Exit status when the log refused the request (4xx).
const EXIT_REFUSED: u8 = 3;
/// Exit status when the log could not be reached or failed (network error, 5xx).
const EXIT_UNREACHABLE: u8 = 4;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ARCANE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("arcane-log: {error}");
            match error {
                LogError::Refused { .. } => ExitCode::from(EXIT_REFUSED),
                LogError::Unreachable(_) => ExitCode::from(EXIT_UNREACHABLE),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

async fn run(cli: Cli) -> Result<(), LogError> {
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            database_url,
            origin,
            batch_size,
            batch_delay_ms,
            witness_policy,
            ui,
            backend,
            trillian_addr,
            tree_id,
        } => {
            if batch_size == 0 {
                return Err(LogError::Config("--batch-size must be at least 1".into()));
            }
            if backend == BackendArg::Local && (trillian_addr.is_some() || tree_id.is_some()) {
                return Err(LogError::Config(
                    "--trillian-addr and --tree-id need --backend trillian".into(),
                ));
            }
            let mut config = ServeConfig::new(data_dir);
            config.listen = listen;
            config.database_url = database_url;
            config.origin = origin;
            config.sequencer.batch_size = batch_size;
            config.sequencer.batch_delay = Duration::from_millis(batch_delay_ms);
            config.witness_policy = witness_policy;
            config.ui = ui;
            if let (Some(addr), Some(tree_id)) = (trillian_addr, tree_id) {
                config.trillian = Some(arcane_log::trillian::follower::TrillianConfig {
                    addr,
                    tree_id,
                    retry: Default::default(),
                });
            }
            let server = arcane_log::start(config).await?;
            println!("log verifier key: {}", server.vkey());
            let client = LogClient::new(&format!("http://{}", server.addr()))?;
            println!("current checkpoint:\n\n{}", client.checkpoint().await?);
            println!(
                "read it again with: curl -s http://{}/checkpoint",
                server.addr()
            );
            wait_for_signal().await;
            tracing::info!("shutting down");
            server.shutdown().await;
            Ok(())
        }
        Command::Trillian {
            command:
                TrillianCommand::Init {
                    trillian_addr,
                    name,
                },
        } => {
            let tree_id = arcane_log::trillian::client::TrillianClient::create_log(
                &trillian_addr,
                &name,
                Default::default(),
            )
            .await?;
            println!("{tree_id}");
            Ok(())
        }
        Command::Keygen { data_dir, origin } => {
            let signer = arcane_log::init_data_dir(&data_dir, origin.as_deref())?;
            println!("{}", signer.verifier().to_text());
            Ok(())
        }
        Command::Publisher { command } => match command {
            PublisherCommand::Keygen { out, name } => {
                let signer = generate_signer(&name)?;
                write_secret_key(&out, &signer)?;
                println!("{}", signer.verifier().to_text());
                Ok(())
            }
            PublisherCommand::Allow {
                data_dir,
                kinds,
                public_key,
            } => {
                let key = VerifierKey::parse(public_key.trim())?;
                let kinds = AllowedKinds::parse(&kinds)?;
                let policy = PublisherPolicy::new(data_dir.join(POLICY_FILE));
                let changed = policy.allow(&key, &kinds)?;
                println!(
                    "{} {} to publish {} ({}; a running server picks the change up on its next \
                     submission)",
                    if changed {
                        "allowed"
                    } else {
                        "already allowed"
                    },
                    key.to_text(),
                    kinds.to_text(),
                    policy.path().display()
                );
                Ok(())
            }
        },
        Command::Publish { what } => publish(what).await,
        Command::Show { file, json } => show(&file, json),
        Command::Add {
            url,
            key,
            wait,
            entry_files,
        } => {
            let publisher = read_secret_key(&key)?;
            let client = LogClient::new(&url)?;
            for file in entry_files {
                let entry = std::fs::read(&file).map_err(|e| LogError::io(&file, e))?;
                let mut status = client.add(&entry, &publisher).await?;
                if wait && status.index.is_none() {
                    status = client
                        .wait_integrated(&status.leaf_hash, Duration::from_secs(60))
                        .await?;
                }
                let index = status
                    .index
                    .map_or_else(|| "pending".to_owned(), |i| i.to_string());
                println!("{index} {} {}", status.leaf_hash, file.display());
            }
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `N` bytes from hex digits, or a configuration error naming `what`.
fn parse_hex_array<const N: usize>(text: &str, what: &str) -> Result<[u8; N], LogError> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or_else(|| LogError::Config(format!("{what} must be {} hex digits", 2 * N)))
}

async fn publish(what: PublishCommand) -> Result<(), LogError> {
    let (common, body) = match what {
        PublishCommand::Release {
            common,
            eif,
            model,
            model_sha256,
            engine,
            engine_version,
            source_commit,
            notes,
        } => {
            let model_sha256 = match (model, model_sha256) {
                (Some(path), None) => file_sha256(&path)?,
                (None, Some(text)) => parse_hex_array::<32>(&text, "--model-sha256")?,
                _ => return Err(LogError::Config("give --model or --model-sha256".into())),
            };
            let measurements = measure_eif(&eif)?;
            let info = ReleaseInfo {
                model_sha256,
                engine,
                engine_version,
                source_commit,
                notes,
            };
            (common, release_body(&measurements, info))
        }
        PublishCommand::OhttpKeys { common, key_config } => (
            common,
            EntryBody::OhttpKeys(key_config_from_file(&key_config)?),
        ),
        PublishCommand::TokenKey {
            common,
            role,
            class,
            public_key,
        } => {
            let role = match (role.as_str(), class) {
                ("tgt", None) => TokenRole::Tgt,
                ("ott", None) => TokenRole::Ott,
                ("fraud-data", Some(class)) => TokenRole::FraudData(class),
                ("fraud-data", None) => {
                    return Err(LogError::Config("a fraud-data key needs --class".into()));
                }
                _ => {
                    return Err(LogError::Config(
                        "--class is only for --role fraud-data".into(),
                    ));
                }
            };
            (common, token_key_from_file(&public_key, role)?)
        }
        PublishCommand::ModelAccess {
            common,
            model_sha256,
            images,
            eifs,
        } => {
            let model_sha256 = parse_hex_array::<32>(&model_sha256, "--model-sha256")?;
            let mut pcr0s = Vec::new();
            for image in &images {
                pcr0s.push(parse_hex_array::<48>(image, "--image")?);
            }
            for eif in &eifs {
                pcr0s.push(measure_eif(eif)?.pcr0);
            }
            let access = ModelAccess {
                model_sha256,
                images: pcr0s,
            };
            (common, EntryBody::ModelAccess(access))
        }
    };
    let publisher = read_secret_key(&common.key)?;
    let client = LogClient::new(&common.url)?;
    let log_key = match &common.log_key {
        Some(text) => {
            let path = std::path::Path::new(text);
            let text = if path.is_file() {
                std::fs::read_to_string(path).map_err(|e| LogError::io(path, e))?
            } else {
                text.clone()
            };
            VerifierKey::parse(text.trim())?
        }
        None => {
            let text = client.log_key().await?;
            eprintln!(
                "arcane-log: warning: no --log-key given; trusting the key the server states: {text}"
            );
            VerifierKey::parse(&text)?
        }
    };
    let validity = Duration::from_secs(common.valid_days.saturating_mul(86_400));
    let done = arcane_log::publish::publish(&client, &publisher, &log_key, body, validity).await?;
    let view = done.verified.entry.view();
    if common.json {
        let out = serde_json::json!({
            "index": done.verified.index,
            "leaf_hash": done.verified.leaf_hash.to_hex(),
            "tree_size": done.verified.checkpoint.checkpoint.size,
            "entry": view,
            "bundle": done.bundle,
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
    } else {
        println!(
            "published {} at index {} (leaf hash {}), verified against checkpoint size {}",
            view.kind,
            done.verified.index,
            done.verified.leaf_hash,
            done.verified.checkpoint.checkpoint.size
        );
        println!(
            "valid from {} to {} (seconds since the epoch)\n",
            view.not_before, view.not_after
        );
        print!("{}", done.bundle);
    }
    Ok(())
}

fn show(file: &std::path::Path, json: bool) -> Result<(), LogError> {
    let bytes = if file.as_os_str() == "-" {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buffer)
            .map_err(|e| LogError::io("standard input", e))?;
        buffer
    } else {
        std::fs::read(file).map_err(|e| LogError::io(file, e))?
    };
    let (entry_bytes, index) =
        if bytes.starts_with(arcane_verifier::bundle::TLOG_PROOF_HEADER.as_bytes()) {
            let bundle = ProofBundle::parse(&bytes)?;
            (bundle.entry, Some(bundle.index))
        } else {
            (bytes, None)
        };
    let entry = SignedEntry::decode(&entry_bytes)?;
    let view = serde_json::to_value(entry.view()).expect("JSON");
    let out = serde_json::json!({ "index": index, "entry": view, "verified": false });
    if json {
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON"));
    } else {
        if let Some(index) = index {
            println!(
                "proof bundle for index {index} (not verified: use a client or auditor to verify)"
            );
        }
        println!("{}", serde_json::to_string_pretty(&view).expect("JSON"));
    }
    Ok(())
}
