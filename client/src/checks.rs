//! The pre-request checks as functions over bytes, without I/O: what the client runs on the
//! checkpoint note, the gateway's key list and the candidate node bundles it fetched. Expensive
//! results (signatures, inclusion proofs, certificate chains) are cached by the SHA-256 of the
//! exact bytes; the policy — validity windows, publisher and kind rules, PCRs, freshness,
//! accepted releases — is evaluated again on every call.

use std::collections::HashMap;
use std::sync::Arc;

use arcane_verifier::attested::{NodeBundle, NodeTrust, VerifiedNode, verify_node_document};
use arcane_verifier::bundle::{LogTrust, VerifiedEntry, verify_bundle};
use arcane_verifier::checkpoint::VerifiedCheckpoint;
use arcane_verifier::entry::{EntryBody, TokenRole, encode_key_config};
use arcane_verifier::fraud_data::FraudDataKey;
use arcane_verifier::nitro::DocumentCache;
use arcane_verifier::tokens::IssuerKey;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::{Check, ClientError, Result};
use crate::trust::Trust;
use crate::view::check_checkpoint;

/// Most entries any one cache holds before it is emptied.
const CACHE_CAPACITY: usize = 4096;

/// A check that passed, as it is reported.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Passed {
    /// Which check.
    pub check: Check,
    /// What it established, in a few words.
    pub detail: String,
}

impl Passed {
    fn new(check: Check, detail: String) -> Self {
        Passed { check, detail }
    }

    /// The lines of a verified checkpoint: its signature and the witness policy.
    pub fn checkpoint(shown: &VerifiedCheckpoint, log: &LogTrust) -> [Passed; 2] {
        let witnesses = if log.witnesses.is_unwitnessed() {
            "none required by this trust configuration".to_owned()
        } else {
            format!(
                "{} of {} required cosigned",
                shown.cosignatures.len(),
                log.witnesses.threshold()
            )
        };
        [
            Passed::new(
                Check::Checkpoint,
                format!(
                    "size {}, signed by {}",
                    shown.checkpoint.size,
                    log.log_key.name()
                ),
            ),
            Passed::new(Check::Witnesses, witnesses),
        ]
    }

    /// The lines of the gateway's verified keys.
    pub fn keys(keys: &GatewayKeys) -> [Passed; 2] {
        [
            Passed::new(
                Check::OhttpKeys,
                format!(
                    "key id {} logged in entry {}",
                    keys.ohttp_config.first().copied().unwrap_or(0),
                    keys.ohttp_entry.index
                ),
            ),
            Passed::new(
                Check::TokenKeys,
                format!(
                    "TGT and OTT issuer keys logged ({} keys checked)",
                    keys.checked
                ),
            ),
        ]
    }

    /// The line of the verified candidates (at least one), at `now_ms`.
    pub fn nodes(candidates: &[Candidate], trust: &Trust, now_ms: u64) -> Passed {
        let Some(first) = candidates.first() else {
            return Passed::new(Check::Nodes, "none verified".into());
        };
        let node = &first.node;
        let pcr0 = match &node.release.entry.entry.body {
            EntryBody::Release(r) => hex::encode(&r.pcr0[..6]),
            _ => String::new(),
        };
        Passed::new(
            Check::Nodes,
            format!(
                "{} verified: PCR0 {pcr0}…, release entry {}, model {} ({}…), attested {} s ago{}",
                candidates.len(),
                node.release.index,
                first.model,
                &hex::encode(node.model_sha256)[..12],
                now_ms.saturating_sub(node.attested_at_ms) / 1000,
                if trust.is_development() {
                    " (DEVELOPMENT root)"
                } else {
                    ""
                }
            ),
        )
    }
}

/// The gateway's keys, each proven by a verified entry.
#[derive(Clone, Debug)]
pub struct GatewayKeys {
    /// The OHTTP key configuration to encapsulate to (the newest valid one).
    pub ohttp_config: Vec<u8>,
    /// Its entry.
    pub ohttp_entry: VerifiedEntry,
    /// The current TGT issuer key (the valid one with the newest entry).
    pub tgt_key: IssuerKey,
    /// The current OTT issuer key (likewise).
    pub ott_key: IssuerKey,
    /// Every TGT issuer key served, with a valid entry (a TGT under another is renewed).
    pub tgt_key_ids: Vec<[u8; 32]>,
    /// Every OTT issuer key served, with a valid entry (tokens under others are unusable).
    pub ott_key_ids: Vec<[u8; 32]>,
    /// The fraud detection service's keys served, each with a valid entry and its class.
    pub fraud_data_keys: Vec<FraudDataKey>,
    /// The checkpoints the proofs were made against (to anchor in the client's view).
    pub checkpoints: Vec<VerifiedCheckpoint>,
    /// How many keys were checked.
    pub checked: usize,
    /// When the first of these keys starts retiring: from then on the gateway offers its
    /// successor, and a list kept from before is stale.
    pub stale_at: u64,
}

