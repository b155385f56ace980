//! Log audits: `checkpoint`, `inclusion`, `consistency` (with a state directory and fork
//! evidence), `releases` and `keys`. Every answer is checked against the log's verifier key before
//! it is printed.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use arcane_verifier::Hash;
use arcane_verifier::bundle::ProofBundle;
use arcane_verifier::checkpoint::{Checkpoint, VerifiedCheckpoint, verify_checkpoint};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::entry::{EntryBody, EntryPolicy, SignedEntry};
use arcane_verifier::key_windows::{KeyWindow, overlaps};
use arcane_verifier::log_api::{
    self, BundleList, ConsistencyReply, EntryReply, InclusionReply, Leaf,
};
use arcane_verifier::merkle::leaf_hash;
use arcane_verifier::note::VerifierKey;
use arcane_verifier::proof::verify_inclusion;
use arcane_verifier::timeline::{Fork, Step, Timeline, TreeHead};

use crate::http::Http;

/// Why an audit failed, mapped to the exit status.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log's answer does not verify, or the log forked: exit 1.
    #[error("verification failed: {0}")]
    Failed(String),
    /// The log could not be reached or read: exit 3.
    #[error("log unreachable: {0}")]
    Unreachable(String),
    /// Bad local input (files, keys): exit 1.
    #[error("{0}")]
    Input(String),
}

type Result<T> = std::result::Result<T, AuditError>;

fn failed(e: impl std::fmt::Display) -> AuditError {
    AuditError::Failed(e.to_string())
}

/// The log being audited: the client that reaches it, and its verifier key.
pub struct Log {
    http: Http,
    key: VerifierKey,
    /// The witnesses whose cosignatures every checkpoint must carry.
    policy: WitnessPolicy,
}

impl Log {
    /// The log `http` reaches, with `--vkey` / `--vkey-file`.
    pub fn new(
        http: Http,
        vkey: Option<&str>,
        vkey_file: Option<&Path>,
        witness_policy: Option<&Path>,
    ) -> Result<Self> {
        let text = match (vkey, vkey_file) {
            (Some(text), None) => text.to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| AuditError::Input(format!("{}: {e}", path.display())))?,
            _ => {
                return Err(AuditError::Input(
                    "give exactly one of --vkey and --vkey-file".into(),
                ));
            }
        };
        let key = VerifierKey::parse(text.trim())
            .map_err(|e| AuditError::Input(format!("log key: {e}")))?;
        let policy = match witness_policy {
            None => WitnessPolicy::none(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| AuditError::Input(format!("{}: {e}", path.display())))?;
                arcane_verifier::cosignature::parse_policy_file(&text)
                    .map_err(|e| AuditError::Input(format!("{}: {e}", path.display())))?
                    .0
            }
        };
        Ok(Log { http, key, policy })
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        self.http.get(path).map_err(AuditError::Unreachable)
    }

    /// The log's verifier key.
    pub(crate) fn key(&self) -> &VerifierKey {
        &self.key
    }

    /// The witnesses whose cosignatures every checkpoint must carry.
    pub(crate) fn witness_policy(&self) -> &WitnessPolicy {
        &self.policy
    }

    /// The log's consistency proof from tree size `old` to `new`.
    pub(crate) fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        ConsistencyReply::parse(&self.get(&log_api::consistency(old, new))?, old, new)
            .map_err(failed)
    }

    /// The current checkpoint, verified against the log key and the witness policy.
    pub fn checkpoint(&self) -> Result<(VerifiedCheckpoint, String)> {
        let text = String::from_utf8(self.get("/checkpoint")?)
            .map_err(|_| failed("checkpoint is not UTF-8"))?;
        let verified =
            verify_checkpoint(text.as_bytes(), &self.key, &self.policy).map_err(failed)?;
        Ok((verified, text))
    }
}

fn print(json: bool, value: &serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).expect("JSON"));
    } else {
        println!("{}", human());
    }
}

