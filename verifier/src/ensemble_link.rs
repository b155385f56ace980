//! Links between the members of an ensemble (one model across several mutually attested nodes,
//! `spec/compute.md` §7.1): before any activation crosses, the two ends exchange fresh attestation
//! documents that bind an ephemeral X25519 key to a challenge of the other's, each checks the
//! other's document against the release it runs itself (the same PCRs, model and release entry)
//! and the Nitro root, and the link is then encrypted and authenticated with ChaCha20-Poly1305
//! under a key per direction derived from that exchange. Pure: the shells move the bytes.
//!
//! ```text
//! Hello  (dialer → listener) = "ARCANE-LINK-V1" ‖ dialer rank (u8) ‖ listener rank (u8) ‖ challenge_d (32)
//! Answer (listener → dialer) = challenge_l (32) ‖ u32 length ‖ document_l
//! Finish (dialer → listener) = u32 length ‖ document_d
//!
//! document_l: nonce = SHA-256("arcane-aip/link/v1/listener" ‖ Hello ‖ challenge_l), public_key = X25519 (32)
//! document_d: nonce = SHA-256("arcane-aip/link/v1/dialer" ‖ Hello ‖ challenge_l), public_key = X25519 (32)
//! transcript = SHA-256(Hello ‖ Answer ‖ Finish)
//! key(direction) = HKDF-SHA256(salt = transcript, ikm = X25519 shared secret,
//!                              info = "arcane-aip/link/v1 dialer->listener" | "… listener->dialer"), 32 bytes
//! record = u32 length of the sealed bytes ‖ ChaCha20-Poly1305(key, nonce = 0u32 ‖ u64 counter, aad = "", plaintext)
//! ```
//!
//! Each direction's counter starts at 0 and grows by one per record: a dropped, replayed,
//! reordered or altered record fails to open and ends the link.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::bundle::VerifiedEntry;
use crate::nitro::{AttestationPolicy, NitroRoot, check_attestation, verify_document};
use crate::{Error, Result};

/// The protocol's tag at the start of a hello.
pub const LINK_TAG: &[u8; 14] = b"ARCANE-LINK-V1";
/// A hello's length.
pub const HELLO_LEN: usize = LINK_TAG.len() + 2 + 32;
/// Largest attestation document accepted on a link.
pub const MAX_DOCUMENT: usize = 16 * 1024;
/// Largest plaintext of one record.
pub const MAX_RECORD: usize = 1 << 20;
const TAG_LEN: usize = 16;

fn link_error(why: &'static str) -> Error {
    Error::Link(why)
}

/// Which end of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkRole {
    /// The end that connects.
    Dialer,
    /// The end that accepts.
    Listener,
}

/// The dialer's opening message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The dialer's rank in the ensemble.
    pub from_rank: u8,
    /// The rank it means to reach.
    pub to_rank: u8,
    /// A fresh random challenge the listener's document must answer.
    pub challenge: [u8; 32],
}

impl Hello {
    /// `LINK_TAG ‖ from ‖ to ‖ challenge`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = LINK_TAG.to_vec();
        out.push(self.from_rank);
        out.push(self.to_rank);
        out.extend_from_slice(&self.challenge);
        out
    }

    /// Parses a hello.
    pub fn decode(bytes: &[u8]) -> Result<Hello> {
        if bytes.len() != HELLO_LEN || &bytes[..LINK_TAG.len()] != LINK_TAG {
            return Err(link_error("not a link hello"));
        }
        let at = LINK_TAG.len();
        Ok(Hello {
            from_rank: bytes[at],
            to_rank: bytes[at + 1],
            challenge: bytes[at + 2..].try_into().expect("32 bytes"),
        })
    }
}

/// The nonce `role`'s document must carry on the link that `hello` opened, the listener having
/// answered with `listener_challenge`.
pub fn document_nonce(role: LinkRole, hello: &[u8], listener_challenge: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(match role {
        LinkRole::Dialer => &b"arcane-aip/link/v1/dialer"[..],
        LinkRole::Listener => &b"arcane-aip/link/v1/listener"[..],
    });
    h.update(hello);
    h.update(listener_challenge);
    h.finalize().into()
}

/// `u32 length ‖ bytes`.
pub fn length_prefixed(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// What a peer's document is checked against: the release this node runs itself, the root.
#[derive(Clone, Debug)]
pub struct PeerPolicy<'a> {
    /// The root documents must chain to (AWS's, or a development root in development).
    pub root: &'a NitroRoot,
    /// The logged release the checking node runs: the peer must run the same.
    pub release: &'a VerifiedEntry,
    /// Freshness.
    pub attestation: AttestationPolicy,
}

