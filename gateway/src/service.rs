//! Starting the gateway and the relay as services: what `arcane-gateway serve` / `relay` do,
//! callable from other programs (the local demo stack runs them in process).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arcane_verifier::entry::{EntryBody, TokenRole};
use arcane_verifier::nitro::{AttestationPolicy, NitroRoot};
use arcane_verifier::tokens::IssuerKey;
use axum::serve::ListenerExt;

use crate::error::{GatewayError, Result};
use crate::keys;
use crate::proven::{LogTrust, bundles_of_kind, prove_issuer, prove_ohttp_keys};
use crate::registry::Registry;
use crate::relay::Relay;
use crate::server::{Gateway, now_ms, now_seconds};
use crate::tokens::{TokenLimits, TokenServices, open_database};

/// How often listed nodes are re-checked.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// What a gateway needs to start.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// Key files (`ohttp*.key`, `tgt.key`, `ott.key`) and `gateway.db`.
    pub data_dir: PathBuf,
    /// The log's base URL.
    pub log: String,
    /// What the gateway trusts of the log.
    pub trust: LogTrust,
    /// The root node documents must chain to.
    pub nitro_root: NitroRoot,
    /// Oldest node document accepted.
    pub max_attestation_age: Duration,
    /// Token issuance limits.
    pub limits: TokenLimits,
    /// Longest a client may take to send a request body.
    pub body_timeout: Duration,
}

fn config_error(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Config(e.to_string())
}

/// Loads the keys in `options.data_dir`, keeps only those with a verified entry in the log and
/// opens the token database. Fails with [`GatewayError::Unproven`] when the log proves no OHTTP
/// key or either token key.
pub async fn build_gateway(options: &GatewayOptions) -> Result<Gateway> {
    let trust = &options.trust;
    let now = now_seconds();
    let ohttp_entries = bundles_of_kind(&options.log, trust, "ohttp-keys", now).await?;
    let token_entries = bundles_of_kind(&options.log, trust, "token-key", now).await?;
    let dir = &options.data_dir;
    // Every `ohttp*.key` in the data directory: during a rotation the old and the new key are
    // both served, each until its own entry expires.
    let mut configs = Vec::new();
    for entry in
        std::fs::read_dir(dir).map_err(|e| config_error(format!("{}: {e}", dir.display())))?
    {
        let path = entry.map_err(config_error)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("ohttp") && name.ends_with(".key") {
            configs.push(keys::load_ohttp_key(&path)?);
        }
    }
    let ohttp = prove_ohttp_keys(configs, &ohttp_entries)?;
    if ohttp.is_empty() {
        return Err(GatewayError::Unproven(
            "the OHTTP key has no valid ohttp-keys entry in the log; publish it first".into(),
        ));
    }
    let tgt = prove_issuer(
        keys::load_issuer_key(&dir.join("tgt.key"))?,
        TokenRole::Tgt,
        &token_entries,
    )?;
    let ott = prove_issuer(
        keys::load_issuer_key(&dir.join("ott.key"))?,
        TokenRole::Ott,
        &token_entries,
    )?;
    let token_key_proofs = vec![
        ("tgt".to_owned(), tgt.proof.clone()),
        ("ott".to_owned(), ott.proof.clone()),
    ];
    let db = open_database(&dir.join("gateway.db")).await?;
    let tokens = TokenServices::new(db, tgt, ott, options.limits);
    let registry = Registry::new(
        trust.clone(),
        options.nitro_root.clone(),
        AttestationPolicy {
            max_age_ms: options.max_attestation_age.as_millis() as u64,
            ..AttestationPolicy::default()
        },
    );
    Ok(Gateway {
        ohttp,
        tokens,
        registry,
        token_key_proofs,
        http: reqwest::Client::new(),
        body_timeout: options.body_timeout.max(Duration::from_secs(1)),
    })
}

/// A service listening on a socket until [`RunningService::shutdown`] or drop.
#[derive(Debug)]
pub struct RunningService {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
    background: Option<tokio::task::JoinHandle<()>>,
}

