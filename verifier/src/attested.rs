//! A compute node's attestation bundle: its Nitro attestation document plus the proof bundle of
//! the `release` entry it runs, verified in one call by clients and gateways alike.
//!
//! Wire form (JSON, `spec/attestation.md`):
//! `{"version":1,"document":"<base64 COSE_Sign1>","release":"<c2sp.org/tlog-proof@v1 text>"}`.
//!
//! Verification order, stopping at the first failure: the release proof bundle (log signature,
//! witness policy, inclusion proof, publisher signature, kind rules, validity window, and
//! consistency with the caller's current checkpoint) → the document's COSE signature and chain
//! to the configured Nitro root → the release policy (PCRs, not debug, freshness, `user_data`
//! binding the model digest and release leaf, the nonce when one was asked) → the REK.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::bundle::{TrustAnchors, VerifiedEntry, verify_bundle};
use crate::checkpoint::Checkpoint;
use crate::entry::EntryBody;
use crate::nitro::{AttestationPolicy, DocumentCache, NitroRoot, RootKind, check_attestation};
use crate::sealed::RekPublicKey;
use crate::{Error, Result};

/// Current bundle format version.
pub const NODE_BUNDLE_VERSION: u32 = 1;
/// Largest encoded node bundle accepted (document ≤ 16 KiB, release bundle ≤ 256 KiB, base64).
pub const MAX_NODE_BUNDLE_BYTES: usize = 320 * 1024;

/// What a node presents: its attestation document and the proof bundle of its release entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeBundle {
    /// The COSE_Sign1 attestation document, raw bytes.
    pub document: Vec<u8>,
    /// The release entry's proof bundle (`c2sp.org/tlog-proof@v1` text with the entry).
    pub release: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeBundleJson {
    version: u32,
    document: String,
    release: String,
}

impl NodeBundle {
    /// The JSON wire form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&NodeBundleJson {
            version: NODE_BUNDLE_VERSION,
            document: BASE64.encode(&self.document),
            release: self.release.clone(),
        })
        .expect("strings and numbers serialize")
    }

    /// Parses the JSON wire form (strict: unknown fields and other versions are refused).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_NODE_BUNDLE_BYTES {
            return Err(Error::MalformedNodeBundle("over 320 KiB"));
        }
        let json: NodeBundleJson = serde_json::from_slice(bytes)
            .map_err(|_| Error::MalformedNodeBundle("not the expected JSON"))?;
        if json.version != NODE_BUNDLE_VERSION {
            return Err(Error::MalformedNodeBundle("unsupported version"));
        }
        let document = BASE64
            .decode(json.document)
            .map_err(|_| Error::MalformedNodeBundle("document is not base64"))?;
        Ok(NodeBundle {
            document,
            release: json.release,
        })
    }

    /// SHA-256 of the JSON wire form's parts (document hash ‖ release bundle), for receipts.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(Sha256::digest(&self.document));
        h.update(Sha256::digest(self.release.as_bytes()));
        h.finalize().into()
    }
}

/// Everything a verifier of node bundles trusts.
#[derive(Clone, Copy, Debug)]
pub struct NodeTrust<'a> {
    /// The log, its witnesses, the release publishers and the entry rules.
    pub anchors: TrustAnchors<'a>,
    /// The Nitro root documents must chain to.
    pub nitro_root: &'a NitroRoot,
    /// Freshness rules for documents.
    pub attestation: &'a AttestationPolicy,
}

/// A node that verified: the key to wrap DEKs to and what vouches for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedNode {
    /// The REK from the document's `public_key`.
    pub rek: RekPublicKey,
    /// The key the node signs its answers with (bound in the document's `user_data`).
    pub answer_key: [u8; 32],
    /// How many nodes compute its answers: 1, or the size of the ensemble it leads.
    pub members: u8,
    /// The release entry, its proof and checkpoint.
    pub release: VerifiedEntry,
    /// The model digest the node attested and the release names.
    pub model_sha256: [u8; 32],
    /// SHA-256 of the document bytes.
    pub document_hash: [u8; 32],
    /// When the NSM signed the document (milliseconds since the epoch).
    pub attested_at_ms: u64,
    /// The end of the document chain's validity (seconds since the epoch).
    pub valid_until: u64,
    /// Which root the document chains to.
    pub root: RootKind,
}

