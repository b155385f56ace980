//! Oblivious HTTP from the client's side: Binary HTTP requests encapsulated to a verified key
//! configuration, sent to the gateway (token issuance) or through the relay with a one-time token
//! (everything else), and answers read back — whole, or as a stream for chat answers.

use arcane_verifier::tokens::Token;

use crate::error::{ClientError, Result};
#[cfg(feature = "net")]
use crate::trust::Relay;
#[cfg(feature = "net")]
pub use exchange::*;

/// Media type of a standard encapsulated request.
pub const OHTTP_REQ: &str = "message/ohttp-req";
/// Media type of a chunked encapsulated request.
pub const OHTTP_CHUNKED_REQ: &str = "message/ohttp-chunked-req";
/// Largest whole answer read into memory.
pub const MAX_ANSWER: usize = 4 << 20;

/// An inner request.
#[derive(Clone, Debug)]
pub struct InnerHttp<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The path, e.g. `/v1/nodes`.
    pub path: &'a str,
    /// Header fields.
    pub headers: &'a [(&'a str, &'a str)],
    /// The content.
    pub body: &'a [u8],
}

impl InnerHttp<'_> {
    /// Known-length Binary HTTP.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut message = bhttp::Message::request(
            self.method.as_bytes().to_vec(),
            b"https".to_vec(),
            b"gateway".to_vec(),
            self.path.as_bytes().to_vec(),
        );
        for (name, value) in self.headers {
            message.put_header(*name, *value);
        }
        message.write_content(self.body);
        let mut out = Vec::new();
        message
            .write_bhttp(bhttp::Mode::KnownLength, &mut out)
            .map_err(|e| ClientError::Answer(format!("encoding the inner request: {e}")))?;
        Ok(out)
    }
}

/// Encapsulates `inner` to the key configuration `key_config` (a standard, not chunked, OHTTP
/// request): the encapsulated request and what opens its answer.
pub fn encapsulate(
    key_config: &[u8],
    inner: &InnerHttp<'_>,
) -> Result<(Vec<u8>, ohttp::ClientResponse)> {
    let encoded = inner.encode()?;
    ohttp::ClientRequest::from_encoded_config(key_config)
        .and_then(|r| r.encapsulate(&encoded))
        .map_err(|e| ClientError::Answer(format!("OHTTP encapsulation: {e}")))
}

/// Opens a standard OHTTP answer: the inner answer's status and content.
pub fn decapsulate(response: ohttp::ClientResponse, bytes: &[u8]) -> Result<(u16, Vec<u8>)> {
    let plain = response
        .decapsulate(bytes)
        .map_err(|e| ClientError::Answer(format!("OHTTP answer does not open: {e}")))?;
    let answer = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&plain[..]))
        .map_err(|e| ClientError::Answer(format!("inner answer: {e}")))?;
    let status = answer
        .control()
        .status()
        .map(|s| s.code())
        .ok_or_else(|| ClientError::Answer("inner answer has no status".into()))?;
    Ok((status, answer.content().to_vec()))
}

/// An in-memory `AsyncWrite` the chunked encapsulation writes into (the request is sent whole;
/// only the answer streams).
#[derive(Clone, Default)]
pub struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Sink {
    /// Everything written so far (the sink is then empty).
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl futures::io::AsyncWrite for Sink {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
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

/// The `authorization` header that spends `token` at the relay.
pub fn token_authorization(token: &Token) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.encode());
    format!("PrivateToken token=\"{b64}\"")
}

/// The error of an inner answer that is not 200 from the gateway: a 403 is its refusal of the
/// token, anything else its status.
pub fn gateway_refusal(status: u16, message: String) -> ClientError {
    if status == 403 {
        ClientError::TokenRefused {
            by: "gateway",
            reason: message,
        }
    } else {
        ClientError::Status {
            service: "gateway",
            status,
            message,
        }
    }
}

#[cfg(feature = "net")]
mod exchange {
    use std::pin::Pin;

    use futures::TryStreamExt;
    use futures::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::http3::{Body, Http3, Http3Failure};

