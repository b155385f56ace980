//! # arcane-compute
//!
//! The compute node: the only place a prompt is ever readable. It loads a local GGUF model into
//! mistral.rs, generates a request encryption key (REK) that never leaves memory, finds the
//! `release` entry for its own measurements and model digest in the transparency log (and refuses
//! to serve without one), attests the REK bound to that release, and then answers sealed
//! requests: it unwraps each request's DEK with the REK, decrypts the inner BHTTP request, checks
//! its token material, runs the model and streams the answer back as sealed chunks.
//!
//! - [`attestation`]: the NSM (real behind the `nsm` feature, or simulated in AWS's format).
//! - the model file and the engine running it are `arcane-engine`'s, shared with the client's
//!   on-device route.
//! - [`release`]: finding and refreshing the node's release proof in the log.
//! - [`sealed_model`]: a model its owner gave the operator sealed: the key fetched from the
//!   owner's key release service with a fresh attestation, the file decrypted into memory only.
//! - [`node`]: REK, attested state, replay guard, the sealed request path.
//! - [`service`]: the node as a library — [`service::start`] assembles, boots and serves one.
//! - [`server`]: the HTTP API over TCP or vsock; [`registration`]: announcing the node to its gateways.
//! - [`tokens`]: the token check interface.
//! - [`ensemble`]: one model split across several nodes, over attested, encrypted links.
//!
//! ```
//! use arcane_compute::attestation::{AttestationProvider, DeclaredMeasurements, SimulatedNsm};
//! use arcane_verifier::nitro::{NitroRoot, verify_document};
//!
//! let measurements = DeclaredMeasurements { pcr0: [1; 48], pcr1: [2; 48], pcr2: [3; 48], pcr8: None };
//! let now = 1_800_000_000;
//! let nsm = SimulatedNsm::new(&measurements, now)?;
//! let document = nsm.attest_at(Some(b"REK public key"), None, None, now * 1000)?;
//! // Only a verifier given the development root explicitly accepts it.
//! let root = NitroRoot::development(nsm.root_der().to_vec());
//! assert!(verify_document(&document, &root, now).is_ok());
//! assert!(verify_document(&document, &NitroRoot::aws(), now).is_err());
//! # Ok::<(), arcane_compute::error::ComputeError>(())
//! ```

pub mod attestation;
pub mod ensemble;
pub mod error;
pub mod node;
pub mod registration;
pub mod release;
pub mod sealed_model;
pub mod server;
pub mod service;
pub mod tokens;
