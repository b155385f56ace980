//! PEM (RFC 7468) text: the first block with a given label, decoded; and encoding.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The DER bytes of the first `-----BEGIN <label>-----` block in `text`, if it decodes.
pub fn decode(text: &str, label: &str) -> Option<Vec<u8>> {
    let body = text
        .split(&format!("-----BEGIN {label}-----"))
        .nth(1)?
        .split(&format!("-----END {label}-----"))
        .next()?;
    let joined: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    BASE64.decode(joined).ok()
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
            super::decode(&format!("junk\n{text}more"), "CERTIFICATE"),
            Some(der)
        );
        assert_eq!(super::decode(&text, "PUBLIC KEY"), None);
        assert_eq!(
            super::decode("-----BEGIN X-----\n!!\n-----END X-----\n", "X"),
            None
        );
    }
}
