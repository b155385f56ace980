//! The verification center's static files at `/ui/`, and the header that lets a page hosted
//! anywhere read this log.
//!
//! The page trusts nothing the server says beyond its own files: it verifies every checkpoint,
//! tile and proof itself against a log key the user sees and can change. The files are read once
//! at start (a built folder, at most [`MAX_UI_BYTES`]) into memory; only those paths are served, so
//! no request path ever reaches the file system.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::error::{LogError, Result};

/// Most bytes of the UI folder read at start.
pub const MAX_UI_BYTES: u64 = 32 * 1024 * 1024;

/// What the page may do: its own scripts (and WebAssembly compiled from them), its own styles
/// and images, and connections to whichever log the user configures; nothing else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self' data:; connect-src *; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One file of the page.
struct UiFile {
    bytes: axum::body::Bytes,
    content_type: &'static str,
}

/// The page's files by path under `/ui/`.
#[derive(Clone)]
pub struct UiFiles(Arc<BTreeMap<String, UiFile>>);

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

impl UiFiles {
    /// Reads the built page in `dir` (it must hold `index.html`); symbolic links and files
    /// whose names are not plain UTF-8 are skipped.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut files = BTreeMap::new();
        let mut total = 0u64;
        let mut folders = vec![(dir.to_path_buf(), String::new())];
        while let Some((folder, prefix)) = folders.pop() {
            let listing = std::fs::read_dir(&folder).map_err(|e| LogError::io(&folder, e))?;
            for item in listing {
                let item = item.map_err(|e| LogError::io(&folder, e))?;
                let kind = item.file_type().map_err(|e| LogError::io(item.path(), e))?;
                let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let path = format!("{prefix}{name}");
                if kind.is_dir() {
                    folders.push((item.path(), format!("{path}/")));
                } else if kind.is_file() {
                    total += item
                        .metadata()
                        .map_err(|e| LogError::io(item.path(), e))?
                        .len();
                    if total > MAX_UI_BYTES {
                        return Err(LogError::Config(format!(
                            "{}: the page is over {MAX_UI_BYTES} bytes",
                            dir.display()
                        )));
                    }
                    let bytes =
                        std::fs::read(item.path()).map_err(|e| LogError::io(item.path(), e))?;
                    files.insert(
                        path.clone(),
                        UiFile {
                            bytes: bytes.into(),
                            content_type: content_type(&path),
                        },
                    );
                }
            }
        }
        if !files.contains_key("index.html") {
            return Err(LogError::Config(format!(
                "{}: no index.html (build the page with `npm run build` in web/)",
                dir.display()
            )));
        }
        Ok(UiFiles(Arc::new(files)))
    }

    fn response(&self, path: &str) -> Response {
        let path = if path.is_empty() { "index.html" } else { path };
        let Some(file) = self.0.get(path) else {
            return LogError::NotFound(format!("no page file {path}")).into_response();
        };
        let mut response = Response::new(Body::from(file.bytes.clone()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(file.content_type),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    /// `/ui` (redirected to `/ui/`) and `/ui/{path}`.
    pub fn routes<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let index = self.clone();
        Router::new()
            .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
            .route("/ui/", get(move || async move { index.response("") }))
            .route(
                "/ui/{*path}",
                get(
                    move |axum::extract::Path(path): axum::extract::Path<String>| async move {
                        self.response(&path)
                    },
                ),
            )
    }
}

/// Every log read is public: a `GET` (or `HEAD`) answer may be read by a page from any origin
/// (no credentials are ever involved). Writes are not opened to pages.
pub async fn readable_anywhere(request: Request, next: Next) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let mut response = next.run(request).await;
    if read {
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn loads_a_folder_and_serves_only_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("assets/app.js"), "1").unwrap();
        let ui = UiFiles::load(dir.path()).unwrap();
        let page = ui.response("");
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("'wasm-unsafe-eval'")
        );
        assert_eq!(
            ui.response("assets/app.js").headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        for outside in ["../Cargo.toml", "assets/../../x", "/etc/passwd", "assets"] {
            assert_eq!(
                ui.response(outside).status(),
                StatusCode::NOT_FOUND,
                "{outside}"
            );
        }
    }

    #[test]
    fn a_folder_without_a_page_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            UiFiles::load(dir.path()),
            Err(LogError::Config(_))
        ));
    }
}
