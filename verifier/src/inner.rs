//! The inner request a client seals for a compute node, and the content of each sealed answer
//! chunk.
//!
//! The inner request is a Binary HTTP message (RFC 9292, known-length form) of
//! `POST /v1/chat/completions` with an OpenAI-shaped JSON body. Two header fields carry what only
//! the node may see: `arcane-token` (the token material the node checks, base64) and
//! `arcane-user-badge` (reserved; passed through unchanged). Each answer chunk holds one JSON
//! object: an OpenAI `chat.completion.chunk`, or, as the final chunk of a failed request,
//! `{"error":{"message":…,"type":…}}`.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::{Error, Result};

/// The only inner path a node serves.
pub const CHAT_PATH: &str = "/v1/chat/completions";
/// Header field carrying the request's token material (base64).
pub const TOKEN_HEADER: &str = "arcane-token";
/// Header field reserved for a future user badge; passed through unchanged.
pub const BADGE_HEADER: &str = "arcane-user-badge";
/// Most messages in one request.
pub const MAX_MESSAGES: usize = 256;

/// One chat message. The content is zeroized when the message is dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Drop for ChatMessage {
    fn drop(&mut self) {
        self.content.zeroize();
    }
}

/// Most stop sequences in one request (OpenAI's limit).
pub const MAX_STOP_SEQUENCES: usize = 4;
/// Longest stop sequence, in bytes.
pub const MAX_STOP_BYTES: usize = 64;

/// An OpenAI-shaped chat completion request (the subset a node serves; other fields are
/// refused rather than ignored). Sampling a request leaves out is the node's default for its
/// model (`arcane_engine::SamplingDefaults`); `temperature: 0` asks for greedy decoding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionRequest {
    /// The model asked for (matched against the node's model name).
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0..=2; 0 means greedy decoding, absent the node's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling: only the most likely tokens whose probabilities add up to `top_p`
    /// (0 < top_p <= 1) are drawn from; absent: the node's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Lowers a token's logit by this much per time it already occurs (-2..=2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Lowers a token's logit by this much once it occurs at all (-2..=2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Sequences that end the answer where they would begin (not part of the answer); at most
    /// 4, each 1 to 64 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// Whether the answer streams (it always arrives in sealed chunks; `false` asks the node to
    /// send the whole answer in one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

impl ChatCompletionRequest {
    /// Checks what the node relies on: known roles, at least one message, sampling within range.
    pub fn validate(&self) -> Result<()> {
        match self.problem() {
            Some((_, why)) => Err(Error::MalformedInner(why)),
            None => Ok(()),
        }
    }

    /// The first field [`validate`](Self::validate) refuses, with why.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        let in_range = |v: Option<f64>, ok: fn(f64) -> bool| v.is_none_or(ok);
        let stop = self.stop.as_deref().unwrap_or_default();
        if self.messages.is_empty() {
            Some(("messages", "no messages"))
        } else if self.messages.len() > MAX_MESSAGES {
            Some(("messages", "more than 256 messages"))
        } else if self
            .messages
            .iter()
            .any(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
        {
            Some((
                "messages",
                "a message role is not system, user or assistant",
            ))
        } else if !in_range(self.temperature, |t| (0.0..=2.0).contains(&t)) {
            Some(("temperature", "temperature is outside 0..=2"))
        } else if !in_range(self.top_p, |p| p > 0.0 && p <= 1.0) {
            Some(("top_p", "top_p is outside (0, 1]"))
        } else if !in_range(self.frequency_penalty, |p| (-2.0..=2.0).contains(&p)) {
            Some(("frequency_penalty", "frequency_penalty is outside -2..=2"))
        } else if !in_range(self.presence_penalty, |p| (-2.0..=2.0).contains(&p)) {
            Some(("presence_penalty", "presence_penalty is outside -2..=2"))
        } else if stop.len() > MAX_STOP_SEQUENCES {
            Some(("stop", "more than 4 stop sequences"))
        } else if stop
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
        {
            Some(("stop", "a stop sequence is empty or over 64 bytes"))
        } else if self.max_tokens == Some(0) {
            Some(("max_tokens", "max_tokens is 0"))
        } else {
            None
        }
    }
}

/// The decoded inner request.
#[derive(Clone, Debug, PartialEq)]
pub struct InnerRequest {
    /// The chat request.
    pub chat: ChatCompletionRequest,
    /// The token material, raw bytes (the `arcane-token` field, base64-decoded).
    pub token: Option<Vec<u8>>,
    /// The reserved user badge, as sent.
    pub badge: Option<Vec<u8>>,
}

