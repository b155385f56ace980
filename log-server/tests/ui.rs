//! The verification center's files at `/ui/` and the log's answers readable by a page from any
//! origin, over a real socket on 127.0.0.1.

mod common;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The status of `GET path` sent byte for byte over a fresh connection.
async fn raw_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_page_is_served_with_its_policy_and_every_read_is_readable_anywhere() {
    let data = tempfile::tempdir().unwrap();
    let page = tempfile::tempdir().unwrap();
    std::fs::write(
        page.path().join("index.html"),
        "<!doctype html><title>vc</title>",
    )
    .unwrap();
    std::fs::create_dir(page.path().join("assets")).unwrap();
    std::fs::write(page.path().join("assets/checks.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let mut config = common::config(data.path(), None);
    config.ui = Some(page.path().to_path_buf());
    let log = common::start_with(config).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let index = http.get(format!("{}/ui/", log.base)).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(
        index.text().await.unwrap(),
        "<!doctype html><title>vc</title>"
    );
    let wasm = http
        .get(format!("{}/ui/assets/checks.wasm", log.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    let bare = http.get(format!("{}/ui", log.base)).send().await.unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/ui/");
    // Sent as written (an HTTP client would normalise the dots away before they reach the log).
    assert_eq!(raw_status(log.server.addr(), "/ui/index.html").await, 200);
    for outside in [
        "/ui/../log.key",
        "/ui/%2e%2e/log.key",
        "/ui/assets/../../log.key",
        "/ui//etc/passwd",
        "/ui/nothing",
    ] {
        assert_eq!(
            raw_status(log.server.addr(), outside).await,
            404,
            "{outside}"
        );
    }

    for read in [
        "/checkpoint",
        "/log.vkey",
        "/v1/proof/consistency?old=0&new=0",
    ] {
        let answer = http
            .get(format!("{}{read}", log.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.headers()["access-control-allow-origin"],
            "*",
            "{read}"
        );
    }
    // Writes are not opened to pages.
    let write = http
        .post(format!("{}/v1/entries", log.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(write.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_log_without_a_page_serves_none() {
    let data = tempfile::tempdir().unwrap();
    let log = common::start(data.path(), None).await;
    let answer = reqwest::get(format!("{}/ui/", log.base)).await.unwrap();
    assert_eq!(answer.status(), 404);
}
