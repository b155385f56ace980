//! # arcane-log
//!
//! The arcane-aip transparency log. Operators submit signed entries; a sequencer integrates them
//! in batches, stores C2SP tiles and signs a C2SP checkpoint for each new tree size; anyone reads
//! checkpoints, tiles, entry bundles and proofs over HTTP and checks them with `arcane-verifier`
//! (or any RFC 6962 / C2SP implementation).
//!
//! Storage is a SQLite file by default and PostgreSQL for production, both through sqlx. The wire
//! format is specified in `spec/log.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), arcane_log::LogError> {
//! let config = arcane_log::ServeConfig::new("./arcane-data".into());
//! let server = arcane_log::start(config).await?;
//! println!("log at http://{}/checkpoint", server.addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod client;
pub mod error;
pub mod group_commit;
pub mod keys;
pub mod metrics;
pub mod proofs;
pub mod publish;
pub mod read_cache;
pub mod sequencer;
pub mod storage;
pub mod submission;
pub mod tree_state;
pub mod trillian;
pub mod ui;
pub mod witnessing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use arcane_verifier::checkpoint::Checkpoint;
use arcane_verifier::merkle::empty_root;

pub use error::{LogError, Result};
pub use sequencer::SequencerConfig;
use storage::{Store, StoredCheckpoint};

/// The default listening address of `arcane-log serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8740";
/// The default origin (and log key name) of a new log.
pub const DEFAULT_ORIGIN: &str = "localhost/arcane-log";
/// File name of the log's secret key inside the data directory.
pub const LOG_KEY_FILE: &str = "log.key";
/// File name of the log's verifier key inside the data directory.
pub const LOG_VKEY_FILE: &str = "log.vkey";
/// File name of the publisher policy inside the data directory.
pub const POLICY_FILE: &str = "publishers";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The newest checkpoint this process serves. It only moves forward.
#[derive(Debug)]
pub struct Published {
    /// When the log has witnesses, only checkpoints meeting its policy are published.
    witnessing: Option<Arc<witnessing::Witnessing>>,
    current: RwLock<StoredCheckpoint>,
    changed: tokio::sync::watch::Sender<u64>,
    metrics: Arc<metrics::Metrics>,
}

impl Published {
    fn new(
        initial: StoredCheckpoint,
        metrics: Arc<metrics::Metrics>,
        witnessing: Option<Arc<witnessing::Witnessing>>,
    ) -> Self {
        metrics.set_tree_size(initial.size);
        let (changed, _) = tokio::sync::watch::channel(initial.size);
        Published {
            witnessing,
            current: RwLock::new(initial),
            changed,
            metrics,
        }
    }

    /// The checkpoint being served.
    pub fn get(&self) -> StoredCheckpoint {
        self.current.read().expect("published lock").clone()
    }

    /// The served tree size.
    pub fn size(&self) -> u64 {
        self.current.read().expect("published lock").size
    }

    /// Serves `checkpoint` if it is newer than the current one (and, with witnesses, meets the
    /// witness policy).
    pub fn update(&self, checkpoint: StoredCheckpoint) {
        if let Some(w) = &self.witnessing
            && checkpoint.size > 0
            && !w.satisfied(&checkpoint.note)
        {
            return;
        }
        let mut current = self.current.write().expect("published lock");
        if checkpoint.size == current.size && checkpoint.root != current.root {
            tracing::error!(
                size = checkpoint.size,
                "two different roots for one size; keeping the first"
            );
            return;
        }
        if checkpoint.size > current.size {
            self.metrics.set_tree_size(checkpoint.size);
            self.changed.send_replace(checkpoint.size);
            *current = checkpoint;
        }
    }
}

/// How to run a log server.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Directory for keys, policy and the SQLite file.
    pub data_dir: PathBuf,
    /// Database URL; `None` means the SQLite file `log.db` in the data directory.
    pub database_url: Option<String>,
    /// Origin for a new log; an existing log keeps its own (and a different one is an error).
    pub origin: Option<String>,
    /// Batching and election settings.
    pub sequencer: SequencerConfig,
    /// Witness policy file (Sigsum format): witnesses to ask and the quorum needed to publish.
    pub witness_policy: Option<PathBuf>,
    /// A Trillian log tree that sequences the entries (`None`: this log's own sequencer).
    pub trillian: Option<trillian::follower::TrillianConfig>,
    /// Connection limits and timeouts of the HTTP server.
    pub limits: arcane_serve::ServeLimits,
    /// A built verification center (`web/dist`) to serve at `/ui/`.
    pub ui: Option<PathBuf>,
}

impl ServeConfig {
    /// Defaults: 127.0.0.1:8740, SQLite in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        ServeConfig {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            data_dir,
            database_url: None,
            origin: None,
            sequencer: SequencerConfig::default(),
            witness_policy: None,
            trillian: None,
            limits: arcane_serve::ServeLimits::default(),
            ui: None,
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("log.db").display()
            )
        })
    }
}

