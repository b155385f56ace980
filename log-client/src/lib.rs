//! # arcane-log-client
//!
//! The one HTTP client of the transparency log, for every shell that reads or writes it (the
//! client SDK, the gateway, the compute node, the auditor, `arcane-log publish`):
//! - `http://` and `https://` (rustls, the system's roots plus any the caller adds);
//! - no redirect is followed: a log cannot send its reader anywhere else;
//! - a timeout on every request, and every answer read only up to a bound, refused past it;
//! - replies parsed by [`arcane_verifier::log_api`], the same types the log server writes.
//!
//! What an answer *means* is checked by the caller with the verifier's pure functions (a
//! checkpoint's signatures, a bundle's proofs, a consistency proof): this crate only fetches.
//! [`read_limited`] is the bounded read every peer-facing client here uses, logs or not.

use std::time::{Duration, Instant};

use arcane_verifier::Hash;
use arcane_verifier::log_api::{
    self, BundleList, ConsistencyReply, EntryStatus, ErrorReply, Submission,
};
use arcane_verifier::note::NoteSigner;
use thiserror::Error;

/// Largest answer read by default: a bundle list holds a few KiB per entry, at most 256 of them.
pub const MAX_ANSWER: usize = 8 << 20;

/// Largest checkpoint, key, proof or entry status read: each is well under a KiB.
pub const MAX_SMALL_ANSWER: usize = 64 * 1024;

