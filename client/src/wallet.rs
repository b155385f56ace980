//! The token wallet: a TGT from the identity service, OTT batches from the token granting
//! service, one OTT spent per hop.
//!
//! [`Tokens`] is the wallet without I/O — what it holds, its JSON form, and [`Refill`], the
//! refill protocol as a state machine that asks its caller to post a request and hand back the
//! answer. The file-backed [`Wallet`] (feature `net`) and the WebAssembly build are its shells.
//! Tokens are removed from the wallet file *before* they are used, so a crash can lose a token
//! but never spend one twice; the wallet file is locked while a process reads and rewrites it, so
//! two processes sharing a state folder never hand out the same token.
//!
//! A TGT is renewed ahead of need (`spec/tokens.md` §3): when its OTT allotment runs out (the
//! token granting service grants fewer than asked, or says it is used up), or when the gateway
//! no longer lists its key (expired, or about to: a successor is offered). OTTs under an OTT key the
//! gateway no longer lists (expired) are dropped rather than spent.

use arcane_verifier::envelope::OttGrantRequest;
use arcane_verifier::fraud_data::{
    FRAUD_DATA_FIELD, FraudDataKey, FraudDataRequest, FraudDataResponse, MAX_CLASSES_PER_REQUEST,
    fraud_data_challenge, fraud_data_nonce,
};
use arcane_verifier::tokens::{
    IssuerKey, NK, OTT_ISSUER, PendingToken, TGT_ISSUER, Token, TokenChallenge, TokenMaterial,
    ott_nonce, request_token, tgt_nonce,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ClientError, Result};

/// OTTs asked for in one batch.
pub const BATCH: u32 = 8;
/// Below this many OTTs the wallet refills ahead of need.
pub const LOW_WATER: usize = 4;
/// Where the identity service issues TGTs (authenticated with the API key).
pub const TGT_PATH: &str = "/v1/tokens/tgt";
/// Where the token granting service issues OTT batches.
pub const OTT_PATH: &str = "/v1/tokens/ott";
/// The fraud detection service's inner path.
pub const FRAUD_DATA_PATH: &str = "/v1/fraud-data";

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
    /// Fraud data bound to this TGT (an encoded token, base64), when the gateway asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fraud_data: Option<String>,
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

/// The wallet's TGT: the token, its secret, the next OTT index, whether it is used up, and the
/// fraud data bound to it.
struct HeldTgt {
    token: Token,
    secret: Zeroizing<[u8; 32]>,
    next_index: u32,
    used_up: bool,
    fraud_data: Option<Token>,
}

/// The keys the gateway currently offers for tokens (each with a verified entry).
#[derive(Clone, Debug)]
pub struct TokenKeys {
    /// The current TGT key (new TGTs are blinded to it).
    pub tgt: IssuerKey,
    /// The current OTT key (new OTTs are blinded to it).
    pub ott: IssuerKey,
    /// Every TGT key the gateway lists (a TGT under another is renewed).
    pub valid_tgt_ids: Vec<[u8; 32]>,
    /// Every OTT key the gateway lists (OTTs under others are dropped).
    pub valid_ott_ids: Vec<[u8; 32]>,
    /// The fraud detection service's keys the gateway lists, one or more per class: when there
    /// are any, each TGT gets fraud data before it is shown for OTTs (`spec/tokens.md` §5).
    pub fraud_data: Vec<FraudDataKey>,
}

impl TokenKeys {
    /// Per class, the key with the newest entry: the one fraud data is blinded to.
    fn fraud_data_signing(&self) -> Vec<&FraudDataKey> {
        let mut newest: Vec<&FraudDataKey> = Vec::new();
        for key in &self.fraud_data {
            match newest.iter_mut().find(|k| k.class == key.class) {
                Some(k) if k.not_before < key.not_before => *k = key,
                Some(_) => {}
                None => newest.push(key),
            }
        }
        newest.sort_by_key(|k| k.class);
        newest.truncate(MAX_CLASSES_PER_REQUEST);
        newest
    }
}

/// Why the token granting service refused, as it says in its `reason` field.
fn refusal_reason(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("reason")?
        .as_str()
        .map(str::to_owned)
}

fn random_secret() -> Result<Zeroizing<[u8; 32]>> {
    let mut secret = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut secret[..]).map_err(|e| {
        ClientError::TokensExhausted(format!("no randomness for a TGT secret: {e}"))
    })?;
    Ok(secret)
}