/// `checkpoint`: fetch, verify, print size, root and witnessing.
pub fn checkpoint(log: &Log, json: bool) -> Result<()> {
    let (verified, _) = log.checkpoint()?;
    let c = &verified.checkpoint;
    let newest = verified.cosignatures.iter().map(|c| c.timestamp).max();
    let value = serde_json::json!({
        "origin": c.origin,
        "size": c.size,
        "root": BASE64.encode(c.root.0),
        "root_hex": c.root.to_hex(),
        "cosignatures": verified.cosignatures.iter().map(|c| serde_json::json!({"witness": c.witness, "timestamp": c.timestamp})).collect::<Vec<_>>(),
        "newest_cosignature": newest,
    });
    print(json, &value, || {
        let witnessed = match newest {
            Some(t) => format!(
                "{} cosignature(s), newest at {t}",
                verified.cosignatures.len()
            ),
            None => "no witness cosignatures (its age cannot be told)".into(),
        };
        format!(
            "{}\nsize {}\nroot {}\n{witnessed}",
            c.origin,
            c.size,
            BASE64.encode(c.root.0)
        )
    });
    Ok(())
}

/// What `inclusion` is asked about.
pub enum Target {
    /// An entry's bytes.
    File(PathBuf),
    /// A leaf hash.
    LeafHash(String),
    /// A leaf index.
    Index(u64),
}

/// `inclusion`: prove that an entry is in the log at `size` (default: the latest), print its
/// proof bundle.
pub fn inclusion(log: &Log, target: Target, size: Option<u64>, json: bool) -> Result<()> {
    let (leaf, known_entry) = match &target {
        Target::File(path) => {
            let entry = std::fs::read(path)
                .map_err(|e| AuditError::Input(format!("{}: {e}", path.display())))?;
            (Leaf::Hash(leaf_hash(&entry)), Some(entry))
        }
        Target::LeafHash(hex) => (
            Leaf::Hash(
                Hash::from_hex(hex)
                    .map_err(|_| AuditError::Input("--leaf-hash: not 64 hex digits".into()))?,
            ),
            None,
        ),
        Target::Index(i) => (Leaf::Index(*i), None),
    };
    let (reply, proof) =
        InclusionReply::parse(&log.get(&log_api::inclusion(leaf, size))?).map_err(failed)?;
    let note = reply
        .checkpoint
        .ok_or_else(|| failed("no checkpoint signed for that size"))?;
    let verified =
        verify_checkpoint(note.as_bytes(), &log.key, &WitnessPolicy::none()).map_err(failed)?;
    let index = reply.index;
    let entry = match known_entry {
        Some(entry) => entry,
        None => EntryReply::parse(&log.get(&log_api::entry_at(index))?, index).map_err(failed)?,
    };
    let hash = leaf_hash(&entry);
    match leaf {
        Leaf::Hash(asked) if asked != hash => {
            return Err(failed("the log returned an entry with another leaf hash"));
        }
        Leaf::Index(asked) if asked != index => {
            return Err(failed(
                "the log proved another index than the one asked for",
            ));
        }
        _ => {}
    }
    verify_inclusion(
        index,
        verified.checkpoint.size,
        &hash,
        &proof,
        &verified.checkpoint.root,
    )
    .map_err(failed)?;
    let bundle = ProofBundle {
        entry,
        index,
        proof,
        checkpoint: note.to_owned(),
    }
    .to_text();
    let value = serde_json::json!({
        "included": true,
        "index": index,
        "tree_size": verified.checkpoint.size,
        "leaf_hash": hash.to_hex(),
        "bundle": bundle,
    });
    print(json, &value, || {
        format!(
            "included at index {index} in the tree of size {}\n\n{bundle}",
            verified.checkpoint.size
        )
    });
    Ok(())
}

/// The state directory of `consistency`: every checkpoint seen, and evidence of forks.
struct State {
    dir: PathBuf,
}

