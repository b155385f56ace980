//! # arcane-db
//!
//! How every stateful arcane-aip service (the log, the gateway and relay's token store) opens
//! its database through sqlx, so that each back end is set up one way everywhere:
//! - **SQLite**, embedded, the default: one file (created when missing, mode 0600), WAL, a full
//!   fsync on every commit, a busy timeout; one process writes, and [`WriteQueue`] queues that
//!   process's writers so the database lock is handed over at once rather than slept for;
//! - **PostgreSQL** (`postgres://…`), when several replicas share one database: rows are locked
//!   by the statements themselves, and [`WriteQueue`] does nothing.
//!
//! The URL chooses the back end ([`Backend::of_url`]); each service runs its own migrations for
//! it on the pool [`connect`] returns.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use thiserror::Error;

/// Why a database could not be opened.
#[derive(Debug, Error)]
pub enum DbError {
    /// The URL names no back end this project runs on.
    #[error("the database URL must start with sqlite: or postgres://")]
    UnknownScheme,
    /// The SQLite file could not be created.
    #[error("database file {path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What failed.
        why: String,
    },
    /// Connecting failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

/// Which database is behind a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (WAL, full fsync on commit): one process.
    Sqlite,
    /// A PostgreSQL server: any number of processes.
    Postgres,
}

impl Backend {
    /// The back end `url` names: `sqlite:…`, or `postgres://…` / `postgresql://…`.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else {
            None
        }
    }
}

/// The pool's size and patience, per back end.
#[derive(Clone, Copy, Debug)]
pub struct PoolLimits {
    /// Connections to a SQLite file (readers; one writes at a time).
    pub sqlite_connections: u32,
    /// Connections to PostgreSQL, per process.
    pub postgres_connections: u32,
    /// How long a query waits for a free connection before it fails.
    pub acquire_timeout: Duration,
}

/// Connects to `url`; on SQLite every connection gets WAL, `synchronous = FULL` (a commit is
/// on disk when it returns) and a 10 s busy timeout. Migrations are the caller's.
pub async fn connect(url: &str, limits: PoolLimits) -> Result<(AnyPool, Backend), DbError> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(url).ok_or(DbError::UnknownScheme)?;
    let pool = AnyPoolOptions::new()
        .max_connections(match backend {
            Backend::Sqlite => limits.sqlite_connections,
            Backend::Postgres => limits.postgres_connections,
        })
        .acquire_timeout(limits.acquire_timeout)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok((pool, backend))
}

/// The URL of the SQLite file at `path`, which is created first (mode 0600: only this service's
/// user reads what it stores) when missing; an existing file is kept as it is.
pub fn sqlite_file_url(path: &Path) -> Result<String, DbError> {
    let failed = |why: String| DbError::File {
        path: path.display().to_string(),
        why,
    };
    let text = path.to_str().ok_or_else(|| failed("not UTF-8".into()))?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(failed(e.to_string())),
    }
    Ok(format!("sqlite://{text}?mode=rwc"))
}

/// Queues this process's writers on SQLite, which allows one writer at a time and makes waiting
/// writers sleep in growing steps; on PostgreSQL it hands out nothing.
#[derive(Clone, Debug)]
pub struct WriteQueue {
    backend: Backend,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl WriteQueue {
    /// A queue for a pool on `backend`.
    pub fn new(backend: Backend) -> Self {
        WriteQueue {
            backend,
            lock: Arc::default(),
        }
    }

    /// Waits for this process's turn to write (SQLite); `None` at once on PostgreSQL.
    pub async fn turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.lock.lock().await),
            Backend::Postgres => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn urls_name_their_back_end() {
        assert_eq!(Backend::of_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgres://u@h/d"), Some(Backend::Postgres));
        assert_eq!(
            Backend::of_url("postgresql://u@h/d"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("mysql://u@h/d"), None);
        assert_eq!(Backend::of_url("/var/lib/x.db"), None);
    }

    #[tokio::test]
    async fn a_new_sqlite_file_is_private_durable_and_kept_when_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let url = sqlite_file_url(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let limits = PoolLimits {
            sqlite_connections: 2,
            postgres_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        };
        let (pool, backend) = connect(&url, limits).await.unwrap();
        assert_eq!(backend, Backend::Sqlite);
        let row: (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(row.0, "wal");
        let row: (i64,) = sqlx::query_as("PRAGMA synchronous")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(row.0, 2, "FULL");
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        // Opened again: the same file, its table still there.
        assert_eq!(sqlite_file_url(&path).unwrap(), url);
        let (pool, _) = connect(&url, limits).await.unwrap();
        sqlx::query("SELECT x FROM t")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert!(matches!(
            connect("mysql://h/d", limits).await,
            Err(DbError::UnknownScheme)
        ));
    }
}
