//! The identity service (a budget of TGTs per account and period), the token granting service
//! (a fixed allotment of OTTs per TGT), and single-use OTT redemption — all against the gateway's
//! [`TokenStore`] (a SQLite file, or PostgreSQL shared by replicas), each decision committed
//! before it is answered, and each quota reserved before any RSA work is done for it.
//!
//! Lifecycle (`spec/tokens.md` §3): an account may have `tgts_per_period` TGTs per period (one
//! per device, or again after a lost wallet). A TGT is good for `otts_per_tgt` OTT indices in
//! all, for as long as its issuer key's entry is valid; a client that has used them up, or whose
//! TGT's key has expired, asks for a new TGT. Counters are pruned once the key they were counted
//! under has expired.

use crate::error::Result;
use crate::proven::KeyRing;
use crate::store::{Spend, TokenStore};
use arcane_verifier::entry::TokenRole;
use arcane_verifier::fraud_data::{
    FraudDataRefusal, FraudDataRequest, FraudDataResponse, check_fraud_data,
};
use arcane_verifier::tokens::{OTT_ISSUER, TGT_ISSUER, Token, TokenChallenge, TokenRequest};
use sha2::{Digest, Sha256};

/// Why a token operation was refused, with the HTTP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 401, 403, 429 or 503.
    pub status: u16,
    /// A stable, machine-readable reason ([`reason`] lists them).
    pub reason: &'static str,
    /// What was wrong, in words.
    pub message: String,
}

/// The machine-readable reasons of token refusals, as they appear in the `reason` field of an
/// inner JSON error answer.
pub mod reason {
    /// The request does not decode, or names another key.
    pub const MALFORMED: &str = "malformed";
    /// The identity service does not know the API key.
    pub const UNKNOWN_ACCOUNT: &str = "unknown-account";
    /// The account has had all its TGTs for this period.
    pub const TGT_BUDGET_EXHAUSTED: &str = "tgt-budget-exhausted";
    /// The TGT's issuer key is unknown or no longer valid: get a new TGT.
    pub const TGT_KEY_INVALID: &str = "tgt-key-invalid";
    /// The TGT does not verify.
    pub const TGT_INVALID: &str = "tgt-invalid";
    /// The TGT's OTT allotment is used up: get a new TGT.
    pub const TGT_USED_UP: &str = "tgt-used-up";
    /// The OTT's issuer key is unknown or no longer valid.
    pub const OTT_KEY_INVALID: &str = "ott-key-invalid";
    /// The OTT does not verify.
    pub const OTT_INVALID: &str = "ott-invalid";
    /// The OTT was spent before.
    pub const SPENT: &str = "spent";
    /// No issuer key is valid right now, or the database is unavailable.
    pub const UNAVAILABLE: &str = "unavailable";
    /// The token granting service requires fraud data and none came with the TGT.
    pub const FRAUD_DATA_REQUIRED: &str = "fraud-data-required";
    /// The fraud data is under a key that is not valid now: get fresh fraud data.
    pub const FRAUD_DATA_STALE: &str = "fraud-data-stale";
    /// The fraud data does not verify, or is bound to another TGT.
    pub const FRAUD_DATA_INVALID: &str = "fraud-data-invalid";
    /// The TGT has had every OTT its fraud-data class allows: a new TGT is needed.
    pub const FRAUD_CLASS_LIMIT: &str = "fraud-class-limit";
    /// The fraud detection service has no class for this account.
    pub const FRAUD_DATA_REFUSED: &str = "fraud-data-refused";
    /// The account has had its fraud data for this period.
    pub const FRAUD_DATA_BUDGET_EXHAUSTED: &str = "fraud-data-budget-exhausted";
}

fn refuse(status: u16, reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason,
        message: message.into(),
    }
}

fn unavailable() -> Refusal {
    refuse(503, reason::UNAVAILABLE, "database unavailable")
}

/// Limits of the token services.
#[derive(Clone, Copy, Debug)]
pub struct TokenLimits {
    /// Length of a period, in seconds (the TGT budget is per account and period).
    pub period_secs: u64,
    /// TGTs an account may get per period (devices, lost wallets).
    pub tgts_per_period: u32,
    /// OTT indices one TGT is good for, in all (the node enforces the same limit).
    pub otts_per_tgt: u32,
    /// Most OTTs in one batch request.
    pub max_batch: u32,
}

