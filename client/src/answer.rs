//! An answer as the SDK hands it over, whichever route ran it (private cloud or on-device):
//! a stream of text deltas, then how it ended.

use arcane_verifier::inner::Usage;
use tokio::sync::mpsc;

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
