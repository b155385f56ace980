//! Sealed model files: a model's weights encrypted by its owner under a model key, so that the
//! host and the operator only ever hold ciphertext, and a node decrypts them chunk by chunk
//! (a multi-gigabyte file never has to be in memory twice). `spec/model-sealing.md` is the
//! format in words.
//!
//! ```text
//! sealed file = header ‖ chunk₀ ‖ chunk₁ ‖ … ‖ chunkₙ
//! header      = "arcane-sealed-model/v1\n" ‖ salt (32 bytes, random)
//! payload key = HKDF-SHA256(salt = salt, ikm = model key, info = "arcane-sealed-model/v1")
//! chunkᵢ      = ChaCha20-Poly1305(payload key, nonce = i (11 bytes, big-endian) ‖ last, plaintextᵢ)
//! ```
//!
//! Every plaintext chunk but the last is exactly [`CHUNK_LEN`] bytes; the last is 1 to
//! [`CHUNK_LEN`] bytes and its nonce ends in `0x01` (the others in `0x00`), the STREAM
//! construction of age's payload: a file cut short, reordered, extended or spliced with another
//! does not open. The key is bound to the format by the HKDF info, and to this file by the salt.
//!
//! ```
//! use arcane_verifier::sealed_model::{ModelKey, open, seal};
//!
//! let key = ModelKey::generate();
//! let sealed = seal(&key, b"GGUF weights")?;
//! assert_eq!(&open(&key, &sealed)?[..], b"GGUF weights");
//! assert!(open(&ModelKey::generate(), &sealed).is_err());
//! # Ok::<(), arcane_verifier::Error>(())
//! ```

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The first bytes of every sealed model file (and the HKDF info of its payload key).
pub const MAGIC: &[u8; 23] = b"arcane-sealed-model/v1\n";
/// Length of the header: the magic line and the salt.
pub const HEADER_LEN: usize = MAGIC.len() + SALT_LEN;
/// Length of the random salt in the header.
pub const SALT_LEN: usize = 32;
/// Plaintext bytes in every chunk but the last (64 KiB).
pub const CHUNK_LEN: usize = 64 * 1024;
/// The AEAD tag each chunk carries.
pub const TAG_LEN: usize = 16;
/// Length of every sealed chunk but the last.
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
/// Length of a model key.
pub const MODEL_KEY_LEN: usize = 32;

/// A model key: what the model's owner keeps and releases only to attested nodes. Zeroized on
/// drop; its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct ModelKey(Zeroizing<[u8; MODEL_KEY_LEN]>);

impl std::fmt::Debug for ModelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModelKey(…)")
    }
}

impl ModelKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; MODEL_KEY_LEN]);
        getrandom::fill(&mut key[..]).expect("the operating system's random source");
        ModelKey(key)
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let key: [u8; MODEL_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::MalformedSealed("a model key is 32 bytes"))?;
        Ok(ModelKey(Zeroizing::new(key)))
    }

    /// The key's bytes (to store at 0600, or to wrap for a node).
    pub fn as_bytes(&self) -> &[u8; MODEL_KEY_LEN] {
        &self.0
    }

    fn payload_cipher(&self, salt: &[u8; SALT_LEN]) -> ChaCha20Poly1305 {
        let mut payload_key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(salt), &self.0[..])
            .expand(MAGIC, &mut payload_key[..])
            .expect("32 bytes is a valid HKDF length");
        ChaCha20Poly1305::new_from_slice(&payload_key[..]).expect("32-byte key")
    }
}

/// The nonce of chunk `index`: the index as 11 bytes big-endian, then `0x01` for the last chunk.
fn chunk_nonce(index: u64, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::from(nonce)
}

/// Seals a model's chunks in order ([`ModelSealer::start`] gives the header to write first).
pub struct ModelSealer {
    cipher: ChaCha20Poly1305,
    index: u64,
    finished: bool,
}

impl ModelSealer {
    /// A sealer under `key` with a fresh salt, and the header that starts the file.
    pub fn start(key: &ModelKey) -> ([u8; HEADER_LEN], Self) {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).expect("the operating system's random source");
        Self::start_with_salt(key, salt)
    }

    /// [`ModelSealer::start`] with a given salt (test vectors only need this; a salt must never
    /// be used twice with one key).
    pub fn start_with_salt(key: &ModelKey, salt: [u8; SALT_LEN]) -> ([u8; HEADER_LEN], Self) {
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[MAGIC.len()..].copy_from_slice(&salt);
        let sealer = ModelSealer {
            cipher: key.payload_cipher(&salt),
            index: 0,
            finished: false,
        };
        (header, sealer)
    }

    /// Seals the next chunk: exactly [`CHUNK_LEN`] bytes, or 1 to [`CHUNK_LEN`] when `last`.
    /// Nothing can be sealed after the last chunk.
    pub fn seal_chunk(&mut self, plaintext: &[u8], last: bool) -> Result<Vec<u8>> {
        if self.finished {
            return Err(Error::MalformedSealed(
                "the model is already sealed to its end",
            ));
        }
        let fits = if last {
            (1..=CHUNK_LEN).contains(&plaintext.len())
        } else {
            plaintext.len() == CHUNK_LEN
        };
        if !fits {
            return Err(Error::MalformedSealed(
                "a model chunk is 64 KiB, the last one 1 byte to 64 KiB",
            ));
        }
        let sealed = self
            .cipher
            .encrypt(&chunk_nonce(self.index, last), plaintext)
            .map_err(|_| Error::MalformedSealed("model chunk encryption failed"))?;
        self.index += 1;
        self.finished = last;
        Ok(sealed)
    }
}