impl GatewayKeys {
    /// The keys the wallet blinds tokens to, and those whose tokens it keeps.
    pub fn token_keys(&self) -> crate::wallet::TokenKeys {
        crate::wallet::TokenKeys {
            tgt: self.tgt_key.clone(),
            ott: self.ott_key.clone(),
            valid_tgt_ids: self.tgt_key_ids.clone(),
            valid_ott_ids: self.ott_key_ids.clone(),
            fraud_data: self.fraud_data_keys.clone(),
        }
    }
}

/// A candidate node that passed every check.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The verified node.
    pub node: VerifiedNode,
    /// The model name its release is listed under (the gateway's word; the node checks it).
    pub model: String,
    /// SHA-256 of the bundle as received.
    pub bundle_digest: [u8; 32],
}

/// The checks and their caches.
#[derive(Debug)]
pub struct Checks {
    trust: Arc<Trust>,
    checkpoints: HashMap<[u8; 32], VerifiedCheckpoint>,
    bundles: HashMap<[u8; 32], VerifiedEntry>,
    documents: DocumentCache,
    /// The last key list that verified: its digest, the keys and their entries.
    keys_cache: Option<([u8; 32], GatewayKeys, Vec<VerifiedEntry>)>,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn remember<V>(map: &mut HashMap<[u8; 32], V>, key: [u8; 32], value: V) {
    if map.len() >= CACHE_CAPACITY {
        map.clear();
    }
    map.insert(key, value);
}

#[derive(serde::Deserialize)]
struct KeyList {
    keys: Vec<KeyWithProof>,
}

#[derive(serde::Deserialize)]
struct KeyWithProof {
    kind: String,
    #[serde(default)]
    role: Option<String>,
    key: String,
    bundle: String,
}

/// The gateway's `/v1/nodes` answer.
#[derive(serde::Deserialize)]
pub struct NodeList {
    /// Node bundles, least loaded first.
    pub nodes: Vec<serde_json::Value>,
    /// Model names by digest.
    #[serde(default)]
    pub models: Vec<ModelListing>,
}

/// One model the gateway lists.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct ModelListing {
    /// Its name.
    pub id: String,
    /// SHA-256 of the model file, hex.
    pub model_sha256: String,
}

impl Checks {
    /// Empty caches under `trust` (a `Trust` or a shared `Arc<Trust>`).
    pub fn new(trust: impl Into<Arc<Trust>>) -> Self {
        Checks {
            trust: trust.into(),
            checkpoints: HashMap::new(),
            bundles: HashMap::new(),
            documents: DocumentCache::default(),
            keys_cache: None,
        }
    }

    /// What the checks trust.
    pub fn trust(&self) -> &Arc<Trust> {
        &self.trust
    }

    /// A signed checkpoint note: the log's signature and the witness policy.
    pub fn checkpoint(&mut self, note: &[u8]) -> Result<VerifiedCheckpoint> {
        let key = digest(note);
        if let Some(hit) = self.checkpoints.get(&key) {
            return Ok(hit.clone());
        }
        let verified = check_checkpoint(note, &self.trust.log)?;
        remember(&mut self.checkpoints, key, verified.clone());
        Ok(verified)
    }

    /// A proof bundle at `now` (seconds): signatures and proof from the cache when these exact
    /// bytes verified before, then the entry's kind rules and validity window, always.
    pub fn bundle(
        &mut self,
        bytes: &[u8],
        now: u64,
    ) -> Result<VerifiedEntry, arcane_verifier::Error> {
        let key = digest(bytes);
        if let Some(hit) = self.bundles.get(&key) {
            self.trust.log.policy.validate(&hit.entry.entry)?;
            hit.entry.entry.check_time(now)?;
            return Ok(hit.clone());
        }
        let verified = verify_bundle(bytes, &self.trust.log.anchors(), None, now)?;
        remember(&mut self.bundles, key, verified.clone());
        Ok(verified)
    }

