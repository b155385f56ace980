//! # arcane-keyrelease
//!
//! The model owner's service. It is the only holder of model keys: it seals a model's weights
//! under the model's key (`spec/model-sealing.md`), so that the operator who runs the compute
//! nodes, and every host and disk the file passes through, hold ciphertext only; and it releases
//! a model's key, HPKE-wrapped, only to a node that proves with a fresh attestation (answering
//! the service's challenge) that it runs a logged release naming the model, in an image the
//! owner's logged `model-access` entry allows (`spec/model-keys.md`). Every release is recorded
//! before the key leaves, for auditors to decide again against the log.
//!
//! - [`store`]: the model keys, the challenge secret and the record of releases, through sqlx (a
//!   SQLite file, mode 0600, by default; PostgreSQL for replicas).
//! - [`seal`]: a model file sealed as it streams, its plaintext digest taken on the way.
//! - [`service`]: the key release protocol over HTTP; every decision is
//!   `arcane_verifier::model_key`'s.

pub mod error;
pub mod seal;
pub mod service;
pub mod store;

pub use error::{KeyReleaseError, Result};
