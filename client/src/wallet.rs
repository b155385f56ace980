//! The token wallet: one TGT per period from the identity service, OTT batches from the token
//! granting service, one OTT spent per hop. Tokens are removed from the wallet file *before*
//! they are used, so a crash can lose a token but never spend one twice.

use arcane_verifier::tokens::{
    IssuerKey, NK, OTT_ISSUER, TGT_ISSUER, Token, TokenChallenge, TokenMaterial, ott_nonce,
    request_token, tgt_nonce,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};
use crate::state::{StateDir, WALLET_FILE, write_private};
use crate::transport::{Hop, InnerHttp, call};

/// OTTs asked for in one batch.
pub const BATCH: u32 = 8;
/// Below this many OTTs the wallet refills ahead of need.
pub const LOW_WATER: usize = 4;

#[derive(Default, Serialize, Deserialize)]
struct WalletFile {
    tgt: Option<StoredTgt>,
    otts: Vec<StoredOtt>,
}

#[derive(Serialize, Deserialize)]
struct StoredTgt {
    token: String,
    secret: String,
    next_index: u32,
}

#[derive(Serialize, Deserialize)]
struct StoredOtt {
    index: u32,
    token: String,
}

/// An OTT taken out of the wallet.
#[derive(Clone, Debug)]
pub struct Ott {
    /// Its index under the TGT.
    pub index: u32,
    /// The token.
    pub token: Token,
}

/// The wallet.
pub struct Wallet {
    path: std::path::PathBuf,
    tgt: Option<(Token, Zeroizing<[u8; 32]>, u32)>,
    otts: Vec<Ott>,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet")
            .field("has_tgt", &self.tgt.is_some())
            .field("otts", &self.otts.len())
            .finish()
    }
}

fn corrupt(path: &std::path::Path, why: &str) -> ClientError {
    ClientError::State {
        path: path.to_path_buf(),
        reason: format!("wallet: {why}"),
    }
}

fn random_secret() -> Zeroizing<[u8; 32]> {
    let mut secret = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut secret[..]).expect("operating system randomness");
    secret
}

