//! Redeeming one-time tokens at a gateway or a relay over real sockets, for the tests that count
//! how often one token is accepted (after a crash, or at two replicas at once).

use arcane_gateway::keys;
use arcane_verifier::entry::{EntryBody, TokenKey, TokenRole};
use arcane_verifier::tokens::{IssuerSecret, OTT_ISSUER, Token, TokenChallenge, request_token};
use base64::Engine as _;

use super::{Log, random};

/// What a redemption attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Redeemed: the token was accepted (and the request then failed for want of a node).
    Accepted,
    /// Refused as spent.
    Spent,
    /// No answer: the server died meanwhile.
    Lost,
    /// Refused because the spend could not be recorded (503, the database failed): not spent.
    Unavailable,
}

/// A chat envelope with `ott` sent to the gateway over standard OHTTP.
pub async fn chat_at_gateway(
    http: &reqwest::Client,
    gw: &str,
    config: &[u8],
    ott: &Token,
) -> Outcome {
    let mut envelope = ott.encode();
    envelope.push(1);
    envelope.extend_from_slice(&[0u8; arcane_verifier::sealed::WRAPPED_DEK_LEN + 16]);
    let mut m = bhttp::Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"gateway".to_vec(),
        b"/v1/chat".to_vec(),
    );
    m.write_content(&envelope);
    let mut inner = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut inner).unwrap();
    let (enc, response) = ohttp::ClientRequest::from_encoded_config(config)
        .unwrap()
        .encapsulate(&inner)
        .unwrap();
    let Ok(reply) = http
        .post(format!("{gw}/.well-known/ohttp-gateway"))
        .header("content-type", "message/ohttp-req")
        .body(enc)
        .send()
        .await
    else {
        return Outcome::Lost;
    };
    let Ok(body) = reply.bytes().await else {
        return Outcome::Lost;
    };
    let plain = response.decapsulate(&body).expect("a whole answer opens");
    let answer = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&plain[..])).unwrap();
    match answer.control().status().unwrap().code() {
        // Redeemed, then no candidate node; or not recorded, and so not redeemed.
        503 if String::from_utf8_lossy(answer.content()).contains("no candidate") => {
            Outcome::Accepted
        }
        503 => Outcome::Unavailable,
        403 => Outcome::Spent,
        other => panic!(
            "unexpected inner status {other}: {}",
            String::from_utf8_lossy(answer.content())
        ),
    }
}

/// A request carrying `ott` as its PrivateToken sent to the relay.
pub async fn through_relay(http: &reqwest::Client, relay: &str, ott: &Token) -> Outcome {
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ott.encode());
    let Ok(reply) = http
        .post(format!("{relay}/.well-known/ohttp-gateway"))
        .header("content-type", "message/ohttp-req")
        .header("authorization", format!("PrivateToken token=\"{token}\""))
        .body(vec![0u8; 64])
        .send()
        .await
    else {
        return Outcome::Lost;
    };
    match reply.status().as_u16() {
        401 => Outcome::Spent,
        503 => Outcome::Unavailable,
        // Admitted: the token was taken, then the gateway behind it answered or was unreachable.
        _ => Outcome::Accepted,
    }
}

pub struct Keys {
    pub log: Log,
    pub gw_dir: std::path::PathBuf,
    pub root_pem: std::path::PathBuf,
    pub config: Vec<u8>,
    pub ott: IssuerSecret,
}

pub async fn set_up(dir: &std::path::Path) -> Keys {
    let log = super::start_log(&dir.join("log")).await;
    let gw_dir = dir.join("gateway");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let config = log.publish_ohttp_key(&gw_dir.join("ohttp.key"), 1).await;
    let mut ott = None;
    for (file, role) in [("tgt.key", TokenRole::Tgt), ("ott.key", TokenRole::Ott)] {
        let secret = keys::generate_issuer_key(&gw_dir.join(file)).unwrap();
        log.publish(EntryBody::TokenKey(TokenKey {
            role,
            token_type: arcane_verifier::tokens::TOKEN_TYPE,
            spki_der: secret.public().spki().to_vec(),
        }))
        .await;
        ott = Some(secret);
    }
    let root_pem = super::development_root_pem(dir);
    Keys {
        log,
        gw_dir,
        root_pem,
        config,
        ott: ott.unwrap(),
    }
}

pub fn tokens(issuer: &IssuerSecret, n: usize) -> Vec<Token> {
    let challenge = TokenChallenge::for_issuer(OTT_ISSUER);
    (0..n)
        .map(|_| {
            let (r, p) = request_token(issuer.public(), &challenge, random()).unwrap();
            p.finalize(&issuer.issue(&r).unwrap()).unwrap()
        })
        .collect()
}
