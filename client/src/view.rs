//! The client's view of the log: the newest checkpoint it has verified, kept on disk, and the
//! rule that every checkpoint it is shown — by the log itself or inside a proof bundle from the
//! gateway — is consistent with that view. A checkpoint that is not is evidence of a split view:
//! both signed notes are saved and the client stops.

use std::collections::HashSet;

use arcane_verifier::bundle::LogTrust;
use arcane_verifier::checkpoint::{VerifiedCheckpoint, verify_checkpoint};
use arcane_verifier::cosignature::WitnessPolicy;
use arcane_verifier::merkle::Hash;
use arcane_verifier::proof::verify_consistency;
use base64::Engine as _;

use crate::error::{Check, ClientError, Result};
use crate::state::StateDir;

/// Largest checkpoint or proof answer read from the log.
const MAX_LOG_ANSWER: usize = 64 * 1024;

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

/// A consistency question whose answer was verified: (old size, old root, new size, new root).
type ProvenPair = (u64, Hash, u64, Hash);

/// The newest verified checkpoint and the proofs already checked against it.
#[derive(Debug, Default)]
pub struct LogView {
    latest: Option<VerifiedCheckpoint>,
    proven: HashSet<ProvenPair>,
}

async fn get_log(http: &reqwest::Client, url: &str) -> Result<Vec<u8>> {
    let unreachable = |e: &dyn std::fmt::Display| ClientError::Unreachable {
        service: "log",
        reason: format!("{url}: {e}"),
    };
    let reply = http.get(url).send().await.map_err(|e| unreachable(&e))?;
    let status = reply.status().as_u16();
    let bytes = crate::transport::read_limited(reply, MAX_LOG_ANSWER, "log").await?;
    if status != 200 {
        return Err(ClientError::Status {
            service: "log",
            status,
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
        });
    }
    Ok(bytes)
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
        http: &reqwest::Client,
        log_url: &str,
        trust: &LogTrust,
        state: &StateDir,
    ) -> Result<String> {
        let note = get_log(http, &format!("{log_url}/checkpoint")).await?;
        let shown = check_checkpoint(&note, trust)?;
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
            self.latest = Some(saved);
        }
        self.adopt(http, log_url, shown, state).await
    }

    /// Makes sure `shown` (a verified checkpoint from anywhere) is consistent with the view,
    /// adopting it when it is newer.
    pub async fn anchor(
        &mut self,
        http: &reqwest::Client,
        log_url: &str,
        shown: &VerifiedCheckpoint,
        state: &StateDir,
    ) -> Result<()> {
        self.adopt(http, log_url, shown.clone(), state)
            .await
            .map(|_| ())
    }

    async fn adopt(
        &mut self,
        http: &reqwest::Client,
        log_url: &str,
        shown: VerifiedCheckpoint,
        state: &StateDir,
    ) -> Result<String> {
        let Some(latest) = self.latest.clone() else {
            let message = format!("first checkpoint (size {}) saved", shown.checkpoint.size);
            state.save_checkpoint(&shown.note.to_text())?;
            self.latest = Some(shown);
            return Ok(message);
        };
        let (old, new) = if shown.checkpoint.size >= latest.checkpoint.size {
            (&latest, &shown)
        } else {
            (&shown, &latest)
        };
        if let Err(reason) = self.consistent(http, log_url, old, new).await? {
            let evidence =
                state.save_evidence(&latest.note.to_text(), &shown.note.to_text(), &reason)?;
            return Err(ClientError::SplitView { reason, evidence });
        }
        if shown.checkpoint.size > latest.checkpoint.size {
            let message = format!(
                "size {} extends the saved size {}",
                shown.checkpoint.size, latest.checkpoint.size
            );
            state.save_checkpoint(&shown.note.to_text())?;
            self.latest = Some(shown);
            Ok(message)
        } else {
            Ok(format!("size {} as saved", latest.checkpoint.size))
        }
    }

    /// Whether `new` extends `old` (`old.size <= new.size`): `Ok(Err(why))` when it provably does
    /// not, `Err` when the log cannot be asked.
    async fn consistent(
        &mut self,
        http: &reqwest::Client,
        log_url: &str,
        old: &VerifiedCheckpoint,
        new: &VerifiedCheckpoint,
    ) -> Result<std::result::Result<(), String>> {
        let (o, n) = (&old.checkpoint, &new.checkpoint);
        if o.size == n.size {
            return Ok(if o.root == n.root {
                Ok(())
            } else {
                Err(format!("two different roots for tree size {}", n.size))
            });
        }
        if o.size == 0 {
            return Ok(Ok(()));
        }
        let pair = (o.size, o.root, n.size, n.root);
        if self.proven.contains(&pair) {
            return Ok(Ok(()));
        }
        let reply = get_log(
            http,
            &format!(
                "{log_url}/v1/proof/consistency?old={}&new={}",
                o.size, n.size
            ),
        )
        .await?;
        let proof = parse_proof_reply(&reply).map_err(|reason| ClientError::Unreachable {
            service: "log",
            reason: format!("consistency proof: {reason}"),
        })?;
        match verify_consistency(o.size, n.size, &o.root, &n.root, &proof) {
            Ok(()) => {
                if self.proven.len() > 4096 {
                    self.proven.clear();
                }
                self.proven.insert(pair);
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(format!(
                "tree size {} does not extend tree size {}: {e}",
                n.size, o.size
            ))),
        }
    }
}

/// Parses the log's consistency proof answer (`{"proof": [base64 hash, …]}`, at most 128).
pub fn parse_proof_reply(bytes: &[u8]) -> std::result::Result<Vec<Hash>, String> {
    #[derive(serde::Deserialize)]
    struct Reply {
        proof: Vec<String>,
    }
    let reply: Reply = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if reply.proof.len() > 128 {
        return Err("too many hashes".into());
    }
    reply
        .proof
        .iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h)
                .ok()
                .and_then(|b| Hash::from_slice(&b).ok())
                .ok_or_else(|| format!("{h:?} is not a base64 hash"))
        })
        .collect()
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

    #[test]
    fn proof_answers_are_parsed_strictly() {
        let h = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(
            parse_proof_reply(format!("{{\"proof\":[\"{h}\"]}}").as_bytes())
                .unwrap()
                .len(),
            1
        );
        for bad in [
            "{}".to_owned(),
            "{\"proof\":[\"AAAA\"]}".to_owned(),
            "{\"proof\":[\"!!\"]}".to_owned(),
            format!(
                "{{\"proof\":[{}]}}",
                vec![format!("\"{h}\""); 129].join(",")
            ),
        ] {
            assert!(parse_proof_reply(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