impl State {
    fn open(dir: &Path) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("checkpoints"))
            .map_err(|e| AuditError::Input(format!("{}: {e}", dir.display())))?;
        Ok(State {
            dir: dir.to_owned(),
        })
    }

    fn write(&self, path: &Path, text: &str) -> Result<()> {
        crate::replay::write_atomically(path, text.as_bytes())
            .map_err(|e| AuditError::Input(format!("{}: {e}", path.display())))
    }

    /// Saves a verified checkpoint note with its source.
    fn save(&self, c: &Checkpoint, note: &str, source: &str) -> Result<()> {
        let name = format!("{:020}-{}", c.size, &c.root.to_hex()[..16]);
        self.write(
            &self.dir.join("checkpoints").join(format!("{name}.note")),
            note,
        )?;
        self.write(
            &self.dir.join("checkpoints").join(format!("{name}.source")),
            &format!("{source}\n"),
        )
    }

    /// The largest checkpoint seen, re-verified.
    fn latest(&self, key: &VerifierKey) -> Result<Option<(Checkpoint, String)>> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.join("checkpoints"))
            .map_err(|e| AuditError::Input(e.to_string()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".note"))
            .collect();
        names.sort();
        let Some(name) = names.pop() else {
            return Ok(None);
        };
        let note = std::fs::read_to_string(self.dir.join("checkpoints").join(&name))
            .map_err(|e| AuditError::Input(e.to_string()))?;
        let verified =
            verify_checkpoint(note.as_bytes(), key, &WitnessPolicy::none()).map_err(|e| {
                AuditError::Input(format!("saved checkpoint {name} no longer verifies: {e}"))
            })?;
        Ok(Some((verified.checkpoint, note)))
    }

    /// Keeps the evidence of `fork` in the one layout every holder uses
    /// ([`Fork::evidence`]); returns the folder.
    fn evidence(&self, fork: &Fork, saved: &str, shown: &str) -> Result<PathBuf> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let folder =
            self.dir
                .join("evidence")
                .join(format!("{}-{:09}", now.as_secs(), now.subsec_nanos()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&folder)
            .map_err(|e| AuditError::Input(format!("{}: {e}", folder.display())))?;
        for (name, bytes) in fork.evidence(saved, shown) {
            crate::replay::write_atomically(&folder.join(name), &bytes)
                .map_err(|e| AuditError::Input(format!("{}: {e}", folder.display())))?;
        }
        Ok(folder)
    }
}

/// What the timeline check of the log's current checkpoint found.
enum Timelined {
    /// Nothing was saved before: the first checkpoint.
    First,
    /// Compared with the newest saved checkpoint, of this size: extends it, is it, or is older
    /// and a proven prefix of it.
    Consistent(u64, Step),
    /// Not consistent with the saved checkpoint: why, and where the evidence is.
    Forked(String),
}

/// The timeline check ([`arcane_verifier::timeline`]) of `shown` (signed note `note`) against the
/// newest checkpoint saved in `state`, the log answering the consistency question; a fork's
/// evidence is kept in `state`.
fn check_timeline(log: &Log, state: &State, shown: &Checkpoint, note: &str) -> Result<Timelined> {
    let Some((saved, saved_note)) = state.latest(&log.key)? else {
        return Ok(Timelined::First);
    };
    let mut timeline = Timeline::new(Some(TreeHead::from(&saved)));
    let step = match timeline.observe(TreeHead::from(shown)) {
        Ok(Step::Prove(question)) => {
            let proof = log.consistency_proof(question.old.size, question.new.size)?;
            timeline.settle(&question, &proof)
        }
        other => other,
    };
    match step {
        Ok(step) => Ok(Timelined::Consistent(saved.size, step)),
        Err(fork) => {
            let folder = state.evidence(&fork, &saved_note, note)?;
            Ok(Timelined::Forked(format!(
                "{fork}; both signed checkpoints saved in {}",
                folder.display()
            )))
        }
    }
}

