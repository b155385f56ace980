//! The bodies that travel inside Oblivious HTTP from the client to the gateway, and on from the
//! gateway to a compute node — one encoder and one strict parser for each, used by both ends
//! (`spec/sealed.md`, `spec/tokens.md`):
//!
//! - [`ChatEnvelope`], `POST /v1/chat`: `OTT ‖ n (u8) ‖ n × wrapped DEK ‖ request ciphertext`,
//!   1 ≤ n ≤ [`MAX_CANDIDATES`], a non-empty ciphertext;
//! - [`NodeRequest`], `POST /v1/infer`: `wrapped DEK ‖ request ciphertext` — the one wrap the
//!   gateway picked, and the ciphertext unchanged;
//! - [`OttGrantRequest`], `POST /v1/tokens/ott`: `TGT ‖ n × token request`, n ≥ 1.
//!
//! Tokens and token requests stay bytes here: their own module ([`crate::tokens`]) decodes them
//! where they are checked.

use crate::error::{Error, Result};
use crate::sealed::{WRAPPED_DEK_LEN, WrappedDek};
use crate::tokens::{TOKEN_LEN, TOKEN_REQUEST_LEN};

/// Most nodes a chat request may be wrapped to.
pub const MAX_CANDIDATES: usize = 8;

/// A chat request as the gateway receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatEnvelope<'a> {
    /// The gateway's one-time token (`TOKEN_LEN` bytes).
    pub token: &'a [u8],
    /// The DEK wrapped to each candidate node, in the client's order.
    pub wraps: Vec<WrappedDek>,
    /// The sealed inner request.
    pub ciphertext: &'a [u8],
}

impl<'a> ChatEnvelope<'a> {
    /// Encodes `token ‖ n ‖ wraps ‖ ciphertext`.
    pub fn encode(token: &[u8], wraps: &[WrappedDek], ciphertext: &[u8]) -> Result<Vec<u8>> {
        if token.len() != TOKEN_LEN {
            return Err(Error::MalformedSealed("chat token length"));
        }
        if wraps.is_empty() || wraps.len() > MAX_CANDIDATES {
            return Err(Error::MalformedSealed(
                "chat request wrapped to 0 or over 8 nodes",
            ));
        }
        if ciphertext.is_empty() {
            return Err(Error::MalformedSealed("empty chat request ciphertext"));
        }
        let mut out =
            Vec::with_capacity(TOKEN_LEN + 1 + wraps.len() * WRAPPED_DEK_LEN + ciphertext.len());
        out.extend_from_slice(token);
        out.push(wraps.len() as u8);
        for w in wraps {
            out.extend_from_slice(&w.encode());
        }
        out.extend_from_slice(ciphertext);
        Ok(out)
    }

    /// Parses an envelope; anything but the exact layout is refused.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let malformed = || Error::MalformedSealed("malformed chat envelope");
        let (token, rest) = bytes.split_at_checked(TOKEN_LEN).ok_or_else(malformed)?;
        let (&n, rest) = rest.split_first().ok_or_else(malformed)?;
        let n = n as usize;
        if n == 0 || n > MAX_CANDIDATES {
            return Err(malformed());
        }
        let (wraps, ciphertext) = rest
            .split_at_checked(n * WRAPPED_DEK_LEN)
            .ok_or_else(malformed)?;
        if ciphertext.is_empty() {
            return Err(malformed());
        }
        let wraps = wraps
            .chunks(WRAPPED_DEK_LEN)
            .map(WrappedDek::decode)
            .collect::<Result<Vec<_>>>()?;
        Ok(ChatEnvelope {
            token,
            wraps,
            ciphertext,
        })
    }
}

/// Header in which a node names why it refused a [`NodeRequest`] (`busy`, `not-serving`,
/// `unknown-rek`, `replayed`, `stale`, `bad-request`), so the gateway routes around it without
/// parsing bodies.
pub const NODE_REFUSAL_HEADER: &str = "arcane-refusal";
/// The [`NODE_REFUSAL_HEADER`] value of a node serving all the requests it can.
pub const NODE_BUSY: &str = "busy";

