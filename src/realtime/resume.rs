//! Resume: everything a client missed, from the store, then live events, with no gap and
//! no duplicate at the seam.
//!
//! The live subscription starts first, so events published meanwhile queue up. The
//! store is then read from the client's cursor until it has nothing newer; every message
//! stored after that last read is published after it, so it is in the queue. Queued
//! events at or below the cursor were replayed already and are skipped. The store is the
//! offline queue, so this works across reconnects and server restarts alike.

use std::sync::Arc;

use super::hub::{Event, Hub, Received, Receiver};
use crate::store::{Inbox, Store, StoreError};

/// Messages read from the store per look-up while catching up.
const REPLAY_PAGE: usize = 100;

/// What a subscription yields next.
#[derive(Debug)]
pub enum Next {
    Event(Event),
    /// The client fell behind and was dropped from the hub; it should reconnect and
    /// resume after this id (the last event this subscription handed out).
    Lagged {
        resume_after: u64,
    },
}

/// One client's subscription to a set of inboxes.
pub struct Subscription {
    live: Receiver,
    store: Store,
    /// The id of the last event handed out (or the client's starting point).
    cursor: u64,
    /// Still reading missed messages from the store.
    replaying: bool,
    /// Replayed events not handed out yet, oldest last.
    pending: Vec<Event>,
}

impl Subscription {
    /// Subscribes to `inboxes`. With `after`, every stored message of those inboxes with
    /// a larger id comes first; without it, only messages published from now on.
    pub fn open(hub: &Arc<Hub>, store: Store, inboxes: &[Inbox], after: Option<u64>) -> Self {
        let live = hub.subscribe(inboxes);
        Self {
            live,
            store,
            cursor: after.unwrap_or(0),
            replaying: after.is_some(),
            pending: Vec::new(),
        }
    }

    /// The id of the last event handed out, or the starting point: where a client picks
    /// up if this connection ends now.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    pub fn inboxes(&self) -> &[Inbox] {
        self.live.inboxes()
    }

    /// Stops delivering `inbox`; true when no inbox is left.
    pub fn remove(&mut self, inbox: Inbox) -> bool {
        self.pending.retain(|event| event.inbox != inbox);
        self.live.remove(inbox)
    }

    /// The next event, in id order. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Result<Next, StoreError> {
        while self.replaying {
            if let Some(event) = self.pending.pop() {
                self.cursor = event.id;
                return Ok(Next::Event(event));
            }
            let page = self.replay_page().await?;
            if page.is_empty() {
                self.replaying = false;
            } else {
                // Oldest last, so `pop` hands them out in order.
                self.pending = page.into_iter().rev().collect();
            }
        }
        loop {
            match self.live.recv().await {
                // Replayed already (published while we read the store).
                Received::Event(event) if event.id <= self.cursor => {}
                Received::Event(event) => {
                    self.cursor = event.id;
                    return Ok(Next::Event(event));
                }
                Received::Lagged => {
                    return Ok(Next::Lagged {
                        resume_after: self.cursor,
                    });
                }
            }
        }
    }

    /// The next `REPLAY_PAGE` messages after the cursor across the inboxes, in id order.
    async fn replay_page(&self) -> Result<Vec<Event>, StoreError> {
        let store = self.store.clone();
        let inboxes = self.live.inboxes().to_vec();
        let cursor = self.cursor;
        let hub = Arc::clone(self.live.hub());
        tokio::task::spawn_blocking(move || {
            let mut messages = Vec::new();
            for inbox in inboxes {
                messages.extend(store.messages_after(inbox, cursor, REPLAY_PAGE)?);
            }
            // Each inbox gave its oldest; the page is the oldest of them all, so the next
            // page can start after its last id for every inbox.
            messages.sort_unstable_by_key(|message| message.id);
            messages.truncate(REPLAY_PAGE);
            Ok(messages.iter().map(|message| hub.encode(message)).collect())
        })
        .await
        .map_err(|error| StoreError::Storage(format!("replay task failed: {error}")))?
    }
}
