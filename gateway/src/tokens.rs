//! The identity service (one TGT per account and period), the token granting service (OTT
//! batches per TGT and period, rate-limited), and single-use OTT redemption — all against the
//! gateway's SQLite database, each decision committed before it is answered.

use std::path::Path;
use std::str::FromStr;

use arcane_verifier::tokens::{OTT_ISSUER, TGT_ISSUER, Token, TokenChallenge, TokenRequest};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::Result;
use crate::proven::ProvenIssuer;

/// Why a token operation was refused, with the HTTP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 401, 403 or 429.
    pub status: u16,
    /// What was wrong.
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Limits of the token services.
#[derive(Clone, Copy, Debug)]
pub struct TokenLimits {
    /// Length of a period, in seconds (one TGT per account per period).
    pub period_secs: u64,
    /// OTTs granted per TGT per period.
    pub otts_per_tgt: u32,
    /// Most OTTs in one batch request.
    pub max_batch: u32,
}

impl Default for TokenLimits {
    fn default() -> Self {
        TokenLimits {
            period_secs: 24 * 3600,
            otts_per_tgt: 64,
            max_batch: 32,
        }
    }
}

/// The token services.
pub struct TokenServices {
    db: SqlitePool,
    tgt: ProvenIssuer,
    ott: ProvenIssuer,
    limits: TokenLimits,
}

