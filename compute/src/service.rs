//! The compute node as a library: [`start`] assembles a node from its parts — model file,
//! attestation provider, log and trust, token check, optional gateway registration — loads the
//! model into mistral.rs, boots the node (release proof, REK, attestation), serves it on a TCP
//! listener and keeps its proof, document and registration fresh. The `arcane-compute` binary
//! and the demo stack both start nodes this way.

use std::net::SocketAddr;
use std::sync::Arc;

use arcane_engine::MistralEngine;
use arcane_engine::model::ModelFile;
use arcane_engine::model_dir::ModelDir;
use arcane_verifier::nitro::{AttestationPolicy, NitroRoot};

use crate::attestation::AttestationProvider;
use crate::ensemble::{Ensemble, EnsembleConfig, LinkIdentity};
use crate::error::ComputeError;
use crate::node::{Node, NodeConfig, NodeParts, ServedModel, now_seconds, own_measurements};
use crate::registration::Registration;
use crate::release::{LogSource, LogTrust};
use crate::tokens::{DevelopmentWithoutTokens, LoggedTokenKeys, TokenVerifier};

/// How the node checks the token material in each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// Against the token keys in the log; one TGT may derive this many OTT indices (the
    /// gateway's `--otts-per-tgt`).
    Logged {
        /// OTT indices per TGT.
        otts_per_tgt: u32,
    },
    /// Not at all: development only (the binary allows it only with `--development`).
    DevelopmentWithoutTokens,
}

/// Where the node's model comes from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// A plaintext GGUF file (already opened and hashed).
    Plain(ModelFile),
    /// A file its owner sealed: the key is fetched from the owner's key release service with a
    /// fresh attestation and the model decrypted into memory ([`crate::sealed_model`]).
    Sealed(crate::sealed_model::SealedModel),
    /// A model directory split across an ensemble this node leads (`spec/compute.md` §7): the
    /// node brings the ensemble's links up, loads its part as rank 0, and attests the ensemble's
    /// size. It serves one request at a time, and halts for good when the ensemble fails.
    EnsembleLeader {
        /// The model directory (already opened and digested).
        model: ModelDir,
        /// The members' link addresses; this node's rank must be 0.
        ensemble: EnsembleConfig,
        /// The root the members' documents must chain to.
        root: NitroRoot,
    },
}

impl From<ModelFile> for ModelSource {
    fn from(model: ModelFile) -> Self {
        ModelSource::Plain(model)
    }
}

/// Everything [`start`] needs.
pub struct NodeOptions {
    /// The model.
    pub model: ModelSource,
    /// The NSM, real or simulated.
    pub provider: Arc<dyn AttestationProvider>,
    /// Base URL of the transparency log.
    pub log_url: String,
    /// The log key, witnesses and publishers the node's proofs must verify under.
    pub trust: LogTrust,
    /// Limits, padding, refresh period.
    pub config: NodeConfig,
    /// The token check.
    pub tokens: TokenCheck,
    /// The gateways to register with (every replica that routes to this node; none for a node
    /// reached directly). With no `advertise` URL the node advertises the address it listens on.
    pub gateways: Vec<String>,
    /// The node's URL as the gateway reaches it.
    pub advertise: Option<String>,
}

/// A node being served. Dropping it stops serving and refreshing at once, as a crashed process
/// would; [`RunningNode::shutdown`] is the same, awaited.
pub struct RunningNode {
    /// The node.
    pub node: Arc<Node>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    refresher: tokio::task::JoinHandle<()>,
}