impl Wallet {
    /// Loads the wallet from `state` (empty when there is none).
    pub fn load(state: &StateDir) -> Result<Wallet> {
        let path = state.file(WALLET_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Wallet {
                    path,
                    tgt: None,
                    otts: Vec::new(),
                });
            }
            Err(e) => return Err(corrupt(&path, &e.to_string())),
        };
        let file: WalletFile =
            serde_json::from_slice(&text).map_err(|e| corrupt(&path, &e.to_string()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let token = |t: &str| {
            b64.decode(t)
                .ok()
                .and_then(|b| Token::decode(&b).ok())
                .ok_or_else(|| corrupt(&path, "a token does not decode"))
        };
        let tgt = match &file.tgt {
            None => None,
            Some(t) => {
                let bytes = Zeroizing::new(
                    hex::decode(&t.secret).map_err(|_| corrupt(&path, "secret is not hex"))?,
                );
                let mut secret = Zeroizing::new([0u8; 32]);
                if bytes.len() != 32 {
                    return Err(corrupt(&path, "secret is not 32 bytes"));
                }
                secret.copy_from_slice(&bytes);
                Some((token(&t.token)?, secret, t.next_index))
            }
        };
        let otts = file
            .otts
            .iter()
            .map(|o| {
                Ok(Ott {
                    index: o.index,
                    token: token(&o.token)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Wallet { path, tgt, otts })
    }

    fn save(&self) -> Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let file = WalletFile {
            tgt: self.tgt.as_ref().map(|(t, s, next)| StoredTgt {
                token: b64.encode(t.encode()),
                secret: hex::encode(&s[..]),
                next_index: *next,
            }),
            otts: self
                .otts
                .iter()
                .map(|o| StoredOtt {
                    index: o.index,
                    token: b64.encode(o.token.encode()),
                })
                .collect(),
        };
        let json = Zeroizing::new(serde_json::to_vec_pretty(&file).expect("wallet JSON"));
        write_private(&self.path, &json)
    }

    /// OTTs on hand.
    pub fn available(&self) -> usize {
        self.otts.len()
    }

    /// Takes `n` OTTs out (saved before they are returned).
    pub fn take(&mut self, n: usize) -> Result<Vec<Ott>> {
        if self.otts.len() < n {
            return Err(ClientError::TokensExhausted(format!(
                "{} needed, {} on hand",
                n,
                self.otts.len()
            )));
        }
        let taken: Vec<Ott> = self.otts.drain(..n).collect();
        self.save()?;
        Ok(taken)
    }

    /// The material the node checks for `ott` (TGT, secret, index, OTT).
    pub fn material(&self, ott: &Ott) -> Result<TokenMaterial> {
        let (tgt, secret, _) = self
            .tgt
            .as_ref()
            .ok_or_else(|| ClientError::TokensExhausted("no TGT".into()))?;
        Ok(TokenMaterial {
            tgt: tgt.clone(),
            secret: secret.clone(),
            index: ott.index,
            ott: ott.token.clone(),
        })
    }

    /// Refills to at least `LOW_WATER` OTTs when below it: a TGT first when the wallet has none
    /// under the current TGT key (the identity service, authenticated with `api_key`), then one
    /// batch of OTTs (the token granting service). Both go straight to the gateway, encapsulated.
    pub async fn refill(
        &mut self,
        http: &reqwest::Client,
        gateway: &str,
        key_config: &[u8],
        tgt_key: &IssuerKey,
        ott_key: &IssuerKey,
        api_key: Option<&str>,
    ) -> Result<usize> {
        if self.otts.len() >= LOW_WATER {
            return Ok(0);
        }
        let fresh_tgt_needed = match &self.tgt {
            None => true,
            Some((tgt, _, _)) => tgt.token_key_id != tgt_key.id(),
        };
        if fresh_tgt_needed {
            let api_key = api_key.ok_or_else(|| {
                ClientError::TokensExhausted(
                    "no TGT, and no API key configured for the identity service".into(),
                )
            })?;
            let secret = random_secret();
            let (request, pending) = request_token(
                tgt_key,
                &TokenChallenge::for_issuer(TGT_ISSUER),
                tgt_nonce(&secret),
            )?;
            let bearer = Zeroizing::new(format!("Bearer {api_key}"));
            let (status, body) = call(
                http,
                Hop::Gateway(gateway),
                key_config,
                &InnerHttp {
                    method: "POST",
                    path: "/v1/tokens/tgt",
                    headers: &[("authorization", &bearer)],
                    body: &request.encode(),
                },
            )
            .await?;
            if status != 200 {
                return Err(ClientError::TokensExhausted(format!(
                    "the identity service answered {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                )));
            }
            let tgt = pending.finalize(&body)?;
            self.tgt = Some((tgt, secret, 0));
            self.otts.clear();
            self.save()?;
        }
        let (tgt, secret, next_index) = self.tgt.as_ref().expect("set above");
        let first = *next_index;
        let mut body = tgt.encode();
        let mut pendings = Vec::new();
        for i in first..first + BATCH {
            let (request, pending) = request_token(
                ott_key,
                &TokenChallenge::for_issuer(OTT_ISSUER),
                ott_nonce(secret, i),
            )?;
            body.extend_from_slice(&request.encode());
            pendings.push((i, pending));
        }
        let (status, answer) = call(
            http,
            Hop::Gateway(gateway),
            key_config,
            &InnerHttp {
                method: "POST",
                path: "/v1/tokens/ott",
                headers: &[],
                body: &body,
            },
        )
        .await?;
        if status != 200 {
            return Err(ClientError::TokensExhausted(format!(
                "the token service answered {status}: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(200)])
            )));
        }
        if answer.len() != pendings.len() * NK {
            return Err(ClientError::Answer(
                "the token service's answer has the wrong length".into(),
            ));
        }
        let mut added = 0;
        for ((index, pending), response) in pendings.into_iter().zip(answer.chunks(NK)) {
            // Finalization verifies each signature under the logged OTT key.
            self.otts.push(Ott {
                index,
                token: pending.finalize(response)?,
            });
            added += 1;
        }
        if let Some((_, _, next)) = self.tgt.as_mut() {
            *next = first + BATCH;
        }
        self.save()?;
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arcane_verifier::tokens::IssuerSecret;

    fn token(issuer: &IssuerSecret, nonce: [u8; 32]) -> Token {
        let (request, pending) = request_token(
            issuer.public(),
            &TokenChallenge::for_issuer(OTT_ISSUER),
            nonce,
        )
        .unwrap();
        pending.finalize(&issuer.issue(&request).unwrap()).unwrap()
    }

    #[test]
    fn tokens_leave_the_file_before_they_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let key = arcane_verifier::note::NoteSigner::from_seed("log.example", 1, &[1; 32])
            .unwrap()
            .verifier();
        let state = StateDir::open(dir.path(), &key).unwrap();
        let issuer = IssuerSecret::generate().unwrap();
        let secret = random_secret();
        let wallet = Wallet {
            path: state.file(WALLET_FILE),
            tgt: Some((token(&issuer, tgt_nonce(&secret)), secret.clone(), 2)),
            otts: (0..2)
                .map(|i| Ott {
                    index: i,
                    token: token(&issuer, ott_nonce(&secret, i)),
                })
                .collect(),
        };
        wallet.save().unwrap();
        let mut loaded = Wallet::load(&state).unwrap();
        assert_eq!(loaded.available(), 2);
        let taken = loaded.take(1).unwrap();
        assert_eq!(taken[0].index, 0);
        // Already gone on disk: a crash now cannot spend it twice.
        assert_eq!(Wallet::load(&state).unwrap().available(), 1);
        let material = loaded.material(&taken[0]).unwrap();
        assert_eq!(material.secret[..], secret[..]);
        assert_eq!(material.ott, taken[0].token);
        assert!(matches!(
            loaded.take(2),
            Err(ClientError::TokensExhausted(_))
        ));
        std::fs::write(
            state.file(WALLET_FILE),
            b"{\"tgt\": null, \"otts\": [{\"index\": 1, \"token\": \"AAAA\"}]}",
        )
        .unwrap();
        assert!(matches!(
            Wallet::load(&state),
            Err(ClientError::State { .. })
        ));
    }
}