/// What a wallet holds: the TGT (with its secret) and the OTTs derived from it.
#[derive(Default)]
pub struct Tokens {
    tgt: Option<HeldTgt>,
    otts: Vec<Ott>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("has_tgt", &self.tgt.is_some())
            .field("otts", &self.otts.len())
            .finish()
    }
}

impl Tokens {
    /// Reads the wallet's JSON form; the error says what is wrong with it.
    pub fn from_json(bytes: &[u8]) -> std::result::Result<Tokens, String> {
        let file: WalletFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let token = |t: &str| {
            b64.decode(t)
                .ok()
                .and_then(|b| Token::decode(&b).ok())
                .ok_or_else(|| "a token does not decode".to_owned())
        };
        let tgt = match &file.tgt {
            None => None,
            Some(t) => {
                let bytes = Zeroizing::new(
                    hex::decode(&t.secret).map_err(|_| "secret is not hex".to_owned())?,
                );
                let mut secret = Zeroizing::new([0u8; 32]);
                if bytes.len() != 32 {
                    return Err("secret is not 32 bytes".to_owned());
                }
                secret.copy_from_slice(&bytes);
                Some(HeldTgt {
                    token: token(&t.token)?,
                    secret,
                    next_index: t.next_index,
                    used_up: t.used_up,
                    fraud_data: t.fraud_data.as_deref().map(token).transpose()?,
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
            .collect::<std::result::Result<Vec<_>, String>>()?;
        Ok(Tokens { tgt, otts })
    }

    /// The wallet's JSON form (it holds the TGT's secret: keep it private).
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let file = WalletFile {
            tgt: self.tgt.as_ref().map(|t| StoredTgt {
                token: b64.encode(t.token.encode()),
                secret: hex::encode(&t.secret[..]),
                next_index: t.next_index,
                used_up: t.used_up,
                fraud_data: t.fraud_data.as_ref().map(|f| b64.encode(f.encode())),
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
        // Plain strings and numbers: serializing them cannot fail.
        Zeroizing::new(serde_json::to_vec_pretty(&file).unwrap_or_default())
    }

    /// OTTs on hand.
    pub fn available(&self) -> usize {
        self.otts.len()
    }

    /// Takes `n` OTTs out (the caller saves the wallet before it uses them).
    pub fn take(&mut self, n: usize) -> Result<Vec<Ott>> {
        if self.otts.len() < n {
            return Err(ClientError::TokensExhausted(format!(
                "{} needed, {} on hand",
                n,
                self.otts.len()
            )));
        }
        Ok(self.otts.drain(..n).collect())
    }

    /// Puts back an OTT that [`take`](Self::take) gave out and that was not spent (the gateway
    /// said so), first in line; dropped when it is not one of the held TGT's (a refill may
    /// have replaced the TGT meanwhile) or is held already. Whether it was put back.
    pub fn give_back(&mut self, ott: Ott) -> bool {
        let ours = self
            .tgt
            .as_ref()
            .is_some_and(|t| ott.token.nonce == ott_nonce(&t.secret, ott.index));
        if !ours || self.otts.iter().any(|o| o.index == ott.index) {
            return false;
        }
        self.otts.insert(0, ott);
        true
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

    /// Starts a refill against the keys the gateway offers now; `has_api_key` says whether the
    /// caller can authenticate to the identity service (a new TGT needs it).
    pub fn refill(&mut self, keys: TokenKeys, has_api_key: bool) -> Refill {
        Refill {
            keys,
            has_api_key,
            attempt: 0,
            waiting: Waiting::Nothing,
            fraud_data_refused: None,
        }
    }
}

/// A request the refill needs posted to the gateway, encapsulated (straight to it, not through
/// the relay: token issuance learns the address anyway).
#[derive(Debug)]
pub struct TokenPost {
    /// [`TGT_PATH`], [`FRAUD_DATA_PATH`] or [`OTT_PATH`].
    pub path: &'static str,
    /// Send the API key as `authorization: Bearer …` (the identity service and the fraud
    /// detection service need it).
    pub with_api_key: bool,
    /// Fraud data for the token granting service (`arcane-fraud-data`, base64url).
    pub fraud_data: Option<String>,
    /// The content.
    pub body: Vec<u8>,
}

impl TokenPost {
    /// The inner request's header fields, `bearer` being `Bearer <API key>` when there is one.
    pub fn headers<'a>(&'a self, bearer: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
        let mut headers = Vec::new();
        if let (true, Some(b)) = (self.with_api_key, bearer) {
            headers.push(("authorization", b));
        }
        if let Some(f) = &self.fraud_data {
            headers.push((FRAUD_DATA_FIELD, f.as_str()));
        }
        headers
    }
}

/// What a refill wants next.
#[derive(Debug)]
pub enum RefillStep {
    /// Finished: this many OTTs were added (0: enough were on hand). Save the wallet.
    Done(usize),
    /// Post this, then call [`Refill::answer`] with the inner answer (save the wallet first: the
    /// step may have changed it).
    Post(TokenPost),
}

enum Waiting {
    Nothing,
    Tgt(Zeroizing<[u8; 32]>, Box<PendingToken>),
    FraudData(Vec<(u8, PendingToken)>),
    Otts(Vec<(u32, PendingToken)>),
}

/// The refill protocol without I/O: to at least [`LOW_WATER`] OTTs when below it. OTTs under
/// keys the gateway no longer lists are dropped; a new TGT is asked for first when there is
/// none, when it is used up, or when the gateway no longer lists its key; then one batch of OTTs,
/// once more under a new TGT when the service says this one is used up or its key is no longer
/// valid.
pub struct Refill {
    keys: TokenKeys,
    has_api_key: bool,
    attempt: u8,
    waiting: Waiting,
    /// Why the fraud detection service refused this refill, when it did.
    fraud_data_refused: Option<String>,
}

impl std::fmt::Debug for Refill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refill")
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Refill {
    /// The first step.
    pub fn start(&mut self, tokens: &mut Tokens) -> Result<RefillStep> {
        // An OTT is unusable once the gateway no longer lists its key (the entry expired).
        let valid = &self.keys.valid_ott_ids;
        tokens
            .otts
            .retain(|o| valid.contains(&o.token.token_key_id));
        if tokens.otts.len() >= LOW_WATER {
            return Ok(RefillStep::Done(0));
        }
        self.attempt_batch(tokens)
    }

    fn attempt_batch(&mut self, tokens: &mut Tokens) -> Result<RefillStep> {
        let fresh_tgt_needed = match &tokens.tgt {
            None => true,
            Some(t) => t.used_up || !self.keys.valid_tgt_ids.contains(&t.token.token_key_id),
        };
        if !fresh_tgt_needed {
            return self.fraud_data_then_otts(tokens);
        }
        if !self.has_api_key {
            return Err(ClientError::TokensExhausted(
                "a new TGT is needed, and no API key is configured for the identity service".into(),
            ));
        }
        let secret = random_secret()?;
        let (request, pending) = request_token(
            &self.keys.tgt,
            &TokenChallenge::for_issuer(TGT_ISSUER),
            tgt_nonce(&secret),
        )?;
        self.waiting = Waiting::Tgt(secret, Box::new(pending));
        Ok(RefillStep::Post(TokenPost {
            path: TGT_PATH,
            with_api_key: true,
            fraud_data: None,
            body: request.encode(),
        }))
    }

    /// Fraud data for the held TGT first, when the gateway lists fraud-data keys and the TGT
    /// has none under a key it lists; then the OTTs.
    fn fraud_data_then_otts(&mut self, tokens: &mut Tokens) -> Result<RefillStep> {
        let signing = self.keys.fraud_data_signing();
        let listed: Vec<[u8; 32]> = self.keys.fraud_data.iter().map(|k| k.key.id()).collect();
        let Some(tgt) = tokens.tgt.as_mut() else {
            return Err(ClientError::TokensExhausted("no TGT".into()));
        };
        if tgt
            .fraud_data
            .as_ref()
            .is_some_and(|f| !listed.contains(&f.token_key_id))
        {
            // Its key is no longer listed (expired or retiring): stale.
            tgt.fraud_data = None;
        }
        if signing.is_empty()
            || tgt.fraud_data.is_some()
            || !self.has_api_key
            || self.fraud_data_refused.is_some()
        {
            return self.ask_for_otts(tokens);
        }
        // One blinded request per class key: the service picks the one of our class.
        let nonce = fraud_data_nonce(&tgt.token.nonce);
        let mut requests = Vec::with_capacity(signing.len());
        let mut pendings = Vec::with_capacity(signing.len());
        for key in signing {
            let (request, pending) = request_token(&key.key, &fraud_data_challenge(), nonce)?;
            requests.push((key.class, request));
            pendings.push((key.class, pending));
        }
        self.waiting = Waiting::FraudData(pendings);
        Ok(RefillStep::Post(TokenPost {
            path: FRAUD_DATA_PATH,
            with_api_key: true,
            fraud_data: None,
            body: FraudDataRequest { requests }.encode(),
        }))
    }

    fn fraud_data_answer(
        &mut self,
        tokens: &mut Tokens,
        pendings: Vec<(u8, PendingToken)>,
        status: u16,
        body: &[u8],
    ) -> Result<RefillStep> {
        if status != 200 {
            // Not fatal here: the token granting service may not require it. Kept for the
            // error if it does.
            self.fraud_data_refused = Some(format!(
                "the fraud detection service answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
            return self.ask_for_otts(tokens);
        }
        let answer = FraudDataResponse::decode(body)?;
        let (_, pending) = pendings
            .into_iter()
            .find(|(class, _)| *class == answer.class)
            .ok_or_else(|| {
                ClientError::Answer(format!(
                    "the fraud detection service answered for class {}, which was not asked",
                    answer.class
                ))
            })?;
        // Finalization verifies the signature under the logged key of that class.
        let fraud_data = pending.finalize(&answer.blind_signature)?;
        if let Some(tgt) = tokens.tgt.as_mut() {
            tgt.fraud_data = Some(fraud_data);
        }
        self.ask_for_otts(tokens)
    }

    fn ask_for_otts(&mut self, tokens: &Tokens) -> Result<RefillStep> {
        let tgt = tokens
            .tgt
            .as_ref()
            .ok_or_else(|| ClientError::TokensExhausted("no TGT".into()))?;
        let first = tgt.next_index;
        let mut requests = Vec::new();
        let mut pendings = Vec::new();
        for i in first..first.saturating_add(BATCH) {
            let (request, pending) = request_token(
                &self.keys.ott,
                &TokenChallenge::for_issuer(OTT_ISSUER),
                ott_nonce(&tgt.secret, i),
            )?;
            requests.push(request.encode());
            pendings.push((i, pending));
        }
        let body = OttGrantRequest::encode(&tgt.token.encode(), &requests)?;
        self.waiting = Waiting::Otts(pendings);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        Ok(RefillStep::Post(TokenPost {
            path: OTT_PATH,
            with_api_key: false,
            fraud_data: tgt.fraud_data.as_ref().map(|f| b64.encode(f.encode())),
            body,
        }))
    }

    /// The inner answer (status and content) to the last [`RefillStep::Post`].
    pub fn answer(&mut self, tokens: &mut Tokens, status: u16, body: &[u8]) -> Result<RefillStep> {
        match std::mem::replace(&mut self.waiting, Waiting::Nothing) {
            Waiting::Nothing => Err(ClientError::TokensExhausted(
                "a token answer arrived that nothing asked for".into(),
            )),
            Waiting::Tgt(secret, pending) => {
                if status != 200 {
                    return Err(ClientError::TokensExhausted(format!(
                        "the identity service answered {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )));
                }
                tokens.tgt = Some(HeldTgt {
                    token: pending.finalize(body)?,
                    secret,
                    next_index: 0,
                    used_up: false,
                    fraud_data: None,
                });
                // OTTs derive from the TGT they were granted under: the old ones go with it.
                tokens.otts.clear();
                self.fraud_data_then_otts(tokens)
            }
            Waiting::FraudData(pendings) => self.fraud_data_answer(tokens, pendings, status, body),
            Waiting::Otts(pendings) => self.batch_answer(tokens, pendings, status, body),
        }
    }

    fn batch_answer(
        &mut self,
        tokens: &mut Tokens,
        pendings: Vec<(u32, PendingToken)>,
        status: u16,
        answer: &[u8],
    ) -> Result<RefillStep> {
        if status != 200 {
            let reason = refusal_reason(answer).unwrap_or_default();
            let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
            let fraud_data_wanted = matches!(
                reason.as_str(),
                "fraud-data-required" | "fraud-data-stale" | "fraud-data-invalid"
            );
            if fraud_data_wanted && self.attempt == 0 && self.fraud_data_refused.is_none() {
                // Fresh fraud data, once.
                self.attempt = 1;
                if let Some(t) = tokens.tgt.as_mut() {
                    t.fraud_data = None;
                }
                return self.fraud_data_then_otts(tokens);
            }
            if fraud_data_wanted {
                return Err(ClientError::TokensExhausted(format!(
                    "the token service answered {status}: {text}{}",
                    self.fraud_data_refused
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                )));
            }
            // A class limit, like a used-up allotment, is lifted only by a new TGT.
            if !matches!(
                reason.as_str(),
                "tgt-used-up" | "tgt-key-invalid" | "fraud-class-limit"
            ) {
                return Err(ClientError::TokensExhausted(format!(
                    "the token service answered {status}: {text}"
                )));
            }
            // This TGT gets no more (used up, or its key is no longer valid).
            if let Some(t) = tokens.tgt.as_mut() {
                t.used_up = true;
            }
            if self.attempt == 1 {
                return Err(ClientError::TokensExhausted(format!(
                    "the token service refused a fresh TGT too: {text}"
                )));
            }
            self.attempt = 1;
            return self.attempt_batch(tokens);
        }
        if answer.is_empty()
            || !answer.len().is_multiple_of(NK)
            || answer.len() / NK > pendings.len()
        {
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
        let tgt = tokens
            .tgt
            .as_mut()
            .ok_or_else(|| ClientError::TokensExhausted("no TGT".into()))?;
        tgt.next_index += granted as u32;
        // Fewer than asked: the allotment ran out.
        tgt.used_up = granted < BATCH as usize;
        tokens.otts.extend(otts);
        Ok(RefillStep::Done(granted))
    }
}

#[cfg(feature = "net")]
pub use file::Wallet;

#[cfg(feature = "net")]
mod file {
    use super::*;
    use crate::state::{StateDir, WALLET_FILE, write_private};
    use crate::transport::{Hop, InnerHttp, call};

    /// The wallet in a state folder, shared safely by the processes that use it.
    pub struct Wallet {
        pub(super) path: std::path::PathBuf,
        pub(super) tokens: Tokens,
    }

    impl std::fmt::Debug for Wallet {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.tokens.fmt(f)
        }
    }

    fn corrupt(path: &std::path::Path, why: &str) -> ClientError {
        ClientError::State {
            path: path.to_path_buf(),
            reason: format!("wallet: {why}"),
        }
    }

    /// The lock on a wallet file, held while a process reads and rewrites it.
    pub(super) struct WalletLock(std::fs::File);

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
                tokens: Tokens::default(),
            };
            wallet.reload()?;
            Ok(wallet)
        }

        /// Waits for, and takes, the lock on the wallet file (`wallet.lock` beside it), then
        /// reads the file again: another process may have changed it meanwhile.
        pub(super) async fn lock(&mut self) -> Result<WalletLock> {
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
                    Err(std::fs::TryLockError::WouldBlock)
                        if std::time::Instant::now() < deadline =>
                    {
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
            self.tokens = match std::fs::read(path) {
                Ok(t) => Tokens::from_json(&Zeroizing::new(t)).map_err(|e| corrupt(path, &e))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tokens::default(),
                Err(e) => return Err(corrupt(path, &e.to_string())),
            };
            Ok(())
        }

        pub(super) fn save(&self) -> Result<()> {
            write_private(&self.path, &self.tokens.to_json())
        }

        /// OTTs on hand (as of the last time this process read the wallet).
        pub fn available(&self) -> usize {
            self.tokens.available()
        }

        /// Takes `n` OTTs out, under the wallet's lock; they are gone from the file before they
        /// are returned.
        pub async fn take(&mut self, n: usize) -> Result<Vec<Ott>> {
            let _lock = self.lock().await?;
            let taken = self.tokens.take(n)?;
            self.save()?;
            Ok(taken)
        }

        /// [`Tokens::give_back`] under the wallet's lock, saved before it returns.
        pub async fn give_back(&mut self, ott: Ott) -> Result<bool> {
            let _lock = self.lock().await?;
            let back = self.tokens.give_back(ott);
            if back {
                self.save()?;
            }
            Ok(back)
        }

        /// The material the node checks for `ott` (TGT, secret, index, OTT).
        pub fn material(&self, ott: &Ott) -> Result<TokenMaterial> {
            self.tokens.material(ott)
        }

        /// Runs a [`Refill`] under the wallet's lock, posting what it asks for straight to the
        /// gateway, encapsulated to `key_config`, and saving the wallet after every step.
        pub async fn refill(
            &mut self,
            http: &reqwest::Client,
            gateway: &str,
            key_config: &[u8],
            keys: TokenKeys,
            api_key: Option<&str>,
        ) -> Result<usize> {
            let _lock = self.lock().await?;
            let mut refill = self.tokens.refill(keys, api_key.is_some());
            let mut step = refill.start(&mut self.tokens);
            loop {
                // Whatever the step did (dropped tokens, a new TGT, a refusal that marked
                // the TGT used up) is on disk before anything more is asked.
                self.save()?;
                match step? {
                    RefillStep::Done(added) => return Ok(added),
                    RefillStep::Post(post) => {
                        let bearer = api_key.map(|k| Zeroizing::new(format!("Bearer {k}")));
                        let headers = post.headers(bearer.as_ref().map(|b| b.as_str()));
                        let (status, body) = call(
                            http,
                            Hop::Gateway(gateway),
                            key_config,
                            &InnerHttp {
                                method: "POST",
                                path: post.path,
                                headers: &headers,
                                body: &post.body,
                            },
                        )
                        .await?;
                        step = refill.answer(&mut self.tokens, status, &body);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "net")]
    use crate::state::{StateDir, WALLET_FILE};
    use arcane_verifier::tokens::{IssuerSecret, TokenRequest};

    /// The identity and token granting services, answering a refill's posts: `allotment` OTTs
    /// per TGT, then `tgt-used-up`.
    struct Issuers {
        tgt: IssuerSecret,
        ott: IssuerSecret,
        allotment: usize,
        granted: std::collections::HashMap<Vec<u8>, usize>,
        tgts_issued: usize,
        fraud: Vec<(u8, IssuerSecret)>,
        fraud_issued: usize,
    }

    impl Issuers {
        fn new(allotment: usize) -> Self {
            Issuers {
                tgt: IssuerSecret::generate().unwrap(),
                ott: IssuerSecret::generate().unwrap(),
                allotment,
                granted: Default::default(),
                tgts_issued: 0,
                fraud: Vec::new(),
                fraud_issued: 0,
            }
        }

        /// With a fraud detection service holding a key per class in `classes`, vouching for
        /// the first.
        fn with_fraud_data(mut self, classes: &[u8]) -> Self {
            self.fraud = classes
                .iter()
                .map(|c| (*c, IssuerSecret::generate().unwrap()))
                .collect();
            self
        }

        fn fraud_keys(&self) -> Vec<FraudDataKey> {
            self.fraud
                .iter()
                .map(|(class, s)| FraudDataKey {
                    class: *class,
                    key: s.public().clone(),
                    not_before: 0,
                    not_after: u64::MAX,
                })
                .collect()
        }

        fn keys(&self) -> TokenKeys {
            TokenKeys {
                tgt: self.tgt.public().clone(),
                ott: self.ott.public().clone(),
                valid_tgt_ids: vec![self.tgt.public().id()],
                valid_ott_ids: vec![self.ott.public().id()],
                fraud_data: self.fraud_keys(),
            }
        }

        fn answer(&mut self, post: &TokenPost) -> (u16, Vec<u8>) {
            if post.path == FRAUD_DATA_PATH {
                assert!(
                    post.with_api_key,
                    "the fraud detection service needs the API key"
                );
                self.fraud_issued += 1;
                let request = FraudDataRequest::decode(&post.body).unwrap();
                let (class, secret) = &self.fraud[0];
                let (_, blinded) = request.requests.iter().find(|(c, _)| c == class).unwrap();
                let response = FraudDataResponse {
                    class: *class,
                    blind_signature: secret.issue(blinded).unwrap(),
                };
                return (200, response.encode());
            }
            if post.path == TGT_PATH {
                assert!(post.with_api_key, "the identity service needs the API key");
                self.tgts_issued += 1;
                let request = TokenRequest::decode(&post.body).unwrap();
                return (200, self.tgt.issue(&request).unwrap());
            }
            assert!(
                !post.with_api_key,
                "the API key goes to the identity service only"
            );
            let grant = OttGrantRequest::parse(&post.body).unwrap();
            if !self.fraud.is_empty() {
                let tgt = Token::decode(grant.tgt).unwrap();
                let shown = post.fraud_data.as_ref().map(|f| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(f)
                        .unwrap()
                });
                let headers = post.headers(None);
                assert_eq!(
                    headers
                        .iter()
                        .filter(|(n, _)| *n == FRAUD_DATA_FIELD)
                        .count(),
                    usize::from(shown.is_some())
                );
                let keys = self.fraud_keys();
                match shown
                    .map(|f| arcane_verifier::fraud_data::check_fraud_data(&f, &tgt, &keys, 1))
                {
                    Some(Ok(key)) => assert_eq!(key.class, self.fraud[0].0),
                    _ => return (403, br#"{"reason": "fraud-data-required"}"#.to_vec()),
                }
            }
            let used = self.granted.entry(grant.tgt.to_vec()).or_default();
            let n = grant.requests.len().min(self.allotment - *used);
            if n == 0 {
                return (429, br#"{"reason": "tgt-used-up"}"#.to_vec());
            }
            *used += n;
            let mut body = Vec::new();
            for r in &grant.requests[..n] {
                body.extend(self.ott.issue(&TokenRequest::decode(r).unwrap()).unwrap());
            }
            (200, body)
        }
    }

    fn run(tokens: &mut Tokens, issuers: &mut Issuers, api_key: bool) -> Result<usize> {
        let mut refill = tokens.refill(issuers.keys(), api_key);
        let mut step = refill.start(tokens)?;
        loop {
            match step {
                RefillStep::Done(n) => return Ok(n),
                RefillStep::Post(post) => {
                    let (status, body) = issuers.answer(&post);
                    step = refill.answer(tokens, status, &body)?;
                }
            }
        }
    }

    #[test]
    fn fraud_data_is_got_once_per_tgt_shown_with_every_batch_and_again_when_its_key_goes() {
        let mut issuers = Issuers::new(10).with_fraud_data(&[2, 5]);
        let mut tokens = Tokens::default();
        assert_eq!(
            run(&mut tokens, &mut issuers, true).unwrap(),
            BATCH as usize
        );
        assert_eq!((issuers.tgts_issued, issuers.fraud_issued), (1, 1));
        // Kept with the TGT in the wallet file; the next batch shows it again without asking.
        let mut tokens = Tokens::from_json(&tokens.to_json()).unwrap();
        tokens.take(BATCH as usize - 1).unwrap();
        assert_eq!(run(&mut tokens, &mut issuers, true).unwrap(), 2);
        assert_eq!((issuers.tgts_issued, issuers.fraud_issued), (1, 1));
        // A new TGT gets its own.
        tokens.take(2).unwrap();
        assert_eq!(
            run(&mut tokens, &mut issuers, true).unwrap(),
            BATCH as usize
        );
        assert_eq!((issuers.tgts_issued, issuers.fraud_issued), (2, 2));
        // The class key rotates: what the wallet holds is under a key no longer listed, so it
        // is asked for again before the next batch.
        issuers.fraud[0].1 = IssuerSecret::generate().unwrap();
        issuers.fraud[1].1 = IssuerSecret::generate().unwrap();
        tokens.take(BATCH as usize).unwrap();
        assert_eq!(run(&mut tokens, &mut issuers, true).unwrap(), 2);
        assert_eq!((issuers.tgts_issued, issuers.fraud_issued), (2, 3));
    }

    #[test]
    fn a_refill_gets_a_tgt_then_batches_and_renews_a_used_up_tgt() {
        let mut issuers = Issuers::new(10);
        let mut tokens = Tokens::default();
        assert!(matches!(
            run(&mut tokens, &mut issuers, false),
            Err(ClientError::TokensExhausted(_))
        ));
        assert_eq!(
            run(&mut tokens, &mut issuers, true).unwrap(),
            BATCH as usize
        );
        assert_eq!(issuers.tgts_issued, 1);
        // Above the low-water mark nothing is asked.
        assert_eq!(run(&mut tokens, &mut issuers, true).unwrap(), 0);
        let spent = tokens.take(BATCH as usize - 1).unwrap();
        assert_eq!(
            spent.iter().map(|o| o.index).collect::<Vec<_>>(),
            (0..7).collect::<Vec<_>>()
        );
        // The allotment has 2 left: granted short, so the TGT is marked used up ...
        assert_eq!(run(&mut tokens, &mut issuers, true).unwrap(), 2);
        assert_eq!(issuers.tgts_issued, 1);
        let json = tokens.to_json();
        let mut tokens = Tokens::from_json(&json).unwrap();
        assert_eq!(tokens.available(), 3);
        // ... and the next refill starts with a fresh TGT, dropping the old one's OTTs.
        assert_eq!(
            run(&mut tokens, &mut issuers, true).unwrap(),
            BATCH as usize
        );
        assert_eq!(issuers.tgts_issued, 2);
        assert_eq!(tokens.available(), BATCH as usize);
        let ott = tokens.take(1).unwrap().remove(0);
        let material = tokens.material(&ott).unwrap();
        assert_eq!(material.index, 0);
        material
            .verify(issuers.tgt.public(), issuers.ott.public(), 1000, None)
            .unwrap();
    }

    #[test]
    fn an_unspent_ott_goes_back_first_in_line_once_and_only_under_its_own_tgt() {
        let mut issuers = Issuers::new(20);
        let mut tokens = Tokens::default();
        run(&mut tokens, &mut issuers, true).unwrap();
        let on_hand = tokens.available();
        let mut taken = tokens.take(2).unwrap();
        let second = taken.pop().unwrap();
        let first = taken.pop().unwrap();
        let (first_index, first_token) = (first.index, first.token.clone());
        assert!(tokens.give_back(first));
        assert_eq!(tokens.available(), on_hand - 1);
        // Twice is refused: it is held already.
        assert!(!tokens.give_back(Ott {
            index: first_index,
            token: first_token,
        }));
        let again = tokens.take(1).unwrap().remove(0);
        assert_eq!(again.index, first_index);
        // Under another TGT (the wallet renewed it) an old OTT is not taken back.
        let mut renewed = Tokens::default();
        run(&mut renewed, &mut Issuers::new(20), true).unwrap();
        let before = renewed.available();
        assert!(!renewed.give_back(second));
        assert_eq!(renewed.available(), before);
    }

    #[test]
    fn a_refusal_of_the_tgt_asks_for_a_new_one_once() {
        let mut issuers = Issuers::new(8);
        let mut tokens = Tokens::default();
        assert_eq!(run(&mut tokens, &mut issuers, true).unwrap(), 8);
        tokens.take(8).unwrap();
        // The TGT is not marked used up (8 granted of 8 asked), but the service says it is:
        // a new TGT, and its batch.
        assert_eq!(run(&mut tokens, &mut issuers, true).unwrap(), 8);
        assert_eq!(issuers.tgts_issued, 2);
        // OTTs under an OTT key the gateway no longer lists are dropped, not spent.
        let mut keys = issuers.keys();
        keys.valid_ott_ids.clear();
        let mut refill = tokens.refill(keys, true);
        assert!(matches!(
            refill.start(&mut tokens).unwrap(),
            RefillStep::Post(_)
        ));
        assert_eq!(tokens.available(), 0);
        // An answer nobody asked for is refused.
        let mut idle = tokens.refill(issuers.keys(), true);
        assert!(idle.answer(&mut tokens, 200, b"").is_err());
        assert!(
            Tokens::from_json(b"{\"tgt\": null, \"otts\": [{\"index\": 1, \"token\": \"AAAA\"}]}")
                .is_err()
        );
    }

    #[cfg(feature = "net")]
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
    #[cfg(feature = "net")]
    fn saved_wallet(dir: &std::path::Path, n: u32) -> (StateDir, Zeroizing<[u8; 32]>) {
        let key = arcane_verifier::note::NoteSigner::from_seed("log.example", 1, &[1; 32])
            .unwrap()
            .verifier();
        let state = StateDir::open(dir, &key).unwrap();
        let issuer = IssuerSecret::generate().unwrap();
        let secret = random_secret().unwrap();
        Wallet {
            path: state.file(WALLET_FILE),
            tokens: Tokens {
                tgt: Some(HeldTgt {
                    token: token(&issuer, tgt_nonce(&secret)),
                    secret: secret.clone(),
                    next_index: n,
                    used_up: false,
                    fraud_data: None,
                }),
                otts: (0..n)
                    .map(|i| Ott {
                        index: i,
                        token: token(&issuer, ott_nonce(&secret, i)),
                    })
                    .collect(),
            },
        }
        .save()
        .unwrap();
        (state, secret)
    }

    #[cfg(feature = "net")]
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

    #[cfg(feature = "net")]
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
