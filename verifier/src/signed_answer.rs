//! Answers a node signs inside the enclave (`spec/sealed.md` §5): the final chunk of a sealed
//! answer carries a statement binding the sealed request the node decrypted, the answer it
//! produced, the model, its release entry and its attestation document, signed with the node's
//! answer key — an Ed25519 key its attestation binds (`user_data`, [`crate::nitro`]). A client
//! checks it before writing its receipt; the receipt carries it; anyone can check a receipt
//! later with the Nitro root and the log's key alone ([`verify_receipt_evidence`]).
//!
//! ```text
//! statement = "arcane-aip/answer/v1\n" ‖ SHA-256(sealed request) ‖ SHA-256(answer text)
//!             ‖ model SHA-256 ‖ release leaf hash ‖ SHA-256(document)
//! signature = Ed25519(answer key, statement)
//! ```
//!
//! The sealed request is the node request's bytes (wrapped DEK ‖ ciphertext, `spec/sealed.md`);
//! the answer text is every delta's content, in order, as UTF-8.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundle::{ProofBundle, VerifiedEntry};
use crate::cosignature::WitnessPolicy;
use crate::entry::{EntryBody, Release, SignedEntry};
use crate::nitro::{AttestationPolicy, NitroRoot, RootKind, binding_user_data, verify_document};
use crate::note::VerifierKey;
use crate::{Error, Result};

/// What the signature covers before the statement's fields.
pub const ANSWER_CONTEXT: &[u8] = b"arcane-aip/answer/v1\n";

/// A node's answer key: Ed25519, made at boot, in memory only (zeroized on drop).
pub struct AnswerSigningKey(SigningKey);

impl std::fmt::Debug for AnswerSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AnswerSigningKey")
            .field(&hex(&self.public()))
            .finish()
    }
}

impl AnswerSigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut seed[..]).expect("the operating system's random source");
        AnswerSigningKey(SigningKey::from_bytes(&seed))
    }

    /// The public key a node's attestation binds.
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs `statement`.
    pub fn sign(&self, statement: &AnswerStatement) -> [u8; 64] {
        self.0.sign(&statement.to_be_signed()).to_bytes()
    }
}

/// What a node states about one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerStatement {
    /// SHA-256 of the sealed request the node decrypted (its request body).
    pub request_sha256: [u8; 32],
    /// SHA-256 of the answer's text.
    pub answer_sha256: [u8; 32],
    /// The model the node runs.
    pub model_sha256: [u8; 32],
    /// The leaf hash of the node's release entry.
    pub release_leaf_hash: [u8; 32],
    /// SHA-256 of the attestation document the statement comes with.
    pub document_sha256: [u8; 32],
}

impl AnswerStatement {
    /// The bytes the answer key signs.
    pub fn to_be_signed(&self) -> Vec<u8> {
        let mut out = ANSWER_CONTEXT.to_vec();
        for field in [
            &self.request_sha256,
            &self.answer_sha256,
            &self.model_sha256,
            &self.release_leaf_hash,
            &self.document_sha256,
        ] {
            out.extend_from_slice(field);
        }
        out
    }
}

/// The statement as the final chunk carries it (and a receipt keeps it): JSON, digests in hex,
/// the document and the signature in base64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAnswer {
    /// SHA-256 of the sealed request, hex.
    pub request_sha256: String,
    /// SHA-256 of the answer's text, hex.
    pub answer_sha256: String,
    /// The model's SHA-256, hex.
    pub model_sha256: String,
    /// The release entry's leaf hash, hex.
    pub release_leaf_hash: String,
    /// The node's attestation document (COSE_Sign1), base64.
    pub document: String,
    /// The proof bundle of the node's release entry (`c2sp.org/tlog-proof@v1` text): the entry
    /// the statement names, proven in a checkpoint of the log.
    pub release: String,
    /// The Ed25519 signature over the statement, base64.
    pub signature: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(text: &str, what: &'static str) -> Result<[u8; 32]> {
    let bad = || Error::MalformedSignedAnswer(what);
    if text.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16).ok_or_else(bad);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Ok(out)
}

impl SignedAnswer {
    /// The node's side: signs `statement` (whose `document_sha256` is `document`'s and whose
    /// release is the entry `release` proves) with `key`.
    pub fn sign(
        key: &AnswerSigningKey,
        statement: &AnswerStatement,
        document: &[u8],
        release: &str,
    ) -> Self {
        SignedAnswer {
            request_sha256: hex(&statement.request_sha256),
            answer_sha256: hex(&statement.answer_sha256),
            model_sha256: hex(&statement.model_sha256),
            release_leaf_hash: hex(&statement.release_leaf_hash),
            document: BASE64.encode(document),
            release: release.to_owned(),
            signature: BASE64.encode(key.sign(statement)),
        }
    }

