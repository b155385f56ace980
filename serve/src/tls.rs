//! TLS for a server: its certificate chain and key from PEM files, as a rustls configuration
//! for TCP (HTTP/2 and HTTP/1.1 by ALPN) and for QUIC (HTTP/3).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What went wrong with a certificate or key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The PEM holds no certificate, or no private key.
    #[error("{0}")]
    Pem(String),
    /// rustls refused the chain or key.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A server's certificate chain and private key.
#[derive(Debug)]
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// The chain (leaf first) and key in PEM.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError::Pem("certificate chain: no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
        Ok(TlsIdentity { chain, key })
    }

    /// The chain and key from PEM files.
    pub fn from_pem_files(chain: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TlsError::Read {
                path: p.display().to_string(),
                reason: e.to_string(),
            })
        };
        let key_pem = zeroize::Zeroizing::new(read(key)?);
        TlsIdentity::from_pem(&read(chain)?, &key_pem)
    }

    /// A rustls server configuration offering `alpn`, TLS 1.3 only (QUIC requires it; every
    /// client of ours speaks it).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The acceptor for TCP: HTTP/2 or HTTP/1.1, as the client's ALPN says.
    pub fn tcp_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        Ok(tokio_rustls::TlsAcceptor::from(
            self.server_config(&[b"h2", b"http/1.1"])?,
        ))
    }
}
