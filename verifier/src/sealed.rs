//! Sealed requests and streamed sealed responses between a client and a compute node.
//!
//! The client makes a fresh data encryption key (DEK) per request, encrypts the inner request with
//! it, and wraps the DEK with HPKE (RFC 9180, base mode) to the request encryption key (REK) of
//! each verified candidate node. The gateway forwards one wrapped DEK and the ciphertext to the
//! node it picks; only that node can unwrap. The node answers with a stream of AEAD chunks under a
//! key derived from the HPKE context of that wrap (exporter secret plus a fresh response nonce, in
//! the style of RFC 9458 §4.4), numbered in the nonce and with a distinct final chunk, so
//! truncation, reordering and replay are detected. `spec/sealed.md` gives every byte.
//!
//! Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 (0x0020, 0x0001, 0x0003);
//! the DEK and the response chunks use ChaCha20-Poly1305 too.
//!
//! ```
//! use arcane_verifier::sealed::{self, RekSecret, ResponseReader};
//!
//! let node_rek = RekSecret::generate();
//! // Client: seal a request to the node's (verified) REK.
//! let (wrapped, ciphertext, client) =
//!     sealed::seal_request(b"inner request", &[node_rek.public()], 1_700_000_000)?;
//! // Node: unwrap, decrypt, answer in chunks.
//! let opened = sealed::open_request(&node_rek, &wrapped[0], &ciphertext)?;
//! assert_eq!(&opened.plaintext[..], b"inner request");
//! let (head, mut sealer) = opened.responder.start();
//! let mut stream = head.to_vec();
//! stream.extend(sealer.seal_chunk(b"Hello", false, 0)?);
//! stream.extend(sealer.seal_chunk(b", world", true, 0)?);
//! // Client: open the stream chunk by chunk.
//! let mut reader = ResponseReader::new(client);
//! reader.push(&stream);
//! let mut text = Vec::new();
//! while let Some(chunk) = reader.next_chunk()? {
//!     text.extend_from_slice(&chunk.content);
//! }
//! reader.finish()?;
//! assert_eq!(text, b"Hello, world");
//! # Ok::<(), arcane_verifier::Error>(())
//! ```

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::{Error, Result};

/// The HPKE KEM: DHKEM(X25519, HKDF-SHA256).
pub type RekKem = hpke::kem::X25519HkdfSha256;
/// The HPKE KDF: HKDF-SHA256.
pub type RekKdf = hpke::kdf::HkdfSha256;
/// The HPKE AEAD: ChaCha20-Poly1305.
pub type RekAead = hpke::aead::ChaCha20Poly1305;

/// HPKE identifiers of the suite (KEM, KDF, AEAD), as registered in RFC 9180.
pub const SUITE: (u16, u16, u16) = (0x0020, 0x0001, 0x0003);
/// HPKE `info` of the DEK wrap.
pub const DEK_WRAP_INFO: &[u8] = b"arcane-aip/dek-wrap/v1";
/// AAD of the request ciphertext under the DEK.
pub const REQUEST_AAD: &[u8] = b"arcane-aip/request/v1";
/// HPKE exporter context of the response secret.
pub const RESPONSE_EXPORT_CONTEXT: &[u8] = b"arcane-aip/response/v1";
/// Length of an X25519 REK public key and of an HPKE encapsulated key.
pub const KEY_LEN: usize = 32;
/// Length of a DEK.
pub const DEK_LEN: usize = 32;
/// Length of the wrapped plaintext: DEK ‖ issued-at (u64, seconds).
const WRAP_PLAINTEXT_LEN: usize = DEK_LEN + 8;
/// AEAD tag length.
const TAG_LEN: usize = 16;
/// Length of one encoded wrapped DEK: REK id ‖ enc ‖ sealed(DEK ‖ issued-at).
pub const WRAPPED_DEK_LEN: usize = 32 + KEY_LEN + WRAP_PLAINTEXT_LEN + TAG_LEN;
/// Length of the response nonce.
pub const RESPONSE_NONCE_LEN: usize = 32;
/// Length of the response head: enc ‖ response nonce.
pub const RESPONSE_HEAD_LEN: usize = KEY_LEN + RESPONSE_NONCE_LEN;
/// Largest request ciphertext accepted (1 MiB).
pub const MAX_REQUEST_CIPHERTEXT: usize = 1 << 20;
/// Largest chunk ciphertext accepted (64 KiB).
pub const MAX_CHUNK_CIPHERTEXT: usize = 64 * 1024;
/// Frame flag of a chunk that is followed by more.
pub const FLAG_MORE: u8 = 0x00;
/// Frame flag of the last chunk.
pub const FLAG_FINAL: u8 = 0x01;
/// Frame header: flag (1) ‖ ciphertext length (u32, big-endian).
pub const FRAME_HEADER_LEN: usize = 5;

