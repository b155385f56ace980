//! Log server benchmark: prints a table of rates and ratios against baselines measured in the
//! same run.
//!
//! - Append: sustained HTTP submissions (128 concurrent clients, each entry signed by a publisher
//!   and verified by the server, acknowledged only once durable) against raw batched multi-row
//!   INSERTs of the same rows into the same schema on the same database.
//! - Read: a mix of `/checkpoint`, full tiles and JSON inclusion proofs from `arcane-log` against
//!   the same bytes as static files from nginx (or, without nginx, a minimal static server).
//! - Integration latency: acknowledgement to a published checkpoint, p50/p99.
//!
//! `cargo bench -p arcane-log --bench log_bench`. Set `ARCANE_BENCH_POSTGRES_URL` to add the
//! PostgreSQL rows, `ARCANE_BENCH_ENTRIES` to change the append count (default 20000). Lines
//! starting `summary |` are rows of `bench/all.sh`'s table.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcane_log::keys::{PublisherPolicy, generate_signer};
use arcane_log::storage::{NewEntry, Store};
use arcane_log::submission::Submission;
use arcane_verifier::merkle::leaf_hash;
use arcane_verifier::tiles::{TILE_WIDTH, TileCoord, TileKind};

/// Concurrent submitters: below the server's default limit of connections per peer (256), which
/// counts a connection until its close is seen, so 256 clients from one address would be refused.
const CONCURRENCY: usize = 128;
const READ_CONCURRENCY: usize = 32;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server(data: &Path, database_url: Option<&str>) -> Server {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_arcane-log"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .env("ARCANE_LOG", "warn")
        .stdout(Stdio::null());
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    let server = Server {
        child: command.spawn().expect("arcane-log starts"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..500 {
        if http
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server did not start");
}

fn entries(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{tag} benchmark entry {i:08} {}", "x".repeat(200)).into_bytes())
        .collect()
}

/// Raw baseline: the same rows, multi-row INSERTs of 256 per transaction.
async fn raw_inserts(url: &str, n: usize) -> f64 {
    let store = Store::open(url).await.unwrap();
    let rows: Vec<NewEntry> = entries("raw", n)
        .into_iter()
        .map(|data| NewEntry {
            leaf_hash: leaf_hash(&data),
            data,
            publisher: "publisher+00000000+AAAA".into(),
            typed: None,
        })
        .collect();
    let start = Instant::now();
    for chunk in rows.chunks(256) {
        store.submit_batch(chunk, 0).await.unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    store.close().await;
    rate
}

/// Sustained appends through the HTTP API; returns (rate, server).
async fn http_appends(data: &Path, database_url: Option<&str>, n: usize) -> (f64, Server) {
    arcane_log::init_data_dir(data, None).unwrap();
    let publisher = generate_signer("bench").unwrap();
    PublisherPolicy::new(data.join(arcane_log::POLICY_FILE))
        .allow(
            &publisher.verifier(),
            &arcane_log::keys::AllowedKinds::parse("release,ohttp-keys,token-key,opaque").unwrap(),
        )
        .unwrap();
    let server = start_server(data, database_url).await;
    let bodies: Vec<Vec<u8>> = entries("http", n)
        .iter()
        .map(|e| serde_json::to_vec(&Submission::sign(e, &publisher)).unwrap())
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let url = format!("{}/v1/entries", server.base);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (bodies, next, http, url) = (bodies.clone(), next.clone(), http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= bodies.len() {
                    break;
                }
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{}", response.status());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    // Wait for integration so reads see the whole tree.
    let http = reqwest::Client::new();
    loop {
        let health: serde_json::Value = http
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["tree_size"].as_u64() == Some(n as u64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (rate, server)
}

/// Ack → published checkpoint, measured from the client, entries sent one after another.
async fn integration_latency(server: &Server, samples: usize) -> (Duration, Duration) {
    let client = arcane_log::client::LogClient::new(&server.base).unwrap();
    let mut latencies = Vec::with_capacity(samples);
    let http = reqwest::Client::new();
    let signer = BENCH_PUBLISHER.get().unwrap();
    for i in 0..samples {
        let body = serde_json::to_vec(&Submission::sign(format!("latency {i}").as_bytes(), signer))
            .unwrap();
        let reply: serde_json::Value = http
            .post(format!("{}/v1/entries", server.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let acked = Instant::now();
        let leaf = reply["leaf_hash"].as_str().unwrap().to_owned();
        loop {
            if client.lookup(&leaf).await.unwrap().index.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(acked.elapsed());
    }
    latencies.sort();
    (latencies[samples / 2], latencies[samples * 99 / 100])
}

static BENCH_PUBLISHER: std::sync::OnceLock<arcane_verifier::note::NoteSigner> =
    std::sync::OnceLock::new();

/// Request rate of `paths` against `base`, READ_CONCURRENCY clients, `total` requests.
async fn read_rate(base: &str, paths: &[String], total: usize) -> f64 {
    let http = reqwest::Client::new();
    let paths = Arc::new(paths.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..READ_CONCURRENCY {
        let (http, paths, next, base) =
            (http.clone(), paths.clone(), next.clone(), base.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let response = http
                    .get(format!("{base}{}", paths[i % paths.len()]))
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{}", paths[i % paths.len()]);
                let _ = response.bytes().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Writes what the log serves for `paths` into `root` as static files; returns the static paths.
async fn mirror(base: &str, paths: &[String], root: &Path) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let body = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let file = if path.starts_with("/v1/") {
            format!("/proof/{i}")
        } else {
            path.clone()
        };
        let target = root.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, &body).unwrap();
        out.push(file);
    }
    out
}

struct Nginx {
    child: Child,
    base: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(root: &Path, work: &Path) -> Option<Nginx> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    let port = free_port();
    std::fs::create_dir_all(work.join("logs")).unwrap();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {w}/nginx.pid; error_log {w}/logs/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; sendfile on; keepalive_requests 1000000;\n\
           client_body_temp_path {w}; proxy_temp_path {w}; fastcgi_temp_path {w}; uwsgi_temp_path {w}; scgi_temp_path {w};\n\
           server {{ listen 127.0.0.1:{port}; root {r}; location / {{ default_type application/octet-stream; }} }} }}\n",
        w = work.display(),
        r = root.display()
    );
    std::fs::write(work.join("nginx.conf"), conf).unwrap();
    let child = Command::new(nginx)
        .arg("-p")
        .arg(work)
        .arg("-c")
        .arg(work.join("nginx.conf"))
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    Some(Nginx {
        child,
        base: format!("http://127.0.0.1:{port}"),
    })
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("ARCANE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    BENCH_PUBLISHER.get_or_init(|| generate_signer("latency").unwrap());
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let mut summary: Vec<String> = Vec::new();

    let mut backends = vec![("SQLite", None::<String>)];
    if let Ok(url) = std::env::var("ARCANE_BENCH_POSTGRES_URL") {
        backends.push(("PostgreSQL", Some(url)));
    }
    let mut sqlite_server = None;
    let dir = tempfile::tempdir().unwrap();
    for (name, url) in &backends {
        let raw_url = match url {
            None => format!("sqlite://{}?mode=rwc", dir.path().join("raw.db").display()),
            Some(u) => u.clone(),
        };
        let raw = raw_inserts(&raw_url, n).await;
        if url.is_some() {
            // Empty the database again for the server run.
            reset_postgres(&raw_url).await;
        }
        let data = dir.path().join(format!("data-{name}"));
        let (http, server) = http_appends(&data, url.as_deref(), n).await;
        PublisherPolicy::new(data.join(arcane_log::POLICY_FILE))
            .allow(
                &BENCH_PUBLISHER.get().unwrap().verifier(),
                &arcane_log::keys::AllowedKinds::parse("opaque").unwrap(),
            )
            .unwrap();
        let ratio = http / raw;
        let (goal, met) = if url.is_none() {
            ("≥ 0.5× and ≥ 20,000/s", ratio >= 0.5 && http >= 20_000.0)
        } else {
            ("≥ 0.5×", ratio >= 0.5)
        };
        summary.push(format!(
            "summary | log append, {name} (HTTP, signed, acknowledged when durable) | {http:.0} entries/s | raw batched INSERTs: {raw:.0} rows/s | {ratio:.2}× | {goal} | {} |",
            if met { "yes" } else { "no" }
        ));
        rows.push((
            format!("append {name} ({n} entries)"),
            format!("{http:.0} entries/s (HTTP)"),
            format!("{raw:.0} rows/s (raw batched INSERT)"),
            format!("{:.2}x", http / raw),
        ));
        let (p50, p99) = integration_latency(&server, 200).await;
        rows.push((
            format!("integration latency {name}"),
            format!("p50 {:.1} ms", p50.as_secs_f64() * 1e3),
            format!("p99 {:.1} ms", p99.as_secs_f64() * 1e3),
            "(batch delay 50 ms)".into(),
        ));
        if url.is_none() {
            sqlite_server = Some(server);
        }
    }

    // Reads against the SQLite-backed server.
    let server = sqlite_server.unwrap();
    let size = n as u64;
    let mut paths = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..300 {
        match i % 3 {
            0 => paths.push("/checkpoint".to_owned()),
            1 => {
                let index = random() % (size / TILE_WIDTH);
                paths.push(format!(
                    "/{}",
                    TileCoord {
                        kind: TileKind::Hashes(0),
                        index,
                        width: 256
                    }
                    .path()
                ));
            }
            _ => paths.push(format!(
                "/v1/proof/inclusion?index={}&size={size}",
                random() % size
            )),
        }
    }
    let total: usize = std::env::var("ARCANE_BENCH_READS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let ours = read_rate(&server.base, &paths, total).await;
    let root = dir.path().join("static");
    let static_paths = mirror(&server.base, &paths, &root).await;
    let (baseline, label) = match start_nginx(&root, &dir.path().join("nginx")) {
        Some(nginx) => (
            read_rate(&nginx.base, &static_paths, total).await,
            "nginx static files",
        ),
        None => panic!("nginx is needed for the read baseline (apt-get install nginx-light)"),
    };
    summary.push(format!(
        "summary | log reads (checkpoint, tile, proof mix) | {ours:.0} req/s | {label}: {baseline:.0} req/s | {:.2}× | — | — |",
        ours / baseline
    ));
    rows.push((
        "reads: checkpoint + tile + proof mix".into(),
        format!("{ours:.0} req/s (arcane-log)"),
        format!("{baseline:.0} req/s ({label})"),
        format!("{:.2}x", ours / baseline),
    ));

    println!("\n| measurement | arcane-log | baseline (same run) | ratio |\n|---|---|---|---|");
    for (a, b, c, d) in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    for line in summary {
        println!("{line}");
    }
}

async fn reset_postgres(url: &str) {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    conn.execute("DROP TABLE IF EXISTS entries, tiles, checkpoints, sequencer_lease, log_meta, _sqlx_migrations")
        .await
        .unwrap();
    conn.close().await.unwrap();
}
