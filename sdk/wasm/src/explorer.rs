//! The verification center's checks: a whole log read and verified in the page.
//!
//! One [`Explorer`] per log key. The page fetches; this decides, with the same functions the
//! client and the auditor run:
//! 1. `checkpoint(note)`: the log's signature, then each signature line and the witness policy
//!    (`check_checkpoint`, the client's two-step check);
//! 2. `restore(saved)` and `viewStep()` / `viewProof()`: consistency with the checkpoint this page
//!    saw last time (the client's `LogView`); a fork throws with both signed notes;
//! 3. `nextBundle()` / `pushBundle()` until done, then `finish()`: every entry bundle, each entry
//!    decoded and checked (publisher, kind rules, validity now, key-set overlaps), the tree
//!    recomputed and compared with the checkpoint's root;
//! 4. `inclusionPath(i)` / `proveEntry(i, reply)`: each entry's inclusion proof;
//! 5. `receiptPlan(receipt)` / `recheckReceipt(...)`: a receipt re-checked against the log.

use arcane_client::receipts::{LogEvidence, Receipt, recheck};
use arcane_client::view::{LogView, Verdict, check_checkpoint};
use arcane_verifier::Hash;
use arcane_verifier::bundle::LogTrust;
use arcane_verifier::checkpoint::VerifiedCheckpoint;
use arcane_verifier::cosignature::{WitnessPolicy, verify_cosignature};
use arcane_verifier::entry::{EntryPolicy, SignedEntry};
use arcane_verifier::key_windows::{KeyWindow, overlaps};
use arcane_verifier::log_api::{self, ConsistencyReply, EntryReply, InclusionReply, Leaf};
use arcane_verifier::merkle::{leaf_hash, root_from_leaf_hashes};
use arcane_verifier::note::VerifierKey;
use arcane_verifier::proof::verify_inclusion;
use arcane_verifier::tiles::{TILE_WIDTH, TileCoord, TileKind, parse_entry_bundle, tile_width};
use arcane_verifier::timeline::{Question, Step};
use base64::Engine as _;
use serde_json::json;
use wasm_bindgen::prelude::*;

use crate::{consistency_answer, no_question, split_view, thrown};

/// The rotation overlap `arcane-audit monitor` allows by default: a day (seconds).
const DEFAULT_ROTATION_OVERLAP: u64 = 86_400;

/// What the page configured: the log's key, its witnesses and threshold, the trusted publishers.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExplorerConfig {
    log_key: String,
    #[serde(default)]
    witnesses: Vec<String>,
    #[serde(default)]
    threshold: usize,
    #[serde(default)]
    publishers: Vec<String>,
    #[serde(default)]
    rotation_overlap_secs: Option<u64>,
}

/// A log read and verified in the page.
#[wasm_bindgen]
pub struct Explorer {
    trust: LogTrust,
    witness_keys: Vec<VerifierKey>,
    rotation_overlap: u64,
    view: LogView,
    shown: Option<VerifiedCheckpoint>,
    asking: Option<Question>,
    /// The leaf hash of each entry read, by index.
    leaves: Vec<Hash>,
    windows: Vec<KeyWindow>,
}

fn config_error(what: &str, e: impl std::fmt::Display) -> JsValue {
    thrown("config", None, format!("{what}: {e}"), None)
}

fn key(what: &str, text: &str) -> Result<VerifierKey, JsValue> {
    VerifierKey::parse(text.trim()).map_err(|e| config_error(what, e))
}

/// The keys of a list the user typed, blank lines skipped.
fn keys(what: &str, lines: &[String]) -> Result<Vec<VerifierKey>, JsValue> {
    lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| key(what, line))
        .collect()
}

fn mismatch(message: String) -> JsValue {
    thrown("tampered", None, message, None)
}

#[wasm_bindgen]
impl Explorer {
    /// An explorer for the log `config` describes: `{"logKey", "witnesses"?, "threshold"?,
    /// "publishers"?, "rotationOverlapSecs"?}`.
    #[wasm_bindgen(constructor)]
    pub fn new(config: &str) -> Result<Explorer, JsValue> {
        let config: ExplorerConfig =
            serde_json::from_str(config).map_err(|e| config_error("the settings", e))?;
        let log_key = key("the log key", &config.log_key)?;
        let witness_keys = keys("a witness key", &config.witnesses)?;
        let witnesses = if witness_keys.is_empty() {
            WitnessPolicy::none()
        } else {
            WitnessPolicy::new(witness_keys.clone(), config.threshold)
                .map_err(|e| config_error("the witness policy", e))?
        };
        let publishers = keys("a publisher key", &config.publishers)?;
        Ok(Explorer {
            trust: LogTrust {
                log_key,
                witnesses,
                publishers,
                policy: EntryPolicy::default(),
            },
            witness_keys,
            rotation_overlap: config
                .rotation_overlap_secs
                .unwrap_or(DEFAULT_ROTATION_OVERLAP),
            view: LogView::default(),
            shown: None,
            asking: None,
            leaves: Vec::new(),
            windows: Vec::new(),
        })
    }