/// `consistency`: the log's current checkpoint must be consistent with the newest one saved in
/// `state` (extend it, be it, or be an older prefix of it); every checkpoint seen is saved.
pub fn consistency(log: &Log, state: &Path, json: bool) -> Result<()> {
    let state = State::open(state)?;
    let (current, note) = log.checkpoint()?;
    let new = &current.checkpoint;
    let message = match check_timeline(log, &state, new, &note)? {
        Timelined::First => "first checkpoint saved; nothing to compare yet".to_owned(),
        Timelined::Consistent(saved, Step::Adopt) => {
            format!("size {} extends the saved size {saved}", new.size)
        }
        Timelined::Consistent(saved, _) if saved == new.size => {
            format!("size {} is the saved checkpoint", new.size)
        }
        Timelined::Consistent(saved, _) => format!(
            "the log shows size {}, older than the saved size {saved}, which extends it",
            new.size
        ),
        Timelined::Forked(why) => return Err(failed(format!("possible fork: {why}"))),
    };
    state.save(new, &note, log.http.base())?;
    let value = serde_json::json!({"consistent": true, "size": new.size, "root": BASE64.encode(new.root.0), "message": message});
    print(json, &value, || message.clone());
    Ok(())
}

/// `releases` / `keys`: the currently valid entries of the given kinds, each proven against the
/// current checkpoint, with whether their publisher is one of `publishers`.
pub fn current_entries(
    log: &Log,
    kinds: &[&str],
    publishers: &[VerifierKey],
    json: bool,
) -> Result<()> {
    let (current, _) = log.checkpoint()?;
    let policy = EntryPolicy::default();
    let mut rows = Vec::new();
    for kind in kinds {
        let reply = BundleList::parse(
            &log.get(&log_api::bundles_of_kind_at(kind, current.checkpoint.size))?,
        )
        .map_err(failed)?;
        if reply.tree_size != current.checkpoint.size {
            return Err(failed("the bundle list is for another tree size"));
        }
        for text in &reply.bundles {
            let parsed = ProofBundle::parse(text.as_bytes()).map_err(failed)?;
            let against = verify_checkpoint(
                parsed.checkpoint.as_bytes(),
                &log.key,
                &WitnessPolicy::none(),
            )
            .map_err(failed)?;
            if against.checkpoint != current.checkpoint {
                return Err(failed(
                    "a bundle is against another checkpoint than the current one",
                ));
            }
            let leaf = leaf_hash(&parsed.entry);
            verify_inclusion(
                parsed.index,
                current.checkpoint.size,
                &leaf,
                &parsed.proof,
                &current.checkpoint.root,
            )
            .map_err(failed)?;
            let entry = SignedEntry::decode(&parsed.entry).map_err(failed)?;
            let trusted = entry.verify_signature(publishers).is_ok();
            let valid = policy.validate(&entry.entry).is_ok();
            let summary = match &entry.entry.body {
                EntryBody::Release(r) => format!(
                    "PCR0 {}… model {}… {} {}",
                    &hex::encode(r.pcr0)[..16],
                    &hex::encode(r.model_sha256)[..16],
                    r.engine,
                    r.engine_version
                ),
                EntryBody::OhttpKeys(c) => format!(
                    "key id {} KEM 0x{:04x} {} suite(s)",
                    c.key_id,
                    c.kem_id,
                    c.symmetric.len()
                ),
                EntryBody::TokenKey(k) => format!(
                    "{} key {}…",
                    k.role.as_str(),
                    &hex::encode(k.key_id())[..16]
                ),
                EntryBody::ModelAccess(a) => format!(
                    "model {}… for {} image(s)",
                    &hex::encode(a.model_sha256)[..16],
                    a.images.len()
                ),
                EntryBody::Unknown { kind, .. } => format!("unknown kind {kind}"),
            };
            let publisher = hex::encode(entry.entry.publisher.0);
            rows.push(serde_json::json!({
                "kind": entry.entry.body.kind_name(),
                "index": parsed.index,
                "not_before": entry.entry.not_before,
                "not_after": entry.entry.not_after,
                "publisher": publisher,
                "trusted_publisher": trusted,
                "valid": valid,
                "summary": summary,
                "entry": entry.view(),
            }));
        }
    }
    let value = serde_json::json!({"tree_size": current.checkpoint.size, "entries": rows});
    print(json, &value, || {
        let mut out = format!(
            "{:<11} {:>7}  {:<10}  {:<10}  {:<9}  summary\n",
            "kind", "index", "from", "until", "publisher"
        );
        for row in &rows {
            out.push_str(&format!(
                "{:<11} {:>7}  {:<10}  {:<10}  {:<9}  {}\n",
                row["kind"].as_str().unwrap_or_default(),
                row["index"],
                row["not_before"],
                row["not_after"],
                if row["trusted_publisher"] == true {
                    "trusted"
                } else {
                    "UNKNOWN"
                },
                row["summary"].as_str().unwrap_or_default()
            ));
        }
        out.push_str(&format!(
            "{} entries, tree size {}",
            rows.len(),
            current.checkpoint.size
        ));
        out
    });
    Ok(())
}

