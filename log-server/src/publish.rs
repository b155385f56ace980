//! The operators' publishing flow: build a typed entry, sign it, submit it, wait for it to be
//! integrated, fetch its proof bundle and verify that bundle before reporting success.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use arcane_verifier::bundle::{TrustAnchors, VerifiedEntry, verify_bundle};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::eif::{EifMeasurements, measure};
use arcane_verifier::entry::{
    Entry, EntryBody, EntryPolicy, OhttpKeyConfig, PublisherId, Release, TOKEN_TYPE_BLIND_RSA,
    TokenKey, TokenRole, decode_key_config,
};
use arcane_verifier::note::{NoteSigner, VerifierKey};

use crate::client::LogClient;
use crate::error::{LogError, Result};

/// Seconds since the Unix epoch.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a successful publication reports.
#[derive(Debug)]
pub struct Published {
    /// The bundle's text, as served by the log.
    pub bundle: String,
    /// The verified entry.
    pub verified: VerifiedEntry,
}

/// Signs `body` for `[now, now + validity)`, submits it, waits for it, and verifies its bundle
/// against `log_key` (no witnesses are required of a freshly published entry).
pub async fn publish(
    client: &LogClient,
    publisher: &NoteSigner,
    log_key: &VerifierKey,
    body: EntryBody,
    validity: Duration,
) -> Result<Published> {
    let now = now_seconds();
    let entry = Entry {
        not_before: now,
        not_after: now + validity.as_secs(),
        publisher: PublisherId::of(publisher.verifier().public_key()),
        body,
    };
    let policy = EntryPolicy::default();
    policy
        .validate(&entry)
        .map_err(|e| LogError::InvalidEntry(e.to_string()))?;
    let signed = entry.sign(publisher)?;
    let status = client.add(signed.as_bytes(), publisher).await?;
    let status = match status.index {
        Some(_) => status,
        None => {
            client
                .wait_integrated(&status.leaf_hash, Duration::from_secs(60))
                .await?
        }
    };
    let bundle = client.bundle_by_hash(&status.leaf_hash).await?;
    let publishers = [publisher.verifier()];
    let anchors = TrustAnchors {
        log_key,
        witnesses: &WitnessPolicy::none(),
        publishers: &publishers,
        policy: &policy,
    };
    let verified = verify_bundle(bundle.as_bytes(), &anchors, None, now_seconds())?;
    if verified.entry.as_bytes() != signed.as_bytes() {
        return Err(LogError::Corrupt(
            "the log returned a bundle for another entry".into(),
        ));
    }
    Ok(Published { bundle, verified })
}

/// SHA-256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<[u8; 32]> {
    let mut file = std::fs::File::open(path).map_err(|e| LogError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| LogError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Measures an EIF file, refusing one whose CRC does not match.
pub fn measure_eif(path: &Path) -> Result<EifMeasurements> {
    let file = std::fs::File::open(path).map_err(|e| LogError::io(path, e))?;
    let measurements = measure(std::io::BufReader::new(file))?;
    if !measurements.crc_ok {
        return Err(LogError::InvalidEntry(format!(
            "{}: EIF CRC mismatch (corrupted file)",
            path.display()
        )));
    }
    Ok(measurements)
}

/// The fields of a release that do not come from the EIF.
#[derive(Clone, Debug)]
pub struct ReleaseInfo {
    /// SHA-256 of the GGUF model.
    pub model_sha256: [u8; 32],
    /// Inference engine.
    pub engine: String,
    /// Its version.
    pub engine_version: String,
    /// Source commit.
    pub source_commit: String,
    /// Notes.
    pub notes: String,
}

/// A release body from EIF measurements.
pub fn release_body(eif: &EifMeasurements, info: ReleaseInfo) -> EntryBody {
    EntryBody::Release(Box::new(Release {
        pcr0: eif.pcr0,
        pcr1: eif.pcr1,
        pcr2: eif.pcr2,
        pcr8: eif.pcr8,
        model_sha256: info.model_sha256,
        engine: info.engine,
        engine_version: info.engine_version,
        source_commit: info.source_commit,
        eif_sha384: eif.file_sha384,
        notes: info.notes,
    }))
}

/// An RFC 9458 key configuration from a file: one binary key configuration, or an
/// `application/ohttp-keys` list (RFC 9540) holding exactly one.
pub fn key_config_from_file(path: &Path) -> Result<OhttpKeyConfig> {
    let bytes = std::fs::read(path).map_err(|e| LogError::io(path, e))?;
    if let Ok(config) = decode_key_config(&bytes) {
        return Ok(config);
    }
    match bytes.as_slice() {
        [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => {
            decode_key_config(rest).map_err(|e| LogError::InvalidEntry(e.to_string()))
        }
        _ => Err(LogError::InvalidEntry(format!(
            "{}: not one RFC 9458 key configuration",
            path.display()
        ))),
    }
}

/// A token key body from a DER or PEM SubjectPublicKeyInfo file.
pub fn token_key_from_file(path: &Path, role: TokenRole) -> Result<EntryBody> {
    let bytes = std::fs::read(path).map_err(|e| LogError::io(path, e))?;
    let der = match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN PUBLIC KEY-----") => {
            arcane_verifier::pem::decode_public_key(text)
                .ok_or_else(|| LogError::InvalidEntry(format!("{}: bad PEM", path.display())))?
        }
        _ => bytes,
    };
    Ok(EntryBody::TokenKey(TokenKey {
        role,
        token_type: TOKEN_TYPE_BLIND_RSA,
        spki_der: der,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_keys_read_from_der_and_pem_alike() {
        let der = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../verifier/testdata/entries/rsa2048.spki.der"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (der_path, pem_path) = (dir.path().join("k.der"), dir.path().join("k.pem"));
        std::fs::write(&der_path, &der).unwrap();
        std::fs::write(&pem_path, arcane_verifier::pem::encode(&der, "PUBLIC KEY")).unwrap();
        let from_der = token_key_from_file(&der_path, TokenRole::Tgt).unwrap();
        assert_eq!(
            token_key_from_file(&pem_path, TokenRole::Tgt).unwrap(),
            from_der
        );
        std::fs::write(
            &pem_path,
            "-----BEGIN PUBLIC KEY-----\n@@\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        assert!(token_key_from_file(&pem_path, TokenRole::Tgt).is_err());
    }
}