    /// The log's checkpoint: throws when its signature or the witness policy fails (the error's
    /// `evidence.signatures` lists each signature line); otherwise `{origin, size, root,
    /// rootHex, signatures: [{name, keyId, role, verified, timestamp?}], policy}`.
    pub fn checkpoint(&mut self, note: &[u8]) -> Result<String, JsValue> {
        self.shown = None;
        self.leaves.clear();
        self.windows.clear();
        let signatures = self.signature_lines(note);
        let verified = check_checkpoint(note, &self.trust).map_err(|e| {
            let mut error = crate::client_error_json(e);
            error["evidence"] = json!({ "signatures": signatures });
            JsValue::from_str(&error.to_string())
        })?;
        let c = &verified.checkpoint;
        let out = json!({
            "origin": c.origin,
            "size": c.size,
            "root": base64::engine::general_purpose::STANDARD.encode(c.root.0),
            "rootHex": c.root.to_hex(),
            "signatures": signatures,
            "policy": {
                "threshold": self.trust.witnesses.threshold(),
                "witnesses": self.witness_keys.len(),
                "cosigned": verified.cosignatures.len(),
            },
        });
        self.shown = Some(verified);
        Ok(out.to_string())
    }

    /// Each signature line of `note`: whose it is and whether it verifies.
    fn signature_lines(&self, note: &[u8]) -> serde_json::Value {
        let Ok(parsed) = arcane_verifier::note::Note::parse(note) else {
            return json!([]);
        };
        let lines: Vec<serde_json::Value> = parsed
            .signatures
            .iter()
            .map(|line| {
                let mut row = json!({
                    "name": line.name,
                    "keyId": format!("{:08x}", line.key_id),
                });
                if self.trust.log_key.matches(line) {
                    row["role"] = json!("log");
                    row["verified"] = json!(
                        parsed
                            .verify(std::slice::from_ref(&self.trust.log_key))
                            .is_ok()
                    );
                } else if let Some(w) = self.witness_keys.iter().find(|w| w.matches(line)) {
                    row["role"] = json!("witness");
                    match verify_cosignature(w, &parsed.text, line) {
                        Ok(c) => {
                            row["verified"] = json!(true);
                            row["timestamp"] = json!(c.timestamp);
                        }
                        Err(e) => {
                            row["verified"] = json!(false);
                            row["error"] = json!(e.to_string());
                        }
                    }
                } else {
                    row["role"] = json!("unknown");
                    row["verified"] = json!(false);
                }
                row
            })
            .collect();
        json!(lines)
    }

    /// Starts the view from the checkpoint this page saved last time (verified again now).
    pub fn restore(&mut self, saved: &str) -> Result<(), JsValue> {
        let saved = check_checkpoint(saved.as_bytes(), &self.trust).map_err(|e| {
            thrown(
                "state",
                None,
                format!("the checkpoint saved last time no longer verifies: {e}"),
                None,
            )
        })?;
        self.view.restore(saved);
        Ok(())
    }

    fn shown(&self) -> Result<&VerifiedCheckpoint, JsValue> {
        self.shown
            .as_ref()
            .ok_or_else(|| thrown("config", None, "no checkpoint verified yet".into(), None))
    }

    /// Consistency with the saved view: `{"prove": {"path"}}` (fetch it, give the body to
    /// `viewProof`), or `{"done": true, "report", "save": note|null}`. Throws a split view.
    #[wasm_bindgen(js_name = viewStep)]
    pub fn view_step(&mut self) -> Result<String, JsValue> {
        let shown = self.shown()?.clone();
        if let Some(q) = &self.asking {
            return Ok(
                json!({ "prove": { "path": log_api::consistency(q.old.size, q.new.size) } })
                    .to_string(),
            );
        }
        let step = self.view.observe(&shown);
        if let Ok(Step::Prove(question)) = step {
            let path = log_api::consistency(question.old.size, question.new.size);
            self.asking = Some(question);
            return Ok(json!({ "prove": { "path": path } }).to_string());
        }
        self.conclude(shown, step)
    }

