//! Typed log entries: what the log publishes for clients to trust.
//!
//! Every entry has a format version, a kind, a validity window, the publisher's id and the
//! publisher's Ed25519 signature over the canonical encoding. The encoding is canonical: each value
//! has exactly one encoding, and decoding refuses every other byte string (wrong lengths, trailing
//! bytes, booleans other than 0 and 1, strings with control characters). Unknown kinds decode as
//! [`EntryBody::Unknown`], never as another kind, so old verifiers keep working as kinds are added.
//! The byte layout is in `spec/entries.md`.

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::note::{ALG_ED25519, NoteSigner, VerifierKey};
use crate::{Error, Result};

/// The only entry format version so far.
pub const ENTRY_FORMAT_VERSION: u8 = 1;
/// What a publisher signs: this context, then the entry's bytes up to the signature.
pub const ENTRY_SIGNATURE_CONTEXT: &[u8] = b"arcane-aip/entry/v1\n";
/// Bytes before the body: version, kind, not_before, not_after, publisher id, body length.
const HEADER_LEN: usize = 1 + 1 + 8 + 8 + 32 + 4;
const SIGNATURE_LEN: usize = 64;
/// Largest body accepted (entries must fit the log's 65,535-byte entry bundles).
pub const MAX_BODY_LEN: usize = u16::MAX as usize - HEADER_LEN - SIGNATURE_LEN;

/// Kind code of a `release` entry.
pub const KIND_RELEASE: u8 = 1;
/// Kind code of an `ohttp-keys` entry.
pub const KIND_OHTTP_KEYS: u8 = 2;
/// Kind code of a `token-key` entry.
pub const KIND_TOKEN_KEY: u8 = 3;
/// Kind code of a `model-access` entry.
pub const KIND_MODEL_ACCESS: u8 = 4;
/// Most release images one `model-access` entry names.
pub const MAX_ACCESS_IMAGES: usize = 64;

/// RFC 9458 KEM id of DHKEM(X25519, HKDF-SHA256).
pub const KEM_X25519_SHA256: u16 = 0x0020;
/// RFC 9180 KDF id of HKDF-SHA256.
pub const KDF_HKDF_SHA256: u16 = 0x0001;
/// RFC 9180 AEAD ids accepted: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305.
pub const SUPPORTED_AEADS: [u16; 3] = [0x0001, 0x0002, 0x0003];
/// RFC 9578 token type of publicly verifiable (blind RSA) tokens.
pub const TOKEN_TYPE_BLIND_RSA: u16 = 0x0002;
/// Smallest RSA modulus accepted for token keys, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// SHA-256 of a publisher's Ed25519 public key: how an entry names its publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublisherId(pub [u8; 32]);

impl PublisherId {
    /// The id of a publisher key.
    pub fn of(key: &VerifyingKey) -> Self {
        PublisherId(Sha256::digest(key.as_bytes()).into())
    }
}

/// A `release`: the measurements of one build of the compute software and its model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// PCR0: the whole enclave image.
    pub pcr0: [u8; 48],
    /// PCR1: kernel and bootstrap.
    pub pcr1: [u8; 48],
    /// PCR2: the application.
    pub pcr2: [u8; 48],
    /// PCR8: the EIF signing certificate, when the image is signed.
    pub pcr8: Option<[u8; 48]>,
    /// SHA-256 of the model file (GGUF), or the digest of a model directory (`spec/compute.md` §7.6).
    pub model_sha256: [u8; 32],
    /// Inference engine, e.g. `mistral.rs`.
    pub engine: String,
    /// Its version.
    pub engine_version: String,
    /// Source commit the image was built from.
    pub source_commit: String,
    /// SHA-384 of the EIF file.
    pub eif_sha384: [u8; 48],
    /// Free-form notes (at most 4096 bytes).
    pub notes: String,
}

/// One RFC 9458 key configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OhttpKeyConfig {
    /// Key identifier.
    pub key_id: u8,
    /// HPKE KEM id.
    pub kem_id: u16,
    /// The KEM public key.
    pub public_key: Vec<u8>,
    /// (KDF id, AEAD id) pairs, in order.
    pub symmetric: Vec<(u16, u16)>,
}

