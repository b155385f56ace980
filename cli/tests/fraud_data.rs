//! Fraud data end to end over 127.0.0.1 (`spec/tokens.md` §5): the demo stack with the gateway's
//! fraud detection service (a key per class, logged) and a token granting service that requires
//! fraud data and limits OTTs per class. Clients get fraud data bound to their TGT before their
//! OTTs and are answered; a TGT shown without it is refused with `fraud-data-required`; a class
//! limit ends a TGT's allotment early; an account in a class allowed nothing gets no OTT.

use arcane_cli::demo::{Stack, StackOptions};
use arcane_client::wallet::Wallet;
use arcane_client::{Client, ClientConfig, Route, Trust};
use arcane_engine::gguf::{TinyLlama, write_tiny_llama};
use arcane_gateway::tokens::FraudDataPolicy;
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};

mod common;
use common::redeemed_at_gateway;

fn quiet(_: &str) {}

/// Classes: 1 for every account (at most 16 OTTs a TGT), 0 for `flagged` (none).
fn policy() -> FraudDataPolicy {
    toml::from_str(
        "required = true\ndefault_class = 1\n[accounts]\nflagged = 0\n\
         [class_limits]\n\"0\" = 0\n\"1\" = 16\n",
    )
    .unwrap()
}

async fn stack(dir: &std::path::Path) -> Stack {
    let model = dir.join("tiny.gguf");
    write_tiny_llama(&model, &TinyLlama::default()).unwrap();
    let mut options = StackOptions::new(dir.join("stack"), model);
    options.fraud_data = Some(policy());
    Stack::start(options, &quiet).await.unwrap()
}

fn client(stack: &Stack, state: &std::path::Path, api_key_file: Option<&str>) -> Client {
    let mut text = std::fs::read_to_string(&stack.trust_file).unwrap();
    if let Some(file) = api_key_file {
        text = text.replace(
            "api_key_file = \"api-key\"",
            &format!("api_key_file = \"{file}\""),
        );
    }
    let trust = Trust::from_toml(&text, stack.trust_file.parent().unwrap()).unwrap();
    let mut config = ClientConfig::new(trust);
    config.state_root = state.to_path_buf();
    Client::new(config).unwrap()
}

fn request(i: usize) -> ChatCompletionRequest {
    ChatCompletionRequest {
        messages: vec![ChatMessage {
            role: "user".into(),
            content: format!("fraud data request {i}"),
        }],
        max_tokens: Some(2),
        ..Default::default()
    }
}

/// `(account, issued)` rows of the gateway's per-account, per-period counters.
async fn budgets(stack: &Stack) -> Vec<(String, i64)> {
    let db = arcane_gateway::store::TokenStore::open_file(
        &stack.options.data_dir.join("gateway/gateway.db"),
    )
    .await
    .unwrap();
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT account, issued FROM tgt_budget ORDER BY account")
            .fetch_all(db.pool())
            .await
            .unwrap();
    db.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fraud_data_is_issued_bound_to_each_tgt_and_its_class_limits_the_allotment() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path()).await;
    let mut c = client(&stack, &dir.path().join("device"), None);
    // Class 1 allows 16 OTTs a TGT; each chat spends two (relay and gateway), and the first
    // node list one: 12 chats need two TGTs, each with its own fraud data.
    let chats = 12;
    for i in 0..chats {
        c.chat(request(i), Route::Cloud)
            .await
            .unwrap_or_else(|e| panic!("chat {i}: {e}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("chat {i}: {e}"));
    }
    assert_eq!(redeemed_at_gateway(&stack).await, chats as i64);
    let rows = budgets(&stack).await;
    let tgts: i64 = rows
        .iter()
        .filter(|(a, _)| !a.starts_with("fraud-data:"))
        .map(|(_, n)| n)
        .sum();
    let fraud_data: i64 = rows
        .iter()
        .filter(|(a, _)| a.starts_with("fraud-data:"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        tgts >= 2,
        "the class limit ended the first TGT early ({rows:?})"
    );
    assert_eq!(fraud_data, tgts, "fraud data for each TGT, once ({rows:?})");

    // A wallet that does not know the fraud-data keys shows its TGT without fraud data: the
    // token granting service refuses it, typed.
    let keys = c.preflight(None).await.unwrap().keys;
    let mut token_keys = keys.token_keys();
    assert_eq!(
        token_keys
            .fraud_data
            .iter()
            .map(|k| k.class)
            .collect::<Vec<_>>(),
        [0, 1],
        "the gateway lists one logged key per class"
    );
    token_keys.fraud_data.clear();
    let bare =
        arcane_client::state::StateDir::open(&dir.path().join("bare"), &stack.log_key).unwrap();
    let mut wallet = Wallet::load(&bare).unwrap();
    let api_key = std::fs::read_to_string(stack.trust_file.with_file_name("api-key")).unwrap();
    let e = wallet
        .refill(
            &reqwest::Client::new(),
            &stack.gateway.url(),
            &keys.ohttp_config,
            token_keys,
            Some(api_key.trim()),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("fraud-data-required"), "{e}");
    assert_eq!(wallet.available(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_class_allows_nothing_gets_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path()).await;
    let db = arcane_gateway::store::TokenStore::open_file(
        &stack.options.data_dir.join("gateway/gateway.db"),
    )
    .await
    .unwrap();
    let key = arcane_gateway::tokens::TokenServices::add_account(&db, "flagged")
        .await
        .unwrap();
    db.close().await;
    std::fs::write(stack.trust_file.with_file_name("flagged-key"), key).unwrap();
    let mut flagged = client(&stack, &dir.path().join("flagged"), Some("flagged-key"));
    let Err(e) = flagged.chat(request(0), Route::Cloud).await else {
        panic!("an account whose class allows nothing was answered");
    };
    assert!(e.to_string().contains("fraud-class-limit"), "{e}");
    assert_eq!(redeemed_at_gateway(&stack).await, 0);
    // It was vouched for (class 0) and refused by its class, not for want of fraud data.
    let rows = budgets(&stack).await;
    assert!(
        rows.iter()
            .any(|(a, n)| a == "fraud-data:flagged" && *n >= 1),
        "{rows:?}"
    );
}
