//! What the key release service's tests share.

use arcane_verifier::model_key::ReleaseRecord;

/// A record of a release answering challenge `i` (the other fields are placeholders: the store
/// keeps what it is given).
pub fn record(i: u32) -> ReleaseRecord {
    ReleaseRecord {
        seq: 0,
        released_at_ms: 1_000 + u64::from(i),
        challenge: format!("{i:08x}"),
        model_sha256: "11".repeat(32),
        pcr0: "22".repeat(48),
        document_sha256: "33".repeat(32),
        release_leaf_hash: "44".repeat(32),
        access_leaf_hash: "55".repeat(32),
        request: format!("{{\"n\":{i}}}"),
    }
}