impl RunningNode {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` + [`RunningNode::addr`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and refreshing, and waits until both have ended.
    pub async fn shutdown(mut self) {
        self.server.abort();
        self.refresher.abort();
        let _ = (&mut self.server).await;
        let _ = (&mut self.refresher).await;
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.server.abort();
        self.refresher.abort();
    }
}

/// The token verifier `check` asks for, and the logged keys to keep fresh (none without a check).
async fn token_verifier(
    check: TokenCheck,
    log: &LogSource,
    trust: &LogTrust,
) -> Result<(Arc<dyn TokenVerifier>, Option<Arc<LoggedTokenKeys>>), ComputeError> {
    match check {
        TokenCheck::Logged { otts_per_tgt } => {
            let keys = LoggedTokenKeys::fetch(log, trust, now_seconds()).await?;
            let keys = Arc::new(LoggedTokenKeys::new(keys, otts_per_tgt));
            Ok((Arc::clone(&keys) as Arc<dyn TokenVerifier>, Some(keys)))
        }
        TokenCheck::DevelopmentWithoutTokens => {
            tracing::warn!("DEVELOPMENT MODE: token material is not checked");
            Ok((Arc::new(DevelopmentWithoutTokens::for_development()), None))
        }
    }
}

/// Loads the model, boots the node, and serves it on `listener` (with the default connection
/// limits) until the returned [`RunningNode`] is dropped.
pub async fn start(
    options: NodeOptions,
    listener: tokio::net::TcpListener,
) -> Result<RunningNode, ComputeError> {
    let addr = listener
        .local_addr()
        .map_err(|e| ComputeError::Serve(e.to_string()))?;
    let (node, refresh) = boot(options, Some(format!("http://{addr}"))).await?;
    let served = Arc::clone(&node);
    let halted = Arc::clone(&node);
    let server = tokio::spawn(async move {
        // A halted node stops listening: its gateways drop it at their next connection.
        if let Err(e) = crate::server::serve_tcp(
            listener,
            served,
            arcane_serve::ServeLimits::default(),
            async move { halted.halted().await },
        )
        .await
        {
            tracing::error!(error = %e, "the node's listener failed");
        }
    });
    Ok(RunningNode {
        node,
        addr,
        server,
        refresher: tokio::spawn(refresh),
    })
}

/// Boots the node from `options` and returns it with the task that keeps it fresh (and
/// registered, advertising `options.advertise` or else `listening`). For shells that serve the
/// node themselves (vsock); [`start`] is this plus a TCP listener.
pub async fn boot(
    options: NodeOptions,
    listening: Option<String>,
) -> Result<(Arc<Node>, impl Future<Output = ()> + Send + 'static), ComputeError> {
    let NodeOptions {
        model,
        provider,
        log_url,
        trust,
        config,
        tokens,
        gateways,
        advertise,
    } = options;
    let log = LogSource::new(&log_url)?;
    let (tokens, logged_keys) = token_verifier(tokens, &log, &trust).await?;
    // The key the node signs its answers with: every document it attests binds it, the one
    // that asks for a sealed model's key included.
    let answer_key = arcane_verifier::signed_answer::AnswerSigningKey::generate();
    let mut config = config;
    let (loaded, members, ensemble) = match model {
        ModelSource::Plain(model) => (load_file(model, &config).await?, 1, None),
        ModelSource::Sealed(sealed) => {
            let started = std::time::Instant::now();
            let attesting = crate::sealed_model::Attesting {
                provider: provider.as_ref(),
                answer_key: answer_key.public(),
            };
            let model = crate::sealed_model::open(&sealed, &attesting, &log, &trust).await?;
            tracing::info!(
                model = %model.name,
                ms = started.elapsed().as_millis() as u64,
                "model key released and sealed model decrypted into memory"
            );
            (load_file(model, &config).await?, 1, None)
        }
        ModelSource::EnsembleLeader {
            model,
            ensemble,
            root,
        } => {
            if ensemble.rank != 0 {
                return Err(ComputeError::Config(
                    "only rank 0 of an ensemble is a node; the others are members".into(),
                ));
            }
            let members = u8::try_from(ensemble.members.len())
                .map_err(|_| ComputeError::Config("too many ensemble members".into()))?;
            let measurements = own_measurements(provider.as_ref())?;
            let release = log
                .find_release(&trust, &measurements, &model.sha256, now_seconds())
                .await?;
            let identity = LinkIdentity {
                attestor: Arc::clone(&provider),
                root,
                release: release.verified,
                model_sha256: model.sha256,
                attestation: AttestationPolicy::default(),
            };
            let ensemble = Ensemble::bring_up(ensemble, identity).await?;
            let engine = MistralEngine::load_dir(&model, 1, Some(ensemble.ring_member()))
                .await?
                .with_sampling(config.sampling);
            // The ranks replay the leader's requests in order: one at a time.
            config.max_concurrent = 1;
            ((engine, ServedModel::from(&model)), members, Some(ensemble))
        }
    };
    let (engine, model) = loaded;
    tracing::info!(model = %model.name, sha256 = %hex::encode(model.sha256), members, "model checked");
    // Before the node registers: its first client does not wait for what a first generation
    // pays once (about 250–400 ms on SmolLM2 here; BENCHMARKS.md).
    engine.warm_up().await?;
    let refresh_every = config.refresh_every;
    let node = Node::boot(NodeParts {
        config,
        provider,
        answer_key,
        engine: Arc::new(engine),
        tokens,
        model,
        members,
        log: log.clone(),
        trust: trust.clone(),
    })
    .await?;
    if let Some(ensemble) = ensemble {
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            let why = ensemble.failed().await;
            node.halt(format!("the ensemble failed: {why}"));
        });
    }
    let advertise = advertise.or(listening);
    let registrations = match advertise {
        Some(advertise) => gateways
            .into_iter()
            .map(|gateway| Registration {
                gateway,
                advertise: advertise.clone(),
            })
            .collect(),
        None if !gateways.is_empty() => {
            return Err(ComputeError::Config(
                "registering with a gateway needs the node's advertised URL".into(),
            ));
        }
        None => Vec::new(),
    };
    let refresh = crate::registration::keep_fresh(
        Arc::clone(&node),
        logged_keys.map(|k| (k, log, trust)),
        registrations,
        refresh_every,
    );
    Ok((node, refresh))
}

/// Loads a GGUF model file into the engine, then lets a decrypted model's memory go.
async fn load_file(
    mut model: ModelFile,
    config: &NodeConfig,
) -> Result<(MistralEngine, ServedModel), ComputeError> {
    tracing::info!(model = %model.name, sha256 = %hex::encode(model.sha256), "model file checked");
    let engine = MistralEngine::load(&model, config.max_concurrent)
        .await?
        .with_sampling(config.sampling);
    // A decrypted model's memory file is not needed once the engine holds the weights.
    model.release_memory();
    Ok((engine, ServedModel::from(model)))
}

/// Everything [`run_member`] needs.
pub struct MemberOptions {
    /// The model directory (already opened and digested).
    pub model: ModelDir,
    /// The members' link addresses and this member's rank (not 0).
    pub ensemble: EnsembleConfig,
    /// The root the members' documents must chain to.
    pub root: NitroRoot,
    /// The NSM, real or simulated.
    pub provider: Arc<dyn AttestationProvider>,
    /// Base URL of the transparency log.
    pub log_url: String,
    /// What the member's release proof must verify under.
    pub trust: LogTrust,
}

/// Runs an ensemble member other than the leader (`spec/compute.md` §7): finds the release for
/// its own measurements and the model, brings its links up (refusing any peer of another
/// release), then computes its part of every request the leader replicates. Returns only why it
/// stopped: a link ended or failed, or the engine did.
pub async fn run_member(options: MemberOptions) -> ComputeError {
    let run = async {
        if options.ensemble.rank == 0 {
            return Err(ComputeError::Config(
                "rank 0 is the ensemble's leader: serve it as a node".into(),
            ));
        }
        let log = LogSource::new(&options.log_url)?;
        let measurements = own_measurements(options.provider.as_ref())?;
        let release = log
            .find_release(
                &options.trust,
                &measurements,
                &options.model.sha256,
                now_seconds(),
            )
            .await?;
        let identity = LinkIdentity {
            attestor: options.provider,
            root: options.root,
            release: release.verified,
            model_sha256: options.model.sha256,
            attestation: AttestationPolicy::default(),
        };
        let ensemble = Ensemble::bring_up(options.ensemble, identity).await?;
        let member = ensemble.ring_member().clone();
        tracing::info!(
            rank = member.rank,
            members = member.world_size,
            "ensemble member computing"
        );
        let model = options.model;
        let engine = tokio::task::spawn_blocking(move || {
            arcane_engine::serve_ring_follower(&model, &member)
        });
        Ok::<_, ComputeError>(tokio::select! {
            why = ensemble.failed() => ComputeError::Ensemble(why),
            ended = engine => match ended {
                Ok(Err(e)) => ComputeError::Engine(e),
                Ok(Ok(())) => ComputeError::Ensemble("the engine stopped".into()),
                Err(e) => ComputeError::Ensemble(format!("the engine: {e}")),
            },
        })
    };
    match run.await {
        Ok(stopped) | Err(stopped) => stopped,
    }
}
