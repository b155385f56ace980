//! An ensemble: one model split across several compute nodes (`spec/compute.md` §7). This is the
//! shell around `verifier::ensemble_link`: it dials and accepts the members' links, runs their
//! attested handshakes, and only once every link this member needs has been checked does it give
//! mistral.rs's ring its local ports ([`Ensemble::ring_member`]), each of which it carries over
//! one link, sealed record by record. Nothing of the ring ever crosses between members in the
//! clear, and nothing crosses at all before both ends proved the same logged release.
//!
//! Links (dialer → listener, the dialer's first record names the purpose):
//! - `ring`: rank r → rank r+1 (mod the ensemble's size), carrying the bytes rank r's engine
//!   sends its right neighbour;
//! - `requests`: each follower → the leader (rank 0), carrying the requests the leader's engine
//!   replicates to the followers' engines.
//!
//! Any link that ends or fails ends the ensemble ([`Ensemble::failed`]): a ring missing a member
//! cannot compute, so the leader stops serving and deregisters, and a follower exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcane_engine::RingMember;
use arcane_verifier::bundle::VerifiedEntry;
use arcane_verifier::ensemble_link::{
    Hello, LinkRole, LinkSecret, MAX_DOCUMENT, MAX_RECORD, Opener, PeerPolicy, Sealer, check_peer,
    document_nonce, length_prefixed,
};
use arcane_verifier::nitro::{AttestationPolicy, NitroRoot, binding_user_data};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::attestation::AttestationProvider;
use crate::error::{ComputeError, Result};

/// A link's purpose, the first record its dialer sends.
const PURPOSE_RING: u8 = 1;
/// See [`PURPOSE_RING`].
const PURPOSE_REQUESTS: u8 = 2;
/// Largest request line the leader's engine replicates (a request's messages, JSON).
const MAX_REQUEST_LINE: usize = 64 << 20;
/// How long one handshake may take once connected.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two tries to reach a member that is not listening yet.
const RETRY: Duration = Duration::from_millis(50);

/// Where each member of an ensemble listens for links, and which one this is.
#[derive(Clone, Debug)]
pub struct EnsembleConfig {
    /// This member's rank; 0 is the leader, the only member clients reach.
    pub rank: usize,
    /// Where this member listens for its peers' links.
    pub listen: SocketAddr,
    /// Where each member's links are reached, by rank (a power of two of them, at least 2; this
    /// member's own is not used).
    pub members: Vec<SocketAddr>,
    /// How long bringing the ensemble up may take (members start in any order).
    pub bring_up_timeout: Duration,
}

/// What this member proves on its links and requires of its peers.
pub struct LinkIdentity {
    /// This member's NSM (or the simulated one, in development).
    pub attestor: Arc<dyn AttestationProvider>,
    /// The root peers' documents must chain to.
    pub root: NitroRoot,
    /// The logged release this member runs: every peer must prove the same.
    pub release: VerifiedEntry,
    /// The digest of the model this member serves (the release names it).
    pub model_sha256: [u8; 32],
    /// Freshness of the peers' documents.
    pub attestation: AttestationPolicy,
}

/// Why an ensemble stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Every link is up.
    Serving,
    /// A link ended or failed: the ensemble cannot compute any more.
    Failed(String),
}

/// A brought-up ensemble: its links checked, its forwarders running.
pub struct Ensemble {
    member: RingMember,
    health: watch::Receiver<Health>,
}

impl Ensemble {
    /// Brings this member's links up: listens on its own address, dials the links it owes,
    /// accepts those it is owed, runs every handshake (a peer of another release, root or model
    /// is refused here, before anything else crosses), then opens the local ports mistral.rs's
    /// ring will use. Fails if any link is refused or not up within the configured time.
    pub async fn bring_up(config: EnsembleConfig, identity: LinkIdentity) -> Result<Ensemble> {
        let size = config.members.len();
        if size < 2 || !size.is_power_of_two() || config.rank >= size || size > 256 {
            return Err(ComputeError::Config(format!(
                "an ensemble of {size} members with rank {}: a power of two of at least 2 \
                 members, and a rank below it",
                config.rank
            )));
        }
        let identity = Arc::new(identity);
        let rank = config.rank;
        let deadline = Instant::now() + config.bring_up_timeout;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| ComputeError::Serve(format!("ensemble link port: {e}")))?;

