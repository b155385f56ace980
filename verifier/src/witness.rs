//! The C2SP tlog-witness protocol (`c2sp.org/tlog-witness`), as pure functions: the
//! `add-checkpoint` request body, and the witness's decision for one request given the latest
//! checkpoint it cosigned for that log.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::{Checkpoint, verify_checkpoint};
use crate::cosignature::{WitnessPolicy, cosign};
use crate::merkle::Hash;
use crate::note::{NoteSigner, VerifierKey};
use crate::timeline::{Step, Timeline, TreeHead};
use crate::{Error, Result};

/// Most consistency proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// An `add-checkpoint` request: the old size, a consistency proof from it, and the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// Size of the latest checkpoint the client believes the witness cosigned.
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

impl AddCheckpoint {
    /// The request body.
    pub fn to_text(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            out.push_str(&BASE64.encode(hash.0));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a request body strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let bad = |why| Error::MalformedNote(why);
        if bytes.len() > crate::note::MAX_NOTE_BYTES + 8 * 1024 {
            return Err(bad("request too large"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("request is not UTF-8"))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or(bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or(bad("first line must be old <size>"))?;
        if old.is_empty()
            || !old.bytes().all(|b| b.is_ascii_digit())
            || (old.len() > 1 && old.starts_with('0'))
        {
            return Err(bad("old size must be decimal without leading zeros"));
        }
        let old_size = old.parse().map_err(|_| bad("old size out of range"))?;
        let mut proof = Vec::new();
        for line in lines {
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad("more than 63 proof lines"));
            }
            let raw = BASE64
                .decode(line)
                .map_err(|_| bad("proof line is not base64"))?;
            proof.push(Hash::from_slice(&raw).map_err(|_| bad("proof hash is not 32 bytes"))?);
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

/// Why a witness refuses a request, with the HTTP status the protocol gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: malformed, or old size above the checkpoint's size.
    BadRequest(String),
    /// 403: no signature by the log's key verifies.
    Forbidden,
    /// 404: the witness does not witness this origin.
    UnknownLog,
    /// 409: the old size is not the size last cosigned (carried, for the response body), or the
    /// same size arrived with another root.
    Conflict {
        /// The size of the latest checkpoint the witness cosigned.
        latest: u64,
    },
    /// 422: the consistency proof does not verify.
    BadProof,
}

impl Refusal {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden => 403,
            Refusal::UnknownLog => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::BadProof => 422,
        }
    }
}

/// The origin a request's checkpoint names (to find the log's key), without verifying anything.
pub fn origin_of(request: &AddCheckpoint) -> Option<String> {
    request
        .checkpoint
        .split('\n')
        .next()
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
}

/// Decides one request: `latest` is the (size, root) the witness last cosigned for this log, if
/// any. On success returns the checkpoint to record and cosign.
pub fn decide(
    request: &AddCheckpoint,
    log_key: &VerifierKey,
    latest: Option<(u64, Hash)>,
) -> std::result::Result<Checkpoint, Refusal> {
    let verified = match verify_checkpoint(
        request.checkpoint.as_bytes(),
        log_key,
        &WitnessPolicy::none(),
    ) {
        Ok(v) => v.checkpoint,
        Err(Error::NoKnownSignature | Error::InvalidSignature { .. }) => {
            return Err(Refusal::Forbidden);
        }
        Err(Error::WrongOrigin { .. }) => return Err(Refusal::UnknownLog),
        Err(e) => return Err(Refusal::BadRequest(e.to_string())),
    };
    if request.old_size > verified.size {
        return Err(Refusal::BadRequest(
            "old size above the checkpoint size".into(),
        ));
    }
    let latest_size = latest.map_or(0, |(size, _)| size);
    if request.old_size != latest_size {
        return Err(Refusal::Conflict {
            latest: latest_size,
        });
    }
    // The rest is the timeline check every party runs; the protocol only adds which status each
    // outcome gets, and that a proof where none is needed is refused.
    let mut timeline = Timeline::new(latest.map(|(size, root)| TreeHead { size, root }));
    match timeline.observe(TreeHead::from(&verified)) {
        Ok(Step::Adopt) if !request.proof.is_empty() => return Err(Refusal::BadProof),
        Ok(Step::Keep) if !request.proof.is_empty() => {
            return Err(Refusal::Conflict {
                latest: latest_size,
            });
        }
        Ok(Step::Adopt | Step::Keep) => {}
        Ok(Step::Prove(question)) => {
            timeline
                .settle(&question, &request.proof)
                .map_err(|_| Refusal::BadProof)?;
        }
        Err(_) => {
            return Err(Refusal::Conflict {
                latest: latest_size,
            });
        }
    }
    Ok(verified)
}

/// The response body: this witness's cosignature line over `checkpoint` at `timestamp`.
pub fn cosignature_response(
    witness: &NoteSigner,
    checkpoint: &Checkpoint,
    timestamp: u64,
) -> Result<String> {
    let line = cosign(witness, &checkpoint.to_body(), timestamp)?;
    let mut note = crate::note::Note {
        text: checkpoint.to_body(),
        signatures: vec![line],
    };
    let full = note.to_text();
    note.signatures.clear();
    Ok(full[checkpoint.to_body().len() + 1..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, root_from_leaf_hashes};
    use crate::note::{ALG_COSIGNATURE_V1, ALG_ED25519, Note};
    use crate::proof::consistency_proof;

    #[test]
    fn the_protocol_decisions() {
        let log = NoteSigner::from_seed("example.com/log", ALG_ED25519, &[1; 32]).unwrap();
        let leaves: Vec<Hash> = (0..20u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let cp = |n: usize| {
            Checkpoint::new(
                "example.com/log",
                n as u64,
                root_from_leaf_hashes(&leaves[..n]),
            )
        };
        let note = |n: usize| cp(n).sign(&log).unwrap().to_text();
        let proof = |m: u64, n: u64| {
            consistency_proof(m, n, |s, e| {
                Ok::<_, ()>(root_from_leaf_hashes(&leaves[s as usize..e as usize]))
            })
            .unwrap()
        };
        let key = log.verifier();
        let request = |old: u64, proof: Vec<Hash>, n: usize| AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: note(n),
        };

        // First contact: old 0, empty proof.
        let r = request(0, vec![], 5);
        assert_eq!(AddCheckpoint::parse(r.to_text().as_bytes()).unwrap(), r);
        assert_eq!(decide(&r, &key, None).unwrap(), cp(5));
        // Then growth with a proof.
        let latest = Some((5, cp(5).root));
        assert_eq!(
            decide(&request(5, proof(5, 12), 12), &key, latest).unwrap(),
            cp(12)
        );
        // Wrong old size: 409 with the latest size.
        assert_eq!(
            decide(&request(3, proof(3, 12), 12), &key, latest).unwrap_err(),
            Refusal::Conflict { latest: 5 }
        );
        // A bad proof: 422.
        let mut bad = proof(5, 12);
        bad[0].0[0] ^= 1;
        assert_eq!(
            decide(&request(5, bad, 12), &key, latest).unwrap_err(),
            Refusal::BadProof
        );
        // Old above new: 400. Same size, other root: 409.
        assert_eq!(
            decide(&request(12, vec![], 5), &key, latest)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            decide(&request(5, vec![], 5), &key, Some((5, leaf_hash(b"other")))).unwrap_err(),
            Refusal::Conflict { latest: 5 }
        );
        // Signed by someone else: 403. Another origin: 404.
        let stranger = NoteSigner::from_seed("example.com/log", ALG_ED25519, &[9; 32]).unwrap();
        let forged = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: cp(5).sign(&stranger).unwrap().to_text(),
        };
        assert_eq!(decide(&forged, &key, None).unwrap_err(), Refusal::Forbidden);
        let other = NoteSigner::from_seed("example.com/other", ALG_ED25519, &[1; 32]).unwrap();
        let elsewhere = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: Checkpoint::new("example.com/other", 1, leaves[0])
                .sign(&other)
                .unwrap()
                .to_text(),
        };
        assert_eq!(
            decide(&elsewhere, &key, None).unwrap_err(),
            Refusal::UnknownLog
        );

        // The response is a cosignature line that a client appends to its note.
        let witness =
            NoteSigner::from_seed("witness.example", ALG_COSIGNATURE_V1, &[3; 32]).unwrap();
        let body = cosignature_response(&witness, &cp(12), 1_700_000_000).unwrap();
        assert!(body.starts_with('\u{2014}') && body.ends_with('\n'));
        let cosigned = Note::parse(format!("{}{body}", note(12)).as_bytes()).unwrap();
        let policy = WitnessPolicy::new(vec![witness.verifier()], 1).unwrap();
        assert_eq!(policy.check(&cosigned).unwrap()[0].timestamp, 1_700_000_000);
    }
}
