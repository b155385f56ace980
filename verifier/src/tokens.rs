//! Privacy Pass publicly verifiable tokens (RFC 9578, token type 0x0002: blind RSA, RFC 9474
//! RSABSSA-SHA384-PSS-Deterministic) and the arcane-aip TGT → OTT derivation.
//!
//! - The **TGT** (token-granting token) is a token whose nonce is
//!   `SHA-256("arcane-aip/tgt/v1" ‖ tgt_secret)`; the identity service blind-signs it once per
//!   account and period, so it cannot be linked to the authentication.
//! - Each **OTT** (one-time token) `i` has the nonce `SHA-256("arcane-aip/ott/v1" ‖ tgt_secret ‖
//!   u32 i)`; the token granting service blind-signs a batch of them for a shown TGT. The gateway
//!   checks one OTT per request (signature, single use); only the node, which receives the TGT,
//!   the secret and the index inside the sealed request, can check that the OTT derives from the
//!   TGT. `spec/tokens.md` has every byte.

use blind_rsa_signatures::reexports::rsa::traits::PublicKeyParts;
use blind_rsa_signatures::{
    BlindSignature, BlindingResult, Hash as BlindHash, KeyPair, Options, PSSMode, PrepareMode,
    PublicKey, Signature,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// Token type 0x0002: blind RSA with a 2048-bit key.
pub const TOKEN_TYPE: u16 = 0x0002;
/// Authenticator length for 2048-bit keys.
pub const NK: usize = 256;
/// Encoded token length: type (2) ‖ nonce (32) ‖ challenge digest (32) ‖ key id (32) ‖ authenticator.
pub const TOKEN_LEN: usize = 2 + 32 + 32 + 32 + NK;
/// Encoded token request length: type (2) ‖ truncated key id (1) ‖ blinded message.
pub const TOKEN_REQUEST_LEN: usize = 2 + 1 + NK;
/// Issuer name in TGT challenges.
pub const TGT_ISSUER: &str = "arcane-aip-tgt";
/// Issuer name in OTT challenges.
pub const OTT_ISSUER: &str = "arcane-aip-ott";

/// RFC 9474 RSABSSA-SHA384-PSS-Deterministic, the variant RFC 9578 uses.
pub fn blind_rsa_options() -> Options {
    Options::new(BlindHash::Sha384, PSSMode::PSS, PrepareMode::Deterministic)
}

fn token_error(why: &'static str) -> Error {
    Error::Token(why)
}

/// A token challenge (RFC 9577 §2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenChallenge {
    /// The issuer's name.
    pub issuer_name: String,
    /// Empty or 32 bytes.
    pub redemption_context: Vec<u8>,
    /// Origin names, comma-separated, or empty.
    pub origin_info: String,
}

impl TokenChallenge {
    /// The arcane-aip challenge for a role's tokens: issuer `arcane-aip-tgt` or `arcane-aip-ott`,
    /// no redemption context, no origin.
    pub fn for_issuer(issuer: &str) -> Self {
        TokenChallenge {
            issuer_name: issuer.to_owned(),
            redemption_context: Vec::new(),
            origin_info: String::new(),
        }
    }

    /// `token_type (2) ‖ issuer_name<1..2^16-1> ‖ redemption_context<0..32> ‖ origin_info<0..2^16-1>`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = TOKEN_TYPE.to_be_bytes().to_vec();
        out.extend_from_slice(&(self.issuer_name.len() as u16).to_be_bytes());
        out.extend_from_slice(self.issuer_name.as_bytes());
        out.push(self.redemption_context.len() as u8);
        out.extend_from_slice(&self.redemption_context);
        out.extend_from_slice(&(self.origin_info.len() as u16).to_be_bytes());
        out.extend_from_slice(self.origin_info.as_bytes());
        out
    }

    /// Parses an encoded challenge of token type 0x0002.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = bytes;
        let mut take = |n: usize| -> Result<&[u8]> {
            if r.len() < n {
                return Err(token_error("truncated token challenge"));
            }
            let (head, tail) = r.split_at(n);
            r = tail;
            Ok(head)
        };
        if take(2)? != TOKEN_TYPE.to_be_bytes() {
            return Err(token_error("token type is not 0x0002"));
        }
        let n = u16::from_be_bytes(take(2)?.try_into().expect("2")) as usize;
        let issuer_name = String::from_utf8(take(n)?.to_vec())
            .map_err(|_| token_error("issuer name is not UTF-8"))?;
        let n = take(1)?[0] as usize;
        if n != 0 && n != 32 {
            return Err(token_error(
                "redemption context is neither empty nor 32 bytes",
            ));
        }
        let redemption_context = take(n)?.to_vec();
        let n = u16::from_be_bytes(take(2)?.try_into().expect("2")) as usize;
        let origin_info = String::from_utf8(take(n)?.to_vec())
            .map_err(|_| token_error("origin info is not UTF-8"))?;
        if !r.is_empty() {
            return Err(token_error("bytes after the token challenge"));
        }
        Ok(TokenChallenge {
            issuer_name,
            redemption_context,
            origin_info,
        })
    }

    /// SHA-256 of the encoding: the token's `challenge_digest`.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }
}