/// The gateway's `503` answer to a chat when every candidate node is serving all it can. `ott`
/// says whether the request's OTT was redeemed: `unspent` when no place was found before the
/// gateway would have redeemed it (the client may use it again), `spent` when a node refused
/// after redemption (nodes full of other gateways' requests).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BusyAnswer {
    /// For people.
    pub error: String,
    /// [`NODE_BUSY`].
    pub reason: String,
    /// `spent` or `unspent`.
    pub ott: String,
}

/// [`BusyAnswer::ott`] when the OTT was not redeemed.
const OTT_UNSPENT: &str = "unspent";
/// [`BusyAnswer::ott`] when it was.
const OTT_SPENT: &str = "spent";

impl BusyAnswer {
    /// The answer, saying whether the OTT was spent.
    pub fn new(ott_spent: bool) -> Self {
        BusyAnswer {
            error: "every candidate node is serving all the requests it can; retry shortly".into(),
            reason: NODE_BUSY.into(),
            ott: if ott_spent { OTT_SPENT } else { OTT_UNSPENT }.into(),
        }
    }

    /// A gateway answer's body read as this answer; `None` for any other body.
    pub fn parse(body: &[u8]) -> Option<Self> {
        serde_json::from_slice::<BusyAnswer>(body)
            .ok()
            .filter(|b| b.reason == NODE_BUSY)
    }

    /// Whether the OTT was left unspent (only then may it be used again).
    pub fn ott_unspent(&self) -> bool {
        self.ott == OTT_UNSPENT
    }
}

/// What the gateway forwards to the node it picked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRequest<'a> {
    /// The DEK wrapped to this node's REK.
    pub wrap: WrappedDek,
    /// The sealed inner request, as the client sent it.
    pub ciphertext: &'a [u8],
}

impl<'a> NodeRequest<'a> {
    /// Encodes `wrap ‖ ciphertext`.
    pub fn encode(wrap: &WrappedDek, ciphertext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(WRAPPED_DEK_LEN + ciphertext.len());
        out.extend_from_slice(&wrap.encode());
        out.extend_from_slice(ciphertext);
        out
    }

    /// Parses a node request (the ciphertext is checked when it is opened).
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let (wrap, ciphertext) = bytes
            .split_at_checked(WRAPPED_DEK_LEN)
            .ok_or(Error::MalformedSealed("body shorter than a wrapped DEK"))?;
        Ok(NodeRequest {
            wrap: WrappedDek::decode(wrap)?,
            ciphertext,
        })
    }
}

/// A request for a batch of OTTs under one TGT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OttGrantRequest<'a> {
    /// The TGT (`TOKEN_LEN` bytes).
    pub tgt: &'a [u8],
    /// The blinded token requests (`TOKEN_REQUEST_LEN` bytes each), at least one.
    pub requests: Vec<&'a [u8]>,
}

impl<'a> OttGrantRequest<'a> {
    /// Encodes `tgt ‖ requests`.
    pub fn encode(tgt: &[u8], requests: &[Vec<u8>]) -> Result<Vec<u8>> {
        if tgt.len() != TOKEN_LEN {
            return Err(Error::MalformedSealed("TGT length"));
        }
        if requests.is_empty() || requests.iter().any(|r| r.len() != TOKEN_REQUEST_LEN) {
            return Err(Error::MalformedSealed("token request length"));
        }
        let mut out = Vec::with_capacity(TOKEN_LEN + requests.len() * TOKEN_REQUEST_LEN);
        out.extend_from_slice(tgt);
        for r in requests {
            out.extend_from_slice(r);
        }
        Ok(out)
    }

