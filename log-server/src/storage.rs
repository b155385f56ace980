//! Durable log state through sqlx: a SQLite file by default, PostgreSQL when given a `postgres://`
//! URL. Both back ends run the same SQL (numbered `$n` parameters, `ON CONFLICT`, `RETURNING`,
//! `UPDATE … FROM (VALUES …)`), so one implementation serves both and one test suite checks both.

use std::collections::HashSet;
use std::time::Duration;

use arcane_db::{DbError, PoolLimits, WriteQueue};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::error::{LogError, Result};
use arcane_verifier::Hash;

/// Which database is behind the pool.
pub use arcane_db::Backend;

/// The log's database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// This process's write transactions, queued on SQLite.
    writes: WriteQueue,
}

/// Which pending entries a batch integrates.
#[derive(Clone, Copy, Debug)]
pub enum Selection<'a> {
    /// Up to this many, in submission order (the log's own sequencer).
    Oldest(usize),
    /// Exactly these, in this order (the order Trillian sequenced them in); each must be pending.
    InOrder(&'a [Hash]),
}

/// A new entry to store.
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// RFC 6962 leaf hash of `data`.
    pub leaf_hash: Hash,
    /// The entry bytes.
    pub data: Vec<u8>,
    /// The publisher's verifier key text.
    pub publisher: String,
    /// For typed entries, what lookups index.
    pub typed: Option<TypedColumns>,
}

/// The indexed fields of a typed entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypedColumns {
    /// Kind code.
    pub kind: u8,
    /// Start of validity (seconds).
    pub not_before: u64,
    /// End of validity (seconds, exclusive).
    pub not_after: u64,
    /// PCR0 of a release.
    pub pcr0: Option<[u8; 48]>,
}

/// What happened to a submitted entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its index, once integrated.
    pub index: Option<u64>,
    /// Whether an identical entry was already there.
    pub duplicate: bool,
}

/// A stored, signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The signed note text.
    pub note: String,
}

/// An entry waiting to be integrated.
#[derive(Clone, Debug)]
pub struct PendingEntry {
    /// Submission order.
    pub seq: i64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// When it was acknowledged (ms since the epoch).
    pub submitted_ms: i64,
}

/// One integrated entry, read back.
#[derive(Clone, Debug)]
pub struct EntryRecord {
    /// Leaf index.
    pub index: u64,
    /// Leaf hash.
    pub leaf_hash: Hash,
    /// Entry bytes.
    pub data: Vec<u8>,
    /// The publisher's verifier key text.
    pub publisher: String,
}

/// What the sequencer writes for one batch, atomically.
#[derive(Clone, Debug)]
pub struct BatchWrite {
    /// Tiles to create or widen: (tile level, tile index, concatenated hashes).
    pub tiles: Vec<(u8, u64, Vec<u8>)>,
    /// The new checkpoint.
    pub checkpoint: StoredCheckpoint,
}

/// Why a batch was not integrated.
#[derive(Debug)]
pub enum BatchOutcome {
    /// Nothing was pending.
    Empty,
    /// This process no longer holds the sequencer lease.
    LostLease,
    /// The stored tree size differs from the sequencer's in-memory state.
    Diverged {
        /// Size found in the database.
        stored: u64,
    },
    /// The batch was committed.
    Committed {
        /// Entries integrated, in order.
        entries: Vec<PendingEntry>,
        /// The checkpoint now published.
        checkpoint: StoredCheckpoint,
    },
}

/// Statement sizes are drawn from a few fixed row counts, so that prepared statements are reused
/// from sqlx's cache instead of being parsed again for every batch size.
fn statement_chunk(remaining: usize) -> usize {
    [256, 64, 16, 4, 1]
        .into_iter()
        .find(|&n| n <= remaining)
        .unwrap_or(1)
}