/// Entry bundles fetched from the log.
struct HttpSource<'a>(&'a Log);

impl crate::replay::BundleSource for HttpSource<'_> {
    fn bundle(
        &mut self,
        coord: &arcane_verifier::tiles::TileCoord,
    ) -> std::result::Result<Vec<u8>, String> {
        self.0.http.get(&format!("/{}", coord.path()))
    }
}

/// `replay`: recompute the whole log from its entry bundles and compare with the checkpoint;
/// resumable through `state`.
pub fn replay(log: &Log, state: Option<&Path>, json: bool) -> Result<()> {
    use crate::replay::{Progress, replay};
    let (current, _) = log.checkpoint()?;
    let size = current.checkpoint.size;
    let progress_file = match state {
        Some(dir) => Some(State::open(dir)?.dir.join("replay-progress")),
        None => None,
    };
    let mut progress = progress_file
        .as_deref()
        .and_then(Progress::load)
        .filter(|p| p.range.size() <= size)
        .unwrap_or_default();
    let resumed_from = progress.range.size();
    let mut bundles = 0u64;
    let root = replay(&mut HttpSource(log), size, &mut progress, |p| {
        bundles += 1;
        // Only whole bundles are saved: a partial one is fetched again, wider, next time.
        if let Some(file) = &progress_file
            && p.range
                .size()
                .is_multiple_of(arcane_verifier::tiles::TILE_WIDTH)
        {
            p.save(file)?;
        }
        if !json && (bundles.is_multiple_of(16) || p.range.size() == size) {
            eprint!("\rreplayed {} / {size} entries", p.range.size());
        }
        Ok(())
    })
    .map_err(AuditError::Unreachable)?;
    if !json && size > resumed_from {
        eprintln!();
    }
    let matches = root == current.checkpoint.root;
    let value = serde_json::json!({
        "ok": matches && progress.invalid == 0,
        "tree_size": size,
        "root": BASE64.encode(current.checkpoint.root.0),
        "recomputed_root": BASE64.encode(root.0),
        "root_matches": matches,
        "resumed_from": resumed_from,
        "entries_per_kind": progress.kinds,
        "currently_valid_per_kind": progress.current,
        "invalid_entries": progress.invalid,
    });
    print(json, &value, || {
        let kinds: Vec<String> = progress
            .kinds
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        format!(
            "replayed {size} entries (resumed from {resumed_from}); root {}; {}; invalid typed entries: {}",
            if matches {
                "matches the checkpoint"
            } else {
                "DIFFERS from the checkpoint"
            },
            kinds.join(", "),
            progress.invalid
        )
    });
    if !matches {
        return Err(failed("the recomputed root differs from the checkpoint"));
    }
    if progress.invalid > 0 {
        return Err(failed(format!(
            "{} typed entries break their kind rules",
            progress.invalid
        )));
    }
    Ok(())
}

/// One thing a monitor reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Anomaly {
    /// What kind of anomaly.
    pub kind: &'static str,
    /// The entry concerned, if any.
    pub index: Option<u64>,
    /// Details.
    pub detail: String,
}

