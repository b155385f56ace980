//! Helpers shared by the gateway's end-to-end test and its benchmark: a log with a publisher for
//! every kind, the gateway and relay binaries, and an OHTTP client (standard and chunked).
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use futures::io::{AsyncReadExt, AsyncWriteExt};

pub mod redeem;

pub const BINARY: &str = env!("CARGO_BIN_EXE_arcane-gateway");

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

/// A log on 127.0.0.1 with one publisher allowed every kind.
pub struct Log {
    pub server: arcane_log::RunningServer,
    pub url: String,
    pub key: arcane_verifier::note::VerifierKey,
    pub publisher: arcane_verifier::note::NoteSigner,
    client: arcane_log::client::LogClient,
}

/// Starts a log with its data in `dir`.
pub async fn start_log(dir: &Path) -> Log {
    let mut config = arcane_log::ServeConfig::new(dir.to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.sequencer.batch_delay = std::time::Duration::from_millis(10);
    let server = arcane_log::start(config).await.unwrap();
    let url = format!("http://{}", server.addr());
    let key = arcane_verifier::note::VerifierKey::parse(server.vkey()).unwrap();
    let publisher = arcane_verifier::note::NoteSigner::from_seed(
        "operator.test",
        arcane_verifier::note::ALG_ED25519,
        &random::<32>(),
    )
    .unwrap();
    arcane_log::keys::PublisherPolicy::new(dir.join(arcane_log::POLICY_FILE))
        .allow(
            &publisher.verifier(),
            &arcane_log::keys::AllowedKinds::parse("release,ohttp-keys,token-key").unwrap(),
        )
        .unwrap();
    let client = arcane_log::client::LogClient::new(&url).unwrap();
    Log {
        server,
        url,
        key,
        publisher,
        client,
    }
}

impl Log {
    /// Publishes `body` for an hour and waits until it is included.
    pub async fn publish(&self, body: arcane_verifier::entry::EntryBody) {
        self.publish_for(body, std::time::Duration::from_secs(3600))
            .await;
    }

    /// Publishes `body`, valid from now for `validity`, and waits until it is included.
    pub async fn publish_for(
        &self,
        body: arcane_verifier::entry::EntryBody,
        validity: std::time::Duration,
    ) {
        arcane_log::publish::publish(&self.client, &self.publisher, &self.key, body, validity)
            .await
            .unwrap();
    }

    /// Makes an OHTTP key file at `path` with `key_id`, publishes its configuration for an
    /// hour, and returns the encoded configuration.
    pub async fn publish_ohttp_key(&self, path: &Path, key_id: u8) -> Vec<u8> {
        let config = arcane_gateway::keys::generate_ohttp_key(path, key_id)
            .unwrap()
            .encode()
            .unwrap();
        self.publish(arcane_verifier::entry::EntryBody::OhttpKeys(
            arcane_verifier::entry::decode_key_config(&config).unwrap(),
        ))
        .await;
        config
    }

    /// `--log URL --log-key VKEY --publisher VKEY`, as the gateway and the relay take them.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--log".into(),
            self.url.clone(),
            "--log-key".into(),
            self.key.to_text(),
            "--publisher".into(),
            self.publisher.verifier().to_text(),
        ]
    }
}

/// A release entry for `measurements` and a model digest.
pub fn release(
    measurements: &arcane_compute::attestation::DeclaredMeasurements,
    model_sha256: [u8; 32],
) -> arcane_verifier::entry::EntryBody {
    arcane_verifier::entry::EntryBody::Release(Box::new(arcane_verifier::entry::Release {
        pcr0: measurements.pcr0,
        pcr1: measurements.pcr1,
        pcr2: measurements.pcr2,
        pcr8: None,
        model_sha256,
        engine: "mistral.rs".into(),
        engine_version: "0.8.1".into(),
        source_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        eif_sha384: [3; 48],
        notes: String::new(),
    }))
}

/// A development root (a fresh simulated NSM's) written as `root.pem` in `dir`, for a gateway
/// that lists no node of it: it only has to start.
pub fn development_root_pem(dir: &Path) -> std::path::PathBuf {
    let nsm = arcane_compute::attestation::SimulatedNsm::new(
        &arcane_compute::attestation::DeclaredMeasurements {
            pcr0: random(),
            pcr1: random(),
            pcr2: random(),
            pcr8: None,
        },
        0,
    )
    .unwrap();
    let path = dir.join("root.pem");
    std::fs::write(
        &path,
        arcane_verifier::nitro::certificate_pem(nsm.root_der()),
    )
    .unwrap();
    path
}

