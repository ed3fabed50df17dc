//! Users' outbound webhooks: each new message of a user's leases is POSTed, signed with
//! the Standard Webhooks scheme, to the URLs the user registered.
//!
//! Two tasks. The fan-out follows the store in id order, like the real-time publisher
//! (the hub's "committed" signal wakes it), and queues (endpoint, message) pairs
//! durably, cursor and queue in one commit, so a restart neither skips a message nor
//! queues one twice. The dispatcher sends what is due, a bounded number at once, at
//! most two per endpoint and half the slots per account, and re-queues failures with
//! exponential backoff. The queue holds ids only; the message is read (and decrypted)
//! when sending.

mod cooldown;
mod delivery;
pub mod ssrf;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HooksConfig;
use crate::diagnostics::RecentErrors;
use crate::realtime::{Encoder, Hub};
use crate::store::{DueDeliveries, Pick, Store};
use cooldown::{Cooldown, Key};
use delivery::Ended;

/// Deliveries in flight at once at most: a few slow receivers must not hold up the
/// rest, nor open unbounded connections.
const CONCURRENT_DELIVERIES: usize = 16;

/// Deliveries in flight to one endpoint at most: a receiver that never answers holds
/// this many slots until `webhooks_timeout`, not all of them, so other users' messages
/// (one-time codes) still go out at once.
const PER_ENDPOINT: usize = 2;

/// Deliveries in flight for one account's endpoints at most: an account with many
/// receivers that never answer holds half the slots, never all of them.
const PER_ACCOUNT: usize = CONCURRENT_DELIVERIES / 2;

/// Due deliveries read from the queue at a time.
const DUE_BATCH: usize = 256;

/// The fan-out tries again this soon after a store error.
const FANOUT_RETRY: Duration = Duration::from_secs(2);

