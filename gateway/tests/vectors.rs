//! RFC 9458 Appendix A and RFC 9292 §5 through the parts the gateway uses: the key
//! configuration codecs (the `ohttp` crate's, and the log entry's that the gateway matches keys
//! with), the HPKE request/response schedule, and the BHTTP decoder the gateway dispatches with.
//! The indeterminate-length response the gateway writes for chunked answers is decoded by the
//! same BHTTP decoder here.

use hpke::{Deserializable, OpModeR};

fn vectors_dir() -> std::path::PathBuf {
    let dir = match std::env::var_os("ARCANE_VECTORS") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors"),
    };
    assert!(
        dir.is_dir(),
        "TEST VECTORS MISSING: {} does not exist. Set ARCANE_VECTORS to the folder of published \
         test vectors.",
        dir.display()
    );
    dir
}

fn load(path: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(vectors_dir().join(path)).unwrap()).unwrap()
}

fn h(v: &serde_json::Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap()).unwrap()
}

#[test]
fn rfc9458_appendix_a() {
    let v = load("ohttp/rfc9458_appendix_a.json");
    // The key configuration: the ohttp crate and the log entry codec agree with the RFC bytes.
    let config = h(&v, "key_config_hex");
    let parsed = ohttp::KeyConfig::decode(&config).unwrap();
    assert_eq!(parsed.encode().unwrap(), config);
    let entry = arcane_verifier::entry::decode_key_config(&config).unwrap();
    assert_eq!(entry.key_id, 1);
    assert_eq!(
        arcane_verifier::entry::encode_key_config(&entry).unwrap(),
        config
    );
    // A client built from the RFC's configuration produces requests with its header.
    let (request, _) = ohttp::ClientRequest::from_encoded_config(&config)
        .unwrap()
        .encapsulate(&h(&v, "request_bhttp_hex"))
        .unwrap();
    assert_eq!(request[..7], h(&v, "encapsulated_request_hex")[..7]);

    // The request: HPKE base mode with the RFC's server key opens the encapsulated request.
    type Kem = hpke::kem::X25519HkdfSha256;
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&h(&v, "server_secret_key_hex")).unwrap();
    let enc_request = h(&v, "encapsulated_request_hex");
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc_request[7..39]).unwrap();
    let mut ctx = hpke::setup_receiver::<hpke::aead::AesGcm128, hpke::kdf::HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk,
        &enc,
        &h(&v, "hpke_info_hex"),
    )
    .unwrap();
    let inner = ctx.open(&enc_request[39..], b"").unwrap();
    assert_eq!(inner, h(&v, "request_bhttp_hex"));
    let message = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&inner[..])).unwrap();
    assert_eq!(message.control().method(), Some(&b"GET"[..]));
    assert_eq!(message.control().path(), Some(&b"/"[..]));

    // The response schedule of RFC 9458 §4.4, step by step.
    let mut secret = [0u8; 16];
    ctx.export(b"message/bhttp response", &mut secret).unwrap();
    assert_eq!(secret.to_vec(), h(&v, "response_exported_secret_hex"));
    let nonce = h(&v, "response_nonce_hex");
    let salt = [&enc_request[7..39], &nonce[..]].concat();
    assert_eq!(salt, h(&v, "response_salt_hex"));
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), &secret);
    let (mut key, mut iv) = ([0u8; 16], [0u8; 12]);
    hk.expand(b"key", &mut key).unwrap();
    hk.expand(b"nonce", &mut iv).unwrap();
    assert_eq!(key.to_vec(), h(&v, "response_aead_key_hex"));
    assert_eq!(iv.to_vec(), h(&v, "response_aead_nonce_hex"));
    use aes_gcm::aead::{Aead, KeyInit};
    let cipher = aes_gcm::Aes128Gcm::new_from_slice(&key).unwrap();
    let enc_response = h(&v, "encapsulated_response_hex");
    assert_eq!(enc_response[..16], nonce[..]);
    let response = cipher
        .decrypt(&aes_gcm::Nonce::from(iv), &enc_response[16..])
        .unwrap();
    assert_eq!(response, h(&v, "response_bhttp_hex"));
    let message = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&response[..])).unwrap();
    assert_eq!(message.control().status().unwrap().code(), 200);
}

#[test]
fn rfc9292_examples_decode_as_the_gateway_reads_them() {
    let v = load("bhttp/rfc9292_examples.json");
    for example in v["examples"].as_array().unwrap() {
        let name = example["name"].as_str().unwrap();
        let bytes = h(example, "encoded_hex");
        let message = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&bytes[..]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let m = &example["message"];
        if let Some(method) = m["method"].as_str() {
            assert_eq!(
                message.control().method(),
                Some(method.as_bytes()),
                "{name}"
            );
            assert_eq!(
                message.control().path(),
                Some(m["path"].as_str().unwrap().as_bytes()),
                "{name}"
            );
        } else {
            assert_eq!(
                u64::from(message.control().status().unwrap().code()),
                m["status"].as_u64().unwrap(),
                "{name}"
            );
        }
        for pair in m["headers"].as_array().unwrap() {
            let (n, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            assert_eq!(
                message.header().get(n.as_bytes()),
                Some(value.as_bytes()),
                "{name}: {n}"
            );
        }
        assert_eq!(message.content(), &h(m, "content_hex")[..], "{name}");
    }
}