        // Links this member accepts: the ring from its left neighbour, and (the leader) one for
        // requests from each follower.
        let left = (rank + size - 1) % size;
        let expected_in = if rank == 0 { size } else { 1 };
        let accepting = {
            let identity = Arc::clone(&identity);
            tokio::spawn(async move {
                let mut ring_in = None;
                let mut requests_in = Vec::new();
                while ring_in.is_none() || requests_in.len() + 1 < expected_in {
                    let (stream, _) = listener
                        .accept()
                        .await
                        .map_err(|e| ComputeError::Serve(format!("ensemble link: {e}")))?;
                    let link =
                        within(HANDSHAKE_TIMEOUT, accept_link(stream, &identity, rank)).await??;
                    match (link.purpose, link.peer) {
                        (PURPOSE_RING, peer) if peer == left && ring_in.is_none() => {
                            ring_in = Some(link)
                        }
                        (PURPOSE_REQUESTS, peer)
                            if rank == 0
                                && peer != 0
                                && !requests_in.iter().any(|l: &Link| l.peer == peer) =>
                        {
                            requests_in.push(link)
                        }
                        (purpose, peer) => {
                            return Err(link_refused(format!(
                                "member {peer} opened an unexpected link (purpose {purpose})"
                            )));
                        }
                    }
                }
                Ok::<_, ComputeError>((ring_in.expect("accepted"), requests_in))
            })
        };

        // Links this member dials: the ring to its right neighbour, and (a follower) requests to
        // the leader.
        let right = (rank + 1) % size;
        let ring_out = dial_link(
            config.members[right],
            &identity,
            rank,
            right,
            PURPOSE_RING,
            deadline,
        )
        .await?;
        let requests_out = if rank == 0 {
            None
        } else {
            Some(
                dial_link(
                    config.members[0],
                    &identity,
                    rank,
                    0,
                    PURPOSE_REQUESTS,
                    deadline,
                )
                .await?,
            )
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (ring_in, requests_in) = within(remaining, accepting)
            .await?
            .map_err(|e| ComputeError::Serve(format!("ensemble link task: {e}")))??;
        tracing::info!(rank, size, "ensemble links attested");

        // Every link is checked: now the ring's local ports.
        let (health_tx, health) = watch::channel(Health::Serving);
        let health_tx = Arc::new(health_tx);
        let local = |what: &'static str| async move {
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| ComputeError::Serve(format!("{what}: {e}")))
        };
        // The engine connects to `right_port` for its right neighbour: carried by `ring_out`;
        // and to `left_port` for its left neighbour: `ring_in` is carried to it.
        let mut ring_ports = Vec::new();
        for (link, what) in [
            (ring_out, format!("ring to member {right}")),
            (ring_in, format!("ring from member {left}")),
        ] {
            let listener = local("a ring port").await?;
            ring_ports.push(port_of(&listener)?);
            let failed = Arc::clone(&health_tx);
            tokio::spawn(async move {
                let reason = match listener.accept().await {
                    Ok((engine, _)) => carry(engine, link).await,
                    Err(e) => format!("the engine's ring connection: {e}"),
                };
                fail(&failed, format!("{what}: {reason}"));
            });
        }
        let (right_port, left_port) = (ring_ports[0], ring_ports[1]);
        // Requests: the leader's engine connects to `master_port` once per follower for each
        // request; a follower's engine connects to its `master_port` for the next one.
        let master_listener = local("request port").await?;
        let master_port = port_of(&master_listener)?;
        let failed = Arc::clone(&health_tx);
        if rank == 0 {
            tokio::spawn(async move {
                let reason = replicate_to_followers(master_listener, requests_in).await;
                fail(&failed, format!("requests to the followers: {reason}"));
            });
        } else {
            let link = requests_out.expect("a follower dials the leader");
            tokio::spawn(async move {
                let reason = deliver_requests(master_listener, link).await;
                fail(&failed, format!("requests from the leader: {reason}"));
            });
        }
        Ok(Ensemble {
            member: RingMember {
                rank,
                world_size: size,
                left_port,
                right_port,
                master_port,
            },
            health,
        })
    }

    /// The ring ports to give this member's engine.
    pub fn ring_member(&self) -> &RingMember {
        &self.member
    }

    /// The ensemble's health now.
    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    /// Resolves when the ensemble fails, with why.
    pub async fn failed(&self) -> String {
        let mut health = self.health.clone();
        loop {
            if let Health::Failed(why) = &*health.borrow_and_update() {
                return why.clone();
            }
            if health.changed().await.is_err() {
                return "the ensemble's links are gone".into();
            }
        }
    }
}

