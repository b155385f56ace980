//! `arcane-audit`: tools for auditors, who need nothing but the log's URL and verifier key.
//!
//! - `checkpoint`, `inclusion`, `consistency` (state directory, fork evidence), `releases`,
//!   `keys`: the log's answers, each verified against its key before it is printed;
//! - `reproduce --eif`: an EIF's PCRs must belong to a valid logged release;
//! - `attestation verify`: a Nitro attestation document from bytes alone (signature, chain, time)
//!   and, optionally, the release policy against a logged `release` entry.
//!
//! Exit status: 0 the check passed; 1 it failed (a proof, signature or attestation that does not
//! verify, a fork, an unreadable input); 2 usage errors; 3 the log could not be reached.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use arcane_audit::http::Http;
use arcane_audit::{key_releases, log_commands, witness_server};

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
    /// A C2SP tlog-witness: cosign checkpoints of the logs it watches, only when consistent.
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// Nitro attestation documents.
    Attestation {
        #[command(subcommand)]
        command: AttestationCommand,
    },
    /// Fetch and verify the log's checkpoint; print size, root and witnessing.
    Checkpoint {
        #[command(flatten)]
        log: LogArgs,
    },
    /// Prove that an entry (file, leaf hash or index) is in the log; print its proof bundle.
    Inclusion {
        #[command(flatten)]
        log: LogArgs,
        /// The entry's bytes.
        #[arg(long, conflicts_with_all = ["leaf_hash", "index"])]
        file: Option<PathBuf>,
        /// The entry's leaf hash (hex).
        #[arg(long, conflicts_with = "index")]
        leaf_hash: Option<String>,
        /// The entry's index.
        #[arg(long)]
        index: Option<u64>,
        /// Tree size to prove against (default: the latest).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Check that the log's checkpoint extends the newest one saved in the state directory; on a
    /// fork, keep both signed checkpoints as evidence and exit 1.
    Consistency {
        #[command(flatten)]
        log: LogArgs,
        /// State directory (0700): every checkpoint seen, and evidence.
        #[arg(long)]
        state: PathBuf,
    },
    /// List the currently valid `release` entries, each proven against the current checkpoint.
    Releases {
        #[command(flatten)]
        log: LogArgs,
        /// Publisher keys to mark as trusted (repeatable).
        #[arg(long)]
        publisher: Vec<String>,
    },
    /// List the currently valid `ohttp-keys` and `token-key` entries.
    Keys {
        #[command(flatten)]
        log: LogArgs,
        /// Publisher keys to mark as trusted (repeatable).
        #[arg(long)]
        publisher: Vec<String>,
    },
    /// Receipts checked offline, with the log's key and the Nitro root alone.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Decide again every release of a model key a model owner's key release service recorded,
    /// and check that the entries that justified each are in this log.
    KeyReleases {
        #[command(flatten)]
        log: LogArgs,
        /// The key release service's base URL.
        #[arg(long)]
        service: String,
        /// A publisher whose `release` entries the service counts (repeatable).
        #[arg(long, required = true)]
        publisher: Vec<String>,
        /// The owner's publisher key: the only one whose `model-access` entries count.
        #[arg(long)]
        owner: String,
        /// Trust this root (PEM) instead of the built-in AWS root: for development documents only.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The service's maximum document age, in seconds.
        #[arg(long, default_value_t = 60)]
        max_document_age_secs: u64,
    },
    /// Follow the log: check each new checkpoint extends the last, fetch only new bundles,
    /// recompute the tree, validate every new entry, report anomalies (forks, unknown publishers,
    /// invalid entries, key sets of one role overlapping beyond the rotation window).
    Monitor {
        #[command(flatten)]
        log: LogArgs,
        /// State directory: checkpoints seen, progress, key windows, evidence.
        #[arg(long)]
        state: PathBuf,
        /// Known publisher keys (repeatable); entries by others are anomalies.
        #[arg(long)]
        publisher: Vec<String>,
        /// How long two key sets of one role may overlap (a rotation), in seconds.
        #[arg(long, default_value_t = 86_400)]
        rotation_overlap: u64,
        /// Seconds between passes.
        #[arg(long, default_value_t = 60)]
        interval: u64,
        /// One pass, then exit (1 if anything was found).
        #[arg(long)]
        once: bool,
    },
    /// Recompute the whole log from its entry bundles and compare with the signed checkpoint;
    /// with --state, an interrupted replay resumes.
    Replay {
        #[command(flatten)]
        log: LogArgs,
        /// State directory for resumable progress.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Measure an EIF and check that the log holds a valid `release` entry with exactly its PCRs.
    Reproduce {
        /// The Enclave Image File, built from the published source.
        #[arg(long)]
        eif: PathBuf,
        /// The log's base URL.
        #[arg(long)]
        url: String,
        /// PEM certificates of a private CA the log's https:// certificate chains to.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// The log's verifier key.
        #[arg(long)]
        log_key: String,
        /// A trusted release publisher key (repeatable).
        #[arg(long, required = true)]
        publisher: Vec<String>,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum WitnessCommand {
    /// Make a witness key (cosignature/v1): writes the secret key (0600), prints the verifier key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// The witness's name (a schema-less URL).
        #[arg(long)]
        name: String,
    },
    /// Serve POST /add-checkpoint.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8750")]
        listen: std::net::SocketAddr,
        /// The witness's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// State directory (SQLite: the latest cosigned checkpoint per log).
        #[arg(long)]
        state: PathBuf,
        /// Verifier key of a log to witness (repeatable).
        #[arg(long, required = true)]
        log: Vec<String>,
    },
}

fn witness(command: WitnessCommand) -> ExitCode {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let result = (|| -> Result<(), String> {
        match command {
            WitnessCommand::Keygen { out, name } => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| e.to_string())?;
                let key = arcane_verifier::note::NoteSigner::from_seed(
                    &name,
                    arcane_verifier::note::ALG_COSIGNATURE_V1,
                    &seed,
                )
                .map_err(|e| e.to_string())?;
                seed.fill(0);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&out)
                    .map_err(|e| format!("{}: {e}", out.display()))?;
                writeln!(file, "{}", &*key.to_secret_text()).map_err(|e| e.to_string())?;
                println!("{}", key.verifier().to_text());
                Ok(())
            }
            WitnessCommand::Serve {
                listen,
                key,
                state,
                log,
            } => {
                let meta =
                    std::fs::metadata(&key).map_err(|e| format!("{}: {e}", key.display()))?;
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(format!(
                        "{} is readable by group or others; chmod 600 it",
                        key.display()
                    ));
                }
                let text = std::fs::read_to_string(&key).map_err(|e| e.to_string())?;
                let signer = arcane_verifier::note::NoteSigner::parse(text.trim())
                    .map_err(|e| e.to_string())?;
                let logs = log
                    .iter()
                    .map(|l| VerifierKey::parse(l).map_err(|e| format!("--log: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
                let vkey = signer.verifier().to_text();
                runtime.block_on(witness_server::serve(
                    listen,
                    signer,
                    logs,
                    &state,
                    |addr| {
                        println!("witness {vkey} listening on {addr}");
                    },
                ))
            }
        }
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("arcane-audit: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
struct LogArgs {
    /// The log's base URL (`http://` or `https://`).
    #[arg(long)]
    url: String,
    /// PEM certificates of a private CA the log's https:// certificate chains to (the system's
    /// roots are trusted as well).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// The log's verifier key text.
    #[arg(long, conflicts_with = "vkey_file")]
    vkey: Option<String>,
    /// A file holding the log's verifier key.
    #[arg(long)]
    vkey_file: Option<PathBuf>,
    /// Witness policy (Sigsum policy format): checkpoints must carry its quorum of cosignatures.
    #[arg(long)]
    witness_policy: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Exit status when the log could not be reached.
const EXIT_UNREACHABLE: u8 = 3;

fn run_log_command(
    log: &LogArgs,
    command: impl FnOnce(&log_commands::Log, bool) -> Result<(), log_commands::AuditError>,
) -> ExitCode {
    let outcome = Http::new(&log.url, log.ca_cert.as_deref())
        .map_err(log_commands::AuditError::Input)
        .and_then(|http| {
            log_commands::Log::new(
                http,
                log.vkey.as_deref(),
                log.vkey_file.as_deref(),
                log.witness_policy.as_deref(),
            )
        })
        .and_then(|l| command(&l, log.json));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if log.json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "error": error.to_string() })
                );
            }
            eprintln!("arcane-audit: {error}");
            match error {
                log_commands::AuditError::Unreachable(_) => ExitCode::from(EXIT_UNREACHABLE),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn verify_receipts(
    file: &std::path::Path,
    log_key: &str,
    root: Option<&std::path::Path>,
    json: bool,
) -> ExitCode {
    let inputs = (|| -> Result<_, String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let key_path = std::path::Path::new(log_key);
        let key_text = if key_path.is_file() {
            std::fs::read_to_string(key_path).map_err(|e| format!("{log_key}: {e}"))?
        } else {
            log_key.to_owned()
        };
        let key = VerifierKey::parse(key_text.trim()).map_err(|e| format!("--log-key: {e}"))?;
        let root = match root {
            None => NitroRoot::aws(),
            Some(path) => development_root(path)?,
        };
        Ok((text, key, root))
    })();
    let (text, key, root) = match inputs {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("arcane-audit: {e}");
            return ExitCode::from(2);
        }
    };
    let outcomes = arcane_audit::receipts::verify_receipts(&text, &key, &root);
    let valid = !outcomes.is_empty() && outcomes.iter().all(|o| o.valid);
    if json {
        println!(
            "{}",
            serde_json::json!({ "valid": valid, "receipts": outcomes })
        );
    } else {
        for o in &outcomes {
            let verdict = if o.valid { "valid  " } else { "INVALID" };
            println!("{verdict} line {}: {}", o.line, o.detail);
        }
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The development root in the PEM file at `path`, said loudly.
fn development_root(path: &std::path::Path) -> Result<NitroRoot, String> {
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let der = pem_certificate(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "arcane-audit: WARNING: trusting the development root {} instead of the AWS Nitro root; \
         documents it accepts prove nothing about real enclaves",
        path.display()
    );
    Ok(NitroRoot::development(der))
}

fn trusted_keys(keys: &[String]) -> Result<Vec<VerifierKey>, log_commands::AuditError> {
    keys.iter()
        .map(|k| {
            VerifierKey::parse(k)
                .map_err(|e| log_commands::AuditError::Input(format!("--publisher: {e}")))
        })
        .collect()
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

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Verify each receipt in FILE (one JSON object per line, as `receipts.jsonl`): the node's
    /// signed statement, its document and the release entry's proof. Exit status 0 only when
    /// every receipt verifies.
    Verify {
        /// The receipts.
        file: PathBuf,
        /// The log's verifier key (text, or a file holding it).
        #[arg(long)]
        log_key: String,
        /// Trust this root (PEM) instead of the built-in AWS root: for development documents only.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Witness { command } => witness(command),
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
        Command::Checkpoint { log } => run_log_command(&log, log_commands::checkpoint),
        Command::Inclusion {
            log,
            file,
            leaf_hash,
            index,
            size,
        } => run_log_command(&log, |l, json| {
            let target = match (file, leaf_hash, index) {
                (Some(f), None, None) => log_commands::Target::File(f),
                (None, Some(h), None) => log_commands::Target::LeafHash(h),
                (None, None, Some(i)) => log_commands::Target::Index(i),
                _ => {
                    return Err(log_commands::AuditError::Input(
                        "give one of --file, --leaf-hash, --index".into(),
                    ));
                }
            };
            log_commands::inclusion(l, target, size, json)
        }),
        Command::Consistency { log, state } => {
            run_log_command(&log, |l, json| log_commands::consistency(l, &state, json))
        }
        Command::Releases { log, publisher } => run_log_command(&log, |l, json| {
            log_commands::current_entries(l, &["release"], &trusted_keys(&publisher)?, json)
        }),
        Command::Keys { log, publisher } => run_log_command(&log, |l, json| {
            log_commands::current_entries(
                l,
                &["ohttp-keys", "token-key"],
                &trusted_keys(&publisher)?,
                json,
            )
        }),
        Command::Receipt {
            command:
                ReceiptCommand::Verify {
                    file,
                    log_key,
                    root,
                    json,
                },
        } => verify_receipts(&file, &log_key, root.as_deref(), json),
        Command::KeyReleases {
            log,
            service,
            publisher,
            owner,
            root,
            max_document_age_secs,
        } => run_log_command(&log, |l, json| {
            let input = log_commands::AuditError::Input;
            let service = Http::new(&service, log.ca_cert.as_deref()).map_err(input)?;
            let publishers = trusted_keys(&publisher)?;
            let owner = VerifierKey::parse(owner.trim())
                .map_err(|e| log_commands::AuditError::Input(format!("--owner: {e}")))?;
            let root = match &root {
                None => NitroRoot::aws(),
                Some(path) => development_root(path).map_err(input)?,
            };
            let audit = key_releases::KeyReleaseAudit {
                service: &service,
                publishers: &publishers,
                owner: &owner,
                root: &root,
                max_document_age_ms: max_document_age_secs.saturating_mul(1000),
            };
            key_releases::key_releases(l, &audit, json)
        }),
        Command::Monitor {
            log,
            state,
            publisher,
            rotation_overlap,
            interval,
            once,
        } => run_log_command(&log, |l, json| {
            let publishers = trusted_keys(&publisher)?;
            let options = log_commands::MonitorOptions {
                publishers: &publishers,
                rotation_overlap,
            };
            loop {
                let (size, anomalies) = log_commands::monitor_once(l, &state, &options)?;
                for a in &anomalies {
                    if json {
                        println!("{}", serde_json::to_string(a).expect("JSON"));
                    } else {
                        println!(
                            "ANOMALY {}{}: {}",
                            a.kind,
                            a.index.map(|i| format!(" at {i}")).unwrap_or_default(),
                            a.detail
                        );
                    }
                }
                if !json {
                    eprintln!("monitor: tree size {size}, {} anomalies", anomalies.len());
                }
                if once {
                    return if anomalies.is_empty() {
                        Ok(())
                    } else {
                        Err(log_commands::AuditError::Failed(format!(
                            "{} anomalies",
                            anomalies.len()
                        )))
                    };
                }
                std::thread::sleep(std::time::Duration::from_secs(interval));
            }
        }),
        Command::Replay { log, state } => run_log_command(&log, |l, json| {
            log_commands::replay(l, state.as_deref(), json)
        }),
        Command::Reproduce {
            eif,
            url,
            ca_cert,
            log_key,
            publisher,
            json,
        } => reproduce(&eif, &url, ca_cert.as_deref(), &log_key, &publisher, json),
    }
}

/// Measures `eif`, asks the log for current releases with its PCR0, verifies each bundle and
/// looks for one whose PCR0/1/2 (and PCR8) equal the measurements.
fn reproduce(
    eif: &PathBuf,
    url: &str,
    ca_cert: Option<&std::path::Path>,
    log_key: &str,
    publishers: &[String],
    json: bool,
) -> ExitCode {
    let outcome = (|| -> Result<serde_json::Value, String> {
        let file = std::fs::File::open(eif).map_err(|e| format!("{}: {e}", eif.display()))?;
        let m = arcane_verifier::eif::measure(std::io::BufReader::new(file))
            .map_err(|e| e.to_string())?;
        if !m.crc_ok {
            return Err("the EIF's CRC does not match (corrupted file)".into());
        }
        let log_key = VerifierKey::parse(log_key.trim()).map_err(|e| format!("--log-key: {e}"))?;
        let publishers = publishers
            .iter()
            .map(|p| VerifierKey::parse(p).map_err(|e| format!("--publisher: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let path = arcane_verifier::log_api::bundles_of_kind("release", Some(&m.pcr0));
        let body = Http::new(url, ca_cert)?.get(&path)?;
        let reply = arcane_verifier::log_api::BundleList::parse(&body)
            .map_err(|e| format!("log reply: {e}"))?;
        let policy = EntryPolicy::default();
        let anchors = TrustAnchors {
            log_key: &log_key,
            witnesses: &WitnessPolicy::none(),
            publishers: &publishers,
            policy: &policy,
        };
        let bundles = reply.bundles;
        for text in &bundles {
            let Ok(verified) = verify_bundle(text.as_bytes(), &anchors, None, now()) else {
                continue;
            };
            if let arcane_verifier::entry::EntryBody::Release(r) = &verified.entry.entry.body
                && r.pcr0 == m.pcr0
                && r.pcr1 == m.pcr1
                && r.pcr2 == m.pcr2
                && r.pcr8 == m.pcr8
            {
                return Ok(serde_json::json!({
                    "reproduced": true,
                    "index": verified.index,
                    "leaf_hash": verified.leaf_hash.to_hex(),
                    "pcr0": hex::encode(m.pcr0),
                    "pcr1": hex::encode(m.pcr1),
                    "pcr2": hex::encode(m.pcr2),
                    "pcr8": m.pcr8.map(hex::encode),
                    "eif_sha384": hex::encode(m.file_sha384),
                    "bundle": text,
                }));
            }
        }
        Err(format!(
            "no valid release entry in the log has these measurements (PCR0 {}; {} candidate bundles)",
            hex::encode(m.pcr0),
            bundles.len()
        ))
    })();
    match outcome {
        Ok(found) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&found).expect("JSON"));
            } else {
                println!(
                    "reproduced: the log holds this EIF's release at index {} (leaf hash {})",
                    found["index"],
                    found["leaf_hash"].as_str().unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "reproduced": false, "error": error })
                );
            } else {
                eprintln!("arcane-audit: not reproduced: {error}");
            }
            ExitCode::FAILURE
        }
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
        Some(path) => match development_root(&path) {
            Ok(root) => root,
            Err(e) => return fail(e),
        },
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
