//! Releasing a model key to an attested node: the key release protocol's wire formats and its
//! one decision, as pure functions (`spec/model-keys.md`).
//!
//! 1. The node asks the owner's key release service for a challenge: `issued_at ‖ random ‖
//!    HMAC-SHA256(service secret, context ‖ issued_at ‖ random)`. The service keeps no state for
//!    it; its record of releases refuses a challenge used twice.
//! 2. The node attests a fresh document: `public_key` = a fresh X25519 key of its own (the key
//!    the model key is wrapped to), `user_data` = the binding of its release and model (as when
//!    it serves), `nonce` = [`key_request_nonce`] of the challenge.
//! 3. It sends a [`KeyRequest`]: the challenge, the document, the proof bundle of its `release`
//!    entry and that of the owner's `model-access` entry for the model.
//! 4. [`check_key_request`] decides: both bundles verify (log signature, witnesses, inclusion,
//!    publisher, kind rules, validity now), the access entry is the owner's, both name the same
//!    model, the document chains to the Nitro root, is fresh, its PCRs equal the release's, it
//!    binds the release and model and the challenge, and the access entry names its PCR0.
//! 5. The service records the release, then answers [`wrap_model_key`]: the model key sealed
//!    with HPKE to the document's public key, bound to the model, the document and the
//!    challenge; the node opens it with [`unwrap_model_key`].
//!
//! An auditor re-runs [`check_key_request`] on each recorded request at its recorded time: every
//! release of a key must have been justified by entries in the log.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hkdf::hmac::{Hmac, KeyInit as _, Mac as _};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::attested::{NodeTrust, verify_node_document};
use crate::bundle::{TrustAnchors, VerifiedEntry, verify_bundle};
use crate::entry::{EntryBody, PublisherId};
use crate::nitro::{AttestationPolicy, DocumentCache, NitroRoot};
use crate::note::VerifierKey;
use crate::sealed::{RekAead, RekKdf, RekKem, RekPublicKey, RekSecret};
use crate::sealed_model::{MODEL_KEY_LEN, ModelKey};
use crate::{Error, Result};

/// Current version of every key release message.
pub const KEY_RELEASE_VERSION: u32 = 1;
/// Length of a challenge: issued-at (8) ‖ random (16) ‖ HMAC-SHA256 (32).
pub const CHALLENGE_LEN: usize = 8 + 16 + 32;
/// What the service's HMAC covers before the issued-at time and the random bytes.
pub const CHALLENGE_CONTEXT: &[u8] = b"arcane-aip/model-key-challenge/v1";
/// What the node's nonce hashes before the challenge.
pub const NONCE_CONTEXT: &[u8] = b"arcane-aip/model-key/v1";
/// The HPKE `info` prefix of a wrapped model key (then the model digest and the document hash).
pub const WRAP_INFO: &[u8] = b"arcane-aip/model-key-wrap/v1";
/// How long a challenge may be answered, in seconds.
pub const CHALLENGE_LIFETIME_SECS: u64 = 60;
/// Largest key request accepted: two proof bundles (256 KiB each) and a document, in base64 and
/// JSON.
pub const MAX_KEY_REQUEST_BYTES: usize = 640 * 1024;
/// Length of a wrapped model key: enc (32) ‖ sealed key (32 + 16).
pub const WRAPPED_KEY_LEN: usize = 32 + MODEL_KEY_LEN + 16;

type HmacSha256 = Hmac<Sha256>;

/// The service's secret for challenges (32 bytes, zeroized on drop). Replicas that share a
/// database share it, so any of them accepts a challenge another issued.
pub struct ChallengeSecret(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ChallengeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeSecret(..)")
    }
}