    /// The gateway's `/v1/keys` answer: every key it serves must be exactly the key of a
    /// verified entry of its kind (one that is not refuses them all: a gateway serving an
    /// unlogged key is not trusted with the others), and there must be an OHTTP key and both
    /// token keys.
    pub fn keys(&mut self, answer: &[u8], now: u64) -> Result<GatewayKeys> {
        let key = digest(answer);
        if let Some((cached, keys, entries)) = &self.keys_cache
            && *cached == key
        {
            // The same answer as before: its proofs and keys are known good; the rules and
            // validity windows of every entry are applied again.
            for entry in entries {
                let check = match entry.entry.entry.body {
                    EntryBody::OhttpKeys(_) => Check::OhttpKeys,
                    _ => Check::TokenKeys,
                };
                self.trust
                    .log
                    .policy
                    .validate(&entry.entry.entry)
                    .and_then(|()| entry.entry.entry.check_time(now))
                    .map_err(|e| {
                        ClientError::refused(check, format!("entry {}: {e}", entry.index))
                    })?;
            }
            return Ok(keys.clone());
        }
        self.keys_cache = None;
        let (keys, entries) = self.keys_uncached(answer, now)?;
        self.keys_cache = Some((key, keys.clone(), entries));
        Ok(keys)
    }

    fn keys_uncached(
        &mut self,
        answer: &[u8],
        now: u64,
    ) -> Result<(GatewayKeys, Vec<VerifiedEntry>)> {
        let list: KeyList = serde_json::from_slice(answer).map_err(|e| {
            ClientError::refused(Check::OhttpKeys, format!("the key list is unreadable: {e}"))
        })?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ohttp: Option<(Vec<u8>, VerifiedEntry)> = None;
        // Per role, the key with the newest entry: the one the gateway signs new tokens with.
        let mut tgt_key: Option<(IssuerKey, u64)> = None;
        let mut ott_key: Option<(IssuerKey, u64)> = None;
        let mut ott_key_ids = Vec::new();
        let mut tgt_key_ids = Vec::new();
        let mut fraud_data_keys = Vec::new();
        let mut checkpoints: Vec<VerifiedCheckpoint> = Vec::new();
        let mut entries = Vec::with_capacity(list.keys.len());
        for served in &list.keys {
            let check = if served.kind == "ohttp-keys" {
                Check::OhttpKeys
            } else {
                Check::TokenKeys
            };
            let key = b64.decode(&served.key).map_err(|_| {
                ClientError::refused(check, format!("a served {} key is not base64", served.kind))
            })?;
            let entry = self.bundle(served.bundle.as_bytes(), now).map_err(|e| {
                ClientError::refused(
                    check,
                    format!("a served {} key has no valid proof: {e}", served.kind),
                )
            })?;
            match (&entry.entry.entry.body, served.kind.as_str()) {
                (EntryBody::OhttpKeys(config), "ohttp-keys") => {
                    let logged =
                        encode_key_config(config).map_err(|e| ClientError::refused(check, e))?;
                    if logged != key {
                        return Err(ClientError::refused(
                            check,
                            format!(
                                "the gateway serves OHTTP key id {} that is not the one its proof logs (entry {})",
                                key.first().copied().unwrap_or(0),
                                entry.index
                            ),
                        ));
                    }
                    let newer = ohttp.as_ref().is_none_or(|(_, e)| {
                        entry.entry.entry.not_before > e.entry.entry.not_before
                    });
                    if newer {
                        ohttp = Some((key, entry.clone()));
                    }
                }
                (EntryBody::TokenKey(t), "token-key") => {
                    if t.spki_der != key {
                        return Err(ClientError::refused(
                            check,
                            format!(
                                "the served {:?} key is not the one its proof logs",
                                served.role
                            ),
                        ));
                    }
                    let issuer =
                        IssuerKey::from_spki(&key).map_err(|e| ClientError::refused(check, e))?;
                    let not_before = entry.entry.entry.not_before;
                    let newest = |held: &Option<(IssuerKey, u64)>| {
                        held.as_ref().is_none_or(|(_, nb)| not_before > *nb)
                    };
                    match (t.role, served.role.as_deref()) {
                        (TokenRole::Tgt, Some("tgt")) => {
                            tgt_key_ids.push(issuer.id());
                            if newest(&tgt_key) {
                                tgt_key = Some((issuer, not_before));
                            }
                        }
                        (TokenRole::Ott, Some("ott")) => {
                            ott_key_ids.push(issuer.id());
                            if newest(&ott_key) {
                                ott_key = Some((issuer, not_before));
                            }
                        }
                        (TokenRole::FraudData(class), Some("fraud-data")) => {
                            fraud_data_keys.push(FraudDataKey {
                                class,
                                key: issuer,
                                not_before,
                                not_after: entry.entry.entry.not_after,
                            });
                        }
                        _ => {
                            return Err(ClientError::refused(
                                check,
                                "a token key is served under another role than its entry's",
                            ));
                        }
                    }
                }
                (body, kind) => {
                    return Err(ClientError::refused(
                        check,
                        format!(
                            "a key served as {kind} is proven by a {} entry",
                            body.kind_name()
                        ),
                    ));
                }
            }
            if !checkpoints.iter().any(|c| c.note == entry.checkpoint.note) {
                checkpoints.push(entry.checkpoint.clone());
            }
            entries.push(entry);
        }
        let (ohttp_config, ohttp_entry) = ohttp.ok_or_else(|| {
            ClientError::refused(
                Check::OhttpKeys,
                "the gateway serves no OHTTP key with a valid entry",
            )
        })?;
        let (tgt_key, _) = tgt_key.ok_or_else(|| {
            ClientError::refused(Check::TokenKeys, "no TGT issuer key with a valid entry")
        })?;
        let (ott_key, _) = ott_key.ok_or_else(|| {
            ClientError::refused(Check::TokenKeys, "no OTT issuer key with a valid entry")
        })?;
        Ok((
            GatewayKeys {
                ohttp_config,
                ohttp_entry,
                tgt_key,
                ott_key,
                tgt_key_ids,
                ott_key_ids,
                fraud_data_keys,
                checkpoints,
                checked: list.keys.len(),
                stale_at: entries
                    .iter()
                    .map(|e| e.entry.entry.retires_at())
                    .min()
                    .unwrap_or(0),
            },
            entries,
        ))
    }

