//! Users' outbound webhooks: endpoints (URL and secret sealed), their delivery logs, and
//! the durable queue of deliveries still to be made (ids only, never message text).
//!
//! Writer jobs here decode and encode before they change anything: an error from a job
//! rolls back its whole group commit, ingest included (see `writer`).

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable};

use super::records::{
    self, DeliveryLogV1, Inbox, LeaseRecord, LeaseV1, MessageRecord, QueuedDeliveryRecord,
    QueuedDeliveryV1, Role, SealedWebhook, UserRecord, WebhookRecord, WebhookV1,
};
use super::tables::{
    LEASES, MESSAGES, Tables, USERS, WEBHOOK_QUEUE, WEBHOOKS, WEBHOOKS_BY_OWNER, meta,
};
use super::{Store, StoreError, context, meta_u64, next_id, now_ms, read_u64};

/// Delivery attempts kept per endpoint (the log the API shows).
pub const LOG_LEN: usize = 50;

/// Messages looked at per fan-out plan (read outside the writer), so one plan, and the
/// writer job that queues it, stays small.
const FANOUT_BATCH: usize = 256;

/// An endpoint to register; checked by the caller (URL shape, SSRF guard).
#[derive(Clone)]
pub struct NewWebhook {
    pub owner: u64,
    pub url: String,
    pub secret: String,
    pub description: Option<String>,
    /// Endpoints one owner may have.
    pub max_per_owner: usize,
}

/// An endpoint, decrypted.
#[derive(Clone)]
pub struct WebhookView {
    pub id: u64,
    pub owner: u64,
    pub url: String,
    pub secret: String,
    pub description: Option<String>,
    pub created_at_ms: i64,
    /// Oldest first.
    pub log: Vec<DeliveryLogV1>,
}

// By hand: the URL often carries the receiver's token, and the secret signs for us.
impl std::fmt::Debug for WebhookView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookView")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// One queued delivery: its `WEBHOOK_QUEUE` key, state, and the endpoint's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedDelivery {
    pub due_ms: u64,
    pub webhook_id: u64,
    pub message_id: u64,
    pub owner: u64,
    pub state: QueuedDeliveryV1,
}

impl QueuedDelivery {
    fn key(&self) -> (u64, u64, u64) {
        (self.webhook_id, self.due_ms, self.message_id)
    }
}

/// What the dispatcher makes of a due delivery it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Take,
    /// Not now (being sent, or cooling down); the endpoint's later ones may still go.
    Pass,
    /// The endpoint (or its owner) has no room: stop reading this endpoint's queue.
    Full,
}

/// The deliveries for the messages after `after`, up to `cursor`.
#[derive(Debug)]
pub struct FanOut {
    after: u64,
    cursor: u64,
    deliveries: Vec<(u64, u64)>,
}

/// What the dispatcher sees of the queue.
#[derive(Debug, Default)]
pub struct DueDeliveries {
    /// Due now, earliest first (a batch at most).
    pub due: Vec<QueuedDelivery>,
    /// When the next one not yet due is, if any (unix ms).
    pub next_due_ms: Option<u64>,
}

fn webhook_context(id: u64) -> Vec<u8> {
    context("webhook", id)
}

fn decode_webhook(bytes: &[u8]) -> Result<WebhookV1, StoreError> {
    let WebhookRecord::V1(record) = records::decode(bytes)?;
    Ok(record)
}