impl Drop for InnerRequest {
    fn drop(&mut self) {
        if let Some(t) = &mut self.token {
            t.zeroize();
        }
    }
}

/// Encodes an inner request as a known-length BHTTP request.
pub fn encode_inner_request(request: &InnerRequest) -> Result<Vec<u8>> {
    use base64::Engine as _;
    let body = zeroize::Zeroizing::new(
        serde_json::to_vec(&request.chat).map_err(|_| Error::MalformedInner("JSON"))?,
    );
    let mut message = bhttp::Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"node".to_vec(),
        CHAT_PATH.as_bytes().to_vec(),
    );
    message.put_header("content-type", "application/json");
    if let Some(token) = &request.token {
        message.put_header(
            TOKEN_HEADER,
            base64::engine::general_purpose::STANDARD.encode(token),
        );
    }
    if let Some(badge) = &request.badge {
        message.put_header(BADGE_HEADER, badge.clone());
    }
    message.write_content(&body[..]);
    let mut out = Vec::new();
    message
        .write_bhttp(bhttp::Mode::KnownLength, &mut out)
        .map_err(|_| Error::MalformedInner("BHTTP encoding"))?;
    Ok(out)
}

/// Decodes and validates an inner request: a BHTTP `POST /v1/chat/completions` with a JSON body.
pub fn decode_inner_request(bytes: &[u8]) -> Result<InnerRequest> {
    use base64::Engine as _;
    let mut cursor = Cursor::new(bytes);
    let message = bhttp::Message::read_bhttp(&mut cursor)
        .map_err(|_| Error::MalformedInner("not a Binary HTTP message"))?;
    // RFC 9292 §3.8: only zero padding may follow the message.
    if bytes[cursor.position() as usize..].iter().any(|b| *b != 0) {
        return Err(Error::MalformedInner("bytes after the message"));
    }
    let control = message.control();
    if control.method() != Some(b"POST".as_slice()) {
        return Err(Error::MalformedInner("method is not POST"));
    }
    if control.path() != Some(CHAT_PATH.as_bytes()) {
        return Err(Error::InnerPathNotFound);
    }
    let header = message.header();
    let content_type = header.get(b"content-type");
    if !content_type.is_some_and(|c| c.starts_with(b"application/json")) {
        return Err(Error::MalformedInner(
            "content-type is not application/json",
        ));
    }
    let token = match header.get(TOKEN_HEADER.as_bytes()) {
        None => None,
        Some(t) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| Error::MalformedInner("arcane-token is not base64"))?,
        ),
    };
    let badge = header.get(BADGE_HEADER.as_bytes()).map(<[u8]>::to_vec);
    let chat: ChatCompletionRequest = serde_json::from_slice(message.content())
        .map_err(|_| Error::MalformedInner("the body is not a chat completion request"))?;
    chat.validate()?;
    Ok(InnerRequest { chat, token, badge })
}

/// A streamed delta.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// `assistant` in the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Text produced since the previous chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Always 0 (one choice).
    pub index: u32,
    /// The delta.
    pub delta: Delta,
    /// `stop` or `length` in the last chunk.
    pub finish_reason: Option<String>,
}

/// Token counts, in the last chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

/// An OpenAI `chat.completion.chunk`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Request id (random, per answer).
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// The model that answers.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChunkChoice>,
    /// Counts, in the last chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// In the last chunk: the node's signed statement about this answer
    /// ([`crate::signed_answer`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arcane_signed_answer: Option<Box<crate::signed_answer::SignedAnswer>>,
}

/// The error a node reports inside the sealed stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong (never quotes the prompt).
    pub message: String,
    /// `invalid_request_error`, `token_error`, `model_error`, `busy`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Serialize, Deserialize)]
struct ErrorChunk {
    error: ErrorBody,
}

/// What one opened chunk says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkContent {
    /// A completion chunk.
    Completion(ChatCompletionChunk),
    /// The node refused or failed.
    Error(ErrorBody),
}

impl ChunkContent {
    /// The JSON bytes of this chunk.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            ChunkContent::Completion(c) => serde_json::to_vec(c),
            ChunkContent::Error(e) => serde_json::to_vec(&ErrorChunk { error: e.clone() }),
        }
        .expect("plain data serializes")
    }

    /// Parses the JSON bytes of a chunk.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if let Ok(chunk) = serde_json::from_slice::<ChatCompletionChunk>(bytes) {
            return Ok(ChunkContent::Completion(chunk));
        }
        serde_json::from_slice::<ErrorChunk>(bytes)
            .map(|e| ChunkContent::Error(e.error))
            .map_err(|_| {
                Error::MalformedInner("a chunk is neither a completion chunk nor an error")
            })
    }
}
