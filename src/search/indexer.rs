//! Keeps the index in step with the store, off the ingest path.
//!
//! Webhook handlers and the sweeper send operations and move on; one task applies them
//! in batches and commits at most once a second (a tantivy commit writes a segment,
//! far too costly per message). Each round applies everything that is waiting, so
//! search results trail ingest by about a second at any ingest rate, which nobody
//! typing a query notices.
//!
//! The queue is unbounded because its senders must neither wait (webhook handlers have
//! already committed and are answering) nor drop (a dropped add is a message search
//! never finds). Draining it whole every round keeps it to about one round of arrivals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Document, InboxKey, SearchIndex};
use crate::diagnostics::{ErrorSource, RecentErrors};

/// Longest a new message waits before it becomes searchable. Each commit writes a
/// segment that tantivy later merges; committing every 200 ms cost a fifth of ingest
/// throughput on a 2-core machine (`cargo bench --bench ingest`), once a second does not.
const COMMIT_EVERY: Duration = Duration::from_millis(1000);

/// A message to index, owned so it can cross to the indexing task.
#[derive(Debug, Clone)]
pub struct OwnedDocument {
    pub message_id: u64,
    pub inbox: InboxKey,
    pub received_at_ms: i64,
    pub text: String,
    pub from: String,
}

impl OwnedDocument {
    pub fn borrowed(&self) -> Document<'_> {
        Document {
            message_id: self.message_id,
            inbox: self.inbox,
            received_at_ms: self.received_at_ms,
            text: &self.text,
            from: &self.from,
        }
    }
}

enum Op {
    Add(OwnedDocument),
    Delete(u64),
}

/// The sending side, cheap to clone.
#[derive(Clone)]
pub struct Indexer {
    ops: mpsc::UnboundedSender<Op>,
    ready: Arc<AtomicBool>,
}

impl Indexer {
    pub fn add(&self, document: OwnedDocument) {
        // Only fails once the indexing task has stopped, at shutdown.
        let _ = self.ops.send(Op::Add(document));
    }

    pub fn delete(&self, message_ids: &[u64]) {
        for id in message_ids {
            let _ = self.ops.send(Op::Delete(*id));
        }
    }

    /// False until the index has been rebuilt from the store after start; searches
    /// before then may miss older messages.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Starts indexing: first `rebuild` fills the index from the store (it runs on a
/// blocking thread and is handed `index`), then live operations are applied until
/// `stop`. Operations sent during the rebuild wait and are applied after it; adding a
/// message twice is harmless (an add replaces).
pub fn start<R>(
    index: SearchIndex,
    rebuild: R,
    errors: RecentErrors,
    stop: CancellationToken,
) -> (Indexer, impl Future<Output = ()>)
where
    R: FnOnce(&SearchIndex) -> Result<u64, String> + Send + 'static,
{
    let (ops, mut receiver) = mpsc::unbounded_channel();
    let ready = Arc::new(AtomicBool::new(false));
    let indexer = Indexer {
        ops,
        ready: Arc::clone(&ready),
    };
    let task = async move {
        let rebuilt = {
            let index = index.clone();
            tokio::task::spawn_blocking(move || {
                let count = rebuild(&index)?;
                index.commit().map_err(|e| e.to_string())?;
                Ok::<_, String>(count)
            })
            .await
        };
        match rebuilt {
            Ok(Ok(count)) => tracing::info!(messages = count, "search index rebuilt"),
            Ok(Err(error)) => {
                tracing::error!(%error, "search index rebuild failed; search covers new messages only");
                errors.record(ErrorSource::Background, "search_rebuild", error);
            }
            Err(error) => {
                tracing::error!(%error, "search index rebuild panicked");
                errors.record(ErrorSource::Background, "search_rebuild", error.to_string());
            }
        }
        ready.store(true, Ordering::Release);
        loop {
            let first = tokio::select! {
                () = stop.cancelled() => break,
                op = receiver.recv() => match op {
                    Some(op) => op,
                    None => break,
                },
            };
            let batch = everything_waiting(first, &mut receiver);
            let index = index.clone();
            let applied = tokio::task::spawn_blocking(move || apply(&index, batch)).await;
            if let Ok(Err(error)) = applied {
                tracing::warn!(%error, "search index update failed");
                errors.record(ErrorSource::Background, "search_update", error.to_string());
            }
            // Let more operations gather before the next commit.
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(COMMIT_EVERY) => {}
            }
        }
        tracing::debug!("search indexer stopped");
    };
    (indexer, task)
}

/// `first` and every operation queued behind it, in order.
fn everything_waiting(first: Op, receiver: &mut mpsc::UnboundedReceiver<Op>) -> Vec<Op> {
    let mut batch = vec![first];
    while let Ok(op) = receiver.try_recv() {
        batch.push(op);
    }
    batch
}

fn apply(index: &SearchIndex, batch: Vec<Op>) -> Result<(), super::SearchError> {
    let mut adds = Vec::new();
    let mut deletes = Vec::new();
    for op in batch {
        match op {
            Op::Add(document) => adds.push(document),
            Op::Delete(id) => deletes.push(id),
        }
    }
    let documents: Vec<Document<'_>> = adds.iter().map(OwnedDocument::borrowed).collect();
    index.add(&documents)?;
    // Deletes go last: a message added and deleted in one batch ends up deleted.
    index.delete(&deletes)?;
    index.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_takes_everything_waiting_in_order() {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        // More than the 4,096 a round once took at most, which let the queue grow
        // without bound above that many messages a second.
        let total = 10_000;
        for id in 1..total {
            sender.send(Op::Delete(id)).unwrap();
        }
        let ids: Vec<u64> = everything_waiting(Op::Delete(0), &mut receiver)
            .into_iter()
            .map(|op| match op {
                Op::Delete(id) => id,
                Op::Add(_) => unreachable!("only deletes were sent"),
            })
            .collect();
        assert_eq!(ids, (0..total).collect::<Vec<_>>());
        assert!(
            receiver.try_recv().is_err(),
            "nothing left for the next round"
        );
    }
}
