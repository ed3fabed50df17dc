//! Outbound SMS: the background sender. An accepted request is stored as pending and
//! queued here; a task per message tries the number's provider, fails over to healthy
//! fallbacks, retries in rounds with exponential backoff, and records every attempt.
//! Pending messages are queued again at start, so a restart only delays them.
//!
//! Also here: the prober, which calls each provider's API periodically so that health
//! (and the circuit breaker) reflects providers that nothing is being sent through.

pub(crate) mod backoff;
mod deliver;
mod probe;
mod route;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SendingConfig;
use crate::diagnostics::RecentErrors;
use crate::providers::health::{HealthRegistry, HealthSnapshot};
use crate::providers::registry::ProviderRegistry;
use crate::store::{Store, StoreError};

/// Messages in a round of provider calls at once at most.
const CONCURRENT_SENDS: usize = 32;

/// Messages being worked on at once at most, in a round or waiting out the backoff
/// before the next; the rest wait their turn in the queue. Far more than
/// [`CONCURRENT_SENDS`]: a message waiting for its provider to recover holds no send
/// slot, so it does not hold up messages that can go now.
const MESSAGES_IN_PROGRESS: usize = 1024;

/// The sender: cheap to clone, shared by the API (to queue) and the status page.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// The running provider instances (they change at run time: always look up).
    providers: Arc<ProviderRegistry>,
    health: HealthRegistry,
    settings: SendingConfig,
    diagnostics: RecentErrors,
    queue: mpsc::UnboundedSender<u64>,
    /// Wakes the prober early: a provider was added or got new credentials, and its
    /// health should not wait a whole probe interval.
    probe_now: tokio::sync::Notify,
}

/// The receiving end of the queue, handed to [`Outbox::run`].
pub struct Queue(mpsc::UnboundedReceiver<u64>);

impl Outbox {
    /// The sender over the registry's providers (those with API clients send).
    pub fn new(
        store: Store,
        providers: Arc<ProviderRegistry>,
        settings: SendingConfig,
        diagnostics: RecentErrors,
    ) -> (Self, Queue) {
        let senders: Vec<_> = providers
            .snapshot()
            .into_iter()
            .filter(|provider| provider.client.is_some())
            .collect();
        let health = HealthRegistry::new(
            settings.breaker,
            senders.iter().map(|provider| &*provider.name),
        );
        let (queue, receiver) = mpsc::unbounded_channel();
        let inner = Inner {
            store,
            providers,
            health,
            settings,
            diagnostics,
            queue,
            probe_now: tokio::sync::Notify::new(),
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            Queue(receiver),
        )
    }

    /// Call after the registry's `name` was added, replaced or removed: its health
    /// starts afresh if it sends, and is dropped if it no longer does.
    pub fn provider_changed(&self, name: &str) {
        match self.inner.providers.get(name) {
            Some(provider) if provider.client.is_some() => {
                self.inner.health.track(name);
                self.inner.probe_now.notify_one();
            }
            _ => self.inner.health.forget(name),
        }
    }

    /// Queues a stored pending message for sending. Never blocks.
    pub fn enqueue(&self, id: u64) {
        // The receiver only goes away at shutdown; the message stays pending in the
        // store and is queued again at the next start.
        let _ = self.inner.queue.send(id);
    }

    /// Queues every message left pending by the previous run.
    pub fn resume(&self) -> Result<usize, StoreError> {
        let pending = self.inner.store.pending_outbound()?;
        for id in &pending {
            self.enqueue(*id);
        }
        Ok(pending.len())
    }

    /// Whether messages from numbers of `provider` can be sent at all: through its own
    /// API, or through a fallback.
    pub fn can_send_from(&self, provider: &str) -> bool {
        self.inner.providers.get(provider).is_some_and(|p| {
            p.client.is_some() || p.config.fallback.iter().any(|name| self.sends(name))
        })
    }

    /// Whether `provider` has API credentials (and so a health record).
    pub fn sends(&self, provider: &str) -> bool {
        self.inner
            .providers
            .get(provider)
            .is_some_and(|p| p.client.is_some())
    }

    pub fn health(&self, provider: &str) -> Option<HealthSnapshot> {
        self.inner.health.snapshot(provider, Instant::now())
    }

    /// Runs the sender until `stop`: takes queued ids and sends each in its own task
    /// (at most [`MESSAGES_IN_PROGRESS`] at once, [`CONCURRENT_SENDS`] of them in a round
    /// of calls). Each task stops at `stop` too; a message cut off mid-attempt stays
    /// pending and is sent again at the next start.
    pub async fn run(self, mut queue: Queue, stop: CancellationToken) {
        let tasks = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(MESSAGES_IN_PROGRESS));
        let sending = Arc::new(Semaphore::new(CONCURRENT_SENDS));
        loop {
            let id = tokio::select! {
                () = stop.cancelled() => break,
                id = queue.0.recv() => match id {
                    Some(id) => id,
                    None => break,
                },
            };
            let permit = tokio::select! {
                () = stop.cancelled() => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let outbox = self.clone();
            let stop = stop.clone();
            let sending = Arc::clone(&sending);
            tasks.spawn(async move {
                outbox.deliver(id, &sending, &stop).await;
                drop(permit);
            });
        }
        tasks.close();
        tasks.wait().await;
    }

    /// Runs the prober until `stop`.
    pub async fn probe_forever(self, stop: CancellationToken) {
        probe::run(&self, stop).await;
    }
}
