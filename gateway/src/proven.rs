//! What the gateway serves only with a proof: its OHTTP key configurations and token issuer
//! keys, each matched to a verified `ohttp-keys` or `token-key` entry in the log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arcane_log_client::LogClient;
use arcane_verifier::bundle::{VerifiedEntry, verify_bundle};
use arcane_verifier::entry::{EntryBody, TokenRole, encode_key_config};
use arcane_verifier::fraud_data::FraudDataKey;
use arcane_verifier::tokens::{IssuerKey, IssuerSecret};
use ohttp::KeyConfig;

use crate::error::{GatewayError, Result};

pub use arcane_verifier::bundle::LogTrust;

/// A verified entry with the bundle text that proves it.
#[derive(Clone, Debug)]
pub struct Proven {
    /// The bundle text.
    pub bundle: String,
    /// The verified entry.
    pub verified: VerifiedEntry,
}

/// The HTTP client the gateway and relay use towards nodes: it follows no redirect (a peer
/// cannot point it anywhere else) and gives up on a peer that does not connect. (The log is read
/// through `arcane-log-client`, which does the same.)
pub fn peer_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        // Below the servers' idle limit (their header timeout), so a pooled connection is not
        // reused just as the other side closes it.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| GatewayError::Config(e.to_string()))
}

/// Fetches every currently valid entry of `kind` from `log`, keeping those whose bundles verify.
pub async fn bundles_of_kind(
    log: &LogClient,
    trust: &LogTrust,
    kind: &str,
    now: u64,
) -> Result<Vec<Proven>> {
    let list = log.bundles_of_kind(kind, None).await?;
    Ok(list
        .bundles
        .into_iter()
        .filter_map(|bundle| {
            let verified = verify_bundle(bundle.as_bytes(), &trust.anchors(), None, now).ok()?;
            Some(Proven { bundle, verified })
        })
        .collect())
}

impl Proven {
    /// Whether the entry's validity window holds `now`.
    pub fn valid_at(&self, now: u64) -> bool {
        self.verified.entry.entry.check_time(now).is_ok()
    }

    /// The end of the entry's validity window (exclusive), seconds since the epoch.
    pub fn not_after(&self) -> u64 {
        self.verified.entry.entry.not_after
    }

    fn not_before(&self) -> u64 {
        self.verified.entry.entry.not_before
    }
}

/// An OHTTP key configuration the log vouches for.
pub struct ProvenOhttpKey {
    /// The configuration, with its private key.
    pub config: KeyConfig,
    /// Its encoding (RFC 9458 §3).
    pub encoded: Vec<u8>,
    /// The entry and proof.
    pub proof: Proven,
}

/// Matches each local key configuration with a valid `ohttp-keys` entry; a key without one is
/// left out (never served, never used to decrypt).
pub fn prove_ohttp_keys(
    configs: Vec<KeyConfig>,
    entries: &[Proven],
) -> Result<Vec<ProvenOhttpKey>> {
    let mut out = Vec::new();
    for config in configs {
        let encoded = config
            .encode()
            .map_err(|e| GatewayError::Ohttp(e.to_string()))?;
        let proof = entries.iter().find(|p| match &p.verified.entry.entry.body {
            EntryBody::OhttpKeys(c) => encode_key_config(c).is_ok_and(|e| e == encoded),
            _ => false,
        });
        match proof {
            Some(p) => out.push(ProvenOhttpKey {
                config,
                encoded,
                proof: p.clone(),
            }),
            None => tracing::warn!(
                key_id = encoded.first().copied().unwrap_or(0),
                "an OHTTP key has no valid ohttp-keys entry in the log; it is not served"
            ),
        }
    }
    Ok(out)
}

/// A token issuer key the log vouches for.
pub struct ProvenIssuer {
    /// The key pair.
    pub secret: IssuerSecret,
    /// The entry and proof.
    pub proof: Proven,
}

