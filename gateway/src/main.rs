//! `arcane-gateway`: the OHTTP gateway with its identity and token services and node registry.
//!
//! - `keygen ohttp|token`: create key files (0600) and the public halves to publish in the log.
//! - `account add`: create an identity-service account; prints its API key once.
//! - `serve`: load the keys, serve only those the log proves, list verified nodes, route.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use arcane_gateway::error::{GatewayError, Result};
use arcane_gateway::keys;
use arcane_gateway::proven::LogTrust;
use arcane_gateway::service::{
    GatewayOptions, RelayOptions, RunningService, Transport, start_gateway, start_relay,
};
use arcane_gateway::store::TokenStore;
use arcane_gateway::tokens::{FraudDataPolicy, TokenLimits, TokenServices};
use arcane_verifier::cosignature::{WitnessPolicy, parse_policy_file};
use arcane_verifier::entry::EntryPolicy;
use arcane_verifier::nitro::NitroRoot;
use arcane_verifier::note::VerifierKey;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "arcane-gateway",
    version,
    about = "The arcane-aip OHTTP gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create key files.
    Keygen {
        #[command(subcommand)]
        kind: KeygenKind,
    },
    /// Identity-service accounts.
    Account {
        #[command(subcommand)]
        action: AccountAction,
    },
    /// Serve.
    Serve(Box<ServeArgs>),
    /// Run the oblivious relay in front of one gateway.
    Relay(Box<RelayArgs>),
}

#[derive(Args)]
struct RelayArgs {
    /// Address to listen on (HTTP/1.1 and cleartext HTTP/2; with `--tls-cert`, HTTPS; with
    /// `--http3`, HTTP/3 on the same UDP port too).
    #[arg(long, default_value = "127.0.0.1:8751")]
    listen: SocketAddr,
    /// The gateway's base URL.
    #[arg(long)]
    gateway: String,
    /// Directory for the relay's spent-token database.
    #[arg(long, default_value = "./arcane-relay")]
    data_dir: PathBuf,
    /// Spent-token database URL (sqlite:… or postgres://…, shared by the relay's replicas);
    /// default: `relay.db` (SQLite) in the data directory.
    #[arg(long, env = "ARCANE_RELAY_DATABASE_URL")]
    database_url: Option<String>,
    /// Base URL of the transparency log.
    #[arg(long)]
    log: String,
    /// The log's verifier key.
    #[arg(long)]
    log_key: String,
    /// A publisher whose token-key entries count (repeatable).
    #[arg(long = "publisher", required = true)]
    publishers: Vec<String>,
    /// Witness policy file.
    #[arg(long)]
    witness_policy: Option<PathBuf>,
    /// Seconds between re-reads of the OTT keys' proofs from the log.
    #[arg(long, default_value_t = 60)]
    key_refresh_secs: u64,
    /// The relay's TLS certificate chain (PEM, leaf first): it then serves HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also serve HTTP/3 (QUIC) on the same port, over UDP (needs `--tls-cert`).
    #[arg(long, requires = "tls_cert")]
    http3: bool,
}

#[derive(Subcommand)]
enum KeygenKind {
    /// An OHTTP key: writes the secret (0600) and `FILE.config` (the RFC 9458 configuration to
    /// publish with `arcane-log publish ohttp-keys`).
    Ohttp {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        key_id: u8,
    },
    /// A token issuer key: writes the secret (0600) and `FILE.spki` (the public key to publish
    /// with `arcane-log publish token-key`).
    Token {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AccountAction {
    /// Adds an account and prints its API key (only its SHA-256 is stored).
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        /// The gateway's database URL, as `serve` is given it.
        #[arg(long, env = "ARCANE_GATEWAY_DATABASE_URL")]
        database_url: Option<String>,
        #[arg(long)]
        name: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Directory with the key files (`ohttp*.key`, `tgt*.key`, `ott*.key`: old and new side by
    /// side during a rotation) and `gateway.db`.
    #[arg(long, default_value = "./arcane-gateway")]
    data_dir: PathBuf,
    /// Token database URL (sqlite:… or postgres://…, shared by the gateway's replicas);
    /// default: `gateway.db` (SQLite) in the data directory.
    #[arg(long, env = "ARCANE_GATEWAY_DATABASE_URL")]
    database_url: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8750")]
    listen: SocketAddr,
    /// Base URL of the transparency log.
    #[arg(long)]
    log: String,
    /// The log's verifier key.
    #[arg(long)]
    log_key: String,
    /// A publisher whose entries count (repeatable).
    #[arg(long = "publisher", required = true)]
    publishers: Vec<String>,
    /// Witness policy file.
    #[arg(long)]
    witness_policy: Option<PathBuf>,
    /// Trust this development NSM root (PEM) instead of AWS's. Development only; said loudly.
    #[arg(long)]
    development_root: Option<PathBuf>,
    /// Oldest node attestation accepted, in seconds.
    #[arg(long, default_value_t = 600)]
    max_attestation_age: u64,
    /// OTT indices one TGT is good for, in all (compute nodes must use the same number).
    #[arg(long, default_value_t = TokenLimits::default().otts_per_tgt)]
    otts_per_tgt: u32,
    /// TGTs an account may get per period (its devices, or again after a lost wallet).
    #[arg(long, default_value_t = TokenLimits::default().tgts_per_period)]
    tgts_per_period: u32,
    /// Seconds a client may take to send a request body (slower: 408).
    #[arg(long, default_value_t = 30)]
    body_timeout_secs: u64,
    /// Milliseconds a chat waits for a place at a node while all its candidates are full,
    /// before it is answered busy (its OTT unspent).
    #[arg(long, default_value_t = arcane_gateway::server::DEFAULT_PLACE_WAIT.as_millis() as u64)]
    place_wait_ms: u64,
    /// Period length in seconds (the TGT budget is per account and period).
    #[arg(long, default_value_t = TokenLimits::default().period_secs)]
    period_secs: u64,
    /// Seconds between re-reads of the key files and their proofs from the log.
    #[arg(long, default_value_t = 60)]
    key_refresh_secs: u64,
    /// Fraud data: the fraud detection service's verdicts per account, and whether and how
    /// the token granting service asks for it (a TOML file, `spec/tokens.md` §5).
    #[arg(long)]
    fraud_data: Option<PathBuf>,
}

fn config_error(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Config(e.to_string())
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| config_error(format!("{}: {e}", path.display())))
}

fn log_trust(
    log_key: &str,
    publishers: &[String],
    witness_policy: Option<&Path>,
) -> Result<LogTrust> {
    Ok(LogTrust {
        log_key: VerifierKey::parse(log_key.trim())?,
        witnesses: match witness_policy {
            None => WitnessPolicy::none(),
            Some(p) => parse_policy_file(&read_text(p)?)?.0,
        },
        publishers: publishers
            .iter()
            .map(|p| VerifierKey::parse(p.trim()))
            .collect::<std::result::Result<_, _>>()?,
        policy: EntryPolicy::default(),
    })
}

async fn relay(args: RelayArgs) -> Result<()> {
    let options = RelayOptions {
        trust: log_trust(
            &args.log_key,
            &args.publishers,
            args.witness_policy.as_deref(),
        )?,
        gateway: args.gateway,
        data_dir: args.data_dir,
        database_url: args.database_url,
        log: args.log,
        key_refresh: Duration::from_secs(args.key_refresh_secs),
        limits_http: arcane_serve::ServeLimits::default(),
        transport: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let identity = arcane_serve::tls::TlsIdentity::from_pem_files(cert, key)
                    .map_err(|e| GatewayError::Config(e.to_string()))?;
                if args.http3 {
                    Transport::TlsAndHttp3(identity)
                } else {
                    Transport::Tls(identity)
                }
            }
            _ => Transport::Plain,
        },
    };
    let relay = start_relay(&options, args.listen).await?;
    println!("arcane-relay listening on {}", relay.url());
    run_until_interrupted(relay).await
}

