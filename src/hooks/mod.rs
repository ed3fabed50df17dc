//! Users' outbound webhooks: each new message of a user's leases is POSTed, signed with
//! the Standard Webhooks scheme, to the URLs the user registered.
//!
//! Two tasks. The fan-out follows the store in id order, like the real-time publisher
//! (the hub's "committed" signal wakes it), and queues (endpoint, message) pairs
//! durably, cursor and queue in one commit, so a restart neither loses nor repeats a
//! message. The dispatcher sends what is due, a bounded number at once, and re-queues
//! failures with exponential backoff. The queue holds ids only; the message is read
//! (and decrypted) when sending.

mod delivery;
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
use crate::store::{DueDeliveries, Store};

/// Deliveries in flight at once at most: a few slow receivers must not hold up the
/// rest, nor open unbounded connections.
const CONCURRENT_DELIVERIES: usize = 16;

/// Due deliveries read from the queue at a time.
const DUE_BATCH: usize = 256;

/// The dispatcher looks at the queue at least this often even when nothing woke it, so
/// a wall-clock jump cannot leave a retry waiting for hours.
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
    /// The message event JSON, as SSE and WebSocket clients get it.
    encode: Encoder,
    diagnostics: RecentErrors,
    /// Something was queued or an attempt finished: look at the queue again.
    wake: Notify,
}

impl Hooks {
    pub fn new(
        store: Store,
        config: HooksConfig,
        encode: Encoder,
        diagnostics: RecentErrors,
    ) -> Result<Self, String> {
        crate::tls::install_crypto_provider();
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

    /// Runs the fan-out and the dispatcher until `stop`. `latest`: the newest message id
    /// at start, where a store that never had a fan-out cursor starts.
    pub async fn run(self, hub: Arc<Hub>, latest: u64, stop: CancellationToken) {
        tokio::join!(
            self.clone().fan_out(hub, latest, stop.clone()),
            self.dispatch(stop)
        );
    }

    async fn fan_out(self, hub: Arc<Hub>, latest: u64, stop: CancellationToken) {
        let store = &self.inner.store;
        let mut committed = hub.watch_committed();
        let mut cursor = None;
        loop {
            let upto = *committed.borrow_and_update();
            // Set up here rather than before the loop so that a store error is retried
            // at the next message instead of ending webhooks until restart.
            if cursor.is_none() {
                cursor = store
                    .start_webhook_cursor(latest)
                    .await
                    .inspect_err(|error| tracing::error!(%error, "webhook fan-out cannot start"))
                    .ok();
            }
            while let Some(after) = cursor.filter(|&at| at < upto) {
                match self.fan_out_once(after, upto).await {
                    Ok((reached, queued)) => {
                        if queued > 0 {
                            self.inner.wake.notify_one();
                        }
                        cursor = Some(reached);
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

    /// Queues the deliveries of the messages after `after` (a batch at most): planned
    /// on a read snapshot, so the writer only inserts ids.
    async fn fan_out_once(&self, after: u64, upto: u64) -> Result<(u64, usize), String> {
        let store = self.inner.store.clone();
        let plan = tokio::task::spawn_blocking(move || store.plan_webhook_fan_out(after, upto))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())?;
        self.inner
            .store
            .queue_webhook_deliveries(plan)
            .await
            .map_err(|error| error.to_string())
    }

    async fn dispatch(self, stop: CancellationToken) {
        let tasks = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
        // (webhook, message) being sent: the queue still shows them until recorded.
        let in_flight: Arc<Mutex<HashSet<(u64, u64)>>> = Arc::default();
        'running: loop {
            let now = crate::store::now_ms();
            let queue = self.due(now).await;
            let more = queue.due.len() == DUE_BATCH;
            for delivery in queue.due {
                let key = (delivery.webhook_id, delivery.message_id);
                if !lock(&in_flight).insert(key) {
                    continue;
                }
                let permit = tokio::select! {
                    () = stop.cancelled() => break 'running,
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break 'running,
                    },
                };
                let hooks = self.clone();
                let in_flight = Arc::clone(&in_flight);
                let stop = stop.clone();
                tasks.spawn(async move {
                    // Cut off at shutdown: the delivery stays queued and is made after
                    // the restart (receivers drop repeats by `webhook-id`).
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = hooks.deliver(delivery) => {}
                    }
                    lock(&in_flight).remove(&key);
                    hooks.inner.wake.notify_one();
                    drop(permit);
                });
            }
            let wait = if more {
                Duration::ZERO
            } else {
                queue
                    .next_due_ms
                    .map_or(IDLE_POLL, |due| {
                        let now = u64::try_from(now).unwrap_or(0);
                        Duration::from_millis(due.saturating_sub(now))
                    })
                    .min(IDLE_POLL)
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tasks.close();
        tasks.wait().await;
    }

    async fn due(&self, now_ms: i64) -> DueDeliveries {
        let store = self.inner.store.clone();
        match tokio::task::spawn_blocking(move || store.due_webhook_deliveries(now_ms, DUE_BATCH))
            .await
        {
            Ok(Ok(due)) => due,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the webhook queue");
                DueDeliveries::default()
            }
            Err(error) => {
                tracing::error!(%error, "webhook queue task failed");
                DueDeliveries::default()
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
