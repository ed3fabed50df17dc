//! Users' outbound webhooks: each new message of a user's leases is POSTed, signed with
//! the Standard Webhooks scheme, to the URLs the user registered.
//!
//! Two tasks: the fan-out follows the store in id order (like the real-time publisher)
//! and queues (endpoint, message) pairs durably, cursor and queue in one commit; the
//! dispatcher sends what is due, a bounded number at once, and re-queues failures with
//! exponential backoff. The queue holds ids only; the message is read when sending.

pub mod delivery;
pub mod ssrf;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HooksConfig;
use crate::diagnostics::RecentErrors;
use crate::realtime::{Encoder, Hub};
use crate::store::{DeliveryLogV1, QueuedDelivery, Store, WebhookView, now_ms};

/// Deliveries in flight at once at most.
const CONCURRENT_DELIVERIES: usize = 16;

/// The dispatcher looks at the queue at least this often, even with nothing due.
const IDLE_POLL: Duration = Duration::from_secs(60);

/// Cheap to clone; shared by the API ("send test") and the background tasks.
#[derive(Clone)]
pub struct Hooks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    client: reqwest::Client,
    config: HooksConfig,
    /// The message JSON, as the REST API and the real-time events show it.
    encode: Encoder,
    diagnostics: RecentErrors,
    /// Something was queued or finished: look at the queue again.
    wake: Notify,
}

impl Hooks {
    pub fn new(
        store: Store,
        config: HooksConfig,
        encode: Encoder,
        diagnostics: RecentErrors,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .dns_resolver(ssrf::GuardedResolver {
                allow_private: config.allow_private,
            })
            // A proxy would make the connection (and the address check) elsewhere; a
            // redirect would lead to a URL nobody checked.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("burnbox-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot build the webhook HTTP client: {error}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                client,
                config,
                encode,
                diagnostics,
                wake: Notify::new(),
            }),
        })
    }

    pub fn config(&self) -> &HooksConfig {
        &self.inner.config
    }

    /// Sends a signed `{"type":"test"}` event now and records it in the delivery log.
    pub async fn send_test(&self, hook: &WebhookView) -> DeliveryLogV1 {
        let at_ms = now_ms();
        let id = format!("test_{}_{at_ms}", hook.id);
        let body = bytes::Bytes::from_static(br#"{"type":"test"}"#);
        let outcome = self.post(hook, &id, body).await;
        let entry = DeliveryLogV1 {
            message_id: None,
            at_ms,
            attempt: 1,
            status: outcome.as_ref().ok().copied(),
            error: outcome.err(),
            next_retry_ms: None,
        };
        if let Err(error) = self
            .inner
            .store
            .record_webhook_attempt(hook.id, entry.clone(), None)
            .await
        {
            tracing::error!(%error, webhook_id = hook.id, "cannot record a webhook test");
        }
        entry
    }

    /// Runs the fan-out and the dispatcher until `stop`. `latest`: the newest message
    /// id at start, where a store that never queued anything starts following.
    pub async fn run(self, hub: Arc<Hub>, latest: u64, stop: CancellationToken) {
        tokio::join!(
            self.clone().fan_out(hub, latest, stop.clone()),
            self.dispatch(stop)
        );
    }

    async fn fan_out(self, hub: Arc<Hub>, latest: u64, stop: CancellationToken) {
        let mut committed = hub.watch_committed();
        let mut cursor = match self.inner.store.webhook_cursor() {
            Ok(stored) => stored.unwrap_or(latest),
            Err(error) => {
                tracing::error!(%error, "webhook fan-out cannot read its cursor");
                latest
            }
        };
        loop {
            loop {
                match self.inner.store.queue_webhook_deliveries(cursor).await {
                    Ok((reached, queued)) => {
                        if queued > 0 {
                            self.inner.wake.notify_one();
                        }
                        if reached == cursor {
                            break;
                        }
                        cursor = reached;
                    }
                    Err(error) => {
                        tracing::error!(%error, "webhook fan-out could not queue deliveries");
                        break;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                changed = committed.changed() => if changed.is_err() { return },
            }
        }
    }

    async fn dispatch(self, stop: CancellationToken) {
        let tasks = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
        let in_flight: Arc<Mutex<HashSet<(u64, u64)>>> = Arc::default();
        loop {
            let queue = self.read_queue().await;
            let now = now_ms();
            let mut next_due: Option<i64> = None;
            for queued in queue {
                let key = (queued.webhook_id, queued.message_id);
                if queued.state.next_at_ms > now {
                    next_due = Some(next_due.map_or(queued.state.next_at_ms, |due| {
                        due.min(queued.state.next_at_ms)
                    }));
                    continue;
                }
                if !lock(&in_flight).insert(key) {
                    continue;
                }
                let permit = tokio::select! {
                    () = stop.cancelled() => break,
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                };
                let hooks = self.clone();
                let in_flight = Arc::clone(&in_flight);
                let stop = stop.clone();
                tasks.spawn(async move {
                    // Cut off at shutdown: the entry stays queued and is sent after restart.
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = hooks.deliver(queued) => {}
                    }
                    lock(&in_flight).remove(&key);
                    hooks.inner.wake.notify_one();
                    drop(permit);
                });
            }
            let wait = next_due
                .map(|due| Duration::from_millis(u64::try_from(due - now).unwrap_or(0)))
                .unwrap_or(IDLE_POLL)
                .min(IDLE_POLL);
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tasks.close();
        tasks.wait().await;
    }

    async fn read_queue(&self) -> Vec<QueuedDelivery> {
        let store = self.inner.store.clone();
        match tokio::task::spawn_blocking(move || store.webhook_queue()).await {
            Ok(Ok(queue)) => queue,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the webhook queue");
                Vec::new()
            }
            Err(error) => {
                tracing::error!(%error, "webhook queue task failed");
                Vec::new()
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
