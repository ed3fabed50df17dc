//! The hub: one topic per inbox, each event encoded once and shared, a bounded queue per
//! subscriber, and slow subscribers cut loose instead of slowing anyone else.
//!
//! This is the in-process event bus behind a narrow interface (`publish`, `subscribe`);
//! a Redis or NATS implementation for several nodes would fill the same shape.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::{Notify, watch};

use crate::store::{Inbox, MessageView};

/// One stored message as every front end sends it: the JSON frame is encoded once, at
/// publication, and shared by reference with every subscriber.
///
/// A clone is one pointer, so fanning an event out copies a pointer per subscriber and
/// a queued event costs a queue slot of 8 bytes.
#[derive(Debug, Clone)]
pub struct Event(Arc<EventData>);

#[derive(Debug)]
pub struct EventData {
    /// The message id: globally increasing, so it doubles as the resume cursor.
    pub id: u64,
    pub inbox: Inbox,
    /// `{"type":"message","id":…,"number_id":…,"message":{…}}`, UTF-8 JSON on one line.
    pub json: Bytes,
}

impl Event {
    pub fn new(id: u64, inbox: Inbox, json: Bytes) -> Self {
        Self(Arc::new(EventData { id, inbox, json }))
    }
}

impl std::ops::Deref for Event {
    type Target = EventData;

    fn deref(&self) -> &EventData {
        &self.0
    }
}

/// Turns a stored message into its event JSON. Supplied by the HTTP layer, which owns the
/// message's public JSON shape, so live and replayed events are byte-for-byte alike.
pub type Encoder = fn(&MessageView) -> Bytes;

/// The receiving end of one subscriber, registered under one or more topics.
///
/// The queue is a plain deque rather than a channel: it holds no memory while empty,
/// which is what almost every one of thousands of idle subscribers is, where a channel
/// keeps a block of slots and its own shared state per subscriber (about 800 bytes).
struct Sink {
    /// Events waiting for the subscriber, at most the hub's `queue`.
    queue: Mutex<VecDeque<Event>>,
    /// Set when the queue overflowed: the subscriber is out of every topic and must
    /// resume from the store.
    lagged: AtomicBool,
    /// Signalled on every event queued and on lagging.
    wake: Notify,
}

impl Sink {
    /// Queues `event` unless the queue is full (then nothing changes and `false`).
    fn offer(&self, event: &Event, capacity: usize) -> bool {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() >= capacity {
            return false;
        }
        queue.push_back(event.clone());
        drop(queue);
        self.wake.notify_one();
        true
    }

    fn take(&self) -> Option<Event> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let event = queue.pop_front();
        if queue.is_empty() && queue.capacity() > SHRINK_ABOVE {
            // A burst grew it; an idle subscriber should not keep that memory.
            queue.shrink_to_fit();
        }
        event
    }
}

/// Queue capacity an empty subscriber queue may keep: a few events' worth of slots.
const SHRINK_ABOVE: usize = 8;

#[derive(Default)]
struct Topics {
    by_inbox: HashMap<Inbox, Vec<(u64, Arc<Sink>)>>,
}

impl Topics {
    fn remove(&mut self, inbox: Inbox, sink_id: u64) {
        if let Some(sinks) = self.by_inbox.get_mut(&inbox) {
            sinks.retain(|(id, _)| *id != sink_id);
            if sinks.is_empty() {
                self.by_inbox.remove(&inbox);
            }
        }
    }
}

pub struct Hub {
    topics: RwLock<Topics>,
    next_sink: AtomicU64,
    /// Live subscribers now (long-poll waiters included).
    subscribers: AtomicU64,
    /// Subscribers dropped because their queue overflowed, since start.
    dropped_slow: AtomicU64,
    /// The newest durably stored message id, announced by ingest; the publisher follows it.
    committed: watch::Sender<u64>,
    queue: usize,
    encode: Encoder,
}

impl Hub {
    /// `latest`: the newest stored message id at start; `queue`: events a subscriber may
    /// have waiting before it counts as too slow.
    pub fn new(latest: u64, queue: usize, encode: Encoder) -> Self {
        Self {
            topics: RwLock::new(Topics::default()),
            next_sink: AtomicU64::new(1),
            subscribers: AtomicU64::new(0),
            dropped_slow: AtomicU64::new(0),
            committed: watch::Sender::new(latest),
            queue: queue.max(1),
            encode,
        }
    }