/// Longest one request may take by default, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// What went wrong talking to the log (or, through [`read_limited`], to another peer).
#[derive(Debug, Error)]
pub enum LogClientError {
    /// The client could not be built (a bad CA file, a bad URL).
    #[error("HTTP client: {0}")]
    Config(String),
    /// No answer: connection refused, a timeout, a broken stream, or a 5xx.
    #[error("{url}: no answer: {why}")]
    Unreachable {
        /// What was asked for.
        url: String,
        /// Why there was no usable answer.
        why: String,
    },
    /// The log refused the request (4xx).
    #[error("{url}: refused ({status}): {message}")]
    Refused {
        /// What was asked for.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The log's message.
        message: String,
    },
    /// The answer grew past its bound.
    #[error("{url}: the answer exceeds {limit} bytes")]
    TooLarge {
        /// What was asked for.
        url: String,
        /// The bound.
        limit: usize,
    },
    /// The answer is not what the log's API says it is.
    #[error("{url}: malformed answer: {why}")]
    Malformed {
        /// What was asked for.
        url: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Result with [`LogClientError`].
pub type Result<T> = std::result::Result<T, LogClientError>;

/// Reads a peer's whole answer, refusing it as soon as it grows past `limit` bytes.
pub async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>> {
    let url = response.url().to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| LogClientError::Unreachable {
            url: url.clone(),
            why: e.to_string(),
        })?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(LogClientError::TooLarge { url, limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn parse_hash(hex: &str) -> Result<Hash> {
    Hash::from_hex(hex).map_err(|_| LogClientError::Config(format!("{hex:?} is not a leaf hash")))
}

/// How a [`LogClient`] is built.
#[derive(Clone, Debug, Default)]
pub struct LogClientOptions {
    /// PEM certificates of CAs to trust besides the system's (a log behind a private CA).
    pub extra_roots_pem: Option<Vec<u8>>,
    /// Per-request timeout ([`DEFAULT_TIMEOUT`] when `None`).
    pub timeout: Option<Duration>,
}

/// How every client of arcane-aip's services starts its HTTP client: no redirects followed,
/// a connect timeout, pooled connections given up before the servers' idle limit (their header
/// timeout), so that one is not reused just as the other side closes it, and the PEM
/// certificates of `extra_roots_pem` trusted beside the system's (services behind a private CA).
pub fn http_client_builder(extra_roots_pem: Option<&[u8]>) -> Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(5));
    if let Some(pem) = extra_roots_pem {
        let roots = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| LogClientError::Config(format!("CA certificates: {e}")))?;
        if roots.is_empty() {
            return Err(LogClientError::Config(
                "CA certificates: no PEM certificate".into(),
            ));
        }
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    Ok(builder)
}

/// Talks to one log.
#[derive(Clone, Debug)]
pub struct LogClient {
    base: String,
    http: reqwest::Client,
}

impl LogClient {
    /// A client for the log at `base` (for example `https://log.example`), with the defaults.
    pub fn new(base: &str) -> Result<Self> {
        Self::with_options(base, &LogClientOptions::default())
    }

    /// A client for the log at `base` built with `options`.
    pub fn with_options(base: &str, options: &LogClientOptions) -> Result<Self> {
        let builder = http_client_builder(options.extra_roots_pem.as_deref())?
            .timeout(options.timeout.unwrap_or(DEFAULT_TIMEOUT));
        let http = builder
            .build()
            .map_err(|e| LogClientError::Config(e.to_string()))?;
        Ok(LogClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The log's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn answer(
        &self,
        url: String,
        sent: std::result::Result<reqwest::Response, reqwest::Error>,
        limit: usize,
    ) -> Result<Vec<u8>> {
        let response = sent.map_err(|e| LogClientError::Unreachable {
            url: url.clone(),
            why: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body = read_limited(response, limit).await?;
        match status {
            200..=299 => Ok(body),
            400..=499 => Err(LogClientError::Refused {
                url,
                status,
                message: ErrorReply::message(&body),
            }),
            _ => Err(LogClientError::Unreachable {
                url,
                why: format!("{status}: {}", ErrorReply::message(&body)),
            }),
        }
    }

    /// `GET path`: the body of a successful answer, at most `limit` bytes.
    pub async fn get_limited(&self, path: &str, limit: usize) -> Result<Vec<u8>> {
        let url = self.url(path);
        let sent = self.http.get(&url).send().await;
        self.answer(url, sent, limit).await
    }

    /// `GET path`: the body of a successful answer, at most [`MAX_ANSWER`] bytes.
    pub async fn get(&self, path: &str) -> Result<Vec<u8>> {
        self.get_limited(path, MAX_ANSWER).await
    }

    async fn get_text(&self, path: &str, limit: usize) -> Result<String> {
        String::from_utf8(self.get_limited(path, limit).await?).map_err(|_| {
            LogClientError::Malformed {
                url: self.url(path),
                why: "not UTF-8".into(),
            }
        })
    }

    fn malformed(&self, path: &str, e: impl std::fmt::Display) -> LogClientError {
        LogClientError::Malformed {
            url: self.url(path),
            why: e.to_string(),
        }
    }

    /// The signed checkpoint note (text), unverified.
    pub async fn checkpoint(&self) -> Result<String> {
        self.get_text(log_api::CHECKPOINT, MAX_SMALL_ANSWER).await
    }

    /// The log's verifier key text, as the server states it (trust it only if it is the key
    /// you were given).
    pub async fn log_key(&self) -> Result<String> {
        Ok(self
            .get_text(log_api::LOG_KEY, MAX_SMALL_ANSWER)
            .await?
            .trim()
            .to_owned())
    }

    /// The currently valid entries of `kind` (optionally only releases with `pcr0`), their
    /// bundles unverified.
    pub async fn bundles_of_kind(&self, kind: &str, pcr0: Option<&[u8; 48]>) -> Result<BundleList> {
        let path = log_api::bundles_of_kind(kind, pcr0);
        BundleList::parse(&self.get(&path).await?).map_err(|e| self.malformed(&path, e))
    }

    /// The proof bundle of an integrated entry (by hex leaf hash, as the log states it) at the
    /// newest checkpoint, unverified.
    pub async fn bundle_by_hash(&self, leaf_hash: &str) -> Result<String> {
        self.get_text(
            &log_api::bundle_by_hash(&parse_hash(leaf_hash)?),
            MAX_ANSWER,
        )
        .await
    }

    /// The consistency proof from tree size `old` to `new`, unverified.
    pub async fn consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        let path = log_api::consistency(old, new);
        ConsistencyReply::parse(&self.get_limited(&path, MAX_SMALL_ANSWER).await?, old, new)
            .map_err(|e| self.malformed(&path, e))
    }

    /// Submits `entry` signed by `publisher`.
    pub async fn add(&self, entry: &[u8], publisher: &NoteSigner) -> Result<EntryStatus> {
        let url = self.url(log_api::ENTRIES);
        let sent = self
            .http
            .post(&url)
            .json(&Submission::sign(entry, publisher))
            .send()
            .await;
        let body = self.answer(url, sent, MAX_SMALL_ANSWER).await?;
        EntryStatus::parse(&body).map_err(|e| self.malformed(log_api::ENTRIES, e))
    }

    /// Looks an entry up by its hex leaf hash.
    pub async fn lookup(&self, leaf_hash: &str) -> Result<EntryStatus> {
        let path = log_api::entry_by_hash(&parse_hash(leaf_hash)?);
        EntryStatus::parse(&self.get_limited(&path, MAX_SMALL_ANSWER).await?)
            .map_err(|e| self.malformed(&path, e))
    }

    /// Polls until the entry is in a published checkpoint, or `timeout` passes.
    pub async fn wait_integrated(&self, leaf_hash: &str, timeout: Duration) -> Result<EntryStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.lookup(leaf_hash).await?;
            if status.index.is_some() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(LogClientError::Unreachable {
                    url: self.url(&log_api::entry_by_hash(&parse_hash(leaf_hash)?)),
                    why: format!("not integrated after {timeout:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
