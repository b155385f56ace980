//! `arcane-audit witness serve`: a C2SP tlog-witness. For every log it witnesses (by verifier
//! key) it keeps, in SQLite, the latest checkpoint it cosigned; `POST /add-checkpoint` is decided
//! by `arcane_verifier::witness::decide` and the new state is committed before the cosignature is
//! returned. Checking and recording happen under one lock, so two requests cannot roll the state
//! back.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use arcane_verifier::Hash;
use arcane_verifier::note::{NoteSigner, VerifierKey};
use arcane_verifier::witness::{AddCheckpoint, Refusal, cosignature_response, decide, origin_of};

struct Witness {
    key: NoteSigner,
    logs: Vec<VerifierKey>,
    db: SqlitePool,
    /// Check-and-record is atomic under this lock.
    lock: tokio::sync::Mutex<()>,
}

fn refusal(r: &Refusal) -> Response {
    let status = StatusCode::from_u16(r.status()).expect("valid status");
    match r {
        Refusal::Conflict { latest } => {
            let mut response = (status, format!("{latest}\n")).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/x.tlog.size"),
            );
            response
        }
        Refusal::BadRequest(why) => (status, format!("{why}\n")).into_response(),
        other => (status, format!("{other:?}\n")).into_response(),
    }
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let request = match AddCheckpoint::parse(&body) {
        Ok(r) => r,
        Err(e) => return refusal(&Refusal::BadRequest(e.to_string())),
    };
    let Some(origin) = origin_of(&request) else {
        return refusal(&Refusal::BadRequest("no origin".into()));
    };
    let Some(log_key) = w.logs.iter().find(|k| k.name() == origin) else {
        return refusal(&Refusal::UnknownLog);
    };
    let _guard = w.lock.lock().await;
    let row = match sqlx::query("SELECT size, root FROM witnessed WHERE origin = ?1")
        .bind(&origin)
        .fetch_optional(&w.db)
        .await
    {
        Ok(row) => row,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    // A stored state that does not read back is an error, never "nothing cosigned yet".
    let latest = match row.map(|r| {
        let size: i64 = r.get("size");
        let root: Vec<u8> = r.get("root");
        Hash::from_slice(&root)
            .ok()
            .zip(u64::try_from(size).ok())
            .map(|(root, size)| (size, root))
    }) {
        None => None,
        Some(Some(state)) => Some(state),
        Some(None) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let checkpoint = match decide(&request, log_key, latest) {
        Ok(c) => c,
        Err(r) => return refusal(&r),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let Ok(body) = cosignature_response(&w.key, &checkpoint, now) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let stored = sqlx::query(
        "INSERT INTO witnessed (origin, size, root, note) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, note = excluded.note",
    )
    .bind(&origin)
    .bind(checkpoint.size as i64)
    .bind(checkpoint.root.0.to_vec())
    .bind(&request.checkpoint)
    .execute(&w.db)
    .await;
    if stored.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (StatusCode::OK, body).into_response()
}

/// Runs the witness until the process is stopped. `ready` receives the bound address.
pub async fn serve(
    listen: SocketAddr,
    key: NoteSigner,
    logs: Vec<VerifierKey>,
    state: &Path,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    std::fs::create_dir_all(state).map_err(|e| format!("{}: {e}", state.display()))?;
    let options = SqliteConnectOptions::new()
        .filename(state.join("witness.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
    let db = SqlitePool::connect_with(options)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query("CREATE TABLE IF NOT EXISTS witnessed (origin TEXT PRIMARY KEY NOT NULL, size INTEGER NOT NULL, root BLOB NOT NULL, note TEXT NOT NULL)")
        .execute(&db)
        .await
        .map_err(|e| e.to_string())?;
    let witness = Arc::new(Witness {
        key,
        logs,
        db,
        lock: tokio::sync::Mutex::new(()),
    });
    let app = axum::Router::new()
        .route("/add-checkpoint", axum::routing::post(add_checkpoint))
        .layer(axum::extract::DefaultBodyLimit::max(128 * 1024))
        .with_state(witness);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("{listen}: {e}"))?;
    ready(listener.local_addr().map_err(|e| e.to_string())?);
    arcane_serve::serve(
        listener,
        app,
        arcane_serve::ServeLimits::default(),
        std::future::pending(),
    )
    .await
    .map_err(|e| e.to_string())
}
