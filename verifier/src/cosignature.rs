//! C2SP witness cosignatures (`c2sp.org/tlog-cosignature`, `cosignature/v1`) and the "k of n known
//! witnesses" policy.
//!
//! A cosignature line carries base64(key id ‖ u64 big-endian timestamp ‖ Ed25519 signature) over
//! `cosignature/v1\ntime <timestamp>\n` followed by the whole checkpoint body. Witness key ids use
//! algorithm byte 0x04.

use crate::note::{ALG_COSIGNATURE_V1, Note, NoteSignature, NoteSigner, VerifierKey};
use crate::{Error, Result};

/// A cosignature that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCosignature {
    /// The witness key's name.
    pub witness: String,
    /// When the witness says it signed (seconds since the Unix epoch).
    pub timestamp: u64,
}

fn cosigned_message(timestamp: u64, body: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{body}").into_bytes()
}

/// Produces a witness cosignature line over a checkpoint body.
pub fn cosign(witness: &NoteSigner, body: &str, timestamp: u64) -> Result<NoteSignature> {
    let verifier = witness.verifier();
    if verifier.algorithm() != ALG_COSIGNATURE_V1 {
        return Err(Error::MalformedKey("not a cosignature/v1 key"));
    }
    if timestamp > i64::MAX as u64 {
        return Err(Error::MalformedKey("timestamp above 2^63-1"));
    }
    let mut bytes = verifier.key_id().to_be_bytes().to_vec();
    bytes.extend_from_slice(&timestamp.to_be_bytes());
    bytes.extend_from_slice(&witness.sign_raw(&cosigned_message(timestamp, body)));
    Ok(NoteSignature {
        name: verifier.name().to_owned(),
        key_id: verifier.key_id(),
        bytes,
    })
}

/// Verifies one cosignature line against a witness key (the caller has matched name and key id).
pub fn verify_cosignature(
    witness: &VerifierKey,
    body: &str,
    line: &NoteSignature,
) -> Result<VerifiedCosignature> {
    let malformed = |why| Error::MalformedCosignature {
        name: witness.name().to_owned(),
        why,
    };
    let payload = line.signature();
    if payload.len() != 8 + 64 {
        return Err(malformed("expected 8-byte timestamp and 64-byte signature"));
    }
    let timestamp = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
    if timestamp > i64::MAX as u64 {
        return Err(malformed("timestamp above 2^63-1"));
    }
    if !witness.verify_raw(&cosigned_message(timestamp, body), &payload[8..]) {
        return Err(Error::InvalidSignature {
            name: witness.name().to_owned(),
        });
    }
    Ok(VerifiedCosignature {
        witness: witness.name().to_owned(),
        timestamp,
    })
}

/// "At least `threshold` of these witnesses cosigned."
///
/// A threshold of zero accepts unwitnessed checkpoints; it exists for development and is reported
/// by [`WitnessPolicy::is_unwitnessed`] so callers can say so loudly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessPolicy {
    witnesses: Vec<VerifierKey>,
    threshold: usize,
}

impl WitnessPolicy {
    /// Requires `threshold` valid cosignatures from distinct keys among `witnesses`.
    pub fn new(witnesses: Vec<VerifierKey>, threshold: usize) -> Result<Self> {
        if threshold > witnesses.len() {
            return Err(Error::InvalidPolicy(
                "threshold above the number of witnesses",
            ));
        }
        if witnesses
            .iter()
            .any(|w| w.algorithm() != ALG_COSIGNATURE_V1)
        {
            return Err(Error::InvalidPolicy(
                "witness keys must be cosignature/v1 keys",
            ));
        }
        for (i, w) in witnesses.iter().enumerate() {
            if witnesses[..i]
                .iter()
                .any(|o| o.name() == w.name() || o.public_key() == w.public_key())
            {
                return Err(Error::InvalidPolicy("witness listed twice"));
            }
        }
        Ok(WitnessPolicy {
            witnesses,
            threshold,
        })
    }

