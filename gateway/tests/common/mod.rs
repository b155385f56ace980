//! Helpers shared by the gateway's end-to-end test and its benchmark: the gateway and relay
//! binaries, and an OHTTP client (standard and chunked).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use futures::io::{AsyncReadExt, AsyncWriteExt};

pub const BINARY: &str = env!("CARGO_BIN_EXE_arcane-gateway");

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

pub struct GatewayProcess(pub std::process::Child, pub String);

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_gateway(
    dir: &Path,
    log_url: &str,
    log_key: &str,
    publisher: &str,
    root_pem: &Path,
) -> Result<GatewayProcess, String> {
    let mut child = std::process::Command::new(BINARY)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--otts-per-tgt",
            "4",
            "--body-timeout-secs",
            "1",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--log",
            log_url,
            "--log-key",
            log_key,
            "--publisher",
            publisher,
        ])
        .arg("--development-root")
        .arg(root_pem)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.trim().strip_prefix("arcane-gateway listening on ") {
        Some(url) => Ok(GatewayProcess(child, url.to_owned())),
        None => {
            let out = child.wait_with_output().unwrap();
            Err(format!(
                "{:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
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
