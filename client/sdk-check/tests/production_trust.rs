//! The SDK's default build accepts only the AWS Nitro root: a trust file naming a development
//! (simulated NSM) root is refused, whatever else it says.

use arcane_client::trust::toml_string;
use arcane_client::{ClientError, Trust};
use arcane_verifier::note::{ALG_ED25519, NoteSigner};

fn key(name: &str, seed: u8) -> String {
    NoteSigner::from_seed(name, ALG_ED25519, &[seed; 32])
        .unwrap()
        .verifier()
        .to_text()
}

fn trust_file(extra: &str) -> String {
    format!(
        "log = \"http://127.0.0.1:1\"\nlog_key = {}\ngateway = \"http://127.0.0.1:2\"\n\
         relay = \"http://127.0.0.1:3\"\npublishers = [{}]\n{extra}",
        toml_string(&key("log.example", 1)),
        toml_string(&key("operator.example", 2)),
    )
}

#[test]
fn a_development_root_is_refused_by_the_default_build() {
    let dir = tempfile::tempdir().unwrap();
    // A real PEM file is there to be read: the refusal is the build's, not a missing file.
    std::fs::write(
        dir.path().join("root.pem"),
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let plain = Trust::from_toml(&trust_file(""), dir.path()).expect("the same file without a root");
    assert!(!plain.is_development());
    let refused = Trust::from_toml(
        &trust_file("development_nitro_root = \"root.pem\"\n"),
        dir.path(),
    )
    .expect_err("a development root in a production build");
    let ClientError::Config(message) = &refused else {
        panic!("expected a configuration error, got {refused:?}");
    };
    assert!(message.contains("development_nitro_root"), "{message}");
    assert!(message.contains("only the AWS Nitro root"), "{message}");
}