    /// No witnesses required (development only).
    pub fn none() -> Self {
        WitnessPolicy {
            witnesses: Vec::new(),
            threshold: 0,
        }
    }

    /// Whether this policy accepts checkpoints nobody cosigned.
    pub fn is_unwitnessed(&self) -> bool {
        self.threshold == 0
    }

    /// The threshold k.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Checks the note's cosignatures. Lines by unknown keys are ignored; a line by a known witness
    /// that fails, or two lines by one witness, reject the note.
    pub fn check(&self, note: &Note) -> Result<Vec<VerifiedCosignature>> {
        let mut verified: Vec<VerifiedCosignature> = Vec::new();
        for line in &note.signatures {
            let Some(witness) = self.witnesses.iter().find(|w| w.matches(line)) else {
                continue;
            };
            if verified.iter().any(|v| v.witness == witness.name()) {
                return Err(Error::DuplicateSignature {
                    name: witness.name().to_owned(),
                });
            }
            verified.push(verify_cosignature(witness, &note.text, line)?);
        }
        if verified.len() < self.threshold {
            return Err(Error::NotEnoughCosignatures {
                required: self.threshold,
                found: verified.len(),
            });
        }
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, verify_checkpoint};
    use crate::merkle::leaf_hash;
    use crate::note::ALG_ED25519;

    fn witness(i: u8) -> NoteSigner {
        NoteSigner::from_seed(
            &format!("witness.example/w{i}"),
            ALG_COSIGNATURE_V1,
            &[i; 32],
        )
        .unwrap()
    }

    #[test]
    fn k_of_n_policy() {
        let log = NoteSigner::from_seed("example.com/log", ALG_ED25519, &[1; 32]).unwrap();
        let c = Checkpoint::new("example.com/log", 9, leaf_hash(b"z"));
        let mut note = c.sign(&log).unwrap();
        let (w1, w2, w3) = (witness(11), witness(12), witness(13));
        note.add_signature(cosign(&w1, &note.text.clone(), 1_700_000_000).unwrap());
        note.add_signature(cosign(&w2, &note.text.clone(), 1_700_000_001).unwrap());
        let keys = vec![w1.verifier(), w2.verifier(), w3.verifier()];
        let bytes = note.to_text();

        let two = WitnessPolicy::new(keys.clone(), 2).unwrap();
        let ok = verify_checkpoint(bytes.as_bytes(), &log.verifier(), &two).unwrap();
        assert_eq!(ok.cosignatures.len(), 2);
        assert_eq!(ok.cosignatures[1].timestamp, 1_700_000_001);

        let three = WitnessPolicy::new(keys.clone(), 3).unwrap();
        assert_eq!(
            verify_checkpoint(bytes.as_bytes(), &log.verifier(), &three),
            Err(Error::NotEnoughCosignatures {
                required: 3,
                found: 2
            })
        );
        assert!(WitnessPolicy::new(keys, 4).is_err());
    }

    #[test]
    fn cosignature_over_other_body_fails() {
        let w = witness(5);
        let line = cosign(&w, "a\n1\nAAAA\n", 10).unwrap();
        assert!(matches!(
            verify_cosignature(&w.verifier(), "a\n2\nAAAA\n", &line),
            Err(Error::InvalidSignature { .. })
        ));
        assert!(verify_cosignature(&w.verifier(), "a\n1\nAAAA\n", &line).is_ok());
    }
}

/// A witness named in a policy file, and where to reach it (if given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWitness {
    /// Its cosignature/v1 key.
    pub key: VerifierKey,
    /// Its add-checkpoint URL prefix, if the policy gives one.
    pub url: Option<String>,
}