/// `($a, $b, …), (…)` for `rows` rows of `columns` placeholders, numbered from `first`.
fn placeholders(rows: usize, columns: usize, first: usize) -> String {
    let mut out = String::new();
    for row in 0..rows {
        if row > 0 {
            out.push(',');
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push(',');
            }
            out.push_str(&format!("${}", first + row * columns + column));
        }
        out.push(')');
    }
    out
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| LogError::BadRequest(format!("{v} is out of range")))
}

fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| LogError::Corrupt(format!("negative value {v} in database")))
}

fn hash_column(row: &AnyRow, column: &str) -> Result<Hash> {
    let bytes: Vec<u8> = row.try_get(column)?;
    Hash::from_slice(&bytes).map_err(|_| LogError::Corrupt(format!("{column} is not 32 bytes")))
}

fn entry_from_row(row: &AnyRow) -> Result<EntryRecord> {
    Ok(EntryRecord {
        index: to_u64(row.try_get("idx")?)?,
        leaf_hash: hash_column(row, "leaf_hash")?,
        data: row.try_get("data")?,
        publisher: row.try_get("publisher")?,
    })
}

fn checkpoint_from_row(row: &AnyRow) -> Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: to_u64(row.try_get("size")?)?,
        root: hash_column(row, "root")?,
        note: row.try_get("note")?,
    })
}

