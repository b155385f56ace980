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

/// The issuer keys the log vouches for, per role (several during a rotation).
#[derive(Clone, Debug, Default)]
pub struct TokenKeySet {
    /// TGT issuer keys.
    pub tgt: Vec<IssuerKey>,
    /// OTT issuer keys.
    pub ott: Vec<IssuerKey>,
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
            let EntryBody::TokenKey(k) = &verified.verified.entry.entry.body else {
                continue;
            };
            let key = IssuerKey::from_spki(&k.spki_der)?;
            match k.role {
                TokenRole::Tgt => set.tgt.push(key),
                TokenRole::Ott => set.ott.push(key),
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
        let tgt = keys
            .tgt
            .iter()
            .find(|k| k.id() == material.tgt.token_key_id)
            .ok_or("the TGT is from an issuer key the log does not vouch for")?;
        let ott = keys
            .ott
            .iter()
            .find(|k| k.id() == material.ott.token_key_id)
            .ok_or("the OTT is from an issuer key the log does not vouch for")?;
        material
            .verify(tgt, ott, self.max_index, Some(gateway))
            .map_err(|e| e.to_string())
    }
}