/// The fan-out reads the newest message id from the store at least this often, in case
/// an announcement was missed (it only says "up to id N"; a lagging watcher loses none,
/// but this keeps the fan-out from depending on it alone).
const FANOUT_POLL: Duration = Duration::from_secs(30);

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
    /// The client's resolver holds a clone; literal IPs and registration use this one.
    guard: ssrf::Guard,
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
        let guard = ssrf::Guard::new(config.allow_private);
        let client = reqwest::Client::builder()
            .dns_resolver(ssrf::GuardedResolver(guard.clone()))
            // A proxy would make the connection (and the address check) elsewhere; a
            // redirect would lead to a URL nobody checked.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .user_agent(concat!("burnbox-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot build the webhook HTTP client: {error}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                client,
                guard,
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

    pub fn guard(&self) -> &ssrf::Guard {
        &self.inner.guard
    }

    /// Runs the fan-out and the dispatcher until `stop`. `latest`: the newest message id
    /// at start, where a store that never had a fan-out cursor starts.
    pub async fn run(self, hub: Arc<Hub>, latest: u64, stop: CancellationToken) {
        tokio::join!(
            self.clone().fan_out(hub, latest, FANOUT_POLL, stop.clone()),
            self.dispatch(stop)
        );
    }

    /// `poll`: how often to read the newest id from the store when nothing was announced.
    async fn fan_out(self, hub: Arc<Hub>, latest: u64, poll: Duration, stop: CancellationToken) {
        let store = &self.inner.store;
        let mut committed = hub.watch_committed();
        let mut cursor = None;
        // The newest message id known to be committed: announced, or read from the store.
        let mut upto = latest;
        loop {
            upto = upto.max(*committed.borrow_and_update());
            // Set up here rather than before the loop so that a store error is retried
            // instead of ending webhooks until restart.
            if cursor.is_none() {
                cursor = store
                    .start_webhook_cursor(latest)
                    .await
                    .inspect_err(|error| tracing::error!(%error, "webhook fan-out cannot start"))
                    .ok();
            }
            let mut failed = cursor.is_none();
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
                        failed = true;
                        break;
                    }
                }
            }
            // After a failure the messages are still there to queue, and no new one may
            // come to wake us: try again soon.
            let wait = if failed { FANOUT_RETRY } else { poll };
            tokio::select! {
                () = stop.cancelled() => return,
                changed = committed.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(wait) => upto = upto.max(self.newest_stored().await),
            }
        }
    }

    /// The newest message id in the store (0 if it cannot be read): ids are committed
    /// in order, so every message up to it is committed too, announced or not.
    async fn newest_stored(&self) -> u64 {
        let store = self.inner.store.clone();
        match tokio::task::spawn_blocking(move || store.latest_message_id()).await {
            Ok(Ok(newest)) => newest,
            Ok(Err(error)) => {
                tracing::error!(%error, "webhook fan-out cannot read the store");
                0
            }
            Err(error) => {
                tracing::error!(%error, "webhook fan-out task failed");
                0
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
        let busy: Arc<Mutex<Busy>> = Arc::default();
        'running: loop {
            let now = crate::store::now_ms();
            let pick = lock(&busy).picker(Instant::now());
            let queue = self.due(now, pick).await;
            let more = queue.due.len() == DUE_BATCH;
            for delivery in queue.due {
                let key = (delivery.webhook_id, delivery.message_id);
                if lock(&busy).in_flight.insert(key, delivery.owner).is_some() {
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
                let busy = Arc::clone(&busy);
                let stop = stop.clone();
                tasks.spawn(async move {
                    // Cut off at shutdown: the delivery stays queued and is made after
                    // the restart (receivers drop repeats by `webhook-id`).
                    let ended = tokio::select! {
                        () = stop.cancelled() => None,
                        ended = hooks.deliver(delivery) => Some(ended),
                    };
                    if lock(&busy).ended(key, ended) {
                        hooks.inner.wake.notify_one();
                    }
                    drop(permit);
                });
            }
            let wait = if more {
                Duration::ZERO
            } else {
                let cooling = lock(&busy).cooldown.next_end(Instant::now());
                queue
                    .next_due_ms
                    .map_or(IDLE_POLL, |due| {
                        let now = u64::try_from(now).unwrap_or(0);
                        Duration::from_millis(due.saturating_sub(now))
                    })
                    .min(cooling.unwrap_or(IDLE_POLL))
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

    async fn due(
        &self,
        now_ms: i64,
        pick: impl FnMut(u64, u64, u64) -> Pick + Send + 'static,
    ) -> DueDeliveries {
        let store = self.inner.store.clone();
        let read = move || store.due_webhook_deliveries(now_ms, DUE_BATCH, pick);
        match tokio::task::spawn_blocking(read).await {
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

/// What the dispatcher keeps between passes over the queue, shared with its tasks.
#[derive(Default)]
struct Busy {
    /// (webhook, message) being sent, with the endpoint's owner: the queue still shows
    /// them until recorded.
    in_flight: HashMap<Key, u64>,
    cooldown: Cooldown,
}

impl Busy {
    /// What to make of each due row at `now`: rows being sent or cooling down are
    /// passed over; an endpoint with [`PER_ENDPOINT`] open, or whose owner has
    /// [`PER_ACCOUNT`] open, is full (its later rows are not even read).
    fn picker(&self, now: Instant) -> impl FnMut(u64, u64, u64) -> Pick + Send + 'static {
        let mut skip: HashSet<Key> = self.cooldown.paused_at(now).into_iter().collect();
        let mut per_endpoint: HashMap<u64, usize> = HashMap::new();
        let mut per_account: HashMap<u64, usize> = HashMap::new();
        for (&key, &owner) in &self.in_flight {
            skip.insert(key);
            *per_endpoint.entry(key.0).or_default() += 1;
            *per_account.entry(owner).or_default() += 1;
        }
        move |owner, webhook_id, message_id| {
            let endpoint = per_endpoint.entry(webhook_id).or_default();
            let account = per_account.entry(owner).or_default();
            if *endpoint >= PER_ENDPOINT || *account >= PER_ACCOUNT {
                return Pick::Full;
            }
            if skip.contains(&(webhook_id, message_id)) {
                return Pick::Pass;
            }
            *endpoint += 1;
            *account += 1;
            Pick::Take
        }
    }

    /// A delivery task ended (`None`: cut off by shutdown). Whether the queue is worth
    /// another look: its row changed, or its slot is free for the endpoint's (and the
    /// account's) other rows while it cools down.
    fn ended(&mut self, key: Key, ended: Option<Ended>) -> bool {
        self.in_flight.remove(&key);
        match ended {
            Some(Ended::Recorded) => {
                self.cooldown.clear(key);
                true
            }
            Some(Ended::Unrecorded) => {
                self.cooldown.pause(key, Instant::now());
                true
            }
            None => false,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InboundSms;
    use crate::store::testing::{lease, store, user};
    use crate::store::{IngestOutcome, NewWebhook, SeedNumber};

    const NUMBER: &str = "+12025550101";

    /// A store whose one user holds `NUMBER` and has one endpoint, and hooks on it.
    async fn hooks_with_an_endpoint() -> (Hooks, Store, tempfile::TempDir) {
        let (store, dir) = store();
        store
            .ensure_numbers(vec![SeedNumber::new("p", NUMBER, None)])
            .await
            .unwrap();
        let owner = user(&store, "alice").await;
        store
            .create_webhook(NewWebhook {
                owner,
                url: "https://hooks.example/receive".into(),
                secret: "whsec_c2VjcmV0".into(),
                description: None,
                max_per_owner: 1,
            })
            .await
            .unwrap()
            .unwrap();
        lease(&store, owner).await;
        let config = HooksConfig {
            allow_private: false,
            max_per_user: 1,
            timeout: Duration::from_secs(1),
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(1),
            give_up: Duration::from_secs(60),
        };
        let encode: Encoder = |_| bytes::Bytes::new();
        let hooks = Hooks::new(store.clone(), config, encode, RecentErrors::default()).unwrap();
        (hooks, store, dir)
    }

    /// Ingest announces new messages to the hub; one it never announced (or whose
    /// announcement came while the fan-out was failing) is still queued, from the
    /// store's own newest id, on the fan-out's idle timer.
    #[tokio::test]
    async fn the_fan_out_finds_messages_nobody_announced() {
        let (hooks, store, _dir) = hooks_with_an_endpoint().await;
        let hub = Arc::new(Hub::new(0, 8, |_| bytes::Bytes::new()));
        let stop = CancellationToken::new();
        let poll = Duration::from_millis(20);
        let fan_out = tokio::spawn(hooks.fan_out(hub, 0, poll, stop.clone()));
        let sms = InboundSms::new("quiet", "+14155550199", NUMBER, "code 1", None).unwrap();
        let outcome = store.ingest("p".into(), sms, Duration::from_secs(600));
        let IngestOutcome::Stored(_) = outcome.await.unwrap() else {
            panic!("not stored");
        };
        let started = std::time::Instant::now();
        while store
            .due_webhook_deliveries(i64::MAX, 10, |_, _, _| Pick::Take)
            .unwrap()
            .due
            .is_empty()
        {
            assert!(started.elapsed() < Duration::from_secs(10), "never queued");
            tokio::time::sleep(poll).await;
        }
        stop.cancel();
        fan_out.await.unwrap();
    }

    /// A message that can no longer be opened would fail every retry: the delivery
    /// ends at once, with the reason in the endpoint's log.
    #[tokio::test]
    async fn an_unreadable_message_ends_its_delivery_with_the_reason_logged() {
        let (hooks, store, _dir) = hooks_with_an_endpoint().await;
        store.start_webhook_cursor(0).await.unwrap();
        let sms = InboundSms::new("broken", "+14155550199", NUMBER, "code 1", None).unwrap();
        let IngestOutcome::Stored(stored) = store
            .ingest("p".into(), sms, Duration::from_secs(600))
            .await
            .unwrap()
        else {
            panic!("not stored");
        };
        let id = stored.message_id;
        let plan = store.plan_webhook_fan_out(0, id).unwrap();
        assert_eq!(store.queue_webhook_deliveries(plan).await.unwrap().1, 1);
        store
            .writer()
            .submit(move |tables| {
                tables.messages.insert(id, b"not a record".as_slice())?;
                Ok(())
            })
            .await
            .unwrap();

        let due = store
            .due_webhook_deliveries(i64::MAX, 10, |_, _, _| Pick::Take)
            .unwrap()
            .due;
        let [delivery] = due[..] else {
            panic!("one delivery queued: {due:?}");
        };
        assert_eq!(hooks.deliver(delivery).await, Ended::Recorded);
        assert!(!store.webhook_delivery_pending(&delivery).unwrap());
        let log = store.webhook(delivery.webhook_id).unwrap().unwrap().log;
        let [entry] = &log[..] else {
            panic!("one log entry: {log:?}");
        };
        assert_eq!(entry.message_id, Some(id));
        assert_eq!(entry.status, None);
        assert_eq!(entry.next_retry_ms, None);
        assert_eq!(
            entry.error.as_deref(),
            Some("gave up: the message cannot be read")
        );
    }

    /// The rows (of owner 7's endpoints) the picker takes from `rows`, in order.
    fn picked(busy: &Busy, rows: &[Key]) -> Vec<Key> {
        let mut pick = busy.picker(Instant::now());
        rows.iter()
            .copied()
            .filter(|&(webhook, message)| pick(7, webhook, message) == Pick::Take)
            .collect()
    }

    #[test]
    fn a_busy_endpoint_is_passed_over_and_others_are_picked() {
        let mut busy = Busy::default();
        let rows = [
            (1, 10),
            (1, 11),
            (1, 12),
            (2, 10),
            (2, 11),
            (2, 12),
            (3, 10),
        ];
        // Nothing in flight: two per endpoint.
        assert_eq!(
            picked(&busy, &rows),
            [(1, 10), (1, 11), (2, 10), (2, 11), (3, 10)]
        );
        // Endpoint 1 has two open already, endpoint 2 one.
        busy.in_flight
            .extend([((1, 10), 7), ((1, 11), 7), ((2, 10), 7)]);
        assert_eq!(picked(&busy, &rows), [(2, 11), (3, 10)]);
    }

    #[test]
    fn an_account_holds_half_the_slots_at_most() {
        let mut busy = Busy::default();
        // Owner 7 has eight endpoints, one delivery open at each.
        busy.in_flight
            .extend((1..=8).map(|endpoint| ((endpoint, 10), 7)));
        let mut pick = busy.picker(Instant::now());
        assert_eq!(pick(7, 1, 11), Pick::Full);
        assert_eq!(
            pick(7, 9, 10),
            Pick::Full,
            "a new endpoint of the same owner"
        );
        assert_eq!(pick(8, 20, 10), Pick::Take, "another owner");
    }

    #[test]
    fn an_unrecorded_delivery_cools_down_and_frees_its_slot() {
        let mut busy = Busy::default();
        let rows = [(1, 10), (1, 11)];
        busy.in_flight.insert((1, 10), 7);
        assert!(busy.ended((1, 10), Some(Ended::Unrecorded)));
        assert!(busy.in_flight.is_empty());
        // Still due in the queue, but skipped until its pause ends.
        assert_eq!(picked(&busy, &rows), [(1, 11)]);
        assert!(busy.cooldown.next_end(Instant::now()).is_some());

        busy.in_flight.insert((1, 10), 7);
        assert!(busy.ended((1, 10), Some(Ended::Recorded)));
        assert_eq!(picked(&busy, &rows), rows);
        // Cut off by shutdown: nothing changed, nothing to pause.
        busy.in_flight.insert((1, 11), 7);
        assert!(!busy.ended((1, 11), None));
        assert_eq!(busy.cooldown.next_end(Instant::now()), None);
    }
}