/// An issuer's public key with its token key id (SHA-256 of its RSASSA-PSS SPKI).
#[derive(Clone, Debug)]
pub struct IssuerKey {
    key: PublicKey,
    spki: Vec<u8>,
    id: [u8; 32],
}

impl IssuerKey {
    /// Reads the RSASSA-PSS SubjectPublicKeyInfo (the form `token-key` entries carry).
    pub fn from_spki(spki: &[u8]) -> Result<Self> {
        let key = PublicKey::from_spki(spki).map_err(|_| token_error("not an RSA-PSS key"))?;
        if key.0.size() != NK {
            return Err(token_error("the issuer key is not 2048 bits"));
        }
        Ok(IssuerKey {
            key,
            spki: spki.to_vec(),
            id: Sha256::digest(spki).into(),
        })
    }

    /// The token key id.
    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    /// The SPKI bytes.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }
}

/// An issuer's key pair (the identity service or the token granting service).
pub struct IssuerSecret {
    pair: KeyPair,
    public: IssuerKey,
}

impl std::fmt::Debug for IssuerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerSecret")
            .field("id", &crate::merkle::Hash(self.public.id).to_hex())
            .finish_non_exhaustive()
    }
}

impl IssuerSecret {
    /// Generates a 2048-bit key.
    pub fn generate() -> Result<Self> {
        let pair = KeyPair::generate(&mut blind_rsa_signatures::DefaultRng, 2048)
            .map_err(|_| token_error("key generation failed"))?;
        Self::from_pair(pair)
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let sk = blind_rsa_signatures::SecretKey::from_pem(pem)
            .map_err(|_| token_error("not an RSA private key"))?;
        let pk = sk.public_key().map_err(|_| token_error("bad RSA key"))?;
        Self::from_pair(KeyPair { pk, sk })
    }

    fn from_pair(pair: KeyPair) -> Result<Self> {
        let spki = pair
            .pk
            .to_spki(Some(&blind_rsa_options()))
            .map_err(|_| token_error("SPKI encoding"))?;
        let public = IssuerKey::from_spki(&spki)?;
        Ok(IssuerSecret { pair, public })
    }

    /// The PKCS#8 PEM form (zeroized on drop).
    pub fn to_pem(&self) -> Result<Zeroizing<String>> {
        self.pair
            .sk
            .to_pem()
            .map(Zeroizing::new)
            .map_err(|_| token_error("PEM encoding"))
    }

    /// The public key.
    pub fn public(&self) -> &IssuerKey {
        &self.public
    }

    /// Signs a token request (RFC 9578 §6.2): checks type and truncated key id, returns the
    /// token response (the blind signature, `NK` bytes).
    pub fn issue(&self, request: &TokenRequest) -> Result<Vec<u8>> {
        if request.truncated_key_id != self.public.id[31] {
            return Err(token_error("the request is for another issuer key"));
        }
        let sig = self
            .pair
            .sk
            .blind_sign(&request.blinded_msg)
            .map_err(|_| token_error("the blinded message is not valid for this key"))?;
        Ok(sig.0)
    }
}