/// A node's REK public key (X25519, 32 bytes), the key a client wraps DEKs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RekPublicKey(pub [u8; KEY_LEN]);

impl RekPublicKey {
    /// Reads the key from an attestation document's `public_key`.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::MalformedSealed("REK public key is not 32 bytes"))?;
        Ok(RekPublicKey(key))
    }

    /// The REK id: SHA-256 of the public key, which names the key in a wrapped DEK.
    pub fn id(&self) -> [u8; 32] {
        Sha256::digest(self.0).into()
    }
}

/// A node's REK: the HPKE private key, in memory only; the key material is zeroized on drop.
pub struct RekSecret {
    secret: <RekKem as hpke::Kem>::PrivateKey,
    public: RekPublicKey,
}

impl RekSecret {
    /// Generates a REK from the operating system's random source.
    pub fn generate() -> Self {
        let (secret, public) = RekKem::gen_keypair();
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&public.to_bytes());
        RekSecret {
            secret,
            public: RekPublicKey(bytes),
        }
    }

    /// The public half.
    pub fn public(&self) -> RekPublicKey {
        self.public
    }

    /// The private key, for the crate's other HPKE receivers (a wrapped model key).
    pub(crate) fn private(&self) -> &<RekKem as hpke::Kem>::PrivateKey {
        &self.secret
    }
}

impl std::fmt::Debug for RekSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RekSecret")
            .field("public", &hex_short(&self.public.0))
            .finish_non_exhaustive()
    }
}

fn hex_short(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// One DEK wrapped to one node's REK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedDek {
    /// SHA-256 of the REK public key it is wrapped to.
    pub rek_id: [u8; 32],
    /// The HPKE encapsulated key.
    pub enc: [u8; KEY_LEN],
    /// HPKE ciphertext of DEK ‖ issued-at.
    pub sealed: [u8; WRAP_PLAINTEXT_LEN + TAG_LEN],
}

impl WrappedDek {
    /// The fixed-length encoding: `rek_id ‖ enc ‖ sealed` (120 bytes).
    pub fn encode(&self) -> [u8; WRAPPED_DEK_LEN] {
        let mut out = [0u8; WRAPPED_DEK_LEN];
        out[..32].copy_from_slice(&self.rek_id);
        out[32..64].copy_from_slice(&self.enc);
        out[64..].copy_from_slice(&self.sealed);
        out
    }

    /// Parses the fixed-length encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != WRAPPED_DEK_LEN {
            return Err(Error::MalformedSealed("wrapped DEK is not 120 bytes"));
        }
        let mut w = WrappedDek {
            rek_id: [0; 32],
            enc: [0; KEY_LEN],
            sealed: [0; WRAP_PLAINTEXT_LEN + TAG_LEN],
        };
        w.rek_id.copy_from_slice(&bytes[..32]);
        w.enc.copy_from_slice(&bytes[32..64]);
        w.sealed.copy_from_slice(&bytes[64..]);
        Ok(w)
    }
}

/// What the client keeps to open the answer: per candidate, the encapsulated key and the
/// response secret exported from that wrap's HPKE context.
pub struct ClientRequest {
    candidates: Vec<([u8; KEY_LEN], Zeroizing<[u8; 32]>)>,
}

