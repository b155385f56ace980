//! AWS Nitro Enclaves attestation documents: parsing, verification and the release policy.
//!
//! A document is an untagged COSE_Sign1 (ES384) whose payload is a CBOR map: `module_id`,
//! `digest` ("SHA384"), `timestamp` (ms), `pcrs` (index → 48 bytes), `certificate` (the leaf,
//! DER), `cabundle` (root first, then intermediates, DER), and `public_key`, `user_data`, `nonce`
//! (bytes or null). [`verify_document`] checks, from bytes alone and at a caller-given time: the
//! structure, that the bundle starts with the configured root byte for byte, the certificate chain
//! (rustls-webpki, P-384 only), and the COSE signature by the leaf key over the payload exactly as
//! received. [`check_attestation`] then applies the release policy. The only built-in root is the
//! AWS Nitro Enclaves root G1; a development root must be given explicitly and is reported as such.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};

use crate::bundle::VerifiedEntry;
use crate::cbor::{self, Value};
use crate::entry::EntryBody;
use crate::{Error, Result};

/// The AWS Nitro Enclaves root certificate (G1), as AWS publishes it.
pub const AWS_NITRO_ROOT_G1_PEM: &str = include_str!("../data/aws_nitro_root_g1.pem");
/// SHA-256 of its DER encoding, the fingerprint AWS publishes.
pub const AWS_NITRO_ROOT_G1_SHA256: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// Largest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// Prefix of the `user_data` that binds a node to its release (see `spec/attestation.md`).
pub const USER_DATA_PREFIX: &[u8; 16] = b"ARCANE-ATTEST-V2";
/// Length of that `user_data`: prefix, model digest, release leaf hash, answer key.
pub const USER_DATA_LEN: usize = 16 + 32 + 32 + 32;
/// Most members an ensemble may have (`spec/compute.md` §7).
pub const MAX_ENSEMBLE: u8 = 128;

/// Where a root of trust comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootKind {
    /// The built-in AWS Nitro Enclaves root G1.
    Aws,
    /// A development root (a simulated NSM), given explicitly. Never for production.
    Development,
}

/// The root certificate a document's chain must end in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NitroRoot {
    der: Vec<u8>,
    kind: RootKind,
}

/// Decodes the first PEM certificate in `pem`.
pub fn pem_certificate(pem: &str) -> Result<Vec<u8>> {
    crate::pem::decode_certificate(pem)
        .ok_or_else(|| Error::MalformedAttestation("no valid PEM certificate".into()))
}

/// Encodes DER as a PEM certificate.
pub fn certificate_pem(der: &[u8]) -> String {
    crate::pem::encode(der, "CERTIFICATE")
}

impl NitroRoot {
    /// The AWS Nitro Enclaves root G1 (its fingerprint is checked).
    pub fn aws() -> Self {
        let der = pem_certificate(AWS_NITRO_ROOT_G1_PEM).expect("built-in root is valid PEM");
        let fingerprint: String = Sha256::digest(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            fingerprint, AWS_NITRO_ROOT_G1_SHA256,
            "built-in AWS root altered"
        );
        NitroRoot {
            der,
            kind: RootKind::Aws,
        }
    }

    /// A development root, from DER. Callers must say loudly that it is in use. Exists only in
    /// builds with the `development-roots` feature.
    #[cfg(feature = "development-roots")]
    pub fn development(der: Vec<u8>) -> Self {
        NitroRoot {
            der,
            kind: RootKind::Development,
        }
    }

    /// Which root this is.
    pub fn kind(&self) -> RootKind {
        self.kind
    }

    /// The root certificate (DER).
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

/// The payload of an attestation document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationDocument {
    /// The enclave's module id.
    pub module_id: String,
    /// Digest algorithm of the PCRs (always "SHA384").
    pub digest: String,
    /// When the NSM made the document (ms since the epoch).
    pub timestamp_ms: u64,
    /// PCRs by index.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The leaf certificate (DER).
    pub certificate: Vec<u8>,
    /// Root first, then intermediates (DER).
    pub cabundle: Vec<Vec<u8>>,
    /// The public key the enclave asked to bind (our REK).
    pub public_key: Option<Vec<u8>>,
    /// Application data the enclave asked to bind.
    pub user_data: Option<Vec<u8>>,
    /// The challenger's nonce.
    pub nonce: Option<Vec<u8>>,
}