/// A token request (RFC 9578 §6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The last byte of the token key id.
    pub truncated_key_id: u8,
    /// The blinded message, `NK` bytes.
    pub blinded_msg: Vec<u8>,
}

impl TokenRequest {
    /// `token_type ‖ truncated_token_key_id ‖ blinded_msg`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = TOKEN_TYPE.to_be_bytes().to_vec();
        out.push(self.truncated_key_id);
        out.extend_from_slice(&self.blinded_msg);
        out
    }

    /// Parses the encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != TOKEN_REQUEST_LEN {
            return Err(token_error("token request length"));
        }
        if bytes[..2] != TOKEN_TYPE.to_be_bytes() {
            return Err(token_error("token type is not 0x0002"));
        }
        Ok(TokenRequest {
            truncated_key_id: bytes[2],
            blinded_msg: bytes[3..].to_vec(),
        })
    }
}

/// A token (RFC 9577 §2.2, type 0x0002).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The client's nonce.
    pub nonce: [u8; 32],
    /// SHA-256 of the challenge.
    pub challenge_digest: [u8; 32],
    /// The issuer's token key id.
    pub token_key_id: [u8; 32],
    /// The RSA signature over the token input.
    pub authenticator: Vec<u8>,
}

impl Token {
    /// The signed part: `token_type ‖ nonce ‖ challenge_digest ‖ token_key_id`.
    pub fn input(&self) -> Vec<u8> {
        token_input(&self.nonce, &self.challenge_digest, &self.token_key_id)
    }

    /// The encoding (`TOKEN_LEN` bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.input();
        out.extend_from_slice(&self.authenticator);
        out
    }

    /// Parses the encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != TOKEN_LEN {
            return Err(token_error("token length"));
        }
        if bytes[..2] != TOKEN_TYPE.to_be_bytes() {
            return Err(token_error("token type is not 0x0002"));
        }
        let take = |r: std::ops::Range<usize>| -> [u8; 32] { bytes[r].try_into().expect("32") };
        Ok(Token {
            nonce: take(2..34),
            challenge_digest: take(34..66),
            token_key_id: take(66..98),
            authenticator: bytes[98..].to_vec(),
        })
    }

    /// Verifies the token against `key` and `challenge` (RFC 9578 §6.4).
    pub fn verify(&self, key: &IssuerKey, challenge: &TokenChallenge) -> Result<()> {
        if self.token_key_id != key.id {
            return Err(token_error("the token is from another issuer key"));
        }
        if self.challenge_digest != challenge.digest() {
            return Err(token_error("the token is for another challenge"));
        }
        Signature(self.authenticator.clone())
            .verify(&key.key, None, self.input(), &blind_rsa_options())
            .map_err(|_| token_error("the token's signature does not verify"))
    }
}

fn token_input(nonce: &[u8; 32], digest: &[u8; 32], key_id: &[u8; 32]) -> Vec<u8> {
    let mut out = TOKEN_TYPE.to_be_bytes().to_vec();
    out.extend_from_slice(nonce);
    out.extend_from_slice(digest);
    out.extend_from_slice(key_id);
    out
}

/// A client's token request in progress: what it needs to finalize the issuer's response.
pub struct PendingToken {
    nonce: [u8; 32],
    challenge_digest: [u8; 32],
    key: IssuerKey,
    blinding: BlindingResult,
}

impl std::fmt::Debug for PendingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingToken").finish_non_exhaustive()
    }
}

/// Starts a token request for `nonce` under `challenge` to the issuer `key` (RFC 9578 §6.1).
pub fn request_token(
    key: &IssuerKey,
    challenge: &TokenChallenge,
    nonce: [u8; 32],
) -> Result<(TokenRequest, PendingToken)> {
    let digest = challenge.digest();
    let input = token_input(&nonce, &digest, &key.id);
    let blinding = key
        .key
        .blind(
            &mut blind_rsa_signatures::DefaultRng,
            &input,
            &blind_rsa_options(),
        )
        .map_err(|_| token_error("blinding failed"))?;
    let request = TokenRequest {
        truncated_key_id: key.id[31],
        blinded_msg: blinding.blind_message.0.clone(),
    };
    Ok((
        request,
        PendingToken {
            nonce,
            challenge_digest: digest,
            key: key.clone(),
            blinding,
        },
    ))
}