fn unix_ms(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

impl Store {
    /// Registers an endpoint; `None` when the owner has as many as allowed.
    pub async fn create_webhook(&self, new: NewWebhook) -> Result<Option<u64>, StoreError> {
        let keys = Arc::clone(&self.keys);
        let private = records::encode(&SealedWebhook::V1 {
            url: new.url,
            secret: new.secret,
            description: new.description,
        })?;
        self.writer
            .submit(move |tables| {
                let owned = tables
                    .webhooks_by_owner
                    .range((new.owner, 0)..=(new.owner, u64::MAX))?
                    .count();
                if owned >= new.max_per_owner {
                    return Ok(None);
                }
                // Sealed under the id `next_id` hands out below, before anything changes.
                let id = meta_u64(&tables.meta, meta::NEXT_WEBHOOK_ID)? + 1;
                let record = records::encode(&WebhookRecord::V1(WebhookV1 {
                    owner: new.owner,
                    created_at_ms: now_ms(),
                    sealed: keys.seal(&webhook_context(id), &private)?,
                    log: Vec::new(),
                }))?;
                next_id(&mut tables.meta, meta::NEXT_WEBHOOK_ID)?;
                tables.webhooks.insert(id, record.as_slice())?;
                tables.webhooks_by_owner.insert((new.owner, id), ())?;
                Ok(Some(id))
            })
            .await
    }

    pub fn webhook(&self, id: u64) -> Result<Option<WebhookView>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(value) = txn.open_table(WEBHOOKS)?.get(id)? else {
            return Ok(None);
        };
        self.open_webhook(id, decode_webhook(value.value())?)
            .map(Some)
    }

    /// An owner's endpoints, oldest first.
    pub fn webhooks_of(&self, owner: u64) -> Result<Vec<WebhookView>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(WEBHOOKS)?;
        let mut found = Vec::new();
        for entry in txn
            .open_table(WEBHOOKS_BY_OWNER)?
            .range((owner, 0)..=(owner, u64::MAX))?
        {
            let id = entry?.0.value().1;
            if let Some(value) = table.get(id)? {
                found.push(self.open_webhook(id, decode_webhook(value.value())?)?);
            }
        }
        Ok(found)
    }

    fn open_webhook(&self, id: u64, record: WebhookV1) -> Result<WebhookView, StoreError> {
        let private = self.keys.open(&webhook_context(id), &record.sealed)?;
        let SealedWebhook::V1 {
            url,
            secret,
            description,
        } = records::decode(&private)?;
        Ok(WebhookView {
            id,
            owner: record.owner,
            url,
            secret,
            description,
            created_at_ms: record.created_at_ms,
            log: record.log,
        })
    }

    /// Removes an endpoint and its queued deliveries; false if it did not exist.
    pub async fn delete_webhook(&self, id: u64) -> Result<bool, StoreError> {
        self.writer
            .submit(move |tables| remove_webhooks(tables, &[id]).map(|removed| removed > 0))
            .await
    }

    /// The deliveries to queue for the messages stored after `after`, up to `upto` (a
    /// batch at most): one per endpoint of the holder of the message's lease. Read
    /// outside the writer; [`Self::queue_webhook_deliveries`] stores it.
    pub fn plan_webhook_fan_out(&self, after: u64, upto: u64) -> Result<FanOut, StoreError> {
        let txn = self.db.begin_read()?;
        let messages = txn.open_table(MESSAGES)?;
        let leases = txn.open_table(LEASES)?;
        let by_owner = txn.open_table(WEBHOOKS_BY_OWNER)?;
        let users = txn.open_table(USERS)?;
        let mut seen = 0;
        let mut last = after;
        let mut deliveries = Vec::new();
        for entry in messages
            .range(after.saturating_add(1)..=upto)?
            .take(FANOUT_BATCH)
        {
            let (id, value) = entry?;
            let message_id = id.value();
            (seen, last) = (seen + 1, message_id);
            // A message belongs to the holder of its lease inbox when it arrived, so a
            // later holder of the number never gets it; public and unrouted inboxes
            // have no holder to deliver to.
            let Some(lease_id) = message_lease(value.value(), message_id) else {
                continue;
            };
            let Some(holder) = leases
                .get(lease_id)?
                .and_then(|value| lease_of(value.value(), lease_id))
                .map(|lease| lease.holder)
            else {
                continue;
            };
            // An account an admin disabled, or demoted to guest (who may not register
            // webhooks), keeps its endpoints but they receive nothing meanwhile.
            let receives = users
                .get(holder)?
                .is_some_and(|value| may_receive(value.value(), holder));
            if !receives {
                continue;
            }
            for endpoint in by_owner.range((holder, 0)..=(holder, u64::MAX))? {
                deliveries.push((endpoint?.0.value().1, message_id));
            }
        }
        // Every message up to `upto` is committed (ids are handed out and committed in
        // order), so a short batch means all of them were seen.
        let cursor = if seen == FANOUT_BATCH { last } else { upto };
        Ok(FanOut {
            after,
            cursor,
            deliveries,
        })
    }

    /// Queues a planned fan-out and moves the cursor in the same commit, so a restart
    /// neither skips nor repeats a message; endpoints deleted since the plan are left
    /// out. Returns the cursor (unchanged if the plan started elsewhere) and how many
    /// deliveries were queued.
    pub async fn queue_webhook_deliveries(&self, plan: FanOut) -> Result<(u64, usize), StoreError> {
        let now = now_ms();
        let state = records::encode(&QueuedDeliveryRecord::V1(QueuedDeliveryV1 {
            attempts: 0,
            queued_at_ms: now,
        }))?;
        self.writer
            .submit(move |tables| {
                let stored = meta_u64(&tables.meta, meta::WEBHOOK_CURSOR)?;
                if stored != plan.after {
                    return Ok((stored, 0));
                }
                let mut queued = 0;
                for (webhook_id, message_id) in plan.deliveries {
                    if tables.webhooks.get(webhook_id)?.is_none() {
                        continue;
                    }
                    tables
                        .webhook_queue
                        .insert((webhook_id, unix_ms(now), message_id), state.as_slice())?;
                    queued += 1;
                }
                tables
                    .meta
                    .insert(meta::WEBHOOK_CURSOR, plan.cursor.to_le_bytes().as_slice())?;
                Ok((plan.cursor, queued))
            })
            .await
    }

    /// Starts the fan-out at `latest` (the newest message at start) unless it has a
    /// cursor: webhooks get the messages that arrive once they exist, not the backlog.
    pub async fn start_webhook_cursor(&self, latest: u64) -> Result<u64, StoreError> {
        self.writer
            .submit(move |tables| {
                if let Some(stored) = tables.meta.get(meta::WEBHOOK_CURSOR)? {
                    return Ok(read_u64(stored.value()));
                }
                tables
                    .meta
                    .insert(meta::WEBHOOK_CURSOR, latest.to_le_bytes().as_slice())?;
                Ok(latest)
            })
            .await
    }

    /// The deliveries due at `now_ms` that `pick(owner, webhook id, message id)` takes,
    /// earliest first, at most `limit`. The queue is walked endpoint by endpoint, each
    /// read in due order until `pick` says it is full, so the cost is one look-up per
    /// endpoint with anything queued (not per endpoint registered), however long a full
    /// endpoint's backlog; what `pick` passes over does not count against the batch.
    pub fn due_webhook_deliveries(
        &self,
        now_ms: i64,
        limit: usize,
        mut pick: impl FnMut(u64, u64, u64) -> Pick,
    ) -> Result<DueDeliveries, StoreError> {
        let now = unix_ms(now_ms);
        let txn = self.db.begin_read()?;
        let queue = txn.open_table(WEBHOOK_QUEUE)?;
        let webhooks = txn.open_table(WEBHOOKS)?;
        let mut found = DueDeliveries::default();
        let mut next_endpoint = Some(0);
        while let Some(from) = next_endpoint {
            let Some(first) = queue.range((from, 0, 0)..)?.next() else {
                break;
            };
            let webhook_id = first?.0.value().0;
            next_endpoint = webhook_id.checked_add(1);
            let owner = match webhooks.get(webhook_id)? {
                Some(value) => owner_of_record(value.value(), webhook_id),
                // Deleting an endpoint empties its queue; nothing to send to meanwhile.
                None => continue,
            };
            for entry in queue.range((webhook_id, 0, 0)..=(webhook_id, u64::MAX, u64::MAX))? {
                let (key, value) = entry?;
                let (_, due_ms, message_id) = key.value();
                if due_ms > now {
                    found.next_due_ms = Some(found.next_due_ms.map_or(due_ms, |n| n.min(due_ms)));
                    break;
                }
                match pick(owner, webhook_id, message_id) {
                    Pick::Take => {}
                    Pick::Pass => continue,
                    Pick::Full => break,
                }
                let QueuedDeliveryRecord::V1(state) = records::decode(value.value())?;
                found.due.push(QueuedDelivery {
                    due_ms,
                    webhook_id,
                    message_id,
                    owner,
                    state,
                });
            }
        }
        // Oldest first across endpoints, so a batch cut short keeps the longest waiting.
        found
            .due
            .sort_by_key(|delivery| (delivery.due_ms, delivery.message_id));
        found.due.truncate(limit);
        Ok(found)
    }

    /// Whether `owner`'s endpoints may be sent a message of `inbox` now: by the rule for
    /// reading it, the message's lease is still running and held by `owner`, and the
    /// account is enabled and not a guest.
    pub fn may_deliver_now(&self, owner: u64, inbox: Inbox) -> Result<bool, StoreError> {
        let Inbox::Lease(lease_id) = inbox else {
            return Ok(false);
        };
        let txn = self.db.begin_read()?;
        let holder = txn
            .open_table(LEASES)?
            .get(lease_id)?
            .and_then(|value| lease_of(value.value(), lease_id))
            .filter(|lease| lease.is_running(now_ms()))
            .map(|lease| lease.holder);
        Ok(holder == Some(owner)
            && txn
                .open_table(USERS)?
                .get(owner)?
                .is_some_and(|value| may_receive(value.value(), owner)))
    }

    /// Whether `delivery` is still queued as it was read (not yet made by someone else).
    pub fn webhook_delivery_pending(&self, delivery: &QueuedDelivery) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(WEBHOOK_QUEUE)?
            .get(delivery.key())?
            .is_some())
    }

    /// Ends a queued delivery: its attempt (if one was made) goes in the endpoint's log,
    /// and it is re-queued for `retry_at_ms` or leaves the queue.
    pub async fn finish_webhook_delivery(
        &self,
        delivery: QueuedDelivery,
        entry: Option<DeliveryLogV1>,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let retry = retry_at_ms
            .map(|at| {
                let state = QueuedDeliveryV1 {
                    attempts: delivery.state.attempts + 1,
                    ..delivery.state
                };
                records::encode(&QueuedDeliveryRecord::V1(state)).map(|bytes| {
                    (
                        (delivery.webhook_id, unix_ms(at), delivery.message_id),
                        bytes,
                    )
                })
            })
            .transpose()?;
        self.writer
            .submit(move |tables| {
                let log = entry
                    .map(|entry| logged(tables, delivery.webhook_id, entry))
                    .transpose()?
                    .flatten();
                if let Some(record) = log {
                    tables
                        .webhooks
                        .insert(delivery.webhook_id, record.as_slice())?;
                }
                tables.webhook_queue.remove(delivery.key())?;
                if let Some((key, state)) = retry
                    && tables.webhooks.get(delivery.webhook_id)?.is_some()
                {
                    tables.webhook_queue.insert(key, state.as_slice())?;
                }
                Ok(())
            })
            .await
    }

    /// Records a "send test" attempt in the endpoint's log.
    pub async fn record_webhook_test(
        &self,
        webhook_id: u64,
        entry: DeliveryLogV1,
    ) -> Result<(), StoreError> {
        self.writer
            .submit(move |tables| {
                if let Some(record) = logged(tables, webhook_id, entry)? {
                    tables.webhooks.insert(webhook_id, record.as_slice())?;
                }
                Ok(())
            })
            .await
    }
}

