//! PEM (RFC 7468) text: certificates and public keys read by `rustls-pki-types`' PEM decoder;
//! and writing a block.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};

/// The DER bytes of the first certificate (`-----BEGIN CERTIFICATE-----`) in `text`, decoded
/// by `rustls-pki-types`.
pub fn decode_certificate(text: &str) -> Option<Vec<u8>> {
    CertificateDer::from_pem_slice(text.as_bytes())
        .ok()
        .map(|c| c.to_vec())
}

/// The DER bytes of the first SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`) in `text`.
pub fn decode_public_key(text: &str) -> Option<Vec<u8>> {
    SubjectPublicKeyInfoDer::from_pem_slice(text.as_bytes())
        .ok()
        .map(|k| k.to_vec())
}

/// `der` as a PEM block with `label`, 64 characters a line.
pub fn encode(der: &[u8], label: &str) -> String {
    let b64 = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_garbage() {
        let der = vec![7u8; 100];
        let text = super::encode(&der, "CERTIFICATE");
        assert_eq!(
            super::decode_certificate(&format!("junk\n{text}more")),
            Some(der.clone())
        );
        assert_eq!(super::decode_public_key(&text), None);
        // A public key block after another block is found.
        let key = super::encode(&der, "PUBLIC KEY");
        assert_eq!(super::decode_public_key(&format!("{text}{key}")), Some(der));
        assert_eq!(
            super::decode_certificate(
                "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"
            ),
            None
        );
    }
}
