//! The client: every pre-request check, in order, before each request; then the sealed request
//! through the relay and the answer as a stream of text deltas.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcane_verifier::checkpoint::VerifiedCheckpoint;
use arcane_verifier::envelope::BusyAnswer;
use arcane_verifier::inner::ChatCompletionRequest;
use tokio::sync::mpsc;

use crate::answer::{AnswerOpener, ReceiptContext, prepare_chat, seal_chat};
pub use crate::answer::{ChatEvent, ChatStream, Route, Summary};
pub use crate::checks::Passed;
use crate::checks::{Candidate, Checks, GatewayKeys, ModelListing, NodeList};
use crate::error::{Check, ClientError, Result};
use crate::receipts;
use crate::state::StateDir;
use crate::transport::{self, Hop, InnerHttp};
use crate::trust::{Relay, Trust};
use crate::view::LogView;
use crate::wallet::Wallet;

/// How long a fetched key list is used before it is fetched again (its proofs are re-checked
/// against the newest checkpoint on every request regardless).
pub const KEYS_REFETCH: Duration = Duration::from_secs(600);
/// Largest key list read from the gateway.
pub const MAX_KEY_LIST: usize = 1 << 20;

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the checks established before a request.
#[derive(Clone, Debug)]
pub struct Preflight {
    /// The newest verified checkpoint.
    pub checkpoint: VerifiedCheckpoint,
    /// The gateway's verified keys.
    pub keys: GatewayKeys,
    /// Verified candidates for this request.
    pub candidates: Vec<Candidate>,
    /// One line per check, in order.
    pub report: Vec<Passed>,
}

/// How the client is set up.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// What it trusts and where the services are.
    pub trust: Trust,
    /// The state folder root (one subfolder per log).
    pub state_root: PathBuf,
    /// Verified candidates each request names (the gateway routes to one of them).
    pub candidates: usize,
}

impl ClientConfig {
    /// Defaults: the user's state folder, two candidates per request.
    pub fn new(trust: Trust) -> Self {
        ClientConfig {
            trust,
            state_root: crate::state::default_root(),
            candidates: 2,
        }
    }
}

type Observer = Arc<dyn Fn(&Passed) + Send + Sync>;

