//! # arcane-client
//!
//! The client SDK of arcane-aip: private LLM inference where the client checks, before every
//! request, everything it is asked to trust — and sends nothing until every check passes.
//!
//! Before each request, in this order, stopping at the first failure
//! ([`Check`] names each step):
//! 1. the log's checkpoint: signature, witness cosignatures, consistency with the checkpoint
//!    saved on disk (a split view is refused and both notes are kept as evidence);
//! 2. the gateway's OHTTP key and the token issuers' keys, each with a proof bundle;
//! 3. candidate compute nodes: Nitro document chain, release entry in the log, PCRs, model
//!    digest, freshness;
//! 4. only then a fresh DEK, the inner request sealed with it, the DEK HPKE-wrapped to each
//!    verified node's REK, sent as Oblivious HTTP through the relay; the sealed answer is
//!    opened chunk by chunk as it streams.
//!
//! Modules: [`trust`] (configuration), [`view`] (the client's view of the log), [`checks`]
//! (the checks as functions over bytes), [`wallet`] (tokens), [`transport`] (OHTTP),
//! [`session`] (the [`Client`]), [`answer`] (what a chat yields, whichever route), [`receipts`]
//! and `local` (on-device inference, feature `local`). The `arcane` command line and `arcane demo` are `arcane-cli`'s.
//!
//! ```no_run
//! # async fn example() -> Result<(), arcane_client::ClientError> {
//! use arcane_client::{Client, ClientConfig, ChatEvent, Route, Trust};
//! use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};
//!
//! let trust = Trust::load(std::path::Path::new("trust.toml"))?;
//! let mut client = Client::new(ClientConfig::new(trust))?;
//! let request = ChatCompletionRequest {
//!     model: String::new(), // any model the verified nodes serve
//!     messages: vec![ChatMessage { role: "user".into(), content: "Hello".into() }],
//!     max_tokens: Some(64),
//!     temperature: None,
//!     stream: Some(true),
//!     ..Default::default()
//! };
//! let mut answer = client.chat(request, Route::Cloud).await?;
//! while let Some(event) = answer.next().await {
//!     match event? {
//!         ChatEvent::Delta(text) => print!("{text}"),
//!         ChatEvent::Done(summary) => println!("\n{:?}", summary.usage),
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod answer;
pub mod checks;
pub mod error;
#[cfg(feature = "net")]
pub mod http3;
pub mod receipts;
#[cfg(feature = "net")]
pub mod session;
pub mod state;
pub mod transport;
pub mod trust;
pub mod view;
pub mod wallet;

#[cfg(feature = "local")]
pub mod local;

#[cfg(feature = "net")]
pub use answer::ChatStream;
pub use answer::{ChatEvent, Route, Summary};
pub use checks::Passed;
pub use error::{Check, ClientError, Result};
#[cfg(feature = "net")]
pub use session::{Client, ClientConfig, Preflight};
pub use trust::Trust;
