//! HTTP/3 to the relays that offer it (`http3 = true` in the trust file): QUIC with rustls, the
//! system's roots and the trust file's `tls_roots`, one connection per relay, reused.
//!
//! A relay whose QUIC connection cannot be made (UDP blocked, no answer within
//! [`CONNECT_TIMEOUT`], a handshake refused) is not tried over HTTP/3 again for
//! [`RETRY_AFTER`]: its requests go over HTTP/2 (or HTTP/1.1) meanwhile. A request falls back
//! only while nothing of it can have reached the relay — never once its body was sent, since its
//! tokens may then have been spent.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes};
use futures::Stream;

/// Longest wait for a QUIC connection (handshake included) before falling back.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a relay that could not be reached over HTTP/3 is asked over TCP instead.
pub const RETRY_AFTER: Duration = Duration::from_secs(300);
/// Largest header section accepted from a relay.
const MAX_FIELD_SECTION: u64 = 64 * 1024;

/// An answer's body as it arrives.
pub type Body = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Why an HTTP/3 request did not get an answer.
#[derive(Debug)]
pub enum Http3Failure {
    /// Nothing of the request can have reached the relay: ask it over TCP instead.
    FallBack(String),
    /// The request was (perhaps partly) sent: it must not be sent again.
    Broken(String),
}

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

struct Connection {
    quic: quinn::Connection,
    send: SendRequest,
    /// Kept for the connection's life: its socket.
    _endpoint: quinn::Endpoint,
}

/// The client's HTTP/3 connections.
pub struct Http3 {
    /// The QUIC client configuration, or why there is none (no usable roots on this system):
    /// then every request goes over TCP.
    config: Result<quinn::ClientConfig, String>,
    connections: tokio::sync::Mutex<HashMap<String, Connection>>,
    failed: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Http3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http3").finish_non_exhaustive()
    }
}

