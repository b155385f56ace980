//! Measurements of a Nitro Enclave Image File (EIF), computed the way `nitro-cli describe-eif`
//! and the `aws-nitro-enclaves-image-format` crate compute them.
//!
//! An EIF is a 548-byte header (magic `.eif`, version, flags, default memory and CPUs, section
//! count, 32 section offsets and sizes, CRC-32 of everything else) followed by sections, each a
//! 12-byte header (type, flags, size) and its data. The measurements are SHA-384 PCR extensions
//! from zero, `SHA-384(0^48 ‖ SHA-384(measured bytes))`, of:
//! - PCR0: kernel, command line and every ramdisk (the whole image);
//! - PCR1: kernel, command line and the first ramdisk (the bootstrap);
//! - PCR2: every ramdisk after the first (the application);
//! - PCR8: the DER signing certificate, when the image is signed.

use std::io::Read;

use sha2::{Digest, Sha384};

use crate::{Error, Result, cbor};

/// The EIF magic.
pub const EIF_MAGIC: [u8; 4] = *b".eif";
/// Header length in bytes.
pub const EIF_HEADER_LEN: usize = 4 + 2 + 2 + 8 + 8 + 2 + 2 + 32 * 8 + 32 * 8 + 4 + 4;
const SECTION_HEADER_LEN: usize = 12;
/// Section type codes.
pub const SECTION_KERNEL: u16 = 1;
/// Kernel command line.
pub const SECTION_CMDLINE: u16 = 2;
/// A ramdisk.
pub const SECTION_RAMDISK: u16 = 3;
/// The signature section (CBOR).
pub const SECTION_SIGNATURE: u16 = 4;
/// Metadata (JSON), not measured.
pub const SECTION_METADATA: u16 = 5;

/// What an EIF measures to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EifMeasurements {
    /// PCR0.
    pub pcr0: [u8; 48],
    /// PCR1.
    pub pcr1: [u8; 48],
    /// PCR2.
    pub pcr2: [u8; 48],
    /// PCR8, for a signed image.
    pub pcr8: Option<[u8; 48]>,
    /// SHA-384 of the whole file.
    pub file_sha384: [u8; 48],
    /// Whether the header's CRC-32 matches the file.
    pub crc_ok: bool,
}

/// PCR extension from zero: SHA-384(0^48 ‖ digest).
pub fn pcr_extend_from_zero(digest: &[u8]) -> [u8; 48] {
    let mut hasher = Sha384::new();
    hasher.update([0u8; 48]);
    hasher.update(digest);
    hasher.finalize().into()
}

/// Reads an EIF and computes its measurements. The CRC is checked, and reported in `crc_ok`;
/// malformed structure is an error.
pub fn measure(mut input: impl Read) -> Result<EifMeasurements> {
    let mut file_hash = Sha384::new();
    let mut crc = Crc32::new();
    let mut header = [0u8; EIF_HEADER_LEN];
    input
        .read_exact(&mut header)
        .map_err(|e| Error::MalformedEif(format!("reading the header: {e}")))?;
    file_hash.update(header);
    crc.update(&header[..EIF_HEADER_LEN - 4]);
    if header[..4] != EIF_MAGIC {
        return Err(Error::MalformedEif("not an EIF (bad magic)".into()));
    }
    let stored_crc = u32::from_be_bytes(header[EIF_HEADER_LEN - 4..].try_into().expect("4 bytes"));

    let (mut image, mut bootstrap, mut app, mut cert) =
        (Sha384::new(), Sha384::new(), Sha384::new(), Sha384::new());
    let mut ramdisks = 0usize;
    let mut signed = false;
    loop {
        let mut section_header = [0u8; SECTION_HEADER_LEN];
        match read_full(&mut input, &mut section_header)? {
            0 => break,
            SECTION_HEADER_LEN => {}
            _ => return Err(Error::MalformedEif("truncated section header".into())),
        }
        file_hash.update(section_header);
        crc.update(&section_header);
        let kind = u16::from_be_bytes([section_header[0], section_header[1]]);
        let size = u64::from_be_bytes(section_header[4..].try_into().expect("8 bytes"));
        let keep = kind == SECTION_SIGNATURE;
        let mut kept = Vec::new();
        let mut remaining = size;
        let mut buffer = vec![0u8; 1 << 16];
        while remaining > 0 {
            let n = remaining.min(buffer.len() as u64) as usize;
            input
                .read_exact(&mut buffer[..n])
                .map_err(|e| Error::MalformedEif(format!("reading section data: {e}")))?;
            let chunk = &buffer[..n];
            file_hash.update(chunk);
            crc.update(chunk);
            match kind {
                SECTION_KERNEL | SECTION_CMDLINE => {
                    image.update(chunk);
                    bootstrap.update(chunk);
                }
                SECTION_RAMDISK => {
                    image.update(chunk);
                    if ramdisks == 0 {
                        bootstrap.update(chunk);
                    } else {
                        app.update(chunk);
                    }
                }
                _ => {}
            }
            if keep {
                if kept.len() + n > 1 << 20 {
                    return Err(Error::MalformedEif("signature section too large".into()));
                }
                kept.extend_from_slice(chunk);
            }
            remaining -= n as u64;
        }
        match kind {
            SECTION_KERNEL | SECTION_CMDLINE | SECTION_METADATA => {}
            SECTION_RAMDISK => ramdisks += 1,
            SECTION_SIGNATURE => {
                cert.update(signing_certificate_der(&kept)?);
                signed = true;
            }
            other => return Err(Error::MalformedEif(format!("unknown section type {other}"))),
        }
    }
    Ok(EifMeasurements {
        pcr0: pcr_extend_from_zero(&image.finalize()),
        pcr1: pcr_extend_from_zero(&bootstrap.finalize()),
        pcr2: pcr_extend_from_zero(&app.finalize()),
        pcr8: signed.then(|| pcr_extend_from_zero(&cert.finalize())),
        file_sha384: file_hash.finalize().into(),
        crc_ok: crc.finish() == stored_crc,
    })
}