impl AttestationDocument {
    /// A PCR as 48 bytes, if present.
    pub fn pcr(&self, index: u8) -> Option<&[u8]> {
        self.pcrs.get(&index).map(Vec::as_slice)
    }
}

/// Decodes base64 when `bytes` is base64 text, else returns them as they are.
pub fn decode_maybe_base64(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    match BASE64.decode(&trimmed) {
        Ok(raw) if !bytes.is_empty() && bytes[0] != 0x84 && bytes[0] != 0xd2 => raw,
        _ => bytes.to_vec(),
    }
}

fn malformed(why: impl Into<String>) -> Error {
    Error::MalformedAttestation(why.into())
}

fn bytes_field(map: &Value, key: &'static str, max: usize) -> Result<Option<Vec<u8>>> {
    match map.get(key) {
        None | Some(Value::Simple(22)) => Ok(None),
        Some(Value::Bytes(b)) if b.len() <= max => Ok(Some(b.clone())),
        Some(Value::Bytes(_)) => Err(malformed(format!("{key} too long"))),
        Some(_) => Err(malformed(format!("{key} must be bytes or null"))),
    }
}

/// The COSE_Sign1 envelope, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The protected header bytes (`a1 01 38 22`: ES384).
    pub protected: Vec<u8>,
    /// The payload bytes, exactly as received: what the signature covers.
    pub payload: Vec<u8>,
    /// The 96-byte signature r ‖ s.
    pub signature: Vec<u8>,
}

impl Envelope {
    /// What the signature covers (RFC 9052 §4.4): the CBOR array
    /// `["Signature1", protected, external_aad = h'', payload]`.
    pub fn to_be_signed(&self) -> Vec<u8> {
        cbor::encode(&Value::Array(vec![
            Value::Text("Signature1".into()),
            Value::Bytes(self.protected.clone()),
            Value::Bytes(Vec::new()),
            Value::Bytes(self.payload.clone()),
        ]))
    }
}

/// The protected header of every Nitro document: `{1: -35}` (alg ES384).
const PROTECTED_ES384: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];

/// Parses the COSE envelope and the payload; checks structure only.
pub fn parse_document(bytes: &[u8]) -> Result<(Envelope, AttestationDocument)> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(malformed("document too large"));
    }
    if bytes.first() != Some(&0x84) {
        return Err(malformed("not an untagged COSE_Sign1"));
    }
    // Decoded once, by the strict reader: the fields are kept exactly as received.
    let Value::Array(parts) = cbor::decode(bytes)? else {
        return Err(malformed("COSE_Sign1 is not an array"));
    };
    let [
        Value::Bytes(protected),
        Value::Map(_),
        Value::Bytes(payload),
        Value::Bytes(signature),
    ] = parts.as_slice()
    else {
        return Err(malformed(
            "COSE_Sign1 must be [protected, unprotected, payload, signature]",
        ));
    };
    if protected.as_slice() != PROTECTED_ES384 {
        return Err(malformed("protected header must be {1: -35} (ES384)"));
    }
    if signature.len() != 96 {
        return Err(malformed("ES384 signature must be 96 bytes"));
    }
    let envelope = Envelope {
        protected: protected.clone(),
        payload: payload.clone(),
        signature: signature.clone(),
    };
    let payload = &envelope.payload;
    let map = cbor::decode(payload)?;
    let Value::Map(entries) = &map else {
        return Err(malformed("payload is not a map"));
    };
    const KNOWN: [&str; 9] = [
        "module_id",
        "digest",
        "timestamp",
        "pcrs",
        "certificate",
        "cabundle",
        "public_key",
        "user_data",
        "nonce",
    ];
    for (i, (key, _)) in entries.iter().enumerate() {
        let Value::Text(name) = key else {
            return Err(malformed("payload key is not text"));
        };
        if !KNOWN.contains(&name.as_str()) {
            return Err(malformed(format!("unknown field {name}")));
        }
        if entries[..i].iter().any(|(k, _)| k == key) {
            return Err(malformed(format!("field {name} repeated")));
        }
    }
    let text = |key: &'static str| match map.get(key) {
        Some(Value::Text(t)) if !t.is_empty() => Ok(t.clone()),
        _ => Err(malformed(format!("{key} must be non-empty text"))),
    };
    let module_id = text("module_id")?;
    let digest = text("digest")?;
    if digest != "SHA384" {
        return Err(malformed("digest must be SHA384"));
    }
    let timestamp_ms = match map.get("timestamp") {
        Some(Value::Unsigned(t)) => *t,
        _ => return Err(malformed("timestamp must be an unsigned integer")),
    };
    let mut pcrs = BTreeMap::new();
    match map.get("pcrs") {
        Some(Value::Map(items)) if !items.is_empty() && items.len() <= 32 => {
            for (k, v) in items {
                let (Value::Unsigned(index @ 0..=31), Value::Bytes(value)) = (k, v) else {
                    return Err(malformed("PCRs must map 0..31 to bytes"));
                };
                if value.len() != 48 {
                    return Err(malformed("PCR values must be 48 bytes"));
                }
                if pcrs.insert(*index as u8, value.clone()).is_some() {
                    return Err(malformed("PCR index repeated"));
                }
            }
        }
        _ => return Err(malformed("pcrs must be a map of 1 to 32 entries")),
    }
    let certificate = match map.get("certificate") {
        Some(Value::Bytes(b)) if !b.is_empty() => b.clone(),
        _ => return Err(malformed("certificate must be bytes")),
    };
    let cabundle = match map.get("cabundle") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= 8 => items
            .iter()
            .map(|v| match v {
                Value::Bytes(b) if !b.is_empty() => Ok(b.clone()),
                _ => Err(malformed("cabundle entries must be bytes")),
            })
            .collect::<Result<Vec<_>>>()?,
        _ => return Err(malformed("cabundle must be a non-empty array")),
    };
    let document = AttestationDocument {
        module_id,
        digest,
        timestamp_ms,
        pcrs,
        certificate,
        cabundle,
        public_key: bytes_field(&map, "public_key", 1024)?,
        user_data: bytes_field(&map, "user_data", 512)?,
        nonce: bytes_field(&map, "nonce", 512)?,
    };
    Ok((envelope, document))
}