/// Role of a token issuer key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRole {
    /// Ticket-granting tokens, issued by the identity service.
    Tgt,
    /// One-time tokens, issued by the token granting service.
    Ott,
    /// Fraud data of one class (0–255, the operator's meaning), issued by the fraud detection
    /// service ([`crate::fraud_data`]): one key per class.
    FraudData(u8),
}

impl TokenRole {
    /// The role's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenRole::Tgt => "tgt",
            TokenRole::Ott => "ott",
            TokenRole::FraudData(_) => "fraud-data",
        }
    }
}

/// A token issuer's RSA public key (RFC 9474 / RFC 9578 publicly verifiable tokens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenKey {
    /// Which tokens it signs.
    pub role: TokenRole,
    /// RFC 9578 token type (0x0002).
    pub token_type: u16,
    /// DER SubjectPublicKeyInfo of the RSA key (rsaEncryption or id-RSASSA-PSS).
    pub spki_der: Vec<u8>,
}

impl TokenKey {
    /// RFC 9578 token key id: SHA-256 of the encoded public key.
    pub fn key_id(&self) -> [u8; 32] {
        Sha256::digest(&self.spki_der).into()
    }

    /// Modulus size in bits.
    pub fn modulus_bits(&self) -> Result<usize> {
        Ok(rsa_spki_modulus_bits(&self.spki_der)?.0)
    }
}

/// A `model-access`: a model owner's statement of which enclave images may receive the key of
/// one model. Published by the owner (its key release service's publisher key); a key release
/// service releases the model's key only to a node whose attested PCR0 it names and whose logged
/// `release` names the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelAccess {
    /// SHA-256 of the model's plaintext file (the digest `release` entries name).
    pub model_sha256: [u8; 32],
    /// PCR0 (the whole enclave image) of each image allowed: 1 to [`MAX_ACCESS_IMAGES`], no
    /// repeats.
    pub images: Vec<[u8; 48]>,
}

impl ModelAccess {
    /// Whether an image with this PCR0 may receive the model's key.
    pub fn allows(&self, pcr0: &[u8]) -> bool {
        self.images.iter().any(|image| image[..] == *pcr0)
    }
}

/// The kind-specific part of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryBody {
    /// A release measurement.
    Release(Box<Release>),
    /// An OHTTP gateway key configuration.
    OhttpKeys(OhttpKeyConfig),
    /// A token issuer key.
    TokenKey(TokenKey),
    /// Which images may receive a model's key.
    ModelAccess(ModelAccess),
    /// A kind this verifier does not know: carried, signed and dated, never interpreted.
    Unknown {
        /// The kind code.
        kind: u8,
        /// The body bytes.
        bytes: Vec<u8>,
    },
}

impl EntryBody {
    /// The kind code.
    pub fn kind(&self) -> u8 {
        match self {
            EntryBody::Release(_) => KIND_RELEASE,
            EntryBody::OhttpKeys(_) => KIND_OHTTP_KEYS,
            EntryBody::TokenKey(_) => KIND_TOKEN_KEY,
            EntryBody::ModelAccess(_) => KIND_MODEL_ACCESS,
            EntryBody::Unknown { kind, .. } => *kind,
        }
    }

    /// The kind's name (`release`, `ohttp-keys`, `token-key`, `model-access`, or
    /// `unknown-<code>`).
    pub fn kind_name(&self) -> String {
        kind_name(self.kind())
    }
}

/// The name of a kind code.
pub fn kind_name(kind: u8) -> String {
    match kind {
        KIND_RELEASE => "release".into(),
        KIND_OHTTP_KEYS => "ohttp-keys".into(),
        KIND_TOKEN_KEY => "token-key".into(),
        KIND_MODEL_ACCESS => "model-access".into(),
        other => format!("unknown-{other}"),
    }
}

/// The kind code of a kind name.
pub fn kind_code(name: &str) -> Option<u8> {
    match name {
        "release" => Some(KIND_RELEASE),
        "ohttp-keys" => Some(KIND_OHTTP_KEYS),
        "token-key" => Some(KIND_TOKEN_KEY),
        "model-access" => Some(KIND_MODEL_ACCESS),
        _ => None,
    }
}

