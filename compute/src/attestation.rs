//! Attestation providers: the real Nitro Security Module (feature `nsm`) and a simulated one for
//! machines without Nitro.
//!
//! The simulated NSM issues documents in exactly AWS's format: an untagged COSE_Sign1 with the
//! protected header `{1: -35}` (ES384) and an empty unprotected header, a payload that is an
//! indefinite-length CBOR map with `module_id`, `digest` ("SHA384"), `timestamp` (ms), 32 PCRs of 48
//! bytes, the leaf `certificate`, the `cabundle` (root, regional, zonal, instance) and
//! `public_key`, `user_data`, `nonce` as bytes or null; P-384 certificates, the leaf valid for three
//! hours. Its root is generated locally: verifiers trust it only when given it explicitly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arcane_verifier::cbor::{Value, encode_indefinite_map};
use aws_nitro_enclaves_cose::CoseSign1;
use aws_nitro_enclaves_cose::crypto::{
    Hash as CoseHash, MessageDigest, SignatureAlgorithm, SigningPrivateKey, SigningPublicKey,
};
use aws_nitro_enclaves_cose::error::CoseError;
use aws_nitro_enclaves_cose::header_map::HeaderMap;
use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p384::pkcs8::DecodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P384_SHA384,
};
use sha2::{Digest, Sha384};

use crate::error::{ComputeError, Result};

/// Largest `user_data`, `nonce` (512) and `public_key` (1024) the NSM accepts.
pub const MAX_USER_DATA: usize = 512;
/// See [`MAX_USER_DATA`].
pub const MAX_NONCE: usize = 512;
/// See [`MAX_USER_DATA`].
pub const MAX_PUBLIC_KEY: usize = 1024;
/// Lifetime of a simulated leaf certificate, like AWS's (about three hours).
pub const LEAF_LIFETIME_SECS: u64 = 3 * 3600;

/// Something that produces attestation documents.
pub trait AttestationProvider: Send + Sync {
    /// A document binding `public_key`, `user_data` and `nonce` (each optional).
    fn attest(
        &self,
        public_key: Option<&[u8]>,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
    ) -> Result<Vec<u8>>;
}

fn check_sizes(
    public_key: Option<&[u8]>,
    user_data: Option<&[u8]>,
    nonce: Option<&[u8]>,
) -> Result<()> {
    for (what, value, max) in [
        ("public_key", public_key, MAX_PUBLIC_KEY),
        ("user_data", user_data, MAX_USER_DATA),
        ("nonce", nonce, MAX_NONCE),
    ] {
        if let Some(value) = value
            && value.len() > max
        {
            return Err(ComputeError::TooLarge {
                what,
                len: value.len(),
                max,
            });
        }
    }
    Ok(())
}

/// The measurements a build declares (what its release entry publishes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredMeasurements {
    /// PCR0.
    pub pcr0: [u8; 48],
    /// PCR1.
    pub pcr1: [u8; 48],
    /// PCR2.
    pub pcr2: [u8; 48],
    /// PCR8, for a signed image.
    pub pcr8: Option<[u8; 48]>,
}

/// SHA-384 for the COSE crate.
struct Sha384Hasher;

impl CoseHash for Sha384Hasher {
    fn hash(digest: MessageDigest, data: &[u8]) -> std::result::Result<Vec<u8>, CoseError> {
        match digest {
            MessageDigest::Sha384 => Ok(Sha384::digest(data).to_vec()),
            _ => Err(CoseError::UnsupportedError("only SHA-384".into())),
        }
    }
}

/// The simulated NSM's leaf key, for the COSE crate.
struct LeafSigningKey(p384::ecdsa::SigningKey);

impl SigningPublicKey for LeafSigningKey {
    fn get_parameters(
        &self,
    ) -> std::result::Result<(SignatureAlgorithm, MessageDigest), CoseError> {
        Ok((SignatureAlgorithm::ES384, MessageDigest::Sha384))
    }

    fn verify(&self, digest: &[u8], signature: &[u8]) -> std::result::Result<bool, CoseError> {
        let Ok(signature) = p384::ecdsa::Signature::from_slice(signature) else {
            return Ok(false);
        };
        Ok(self
            .0
            .verifying_key()
            .verify_prehash(digest, &signature)
            .is_ok())
    }
}

impl SigningPrivateKey for LeafSigningKey {
    fn sign(&self, digest: &[u8]) -> std::result::Result<Vec<u8>, CoseError> {
        let signature: p384::ecdsa::Signature = self
            .0
            .sign_prehash(digest)
            .map_err(|e| CoseError::SignatureError(Box::new(e)))?;
        Ok(signature.to_bytes().to_vec())
    }
}

