//! The log server under hostile peers (slowloris): connections that send nothing or dribble
//! their headers are closed within the header timeout while the log keeps answering others.

mod common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server closed `stream` before `deadline`.
async fn closed_before(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_connections_are_closed_and_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path(), None);
    config.limits.header_timeout = Duration::from_secs(1);
    let log = common::start_with(config).await;
    let addr = log.server.addr();
    let started = Instant::now();
    let mut hostile = Vec::new();
    for i in 0..60 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            // Half of them start a request and never finish its headers.
            s.write_all(b"GET /checkpoint HTTP/1.1\r\nHost: log\r\nX-Slow: ")
                .await
                .unwrap();
        }
        hostile.push(s);
    }
    // The log answers others meanwhile.
    for _ in 0..5 {
        let answer = log.get("/checkpoint").await;
        assert_eq!(answer.status(), 200);
    }
    for s in &mut hostile {
        // One more byte of header now and then does not buy more time.
        let _ = s.write_all(b"a").await;
    }
    let deadline = started + Duration::from_secs(3);
    for (i, s) in hostile.iter_mut().enumerate() {
        assert!(
            closed_before(s, deadline).await,
            "hostile connection {i} still open after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(log.get("/checkpoint").await.status(), 200);
}