/// An entry before signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Start of validity (seconds since the Unix epoch).
    pub not_before: u64,
    /// End of validity, exclusive.
    pub not_after: u64,
    /// Who publishes it.
    pub publisher: PublisherId,
    /// What it says.
    pub body: EntryBody,
}

/// A signed entry, with its canonical bytes (the log leaf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedEntry {
    /// The entry.
    pub entry: Entry,
    /// The publisher's signature.
    pub signature: [u8; 64],
    bytes: Vec<u8>,
}

impl Entry {
    /// The canonical bytes that the publisher signs (everything but the signature).
    pub fn signed_bytes(&self) -> Result<Vec<u8>> {
        let body = encode_body(&self.body)?;
        if body.len() > MAX_BODY_LEN {
            return Err(Error::MalformedEntry("body too large"));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + SIGNATURE_LEN);
        out.push(ENTRY_FORMAT_VERSION);
        out.push(self.body.kind());
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        out.extend_from_slice(&self.publisher.0);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Signs the entry with the publisher's key (whose id must be the entry's publisher).
    pub fn sign(self, publisher: &NoteSigner) -> Result<SignedEntry> {
        let verifier = publisher.verifier();
        if verifier.algorithm() != ALG_ED25519 {
            return Err(Error::MalformedKey("publisher keys are Ed25519 note keys"));
        }
        if PublisherId::of(verifier.public_key()) != self.publisher {
            return Err(Error::UnknownPublisher);
        }
        let mut bytes = self.signed_bytes()?;
        let signature = publisher.sign_with_context(ENTRY_SIGNATURE_CONTEXT, &bytes);
        bytes.extend_from_slice(&signature);
        Ok(SignedEntry {
            entry: self,
            signature,
            bytes,
        })
    }
}

impl SignedEntry {
    /// The canonical bytes: the log leaf's data.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Decodes canonical bytes. Does not check the signature or the kind rules.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != ENTRY_FORMAT_VERSION {
            return Err(Error::MalformedEntry("unsupported format version"));
        }
        let kind = r.u8()?;
        let not_before = r.u64()?;
        let not_after = r.u64()?;
        let publisher = PublisherId(r.array()?);
        let body_len = r.u32()? as usize;
        if body_len > MAX_BODY_LEN {
            return Err(Error::MalformedEntry("body too large"));
        }
        let body_bytes = r.take(body_len)?;
        let signature: [u8; 64] = r.array()?;
        r.finish()?;
        let body = decode_body(kind, body_bytes)?;
        Ok(SignedEntry {
            entry: Entry {
                not_before,
                not_after,
                publisher,
                body,
            },
            signature,
            bytes: bytes.to_vec(),
        })
    }

    /// Checks the signature against the publisher key whose id the entry names.
    pub fn verify_signature<'k>(&self, publishers: &'k [VerifierKey]) -> Result<&'k VerifierKey> {
        let key = publishers
            .iter()
            .find(|k| {
                k.algorithm() == ALG_ED25519
                    && PublisherId::of(k.public_key()) == self.entry.publisher
            })
            .ok_or(Error::UnknownPublisher)?;
        let signed = &self.bytes[..self.bytes.len() - SIGNATURE_LEN];
        key.verify_with_context(ENTRY_SIGNATURE_CONTEXT, signed, &self.signature)
            .map_err(|_| Error::EntrySignature)?;
        Ok(key)
    }
}

/// Limits applied to entries (validity windows, per kind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPolicy {
    /// Longest validity of a `release`, in seconds.
    pub max_release_validity: u64,
    /// Longest validity of an `ohttp-keys` entry.
    pub max_ohttp_keys_validity: u64,
    /// Longest validity of a `token-key` entry.
    pub max_token_key_validity: u64,
    /// Longest validity of a `model-access` entry.
    pub max_model_access_validity: u64,
}

const DAY: u64 = 24 * 60 * 60;

impl Default for EntryPolicy {
    fn default() -> Self {
        EntryPolicy {
            max_release_validity: 366 * DAY,
            max_ohttp_keys_validity: 90 * DAY,
            max_token_key_validity: 90 * DAY,
            max_model_access_validity: 366 * DAY,
        }
    }
}

