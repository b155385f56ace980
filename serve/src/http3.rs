//! HTTP/3 (QUIC, RFC 9114) for a router: the same handlers as over TCP, under the same limits —
//! the handshake and each request head within the header timeout, bodies within the body
//! timeout, connections limited overall and per peer address, concurrent requests per connection
//! limited like HTTP/2's streams, idle connections closed — and the same graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use bytes::{Buf as _, Bytes};
use http_body_util::BodyExt as _;
use tokio::sync::watch;
use tower_service::Service as _;

use crate::tls::{TlsError, TlsIdentity};
use crate::{Admission, DeadlineBody, ServeLimits};

/// A QUIC endpoint on `listen` (UDP) that offers HTTP/3 with `identity`, with `limits` applied
/// to its transport: concurrent request streams per connection, idle timeout.
pub fn endpoint(
    listen: SocketAddr,
    identity: &TlsIdentity,
    limits: ServeLimits,
) -> Result<quinn::Endpoint, TlsError> {
    let tls = identity.server_config(&[b"h3"])?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(limits.max_h2_streams.into())
        // The control and QPACK streams each side opens, and a little room.
        .max_concurrent_uni_streams(8u32.into())
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(limits.h2_keep_alive)
                .map_err(|e| TlsError::Config(e.to_string()))?,
        ));
    config.transport_config(Arc::new(transport));
    quinn::Endpoint::server(config, listen).map_err(|e| TlsError::Config(format!("{listen}: {e}")))
}

/// Serves `router` over HTTP/3 on `endpoint` under `limits` until `shutdown` completes, then
/// refuses new connections and lets the requests in progress finish.
pub async fn serve(
    endpoint: quinn::Endpoint,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let admission = Admission::new(&limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut open = tokio::task::JoinSet::new();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            Some(_) = open.join_next() => continue,
            () = &mut shutdown => break,
        };
        let Some(incoming) = incoming else { break };
        let held = match admission.admit(incoming.remote_address().ip()) {
            Ok(held) => held,
            Err(limit) => {
                tracing::warn!("{limit}; a new QUIC connection is refused");
                incoming.refuse();
                continue;
            }
        };
        let router = router.clone();
        let stop = stop_rx.clone();
        open.spawn(async move {
            let _held = held;
            serve_connection(incoming, router, limits, stop).await;
        });
    }
    endpoint.set_server_config(None);
    let _ = stop_tx.send(true);
    while open.join_next().await.is_some() {}
    endpoint.close(0u32.into(), b"shutting down");
    endpoint.wait_idle().await;
    Ok(())
}

async fn serve_connection(
    incoming: quinn::Incoming,
    router: Router,
    limits: ServeLimits,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(Ok(quic)) = tokio::time::timeout(limits.header_timeout, incoming).await else {
        return;
    };
    let mut builder = h3::server::builder();
    builder.max_field_section_size(limits.max_header_bytes as u64);
    let built = builder.build::<_, Bytes>(h3_quinn::Connection::new(quic));
    let Ok(Ok(mut connection)) = tokio::time::timeout(limits.header_timeout, built).await else {
        return;
    };
    let mut requests = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = connection.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let router = router.clone();
                    requests.spawn(async move {
                        let resolved =
                            tokio::time::timeout(limits.header_timeout, resolver.resolve_request());
                        if let Ok(Ok((request, stream))) = resolved.await {
                            answer(request, stream, router, limits).await;
                        }
                    });
                }
                _ => break,
            },
            Some(_) = requests.join_next() => {}
            _ = stop.wait_for(|stopping| *stopping) => break,
        }
    }
    if *stop.borrow() {
        // GOAWAY: no new request; those in progress finish.
        let _ = connection.shutdown(0).await;
    }
    while requests.join_next().await.is_some() {}
}

type RequestStream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Hands one request to the router and streams its answer back.
async fn answer(
    request: http::Request<()>,
    stream: RequestStream,
    mut router: Router,
    limits: ServeLimits,
) {
    let (mut send, recv) = stream.split();
    let body = futures::stream::unfold(Some(recv), |recv| async move {
        let mut recv = recv?;
        match recv.recv_data().await {
            Ok(Some(mut data)) => Some((Ok(data.copy_to_bytes(data.remaining())), Some(recv))),
            Ok(None) => None,
            Err(e) => Some((Err(io::Error::other(e)), None)),
        }
    });
    let body = axum::body::Body::new(DeadlineBody::new(
        axum::body::Body::from_stream(body),
        limits.body_timeout,
    ));
    let Ok(response) = router.call(request.map(|()| body)).await;
    let (head, mut body) = response.into_parts();
    if send
        .send_response(http::Response::from_parts(head, ()))
        .await
        .is_err()
    {
        return;
    }
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // The answer broke off: the client sees the stream reset, not a clean end.
            send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
            return;
        };
        if let Ok(data) = frame.into_data()
            && send.send_data(data).await.is_err()
        {
            return;
        }
    }
    let _ = send.finish().await;
}
