//! The key release service as a library: [`start`] serves the protocol of
//! `spec/model-keys.md` on a TCP listener (with the read timeouts and connection limits of every
//! arcane-aip server):
//!
//! - `POST /v1/challenge`: a fresh challenge (nothing stored);
//! - `POST /v1/model-key`: a [`KeyRequest`]; the challenge must be this service's and fresh, the
//!   request must pass [`check_key_request`], the service must hold the model's key; the release
//!   is recorded, then the key is answered wrapped to the node's attested key;
//! - `GET /v1/releases?after=N`: the record of releases, for auditors.
//!
//! Every decision is the verifier's; this shell reads, stores and answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arcane_serve::ServeLimits;
use arcane_verifier::bundle::LogTrust;
use arcane_verifier::model_key::{
    ChallengeReply, ChallengeSecret, KeyReleaseTrust, KeyReply, KeyRequest, MAX_KEY_REQUEST_BYTES,
    MAX_RECORDS_PER_READ, ReleaseRecord, check_key_request, wrap_model_key,
};
use arcane_verifier::nitro::{AttestationPolicy, DocumentCache, NitroRoot};
use arcane_verifier::note::VerifierKey;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::error::{KeyReleaseError, Result};
use crate::store::{KeyStore, now_ms, now_seconds};

/// What the service trusts.
#[derive(Clone, Debug)]
pub struct ServiceTrust {
    /// The log, its witnesses, and the publishers whose entries count: the operators whose
    /// releases the owner accepts, and the owner itself.
    pub log: LogTrust,
    /// The owner's publisher key: only its `model-access` entries grant anything.
    pub owner: VerifierKey,
    /// The Nitro root (AWS's; a development root only in a development build).
    pub nitro_root: NitroRoot,
    /// How fresh a document must be.
    pub attestation: AttestationPolicy,
}

struct Service {
    store: KeyStore,
    secret: ChallengeSecret,
    trust: ServiceTrust,
    documents: Mutex<DocumentCache>,
}

/// The service being served; dropping it stops it at once.
pub struct RunningService {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RunningService {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` + [`RunningService::addr`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The service's routes over `store` (whose challenge secret is read, or made, first).
pub async fn router(store: KeyStore, trust: ServiceTrust) -> Result<Router> {
    let secret = store.challenge_secret().await?;
    let service = Arc::new(Service {
        store,
        secret,
        trust,
        documents: Mutex::new(DocumentCache::default()),
    });
    Ok(Router::new()
        .route("/v1/challenge", post(challenge))
        .route("/v1/model-key", post(model_key))
        .route("/v1/releases", get(releases))
        .layer(DefaultBodyLimit::max(MAX_KEY_REQUEST_BYTES))
        .with_state(service))
}

/// Serves the service on `listener` until the returned handle is dropped.
pub async fn start(
    store: KeyStore,
    trust: ServiceTrust,
    listener: tokio::net::TcpListener,
    limits: ServeLimits,
) -> Result<RunningService> {
    let addr = listener
        .local_addr()
        .map_err(|e| KeyReleaseError::Config(e.to_string()))?;
    let router = router(store, trust).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = arcane_serve::serve(listener, router, limits, std::future::pending()).await
        {
            tracing::error!(error = %e, "the key release service's listener failed");
        }
    });
    Ok(RunningService { addr, task })
}

fn random16() -> [u8; 16] {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("the operating system's random source");
    random
}

async fn challenge(State(service): State<Arc<Service>>) -> Response {
    let challenge = service.secret.issue(now_seconds(), random16());
    axum::Json(ChallengeReply::new(&challenge)).into_response()
}

/// How a refusal is answered: a status and a JSON `{"error": …}` naming what failed.
fn refusal(error: &KeyReleaseError) -> Response {
    let status = match error {
        KeyReleaseError::Verifier(arcane_verifier::Error::MalformedKeyRelease(_)) => {
            StatusCode::BAD_REQUEST
        }
        KeyReleaseError::Verifier(_) => StatusCode::FORBIDDEN,
        KeyReleaseError::ChallengeUsed => StatusCode::CONFLICT,
        KeyReleaseError::UnknownModel { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let message = match error {
        // Database details stay in the service's log.
        KeyReleaseError::Database(_) => "the key store is unavailable".to_owned(),
        other => other.to_string(),
    };
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn model_key(State(service): State<Arc<Service>>, body: Bytes) -> Response {
    match release(&service, &body).await {
        Ok(wrapped) => axum::Json(KeyReply::new(&wrapped)).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "a model key request was refused");
            refusal(&e)
        }
    }
}

async fn release(service: &Service, body: &[u8]) -> Result<Vec<u8>> {
    let request = KeyRequest::parse(body)?;
    let now_ms = now_ms();
    service.secret.check(&request.challenge, now_ms / 1000)?;
    let approved = {
        let trust = &service.trust;
        let trust = KeyReleaseTrust {
            anchors: trust.log.anchors(),
            owner: &trust.owner,
            nitro_root: &trust.nitro_root,
            attestation: &trust.attestation,
        };
        let mut documents = service.documents.lock().expect("document cache lock");
        check_key_request(&request, &trust, now_ms, &mut documents)?
    };
    let key = service
        .store
        .key(&approved.model_sha256)
        .await?
        .ok_or_else(|| KeyReleaseError::UnknownModel {
            model_sha256: hex::encode(approved.model_sha256),
        })?;
    // Recorded (and durable) before the key leaves; a challenge answered before stops here.
    let record = ReleaseRecord::of(&approved, &request, now_ms);
    let seq = service.store.record_release(&record).await?;
    tracing::info!(
        seq,
        model = %hex::encode(approved.model_sha256),
        pcr0 = %hex::encode(&approved.pcr0[..8]),
        "model key released"
    );
    Ok(wrap_model_key(&key, &approved, &request.challenge)?)
}

#[derive(Deserialize)]
struct ReleasesQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<u32>,
}

async fn releases(
    State(service): State<Arc<Service>>,
    Query(query): Query<ReleasesQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(MAX_RECORDS_PER_READ);
    match service.store.releases(query.after, limit).await {
        Ok(records) => axum::Json(records).into_response(),
        Err(e) => refusal(&e),
    }
}