impl std::fmt::Debug for TokenServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServices")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Opens (creating and migrating) the gateway database at `path`.
pub async fn open_database(path: &Path) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    sqlx::migrate!("../migrations/gateway-sqlite")
        .run(&pool)
        .await
        .map_err(|e| crate::error::GatewayError::Database(e.into()))?;
    Ok(pool)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl TokenServices {
    /// Services with the given (proven) issuers.
    pub fn new(db: SqlitePool, tgt: ProvenIssuer, ott: ProvenIssuer, limits: TokenLimits) -> Self {
        TokenServices {
            db,
            tgt,
            ott,
            limits,
        }
    }

    /// The OTT issuer (its public key verifies redeemed tokens).
    pub fn ott_issuer(&self) -> &ProvenIssuer {
        &self.ott
    }

    /// The TGT issuer.
    pub fn tgt_issuer(&self) -> &ProvenIssuer {
        &self.tgt
    }

    fn period(&self, now: u64) -> i64 {
        (now / self.limits.period_secs.max(1)) as i64
    }

    /// Creates an account; returns its API key (shown once; only its SHA-256 is stored).
    pub async fn add_account(db: &SqlitePool, account: &str) -> Result<String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| crate::error::GatewayError::Config(e.to_string()))?;
        let api_key = format!("arcane_{}", hex::encode(key));
        sqlx::query("INSERT INTO accounts (api_key_sha256, account) VALUES (?, ?)")
            .bind(sha256_hex(api_key.as_bytes()))
            .bind(account)
            .execute(db)
            .await?;
        Ok(api_key)
    }

    /// The identity service: authenticates `api_key` and blind-signs one TGT per account and
    /// period.
    pub async fn issue_tgt(
        &self,
        api_key: &str,
        request: &[u8],
        now: u64,
    ) -> std::result::Result<Vec<u8>, Refusal> {
        let request = TokenRequest::decode(request).map_err(|e| refuse(400, e.to_string()))?;
        let account: Option<(String,)> =
            sqlx::query_as("SELECT account FROM accounts WHERE api_key_sha256 = ?")
                .bind(sha256_hex(api_key.as_bytes()))
                .fetch_optional(&self.db)
                .await
                .map_err(|_| refuse(503, "database unavailable"))?;
        let Some((account,)) = account else {
            return Err(refuse(401, "unknown API key"));
        };
        // Sign first (a malformed request must not use up the period), then record.
        let response = self
            .tgt
            .secret
            .issue(&request)
            .map_err(|e| refuse(400, e.to_string()))?;
        match sqlx::query("INSERT INTO tgt_issued (account, period) VALUES (?, ?)")
            .bind(&account)
            .bind(self.period(now))
            .execute(&self.db)
            .await
        {
            Ok(_) => Ok(response),
            Err(e) if is_unique_violation(&e) => Err(refuse(
                429,
                "this account already has its TGT for this period",
            )),
            Err(_) => Err(refuse(503, "database unavailable")),
        }
    }

    /// The token granting service: checks the TGT and blind-signs the OTT requests, within the
    /// per-TGT limit for the period.
    pub async fn grant_otts(
        &self,
        tgt: &[u8],
        requests: &[Vec<u8>],
        now: u64,
    ) -> std::result::Result<Vec<Vec<u8>>, Refusal> {
        let tgt = Token::decode(tgt).map_err(|e| refuse(400, e.to_string()))?;
        tgt.verify(
            self.tgt.secret.public(),
            &TokenChallenge::for_issuer(TGT_ISSUER),
        )
        .map_err(|e| refuse(403, e.to_string()))?;
        let n = requests.len() as u32;
        if n == 0 || n > self.limits.max_batch {
            return Err(refuse(
                400,
                format!("a batch holds 1 to {} requests", self.limits.max_batch),
            ));
        }
        let decoded = requests
            .iter()
            .map(|r| TokenRequest::decode(r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| refuse(400, e.to_string()))?;
        let responses = decoded
            .iter()
            .map(|r| self.ott.secret.issue(r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| refuse(400, e.to_string()))?;
        // Count atomically: the row only grows while it stays within the limit.
        let nonce = hex::encode(tgt.nonce);
        let period = self.period(now);
        let mut tx = self
            .db
            .begin()
            .await
            .map_err(|_| refuse(503, "database unavailable"))?;
        let granted: Option<(i64,)> =
            sqlx::query_as("SELECT count FROM ott_granted WHERE tgt_nonce = ? AND period = ?")
                .bind(&nonce)
                .bind(period)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|_| refuse(503, "database unavailable"))?;
        let so_far = granted.map_or(0, |g| g.0);
        if so_far + i64::from(n) > i64::from(self.limits.otts_per_tgt) {
            return Err(refuse(
                429,
                format!(
                    "this TGT has {} of {} OTTs left in this period",
                    i64::from(self.limits.otts_per_tgt) - so_far,
                    self.limits.otts_per_tgt
                ),
            ));
        }
        sqlx::query("INSERT INTO ott_granted (tgt_nonce, period, count) VALUES (?, ?, ?) ON CONFLICT (tgt_nonce, period) DO UPDATE SET count = count + excluded.count")
            .bind(&nonce)
            .bind(period)
            .bind(i64::from(n))
            .execute(&mut *tx)
            .await
            .map_err(|_| refuse(503, "database unavailable"))?;
        tx.commit()
            .await
            .map_err(|_| refuse(503, "database unavailable"))?;
        Ok(responses)
    }

    /// Redeems an OTT in `scope` (`gateway` or `relay`): the signature under the logged OTT key,
    /// then single use, recorded before the answer.
    pub async fn redeem(
        &self,
        scope: &str,
        token: &[u8],
        now: u64,
    ) -> std::result::Result<Token, Refusal> {
        let token = Token::decode(token).map_err(|e| refuse(400, e.to_string()))?;
        token
            .verify(
                self.ott.secret.public(),
                &TokenChallenge::for_issuer(OTT_ISSUER),
            )
            .map_err(|e| refuse(403, e.to_string()))?;
        match sqlx::query("INSERT INTO spent_tokens (scope, nonce, spent_at) VALUES (?, ?, ?)")
            .bind(scope)
            .bind(hex::encode(token.nonce))
            .bind(now as i64)
            .execute(&self.db)
            .await
        {
            Ok(_) => Ok(token),
            Err(e) if is_unique_violation(&e) => Err(refuse(403, "this token was already spent")),
            Err(_) => Err(refuse(503, "database unavailable")),
        }
    }
}
