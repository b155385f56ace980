//! Group commit: concurrent submissions are stored in one transaction each batch, and each is
//! acknowledged only once its batch is durable (none when the batch fails).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::{LogError, Result};
use crate::metrics::Metrics;
use crate::now_ms;
use crate::storage::{NewEntry, Store, Stored};

type Reply = oneshot::Sender<Result<Stored>>;

/// Groups concurrent submissions into one transaction each (group commit).
#[derive(Clone, Debug)]
pub struct Submitter {
    queue: mpsc::Sender<(NewEntry, Reply)>,
}

impl Submitter {
    /// Starts the writer task.
    pub fn spawn(store: Store, metrics: Arc<Metrics>, wake: Arc<tokio::sync::Notify>) -> Self {
        let (queue, mut rx) = mpsc::channel::<(NewEntry, Reply)>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 256 {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let entries: Vec<NewEntry> = batch.iter().map(|(e, _)| e.clone()).collect();
                match store.submit_batch(&entries, now_ms()).await {
                    Ok(results) => {
                        let dups = results.iter().filter(|r| r.duplicate).count() as u64;
                        metrics.add_submitted(results.len() as u64 - dups, dups);
                        wake.notify_one();
                        for ((_, reply), result) in batch.into_iter().zip(results) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "storing a batch of submissions failed; none acknowledged");
                        for (_, reply) in batch {
                            let _ = reply
                                .send(Err(LogError::Corrupt("storing the entry failed".into())));
                        }
                    }
                }
            }
        });
        Submitter { queue }
    }

    /// Stores one entry; returns once it is durable.
    pub async fn submit(&self, entry: NewEntry) -> Result<Stored> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((entry, reply))
            .await
            .map_err(|_| LogError::ShuttingDown)?;
        answer.await.map_err(|_| LogError::ShuttingDown)?
    }
}
