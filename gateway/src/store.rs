//! The token services' durable state through sqlx: a SQLite file by default, PostgreSQL when
//! given a `postgres://` URL, so that any number of gateway (or relay) replicas share one set of
//! spent tokens and quotas. Both back ends run the same SQL: every decision is one statement
//! (`INSERT … ON CONFLICT … DO UPDATE … WHERE … RETURNING`), atomic on its own, so no
//! transaction, lock or isolation level differs between them, and a decision is committed before
//! it is answered. One conformance suite (`gateway/tests/store_suite`) checks both.
//!
//! Tables (`migrations/gateway-sqlite`, `migrations/gateway-postgres`): accounts (API keys as
//! SHA-256 only), TGTs issued per account and period, OTT indices granted per TGT, spent tokens
//! per scope (`gateway` or `relay`), each row with the expiry after which it may be forgotten.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use arcane_db::{DbError, PoolLimits, WriteQueue};
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use crate::error::{GatewayError, Result};

/// Which database is behind a [`TokenStore`].
pub use arcane_db::Backend;

/// The outcome of [`TokenStore::spend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    /// First use: recorded (committed) now.
    Fresh,
    /// Spent before, here or at another replica on the same database.
    Again,
}

/// The token services' database.
#[derive(Clone, Debug)]
pub struct TokenStore {
    pool: AnyPool,
    backend: Backend,
    /// This process's writers, queued on SQLite.
    writes: WriteQueue,
    /// Spends waiting for the next group commit ([`commit_spends`]).
    spends: mpsc::Sender<PendingSpend>,
}

/// Most spends in one group commit (four parameters each: far below either back end's limit).
const SPEND_BATCH: usize = 128;

/// A spend waiting for its group's commit.
#[derive(Debug)]
struct PendingSpend {
    scope: String,
    nonce: [u8; 32],
    expires_at: u64,
    now: u64,
    reply: oneshot::Sender<std::result::Result<Spend, String>>,
}