fn certificate_error(e: impl std::fmt::Display) -> ComputeError {
    ComputeError::Certificate(e.to_string())
}

fn offset_time(unix: u64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix as i64).map_err(certificate_error)
}

fn ca_params(
    common_name: &str,
    organization: &str,
    not_before: u64,
    not_after: u64,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(certificate_error)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "US");
    name.push(DnType::OrganizationName, organization);
    name.push(DnType::OrganizationalUnitName, "AWS");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = offset_time(not_before)?;
    params.not_after = offset_time(not_after)?;
    Ok(params)
}

/// A simulated NSM's development root: the certificate and the key that signs the chains below.
struct SimulatedRoot {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
    organization: String,
    /// What [`SimulatedRoot::to_text`] writes: the names and validity the params are made from.
    common_name: String,
    not_before: u64,
    not_after: u64,
}

impl SimulatedRoot {
    fn generate(common_name: &str, organization: &str, now: u64) -> Result<SimulatedRoot> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(certificate_error)?;
        Self::from_parts(
            common_name,
            organization,
            now.saturating_sub(3600),
            now + 30 * 365 * 86_400,
            key,
            None,
        )
    }

    fn from_parts(
        common_name: &str,
        organization: &str,
        not_before: u64,
        not_after: u64,
        key: KeyPair,
        der: Option<Vec<u8>>,
    ) -> Result<SimulatedRoot> {
        let params = ca_params(common_name, organization, not_before, not_after)?;
        let der = match der {
            Some(der) => der,
            None => params
                .self_signed(&key)
                .map_err(certificate_error)?
                .der()
                .to_vec(),
        };
        Ok(SimulatedRoot {
            params,
            key,
            der,
            organization: organization.to_owned(),
            common_name: common_name.to_owned(),
            not_before,
            not_after,
        })
    }

    /// JSON: the names, validity, key (PKCS#8, hex) and certificate (DER, hex).
    fn to_text(&self) -> String {
        serde_json::json!({
            "common_name": self.common_name,
            "organization": self.organization,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "key_pkcs8": hex::encode(self.key.serialize_der()),
            "certificate": hex::encode(&self.der),
        })
        .to_string()
    }

    fn parse(text: &str) -> Result<SimulatedRoot> {
        let bad = |why: &str| ComputeError::Config(format!("the simulated root file: {why}"));
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
        let text_of = |k: &str| value[k].as_str().ok_or_else(|| bad(&format!("no {k}")));
        let number = |k: &str| value[k].as_u64().ok_or_else(|| bad(&format!("no {k}")));
        let bytes = |k: &str| -> Result<Vec<u8>> {
            hex::decode(text_of(k)?).map_err(|_| bad(&format!("{k} is not hex")))
        };
        let key = KeyPair::try_from(bytes("key_pkcs8")?.as_slice()).map_err(certificate_error)?;
        Self::from_parts(
            text_of("common_name")?,
            text_of("organization")?,
            number("not_before")?,
            number("not_after")?,
            key,
            Some(bytes("certificate")?),
        )
    }
}

/// A simulated Nitro Security Module with a locally generated P-384 chain.
pub struct SimulatedNsm {
    root: Arc<SimulatedRoot>,
    module_id: String,
    pcrs: BTreeMap<u8, [u8; 48]>,
    cabundle: Vec<Vec<u8>>,
    certificate: Vec<u8>,
    leaf_key: LeafSigningKey,
    leaf_not_after: u64,
}

impl std::fmt::Debug for SimulatedNsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedNsm")
            .field("module_id", &self.module_id)
            .field("leaf_not_after", &self.leaf_not_after)
            .finish_non_exhaustive()
    }
}

impl SimulatedNsm {
    /// A simulated NSM whose documents carry `measurements` (other PCRs zero), with a fresh
    /// development root, valid from `now` (seconds).
    pub fn new(measurements: &DeclaredMeasurements, now: u64) -> Result<Self> {
        Self::with_root_name(
            measurements,
            now,
            "arcane-aip development NSM root",
            "arcane-aip development",
        )
    }

    /// Like [`SimulatedNsm::new`], naming the root as given (tests use this to make a root that
    /// looks like AWS's and must still be refused).
    pub fn with_root_name(
        measurements: &DeclaredMeasurements,
        now: u64,
        root_common_name: &str,
        organization: &str,
    ) -> Result<Self> {
        let root = SimulatedRoot::generate(root_common_name, organization, now)?;
        Self::under(Arc::new(root), measurements, now)
    }