/// A spawned gateway or relay process and its base URL, killed when dropped.
pub use arcane_test_support::Spawned;

/// Limits small enough for a test to reach: 4 OTTs per TGT, 1 TGT per account and period, and
/// a request body within 1 s.
pub const SMALL_LIMITS: [&str; 6] = [
    "--otts-per-tgt",
    "4",
    "--tgts-per-period",
    "1",
    "--body-timeout-secs",
    "1",
];

pub fn spawn_gateway(dir: &Path, log: &Log, root_pem: &Path) -> Result<Spawned, String> {
    spawn_gateway_with(dir, log, root_pem, &SMALL_LIMITS)
}

/// `arcane-gateway serve` on any port with `args` (and the log's and the root's).
pub fn spawn_gateway_with(
    dir: &Path,
    log: &Log,
    root_pem: &Path,
    args: &[&str],
) -> Result<Spawned, String> {
    let mut command = std::process::Command::new(BINARY);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args(log.args())
        .arg("--development-root")
        .arg(root_pem)
        .stderr(std::process::Stdio::piped());
    arcane_test_support::spawn_listening(command, "arcane-gateway")
}

/// Starts `arcane-gateway relay` in front of `gateway`, its spent-token database in `dir`.
pub fn spawn_relay(dir: &Path, gateway: &str, log: &Log) -> Spawned {
    spawn_relay_with(dir, gateway, log, &[])
}

/// [`spawn_relay`] with more arguments.
pub fn spawn_relay_with(dir: &Path, gateway: &str, log: &Log, extra: &[&str]) -> Spawned {
    let mut command = std::process::Command::new(BINARY);
    command
        .args(["relay", "--listen", "127.0.0.1:0", "--gateway", gateway])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .args(log.args());
    arcane_test_support::spawn_listening(command, "arcane-relay").unwrap()
}

/// Standard OHTTP call: returns the inner response's status and content.
pub async fn ohttp_call(
    http: &reqwest::Client,
    gateway: &str,
    config: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut m = bhttp::Message::request(
        method.as_bytes().to_vec(),
        b"https".to_vec(),
        b"gateway".to_vec(),
        path.as_bytes().to_vec(),
    );
    for (n, v) in headers {
        m.put_header(*n, *v);
    }
    m.write_content(body);
    let mut inner = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut inner).unwrap();
    let (enc, response) = ohttp::ClientRequest::from_encoded_config(config)
        .unwrap()
        .encapsulate(&inner)
        .unwrap();
    let reply = http
        .post(format!("{gateway}/.well-known/ohttp-gateway"))
        .header("content-type", "message/ohttp-req")
        .body(enc)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["content-type"], "message/ohttp-res");
    let plain = response.decapsulate(&reply.bytes().await.unwrap()).unwrap();
    let answer = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&plain[..])).unwrap();
    (
        answer.control().status().unwrap().code(),
        answer.content().to_vec(),
    )
}

/// A cloneable in-memory `AsyncWrite`.
#[derive(Clone, Default)]
pub struct SharedSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl futures::io::AsyncWrite for SharedSink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Chunked OHTTP call: returns the inner status and the content, read as it streams.
pub async fn ohttp_chunked(
    http: &reqwest::Client,
    gateway: &str,
    config: &[u8],
    path: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut m = bhttp::Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"gateway".to_vec(),
        path.as_bytes().to_vec(),
    );
    m.write_content(body);
    let mut inner = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut inner).unwrap();
    let sink = SharedSink::default();
    let mut writer = ohttp::ClientRequest::from_encoded_config(config)
        .unwrap()
        .encapsulate_stream(sink.clone())
        .unwrap();
    writer.write_all(&inner).await.unwrap();
    writer.close().await.unwrap();
    let encapsulated = sink.0.lock().unwrap().clone();
    let reply = http
        .post(format!("{gateway}/.well-known/ohttp-gateway"))
        .header("content-type", "message/ohttp-chunked-req")
        .body(encapsulated)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let bytes = reply.bytes().await.unwrap();
    let mut response = writer
        .response(futures::io::Cursor::new(bytes.to_vec()))
        .unwrap();
    let mut plain = Vec::new();
    response.read_to_end(&mut plain).await.unwrap();
    let answer = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&plain[..])).unwrap();
    (
        answer.control().status().unwrap().code(),
        answer.content().to_vec(),
    )
}