    /// The statement, the document and the signature, decoded (not yet verified).
    pub fn decode(&self) -> Result<(AnswerStatement, Vec<u8>, [u8; 64])> {
        let document = BASE64
            .decode(&self.document)
            .map_err(|_| Error::MalformedSignedAnswer("document is not base64"))?;
        let signature: [u8; 64] = BASE64
            .decode(&self.signature)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::MalformedSignedAnswer(
                "signature is not 64 bytes of base64",
            ))?;
        let statement = AnswerStatement {
            request_sha256: unhex32(
                &self.request_sha256,
                "request_sha256 is not 32 bytes of hex",
            )?,
            answer_sha256: unhex32(&self.answer_sha256, "answer_sha256 is not 32 bytes of hex")?,
            model_sha256: unhex32(&self.model_sha256, "model_sha256 is not 32 bytes of hex")?,
            release_leaf_hash: unhex32(
                &self.release_leaf_hash,
                "release_leaf_hash is not 32 bytes of hex",
            )?,
            document_sha256: Sha256::digest(&document).into(),
        };
        Ok((statement, document, signature))
    }
}

/// SHA-256 of a sealed request as the node received it: the wrapped DEK's encoding, then the
/// request ciphertext.
pub fn request_sha256(wrapped_dek: &[u8], ciphertext: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(wrapped_dek);
    h.update(ciphertext);
    h.finalize().into()
}

fn check_signature(
    statement: &AnswerStatement,
    signature: &[u8; 64],
    key: &[u8; 32],
) -> Result<()> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| Error::AnswerSignature)?;
    key.verify(&statement.to_be_signed(), &Signature::from_bytes(signature))
        .map_err(|_| Error::AnswerSignature)
}

/// What a client expects of the answer it just read.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedAnswer<'a> {
    /// SHA-256 of the sealed request it sent to the node that answered.
    pub request_sha256: [u8; 32],
    /// SHA-256 of the text it read.
    pub answer_sha256: [u8; 32],
    /// The release it verified for that node.
    pub release: &'a VerifiedEntry,
    /// The model that release names.
    pub model_sha256: [u8; 32],
    /// The answer key the node's verified document bound.
    pub answer_key: [u8; 32],
    /// How many nodes its verified document said compute its answers (1, or an ensemble's size).
    pub members: u8,
    /// The log's key: a statement naming a newer release entry of the same image (the node
    /// moved to it after the client verified the older one) must prove it in the log.
    pub log_key: &'a VerifierKey,
}

/// The client's check, before it writes a receipt: the statement names this request, this
/// answer and the node's model; its release is the one the client verified, or a release entry
/// of the same image and model that the statement's bundle proves in the log (a node moves to
/// its newer entry before the old one expires); the document it comes with binds that model,
/// release and the answer key the client verified (its chain was verified with the node's
/// bundle: the key is the node's for its lifetime); and the signature verifies under that key.
pub fn check_signed_answer(signed: &SignedAnswer, expected: &ExpectedAnswer<'_>) -> Result<()> {
    let (statement, document, signature) = signed.decode()?;
    let mismatch = |what: &'static str| Err(Error::SignedAnswerMismatch(what));
    if statement.request_sha256 != expected.request_sha256 {
        return mismatch("the statement names another request");
    }
    if statement.answer_sha256 != expected.answer_sha256 {
        return mismatch("the statement names another answer");
    }
    if statement.model_sha256 != expected.model_sha256 {
        return mismatch("the statement names another model");
    }
    if statement.release_leaf_hash != expected.release.leaf_hash.0 {
        let proven = proven_release(&signed.release, expected.log_key)?;
        let (named, verified) = (
            release_of(&proven.entry)?,
            release_of(&expected.release.entry)?,
        );
        let same_image = named.pcr0 == verified.pcr0
            && named.pcr1 == verified.pcr1
            && named.pcr2 == verified.pcr2
            && named.pcr8 == verified.pcr8
            && named.model_sha256 == verified.model_sha256;
        if proven.leaf_hash.0 != statement.release_leaf_hash || !same_image {
            return mismatch("the statement names another release");
        }
    }
    let (_, payload) = crate::nitro::parse_document(&document)?;
    let binding = match expected.members {
        1 => binding_user_data(
            &statement.model_sha256,
            &statement.release_leaf_hash,
            &expected.answer_key,
        ),
        members => crate::nitro::ensemble_binding_user_data(
            &statement.model_sha256,
            &statement.release_leaf_hash,
            &expected.answer_key,
            members,
        ),
    };
    if payload.user_data.as_deref() != Some(&binding[..]) {
        return mismatch("the statement's document does not bind this node's answer key");
    }
    check_signature(&statement, &signature, &expected.answer_key)
}

/// A release bundle proven in a checkpoint the log signed, whoever published the entry: the
/// entry, its place and checkpoint. Its `publisher` is the log's key — no publisher is judged
/// here (the caller compares the release with one it trusts, or names the entry's publisher id).
fn proven_release(bundle: &str, log_key: &VerifierKey) -> Result<VerifiedEntry> {
    let parsed = ProofBundle::parse(bundle.as_bytes())?;
    let (checkpoint, leaf_hash) = parsed.prove(log_key, &WitnessPolicy::none())?;
    let entry = SignedEntry::decode(&parsed.entry)?;
    release_of(&entry)?;
    Ok(VerifiedEntry {
        entry,
        index: parsed.index,
        leaf_hash,
        checkpoint,
        publisher: log_key.clone(),
    })
}