/// Serves until Ctrl-C or SIGTERM, then shuts down gracefully.
async fn run_until_interrupted(mut service: RunningService) -> Result<()> {
    tokio::select! {
        ended = service.wait() => ended,
        _ = interrupted() => service.shutdown().await,
    }
}

async fn interrupted() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn serve(args: ServeArgs) -> Result<()> {
    let nitro_root = match &args.development_root {
        None => NitroRoot::aws(),
        Some(path) => {
            tracing::warn!(
                root = %path.display(),
                "DEVELOPMENT MODE: trusting a development NSM root; never use this in production"
            );
            NitroRoot::development(arcane_verifier::nitro::pem_certificate(&read_text(path)?)?)
        }
    };
    let options = GatewayOptions {
        trust: log_trust(
            &args.log_key,
            &args.publishers,
            args.witness_policy.as_deref(),
        )?,
        nitro_root,
        data_dir: args.data_dir,
        database_url: args.database_url,
        log: args.log,
        max_attestation_age: Duration::from_secs(args.max_attestation_age),
        limits: TokenLimits {
            period_secs: args.period_secs,
            otts_per_tgt: args.otts_per_tgt,
            tgts_per_period: args.tgts_per_period,
            ..TokenLimits::default()
        },
        fraud_data: match &args.fraud_data {
            Some(path) => FraudDataPolicy::load(path)?,
            None => FraudDataPolicy::default(),
        },
        body_timeout: Duration::from_secs(args.body_timeout_secs),
        place_wait: Duration::from_millis(args.place_wait_ms),
        key_refresh: Duration::from_secs(args.key_refresh_secs),
        limits_http: arcane_serve::ServeLimits::default(),
    };
    let gateway = start_gateway(&options, args.listen).await?;
    println!("arcane-gateway listening on {}", gateway.url());
    run_until_interrupted(gateway).await
}

fn keygen(kind: KeygenKind) -> Result<()> {
    match kind {
        KeygenKind::Ohttp { out, key_id } => {
            let config = keys::generate_ohttp_key(&out, key_id)?;
            let encoded = config
                .encode()
                .map_err(|e| GatewayError::Ohttp(e.to_string()))?;
            let public = out.with_extension("config");
            std::fs::write(&public, &encoded).map_err(config_error)?;
            println!("{}", public.display());
        }
        KeygenKind::Token { out } => {
            let secret = keys::generate_issuer_key(&out)?;
            let public = out.with_extension("spki");
            std::fs::write(&public, secret.public().spki()).map_err(config_error)?;
            println!("{}", public.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match Cli::parse().command {
        Command::Keygen { kind } => keygen(kind),
        Command::Account {
            action:
                AccountAction::Add {
                    data_dir,
                    database_url,
                    name,
                },
        } => runtime.block_on(async {
            std::fs::create_dir_all(&data_dir).map_err(config_error)?;
            let store =
                TokenStore::open_url_or_file(database_url.as_deref(), &data_dir.join("gateway.db"))
                    .await?;
            let key = TokenServices::add_account(&store, &name).await?;
            println!("{key}");
            Ok(())
        }),
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Relay(args) => runtime.block_on(relay(*args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arcane-gateway: {e}");
            match e {
                GatewayError::Config(_) | GatewayError::KeyFile { .. } => ExitCode::from(2),
                GatewayError::Unproven(_) => ExitCode::from(3),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
