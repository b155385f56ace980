//! The verification center (`web/`) in headless Chromium, driven by `playwright-core`
//! (`web/test/`), against real logs over 127.0.0.1: the demo stack's witnessed log serving the page
//! at `/ui/`; the same log behind a proxy that tampers with one entry in its tiles; behind one
//! that breaks the checkpoint's signature; and a fork of it (same key, other entries). The page
//! must show the right size, root, entries and witness policy for the honest log, and each
//! failure — never a pass, never a spinner. A receipt of a real answered chat is re-checked in
//! the page. Screenshots land in `web/test-results/`.
//!
//! Needs `npm install && npm run build` in `web/` (after `sdk/js`'s build) and Debian's
//! `chromium`; skipped loudly without them unless `ARCANE_REQUIRE_INTEROP=1` (as in CI).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arcane_client::{ChatEvent, Route};
use arcane_verifier::entry::{EntryBody, OhttpKeyConfig};
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};

mod common;
use common::{client_with, forked_log, node_tests, witnessed_options};

const CHROMIUM: &str = "/usr/bin/chromium";

fn web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

fn missing() -> Option<&'static str> {
    if !web().join("dist/index.html").is_file() {
        return Some("web/ is not built (npm install && npm run build in web/)");
    }
    if !web().join("node_modules/playwright-core").is_dir() {
        return Some("web/node_modules has no playwright-core (npm install in web/)");
    }
    if !Path::new(CHROMIUM).is_file() {
        return Some("no /usr/bin/chromium (Debian's chromium package)");
    }
    None
}

/// How a proxy in front of the log lies.
#[derive(Clone, Copy)]
enum Lie {
    /// One byte of the first entry in each entry bundle is changed.
    TileEntry,
    /// The log's signature on the checkpoint is changed.
    CheckpointSignature,
}

fn lie(how: Lie, path: &str, mut body: Vec<u8>) -> Vec<u8> {
    match how {
        Lie::TileEntry if path.starts_with("/tile/entries/") && body.len() > 8 => {
            // An entry bundle is 2-byte lengths, each followed by its entry: the byte after the
            // first length is inside the first entry.
            body[5] ^= 0x01;
            body
        }
        Lie::CheckpointSignature if path == "/checkpoint" => {
            let text = String::from_utf8(body).unwrap();
            // The first signature line is the log's: `— name base64(key id ‖ signature)`. The
            // 20th base64 character is inside the signature (the key id is the first 4 bytes).
            let line = text.find("\n\u{2014} ").unwrap() + 1;
            let at = line
                + text[line..]
                    .find('\n')
                    .map(|end| text[line..line + end].rfind(' ').unwrap())
                    .unwrap()
                + 20;
            let mut bytes = text.into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            bytes
        }
        _ => body,
    }
}

/// A server on 127.0.0.1 that forwards each `GET` to `upstream` (status, type and CORS header
/// kept, no redirect followed) and lies as `how` says. Returns its URL.
async fn lying_proxy(upstream: String, how: Lie) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let upstream = Arc::new(upstream);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            let path = uri.path().to_owned();
            let target = format!(
                "{upstream}{}",
                uri.path_and_query().map_or("/", |p| p.as_str())
            );
            let answer = client.get(target).send().await.unwrap();
            let status = answer.status().as_u16();
            let mut headers = axum::http::HeaderMap::new();
            for name in ["content-type", "access-control-allow-origin"] {
                if let Some(v) = answer.headers().get(name) {
                    headers.insert(name, v.to_str().unwrap().parse().unwrap());
                }
            }
            let body = lie(how, &path, answer.bytes().await.unwrap().to_vec());
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                headers,
                body,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// One verified chat through the stack; its receipt as one JSON line.
async fn answered_receipt(stack: &arcane_cli::demo::Stack) -> String {
    let mut client = client_with(stack, |t| t);
    let request = ChatCompletionRequest {
        model: String::new(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "Hello there".into(),
        }],
        max_tokens: Some(8),
        temperature: None,
        stream: Some(true),
        ..Default::default()
    };
    let mut answer = client.chat(request, Route::Cloud).await.unwrap();
    let mut receipt = None;
    while let Some(event) = answer.next().await {
        if let ChatEvent::Done(summary) = event.unwrap() {
            receipt = summary.receipt;
        }
    }
    serde_json::to_string(&receipt.expect("a receipt")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_center_shows_a_verified_log_and_every_failure_in_chromium() {
    if let Some(why) = missing() {
        assert!(
            std::env::var("ARCANE_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "{why}"
        );
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut options = witnessed_options(dir.path()).await;
    options.ui = Some(web().join("dist"));
    let stack = arcane_cli::demo::Stack::start(options, &|_| {})
        .await
        .unwrap();
    let page = stack.verification_center_url().unwrap();
    let receipt = answered_receipt(&stack).await;
    let tampered_tiles = lying_proxy(stack.log_url.clone(), Lie::TileEntry).await;
    let bad_signature = lying_proxy(stack.log_url.clone(), Lie::CheckpointSignature).await;
    // A fork: the same log key over other entries, one more than the honest log holds.
    let honest = arcane_log_client::LogClient::new(&stack.log_url).unwrap();
    let size = arcane_verifier::checkpoint::Checkpoint::parse_body(
        &arcane_verifier::note::Note::parse(honest.checkpoint().await.unwrap().as_bytes())
            .unwrap()
            .text,
    )
    .unwrap()
    .size;
    let fork = forked_log(&stack, dir.path(), size + 1).await;
    // And two OHTTP key sets valid at once for three days there (a rotation takes at most a day):
    // what serving some users their own keys looks like.
    let fork_client =
        arcane_log_client::LogClient::new(&format!("http://{}", fork.addr())).unwrap();
    for key_id in [7u8, 8] {
        arcane_log::publish::publish(
            &fork_client,
            &stack.publisher,
            &stack.log_key,
            EntryBody::OhttpKeys(OhttpKeyConfig {
                key_id,
                kem_id: 0x0020,
                public_key: vec![key_id; 32],
                symmetric: vec![(0x0001, 0x0001)],
            }),
            std::time::Duration::from_secs(3 * 86_400),
        )
        .await
        .unwrap();
    }
    let artifacts = web().join("test-results");
    std::fs::create_dir_all(&artifacts).unwrap();

    let fork_url = format!("http://{}", fork.addr());
    let env: [(&str, &std::ffi::OsStr); 9] = [
        ("ARCANE_VC_PAGE", page.as_ref()),
        ("ARCANE_VC_LOG", stack.log_url.as_ref()),
        ("ARCANE_VC_TAMPERED_TILES", tampered_tiles.as_ref()),
        ("ARCANE_VC_BAD_SIGNATURE", bad_signature.as_ref()),
        ("ARCANE_VC_FORK", fork_url.as_ref()),
        ("ARCANE_VC_RECEIPT", receipt.as_ref()),
        ("ARCANE_VC_ARTIFACTS", artifacts.as_os_str()),
        ("ARCANE_VC_CHROMIUM", CHROMIUM.as_ref()),
        ("NO_COLOR", "1".as_ref()),
    ];
    let report = node_tests(&web(), &env).await;
    for line in report.lines().filter(|l| l.contains("measured:")) {
        eprintln!("{}", line.trim());
    }
    assert!(report.contains("# pass 7"), "{report}");
    for shot in [
        "verified.png",
        "phone.png",
        "tampered-tile.png",
        "bad-signature.png",
        "split-view.png",
    ] {
        assert!(artifacts.join(shot).is_file(), "{shot} missing:\n{report}");
    }
    fork.shutdown().await;
    stack.shutdown().await;
}