impl EntryPolicy {
    /// Checks the kind rules: a known kind, its field rules, an ordered validity window no longer
    /// than the kind's maximum. (Whether the window contains "now" is the caller's question; see
    /// [`Entry::check_time`].)
    pub fn validate(&self, entry: &Entry) -> Result<()> {
        let (kind, max) = match &entry.body {
            EntryBody::Release(r) => {
                validate_release(r)?;
                ("release", self.max_release_validity)
            }
            EntryBody::OhttpKeys(c) => {
                validate_key_config(c)?;
                ("ohttp-keys", self.max_ohttp_keys_validity)
            }
            EntryBody::TokenKey(k) => {
                validate_token_key(k)?;
                ("token-key", self.max_token_key_validity)
            }
            EntryBody::ModelAccess(a) => {
                validate_model_access(a)?;
                ("model-access", self.max_model_access_validity)
            }
            EntryBody::Unknown { kind, .. } => return Err(Error::UnknownEntryKind(*kind)),
        };
        if entry.not_before >= entry.not_after {
            return Err(invalid(kind, "not_before must be before not_after"));
        }
        if entry.not_after - entry.not_before > max {
            return Err(invalid(
                kind,
                format!(
                    "validity of {} s exceeds the maximum {max} s",
                    entry.not_after - entry.not_before
                ),
            ));
        }
        Ok(())
    }
}

impl Entry {
    /// Whether the entry is in the last quarter of its validity window (at most its last ten
    /// minutes, the longest a client keeps a key list) at `now`: time for its successor. Servers
    /// stop offering a retiring key, and nodes move to a newer release, while one that is not
    /// retiring is there to take over.
    pub fn retiring(&self, now: u64) -> bool {
        now >= self.retires_at()
    }

    /// The first second at which the entry is [retiring](Entry::retiring).
    pub fn retires_at(&self) -> u64 {
        self.not_after.saturating_sub(self.handover_margin())
    }

    /// Whether the entry is in the first quarter of its window (at most its first ten minutes)
    /// at `now`: long enough for every service that checks tokens or keys against the log (a
    /// relay, a node, refreshing every minute by default) to have picked it up before clients
    /// are offered it.
    pub fn warming_up(&self, now: u64) -> bool {
        now < self.not_before.saturating_add(self.handover_margin())
    }

    /// A quarter of the validity window, at most ten minutes.
    fn handover_margin(&self) -> u64 {
        (self.not_after.saturating_sub(self.not_before) / 4).min(600)
    }

    /// Fails if `now` (seconds since the epoch) is outside `[not_before, not_after)`.
    pub fn check_time(&self, now: u64) -> Result<()> {
        if now < self.not_before {
            return Err(Error::EntryNotYetValid {
                not_before: self.not_before,
                now,
            });
        }
        if now >= self.not_after {
            return Err(Error::EntryExpired {
                not_after: self.not_after,
                now,
            });
        }
        Ok(())
    }
}

fn invalid(kind: &'static str, why: impl Into<String>) -> Error {
    Error::InvalidEntry {
        kind,
        why: why.into(),
    }
}

fn validate_release(r: &Release) -> Result<()> {
    let zero = [0u8; 48];
    if r.pcr0 == zero || r.pcr1 == zero || r.pcr2 == zero {
        return Err(invalid(
            "release",
            "PCR0, PCR1 and PCR2 must be set (all zeros means a debug enclave)",
        ));
    }
    if r.pcr8 == Some(zero) {
        return Err(invalid(
            "release",
            "PCR8, when present, must not be all zeros",
        ));
    }
    if r.model_sha256 == [0u8; 32] || r.eif_sha384 == zero {
        return Err(invalid("release", "model and EIF digests must be set"));
    }
    Ok(())
}

fn validate_model_access(a: &ModelAccess) -> Result<()> {
    if a.model_sha256 == [0u8; 32] {
        return Err(invalid("model-access", "the model digest must be set"));
    }
    if a.images.is_empty() || a.images.len() > MAX_ACCESS_IMAGES {
        return Err(invalid(
            "model-access",
            format!(
                "names {} images, 1 to {MAX_ACCESS_IMAGES} allowed",
                a.images.len()
            ),
        ));
    }
    for (i, image) in a.images.iter().enumerate() {
        if *image == [0u8; 48] {
            return Err(invalid(
                "model-access",
                "an image's PCR0 is all zeros (a debug enclave)",
            ));
        }
        if a.images[..i].contains(image) {
            return Err(invalid("model-access", "an image is named twice"));
        }
    }
    Ok(())
}

