//! Fraud data ([spec/tokens.md](../../spec/tokens.md) §5): a class of at most 8 bits (a device
//! integrity level, an account's standing: what it means is the operator's) that the fraud
//! detection service (FDS) vouches for, bound to the client's TGT, that the token granting
//! service (TGS) may ask for before it grants OTTs — without the FDS and the TGS being able to
//! link the two requests.
//!
//! - **One key per class.** RFC 9474 blind signatures carry no public metadata: the key that
//!   signed is what says the class. Each is logged as a `token-key` entry of role `fraud-data`
//!   naming its class, so clients and auditors check it like every other key.
//! - **Bound to the TGT, unseen by the FDS.** The token's nonce is
//!   `SHA-256("arcane-aip/fraud-data/v1" ‖ TGT nonce)`, blinded: the FDS signs without seeing
//!   it (nor the TGT); the TGS, shown the TGT and the token, recomputes it.
//! - **Expiry.** Fraud data is good while the entry of the key that signed it is valid: its
//!   expiry is that entry's `not_after`, and fraud data under a key that is not valid now is
//!   stale. The FDS bounds how stale a class can be by how long its keys live (it publishes them
//!   ahead, a short window each).
//!
//! Wire: a request to the FDS is `count (u8, 1–16) ‖ count × (class (u8) ‖ TokenRequest)` — one
//! blinded request per class key the client holds, since it learns its class only from the
//! answer; the answer is `class (u8) ‖ blind signature (Nk)` for the request of that class. The
//! fraud data itself is an RFC 9578 token (issuer `arcane-aip-fraud-data`), sent to the TGS in
//! the `arcane-fraud-data` field of the OTT grant request, base64url.

use sha2::{Digest, Sha256};

use crate::tokens::{IssuerKey, NK, TOKEN_REQUEST_LEN, Token, TokenChallenge, TokenRequest};
use crate::{Error, Result};

/// Issuer name in fraud-data challenges.
pub const FRAUD_DATA_ISSUER: &str = "arcane-aip-fraud-data";
/// The inner request field that carries fraud data to the TGS.
pub const FRAUD_DATA_FIELD: &str = "arcane-fraud-data";
/// Most class keys one request may be blinded to.
pub const MAX_CLASSES_PER_REQUEST: usize = 16;

/// The nonce of the fraud data bound to the TGT whose nonce is `tgt_nonce`.
pub fn fraud_data_nonce(tgt_nonce: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"arcane-aip/fraud-data/v1");
    h.update(tgt_nonce);
    h.finalize().into()
}

/// The challenge fraud data is signed under.
pub fn fraud_data_challenge() -> TokenChallenge {
    TokenChallenge::for_issuer(FRAUD_DATA_ISSUER)
}

/// A request to the FDS: one blinded token request per class key, tagged with its class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FraudDataRequest {
    /// `(class, request blinded to that class's key)`, classes distinct.
    pub requests: Vec<(u8, TokenRequest)>,
}

impl FraudDataRequest {
    /// `count ‖ count × (class ‖ TokenRequest)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.requests.len() as u8];
        for (class, request) in &self.requests {
            out.push(*class);
            out.extend_from_slice(&request.encode());
        }
        out
    }

    /// Parses a request: 1 to [`MAX_CLASSES_PER_REQUEST`] whole requests, classes distinct.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let malformed = |why| Error::Token(why);
        let (&count, rest) = bytes.split_first().ok_or(malformed("empty request"))?;
        let count = usize::from(count);
        if count == 0 || count > MAX_CLASSES_PER_REQUEST {
            return Err(malformed(
                "a fraud-data request holds 1 to 16 class requests",
            ));
        }
        if rest.len() != count * (1 + TOKEN_REQUEST_LEN) {
            return Err(malformed(
                "a fraud-data request's length does not match its count",
            ));
        }
        let mut requests: Vec<(u8, TokenRequest)> = Vec::with_capacity(count);
        for piece in rest.chunks(1 + TOKEN_REQUEST_LEN) {
            let class = piece[0];
            if requests.iter().any(|(c, _)| *c == class) {
                return Err(malformed("a class appears twice in a fraud-data request"));
            }
            requests.push((class, TokenRequest::decode(&piece[1..])?));
        }
        Ok(FraudDataRequest { requests })
    }
}

/// The FDS's answer: the class it vouches for and the blind signature of that class's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FraudDataResponse {
    /// The class.
    pub class: u8,
    /// RFC 9578 TokenResponse (`Nk` bytes).
    pub blind_signature: Vec<u8>,
}