impl std::fmt::Debug for ClientRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRequest")
            .field("candidates", &self.candidates.len())
            .finish_non_exhaustive()
    }
}

fn request_digest(ciphertext: &[u8]) -> [u8; 32] {
    Sha256::digest(ciphertext).into()
}

/// Seals `plaintext` under a fresh DEK and wraps the DEK to each REK in `reks` (each one a REK
/// that the caller has verified). `issued_at` (seconds since the epoch) lets nodes refuse old
/// requests. Returns the wrapped DEKs (in the order of `reks`), the request ciphertext and the
/// state that opens the answer.
pub fn seal_request(
    plaintext: &[u8],
    reks: &[RekPublicKey],
    issued_at: u64,
) -> Result<(Vec<WrappedDek>, Vec<u8>, ClientRequest)> {
    if reks.is_empty() {
        return Err(Error::MalformedSealed("no REK to wrap the DEK to"));
    }
    if plaintext.len() + TAG_LEN > MAX_REQUEST_CIPHERTEXT {
        return Err(Error::MalformedSealed("request is over 1 MiB"));
    }
    let mut dek = Zeroizing::new([0u8; DEK_LEN]);
    getrandom::fill(&mut dek[..]).map_err(|_| Error::MalformedSealed("no randomness"))?;
    let cipher = ChaCha20Poly1305::new_from_slice(&dek[..])
        .map_err(|_| Error::MalformedSealed("DEK length"))?;
    let ciphertext = cipher
        .encrypt(
            &Nonce::from([0u8; 12]),
            Payload {
                msg: plaintext,
                aad: REQUEST_AAD,
            },
        )
        .map_err(|_| Error::MalformedSealed("request encryption failed"))?;
    let digest = request_digest(&ciphertext);
    let mut wrap_plaintext = Zeroizing::new([0u8; WRAP_PLAINTEXT_LEN]);
    wrap_plaintext[..DEK_LEN].copy_from_slice(&dek[..]);
    wrap_plaintext[DEK_LEN..].copy_from_slice(&issued_at.to_be_bytes());
    let mut wrapped = Vec::with_capacity(reks.len());
    let mut candidates = Vec::with_capacity(reks.len());
    for rek in reks {
        let pk = <RekKem as hpke::Kem>::PublicKey::from_bytes(&rek.0)
            .map_err(|_| Error::MalformedSealed("REK public key"))?;
        let (enc, mut ctx) =
            hpke::setup_sender::<RekAead, RekKdf, RekKem>(&OpModeS::Base, &pk, DEK_WRAP_INFO)
                .map_err(|_| Error::MalformedSealed("HPKE encapsulation failed"))?;
        let sealed = ctx
            .seal(&wrap_plaintext[..], &digest)
            .map_err(|_| Error::MalformedSealed("HPKE seal failed"))?;
        let mut secret = Zeroizing::new([0u8; 32]);
        ctx.export(RESPONSE_EXPORT_CONTEXT, &mut secret[..])
            .map_err(|_| Error::MalformedSealed("HPKE export failed"))?;
        let mut w = WrappedDek {
            rek_id: rek.id(),
            enc: [0; KEY_LEN],
            sealed: [0; WRAP_PLAINTEXT_LEN + TAG_LEN],
        };
        w.enc.copy_from_slice(&enc.to_bytes());
        w.sealed.copy_from_slice(&sealed);
        candidates.push((w.enc, secret));
        wrapped.push(w);
    }
    Ok((wrapped, ciphertext, ClientRequest { candidates }))
}

/// A request the node opened.
pub struct OpenedRequest {
    /// The inner request (zeroized on drop).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// When the client sealed it (seconds since the epoch, the client's clock).
    pub issued_at: u64,
    /// The encapsulated key: unique per wrap, the key of the node's replay guard.
    pub enc: [u8; KEY_LEN],
    /// Starts the sealed answer.
    pub responder: Responder,
}

impl std::fmt::Debug for OpenedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedRequest")
            .field("plaintext_len", &self.plaintext.len())
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

