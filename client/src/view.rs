//! The client's view of the log: the newest checkpoint it has verified, kept on disk, and the
//! rule that every checkpoint it is shown — by the log itself or inside a proof bundle from the
//! gateway — is consistent with that view. A checkpoint that is not is evidence of a split view:
//! both signed notes are saved and the client stops.

use arcane_verifier::Hash;
use arcane_verifier::bundle::LogTrust;
use arcane_verifier::checkpoint::{VerifiedCheckpoint, verify_checkpoint};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::timeline::{Fork, Question, Step, Timeline, TreeHead};

use crate::error::{Check, ClientError, Result};

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
/// check over it ([`arcane_verifier::timeline`]). The decisions are here, without I/O; the
/// `net` feature adds the shell that asks the log and keeps the state folder.
#[derive(Debug, Default)]
pub struct LogView {
    latest: Option<VerifiedCheckpoint>,
    timeline: Timeline,
}

/// What the view made of a checkpoint it was shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It is newer and extends the view, which now holds it: save `note` (the view's new saved
    /// checkpoint) before going on.
    Adopted {
        /// The report line.
        report: String,
        /// The signed note to save.
        note: String,
    },
    /// Nothing new: the view already holds it, or a newer checkpoint that extends it.
    Kept(String),
}

/// A checkpoint that does not extend the view: the evidence to keep, both signed notes whole.
#[derive(Clone, Debug)]
pub struct SplitView {
    /// What the timeline found.
    pub fork: Fork,
    /// The note the view held.
    pub saved: String,
    /// The note it was shown.
    pub shown: String,
}

impl LogView {
    /// The newest verified checkpoint, once one was adopted or restored.
    pub fn latest(&self) -> Option<&VerifiedCheckpoint> {
        self.latest.as_ref()
    }

    /// Starts from a saved checkpoint (verified again by the caller under today's trust: a
    /// changed log key or witness policy is not silently carried over). Only before anything
    /// was adopted.
    pub fn restore(&mut self, saved: VerifiedCheckpoint) {
        if self.latest.is_none() {
            self.timeline.adopt(TreeHead::from(&saved.checkpoint));
            self.latest = Some(saved);
        }
    }

    /// The timeline's first step for `shown`: a decision, or the consistency question the log
    /// must answer ([`LogView::settle`]).
    pub fn observe(&mut self, shown: &VerifiedCheckpoint) -> Result<Step, Fork> {
        self.timeline.observe(TreeHead::from(&shown.checkpoint))
    }

    /// The decision once the log answered `question` with `proof`.
    pub fn settle(&mut self, question: &Question, proof: &[Hash]) -> Result<Step, Fork> {
        self.timeline.settle(question, proof)
    }

    /// Applies the decision about `shown`: adopts it when it extends the view.
    pub fn conclude(
        &mut self,
        shown: VerifiedCheckpoint,
        step: Result<Step, Fork>,
    ) -> std::result::Result<Verdict, Box<SplitView>> {
        let head = TreeHead::from(&shown.checkpoint);
        match step {
            // A question instead of its answer is the caller's mistake; it decides nothing:
            // the view keeps what it holds.
            Ok(Step::Prove(_)) => Ok(Verdict::Kept(format!(
                "size {} awaits its consistency proof",
                head.size
            ))),
            Ok(Step::Adopt) => {
                let report = match &self.latest {
                    None => format!("first checkpoint (size {}) saved", head.size),
                    Some(latest) => format!(
                        "size {} extends the saved size {}",
                        head.size, latest.checkpoint.size
                    ),
                };
                let note = shown.note.to_text();
                self.timeline.adopt(head);
                self.latest = Some(shown);
                Ok(Verdict::Adopted { report, note })
            }
            Ok(Step::Keep) => Ok(Verdict::Kept(format!(
                "size {} as saved",
                self.timeline.accepted().map_or(0, |h| h.size)
            ))),
            Err(fork) => Err(Box::new(SplitView {
                fork,
                saved: self
                    .latest
                    .as_ref()
                    .map(|l| l.note.to_text())
                    .unwrap_or_default(),
                shown: shown.note.to_text(),
            })),
        }
    }
}

#[cfg(feature = "net")]
mod shell {
    use arcane_log_client::{LogClient, LogClientError};

    use super::*;
    use crate::state::StateDir;

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
        /// Step 1 of every request: fetch the log's checkpoint, verify its signature and witness
        /// policy, check it is consistent with the saved one (the first time: the one on disk),
        /// and save it. Returns what a report line says about consistency.
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
                let saved =
                    check_checkpoint(saved.as_bytes(), trust).map_err(|e| ClientError::State {
                        path: state.path().to_path_buf(),
                        reason: format!("the saved checkpoint no longer verifies: {e}"),
                    })?;
                self.restore(saved);
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

        /// The timeline check for `shown`, with the log answering the consistency question:
        /// saves `shown` when it extends the view, keeps evidence and stops on a fork.
        async fn adopt(
            &mut self,
            log: &LogClient,
            shown: VerifiedCheckpoint,
            state: &StateDir,
        ) -> Result<String> {
            let step = match self.observe(&shown) {
                Ok(Step::Prove(question)) => {
                    let proof = log
                        .consistency(question.old.size, question.new.size)
                        .await
                        .map_err(log_failure)?;
                    self.settle(&question, &proof)
                }
                other => other,
            };
            match self.conclude(shown, step) {
                Ok(Verdict::Adopted { report, note }) => {
                    state.save_checkpoint(&note)?;
                    Ok(report)
                }
                Ok(Verdict::Kept(report)) => Ok(report),
                Err(split) => {
                    let evidence = state.save_evidence(&split.fork, &split.saved, &split.shown)?;
                    Err(ClientError::SplitView {
                        reason: split.fork.to_string(),
                        evidence,
                    })
                }
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
