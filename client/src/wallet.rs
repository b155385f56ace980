//! The token wallet: a TGT from the identity service, OTT batches from the token granting
//! service, one OTT spent per hop. Tokens are removed from the wallet file *before* they are
//! used, so a crash can lose a token but never spend one twice; the wallet file is locked while
//! a process reads and rewrites it, so two processes sharing a state folder never hand out the
//! same token.
//!
//! A TGT is renewed ahead of need (`spec/tokens.md` §3): when its OTT allotment runs out (the
//! token granting service grants fewer than asked, or says it is used up), or when the gateway
//! no longer lists its key (expired, or about to: a successor is offered). OTTs under an OTT key the
//! gateway no longer lists (expired) are dropped rather than spent.

use arcane_verifier::envelope::OttGrantRequest;
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
    /// The token granting service has no more OTTs for this TGT.
    #[serde(default)]
    used_up: bool,
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

/// The wallet's TGT: the token, its secret, the next OTT index, and whether it is used up.
struct HeldTgt {
    token: Token,
    secret: Zeroizing<[u8; 32]>,
    next_index: u32,
    used_up: bool,
}

/// The wallet.
pub struct Wallet {
    path: std::path::PathBuf,
    tgt: Option<HeldTgt>,
    otts: Vec<Ott>,
}

/// The keys the gateway currently offers for tokens (each with a verified entry).
#[derive(Clone, Copy, Debug)]
pub struct TokenKeys<'a> {
    /// The current TGT key (new TGTs are blinded to it).
    pub tgt: &'a IssuerKey,
    /// The current OTT key (new OTTs are blinded to it).
    pub ott: &'a IssuerKey,
    /// Every TGT key the gateway lists (a TGT under another is renewed).
    pub valid_tgt_ids: &'a [[u8; 32]],
    /// Every OTT key the gateway lists (OTTs under others are dropped).
    pub valid_ott_ids: &'a [[u8; 32]],
}