impl PendingToken {
    /// Finalizes the token from the issuer's response (RFC 9578 §6.3); the signature is verified.
    pub fn finalize(self, response: &[u8]) -> Result<Token> {
        if response.len() != NK {
            return Err(token_error("token response length"));
        }
        let input = token_input(&self.nonce, &self.challenge_digest, &self.key.id);
        let sig = self
            .key
            .key
            .finalize(
                &BlindSignature(response.to_vec()),
                &self.blinding,
                &input,
                &blind_rsa_options(),
            )
            .map_err(|_| token_error("the issuer's response does not finalize to a valid token"))?;
        Ok(Token {
            nonce: self.nonce,
            challenge_digest: self.challenge_digest,
            token_key_id: self.key.id,
            authenticator: sig.0,
        })
    }
}

/// The TGT nonce for `secret`.
pub fn tgt_nonce(secret: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"arcane-aip/tgt/v1");
    h.update(secret);
    h.finalize().into()
}

/// The nonce of OTT number `index` derived from the TGT `secret`.
pub fn ott_nonce(secret: &[u8; 32], index: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"arcane-aip/ott/v1");
    h.update(secret);
    h.update(index.to_be_bytes());
    h.finalize().into()
}

/// What travels inside the sealed request for the node: the TGT, its secret, the OTT's index and
/// the OTT (`TOKEN_LEN ‖ 32 ‖ 4 ‖ TOKEN_LEN` bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenMaterial {
    /// The TGT.
    pub tgt: Token,
    /// The TGT's secret (zeroized on drop).
    pub secret: Zeroizing<[u8; 32]>,
    /// Which OTT of the TGT this request spends.
    pub index: u32,
    /// The OTT the gateway checked.
    pub ott: Token,
}

impl std::fmt::Debug for TokenMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenMaterial")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Encoded length of [`TokenMaterial`].
pub const TOKEN_MATERIAL_LEN: usize = TOKEN_LEN + 32 + 4 + TOKEN_LEN;

impl TokenMaterial {
    /// The encoding.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(self.tgt.encode());
        out.extend_from_slice(&self.secret[..]);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.ott.encode());
        out
    }

    /// Parses the encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != TOKEN_MATERIAL_LEN {
            return Err(token_error("token material length"));
        }
        let tgt = Token::decode(&bytes[..TOKEN_LEN])?;
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&bytes[TOKEN_LEN..TOKEN_LEN + 32]);
        let index =
            u32::from_be_bytes(bytes[TOKEN_LEN + 32..TOKEN_LEN + 36].try_into().expect("4"));
        let ott = Token::decode(&bytes[TOKEN_LEN + 36..])?;
        Ok(TokenMaterial {
            tgt,
            secret,
            index,
            ott,
        })
    }

    /// The node's check: both tokens verify under the logged TGT and OTT keys, the TGT's nonce
    /// derives from the secret, the OTT's nonce derives from the secret and index, the index is
    /// below `max_index`, and the OTT is the one the gateway checked (`gateway_ott_nonce`).
    pub fn verify(
        &self,
        tgt_key: &IssuerKey,
        ott_key: &IssuerKey,
        max_index: u32,
        gateway_ott_nonce: Option<&[u8; 32]>,
    ) -> Result<()> {
        self.tgt
            .verify(tgt_key, &TokenChallenge::for_issuer(TGT_ISSUER))?;
        self.ott
            .verify(ott_key, &TokenChallenge::for_issuer(OTT_ISSUER))?;
        if self.tgt.nonce != tgt_nonce(&self.secret) {
            return Err(token_error("the TGT does not derive from the secret"));
        }
        if self.index >= max_index {
            return Err(token_error("the OTT index is beyond the batch limit"));
        }
        if self.ott.nonce != ott_nonce(&self.secret, self.index) {
            return Err(token_error("the OTT does not derive from this TGT"));
        }
        if let Some(n) = gateway_ott_nonce
            && *n != self.ott.nonce
        {
            return Err(token_error(
                "the OTT differs from the one the gateway checked",
            ));
        }
        Ok(())
    }
}