/// The client.
pub struct Client {
    checks: Checks,
    view: LogView,
    state: StateDir,
    http: reqwest::Client,
    http3: crate::http3::Http3,
    log: arcane_log_client::LogClient,
    wallet: Wallet,
    keys_answer: Option<(Instant, Vec<u8>)>,
    pool: VecDeque<serde_json::Value>,
    models: Vec<ModelListing>,
    candidates: usize,
    observer: Option<Observer>,
    #[cfg(feature = "local")]
    local: Option<crate::local::LocalModel>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state.path())
            .field("pool", &self.pool.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with its state under `config.state_root`.
    pub fn new(config: ClientConfig) -> Result<Client> {
        if config.trust.is_development() {
            tracing::warn!(
                "DEVELOPMENT MODE: node documents are checked against a development (simulated NSM) root, not AWS's"
            );
        }
        let state = StateDir::open(&config.state_root, &config.trust.log.log_key)?;
        let wallet = Wallet::load(&state)?;
        let roots = config.trust.tls_roots_pem.as_deref();
        let config_error =
            |e: arcane_log_client::LogClientError| ClientError::Config(format!("tls_roots: {e}"));
        let http = arcane_log_client::http_client_builder(roots)
            .map_err(config_error)?
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let log = arcane_log_client::LogClient::with_options(
            &config.trust.log_url,
            &arcane_log_client::LogClientOptions {
                extra_roots_pem: config.trust.tls_roots_pem.clone(),
                timeout: None,
            },
        )
        .map_err(config_error)?;
        let http3 = crate::http3::Http3::new(config.trust.tls_roots_pem.as_deref())
            .map_err(ClientError::Config)?;
        Ok(Client {
            checks: Checks::new(config.trust),
            view: LogView::default(),
            state,
            http,
            http3,
            log,
            wallet,
            keys_answer: None,
            pool: VecDeque::new(),
            models: Vec::new(),
            candidates: config.candidates.max(1),
            observer: None,
            #[cfg(feature = "local")]
            local: None,
        })
    }

    /// Calls `observer` for each check as it passes (the CLI prints them).
    pub fn on_passed(&mut self, observer: impl Fn(&Passed) + Send + Sync + 'static) {
        self.observer = Some(Arc::new(observer));
    }

    /// Configures an on-device model for [`Route::Auto`] and [`Route::Local`].
    #[cfg(feature = "local")]
    pub fn set_local_model(&mut self, model: crate::local::LocalModel) {
        self.local = Some(model);
    }

    /// The state folder of this log.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// What the client trusts.
    pub fn trust(&self) -> &Trust {
        self.checks.trust()
    }

    /// OTTs in the wallet.
    pub fn tokens_on_hand(&self) -> usize {
        self.wallet.available()
    }

    fn passed(&self, report: &mut Vec<Passed>, check: Check, detail: String) {
        self.report(report, Passed { check, detail });
    }

    fn report(&self, report: &mut Vec<Passed>, p: Passed) {
        if let Some(o) = &self.observer {
            o(&p);
        }
        report.push(p);
    }

    async fn anchor(&mut self, checkpoint: &VerifiedCheckpoint, check: Check) -> Result<()> {
        self.view
            .anchor(&self.log, checkpoint, &self.state)
            .await
            .map_err(|e| match e {
                // A log that cannot be reached right now refuses nothing: say so as it is.
                ClientError::SplitView { .. }
                | ClientError::Unreachable { .. }
                | ClientError::Status { .. } => e,
                other => ClientError::refused(check, format!("its checkpoint: {other}")),
            })
    }

    /// Every pre-request check, in order, stopping at the first failure. `model` restricts the
    /// candidates to nodes serving that model.
    pub async fn preflight(&mut self, model: Option<&str>) -> Result<Preflight> {
        let trust = Arc::clone(self.checks.trust());
        let mut report = Vec::new();
        // 1. The checkpoint: signature, witnesses, consistency with the saved one.
        let consistency = self.view.update(&self.log, &trust.log, &self.state).await?;
        let checkpoint = self.view.latest().expect("set by update").clone();
        for p in Passed::checkpoint(&checkpoint, &trust.log) {
            self.report(&mut report, p);
        }
        self.passed(&mut report, Check::Consistency, consistency);
        // 2. The gateway's OHTTP and token keys, each with a proof.
        let keys = self.gateway_keys().await?;
        for c in keys.checkpoints.clone() {
            self.anchor(&c, Check::OhttpKeys).await?;
        }
        for p in Passed::keys(&keys) {
            self.report(&mut report, p);
        }
        // 3. Tokens for the hops ahead (refilled ahead of need).
        let api_key = trust.api_key.as_deref().map(|k| k.as_str());
        let refilled = self
            .wallet
            .refill(
                &self.http,
                &trust.gateway_url,
                &keys.ohttp_config,
                keys.token_keys(),
                api_key,
            )
            .await;
        // A refill that fails is fatal only when this request may not be paid for: the
        // gateway's OTT, and where a relay takes tokens one more, and one more when the node
        // list must be fetched.
        let relay_tokens = usize::from(trust.relays.iter().any(|r| r.token));
        let needed = 1 + relay_tokens * (1 + usize::from(self.pool.is_empty()));
        if let Err(e) = refilled {
            if self.wallet.available() < needed {
                return Err(e);
            }
            tracing::warn!(error = %e, "token refill failed; spending the tokens on hand");
        }
        // 4. Candidate nodes, each bundle used at most once.
        let candidates = self.candidates(&keys, model).await?;
        let line = Passed::nodes(&candidates, &trust, now_ms());
        self.report(&mut report, line);
        Ok(Preflight {
            checkpoint: self.view.latest().expect("set").clone(),
            keys,
            candidates,
            report,
        })
    }

    async fn gateway_keys(&mut self) -> Result<GatewayKeys> {
        let cached = self
            .keys_answer
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() <= KEYS_REFETCH);
        if cached {
            let answer = &self.keys_answer.as_ref().expect("cached").1;
            match self.checks.keys(answer, now_ms() / 1000) {
                // A key in it has started retiring: the gateway offers its successor now, and
                // tokens under the old key would soon be refused. Ask again.
                Ok(k) if now_ms() / 1000 >= k.stale_at => {
                    tracing::debug!("a key in the cached key list is retiring; fetching it again");
                }
                Ok(k) => return Ok(k),
                // Most often an entry in it has expired since: the gateway has moved on to the
                // next key. Ask again; what comes back is checked from scratch.
                Err(e) => {
                    tracing::debug!(error = %e, "the cached key list no longer passes; fetching it again")
                }
            }
        }
        self.keys_answer = None;
        let trust = Arc::clone(self.checks.trust());
        let url = format!("{}/v1/keys", trust.gateway_url);
        let reply = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                service: "gateway",
                reason: e.to_string(),
            })?;
        let status = reply.status().as_u16();
        let body = transport::read_limited(reply, MAX_KEY_LIST, "gateway").await?;
        if status != 200 {
            return Err(ClientError::Status {
                service: "gateway",
                status,
                message: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            });
        }
        // A key list that does not verify is not kept.
        let keys = self.checks.keys(&body, now_ms() / 1000)?;
        self.keys_answer = Some((Instant::now(), body));
        Ok(keys)
    }

    async fn candidates(
        &mut self,
        keys: &GatewayKeys,
        model: Option<&str>,
    ) -> Result<Vec<Candidate>> {
        let mut fetched = self.pool.is_empty();
        if fetched {
            self.prefetch(keys).await?;
        }
        let mut verified = Vec::new();
        let mut first_refusal = None;
        while verified.len() < self.candidates {
            let Some(bundle) = self.pool.pop_front() else {
                // Bundles kept from before may have gone stale (a release expired, a document
                // aged): none of them is used; the gateway's current list is asked for once.
                if verified.is_empty() && !fetched {
                    fetched = true;
                    first_refusal = None;
                    self.prefetch(keys).await?;
                    continue;
                }
                break;
            };
            let models = self.models.clone();
            match self.checks.node(&bundle, &models, now_ms()) {
                Ok(c) if model.is_none_or(|m| m == c.model) => {
                    let release_checkpoint = c.node.release.checkpoint.clone();
                    self.anchor(&release_checkpoint, Check::Nodes).await?;
                    verified.push(c);
                }
                Ok(c) => {
                    first_refusal.get_or_insert_with(|| {
                        ClientError::refused(
                            Check::Nodes,
                            format!("the node serves {}, not the model asked for", c.model),
                        )
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a candidate node failed verification");
                    first_refusal.get_or_insert(e);
                }
            }
        }
        if verified.is_empty() {
            return Err(first_refusal.unwrap_or_else(|| {
                ClientError::refused(Check::Nodes, "the gateway lists no node")
            }));
        }
        Ok(verified)
    }

    /// The relay for one request, picked at random, and the OTT it takes, if any.
    async fn relay_hop(&mut self) -> Result<(Relay, Option<crate::wallet::Ott>)> {
        let random = getrandom::u32()
            .map_err(|e| ClientError::Config(format!("no randomness for the relay choice: {e}")))?;
        let relay = self.checks.trust().pick_relay(random, false)?.clone();
        let ott = if relay.token {
            Some(self.wallet.take(1).await?.remove(0))
        } else {
            None
        };
        Ok((relay, ott))
    }

    /// Fetches candidate node bundles through a relay (one OTT where it takes one) into the
    /// pool.
    pub async fn prefetch(&mut self, keys: &GatewayKeys) -> Result<usize> {
        let (relay, ott) = self.relay_hop().await?;
        let (status, body) = transport::call(
            &self.http,
            Hop::Relay {
                relay: &relay,
                token: ott.as_ref().map(|o| &o.token),
                http3: &self.http3,
            },
            &keys.ohttp_config,
            &InnerHttp {
                method: "GET",
                path: "/v1/nodes",
                headers: &[],
                body: b"",
            },
        )
        .await?;
        if status != 200 {
            return Err(ClientError::Status {
                service: "gateway",
                status,
                message: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            });
        }
        let list: NodeList = serde_json::from_slice(&body).map_err(|e| {
            ClientError::refused(Check::Nodes, format!("the node list is unreadable: {e}"))
        })?;
        let n = list.nodes.len();
        self.pool.extend(list.nodes);
        self.models = list.models;
        Ok(n)
    }

    /// Runs `request` where `route` says: on the device, or through every check and the relay.
    pub async fn chat(
        &mut self,
        request: ChatCompletionRequest,
        route: Route,
    ) -> Result<ChatStream> {
        #[cfg(feature = "local")]
        if let Some(local) = &self.local
            && (route == Route::Local || (route == Route::Auto && local.fits(&request)))
        {
            return local.chat(&request);
        }
        if route == Route::Local {
            return Err(ClientError::Local(
                "no on-device model is configured".into(),
            ));
        }
        self.chat_private(request).await
    }

    async fn chat_private(&mut self, request: ChatCompletionRequest) -> Result<ChatStream> {
        // A malformed request is refused before anything is fetched or spent.
        let (mut request, model) = prepare_chat(request)?;
        let preflight = self.preflight(model.as_deref()).await?;
        request.model = preflight.candidates[0].model.clone();
        // One OTT is redeemed by the gateway (and checked by the node with the TGT inside the
        // sealed request); where the relay takes tokens, another admits the request there.
        let (relay, relay_ott) = self.relay_hop().await?;
        let gateway_ott = self.wallet.take(1).await?.remove(0);
        let material = self.wallet.material(&gateway_ott)?;
        let model = request.model.clone();
        // Only now, with every check passed: a fresh DEK, wrapped to each verified REK.
        let (envelope, opener, request_hashes) = seal_chat(
            request,
            &preflight.candidates,
            &gateway_ott.token,
            &material,
            now_ms() / 1000,
        )?;
        let hop = Hop::Relay {
            relay: &relay,
            token: relay_ott.as_ref().map(|o| &o.token),
            http3: &self.http3,
        };
        let inner = InnerHttp {
            method: "POST",
            path: "/v1/chat",
            headers: &[],
            body: &envelope,
        };
        let config = &preflight.keys.ohttp_config;
        let mut answer = if relay.chunked {
            transport::call_streaming(&self.http, hop, config, &inner).await?
        } else {
            // A relay that forwards only RFC 9458's standard requests: the answer comes whole.
            let (status, content) = transport::call(&self.http, hop, config, &inner).await?;
            transport::StreamedAnswer::whole(status, content)
        };
        if answer.status != 200 {
            let mut body = Vec::new();
            while let Some(Ok(piece)) = answer.content.recv().await {
                body.extend_from_slice(&piece);
                if body.len() > 4096 {
                    break;
                }
            }
            // Every candidate was full before the gateway redeemed the OTT: it is still good.
            if answer.status == 503 && BusyAnswer::parse(&body).is_some_and(|b| b.ott_unspent()) {
                self.wallet.give_back(gateway_ott).await?;
            }
            let message = String::from_utf8_lossy(&body).into_owned();
            return Err(transport::gateway_refusal(answer.status, message));
        }
        let (tx, rx) = mpsc::channel(64);
        let context = ReceiptContext {
            model,
            checkpoint: preflight.checkpoint.clone(),
            candidates: preflight.candidates,
            checks: preflight.report,
            request_hashes,
            log_key: self.checks.trust().log.log_key.clone(),
        };
        tokio::spawn(read_answer(
            answer,
            AnswerOpener::new(opener, context),
            self.state.clone(),
            tx,
        ));
        Ok(ChatStream::from_channel(rx))
    }
}

/// Opens the sealed answer as it arrives and forwards its events; the receipt of an answer that
/// ended (or broke) is written to the state folder.
async fn read_answer(
    mut answer: transport::StreamedAnswer,
    mut opener: AnswerOpener,
    state: StateDir,
    tx: mpsc::Sender<Result<ChatEvent>>,
) {
    loop {
        // Every complete chunk before more bytes are read.
        while let Some(event) = opener.next_event(now_ms()) {
            if let Ok(ChatEvent::Done(summary)) = &event
                && let Some(r) = &summary.receipt
                && let Err(e) = receipts::append(&state, r)
            {
                tracing::warn!(error = %e, "the receipt could not be written");
            }
            if tx.send(event).await.is_err() {
                return;
            }
        }
        if opener.is_ended() {
            return;
        }
        let broke = match answer.content.recv().await {
            Some(Ok(bytes)) => {
                opener.push(&bytes);
                continue;
            }
            Some(Err(e)) => Some(e),
            None => None,
        };
        if let Some((error, receipt)) = opener.interrupted(broke, now_ms()) {
            if let Some(r) = &receipt
                && let Err(e) = receipts::append(&state, r)
            {
                tracing::warn!(error = %e, "the receipt could not be written");
            }
            let _ = tx.send(Err(error)).await;
        }
        return;
    }
}
