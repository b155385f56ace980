//! What the client parses from the gateway and the log — the key list, the node list and each
//! node bundle in it, a consistency proof answer — from untrusted bytes: never panic, and never
//! accept anything under a trust configuration no real log key signs for.
#![no_main]

use std::sync::OnceLock;

use arcane_client::checks::{Checks, NodeList};
use arcane_client::trust::{Trust, toml_string};
use arcane_verifier::log_api::ConsistencyReply;
use arcane_verifier::note::{ALG_ED25519, NoteSigner};
use libfuzzer_sys::fuzz_target;

fn trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let key = |name: &str, seed: u8| {
            toml_string(
                &NoteSigner::from_seed(name, ALG_ED25519, &[seed; 32])
                    .unwrap()
                    .verifier()
                    .to_text(),
            )
        };
        let text = format!(
            "log = \"http://127.0.0.1:1\"\nlog_key = {}\ngateway = \"http://127.0.0.1:2\"\n\
             relay = \"http://127.0.0.1:3\"\npublishers = [{}]\n",
            key("log.example", 1),
            key("operator.example", 2)
        );
        Trust::from_toml(&text, std::path::Path::new(".")).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let mut checks = Checks::new(trust().clone());
    assert!(checks.keys(data, 1_700_000_000).is_err(), "nothing here is signed");
    if let Ok(list) = serde_json::from_slice::<NodeList>(data) {
        for node in list.nodes.iter().take(8) {
            assert!(checks.node(node, &list.models, 1_700_000_000_000).is_err());
        }
    }
    let _ = ConsistencyReply::parse(data, 1, 2);
    let _ = checks.checkpoint(data);
});
