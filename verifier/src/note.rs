//! C2SP signed notes (`c2sp.org/signed-note`) with Ed25519 signatures.
//!
//! A note is UTF-8 text ending in a newline, a blank line, and one or more signature lines
//! `— <name> base64(key id ‖ signature)`. The key id of an Ed25519 note key is the first four bytes
//! of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key). Verifier keys are written
//! `<name>+<hex key id>+base64(0x01 ‖ public key)`; signer keys as
//! `PRIVATE+KEY+<name>+<hex key id>+base64(0x01 ‖ seed)`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// Largest note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines accepted in one note.
pub const MAX_SIGNATURES: usize = 100;
/// Longest key name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// Signature algorithm byte of an Ed25519 note signature.
pub const ALG_ED25519: u8 = 0x01;
/// Signature algorithm byte of a timestamped Ed25519 cosignature (`cosignature/v1`).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Checks a key name: non-empty, bounded, no `+`, no whitespace, no control characters.
pub fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(Error::MalformedKey("key name is empty or too long"));
    }
    if name
        .chars()
        .any(|c| c == '+' || c.is_whitespace() || c.is_control())
    {
        return Err(Error::MalformedKey(
            "key name contains '+', whitespace or a control character",
        ));
    }
    Ok(())
}

/// The key id of a key: SHA-256(name ‖ 0x0A ‖ algorithm ‖ public key)[..4], big-endian.
pub fn key_id(name: &str, algorithm: u8, public_key: &[u8]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', algorithm]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A public key that checks note signatures (algorithm 0x01) or cosignatures (0x04).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    algorithm: u8,
    key_id: u32,
    public_key: VerifyingKey,
}

impl VerifierKey {
    /// A key from its parts; the key id is derived.
    pub fn new(name: &str, algorithm: u8, public_key: VerifyingKey) -> Result<Self> {
        check_key_name(name)?;
        if algorithm != ALG_ED25519 && algorithm != ALG_COSIGNATURE_V1 {
            return Err(Error::MalformedKey("unsupported signature algorithm"));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            algorithm,
            key_id: key_id(name, algorithm, public_key.as_bytes()),
            public_key,
        })
    }

    /// Parses the vkey text form `<name>+<hex key id>+base64(algorithm ‖ public key)`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim_end_matches('\n');
        // Names never contain '+'; base64 may.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hex_id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::MalformedKey("expected <name>+<key id>+<base64 key>"));
        };
        let claimed_id = parse_key_id(hex_id)?;
        let raw = BASE64
            .decode(encoded)
            .map_err(|_| Error::MalformedKey("key is not valid base64"))?;
        let Some((&algorithm, public)) = raw.split_first() else {
            return Err(Error::MalformedKey("key is empty"));
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| Error::MalformedKey("Ed25519 public key must be 32 bytes"))?;
        let public_key = VerifyingKey::from_bytes(&public)
            .map_err(|_| Error::MalformedKey("not a valid Ed25519 public key"))?;
        let key = VerifierKey::new(name, algorithm, public_key)?;
        if key.key_id != claimed_id {
            return Err(Error::MalformedKey("key id does not match name and key"));
        }
        Ok(key)
    }

    /// The vkey text form.
    pub fn to_text(&self) -> String {
        let mut raw = vec![self.algorithm];
        raw.extend_from_slice(self.public_key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, BASE64.encode(raw))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The algorithm byte (0x01 note signature, 0x04 cosignature/v1).
    pub fn algorithm(&self) -> u8 {
        self.algorithm
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.public_key
    }

    /// Whether a signature line names this key.
    pub fn matches(&self, signature: &NoteSignature) -> bool {
        signature.name == self.name && signature.key_id == self.key_id
    }

    /// Verifies an Ed25519 signature over `context ‖ message`, for the project's own
    /// domain-separated signatures (log submissions, entries). Fails with
    /// [`Error::InvalidSignature`].
    pub fn verify_with_context(
        &self,
        context: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        let mut signed = Vec::with_capacity(context.len() + message.len());
        signed.extend_from_slice(context);
        signed.extend_from_slice(message);
        if self.verify_raw(&signed, signature) {
            Ok(())
        } else {
            Err(Error::InvalidSignature {
                name: self.name.clone(),
            })
        }
    }

    pub(crate) fn verify_raw(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.public_key.verify(message, &signature).is_ok()
    }
}

fn parse_key_id(hex_id: &str) -> Result<u32> {
    if hex_id.len() != 8 || !hex_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::MalformedKey("key id must be 8 hex digits"));
    }
    u32::from_str_radix(hex_id, 16).map_err(|_| Error::MalformedKey("key id must be 8 hex digits"))
}

