//! A small HTTP client for the log's write path, used by `arcane-log add`.

use std::time::{Duration, Instant};

use arcane_verifier::note::NoteSigner;
use serde::Deserialize;

use crate::error::{LogError, Result};
use crate::submission::Submission;

/// The server's answer to a submission or lookup.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct EntryStatus {
    /// Hex leaf hash.
    pub leaf_hash: String,
    /// `pending` or `integrated`.
    pub status: String,
    /// Leaf index once integrated.
    pub index: Option<u64>,
    /// Whether the entry was already in the log (submissions only).
    #[serde(default)]
    pub duplicate: bool,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// Talks to one log server.
#[derive(Clone, Debug)]
pub struct LogClient {
    base: String,
    http: reqwest::Client,
}

impl LogClient {
    /// A client for the log at `base` (for example `http://127.0.0.1:8740`).
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| LogError::Client(e.to_string()))?;
        Ok(LogClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// The body of a successful answer; a 4xx is [`LogError::Refused`], a 5xx or a transport
    /// failure [`LogError::Unreachable`].
    async fn body(
        response: std::result::Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Vec<u8>> {
        let response = response.map_err(|e| LogError::Unreachable(e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| LogError::Unreachable(e.to_string()))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        if status.is_client_error() {
            Err(LogError::Refused {
                status: status.as_u16(),
                message,
            })
        } else {
            Err(LogError::Unreachable(format!("{status}: {message}")))
        }
    }

    async fn decode(
        response: std::result::Result<reqwest::Response, reqwest::Error>,
    ) -> Result<EntryStatus> {
        let body = Self::body(response).await?;
        serde_json::from_slice(&body).map_err(|e| LogError::Client(format!("bad reply: {e}")))
    }

    async fn get_text(&self, path: &str) -> Result<String> {
        let body = Self::body(self.http.get(format!("{}{path}", self.base)).send().await).await?;
        String::from_utf8(body).map_err(|_| LogError::Client(format!("{path}: reply is not UTF-8")))
    }

    /// The proof bundle of an integrated entry, by hex leaf hash, at the newest checkpoint.
    pub async fn bundle_by_hash(&self, leaf_hash: &str) -> Result<String> {
        self.get_text(&format!("/v1/bundles/by-hash/{leaf_hash}"))
            .await
    }

    /// The log's verifier key text, as the server states it.
    pub async fn log_key(&self) -> Result<String> {
        Ok(self.get_text("/log.vkey").await?.trim().to_owned())
    }

    /// Submits one entry signed by `publisher`.
    pub async fn add(&self, entry: &[u8], publisher: &NoteSigner) -> Result<EntryStatus> {
        let response = self
            .http
            .post(format!("{}/v1/entries", self.base))
            .json(&Submission::sign(entry, publisher))
            .send()
            .await;
        Self::decode(response).await
    }

    /// Looks an entry up by its hex leaf hash.
    pub async fn lookup(&self, leaf_hash: &str) -> Result<EntryStatus> {
        let response = self
            .http
            .get(format!("{}/v1/entries/by-hash/{leaf_hash}", self.base))
            .send()
            .await;
        Self::decode(response).await
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
                return Err(LogError::Client(format!(
                    "entry {leaf_hash} not integrated after {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fetches the current checkpoint text.
    pub async fn checkpoint(&self) -> Result<String> {
        self.get_text("/checkpoint").await
    }
}
