//! A private chat without I/O — the request prepared and sealed to the verified candidates
//! ([`prepare_chat`], [`seal_chat`]), the sealed answer opened as it arrives
//! ([`AnswerOpener`]) — and the answer as the SDK hands it over, whichever route ran it
//! (private cloud or on-device): a stream of text deltas, then how it ended.

use arcane_verifier::checkpoint::VerifiedCheckpoint;
use arcane_verifier::envelope::ChatEnvelope;
use arcane_verifier::inner::{
    ChatCompletionRequest, ChunkContent, InnerRequest, Usage, encode_inner_request,
};
use arcane_verifier::sealed::{self, ClientRequest, ResponseReader};
use arcane_verifier::signed_answer::{
    ExpectedAnswer, SignedAnswer, check_signed_answer, request_sha256,
};
use arcane_verifier::tokens::{Token, TokenMaterial};
use sha2::{Digest, Sha256};

use crate::checks::Candidate;
use crate::error::{ClientError, Result};
use crate::receipts::Receipt;

/// Where a request runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// The on-device model when one is configured and the request fits, else the private cloud.
    #[default]
    Auto,
    /// Always the on-device model.
    Local,
    /// Always the private cloud path.
    Cloud,
}

/// One event of an answer.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatEvent {
    /// Text since the previous event.
    Delta(String),
    /// The answer ended.
    Done(Box<Summary>),
}

/// How an answer ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Where it ran.
    pub route: Route,
    /// Token counts, as the node (or the local engine) reported.
    pub usage: Option<Usage>,
    /// `stop` or `length`.
    pub finish_reason: Option<String>,
    /// The receipt written for it (cloud answers).
    pub receipt: Option<Receipt>,
}

/// A request as the caller gave it, made ready to be checked and sealed: always streamed, and
/// refused when malformed before anything is fetched or spent. Returns it and the model asked
/// for (`None`: any model the verified nodes serve; the caller fills it in from them).
pub fn prepare_chat(
    mut request: ChatCompletionRequest,
) -> Result<(ChatCompletionRequest, Option<String>)> {
    let asked = std::mem::take(&mut request.model);
    request.model = if asked.is_empty() {
        "any".into()
    } else {
        asked.clone()
    };
    request.stream = Some(true);
    request
        .validate()
        .map_err(|e| ClientError::Config(format!("the request: {e}")))?;
    Ok((request, (!asked.is_empty()).then_some(asked)))
}

/// Seals `request` for `candidates` (every check passed): a fresh DEK, the inner request (with
/// the node's token `material`) sealed under it, the DEK HPKE-wrapped to each verified REK, and
/// the envelope the gateway takes with its OTT `gateway_ott`. Returns the envelope, what opens
/// the answer, and the SHA-256 of the sealed request each candidate would receive (what the node
/// that answers signs). The plaintext copies of the messages and the token material are erased.
pub fn seal_chat(
    request: ChatCompletionRequest,
    candidates: &[Candidate],
    gateway_ott: &Token,
    material: &TokenMaterial,
    now_s: u64,
) -> Result<(Vec<u8>, ClientRequest, Vec<[u8; 32]>)> {
    let mut inner_request = InnerRequest {
        chat: request,
        token: Some(material.encode().to_vec()),
        badge: None,
    };
    let encoded = encode_inner_request(&inner_request);
    for message in &mut inner_request.chat.messages {
        zeroize::Zeroize::zeroize(&mut message.content);
    }
    if let Some(token) = &mut inner_request.token {
        zeroize::Zeroize::zeroize(token);
    }
    let inner = zeroize::Zeroizing::new(encoded?);
    let reks: Vec<_> = candidates.iter().map(|c| c.node.rek).collect();
    let (wrapped, ciphertext, opener) = sealed::seal_request(&inner, &reks, now_s)?;
    let envelope = ChatEnvelope::encode(&gateway_ott.encode(), &wrapped, &ciphertext)?;
    let request_hashes = wrapped
        .iter()
        .map(|w| request_sha256(&w.encode(), &ciphertext))
        .collect();
    Ok((envelope, opener, request_hashes))
}

/// What a private answer's receipt names: the request's checkpoint and its verified candidates.
#[derive(Clone, Debug)]
pub struct ReceiptContext {
    /// The model name the request was sent for.
    pub model: String,
    /// The client's checkpoint when it sent the request.
    pub checkpoint: VerifiedCheckpoint,
    /// The verified candidates the DEK was wrapped to, in order.
    pub candidates: Vec<Candidate>,
    /// The checks the request passed, in order.
    pub checks: Vec<crate::checks::Passed>,
    /// SHA-256 of the sealed request each candidate would receive, in the same order
    /// ([`seal_chat`]'s third result).
    pub request_hashes: Vec<[u8; 32]>,
    /// The log's key (a node's statement may name a newer entry of its release, proven in
    /// the log).
    pub log_key: arcane_verifier::note::VerifierKey,
}

