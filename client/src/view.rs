//! The client's view of the log: the newest checkpoint it has verified, kept on disk, and the
//! rule that every checkpoint it is shown — by the log itself or inside a proof bundle from the
//! gateway — is consistent with that view. A checkpoint that is not is evidence of a split view:
//! both signed notes are saved and the client stops.

use arcane_log_client::{LogClient, LogClientError};
use arcane_verifier::bundle::LogTrust;
use arcane_verifier::checkpoint::{VerifiedCheckpoint, verify_checkpoint};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::timeline::{Step, Timeline, TreeHead};

use crate::error::{Check, ClientError, Result};
use crate::state::StateDir;

/// Verifies a signed checkpoint note in two steps, so a refusal names the right check: the log's
/// signature ([`Check::Checkpoint`]), then the witness policy ([`Check::Witnesses`]).
pub fn check_checkpoint(note: &[u8], trust: &LogTrust) -> Result<VerifiedCheckpoint> {
    let signed = verify_checkpoint(note, &trust.log_key, &WitnessPolicy::none())
        .map_err(|e| ClientError::refused(Check::Checkpoint, e))?;
    let cosignatures = trust
        .witnesses
        .check(&signed.note)
        .map_err(|e| ClientError::refused(Check::Witnesses, e))?;
    Ok(VerifiedCheckpoint {
        cosignatures,
        ..signed
    })
}

/// The newest verified checkpoint (its signed note is what evidence keeps) and the timeline
/// check over it ([`arcane_verifier::timeline`]).
#[derive(Debug, Default)]
pub struct LogView {
    latest: Option<VerifiedCheckpoint>,
    timeline: Timeline,
}

/// A log that could not be asked, or refused: what the caller reports.
fn log_failure(e: LogClientError) -> ClientError {
    match e {
        LogClientError::Refused {
            status, message, ..
        } => ClientError::Status {
            service: "log",
            status,
            message,
        },
        other => ClientError::Unreachable {
            service: "log",
            reason: other.to_string(),
        },
    }
}

impl LogView {
    /// The newest verified checkpoint, once [`LogView::update`] has run.
    pub fn latest(&self) -> Option<&VerifiedCheckpoint> {
        self.latest.as_ref()
    }

    /// Step 1 of every request: fetch the log's checkpoint, verify its signature and witness
    /// policy, check it is consistent with the saved one (the first time: the one on disk), and
    /// save it. Returns what a report line says about consistency.
    pub async fn update(
        &mut self,
        log: &LogClient,
        trust: &LogTrust,
        state: &StateDir,
    ) -> Result<String> {
        let note = log.checkpoint().await.map_err(log_failure)?;
        let shown = check_checkpoint(note.as_bytes(), trust)?;
        if self.latest.is_none()
            && let Some(saved) = state.saved_checkpoint()?
        {
            // The saved note verified when it was saved; it must still verify under the same
            // trust (a changed log key or witness policy is not silently carried over).
            let saved =
                check_checkpoint(saved.as_bytes(), trust).map_err(|e| ClientError::State {
                    path: state.path().to_path_buf(),
                    reason: format!("the saved checkpoint no longer verifies: {e}"),
                })?;
            self.timeline.adopt(TreeHead::from(&saved.checkpoint));
            self.latest = Some(saved);
        }
        self.adopt(log, shown, state).await
    }

    /// Makes sure `shown` (a verified checkpoint from anywhere) is consistent with the view,
    /// adopting it when it is newer.
    pub async fn anchor(
        &mut self,
        log: &LogClient,
        shown: &VerifiedCheckpoint,
        state: &StateDir,
    ) -> Result<()> {
        self.adopt(log, shown.clone(), state).await.map(|_| ())
    }

    /// The timeline check for `shown`, with the log answering the consistency question: saves
    /// `shown` when it extends the view, keeps evidence and stops on a fork.
    async fn adopt(
        &mut self,
        log: &LogClient,
        shown: VerifiedCheckpoint,
        state: &StateDir,
    ) -> Result<String> {
        let head = TreeHead::from(&shown.checkpoint);
        let step = match self.timeline.observe(head) {
            Ok(Step::Prove(question)) => {
                let proof = log
                    .consistency(question.old.size, question.new.size)
                    .await
                    .map_err(log_failure)?;
                self.timeline.settle(&question, &proof)
            }
            other => other,
        };
        match step {
            Ok(Step::Adopt) => {
                let message = match &self.latest {
                    None => format!("first checkpoint (size {}) saved", head.size),
                    Some(latest) => format!(
                        "size {} extends the saved size {}",
                        head.size, latest.checkpoint.size
                    ),
                };
                state.save_checkpoint(&shown.note.to_text())?;
                self.timeline.adopt(head);
                self.latest = Some(shown);
                Ok(message)
            }
            Ok(_) => Ok(format!(
                "size {} as saved",
                self.timeline.accepted().map_or(0, |h| h.size)
            )),
            Err(fork) => {
                let saved = self
                    .latest
                    .as_ref()
                    .map(|l| l.note.to_text())
                    .unwrap_or_default();
                let evidence = state.save_evidence(&fork, &saved, &shown.note.to_text())?;
                Err(ClientError::SplitView {
                    reason: fork.to_string(),
                    evidence,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arcane_verifier::checkpoint::Checkpoint;
    use arcane_verifier::entry::EntryPolicy;
    use arcane_verifier::merkle::leaf_hash;
    use arcane_verifier::note::{ALG_COSIGNATURE_V1, ALG_ED25519, NoteSigner};

    fn trust(log: &NoteSigner, witnesses: WitnessPolicy) -> LogTrust {
        LogTrust {
            log_key: log.verifier(),
            witnesses,
            publishers: vec![log.verifier()],
            policy: EntryPolicy::default(),
        }
    }

    #[test]
    fn refusals_name_the_signature_or_the_witness_check() {
        let log = NoteSigner::from_seed("log.example", ALG_ED25519, &[1; 32]).unwrap();
        let note = Checkpoint::new("log.example", 3, leaf_hash(b"x"))
            .sign(&log)
            .unwrap()
            .to_text();
        let ok = check_checkpoint(note.as_bytes(), &trust(&log, WitnessPolicy::none())).unwrap();
        assert_eq!(ok.checkpoint.size, 3);
        let impostor = NoteSigner::from_seed("log.example", ALG_ED25519, &[2; 32]).unwrap();
        let e = check_checkpoint(note.as_bytes(), &trust(&impostor, WitnessPolicy::none()))
            .unwrap_err();
        assert_eq!(e.check(), Some(Check::Checkpoint));
        let witness = NoteSigner::from_seed("w.example", ALG_COSIGNATURE_V1, &[3; 32]).unwrap();
        let policy = WitnessPolicy::new(vec![witness.verifier()], 1).unwrap();
        let e = check_checkpoint(note.as_bytes(), &trust(&log, policy)).unwrap_err();
        assert_eq!(e.check(), Some(Check::Witnesses));
        let e = check_checkpoint(b"garbage", &trust(&log, WitnessPolicy::none())).unwrap_err();
        assert_eq!(e.check(), Some(Check::Checkpoint));
    }
}