impl ProvenIssuer {
    /// The role its entry gives it.
    pub fn role(&self) -> Option<TokenRole> {
        match &self.proof.verified.entry.entry.body {
            EntryBody::TokenKey(k) => Some(k.role),
            _ => None,
        }
    }
}

/// Matches a local issuer key with a valid `token-key` entry of `role`.
pub fn prove_issuer(
    secret: IssuerSecret,
    role: TokenRole,
    entries: &[Proven],
) -> Result<ProvenIssuer> {
    let proof = entries
        .iter()
        .find(|p| match &p.verified.entry.entry.body {
            EntryBody::TokenKey(k) => k.role == role && k.spki_der == secret.public().spki(),
            _ => false,
        })
        .cloned()
        .ok_or_else(|| {
            GatewayError::Unproven(format!(
                "the {} issuer key has no valid token-key entry in the log",
                role.as_str()
            ))
        })?;
    Ok(ProvenIssuer { secret, proof })
}

/// Everything the gateway serves or uses under the log's proof, as of one refresh: every local
/// OHTTP key and token issuer key with a valid entry. Each use checks the entry's window again
/// at that moment, so a key stops being served and used the second its entry expires, whether
/// or not a refresh has happened since.
#[derive(Default)]
pub struct KeyRing {
    /// Proven OHTTP keys.
    pub ohttp: Vec<ProvenOhttpKey>,
    /// Proven TGT issuer keys.
    pub tgt: Vec<ProvenIssuer>,
    /// Proven OTT issuer keys.
    pub ott: Vec<ProvenIssuer>,
    /// Proven fraud-data keys (the fraud detection service's), of every class.
    pub fraud_data: Vec<ProvenIssuer>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("ohttp", &self.ohttp.len())
            .field("tgt", &self.tgt.len())
            .field("ott", &self.ott.len())
            .field("fraud_data", &self.fraud_data.len())
            .finish()
    }
}

impl KeyRing {
    /// The OHTTP keys valid at `now`: only these are served and decrypt.
    pub fn ohttp_at(&self, now: u64) -> impl Iterator<Item = &ProvenOhttpKey> {
        self.ohttp.iter().filter(move |k| k.proof.valid_at(now))
    }

    fn issuers(&self, role: TokenRole) -> impl Iterator<Item = &ProvenIssuer> {
        let keys = match role {
            TokenRole::Tgt => &self.tgt,
            TokenRole::Ott => &self.ott,
            TokenRole::FraudData(_) => &self.fraud_data,
        };
        keys.iter().filter(move |i| i.role() == Some(role))
    }