/// Opens a wrapped DEK with the node's REK and decrypts the request ciphertext with it. Every
/// failure is [`Error::SealedOpen`] or [`Error::MalformedSealed`]; none says more about the
/// secret than "it did not open".
pub fn open_request(
    rek: &RekSecret,
    wrapped: &WrappedDek,
    ciphertext: &[u8],
) -> Result<OpenedRequest> {
    if wrapped.rek_id != rek.public.id() {
        return Err(Error::UnknownRek);
    }
    if ciphertext.len() > MAX_REQUEST_CIPHERTEXT {
        return Err(Error::MalformedSealed("request is over 1 MiB"));
    }
    let enc = <RekKem as hpke::Kem>::EncappedKey::from_bytes(&wrapped.enc)
        .map_err(|_| Error::MalformedSealed("encapsulated key"))?;
    let mut ctx = hpke::setup_receiver::<RekAead, RekKdf, RekKem>(
        &OpModeR::Base,
        &rek.secret,
        &enc,
        DEK_WRAP_INFO,
    )
    .map_err(|_| Error::SealedOpen("the DEK wrap does not open with this REK"))?;
    let wrap_plaintext = Zeroizing::new(
        ctx.open(&wrapped.sealed, &request_digest(ciphertext))
            .map_err(|_| Error::SealedOpen("the DEK wrap does not open with this REK"))?,
    );
    if wrap_plaintext.len() != WRAP_PLAINTEXT_LEN {
        return Err(Error::MalformedSealed("wrapped DEK plaintext length"));
    }
    let issued_at = u64::from_be_bytes(wrap_plaintext[DEK_LEN..].try_into().expect("8 bytes"));
    let cipher = ChaCha20Poly1305::new_from_slice(&wrap_plaintext[..DEK_LEN])
        .map_err(|_| Error::MalformedSealed("DEK length"))?;
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(
                &Nonce::from([0u8; 12]),
                Payload {
                    msg: ciphertext,
                    aad: REQUEST_AAD,
                },
            )
            .map_err(|_| Error::SealedOpen("the request does not decrypt with its DEK"))?,
    );
    let mut secret = Zeroizing::new([0u8; 32]);
    ctx.export(RESPONSE_EXPORT_CONTEXT, &mut secret[..])
        .map_err(|_| Error::MalformedSealed("HPKE export failed"))?;
    Ok(OpenedRequest {
        plaintext,
        issued_at,
        enc: wrapped.enc,
        responder: Responder {
            enc: wrapped.enc,
            secret,
        },
    })
}

/// The node's half of the response key schedule, before a response nonce is chosen.
pub struct Responder {
    enc: [u8; KEY_LEN],
    secret: Zeroizing<[u8; 32]>,
}

/// Response key and nonce base, derived as in RFC 9458 §4.4 with the secret exported from the
/// wrap's HPKE context: `salt = enc ‖ response_nonce`, `prk = Extract(salt, secret)`,
/// `key = Expand(prk, "key", 32)`, `nonce = Expand(prk, "nonce", 12)`.
struct ChunkKeys {
    cipher: ChaCha20Poly1305,
    nonce_base: [u8; 12],
    sequence: u64,
}

impl ChunkKeys {
    fn derive(
        enc: &[u8; KEY_LEN],
        response_nonce: &[u8; RESPONSE_NONCE_LEN],
        secret: &[u8],
    ) -> Self {
        let mut salt = [0u8; RESPONSE_HEAD_LEN];
        salt[..KEY_LEN].copy_from_slice(enc);
        salt[KEY_LEN..].copy_from_slice(response_nonce);
        let hk = Hkdf::<Sha256>::new(Some(&salt), secret);
        let mut key = Zeroizing::new([0u8; 32]);
        let mut nonce_base = [0u8; 12];
        hk.expand(b"key", &mut key[..])
            .expect("32 bytes is a valid HKDF length");
        hk.expand(b"nonce", &mut nonce_base)
            .expect("12 bytes is a valid HKDF length");
        let cipher = ChaCha20Poly1305::new_from_slice(&key[..]).expect("32-byte key");
        ChunkKeys {
            cipher,
            nonce_base,
            sequence: 0,
        }
    }