/// Checks an RFC 9458 key configuration: supported KEM with a key of the right length, a
/// non-empty list of supported (KDF, AEAD) pairs without repeats.
pub fn validate_key_config(c: &OhttpKeyConfig) -> Result<()> {
    if c.kem_id != KEM_X25519_SHA256 {
        return Err(invalid(
            "ohttp-keys",
            format!("unsupported KEM 0x{:04x}", c.kem_id),
        ));
    }
    if c.public_key.len() != 32 {
        return Err(invalid("ohttp-keys", "X25519 public key must be 32 bytes"));
    }
    if c.symmetric.is_empty() {
        return Err(invalid("ohttp-keys", "no symmetric algorithms"));
    }
    for (i, (kdf, aead)) in c.symmetric.iter().enumerate() {
        if *kdf != KDF_HKDF_SHA256 || !SUPPORTED_AEADS.contains(aead) {
            return Err(invalid(
                "ohttp-keys",
                format!("unsupported suite KDF 0x{kdf:04x} AEAD 0x{aead:04x}"),
            ));
        }
        if c.symmetric[..i].contains(&(*kdf, *aead)) {
            return Err(invalid("ohttp-keys", "repeated symmetric algorithm"));
        }
    }
    Ok(())
}

fn validate_token_key(k: &TokenKey) -> Result<()> {
    if k.token_type != TOKEN_TYPE_BLIND_RSA {
        return Err(invalid(
            "token-key",
            format!("unsupported token type 0x{:04x}", k.token_type),
        ));
    }
    let (bits, exponent_ok) =
        rsa_spki_modulus_bits(&k.spki_der).map_err(|e| invalid("token-key", e.to_string()))?;
    if bits < MIN_RSA_BITS {
        return Err(invalid(
            "token-key",
            format!("RSA modulus of {bits} bits, at least {MIN_RSA_BITS} required"),
        ));
    }
    if !exponent_ok {
        return Err(invalid(
            "token-key",
            "RSA public exponent must be odd and at least 3",
        ));
    }
    Ok(())
}

// --- encoding ---------------------------------------------------------------------------------

/// Encodes an RFC 9458 key configuration.
pub fn encode_key_config(c: &OhttpKeyConfig) -> Result<Vec<u8>> {
    let mut out = vec![c.key_id];
    out.extend_from_slice(&c.kem_id.to_be_bytes());
    out.extend_from_slice(&c.public_key);
    let suites_len = u16::try_from(c.symmetric.len() * 4)
        .map_err(|_| Error::MalformedEntry("too many symmetric algorithms"))?;
    out.extend_from_slice(&suites_len.to_be_bytes());
    for (kdf, aead) in &c.symmetric {
        out.extend_from_slice(&kdf.to_be_bytes());
        out.extend_from_slice(&aead.to_be_bytes());
    }
    Ok(out)
}

/// Decodes one RFC 9458 key configuration (X25519 keys: 32 bytes), refusing trailing bytes.
pub fn decode_key_config(bytes: &[u8]) -> Result<OhttpKeyConfig> {
    let mut r = Reader::new(bytes);
    let key_id = r.u8()?;
    let kem_id = r.u16()?;
    let key_len = match kem_id {
        KEM_X25519_SHA256 => 32,
        _ => {
            return Err(Error::MalformedEntry(
                "key configuration with an unknown KEM",
            ));
        }
    };
    let public_key = r.take(key_len)?.to_vec();
    let suites_len = usize::from(r.u16()?);
    if suites_len % 4 != 0 {
        return Err(Error::MalformedEntry(
            "symmetric algorithms length not a multiple of 4",
        ));
    }
    let mut symmetric = Vec::with_capacity(suites_len / 4);
    for _ in 0..suites_len / 4 {
        symmetric.push((r.u16()?, r.u16()?));
    }
    r.finish()?;
    Ok(OhttpKeyConfig {
        key_id,
        kem_id,
        public_key,
        symmetric,
    })
}