/// One checked link.
struct Link {
    stream: TcpStream,
    sealer: Sealer,
    opener: Opener,
    peer: usize,
    purpose: u8,
}

impl Link {
    async fn send(&mut self, plaintext: &[u8]) -> std::result::Result<(), String> {
        for piece in plaintext.chunks(MAX_RECORD).chain(
            // An empty plaintext is still one record.
            plaintext.is_empty().then_some(&[][..]),
        ) {
            let record = self.sealer.seal(piece).map_err(|e| e.to_string())?;
            self.stream
                .write_all(&record)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The next record; `None` when the peer closed the link.
    async fn receive(&mut self) -> std::result::Result<Option<Vec<u8>>, String> {
        receive_record(&mut self.stream, &mut self.opener).await
    }
}

async fn receive_record<R: AsyncReadExt + Unpin>(
    stream: &mut R,
    opener: &mut Opener,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if let Some(record) = opener.next_record() {
            return record.map(Some).map_err(|e| e.to_string());
        }
        let n = stream.read(&mut buffer).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(None);
        }
        opener.push(&buffer[..n]);
    }
}

fn link_refused(why: String) -> ComputeError {
    ComputeError::Ensemble(why)
}

async fn within<T>(limit: Duration, work: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| link_refused("the ensemble's links were not up in time".into()))
}

fn random32() -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    getrandom::fill(&mut out).map_err(|e| ComputeError::Attestation(e.to_string()))?;
    Ok(out)
}

/// A document binding `key` to the nonce this link expects, and this member's release and model.
fn link_document(identity: &LinkIdentity, nonce: &[u8; 32], key: &[u8; 32]) -> Result<Vec<u8>> {
    let user_data = binding_user_data(
        &identity.model_sha256,
        &identity.release.leaf_hash.0,
        &[0; 32],
    );
    identity
        .attestor
        .attest(Some(key), Some(&user_data), Some(nonce))
}

