//! Privacy Pass tokens against RFC 9578 and RFC 9474 vectors, and the TGT → OTT derivation.

mod common;

use arcane_verifier::Error;
use arcane_verifier::tokens::{
    self, IssuerKey, IssuerSecret, OTT_ISSUER, TGT_ISSUER, Token, TokenChallenge, TokenMaterial,
    TokenRequest,
};
use blind_rsa_signatures::reexports::rsa::{BoxedUint, RsaPublicKey};
use blind_rsa_signatures::{
    Hash as BlindHash, MessageRandomizer, Options, PSSMode, PrepareMode, PublicKey, Signature,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

fn hex_field(v: &serde_json::Value, key: &str) -> Vec<u8> {
    let text = v[key].as_str().unwrap_or_else(|| panic!("field {key}"));
    hex::decode(text.trim_start_matches("0x")).unwrap()
}

fn load(path: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(common::vectors_dir().join(path)).unwrap();
    serde_json::from_str::<serde_json::Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// RFC 9578 Appendix A.2: the issuer's key id, the request and token encodings, the issuer's
/// response (RSA blind signing is deterministic), and the token's signature all match.
#[test]
fn rfc9578_publicly_verifiable_token_vectors() {
    let vectors = load("privacypass/pub_verif_rfc9578.rust.json");
    assert!(!vectors.is_empty());
    for (i, v) in vectors.iter().enumerate() {
        let pk_spki = hex_field(v, "pkS");
        let key = IssuerKey::from_spki(&pk_spki).unwrap();
        assert_eq!(key.id(), <[u8; 32]>::from(Sha256::digest(&pk_spki)));
        let secret =
            IssuerSecret::from_pem(&String::from_utf8(hex_field(v, "skS")).unwrap()).unwrap();
        assert_eq!(secret.public().id(), key.id(), "vector {i}: key pair");

        let challenge_bytes = hex_field(v, "token_challenge");
        let challenge = TokenChallenge::decode(&challenge_bytes).unwrap();
        assert_eq!(challenge.encode(), challenge_bytes, "vector {i}: challenge");

        let request_bytes = hex_field(v, "token_request");
        let request = TokenRequest::decode(&request_bytes).unwrap();
        assert_eq!(request.encode(), request_bytes);
        assert_eq!(request.truncated_key_id, key.id()[31]);
        assert_eq!(
            secret.issue(&request).unwrap(),
            hex_field(v, "token_response"),
            "vector {i}: token response"
        );

        let token_bytes = hex_field(v, "token");
        let token = Token::decode(&token_bytes).unwrap();
        assert_eq!(token.encode(), token_bytes);
        assert_eq!(token.nonce.to_vec(), hex_field(v, "nonce"));
        assert_eq!(token.challenge_digest, challenge.digest());
        token.verify(&key, &challenge).unwrap();
        // One flipped bit anywhere in the token fails.
        for at in [2, 40, 70, 120, token_bytes.len() - 1] {
            let mut bad = token_bytes.clone();
            bad[at] ^= 1;
            let bad = Token::decode(&bad).unwrap();
            assert!(
                bad.verify(&key, &challenge).is_err(),
                "vector {i}, byte {at}"
            );
        }
    }
}

/// RFC 9474 Appendix A: the published signatures verify with the crate's PSS verification for
/// all four variants, and a flipped bit does not.
#[test]
fn rfc9474_signatures_verify() {
    for v in load("rsa-blind/rfc9474_test_vectors.json") {
        let name = v["name"].as_str().unwrap();
        let n = hex_field(&v, "n");
        let e = hex_field(&v, "e");
        let bits = (n.len() * 8) as u32;
        let public = RsaPublicKey::new(
            BoxedUint::from_be_slice(&n, bits).unwrap(),
            BoxedUint::from_be_slice_vartime(&e),
        )
        .unwrap();
        let randomized = name.contains("Randomized");
        let options = Options::new(
            BlindHash::Sha384,
            if name.contains("PSSZERO") {
                PSSMode::PSSZero
            } else {
                PSSMode::PSS
            },
            if randomized {
                PrepareMode::Randomized
            } else {
                PrepareMode::Deterministic
            },
        );
        let randomizer =
            randomized.then(|| MessageRandomizer(hex_field(&v, "msg_prefix").try_into().unwrap()));
        let key = PublicKey(public);
        let sig = hex_field(&v, "sig");
        let msg = hex_field(&v, "msg");
        Signature(sig.clone())
            .verify(&key, randomizer, &msg, &options)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(
            Signature(bad)
                .verify(&key, randomizer, &msg, &options)
                .is_err()
        );
        if name == "RSABSSA-SHA384-PSS-Deterministic" {
            assert_eq!(
                options,
                tokens::blind_rsa_options(),
                "RFC 9578 uses this variant"
            );
        }
    }
}

fn issue(secret: &IssuerSecret, issuer: &str, nonce: [u8; 32]) -> Token {
    let challenge = TokenChallenge::for_issuer(issuer);
    let (request, pending) = tokens::request_token(secret.public(), &challenge, nonce).unwrap();
    let response = secret
        .issue(&TokenRequest::decode(&request.encode()).unwrap())
        .unwrap();
    let token = pending.finalize(&response).unwrap();
    token.verify(secret.public(), &challenge).unwrap();
    token
}

#[test]
fn tgt_and_ott_round_trip_and_the_link_is_checked() {
    let tgt_issuer = IssuerSecret::generate().unwrap();
    let ott_issuer = IssuerSecret::generate().unwrap();
    // A PEM round trip keeps the key.
    let again = IssuerSecret::from_pem(&tgt_issuer.to_pem().unwrap()).unwrap();
    assert_eq!(again.public().id(), tgt_issuer.public().id());

    let secret = [7u8; 32];
    let tgt = issue(&tgt_issuer, TGT_ISSUER, tokens::tgt_nonce(&secret));
    let ott3 = issue(&ott_issuer, OTT_ISSUER, tokens::ott_nonce(&secret, 3));
    let material = TokenMaterial {
        tgt: tgt.clone(),
        secret: Zeroizing::new(secret),
        index: 3,
        ott: ott3.clone(),
    };
    let decoded = TokenMaterial::decode(&material.encode()).unwrap();
    assert_eq!(decoded, material);
    let (tk, ok) = (tgt_issuer.public(), ott_issuer.public());
    material.verify(tk, ok, 10, Some(&ott3.nonce)).unwrap();

    let refused = |m: &TokenMaterial, max: u32, gateway: Option<&[u8; 32]>| {
        assert!(matches!(
            m.verify(tk, ok, max, gateway),
            Err(Error::Token(_))
        ));
    };
    // Index beyond the batch, another index, the gateway saw another OTT.
    refused(&material, 3, None);
    refused(
        &TokenMaterial {
            index: 4,
            ..material.clone()
        },
        10,
        None,
    );
    refused(&material, 10, Some(&[0; 32]));
    // An OTT derived from another TGT's secret.
    let foreign = issue(&ott_issuer, OTT_ISSUER, tokens::ott_nonce(&[8; 32], 3));
    refused(
        &TokenMaterial {
            ott: foreign,
            ..material.clone()
        },
        10,
        None,
    );
    // Another secret than the TGT's.
    refused(
        &TokenMaterial {
            secret: Zeroizing::new([9; 32]),
            ..material.clone()
        },
        10,
        None,
    );
    // Keys swapped: a TGT is not an OTT.
    assert!(material.verify(ok, tk, 10, None).is_err());
    // A token from an issuer key that is not the logged one.
    let rogue = IssuerSecret::generate().unwrap();
    let rogue_ott = issue(&rogue, OTT_ISSUER, tokens::ott_nonce(&secret, 3));
    refused(
        &TokenMaterial {
            ott: rogue_ott,
            ..material
        },
        10,
        None,
    );
}

#[test]
fn malformed_token_bytes_are_refused() {
    assert!(Token::decode(&[0; 10]).is_err());
    let mut wrong_type = vec![0u8; tokens::TOKEN_LEN];
    wrong_type[1] = 1;
    assert!(Token::decode(&wrong_type).is_err());
    assert!(TokenRequest::decode(&[0, 2, 1]).is_err());
    assert!(TokenChallenge::decode(&[0, 2, 0, 5, b'a']).is_err());
    assert!(TokenMaterial::decode(&[0; 100]).is_err());
    let issuer = IssuerSecret::generate().unwrap();
    let request = TokenRequest {
        truncated_key_id: issuer.public().id()[31] ^ 1,
        blinded_msg: vec![1; tokens::NK],
    };
    assert!(
        issuer.issue(&request).is_err(),
        "a request for another key id"
    );
}
