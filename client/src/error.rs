//! The client's one error type.

use std::path::PathBuf;

/// The checks run before every request, in order. A refusal names the one that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The checkpoint's log signature.
    Checkpoint,
    /// The witness cosignature policy on the checkpoint.
    Witnesses,
    /// Consistency of the new checkpoint with the one saved on disk.
    Consistency,
    /// The gateway's OHTTP key configurations, each with a verified `ohttp-keys` entry.
    OhttpKeys,
    /// The token issuers' keys, each with a verified `token-key` entry.
    TokenKeys,
    /// Candidate nodes: Nitro document, release entry, model digest, freshness.
    Nodes,
}

impl Check {
    /// Every check, in the order they run.
    pub const ALL: [Check; 6] = [
        Check::Checkpoint,
        Check::Witnesses,
        Check::Consistency,
        Check::OhttpKeys,
        Check::TokenKeys,
        Check::Nodes,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Check::Checkpoint => "checkpoint",
            Check::Witnesses => "witnesses",
            Check::Consistency => "consistency",
            Check::OhttpKeys => "ohttp-keys",
            Check::TokenKeys => "token-keys",
            Check::Nodes => "nodes",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong in the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A pre-request check failed: nothing was sent.
    #[error("refused at check `{check}`: {reason}")]
    Refused {
        /// The check that failed.
        check: Check,
        /// Why.
        reason: String,
    },
    /// The log showed a tree that does not extend the one this client saw before.
    #[error("possible split view of the log: {reason}; both checkpoints saved in {}", evidence.display())]
    SplitView {
        /// What differs.
        reason: String,
        /// Where the two signed checkpoints were saved.
        evidence: PathBuf,
    },
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The client's state on disk could not be read or written.
    #[error("state {}: {reason}", path.display())]
    State {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A service could not be reached or answered with something unreadable.
    #[error("{service}: {reason}")]
    Unreachable {
        /// `log`, `gateway` or `relay`.
        service: &'static str,
        /// Why.
        reason: String,
    },
    /// A service answered with an error status.
    #[error("{service} answered {status}: {message}")]
    Status {
        /// `log`, `gateway`, `relay` or `node`.
        service: &'static str,
        /// The HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// A token was refused (spent, unknown key, limit reached).
    #[error("token refused by the {by}: {reason}")]
    TokenRefused {
        /// `relay` or `gateway`.
        by: &'static str,
        /// Why.
        reason: String,
    },
    /// The wallet has no token left and cannot get more now.
    #[error("no tokens left: {0}")]
    TokensExhausted(String),
    /// The sealed answer failed to open or verify.
    #[error("answer rejected: {0}")]
    Answer(String),
    /// The answer stopped before its final chunk.
    #[error("the answer was interrupted after {chunks} chunk(s): {reason}")]
    Interrupted {
        /// Chunks received and verified before the interruption.
        chunks: usize,
        /// What happened.
        reason: String,
    },
    /// The node answered with a sealed error.
    #[error("the node refused the request ({kind}): {message}")]
    Node {
        /// Its error type.
        kind: String,
        /// Its message.
        message: String,
    },
    /// The on-device model failed or is not configured.
    #[error("on-device model: {0}")]
    Local(String),
    /// A verifier error outside the pre-request checks.
    #[error(transparent)]
    Verifier(#[from] arcane_verifier::Error),
}

impl ClientError {
    /// The check that failed, for refusals.
    pub fn check(&self) -> Option<Check> {
        match self {
            ClientError::Refused { check, .. } => Some(*check),
            ClientError::SplitView { .. } => Some(Check::Consistency),
            _ => None,
        }
    }

    pub(crate) fn refused(check: Check, reason: impl std::fmt::Display) -> Self {
        ClientError::Refused {
            check,
            reason: reason.to_string(),
        }
    }
}

/// The client's result type.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
