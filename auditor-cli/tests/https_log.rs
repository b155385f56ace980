//! An auditor audits a log served over `https://`: a real log behind a TLS-terminating front
//! (rustls) whose certificate chains to a private test CA, given to the auditor with `--ca-cert`.
//! Without that CA the certificate is refused and nothing is audited.

mod common;
use common::{add, args, audit};

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio_rustls::rustls;

/// A CA and a leaf for `localhost` and 127.0.0.1 issued by it: (CA PEM, leaf chain, leaf key).
fn test_pki() -> (
    String,
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    (
        ca.pem(),
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
}

/// Terminates TLS on a port of its own and forwards each connection to `backend` in the clear.
async fn tls_front(
    backend: std::net::SocketAddr,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> std::net::SocketAddr {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(inbound).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_behind_https_with_a_private_ca_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base, vkey, writer, client) = common::log_with_writer(dir.path()).await;
    let entries: Vec<Vec<u8>> = (0..5).map(|i| format!("entry {i}").into_bytes()).collect();
    add(&client, &writer, &entries).await;
    let (ca_pem, chain, key) = test_pki();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let backend = base.trim_start_matches("http://").parse().unwrap();
    let front = tls_front(backend, chain, key).await;
    let https = format!("https://localhost:{}", front.port());
    let ca = ca_file.to_str().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();

    // Without the CA: the certificate is not trusted, the log counts as unreachable.
    let (code, _, stderr) = audit(args(&[
        "checkpoint",
        "--url",
        &https,
        "--vkey",
        &vkey,
        "--json",
    ]))
    .await;
    assert_eq!(code, Some(3), "{stderr}");

    // With it: the checkpoint verifies and consistency is checked, over TLS.
    let (code, v, stderr) = audit(args(&[
        "checkpoint",
        "--url",
        &https,
        "--ca-cert",
        ca,
        "--vkey",
        &vkey,
        "--json",
    ]))
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v["size"], 5);
    for _ in 0..2 {
        let (code, v, stderr) = audit(args(&[
            "consistency",
            "--url",
            &https,
            "--ca-cert",
            ca,
            "--vkey",
            &vkey,
            "--state",
            state,
            "--json",
        ]))
        .await;
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(v["size"], 5, "{v}");
    }
    // And the entries are replayed from their bundles over TLS.
    let (code, v, stderr) = audit(args(&[
        "replay",
        "--url",
        &https,
        "--ca-cert",
        ca,
        "--vkey",
        &vkey,
        "--json",
    ]))
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        (&v["tree_size"], &v["root_matches"]),
        (&5.into(), &true.into()),
        "{v}"
    );
}