/// Why the token granting service refused, as it says in its `reason` field.
fn refusal_reason(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("reason")?
        .as_str()
        .map(str::to_owned)
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

/// The lock on a wallet file, held while a process reads and rewrites it.
struct WalletLock(std::fs::File);

impl Drop for WalletLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Longest a process waits for another one to finish with the wallet.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Wallet {
    /// Loads the wallet from `state` (empty when there is none).
    pub fn load(state: &StateDir) -> Result<Wallet> {
        let mut wallet = Wallet {
            path: state.file(WALLET_FILE),
            tgt: None,
            otts: Vec::new(),
        };
        wallet.reload()?;
        Ok(wallet)
    }

    /// Waits for, and takes, the lock on the wallet file (`wallet.lock` beside it), then reads
    /// the file again: another process may have changed it meanwhile.
    async fn lock(&mut self) -> Result<WalletLock> {
        let path = self.path.with_extension("lock");
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&path)
            .map_err(|e| corrupt(&path, &e.to_string()))?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(corrupt(&path, "another process holds the wallet"));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(corrupt(&path, &e.to_string()));
                }
            }
        }
        let lock = WalletLock(file);
        self.reload()?;
        Ok(lock)
    }

    fn reload(&mut self) -> Result<()> {
        let path = &self.path;
        let text = match std::fs::read(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.tgt = None;
                self.otts.clear();
                return Ok(());
            }
            Err(e) => return Err(corrupt(path, &e.to_string())),
        };
        let file: WalletFile =
            serde_json::from_slice(&text).map_err(|e| corrupt(path, &e.to_string()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let token = |t: &str| {
            b64.decode(t)
                .ok()
                .and_then(|b| Token::decode(&b).ok())
                .ok_or_else(|| corrupt(path, "a token does not decode"))
        };
        let tgt = match &file.tgt {
            None => None,
            Some(t) => {
                let bytes = Zeroizing::new(
                    hex::decode(&t.secret).map_err(|_| corrupt(path, "secret is not hex"))?,
                );
                let mut secret = Zeroizing::new([0u8; 32]);
                if bytes.len() != 32 {
                    return Err(corrupt(path, "secret is not 32 bytes"));
                }
                secret.copy_from_slice(&bytes);
                Some(HeldTgt {
                    token: token(&t.token)?,
                    secret,
                    next_index: t.next_index,
                    used_up: t.used_up,
                })
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
        self.tgt = tgt;
        self.otts = otts;
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let file = WalletFile {
            tgt: self.tgt.as_ref().map(|t| StoredTgt {
                token: b64.encode(t.token.encode()),
                secret: hex::encode(&t.secret[..]),
                next_index: t.next_index,
                used_up: t.used_up,
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

    /// OTTs on hand (as of the last time this process read the wallet).
    pub fn available(&self) -> usize {
        self.otts.len()
    }

    /// Takes `n` OTTs out, under the wallet's lock; they are gone from the file before they are
    /// returned.
    pub async fn take(&mut self, n: usize) -> Result<Vec<Ott>> {
        let _lock = self.lock().await?;
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
        let tgt = self
            .tgt
            .as_ref()
            .ok_or_else(|| ClientError::TokensExhausted("no TGT".into()))?;
        Ok(TokenMaterial {
            tgt: tgt.token.clone(),
            secret: tgt.secret.clone(),
            index: ott.index,
            ott: ott.token.clone(),
        })
    }

    /// Refills to at least `LOW_WATER` OTTs when below it, under the wallet's lock: OTTs under
    /// keys the gateway no longer lists are dropped; a new TGT is fetched first when there is
    /// none, when it is used up, or when the gateway no longer lists its key (the identity
    /// service, authenticated with `api_key`); then one batch of OTTs (the token granting
    /// service), once more under a new TGT when the service says this one is used up or its key
    /// is no longer valid. Both go straight to the gateway, encapsulated.
    pub async fn refill(
        &mut self,
        http: &reqwest::Client,
        gateway: &str,
        key_config: &[u8],
        keys: TokenKeys<'_>,
        api_key: Option<&str>,
    ) -> Result<usize> {
        let _lock = self.lock().await?;
        let before = self.otts.len();
        // An OTT is unusable once the gateway no longer lists its key (the entry expired).
        self.otts
            .retain(|o| keys.valid_ott_ids.contains(&o.token.token_key_id));
        if self.otts.len() != before {
            self.save()?;
        }
        if self.otts.len() >= LOW_WATER {
            return Ok(0);
        }
        let gateway_hop = Gateway {
            http,
            gateway,
            key_config,
        };
        for attempt in 0..2 {
            let fresh_tgt_needed = match &self.tgt {
                None => true,
                Some(t) => t.used_up || !keys.valid_tgt_ids.contains(&t.token.token_key_id),
            };
            if fresh_tgt_needed {
                let tgt = gateway_hop.new_tgt(keys.tgt, api_key).await?;
                self.tgt = Some(tgt);
                // OTTs derive from the TGT they were granted under: the old ones go with it.
                self.otts.clear();
                self.save()?;
            }
            match gateway_hop
                .otts(self.tgt.as_ref().expect("set above"), keys.ott)
                .await?
            {
                Batch::Granted(otts, short) => {
                    let added = otts.len();
                    let tgt = self.tgt.as_mut().expect("set above");
                    tgt.next_index += added as u32;
                    tgt.used_up = short;
                    self.otts.extend(otts);
                    self.save()?;
                    return Ok(added);
                }
                Batch::NeedsNewTgt(why) => {
                    if let Some(t) = self.tgt.as_mut() {
                        t.used_up = true;
                    }
                    self.save()?;
                    if attempt == 1 {
                        return Err(ClientError::TokensExhausted(format!(
                            "the token service refused a fresh TGT too: {why}"
                        )));
                    }
                }
            }
        }
        unreachable!("the loop returns")
    }
}

/// The token granting service's answer to one batch.
enum Batch {
    /// The OTTs granted (in index order), and whether fewer were granted than asked (the
    /// allotment ran out).
    Granted(Vec<Ott>, bool),
    /// This TGT gets no more (used up, or its key is no longer valid).
    NeedsNewTgt(String),
}

/// The identity and token granting services, reached straight at the gateway.
struct Gateway<'a> {
    http: &'a reqwest::Client,
    gateway: &'a str,
    key_config: &'a [u8],
}

impl Gateway<'_> {
    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        call(
            self.http,
            Hop::Gateway(self.gateway),
            self.key_config,
            &InnerHttp {
                method: "POST",
                path,
                headers,
                body,
            },
        )
        .await
    }

    async fn new_tgt(&self, tgt_key: &IssuerKey, api_key: Option<&str>) -> Result<HeldTgt> {
        let api_key = api_key.ok_or_else(|| {
            ClientError::TokensExhausted(
                "a new TGT is needed, and no API key is configured for the identity service".into(),
            )
        })?;
        let secret = random_secret();
        let (request, pending) = request_token(
            tgt_key,
            &TokenChallenge::for_issuer(TGT_ISSUER),
            tgt_nonce(&secret),
        )?;
        let bearer = Zeroizing::new(format!("Bearer {api_key}"));
        let (status, body) = self
            .post(
                "/v1/tokens/tgt",
                &[("authorization", &bearer)],
                &request.encode(),
            )
            .await?;
        if status != 200 {
            return Err(ClientError::TokensExhausted(format!(
                "the identity service answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        Ok(HeldTgt {
            token: pending.finalize(&body)?,
            secret,
            next_index: 0,
            used_up: false,
        })
    }

    async fn otts(&self, tgt: &HeldTgt, ott_key: &IssuerKey) -> Result<Batch> {
        let first = tgt.next_index;
        let mut requests = Vec::new();
        let mut pendings = Vec::new();
        for i in first..first.saturating_add(BATCH) {
            let (request, pending) = request_token(
                ott_key,
                &TokenChallenge::for_issuer(OTT_ISSUER),
                ott_nonce(&tgt.secret, i),
            )?;
            requests.push(request.encode());
            pendings.push((i, pending));
        }
        let body = OttGrantRequest::encode(&tgt.token.encode(), &requests)?;
        let (status, answer) = self.post("/v1/tokens/ott", &[], &body).await?;
        if status != 200 {
            let reason = refusal_reason(&answer).unwrap_or_default();
            let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
            if reason == "tgt-used-up" || reason == "tgt-key-invalid" {
                return Ok(Batch::NeedsNewTgt(text));
            }
            return Err(ClientError::TokensExhausted(format!(
                "the token service answered {status}: {text}"
            )));
        }
        if answer.is_empty() || answer.len() % NK != 0 || answer.len() / NK > pendings.len() {
            return Err(ClientError::Answer(
                "the token service's answer has the wrong length".into(),
            ));
        }
        let granted = answer.len() / NK;
        let mut otts = Vec::with_capacity(granted);
        for ((index, pending), response) in pendings.into_iter().zip(answer.chunks(NK)) {
            // Finalization verifies each signature under the logged OTT key.
            otts.push(Ott {
                index,
                token: pending.finalize(response)?,
            });
        }
        Ok(Batch::Granted(otts, granted < BATCH as usize))
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

    /// A state folder under `dir` whose wallet holds a TGT and its first `n` OTTs; returns the
    /// folder and the TGT's secret.
    fn saved_wallet(dir: &std::path::Path, n: u32) -> (StateDir, Zeroizing<[u8; 32]>) {
        let key = arcane_verifier::note::NoteSigner::from_seed("log.example", 1, &[1; 32])
            .unwrap()
            .verifier();
        let state = StateDir::open(dir, &key).unwrap();
        let issuer = IssuerSecret::generate().unwrap();
        let secret = random_secret();
        Wallet {
            path: state.file(WALLET_FILE),
            tgt: Some(HeldTgt {
                token: token(&issuer, tgt_nonce(&secret)),
                secret: secret.clone(),
                next_index: n,
                used_up: false,
            }),
            otts: (0..n)
                .map(|i| Ott {
                    index: i,
                    token: token(&issuer, ott_nonce(&secret, i)),
                })
                .collect(),
        }
        .save()
        .unwrap();
        (state, secret)
    }

    #[tokio::test]
    async fn tokens_leave_the_file_before_they_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let (state, secret) = saved_wallet(dir.path(), 2);
        let mut loaded = Wallet::load(&state).unwrap();
        assert_eq!(loaded.available(), 2);
        let taken = loaded.take(1).await.unwrap();
        assert_eq!(taken[0].index, 0);
        // Already gone on disk: a crash now cannot spend it twice.
        assert_eq!(Wallet::load(&state).unwrap().available(), 1);
        let material = loaded.material(&taken[0]).unwrap();
        assert_eq!(material.secret[..], secret[..]);
        assert_eq!(material.ott, taken[0].token);
        assert!(matches!(
            loaded.take(2).await,
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

    #[tokio::test]
    async fn two_processes_sharing_a_wallet_never_get_the_same_token() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = saved_wallet(dir.path(), 4);
        // Both loaded before either spends: each must see what the other took.
        let mut first = Wallet::load(&state).unwrap();
        let mut second = Wallet::load(&state).unwrap();
        let a = first.take(1).await.unwrap();
        let b = second.take(1).await.unwrap();
        let c = first.take(2).await.unwrap();
        let mut indices: Vec<u32> = a.iter().chain(&b).chain(&c).map(|o| o.index).collect();
        indices.sort_unstable();
        assert_eq!(indices, vec![0, 1, 2, 3]);
        assert!(second.take(1).await.is_err(), "all four are spent");
        // While one holds the lock, the other waits rather than reading a half-done state.
        let held = first.lock().await.unwrap();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(200), second.lock()).await;
        assert!(
            waiting.is_err(),
            "the second waits while the first holds the lock"
        );
        drop(held);
        assert!(second.lock().await.is_ok());
    }
}
