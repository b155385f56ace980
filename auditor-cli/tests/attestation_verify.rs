//! `arcane-audit attestation verify` on the real AWS document and on simulated ones.

use std::process::Command;

use arcane_compute::attestation::{DeclaredMeasurements, SimulatedNsm};
use arcane_verifier::nitro::certificate_pem;

fn audit(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_arcane-audit"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn real_document() -> String {
    let dir = std::env::var_os("ARCANE_NITRO_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/nitro")
        });
    let path = dir.join("02_evervault_cert_embedded_2023-01-18.b64");
    assert!(
        path.is_file(),
        "NITRO TEST DATA MISSING: {}",
        path.display()
    );
    path.to_str().unwrap().to_owned()
}

#[test]
fn real_document_json() {
    let (code, out, _) = audit(&[
        "attestation",
        "verify",
        &real_document(),
        "--at",
        "1674054914",
        "--json",
    ]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["digest"], "SHA384");
    assert_eq!(v["timestamp"], 1_674_047_239_280u64);
    assert_eq!(
        v["pcrs"]["8"],
        "97c5395a83c0d6a04d53ff962663c714c178c24500bf97f78456ed3721d922cf3f940614da4bb90107c439bc4a1443ca"
    );
    assert_eq!(v["public_key"], serde_json::Value::Null);
    assert_eq!(v["nonce"].as_str().unwrap().len(), 512);

    let (code, out, _) = audit(&[
        "attestation",
        "verify",
        &real_document(),
        "--at",
        "1674068837",
        "--json",
    ]);
    assert_eq!(code, Some(1), "expired a second after the leaf");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert!(v["error"].as_str().unwrap().contains("expired"));
}

#[test]
fn simulated_documents_need_their_root_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let nsm = SimulatedNsm::new(
        &DeclaredMeasurements {
            pcr0: [1; 48],
            pcr1: [2; 48],
            pcr2: [3; 48],
            pcr8: None,
        },
        now,
    )
    .unwrap();
    let doc = dir.path().join("doc.cose");
    std::fs::write(
        &doc,
        nsm.attest_at(Some(b"key"), None, None, now * 1000).unwrap(),
    )
    .unwrap();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, certificate_pem(nsm.root_der())).unwrap();
    let doc = doc.to_str().unwrap();

    let (code, _, _) = audit(&["attestation", "verify", doc]);
    assert_eq!(code, Some(1), "not trusted against the AWS root");
    let (code, out, err) = audit(&[
        "attestation",
        "verify",
        doc,
        "--root",
        root.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("WARNING"), "a development root is announced");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["root"], "development");
    assert_eq!(v["pcrs"]["2"], "03".repeat(48));
    assert_eq!(v["public_key"], hex::encode(b"key"));
    let (code, _, _) = audit(&["attestation", "verify", "/nonexistent"]);
    assert_eq!(code, Some(1));
    let (code, _, _) = audit(&["attestation", "verify"]);
    assert_eq!(code, Some(2));
}