impl RunningService {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets requests in progress finish, and waits.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(background) = self.background.take() {
            background.abort();
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|e| GatewayError::Serve(e.to_string()))?,
            None => Ok(()),
        }
    }

    /// Waits until the service ends by itself (it only does on an error).
    pub async fn wait(&mut self) -> Result<()> {
        match self.task.take() {
            Some(task) => task.await.map_err(|e| GatewayError::Serve(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        if let Some(background) = self.background.take() {
            background.abort();
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve_router(
    listen: SocketAddr,
    router: axum::Router,
    background: Option<tokio::task::JoinHandle<()>>,
) -> Result<RunningService> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| GatewayError::Serve(format!("{listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| GatewayError::Serve(e.to_string()))?;
    let listener = listener.tap_io(|tcp| {
        // Without it small sealed chunks wait for delayed ACKs.
        let _ = tcp.set_nodelay(true);
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| GatewayError::Serve(e.to_string()))
    });
    Ok(RunningService {
        addr,
        stop: Some(stop),
        task: Some(task),
        background,
    })
}

/// Serves `gateway` on `listen`, with the periodic node sweep against `log`.
pub async fn serve_gateway(
    gateway: Arc<Gateway>,
    listen: SocketAddr,
    log: String,
    trust: LogTrust,
) -> Result<RunningService> {
    let sweeper = tokio::spawn(sweep(Arc::clone(&gateway), log, trust));
    serve_router(listen, crate::server::router(gateway), Some(sweeper)).await
}

/// [`build_gateway`], then [`serve_gateway`].
pub async fn start_gateway(options: &GatewayOptions, listen: SocketAddr) -> Result<RunningService> {
    let gateway = Arc::new(build_gateway(options).await?);
    serve_gateway(gateway, listen, options.log.clone(), options.trust.clone()).await
}

/// Every [`SWEEP_INTERVAL`]: drop nodes whose bundles no longer verify, and nodes whose release
/// is no longer among the log's valid releases.
async fn sweep(gateway: Arc<Gateway>, log: String, trust: LogTrust) {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let dropped = gateway.registry.sweep(now_ms());
        if dropped > 0 {
            tracing::info!(dropped, "nodes with stale bundles dropped");
        }
        if let Ok(releases) = bundles_of_kind(&log, &trust, "release", now_seconds()).await {
            let leaves: Vec<_> = releases.iter().map(|p| p.verified.leaf_hash).collect();
            gateway.registry.retain_releases(&leaves);
        }
    }
}

/// What a relay needs to start.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// The gateway's base URL.
    pub gateway: String,
    /// Where the relay keeps its spent tokens (`relay.db`).
    pub data_dir: PathBuf,
    /// The log's base URL.
    pub log: String,
    /// What the relay trusts of the log (it admits OTTs under logged OTT keys only).
    pub trust: LogTrust,
}

/// Starts a relay on `listen`. Fails with [`GatewayError::Unproven`] when the log holds no valid
/// OTT issuer key.
pub async fn start_relay(options: &RelayOptions, listen: SocketAddr) -> Result<RunningService> {
    let ott_keys: Vec<IssuerKey> =
        bundles_of_kind(&options.log, &options.trust, "token-key", now_seconds())
            .await?
            .iter()
            .filter_map(|p| match &p.verified.entry.entry.body {
                EntryBody::TokenKey(k) if k.role == TokenRole::Ott => {
                    IssuerKey::from_spki(&k.spki_der).ok()
                }
                _ => None,
            })
            .collect();
    if ott_keys.is_empty() {
        return Err(GatewayError::Unproven(
            "the log holds no valid OTT issuer key".into(),
        ));
    }
    std::fs::create_dir_all(&options.data_dir).map_err(config_error)?;
    let relay = Arc::new(Relay {
        gateway: options.gateway.trim_end_matches('/').to_owned(),
        ott_keys,
        db: open_database(&options.data_dir.join("relay.db")).await?,
        http: reqwest::Client::new(),
    });
    serve_router(listen, crate::relay::router(relay), None).await
}