impl ChallengeSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut secret[..]).expect("the operating system's random source");
        ChallengeSecret(secret)
    }

    /// A secret from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::MalformedKeyRelease("a challenge secret is 32 bytes"))?;
        Ok(ChallengeSecret(Zeroizing::new(secret)))
    }

    /// The secret's bytes (to store).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, issued_at: &[u8], random: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0[..]).expect("HMAC takes any key length");
        mac.update(CHALLENGE_CONTEXT);
        mac.update(issued_at);
        mac.update(random);
        mac
    }

    /// A challenge issued at `now` (seconds) with the caller's 16 random bytes.
    pub fn issue(&self, now: u64, random: [u8; 16]) -> [u8; CHALLENGE_LEN] {
        let mut challenge = [0u8; CHALLENGE_LEN];
        challenge[..8].copy_from_slice(&now.to_be_bytes());
        challenge[8..24].copy_from_slice(&random);
        let tag = self
            .mac(&challenge[..8], &challenge[8..24])
            .finalize()
            .into_bytes();
        challenge[24..].copy_from_slice(&tag);
        challenge
    }

    /// Checks that this secret issued `challenge` at most [`CHALLENGE_LIFETIME_SECS`] before
    /// `now` (and not more than 60 s after it: clocks of replicas differ a little). Whether it
    /// was answered before is the caller's record's question.
    pub fn check(&self, challenge: &[u8], now: u64) -> Result<()> {
        if challenge.len() != CHALLENGE_LEN {
            return Err(Error::MalformedKeyRelease("a challenge is 56 bytes"));
        }
        // Compared in constant time.
        if self
            .mac(&challenge[..8], &challenge[8..24])
            .verify_slice(&challenge[24..])
            .is_err()
        {
            return Err(Error::KeyReleaseRefused(
                "the challenge was not issued by this service".into(),
            ));
        }
        let issued_at = u64::from_be_bytes(challenge[..8].try_into().expect("8 bytes"));
        if issued_at > now.saturating_add(60) {
            return Err(Error::KeyReleaseRefused(
                "the challenge is dated in the future".into(),
            ));
        }
        if now.saturating_sub(issued_at) > CHALLENGE_LIFETIME_SECS {
            return Err(Error::KeyReleaseRefused(format!(
                "the challenge is {} s old, at most {CHALLENGE_LIFETIME_SECS} s allowed",
                now - issued_at
            )));
        }
        Ok(())
    }
}

/// The nonce a node attests when it answers `challenge`:
/// `SHA-256("arcane-aip/model-key/v1" ‖ challenge)`. A document made for any other purpose (a
/// gateway's registration challenge, a client's nonce) carries another nonce and is refused.
pub fn key_request_nonce(challenge: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(NONCE_CONTEXT);
    h.update(challenge);
    h.finalize().into()
}

/// The service's answer to `POST /v1/challenge`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeReply {
    /// [`KEY_RELEASE_VERSION`].
    pub version: u32,
    /// The challenge, base64.
    pub challenge: String,
}

impl ChallengeReply {
    /// The reply carrying `challenge`.
    pub fn new(challenge: &[u8]) -> Self {
        ChallengeReply {
            version: KEY_RELEASE_VERSION,
            challenge: BASE64.encode(challenge),
        }
    }

    /// Parses the reply and returns the challenge.
    pub fn parse(bytes: &[u8]) -> Result<Vec<u8>> {
        let reply: ChallengeReply = serde_json::from_slice(bytes)
            .map_err(|_| Error::MalformedKeyRelease("challenge reply is not the expected JSON"))?;
        reply_field(
            reply.version,
            &reply.challenge,
            CHALLENGE_LEN,
            ("challenge is not base64", "a challenge is 56 bytes"),
        )
    }
}

/// The one field of a service reply: the reply's version must be [`KEY_RELEASE_VERSION`], the
/// field base64 of exactly `len` bytes (`what`: the errors for each).
fn reply_field(
    version: u32,
    field: &str,
    len: usize,
    what: (&'static str, &'static str),
) -> Result<Vec<u8>> {
    if version != KEY_RELEASE_VERSION {
        return Err(Error::MalformedKeyRelease("unsupported version"));
    }
    let bytes = BASE64
        .decode(field)
        .map_err(|_| Error::MalformedKeyRelease(what.0))?;
    if bytes.len() != len {
        return Err(Error::MalformedKeyRelease(what.1));
    }
    Ok(bytes)
}

/// What a node sends to `POST /v1/model-key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRequest {
    /// The challenge the service issued.
    pub challenge: Vec<u8>,
    /// The attestation document (COSE_Sign1 bytes).
    pub document: Vec<u8>,
    /// The proof bundle of the node's `release` entry.
    pub release: String,
    /// The proof bundle of the owner's `model-access` entry for the model.
    pub access: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRequestJson {
    version: u32,
    challenge: String,
    document: String,
    release: String,
    access: String,
}

