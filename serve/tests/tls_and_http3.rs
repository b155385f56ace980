//! TLS over TCP and HTTP/3 over QUIC, over 127.0.0.1 with a test CA: the same router answers
//! over both, HTTPS negotiates HTTP/2 by ALPN, an HTTP/3 answer streams, and the per-peer
//! connection limit holds for QUIC connections too.

use std::sync::Arc;
use std::time::Duration;

use arcane_serve::ServeLimits;
use arcane_serve::tls::TlsIdentity;
use axum::Router;
use axum::routing::{get, post};
use bytes::{Buf as _, Bytes};

/// A CA's PEM and a certificate it issued for 127.0.0.1.
fn test_ca() -> (String, TlsIdentity) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let identity =
        TlsIdentity::from_pem(leaf.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    (ca_cert.pem(), identity)
}

fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .route(
            "/echo",
            post(|body: Bytes| async move {
                // Streamed back in three pieces.
                let pieces = vec![
                    Ok::<_, std::io::Error>(body.slice(..1)),
                    Ok(body.slice(1..2)),
                    Ok(body.slice(2..)),
                ];
                axum::body::Body::from_stream(futures::stream::iter(pieces))
            }),
        )
}

#[tokio::test]
async fn https_is_served_over_http2_by_alpn() {
    let (ca, identity) = test_ca();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(arcane_serve::serve_tls(
        listener,
        Some(identity.tcp_acceptor().unwrap()),
        router(),
        ServeLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let answer = client
        .get(format!("https://{addr}/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert_eq!(answer.text().await.unwrap(), "hello\n");
    // Plain HTTP on the TLS port gets no answer.
    assert!(
        reqwest::get(format!("http://{addr}/hello")).await.is_err(),
        "cleartext is not served on a TLS port"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A QUIC client trusting `ca`.
fn quic_client(ca: &str) -> quinn::Endpoint {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    use rustls_pki_types::pem::PemObject as _;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

#[tokio::test]
async fn http3_answers_stream_and_a_peer_gets_at_most_its_share_of_connections() {
    let (ca, identity) = test_ca();
    let limits = ServeLimits {
        max_per_peer: 1,
        ..ServeLimits::default()
    };
    let endpoint =
        arcane_serve::http3::endpoint("127.0.0.1:0".parse().unwrap(), &identity, limits).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(arcane_serve::http3::serve(
        endpoint,
        router(),
        limits,
        async {
            let _ = stopped.await;
        },
    ));

    let client = quic_client(&ca);
    let quic = client.connect(addr, "127.0.0.1").unwrap().await.unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
        .await
        .unwrap();
    let drive = tokio::spawn(async move {
        let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let request = http::Request::post(format!("https://{addr}/echo"))
        .body(())
        .unwrap();
    let mut stream = send.send_request(request).await.unwrap();
    stream
        .send_data(Bytes::from_static(b"abcdef"))
        .await
        .unwrap();
    stream.finish().await.unwrap();
    let head = stream.recv_response().await.unwrap();
    assert_eq!(head.status(), 200);
    let mut body = Vec::new();
    let mut pieces = 0;
    while let Some(mut data) = stream.recv_data().await.unwrap() {
        pieces += 1;
        body.extend_from_slice(&data.copy_to_bytes(data.remaining()));
    }
    assert_eq!(body, b"abcdef");
    assert!(
        pieces >= 2,
        "the answer arrived as it was written ({pieces})"
    );

    // A second connection from the same address, while the first is open, is refused.
    let second = client.connect(addr, "127.0.0.1").unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("refused at once, not left hanging");
    assert!(refused.is_err(), "the per-peer limit admits one connection");

    // Once the first is closed, a new one is admitted.
    quic.close(0u32.into(), b"done");
    drop(send);
    drive.await.unwrap();
    let mut admitted = false;
    for _ in 0..50 {
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_secs(2),
            client.connect(addr, "127.0.0.1").unwrap(),
        )
        .await
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "a slot is given back when its connection ends");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