impl FraudDataResponse {
    /// `class ‖ blind signature`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.class];
        out.extend_from_slice(&self.blind_signature);
        out
    }

    /// Parses an answer.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        match bytes.split_first() {
            Some((&class, signature)) if signature.len() == NK => Ok(FraudDataResponse {
                class,
                blind_signature: signature.to_vec(),
            }),
            _ => Err(Error::Token(
                "a fraud-data answer is a class and one blind signature",
            )),
        }
    }
}

/// A fraud-data key the log vouches for (a `token-key` entry of role `fraud-data`).
#[derive(Clone, Debug)]
pub struct FraudDataKey {
    /// The class its signatures vouch for.
    pub class: u8,
    /// The public key.
    pub key: IssuerKey,
    /// Its entry's validity window, `[not_before, not_after)`, seconds.
    pub not_before: u64,
    /// End of validity (exclusive): the expiry of what it signed.
    pub not_after: u64,
}

impl FraudDataKey {
    /// Whether the key's entry is valid at `now`.
    pub fn valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// Why the TGS does not accept fraud data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FraudDataRefusal {
    /// It is required and none came.
    Missing,
    /// It is signed under a key whose entry is not valid now (expired), or under no logged
    /// fraud-data key: fresh fraud data is needed.
    Stale,
    /// It does not decode or its signature does not verify.
    Invalid(String),
    /// It is bound to another TGT.
    NotBound,
}

impl std::fmt::Display for FraudDataRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FraudDataRefusal::Missing => f.write_str("fraud data is required and none came"),
            FraudDataRefusal::Stale => f.write_str(
                "the fraud data is under a key that is not valid now: get fresh fraud data",
            ),
            FraudDataRefusal::Invalid(why) => write!(f, "the fraud data does not verify: {why}"),
            FraudDataRefusal::NotBound => f.write_str("the fraud data is bound to another TGT"),
        }
    }
}

