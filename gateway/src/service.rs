//! Starting the gateway and the relay as services: what `arcane-gateway serve` / `relay` do,
//! callable from other programs (the local demo stack runs them in process).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arcane_serve::ServeLimits;
use arcane_serve::tls::TlsIdentity;
use arcane_verifier::nitro::{AttestationPolicy, NitroRoot};
use axum::serve::ListenerExt;

use crate::error::{GatewayError, Result};
use crate::proven::{LogTrust, LoggedOttKeys, bundles_of_kind, load_key_ring, peer_client};
use crate::registry::Registry;
use crate::relay::Relay;
use crate::server::{Gateway, now_ms, now_seconds};
use crate::store::TokenStore;
use crate::tokens::{FraudDataPolicy, TokenLimits, TokenServices};
use arcane_log_client::LogClient;

/// How often listed nodes are re-checked.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// How often the gateway and the relay re-read their keys' proofs from the log, by default.
pub const DEFAULT_KEY_REFRESH: Duration = Duration::from_secs(60);

/// What a gateway needs to start.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// Key files (`ohttp*.key`, `tgt*.key`, `ott*.key`, the fraud detection service's
    /// `fraud*.key`) and `gateway.db`.
    pub data_dir: PathBuf,
    /// The token database (`sqlite:…` or `postgres://…`, which replicas share); `None`:
    /// `gateway.db` in `data_dir`.
    pub database_url: Option<String>,
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
    /// The fraud detection service's verdicts and what the token granting service asks of
    /// fraud data (default: nothing; the service answers no account).
    pub fraud_data: FraudDataPolicy,
    /// Longest a client may take to send a request body.
    pub body_timeout: Duration,
    /// Longest a chat waits for a place at a candidate node before it is answered busy.
    pub place_wait: Duration,
    /// How often the key files and their proofs are read again (new keys and entries are
    /// picked up, expired ones dropped; each use also re-checks validity).
    pub key_refresh: Duration,
    /// Connection limits and timeouts of the HTTP server.
    pub limits_http: ServeLimits,
}

impl GatewayOptions {
    /// Options with the production defaults for everything but what must be given.
    pub fn new(data_dir: PathBuf, log: String, trust: LogTrust, nitro_root: NitroRoot) -> Self {
        GatewayOptions {
            data_dir,
            database_url: None,
            log,
            trust,
            nitro_root,
            max_attestation_age: Duration::from_secs(600),
            limits: TokenLimits::default(),
            fraud_data: FraudDataPolicy::default(),
            body_timeout: crate::server::DEFAULT_BODY_TIMEOUT,
            place_wait: crate::server::DEFAULT_PLACE_WAIT,
            key_refresh: DEFAULT_KEY_REFRESH,
            limits_http: ServeLimits::default(),
        }
    }
}

fn config_error(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Config(e.to_string())
}

/// Loads the keys in `options.data_dir`, keeps only those with a verified entry in the log and
/// opens the token database. Fails with [`GatewayError::Unproven`] when the log proves no OHTTP
/// key or no key of either token role.
pub async fn build_gateway(options: &GatewayOptions) -> Result<Gateway> {
    let http = peer_client()?;
    let now = now_seconds();
    let log = LogClient::new(&options.log)?;
    let ring = load_key_ring(&log, &options.data_dir, &options.trust, now).await?;
    if let Some(missing) = ring.missing_at(now) {
        return Err(GatewayError::Unproven(format!(
            "{missing}; publish it first"
        )));
    }
    let store = TokenStore::open_url_or_file(
        options.database_url.as_deref(),
        &options.data_dir.join("gateway.db"),
    )
    .await?;
    let tokens =
        TokenServices::new(store, options.limits).with_fraud_data(options.fraud_data.clone());
    let registry = Registry::new(
        options.trust.clone(),
        options.nitro_root.clone(),
        AttestationPolicy {
            max_age_ms: options.max_attestation_age.as_millis() as u64,
            ..AttestationPolicy::default()
        },
    );
    let mut gateway = Gateway::new(
        ring,
        tokens,
        registry,
        http,
        options.body_timeout.max(Duration::from_secs(1)),
    );
    gateway.place_wait = options.place_wait;
    Ok(gateway)
}