    /// A simulated NSM under the development root kept in `path`, which is created (0600) when
    /// missing: the members of one development ensemble, each in its own process, share a root
    /// this way, as real enclaves share AWS's.
    pub fn with_root_file(
        measurements: &DeclaredMeasurements,
        now: u64,
        path: &std::path::Path,
    ) -> Result<Self> {
        let root = match std::fs::read_to_string(path) {
            Ok(text) => SimulatedRoot::parse(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let root = SimulatedRoot::generate(
                    "arcane-aip development NSM root",
                    "arcane-aip development",
                    now,
                )?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let written = options.open(path).and_then(|mut file| {
                    std::io::Write::write_all(&mut file, root.to_text().as_bytes())
                });
                match written {
                    Ok(()) => root,
                    // Another member created it meanwhile: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        let text = std::fs::read_to_string(path).map_err(|e| {
                            ComputeError::Config(format!("{}: {e}", path.display()))
                        })?;
                        SimulatedRoot::parse(&text)?
                    }
                    Err(e) => {
                        return Err(ComputeError::Config(format!("{}: {e}", path.display())));
                    }
                }
            }
            Err(e) => return Err(ComputeError::Config(format!("{}: {e}", path.display()))),
        };
        Self::under(Arc::new(root), measurements, now)
    }

    /// Another simulated NSM under this one's root: another enclave, perhaps of another image
    /// (`measurements`), whose documents the same development root verifies.
    pub fn sibling(&self, measurements: &DeclaredMeasurements, now: u64) -> Result<Self> {
        Self::under(Arc::clone(&self.root), measurements, now)
    }

    fn under(
        root: Arc<SimulatedRoot>,
        measurements: &DeclaredMeasurements,
        now: u64,
    ) -> Result<Self> {
        let start = now.saturating_sub(3600);
        let organization = root.organization.as_str();
        let mut cabundle = vec![root.der.clone()];
        let root_key =
            KeyPair::try_from(root.key.serialize_der().as_slice()).map_err(certificate_error)?;
        let mut issuer = Issuer::new(root.params.clone(), root_key);
        for (name, lifetime) in [
            ("regional", 30 * 86_400),
            ("zonal", 7 * 86_400),
            ("instance", 86_400),
        ] {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(certificate_error)?;
            let params = ca_params(
                &format!("{name}.simulated-nitro-enclaves"),
                organization,
                start,
                now + lifetime,
            )?;
            let certificate = params.signed_by(&key, &issuer).map_err(certificate_error)?;
            cabundle.push(certificate.der().to_vec());
            issuer = Issuer::new(params, key);
        }
        let leaf_key_pair =
            KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(certificate_error)?;
        let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(certificate_error)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CountryName, "US");
        name.push(DnType::OrganizationName, organization);
        name.push(DnType::OrganizationalUnitName, "AWS");
        let module_id = format!(
            "i-simulated-enc{:016x}",
            u64::from_be_bytes(random_bytes::<8>()?)
        );
        name.push(DnType::CommonName, module_id.clone());
        leaf.distinguished_name = name;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.not_before = offset_time(now.saturating_sub(60))?;
        leaf.not_after = offset_time(now + LEAF_LIFETIME_SECS)?;
        let certificate = leaf
            .signed_by(&leaf_key_pair, &issuer)
            .map_err(certificate_error)?;
        let leaf_key = p384::ecdsa::SigningKey::from_pkcs8_der(&leaf_key_pair.serialize_der())
            .map_err(certificate_error)?;
        let mut pcrs: BTreeMap<u8, [u8; 48]> = (0..32u8).map(|i| (i, [0u8; 48])).collect();
        pcrs.insert(0, measurements.pcr0);
        pcrs.insert(1, measurements.pcr1);
        pcrs.insert(2, measurements.pcr2);
        if let Some(pcr8) = measurements.pcr8 {
            pcrs.insert(8, pcr8);
        }
        Ok(SimulatedNsm {
            root,
            module_id,
            pcrs,
            cabundle,
            certificate: certificate.der().to_vec(),
            leaf_key: LeafSigningKey(leaf_key),
            leaf_not_after: now + LEAF_LIFETIME_SECS,
        })
    }

    /// Writes this NSM's development root (its key included; 0600) to `path` for
    /// [`SimulatedNsm::with_root_file`]: other processes' simulated NSMs then chain to it.
    pub fn write_root_file(&self, path: &std::path::Path) -> Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(path)
            .and_then(|mut file| {
                std::io::Write::write_all(&mut file, self.root.to_text().as_bytes())
            })
            .map_err(|e| ComputeError::Config(format!("{}: {e}", path.display())))
    }

    /// The development root certificate (DER): what a verifier must be given explicitly.
    pub fn root_der(&self) -> &[u8] {
        &self.root.der
    }

    /// When the leaf certificate expires (seconds); re-create the NSM well before.
    pub fn leaf_not_after(&self) -> u64 {
        self.leaf_not_after
    }

    /// A document dated `timestamp_ms`.
    pub fn attest_at(
        &self,
        public_key: Option<&[u8]>,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        timestamp_ms: u64,
    ) -> Result<Vec<u8>> {
        check_sizes(public_key, user_data, nonce)?;
        let text = |s: &str| Value::Text(s.to_owned());
        let optional = |v: Option<&[u8]>| v.map_or(Value::Simple(22), |b| Value::Bytes(b.to_vec()));
        let payload = encode_indefinite_map(&[
            (text("module_id"), text(&self.module_id)),
            (text("digest"), text("SHA384")),
            (text("timestamp"), Value::Unsigned(timestamp_ms)),
            (
                text("pcrs"),
                Value::Map(
                    self.pcrs
                        .iter()
                        .map(|(i, v)| (Value::Unsigned(u64::from(*i)), Value::Bytes(v.to_vec())))
                        .collect(),
                ),
            ),
            (text("certificate"), Value::Bytes(self.certificate.clone())),
            (
                text("cabundle"),
                Value::Array(
                    self.cabundle
                        .iter()
                        .map(|c| Value::Bytes(c.clone()))
                        .collect(),
                ),
            ),
            (text("public_key"), optional(public_key)),
            (text("user_data"), optional(user_data)),
            (text("nonce"), optional(nonce)),
        ]);
        let cose = CoseSign1::new::<Sha384Hasher>(&payload, &HeaderMap::new(), &self.leaf_key)
            .map_err(|e| ComputeError::Attestation(e.to_string()))?;
        cose.as_bytes(false)
            .map_err(|e| ComputeError::Attestation(e.to_string()))
    }
}

