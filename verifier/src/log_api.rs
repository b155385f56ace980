//! The log's HTTP API as data (`spec/log.md`): the paths a client asks for and the JSON replies it
//! gets, each reply one type that the log server serializes and every client parses — strictly,
//! and with the sizes a hostile log could inflate bounded.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::merkle::Hash;
use crate::note::NoteSigner;

/// The signed checkpoint (a signed note).
pub const CHECKPOINT: &str = "/checkpoint";
/// The log's verifier key text.
pub const LOG_KEY: &str = "/log.vkey";
/// Where entries are submitted (`POST`).
pub const ENTRIES: &str = "/v1/entries";

/// Largest entry a log accepts: entry bundles carry a 16-bit length.
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// What a publisher signs to submit an entry: this context, then the entry bytes.
pub const SUBMISSION_CONTEXT: &[u8] = b"arcane-aip/log-submission/v1\n";

/// `POST /v1/entries` body. The log checks it against its allowed publishers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// The entry, standard base64.
    pub entry: String,
    /// The publisher's verifier key text.
    pub publisher: String,
    /// Ed25519 signature over `SUBMISSION_CONTEXT ‖ entry`, standard base64.
    pub signature: String,
}

impl Submission {
    /// Signs `entry` as `publisher`.
    pub fn sign(entry: &[u8], publisher: &NoteSigner) -> Self {
        let base64 = base64::engine::general_purpose::STANDARD;
        Submission {
            entry: base64.encode(entry),
            publisher: publisher.verifier().to_text(),
            signature: base64.encode(publisher.sign_with_context(SUBMISSION_CONTEXT, entry)),
        }
    }
}

/// Most bundles one bundle list holds.
pub const MAX_BUNDLES: usize = 256;
/// Most hashes in one proof (a tree of 2^64 leaves needs fewer).
pub const MAX_PROOF_HASHES: usize = 128;

/// `GET /v1/bundles?kind=…[&pcr0=…]`: the currently valid entries of one kind.
pub fn bundles_of_kind(kind: &str, pcr0: Option<&[u8; 48]>) -> String {
    match pcr0 {
        None => format!("/v1/bundles?kind={kind}"),
        Some(pcr0) => {
            let hex: String = pcr0.iter().map(|b| format!("{b:02x}")).collect();
            format!("/v1/bundles?kind={kind}&pcr0={hex}")
        }
    }
}

/// `GET /v1/bundles?kind=…&size=…`: the entries of one kind valid now, proven in the tree of
/// `size` leaves (an auditor pins the checkpoint it verified).
pub fn bundles_of_kind_at(kind: &str, size: u64) -> String {
    format!("/v1/bundles?kind={kind}&size={size}")
}

/// `GET /v1/bundles/by-hash/<hex>`: one entry's proof bundle at the newest checkpoint.
pub fn bundle_by_hash(leaf_hash: &Hash) -> String {
    format!("/v1/bundles/by-hash/{}", leaf_hash.to_hex())
}

/// `GET /v1/entries/by-hash/<hex>`: an entry's [`EntryStatus`].
pub fn entry_by_hash(leaf_hash: &Hash) -> String {
    format!("/v1/entries/by-hash/{}", leaf_hash.to_hex())
}

/// `GET /v1/entries/<index>`: the entry at `index`, an [`EntryReply`].
pub fn entry_at(index: u64) -> String {
    format!("/v1/entries/{index}")
}

/// What an inclusion proof is asked for: a leaf by index or by hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    /// The leaf at this index.
    Index(u64),
    /// The leaf with this hash.
    Hash(Hash),
}

/// `GET /v1/proof/inclusion?…[&size=…]`: an [`InclusionReply`] for `leaf` in the tree of `size`
/// (default: the newest).
pub fn inclusion(leaf: Leaf, size: Option<u64>) -> String {
    let leaf = match leaf {
        Leaf::Index(index) => format!("index={index}"),
        Leaf::Hash(hash) => format!("leaf_hash={}", hash.to_hex()),
    };
    match size {
        None => format!("/v1/proof/inclusion?{leaf}"),
        Some(size) => format!("/v1/proof/inclusion?{leaf}&size={size}"),
    }
}

/// `GET /v1/proof/consistency?old=…&new=…`.
pub fn consistency(old: u64, new: u64) -> String {
    format!("/v1/proof/consistency?old={old}&new={new}")
}

