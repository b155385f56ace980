//! # arcane-audit
//!
//! The auditors' toolkit behind the `arcane-audit` command, whose `main` only parses arguments
//! and prints:
//! - [`log_commands`]: `checkpoint`, `inclusion`, `consistency` and `monitor` (the timeline check
//!   of [`arcane_verifier::timeline`], fork evidence), `releases`, `keys`, `replay`;
//! - [`replay`]: recomputes a whole log from its entry bundles with memory bounded by the tree's
//!   frontier;
//! - [`key_releases`]: a model owner's record of released model keys, decided again and
//!   compared with the log;
//! - [`receipts`]: a client's receipts verified offline (the node's signed statement, its
//!   document, the release's proof) with the log's key and the Nitro root alone;
//! - [`witness_server`]: a C2SP tlog-witness deciding with [`arcane_verifier::witness::decide`];
//! - [`http`]: the way to the log (`arcane-log-client`, `http://` or `https://`).
//!
//! ```
//! use arcane_audit::replay::{BundleSource, Progress, replay};
//! use arcane_verifier::merkle::{leaf_hash, root_from_leaf_hashes};
//! use arcane_verifier::tiles::{TileCoord, encode_entry_bundle};
//!
//! struct InMemory(Vec<Vec<u8>>);
//! impl BundleSource for InMemory {
//!     fn bundle(&mut self, coord: &TileCoord) -> Result<Vec<u8>, String> {
//!         let start = coord.index as usize * 256;
//!         let slice = &self.0[start..start + coord.width as usize];
//!         encode_entry_bundle(slice.iter().map(Vec::as_slice)).map_err(|e| e.to_string())
//!     }
//! }
//! let entries: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
//! let expected = root_from_leaf_hashes(&entries.iter().map(|e| leaf_hash(e)).collect::<Vec<_>>());
//! let mut progress = Progress::default();
//! let root = replay(&mut InMemory(entries), 300, &mut progress, |_| Ok(())).unwrap();
//! assert_eq!(root, expected);
//! assert_eq!(progress.kinds["opaque"], 300);
//! ```

pub mod http;
pub mod key_releases;
pub mod log_commands;
pub mod receipts;
pub mod replay;
pub mod witness_server;
