//! The HTTP API: C2SP tlog-tiles reads, JSON conveniences, the write path, health and metrics.
//! See `spec/log.md` for every route. Writes go through [`crate::group_commit`], reads through
//! [`crate::read_cache`]; this module is the routes.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use arcane_verifier::Hash;
use arcane_verifier::bundle::ProofBundle;
use arcane_verifier::entry::{EntryPolicy, kind_code};
use arcane_verifier::log_api::{
    BundleList, ConsistencyReply, EntryReply, EntryStatus, InclusionReply, MAX_BUNDLES,
    encode_hashes,
};
use arcane_verifier::merkle::leaf_hash;
use arcane_verifier::proof::{consistency_proof, inclusion_proof};
use arcane_verifier::tiles::{TILE_WIDTH, TileCoord, TileKind, tile_width};

use crate::error::{LogError, Result};
use crate::group_commit::Submitter;
use crate::keys::PublisherPolicy;
use crate::metrics::Metrics;
use crate::proofs::prove;
use crate::read_cache::ReadCache;
use crate::storage::{EntryRecord, NewEntry, Store};
use crate::submission::{MAX_ENTRY_BYTES, Submission};
use crate::{Published, now_ms};

/// Largest request body accepted (a base64 entry of the maximum size plus the JSON around it).
pub const MAX_BODY_BYTES: usize = MAX_ENTRY_BYTES * 4 / 3 + 4096;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    published: Arc<Published>,
    metrics: Arc<Metrics>,
    policy: PublisherPolicy,
    vkey: String,
    submitter: Submitter,
    /// Tiles, their inner nodes, entries and bundles, cached where they cannot change.
    reads: ReadCache,
}

impl AppState {
    /// Bundles the handlers' dependencies.
    pub fn new(
        store: Store,
        published: Arc<Published>,
        metrics: Arc<Metrics>,
        policy: PublisherPolicy,
        vkey: String,
        submitter: Submitter,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                published,
                metrics,
                policy,
                vkey,
                submitter,
                reads: ReadCache::new(store.clone()),
                store,
            }),
        }
    }
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/log.vkey", get(vkey))
        .route("/tile/{*path}", get(tile))
        .route("/v1/entries", axum::routing::post(submit))
        .route("/v1/entries/{index}", get(entry_by_index))
        .route("/v1/entries/by-hash/{hash}", get(entry_by_hash))
        .route("/v1/bundles", get(bundles_by_kind))
        .route("/v1/bundles/{index}", get(bundle_by_index))
        .route("/v1/bundles/by-hash/{hash}", get(bundle_by_hash))
        .route("/v1/proof/inclusion", get(inclusion))
        .route("/v1/proof/consistency", get(consistency))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { LogError::NotFound("no such route".into()) })
        .with_state(state)
}

fn text(body: String, content_type: &'static str, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

async fn checkpoint(State(state): State<AppState>) -> Response {
    text(
        state.inner.published.get().note,
        "text/plain; charset=utf-8",
        "no-cache",
    )
}

async fn vkey(State(state): State<AppState>) -> Response {
    text(
        format!("{}\n", state.inner.vkey),
        "text/plain; charset=utf-8",
        "public, max-age=3600",
    )
}

async fn tile(State(state): State<AppState>, Path(path): Path<String>) -> Result<Response> {
    let coord = TileCoord::parse_path(&format!("tile/{path}"))
        .map_err(|e| LogError::BadRequest(e.to_string()))?;
    let size = state.inner.published.size();
    if tile_width(coord.kind, coord.index, size) < coord.width {
        return Err(LogError::NotFound(format!(
            "{} is beyond tree size {size}",
            coord.path()
        )));
    }
    let bytes = match coord.kind {
        TileKind::Hashes(level) => state
            .inner
            .reads
            .hash_tile(level, coord.index, coord.width)
            .await?
            .slice(..usize::from(coord.width) * 32),
        TileKind::Entries => state.inner.reads.bundle(coord).await?,
    };
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if coord.is_full() {
            "public, max-age=31536000, immutable"
        } else {
            "public, max-age=60"
        }),
    );
    Ok(response)
}