/// Opens a sealed model's chunks in order, after its header.
pub struct ModelOpener {
    cipher: ChaCha20Poly1305,
    index: u64,
    finished: bool,
}

impl ModelOpener {
    /// Reads the header (the file's first [`HEADER_LEN`] bytes) and derives the payload key.
    pub fn start(key: &ModelKey, header: &[u8]) -> Result<Self> {
        let salt = parse_header(header)?;
        Ok(ModelOpener {
            cipher: key.payload_cipher(&salt),
            index: 0,
            finished: false,
        })
    }

    /// Opens the next sealed chunk. `last` says that the file ends after it: every chunk but
    /// the last is [`SEALED_CHUNK_LEN`] bytes, so a reader knows it once it has read one byte
    /// past a full chunk, or fewer than a full one.
    pub fn open_chunk(&mut self, sealed: &[u8], last: bool) -> Result<Zeroizing<Vec<u8>>> {
        if self.finished {
            return Err(Error::SealedOpen(
                "bytes after the sealed model's last chunk",
            ));
        }
        let fits = if last {
            (TAG_LEN + 1..=SEALED_CHUNK_LEN).contains(&sealed.len())
        } else {
            sealed.len() == SEALED_CHUNK_LEN
        };
        if !fits {
            return Err(Error::SealedOpen(
                "a sealed model chunk has the wrong length",
            ));
        }
        let plaintext = self
            .cipher
            .decrypt(&chunk_nonce(self.index, last), sealed)
            .map_err(|_| {
                Error::SealedOpen(
                    "a model chunk does not open (another key, tampered, reordered or cut short)",
                )
            })?;
        self.index += 1;
        self.finished = last;
        Ok(Zeroizing::new(plaintext))
    }

    /// Whether the last chunk has been opened (a reader at the end of the file that has not
    /// opened it holds a file cut short).
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// The salt of a sealed model's header; refused when it is not one.
pub fn parse_header(header: &[u8]) -> Result<[u8; SALT_LEN]> {
    if header.len() != HEADER_LEN || !header.starts_with(MAGIC) {
        return Err(Error::MalformedSealed(
            "not a sealed model file (arcane-sealed-model/v1)",
        ));
    }
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&header[MAGIC.len()..]);
    Ok(salt)
}

/// A whole model sealed in memory under `key` with a fresh salt (a streaming sealer uses
/// [`ModelSealer`] the same way). An empty model is refused.
pub fn seal(key: &ModelKey, plaintext: &[u8]) -> Result<Vec<u8>> {
    if plaintext.is_empty() {
        return Err(Error::MalformedSealed("an empty model cannot be sealed"));
    }
    let (header, mut sealer) = ModelSealer::start(key);
    let chunks = plaintext.len().div_ceil(CHUNK_LEN);
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + chunks * TAG_LEN);
    out.extend_from_slice(&header);
    for (i, chunk) in plaintext.chunks(CHUNK_LEN).enumerate() {
        out.extend_from_slice(&sealer.seal_chunk(chunk, i + 1 == chunks)?);
    }
    Ok(out)
}