/// Verifies a node bundle at `now_ms` (milliseconds since the epoch). `current` is the caller's
/// verified checkpoint: the release bundle must be proven against exactly it, when given. `nonce`
/// is the caller's challenge, when it asked for one. `cache` skips repeated chain checks.
pub fn verify_node_bundle(
    bundle: &NodeBundle,
    trust: &NodeTrust<'_>,
    current: Option<&Checkpoint>,
    now_ms: u64,
    nonce: Option<&[u8]>,
    cache: &mut DocumentCache,
) -> Result<VerifiedNode> {
    let release = verify_bundle(
        bundle.release.as_bytes(),
        &trust.anchors,
        current,
        now_ms / 1000,
    )?;
    verify_node_document(&bundle.document, release, trust, now_ms, nonce, cache)
}

/// The second half of [`verify_node_bundle`], for callers that verified (and perhaps cached) the
/// release bundle themselves: the document's chain at `now_ms`, then the release policy, then the
/// REK.
pub fn verify_node_document(
    document: &[u8],
    release: VerifiedEntry,
    trust: &NodeTrust<'_>,
    now_ms: u64,
    nonce: Option<&[u8]>,
    cache: &mut DocumentCache,
) -> Result<VerifiedNode> {
    let now = now_ms / 1000;
    let EntryBody::Release(r) = &release.entry.entry.body else {
        return Err(Error::WrongEntryKind {
            expected: "release",
            found: release.entry.entry.body.kind_name(),
        });
    };
    let model_sha256 = r.model_sha256;
    let document = cache.verify(document, trust.nitro_root, now)?;
    let keys = check_attestation(&document, &release, trust.attestation, now_ms, nonce)?;
    let rek = RekPublicKey::from_slice(keys.public_key)?;
    Ok(VerifiedNode {
        rek,
        answer_key: keys.answer_key,
        members: keys.members,
        model_sha256,
        document_hash: document.document_hash,
        attested_at_ms: document.document.timestamp_ms,
        valid_until: document.valid_until,
        root: document.root,
        release,
    })
}

/// What a node sends the gateway to be listed (`POST /v1/nodes`, JSON): where the gateway reaches
/// it, what it serves, and its bundle. The gateway verifies the bundle exactly as a client does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRegistration {
    /// The node's base URL as the gateway reaches it.
    pub url: String,
    /// The model name requests use.
    pub model: String,
    /// Requests the node serves at once.
    pub capacity: u32,
    /// The attestation document, base64.
    pub document: String,
    /// The release proof bundle text.
    pub release: String,
}

impl NodeRegistration {
    /// A registration for `bundle`.
    pub fn new(url: String, model: String, capacity: u32, bundle: &NodeBundle) -> Self {
        NodeRegistration {
            url,
            model,
            capacity,
            document: BASE64.encode(&bundle.document),
            release: bundle.release.clone(),
        }
    }

    /// The bundle it carries.
    pub fn bundle(&self) -> Result<NodeBundle> {
        Ok(NodeBundle {
            document: BASE64
                .decode(&self.document)
                .map_err(|_| Error::MalformedNodeBundle("document is not base64"))?,
            release: self.release.clone(),
        })
    }
}

/// Longest node URL a registration may name.
pub const MAX_NODE_URL_BYTES: usize = 2048;

/// The nonce a node attests when the gateway challenges a registration for `url` with
/// `challenge`: `SHA-256("arcane-aip/registration/v1" ‖ u16 len(challenge) ‖ challenge ‖ url)`.
///
/// The node computes it over a URL it registered under itself and refuses any other, so a copy
/// of its (public) bundle registered under someone else's URL cannot pass the challenge — not by
/// redirecting the gateway to the node (the gateway follows no redirect), and not by relaying
/// the challenge to it (the node would attest its own URL, not the relayer's).
pub fn registration_nonce(challenge: &[u8], url: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"arcane-aip/registration/v1");
    h.update((challenge.len().min(u16::MAX as usize) as u16).to_be_bytes());
    h.update(challenge);
    h.update(url.trim_end_matches('/').as_bytes());
    h.finalize().into()
}