impl Default for TokenLimits {
    fn default() -> Self {
        TokenLimits {
            period_secs: 24 * 3600,
            tgts_per_period: 8,
            otts_per_tgt: 256,
            max_batch: 32,
        }
    }
}

/// Fraud data ([`arcane_verifier::fraud_data`], `spec/tokens.md` §5): what the fraud detection
/// service vouches for, and what the token granting service asks of it. Read from a TOML file
/// (`arcane-gateway serve --fraud-data FILE`):
///
/// ```toml
/// required = true                 # OTTs only for a TGT shown with fresh fraud data
/// per_account_per_period = 64     # fraud data the service signs for one account per period
/// default_class = 1               # accounts not listed below (absent: refused)
/// [accounts]                      # the operator's verdicts, by account name
/// alice = 3
/// [class_limits]                  # most OTTs one TGT gets with fraud data of a class
/// "0" = 16
/// ```
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudDataPolicy {
    /// The token granting service grants OTTs only to a TGT shown with fresh fraud data.
    #[serde(default)]
    pub required: bool,
    /// Fraud data the service signs for one account per period (default 64).
    #[serde(default = "default_fraud_data_budget")]
    pub per_account_per_period: u32,
    /// The class of accounts the file does not list; none: they are refused.
    #[serde(default)]
    pub default_class: Option<u8>,
    /// Each listed account's class.
    #[serde(default)]
    pub accounts: std::collections::BTreeMap<String, u8>,
    /// The most OTT indices a TGT shown with fraud data of a class may get (classes not listed:
    /// the TGT's whole allotment). Keys are classes, as strings.
    #[serde(default)]
    pub class_limits: std::collections::BTreeMap<String, u32>,
}

fn default_fraud_data_budget() -> u32 {
    64
}

impl Default for FraudDataPolicy {
    /// Nothing required, no account vouched for, the default budget.
    fn default() -> Self {
        FraudDataPolicy {
            required: false,
            per_account_per_period: default_fraud_data_budget(),
            default_class: None,
            accounts: Default::default(),
            class_limits: Default::default(),
        }
    }
}

impl FraudDataPolicy {
    /// Reads and checks a policy file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::error::GatewayError::Config(format!("{}: {e}", path.display())))?;
        let policy: FraudDataPolicy = toml::from_str(&text)
            .map_err(|e| crate::error::GatewayError::Config(format!("{}: {e}", path.display())))?;
        for class in policy.class_limits.keys() {
            class.parse::<u8>().map_err(|_| {
                crate::error::GatewayError::Config(format!(
                    "{}: class_limits: {class:?} is not a class (0–255)",
                    path.display()
                ))
            })?;
        }
        Ok(policy)
    }

    /// Every class the policy names (default, accounts', limits'), each once, in order: those
    /// the fraud detection service needs a key for.
    pub fn classes(&self) -> Vec<u8> {
        let mut classes: Vec<u8> = self
            .default_class
            .into_iter()
            .chain(self.accounts.values().copied())
            .chain(self.class_limits.keys().filter_map(|c| c.parse().ok()))
            .collect();
        classes.sort_unstable();
        classes.dedup();
        classes
    }

    /// The class the service vouches for for `account`.
    pub fn class_of(&self, account: &str) -> Option<u8> {
        self.accounts.get(account).copied().or(self.default_class)
    }

    /// The most OTT indices a TGT shown with fraud data of `class` may get, within `allotment`.
    pub fn limit_of(&self, class: u8, allotment: u32) -> u32 {
        self.class_limits
            .get(&class.to_string())
            .map_or(allotment, |l| (*l).min(allotment))
    }
}

/// The token services.
pub struct TokenServices {
    store: TokenStore,
    limits: TokenLimits,
    fraud_data: FraudDataPolicy,
}

