//! The write API's message: an entry, the publisher's verifier key, and the publisher's Ed25519
//! signature over a domain-separated encoding of the entry.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use arcane_verifier::entry::{EntryBody, EntryPolicy, SignedEntry, kind_name};
use arcane_verifier::note::{NoteSigner, VerifierKey};

use crate::keys::AllowedKinds;
use crate::storage::TypedColumns;

use crate::error::{LogError, Result};

/// Largest entry accepted: entry bundles carry a 16-bit length.
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// What a publisher signs: this context, then the entry bytes.
pub const SUBMISSION_CONTEXT: &[u8] = b"arcane-aip/log-submission/v1\n";

/// `POST /v1/entries` body.
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

/// A submission whose signature checked out against an allowed publisher.
#[derive(Clone, Debug)]
pub struct AcceptedSubmission {
    /// The entry bytes.
    pub entry: Vec<u8>,
    /// The publisher.
    pub publisher: VerifierKey,
    /// What the publisher may publish.
    pub allowed: AllowedKinds,
}

impl AcceptedSubmission {
    /// Applies the kind rules: a typed entry must be of a kind the publisher may publish, signed
    /// inside by the same publisher, valid under `policy` and not expired at `now` (seconds);
    /// anything else is accepted only from publishers allowed opaque entries. Returns the columns
    /// to index for a typed entry.
    pub fn admit(&self, policy: &EntryPolicy, now: u64) -> Result<Option<TypedColumns>> {
        let signed = match SignedEntry::decode(&self.entry) {
            Ok(signed) if !matches!(signed.entry.body, EntryBody::Unknown { .. }) => signed,
            _ if self.allowed.opaque => return Ok(None),
            Ok(signed) => {
                return Err(LogError::KindNotAllowed(format!(
                    "{} entries",
                    signed.entry.body.kind_name()
                )));
            }
            Err(e) => {
                return Err(LogError::KindNotAllowed(format!(
                    "opaque entries (this is not a valid typed entry: {e})"
                )));
            }
        };
        let kind = signed.entry.body.kind();
        if !self.allowed.typed.contains(&kind) {
            return Err(LogError::KindNotAllowed(format!(
                "{} entries",
                kind_name(kind)
            )));
        }
        signed
            .verify_signature(std::slice::from_ref(&self.publisher))
            .map_err(|_| {
                LogError::InvalidEntry("the entry is not signed by the submitting publisher".into())
            })?;
        policy
            .validate(&signed.entry)
            .map_err(|e| LogError::InvalidEntry(e.to_string()))?;
        if signed.entry.not_after <= now {
            return Err(LogError::InvalidEntry(
                "the entry has already expired".into(),
            ));
        }
        Ok(Some(TypedColumns {
            kind,
            not_before: signed.entry.not_before,
            not_after: signed.entry.not_after,
            pcr0: match &signed.entry.body {
                EntryBody::Release(r) => Some(r.pcr0),
                _ => None,
            },
        }))
    }
}

impl Submission {
    /// Signs `entry` as `publisher`.
    pub fn sign(entry: &[u8], publisher: &NoteSigner) -> Self {
        Submission {
            entry: BASE64.encode(entry),
            publisher: publisher.verifier().to_text(),
            signature: BASE64.encode(publisher.sign_with_context(SUBMISSION_CONTEXT, entry)),
        }
    }

    /// Decodes and checks the submission; `allowed` finds an allowed publisher by its key text.
    pub fn check(
        &self,
        allowed: impl Fn(&str) -> Result<Option<(VerifierKey, AllowedKinds)>>,
    ) -> Result<AcceptedSubmission> {
        let entry = BASE64
            .decode(&self.entry)
            .map_err(|_| LogError::BadRequest("entry is not valid base64".into()))?;
        if entry.len() > MAX_ENTRY_BYTES {
            return Err(LogError::EntryTooLarge {
                size: entry.len(),
                limit: MAX_ENTRY_BYTES,
            });
        }
        let Some((publisher, kinds)) = allowed(&self.publisher)? else {
            return Err(match VerifierKey::parse(&self.publisher) {
                Err(e) => LogError::BadRequest(format!("publisher key: {e}")),
                Ok(_) => LogError::UnknownPublisher,
            });
        };
        let signature = BASE64
            .decode(&self.signature)
            .map_err(|_| LogError::BadRequest("signature is not valid base64".into()))?;
        publisher
            .verify_with_context(SUBMISSION_CONTEXT, &entry, &signature)
            .map_err(|_| LogError::BadSignature)?;
        Ok(AcceptedSubmission {
            entry,
            publisher,
            allowed: kinds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate_signer;

    #[test]
    fn only_allowed_publishers_with_valid_signatures_pass() {
        let p = generate_signer("p").unwrap();
        let q = generate_signer("q").unwrap();
        let known = p.verifier();
        let allowed = |text: &str| {
            Ok((text == known.to_text()).then(|| (known.clone(), AllowedKinds::all_typed())))
        };
        let good = Submission::sign(b"entry", &p);
        assert_eq!(good.check(allowed).unwrap().entry, b"entry");
        assert!(matches!(
            Submission::sign(b"entry", &q).check(allowed),
            Err(LogError::UnknownPublisher)
        ));
        let mut forged = good.clone();
        forged.entry = BASE64.encode(b"other");
        assert!(matches!(forged.check(allowed), Err(LogError::BadSignature)));
        let mut garbage = good;
        garbage.signature = "!!".into();
        assert!(matches!(
            garbage.check(allowed),
            Err(LogError::BadRequest(_))
        ));
        let big = Submission::sign(&vec![0u8; MAX_ENTRY_BYTES + 1], &p);
        assert!(matches!(
            big.check(allowed),
            Err(LogError::EntryTooLarge { .. })
        ));
    }
}