/// The endpoint's record with `entry` appended to its log (the newest [`LOG_LEN`]
/// kept), encoded; `None` if the endpoint is gone.
fn logged(
    tables: &Tables<'_>,
    webhook_id: u64,
    entry: DeliveryLogV1,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(mut record) = tables
        .webhooks
        .get(webhook_id)?
        .map(|value| decode_webhook(value.value()))
        .transpose()?
    else {
        return Ok(None);
    };
    record.log.push(entry);
    let excess = record.log.len().saturating_sub(LOG_LEN);
    record.log.drain(..excess);
    records::encode(&WebhookRecord::V1(record)).map(Some)
}

/// The owner in an endpoint record; 0 (no account) if the record cannot be read, so
/// its deliveries are still picked and end with the reason in the log instead of
/// stopping everyone's.
fn owner_of_record(bytes: &[u8], webhook_id: u64) -> u64 {
    match decode_webhook(bytes) {
        Ok(record) => record.owner,
        Err(error) => {
            tracing::error!(%error, webhook_id, "a webhook endpoint record cannot be read");
            0
        }
    }
}

/// Removes endpoints with their queued deliveries; returns how many existed.
fn remove_webhooks(tables: &mut Tables<'_>, ids: &[u64]) -> Result<usize, StoreError> {
    let mut owners = Vec::new();
    for &id in ids {
        if let Some(value) = tables.webhooks.get(id)? {
            owners.push((decode_webhook(value.value())?.owner, id));
        }
    }
    let removed = owners.len();
    for (owner, id) in owners {
        tables.webhooks.remove(id)?;
        tables.webhooks_by_owner.remove((owner, id))?;
    }
    for &id in ids {
        tables
            .webhook_queue
            .retain_in((id, 0, 0)..=(id, u64::MAX, u64::MAX), |_, _| false)?;
    }
    Ok(removed)
}