    /// The fraud-data keys valid at `now`, each with its class and window: what the token
    /// granting service checks fraud data against.
    pub fn fraud_data_keys(&self, now: u64) -> Vec<FraudDataKey> {
        self.fraud_data
            .iter()
            .filter(|i| i.proof.valid_at(now))
            .filter_map(|i| match i.role() {
                Some(TokenRole::FraudData(class)) => Some(FraudDataKey {
                    class,
                    key: i.secret.public().clone(),
                    not_before: i.proof.not_before(),
                    not_after: i.proof.not_after(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The classes of the fraud-data keys valid at `now`.
    pub fn fraud_data_classes(&self, now: u64) -> Vec<u8> {
        let mut classes: Vec<u8> = self.fraud_data_keys(now).iter().map(|k| k.class).collect();
        classes.sort_unstable();
        classes.dedup();
        classes
    }

    /// The `role` issuer keys valid at `now`, newest entry (latest `not_before`) first.
    pub fn issuers_at(&self, role: TokenRole, now: u64) -> Vec<&ProvenIssuer> {
        let mut valid: Vec<&ProvenIssuer> = self
            .issuers(role)
            .filter(|i| i.proof.valid_at(now))
            .collect();
        valid.sort_by_key(|i| std::cmp::Reverse(i.proof.not_before()));
        valid
    }

    /// The key new `role` tokens are meant for at `now`: the valid one with the newest entry
    /// (the same rule a client uses to pick the key it blinds to).
    pub fn signing_issuer(&self, role: TokenRole, now: u64) -> Option<&ProvenIssuer> {
        self.issuers_at(role, now).into_iter().next()
    }

    /// The valid `role` key a token request was blinded to (by its truncated key id), newest
    /// first: a client that fetched the key list just before a rotation still gets its tokens.
    pub fn issuer_for_request(
        &self,
        role: TokenRole,
        truncated_key_id: u8,
        now: u64,
    ) -> Option<&ProvenIssuer> {
        let matching: Vec<_> = self
            .issuers_at(role, now)
            .into_iter()
            .filter(|i| i.secret.public().id()[31] == truncated_key_id)
            .collect();
        if matching.len() > 1 {
            // Keys made by `keys::generate_issuer_key` never collide; keys made elsewhere can.
            tracing::warn!(
                truncated_key_id,
                "several valid issuer keys share a truncated key id; requests blinded to all but the newest will not finalize"
            );
        }
        matching
            .into_iter()
            .max_by_key(|i| i.proof.verified.entry.entry.not_before)
    }

    /// The OHTTP keys to offer clients at `now`: those valid now, less the ones in a handover —
    /// just published (relays and nodes may not know them yet) or about to expire (a client
    /// caching the list would hold a key that expires under it) — whenever a key that is in
    /// neither is there.
    pub fn ohttp_offered(&self, now: u64) -> Vec<&ProvenOhttpKey> {
        offered(self.ohttp_at(now).collect(), |k| in_handover(&k.proof, now))
    }

    /// The `role` issuer keys to offer clients at `now`, newest first, by the same rule as
    /// [`KeyRing::ohttp_offered`].
    pub fn issuers_offered(&self, role: TokenRole, now: u64) -> Vec<&ProvenIssuer> {
        offered(self.issuers_at(role, now), |i| in_handover(&i.proof, now))
    }

    /// The `role` key with token key id `id`, if it is valid at `now`.
    pub fn issuer_with_id(
        &self,
        role: TokenRole,
        id: &[u8; 32],
        now: u64,
    ) -> Option<&ProvenIssuer> {
        self.issuers(role)
            .find(|i| i.proof.valid_at(now) && &i.secret.public().id() == id)
    }

    /// Whether, at `now`, the ring can serve: an OHTTP key and both issuers valid.
    pub fn missing_at(&self, now: u64) -> Option<&'static str> {
        if self.ohttp_at(now).next().is_none() {
            Some("no OHTTP key has a valid ohttp-keys entry in the log")
        } else if self.signing_issuer(TokenRole::Tgt, now).is_none() {
            Some("no TGT issuer key has a valid token-key entry in the log")
        } else if self.signing_issuer(TokenRole::Ott, now).is_none() {
            Some("no OTT issuer key has a valid token-key entry in the log")
        } else {
            None
        }
    }
}

/// Whether `proof`'s entry is in a handover at `now`: warming up (relays and nodes may not have
/// picked it up yet) or retiring (clients should move on) — see
/// [`arcane_verifier::entry::Entry::warming_up`] and [`arcane_verifier::entry::Entry::retiring`].
fn in_handover(proof: &Proven, now: u64) -> bool {
    let entry = &proof.verified.entry.entry;
    entry.warming_up(now) || entry.retiring(now)
}

/// The keys to offer among those `valid`: the ones not in a handover, when there are any.
fn offered<T>(valid: Vec<T>, in_handover: impl Fn(&T) -> bool) -> Vec<T> {
    if valid.iter().all(&in_handover) {
        return valid;
    }
    valid.into_iter().filter(|k| !in_handover(k)).collect()
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Config(format!("{}: {e}", path.display()))
}

/// The key files in `dir` whose names start with `prefix` and end in `.key`, sorted by name.
fn key_files(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| file_error(dir, e))? {
        let path = entry.map_err(|e| file_error(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(prefix) && name.ends_with(".key") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// Reads every key file in `dir` (`ohttp*.key`, `tgt*.key`, `ott*.key`, `fraud*.key`: old and
/// new keys side by side during a rotation) and keeps those the log proves at `now`. Keys without a valid
/// entry are left out with a warning; a ring missing a kind is the caller's to judge
/// ([`KeyRing::missing_at`]).
pub async fn load_key_ring(
    log: &LogClient,
    dir: &Path,
    trust: &LogTrust,
    now: u64,
) -> Result<KeyRing> {
    let ohttp_entries = bundles_of_kind(log, trust, "ohttp-keys", now).await?;
    let token_entries = bundles_of_kind(log, trust, "token-key", now).await?;
    let configs = key_files(dir, "ohttp")?
        .iter()
        .map(|p| crate::keys::load_ohttp_key(p))
        .collect::<Result<Vec<_>>>()?;
    let mut ring = KeyRing {
        ohttp: prove_ohttp_keys(configs, &ohttp_entries)?,
        ..KeyRing::default()
    };
    for (prefix, role) in [("tgt", TokenRole::Tgt), ("ott", TokenRole::Ott)] {
        for path in key_files(dir, prefix)? {
            let secret = crate::keys::load_issuer_key(&path)?;
            match prove_issuer(secret, role, &token_entries) {
                Ok(issuer) => match role {
                    TokenRole::Tgt => ring.tgt.push(issuer),
                    _ => ring.ott.push(issuer),
                },
                Err(_) => tracing::warn!(
                    file = %path.display(),
                    "a token issuer key has no valid token-key entry in the log; it is not used"
                ),
            }
        }
    }
    // The fraud detection service's keys (`fraud*.key`): the class is the entry's.
    for path in key_files(dir, "fraud")? {
        let secret = crate::keys::load_issuer_key(&path)?;
        let proof = token_entries.iter().find(|p| {
            matches!(&p.verified.entry.entry.body, EntryBody::TokenKey(k)
                if matches!(k.role, TokenRole::FraudData(_)) && k.spki_der == secret.public().spki())
        });
        match proof {
            Some(proof) => ring.fraud_data.push(ProvenIssuer {
                secret,
                proof: proof.clone(),
            }),
            None => tracing::warn!(
                file = %path.display(),
                "a fraud-data key has no valid token-key entry in the log; it is not used"
            ),
        }
    }
    Ok(ring)
}

/// The OTT issuer keys the log vouches for, each with its entry's window: what a relay admits.
#[derive(Clone, Debug, Default)]
pub struct LoggedOttKeys {
    keys: Vec<(IssuerKey, u64, u64)>,
}

impl LoggedOttKeys {
    /// The `ott` role keys among `entries`.
    pub fn from_entries(entries: &[Proven]) -> Self {
        let keys = entries
            .iter()
            .filter_map(|p| {
                let entry = &p.verified.entry.entry;
                match &entry.body {
                    EntryBody::TokenKey(k) if k.role == TokenRole::Ott => {
                        IssuerKey::from_spki(&k.spki_der)
                            .ok()
                            .map(|key| (key, entry.not_before, entry.not_after))
                    }
                    _ => None,
                }
            })
            .collect();
        LoggedOttKeys { keys }
    }

    /// The key with id `id`, if its entry is valid at `now`.
    pub fn valid(&self, id: &[u8; 32], now: u64) -> Option<(&IssuerKey, u64)> {
        self.keys
            .iter()
            .find(|(k, from, until)| &k.id() == id && *from <= now && now < *until)
            .map(|(k, _, until)| (k, *until))
    }

    /// Whether any key is valid at `now`.
    pub fn any_valid(&self, now: u64) -> bool {
        self.keys
            .iter()
            .any(|(_, from, until)| *from <= now && now < *until)
    }
}