    /// The log's answer to the consistency question; then as `viewStep`.
    #[wasm_bindgen(js_name = viewProof)]
    pub fn view_proof(&mut self, reply: &[u8]) -> Result<String, JsValue> {
        let shown = self.shown()?.clone();
        let question = self.asking.take().ok_or_else(no_question)?;
        let proof = consistency_answer(reply, &question)?;
        let step = self.view.settle(&question, &proof);
        self.conclude(shown, step)
    }

    fn conclude(
        &mut self,
        shown: VerifiedCheckpoint,
        step: Result<Step, arcane_verifier::timeline::Fork>,
    ) -> Result<String, JsValue> {
        let first = self.view.latest().is_none();
        let (report, save) = match self
            .view
            .conclude(shown, step)
            .map_err(|s| split_view(&s))?
        {
            Verdict::Adopted { report, note } => (report, Some(note)),
            Verdict::Kept(report) => (report, None),
        };
        Ok(json!({ "done": true, "first": first, "report": report, "save": save }).to_string())
    }

    /// The next entry bundle to fetch (a path under the log's URL, without the leading `/`),
    /// or nothing once every entry of the checkpoint is read.
    #[wasm_bindgen(js_name = nextBundle)]
    pub fn next_bundle(&self) -> Option<String> {
        let size = self.shown.as_ref()?.checkpoint.size;
        let done = self.read();
        (done < size).then(|| {
            let index = done / TILE_WIDTH;
            TileCoord {
                kind: TileKind::Entries,
                index,
                width: tile_width(TileKind::Entries, index, size),
            }
            .path()
        })
    }

    /// The bundle `nextBundle` named, at `now_s` (seconds): its entries, each `{index, leafHash,
    /// kind, entry (the entry's JSON view), publisher, publisherTrusted, valid, invalidReason?,
    /// current}`.
    #[wasm_bindgen(js_name = pushBundle)]
    pub fn push_bundle(&mut self, bytes: &[u8], now_s: f64) -> Result<String, JsValue> {
        let size = self.shown()?.checkpoint.size;
        let done = self.read();
        if done >= size {
            return Err(thrown(
                "config",
                None,
                "every entry is read already".into(),
                None,
            ));
        }
        let index = done / TILE_WIDTH;
        let width = tile_width(TileKind::Entries, index, size);
        let entries = parse_entry_bundle(bytes, width)
            .map_err(|e| mismatch(format!("entry bundle {index}: {e}")))?;
        let now = now_s as u64;
        let mut rows = Vec::new();
        for entry in entries {
            let at = self.read();
            let leaf = leaf_hash(entry);
            self.leaves.push(leaf);
            rows.push(self.describe(at, &leaf, entry, now));
        }
        Ok(serde_json::Value::Array(rows).to_string())
    }

    fn describe(&mut self, index: u64, leaf: &Hash, bytes: &[u8], now: u64) -> serde_json::Value {
        let Ok(signed) = SignedEntry::decode(bytes) else {
            return json!({ "index": index, "leafHash": leaf.to_hex(), "kind": "opaque", "valid": false,
                "invalidReason": "not a typed entry", "current": false });
        };
        let publisher = signed.verify_signature(&self.trust.publishers);
        let validity = self.trust.policy.validate(&signed.entry);
        // The key-set overlaps are decided once, over every window, in `finish`.
        let window = KeyWindow::of(index, &signed);
        let kind = match &window {
            Some(w) => w.group.clone(),
            None => signed.entry.body.kind_name(),
        };
        self.windows.extend(window);
        json!({
            "index": index,
            "leafHash": leaf.to_hex(),
            "kind": kind,
            "entry": signed.view(),
            "publisher": hex::encode(signed.entry.publisher.0),
            "publisherTrusted": publisher.as_ref().ok().map(|k| k.name().to_owned()),
            "valid": validity.is_ok(),
            "invalidReason": validity.err().map(|e| e.to_string()),
            "current": signed.entry.check_time(now).is_ok(),
        })
    }

    /// Once every bundle is read: the recomputed root must be the checkpoint's. Throws a
    /// `tampered` error otherwise; returns the key timeline `{windows, overlaps}`.
    pub fn finish(&self) -> Result<String, JsValue> {
        let shown = self.shown()?;
        let c = &shown.checkpoint;
        if self.read() != c.size {
            return Err(thrown(
                "config",
                None,
                format!("{} of {} entries read", self.read(), c.size),
                None,
            ));
        }
        let root = root_from_leaf_hashes(&self.leaves);
        if root != c.root {
            return Err(mismatch(format!(
                "the log's entries hash to {} but its signed checkpoint says {}: the log served \
                 entries that are not the ones it signed",
                root.to_hex(),
                c.root.to_hex()
            )));
        }
        let mut all = Vec::new();
        for (i, w) in self.windows.iter().enumerate() {
            all.extend(overlaps(w, &self.windows[..i], self.rotation_overlap));
        }
        Ok(json!({
            "size": c.size,
            "root": c.root.to_hex(),
            "windows": self.windows,
            "overlaps": all.iter().map(|o| json!({"group": o.group, "first": o.first, "second": o.second,
                "seconds": o.seconds, "message": o.to_string()})).collect::<Vec<_>>(),
        })
        .to_string())
    }

