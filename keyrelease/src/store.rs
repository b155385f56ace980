//! The model keys, one per model, named by the SHA-256 of the model's plaintext: a SQLite file
//! (created with mode 0600) by default, or PostgreSQL (`migrations/keyrelease-*`). A key is
//! stored before anything is sealed under it, and the first key stored for a model stays its
//! key: two sealings of one model, even at once in two processes, use the same key.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arcane_db::{Backend, PoolLimits, WriteQueue};
use arcane_verifier::model_key::{ChallengeSecret, MAX_RECORDS_PER_READ, ReleaseRecord};
use arcane_verifier::sealed_model::ModelKey;
use sqlx::{AnyPool, Row};
use zeroize::Zeroizing;

use crate::error::{KeyReleaseError, Result};

/// The key release service's database.
#[derive(Clone, Debug)]
pub struct KeyStore {
    pool: AnyPool,
    backend: Backend,
    writes: WriteQueue,
}

impl KeyStore {
    /// Connects to `url` (`sqlite:…` or `postgres://…`) and runs its back end's migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let limits = PoolLimits {
            sqlite_connections: 2,
            postgres_connections: 4,
            acquire_timeout: Duration::from_secs(10),
        };
        let (pool, backend) = arcane_db::connect(url, limits).await?;
        let migrated = match backend {
            Backend::Sqlite => {
                sqlx::migrate!("../migrations/keyrelease-sqlite")
                    .run(&pool)
                    .await
            }
            Backend::Postgres => {
                sqlx::migrate!("../migrations/keyrelease-postgres")
                    .run(&pool)
                    .await
            }
        };
        migrated.map_err(|e| KeyReleaseError::Database(e.into()))?;
        Ok(KeyStore {
            pool,
            backend,
            writes: WriteQueue::new(backend),
        })
    }

    /// The SQLite file at `path` (created, mode 0600, when missing).
    pub async fn open_file(path: &Path) -> Result<Self> {
        Self::open(&arcane_db::sqlite_file_url(path)?).await
    }

    /// The back end in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The key of the model whose plaintext has SHA-256 `model_sha256`, if it has one.
    pub async fn key(&self, model_sha256: &[u8; 32]) -> Result<Option<ModelKey>> {
        let name = hex::encode(model_sha256);
        let row = sqlx::query("SELECT model_key FROM model_keys WHERE model_sha256 = $1")
            .bind(&name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| decode_key(&name, Zeroizing::new(row.try_get("model_key")?)))
            .transpose()
    }

    /// The model's key: the one stored, or a new one stored now (committed before it is
    /// returned). When two callers race, both get the key that was stored first.
    pub async fn key_or_new(&self, model_sha256: &[u8; 32], now: u64) -> Result<ModelKey> {
        if let Some(key) = self.key(model_sha256).await? {
            return Ok(key);
        }
        let name = hex::encode(model_sha256);
        let fresh = ModelKey::generate();
        let text = Zeroizing::new(hex::encode(fresh.as_bytes()));
        {
            let _turn = self.writes.turn().await;
            sqlx::query(
                "INSERT INTO model_keys (model_sha256, model_key, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (model_sha256) DO NOTHING",
            )
            .bind(&name)
            .bind(text.as_str())
            .bind(now.min(i64::MAX as u64) as i64)
            .execute(&self.pool)
            .await?;
        }
        self.key(model_sha256)
            .await?
            .ok_or_else(|| KeyReleaseError::CorruptKey { model_sha256: name })
    }
}

impl KeyStore {
    /// The secret challenges are authenticated with: the one stored, or a new one stored now.
    pub async fn challenge_secret(&self) -> Result<ChallengeSecret> {
        let read = || async {
            let row = sqlx::query("SELECT secret FROM service_secrets WHERE name = 'challenge'")
                .fetch_optional(&self.pool)
                .await?;
            row.map(|row| {
                let text = Zeroizing::new(row.try_get::<String, _>("secret")?);
                let bytes = Zeroizing::new(
                    hex::decode(text.as_str()).map_err(|_| KeyReleaseError::CorruptSecret)?,
                );
                ChallengeSecret::from_bytes(&bytes).map_err(|_| KeyReleaseError::CorruptSecret)
            })
            .transpose()
        };
        if let Some(secret) = read().await? {
            return Ok(secret);
        }
        let fresh = ChallengeSecret::generate();
        let text = Zeroizing::new(hex::encode(fresh.as_bytes()));
        {
            let _turn = self.writes.turn().await;
            sqlx::query(
                "INSERT INTO service_secrets (name, secret) VALUES ('challenge', $1) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(text.as_str())
            .execute(&self.pool)
            .await?;
        }
        read().await?.ok_or(KeyReleaseError::CorruptSecret)
    }

    /// Appends `record` (its `seq` is ignored) and returns its place, committed before it
    /// returns. A challenge already in the record is refused as
    /// [`KeyReleaseError::ChallengeUsed`]: an attestation answers one challenge once, at one
    /// replica or another.
    pub async fn record_release(&self, record: &ReleaseRecord) -> Result<u64> {
        let _turn = self.writes.turn().await;
        let row = sqlx::query(
            "INSERT INTO key_releases (challenge, released_at_ms, model_sha256, pcr0, \
             document_sha256, release_leaf_hash, access_leaf_hash, request) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (challenge) DO NOTHING \
             RETURNING seq",
        )
        .bind(&record.challenge)
        .bind(record.released_at_ms.min(i64::MAX as u64) as i64)
        .bind(&record.model_sha256)
        .bind(&record.pcr0)
        .bind(&record.document_sha256)
        .bind(&record.release_leaf_hash)
        .bind(&record.access_leaf_hash)
        .bind(&record.request)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or(KeyReleaseError::ChallengeUsed)?;
        Ok(row.try_get::<i64, _>("seq")?.max(0) as u64)
    }

    /// The records after `after` (by `seq`), oldest first, at most `limit` (capped at
    /// [`MAX_RECORDS_PER_READ`]).
    pub async fn releases(&self, after: u64, limit: u32) -> Result<Vec<ReleaseRecord>> {
        let rows = sqlx::query(
            "SELECT seq, released_at_ms, challenge, model_sha256, pcr0, document_sha256, \
             release_leaf_hash, access_leaf_hash, request FROM key_releases \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after.min(i64::MAX as u64) as i64)
        .bind(i64::from(limit.clamp(1, MAX_RECORDS_PER_READ)))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ReleaseRecord {
                    seq: row.try_get::<i64, _>("seq")?.max(0) as u64,
                    released_at_ms: row.try_get::<i64, _>("released_at_ms")?.max(0) as u64,
                    challenge: row.try_get("challenge")?,
                    model_sha256: row.try_get("model_sha256")?,
                    pcr0: row.try_get("pcr0")?,
                    document_sha256: row.try_get("document_sha256")?,
                    release_leaf_hash: row.try_get("release_leaf_hash")?,
                    access_leaf_hash: row.try_get("access_leaf_hash")?,
                    request: row.try_get("request")?,
                })
            })
            .collect()
    }
}

fn decode_key(model_sha256: &str, text: Zeroizing<String>) -> Result<ModelKey> {
    let corrupt = || KeyReleaseError::CorruptKey {
        model_sha256: model_sha256.to_owned(),
    };
    let bytes = Zeroizing::new(hex::decode(text.as_str()).map_err(|_| corrupt())?);
    ModelKey::from_bytes(&bytes).map_err(|_| corrupt())
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