/// The TGS's check of `fraud_data` (an encoded token) shown with `tgt` (a TGT that verified):
/// under a logged fraud-data key valid at `now`, a valid signature, bound to this TGT. Returns
/// the key it verified under (its class and expiry).
pub fn check_fraud_data<'k>(
    fraud_data: &[u8],
    tgt: &Token,
    keys: &'k [FraudDataKey],
    now: u64,
) -> std::result::Result<&'k FraudDataKey, FraudDataRefusal> {
    let token = Token::decode(fraud_data).map_err(|e| FraudDataRefusal::Invalid(e.to_string()))?;
    let key = keys
        .iter()
        .find(|k| k.key.id() == token.token_key_id && k.valid_at(now))
        .ok_or(FraudDataRefusal::Stale)?;
    token
        .verify(&key.key, &fraud_data_challenge())
        .map_err(|e| FraudDataRefusal::Invalid(e.to_string()))?;
    if token.nonce != fraud_data_nonce(&tgt.nonce) {
        return Err(FraudDataRefusal::NotBound);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{IssuerSecret, TGT_ISSUER, request_token, tgt_nonce};

    struct Setup {
        fds: Vec<IssuerSecret>,
        keys: Vec<FraudDataKey>,
        tgt: Token,
    }

    fn setup() -> Setup {
        let tgt_issuer = IssuerSecret::generate().unwrap();
        let challenge = TokenChallenge::for_issuer(TGT_ISSUER);
        let (request, pending) =
            request_token(tgt_issuer.public(), &challenge, tgt_nonce(&[7; 32])).unwrap();
        let tgt = pending
            .finalize(&tgt_issuer.issue(&request).unwrap())
            .unwrap();
        let fds: Vec<IssuerSecret> = (0..2).map(|_| IssuerSecret::generate().unwrap()).collect();
        let keys = fds
            .iter()
            .enumerate()
            .map(|(class, s)| FraudDataKey {
                class: class as u8,
                key: s.public().clone(),
                not_before: 1_000,
                not_after: 2_000,
            })
            .collect();
        Setup { fds, keys, tgt }
    }

    /// What a client gets from the FDS for `class`, bound to `tgt_nonce`.
    fn fraud_data(s: &Setup, class: usize, tgt_nonce: &[u8; 32]) -> Vec<u8> {
        let requests: Vec<_> = s
            .keys
            .iter()
            .map(|k| {
                request_token(&k.key, &fraud_data_challenge(), fraud_data_nonce(tgt_nonce)).unwrap()
            })
            .collect();
        let wire = FraudDataRequest {
            requests: s
                .keys
                .iter()
                .zip(&requests)
                .map(|(k, (r, _))| (k.class, r.clone()))
                .collect(),
        }
        .encode();
        // The FDS picks the request of the class it vouches for.
        let parsed = FraudDataRequest::decode(&wire).unwrap();
        let (_, request) = &parsed.requests[class];
        let answer = FraudDataResponse::decode(
            &FraudDataResponse {
                class: class as u8,
                blind_signature: s.fds[class].issue(request).unwrap(),
            }
            .encode(),
        )
        .unwrap();
        let (_, pending) = requests.into_iter().nth(usize::from(answer.class)).unwrap();
        pending.finalize(&answer.blind_signature).unwrap().encode()
    }

    #[test]
    fn fraud_data_bound_to_the_tgt_gives_its_class_while_its_key_is_valid() {
        let s = setup();
        let data = fraud_data(&s, 1, &s.tgt.nonce);
        assert_eq!(
            check_fraud_data(&data, &s.tgt, &s.keys, 1_500)
                .unwrap()
                .class,
            1
        );
        assert_eq!(
            check_fraud_data(&fraud_data(&s, 0, &s.tgt.nonce), &s.tgt, &s.keys, 1_000)
                .unwrap()
                .class,
            0
        );
        // Expired, not yet valid, or under no logged key: stale.
        assert_eq!(
            check_fraud_data(&data, &s.tgt, &s.keys, 2_000).err(),
            Some(FraudDataRefusal::Stale)
        );
        assert_eq!(
            check_fraud_data(&data, &s.tgt, &s.keys, 999).err(),
            Some(FraudDataRefusal::Stale)
        );
        assert_eq!(
            check_fraud_data(&data, &s.tgt, &s.keys[..1], 1_500).err(),
            Some(FraudDataRefusal::Stale)
        );
        // Bound to another TGT.
        let other = fraud_data(&s, 1, &[9; 32]);
        assert_eq!(
            check_fraud_data(&other, &s.tgt, &s.keys, 1_500).err(),
            Some(FraudDataRefusal::NotBound)
        );
    }

    #[test]
    fn a_class_claimed_under_another_classes_key_or_a_flipped_bit_does_not_verify() {
        let mut s = setup();
        let data = fraud_data(&s, 0, &s.tgt.nonce);
        // A token signed by class 0's key, presented as if class 1's key had the same id, is
        // not found; a key list that names class 0's key as class 1 is what the log says, not
        // the client: the class is the key's.
        s.keys[1].key = s.keys[0].key.clone();
        s.keys[1].class = 1;
        assert_eq!(
            check_fraud_data(&data, &s.tgt, &s.keys, 1_500)
                .unwrap()
                .class,
            0
        );
        for i in [40, 100, 200, data.len() - 1] {
            let mut bad = data.clone();
            bad[i] ^= 1;
            assert!(
                check_fraud_data(&bad, &s.tgt, &s.keys, 1_500).is_err(),
                "byte {i}"
            );
        }
        assert!(matches!(
            check_fraud_data(&data[..10], &s.tgt, &s.keys, 1_500),
            Err(FraudDataRefusal::Invalid(_))
        ));
    }

    #[test]
    fn what_the_fraud_detection_service_sees_holds_neither_the_tgt_nor_the_nonce() {
        let s = setup();
        let nonce = fraud_data_nonce(&s.tgt.nonce);
        let requests: Vec<_> = s
            .keys
            .iter()
            .map(|k| {
                let (r, _) = request_token(&k.key, &fraud_data_challenge(), nonce).unwrap();
                (k.class, r)
            })
            .collect();
        let wire = FraudDataRequest { requests }.encode();
        let contains = |needle: &[u8]| wire.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(&s.tgt.nonce));
        assert!(!contains(&nonce));
        assert!(!contains(&s.tgt.encode()[..64]));
        // Blinding is randomized: the same nonce twice gives unrelated requests.
        let again = request_token(&s.keys[0].key, &fraud_data_challenge(), nonce)
            .unwrap()
            .0
            .encode();
        assert_ne!(&wire[2..2 + TOKEN_REQUEST_LEN], &again[..]);
    }

    #[test]
    fn malformed_requests_and_answers_are_refused() {
        assert!(FraudDataRequest::decode(&[]).is_err());
        assert!(FraudDataRequest::decode(&[0]).is_err());
        assert!(FraudDataRequest::decode(&[17]).is_err());
        let mut request = [0u8; TOKEN_REQUEST_LEN];
        request[1] = 2; // token type 0x0002
        let one = [&[1u8, 5][..], &request[..]].concat();
        assert!(FraudDataRequest::decode(&one).is_ok());
        assert!(FraudDataRequest::decode(&one[..one.len() - 1]).is_err());
        let twice = [&[2u8][..], &one[1..], &one[1..]].concat();
        assert!(
            FraudDataRequest::decode(&twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(FraudDataResponse::decode(&[1; NK]).is_err());
        assert!(FraudDataResponse::decode(&[1; NK + 1]).is_ok());
    }
}
