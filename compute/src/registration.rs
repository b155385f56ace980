//! Announcing the node to its gateway: `POST {gateway}/v1/nodes` with a
//! [`NodeRegistration`], repeated after every refresh so the gateway always holds a fresh
//! document and the newest release proof.

use std::sync::Arc;
use std::time::Duration;

use arcane_verifier::attested::NodeRegistration;

use crate::error::{ComputeError, Result};
use crate::node::Node;

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