impl ReceiptContext {
    /// The receipt of an answer from candidate `answered_by`, ended at `at_ms` as `outcome`,
    /// with the node's statement when it signed one (checked before).
    pub fn receipt(
        &self,
        answered_by: usize,
        at_ms: u64,
        outcome: &str,
        completion_tokens: u64,
        signed_answer: Option<SignedAnswer>,
    ) -> Option<Receipt> {
        let c = self.candidates.get(answered_by)?;
        let node = &c.node;
        Some(Receipt {
            at_ms,
            model: self.model.clone(),
            log_origin: self.checkpoint.checkpoint.origin.clone(),
            checkpoint_size: self.checkpoint.checkpoint.size,
            checkpoint_root: hex::encode(self.checkpoint.checkpoint.root.0),
            release_index: node.release.index,
            release_leaf_hash: hex::encode(node.release.leaf_hash.0),
            model_sha256: hex::encode(node.model_sha256),
            document_sha256: hex::encode(node.document_hash),
            rek_id: hex::encode(node.rek.id()),
            attested_at_ms: node.attested_at_ms,
            candidates: self.candidates.len(),
            ensemble_members: node.members,
            outcome: outcome.to_owned(),
            completion_tokens,
            checks: self.checks.clone(),
            signed_answer,
        })
    }

    /// Checks the node's statement about the answer `answered_by` gave: this request, this
    /// text (`answer_sha256`), its model and release, signed with the key its verified document
    /// binds.
    fn check_signed(
        &self,
        answered_by: usize,
        signed: Option<&SignedAnswer>,
        answer_sha256: [u8; 32],
    ) -> Result<()> {
        let refused = |e: arcane_verifier::Error| ClientError::Answer(e.to_string());
        let signed = signed.ok_or(refused(arcane_verifier::Error::UnsignedAnswer))?;
        let (c, request_sha256) = self
            .candidates
            .get(answered_by)
            .zip(self.request_hashes.get(answered_by))
            .ok_or_else(|| ClientError::Answer("an answer from no candidate".into()))?;
        let expected = ExpectedAnswer {
            request_sha256: *request_sha256,
            answer_sha256,
            release: &c.node.release,
            model_sha256: c.node.model_sha256,
            answer_key: c.node.answer_key,
            members: c.node.members,
            log_key: &self.log_key,
        };
        check_signed_answer(signed, &expected).map_err(refused)
    }
}

/// A sealed answer opened as its bytes arrive, without I/O: push what came, then take events
/// until it needs more. The final chunk yields [`ChatEvent::Done`] with the receipt; a stream
/// that ends or breaks before it is [`AnswerOpener::interrupted`].
pub struct AnswerOpener {
    reader: ResponseReader,
    context: ReceiptContext,
    chunks: usize,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    /// Text deltas of the chunk being read, not yet handed out.
    deltas: std::collections::VecDeque<String>,
    /// SHA-256 over the answer's text so far.
    answer: Sha256,
    /// The node's statement, from the final chunk.
    signed: Option<SignedAnswer>,
    /// The final chunk was read: `Done` follows the deltas.
    last: bool,
    ended: bool,
}