impl Http3 {
    /// Trusting the system's roots and the PEM certificates of `extra_roots_pem`. Refused only
    /// for unreadable `extra_roots_pem`; a system whose roots cannot be loaded gets a client
    /// that always falls back to TCP.
    pub fn new(extra_roots_pem: Option<&[u8]>) -> Result<Http3, String> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;
        let extra = match extra_roots_pem {
            None => Vec::new(),
            Some(pem) => CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("tls_roots: {e}"))?,
        };
        Ok(Http3 {
            config: quic_config(extra),
            connections: tokio::sync::Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `url`'s relay is to be asked over HTTP/3 now (it did not fail lately).
    pub fn worth_trying(&self, url: &str) -> bool {
        let Ok(authority) = authority_of(url) else {
            return false;
        };
        if self.config.is_err() {
            return false;
        }
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        match failed.get(&authority) {
            Some(at) if at.elapsed() < RETRY_AFTER => false,
            Some(_) => {
                failed.remove(&authority);
                true
            }
            None => true,
        }
    }

    fn mark_failed(&self, authority: &str) {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(authority.to_owned(), Instant::now());
    }

    /// `POST url` with `headers` and `body`: the answer's status and body as it arrives.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(u16, Body), Http3Failure> {
        let authority = authority_of(url).map_err(Http3Failure::FallBack)?;
        let mut request = http::Request::post(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(())
            .map_err(|e| Http3Failure::FallBack(e.to_string()))?;
        // A pooled connection the relay has since closed is replaced once.
        let mut stream = None;
        for _ in 0..2 {
            let (mut send, pooled) = match self.connection(&authority).await {
                Ok(c) => c,
                Err(e) => {
                    self.mark_failed(&authority);
                    return Err(Http3Failure::FallBack(e));
                }
            };
            match send.send_request(request.clone()).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => {
                    self.connections.lock().await.remove(&authority);
                    if !pooled {
                        self.mark_failed(&authority);
                        return Err(Http3Failure::FallBack(e.to_string()));
                    }
                }
            }
        }
        let mut stream = stream.ok_or_else(|| Http3Failure::FallBack("no stream".into()))?;
        let broken = |e: h3::error::StreamError| Http3Failure::Broken(e.to_string());
        stream.send_data(Bytes::from(body)).await.map_err(broken)?;
        stream.finish().await.map_err(broken)?;
        let head = stream.recv_response().await.map_err(broken)?;
        let body = futures::stream::unfold(Some(stream), |stream| async move {
            let mut stream = stream?;
            match stream.recv_data().await {
                Ok(Some(mut data)) => {
                    Some((Ok(data.copy_to_bytes(data.remaining())), Some(stream)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(io::Error::other(e)), None)),
            }
        });
        Ok((head.status().as_u16(), Box::pin(body)))
    }

    /// A request sender on a live connection to `authority`, and whether it was pooled.
    async fn connection(&self, authority: &str) -> Result<(SendRequest, bool), String> {
        let mut connections = self.connections.lock().await;
        if let Some(c) = connections.get(authority) {
            if c.quic.close_reason().is_none() {
                return Ok((c.send.clone(), true));
            }
            connections.remove(authority);
        }
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(authority))
            .await
            .map_err(|_| {
                format!("no QUIC connection to {authority} within {CONNECT_TIMEOUT:?}")
            })??;
        let send = connection.send.clone();
        connections.insert(authority.to_owned(), connection);
        Ok((send, false))
    }

    async fn connect(&self, authority: &str) -> Result<Connection, String> {
        let (host, _) = split_authority(authority);
        let address = tokio::net::lookup_host(authority)
            .await
            .map_err(|e| format!("{authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority}: no address"))?;
        let local: std::net::SocketAddr = if address.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let config = self.config.clone()?;
        let mut endpoint = quinn::Endpoint::client(local).map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(config);
        let quic = endpoint
            .connect(address, host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| format!("QUIC to {authority}: {e}"))?;
        let mut builder = h3::client::builder();
        builder.max_field_section_size(MAX_FIELD_SECTION);
        let (mut driver, send) = builder
            .build::<_, _, Bytes>(h3_quinn::Connection::new(quic.clone()))
            .await
            .map_err(|e| format!("HTTP/3 to {authority}: {e}"))?;
        tokio::spawn(async move {
            let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Connection {
            quic,
            send,
            _endpoint: endpoint,
        })
    }
}

/// The QUIC client configuration: TLS 1.3, ALPN `h3`, the platform's verifier (the system's
/// roots and `extra`, as reqwest's).
fn quic_config(
    extra: Vec<rustls_pki_types::CertificateDer<'static>>,
) -> Result<quinn::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, Arc::clone(&provider))
            .map_err(|e| format!("TLS roots: {e}"))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// `host:port` of an `https://` URL (port 443 when it names none).
fn authority_of(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{url}: HTTP/3 needs an https:// URL"));
    }
    let authority = uri.authority().ok_or_else(|| format!("{url}: no host"))?;
    Ok(format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(443)
    ))
}

/// The host and port of `host:port` (`[v6]:port` included).
fn split_authority(authority: &str) -> (&str, &str) {
    authority.rsplit_once(':').unwrap_or((authority, "443"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_name_the_port_and_refuse_plain_http() {
        assert_eq!(
            authority_of("https://relay.example/r").unwrap(),
            "relay.example:443"
        );
        assert_eq!(
            authority_of("https://127.0.0.1:8443/.well-known/ohttp-gateway").unwrap(),
            "127.0.0.1:8443"
        );
        assert_eq!(authority_of("https://[::1]:9/x").unwrap(), "[::1]:9");
        assert!(authority_of("http://relay.example/r").is_err());
        assert_eq!(split_authority("[::1]:9"), ("[::1]", "9"));
    }

    #[tokio::test]
    async fn a_relay_that_does_not_answer_over_quic_falls_back_and_is_not_tried_again_at_once() {
        // A UDP port nobody answers on.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://127.0.0.1:{}/.well-known/ohttp-gateway",
            silent.local_addr().unwrap().port()
        );
        let h3 = Http3::new(None).unwrap();
        assert!(h3.worth_trying(&url));
        let e = h3.post(&url, &[], b"x".to_vec()).await.err().unwrap();
        assert!(matches!(e, Http3Failure::FallBack(_)), "{e:?}");
        assert!(
            !h3.worth_trying(&url),
            "a failed relay waits {RETRY_AFTER:?}"
        );
    }
}
