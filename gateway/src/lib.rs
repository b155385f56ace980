//! # arcane-gateway
//!
//! The OHTTP gateway (RFC 9458, chunked OHTTP for streamed answers) in front of the compute
//! nodes: it decapsulates requests, redeems one-time tokens, routes each sealed chat request to
//! the least loaded verified node among the client's candidates and streams the sealed answer
//! back — without ever being able to read a prompt. It hands out nothing the log does not prove:
//! OHTTP keys and token keys only with a verified `ohttp-keys` / `token-key` entry, nodes only
//! after their attestation bundle verifies exactly as a client would verify it. It also hosts
//! the identity service (one TGT per account and period) and the token granting service (OTT
//! batches per TGT, rate-limited).
//!
//! - [`keys`]: secret key files (OHTTP IKM, token issuer keys), 0600.
//! - [`proven`]: matching local keys with verified log entries.
//! - [`registry`]: verified nodes, load-aware picking, models.
//! - [`tokens`]: identity service, token granting service, single-use redemption.
//! - [`store`]: their durable state (SQLite, or PostgreSQL shared by replicas).
//! - [`server`]: the HTTP surface, OHTTP and the inner routes.
//! - [`relay`]: the oblivious relay, admitting only clients with an unspent OTT.
//! - [`service`]: starting the gateway and the relay (from the binary or another program).
//!
//! ```
//! // A gateway OHTTP key: derived from 32 bytes kept in a 0600 file.
//! let dir = tempfile::tempdir()?;
//! let config = arcane_gateway::keys::generate_ohttp_key(&dir.path().join("ohttp.key"), 1)?;
//! assert_eq!(config.encode().unwrap()[0], 1, "the key id comes first");
//! let again = arcane_gateway::keys::load_ohttp_key(&dir.path().join("ohttp.key"))?;
//! assert_eq!(again.encode().unwrap(), config.encode().unwrap());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod keys;
pub mod proven;
pub mod registry;
pub mod relay;
pub mod server;
pub mod service;
pub mod store;
pub mod tokens;

/// Media type of a node's sealed answer stream, as the gateway passes it on.
pub const SEALED_STREAM_TYPE: &str = "application/arcane-sealed-stream";
