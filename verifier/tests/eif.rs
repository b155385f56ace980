//! PCRs of small EIFs that the test builds itself, against an independent computation here.

use arcane_verifier::eif::{EIF_HEADER_LEN, measure};
use sha2::{Digest, Sha384};

fn crc32(bytes: &[u8]) -> u32 {
    // Bitwise CRC-32 (reflected 0xEDB88320), written independently of the crate's table version.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// serde's CBOR for `Vec<u8>`: an array of unsigned integers.
fn cbor_byte_array(bytes: &[u8]) -> Vec<u8> {
    let mut out = match bytes.len() {
        n if n < 24 => vec![0x80 | n as u8],
        n if n < 256 => vec![0x98, n as u8],
        n => vec![0x99, (n >> 8) as u8, n as u8],
    };
    for &b in bytes {
        if b < 24 {
            out.push(b);
        } else {
            out.extend_from_slice(&[0x18, b]);
        }
    }
    out
}

fn cbor_text(s: &str) -> Vec<u8> {
    let mut out = vec![0x60 | s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

fn signature_section(cert_der: &[u8]) -> Vec<u8> {
    let pem = arcane_verifier::pem::encode(cert_der, "CERTIFICATE");
    let mut out = vec![0x81, 0xa2];
    out.extend(cbor_text("signing_certificate"));
    out.extend(cbor_byte_array(pem.as_bytes()));
    out.extend(cbor_text("signature"));
    out.extend(cbor_byte_array(&[0xd2, 0x84, 0x44, 0xa1]));
    out
}

/// Builds with the library, then checks the header CRC independently.
fn build_eif(sections: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let borrowed: Vec<(u16, &[u8])> = sections.iter().map(|(k, d)| (*k, d.as_slice())).collect();
    let eif = arcane_verifier::eif::build(&borrowed).unwrap();
    let mut without_crc = eif[..EIF_HEADER_LEN - 4].to_vec();
    without_crc.extend_from_slice(&eif[EIF_HEADER_LEN..]);
    let stored = u32::from_be_bytes(eif[EIF_HEADER_LEN - 4..EIF_HEADER_LEN].try_into().unwrap());
    assert_eq!(stored, crc32(&without_crc));
    // The sections follow the header as (type, flags, size, data), in order.
    let mut at = EIF_HEADER_LEN;
    for (kind, data) in sections {
        assert_eq!(u16::from_be_bytes([eif[at], eif[at + 1]]), *kind);
        assert_eq!(
            u64::from_be_bytes(eif[at + 4..at + 12].try_into().unwrap()),
            data.len() as u64
        );
        assert_eq!(&eif[at + 12..at + 12 + data.len()], &data[..]);
        at += 12 + data.len();
    }
    assert_eq!(at, eif.len());
    eif
}

fn extend(parts: &[&[u8]]) -> [u8; 48] {
    let mut inner = Sha384::new();
    parts.iter().for_each(|p| inner.update(p));
    let mut outer = Sha384::new();
    outer.update([0u8; 48]);
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[test]
fn pcrs_of_an_unsigned_and_a_signed_eif() {
    let kernel = vec![0x4b; 70_000];
    let cmdline = b"console=ttyS0 reboot=k panic=30".to_vec();
    let init = vec![0x49; 3000];
    let app = vec![0x41; 100_000];
    let app2 = b"second application ramdisk".to_vec();
    let metadata = br#"{"ImageName":"test"}"#.to_vec();
    let eif = build_eif(&[
        (1, kernel.clone()),
        (2, cmdline.clone()),
        (5, metadata.clone()),
        (3, init.clone()),
        (3, app.clone()),
        (3, app2.clone()),
    ]);
    let m = measure(&eif[..]).unwrap();
    assert!(m.crc_ok);
    assert_eq!(m.pcr0, extend(&[&kernel, &cmdline, &init, &app, &app2]));
    assert_eq!(m.pcr1, extend(&[&kernel, &cmdline, &init]));
    assert_eq!(m.pcr2, extend(&[&app, &app2]));
    assert_eq!(m.pcr8, None);
    assert_eq!(m.file_sha384.to_vec(), Sha384::digest(&eif).to_vec());

    let cert_der = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/entries/rsa2048.spki.der"),
    )
    .unwrap();
    let signed = build_eif(&[
        (1, kernel.clone()),
        (2, cmdline.clone()),
        (3, init.clone()),
        (3, app.clone()),
        (4, signature_section(&cert_der)),
    ]);
    let m = measure(&signed[..]).unwrap();
    assert!(m.crc_ok);
    assert_eq!(m.pcr0, extend(&[&kernel, &cmdline, &init, &app]));
    assert_eq!(m.pcr8, Some(extend(&[&cert_der])));

    // A corrupted byte in a section changes the CRC verdict and the PCRs.
    let mut corrupt = eif.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let c = measure(&corrupt[..]).unwrap();
    assert!(!c.crc_ok);
    assert_ne!(c.pcr2, extend(&[&app, &app2]));
    // Truncation is an error.
    assert!(measure(&eif[..eif.len() - 1]).is_err());
}