    /// One candidate node bundle at `now_ms`: its release entry (proof, publisher, validity,
    /// accepted releases), its document (chain to the trusted root), the release policy (PCRs,
    /// not debug, fresh, `user_data` binding model and release) and its REK. `models` maps the
    /// verified model digest to a name.
    pub fn node(
        &mut self,
        bundle_json: &serde_json::Value,
        models: &[ModelListing],
        now_ms: u64,
    ) -> Result<Candidate> {
        let refused = |e: &dyn std::fmt::Display| ClientError::refused(Check::Nodes, e);
        let bundle =
            NodeBundle::parse(bundle_json.to_string().as_bytes()).map_err(|e| refused(&e))?;
        let release = self
            .bundle(bundle.release.as_bytes(), now_ms / 1000)
            .map_err(|e| refused(&format!("release entry: {e}")))?;
        let EntryBody::Release(r) = &release.entry.entry.body else {
            return Err(refused(&"the node's proof is not a release entry"));
        };
        if !self.trust.accepted_releases.is_empty()
            && !self.trust.accepted_releases.contains(&release.leaf_hash)
        {
            return Err(refused(&format!(
                "release entry {} is not among the accepted releases",
                release.index
            )));
        }
        let model_sha256 = r.model_sha256;
        let index = release.index;
        let anchors = self.trust.log.anchors();
        let node_trust = NodeTrust {
            anchors,
            nitro_root: &self.trust.nitro_root,
            attestation: &self.trust.attestation,
        };
        let node = verify_node_document(
            &bundle.document,
            release,
            &node_trust,
            now_ms,
            None,
            &mut self.documents,
        )
        .map_err(|e| refused(&format!("attestation (release entry {index}): {e}")))?;
        let model = models
            .iter()
            .find(|m| m.model_sha256 == hex::encode(model_sha256))
            .map(|m| m.id.clone())
            .ok_or_else(|| refused(&"the gateway names no model for this node's model digest"))?;
        Ok(Candidate {
            bundle_digest: bundle.digest(),
            model,
            node,
        })
    }
}
