//! # arcane-audit
//!
//! The auditors' toolkit behind the `arcane-audit` command. The library part holds what is worth
//! reusing or measuring on its own: [`replay`], which recomputes a whole log from its entry
//! bundles with memory bounded by the tree's frontier.
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

pub mod replay;
