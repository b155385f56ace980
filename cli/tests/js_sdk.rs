//! The TypeScript SDK (`sdk/js`, the Rust checks compiled to WebAssembly) against the demo stack
//! over 127.0.0.1, driven by Node's test runner (`sdk/js/test/`): a verified streamed chat with
//! its receipt (through our relay, and through a relay written in the test that takes no token;
//! the token granting service requires fraud data, which the SDK's refill gets first),
//! and the Rust client's refusals — an unlogged release, an impostor checkpoint key,
//! a forked log (split view, evidence kept), a spent token. This test sets the stacks up and
//! hands their trust files to `node --test`; the published vectors run there too.
//!
//! The package must be built first (`npm run build` in `sdk/js`, as `.ci/run` does). Without it
//! the test is skipped, loudly, unless `ARCANE_REQUIRE_INTEROP=1` (as in CI).

use arcane_cli::demo::Stack;
use arcane_compute::attestation::SimulatedNsm;
use std::path::{Path, PathBuf};

mod common;
use common::{
    bundle_from, forked_log, impostor_log_key, list_unverified, node_tests, now_ms,
    random_measurements, redeemed_at_gateway, releases, stack, trusting_root,
};

fn package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/js")
}

fn built() -> bool {
    package()
        .join("dist/wasm-dev/arcane_sdk_wasm_bg.wasm")
        .exists()
        && package().join("dist/development.js").exists()
}

/// Writes the stack's trust file changed by `edit` beside it (so its relative paths still
/// resolve) as `name`.
fn trust_variant(stack: &Stack, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let text = edit(std::fs::read_to_string(&stack.trust_file).unwrap());
    let path = stack.trust_file.with_file_name(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_chats_verified_and_refuses_what_the_rust_client_refuses() {
    if !built() {
        assert!(
            std::env::var("ARCANE_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "sdk/js is not built (npm run build)"
        );
        eprintln!("SKIPPED: sdk/js is not built (run `npm install && npm run build` in sdk/js)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main");
    std::fs::create_dir_all(&main).unwrap();
    // Its token granting service requires fraud data: the SDK's refill gets it first.
    let stack = {
        let model = main.join("tiny.gguf");
        arcane_engine::gguf::write_tiny_llama(&model, &Default::default()).unwrap();
        let mut options = arcane_cli::demo::StackOptions::new(main.join("stack"), model);
        options.fraud_data = Some(toml::from_str("required = true\ndefault_class = 1\n").unwrap());
        Stack::start(options, &|_| {}).await.unwrap()
    };
    let impostor = trust_variant(&stack, "impostor.toml", impostor_log_key(&stack));
    // One entry more than the honest log holds: a client that saw the honest log and is then
    // shown this one sees a split view.
    let honest = arcane_log_client::LogClient::new(&stack.log_url).unwrap();
    let size = arcane_verifier::checkpoint::verify_checkpoint(
        honest.checkpoint().await.unwrap().as_bytes(),
        &stack.log_key,
        &arcane_verifier::cosignature::WitnessPolicy::none(),
    )
    .unwrap()
    .checkpoint
    .size;
    let fork = forked_log(&stack, dir.path(), size + 1).await;
    let honest_url = stack.log_url.clone();
    let fork_url = format!("http://{}", fork.addr());
    let forked = trust_variant(&stack, "forked.toml", |t| t.replace(&honest_url, &fork_url));
    // A second stack whose gateway lists a node whose PCRs are in no release entry.
    let unlogged_stack = stack_without_node(&dir.path().join("unlogged")).await;
    let other = SimulatedNsm::new(&random_measurements(), now_ms() / 1000).unwrap();
    let bundle = bundle_from(
        &other,
        &releases(&unlogged_stack).await[0],
        unlogged_stack.model.sha256,
        now_ms(),
    );
    list_unverified(&unlogged_stack, &bundle).await;
    let unlogged = trust_variant(
        &unlogged_stack,
        "unlogged.toml",
        trusting_root(&unlogged_stack, &other),
    );

    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors");
    let report = node_tests(
        &package(),
        &[
            ("ARCANE_SDK_TRUST", stack.trust_file.as_os_str()),
            ("ARCANE_SDK_IMPOSTOR_TRUST", impostor.as_os_str()),
            ("ARCANE_SDK_FORKED_TRUST", forked.as_os_str()),
            ("ARCANE_SDK_UNLOGGED_TRUST", unlogged.as_os_str()),
            ("ARCANE_VECTORS", vectors.as_os_str()),
        ],
    )
    .await;
    // The gateway redeemed exactly the chats that were answered (the happy path's two, the one
    // through another relay and the first chat of the spent-token case): every refusal came
    // before a DEK was wrapped.
    assert_eq!(redeemed_at_gateway(&stack).await, 4, "{report}");
    assert_eq!(redeemed_at_gateway(&unlogged_stack).await, 0, "{report}");
    fork.shutdown().await;
    unlogged_stack.shutdown().await;
    stack.shutdown().await;
}

async fn stack_without_node(dir: &Path) -> Stack {
    std::fs::create_dir_all(dir).unwrap();
    stack(dir, false).await
}