/// Checks a peer's `document` at `now_ms`: its chain to the root, the release's PCRs, model and
/// leaf in `user_data`, the nonce this link expects, and an X25519 public key. Returns that key.
pub fn check_peer(
    document: &[u8],
    expected_nonce: &[u8; 32],
    policy: &PeerPolicy<'_>,
    now_ms: u64,
) -> Result<[u8; 32]> {
    if document.len() > MAX_DOCUMENT {
        return Err(link_error("the peer's document is too large"));
    }
    let verified = verify_document(document, policy.root, now_ms / 1000)?;
    let keys = check_attestation(
        &verified,
        policy.release,
        &policy.attestation,
        now_ms,
        Some(&expected_nonce[..]),
    )?;
    keys.public_key
        .try_into()
        .map_err(|_| link_error("the peer's document holds no X25519 key"))
}

/// The ephemeral key pair of one end of one link.
pub struct LinkSecret(x25519_dalek::StaticSecret);

impl LinkSecret {
    /// A fresh key pair.
    pub fn generate() -> Result<LinkSecret> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut bytes[..]).map_err(|_| link_error("no randomness"))?;
        Ok(LinkSecret(x25519_dalek::StaticSecret::from(*bytes)))
    }

    /// The public key the document binds.
    pub fn public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.0).to_bytes()
    }

    /// The two directions' record keys, from this end's view, for a handshake whose messages
    /// were `transcript` (Hello ‖ Answer ‖ Finish) with a peer whose key is `peer`.
    pub fn derive(
        self,
        role: LinkRole,
        peer: &[u8; 32],
        transcript: &[u8],
    ) -> Result<(Sealer, Opener)> {
        let shared = self.0.diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
        if !shared.was_contributory() {
            return Err(link_error("the peer's X25519 key is of low order"));
        }
        let salt = Sha256::digest(transcript);
        let hkdf = hkdf::Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes());
        let key = |info: &[u8]| -> Result<Zeroizing<[u8; 32]>> {
            let mut out = Zeroizing::new([0u8; 32]);
            hkdf.expand(info, &mut out[..])
                .map_err(|_| link_error("key derivation"))?;
            Ok(out)
        };
        let to_listener = key(b"arcane-aip/link/v1 dialer->listener")?;
        let to_dialer = key(b"arcane-aip/link/v1 listener->dialer")?;
        let (send, receive) = match role {
            LinkRole::Dialer => (to_listener, to_dialer),
            LinkRole::Listener => (to_dialer, to_listener),
        };
        let aead = |key: &[u8]| {
            ChaCha20Poly1305::new_from_slice(key).map_err(|_| link_error("record key length"))
        };
        Ok((
            Sealer {
                aead: aead(&send[..])?,
                counter: 0,
            },
            Opener {
                aead: aead(&receive[..])?,
                counter: 0,
                buffer: Vec::new(),
            },
        ))
    }
}

fn record_nonce(counter: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

/// Seals what one end sends, record by record.
pub struct Sealer {
    aead: ChaCha20Poly1305,
    counter: u64,
}

impl Sealer {
    /// One record carrying `plaintext` (at most [`MAX_RECORD`] bytes).
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        if plaintext.len() > MAX_RECORD {
            return Err(link_error("a record's plaintext is too large"));
        }
        let nonce = record_nonce(self.counter);
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or(link_error("the link's record counter is exhausted"))?;
        let sealed = self
            .aead
            .encrypt(&Nonce::from(nonce), plaintext)
            .map_err(|_| link_error("sealing a record"))?;
        Ok(length_prefixed(&sealed))
    }
}

/// Opens what the other end sends: bytes in as they arrive, plaintexts out in order.
pub struct Opener {
    aead: ChaCha20Poly1305,
    counter: u64,
    buffer: Vec<u8>,
}