/// Prepares the data directory and the log key: creates them on first run, loads them after.
/// Returns the signer and writes `log.vkey`.
pub fn init_data_dir(
    data_dir: &std::path::Path,
    origin: Option<&str>,
) -> Result<arcane_verifier::note::NoteSigner> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| LogError::io(data_dir, e))?;
    let key_path = data_dir.join(LOG_KEY_FILE);
    let signer = if key_path.exists() {
        let signer = keys::read_secret_key(&key_path)?;
        if let Some(origin) = origin
            && origin != signer.name()
        {
            return Err(LogError::Config(format!(
                "this data directory holds the log {:?}, not {origin:?}",
                signer.name()
            )));
        }
        signer
    } else {
        let signer = keys::generate_signer(origin.unwrap_or(DEFAULT_ORIGIN))?;
        keys::write_secret_key(&key_path, &signer)?;
        signer
    };
    let vkey_path = data_dir.join(LOG_VKEY_FILE);
    std::fs::write(&vkey_path, format!("{}\n", signer.verifier().to_text()))
        .map_err(|e| LogError::io(&vkey_path, e))?;
    Ok(signer)
}

/// A running log server.
pub struct RunningServer {
    addr: SocketAddr,
    vkey: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    store: Store,
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The log's verifier key text.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// Stops accepting work, lets the sequencer finish its batch and release its lease.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.store.close().await;
    }

    /// Waits until the server stops by itself (it does not, unless a task fails).
    pub async fn wait(&mut self) {
        if let Some(task) = self.tasks.first_mut() {
            let _ = task.await;
        }
    }
}

/// Starts a log server: data directory and key, database and migrations, the sequencer, the
/// checkpoint refresher and the HTTP API.
pub async fn start(config: ServeConfig) -> Result<RunningServer> {
    let signer = Arc::new(init_data_dir(&config.data_dir, config.origin.as_deref())?);
    let origin = signer.name().to_owned();
    let store = Store::open(&config.database_url()).await?;
    let stored_origin = store.meta_init("origin", &origin).await?;
    if stored_origin != origin {
        return Err(LogError::Config(format!(
            "the database belongs to the log {stored_origin:?}, the key to {origin:?}"
        )));
    }
    let empty = Checkpoint::new(&origin, 0, empty_root());
    let empty = StoredCheckpoint {
        size: 0,
        root: empty.root,
        note: empty.sign(&signer)?.to_text(),
    };
    let latest = store.init_empty_checkpoint(&empty, now_ms()).await?;
    let metrics = Arc::new(metrics::Metrics::default());
    // With Trillian: the tree must exist, be a LOG tree and be active before anything starts.
    let trillian = match &config.trillian {
        None => None,
        Some(t) => Some(Arc::new(
            trillian::follower::TrillianFollower::connect(t).await?,
        )),
    };
    let witnessing = match &config.witness_policy {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| LogError::io(path, e))?;
            let (policy, witnesses) = arcane_verifier::cosignature::parse_policy_file(&text)?;
            Some(Arc::new(witnessing::Witnessing::new(policy, witnesses)?))
        }
    };
    // With witnesses, serve the newest checkpoint that already meets the policy (a stored one may
    // not have been cosigned before a restart); the sequencer gets the rest cosigned.
    let mut initial = latest;
    if let Some(w) = &witnessing
        && initial.size > 0
        && !w.satisfied(&initial.note)
    {
        let mut below = initial.size;
        'search: loop {
            let page = store.checkpoints_before(below, 256).await?;
            if page.is_empty() {
                break;
            }
            for older in page {
                below = older.size;
                if older.size == 0 || w.satisfied(&older.note) {
                    initial = older;
                    break 'search;
                }
            }
        }
    }
    let published = Arc::new(Published::new(initial, metrics.clone(), witnessing.clone()));
    let ui = config.ui.as_deref().map(ui::UiFiles::load).transpose()?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let wake = Arc::new(tokio::sync::Notify::new());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| LogError::io(config.listen.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| LogError::io("listener", e))?;
    let vkey = signer.verifier().to_text();

    let submitter = group_commit::Submitter::spawn(store.clone(), metrics.clone(), wake.clone());
    let state = api::AppState::new(
        store.clone(),
        published.clone(),
        metrics.clone(),
        keys::PublisherPolicy::new(config.data_dir.join(POLICY_FILE)),
        vkey.clone(),
        submitter,
    );
    let router = match ui {
        Some(ui) => api::router(state).merge(ui.routes()),
        None => api::router(state),
    }
    .layer(axum::middleware::from_fn(ui::readable_anywhere));
    let mut shutdown_http = shutdown_rx.clone();
    let limits = config.limits;
    let http = tokio::spawn(async move {
        let result = arcane_serve::serve(listener, router, limits, async move {
            let _ = shutdown_http.wait_for(|stop| *stop).await;
        })
        .await;
        if let Err(error) = result {
            tracing::error!(%error, "HTTP server stopped");
        }
    });
    let sequencer = sequencer::Sequencer {
        store: store.clone(),
        signer: signer.clone(),
        config: config.sequencer.clone(),
        published: published.clone(),
        metrics: metrics.clone(),
        witnessing,
        trillian,
    };
    let sequencer = tokio::spawn(sequencer.run(wake, shutdown_rx.clone()));
    let refresher = tokio::spawn(refresh_published(store.clone(), published, shutdown_rx));
    tracing::info!(%addr, origin = %origin, "log server listening");
    Ok(RunningServer {
        addr,
        vkey,
        shutdown: shutdown_tx,
        tasks: vec![http, sequencer, refresher],
        store,
    })
}

/// Picks up checkpoints published by another process's sequencer (several servers may share one
/// PostgreSQL database).
async fn refresh_published(
    store: Store,
    published: Arc<Published>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match store.latest_checkpoint().await {
            Ok(Some(checkpoint)) => published.update(checkpoint),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "reading the newest checkpoint failed"),
        }
    }
}