fn put_str8(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<()> {
    check_str(s, 1, 64, what)?;
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn check_str(s: &str, min: usize, max: usize, what: &'static str) -> Result<()> {
    if s.len() < min || s.len() > max || s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::MalformedEntry(what));
    }
    Ok(())
}

fn encode_body(body: &EntryBody) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match body {
        EntryBody::Release(r) => {
            out.extend_from_slice(&r.pcr0);
            out.extend_from_slice(&r.pcr1);
            out.extend_from_slice(&r.pcr2);
            match &r.pcr8 {
                Some(pcr8) => {
                    out.push(1);
                    out.extend_from_slice(pcr8);
                }
                None => out.push(0),
            }
            out.extend_from_slice(&r.model_sha256);
            put_str8(
                &mut out,
                &r.engine,
                "engine must be 1-64 bytes without control characters",
            )?;
            put_str8(
                &mut out,
                &r.engine_version,
                "engine version must be 1-64 bytes without control characters",
            )?;
            put_str8(
                &mut out,
                &r.source_commit,
                "source commit must be 1-64 bytes without control characters",
            )?;
            out.extend_from_slice(&r.eif_sha384);
            check_str(
                &r.notes,
                0,
                4096,
                "notes must be at most 4096 bytes without control characters other than newline",
            )?;
            out.extend_from_slice(&(r.notes.len() as u16).to_be_bytes());
            out.extend_from_slice(r.notes.as_bytes());
        }
        EntryBody::OhttpKeys(c) => {
            let config = encode_key_config(c)?;
            out.extend_from_slice(&(config.len() as u16).to_be_bytes());
            out.extend_from_slice(&config);
        }
        EntryBody::TokenKey(k) => {
            match k.role {
                TokenRole::Tgt => out.push(1),
                TokenRole::Ott => out.push(2),
                TokenRole::FraudData(class) => out.extend_from_slice(&[3, class]),
            }
            out.extend_from_slice(&k.token_type.to_be_bytes());
            let len = u16::try_from(k.spki_der.len())
                .map_err(|_| Error::MalformedEntry("public key too long"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&k.spki_der);
        }
        EntryBody::ModelAccess(a) => {
            out.extend_from_slice(&a.model_sha256);
            let count = u8::try_from(a.images.len())
                .map_err(|_| Error::MalformedEntry("too many images"))?;
            out.push(count);
            for image in &a.images {
                out.extend_from_slice(image);
            }
        }
        EntryBody::Unknown { bytes, .. } => out.extend_from_slice(bytes),
    }
    Ok(out)
}

fn decode_body(kind: u8, bytes: &[u8]) -> Result<EntryBody> {
    let mut r = Reader::new(bytes);
    let body = match kind {
        KIND_RELEASE => {
            let pcr0 = r.array()?;
            let pcr1 = r.array()?;
            let pcr2 = r.array()?;
            let pcr8 = match r.u8()? {
                0 => None,
                1 => Some(r.array()?),
                _ => return Err(Error::MalformedEntry("PCR8 presence must be 0 or 1")),
            };
            let model_sha256 = r.array()?;
            let engine = r.str8("engine")?;
            let engine_version = r.str8("engine version")?;
            let source_commit = r.str8("source commit")?;
            let eif_sha384 = r.array()?;
            let notes_len = usize::from(r.u16()?);
            let notes = std::str::from_utf8(r.take(notes_len)?)
                .map_err(|_| Error::MalformedEntry("notes are not UTF-8"))?
                .to_owned();
            check_str(
                &notes,
                0,
                4096,
                "notes must be at most 4096 bytes without control characters other than newline",
            )?;
            EntryBody::Release(Box::new(Release {
                pcr0,
                pcr1,
                pcr2,
                pcr8,
                model_sha256,
                engine,
                engine_version,
                source_commit,
                eif_sha384,
                notes,
            }))
        }
        KIND_OHTTP_KEYS => {
            let len = usize::from(r.u16()?);
            EntryBody::OhttpKeys(decode_key_config(r.take(len)?)?)
        }
        KIND_TOKEN_KEY => {
            let role = match r.u8()? {
                1 => TokenRole::Tgt,
                2 => TokenRole::Ott,
                3 => TokenRole::FraudData(r.u8()?),
                _ => {
                    return Err(Error::MalformedEntry(
                        "token role must be 1 (tgt), 2 (ott) or 3 (fraud-data, then its class)",
                    ));
                }
            };
            let token_type = r.u16()?;
            let len = usize::from(r.u16()?);
            let spki_der = r.take(len)?.to_vec();
            EntryBody::TokenKey(TokenKey {
                role,
                token_type,
                spki_der,
            })
        }
        KIND_MODEL_ACCESS => {
            let model_sha256 = r.array()?;
            let count = usize::from(r.u8()?);
            let mut images = Vec::with_capacity(count);
            for _ in 0..count {
                images.push(r.array()?);
            }
            EntryBody::ModelAccess(ModelAccess {
                model_sha256,
                images,
            })
        }
        other => {
            return Ok(EntryBody::Unknown {
                kind: other,
                bytes: bytes.to_vec(),
            });
        }
    };
    r.finish()?;
    Ok(body)
}