/// Parses a witness policy in the Sigsum policy file format (the subset this project uses):
///
/// ```text
/// witness <name> <hex Ed25519 public key> [<url>]
/// group <group name> <k | all | any> <member name>…
/// quorum <witness or group name | none>
/// ```
///
/// `log` lines are accepted and ignored (the log key is configured separately); `#` starts a
/// comment. Groups of groups are not supported. Returns the policy and the witnesses it names.
pub fn parse_policy_file(text: &str) -> Result<(WitnessPolicy, Vec<PolicyWitness>)> {
    let bad = Error::InvalidPolicy;
    let mut witnesses: Vec<PolicyWitness> = Vec::new();
    let mut groups: Vec<(String, usize, Vec<String>)> = Vec::new();
    let mut quorum: Option<String> = None;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] | ["log", ..] => {}
            ["witness", name, key, rest @ ..] if rest.len() <= 1 => {
                // 32 bytes in hex: the hash's strict hex form.
                let raw: [u8; 32] = crate::merkle::Hash::from_hex(key)
                    .map_err(|_| bad("witness key must be 32 bytes of hex"))?
                    .0;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&raw)
                    .map_err(|_| bad("not an Ed25519 key"))?;
                witnesses.push(PolicyWitness {
                    key: VerifierKey::new(name, ALG_COSIGNATURE_V1, key)?,
                    url: rest.first().map(|u| u.to_string()),
                });
            }
            ["group", name, threshold, members @ ..] if !members.is_empty() => {
                let k = match *threshold {
                    "all" => members.len(),
                    "any" => 1,
                    n => n
                        .parse()
                        .map_err(|_| bad("group threshold must be a number, all or any"))?,
                };
                groups.push((
                    name.to_string(),
                    k,
                    members.iter().map(|m| m.to_string()).collect(),
                ));
            }
            ["quorum", name] => quorum = Some(name.to_string()),
            _ => return Err(bad("unrecognised policy line")),
        }
    }
    let find = |name: &str| witnesses.iter().find(|w| w.key.name() == name);
    let policy = match quorum.as_deref() {
        None | Some("none") => WitnessPolicy::none(),
        Some(name) => match (find(name), groups.iter().find(|g| g.0 == name)) {
            (Some(w), _) => WitnessPolicy::new(vec![w.key.clone()], 1)?,
            (None, Some((_, k, members))) => {
                let keys = members
                    .iter()
                    .map(|m| {
                        find(m)
                            .map(|w| w.key.clone())
                            .ok_or(bad("group member is not a witness"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                WitnessPolicy::new(keys, *k)?
            }
            (None, None) => return Err(bad("quorum names no witness or group")),
        },
    };
    Ok((policy, witnesses))
}

#[cfg(test)]
mod policy_file_tests {
    use super::*;

    #[test]
    fn sigsum_style_policy() {
        let w1 = NoteSigner::from_seed("w1.example", ALG_COSIGNATURE_V1, &[1; 32])
            .unwrap()
            .verifier();
        let w2 = NoteSigner::from_seed("w2.example", ALG_COSIGNATURE_V1, &[2; 32])
            .unwrap()
            .verifier();
        let hex = |k: &VerifierKey| {
            k.public_key()
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let text = format!(
            "# witnesses\nlog 00 http://log\nwitness w1.example {} http://127.0.0.1:1\nwitness w2.example {}\ngroup all-of-them 2 w1.example w2.example\nquorum all-of-them\n",
            hex(&w1),
            hex(&w2)
        );
        let (policy, witnesses) = parse_policy_file(&text).unwrap();
        assert_eq!(policy.threshold(), 2);
        assert_eq!(witnesses.len(), 2);
        assert_eq!(witnesses[0].url.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(witnesses[1].key, w2);
        assert!(parse_policy_file("quorum nobody\n").is_err());
        assert!(parse_policy_file("witness x zz\n").is_err());
        // A sign is not a hex digit (the key parser once took "+f" for 0x0f).
        let signed = format!(
            "witness w1.example +f{}\nquorum w1.example\n",
            &hex(&w1)[2..]
        );
        assert!(parse_policy_file(&signed).is_err());
        assert!(
            parse_policy_file("nonsense line\n")
                .unwrap_err()
                .to_string()
                .contains("unrecognised")
        );
        assert!(parse_policy_file("").unwrap().0.is_unwitnessed());
    }
}
