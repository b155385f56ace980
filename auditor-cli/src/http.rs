//! The auditor's way to the log: `arcane-log-client` (the client every shell uses: `http://` or
//! `https://` through rustls, no redirects, timeouts, bounded answers) driven from the auditor's
//! blocking commands, with the system's roots plus any CA the auditor names.

use std::path::Path;

use arcane_log_client::{LogClient, LogClientOptions};

/// Largest answer read: a log answers with tiles, bundles and JSON well under this; anything
/// larger is refused rather than read into memory.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// One log, asked from blocking code.
#[derive(Debug)]
pub struct Http {
    runtime: tokio::runtime::Runtime,
    client: LogClient,
}

impl Http {
    /// A client of the log at `base` trusting the system's roots and, when given, the PEM
    /// certificates in `ca_file` (a log behind a private CA).
    pub fn new(base: &str, ca_file: Option<&Path>) -> Result<Self, String> {
        let extra_roots_pem = match ca_file {
            None => None,
            Some(path) => {
                Some(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?)
            }
        };
        let client = LogClient::with_options(
            base,
            &LogClientOptions {
                extra_roots_pem,
                timeout: None,
            },
        )
        .map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        Ok(Http { runtime, client })
    }

    /// The log's base URL.
    pub fn base(&self) -> &str {
        self.client.base()
    }

    /// GET `path` (below the base URL): the body of a successful answer, at most 64 MiB.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        self.runtime
            .block_on(self.client.get_limited(path, MAX_RESPONSE_BYTES))
            .map_err(|e| e.to_string())
    }
}