impl Store {
    /// Connects (creating a SQLite file if needed) and runs the migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let limits = PoolLimits {
            sqlite_connections: 8,
            postgres_connections: 16,
            acquire_timeout: Duration::from_secs(30),
        };
        let (pool, backend) = arcane_db::connect(url, limits).await.map_err(|e| match e {
            DbError::Sqlx(e) => LogError::from(e),
            other => LogError::Config(other.to_string()),
        })?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("../migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("../migrations/postgres").run(&pool).await?,
        }
        Ok(Store {
            pool,
            backend,
            writes: WriteQueue::new(backend),
        })
    }

    /// Serialises this process's write transactions on SQLite (a no-op on PostgreSQL).
    async fn writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.writes.turn().await
    }

    /// The back end in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Reads a value from the log's metadata.
    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM log_meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Sets a metadata value once; returns the value that is stored afterwards.
    pub async fn meta_init(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO log_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        self.meta(key)
            .await?
            .ok_or_else(|| LogError::Corrupt(format!("metadata {key} vanished")))
    }

    /// Stores new entries in one transaction (group commit). Returns, per entry, its index if it
    /// was already integrated and whether it was a duplicate. When this returns, every entry is
    /// durably stored.
    pub async fn submit_batch(&self, entries: &[NewEntry], now_ms: i64) -> Result<Vec<Stored>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let _writer = self.writer().await;
        let mut tx = self.pool.begin().await?;
        let mut inserted: HashSet<Hash> = HashSet::with_capacity(entries.len());
        // Rows are inserted, and their keys locked, in leaf-hash order. Every process sorts the
        // same way, so two group commits that share entries wait for each other in turn: in
        // arrival order, one could hold an entry the other waits for while waiting for one the
        // other holds (PostgreSQL then aborts one with a deadlock).
        let mut in_order: Vec<&NewEntry> = entries.iter().collect();
        in_order.sort_unstable_by_key(|e| e.leaf_hash.0);
        let mut rest = &in_order[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(statement_chunk(rest.len()));
            rest = tail;
            let rows = placeholders(chunk.len(), 8, 1);
            // Audited: only placeholders are generated, never values.
            let sql = format!(
                "INSERT INTO entries (leaf_hash, data, publisher, submitted_ms, kind, not_before, \
                 not_after, pcr0) VALUES {rows} ON CONFLICT (leaf_hash) DO NOTHING RETURNING leaf_hash"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for entry in chunk {
                query = query
                    .bind(entry.leaf_hash.0.to_vec())
                    .bind(entry.data.clone())
                    .bind(entry.publisher.clone())
                    .bind(now_ms);
                let typed = entry.typed.as_ref();
                query = query
                    .bind(typed.map(|t| i64::from(t.kind)))
                    .bind(typed.map(|t| to_i64(t.not_before)).transpose()?)
                    .bind(typed.map(|t| to_i64(t.not_after)).transpose()?)
                    .bind(typed.and_then(|t| t.pcr0.map(|p| p.to_vec())));
            }
            for row in query.fetch_all(&mut *tx).await? {
                inserted.insert(hash_column(&row, "leaf_hash")?);
            }
        }
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            // The first copy of a leaf inserted by this batch is new; any later copy is not.
            if inserted.remove(&entry.leaf_hash) {
                out.push(Stored {
                    index: None,
                    duplicate: false,
                });
            } else {
                let row = sqlx::query("SELECT idx FROM entries WHERE leaf_hash = $1")
                    .bind(entry.leaf_hash.0.to_vec())
                    .fetch_one(&mut *tx)
                    .await?;
                let index: Option<i64> = row.try_get("idx")?;
                out.push(Stored {
                    index: index.map(to_u64).transpose()?,
                    duplicate: true,
                });
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Up to `limit` pending entries, oldest first: leaf hash and bytes.
    pub async fn pending_entries(&self, limit: usize) -> Result<Vec<(Hash, Vec<u8>)>> {
        sqlx::query("SELECT leaf_hash, data FROM entries WHERE idx IS NULL ORDER BY seq LIMIT $1")
            .bind(to_i64(limit as u64)?)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((hash_column(row, "leaf_hash")?, row.try_get("data")?)))
            .collect()
    }

    /// Finds an entry by leaf hash: `None` if unknown, `Some(None)` if pending.
    pub async fn lookup(&self, leaf_hash: &Hash) -> Result<Option<Option<u64>>> {
        let row = sqlx::query("SELECT idx FROM entries WHERE leaf_hash = $1")
            .bind(leaf_hash.0.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let index: Option<i64> = row.try_get("idx")?;
                Ok(Some(index.map(to_u64).transpose()?))
            }
        }
    }

    /// The newest signed checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let row =
            sqlx::query("SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    /// The checkpoint signed for one size, if any.
    pub async fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>> {
        let row = sqlx::query("SELECT size, root, note FROM checkpoints WHERE size = $1")
            .bind(to_i64(size)?)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    /// Replaces the note of a stored checkpoint with a cosigned one of the same size and root.
    pub async fn set_checkpoint_note(&self, size: u64, root: &Hash, note: &str) -> Result<()> {
        let _writer = self.writer().await;
        let updated = sqlx::query("UPDATE checkpoints SET note = $1 WHERE size = $2 AND root = $3")
            .bind(note)
            .bind(to_i64(size)?)
            .bind(root.0.to_vec())
            .execute(&self.pool)
            .await?;
        if updated.rows_affected() != 1 {
            return Err(LogError::Corrupt(format!(
                "no checkpoint of size {size} with that root"
            )));
        }
        Ok(())
    }

    /// Stored checkpoints below `below`, newest first, at most `limit`.
    pub async fn checkpoints_before(
        &self,
        below: u64,
        limit: u64,
    ) -> Result<Vec<StoredCheckpoint>> {
        let rows = sqlx::query(
            "SELECT size, root, note FROM checkpoints WHERE size < $1 ORDER BY size DESC LIMIT $2",
        )
        .bind(to_i64(below)?)
        .bind(to_i64(limit)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    /// Every stored checkpoint, oldest first (for audits and tests).
    pub async fn all_checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let rows = sqlx::query("SELECT size, root, note FROM checkpoints ORDER BY size")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    /// Stores the checkpoint of the empty tree, unless a checkpoint exists. Returns the newest.
    pub async fn init_empty_checkpoint(
        &self,
        empty: &StoredCheckpoint,
        now_ms: i64,
    ) -> Result<StoredCheckpoint> {
        sqlx::query(
            "INSERT INTO checkpoints (size, root, note, created_ms) VALUES (0, $1, $2, $3) \
             ON CONFLICT (size) DO NOTHING",
        )
        .bind(empty.root.0.to_vec())
        .bind(empty.note.clone())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        self.latest_checkpoint()
            .await?
            .ok_or_else(|| LogError::Corrupt("no checkpoint after initialisation".into()))
    }

    /// The stored bytes of a hash tile (its current width).
    pub async fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT hashes FROM tiles WHERE level = $1 AND tile_index = $2")
            .bind(i64::from(level))
            .bind(to_i64(index)?)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("hashes")).transpose()?)
    }

    /// Integrated entries `[start, end)`, in order.
    pub async fn entries_range(&self, start: u64, end: u64) -> Result<Vec<EntryRecord>> {
        let rows = sqlx::query(
            "SELECT idx, leaf_hash, data, publisher FROM entries \
             WHERE idx >= $1 AND idx < $2 ORDER BY idx",
        )
        .bind(to_i64(start)?)
        .bind(to_i64(end)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Integrated typed entries of `kind` below index `below`, valid at `valid_at` (seconds), and
    /// with the given PCR0 when one is given; in index order, at most `limit`.
    pub async fn typed_entries(
        &self,
        kind: u8,
        below: u64,
        valid_at: u64,
        pcr0: Option<&[u8; 48]>,
        limit: usize,
    ) -> Result<Vec<EntryRecord>> {
        let sql = if pcr0.is_some() {
            "SELECT idx, leaf_hash, data, publisher FROM entries WHERE kind = $1 AND idx IS NOT NULL \
             AND idx < $2 AND not_before <= $3 AND not_after > $3 AND pcr0 = $5 ORDER BY idx LIMIT $4"
        } else {
            "SELECT idx, leaf_hash, data, publisher FROM entries WHERE kind = $1 AND idx IS NOT NULL \
             AND idx < $2 AND not_before <= $3 AND not_after > $3 ORDER BY idx LIMIT $4"
        };
        let mut query = sqlx::query(sql)
            .bind(i64::from(kind))
            .bind(to_i64(below)?)
            .bind(to_i64(valid_at)?)
            .bind(to_i64(limit as u64)?);
        if let Some(pcr0) = pcr0 {
            query = query.bind(pcr0.to_vec());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Number of entries waiting for the sequencer.
    pub async fn pending_count(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM entries WHERE idx IS NULL")
            .fetch_one(&self.pool)
            .await?;
        to_u64(row.try_get("n")?)
    }

    /// Takes or renews the sequencer lease for `holder`. True if `holder` holds it afterwards.
    pub async fn acquire_lease(&self, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        let _writer = self.writer().await;
        let result = sqlx::query(
            "INSERT INTO sequencer_lease (id, holder, expires_ms) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
             WHERE sequencer_lease.holder = $1 OR sequencer_lease.expires_ms < $3",
        )
        .bind(holder)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Gives the lease up (on clean shutdown), so another process can take over at once.
    pub async fn release_lease(&self, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM sequencer_lease WHERE id = 1 AND holder = $1")
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Integrates pending entries in one transaction: fences on the lease, checks the stored size
    /// equals `expected_size`, assigns indexes `expected_size..` in the order `selection` gives,
    /// and writes the tiles and checkpoint that `plan` computes from the batch. Nothing is visible
    /// unless all of it is.
    pub async fn integrate_batch(
        &self,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
        expected_size: u64,
        selection: Selection<'_>,
        plan: impl FnOnce(&[PendingEntry]) -> Result<BatchWrite>,
    ) -> Result<BatchOutcome> {
        let _writer = self.writer().await;
        let mut tx = self.pool.begin().await?;
        // A write first: on SQLite this takes the write lock now, so the transaction cannot fail
        // later on a lock upgrade; everywhere it fences out a sequencer whose lease expired.
        let fenced = sqlx::query(
            "UPDATE sequencer_lease SET expires_ms = $1 WHERE id = 1 AND holder = $2 AND expires_ms >= $3",
        )
        .bind(now_ms + ttl_ms)
        .bind(holder)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if fenced.rows_affected() != 1 {
            return Ok(BatchOutcome::LostLease);
        }
        let row = sqlx::query("SELECT size FROM checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let stored = match row {
            Some(row) => to_u64(row.try_get("size")?)?,
            None => 0,
        };
        if stored != expected_size {
            return Ok(BatchOutcome::Diverged { stored });
        }
        let pending_row = |row: &AnyRow| -> Result<PendingEntry> {
            Ok(PendingEntry {
                seq: row.try_get("seq")?,
                leaf_hash: hash_column(row, "leaf_hash")?,
                submitted_ms: row.try_get("submitted_ms")?,
            })
        };
        let pending: Vec<PendingEntry> = match selection {
            Selection::Oldest(limit) => sqlx::query(
                "SELECT seq, leaf_hash, submitted_ms FROM entries WHERE idx IS NULL ORDER BY seq LIMIT $1",
            )
            .bind(to_i64(limit as u64)?)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(pending_row)
            .collect::<Result<_>>()?,
            Selection::InOrder(hashes) => {
                let mut out = Vec::with_capacity(hashes.len());
                for (i, hash) in hashes.iter().enumerate() {
                    let row = sqlx::query(
                        "SELECT seq, leaf_hash, submitted_ms FROM entries WHERE leaf_hash = $1 AND idx IS NULL",
                    )
                    .bind(hash.0.to_vec())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| {
                        LogError::TrillianInconsistent(format!(
                            "leaf {} ({}) is not a pending submission of this log",
                            expected_size + i as u64,
                            hash.to_hex()
                        ))
                    })?;
                    out.push(pending_row(&row)?);
                }
                out
            }
        };
        if pending.is_empty() {
            tx.commit().await?; // keeps the renewed lease
            return Ok(BatchOutcome::Empty);
        }
        let write = plan(&pending)?;
        if write.checkpoint.size != expected_size + pending.len() as u64 {
            return Err(LogError::Corrupt(
                "planned checkpoint size does not match the batch".into(),
            ));
        }

        let mut offset = 0usize;
        while offset < pending.len() {
            let chunk = &pending[offset..offset + statement_chunk(pending.len() - offset)];
            let rows = placeholders(chunk.len(), 2, 2);
            // Audited: only placeholders are generated, never values.
            let sql = format!(
                "UPDATE entries SET idx = v.column2, integrated_ms = $1 FROM (VALUES {rows}) AS v \
                 WHERE entries.seq = v.column1 AND entries.idx IS NULL"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms);
            for (i, entry) in chunk.iter().enumerate() {
                query = query
                    .bind(entry.seq)
                    .bind(to_i64(expected_size + (offset + i) as u64)?);
            }
            let updated = query.execute(&mut *tx).await?;
            if updated.rows_affected() != chunk.len() as u64 {
                return Err(LogError::Corrupt(
                    "pending entries changed during integration".into(),
                ));
            }
            offset += chunk.len();
        }

        for (level, index, hashes) in &write.tiles {
            sqlx::query(
                "INSERT INTO tiles (level, tile_index, hashes) VALUES ($1, $2, $3) \
                 ON CONFLICT (level, tile_index) DO UPDATE SET hashes = excluded.hashes",
            )
            .bind(i64::from(*level))
            .bind(to_i64(*index)?)
            .bind(hashes.clone())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO checkpoints (size, root, note, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(to_i64(write.checkpoint.size)?)
        .bind(write.checkpoint.root.0.to_vec())
        .bind(write.checkpoint.note.clone())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(BatchOutcome::Committed {
            entries: pending,
            checkpoint: write.checkpoint,
        })
    }
}
