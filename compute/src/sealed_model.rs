//! A sealed model opened at boot: the node proves to the owner's key release service, with a
//! fresh attestation, that it runs a logged release naming the model in an image the owner
//! allows; receives the model key wrapped to a key only it holds; decrypts the sealed file chunk
//! by chunk into an anonymous memory file (never a disk); and loads the model only once the
//! plaintext's SHA-256 equals the digest its release names. The model key is zeroized when the
//! file is open. The protocol is `spec/model-keys.md`; every check is the verifier's.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use arcane_engine::model::ModelFile;
use arcane_verifier::entry::EntryBody;
use arcane_verifier::model_key::{
    ChallengeReply, KeyReply, KeyRequest, key_request_nonce, unwrap_model_key,
};
use arcane_verifier::nitro::binding_user_data;
use arcane_verifier::sealed::RekSecret;
use arcane_verifier::sealed_model::{HEADER_LEN, ModelKey, ModelOpener, SEALED_CHUNK_LEN};
use sha2::{Digest, Sha256};

use crate::attestation::AttestationProvider;
use crate::error::{ComputeError, Result};
use crate::node::{now_seconds, own_measurements};
use crate::release::{LogSource, LogTrust, ProvenEntry};

/// A model the operator holds only sealed, and where its key is released.
#[derive(Clone, Debug)]
pub struct SealedModel {
    /// The sealed file (`arcane-keyrelease seal`'s output).
    pub path: PathBuf,
    /// The SHA-256 of the plaintext: the digest the node's release names.
    pub model_sha256: [u8; 32],
    /// Base URL of the owner's key release service.
    pub key_release_url: String,
}

/// How the node attests: its NSM, and the answer key its documents bind.
pub struct Attesting<'a> {
    /// The NSM (real or simulated).
    pub provider: &'a dyn AttestationProvider,
    /// The node's answer key (public half), bound in every document it attests.
    pub answer_key: [u8; 32],
}

/// Largest reply the key release service may send.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Fetches the model's key and opens the sealed file into memory: the model the engine loads.
pub async fn open(
    sealed: &SealedModel,
    attesting: &Attesting<'_>,
    log: &LogSource,
    trust: &LogTrust,
) -> Result<ModelFile> {
    let key = fetch_key(sealed, attesting, log, trust).await?;
    let path = sealed.path.clone();
    let model_sha256 = sealed.model_sha256;
    tokio::task::spawn_blocking(move || decrypt_into_memory(&path, &key, &model_sha256))
        .await
        .map_err(|e| ComputeError::SealedModel(format!("decryption task failed: {e}")))?
}

/// The owner's `model-access` entry for `model_sha256` that names `pcr0` (of several, the one
/// valid longest).
async fn find_access(
    log: &LogSource,
    trust: &LogTrust,
    model_sha256: &[u8; 32],
    pcr0: &[u8],
    now: u64,
) -> Result<ProvenEntry> {
    log.bundles_of_kind(trust, "model-access", now)
        .await?
        .into_iter()
        .filter(|e| {
            matches!(&e.verified.entry.entry.body,
                EntryBody::ModelAccess(a) if a.model_sha256 == *model_sha256 && a.allows(pcr0))
        })
        .max_by_key(|e| e.verified.entry.entry.not_after)
        .ok_or_else(|| {
            ComputeError::SealedModel(format!(
                "no valid model-access entry of a trusted publisher names model {} for PCR0 {}",
                hex::encode(model_sha256),
                hex::encode(pcr0)
            ))
        })
}

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ComputeError::SealedModel(format!("HTTP client: {e}")))
}

async fn post(http: &reqwest::Client, url: &str, body: String) -> Result<Vec<u8>> {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| ComputeError::SealedModel(format!("{url}: {e}")))?;
    let status = response.status();
    let bytes = arcane_log_client::read_limited(response, MAX_REPLY_BYTES)
        .await
        .map_err(|e| ComputeError::SealedModel(format!("{url}: {e}")))?;
    if !status.is_success() {
        return Err(ComputeError::KeyRefused {
            status: status.as_u16(),
            why: String::from_utf8_lossy(&bytes).chars().take(512).collect(),
        });
    }
    Ok(bytes)
}

