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
    /// The store read under way. Kept here, not in `next`'s future, so a `next` dropped
    /// while it runs (a client frame arrived) picks it up again instead of starting
    /// another: a chatty client cannot pile up reads or stall its replay.
    reading: Option<ReplayRead>,
}

type ReplayRead = tokio::task::JoinHandle<Result<Vec<Event>, StoreError>>;

impl Subscription {
    /// Subscribes to `inboxes`. With `after`, every stored message of those inboxes with
    /// a larger id comes first; without it, only messages stored from now on, and the
    /// cursor starts at the newest id stored so far: a client told to resume before it
    /// received anything resumes from there, not from the start of its inbox.
    pub fn open(hub: &Arc<Hub>, store: Store, inboxes: &[Inbox], after: Option<u64>) -> Self {
        let live = hub.subscribe(inboxes);
        Self {
            live,
            store,
            cursor: after.unwrap_or_else(|| hub.committed_up_to()),
            replaying: after.is_some(),
            pending: Vec::new(),
            reading: None,
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
            let reading = match &mut self.reading {
                Some(reading) => reading,
                None => self.reading.insert(self.replay_page()),
            };
            let page = reading.await;
            self.reading = None;
            let mut page =
                page.map_err(|error| StoreError::Storage(format!("replay task failed: {error}")))??;
            let Some(last) = page.last().map(|event| event.id) else {
                self.replaying = false;
                continue;
            };
            // An inbox may have been removed while the page was read. A page of only
            // its events still moves the cursor on: the others have none that early.
            let inboxes = self.live.inboxes();
            page.retain(|event| inboxes.contains(&event.inbox));
            if page.is_empty() {
                self.cursor = last;
            }
            // Oldest last, so `pop` hands them out in order.
            self.pending = page.into_iter().rev().collect();
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

    /// Starts reading the next `REPLAY_PAGE` messages after the cursor across the
    /// inboxes, in id order.
    fn replay_page(&self) -> ReplayRead {
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
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::InboundSms;
    use crate::store::SeedNumber;
    use crate::store::testing::store;

    fn encode(message: &crate::store::MessageView) -> bytes::Bytes {
        bytes::Bytes::from(message.text.clone())
    }

    async fn stored(store: &Store, id: &str) -> Event {
        stored_for(store, id, "+12025550101").await
    }

    /// Stores a message with text `id` sent to `to`.
    async fn stored_for(store: &Store, id: &str, to: &str) -> Event {
        let sms = InboundSms::new(id, "+14155550199", to, id, None).unwrap();
        let outcome = store
            .ingest("p".into(), sms, Duration::from_secs(3600))
            .await
            .unwrap();
        Event::new(
            outcome.message_id().unwrap(),
            outcome.inbox().unwrap(),
            bytes::Bytes::from(id.to_owned()),
        )
    }

    async fn next_text(subscription: &mut Subscription) -> String {
        match tokio::time::timeout(Duration::from_secs(5), subscription.next()).await {
            Ok(Ok(Next::Event(event))) => String::from_utf8(event.json.to_vec()).unwrap(),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn replay_then_live_with_no_gap_and_no_duplicate_at_the_seam() {
        let (store, _dir) = store();
        store
            .ensure_numbers(vec![SeedNumber::new("p", "+12025550101", None)])
            .await
            .unwrap();
        let hub = Arc::new(Hub::new(0, 16, encode));
        let one = stored(&store, "one").await;
        hub.publish(&one);
        let two = stored(&store, "two").await;
        // The client saw "one"; it resumes after it. "two" is stored but its publication
        // comes only after the subscription started, as does "three"'s.
        let mut subscription = Subscription::open(&hub, store.clone(), &[one.inbox], Some(one.id));
        let three = stored(&store, "three").await;
        hub.publish(&two);
        hub.publish(&three);
        assert_eq!(next_text(&mut subscription).await, "two");
        assert_eq!(next_text(&mut subscription).await, "three");
        let four = stored(&store, "four").await;
        hub.publish(&four);
        assert_eq!(
            next_text(&mut subscription).await,
            "four",
            "no duplicate of two or three"
        );
        assert_eq!(subscription.cursor(), four.id);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), subscription.next())
                .await
                .is_err(),
            "nothing more"
        );
    }

    /// A `next` dropped while its store read runs (a client frame arrived) leaves the
    /// read to the next call instead of starting another.
    #[test]
    fn a_dropped_next_keeps_its_store_read_for_the_next_call() {
        // One blocking thread, held busy: the replay's read waits its turn, so each
        // `next` below is dropped while the read is still pending.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async {
            let (store, _dir) = store();
            let hub = Arc::new(Hub::new(0, 16, encode));
            let one = stored(&store, "one").await;
            stored(&store, "two").await;
            let (release, released) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || released.recv());
            let mut subscription = Subscription::open(&hub, store.clone(), &[one.inbox], Some(0));
            let _ = tokio::time::timeout(Duration::ZERO, subscription.next()).await;
            let first = subscription.reading.as_ref().map(|read| read.id());
            assert!(first.is_some(), "the read is kept");
            for _ in 0..3 {
                let _ = tokio::time::timeout(Duration::ZERO, subscription.next()).await;
                let again = subscription.reading.as_ref().map(|read| read.id());
                assert_eq!(again, first, "the same read, not another");
            }
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();
            assert_eq!(next_text(&mut subscription).await, "one");
            assert_eq!(next_text(&mut subscription).await, "two");
            assert!(subscription.reading.is_none());
        });
    }

    #[tokio::test]
    async fn without_a_resume_point_only_new_messages_come() {
        let (store, _dir) = store();
        let hub = Arc::new(Hub::new(0, 16, encode));
        let old = stored(&store, "old").await;
        let mut subscription = Subscription::open(&hub, store.clone(), &[old.inbox], None);
        let new = stored(&store, "new").await;
        hub.publish(&new);
        assert_eq!(next_text(&mut subscription).await, "new");
    }

    #[tokio::test]
    async fn without_a_resume_point_a_resume_starts_after_what_was_stored_before() {
        let (store, _dir) = store();
        let hub = Arc::new(Hub::new(0, 16, encode));
        let old = stored(&store, "old").await;
        hub.committed(old.id);
        let subscription = Subscription::open(&hub, store.clone(), &[old.inbox], None);
        // Dropped now (a restart, too slow), the client is told to resume after `old`,
        // not after 0, which would replay its whole inbox as if new.
        assert_eq!(subscription.cursor(), old.id);
    }

    #[tokio::test]
    async fn the_publisher_follows_the_store_in_id_order() {
        let (store, _dir) = store();
        let hub = Arc::new(Hub::new(0, 16, encode));
        let stop = tokio_util::sync::CancellationToken::new();
        let publisher = tokio::spawn(super::super::publisher::run(
            Arc::clone(&hub),
            store.clone(),
            0,
            stop.clone(),
        ));
        store
            .ensure_numbers(vec![SeedNumber::new("p", "+12025550101", None)])
            .await
            .unwrap();
        let mut live = hub.subscribe(&[crate::store::Inbox::Unrouted]);
        let first = stored_for(&store, "first", "+19995550000").await;
        // Nobody follows this number: the publisher steps over it.
        stored_for(&store, "unwatched", "+12025550101").await;
        let second = stored_for(&store, "second", "+19995550000").await;
        let third = stored_for(&store, "third", "+19995550000").await;
        // Announced out of order and only once: the store decides the order.
        hub.committed(third.id);
        let mut got = Vec::new();
        while got.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(5), live.recv()).await {
                Ok(super::super::hub::Received::Event(event)) => got.push(event.id),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        assert_eq!(got, [first.id, second.id, third.id]);
        stop.cancel();
        publisher.await.unwrap();
    }
}