/// A document whose signature and chain verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDocument {
    /// The payload.
    pub document: AttestationDocument,
    /// Which root it chains to.
    pub root: RootKind,
    /// SHA-256 of the exact document bytes.
    pub document_hash: [u8; 32],
    /// The chain's validity window (seconds since the epoch): latest notBefore, earliest notAfter.
    pub valid_from: u64,
    /// See `valid_from`.
    pub valid_until: u64,
}

/// Verifies a document at `now` (seconds since the epoch): structure, root, chain, signature.
pub fn verify_document(bytes: &[u8], root: &NitroRoot, now: u64) -> Result<VerifiedDocument> {
    let (envelope, document) = parse_document(bytes)?;
    if document.cabundle[0] != root.der {
        return Err(Error::AttestationRootMismatch);
    }
    let anchor_der = CertificateDer::from(root.der.as_slice());
    let anchor = webpki::anchor_from_trusted_cert(&anchor_der)
        .map_err(|e| Error::AttestationChain(format!("root: {e:?}")))?;
    let intermediates: Vec<CertificateDer<'_>> = document.cabundle[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let leaf_der = CertificateDer::from(document.certificate.as_slice());
    let leaf = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| Error::AttestationChain(format!("leaf: {e:?}")))?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(now));
    leaf.verify_for_usage(
        &[webpki::ring::ECDSA_P384_SHA384],
        &[anchor],
        &intermediates,
        time,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
            Error::AttestationExpired { at: now }
        }
        other => Error::AttestationChain(format!("{other:?}")),
    })?;
    // The leaf's key: a P-384 point, the tail of its SubjectPublicKeyInfo (the chain check above
    // already required a P-384 ECDSA certificate).
    let spki = leaf.subject_public_key_info();
    let spki = spki.as_ref();
    let point = spki
        .get(spki.len().saturating_sub(97)..)
        .filter(|p| p.len() == 97 && p[0] == 0x04)
        .ok_or_else(|| {
            Error::AttestationChain("leaf key is not an uncompressed P-384 point".into())
        })?;
    let signed = envelope.to_be_signed();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P384_SHA384_FIXED, point)
        .verify(&signed, &envelope.signature)
        .map_err(|_| Error::AttestationSignature)?;
    let mut valid_from = 0u64;
    let mut valid_until = u64::MAX;
    for der in std::iter::once(&document.certificate).chain(&document.cabundle) {
        let (from, until) = certificate_validity(der)?;
        valid_from = valid_from.max(from);
        valid_until = valid_until.min(until);
    }
    Ok(VerifiedDocument {
        document,
        root: root.kind,
        document_hash: Sha256::digest(bytes).into(),
        valid_from,
        valid_until,
    })
}