fn policy(identity: &LinkIdentity) -> PeerPolicy<'_> {
    PeerPolicy {
        root: &identity.root,
        release: &identity.release,
        attestation: identity.attestation.clone(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn read_document(stream: &mut TcpStream) -> Result<Vec<u8>> {
    let len = stream.read_u32().await.map_err(io_refused)? as usize;
    if len > MAX_DOCUMENT {
        return Err(link_refused(format!(
            "the peer's document is {len} bytes, at most {MAX_DOCUMENT}"
        )));
    }
    let mut document = vec![0; len];
    stream.read_exact(&mut document).await.map_err(io_refused)?;
    Ok(document)
}

fn io_refused(e: std::io::Error) -> ComputeError {
    link_refused(format!("the link broke during its handshake: {e}"))
}

/// The listener's side of a handshake, then the dialer's purpose.
async fn accept_link(mut stream: TcpStream, identity: &LinkIdentity, rank: usize) -> Result<Link> {
    let _ = stream.set_nodelay(true);
    let mut hello = vec![0u8; arcane_verifier::ensemble_link::HELLO_LEN];
    stream.read_exact(&mut hello).await.map_err(io_refused)?;
    let parsed = Hello::decode(&hello)?;
    if usize::from(parsed.to_rank) != rank {
        return Err(link_refused(format!(
            "a link meant for member {} reached member {rank}",
            parsed.to_rank
        )));
    }
    let secret = LinkSecret::generate()?;
    let challenge = random32()?;
    let document = link_document(
        identity,
        &document_nonce(LinkRole::Listener, &hello, &challenge),
        &secret.public(),
    )?;
    let mut answer = challenge.to_vec();
    answer.extend(length_prefixed(&document));
    stream.write_all(&answer).await.map_err(io_refused)?;
    let peer_document = read_document(&mut stream).await?;
    let peer_key = check_peer(
        &peer_document,
        &document_nonce(LinkRole::Dialer, &hello, &challenge),
        &policy(identity),
        now_ms(),
    )
    .map_err(|e| link_refused(format!("member {} refused: {e}", parsed.from_rank)))?;
    let finish = length_prefixed(&peer_document);
    let transcript = [&hello[..], &answer, &finish].concat();
    let (sealer, mut opener) = secret.derive(LinkRole::Listener, &peer_key, &transcript)?;
    let purpose = match receive_record(&mut stream, &mut opener).await {
        Ok(Some(p)) if p.len() == 1 => p[0],
        Ok(_) => return Err(link_refused("a link without its purpose".into())),
        Err(e) => return Err(link_refused(e)),
    };
    Ok(Link {
        stream,
        sealer,
        opener,
        peer: usize::from(parsed.from_rank),
        purpose,
    })
}

/// The dialer's side: connects (retrying while the peer is not listening yet, until
/// `deadline`), runs the handshake and sends the purpose.
async fn dial_link(
    address: SocketAddr,
    identity: &LinkIdentity,
    rank: usize,
    peer: usize,
    purpose: u8,
    deadline: Instant,
) -> Result<Link> {
    let mut stream = loop {
        match TcpStream::connect(address).await {
            Ok(stream) => break stream,
            Err(e) if Instant::now() >= deadline => {
                return Err(link_refused(format!(
                    "member {peer} at {address} is not reachable: {e}"
                )));
            }
            Err(_) => tokio::time::sleep(RETRY).await,
        }
    };
    let _ = stream.set_nodelay(true);
    let handshake = async {
        let hello = Hello {
            from_rank: rank as u8,
            to_rank: peer as u8,
            challenge: random32()?,
        }
        .encode();
        stream.write_all(&hello).await.map_err(io_refused)?;
        let mut challenge = [0u8; 32];
        stream
            .read_exact(&mut challenge)
            .await
            .map_err(io_refused)?;
        let peer_document = read_document(&mut stream).await?;
        let peer_key = check_peer(
            &peer_document,
            &document_nonce(LinkRole::Listener, &hello, &challenge),
            &policy(identity),
            now_ms(),
        )
        .map_err(|e| link_refused(format!("member {peer} refused: {e}")))?;
        let secret = LinkSecret::generate()?;
        let document = link_document(
            identity,
            &document_nonce(LinkRole::Dialer, &hello, &challenge),
            &secret.public(),
        )?;
        let finish = length_prefixed(&document);
        stream.write_all(&finish).await.map_err(io_refused)?;
        let answer = [&challenge[..], &length_prefixed(&peer_document)].concat();
        let transcript = [&hello[..], &answer, &finish].concat();
        secret
            .derive(LinkRole::Dialer, &peer_key, &transcript)
            .map_err(ComputeError::from)
    };
    let (sealer, opener) = within(HANDSHAKE_TIMEOUT, handshake).await??;
    let mut link = Link {
        stream,
        sealer,
        opener,
        peer,
        purpose,
    };
    link.send(&[purpose])
        .await
        .map_err(|e| link_refused(format!("member {peer}: {e}")))?;
    Ok(link)
}

fn port_of(listener: &TcpListener) -> Result<u16> {
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| ComputeError::Serve(e.to_string()))
}

/// Carries bytes both ways between the engine's socket and a link, sealed on the link, until
/// either ends; returns why it ended.
async fn carry(engine: TcpStream, link: Link) -> String {
    let _ = engine.set_nodelay(true);
    let (mut engine_read, mut engine_write) = engine.into_split();
    let Link {
        stream,
        mut sealer,
        mut opener,
        ..
    } = link;
    let (mut link_read, mut link_write) = stream.into_split();
    let outbound = async {
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = match engine_read.read(&mut buffer).await {
                Ok(0) => return "the engine closed its socket".to_string(),
                Ok(n) => n,
                Err(e) => return format!("the engine's socket: {e}"),
            };
            let record = match sealer.seal(&buffer[..n]) {
                Ok(r) => r,
                Err(e) => return e.to_string(),
            };
            if let Err(e) = link_write.write_all(&record).await {
                return format!("the link: {e}");
            }
        }
    };
    let inbound = async {
        loop {
            match receive_record(&mut link_read, &mut opener).await {
                Ok(Some(bytes)) => {
                    if let Err(e) = engine_write.write_all(&bytes).await {
                        return format!("the engine's socket: {e}");
                    }
                }
                Ok(None) => return "the peer closed the link".to_string(),
                Err(e) => return format!("the link: {e}"),
            }
        }
    };
    tokio::select! {
        why = outbound => why,
        why = inbound => why,
    }
}