/// The model key from the key release service: its challenge, the attested request (with the
/// node's release and the owner's access entry from the log), the unwrapped key.
pub async fn fetch_key(
    sealed: &SealedModel,
    attesting: &Attesting<'_>,
    log: &LogSource,
    trust: &LogTrust,
) -> Result<ModelKey> {
    let own = own_measurements(attesting.provider)?;
    let now = now_seconds();
    let release = log
        .find_release(trust, &own, &sealed.model_sha256, now)
        .await?;
    let access = find_access(log, trust, &sealed.model_sha256, &own.pcr0, now).await?;
    let http = http_client()?;
    let base = sealed.key_release_url.trim_end_matches('/');
    let challenge =
        ChallengeReply::parse(&post(&http, &format!("{base}/v1/challenge"), String::new()).await?)?;
    // A key of this boot's own, for this one wrap; dropped (zeroized) once the key is open.
    let recipient = RekSecret::generate();
    let user_data = binding_user_data(
        &sealed.model_sha256,
        &release.verified.leaf_hash.0,
        &attesting.answer_key,
    );
    let document = attesting.provider.attest(
        Some(&recipient.public().0),
        Some(&user_data),
        Some(&key_request_nonce(&challenge)),
    )?;
    let document_hash: [u8; 32] = Sha256::digest(&document).into();
    let request = KeyRequest {
        challenge,
        document,
        release: release.bundle,
        access: access.bundle,
    };
    let reply = post(&http, &format!("{base}/v1/model-key"), request.to_json()).await?;
    let wrapped = KeyReply::parse(&reply)?;
    Ok(unwrap_model_key(
        &recipient,
        &wrapped,
        &sealed.model_sha256,
        &document_hash,
        &request.challenge,
    )?)
}

/// Reads `path` chunk by chunk, opens each chunk and writes its plaintext to a fresh anonymous
/// memory file, hashing it on the way; refuses the whole file on any failure or when the digest
/// is not `model_sha256`.
pub fn decrypt_into_memory(
    path: &std::path::Path,
    key: &ModelKey,
    model_sha256: &[u8; 32],
) -> Result<ModelFile> {
    let failed = |why: String| ComputeError::SealedModel(format!("{}: {why}", path.display()));
    let mut file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let mut header = [0u8; HEADER_LEN];
    file.read_exact(&mut header)
        .map_err(|e| failed(format!("header: {e}")))?;
    let mut opener = ModelOpener::start(key, &header)?;
    let mut memory = memory_file().map_err(|e| failed(format!("memory file: {e}")))?;
    let mut hasher = Sha256::new();
    // One chunk ahead: a full chunk is the last only if the file ends right after it.
    let mut current = read_chunk(&mut file).map_err(|e| failed(e.to_string()))?;
    loop {
        let next = if current.len() == SEALED_CHUNK_LEN {
            read_chunk(&mut file).map_err(|e| failed(e.to_string()))?
        } else {
            Vec::new()
        };
        let last = next.is_empty();
        let plaintext = opener.open_chunk(&current, last)?;
        hasher.update(&plaintext[..]);
        memory
            .write_all(&plaintext)
            .map_err(|e| failed(format!("memory file: {e}")))?;
        if last {
            break;
        }
        current = next;
    }
    let digest: [u8; 32] = hasher.finalize().into();
    if digest != *model_sha256 {
        return Err(failed(format!(
            "the plaintext's SHA-256 is {}, the release names {}",
            hex::encode(digest),
            hex::encode(model_sha256)
        )));
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    Ok(ModelFile::in_memory(memory, digest, &stem)?)
}

/// Up to one sealed chunk (fewer only at the end of the file).
fn read_chunk(file: &mut std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut chunk = Vec::with_capacity(SEALED_CHUNK_LEN);
    Read::take(&mut *file, SEALED_CHUNK_LEN as u64).read_to_end(&mut chunk)?;
    Ok(chunk)
}

/// An anonymous file in memory (`memfd_create`): no path, no disk, freed when closed.
#[cfg(target_os = "linux")]
fn memory_file() -> std::io::Result<std::fs::File> {
    let fd = rustix::fs::memfd_create("arcane-model", rustix::fs::MemfdFlags::CLOEXEC)?;
    Ok(std::fs::File::from(fd))
}

#[cfg(not(target_os = "linux"))]
fn memory_file() -> std::io::Result<std::fs::File> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "a sealed model is opened in anonymous memory (memfd), which needs Linux",
    ))
}