fn load_windows(path: &Path) -> Vec<KeyWindow> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            Some(KeyWindow {
                group: f.next()?.to_owned(),
                index: f.next()?.parse().ok()?,
                not_before: f.next()?.parse().ok()?,
                not_after: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Settings of `monitor`.
pub struct MonitorOptions<'a> {
    /// Known publishers; entries by anyone else are anomalies.
    pub publishers: &'a [VerifierKey],
    /// How long two key sets of one role may both be valid (a rotation), in seconds.
    pub rotation_overlap: u64,
}

/// One monitoring pass: the checkpoint must extend the last one seen, new entries are fetched
/// (only the new bundles), the tree is recomputed and compared, and every new entry is checked.
/// Returns the anomalies found.
pub fn monitor_once(
    log: &Log,
    state_dir: &Path,
    options: &MonitorOptions<'_>,
) -> Result<(u64, Vec<Anomaly>)> {
    use crate::replay::{Progress, replay_entries};
    let state = State::open(state_dir)?;
    let mut anomalies = Vec::new();
    let (current, note) = log.checkpoint()?;
    let new = &current.checkpoint;
    // Entries below the last checkpoint seen were reported on before; a partial bundle is read
    // again, but only what is new is reported.
    let mut reported_below = 0;
    match check_timeline(log, &state, new, &note)? {
        Timelined::First => {}
        Timelined::Consistent(saved, _) => reported_below = saved.min(new.size),
        Timelined::Forked(why) => {
            anomalies.push(Anomaly {
                kind: "fork",
                index: None,
                detail: why,
            });
            return Ok((new.size, anomalies));
        }
    }
    let progress_file = state.dir.join("monitor-progress");
    let windows_file = state.dir.join("key-windows");
    let mut progress = Progress::load(&progress_file)
        .filter(|p| p.range.size() <= new.size)
        .unwrap_or_default();
    let mut windows = load_windows(&windows_file);
    let policy = EntryPolicy::default();
    let mut seen_windows: Vec<KeyWindow> = Vec::new();
    let root = replay_entries(
        &mut HttpSource(log),
        new.size,
        &mut progress,
        |index, bytes| {
            let fresh = index >= reported_below;
            let mut report = |a: Anomaly| {
                if fresh {
                    anomalies.push(a);
                }
            };
            let signed = match SignedEntry::decode(bytes) {
                Ok(s) if !matches!(s.entry.body, EntryBody::Unknown { .. }) => s,
                _ => {
                    report(Anomaly {
                        kind: "untyped_entry",
                        index: Some(index),
                        detail: "not a typed entry".into(),
                    });
                    return;
                }
            };
            if signed.verify_signature(options.publishers).is_err() {
                report(Anomaly {
                    kind: "unknown_publisher",
                    index: Some(index),
                    detail: format!("publisher {}", hex::encode(signed.entry.publisher.0)),
                });
            }
            if let Err(e) = policy.validate(&signed.entry) {
                report(Anomaly {
                    kind: "invalid_entry",
                    index: Some(index),
                    detail: e.to_string(),
                });
            }
            if let Some(window) = KeyWindow::of(index, &signed) {
                for overlap in overlaps(
                    &window,
                    windows.iter().chain(&seen_windows),
                    options.rotation_overlap,
                ) {
                    report(Anomaly {
                        kind: "overlapping_keys",
                        index: Some(index),
                        detail: overlap.to_string(),
                    });
                }
                if !seen_windows.iter().any(|w| w.index == index) {
                    seen_windows.push(window);
                }
            }
        },
        |p| {
            if p.range
                .size()
                .is_multiple_of(arcane_verifier::tiles::TILE_WIDTH)
            {
                p.save(&progress_file)?;
            }
            Ok(())
        },
    )
    .map_err(AuditError::Unreachable)?;
    if root != new.root {
        anomalies.push(Anomaly {
            kind: "root_mismatch",
            index: None,
            detail: format!(
                "entries hash to {} but the checkpoint says {}",
                root, new.root
            ),
        });
    }
    // Remember key windows for the next runs (entries of a partial bundle are seen again next
    // time; keep each index once).
    for w in seen_windows {
        if !windows.iter().any(|o| o.index == w.index) {
            windows.push(w);
        }
    }
    let text: String = windows
        .iter()
        .map(|w| format!("{} {} {} {}\n", w.group, w.index, w.not_before, w.not_after))
        .collect();
    state.write(&windows_file, &text)?;
    state.save(new, &note, log.http.base())?;
    Ok((new.size, anomalies))
}
