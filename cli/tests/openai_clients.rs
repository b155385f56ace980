//! The official `openai` packages — Python's and npm's, unmodified — against `arcane proxy` over
//! 127.0.0.1 and the demo stack: a whole answer, the same answer streamed, and a refused node
//! (a checkpoint signed by another key) arriving in the client as an error. The scripts are
//! `clients/openai/check.py` and `check.mjs`.
//!
//! The packages come from `.ci/run` (a virtual environment named by `ARCANE_OPENAI_PYTHON`, and
//! `clients/openai/node_modules`). Without them the test is skipped, loudly, unless
//! `ARCANE_REQUIRE_INTEROP=1` (as in CI).

use std::path::{Path, PathBuf};

use arcane_cli::proxy::{ProxyOptions, RunningProxy};

mod common;
use common::{impostor_log_key, proxy_with, stack};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/openai")
}

fn required() -> bool {
    std::env::var("ARCANE_REQUIRE_INTEROP").as_deref() == Ok("1")
}

/// The Python with the `openai` package, if there is one.
fn python() -> Option<String> {
    let python = std::env::var("ARCANE_OPENAI_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

fn node_package() -> bool {
    scripts().join("node_modules/openai/package.json").exists()
}

async fn run(program: &str, script: &str, proxy: &RunningProxy, refusing: &RunningProxy) {
    let output = tokio::process::Command::new(program)
        .arg(script)
        .current_dir(scripts())
        .env("ARCANE_PROXY_URL", format!("{}/v1", proxy.url()))
        .env(
            "ARCANE_REFUSING_PROXY_URL",
            format!("{}/v1", refusing.url()),
        )
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{program} {script}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_clients_stream_through_the_proxy_and_see_refusals() {
    let python = python();
    let node = node_package();
    if python.is_none() || !node {
        assert!(
            !required(),
            "ARCANE_REQUIRE_INTEROP=1 but the openai packages are missing (python: {}, npm: {node})",
            python.is_some()
        );
        eprintln!(
            "SKIPPED: the official openai packages are not installed (.ci/run installs them: a \
             virtual environment in ARCANE_OPENAI_PYTHON, clients/openai/node_modules)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), true).await;
    let honest = proxy_with(&stack, |t| t, ProxyOptions::default()).await;
    let refusing = proxy_with(&stack, impostor_log_key(&stack), ProxyOptions::default()).await;
    run(python.as_deref().unwrap(), "check.py", &honest, &refusing).await;
    run("node", "check.mjs", &honest, &refusing).await;
}
