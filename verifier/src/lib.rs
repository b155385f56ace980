//! # arcane-verifier
//!
//! The pure verification toolkit of arcane-aip: everything a client, gateway, compute node or
//! auditor needs to check what the transparency log says, as functions over bytes and types. It
//! does no I/O, spawns nothing and never panics on untrusted input.
//!
//! - [`merkle`]: RFC 6962 / RFC 9162 hashing, roots, compact ranges.
//! - [`proof`]: inclusion and consistency proofs, verification and generation.
//! - [`note`]: C2SP signed notes with Ed25519, verifier and signer key text forms.
//! - [`checkpoint`]: C2SP checkpoints, signed by the log and checked against a witness policy.
//! - [`log_api`]: the log's HTTP API as data — paths, and the replies the server writes and clients
//!   parse.
//! - [`cosignature`]: C2SP `cosignature/v1` witness cosignatures and the k-of-n policy.
//! - [`tiles`]: C2SP tlog-tiles paths, entry bundles and subtree hashes from tiles.
//! - [`timeline`]: "is this checkpoint consistent with what I saw" — the one fork check, as a
//!   state machine (observe → prove → adopt, keep, or fork with evidence).
//! - [`witness`]: the C2SP tlog-witness add-checkpoint protocol, as pure decisions.
//! - [`entry`]: typed, canonically encoded, publisher-signed log entries.
//! - [`key_windows`]: key sets over time and the `overlapping_keys` anomaly.
//! - [`bundle`]: proof bundles (C2SP tlog-proof plus the entry), verified in one call.
//! - [`nitro`]: AWS Nitro Enclaves attestation documents, chain to a configured root, release policy.
//! - [`der`]: the one strict DER reader (RSA public keys in entries, certificate validity).
//! - [`pem`]: PEM certificates and public keys (decoded by `rustls-pki-types`).
//! - [`cbor`]: the small strict CBOR reader and writer used for EIF sections and attestation payloads.
//! - [`sealed`]: sealed requests (a DEK wrapped with HPKE to node REKs) and sealed streamed answers.
//! - [`sealed_model`]: model files encrypted by their owner (chunked ChaCha20-Poly1305, STREAM
//!   nonces), opened chunk by chunk inside a node.
//! - [`model_key`]: releasing a model key to a node that attests a logged release the model's
//!   owner allows: challenge, request, the one decision, the wrapped key.
//! - [`signed_answer`]: the statement a node signs in an answer's final chunk (request, answer,
//!   model, release, document), checked by the client and offline from a receipt.
//! - [`envelope`]: the bodies client → gateway → node carry (chat envelope, node request, OTT grant
//!   request), one encoder and one parser each.
//! - [`openai`]: the OpenAI-compatible chat surface a local proxy offers: strict request reading,
//!   replies and errors in OpenAI's shapes.
//! - [`tokens`]: Privacy Pass publicly verifiable tokens (RFC 9578 type 2) and the TGT → OTT derivation.
//! - [`inner`]: the BHTTP inner request (OpenAI-shaped chat body, token material) and chunk contents.
//! - [`streamed_response`]: the indeterminate-length BHTTP response a streamed answer travels in
//!   (and the QUIC varint it frames with).
//! - [`attested`]: a node's attestation bundle (document + release proof bundle), verified in one call.
//! - [`eif`]: PCR0/1/2/8 of a Nitro Enclave Image File, as `nitro-cli describe-eif` computes them.
//!
//! ```
//! use arcane_verifier::{checkpoint::Checkpoint, cosignature::WitnessPolicy, merkle, note, proof};
//!
//! // A log with three entries, its signed checkpoint, and a proof that entry 1 is in it.
//! let leaves: Vec<_> = [&b"a"[..], b"b", b"c"].iter().map(|d| merkle::leaf_hash(d)).collect();
//! let root = merkle::root_from_leaf_hashes(&leaves);
//! let log_key = note::NoteSigner::from_seed("example.com/log", note::ALG_ED25519, &[42; 32])?;
//! let signed = Checkpoint::new("example.com/log", 3, root).sign(&log_key)?.to_text();
//!
//! let verified = arcane_verifier::checkpoint::verify_checkpoint(
//!     signed.as_bytes(), &log_key.verifier(), &WitnessPolicy::none())?;
//! let subtree = |s: u64, e: u64| Ok::<_, ()>(merkle::root_from_leaf_hashes(&leaves[s as usize..e as usize]));
//! let path = proof::inclusion_proof(1, 3, subtree).unwrap();
//! proof::verify_inclusion(1, verified.checkpoint.size, &leaves[1], &path, &verified.checkpoint.root)?;
//! # Ok::<(), arcane_verifier::Error>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod attested;
pub mod bundle;
pub mod cbor;
pub mod checkpoint;
pub mod cosignature;
pub mod der;
pub mod eif;
pub mod ensemble_link;
pub mod entry;
pub mod envelope;
mod error;
pub mod fraud_data;
pub mod inner;
pub mod key_windows;
pub mod log_api;
pub mod merkle;
pub mod model_key;
pub mod nitro;
pub mod note;
pub mod openai;
pub mod pem;
pub mod proof;
pub mod sealed;
pub mod sealed_model;
pub mod signed_answer;
pub mod streamed_response;
pub mod tiles;
pub mod timeline;
pub mod tokens;
pub mod witness;

pub use error::{Error, Result};
pub use merkle::Hash;
