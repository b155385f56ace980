//! `arcane-keyrelease`: the model owner's command line.

use std::path::PathBuf;

use arcane_keyrelease::seal::seal_model;
use arcane_keyrelease::store::KeyStore;
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
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arcane-keyrelease: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> arcane_keyrelease::Result<()> {
    let store = match &cli.database_url {
        Some(url) => KeyStore::open(url).await?,
        None => {
            std::fs::create_dir_all(&cli.data_dir).map_err(|e| {
                arcane_keyrelease::KeyReleaseError::File {
                    path: cli.data_dir.display().to_string(),
                    why: e.to_string(),
                }
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
        }
    }
    store.close().await;
    Ok(())
}
