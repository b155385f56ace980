//! # arcane-cli
//!
//! The `arcane` command line over the client SDK (`arcane-client`): `chat`, `verify`,
//! `receipts` (see `main.rs`) and [`proxy`] (an OpenAI-compatible endpoint on loopback), and —
//! with the `demo` feature — [`demo`]: the whole stack on one machine in one process, which `arcane demo` runs and the end-to-end tests build on. The SDK
//! itself carries none of this: no server, no simulated NSM, no model download.

#[cfg(feature = "demo")]
pub mod demo;
pub mod proxy;