async fn submit(State(state): State<AppState>, request: Request) -> Result<Response> {
    let result = submit_inner(&state, request).await;
    if result.is_err() {
        state.inner.metrics.add_rejected();
    }
    result
}

async fn submit_inner(state: &AppState, request: Request) -> Result<Response> {
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| LogError::BodyTooLarge {
            limit: MAX_BODY_BYTES,
        })?;
    let submission: Submission = serde_json::from_slice(&body)
        .map_err(|e| LogError::BadRequest(format!("malformed JSON: {e}")))?;
    let accepted = crate::submission::check(&submission, |text| state.inner.policy.find(text))?;
    let typed = accepted.admit(&EntryPolicy::default(), (now_ms() / 1000) as u64)?;
    let hash = leaf_hash(&accepted.entry);
    let stored = state
        .inner
        .submitter
        .submit(NewEntry {
            leaf_hash: hash,
            data: accepted.entry,
            publisher: accepted.publisher.to_text(),
            typed,
        })
        .await?;
    let reply = EntryStatus {
        leaf_hash: hash.to_hex(),
        status: if stored.index.is_some() {
            "integrated"
        } else {
            "pending"
        }
        .to_owned(),
        index: stored.index,
        duplicate: stored.duplicate,
    };
    let status = if stored.index.is_some() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, axum::Json(reply)).into_response())
}

fn parse_u64(name: &str, value: &str) -> Result<u64> {
    if value.is_empty()
        || !value.bytes().all(|b| b.is_ascii_digit())
        || (value.len() > 1 && value.starts_with('0'))
    {
        return Err(LogError::BadRequest(format!(
            "{name} must be a decimal number without leading zeros"
        )));
    }
    value
        .parse()
        .map_err(|_| LogError::BadRequest(format!("{name} is out of range")))
}

async fn entry_by_index(
    State(state): State<AppState>,
    Path(index): Path<String>,
) -> Result<Response> {
    let index = parse_u64("index", &index)?;
    let size = state.inner.published.size();
    if index >= size {
        return Err(LogError::NotFound(format!(
            "index {index} is not below tree size {size}"
        )));
    }
    let record = state.inner.reads.entry(index).await?;
    Ok(axum::Json(EntryReply {
        index,
        leaf_hash: record.leaf_hash.to_hex(),
        entry: BASE64.encode(&record.data),
        publisher: record.publisher,
    })
    .into_response())
}

