//! # arcane-keyrelease
//!
//! The model owner's service. It is the only holder of model keys: it seals a model's weights
//! under the model's key (`spec/model-sealing.md`), so that the operator who runs the compute
//! nodes, and every host and disk the file passes through, hold ciphertext only. Releasing a key,
//! HPKE-wrapped, to a node that proves with a fresh attestation that it runs a logged release
//! naming the model is this service's next part; until then a sealed model is served by no node.
//!
//! - [`store`]: the model keys, through sqlx (a SQLite file, mode 0600, by default; PostgreSQL).
//! - [`seal`]: a model file sealed as it streams, its plaintext digest taken on the way.

pub mod error;
pub mod seal;
pub mod store;

pub use error::{KeyReleaseError, Result};