impl AttestationProvider for SimulatedNsm {
    fn attest(
        &self,
        public_key: Option<&[u8]>,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if now_ms / 1000 >= self.leaf_not_after {
            return Err(ComputeError::Attestation(
                "simulated leaf certificate expired; re-create the NSM".into(),
            ));
        }
        self.attest_at(public_key, user_data, nonce, now_ms)
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| ComputeError::Attestation(format!("no randomness: {e}")))?;
    Ok(bytes)
}

/// The real Nitro Security Module, through `/dev/nsm`.
#[cfg(feature = "nsm")]
pub struct Nsm {
    fd: i32,
}

#[cfg(feature = "nsm")]
impl Nsm {
    /// Opens `/dev/nsm`.
    pub fn open() -> Result<Self> {
        let fd = aws_nitro_enclaves_nsm_api::driver::nsm_init();
        if fd < 0 {
            return Err(ComputeError::Attestation(
                "cannot open /dev/nsm (not inside a Nitro Enclave?)".into(),
            ));
        }
        Ok(Nsm { fd })
    }
}

#[cfg(feature = "nsm")]
impl Drop for Nsm {
    fn drop(&mut self) {
        aws_nitro_enclaves_nsm_api::driver::nsm_exit(self.fd);
    }
}

#[cfg(feature = "nsm")]
impl AttestationProvider for Nsm {
    fn attest(
        &self,
        public_key: Option<&[u8]>,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        use aws_nitro_enclaves_nsm_api::api::{Request, Response};
        check_sizes(public_key, user_data, nonce)?;
        let bytes = |v: Option<&[u8]>| v.map(|b| serde_bytes::ByteBuf::from(b.to_vec()));
        let request = Request::Attestation {
            user_data: bytes(user_data),
            nonce: bytes(nonce),
            public_key: bytes(public_key),
        };
        match aws_nitro_enclaves_nsm_api::driver::nsm_process_request(self.fd, request) {
            Response::Attestation { document } => Ok(document),
            Response::Error(code) => Err(ComputeError::Attestation(format!("NSM error {code:?}"))),
            other => Err(ComputeError::Attestation(format!(
                "unexpected NSM response {other:?}"
            ))),
        }
    }
}