    fn next_nonce(&mut self) -> Result<Nonce> {
        let mut nonce = self.nonce_base;
        for (n, s) in nonce[4..].iter_mut().zip(self.sequence.to_be_bytes()) {
            *n ^= s;
        }
        self.sequence = self
            .sequence
            .checked_add(1)
            .ok_or(Error::MalformedSealed("chunk counter exhausted"))?;
        Ok(Nonce::from(nonce))
    }
}

impl Responder {
    /// Chooses a fresh response nonce; returns the response head to send first
    /// (`enc ‖ response_nonce`) and the chunk sealer.
    pub fn start(self) -> ([u8; RESPONSE_HEAD_LEN], ResponseSealer) {
        let mut response_nonce = [0u8; RESPONSE_NONCE_LEN];
        getrandom::fill(&mut response_nonce).expect("the operating system's random source");
        self.start_with_nonce(response_nonce)
    }

    /// [`Responder::start`] with a given response nonce (tests and test vectors only need this).
    pub fn start_with_nonce(
        self,
        response_nonce: [u8; RESPONSE_NONCE_LEN],
    ) -> ([u8; RESPONSE_HEAD_LEN], ResponseSealer) {
        let mut head = [0u8; RESPONSE_HEAD_LEN];
        head[..KEY_LEN].copy_from_slice(&self.enc);
        head[KEY_LEN..].copy_from_slice(&response_nonce);
        let keys = ChunkKeys::derive(&self.enc, &response_nonce, &self.secret[..]);
        (
            head,
            ResponseSealer {
                keys,
                finished: false,
            },
        )
    }
}

/// Seals response chunks in order.
pub struct ResponseSealer {
    keys: ChunkKeys,
    finished: bool,
}

impl ResponseSealer {
    /// Seals one chunk into a frame: `flag ‖ len (u32) ‖ AEAD(content_len (u32) ‖ content ‖
    /// zero padding)`, AAD = the flag byte. With `pad_to` > 0 the plaintext is padded up to a
    /// multiple of `pad_to` bytes. After a final chunk nothing more can be sealed.
    pub fn seal_chunk(&mut self, content: &[u8], last: bool, pad_to: usize) -> Result<Vec<u8>> {
        if self.finished {
            return Err(Error::MalformedSealed("the stream is already finished"));
        }
        let body_len = 4 + content.len();
        let padded_len = if pad_to > 0 {
            body_len.div_ceil(pad_to) * pad_to
        } else {
            body_len
        };
        if padded_len + TAG_LEN > MAX_CHUNK_CIPHERTEXT {
            return Err(Error::MalformedSealed("chunk is over 64 KiB"));
        }
        let mut plaintext = Zeroizing::new(Vec::with_capacity(padded_len));
        plaintext.extend_from_slice(&(content.len() as u32).to_be_bytes());
        plaintext.extend_from_slice(content);
        plaintext.resize(padded_len, 0);
        let flag = if last { FLAG_FINAL } else { FLAG_MORE };
        let nonce = self.keys.next_nonce()?;
        let ciphertext = self
            .keys
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plaintext,
                    aad: &[flag],
                },
            )
            .map_err(|_| Error::MalformedSealed("chunk encryption failed"))?;
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + ciphertext.len());
        frame.push(flag);
        frame.extend_from_slice(&(ciphertext.len() as u32).to_be_bytes());
        frame.extend_from_slice(&ciphertext);
        self.finished = last;
        Ok(frame)
    }
}

/// One opened chunk.
#[derive(PartialEq, Eq)]
pub struct Chunk {
    /// The content, without padding (zeroized on drop).
    pub content: Zeroizing<Vec<u8>>,
    /// Whether this was the final chunk.
    pub last: bool,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("len", &self.content.len())
            .field("last", &self.last)
            .finish()
    }
}

