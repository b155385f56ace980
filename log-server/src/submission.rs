//! The write API's message: an entry, the publisher's verifier key, and the publisher's Ed25519
//! signature over a domain-separated encoding of the entry.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use arcane_verifier::entry::{EntryBody, EntryPolicy, SignedEntry, kind_name};
use arcane_verifier::note::VerifierKey;

use crate::keys::AllowedKinds;
use crate::storage::TypedColumns;

use crate::error::{LogError, Result};

pub use arcane_verifier::log_api::{MAX_ENTRY_BYTES, SUBMISSION_CONTEXT, Submission};

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

/// Decodes and checks `submission`; `allowed` finds an allowed publisher by its key text.
pub fn check(
    submission: &Submission,
    allowed: impl Fn(&str) -> Result<Option<(VerifierKey, AllowedKinds)>>,
) -> Result<AcceptedSubmission> {
    let entry = BASE64
        .decode(&submission.entry)
        .map_err(|_| LogError::BadRequest("entry is not valid base64".into()))?;
    if entry.len() > MAX_ENTRY_BYTES {
        return Err(LogError::EntryTooLarge {
            size: entry.len(),
            limit: MAX_ENTRY_BYTES,
        });
    }
    let Some((publisher, kinds)) = allowed(&submission.publisher)? else {
        return Err(match VerifierKey::parse(&submission.publisher) {
            Err(e) => LogError::BadRequest(format!("publisher key: {e}")),
            Ok(_) => LogError::UnknownPublisher,
        });
    };
    let signature = BASE64
        .decode(&submission.signature)
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
        assert_eq!(check(&good, allowed).unwrap().entry, b"entry");
        assert!(matches!(
            check(&Submission::sign(b"entry", &q), allowed),
            Err(LogError::UnknownPublisher)
        ));
        let mut forged = good.clone();
        forged.entry = BASE64.encode(b"other");
        assert!(matches!(
            check(&forged, allowed),
            Err(LogError::BadSignature)
        ));
        let mut garbage = good;
        garbage.signature = "!!".into();
        assert!(matches!(
            check(&garbage, allowed),
            Err(LogError::BadRequest(_))
        ));
        let big = Submission::sign(&vec![0u8; MAX_ENTRY_BYTES + 1], &p);
        assert!(matches!(
            check(&big, allowed),
            Err(LogError::EntryTooLarge { .. })
        ));
    }
}
