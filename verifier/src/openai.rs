//! The OpenAI-compatible surface a local proxy offers any OpenAI client (`POST
//! /v1/chat/completions`, streamed as server-sent events or whole): reading a request strictly —
//! every field the private path cannot honour is refused by name, never silently dropped — and
//! writing the replies and errors in OpenAI's shapes. Pure functions; the proxy does the I/O.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::inner::{ChatCompletionRequest, ChatMessage, Usage};

/// Largest request body read.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// An error in OpenAI's shape, with the HTTP status it is sent with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// What went wrong (never quotes the prompt).
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `verification_error`, …
    pub kind: &'static str,
    /// The request field concerned, if any.
    pub param: Option<String>,
    /// A stable code: `unsupported_parameter`, the failed check's name, …
    pub code: Option<String>,
}

impl ApiError {
    /// A 400 about `param`.
    pub fn invalid(param: Option<&str>, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_owned),
            code: Some(code.to_owned()),
        }
    }

    /// `{"error": {"message", "type", "param", "code"}}`.
    pub fn to_json(&self) -> Value {
        json!({ "error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Fields OpenAI defines that the private path does not implement: refused by name.
/// `seed` among them: the engine draws every sequence's samples from one generator shared by all
/// requests, so no request can ask for a reproducible draw.
const UNSUPPORTED: [&str; 13] = [
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "n",
    "seed",
    "audio",
    "modalities",
    "prediction",
];

/// Fields accepted and ignored because they change nothing a user relies on.
const IGNORED: [&str; 4] = ["user", "store", "metadata", "parallel_tool_calls"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    role: String,
    content: Content,
    /// A participant's name: accepted, not used.
    #[serde(default, rename = "name")]
    _name: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// What a chat request asks for, read strictly: the inner request and whether to stream.
pub fn parse_chat_request(
    body: &[u8],
) -> std::result::Result<(ChatCompletionRequest, bool), ApiError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(ApiError::invalid(
            None,
            "too_large",
            "the request body is over 1 MiB",
        ));
    }
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(ApiError::invalid(
            None,
            "invalid_json",
            "the body is not a JSON object",
        ));
    };
    for name in UNSUPPORTED {
        match (name, fields.get(name)) {
            (_, None | Some(Value::Null)) => {}
            // n = 1 asks for nothing more than the default.
            ("n", Some(v)) if v.as_u64() == Some(1) => {}
            (_, Some(_)) => {
                return Err(ApiError::invalid(
                    Some(name),
                    "unsupported_parameter",
                    format!("`{name}` is not supported by this private endpoint"),
                ));
            }
        }
    }
    for name in IGNORED.iter().chain(&UNSUPPORTED) {
        fields.remove(*name);
    }
    let model = match fields.remove("model") {
        Some(Value::String(m)) => m,
        _ => {
            return Err(ApiError::invalid(
                Some("model"),
                "missing_parameter",
                "`model` must be a string",
            ));
        }
    };
    let stream = match fields.remove("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(ApiError::invalid(
                Some("stream"),
                "invalid_type",
                "`stream` must be a boolean",
            ));
        }
    };
    // `stream_options.include_usage`: usage is always sent in the last chunk.
    fields.remove("stream_options");
    let newer = fields.remove("max_completion_tokens");
    let older = fields.remove("max_tokens");
    let max_tokens = match [newer, older].into_iter().flatten().find(|v| !v.is_null()) {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ApiError::invalid(
                        Some("max_tokens"),
                        "invalid_value",
                        "`max_tokens` must be a positive integer",
                    )
                })?,
        ),
    };
    let temperature = number(&mut fields, "temperature")?;
    let top_p = number(&mut fields, "top_p")?;
    let frequency_penalty = number(&mut fields, "frequency_penalty")?;
    let presence_penalty = number(&mut fields, "presence_penalty")?;
    let stop = match fields.remove("stop") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s]),
        Some(Value::Array(list)) => Some(
            list.into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(ApiError::invalid(
                        Some("stop"),
                        "invalid_type",
                        "`stop` must be a string or a list of strings",
                    )),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(ApiError::invalid(
                Some("stop"),
                "invalid_type",
                "`stop` must be a string or a list of strings",
            ));
        }
    };
    let messages = fields.remove("messages").ok_or_else(|| {
        ApiError::invalid(
            Some("messages"),
            "missing_parameter",
            "`messages` is required",
        )
    })?;
    if let Some(name) = fields.keys().next() {
        return Err(ApiError::invalid(
            Some(name),
            "unknown_parameter",
            format!("unknown parameter `{name}`"),
        ));
    }
    let messages: Vec<Message> = serde_json::from_value(messages).map_err(|_| {
        ApiError::invalid(
            Some("messages"),
            "invalid_value",
            "`messages` must be a list of {role, content} objects with text content",
        )
    })?;
    let messages = messages
        .into_iter()
        .map(|m| {
            let content = match m.content {
                Content::Text(t) => t,
                Content::Parts(parts) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.kind.as_str(), part.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            _ => {
                                return Err(ApiError::invalid(
                                    Some("messages"),
                                    "unsupported_parameter",
                                    "only text content parts are supported",
                                ));
                            }
                        }
                    }
                    text
                }
            };
            // OpenAI's newer name for the system role.
            let role = if m.role == "developer" {
                "system".to_owned()
            } else {
                m.role
            };
            Ok(ChatMessage { role, content })
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let request = ChatCompletionRequest {
        model,
        messages,
        max_tokens,
        temperature,
        top_p,
        frequency_penalty,
        presence_penalty,
        stop,
        stream: Some(true),
    };
    if let Some((param, why)) = request.problem() {
        return Err(ApiError::invalid(Some(param), "invalid_value", why));
    }
    Ok((request, stream))
}