/// The answer to a submission or an entry lookup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryStatus {
    /// Hex leaf hash.
    pub leaf_hash: String,
    /// `pending` or `integrated`.
    pub status: String,
    /// Leaf index once integrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Whether the entry was already in the log (submissions only).
    #[serde(default)]
    pub duplicate: bool,
}

impl EntryStatus {
    /// Parses the reply.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|_| Error::MalformedLogReply("entry status"))
    }
}

/// `{"index", "leaf_hash", "entry", "publisher"}`: one entry of the log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryReply {
    /// The leaf's index.
    pub index: u64,
    /// Hex leaf hash.
    pub leaf_hash: String,
    /// The entry, standard base64.
    pub entry: String,
    /// The verifier key text of whoever submitted it.
    pub publisher: String,
}

impl EntryReply {
    /// Parses the reply to a request for the entry at `index` and returns the entry's bytes: the
    /// index must be the one asked for and the entry base64 of at most [`MAX_ENTRY_BYTES`].
    /// (Whether the bytes are the leaf is the caller's proof to check.)
    pub fn parse(bytes: &[u8], index: u64) -> Result<Vec<u8>> {
        let reply: EntryReply =
            serde_json::from_slice(bytes).map_err(|_| Error::MalformedLogReply("entry"))?;
        if reply.index != index {
            return Err(Error::MalformedLogReply("entry at another index"));
        }
        let entry = base64::engine::general_purpose::STANDARD
            .decode(&reply.entry)
            .map_err(|_| Error::MalformedLogReply("entry is not base64"))?;
        if entry.len() > MAX_ENTRY_BYTES {
            return Err(Error::MalformedLogReply("entry over 65,535 bytes"));
        }
        Ok(entry)
    }
}

/// `{"tree_size", "valid_at", "bundles": [bundle text, …]}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleList {
    /// The tree size the bundles prove inclusion at.
    pub tree_size: u64,
    /// The time (seconds) the entries were valid at.
    pub valid_at: u64,
    /// The proof bundles, as text; each is verified on its own by whoever uses it.
    pub bundles: Vec<String>,
}

impl BundleList {
    /// Parses the reply; more than [`MAX_BUNDLES`] bundles is refused.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let list: BundleList =
            serde_json::from_slice(bytes).map_err(|_| Error::MalformedLogReply("bundle list"))?;
        if list.bundles.len() > MAX_BUNDLES {
            return Err(Error::MalformedLogReply("bundle list over 256 bundles"));
        }
        Ok(list)
    }
}

/// `{"old_size", "new_size", "proof": [base64 hash, …]}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConsistencyReply {
    /// The older tree size.
    pub old_size: u64,
    /// The newer tree size.
    pub new_size: u64,
    /// The proof, base64 hashes.
    pub proof: Vec<String>,
}

impl ConsistencyReply {
    /// The reply for `proof` between `old_size` and `new_size`.
    pub fn new(old_size: u64, new_size: u64, proof: &[Hash]) -> Self {
        ConsistencyReply {
            old_size,
            new_size,
            proof: encode_hashes(proof),
        }
    }

    /// Parses the reply to a request for `old → new` and returns its hashes: the sizes must be
    /// the ones asked for, and every hash 32 bytes of base64.
    pub fn parse(bytes: &[u8], old: u64, new: u64) -> Result<Vec<Hash>> {
        let reply: ConsistencyReply = serde_json::from_slice(bytes)
            .map_err(|_| Error::MalformedLogReply("consistency proof"))?;
        if (reply.old_size, reply.new_size) != (old, new) {
            return Err(Error::MalformedLogReply(
                "consistency proof for other tree sizes",
            ));
        }
        decode_hashes(&reply.proof)
    }
}

/// `{"index", "tree_size", "leaf_hash", "proof": […], "checkpoint"?}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InclusionReply {
    /// The leaf's index.
    pub index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// Hex leaf hash.
    pub leaf_hash: String,
    /// The audit path, base64 hashes.
    pub proof: Vec<String>,
    /// The checkpoint of `tree_size`, when the log has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

impl InclusionReply {
    /// Parses the reply; the proof's hashes are checked to be hashes.
    pub fn parse(bytes: &[u8]) -> Result<(Self, Vec<Hash>)> {
        let reply: InclusionReply = serde_json::from_slice(bytes)
            .map_err(|_| Error::MalformedLogReply("inclusion proof"))?;
        let proof = decode_hashes(&reply.proof)?;
        Ok((reply, proof))
    }
}