/// A service listening on a socket until [`RunningService::shutdown`] or drop.
#[derive(Debug)]
pub struct RunningService {
    addr: SocketAddr,
    scheme: &'static str,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<()>>>,
    background: Option<tokio::task::JoinHandle<()>>,
}

impl RunningService {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, or `https://ADDR` over TLS.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
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

/// How a service's connections are secured: plain HTTP (TLS ends in front of it), TLS over TCP,
/// or TLS over TCP and HTTP/3 over QUIC on the same port.
#[derive(Clone, Debug, Default)]
pub enum Transport {
    /// HTTP/1.1 and cleartext HTTP/2.
    #[default]
    Plain,
    /// HTTPS (HTTP/2 or HTTP/1.1 by ALPN) with this certificate chain and key.
    Tls(TlsIdentity),
    /// HTTPS, and HTTP/3 on the same UDP port, with this certificate chain and key.
    TlsAndHttp3(TlsIdentity),
}

async fn serve_router(
    listen: SocketAddr,
    transport: &Transport,
    router: axum::Router,
    limits: ServeLimits,
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
    let tls_error = |e: arcane_serve::tls::TlsError| GatewayError::Config(e.to_string());
    let (acceptor, quic) = match transport {
        Transport::Plain => (None, None),
        Transport::Tls(identity) => (Some(identity.tcp_acceptor().map_err(tls_error)?), None),
        Transport::TlsAndHttp3(identity) => (
            Some(identity.tcp_acceptor().map_err(tls_error)?),
            // The same port number, over UDP.
            Some(arcane_serve::http3::endpoint(addr, identity, limits).map_err(tls_error)?),
        ),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    };
    let task = tokio::spawn(async move {
        let signal = async move {
            let _ = stopped.await;
            let _ = stopping_tx.send(true);
        };
        let http3 = async {
            match quic {
                Some(endpoint) => {
                    arcane_serve::http3::serve(endpoint, router.clone(), limits, until_stopped())
                        .await
                }
                None => Ok(()),
            }
        };
        let tcp =
            arcane_serve::serve_tls(listener, acceptor, router.clone(), limits, until_stopped());
        let ((), tcp, http3) = tokio::join!(signal, tcp, http3);
        tcp.and(http3)
            .map_err(|e| GatewayError::Serve(e.to_string()))
    });
    Ok(RunningService {
        addr,
        scheme: if matches!(transport, Transport::Plain) {
            "http"
        } else {
            "https"
        },
        stop: Some(stop),
        task: Some(task),
        background,
    })
}

/// Serves `gateway` on `listen`, with the periodic node sweep and key refresh against the log.
pub async fn serve_gateway(
    gateway: Arc<Gateway>,
    listen: SocketAddr,
    options: &GatewayOptions,
) -> Result<RunningService> {
    let background = tokio::spawn(maintain(Arc::clone(&gateway), options.clone()));
    serve_router(
        listen,
        &Transport::Plain,
        crate::server::router(gateway),
        options.limits_http,
        Some(background),
    )
    .await
}

/// [`build_gateway`], then [`serve_gateway`].
pub async fn start_gateway(options: &GatewayOptions, listen: SocketAddr) -> Result<RunningService> {
    let gateway = Arc::new(build_gateway(options).await?);
    serve_gateway(gateway, listen, options).await
}

/// One refresh of the gateway's keys: the key files read again and proven against the log's
/// entries valid now. A failed refresh keeps the keys it had (every use still re-checks their
/// windows, so an expired one stops being used on time).
pub async fn refresh_keys(
    gateway: &Gateway,
    log: &LogClient,
    options: &GatewayOptions,
) -> Result<()> {
    let now = now_seconds();
    let ring = load_key_ring(log, &options.data_dir, &options.trust, now).await?;
    if let Some(missing) = ring.missing_at(now) {
        tracing::warn!(missing, "after a key refresh the gateway lacks a valid key");
    }
    gateway.replace_keys(ring);
    Ok(())
}

/// The gateway's background work: every [`SWEEP_INTERVAL`] drop nodes whose bundles no longer
/// verify or whose release left the log's valid set; every `key_refresh` re-read the keys'
/// proofs and prune token records whose keys have expired.
async fn maintain(gateway: Arc<Gateway>, options: GatewayOptions) {
    let log = match LogClient::new(&options.log) {
        Ok(log) => log,
        Err(error) => {
            tracing::error!(%error, "no log client: keys and nodes are not refreshed");
            return;
        }
    };
    let key_refresh = options.key_refresh.max(Duration::from_millis(100));
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL.min(key_refresh));
    let mut refresh = tokio::time::interval(key_refresh);
    sweep.tick().await;
    refresh.tick().await;
    loop {
        tokio::select! {
            _ = sweep.tick() => {
                let dropped = gateway.registry.sweep(now_ms());
                if dropped > 0 {
                    tracing::info!(dropped, "nodes with stale bundles dropped");
                }
                if let Ok(releases) =
                    bundles_of_kind(&log, &options.trust, "release", now_seconds()).await
                {
                    let leaves: Vec<_> = releases.iter().map(|p| p.verified.leaf_hash).collect();
                    gateway.registry.retain_releases(&leaves);
                }
            }
            _ = refresh.tick() => {
                if let Err(error) = refresh_keys(&gateway, &log, &options).await {
                    tracing::warn!(%error, "key refresh failed; the keys on hand stay, each until its entry expires");
                }
                if let Err(error) = gateway.tokens.prune(now_seconds()).await {
                    tracing::warn!(%error, "pruning expired token records failed");
                }
            }
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
    /// The spent-token database (`sqlite:…` or `postgres://…`, which replicas share); `None`:
    /// `relay.db` in `data_dir`.
    pub database_url: Option<String>,
    /// The log's base URL.
    pub log: String,
    /// What the relay trusts of the log (it admits OTTs under logged OTT keys only).
    pub trust: LogTrust,
    /// How often the OTT keys' proofs are read again.
    pub key_refresh: Duration,
    /// Connection limits and timeouts of the HTTP server.
    pub limits_http: ServeLimits,
    /// Plain HTTP, TLS, or TLS and HTTP/3.
    pub transport: Transport,
}

async fn logged_ott_keys(log: &LogClient, options: &RelayOptions) -> Result<LoggedOttKeys> {
    let entries = bundles_of_kind(log, &options.trust, "token-key", now_seconds()).await?;
    Ok(LoggedOttKeys::from_entries(&entries))
}

/// Starts a relay on `listen`. Fails with [`GatewayError::Unproven`] when the log holds no valid
/// OTT issuer key.
pub async fn start_relay(options: &RelayOptions, listen: SocketAddr) -> Result<RunningService> {
    let http = peer_client()?;
    let log = LogClient::new(&options.log)?;
    let ott_keys = logged_ott_keys(&log, options).await?;
    if !ott_keys.any_valid(now_seconds()) {
        return Err(GatewayError::Unproven(
            "the log holds no valid OTT issuer key".into(),
        ));
    }
    std::fs::create_dir_all(&options.data_dir).map_err(config_error)?;
    let relay = Arc::new(
        Relay::new(
            options.gateway.trim_end_matches('/').to_owned(),
            ott_keys,
            TokenStore::open_url_or_file(
                options.database_url.as_deref(),
                &options.data_dir.join("relay.db"),
            )
            .await?,
            http,
        )
        .refresh_from(log.clone(), options.trust.clone()),
    );
    let background = tokio::spawn({
        let relay = Arc::clone(&relay);
        let options = options.clone();
        let log = log.clone();
        async move {
            let mut refresh =
                tokio::time::interval(options.key_refresh.max(Duration::from_millis(100)));
            refresh.tick().await;
            loop {
                refresh.tick().await;
                match logged_ott_keys(&log, &options).await {
                    Ok(keys) => relay.replace_ott_keys(keys),
                    Err(error) => {
                        tracing::warn!(%error, "OTT key refresh failed; the keys on hand stay, each until its entry expires")
                    }
                }
                if let Err(error) = relay.store.prune_spent(now_seconds()).await {
                    tracing::warn!(%error, "pruning expired spent tokens failed");
                }
            }
        }
    });
    serve_router(
        listen,
        &options.transport,
        crate::relay::router(relay),
        options.limits_http,
        Some(background),
    )
    .await
}