impl Opener {
    /// Bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole record's plaintext, `None` until one has arrived; an error (a record
    /// altered, dropped, replayed, reordered or too large) ends the link.
    pub fn next_record(&mut self) -> Option<Result<Vec<u8>>> {
        let len = u32::from_be_bytes(self.buffer.get(..4)?.try_into().expect("4 bytes")) as usize;
        if !(TAG_LEN..=MAX_RECORD + TAG_LEN).contains(&len) {
            return Some(Err(link_error("a record's length is out of bounds")));
        }
        let sealed = self.buffer.get(4..4 + len)?.to_vec();
        self.buffer.drain(..4 + len);
        let nonce = record_nonce(self.counter);
        self.counter += 1;
        Some(
            self.aead
                .decrypt(&Nonce::from(nonce), &sealed[..])
                .map_err(|_| link_error("a record does not open: altered, dropped or replayed")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> ((Sealer, Opener), (Sealer, Opener)) {
        let (d, l) = (
            LinkSecret::generate().unwrap(),
            LinkSecret::generate().unwrap(),
        );
        let (dp, lp) = (d.public(), l.public());
        let transcript = b"hello answer finish";
        (
            d.derive(LinkRole::Dialer, &lp, transcript).unwrap(),
            l.derive(LinkRole::Listener, &dp, transcript).unwrap(),
        )
    }

    #[test]
    fn each_direction_opens_in_order_what_the_other_sealed() {
        let ((mut d_send, mut d_recv), (mut l_send, mut l_recv)) = pair();
        let mut wire = Vec::new();
        for piece in [&b"activations 1"[..], b"", b"activations 2"] {
            wire.extend(d_send.seal(piece).unwrap());
        }
        // Delivered a byte at a time: nothing until a record is whole.
        let mut opened = Vec::new();
        for b in &wire {
            l_recv.push(&[*b]);
            while let Some(p) = l_recv.next_record() {
                opened.push(p.unwrap());
            }
        }
        assert_eq!(
            opened,
            [
                b"activations 1".to_vec(),
                Vec::new(),
                b"activations 2".to_vec()
            ]
        );
        d_recv.push(&l_send.seal(b"back").unwrap());
        assert_eq!(d_recv.next_record().unwrap().unwrap(), b"back");
        // The plaintext is nowhere on the wire.
        assert!(!wire.windows(11).any(|w| w == b"activations"));
    }

    #[test]
    fn altered_replayed_reordered_or_reflected_records_do_not_open() {
        for case in [
            "altered",
            "replayed",
            "reordered",
            "reflected",
            "other transcript",
        ] {
            let (d, l) = (
                LinkSecret::generate().unwrap(),
                LinkSecret::generate().unwrap(),
            );
            let (dp, lp) = (d.public(), l.public());
            let (mut d_send, _) = d.derive(LinkRole::Dialer, &lp, b"t").unwrap();
            let transcript: &[u8] = if case == "other transcript" {
                b"u"
            } else {
                b"t"
            };
            let (mut l_send, mut l_recv) = l.derive(LinkRole::Listener, &dp, transcript).unwrap();
            let mut record = d_send.seal(b"payload").unwrap();
            match case {
                "altered" => *record.last_mut().unwrap() ^= 1,
                "replayed" => {
                    l_recv.push(&record);
                    assert!(l_recv.next_record().unwrap().is_ok());
                }
                "reordered" => record = d_send.seal(b"second").unwrap(),
                "reflected" => record = l_send.seal(b"payload").unwrap(),
                _ => {}
            }
            l_recv.push(&record);
            assert!(l_recv.next_record().unwrap().is_err(), "{case}");
        }
    }

    #[test]
    fn hellos_round_trip_and_lengths_are_bounded() {
        let hello = Hello {
            from_rank: 0,
            to_rank: 1,
            challenge: [7; 32],
        };
        let bytes = hello.encode();
        assert_eq!(bytes.len(), HELLO_LEN);
        assert_eq!(Hello::decode(&bytes).unwrap(), hello);
        assert!(Hello::decode(&bytes[1..]).is_err());
        let mut other = bytes.clone();
        other[0] ^= 1;
        assert!(Hello::decode(&other).is_err());
        // The two documents answer different nonces, and both bind the hello.
        let d = document_nonce(LinkRole::Dialer, &bytes, &[1; 32]);
        let l = document_nonce(LinkRole::Listener, &bytes, &[1; 32]);
        assert_ne!(d, l);
        assert_ne!(d, document_nonce(LinkRole::Dialer, &other, &[1; 32]));
        let (_, mut opener) = pair().1;
        opener.push(&[0, 0, 0, 3, 1, 2, 3]);
        assert!(opener.next_record().unwrap().is_err(), "shorter than a tag");
        let (_, mut opener) = pair().1;
        opener.push(&(MAX_RECORD as u32 + 17).to_be_bytes());
        assert!(
            opener.next_record().unwrap().is_err(),
            "longer than a record"
        );
        let (mut sealer, _) = pair().0;
        assert!(sealer.seal(&vec![0; MAX_RECORD + 1]).is_err());
    }
}