/// Schema 3 → 4: moves the queue from due-time-first keys to endpoint-first keys.
pub(super) fn requeue_by_endpoint(
    txn: &redb::WriteTransaction,
    tables: &mut Tables<'_>,
) -> Result<(), StoreError> {
    let legacy: redb::TableDefinition<(u64, u64, u64), &[u8]> =
        redb::TableDefinition::new("webhook_queue");
    {
        let old = txn.open_table(legacy)?;
        for entry in old.iter()? {
            let (key, value) = entry?;
            let (due_ms, webhook_id, message_id) = key.value();
            // Rows of a deleted endpoint (none are expected) would never be read again.
            if tables.webhooks.get(webhook_id)?.is_none() {
                continue;
            }
            tables
                .webhook_queue
                .insert((webhook_id, due_ms, message_id), value.value())?;
        }
    }
    txn.delete_table(legacy)?;
    Ok(())
}

/// Removes every endpoint of an account (when the account is deleted).
pub(super) fn remove_webhooks_of(tables: &mut Tables<'_>, owner: u64) -> Result<(), StoreError> {
    let mut ids = Vec::new();
    for entry in tables
        .webhooks_by_owner
        .range((owner, 0)..=(owner, u64::MAX))?
    {
        ids.push(entry?.0.value().1);
    }
    remove_webhooks(tables, &ids).map(drop)
}