/// The client's incremental reader of a sealed response stream: push bytes as they arrive, take
/// chunks as they complete, and call [`ResponseReader::finish`] at the end of the stream (a
/// stream without its final chunk is an error: truncation).
pub struct ResponseReader {
    request: Option<ClientRequest>,
    keys: Option<ChunkKeys>,
    buffer: Vec<u8>,
    finished: bool,
    /// Which candidate (index into the `reks` given to [`seal_request`]) answered.
    answered_by: Option<usize>,
}

impl ResponseReader {
    /// A reader for the answer to `request`.
    pub fn new(request: ClientRequest) -> Self {
        ResponseReader {
            request: Some(request),
            keys: None,
            buffer: Vec::new(),
            finished: false,
            answered_by: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Which candidate answered, once the head has been read.
    pub fn answered_by(&self) -> Option<usize> {
        self.answered_by
    }

    /// The next complete chunk, `None` when more bytes are needed.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        if self.keys.is_none() {
            if self.buffer.len() < RESPONSE_HEAD_LEN {
                return Ok(None);
            }
            let request = self
                .request
                .take()
                .ok_or(Error::MalformedSealed("response head already read"))?;
            let mut enc = [0u8; KEY_LEN];
            enc.copy_from_slice(&self.buffer[..KEY_LEN]);
            let mut response_nonce = [0u8; RESPONSE_NONCE_LEN];
            response_nonce.copy_from_slice(&self.buffer[KEY_LEN..RESPONSE_HEAD_LEN]);
            let (index, (_, secret)) = request
                .candidates
                .iter()
                .enumerate()
                .find(|(_, (e, _))| *e == enc)
                .ok_or(Error::SealedOpen(
                    "the answer is not for any wrap of this request",
                ))?;
            self.keys = Some(ChunkKeys::derive(&enc, &response_nonce, &secret[..]));
            self.answered_by = Some(index);
            self.buffer.drain(..RESPONSE_HEAD_LEN);
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        if self.finished {
            return Err(Error::SealedStream("bytes after the final chunk"));
        }
        if self.buffer.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let flag = self.buffer[0];
        if flag != FLAG_MORE && flag != FLAG_FINAL {
            return Err(Error::SealedStream("unknown chunk flag"));
        }
        let len = u32::from_be_bytes(self.buffer[1..5].try_into().expect("4 bytes")) as usize;
        if !(TAG_LEN + 4..=MAX_CHUNK_CIPHERTEXT).contains(&len) {
            return Err(Error::SealedStream("chunk length out of range"));
        }
        if self.buffer.len() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        let keys = self.keys.as_mut().expect("set above");
        let nonce = keys.next_nonce()?;
        let mut plaintext = Zeroizing::new(
            keys.cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: &self.buffer[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len],
                        aad: &[flag],
                    },
                )
                .map_err(|_| {
                    Error::SealedStream(
                        "a chunk does not decrypt (tampered, reordered or replayed)",
                    )
                })?,
        );
        self.buffer[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len].zeroize();
        self.buffer.drain(..FRAME_HEADER_LEN + len);
        let content_len = u32::from_be_bytes(plaintext[..4].try_into().expect("4 bytes")) as usize;
        if content_len > plaintext.len() - 4 {
            return Err(Error::SealedStream(
                "chunk content length exceeds the chunk",
            ));
        }
        if plaintext[4 + content_len..].iter().any(|b| *b != 0) {
            return Err(Error::SealedStream("chunk padding is not zero"));
        }
        plaintext.truncate(4 + content_len);
        plaintext.drain(..4);
        let last = flag == FLAG_FINAL;
        self.finished = last;
        Ok(Some(Chunk {
            content: plaintext,
            last,
        }))
    }

    /// Whether the final chunk has been read.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Ends the stream: an error unless the final chunk was read and nothing follows it.
    pub fn finish(&self) -> Result<()> {
        if !self.buffer.is_empty() && self.finished {
            return Err(Error::SealedStream("bytes after the final chunk"));
        }
        if !self.finished {
            return Err(Error::SealedStream(
                "the stream ended before its final chunk (truncated)",
            ));
        }
        Ok(())
    }
}