/// A strict cursor over untrusted bytes.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(Error::MalformedEntry("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("exact length"))
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn str8(&mut self, what: &'static str) -> Result<String> {
        let len = usize::from(self.u8()?);
        let s = std::str::from_utf8(self.take(len)?)
            .map_err(|_| Error::MalformedEntry("string is not UTF-8"))?;
        check_str(s, 1, 64, what)?;
        Ok(s.to_owned())
    }

    fn finish(&self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::MalformedEntry("trailing bytes"))
        }
    }
}

// --- RSA SubjectPublicKeyInfo (strict DER, just enough to size the key) -----------------------

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];

fn der_element<'a>(input: &mut &'a [u8], tag: u8) -> Result<&'a [u8]> {
    crate::der::expect(input, tag).ok_or(Error::MalformedEntry("RSA public key is not valid DER"))
}

fn der_unsigned(bytes: &[u8]) -> Result<&[u8]> {
    crate::der::positive_integer(bytes).ok_or(Error::MalformedEntry(
        "RSA integer is not minimal positive DER",
    ))
}

/// Parses an RSA SubjectPublicKeyInfo; returns the modulus size in bits and whether the exponent
/// is odd and at least 3.
fn rsa_spki_modulus_bits(spki: &[u8]) -> Result<(usize, bool)> {
    let bad = || Error::MalformedEntry("not an RSA SubjectPublicKeyInfo");
    let mut input = spki;
    let mut outer = der_element(&mut input, 0x30)?;
    if !input.is_empty() {
        return Err(bad());
    }
    let mut algorithm = der_element(&mut outer, 0x30)?;
    let oid = der_element(&mut algorithm, 0x06)?;
    if oid != OID_RSA_ENCRYPTION && oid != OID_RSASSA_PSS {
        return Err(bad());
    }
    let bits = der_element(&mut outer, 0x03)?;
    if !outer.is_empty() {
        return Err(bad());
    }
    let [0, key @ ..] = bits else {
        return Err(bad());
    };
    let mut key = key;
    let mut sequence = der_element(&mut key, 0x30)?;
    if !key.is_empty() {
        return Err(bad());
    }
    let modulus = der_unsigned(der_element(&mut sequence, 0x02)?)?;
    let exponent = der_unsigned(der_element(&mut sequence, 0x02)?)?;
    if !sequence.is_empty() {
        return Err(bad());
    }
    let bits = modulus.len() * 8 - modulus[0].leading_zeros() as usize;
    let exponent_ok =
        exponent.last().is_some_and(|b| b & 1 == 1) && (exponent.len() > 1 || exponent[0] >= 3);
    Ok((bits, exponent_ok))
}

// --- JSON view ------------------------------------------------------------------------------

/// A human- and tool-readable view of a signed entry (binary fields in hex). Serialize it with any
/// serde format; it is for reading, never for signing.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EntryView {
    /// Format version.
    pub version: u8,
    /// Kind name.
    pub kind: String,
    /// Start of validity.
    pub not_before: u64,
    /// End of validity (exclusive).
    pub not_after: u64,
    /// Publisher id (hex).
    pub publisher: String,
    /// RFC 6962 leaf hash of the entry bytes (hex).
    pub leaf_hash: String,
    /// Publisher signature (hex).
    pub signature: String,
    /// Kind-specific fields.
    pub body: BodyView,
}

