//! What the CLI's end-to-end tests share: the demo stack on a tiny generated model, clients (and
//! proxies) of it whose trust file a test may edit, and the edit that swaps in an impostor log key.
#![allow(dead_code)]

use std::path::Path;

use arcane_cli::demo::{Stack, StackOptions};
use arcane_cli::proxy::{ProxyOptions, RunningProxy};
use arcane_client::{Client, ClientConfig, Trust};
use arcane_engine::gguf::{TinyLlama, write_tiny_llama};

fn quiet(_: &str) {}

/// The demo stack in `dir` on a tiny generated model, with or without its compute node.
pub async fn stack(dir: &Path, with_node: bool) -> Stack {
    let model = dir.join("tiny.gguf");
    write_tiny_llama(&model, &TinyLlama::default()).unwrap();
    let mut options = StackOptions::new(dir.join("stack"), model);
    options.with_node = with_node;
    Stack::start(options, &quiet).await.unwrap()
}

/// A client of `stack` whose trust file is the stack's, changed by `edit`.
pub fn client_with(stack: &Stack, edit: impl FnOnce(String) -> String) -> Client {
    let text = edit(std::fs::read_to_string(&stack.trust_file).unwrap());
    let trust = Trust::from_toml(&text, stack.trust_file.parent().unwrap()).unwrap();
    let mut config = ClientConfig::new(trust);
    config.state_root = stack.client_state.clone();
    Client::new(config).unwrap()
}

/// `arcane proxy` on 127.0.0.1 for a client of `stack` (trust file changed by `edit`).
pub async fn proxy_with(
    stack: &Stack,
    edit: impl FnOnce(String) -> String,
    options: ProxyOptions,
) -> RunningProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    arcane_cli::proxy::start(client_with(stack, edit), listener, options).unwrap()
}

/// A trust-file edit that names another key, under the log's name, as the log's key: every
/// checkpoint the genuine log signs is then refused.
pub fn impostor_log_key(stack: &Stack) -> impl FnOnce(String) -> String {
    let impostor = arcane_verifier::note::NoteSigner::from_seed(
        stack.log_key.name(),
        arcane_verifier::note::ALG_ED25519,
        &[7; 32],
    )
    .unwrap()
    .verifier()
    .to_text();
    let genuine = stack.log_key.to_text();
    move |trust: String| trust.replace(&genuine, &impostor)
}