/// What a client requires of an attested node, beyond a valid document.
#[derive(Clone, Debug)]
pub struct AttestationPolicy {
    /// Oldest document accepted, in milliseconds.
    pub max_age_ms: u64,
    /// Clock skew tolerated for documents dated in the future, in milliseconds.
    pub max_future_ms: u64,
}

impl Default for AttestationPolicy {
    fn default() -> Self {
        AttestationPolicy {
            max_age_ms: 10 * 60 * 1000,
            max_future_ms: 60 * 1000,
        }
    }
}

/// The `user_data` a node must attest: the prefix, the model's SHA-256, the leaf hash of the
/// release entry it runs, and the public key it signs its answers with
/// ([`crate::signed_answer`]): 112 bytes.
pub fn binding_user_data(
    model_sha256: &[u8; 32],
    release_leaf_hash: &[u8; 32],
    answer_key: &[u8; 32],
) -> Vec<u8> {
    let mut out = USER_DATA_PREFIX.to_vec();
    out.extend_from_slice(model_sha256);
    out.extend_from_slice(release_leaf_hash);
    out.extend_from_slice(answer_key);
    out
}

/// The `user_data` an ensemble's leader attests: [`binding_user_data`] followed by one byte,
/// the number of members (a power of two from 2 to [`MAX_ENSEMBLE`]) that proved this release to
/// the leader over their links: 113 bytes.
pub fn ensemble_binding_user_data(
    model_sha256: &[u8; 32],
    release_leaf_hash: &[u8; 32],
    answer_key: &[u8; 32],
    members: u8,
) -> Vec<u8> {
    let mut out = binding_user_data(model_sha256, release_leaf_hash, answer_key);
    out.push(members);
    out
}

/// The keys an attestation vouches for, once the release policy holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttestedKeys<'d> {
    /// The document's `public_key`: the key to wrap to (a REK, or a node's key for a wrapped
    /// model key).
    pub public_key: &'d [u8],
    /// The Ed25519 key the node signs its answers with (bytes 80..112 of `user_data`).
    pub answer_key: [u8; 32],
    /// How many nodes compute the answers: 1 for a node alone, the ensemble's size for an
    /// ensemble's leader (the last byte of a 113-byte `user_data`).
    pub members: u8,
}

/// Applies the release policy to a verified document at `now_ms`: not a debug enclave, PCR0/1/2
/// (and PCR8 when the release names one) equal to the release's, fresh enough, `user_data` binding
/// the release's model digest and leaf hash (and an answer key), a public key present, and the
/// nonce when one was asked for. Returns the public key and the answer key.
pub fn check_attestation<'d>(
    verified: &'d VerifiedDocument,
    release: &VerifiedEntry,
    policy: &AttestationPolicy,
    now_ms: u64,
    nonce: Option<&[u8]>,
) -> Result<AttestedKeys<'d>> {
    let doc = &verified.document;
    let EntryBody::Release(r) = &release.entry.entry.body else {
        return Err(Error::WrongEntryKind {
            expected: "release",
            found: release.entry.entry.body.kind_name(),
        });
    };
    let zero = [0u8; 48];
    if [0u8, 1, 2].iter().all(|i| doc.pcr(*i) == Some(&zero[..])) {
        return Err(Error::DebugEnclave);
    }
    for (index, want) in [(0u8, &r.pcr0), (1, &r.pcr1), (2, &r.pcr2)] {
        if doc.pcr(index) != Some(&want[..]) {
            return Err(Error::PcrMismatch { index });
        }
    }
    if let Some(pcr8) = &r.pcr8
        && doc.pcr(8) != Some(&pcr8[..])
    {
        return Err(Error::PcrMismatch { index: 8 });
    }
    if doc.timestamp_ms > now_ms + policy.max_future_ms {
        return Err(Error::AttestationFromFuture {
            ahead_ms: doc.timestamp_ms - now_ms,
        });
    }
    let age_ms = now_ms.saturating_sub(doc.timestamp_ms);
    if age_ms > policy.max_age_ms {
        return Err(Error::StaleAttestation {
            age_ms,
            max_ms: policy.max_age_ms,
        });
    }
    let user_data = doc.user_data.as_deref().unwrap_or_default();
    let members = match user_data.len() {
        USER_DATA_LEN => Some(1),
        n if n == USER_DATA_LEN + 1 => Some(user_data[USER_DATA_LEN])
            .filter(|m| (2..=MAX_ENSEMBLE).contains(m) && m.is_power_of_two()),
        _ => None,
    };
    let binds = members.is_some()
        && user_data[..16] == USER_DATA_PREFIX[..]
        && user_data[16..48] == r.model_sha256
        && user_data[48..80] == release.leaf_hash.0;
    if !binds {
        return Err(Error::AttestationBinding(
            "user_data does not bind this release and model",
        ));
    }
    let answer_key: [u8; 32] = user_data[80..USER_DATA_LEN].try_into().expect("32 bytes");
    let members = members.expect("checked above");
    if let Some(nonce) = nonce
        && doc.nonce.as_deref() != Some(nonce)
    {
        return Err(Error::AttestationBinding(
            "nonce differs from the challenge",
        ));
    }
    let public_key = doc.public_key.as_deref().ok_or(Error::AttestationBinding(
        "no public key (REK) in the document",
    ))?;
    Ok(AttestedKeys {
        public_key,
        answer_key,
        members,
    })
}