/// An optional numeric field, removed from `fields`.
fn number(
    fields: &mut serde_json::Map<String, Value>,
    name: &str,
) -> std::result::Result<Option<f64>, ApiError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            ApiError::invalid(
                Some(name),
                "invalid_type",
                format!("`{name}` must be a number"),
            )
        }),
    }
}

/// One server-sent event carrying a `chat.completion.chunk`: a text delta, or (with
/// `finish_reason`) the last one, with the usage and the verification record when given.
pub fn chunk_event(
    id: &str,
    created: u64,
    model: &str,
    delta: Option<&str>,
    finish_reason: Option<&str>,
    usage: Option<&Usage>,
    verification: Option<&Value>,
) -> String {
    let delta = match delta {
        Some(text) => json!({ "role": "assistant", "content": text }),
        None => json!({}),
    };
    let mut chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
    });
    if let Some(usage) = usage {
        chunk["usage"] = usage_json(usage);
    }
    if let Some(v) = verification {
        chunk["arcane_verification"] = v.clone();
    }
    format!("data: {chunk}\n\n")
}

/// The event that ends a stream.
pub const DONE_EVENT: &str = "data: [DONE]\n\n";

/// An error inside a stream that has begun (its status has been sent).
pub fn error_event(error: &ApiError) -> String {
    format!("data: {}\n\n", error.to_json())
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    })
}

/// A whole (non-streamed) `chat.completion`.
pub fn completion(
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    finish_reason: Option<&str>,
    usage: Option<&Usage>,
    verification: Option<&Value>,
) -> Value {
    let mut out = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": text },
            "finish_reason": finish_reason.unwrap_or("stop"),
        }],
    });
    if let Some(usage) = usage {
        out["usage"] = usage_json(usage);
    }
    if let Some(v) = verification {
        out["arcane_verification"] = v.clone();
    }
    out
}

