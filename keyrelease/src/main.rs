//! `arcane-keyrelease`: the model owner's command line: `seal` a model under its key, `serve`
//! the key release protocol to attested nodes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use arcane_keyrelease::KeyReleaseError;
use arcane_keyrelease::seal::seal_model;
use arcane_keyrelease::service::{ServiceTrust, start};
use arcane_keyrelease::store::KeyStore;
use arcane_verifier::bundle::LogTrust;
use arcane_verifier::cosignature::{WitnessPolicy, parse_policy_file};
use arcane_verifier::entry::EntryPolicy;
use arcane_verifier::nitro::{AttestationPolicy, NitroRoot};
use arcane_verifier::note::VerifierKey;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "arcane-keyrelease",
    version,
    about = "The model owner's key release service"
)]
struct Cli {
    /// Where the model keys are kept: `keys.db` (SQLite, mode 0600) in this directory.
    #[arg(long, default_value = "keyrelease-data", global = true)]
    data_dir: PathBuf,
    /// A `postgres://` (or `sqlite:`) URL for the model keys instead of `keys.db`.
    #[arg(long, env = "ARCANE_KEYRELEASE_DATABASE_URL", global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Seals a model file under its key (made and stored first when the model has none) and
    /// prints the SHA-256 of its plaintext: the model digest its release entries name.
    Seal {
        /// The plaintext model (GGUF).
        #[arg(long)]
        model: PathBuf,
        /// The sealed file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Serves model keys to nodes that attest a logged release the owner's `model-access`
    /// entry allows (`spec/model-keys.md`).
    Serve {
        /// TCP address to listen on.
        #[arg(long, default_value = "127.0.0.1:8750")]
        listen: SocketAddr,
        /// The log's verifier key (text, or a file holding it).
        #[arg(long)]
        log_key: String,
        /// A publisher whose `release` entries count (verifier key text); repeatable.
        #[arg(long = "publisher", required = true)]
        publishers: Vec<String>,
        /// The owner's publisher key (verifier key text): the only one whose `model-access`
        /// entries grant a key.
        #[arg(long)]
        owner: String,
        /// Witness policy file (Sigsum format); without it no cosignatures are required.
        #[arg(long)]
        witness_policy: Option<PathBuf>,
        /// Oldest attestation document accepted, in seconds.
        #[arg(long, default_value_t = 60)]
        max_document_age_secs: u64,
        /// Trust a development (simulated NSM) root instead of AWS's, from this PEM file.
        /// Exists only in a build with the `development` feature.
        #[cfg(feature = "development")]
        #[arg(long)]
        development_root: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ARCANE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arcane-keyrelease: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn read_text(path: &Path) -> arcane_keyrelease::Result<String> {
    std::fs::read_to_string(path).map_err(|e| KeyReleaseError::File {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

/// A verifier key given as text, or as the path of a file holding it.
fn key_text_or_file(text: &str) -> arcane_keyrelease::Result<VerifierKey> {
    let path = Path::new(text);
    let text = if path.is_file() {
        read_text(path)?
    } else {
        text.to_owned()
    };
    Ok(VerifierKey::parse(text.trim())?)
}

async fn run(cli: Cli) -> arcane_keyrelease::Result<()> {
    let store = match &cli.database_url {
        Some(url) => KeyStore::open(url).await?,
        None => {
            std::fs::create_dir_all(&cli.data_dir).map_err(|e| KeyReleaseError::File {
                path: cli.data_dir.display().to_string(),
                why: e.to_string(),
            })?;
            KeyStore::open_file(&cli.data_dir.join("keys.db")).await?
        }
    };
    match cli.command {
        Command::Seal { model, out } => {
            let sealed = seal_model(&store, &model, &out).await?;
            println!("model_sha256 {}", hex::encode(sealed.model_sha256));
            println!("model_bytes {}", sealed.model_len);
            println!("sealed {} ({} bytes)", out.display(), sealed.sealed_len);
            store.close().await;
        }
        Command::Serve {
            listen,
            log_key,
            publishers,
            owner,
            witness_policy,
            max_document_age_secs,
            #[cfg(feature = "development")]
            development_root,
        } => {
            let owner = key_text_or_file(&owner)?;
            let mut publishers = publishers
                .iter()
                .map(|p| key_text_or_file(p))
                .collect::<arcane_keyrelease::Result<Vec<_>>>()?;
            publishers.push(owner.clone());
            let witnesses = match &witness_policy {
                None => WitnessPolicy::none(),
                Some(path) => parse_policy_file(&read_text(path)?)?.0,
            };
            #[cfg(feature = "development")]
            let nitro_root = match development_root {
                Some(path) => {
                    tracing::warn!(
                        "DEVELOPMENT MODE: documents are checked against a local root, not \
                         AWS's; never use this in production"
                    );
                    let pem = read_text(&path)?;
                    NitroRoot::development(arcane_verifier::nitro::pem_certificate(&pem)?)
                }
                None => NitroRoot::aws(),
            };
            #[cfg(not(feature = "development"))]
            let nitro_root = NitroRoot::aws();
            let trust = ServiceTrust {
                log: LogTrust {
                    log_key: key_text_or_file(&log_key)?,
                    witnesses,
                    publishers,
                    policy: EntryPolicy::default(),
                },
                owner,
                nitro_root,
                attestation: AttestationPolicy {
                    max_age_ms: max_document_age_secs.saturating_mul(1000),
                    ..AttestationPolicy::default()
                },
            };
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| KeyReleaseError::Config(format!("binding {listen}: {e}")))?;
            let running = start(store, trust, listener, Default::default()).await?;
            println!("arcane-keyrelease listening on {}", running.addr());
            tokio::signal::ctrl_c()
                .await
                .map_err(|e| KeyReleaseError::Config(e.to_string()))?;
        }
    }
    Ok(())
}