async fn entry_by_hash(
    State(state): State<AppState>,
    Path(hash): Path<String>,
) -> Result<Response> {
    let hash = Hash::from_hex(&hash)
        .map_err(|_| LogError::BadRequest("leaf hash must be 64 hex digits".into()))?;
    let found = state.inner.store.lookup(&hash).await?;
    let size = state.inner.published.size();
    let reply = match found {
        None => return Err(LogError::NotFound("no entry with this leaf hash".into())),
        // Integrated but not yet in the checkpoint this process serves: still pending to readers.
        Some(Some(index)) if index < size => EntryStatus {
            leaf_hash: hash.to_hex(),
            status: "integrated".to_owned(),
            index: Some(index),
            duplicate: false,
        },
        Some(_) => EntryStatus {
            leaf_hash: hash.to_hex(),
            status: "pending".to_owned(),
            index: None,
            duplicate: false,
        },
    };
    Ok(axum::Json(reply).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    index: Option<String>,
    leaf_hash: Option<String>,
    size: Option<String>,
}

async fn inclusion(
    State(state): State<AppState>,
    query: std::result::Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| LogError::BadRequest(e.body_text()))?;
    let published = state.inner.published.get();
    let size = match &query.size {
        Some(s) => parse_u64("size", s)?,
        None => published.size,
    };
    if size > published.size {
        return Err(LogError::BadRequest(format!(
            "size {size} is beyond the published tree size {}",
            published.size
        )));
    }
    let store = &state.inner.store;
    let (index, leaf) = match (&query.index, &query.leaf_hash) {
        (Some(index), None) => {
            let index = parse_u64("index", index)?;
            if index >= size {
                return Err(LogError::BadRequest(format!(
                    "index {index} is not below size {size}"
                )));
            }
            // The leaf hash is in the level-0 tile (usually cached), no entry read needed.
            let tile_index = index / TILE_WIDTH;
            let width = tile_width(TileKind::Hashes(0), tile_index, size);
            let tile = state.inner.reads.tile_tree(0, tile_index, width).await?;
            let leaf = tile
                .node(0, (index % TILE_WIDTH) as usize)
                .ok_or_else(|| LogError::Corrupt(format!("leaf {index} missing from its tile")))?;
            (index, leaf)
        }
        (None, Some(hex)) => {
            let hash = Hash::from_hex(hex)
                .map_err(|_| LogError::BadRequest("leaf_hash must be 64 hex digits".into()))?;
            match store.lookup(&hash).await? {
                Some(Some(index)) if index < size => (index, hash),
                _ => {
                    return Err(LogError::NotFound(format!(
                        "leaf not in the tree of size {size}"
                    )));
                }
            }
        }
        _ => {
            return Err(LogError::BadRequest(
                "give exactly one of index and leaf_hash".into(),
            ));
        }
    };
    let proof = prove(
        size,
        |l, i, w| state.inner.reads.tile_tree(l, i, w),
        |f| inclusion_proof(index, size, f),
    )
    .await?;
    let checkpoint = if size == published.size {
        Some(published.note)
    } else {
        store.checkpoint_at(size).await?.map(|c| c.note)
    };
    Ok(axum::Json(InclusionReply {
        index,
        tree_size: size,
        leaf_hash: leaf.to_hex(),
        proof: encode_hashes(&proof),
        checkpoint,
    })
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    old: String,
    new: Option<String>,
}

async fn consistency(
    State(state): State<AppState>,
    query: std::result::Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| LogError::BadRequest(e.body_text()))?;
    let published = state.inner.published.size();
    let old = parse_u64("old", &query.old)?;
    let new = match &query.new {
        Some(n) => parse_u64("new", n)?,
        None => published,
    };
    if new > published {
        return Err(LogError::BadRequest(format!(
            "new size {new} is beyond the published tree size {published}"
        )));
    }
    if old == 0 || old > new {
        return Err(LogError::BadRequest(format!(
            "need 0 < old <= new, got old {old} and new {new}"
        )));
    }
    let proof = prove(
        new,
        |l, i, w| state.inner.reads.tile_tree(l, i, w),
        |f| consistency_proof(old, new, f),
    )
    .await?;
    Ok(axum::Json(ConsistencyReply::new(old, new, &proof)).into_response())
}

async fn healthz(State(state): State<AppState>) -> Result<Response> {
    let pending = state.inner.store.pending_count().await?;
    Ok(axum::Json(serde_json::json!({
        "status": "ok",
        "tree_size": state.inner.published.size(),
        "pending": pending,
    }))
    .into_response())
}

async fn metrics(State(state): State<AppState>) -> Response {
    text(
        state.inner.metrics.render(),
        "text/plain; version=0.0.4",
        "no-store",
    )
}

/// Tree size to answer at: the published one, or a requested one that has a signed checkpoint.
/// Returns the size and that checkpoint's note.
async fn tree_at(inner: &Inner, size: Option<&str>) -> Result<(u64, String)> {
    let published = inner.published.get();
    let Some(size) = size else {
        return Ok((published.size, published.note));
    };
    let size = parse_u64("size", size)?;
    if size > published.size {
        return Err(LogError::BadRequest(format!(
            "size {size} is beyond the published tree size {}",
            published.size
        )));
    }
    let checkpoint =
        inner.store.checkpoint_at(size).await?.ok_or_else(|| {
            LogError::NotFound(format!("no checkpoint was signed for size {size}"))
        })?;
    Ok((size, checkpoint.note))
}