/// `GET /v1/models`: the model names offered.
pub fn model_list(names: &[String], created: u64) -> Value {
    json!({
        "object": "list",
        "data": names.iter().map(|n| json!({
            "id": n, "object": "model", "created": created, "owned_by": "arcane-aip",
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<(ChatCompletionRequest, bool), ApiError> {
        parse_chat_request(text.as_bytes())
    }

    #[test]
    fn requests_are_read_strictly() {
        let (r, stream) = parse(
            r#"{"model":"m","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":true,"max_completion_tokens":9,"temperature":0,"n":1,"user":"u","stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(stream);
        assert_eq!(
            (r.model.as_str(), r.max_tokens, r.temperature),
            ("m", Some(9), Some(0.0))
        );
        assert_eq!(r.messages[0].role, "system");
        assert_eq!(r.messages[1].content, "hi");
        assert_eq!((r.top_p, r.stop.as_deref()), (None, None));

        // Sampling passes through; a single `stop` string is a list of one.
        let (r, _) = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0.7,"top_p":0.9,"frequency_penalty":0.5,"presence_penalty":-0.25,"stop":"\n\n"}"#,
        )
        .unwrap();
        assert_eq!(
            (
                r.temperature,
                r.top_p,
                r.frequency_penalty,
                r.presence_penalty
            ),
            (Some(0.7), Some(0.9), Some(0.5), Some(-0.25))
        );
        assert_eq!(r.stop, Some(vec!["\n\n".to_owned()]));
        let (r, _) =
            parse(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["END","."]}"#)
                .unwrap();
        assert_eq!(r.stop, Some(vec!["END".to_owned(), ".".to_owned()]));

        for (body, param, code) in [
            (
                r#"{"model":"m","messages":[],"tools":[{}]}"#,
                Some("tools"),
                "unsupported_parameter",
            ),
            (
                r#"{"model":"m","messages":[],"n":2}"#,
                Some("n"),
                "unsupported_parameter",
            ),
            (
                r#"{"model":"m","messages":[],"response_format":{"type":"json_object"}}"#,
                Some("response_format"),
                "unsupported_parameter",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"colour":1}"#,
                Some("colour"),
                "unknown_parameter",
            ),
            (r#"{"messages":[]}"#, Some("model"), "missing_parameter"),
            (
                r#"{"model":"m","messages":[]}"#,
                Some("messages"),
                "invalid_value",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                Some("messages"),
                "unsupported_parameter",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                Some("max_tokens"),
                "invalid_value",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"seed":7}"#,
                Some("seed"),
                "unsupported_parameter",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0}"#,
                Some("top_p"),
                "invalid_value",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"presence_penalty":2.5}"#,
                Some("presence_penalty"),
                "invalid_value",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"frequency_penalty":"high"}"#,
                Some("frequency_penalty"),
                "invalid_type",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#,
                Some("stop"),
                "invalid_value",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[""]}"#,
                Some("stop"),
                "invalid_value",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}"#,
                Some("stop"),
                "invalid_type",
            ),
            (r#"[1]"#, None, "invalid_json"),
        ] {
            let e = parse(body).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref(), e.code.as_deref()),
                (400, param, Some(code)),
                "{body}"
            );
            assert_eq!(e.to_json()["error"]["type"], "invalid_request_error");
        }
    }

    #[test]
    fn replies_have_openai_shapes() {
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            total_tokens: 5,
        };
        let event = chunk_event("c1", 7, "m", Some("hé"), None, None, None);
        let body: Value =
            serde_json::from_str(event.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(body["choices"][0]["delta"]["content"], "hé");
        assert!(event.ends_with("\n\n"));
        let last = chunk_event(
            "c1",
            7,
            "m",
            None,
            Some("stop"),
            Some(&usage),
            Some(&json!({"ok": true})),
        );
        let body: Value =
            serde_json::from_str(last.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(
            (
                body["usage"]["total_tokens"].as_u64(),
                &body["arcane_verification"]["ok"]
            ),
            (Some(5), &json!(true))
        );
        let whole = completion("c1", 7, "m", "hello", Some("length"), Some(&usage), None);
        assert_eq!(whole["choices"][0]["message"]["content"], "hello");
        assert_eq!(whole["choices"][0]["finish_reason"], "length");
        assert_eq!(model_list(&["m".into()], 7)["data"][0]["id"], "m");
    }
}
