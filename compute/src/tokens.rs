//! The token check a node applies to each request's token material (`spec/tokens.md`).
//!
//! The token material (TGT, its secret, the OTT's index and the OTT) travels inside the sealed
//! inner request, so only the node can check the link between the OTT the gateway saw and the
//! TGT. [`LoggedTokenKeys`] checks it against the issuer keys published as `token-key` entries
//! (proof bundles verified, refreshed with the release proof). [`DevelopmentWithoutTokens`]
//! checks nothing and is only reachable with `--development --no-token-check`.

use std::sync::RwLock;

use arcane_verifier::entry::{EntryBody, TokenRole};
use arcane_verifier::tokens::{IssuerKey, TokenMaterial};

use crate::error::{ComputeError, Result};
use crate::release::{LogSource, LogTrust};

/// Checks a request's token material.
pub trait TokenVerifier: Send + Sync + 'static {
    /// `Ok` when the material authorizes the request; otherwise why not (sent to the client
    /// inside the sealed answer, never logged). `gateway_ott_nonce` is the nonce of the OTT the
    /// gateway checked and recorded as spent, as the gateway forwarded it.
    fn verify(
        &self,
        token: Option<&[u8]>,
        gateway_ott_nonce: Option<&[u8; 32]>,
    ) -> std::result::Result<(), String>;
}

/// Development mode: no token check.
#[derive(Debug)]
pub struct DevelopmentWithoutTokens(());

impl DevelopmentWithoutTokens {
    /// The development verifier. Callers must have been told explicitly to run without tokens.
    pub fn for_development() -> Self {
        DevelopmentWithoutTokens(())
    }
}

impl TokenVerifier for DevelopmentWithoutTokens {
    fn verify(&self, _: Option<&[u8]>, _: Option<&[u8; 32]>) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// OTT indices one TGT may derive, by default: the gateway's default allotment per TGT.
pub const DEFAULT_OTTS_PER_TGT: u32 = 256;

/// An issuer key with the validity window of the entry that vouches for it.
#[derive(Clone, Debug)]
pub struct WindowedKey {
    /// The key.
    pub key: IssuerKey,
    /// Start of the entry's validity (seconds since the epoch).
    pub not_before: u64,
    /// End of the entry's validity (exclusive).
    pub not_after: u64,
}

impl WindowedKey {
    fn valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// The issuer keys the log vouches for, per role (several during a rotation).
#[derive(Clone, Debug, Default)]
pub struct TokenKeySet {
    /// TGT issuer keys.
    pub tgt: Vec<WindowedKey>,
    /// OTT issuer keys.
    pub ott: Vec<WindowedKey>,
}

impl TokenKeySet {
    /// The key of `keys` with token key id `id`, if its entry is valid at `now`.
    fn find<'k>(keys: &'k [WindowedKey], id: &[u8; 32], now: u64) -> Option<&'k IssuerKey> {
        keys.iter()
            .find(|k| &k.key.id() == id && k.valid_at(now))
            .map(|k| &k.key)
    }
}

/// Token checks against the `token-key` entries in the log.
#[derive(Debug)]
pub struct LoggedTokenKeys {
    keys: RwLock<TokenKeySet>,
    /// OTTs one TGT may derive (indexes `0..max_index`).
    max_index: u32,
}

impl LoggedTokenKeys {
    /// A verifier over `keys`.
    pub fn new(keys: TokenKeySet, max_index: u32) -> Self {
        LoggedTokenKeys {
            keys: RwLock::new(keys),
            max_index,
        }
    }

    /// Fetches and verifies the currently valid `token-key` entries; fails when a role has none.
    pub async fn fetch(log: &LogSource, trust: &LogTrust, now: u64) -> Result<TokenKeySet> {
        let mut set = TokenKeySet::default();
        for verified in log.bundles_of_kind(trust, "token-key", now).await? {
            let entry = &verified.verified.entry.entry;
            let EntryBody::TokenKey(k) = &entry.body else {
                continue;
            };
            let key = WindowedKey {
                key: IssuerKey::from_spki(&k.spki_der)?,
                not_before: entry.not_before,
                not_after: entry.not_after,
            };
            match k.role {
                TokenRole::Tgt => set.tgt.push(key),
                TokenRole::Ott => set.ott.push(key),
                // The node checks tokens; fraud data stays at the token granting service.
                TokenRole::FraudData(_) => {}
            }
        }
        if set.tgt.is_empty() || set.ott.is_empty() {
            return Err(ComputeError::NoRelease(
                "the log holds no valid token-key entry for the tgt and ott roles".into(),
            ));
        }
        Ok(set)
    }

    /// Replaces the key set (after a refresh).
    pub fn replace(&self, keys: TokenKeySet) {
        *self.keys.write().expect("token keys lock") = keys;
    }
}

impl TokenVerifier for LoggedTokenKeys {
    fn verify(
        &self,
        token: Option<&[u8]>,
        gateway_ott_nonce: Option<&[u8; 32]>,
    ) -> std::result::Result<(), String> {
        let token = token.ok_or("the request carries no token material")?;
        let gateway = gateway_ott_nonce.ok_or("the gateway did not forward the OTT it checked")?;
        let material = TokenMaterial::decode(token).map_err(|e| e.to_string())?;
        let keys = self.keys.read().expect("token keys lock");
        // Windows are checked now, not at the last refresh: an expired key stops on time.
        let now = crate::node::now_seconds();
        let tgt = TokenKeySet::find(&keys.tgt, &material.tgt.token_key_id, now)
            .ok_or("the TGT is from an issuer key the log does not vouch for now")?;
        let ott = TokenKeySet::find(&keys.ott, &material.ott.token_key_id, now)
            .ok_or("the OTT is from an issuer key the log does not vouch for now")?;
        material
            .verify(tgt, ott, self.max_index, Some(gateway))
            .map_err(|e| e.to_string())
    }
}
