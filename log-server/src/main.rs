//! `arcane-log`: the transparency log server and its operator commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use arcane_log::client::LogClient;
use arcane_log::keys::{PublisherPolicy, generate_signer, read_secret_key, write_secret_key};
use arcane_log::{DEFAULT_LISTEN, LogError, POLICY_FILE, ServeConfig};
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
        /// The publisher's verifier key text.
        public_key: String,
    },
}

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
            ExitCode::FAILURE
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
        } => {
            if batch_size == 0 {
                return Err(LogError::Config("--batch-size must be at least 1".into()));
            }
            let mut config = ServeConfig::new(data_dir);
            config.listen = listen;
            config.database_url = database_url;
            config.origin = origin;
            config.sequencer.batch_size = batch_size;
            config.sequencer.batch_delay = Duration::from_millis(batch_delay_ms);
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
                public_key,
            } => {
                let key = VerifierKey::parse(public_key.trim())?;
                let policy = PublisherPolicy::new(data_dir.join(POLICY_FILE));
                let added = policy.allow(&key)?;
                println!(
                    "{} {} ({}; a running server picks the change up on its next submission)",
                    if added { "allowed" } else { "already allowed" },
                    key.to_text(),
                    policy.path().display()
                );
                Ok(())
            }
        },
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
