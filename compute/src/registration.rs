//! Announcing the node to its gateways: `POST {gateway}/v1/nodes` with a
//! [`NodeRegistration`] at each, repeated after every refresh so every gateway replica always
//! holds a fresh document and the newest release proof. Each gateway is registered with on its
//! own: one that is down delays none of the others.

use std::sync::Arc;
use std::time::Duration;

use arcane_verifier::attested::NodeRegistration;

use crate::error::{ComputeError, Result};
use crate::node::{Node, now_seconds};
use crate::release::{LogSource, LogTrust};
use crate::tokens::LoggedTokenKeys;

/// Where the node registers and how the gateway reaches it.
#[derive(Clone, Debug)]
pub struct Registration {
    /// The gateway's base URL (fixed in the node's configuration, part of the measured image).
    pub gateway: String,
    /// The node's base URL as the gateway reaches it.
    pub advertise: String,
}

impl Registration {
    /// Sends one registration with the node's current bundle.
    pub async fn register(&self, http: &reqwest::Client, node: &Arc<Node>) -> Result<()> {
        // The gateway challenges this URL; the node answers only for URLs it registers under.
        node.advertise(&self.advertise);
        let attested = node.attested().map_err(ComputeError::Serve)?;
        let body = NodeRegistration::new(
            self.advertise.clone(),
            node.model().name.clone(),
            node.capacity() as u32,
            &attested.bundle,
        );
        let url = format!("{}/v1/nodes", self.gateway.trim_end_matches('/'));
        let response = http
            .post(&url)
            .json(&body)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map_err(|e| ComputeError::Serve(format!("registering at {url}: {e}")))?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(ComputeError::Serve(format!(
                "the gateway refused the registration: {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        Ok(())
    }
}

/// Registers with `registration`'s gateway, retried with backoff for at most about `every`.
async fn register_within(
    registration: &Registration,
    http: &reqwest::Client,
    node: &Arc<Node>,
    every: Duration,
) {
    let mut backoff = Duration::from_millis(500);
    while let Err(e) = registration.register(http, node).await {
        if backoff >= every {
            tracing::warn!(error = %e, gateway = %registration.gateway, "registration failed; retrying after the next refresh");
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

/// Renews the release proof and document every `every` (and sooner when the release is about to
/// expire), then re-registers with every gateway in `registrations`, all at once.
pub async fn keep_fresh(
    node: Arc<Node>,
    token_keys: Option<(Arc<LoggedTokenKeys>, LogSource, LogTrust)>,
    registrations: Vec<Registration>,
    every: Duration,
) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    loop {
        // Retried with backoff within the interval: the gateway may be down, or (at boot) the
        // gateway's challenge may reach this node before it listens.
        futures::future::join_all(
            registrations
                .iter()
                .map(|r| register_within(r, &http, &node, every)),
        )
        .await;
        let mut wait = every;
        if let Some(not_after) = node.release_not_after() {
            let left = not_after.saturating_sub(now_seconds());
            wait = wait.min(Duration::from_secs(left.max(1)));
        }
        tokio::time::sleep(wait).await;
        let _ = node.refresh().await;
        if let Some((keys, log, trust)) = &token_keys {
            match LoggedTokenKeys::fetch(log, trust, now_seconds()).await {
                Ok(set) => keys.replace(set),
                // The keys on hand stay: each is checked against its entry's window at every
                // use, so none outlives its entry, and a log that is briefly unreachable does
                // not turn every token away.
                Err(e) => {
                    tracing::warn!(error = %e, "token key refresh failed; the keys on hand stay, each until its entry expires")
                }
            }
        }
    }
}