/// The group-commit task: takes the spends waiting (at most [`SPEND_BATCH`]), records them in one
/// statement and answers each once it is committed; when the statement fails, every spend in it
/// is answered with the failure and none is recorded. Ends when every [`TokenStore`] is dropped.
async fn commit_spends(pool: AnyPool, writes: WriteQueue, mut queue: mpsc::Receiver<PendingSpend>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < SPEND_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let decided = {
            let _turn = writes.turn().await;
            let mut attempt = 1;
            loop {
                match insert_spends(&pool, &batch).await {
                    Err(e) if attempt < SPEND_ATTEMPTS && rolled_back_for_a_race(&e) => {
                        tracing::warn!(error = %e, attempt, "group commit of spent tokens rolled back; running it again");
                        attempt += 1;
                    }
                    decided => break decided,
                }
            }
        };
        match decided {
            Ok(fresh) => {
                for (spend, fresh) in batch.into_iter().zip(fresh) {
                    let _ = spend
                        .reply
                        .send(Ok(if fresh { Spend::Fresh } else { Spend::Again }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, spends = batch.len(), "recording spent tokens failed; none accepted");
                let why = e.to_string();
                for spend in batch {
                    let _ = spend.reply.send(Err(why.clone()));
                }
            }
        }
    }
}

/// How often a group commit is run when the database rolls it back for a race with another
/// transaction (nothing of it was recorded, so running it again is safe).
const SPEND_ATTEMPTS: u32 = 3;

/// Whether PostgreSQL rolled the statement back for a race with another transaction — a
/// deadlock (`40P01`) or a serialization failure (`40001`) — rather than for what it holds.
fn rolled_back_for_a_race(e: &GatewayError) -> bool {
    match e {
        GatewayError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

/// Records `batch` in one statement (`INSERT … ON CONFLICT DO NOTHING RETURNING`, committed on
/// its own) and says, for each spend, whether it is the fresh one: the first copy of a token in
/// the batch whose row the statement inserted. A token already recorded (by any process), or a
/// later copy of one in the same batch, is spent again.
async fn insert_spends(pool: &AnyPool, batch: &[PendingSpend]) -> Result<Vec<bool>> {
    let key = |s: &PendingSpend| (s.scope.clone(), hex::encode(s.nonce));
    let mut seen = HashSet::with_capacity(batch.len());
    let mut unique: Vec<&PendingSpend> = batch.iter().filter(|s| seen.insert(key(s))).collect();
    // Rows are inserted, and their keys locked, in this order. Every process sorts the same way,
    // so two group commits that share tokens wait for each other in turn: in arrival order,
    // one could hold a token the other waits for while waiting for one the other holds.
    unique.sort_unstable_by(|a, b| (&a.scope, &a.nonce).cmp(&(&b.scope, &b.nonce)));
    let rows: Vec<String> = (0..unique.len())
        .map(|i| {
            let p = 4 * i;
            format!("(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4)
        })
        .collect();
    // Audited: only placeholders are generated, never values.
    let sql = format!(
        "INSERT INTO spent_tokens (scope, nonce, spent_at, expires_at) VALUES {} \
         ON CONFLICT (scope, nonce) DO NOTHING RETURNING scope, nonce",
        rows.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for spend in &unique {
        query = query
            .bind(spend.scope.clone())
            .bind(hex::encode(spend.nonce))
            .bind(seconds(spend.now))
            .bind(seconds(spend.expires_at));
    }
    let mut inserted = HashSet::with_capacity(unique.len());
    for row in query.fetch_all(pool).await? {
        let scope: String = row.try_get("scope")?;
        let nonce: String = row.try_get("nonce")?;
        inserted.insert((scope, nonce));
    }
    // `remove`: only the first copy of an inserted token finds it.
    Ok(batch.iter().map(|s| inserted.remove(&key(s))).collect())
}

fn db_error(e: DbError) -> GatewayError {
    match e {
        DbError::Sqlx(e) => GatewayError::Database(e),
        other => GatewayError::Config(other.to_string()),
    }
}

/// Seconds as the database stores them (`BIGINT`); later than any key's expiry saturates.
fn seconds(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

impl TokenStore {
    /// Connects to `url` (`sqlite:PATH` or `postgres://…`; a SQLite file is created when
    /// missing) and runs its back end's migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let limits = PoolLimits {
            sqlite_connections: 4,
            postgres_connections: 16,
            acquire_timeout: Duration::from_secs(10),
        };
        let (pool, backend) = arcane_db::connect(url, limits).await.map_err(db_error)?;
        let migrated = match backend {
            Backend::Sqlite => {
                sqlx::migrate!("../migrations/gateway-sqlite")
                    .run(&pool)
                    .await
            }
            Backend::Postgres => {
                sqlx::migrate!("../migrations/gateway-postgres")
                    .run(&pool)
                    .await
            }
        };
        migrated.map_err(|e| GatewayError::Database(e.into()))?;
        let writes = WriteQueue::new(backend);
        let (spends, queue) = mpsc::channel(4 * SPEND_BATCH);
        tokio::spawn(commit_spends(pool.clone(), writes.clone(), queue));
        Ok(TokenStore {
            pool,
            backend,
            writes,
            spends,
        })
    }

    /// The SQLite file at `path` (created, mode 0600, when missing).
    pub async fn open_file(path: &Path) -> Result<Self> {
        Self::open(&arcane_db::sqlite_file_url(path).map_err(db_error)?).await
    }

    /// `url` when given, else the SQLite file `file` (what `--database` chooses between).
    pub async fn open_url_or_file(url: Option<&str>, file: &Path) -> Result<Self> {
        match url {
            Some(url) => Self::open(url).await,
            None => Self::open_file(file).await,
        }
    }

    /// Queues this process's writes on SQLite (nothing on PostgreSQL, where rows are locked).
    async fn writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.writes.turn().await
    }

    /// The pool, for an operator's (or a test's) own read-only queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The back end in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Records `nonce` as spent in `scope` until `expires_at` (its key's expiry): answered once
    /// the commit that holds it is durable (concurrent spends share one, [`commit_spends`]).
    pub async fn spend(
        &self,
        scope: &str,
        nonce: &[u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<Spend> {
        let (reply, answer) = oneshot::channel();
        let closed = || GatewayError::SpendNotRecorded("the token store is closed".into());
        self.spends
            .send(PendingSpend {
                scope: scope.to_owned(),
                nonce: *nonce,
                expires_at,
                now,
                reply,
            })
            .await
            .map_err(|_| closed())?;
        answer
            .await
            .map_err(|_| closed())?
            .map_err(GatewayError::SpendNotRecorded)
    }

    /// Forgets spent tokens whose key has expired (they are refused on their key alone now).
    pub async fn prune_spent(&self, now: u64) -> Result<u64> {
        let _writer = self.writer().await;
        Ok(
            sqlx::query("DELETE FROM spent_tokens WHERE expires_at <= $1")
                .bind(seconds(now))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Adds `account` with the SHA-256 (hex) of its API key.
    pub async fn add_account(&self, api_key_sha256: &str, account: &str) -> Result<()> {
        let _writer = self.writer().await;
        sqlx::query("INSERT INTO accounts (api_key_sha256, account) VALUES ($1, $2)")
            .bind(api_key_sha256)
            .bind(account)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The account whose API key has this SHA-256 (hex).
    pub async fn account(&self, api_key_sha256: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT account FROM accounts WHERE api_key_sha256 = $1")
            .bind(api_key_sha256)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Takes one of `account`'s `limit` TGTs of `period`; false when they are all taken.
    pub async fn reserve_tgt(&self, account: &str, period: i64, limit: u32) -> Result<bool> {
        if limit == 0 {
            // The upsert's first insert would take one regardless of the limit.
            return Ok(false);
        }
        let _writer = self.writer().await;
        let reserved = sqlx::query(
            "INSERT INTO tgt_budget (account, period, issued) VALUES ($1, $2, 1) \
             ON CONFLICT (account, period) DO UPDATE SET issued = tgt_budget.issued + 1 \
             WHERE tgt_budget.issued < $3",
        )
        .bind(account)
        .bind(period)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(reserved > 0)
    }

    /// Gives back a TGT [`reserve_tgt`](Self::reserve_tgt) took (its issuance failed).
    pub async fn refund_tgt(&self, account: &str, period: i64) -> Result<()> {
        let _writer = self.writer().await;
        sqlx::query(
            "UPDATE tgt_budget SET issued = issued - 1 \
             WHERE account = $1 AND period = $2 AND issued > 0",
        )
        .bind(account)
        .bind(period)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes up to `wanted` of the `limit` OTT indices of the TGT with `tgt_nonce`, whose key
    /// expires at `expires_at`; returns how many it took (0 when none are left). One statement:
    /// the allotment grows only while it stays within the limit, and `last_reserved` (computed
    /// from the row as it was) says by how much.
    pub async fn reserve_otts(
        &self,
        tgt_nonce: &[u8; 32],
        wanted: u32,
        limit: u32,
        expires_at: u64,
    ) -> Result<u32> {
        let (wanted, limit) = (i64::from(wanted), i64::from(limit));
        let first = wanted.min(limit);
        if first == 0 {
            return Ok(0);
        }
        let _writer = self.writer().await;
        let row = sqlx::query(
            "INSERT INTO ott_allotment (tgt_nonce, granted, last_reserved, expires_at) \
             VALUES ($1, $2, $2, $4) \
             ON CONFLICT (tgt_nonce) DO UPDATE SET \
               granted = CASE WHEN ott_allotment.granted + $3 > $5 THEN $5 \
                              ELSE ott_allotment.granted + $3 END, \
               last_reserved = CASE WHEN ott_allotment.granted + $3 > $5 \
                                    THEN $5 - ott_allotment.granted ELSE $3 END \
             WHERE ott_allotment.granted < $5 \
             RETURNING last_reserved",
        )
        .bind(hex::encode(tgt_nonce))
        .bind(first)
        .bind(wanted)
        .bind(seconds(expires_at))
        .bind(limit)
        .fetch_optional(&self.pool)
        .await?;
        let reserved: i64 = match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        Ok(u32::try_from(reserved.clamp(0, limit)).unwrap_or(0))
    }

    /// Gives back `n` OTT indices [`reserve_otts`](Self::reserve_otts) took (signing failed).
    pub async fn refund_otts(&self, tgt_nonce: &[u8; 32], n: u32) -> Result<()> {
        let _writer = self.writer().await;
        sqlx::query(
            "UPDATE ott_allotment SET granted = CASE WHEN granted > $1 THEN granted - $1 ELSE 0 END \
             WHERE tgt_nonce = $2",
        )
        .bind(i64::from(n))
        .bind(hex::encode(tgt_nonce))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How many OTT indices the TGT with `tgt_nonce` has been granted.
    pub async fn otts_granted(&self, tgt_nonce: &[u8; 32]) -> Result<u32> {
        let row = sqlx::query("SELECT granted FROM ott_allotment WHERE tgt_nonce = $1")
            .bind(hex::encode(tgt_nonce))
            .fetch_optional(&self.pool)
            .await?;
        let granted: i64 = match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        Ok(u32::try_from(granted.max(0)).unwrap_or(u32::MAX))
    }

    /// Forgets what no longer matters: spent tokens and OTT allotments whose key has expired,
    /// TGT budgets of periods before `period`. Returns the rows removed.
    pub async fn prune(&self, now: u64, period: i64) -> Result<u64> {
        let mut removed = self.prune_spent(now).await?;
        let _writer = self.writer().await;
        removed += sqlx::query("DELETE FROM ott_allotment WHERE expires_at <= $1")
            .bind(seconds(now))
            .execute(&self.pool)
            .await?
            .rows_affected();
        removed += sqlx::query("DELETE FROM tgt_budget WHERE period < $1")
            .bind(period)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed)
    }
}