fn fail(health: &watch::Sender<Health>, why: String) {
    tracing::warn!(reason = %why, "ensemble failed");
    health.send_if_modified(|h| {
        if *h == Health::Serving {
            *h = Health::Failed(why);
            true
        } else {
            false
        }
    });
}

/// The leader: for each request, its engine connects to `listener` once per follower, in rank
/// order, and writes the request as a JSON line; each line goes over that follower's link.
async fn replicate_to_followers(listener: TcpListener, mut links: Vec<Link>) -> String {
    links.sort_by_key(|l| l.peer);
    if links.is_empty() {
        return "no followers".into();
    }
    let mut next = 0;
    loop {
        let engine = match listener.accept().await {
            Ok((engine, _)) => engine,
            Err(e) => return format!("the engine's request port: {e}"),
        };
        let mut reader = BufReader::new(engine).take(MAX_REQUEST_LINE as u64);
        let mut line = Vec::new();
        if let Err(e) = reader.read_until(b'\n', &mut line).await {
            return format!("the engine's request: {e}");
        }
        if line.last() != Some(&b'\n') {
            return "the engine's request line ended early or is too long".into();
        }
        let link = &mut links[next];
        if let Err(e) = link.send(&line).await {
            return format!("the link to member {}: {e}", link.peer);
        }
        next = (next + 1) % links.len();
    }
}

/// A follower: its engine connects to `listener` whenever it is ready for the next request; each
/// connection gets the next request the leader sent, then is closed.
async fn deliver_requests(listener: TcpListener, mut link: Link) -> String {
    let (lines_tx, mut lines) = mpsc::channel::<Vec<u8>>(16);
    let receiving = tokio::spawn(async move {
        loop {
            match link.receive().await {
                Ok(Some(line)) => {
                    if lines_tx.send(line).await.is_err() {
                        return "the engine stopped taking requests".to_string();
                    }
                }
                Ok(None) => return "the leader closed the link".to_string(),
                Err(e) => return format!("the link: {e}"),
            }
        }
    });
    loop {
        let (mut engine, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => return format!("the engine's request port: {e}"),
        };
        let Some(line) = lines.recv().await else {
            return match receiving.await {
                Ok(why) => why,
                Err(e) => e.to_string(),
            };
        };
        if let Err(e) = engine.write_all(&line).await {
            return format!("the engine's request socket: {e}");
        }
        let _ = engine.shutdown().await;
    }
}