/// The release an entry is, or an error naming its kind.
fn release_of(entry: &SignedEntry) -> Result<&Release> {
    match &entry.entry.body {
        EntryBody::Release(release) => Ok(release),
        other => Err(Error::WrongEntryKind {
            expected: "release",
            found: other.kind_name(),
        }),
    }
}

/// Everything an offline check of a receipt establishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedReceiptEvidence {
    /// The statement that verified.
    pub statement: AnswerStatement,
    /// The release entry (its index and leaf hash), proven in a checkpoint the log signed.
    pub release_index: u64,
    /// The log's tree size in that checkpoint.
    pub checkpoint_size: u64,
    /// Which root the document chains to.
    pub root: RootKind,
    /// When the NSM signed the document (milliseconds).
    pub attested_at_ms: u64,
}

/// Checks, offline, the statement a receipt carries: its release bundle against the log's key
/// alone — the checkpoint's log signature, the inclusion proof, a canonical `release` entry
/// (whose publisher the caller judges; [`VerifiedReceiptEvidence`] names no trusted one); the
/// node's document against `root`, at the time it was signed: chain, signature, PCRs equal to
/// the release's, not a debug enclave, binding the release, the model and the answer key; and
/// the node's signature over the statement, whose model and release are those.
pub fn verify_receipt_evidence(
    signed: &SignedAnswer,
    log_key: &VerifierKey,
    root: &NitroRoot,
) -> Result<VerifiedReceiptEvidence> {
    let (statement, document, signature) = signed.decode()?;
    let release_entry = proven_release(&signed.release, log_key)?;
    let release = release_of(&release_entry.entry)?;
    if statement.release_leaf_hash != release_entry.leaf_hash.0
        || statement.model_sha256 != release.model_sha256
    {
        return Err(Error::SignedAnswerMismatch(
            "the statement names another release or model than its bundle proves",
        ));
    }
    let (_, payload) = crate::nitro::parse_document(&document)?;
    let verified = verify_document(&document, root, payload.timestamp_ms / 1000)?;
    let attested = crate::nitro::check_attestation(
        &verified,
        &release_entry,
        &AttestationPolicy::default(),
        payload.timestamp_ms,
        None,
    )?;
    check_signature(&statement, &signature, &attested.answer_key)?;
    Ok(VerifiedReceiptEvidence {
        statement,
        release_index: release_entry.index,
        checkpoint_size: release_entry.checkpoint.checkpoint.size,
        root: verified.root,
        attested_at_ms: payload.timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> AnswerStatement {
        AnswerStatement {
            request_sha256: [1; 32],
            answer_sha256: [2; 32],
            model_sha256: [3; 32],
            release_leaf_hash: [4; 32],
            document_sha256: Sha256::digest(b"document").into(),
        }
    }

    #[test]
    fn a_statement_verifies_under_its_key_only_and_binds_every_field() {
        let key = AnswerSigningKey::generate();
        let signed = SignedAnswer::sign(&key, &statement(), b"document", "bundle");
        let (decoded, document, signature) = signed.decode().unwrap();
        assert_eq!(decoded, statement());
        assert_eq!(document, b"document");
        check_signature(&decoded, &signature, &key.public()).unwrap();
        assert_eq!(
            check_signature(&decoded, &signature, &AnswerSigningKey::generate().public()),
            Err(Error::AnswerSignature)
        );
        // Each field is signed: changing any one fails.
        for field in 0..5 {
            let mut changed = decoded.clone();
            match field {
                0 => changed.request_sha256[0] ^= 1,
                1 => changed.answer_sha256[0] ^= 1,
                2 => changed.model_sha256[0] ^= 1,
                3 => changed.release_leaf_hash[0] ^= 1,
                _ => changed.document_sha256[0] ^= 1,
            }
            assert_eq!(
                check_signature(&changed, &signature, &key.public()),
                Err(Error::AnswerSignature),
                "field {field}"
            );
        }
    }

    #[test]
    fn a_malformed_statement_is_refused_by_type() {
        let key = AnswerSigningKey::generate();
        let good = SignedAnswer::sign(&key, &statement(), b"document", "bundle");
        for bad in [
            SignedAnswer {
                request_sha256: "zz".repeat(32),
                ..good.clone()
            },
            SignedAnswer {
                answer_sha256: "00".repeat(31),
                ..good.clone()
            },
            SignedAnswer {
                signature: BASE64.encode([0u8; 63]),
                ..good.clone()
            },
            SignedAnswer {
                document: "not base64!".into(),
                ..good.clone()
            },
        ] {
            assert!(matches!(bad.decode(), Err(Error::MalformedSignedAnswer(_))));
        }
        let json = serde_json::to_string(&good).unwrap();
        let parsed: SignedAnswer = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, good);
        let extra = json.replacen('{', "{\"more\":1,", 1);
        assert!(serde_json::from_str::<SignedAnswer>(&extra).is_err());
    }
}