/// An Ed25519 key that signs notes. The secret is zeroized when dropped.
pub struct NoteSigner {
    name: String,
    algorithm: u8,
    key_id: u32,
    signing_key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer from a 32-byte Ed25519 seed. `algorithm` is [`ALG_ED25519`] for note signatures or
    /// [`ALG_COSIGNATURE_V1`] for a witness.
    pub fn from_seed(name: &str, algorithm: u8, seed: &[u8; 32]) -> Result<Self> {
        let signing_key = SigningKey::from_bytes(seed);
        let verifier = VerifierKey::new(name, algorithm, signing_key.verifying_key())?;
        Ok(NoteSigner {
            name: name.to_owned(),
            algorithm,
            key_id: verifier.key_id,
            signing_key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex key id>+base64(algorithm ‖ seed)`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim_end_matches('\n');
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(Error::MalformedKey(
                "signer key must start with PRIVATE+KEY+",
            ))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hex_id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::MalformedKey(
                "expected PRIVATE+KEY+<name>+<id>+<key>",
            ));
        };
        let claimed_id = parse_key_id(hex_id)?;
        let raw = Zeroizing::new(
            BASE64
                .decode(encoded)
                .map_err(|_| Error::MalformedKey("key is not valid base64"))?,
        );
        let Some((&algorithm, seed)) = raw.split_first() else {
            return Err(Error::MalformedKey("key is empty"));
        };
        let seed: &[u8; 32] = seed
            .try_into()
            .map_err(|_| Error::MalformedKey("Ed25519 seed must be 32 bytes"))?;
        let signer = NoteSigner::from_seed(name, algorithm, seed)?;
        if signer.key_id != claimed_id {
            return Err(Error::MalformedKey("key id does not match name and key"));
        }
        Ok(signer)
    }

    /// The secret key text form. Handle with care: it is the key.
    pub fn to_secret_text(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(vec![self.algorithm]);
        raw.extend_from_slice(self.signing_key.as_bytes());
        Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            BASE64.encode(&*raw)
        ))
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            algorithm: self.algorithm,
            key_id: self.key_id,
            public_key: self.signing_key.verifying_key(),
        }
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Signs `context ‖ message`: the project's own domain-separated signatures. `context` must
    /// be a fixed string naming what is signed, so that no signature can be replayed as another.
    pub fn sign_with_context(&self, context: &[u8], message: &[u8]) -> [u8; 64] {
        let mut signed = Vec::with_capacity(context.len() + message.len());
        signed.extend_from_slice(context);
        signed.extend_from_slice(message);
        self.sign_raw(&signed)
    }

    /// Signs arbitrary bytes with the raw Ed25519 key.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.signing_key.sign(message).to_bytes()
    }

    /// Signs a note text (algorithm 0x01 keys), giving its signature line.
    pub fn sign_text(&self, text: &str) -> Result<NoteSignature> {
        if self.algorithm != ALG_ED25519 {
            return Err(Error::MalformedKey("not a note signing key"));
        }
        check_text(text)?;
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.sign_raw(text.as_bytes()));
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            bytes,
        })
    }

    /// Signs `text` and returns the whole note.
    pub fn sign_note(&self, text: &str) -> Result<Note> {
        let signature = self.sign_text(text)?;
        Ok(Note {
            text: text.to_owned(),
            signatures: vec![signature],
        })
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name on the line.
    pub name: String,
    /// The key id (first four decoded bytes).
    pub key_id: u32,
    /// All decoded bytes, key id included.
    pub bytes: Vec<u8>,
}

impl NoteSignature {
    /// The signature bytes after the key id.
    pub fn signature(&self) -> &[u8] {
        &self.bytes[4..]
    }

    fn to_line(&self) -> String {
        format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(&self.bytes)
        )
    }
}

/// A parsed, not yet verified, signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline.
    pub text: String,
    /// Signature lines in the order they appeared.
    pub signatures: Vec<NoteSignature>,
}

fn check_text(text: &str) -> Result<()> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(Error::MalformedNote(
            "text must be non-empty and end in a newline",
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::MalformedNote("text contains a control character"));
    }
    Ok(())
}

impl Note {
    /// Parses a signed note, applying the size and signature-count limits.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(Error::NoteTooLarge(bytes.len()));
        }
        let message =
            std::str::from_utf8(bytes).map_err(|_| Error::MalformedNote("not valid UTF-8"))?;
        let split = message
            .rfind("\n\n")
            .ok_or(Error::MalformedNote("no blank line before the signatures"))?;
        let text = &message[..split + 1];
        let block = &message[split + 2..];
        check_text(text)?;
        if block.is_empty() || !block.ends_with('\n') {
            return Err(Error::MalformedNote(
                "signature block must end in a newline",
            ));
        }
        let lines: Vec<&str> = block[..block.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(Error::TooManySignatures(lines.len()));
        }
        let signatures = lines
            .into_iter()
            .map(parse_signature_line)
            .collect::<Result<Vec<_>>>()?;
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note's wire form.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for signature in &self.signatures {
            out.push_str(&signature.to_line());
        }
        out
    }

    /// Adds a signature line (for example a witness cosignature).
    pub fn add_signature(&mut self, signature: NoteSignature) {
        self.signatures.push(signature);
    }

    /// Verifies the note against known Ed25519 note keys (algorithm 0x01).
    ///
    /// Signature lines by unknown keys are ignored. A line by a known key that does not verify, or
    /// two lines by one known key, reject the whole note. Returns the keys that signed; fails if
    /// none did.
    pub fn verify<'k>(&self, known: &'k [VerifierKey]) -> Result<Vec<&'k VerifierKey>> {
        let mut signed_by: Vec<&VerifierKey> = Vec::new();
        for signature in &self.signatures {
            let Some(key) = known
                .iter()
                .find(|k| k.algorithm == ALG_ED25519 && k.matches(signature))
            else {
                continue;
            };
            if signed_by.iter().any(|k| std::ptr::eq(*k, key)) {
                return Err(Error::DuplicateSignature {
                    name: key.name.clone(),
                });
            }
            if !key.verify_raw(self.text.as_bytes(), signature.signature()) {
                return Err(Error::InvalidSignature {
                    name: key.name.clone(),
                });
            }
            signed_by.push(key);
        }
        if signed_by.is_empty() {
            return Err(Error::NoKnownSignature);
        }
        Ok(signed_by)
    }
}

fn parse_signature_line(line: &str) -> Result<NoteSignature> {
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(Error::MalformedNote(
            "signature line must start with an em dash and a space",
        ))?;
    let (name, encoded) = rest.split_once(' ').ok_or(Error::MalformedNote(
        "signature line needs a name and a signature",
    ))?;
    check_key_name(name).map_err(|_| Error::MalformedNote("bad key name in signature line"))?;
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| Error::MalformedNote("signature is not valid base64"))?;
    if bytes.len() < 5 {
        return Err(Error::MalformedNote("signature too short"));
    }
    let key_id = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("example.com/log", ALG_ED25519, &[7u8; 32]).unwrap()
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let s = signer();
        let note = s.sign_note("hello\nworld\n").unwrap();
        let parsed = Note::parse(note.to_text().as_bytes()).unwrap();
        assert_eq!(parsed, note);
        let keys = [s.verifier()];
        assert_eq!(parsed.verify(&keys).unwrap().len(), 1);
    }

    #[test]
    fn secret_key_text_round_trips() {
        let s = signer();
        let again = NoteSigner::parse(&s.to_secret_text()).unwrap();
        assert_eq!(again.verifier(), s.verifier());
        assert!(!format!("{s:?}").contains(&*s.to_secret_text()));
    }

    #[test]
    fn unknown_keys_are_ignored_but_needed_one_is_required() {
        let s = signer();
        let other = NoteSigner::from_seed("other", ALG_ED25519, &[9u8; 32]).unwrap();
        let mut note = s.sign_note("text\n").unwrap();
        note.add_signature(other.sign_text("text\n").unwrap());
        assert!(note.verify(&[s.verifier()]).is_ok());
        assert_eq!(
            note.verify(&[NoteSigner::from_seed("x", 1, &[1; 32]).unwrap().verifier()]),
            Err(Error::NoKnownSignature)
        );
    }

    #[test]
    fn duplicate_signature_by_known_key_is_rejected() {
        let s = signer();
        let mut note = s.sign_note("text\n").unwrap();
        note.add_signature(s.sign_text("text\n").unwrap());
        assert!(matches!(
            note.verify(&[s.verifier()]),
            Err(Error::DuplicateSignature { .. })
        ));
    }

    #[test]
    fn malformed_notes_are_rejected() {
        for bad in [
            &b""[..],
            b"no signatures\n",
            b"text\n\n",
            b"text\n\nnot a signature\n",
            b"text\n\n\xe2\x80\x94 name AAAA\n",
            b"text\n\n\xe2\x80\x94 name !!!!!!!!\n",
            b"text\x01\n\n\xe2\x80\x94 name AAAAAAAA\n",
            b"\xff\n\n\xe2\x80\x94 name AAAAAAAA\n",
        ] {
            assert!(
                Note::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            "t\n\n{}",
            "\u{2014} n AAAAAAAA\n".repeat(MAX_SIGNATURES + 1)
        );
        assert_eq!(
            Note::parse(many.as_bytes()),
            Err(Error::TooManySignatures(MAX_SIGNATURES + 1))
        );
        let big = vec![b'a'; MAX_NOTE_BYTES + 1];
        assert_eq!(
            Note::parse(&big),
            Err(Error::NoteTooLarge(MAX_NOTE_BYTES + 1))
        );
    }
}