/// `{"error": "…"}`, the body of every refusal.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorReply {
    /// What was wrong.
    pub error: String,
}

impl ErrorReply {
    /// The message of a refusal body, or the body itself (lossily, at most 300 bytes) when it is
    /// not one.
    pub fn message(body: &[u8]) -> String {
        match serde_json::from_slice::<ErrorReply>(body) {
            Ok(reply) => reply.error,
            Err(_) => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        }
    }
}

/// Hashes as the log writes them: standard base64.
pub fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes
        .iter()
        .map(|h| base64::engine::general_purpose::STANDARD.encode(h.0))
        .collect()
}

/// Base64 hashes, at most [`MAX_PROOF_HASHES`].
pub fn decode_hashes(hashes: &[String]) -> Result<Vec<Hash>> {
    if hashes.len() > MAX_PROOF_HASHES {
        return Err(Error::MalformedLogReply("proof of over 128 hashes"));
    }
    hashes
        .iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h)
                .ok()
                .and_then(|b| Hash::from_slice(&b).ok())
                .ok_or(Error::MalformedLogReply(
                    "proof hash is not 32 bytes of base64",
                ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;

    #[test]
    fn consistency_replies_round_trip_and_are_parsed_strictly() {
        let proof = vec![leaf_hash(b"a"), leaf_hash(b"b")];
        let text = serde_json::to_vec(&ConsistencyReply::new(3, 9, &proof)).unwrap();
        assert_eq!(ConsistencyReply::parse(&text, 3, 9).unwrap(), proof);
        // Asked for other sizes than it answers: refused.
        assert!(ConsistencyReply::parse(&text, 3, 10).is_err());
        let h = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        for bad in [
            "{}".to_owned(),
            r#"{"old_size":3,"new_size":9,"proof":["AAAA"]}"#.to_owned(),
            r#"{"old_size":3,"new_size":9,"proof":["!!"]}"#.to_owned(),
            format!(
                r#"{{"old_size":3,"new_size":9,"proof":[{}]}}"#,
                vec![format!("\"{h}\""); 129].join(",")
            ),
        ] {
            assert!(
                ConsistencyReply::parse(bad.as_bytes(), 3, 9).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn entry_replies_are_parsed_strictly() {
        let reply = |index: u64, entry: &str| {
            serde_json::to_vec(&EntryReply {
                index,
                leaf_hash: leaf_hash(b"e").to_hex(),
                entry: entry.to_owned(),
                publisher: "p+1+AA".into(),
            })
            .unwrap()
        };
        let e = base64::engine::general_purpose::STANDARD.encode(b"entry");
        assert_eq!(EntryReply::parse(&reply(4, &e), 4).unwrap(), b"entry");
        assert!(EntryReply::parse(&reply(5, &e), 4).is_err());
        assert!(EntryReply::parse(&reply(4, "!!"), 4).is_err());
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0; MAX_ENTRY_BYTES + 1]);
        assert!(EntryReply::parse(&reply(4, &big), 4).is_err());
        assert!(EntryReply::parse(b"{}", 4).is_err());
        assert_eq!(
            inclusion(Leaf::Index(7), Some(10)),
            "/v1/proof/inclusion?index=7&size=10"
        );
        assert_eq!(
            inclusion(Leaf::Hash(leaf_hash(b"e")), None),
            format!("/v1/proof/inclusion?leaf_hash={}", leaf_hash(b"e").to_hex())
        );
    }

    #[test]
    fn bundle_lists_over_the_bound_are_refused() {
        let list = |n: usize| {
            serde_json::to_vec(&BundleList {
                tree_size: 1,
                valid_at: 2,
                bundles: vec!["b".into(); n],
            })
            .unwrap()
        };
        assert_eq!(
            BundleList::parse(&list(MAX_BUNDLES)).unwrap().bundles.len(),
            256
        );
        assert!(BundleList::parse(&list(MAX_BUNDLES + 1)).is_err());
        assert!(BundleList::parse(br#"{"bundles":[]}"#).is_err());
    }

    #[test]
    fn refusal_messages_are_read_from_json_or_quoted_from_the_body() {
        assert_eq!(ErrorReply::message(br#"{"error":"no"}"#), "no");
        assert_eq!(ErrorReply::message(b"plain"), "plain");
        assert_eq!(ErrorReply::message(&[b'x'; 1000]).len(), 300);
    }
}
