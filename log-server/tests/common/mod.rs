//! Helpers shared by the log server's integration tests: a server on 127.0.0.1 with a fresh data
//! directory, an allowed publisher, and a client.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use arcane_log::client::{EntryStatus, LogClient};
use arcane_log::keys::{PublisherPolicy, generate_signer};
use arcane_log::{POLICY_FILE, RunningServer, ServeConfig};
use arcane_verifier::checkpoint::{VerifiedCheckpoint, verify_checkpoint};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::note::{NoteSigner, VerifierKey};

pub struct TestLog {
    pub server: RunningServer,
    pub data_dir: std::path::PathBuf,
    pub client: LogClient,
    pub base: String,
    pub publisher: NoteSigner,
    pub http: reqwest::Client,
}

pub fn config(data_dir: &Path, database_url: Option<String>) -> ServeConfig {
    let mut config = ServeConfig::new(data_dir.to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = database_url;
    config.sequencer.batch_delay = Duration::from_millis(10);
    config
}

/// Starts a server and allows a fresh publisher.
pub async fn start(data_dir: &Path, database_url: Option<String>) -> TestLog {
    start_with(config(data_dir, database_url)).await
}

pub async fn start_with(config: ServeConfig) -> TestLog {
    let data_dir = config.data_dir.clone();
    let server = arcane_log::start(config).await.expect("server starts");
    let publisher = generate_signer("test-publisher").unwrap();
    PublisherPolicy::new(data_dir.join(POLICY_FILE))
        .allow(
            &publisher.verifier(),
            &arcane_log::keys::AllowedKinds::parse("release,ohttp-keys,token-key,opaque").unwrap(),
        )
        .unwrap();
    let base = format!("http://{}", server.addr());
    TestLog {
        data_dir,
        client: LogClient::new(&base).unwrap(),
        server,
        base,
        publisher,
        http: reqwest::Client::new(),
    }
}

impl TestLog {
    /// The publisher policy file of this server's data directory.
    pub fn policy_path(&self) -> std::path::PathBuf {
        self.data_dir.join(POLICY_FILE)
    }

    pub fn log_key(&self) -> VerifierKey {
        VerifierKey::parse(self.server.vkey()).unwrap()
    }

    /// Adds entries and waits until each is in a published checkpoint.
    pub async fn add_all(&self, entries: &[Vec<u8>]) -> Vec<EntryStatus> {
        let mut pending = Vec::new();
        for entry in entries {
            pending.push(
                self.client
                    .add(entry, &self.publisher)
                    .await
                    .expect("accepted"),
            );
        }
        let mut done = Vec::new();
        for status in pending {
            done.push(
                self.client
                    .wait_integrated(&status.leaf_hash, Duration::from_secs(30))
                    .await
                    .expect("integrated"),
            );
        }
        done
    }

    pub async fn checkpoint(&self) -> VerifiedCheckpoint {
        let text = self.client.checkpoint().await.unwrap();
        verify_checkpoint(text.as_bytes(), &self.log_key(), &WitnessPolicy::none())
            .expect("checkpoint verifies")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    pub async fn json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }
}

pub fn entries(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix} entry {i}").into_bytes())
        .collect()
}