/// Verified documents by the SHA-256 of their exact bytes and of the root they chain to: a
/// repeated document skips the chain and signature checks, but not the time check.
#[derive(Debug, Default)]
pub struct DocumentCache {
    /// By (SHA-256 of the document, SHA-256 of the root it was verified against).
    entries: HashMap<([u8; 32], [u8; 32]), VerifiedDocument>,
}

impl DocumentCache {
    /// Most documents kept.
    pub const CAPACITY: usize = 4096;

    /// Verifies `bytes` at `now` (seconds), using and filling the cache.
    pub fn verify(&mut self, bytes: &[u8], root: &NitroRoot, now: u64) -> Result<VerifiedDocument> {
        let key: ([u8; 32], [u8; 32]) = (
            Sha256::digest(bytes).into(),
            Sha256::digest(&root.der).into(),
        );
        if let Some(hit) = self.entries.get(&key) {
            // The same window the chain check applies: notBefore ≤ now ≤ notAfter.
            if now < hit.valid_from || now > hit.valid_until {
                return Err(Error::AttestationExpired { at: now });
            }
            return Ok(hit.clone());
        }
        let verified = verify_document(bytes, root, now)?;
        if self.entries.len() >= Self::CAPACITY {
            self.entries.clear();
        }
        self.entries.insert(key, verified.clone());
        Ok(verified)
    }
}

// --- X.509 validity (just enough DER to read notBefore and notAfter) -------------------------

fn der_take<'a>(input: &mut &'a [u8]) -> Result<(u8, &'a [u8])> {
    crate::der::take(input).ok_or_else(|| malformed("certificate is not valid DER"))
}

/// (notBefore, notAfter) of a certificate, in seconds since the epoch.
fn certificate_validity(der: &[u8]) -> Result<(u64, u64)> {
    let mut input = der;
    let (_, mut certificate) = der_take(&mut input)?;
    let (_, mut tbs) = der_take(&mut certificate)?;
    let (tag, _) = der_take(&mut tbs)?;
    if tag == 0xa0 {
        der_take(&mut tbs)?; // serial number
    }
    der_take(&mut tbs)?; // signature algorithm
    der_take(&mut tbs)?; // issuer
    let (_, mut validity) = der_take(&mut tbs)?;
    let not_before = der_time(der_take(&mut validity)?)?;
    let not_after = der_time(der_take(&mut validity)?)?;
    Ok((not_before, not_after))
}

fn der_time((tag, bytes): (u8, &[u8])) -> Result<u64> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("bad certificate time"))?;
    let digits = text
        .strip_suffix('Z')
        .ok_or_else(|| malformed("certificate time must be UTC"))?;
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: u64 = digits[..2].parse().map_err(|_| malformed("bad UTCTime"))?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (0x18, 14) => (
            digits[..4]
                .parse()
                .map_err(|_| malformed("bad GeneralizedTime"))?,
            &digits[4..],
        ),
        _ => return Err(malformed("unsupported certificate time")),
    };
    let field = |i: usize| -> Result<u64> {
        rest[i..i + 2]
            .parse()
            .map_err(|_| malformed("bad certificate time"))
    };
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(malformed("certificate time out of range"));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2023, 1, 18), 19_375);
    }

    #[test]
    fn aws_root_is_built_in() {
        let root = NitroRoot::aws();
        assert_eq!(root.kind(), RootKind::Aws);
        let (from, until) = certificate_validity(root.der()).unwrap();
        assert_eq!(from, 1_572_269_285); // 2019-10-28T13:28:05Z
        assert_eq!(until, 2_519_044_085); // 2049-10-28T14:28:05Z
    }
}