impl std::fmt::Debug for AnswerOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerOpener")
            .field("chunks", &self.chunks)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl AnswerOpener {
    /// Opens the answer to the request `request` sealed, for the candidates in `context`.
    pub fn new(request: ClientRequest, context: ReceiptContext) -> Self {
        AnswerOpener {
            reader: ResponseReader::new(request),
            context,
            chunks: 0,
            usage: None,
            finish_reason: None,
            deltas: Default::default(),
            answer: Sha256::new(),
            signed: None,
            last: false,
            ended: false,
        }
    }

    /// Bytes of the sealed answer, as they came.
    pub fn push(&mut self, bytes: &[u8]) {
        self.reader.push(bytes);
    }

    /// Whether the answer is over (done or failed): nothing more comes from it.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The next event, `None` when more bytes are needed (or the answer is over). `now_ms`
    /// dates the receipt.
    pub fn next_event(&mut self, now_ms: u64) -> Option<Result<ChatEvent>> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(text) = self.deltas.pop_front() {
                return Some(Ok(ChatEvent::Delta(text)));
            }
            if self.last {
                self.ended = true;
                // No receipt, and an error instead of `Done`, for an answer its node did not
                // sign as this request's.
                let answered_by = self.reader.answered_by().unwrap_or(usize::MAX);
                let answer_sha256: [u8; 32] = self.answer.clone().finalize().into();
                if let Err(e) =
                    self.context
                        .check_signed(answered_by, self.signed.as_ref(), answer_sha256)
                {
                    return Some(Err(e));
                }
                let receipt = self.context.receipt(
                    answered_by,
                    now_ms,
                    "answered",
                    self.usage.map_or(0, |u| u.completion_tokens),
                    self.signed.take(),
                );
                return Some(Ok(ChatEvent::Done(Box::new(Summary {
                    route: Route::Cloud,
                    usage: self.usage,
                    finish_reason: self.finish_reason.clone(),
                    receipt,
                }))));
            }
            let chunk = match self.reader.next_chunk() {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return None,
                Err(e) => return Some(Err(self.fail(ClientError::Answer(e.to_string())))),
            };
            self.chunks += 1;
            match ChunkContent::parse(&chunk.content) {
                Ok(ChunkContent::Completion(c)) => {
                    if let Some(u) = c.usage {
                        self.usage = Some(u);
                    }
                    if let Some(signed) = c.arcane_signed_answer {
                        self.signed = Some(*signed);
                    }
                    for choice in c.choices {
                        if let Some(r) = choice.finish_reason {
                            self.finish_reason = Some(r);
                        }
                        if let Some(text) = choice.delta.content
                            && !text.is_empty()
                        {
                            self.answer.update(text.as_bytes());
                            self.deltas.push_back(text);
                        }
                    }
                }
                Ok(ChunkContent::Error(e)) => {
                    return Some(Err(self.fail(ClientError::Node {
                        kind: e.kind,
                        message: e.message,
                    })));
                }
                Err(e) => return Some(Err(self.fail(ClientError::Answer(e.to_string())))),
            }
            self.last = chunk.last;
        }
    }

    fn fail(&mut self, e: ClientError) -> ClientError {
        self.ended = true;
        e
    }

    /// The stream stopped (`broke`: the connection failed with that reason; `None`: it ended)
    /// before the final chunk: the error to report, and the receipt of an interrupted answer
    /// when a node had started answering. `None` when the answer was already over.
    pub fn interrupted(
        &mut self,
        broke: Option<String>,
        now_ms: u64,
    ) -> Option<(ClientError, Option<Receipt>)> {
        if self.ended {
            return None;
        }
        self.ended = true;
        let reason = match broke {
            Some(why) => format!("the connection broke: {why}"),
            None => match self.reader.finish() {
                Err(e) => format!("the stream ended early: {e}"),
                Ok(()) => "the stream ended without its final chunk".to_owned(),
            },
        };
        let receipt = self.reader.answered_by().and_then(|i| {
            self.context
                .receipt(i, now_ms, "interrupted", self.chunks as u64, None)
        });
        Some((
            ClientError::Interrupted {
                chunks: self.chunks,
                reason,
            },
            receipt,
        ))
    }
}

#[cfg(feature = "net")]
pub use stream::ChatStream;

#[cfg(feature = "net")]
mod stream {
    use tokio::sync::mpsc;

    use super::{ChatEvent, ClientError, Result, Summary};

    /// An answer as it streams.
    #[derive(Debug)]
    pub struct ChatStream {
        events: mpsc::Receiver<Result<ChatEvent>>,
    }

    impl ChatStream {
        /// Wraps a channel of events.
        pub fn from_channel(events: mpsc::Receiver<Result<ChatEvent>>) -> Self {
            ChatStream { events }
        }

        /// The next event; `None` after `Done` or an error.
        pub async fn next(&mut self) -> Option<Result<ChatEvent>> {
            self.events.recv().await
        }

        /// Reads the whole answer: its text and summary.
        pub async fn collect(mut self) -> Result<(String, Summary)> {
            let mut text = String::new();
            while let Some(event) = self.next().await {
                match event? {
                    ChatEvent::Delta(d) => text.push_str(&d),
                    ChatEvent::Done(summary) => return Ok((text, *summary)),
                }
            }
            Err(ClientError::Interrupted {
                chunks: 0,
                reason: "the answer ended without a summary".into(),
            })
        }
    }

    impl futures::Stream for ChatStream {
        type Item = Result<ChatEvent>;

        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.events.poll_recv(cx)
        }
    }
}
