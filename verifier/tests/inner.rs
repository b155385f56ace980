//! The inner request (BHTTP + OpenAI-shaped JSON) and chunk contents.

mod common;

use arcane_verifier::Error;
use arcane_verifier::inner::{
    ChatCompletionChunk, ChatCompletionRequest, ChatMessage, ChunkChoice, ChunkContent, Delta,
    ErrorBody, InnerRequest, decode_inner_request, encode_inner_request,
};

fn request() -> InnerRequest {
    InnerRequest {
        chat: ChatCompletionRequest {
            model: "tiny".into(),
            messages: vec![
                ChatMessage {
                    role: "system".into(),
                    content: "Be brief.".into(),
                },
                ChatMessage {
                    role: "user".into(),
                    content: "Hello?".into(),
                },
            ],
            max_tokens: Some(32),
            temperature: Some(0.0),
            top_p: Some(0.9),
            frequency_penalty: Some(0.5),
            presence_penalty: None,
            stop: Some(vec!["\n\n".into(), "END".into()]),
            stream: Some(true),
        },
        token: Some(vec![1, 2, 3, 250]),
        badge: Some(b"opaque badge".to_vec()),
    }
}

#[test]
fn an_inner_request_round_trips() {
    let r = request();
    let bytes = encode_inner_request(&r).unwrap();
    assert_eq!(decode_inner_request(&bytes).unwrap(), r);
    // RFC 9292 §3.8: zero padding after the message is allowed, anything else is not.
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0; 7]);
    assert_eq!(decode_inner_request(&padded).unwrap(), r);
    let mut trailing = bytes.clone();
    trailing.push(1);
    assert!(matches!(
        decode_inner_request(&trailing),
        Err(Error::MalformedInner(_))
    ));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = encode_inner_request(&request()).unwrap();
    // The last byte is the empty trailer section, which RFC 9292 §3.8 lets a sender omit.
    assert_eq!(bytes.last(), Some(&0));
    assert!(decode_inner_request(&bytes[..bytes.len() - 1]).is_ok());
    for cut in 0..bytes.len() - 1 {
        assert!(decode_inner_request(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

fn with_body(path: &str, body: &str) -> Vec<u8> {
    let mut m = bhttp::Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"node".to_vec(),
        path.as_bytes().to_vec(),
    );
    m.put_header("content-type", "application/json");
    m.write_content(body.as_bytes());
    let mut out = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut out).unwrap();
    out
}

#[test]
fn requests_the_node_does_not_serve_are_refused_with_a_reason() {
    let ok = r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
    assert!(decode_inner_request(&with_body("/v1/chat/completions", ok)).is_ok());
    assert_eq!(
        decode_inner_request(&with_body("/v1/embeddings", ok)),
        Err(Error::InnerPathNotFound)
    );
    for (body, why) in [
        (r#"{"model":"m","messages":[]}"#, "no messages"),
        (
            r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
            "role",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":9}"#,
            "temperature",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
            "max_tokens",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":1.5}"#,
            "top_p",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#,
            "stop sequences",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"seed":1}"#,
            "chat completion",
        ),
        ("not json", "chat completion"),
    ] {
        match decode_inner_request(&with_body("/v1/chat/completions", body)) {
            Err(Error::MalformedInner(m)) => assert!(m.contains(why), "{body}: {m}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

/// The RFC 9292 example messages are valid BHTTP but none is a chat request: each gets a typed
/// refusal (GET, another path, or a response).
#[test]
fn rfc9292_examples_are_refused_as_inner_requests() {
    let path = common::vectors_dir().join("bhttp/rfc9292_examples.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut n = 0;
    for example in v["examples"].as_array().unwrap() {
        let bytes = hex::decode(example["encoded_hex"].as_str().unwrap()).unwrap();
        assert!(decode_inner_request(&bytes).is_err(), "{}", example["name"]);
        n += 1;
    }
    assert!(n >= 4);
}

#[test]
fn chunk_contents_round_trip() {
    let chunk = ChunkContent::Completion(ChatCompletionChunk {
        id: "chatcmpl-1".into(),
        object: "chat.completion.chunk".into(),
        created: 1,
        model: "tiny".into(),
        choices: vec![ChunkChoice {
            index: 0,
            delta: Delta {
                role: Some("assistant".into()),
                content: Some("Hi".into()),
            },
            finish_reason: None,
        }],
        usage: None,
        arcane_signed_answer: None,
    });
    assert_eq!(ChunkContent::parse(&chunk.to_bytes()).unwrap(), chunk);
    let error = ChunkContent::Error(ErrorBody {
        message: "no".into(),
        kind: "token_error".into(),
    });
    assert_eq!(ChunkContent::parse(&error.to_bytes()).unwrap(), error);
    assert!(ChunkContent::parse(b"{}").is_err());
}
