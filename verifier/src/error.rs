//! The one error type of the verifier.

use thiserror::Error;

/// Everything that can go wrong while checking a proof, a note, a checkpoint or a tile.
///
/// Variants say which check failed; none of them carries secret material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is documented by its message
pub enum Error {
    // --- Merkle proofs -------------------------------------------------------------------
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a consistency proof needs 0 < old size <= new size, got old {old} and new {new}")]
    InvalidSizes { old: u64, new: u64 },
    #[error("proof has {got} hashes, expected {expected}")]
    WrongProofLength { got: usize, expected: usize },
    #[error("proof does not lead to the expected root hash")]
    RootMismatch,
    #[error("proof does not lead to the old root hash")]
    OldRootMismatch,
    #[error("hash is {0} bytes, expected 32")]
    BadHashLength(usize),

    // --- signed notes ----------------------------------------------------------------------
    #[error("note is {0} bytes, over the limit")]
    NoteTooLarge(usize),
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("note has {0} signature lines, over the limit")]
    TooManySignatures(usize),
    #[error("signature by known key {name} does not verify")]
    InvalidSignature { name: String },
    #[error("note carries two signatures by key {name}")]
    DuplicateSignature { name: String },
    #[error("note has no valid signature by a known key")]
    NoKnownSignature,

    // --- checkpoints and witnesses ------------------------------------------------------
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("malformed cosignature by {name}: {why}")]
    MalformedCosignature { name: String, why: &'static str },
    #[error("witness policy needs {required} cosignatures, found {found} valid")]
    NotEnoughCosignatures { required: usize, found: usize },
    #[error("invalid witness policy: {0}")]
    InvalidPolicy(&'static str),

    // --- tiles ---------------------------------------------------------------------------
    #[error("malformed tile path: {0}")]
    MalformedTilePath(&'static str),
    #[error("malformed tile: {0}")]
    MalformedTile(&'static str),
    #[error("malformed entry bundle: {0}")]
    MalformedEntryBundle(&'static str),
    #[error("entry of {0} bytes does not fit a bundle (at most 65535)")]
    EntryTooLarge(usize),

    // --- typed entries and proof bundles ----------------------------------------------------
    #[error("malformed entry: {0}")]
    MalformedEntry(&'static str),
    #[error("entry kind {0} is not one this verifier knows")]
    UnknownEntryKind(u8),
    #[error("entry of kind {found} where {expected} was required")]
    WrongEntryKind {
        expected: &'static str,
        found: String,
    },
    #[error("invalid {kind} entry: {why}")]
    InvalidEntry { kind: &'static str, why: String },
    #[error("entry publisher is not a trusted publisher")]
    UnknownPublisher,
    #[error("entry signature does not verify")]
    EntrySignature,
    #[error("entry expired at {not_after}, now is {now}")]
    EntryExpired { not_after: u64, now: u64 },
    #[error("entry is not valid before {not_before}, now is {now}")]
    EntryNotYetValid { not_before: u64, now: u64 },
    #[error("malformed proof bundle: {0}")]
    MalformedBundle(&'static str),
    #[error("malformed log reply: {0}")]
    MalformedLogReply(&'static str),
    #[error("bundle is against checkpoint size {bundle}, older than the current {current}")]
    StaleCheckpoint { bundle: u64, current: u64 },
    #[error(
        "bundle is against checkpoint size {bundle}, newer than the current {current}; update the checkpoint first"
    )]
    CheckpointAhead { bundle: u64, current: u64 },
    #[error(
        "bundle's checkpoint has a different root for size {size} than the current one: the log forked"
    )]
    ForkedCheckpoint { size: u64 },
    #[error("malformed EIF: {0}")]
    MalformedEif(String),
    #[error("malformed CBOR: {0}")]
    MalformedCbor(&'static str),

    // --- Nitro attestation ------------------------------------------------------------------
    #[error("malformed attestation document: {0}")]
    MalformedAttestation(String),
    #[error("attestation signature does not verify")]
    AttestationSignature,
    #[error("attestation certificate chain does not verify: {0}")]
    AttestationChain(String),
    #[error("attestation certificate chain is expired or not yet valid at {at}")]
    AttestationExpired { at: u64 },
    #[error("attestation chain does not start at the configured root")]
    AttestationRootMismatch,
    #[error("PCR{index} of the enclave does not match the release")]
    PcrMismatch { index: u8 },
    #[error("the enclave runs in debug mode (PCR0, PCR1 and PCR2 are all zero)")]
    DebugEnclave,
    #[error("attestation document is {age_ms} ms old, the maximum is {max_ms} ms")]
    StaleAttestation { age_ms: u64, max_ms: u64 },
    #[error("attestation document is dated {ahead_ms} ms in the future")]
    AttestationFromFuture { ahead_ms: u64 },
    #[error("attestation binding mismatch: {0}")]
    AttestationBinding(&'static str),

    // --- sealed requests and responses ------------------------------------------------------
    #[error("malformed sealed message: {0}")]
    MalformedSealed(&'static str),
    #[error("the wrapped DEK names a REK this node does not hold")]
    UnknownRek,
    #[error("sealed message does not open: {0}")]
    SealedOpen(&'static str),
    #[error("sealed response stream: {0}")]
    SealedStream(&'static str),

    // --- node attestation bundles -----------------------------------------------------------
    #[error("malformed node attestation bundle: {0}")]
    MalformedNodeBundle(&'static str),

    // --- model key release ----------------------------------------------------------------------
    #[error("malformed key release message: {0}")]
    MalformedKeyRelease(&'static str),
    #[error("model key release refused: {0}")]
    KeyReleaseRefused(String),

    // --- answers signed by the node -------------------------------------------------------------
    #[error("malformed signed answer: {0}")]
    MalformedSignedAnswer(&'static str),
    #[error("signed answer: {0}")]
    SignedAnswerMismatch(&'static str),
    #[error("the answer's signature does not verify under the node's answer key")]
    AnswerSignature,
    #[error("the answer carries no signature from the node")]
    UnsignedAnswer,

    // --- inner requests -----------------------------------------------------------------------
    #[error("malformed inner request: {0}")]
    MalformedInner(&'static str),
    #[error("malformed streamed Binary HTTP response: {0}")]
    MalformedBhttp(&'static str),
    #[error("the inner request's path is not /v1/chat/completions")]
    InnerPathNotFound,

    // --- tokens ---------------------------------------------------------------------------------
    #[error("token: {0}")]
    Token(&'static str),

    // --- ensemble links -------------------------------------------------------------------------
    #[error("ensemble link: {0}")]
    Link(&'static str),
}

/// Result with the verifier's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