/// A whole sealed model opened in memory: every chunk, to the last, or an error.
pub fn open(key: &ModelKey, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < HEADER_LEN {
        return Err(Error::MalformedSealed(
            "a sealed model is shorter than its header",
        ));
    }
    let (header, mut rest) = sealed.split_at(HEADER_LEN);
    let mut opener = ModelOpener::start(key, header)?;
    let mut out = Zeroizing::new(Vec::with_capacity(rest.len()));
    loop {
        // A full chunk with nothing after it is the last one.
        let take = rest.len().min(SEALED_CHUNK_LEN);
        let (chunk, after) = rest.split_at(take);
        out.extend_from_slice(&opener.open_chunk(chunk, after.is_empty())?);
        if after.is_empty() {
            return Ok(out);
        }
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn model(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn opens_what_it_sealed_at_every_chunk_boundary() {
        let key = ModelKey::generate();
        for len in [1, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 1, 3 * CHUNK_LEN] {
            let plain = model(len);
            let sealed = seal(&key, &plain).unwrap();
            assert_eq!(
                sealed.len(),
                HEADER_LEN + len + len.div_ceil(CHUNK_LEN) * TAG_LEN
            );
            assert_eq!(&open(&key, &sealed).unwrap()[..], &plain[..], "{len}");
        }
    }

    #[test]
    fn the_ciphertext_holds_no_plaintext_and_differs_each_time() {
        let key = ModelKey::generate();
        let plain = model(2 * CHUNK_LEN);
        let (a, b) = (seal(&key, &plain).unwrap(), seal(&key, &plain).unwrap());
        assert_ne!(a, b, "a fresh salt per file");
        let window = &plain[1000..1064];
        assert!(!a.windows(window.len()).any(|w| w == window));
    }

    #[test]
    fn a_file_changed_in_any_way_does_not_open() {
        let key = ModelKey::generate();
        let plain = model(3 * CHUNK_LEN + 10);
        let sealed = seal(&key, &plain).unwrap();
        let chunk = |i: usize| HEADER_LEN + i * SEALED_CHUNK_LEN;
        // One bit flipped in the magic, the salt, a chunk's body and the last tag.
        for at in [0, MAGIC.len() + 3, chunk(1) + 17, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert!(open(&key, &bad).is_err(), "bit flipped at {at}");
        }
        // Cut after a full chunk: that chunk was not sealed as the last.
        assert!(open(&key, &sealed[..chunk(2)]).is_err());
        // Cut inside the last chunk, or into the header.
        assert!(open(&key, &sealed[..sealed.len() - 1]).is_err());
        assert!(open(&key, &sealed[..HEADER_LEN]).is_err());
        assert!(open(&key, &sealed[..10]).is_err());
        // Bytes appended after the last chunk.
        let mut longer = sealed.clone();
        longer.extend_from_slice(&[0u8; TAG_LEN + 1]);
        assert!(open(&key, &longer).is_err());
        // Two chunks swapped.
        let mut swapped = sealed.clone();
        swapped[chunk(0)..chunk(1)].copy_from_slice(&sealed[chunk(1)..chunk(2)]);
        swapped[chunk(1)..chunk(2)].copy_from_slice(&sealed[chunk(0)..chunk(1)]);
        assert!(open(&key, &swapped).is_err());
        // A chunk from another file under the same key.
        let other = seal(&key, &plain).unwrap();
        let mut spliced = sealed.clone();
        spliced[chunk(1)..chunk(2)].copy_from_slice(&other[chunk(1)..chunk(2)]);
        assert!(open(&key, &spliced).is_err());
        // Another key.
        assert!(open(&ModelKey::generate(), &sealed).is_err());
    }

    #[test]
    fn chunks_of_the_wrong_size_and_after_the_end_are_refused() {
        let key = ModelKey::generate();
        let (header, mut sealer) = ModelSealer::start(&key);
        assert!(
            sealer.seal_chunk(&[1; 10], false).is_err(),
            "short, not last"
        );
        assert!(sealer.seal_chunk(&[], true).is_err(), "empty last chunk");
        assert!(sealer.seal_chunk(&[1; CHUNK_LEN + 1], true).is_err());
        let first = sealer.seal_chunk(&[1; CHUNK_LEN], false).unwrap();
        let last = sealer.seal_chunk(&[2; 5], true).unwrap();
        assert!(sealer.seal_chunk(&[3; 5], true).is_err(), "after the last");
        let mut opener = ModelOpener::start(&key, &header).unwrap();
        assert!(opener.open_chunk(&first[..100], false).is_err());
        assert_eq!(
            &opener.open_chunk(&first, false).unwrap()[..],
            &[1; CHUNK_LEN]
        );
        assert!(!opener.is_finished());
        assert_eq!(&opener.open_chunk(&last, true).unwrap()[..], &[2; 5]);
        assert!(opener.is_finished());
        assert!(opener.open_chunk(&last, true).is_err(), "after the last");
        assert!(seal(&key, &[]).is_err());
        assert!(ModelOpener::start(&key, &header[..HEADER_LEN - 1]).is_err());
        assert!(ModelKey::from_bytes(&[0; 31]).is_err());
    }

    #[test]
    fn a_fixed_key_and_salt_give_fixed_bytes() {
        // The format pinned: a change to the derivation, the nonces or the framing changes this.
        let key = ModelKey::from_bytes(&[7; 32]).unwrap();
        let (header, mut sealer) = ModelSealer::start_with_salt(&key, [9; SALT_LEN]);
        let sealed = sealer.seal_chunk(b"weights", true).unwrap();
        let mut payload_key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&[9; SALT_LEN]), &[7; 32])
            .expand(b"arcane-sealed-model/v1\n", &mut payload_key)
            .unwrap();
        let mut nonce = [0u8; 12];
        nonce[11] = 1;
        let expected = ChaCha20Poly1305::new_from_slice(&payload_key)
            .unwrap()
            .encrypt(&Nonce::from(nonce), &b"weights"[..])
            .unwrap();
        assert_eq!(sealed, expected);
        assert_eq!(&header[..23], b"arcane-sealed-model/v1\n");
        assert_eq!(&header[23..], &[9; SALT_LEN]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_model_round_trips_and_any_cut_is_refused(
            len in 1usize..3 * CHUNK_LEN,
            cut in any::<prop::sample::Index>(),
        ) {
            let key = ModelKey::generate();
            let plain = model(len);
            let sealed = seal(&key, &plain).unwrap();
            prop_assert_eq!(&open(&key, &sealed).unwrap()[..], &plain[..]);
            let at = cut.index(sealed.len());
            prop_assert!(open(&key, &sealed[..at]).is_err());
        }
    }
}