/// The kind-specific part of [`EntryView`].
#[derive(Clone, Debug, serde::Serialize)]
#[serde(untagged)]
pub enum BodyView {
    /// `release`.
    Release {
        /// PCR0 (hex).
        pcr0: String,
        /// PCR1 (hex).
        pcr1: String,
        /// PCR2 (hex).
        pcr2: String,
        /// PCR8 (hex), if any.
        pcr8: Option<String>,
        /// Model SHA-256 (hex).
        model_sha256: String,
        /// Engine.
        engine: String,
        /// Engine version.
        engine_version: String,
        /// Source commit.
        source_commit: String,
        /// EIF SHA-384 (hex).
        eif_sha384: String,
        /// Notes.
        notes: String,
    },
    /// `ohttp-keys`.
    OhttpKeys {
        /// Key id.
        key_id: u8,
        /// KEM id.
        kem_id: u16,
        /// Public key (hex).
        public_key: String,
        /// (KDF, AEAD) pairs.
        symmetric: Vec<(u16, u16)>,
        /// The whole RFC 9458 key configuration (hex).
        key_config: String,
    },
    /// `token-key`.
    TokenKey {
        /// `tgt`, `ott` or `fraud-data`.
        role: &'static str,
        /// The class a `fraud-data` key vouches for.
        #[serde(skip_serializing_if = "Option::is_none")]
        class: Option<u8>,
        /// Token type.
        token_type: u16,
        /// RFC 9578 token key id (hex).
        token_key_id: String,
        /// Modulus bits (when the key parses).
        modulus_bits: Option<usize>,
        /// DER SubjectPublicKeyInfo (hex).
        spki: String,
    },
    /// `model-access`.
    ModelAccess {
        /// Model SHA-256 (hex).
        model_sha256: String,
        /// PCR0 of each image allowed (hex).
        images: Vec<String>,
    },
    /// A kind this verifier does not know.
    Unknown {
        /// The body bytes (hex).
        body: String,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SignedEntry {
    /// The JSON view.
    pub fn view(&self) -> EntryView {
        let body = match &self.entry.body {
            EntryBody::Release(r) => BodyView::Release {
                pcr0: hex(&r.pcr0),
                pcr1: hex(&r.pcr1),
                pcr2: hex(&r.pcr2),
                pcr8: r.pcr8.as_ref().map(|p| hex(p)),
                model_sha256: hex(&r.model_sha256),
                engine: r.engine.clone(),
                engine_version: r.engine_version.clone(),
                source_commit: r.source_commit.clone(),
                eif_sha384: hex(&r.eif_sha384),
                notes: r.notes.clone(),
            },
            EntryBody::OhttpKeys(c) => BodyView::OhttpKeys {
                key_id: c.key_id,
                kem_id: c.kem_id,
                public_key: hex(&c.public_key),
                symmetric: c.symmetric.clone(),
                key_config: encode_key_config(c).map(|b| hex(&b)).unwrap_or_default(),
            },
            EntryBody::TokenKey(k) => BodyView::TokenKey {
                role: k.role.as_str(),
                class: match k.role {
                    TokenRole::FraudData(class) => Some(class),
                    _ => None,
                },
                token_type: k.token_type,
                token_key_id: hex(&k.key_id()),
                modulus_bits: k.modulus_bits().ok(),
                spki: hex(&k.spki_der),
            },
            EntryBody::ModelAccess(a) => BodyView::ModelAccess {
                model_sha256: hex(&a.model_sha256),
                images: a.images.iter().map(|i| hex(i)).collect(),
            },
            EntryBody::Unknown { bytes, .. } => BodyView::Unknown { body: hex(bytes) },
        };
        EntryView {
            version: ENTRY_FORMAT_VERSION,
            kind: self.entry.body.kind_name(),
            not_before: self.entry.not_before,
            not_after: self.entry.not_after,
            publisher: hex(&self.entry.publisher.0),
            leaf_hash: crate::merkle::leaf_hash(&self.bytes).to_hex(),
            signature: hex(&self.signature),
            body,
        }
    }
}