    /// Announces that messages up to `message_id` are durable. Never blocks: ingest must
    /// not wait for anyone; the publisher reads and encodes them on its own time.
    pub fn committed(&self, message_id: u64) {
        self.committed.send_if_modified(|latest| {
            let newer = message_id > *latest;
            if newer {
                *latest = message_id;
            }
            newer
        });
    }

    /// The newest message id announced as durable.
    pub fn committed_up_to(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Follows [`Self::committed`] (for the publisher).
    pub(crate) fn watch_committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    pub fn encode(&self, message: &MessageView) -> Event {
        Event::new(message.id, message.inbox, (self.encode)(message))
    }

    /// Hands `event` to every subscriber of its inbox without waiting: a subscriber
    /// whose queue is full is marked lagged and leaves every topic.
    pub fn publish(&self, event: &Event) {
        let mut overflowed = Vec::new();
        {
            let topics = self
                .topics
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(sinks) = topics.by_inbox.get(&event.inbox) else {
                return;
            };
            for (id, sink) in sinks {
                if sink.lagged.load(Ordering::Relaxed) {
                    continue;
                }
                if !sink.offer(event, self.queue) {
                    sink.lagged.store(true, Ordering::Release);
                    sink.wake.notify_one();
                    overflowed.push(*id);
                }
            }
        }
        if !overflowed.is_empty() {
            self.dropped_slow
                .fetch_add(overflowed.len() as u64, Ordering::Relaxed);
            let mut topics = self
                .topics
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for id in overflowed {
                topics.remove(event.inbox, id);
            }
        }
    }

    /// A new subscriber of `inboxes`, with its own bounded queue. Events published from
    /// now on are queued for it; earlier ones come from the store (see `resume`).
    pub fn subscribe(self: &Arc<Self>, inboxes: &[Inbox]) -> Receiver {
        let sink = Arc::new(Sink {
            queue: Mutex::new(VecDeque::new()),
            lagged: AtomicBool::new(false),
            wake: Notify::new(),
        });
        let id = self.next_sink.fetch_add(1, Ordering::Relaxed);
        let mut unique = inboxes.to_vec();
        unique.sort_unstable_by_key(|inbox| inbox.key());
        unique.dedup();
        {
            let mut topics = self
                .topics
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for inbox in &unique {
                topics
                    .by_inbox
                    .entry(*inbox)
                    .or_default()
                    .push((id, Arc::clone(&sink)));
            }
        }
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Receiver {
            hub: Arc::clone(self),
            id,
            sink,
            inboxes: unique,
        }
    }

    /// Subscribers now, of every front end (long-poll waiters included): for the status
    /// page, and for tests that must know a client listens before they send.
    pub fn listeners(&self) -> usize {
        usize::try_from(self.subscribers.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Whether anyone follows `inbox` now.
    pub fn is_watched(&self, inbox: Inbox) -> bool {
        self.topics
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .by_inbox
            .contains_key(&inbox)
    }

    /// Whether anyone follows any inbox now.
    pub fn anyone_watching(&self) -> bool {
        !self
            .topics
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .by_inbox
            .is_empty()
    }

    /// Subscribers dropped for falling behind, since start.
    pub fn dropped_slow(&self) -> u64 {
        self.dropped_slow.load(Ordering::Relaxed)
    }

    /// Topics with at least one subscriber now.
    pub fn topics(&self) -> usize {
        self.topics.read().map_or(0, |topics| topics.by_inbox.len())
    }

    fn unsubscribe(&self, id: u64, inboxes: &[Inbox]) {
        let mut topics = self
            .topics
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for inbox in inboxes {
            topics.remove(*inbox, id);
        }
    }
}

/// What a subscriber's queue yields.
#[derive(Debug)]
pub enum Received {
    Event(Event),
    /// The queue overflowed: events were lost here and must be read from the store.
    Lagged,
}

/// One subscriber's queue; leaves its topics when dropped.
pub struct Receiver {
    hub: Arc<Hub>,
    id: u64,
    sink: Arc<Sink>,
    inboxes: Vec<Inbox>,
}

impl Receiver {
    /// The next queued event. Once lagged, answers `Lagged` at once, before anything still
    /// queued: the subscriber resumes from the store, where those events are too.
    pub async fn recv(&mut self) -> Received {
        loop {
            if self.sink.lagged.load(Ordering::Acquire) {
                return Received::Lagged;
            }
            if let Some(event) = self.sink.take() {
                return Received::Event(event);
            }
            // `notify_one` keeps a permit when nobody waits, so an event queued between
            // the look above and this wait still wakes it.
            self.sink.wake.notified().await;
        }
    }

    pub fn inboxes(&self) -> &[Inbox] {
        &self.inboxes
    }

    /// Drops the events queued now (for waiters that read the store instead).
    pub fn discard_queued(&mut self) {
        self.sink
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stops receiving events of `inbox`; true when that was the last one.
    pub fn remove(&mut self, inbox: Inbox) -> bool {
        if let Some(position) = self.inboxes.iter().position(|i| *i == inbox) {
            self.inboxes.swap_remove(position);
            self.hub.unsubscribe(self.id, &[inbox]);
        }
        self.inboxes.is_empty()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id, &self.inboxes);
        self.hub.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, inbox: Inbox) -> Event {
        Event::new(id, inbox, Bytes::from(format!("{{\"id\":{id}}}")))
    }

    fn no_encoding(_: &MessageView) -> Bytes {
        Bytes::new()
    }

    #[tokio::test]
    async fn subscribers_get_their_inboxes_events_in_order() {
        let hub = Arc::new(Hub::new(0, 8, no_encoding));
        let mut alice = hub.subscribe(&[Inbox::Lease(1), Inbox::Number(7)]);
        let mut bob = hub.subscribe(&[Inbox::Lease(2)]);
        assert_eq!(hub.listeners(), 2);
        hub.publish(&event(1, Inbox::Lease(1)));
        hub.publish(&event(2, Inbox::Lease(2)));
        hub.publish(&event(3, Inbox::Number(7)));
        let ids = |received| match received {
            Received::Event(event) => event.id,
            Received::Lagged => 0,
        };
        assert_eq!(ids(alice.recv().await), 1);
        assert_eq!(ids(alice.recv().await), 3);
        assert_eq!(ids(bob.recv().await), 2);
        drop(alice);
        assert_eq!(hub.listeners(), 1);
        assert_eq!(hub.topics(), 1, "alice's topics are gone with her");
    }

    #[tokio::test]
    async fn a_full_queue_drops_that_subscriber_only() {
        let hub = Arc::new(Hub::new(0, 2, no_encoding));
        let mut slow = hub.subscribe(&[Inbox::Number(1)]);
        let mut fast = hub.subscribe(&[Inbox::Number(1)]);
        for id in 1..=5 {
            hub.publish(&event(id, Inbox::Number(1)));
            let Received::Event(got) = fast.recv().await else {
                panic!("the fast subscriber is never lagged");
            };
            assert_eq!(got.id, id);
        }
        assert!(matches!(slow.recv().await, Received::Lagged));
        assert_eq!(hub.dropped_slow(), 1);
        assert_eq!(hub.topics(), 1, "only the fast subscriber is left");
    }

    /// Front ends wait in `select!` loops, so a wait is often dropped unfinished.
    #[tokio::test]
    async fn a_wait_dropped_unfinished_loses_no_event() {
        use futures_util::FutureExt;
        let hub = Arc::new(Hub::new(0, 8, no_encoding));
        let mut receiver = hub.subscribe(&[Inbox::Number(1)]);
        let id = |received: Option<Received>| match received {
            Some(Received::Event(event)) => Some(event.id),
            _ => None,
        };
        // Dropped before anything came.
        assert_eq!(id(receiver.recv().now_or_never()), None);
        hub.publish(&event(1, Inbox::Number(1)));
        assert_eq!(id(receiver.recv().now_or_never()), Some(1));
        // Woken by an event, then dropped before it could take it.
        let mut waiting = Box::pin(receiver.recv());
        assert!((&mut waiting).now_or_never().is_none());
        hub.publish(&event(2, Inbox::Number(1)));
        drop(waiting);
        assert_eq!(id(receiver.recv().now_or_never()), Some(2));
    }

    #[tokio::test]
    async fn unsubscribing_one_inbox_keeps_the_others() {
        let hub = Arc::new(Hub::new(0, 8, no_encoding));
        let mut receiver = hub.subscribe(&[Inbox::Number(1), Inbox::Number(2)]);
        assert!(!receiver.remove(Inbox::Number(1)));
        hub.publish(&event(1, Inbox::Number(1)));
        hub.publish(&event(2, Inbox::Number(2)));
        let Received::Event(got) = receiver.recv().await else {
            panic!("not lagged");
        };
        assert_eq!(got.id, 2);
        assert!(receiver.remove(Inbox::Number(2)));
        assert_eq!(hub.topics(), 0);
    }
}