/// The bundle of the entry at `index` in the tree of `size` leaves, as an HTTP answer.
async fn bundle_reply(
    inner: &Inner,
    index: u64,
    size: u64,
    checkpoint: String,
) -> Result<Response> {
    let record = inner.reads.entry(index).await?;
    Ok(bundle_response(
        bundle_of(inner, record, size, checkpoint).await?,
    ))
}

/// The proof bundle of an integrated entry in the tree of `size` leaves.
async fn bundle_of(
    inner: &Inner,
    record: EntryRecord,
    size: u64,
    checkpoint: String,
) -> Result<String> {
    let index = record.index;
    let proof = prove(
        size,
        |l, i, w| inner.reads.tile_tree(l, i, w),
        |f| inclusion_proof(index, size, f),
    )
    .await?;
    Ok(ProofBundle {
        entry: record.data,
        index,
        proof,
        checkpoint,
    }
    .to_text())
}

fn bundle_response(text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeQuery {
    size: Option<String>,
}

type QueryResult<T> = std::result::Result<Query<T>, axum::extract::rejection::QueryRejection>;

async fn bundle_by_index(
    State(state): State<AppState>,
    Path(index): Path<String>,
    query: QueryResult<SizeQuery>,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| LogError::BadRequest(e.body_text()))?;
    let index = parse_u64("index", &index)?;
    let (size, checkpoint) = tree_at(&state.inner, query.size.as_deref()).await?;
    if index >= size {
        return Err(LogError::NotFound(format!(
            "index {index} is not below tree size {size}"
        )));
    }
    bundle_reply(&state.inner, index, size, checkpoint).await
}

async fn bundle_by_hash(
    State(state): State<AppState>,
    Path(hash): Path<String>,
    query: QueryResult<SizeQuery>,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| LogError::BadRequest(e.body_text()))?;
    let hash = Hash::from_hex(&hash)
        .map_err(|_| LogError::BadRequest("leaf hash must be 64 hex digits".into()))?;
    let (size, checkpoint) = tree_at(&state.inner, query.size.as_deref()).await?;
    let index = match state.inner.store.lookup(&hash).await? {
        Some(Some(index)) if index < size => index,
        _ => {
            return Err(LogError::NotFound(format!(
                "leaf not in the tree of size {size}"
            )));
        }
    };
    bundle_reply(&state.inner, index, size, checkpoint).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KindQuery {
    kind: String,
    pcr0: Option<String>,
    valid_at: Option<String>,
    size: Option<String>,
    limit: Option<String>,
}

async fn bundles_by_kind(
    State(state): State<AppState>,
    query: QueryResult<KindQuery>,
) -> Result<Response> {
    let Query(query) = query.map_err(|e| LogError::BadRequest(e.body_text()))?;
    let kind = kind_code(&query.kind).ok_or_else(|| {
        LogError::BadRequest("kind must be release, ohttp-keys or token-key".into())
    })?;
    let pcr0 = match &query.pcr0 {
        None => None,
        Some(text) => {
            let bytes = hex::decode(text)
                .ok()
                .and_then(|b| <[u8; 48]>::try_from(b).ok());
            Some(bytes.ok_or_else(|| LogError::BadRequest("pcr0 must be 96 hex digits".into()))?)
        }
    };
    let valid_at = match &query.valid_at {
        Some(t) => parse_u64("valid_at", t)?,
        None => (now_ms() / 1000) as u64,
    };
    let limit = match &query.limit {
        Some(l) => parse_u64("limit", l)?.clamp(1, MAX_BUNDLES as u64),
        None => MAX_BUNDLES as u64,
    };
    let (size, checkpoint) = tree_at(&state.inner, query.size.as_deref()).await?;
    let records = state
        .inner
        .store
        .typed_entries(kind, size, valid_at, pcr0.as_ref(), limit as usize)
        .await?;
    let mut bundles = Vec::with_capacity(records.len());
    for record in records {
        bundles.push(bundle_of(&state.inner, record, size, checkpoint.clone()).await?);
    }
    Ok(axum::Json(BundleList {
        tree_size: size,
        valid_at,
        bundles,
    })
    .into_response())
}
