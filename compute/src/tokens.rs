//! The token check a node applies to each request's token material.
//!
//! The token material (TGT, OTT and their derivation, `spec/tokens.md`) travels inside the sealed
//! inner request, so only the node can check the link between them. Until the token service
//! defines and publishes the keys, the only implementation is [`DevelopmentWithoutTokens`], which
//! a node accepts only when started in development mode: a production node cannot start without
//! a real verifier.

/// Checks a request's token material.
pub trait TokenVerifier: Send + Sync + 'static {
    /// `Ok` when the material authorizes the request; otherwise why not (sent to the client
    /// inside the sealed answer, never logged with the material).
    fn verify(&self, token: Option<&[u8]>) -> Result<(), String>;
    /// Whether this verifier checks nothing (development only).
    fn is_development(&self) -> bool {
        false
    }
}

/// Development mode: no token check. Only reachable through the node's `--development` flag,
/// which also selects the simulated NSM.
#[derive(Debug)]
pub struct DevelopmentWithoutTokens(());

impl DevelopmentWithoutTokens {
    /// The development verifier. Callers must have been told explicitly to run without tokens.
    pub fn for_development() -> Self {
        DevelopmentWithoutTokens(())
    }
}

impl TokenVerifier for DevelopmentWithoutTokens {
    fn verify(&self, _token: Option<&[u8]>) -> Result<(), String> {
        Ok(())
    }
    fn is_development(&self) -> bool {
        true
    }
}