impl KeyRequest {
    /// The JSON wire form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&KeyRequestJson {
            version: KEY_RELEASE_VERSION,
            challenge: BASE64.encode(&self.challenge),
            document: BASE64.encode(&self.document),
            release: self.release.clone(),
            access: self.access.clone(),
        })
        .expect("strings and numbers serialize")
    }

    /// Parses the JSON wire form (strict: size, version, fields, base64).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_KEY_REQUEST_BYTES {
            return Err(Error::MalformedKeyRelease("key request over 640 KiB"));
        }
        let json: KeyRequestJson = serde_json::from_slice(bytes)
            .map_err(|_| Error::MalformedKeyRelease("key request is not the expected JSON"))?;
        if json.version != KEY_RELEASE_VERSION {
            return Err(Error::MalformedKeyRelease("unsupported version"));
        }
        let decode = |what: &'static str, text: &str| {
            BASE64
                .decode(text)
                .map_err(|_| Error::MalformedKeyRelease(what))
        };
        Ok(KeyRequest {
            challenge: decode("challenge is not base64", &json.challenge)?,
            document: decode("document is not base64", &json.document)?,
            release: json.release,
            access: json.access,
        })
    }
}

/// The service's answer to a key request it granted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyReply {
    /// [`KEY_RELEASE_VERSION`].
    pub version: u32,
    /// The wrapped model key ([`wrap_model_key`]), base64.
    pub wrapped_key: String,
}

impl KeyReply {
    /// The reply carrying `wrapped`.
    pub fn new(wrapped: &[u8]) -> Self {
        KeyReply {
            version: KEY_RELEASE_VERSION,
            wrapped_key: BASE64.encode(wrapped),
        }
    }

    /// Parses the reply and returns the wrapped key.
    pub fn parse(bytes: &[u8]) -> Result<Vec<u8>> {
        let reply: KeyReply = serde_json::from_slice(bytes)
            .map_err(|_| Error::MalformedKeyRelease("key reply is not the expected JSON"))?;
        reply_field(
            reply.version,
            &reply.wrapped_key,
            WRAPPED_KEY_LEN,
            (
                "wrapped key is not base64",
                "a wrapped model key is 80 bytes",
            ),
        )
    }
}

/// Everything a key release service trusts.
#[derive(Clone, Copy, Debug)]
pub struct KeyReleaseTrust<'a> {
    /// The log, its witnesses, the publishers of releases (the operators the owner accepts) and
    /// of access entries (the owner), and the entry rules.
    pub anchors: TrustAnchors<'a>,
    /// The owner's publisher key: the only one whose `model-access` entries count.
    pub owner: &'a VerifierKey,
    /// The Nitro root documents must chain to.
    pub nitro_root: &'a NitroRoot,
    /// Freshness rules for documents.
    pub attestation: &'a AttestationPolicy,
}

/// A key request that passed every check: who gets which model's key, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovedKeyRequest {
    /// The model whose key is released.
    pub model_sha256: [u8; 32],
    /// The key it is wrapped to (the document's `public_key`).
    pub recipient: RekPublicKey,
    /// The node's release entry, proven.
    pub release: VerifiedEntry,
    /// The owner's access entry, proven.
    pub access: VerifiedEntry,
    /// SHA-256 of the document's bytes.
    pub document_hash: [u8; 32],
    /// The node's PCR0 (the release's, which the document attested).
    pub pcr0: [u8; 48],
}