/// Writes an EIF (format version 4) holding `sections` in order, as (type, data), with a correct
/// header CRC. For tests and development images; real images come from `nitro-cli build-enclave`.
pub fn build(sections: &[(u16, &[u8])]) -> Result<Vec<u8>> {
    if sections.len() > 32 {
        return Err(Error::MalformedEif("at most 32 sections".into()));
    }
    let mut offsets = [0u64; 32];
    let mut sizes = [0u64; 32];
    let mut offset = EIF_HEADER_LEN as u64;
    let mut body = Vec::new();
    for (i, (kind, data)) in sections.iter().enumerate() {
        offsets[i] = offset;
        sizes[i] = data.len() as u64;
        offset += (SECTION_HEADER_LEN + data.len()) as u64;
        body.extend_from_slice(&kind.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&(data.len() as u64).to_be_bytes());
        body.extend_from_slice(data);
    }
    let mut out = Vec::with_capacity(EIF_HEADER_LEN + body.len());
    out.extend_from_slice(&EIF_MAGIC);
    out.extend_from_slice(&4u16.to_be_bytes()); // version
    out.extend_from_slice(&0u16.to_be_bytes()); // flags
    out.extend_from_slice(&(512u64 << 20).to_be_bytes()); // default memory
    out.extend_from_slice(&2u64.to_be_bytes()); // default CPUs
    out.extend_from_slice(&0u16.to_be_bytes()); // reserved
    out.extend_from_slice(&(sections.len() as u16).to_be_bytes());
    offsets
        .iter()
        .for_each(|o| out.extend_from_slice(&o.to_be_bytes()));
    sizes
        .iter()
        .for_each(|s| out.extend_from_slice(&s.to_be_bytes()));
    out.extend_from_slice(&0u32.to_be_bytes()); // unused
    let mut crc = Crc32::new();
    crc.update(&out);
    crc.update(&body);
    out.extend_from_slice(&crc.finish().to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn read_full(input: &mut impl Read, buffer: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::MalformedEif(format!("reading: {e}"))),
        }
    }
    Ok(filled)
}

/// The DER certificate of the first signature in a signature section (a CBOR array of maps with
/// `signing_certificate` (PEM) and `signature`).
fn signing_certificate_der(section: &[u8]) -> Result<Vec<u8>> {
    let value = cbor::decode(section)?;
    let first = match &value {
        cbor::Value::Array(items) if !items.is_empty() => &items[0],
        _ => {
            return Err(Error::MalformedEif(
                "signature section is not a non-empty array".into(),
            ));
        }
    };
    let pem = first
        .get("signing_certificate")
        .and_then(cbor::Value::as_bytes)
        .ok_or_else(|| Error::MalformedEif("signature without a signing certificate".into()))?;
    let pem = std::str::from_utf8(&pem)
        .map_err(|_| Error::MalformedEif("certificate PEM is not text".into()))?;
    crate::pem::decode_certificate(pem)
        .ok_or_else(|| Error::MalformedEif("no valid PEM certificate".into()))
}

/// CRC-32 (ISO-HDLC, the common "crc32"), as the EIF header uses.
struct Crc32 {
    table: [u32; 256],
    value: u32,
}

impl Crc32 {
    fn new() -> Self {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        Crc32 {
            table,
            value: 0xffff_ffff,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.value =
                self.table[((self.value ^ u32::from(*b)) & 0xff) as usize] ^ (self.value >> 8);
        }
    }

    fn finish(&self) -> u32 {
        self.value ^ 0xffff_ffff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        let mut crc = Crc32::new();
        crc.update(b"123456789");
        assert_eq!(crc.finish(), 0xcbf4_3926);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(measure(&b"short"[..]).is_err());
        assert!(measure(&[0u8; EIF_HEADER_LEN][..]).is_err());
        let mut header = vec![0u8; EIF_HEADER_LEN];
        header[..4].copy_from_slice(&EIF_MAGIC);
        header.extend_from_slice(&[0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert!(measure(&header[..]).is_err(), "unknown section type");
    }
}
