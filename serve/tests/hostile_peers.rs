//! Hostile peers over real sockets on 127.0.0.1: connections that dribble their headers, send
//! nothing, or dribble a body are closed within their timeouts while other clients are served;
//! one peer cannot open more than its share of connections. A graceful shutdown lets a response
//! in progress finish; dropping the server cuts it, as a crash would.

use std::time::{Duration, Instant};

use arcane_serve::{ServeLimits, serve};
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: ServeLimits) -> (String, tokio::sync::oneshot::Sender<()>) {
    let router = axum::Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/echo",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, router, limits, async {
        let _ = stopped.await;
    }));
    (addr.to_string(), stop)
}

/// Reads until the server closes the connection; `None` if it is still open at `deadline`.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dribbling_and_silent_connections_are_closed_while_others_are_served() {
    let limits = ServeLimits {
        header_timeout: Duration::from_millis(800),
        body_timeout: Duration::from_millis(800),
        ..ServeLimits::default()
    };
    let (addr, _stop) = start(limits).await;
    let started = Instant::now();
    // Twenty peers that dribble one header byte every 100 ms, and twenty that send nothing.
    let mut dribblers = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        dribblers.push(s);
    }
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let dribbling = tokio::spawn(async move {
        let mut closed = 0;
        for round in 0..40 {
            for s in &mut dribblers {
                if s.write_all(format!("X-{round}: a\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    closed += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (dribblers, closed)
    });
    // Meanwhile other clients are served, again and again.
    let http = reqwest::Client::new();
    for _ in 0..10 {
        let answer = http.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every silent connection is closed within the header timeout (plus scheduling slack).
    let deadline = started + Duration::from_millis(2500);
    for s in &mut silent {
        assert!(
            closed_by(s, deadline).await.is_some(),
            "a connection that sent nothing was still open after {:?}",
            started.elapsed()
        );
    }
    let (mut dribblers, _) = dribbling.await.unwrap();
    for s in &mut dribblers {
        assert!(
            closed_by(s, Instant::now() + Duration::from_millis(500))
                .await
                .is_some(),
            "a connection dribbling its headers was still open after {:?}",
            started.elapsed()
        );
    }

    // A body that dribbles is cut off too (the handler's read fails), and the head of a
    // kept-alive connection's next request must come in time as well.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let answer = closed_by(&mut s, Instant::now() + Duration::from_secs(3)).await;
    let answer = answer.expect("a dribbled body was still being waited for");
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let kept_alive = Instant::now();
    assert!(
        closed_by(&mut s, kept_alive + Duration::from_secs(3))
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_gets_at_most_its_share_of_connections() {
    let limits = ServeLimits {
        max_per_peer: 8,
        header_timeout: Duration::from_secs(5),
        ..ServeLimits::default()
    };
    let (addr, _stop) = start(limits).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Give the server time to account for them, then one more is closed at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = closed_by(&mut extra, Instant::now() + Duration::from_secs(2))
        .await
        .expect("the ninth connection was kept open");
    assert!(answer.is_empty(), "the ninth connection was served");
    // Slots come back when connections end.
    held.clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(answer.text().await.unwrap(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_is_served_and_shutdown_is_graceful() {
    let (addr, stop) = start(ServeLimits::default()).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let answer = h2.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert_eq!(answer.text().await.unwrap(), "ok");
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(&addr).await.is_err() || {
            // The listener may linger for a moment; nothing is served from it any more.
            reqwest::get(format!("http://{addr}/")).await.is_err()
        }
    );
}

/// Serves `/slow`, ten bytes a tenth of a second apart; the server's task is returned.
async fn start_slow(
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let router = axum::Router::new().route(
        "/slow",
        get(|| async {
            let ticks = futures::stream::unfold(0u8, |i| async move {
                if i == 10 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((Ok::<_, std::io::Error>(vec![b'a' + i]), i + 1))
            });
            axum::body::Body::from_stream(ticks)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener, router, ServeLimits::default(), async {
        let _ = stopped.await;
    }));
    (format!("http://{addr}/slow"), server)
}

/// Reads a body to its end: the bytes, and whether it ended cleanly.
async fn read_body(mut response: reqwest::Response, mut first: Vec<u8>) -> (Vec<u8>, bool) {
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => first.extend_from_slice(&bytes),
            Ok(None) => return (first, true),
            Err(_) => return (first, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_finishes_a_response_and_dropping_the_server_cuts_it() {
    // Graceful: the response under way when shutdown begins arrives whole.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (url, server) = start_slow(stopped).await;
    let mut response = reqwest::get(&url).await.unwrap();
    let first = response.chunk().await.unwrap().unwrap().to_vec();
    stop.send(()).unwrap();
    let (body, clean) = read_body(response, first).await;
    assert_eq!((body.as_slice(), clean), (&b"abcdefghij"[..], true));
    server.await.unwrap().unwrap();

    // Dropped (its task aborted): the connection closes mid-response, at once.
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (url, server) = start_slow(stopped).await;
    let mut response = reqwest::get(&url).await.unwrap();
    let first = response.chunk().await.unwrap().unwrap().to_vec();
    server.abort();
    let (body, clean) = read_body(response, first).await;
    assert!(
        !clean && body.len() < 10,
        "cut after {} bytes, cleanly: {clean}",
        body.len()
    );
}
