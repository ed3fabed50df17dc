//! The real-time hub: tells waiting clients that messages arrived.
//!
//! For now it carries one value, the newest message id, which is all the long-poll wait
//! endpoint needs: a waiter wakes, reads its own inbox from the store and goes back to
//! sleep if nothing there is new. Per-lease topics with encoded events and resume ids
//! replace the inside of this type when WebSocket, Socket.IO and SSE arrive; callers
//! keep using `publish` and `subscribe`.

use tokio::sync::watch;

pub struct Hub {
    latest: watch::Sender<u64>,
}

impl Hub {
    /// `latest` is the newest stored message id at start.
    pub fn new(latest: u64) -> Self {
        Self {
            latest: watch::Sender::new(latest),
        }
    }

    /// Announces a stored message. Never blocks: ingest must not wait for listeners.
    pub fn publish(&self, message_id: u64) {
        self.latest.send_if_modified(|latest| {
            let newer = message_id > *latest;
            if newer {
                *latest = message_id;
            }
            newer
        });
    }

    /// Clients waiting for messages right now (for the status page, and for tests that
    /// must know a waiter is in place before they send).
    pub fn listeners(&self) -> usize {
        self.latest.receiver_count()
    }

    /// A receiver whose `changed()` completes when a newer message is published.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_wake_on_newer_messages_only() {
        let hub = Hub::new(5);
        let mut receiver = hub.subscribe();
        hub.publish(4);
        assert!(
            !receiver.has_changed().unwrap(),
            "an older id changes nothing"
        );
        hub.publish(6);
        receiver.changed().await.unwrap();
        assert_eq!(*receiver.borrow_and_update(), 6);
    }
}
