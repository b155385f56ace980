//! What the gateway serves only with a proof: its OHTTP key configurations and token issuer
//! keys, each matched to a verified `ohttp-keys` or `token-key` entry in the log.

use std::time::Duration;

use arcane_verifier::bundle::{VerifiedEntry, verify_bundle};
use arcane_verifier::entry::{EntryBody, TokenRole, encode_key_config};
use arcane_verifier::tokens::IssuerSecret;
use ohttp::KeyConfig;
use serde::Deserialize;

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

#[derive(Deserialize)]
struct BundlesReply {
    bundles: Vec<String>,
}

/// Fetches every currently valid entry of `kind` from the log at `base`, keeping those whose
/// bundles verify.
pub async fn bundles_of_kind(
    base: &str,
    trust: &LogTrust,
    kind: &str,
    now: u64,
) -> Result<Vec<Proven>> {
    let url = format!("{}/v1/bundles?kind={kind}", base.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .map_err(|e| GatewayError::Log(format!("{url}: {e}")))?;
    if !response.status().is_success() {
        return Err(GatewayError::Log(format!("{url}: {}", response.status())));
    }
    let reply: BundlesReply = response
        .json()
        .await
        .map_err(|e| GatewayError::Log(format!("{url}: {e}")))?;
    Ok(reply
        .bundles
        .into_iter()
        .filter_map(|bundle| {
            let verified = verify_bundle(bundle.as_bytes(), &trust.anchors(), None, now).ok()?;
            Some(Proven { bundle, verified })
        })
        .collect())
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