impl std::fmt::Debug for TokenServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServices")
            .field("limits", &self.limits)
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Records `nonce` as spent in `scope` until `expires_at` (its key's expiry); refused when it
/// was spent before, here or at a replica on the same database. Committed before it returns.
pub async fn spend(
    store: &TokenStore,
    scope: &str,
    nonce: &[u8; 32],
    expires_at: u64,
    now: u64,
) -> std::result::Result<(), Refusal> {
    match store.spend(scope, nonce, expires_at, now).await {
        Ok(Spend::Fresh) => Ok(()),
        Ok(Spend::Again) => Err(refuse(403, reason::SPENT, "this token was already spent")),
        Err(_) => Err(unavailable()),
    }
}

impl TokenServices {
    /// Services over `store` with `limits`.
    pub fn new(store: TokenStore, limits: TokenLimits) -> Self {
        TokenServices {
            store,
            limits,
            fraud_data: FraudDataPolicy::default(),
        }
    }

    /// With the fraud detection service's verdicts and the granting service's demands.
    pub fn with_fraud_data(mut self, policy: FraudDataPolicy) -> Self {
        self.fraud_data = policy;
        self
    }

    /// The fraud detection service: authenticates `api_key`, takes one of the account's fraud
    /// data for this period, and blind-signs the request of the account's class under that
    /// class's current key. The answer is the class and the blind signature.
    pub async fn issue_fraud_data(
        &self,
        ring: &KeyRing,
        api_key: &str,
        request: &[u8],
        now: u64,
    ) -> std::result::Result<Vec<u8>, Refusal> {
        let request = FraudDataRequest::decode(request)
            .map_err(|e| refuse(400, reason::MALFORMED, e.to_string()))?;
        let account = self.account(api_key).await?;
        let class = self.fraud_data.class_of(&account).ok_or_else(|| {
            refuse(
                403,
                reason::FRAUD_DATA_REFUSED,
                "the fraud detection service vouches for no class for this account",
            )
        })?;
        let (_, blinded) = request
            .requests
            .iter()
            .find(|(c, _)| *c == class)
            .ok_or_else(|| {
                refuse(
                    400,
                    reason::MALFORMED,
                    format!("the request holds no blinded request for class {class}"),
                )
            })?;
        let issuer = ring
            .issuer_for_request(TokenRole::FraudData(class), blinded.truncated_key_id, now)
            .ok_or_else(|| {
                refuse(
                    400,
                    reason::MALFORMED,
                    format!("the class {class} request is blinded to no key valid now"),
                )
            })?;
        // Counted per account and period (its own row beside the TGT budgets): an account
        // cannot have fraud data signed for many devices' TGTs beyond its budget.
        let counted = format!("fraud-data:{account}");
        let period = self.period(now);
        let reserved = self
            .store
            .reserve_tgt(&counted, period, self.fraud_data.per_account_per_period)
            .await
            .map_err(|_| unavailable())?;
        if !reserved {
            return Err(refuse(
                429,
                reason::FRAUD_DATA_BUDGET_EXHAUSTED,
                format!(
                    "this account has had its {} fraud data for this period",
                    self.fraud_data.per_account_per_period
                ),
            ));
        }
        match issuer.secret.issue(blinded) {
            Ok(signature) => Ok(FraudDataResponse {
                class,
                blind_signature: signature,
            }
            .encode()),
            Err(e) => {
                let _ = self.store.refund_tgt(&counted, period).await;
                Err(refuse(400, reason::MALFORMED, e.to_string()))
            }
        }
    }

    /// The OTT indices `tgt` may have in all, given the fraud data shown with it: the class's
    /// limit, or the whole allotment.
    fn allotment_for(
        &self,
        ring: &KeyRing,
        tgt: &Token,
        fraud_data: Option<&[u8]>,
        now: u64,
    ) -> std::result::Result<u32, Refusal> {
        let Some(fraud_data) = fraud_data else {
            return if self.fraud_data.required {
                Err(refuse(
                    403,
                    reason::FRAUD_DATA_REQUIRED,
                    FraudDataRefusal::Missing.to_string(),
                ))
            } else {
                Ok(self.limits.otts_per_tgt)
            };
        };
        match check_fraud_data(fraud_data, tgt, &ring.fraud_data_keys(now), now) {
            Ok(key) => Ok(self
                .fraud_data
                .limit_of(key.class, self.limits.otts_per_tgt)),
            Err(e @ FraudDataRefusal::Stale) => {
                Err(refuse(403, reason::FRAUD_DATA_STALE, e.to_string()))
            }
            Err(e) => Err(refuse(403, reason::FRAUD_DATA_INVALID, e.to_string())),
        }
    }

    /// The store behind them.
    pub fn store(&self) -> &TokenStore {
        &self.store
    }

    /// The limits in force.
    pub fn limits(&self) -> TokenLimits {
        self.limits
    }

    fn period(&self, now: u64) -> i64 {
        (now / self.limits.period_secs.max(1)) as i64
    }

    /// Creates an account; returns its API key (shown once; only its SHA-256 is stored).
    pub async fn add_account(store: &TokenStore, account: &str) -> Result<String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| crate::error::GatewayError::Config(e.to_string()))?;
        let api_key = format!("arcane_{}", hex::encode(key));
        store
            .add_account(&sha256_hex(api_key.as_bytes()), account)
            .await?;
        Ok(api_key)
    }

    /// The account whose API key is `api_key` (the identity and fraud detection services).
    async fn account(&self, api_key: &str) -> std::result::Result<String, Refusal> {
        self.store
            .account(&sha256_hex(api_key.as_bytes()))
            .await
            .map_err(|_| unavailable())?
            .ok_or_else(|| refuse(401, reason::UNKNOWN_ACCOUNT, "unknown API key"))
    }

    /// The identity service: authenticates `api_key`, reserves one of the account's TGTs for
    /// this period, then blind-signs the request under the current TGT key.
    pub async fn issue_tgt(
        &self,
        ring: &KeyRing,
        api_key: &str,
        request: &[u8],
        now: u64,
    ) -> std::result::Result<Vec<u8>, Refusal> {
        let request = TokenRequest::decode(request)
            .map_err(|e| refuse(400, reason::MALFORMED, e.to_string()))?;
        let account = self.account(api_key).await?;
        let issuer = ring
            .issuer_for_request(TokenRole::Tgt, request.truncated_key_id, now)
            .ok_or_else(|| {
                refuse(
                    400,
                    reason::MALFORMED,
                    "the request is blinded to no TGT key that is valid now",
                )
            })?;
        let exhausted = || {
            refuse(
                429,
                reason::TGT_BUDGET_EXHAUSTED,
                format!(
                    "this account has had its {} TGTs for this period",
                    self.limits.tgts_per_period
                ),
            )
        };
        if self.limits.tgts_per_period == 0 {
            return Err(exhausted());
        }
        // Reserve first: a refused request costs no RSA work.
        let period = self.period(now);
        let reserved = self
            .store
            .reserve_tgt(&account, period, self.limits.tgts_per_period)
            .await
            .map_err(|_| unavailable())?;
        if !reserved {
            return Err(exhausted());
        }
        match issuer.secret.issue(&request) {
            Ok(response) => Ok(response),
            Err(e) => {
                // The client's own malformed request: give the TGT back.
                let _ = self.store.refund_tgt(&account, period).await;
                Err(refuse(400, reason::MALFORMED, e.to_string()))
            }
        }
    }

    /// The token granting service: checks the TGT under a currently valid TGT key, and the fraud
    /// data shown with it (required or not, as the policy says; its class may limit the TGT's
    /// allotment), reserves up to `requests.len()` of its remaining OTT indices, then
    /// blind-signs that many under the
    /// current OTT key. The answer holds one response per reserved index, for the first
    /// requests in order (fewer than asked only when the allotment ran out: the next batch
    /// needs a new TGT).
    pub async fn grant_otts(
        &self,
        ring: &KeyRing,
        tgt: &[u8],
        requests: &[Vec<u8>],
        fraud_data: Option<&[u8]>,
        now: u64,
    ) -> std::result::Result<Vec<Vec<u8>>, Refusal> {
        let tgt = Token::decode(tgt).map_err(|e| refuse(400, reason::MALFORMED, e.to_string()))?;
        let tgt_issuer = ring
            .issuer_with_id(TokenRole::Tgt, &tgt.token_key_id, now)
            .ok_or_else(|| {
                refuse(
                    403,
                    reason::TGT_KEY_INVALID,
                    "the TGT's issuer key is not valid now: get a new TGT",
                )
            })?;
        tgt.verify(
            tgt_issuer.secret.public(),
            &TokenChallenge::for_issuer(TGT_ISSUER),
        )
        .map_err(|e| refuse(403, reason::TGT_INVALID, e.to_string()))?;
        let allotment = self.allotment_for(ring, &tgt, fraud_data, now)?;
        let n = requests.len() as u32;
        if n == 0 || n > self.limits.max_batch {
            return Err(refuse(
                400,
                reason::MALFORMED,
                format!("a batch holds 1 to {} requests", self.limits.max_batch),
            ));
        }
        let decoded = requests
            .iter()
            .map(|r| TokenRequest::decode(r))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| refuse(400, reason::MALFORMED, e.to_string()))?;
        let ott_key_id = decoded[0].truncated_key_id;
        let ott_issuer = ring
            .issuer_for_request(TokenRole::Ott, ott_key_id, now)
            .filter(|_| decoded.iter().all(|r| r.truncated_key_id == ott_key_id))
            .ok_or_else(|| {
                refuse(
                    400,
                    reason::MALFORMED,
                    "the requests are not all blinded to one OTT key that is valid now",
                )
            })?;
        // Reserve atomically: the allotment only grows while it stays within the limit, in one
        // statement, so replicas on one database cannot both take the last indices.
        let reserved = self
            .store
            .reserve_otts(&tgt.nonce, n, allotment, tgt_issuer.proof.not_after())
            .await
            .map_err(|_| unavailable())?;
        if reserved == 0 && allotment < self.limits.otts_per_tgt {
            return Err(refuse(
                429,
                reason::FRAUD_CLASS_LIMIT,
                format!(
                    "this TGT has had the {allotment} OTTs its fraud-data class allows: get a new TGT"
                ),
            ));
        }
        if reserved == 0 {
            return Err(refuse(
                429,
                reason::TGT_USED_UP,
                format!(
                    "this TGT's {} OTTs are used up: get a new TGT",
                    self.limits.otts_per_tgt
                ),
            ));
        }
        let signed = decoded[..reserved as usize]
            .iter()
            .map(|r| ott_issuer.secret.issue(r))
            .collect::<std::result::Result<Vec<_>, _>>();
        match signed {
            Ok(responses) => Ok(responses),
            Err(e) => {
                let _ = self.store.refund_otts(&tgt.nonce, reserved).await;
                Err(refuse(400, reason::MALFORMED, e.to_string()))
            }
        }
    }

    /// Redeems an OTT in `scope` (`gateway` or `relay`): the signature under an OTT key whose
    /// entry is valid now, then single use, recorded before the answer.
    pub async fn redeem(
        &self,
        ring: &KeyRing,
        scope: &str,
        token: &[u8],
        now: u64,
    ) -> std::result::Result<Token, Refusal> {
        let token =
            Token::decode(token).map_err(|e| refuse(400, reason::MALFORMED, e.to_string()))?;
        let issuer = ring
            .issuer_with_id(TokenRole::Ott, &token.token_key_id, now)
            .ok_or_else(|| {
                refuse(
                    403,
                    reason::OTT_KEY_INVALID,
                    "the token's issuer key is unknown or no longer valid",
                )
            })?;
        token
            .verify(
                issuer.secret.public(),
                &TokenChallenge::for_issuer(OTT_ISSUER),
            )
            .map_err(|e| refuse(403, reason::OTT_INVALID, e.to_string()))?;
        spend(
            &self.store,
            scope,
            &token.nonce,
            issuer.proof.not_after(),
            now,
        )
        .await?;
        Ok(token)
    }

    /// Forgets what no longer matters: spent tokens and OTT allotments whose key has expired,
    /// TGT budgets of past periods. Returns the rows removed.
    pub async fn prune(&self, now: u64) -> Result<u64> {
        self.store.prune(now, self.period(now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_file(text: &str) -> Result<FraudDataPolicy> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fraud-data.toml");
        std::fs::write(&path, text).unwrap();
        FraudDataPolicy::load(&path)
    }

    #[test]
    fn a_fraud_data_policy_names_classes_limits_and_defaults() {
        let policy = policy_file(
            "required = true\ndefault_class = 1\n[accounts]\nflagged = 0\ntrusted = 3\n\
             [class_limits]\n\"0\" = 0\n\"1\" = 300\n",
        )
        .unwrap();
        assert_eq!(policy.per_account_per_period, 64);
        assert_eq!(policy.classes(), [0, 1, 3]);
        assert_eq!(policy.class_of("flagged"), Some(0));
        assert_eq!(policy.class_of("anyone"), Some(1));
        // A limit never exceeds the TGT's allotment; unlisted classes get all of it.
        assert_eq!(policy.limit_of(0, 256), 0);
        assert_eq!(policy.limit_of(1, 256), 256);
        assert_eq!(policy.limit_of(3, 256), 256);
        // Without a default class, an unlisted account is vouched for by no class.
        let strict = policy_file("[accounts]\ntrusted = 3\n").unwrap();
        assert_eq!(strict.class_of("anyone"), None);
        assert!(!strict.required);
        assert_eq!(
            FraudDataPolicy::default().per_account_per_period,
            strict.per_account_per_period
        );
        for bad in [
            "[class_limits]\nlow = 3\n",
            "[class_limits]\n\"256\" = 3\n",
            "required = \"yes\"\n",
            "unknown = 1\n",
            "default_class = 256\n",
        ] {
            assert!(policy_file(bad).is_err(), "{bad}");
        }
    }
}