/// Decides a key request at `now_ms` (milliseconds since the epoch). Does not check the
/// challenge's origin and age ([`ChallengeSecret::check`]) nor whether it was used before (the
/// service's record): an auditor re-running the decision has neither the secret nor a reason to.
pub fn check_key_request(
    request: &KeyRequest,
    trust: &KeyReleaseTrust<'_>,
    now_ms: u64,
    cache: &mut DocumentCache,
) -> Result<ApprovedKeyRequest> {
    let now = now_ms / 1000;
    let release = verify_bundle(request.release.as_bytes(), &trust.anchors, None, now)?;
    let EntryBody::Release(r) = &release.entry.entry.body else {
        return Err(Error::WrongEntryKind {
            expected: "release",
            found: release.entry.entry.body.kind_name(),
        });
    };
    let (model_sha256, pcr0) = (r.model_sha256, r.pcr0);
    let access = verify_bundle(request.access.as_bytes(), &trust.anchors, None, now)?;
    let EntryBody::ModelAccess(a) = &access.entry.entry.body else {
        return Err(Error::WrongEntryKind {
            expected: "model-access",
            found: access.entry.entry.body.kind_name(),
        });
    };
    if access.entry.entry.publisher != PublisherId::of(trust.owner.public_key()) {
        return Err(Error::KeyReleaseRefused(
            "the model-access entry is not the owner's".into(),
        ));
    }
    if a.model_sha256 != model_sha256 {
        return Err(Error::KeyReleaseRefused(format!(
            "the release names model {}, the access entry model {}",
            hex(&model_sha256),
            hex(&a.model_sha256)
        )));
    }
    let node_trust = NodeTrust {
        anchors: trust.anchors,
        nitro_root: trust.nitro_root,
        attestation: trust.attestation,
    };
    let nonce = key_request_nonce(&request.challenge);
    let node = verify_node_document(
        &request.document,
        release,
        &node_trust,
        now_ms,
        Some(&nonce),
        cache,
    )?;
    if !a.allows(&pcr0) {
        return Err(Error::KeyReleaseRefused(
            "the owner's access entry does not name this image (PCR0)".into(),
        ));
    }
    Ok(ApprovedKeyRequest {
        model_sha256,
        recipient: node.rek,
        release: node.release,
        access,
        document_hash: node.document_hash,
        pcr0,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn wrap_info(model_sha256: &[u8; 32], document_hash: &[u8; 32]) -> Vec<u8> {
    let mut info = WRAP_INFO.to_vec();
    info.extend_from_slice(model_sha256);
    info.extend_from_slice(document_hash);
    info
}

/// The model key sealed to an approved request's recipient: HPKE base mode (DHKEM(X25519),
/// HKDF-SHA256, ChaCha20-Poly1305), `info` = [`WRAP_INFO`] ‖ model digest ‖ document hash,
/// AAD = the challenge. [`WRAPPED_KEY_LEN`] bytes: enc ‖ ciphertext.
pub fn wrap_model_key(
    key: &ModelKey,
    approved: &ApprovedKeyRequest,
    challenge: &[u8],
) -> Result<Vec<u8>> {
    let pk = <RekKem as hpke::Kem>::PublicKey::from_bytes(&approved.recipient.0)
        .map_err(|_| Error::MalformedKeyRelease("the recipient key is not an X25519 key"))?;
    let info = wrap_info(&approved.model_sha256, &approved.document_hash);
    let (enc, mut ctx) = hpke::setup_sender::<RekAead, RekKdf, RekKem>(&OpModeS::Base, &pk, &info)
        .map_err(|_| Error::MalformedKeyRelease("HPKE encapsulation failed"))?;
    let sealed = ctx
        .seal(key.as_bytes(), challenge)
        .map_err(|_| Error::MalformedKeyRelease("HPKE seal failed"))?;
    let mut out = enc.to_bytes().to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a wrapped model key with the node's recipient key; `model_sha256`, `document_hash` and
/// `challenge` must be those of the request it answers.
pub fn unwrap_model_key(
    recipient: &RekSecret,
    wrapped: &[u8],
    model_sha256: &[u8; 32],
    document_hash: &[u8; 32],
    challenge: &[u8],
) -> Result<ModelKey> {
    if wrapped.len() != WRAPPED_KEY_LEN {
        return Err(Error::MalformedKeyRelease(
            "a wrapped model key is 80 bytes",
        ));
    }
    let enc = <RekKem as hpke::Kem>::EncappedKey::from_bytes(&wrapped[..32])
        .map_err(|_| Error::MalformedKeyRelease("encapsulated key"))?;
    let info = wrap_info(model_sha256, document_hash);
    let mut ctx = hpke::setup_receiver::<RekAead, RekKdf, RekKem>(
        &OpModeR::Base,
        recipient.private(),
        &enc,
        &info,
    )
    .map_err(|_| Error::SealedOpen("the wrapped model key does not open with this key"))?;
    let key = Zeroizing::new(
        ctx.open(&wrapped[32..], challenge)
            .map_err(|_| Error::SealedOpen("the wrapped model key does not open with this key"))?,
    );
    ModelKey::from_bytes(&key)
}

/// One recorded release of a model key (`GET /v1/releases`): what was released to whom, and the
/// whole request that justified it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRecord {
    /// Its place in the record, from 1, increasing (gaps are possible on PostgreSQL).
    pub seq: u64,
    /// When the key was released (milliseconds since the epoch, the service's clock).
    pub released_at_ms: u64,
    /// The challenge the request answered (hex): one release per challenge.
    pub challenge: String,
    /// The model (hex SHA-256 of its plaintext).
    pub model_sha256: String,
    /// The node's PCR0 (hex).
    pub pcr0: String,
    /// SHA-256 of the node's attestation document (hex).
    pub document_sha256: String,
    /// Leaf hash of the node's `release` entry (hex).
    pub release_leaf_hash: String,
    /// Leaf hash of the owner's `model-access` entry (hex).
    pub access_leaf_hash: String,
    /// The key request, in its JSON wire form.
    pub request: String,
}

impl ReleaseRecord {
    /// The record of releasing a key for `approved` (answering `request`) at `released_at_ms`;
    /// `seq` is the store's to give.
    pub fn of(approved: &ApprovedKeyRequest, request: &KeyRequest, released_at_ms: u64) -> Self {
        ReleaseRecord {
            seq: 0,
            released_at_ms,
            challenge: hex(&request.challenge),
            model_sha256: hex(&approved.model_sha256),
            pcr0: hex(&approved.pcr0),
            document_sha256: hex(&approved.document_hash),
            release_leaf_hash: approved.release.leaf_hash.to_hex(),
            access_leaf_hash: approved.access.leaf_hash.to_hex(),
            request: request.to_json(),
        }
    }
}

/// Most records one read of `GET /v1/releases` returns.
pub const MAX_RECORDS_PER_READ: u32 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_checks_only_under_its_secret_and_while_fresh() {
        let secret = ChallengeSecret::generate();
        let challenge = secret.issue(1_000, [7; 16]);
        secret.check(&challenge, 1_000).unwrap();
        secret.check(&challenge, 1_060).unwrap();
        assert!(matches!(
            secret.check(&challenge, 1_061),
            Err(Error::KeyReleaseRefused(_))
        ));
        assert!(secret.check(&challenge, 900).is_err(), "from the future");
        let other = ChallengeSecret::generate();
        assert!(other.check(&challenge, 1_000).is_err());
        for i in 0..CHALLENGE_LEN {
            let mut flipped = challenge;
            flipped[i] ^= 1;
            assert!(secret.check(&flipped, 1_000).is_err(), "byte {i} flipped");
        }
        assert!(secret.check(&challenge[..55], 1_000).is_err());
    }

    #[test]
    fn the_key_request_nonce_is_bound_to_its_purpose() {
        let challenge = [1u8; CHALLENGE_LEN];
        assert_ne!(key_request_nonce(&challenge)[..], challenge[..32]);
        assert_ne!(key_request_nonce(&challenge), key_request_nonce(&[2u8; 56]));
    }

    #[test]
    fn a_key_request_round_trips_and_refuses_what_is_not_one() {
        let request = KeyRequest {
            challenge: vec![1; CHALLENGE_LEN],
            document: vec![2; 100],
            release: "release bundle".into(),
            access: "access bundle".into(),
        };
        assert_eq!(
            KeyRequest::parse(request.to_json().as_bytes()).unwrap(),
            request
        );
        let extra = request
            .to_json()
            .replace("{\"version\"", "{\"more\":1,\"version\"");
        assert!(KeyRequest::parse(extra.as_bytes()).is_err());
        let v2 = request.to_json().replace("\"version\":1", "\"version\":2");
        assert!(KeyRequest::parse(v2.as_bytes()).is_err());
        assert!(KeyRequest::parse(&vec![b' '; MAX_KEY_REQUEST_BYTES + 1]).is_err());
    }
}
