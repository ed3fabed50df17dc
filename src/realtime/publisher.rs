//! The publisher: follows the store and hands every newly stored message that somebody
//! follows to the hub, in id order, encoded once.
//!
//! Ingest only announces "durable up to id N" ([`Hub::committed`]), which costs nothing.
//! This task then reads the new messages in id order. Webhook handlers finish in any
//! order (several share one group commit), so publishing from them could put message 6
//! before message 5 on a topic; a client resuming after 6 would then never see 5. Ids are
//! assigned by the single writer and committed in order, so reading the store by id gives
//! every message exactly once, in order, even when a handler was cancelled after commit.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::store::Store;

/// Messages read and encoded per store look-up.
const BATCH: usize = 256;

/// Runs until `stop`. `after`: the newest message id already stored at start (those are
/// replayed from the store on request, never published).
pub async fn run(hub: Arc<Hub>, store: Store, after: u64, stop: CancellationToken) {
    let mut committed = hub.watch_committed();
    let mut cursor = after;
    loop {
        // Drain everything stored after the cursor before waiting again.
        loop {
            // With nobody following anything, every message committed so far would be
            // stepped over one by one (see `wanted` below): skip the store entirely.
            // The newest id is read before the question is asked, as `wanted` asks only
            // about committed messages.
            let newest = *committed.borrow_and_update();
            if !hub.anyone_watching() {
                cursor = cursor.max(newest);
                break;
            }
            let reader = store.clone();
            let encoder = Arc::clone(&hub);
            let batch = tokio::task::spawn_blocking(move || {
                // Asked once the message is committed: whoever subscribes later started
                // after it was stored, so it is replayed to them from the store or is
                // older than their live start (see `resume.rs`).
                let wanted = |inbox| encoder.is_watched(inbox);
                reader
                    .messages_since(cursor, BATCH, wanted)
                    .map(|(messages, last)| {
                        let events = messages.iter().map(|message| encoder.encode(message));
                        (events.collect::<Vec<_>>(), last)
                    })
            })
            .await;
            let (events, last) = match batch {
                Ok(Ok(batch)) => batch,
                Ok(Err(error)) => {
                    tracing::error!(%error, "realtime publisher could not read the store");
                    break;
                }
                Err(error) => {
                    tracing::error!(%error, "realtime publisher task failed");
                    break;
                }
            };
            let Some(last) = last else {
                break;
            };
            for event in &events {
                hub.publish(event);
            }
            cursor = last;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = committed.changed() => if changed.is_err() { return },
        }
    }
}
