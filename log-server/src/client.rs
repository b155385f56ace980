//! The log's HTTP client is `arcane-log-client`'s (every shell uses that one); re-exported here
//! for `arcane-log add` and `publish`.

pub use arcane_log_client::{LogClient, LogClientError};
pub use arcane_verifier::log_api::EntryStatus;
