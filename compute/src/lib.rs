//! # arcane-compute
//!
//! The compute node: the only place a prompt is ever readable. This crate so far provides the
//! node's attestation: the [`attestation::AttestationProvider`] trait, the real Nitro Security
//! Module behind the `nsm` feature, and a simulated NSM that issues documents in AWS's exact
//! format from a locally generated development root.
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
pub mod error;