/// The lease a stored message arrived in, if any. An undecodable record is skipped
/// (and logged) rather than stopping every user's webhooks at it.
fn message_lease(bytes: &[u8], message_id: u64) -> Option<u64> {
    match records::decode::<MessageRecord>(bytes).map(MessageRecord::into_latest) {
        Ok(record) => match record.inbox {
            Inbox::Lease(lease_id) => Some(lease_id),
            _ => None,
        },
        Err(error) => {
            tracing::error!(%error, message_id, "webhook fan-out skips an unreadable message");
            None
        }
    }
}

/// Whether an account's webhooks receive its messages: enabled, and not a guest.
fn may_receive(bytes: &[u8], user_id: u64) -> bool {
    match records::decode::<UserRecord>(bytes).map(UserRecord::into_latest) {
        Ok(user) => !user.disabled && user.role != Role::Guest,
        Err(error) => {
            tracing::error!(%error, user_id, "webhook fan-out skips an unreadable account");
            false
        }
    }
}

/// A lease record, or `None` (logged) when it cannot be read: its messages then go to
/// nobody's endpoints.
fn lease_of(bytes: &[u8], lease_id: u64) -> Option<LeaseV1> {
    match records::decode::<LeaseRecord>(bytes) {
        Ok(lease) => Some(lease.into_latest()),
        Err(error) => {
            tracing::error!(%error, lease_id, "webhooks skip an unreadable lease");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::InboundSms;
    use crate::store::testing::{lease, store, user};
    use crate::store::{IngestOutcome, Role, SeedNumber};

    const NUMBER: &str = "+12025550101";
    const URL: &str = "https://hooks.example/receive?token=tok-4242";

    /// Every row of the queue, whoever's endpoint it is for.
    fn queue_rows(store: &Store) -> Vec<(u64, u64, u64)> {
        let txn = store.db.begin_read().unwrap();
        let queue = txn.open_table(WEBHOOK_QUEUE).unwrap();
        queue
            .iter()
            .unwrap()
            .map(|entry| entry.unwrap().0.value())
            .collect()
    }

    async fn hook(store: &Store, owner: u64) -> u64 {
        store
            .create_webhook(NewWebhook {
                owner,
                url: URL.into(),
                secret: "whsec_c2VjcmV0".into(),
                description: None,
                max_per_owner: 2,
            })
            .await
            .unwrap()
            .unwrap()
    }

    async fn receive(store: &Store, id: &str) -> u64 {
        let sms = InboundSms::new(id, "+14155550199", NUMBER, "code 1234", None).unwrap();
        match store
            .ingest("p".into(), sms, Duration::from_secs(600))
            .await
            .unwrap()
        {
            IngestOutcome::Stored(message) => message.message_id,
            other => panic!("{other:?}"),
        }
    }

    /// A queued delivery may go out only while its owner could read the message.
    #[tokio::test]
    async fn a_message_is_deliverable_only_while_its_owner_may_read_it() {
        let (store, _dir) = store();
        store
            .ensure_numbers(vec![SeedNumber::new("p", NUMBER, None)])
            .await
            .unwrap();
        let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
        lease(&store, alice).await;
        let message = store.message(receive(&store, "m1").await).unwrap().unwrap();
        assert!(store.may_deliver_now(alice, message.inbox).unwrap());
        assert!(
            !store.may_deliver_now(bob, message.inbox).unwrap(),
            "not bob's"
        );

        store.update_user(alice, None, Some(true)).await.unwrap();
        assert!(
            !store.may_deliver_now(alice, message.inbox).unwrap(),
            "disabled"
        );
        store.update_user(alice, None, Some(false)).await.unwrap();
        assert!(store.may_deliver_now(alice, message.inbox).unwrap());

        let crate::store::Inbox::Lease(lease_id) = message.inbox else {
            panic!("a leased number's message is the lease's")
        };
        store
            .end_lease(
                lease_id,
                Some(alice),
                crate::store::LeaseEnd::Released,
                Duration::ZERO,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(
            !store.may_deliver_now(alice, message.inbox).unwrap(),
            "lease over"
        );
    }

    #[tokio::test]
    async fn messages_are_queued_for_their_holders_endpoints_once() {
        let (store, dir) = store();
        store
            .ensure_numbers(vec![SeedNumber::new("p", NUMBER, None)])
            .await
            .unwrap();
        let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
        assert_eq!(store.start_webhook_cursor(0).await.unwrap(), 0);
        // A message before any lease: nobody's.
        let idle = receive(&store, "idle").await;
        let alices = hook(&store, alice).await;
        let bobs = hook(&store, bob).await;
        lease(&store, alice).await;
        let leased = receive(&store, "leased").await;
        let plan = store.plan_webhook_fan_out(0, leased).unwrap();
        assert_eq!(plan.deliveries, [(alices, leased)]);
        assert_eq!(
            store.queue_webhook_deliveries(plan).await.unwrap(),
            (leased, 1)
        );
        // Already looked at: a plan from the old cursor queues nothing twice.
        let stale = store.plan_webhook_fan_out(0, leased).unwrap();
        assert_eq!(
            store.queue_webhook_deliveries(stale).await.unwrap(),
            (leased, 0)
        );
        let queue = store
            .due_webhook_deliveries(now_ms(), 10, |_, _, _| Pick::Take)
            .unwrap();
        assert_eq!(queue.due.len(), 1);
        let queued = queue.due[0];
        assert_eq!((queued.webhook_id, queued.message_id), (alices, leased));
        assert_ne!(queued.message_id, idle);
        assert_ne!(queued.webhook_id, bobs);

        // A failed attempt moves it to its retry time.
        let entry = DeliveryLogV1 {
            message_id: Some(leased),
            at_ms: now_ms(),
            attempt: 1,
            status: Some(500),
            error: None,
            next_retry_ms: Some(now_ms() + 60_000),
        };
        store
            .finish_webhook_delivery(queued, Some(entry.clone()), entry.next_retry_ms)
            .await
            .unwrap();
        assert!(!store.webhook_delivery_pending(&queued).unwrap());
        let later = store
            .due_webhook_deliveries(now_ms(), 10, |_, _, _| Pick::Take)
            .unwrap();
        assert!(later.due.is_empty());
        assert!(later.next_due_ms.is_some());
        let retry = store
            .due_webhook_deliveries(now_ms() + 120_000, 10, |_, _, _| Pick::Take)
            .unwrap()
            .due[0];
        assert_eq!(retry.state.attempts, 1);
        assert_eq!(store.webhook(alices).unwrap().unwrap().log, [entry]);

        // Planned before the endpoint went: nothing is queued for it.
        let next = receive(&store, "next").await;
        let plan = store.plan_webhook_fan_out(leased, next).unwrap();
        assert!(store.delete_webhook(alices).await.unwrap());
        assert_eq!(
            store.queue_webhook_deliveries(plan).await.unwrap(),
            (next, 0)
        );
        let alices = hook(&store, alice).await;
        let last = receive(&store, "last").await;
        let plan = store.plan_webhook_fan_out(next, last).unwrap();
        assert_eq!(
            store.queue_webhook_deliveries(plan).await.unwrap(),
            (last, 1)
        );

        // Deleting the account takes its endpoints and their queue with it.
        store.delete_user(alice, Duration::ZERO).await.unwrap();
        assert!(store.webhook(alices).unwrap().is_none());
        assert!(store.webhooks_of(alice).unwrap().is_empty());
        assert!(queue_rows(&store).is_empty());
        assert_eq!(store.webhooks_of(bob).unwrap().len(), 1);
        // The URL is sealed: its token is nowhere on disk.
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(file.unwrap().path()).unwrap_or_default();
            assert!(!bytes.windows(8).any(|window| window == b"tok-4242"));
        }
    }

    #[tokio::test]
    async fn disabled_or_guest_accounts_receive_nothing_until_restored() {
        let (store, _dir) = store();
        store
            .ensure_numbers(vec![SeedNumber::new("p", NUMBER, None)])
            .await
            .unwrap();
        let alice = user(&store, "alice").await;
        store.start_webhook_cursor(0).await.unwrap();
        let endpoint = hook(&store, alice).await;
        lease(&store, alice).await;
        let planned = |after, upto| store.plan_webhook_fan_out(after, upto).unwrap().deliveries;
        store.update_user(alice, None, Some(true)).await.unwrap();
        let while_disabled = receive(&store, "disabled").await;
        assert!(planned(0, while_disabled).is_empty());
        store
            .update_user(alice, Some(Role::Guest), Some(false))
            .await
            .unwrap();
        let as_guest = receive(&store, "guest").await;
        assert!(planned(while_disabled, as_guest).is_empty());
        store
            .update_user(alice, Some(Role::User), None)
            .await
            .unwrap();
        let restored = receive(&store, "restored").await;
        assert_eq!(planned(as_guest, restored), [(endpoint, restored)]);
    }

    #[tokio::test]
    async fn an_owner_has_at_most_the_allowed_number() {
        let (store, _dir) = store();
        let owner = user(&store, "carol").await;
        let first = hook(&store, owner).await;
        hook(&store, owner).await;
        let third = NewWebhook {
            owner,
            url: URL.into(),
            secret: "whsec_c2VjcmV0".into(),
            description: None,
            max_per_owner: 2,
        };
        assert_eq!(store.create_webhook(third.clone()).await.unwrap(), None);
        assert!(store.delete_webhook(first).await.unwrap());
        assert!(!store.delete_webhook(first).await.unwrap());
        assert!(store.create_webhook(third).await.unwrap().is_some());
    }

    /// Queues a delivery of `message_id` to `webhook_id`, due at `due_ms`, directly.
    async fn queue_at(store: &Store, webhook_id: u64, due_ms: u64, message_id: u64) {
        let state = records::encode(&QueuedDeliveryRecord::V1(QueuedDeliveryV1 {
            attempts: 0,
            queued_at_ms: 0,
        }))
        .unwrap();
        store
            .writer
            .submit(move |tables| {
                tables
                    .webhook_queue
                    .insert((webhook_id, due_ms, message_id), state.as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_full_endpoints_backlog_is_not_read_and_hides_nobody() {
        let (store, _dir) = store();
        let alice = user(&store, "alice").await;
        let bob = user(&store, "bob").await;
        let (alices, bobs) = (hook(&store, alice).await, hook(&store, bob).await);
        // Alice's backlog is older than Bob's one delivery and longer than a batch.
        for message_id in 1..=600 {
            queue_at(&store, alices, 1_000 + message_id, message_id).await;
        }
        queue_at(&store, bobs, 5_000, 9).await;
        queue_at(&store, bobs, 90_000, 10).await;

        let mut read = Vec::new();
        let due = store
            .due_webhook_deliveries(10_000, 256, |owner, webhook_id, message_id| {
                read.push((owner, webhook_id, message_id));
                if webhook_id == alices {
                    Pick::Full
                } else {
                    Pick::Take
                }
            })
            .unwrap();
        assert_eq!(read, [(alice, alices, 1), (bob, bobs, 9)]);
        let taken: Vec<_> = due
            .due
            .iter()
            .map(|d| (d.owner, d.webhook_id, d.message_id))
            .collect();
        assert_eq!(taken, [(bob, bobs, 9)]);
        assert_eq!(due.next_due_ms, Some(90_000));

        // With room everywhere: oldest first across endpoints, cut at the batch size.
        let due = store
            .due_webhook_deliveries(10_000, 3, |_, _, _| Pick::Take)
            .unwrap();
        let taken: Vec<_> = due.due.iter().map(|d| d.message_id).collect();
        assert_eq!(taken, [1, 2, 3]);
        // Passed-over rows do not end the endpoint's read.
        let due = store
            .due_webhook_deliveries(10_000, 256, |_, webhook_id, message_id| {
                match (webhook_id == alices, message_id) {
                    (true, 1 | 2) => Pick::Pass,
                    (true, 4..) => Pick::Full,
                    _ => Pick::Take,
                }
            })
            .unwrap();
        let taken: Vec<_> = due.due.iter().map(|d| d.message_id).collect();
        assert_eq!(taken, [3, 9]);
    }

    #[tokio::test]
    async fn a_schema_3_queue_is_moved_to_endpoint_first_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::store::STORE_FILE);
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut tables = Tables::open(&txn).unwrap();
                tables
                    .meta
                    .insert(meta::SCHEMA_VERSION, 3u64.to_le_bytes().as_slice())
                    .unwrap();
                let legacy: redb::TableDefinition<(u64, u64, u64), &[u8]> =
                    redb::TableDefinition::new("webhook_queue");
                let mut old = txn.open_table(legacy).unwrap();
                // (due, webhook, message)
                old.insert((2_000, 7, 40), b"state-a".as_slice()).unwrap();
                old.insert((1_000, 8, 41), b"state-b".as_slice()).unwrap();
                // Endpoint 9 is gone: its row is left behind.
                old.insert((500, 9, 42), b"state-c".as_slice()).unwrap();
                for endpoint in [7, 8] {
                    tables
                        .webhooks
                        .insert(endpoint, b"endpoint".as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let master = crate::store::crypto::MasterKey::parse(&"ab".repeat(32)).unwrap();
        let (store, _writer) = Store::open(dir.path(), &master).unwrap();
        assert_eq!(queue_rows(&store), [(7, 2_000, 40), (8, 1_000, 41)]);
        let txn = store.db.begin_read().unwrap();
        let schema = txn.open_table(super::super::tables::META).unwrap();
        let schema = schema.get(meta::SCHEMA_VERSION).unwrap().unwrap();
        assert_eq!(schema.value(), super::super::SCHEMA_VERSION.to_le_bytes());
        let legacy: redb::TableDefinition<(u64, u64, u64), &[u8]> =
            redb::TableDefinition::new("webhook_queue");
        assert!(txn.open_table(legacy).is_err(), "the old table is gone");
    }
}