    /// Where an encapsulated request goes.
    #[derive(Clone, Copy, Debug)]
    pub enum Hop<'a> {
        /// Straight to the gateway's base URL (token issuance: the gateway learns the address
        /// anyway).
        Gateway(&'a str),
        /// Through a relay.
        Relay {
            /// The relay.
            relay: &'a Relay,
            /// The one-time token that admits the request there, when it takes one.
            token: Option<&'a Token>,
            /// The client's HTTP/3 connections, for a relay that offers HTTP/3.
            http3: &'a Http3,
        },
    }

    impl Hop<'_> {
        fn service(&self) -> &'static str {
            match self {
                Hop::Gateway(_) => "gateway",
                Hop::Relay { .. } => "relay",
            }
        }
    }

    /// Reads a whole answer body, refusing one larger than `limit` bytes as it arrives (a hostile
    /// server cannot make the client buffer without bound).
    pub async fn read_limited(
        reply: reqwest::Response,
        limit: usize,
        service: &'static str,
    ) -> Result<Vec<u8>> {
        arcane_log_client::read_limited(reply, limit)
            .await
            .map_err(|e| unreachable(service, e))
    }

    fn unreachable(service: &'static str, e: impl std::fmt::Display) -> ClientError {
        ClientError::Unreachable {
            service,
            reason: e.to_string(),
        }
    }

    /// A whole body, refusing one larger than `limit` bytes as it arrives.
    async fn collect_limited(
        mut body: Body,
        limit: usize,
        service: &'static str,
    ) -> Result<Vec<u8>> {
        use futures::StreamExt as _;
        let mut all = Vec::new();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| unreachable(service, e))?;
            if all.len() + piece.len() > limit {
                return Err(unreachable(
                    service,
                    format!("the answer exceeds {limit} bytes"),
                ));
            }
            all.extend_from_slice(&piece);
        }
        Ok(all)
    }

    /// Posts an encapsulated request: over HTTP/3 to a relay that offers it (unless it failed
    /// lately), else over HTTP/2 or HTTP/1.1. Returns the body of a 200 answer.
    async fn post(
        http: &reqwest::Client,
        hop: Hop<'_>,
        media_type: &str,
        body: Vec<u8>,
    ) -> Result<Body> {
        let (url, token) = match hop {
            Hop::Gateway(base) => (format!("{base}/.well-known/ohttp-gateway"), None),
            Hop::Relay { relay, token, .. } => (relay.url.clone(), token),
        };
        let authorization = token.map(token_authorization);
        let mut answer = None;
        if let Hop::Relay { relay, http3, .. } = hop
            && relay.http3
            && http3.worth_trying(&url)
        {
            let mut headers = vec![("content-type", media_type)];
            if let Some(a) = &authorization {
                headers.push(("authorization", a.as_str()));
            }
            // A copy: the body goes over TCP after all when QUIC cannot reach the relay.
            match http3.post(&url, &headers, body.clone()).await {
                Ok(a) => answer = Some(a),
                Err(Http3Failure::FallBack(reason)) => {
                    tracing::warn!(%reason, "the relay is not reachable over HTTP/3; using HTTP/2");
                }
                Err(Http3Failure::Broken(reason)) => {
                    return Err(unreachable(hop.service(), reason));
                }
            }
        }
        let (status, answer) = match answer {
            Some(a) => a,
            None => {
                let mut request = http.post(url).header("content-type", media_type).body(body);
                if let Some(a) = authorization {
                    request = request.header("authorization", a);
                }
                let reply = request
                    .send()
                    .await
                    .map_err(|e| unreachable(hop.service(), e))?;
                let status = reply.status().as_u16();
                let stream: Body = Box::pin(reply.bytes_stream().map_err(std::io::Error::other));
                (status, stream)
            }
        };
        if status == 200 {
            return Ok(answer);
        }
        let message = match collect_limited(answer, 4096, hop.service()).await {
            Ok(body) => String::from_utf8_lossy(&body).chars().take(300).collect(),
            Err(e) => e.to_string(),
        };
        if status == 401 && matches!(hop, Hop::Relay { .. }) {
            return Err(ClientError::TokenRefused {
                by: "relay",
                reason: message,
            });
        }
        Err(ClientError::Status {
            service: hop.service(),
            status,
            message,
        })
    }

    /// A standard OHTTP exchange: the inner answer's status and content.
    pub async fn call(
        http: &reqwest::Client,
        hop: Hop<'_>,
        key_config: &[u8],
        inner: &InnerHttp<'_>,
    ) -> Result<(u16, Vec<u8>)> {
        let (encapsulated, response) = encapsulate(key_config, inner)?;
        let answer = post(http, hop, OHTTP_REQ, encapsulated).await?;
        let bytes = collect_limited(answer, MAX_ANSWER, hop.service()).await?;
        decapsulate(response, &bytes)
    }

    /// A streamed inner answer: its status, then its content as it arrives.
    pub struct StreamedAnswer {
        /// The inner status.
        pub status: u16,
        /// Content pieces; an `Err` ends the stream (the connection broke or did not verify).
        pub content: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    }

    impl StreamedAnswer {
        /// An answer that arrived whole (a standard OHTTP exchange), as one piece.
        pub fn whole(status: u16, content: Vec<u8>) -> StreamedAnswer {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let _ = tx.try_send(Ok(content));
            StreamedAnswer {
                status,
                content: rx,
            }
        }
    }

    /// A chunked OHTTP exchange whose answer is read as it streams.
    pub async fn call_streaming(
        http: &reqwest::Client,
        hop: Hop<'_>,
        key_config: &[u8],
        inner: &InnerHttp<'_>,
    ) -> Result<StreamedAnswer> {
        let encoded = inner.encode()?;
        let sink = Sink::default();
        let mut writer = ohttp::ClientRequest::from_encoded_config(key_config)
            .and_then(|r| r.encapsulate_stream(sink.clone()))
            .map_err(|e| ClientError::Answer(format!("OHTTP encapsulation: {e}")))?;
        writer
            .write_all(&encoded)
            .await
            .and(writer.close().await)
            .map_err(|e| ClientError::Answer(format!("OHTTP encapsulation: {e}")))?;
        let encapsulated = sink.take();
        let answer = post(http, hop, OHTTP_CHUNKED_REQ, encapsulated).await?;
        let service = hop.service();
        let body = answer.into_async_read();
        let decrypted: Pin<Box<dyn AsyncRead + Send>> = Box::pin(
            writer
                .response(body)
                .map_err(|e| ClientError::Answer(format!("OHTTP answer: {e}")))?,
        );
        let (status_tx, status_rx) = tokio::sync::oneshot::channel();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            use bhttp::stream::AsyncReadMessage as _;
            let mut message = bhttp::Message::async_read(decrypted);
            let header = match message.header().await {
                Ok(h) => h,
                Err(e) => {
                    let _ = status_tx.send(Err(format!("inner answer: {e}")));
                    return;
                }
            };
            let Some(status) = header.control().status().map(|s| s.code()) else {
                let _ = status_tx.send(Err("inner answer has no status".to_owned()));
                return;
            };
            let _ = status_tx.send(Ok(status));
            let mut body = match message.body() {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    return;
                }
            };
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match body.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        if tx.send(Ok(buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string())).await;
                        return;
                    }
                }
            }
        });
        let status = status_rx
            .await
            .map_err(|_| unreachable(service, "the answer ended before its status"))?
            .map_err(|e| unreachable(service, e))?;
        Ok(StreamedAnswer {
            status,
            content: rx,
        })
    }
}

#[cfg(all(test, feature = "net"))]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Serves one HTTP/1.1 answer whose body is `size` bytes, sent in pieces.
    async fn serve_body(size: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            // The request first (hyper refuses an answer that arrives before it is sent).
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                if tokio::io::AsyncReadExt::read(&mut socket, &mut byte)
                    .await
                    .unwrap_or(0)
                    == 0
                {
                    return;
                }
                request.push(byte[0]);
            }
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            let piece = vec![b'x'; 64 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(piece.len());
                if socket.write_all(&piece[..n]).await.is_err() {
                    return;
                }
                left -= n;
            }
        });
        url
    }

    #[tokio::test]
    async fn answers_over_the_limit_are_refused_while_they_arrive() {
        let http = reqwest::Client::new();
        let small = http.get(serve_body(1000).await).send().await.unwrap();
        assert_eq!(read_limited(small, 1000, "log").await.unwrap().len(), 1000);
        let large = http.get(serve_body(64 << 20).await).send().await.unwrap();
        let e = read_limited(large, 1 << 20, "gateway").await.unwrap_err();
        assert!(e.to_string().contains("exceeds 1048576 bytes"), "{e}");
    }
}