    /// Where the inclusion proof of entry `index` in the verified checkpoint's tree is.
    #[wasm_bindgen(js_name = inclusionPath)]
    pub fn inclusion_path(&self, index: f64) -> Result<String, JsValue> {
        let size = self.shown()?.checkpoint.size;
        Ok(log_api::inclusion(Leaf::Index(index as u64), Some(size)))
    }

    /// Verifies the log's inclusion proof for entry `index` (as read from its bundle) against
    /// the verified checkpoint; throws when it fails.
    #[wasm_bindgen(js_name = proveEntry)]
    pub fn prove_entry(&self, index: f64, reply: &[u8]) -> Result<(), JsValue> {
        let c = &self.shown()?.checkpoint;
        let index = index as u64;
        let leaf = *self
            .leaves
            .get(index as usize)
            .ok_or_else(|| thrown("config", None, format!("entry {index} is not read"), None))?;
        let (reply, proof) = InclusionReply::parse(reply).map_err(|e| mismatch(e.to_string()))?;
        if reply.index != index || reply.tree_size != c.size {
            return Err(mismatch(format!(
                "asked for entry {index} at size {}, the log proved entry {} at size {}",
                c.size, reply.index, reply.tree_size
            )));
        }
        verify_inclusion(index, c.size, &leaf, &proof, &c.root)
            .map_err(|e| mismatch(format!("entry {index}: its inclusion proof fails: {e}")))
    }

    /// What the log must answer to re-check `receipt` (a receipt's JSON, one line of
    /// `receipts.jsonl`): `{consistency: path|null, inclusion, entry}`.
    #[wasm_bindgen(js_name = receiptPlan)]
    pub fn receipt_plan(&self, receipt: &str) -> Result<String, JsValue> {
        let receipt = parse_receipt(receipt)?;
        let c = &self.shown()?.checkpoint;
        let consistency = (receipt.checkpoint_size > 0 && receipt.checkpoint_size < c.size)
            .then(|| log_api::consistency(receipt.checkpoint_size, c.size));
        Ok(json!({
            "consistency": consistency,
            "inclusion": log_api::inclusion(Leaf::Index(receipt.release_index), Some(receipt.checkpoint_size)),
            "entry": log_api::entry_at(receipt.release_index),
        })
        .to_string())
    }

    /// Re-checks `receipt` with the log's answers to `receiptPlan` (`consistency` empty when
    /// the plan had none): `{receipt, rechecks: [{check, passed, detail}], record: [...]}`.
    #[wasm_bindgen(js_name = recheckReceipt)]
    pub fn recheck_receipt(
        &self,
        receipt: &str,
        consistency: &[u8],
        inclusion: &[u8],
        entry: &[u8],
    ) -> Result<String, JsValue> {
        let receipt = parse_receipt(receipt)?;
        let c = &self.shown()?.checkpoint;
        let unreadable =
            |what: &str, e: arcane_verifier::Error| mismatch(format!("the log's {what}: {e}"));
        let consistency = if consistency.is_empty() {
            Vec::new()
        } else {
            ConsistencyReply::parse(consistency, receipt.checkpoint_size, c.size)
                .map_err(|e| unreadable("consistency proof", e))?
        };
        let (reply, inclusion) =
            InclusionReply::parse(inclusion).map_err(|e| unreadable("inclusion proof", e))?;
        if reply.index != receipt.release_index || reply.tree_size != receipt.checkpoint_size {
            return Err(mismatch(
                "the log proved another entry or tree size than asked".into(),
            ));
        }
        let entry =
            EntryReply::parse(entry, receipt.release_index).map_err(|e| unreadable("entry", e))?;
        let rechecks = recheck(
            &receipt,
            &self.trust,
            &LogEvidence {
                current: c,
                consistency: &consistency,
                inclusion: &inclusion,
                entry: &entry,
            },
        );
        Ok(
            json!({ "receipt": receipt, "rechecks": rechecks, "record": receipt.checks })
                .to_string(),
        )
    }
}

impl Explorer {
    /// How many entries of the checkpoint are read.
    fn read(&self) -> u64 {
        self.leaves.len() as u64
    }
}

fn parse_receipt(text: &str) -> Result<Receipt, JsValue> {
    serde_json::from_str(text.trim()).map_err(|e| config_error("the receipt", e))
}