    /// Parses a grant request: a TGT and whole token requests, at least one.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let malformed = || Error::MalformedSealed("expected a TGT and whole token requests");
        let (tgt, rest) = bytes.split_at_checked(TOKEN_LEN).ok_or_else(malformed)?;
        if rest.is_empty() || !rest.len().is_multiple_of(TOKEN_REQUEST_LEN) {
            return Err(malformed());
        }
        Ok(OttGrantRequest {
            tgt,
            requests: rest.chunks(TOKEN_REQUEST_LEN).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wrap(seed: u8) -> WrappedDek {
        WrappedDek::decode(&[seed; WRAPPED_DEK_LEN]).unwrap()
    }

    proptest! {
        #[test]
        fn chat_envelopes_round_trip_and_every_truncation_is_refused(
            token in proptest::collection::vec(any::<u8>(), TOKEN_LEN),
            seeds in proptest::collection::vec(any::<u8>(), 1..=MAX_CANDIDATES),
            ciphertext in proptest::collection::vec(any::<u8>(), 1..200),
        ) {
            let wraps: Vec<_> = seeds.iter().map(|s| wrap(*s)).collect();
            let bytes = ChatEnvelope::encode(&token, &wraps, &ciphertext).unwrap();
            let parsed = ChatEnvelope::parse(&bytes).unwrap();
            prop_assert_eq!(parsed.token, &token[..]);
            prop_assert_eq!(&parsed.wraps, &wraps);
            prop_assert_eq!(parsed.ciphertext, &ciphertext[..]);
            // Cut anywhere up to the ciphertext's first byte: refused.
            let minimum = TOKEN_LEN + 1 + wraps.len() * WRAPPED_DEK_LEN + 1;
            for cut in 0..minimum {
                prop_assert!(ChatEnvelope::parse(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn grant_requests_round_trip_and_partial_requests_are_refused(
            tgt in proptest::collection::vec(any::<u8>(), TOKEN_LEN),
            n in 1usize..6,
            extra in 1usize..TOKEN_REQUEST_LEN,
        ) {
            let requests: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; TOKEN_REQUEST_LEN]).collect();
            let bytes = OttGrantRequest::encode(&tgt, &requests).unwrap();
            let parsed = OttGrantRequest::parse(&bytes).unwrap();
            prop_assert_eq!(parsed.tgt, &tgt[..]);
            prop_assert_eq!(parsed.requests.len(), n);
            prop_assert!(parsed.requests.iter().zip(&requests).all(|(a, b)| *a == &b[..]));
            prop_assert!(OttGrantRequest::parse(&bytes[..bytes.len() - extra]).is_err());
            prop_assert!(OttGrantRequest::parse(&bytes[..TOKEN_LEN]).is_err());
        }

        #[test]
        fn node_requests_round_trip(seed: u8, ciphertext in proptest::collection::vec(any::<u8>(), 0..100)) {
            let bytes = NodeRequest::encode(&wrap(seed), &ciphertext);
            let parsed = NodeRequest::parse(&bytes).unwrap();
            prop_assert_eq!(parsed.wrap, wrap(seed));
            prop_assert_eq!(parsed.ciphertext, &ciphertext[..]);
            prop_assert!(NodeRequest::parse(&bytes[..WRAPPED_DEK_LEN - 1]).is_err());
        }
    }

    #[test]
    fn a_count_of_zero_or_over_the_limit_is_refused() {
        let token = [0u8; TOKEN_LEN];
        for n in [0u8, MAX_CANDIDATES as u8 + 1, 255] {
            let mut bytes = token.to_vec();
            bytes.push(n);
            bytes.extend(std::iter::repeat_n(7u8, n as usize * WRAPPED_DEK_LEN + 10));
            assert!(ChatEnvelope::parse(&bytes).is_err(), "n = {n}");
        }
        assert!(ChatEnvelope::encode(&token, &[], b"x").is_err());
        assert!(ChatEnvelope::encode(&token, &vec![wrap(1); 9], b"x").is_err());
        assert!(ChatEnvelope::encode(&token, &[wrap(1)], b"").is_err());
    }
}
