//! `arcane-audit`: tools for auditors. So far: `attestation verify`, which checks a Nitro
//! attestation document from bytes alone (signature, certificate chain, time) and, optionally,
//! the release policy against a logged `release` entry.
//!
//! Exit status: 0 the document verifies (and the policy holds, when asked); 1 it does not, or an
//! input could not be read; 2 usage errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use arcane_verifier::bundle::{TrustAnchors, verify_bundle};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::entry::EntryPolicy;
use arcane_verifier::nitro::{
    AttestationPolicy, NitroRoot, RootKind, VerifiedDocument, check_attestation,
    decode_maybe_base64, pem_certificate, verify_document,
};
use arcane_verifier::note::VerifierKey;

#[derive(Parser)]
#[command(
    name = "arcane-audit",
    version,
    about = "Audit the arcane-aip transparency log and attestations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Nitro attestation documents.
    Attestation {
        #[command(subcommand)]
        command: AttestationCommand,
    },
}

#[derive(Subcommand)]
enum AttestationCommand {
    /// Verify one document (raw COSE bytes or base64): signature, chain to the root, time.
    Verify {
        /// The document.
        file: PathBuf,
        /// Verify as of this time (seconds since the epoch) instead of now.
        #[arg(long)]
        at: Option<u64>,
        /// Trust this root (PEM) instead of the built-in AWS root: for development documents only.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Also apply the release policy against this proof bundle of a `release` entry.
        #[arg(long, requires_all = ["log_key", "publisher"])]
        release: Option<PathBuf>,
        /// The log's verifier key (with --release).
        #[arg(long)]
        log_key: Option<String>,
        /// A trusted publisher key (with --release; repeatable).
        #[arg(long)]
        publisher: Vec<String>,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Attestation {
            command:
                AttestationCommand::Verify {
                    file,
                    at,
                    root,
                    release,
                    log_key,
                    publisher,
                    json,
                },
        } => verify(&file, at, root, release, log_key, &publisher, json),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hex_or_null(value: &Option<Vec<u8>>) -> serde_json::Value {
    value.as_ref().map_or(serde_json::Value::Null, |v| {
        serde_json::Value::String(hex::encode(v))
    })
}

fn describe(verified: &VerifiedDocument) -> serde_json::Value {
    let doc = &verified.document;
    let pcrs: serde_json::Map<String, serde_json::Value> = doc
        .pcrs
        .iter()
        .map(|(i, v)| (i.to_string(), serde_json::Value::String(hex::encode(v))))
        .collect();
    serde_json::json!({
        "valid": true,
        "root": match verified.root { RootKind::Aws => "aws", RootKind::Development => "development" },
        "module_id": doc.module_id,
        "timestamp": doc.timestamp_ms,
        "digest": doc.digest,
        "pcrs": pcrs,
        "public_key": hex_or_null(&doc.public_key),
        "user_data": hex_or_null(&doc.user_data),
        "nonce": hex_or_null(&doc.nonce),
        "certificate_chain_valid_until": verified.valid_until,
    })
}

fn verify(
    file: &PathBuf,
    at: Option<u64>,
    root: Option<PathBuf>,
    release: Option<PathBuf>,
    log_key: Option<String>,
    publishers: &[String],
    json: bool,
) -> ExitCode {
    let fail = |error: String| {
        if json {
            println!("{}", serde_json::json!({ "valid": false, "error": error }));
        } else {
            eprintln!("arcane-audit: attestation does not verify: {error}");
        }
        ExitCode::FAILURE
    };
    let at = at.unwrap_or_else(now);
    let root = match root {
        None => NitroRoot::aws(),
        Some(path) => {
            let pem = match std::fs::read_to_string(&path) {
                Ok(pem) => pem,
                Err(e) => return fail(format!("{}: {e}", path.display())),
            };
            match pem_certificate(&pem) {
                Ok(der) => {
                    eprintln!(
                        "arcane-audit: WARNING: trusting the development root {} instead of the AWS \
                         Nitro root; documents it accepts prove nothing about real enclaves",
                        path.display()
                    );
                    NitroRoot::development(der)
                }
                Err(e) => return fail(format!("{}: {e}", path.display())),
            }
        }
    };
    let bytes = match std::fs::read(file) {
        Ok(bytes) => decode_maybe_base64(&bytes),
        Err(e) => return fail(format!("{}: {e}", file.display())),
    };
    let verified = match verify_document(&bytes, &root, at) {
        Ok(verified) => verified,
        Err(e) => return fail(e.to_string()),
    };
    if let Some(release) = release {
        let outcome = (|| -> Result<(), String> {
            let bundle =
                std::fs::read(&release).map_err(|e| format!("{}: {e}", release.display()))?;
            let log_key = VerifierKey::parse(log_key.as_deref().unwrap_or_default())
                .map_err(|e| format!("--log-key: {e}"))?;
            let publishers = publishers
                .iter()
                .map(|p| VerifierKey::parse(p).map_err(|e| format!("--publisher: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let policy = EntryPolicy::default();
            let anchors = TrustAnchors {
                log_key: &log_key,
                witnesses: &WitnessPolicy::none(),
                publishers: &publishers,
                policy: &policy,
            };
            let entry = verify_bundle(&bundle, &anchors, None, at)
                .map_err(|e| format!("release bundle: {e}"))?;
            check_attestation(
                &verified,
                &entry,
                &AttestationPolicy::default(),
                at * 1000,
                None,
            )
            .map_err(|e| format!("release policy: {e}"))?;
            Ok(())
        })();
        if let Err(error) = outcome {
            return fail(error);
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&describe(&verified)).expect("JSON")
        );
    } else {
        let doc = &verified.document;
        println!(
            "valid attestation from {} at {} ms",
            doc.module_id, doc.timestamp_ms
        );
        for index in [0u8, 1, 2, 8] {
            if let Some(value) = doc.pcr(index) {
                println!("PCR{index}: {}", hex::encode(value));
            }
        }
    }
    ExitCode::SUCCESS
}
