//! Users' outbound webhooks: endpoints (URL and secret sealed), their delivery logs, and
//! the durable queue of deliveries still to be made (ids only, never message text).

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable};

use super::records::{
    self, DeliveryLogV1, Inbox, LeaseRecord, MessageRecord, QueuedDeliveryRecord, QueuedDeliveryV1,
    SealedWebhook, WebhookRecord, WebhookV1,
};
use super::tables::{META, Tables, WEBHOOK_QUEUE, WEBHOOKS, WEBHOOKS_BY_OWNER, meta};
use super::{Store, StoreError, context, meta_u64, next_id, now_ms, read_u64};

/// Delivery attempts kept per endpoint (the log the API shows).
pub const LOG_LEN: usize = 50;

/// Messages looked at per fan-out job, so one job never holds the writer for long.
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

/// One queued delivery: its `WEBHOOK_QUEUE` key and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedDelivery {
    pub due_ms: u64,
    pub webhook_id: u64,
    pub message_id: u64,
    pub state: QueuedDeliveryV1,
}

impl QueuedDelivery {
    fn key(&self) -> (u64, u64, u64) {
        (self.due_ms, self.webhook_id, self.message_id)
    }
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
                let id = next_id(&mut tables.meta, meta::NEXT_WEBHOOK_ID)?;
                let record = WebhookRecord::V1(WebhookV1 {
                    owner: new.owner,
                    created_at_ms: now_ms(),
                    sealed: keys.seal(&webhook_context(id), &private)?,
                    log: Vec::new(),
                });
                tables
                    .webhooks
                    .insert(id, records::encode(&record)?.as_slice())?;
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

    /// Queues a delivery to every endpoint of the lease holder for each message stored
    /// after the fan-out cursor, up to `upto` (a batch at most), and moves the cursor in
    /// the same commit, so no message is queued twice or skipped across a restart.
    /// Returns the cursor reached and how many deliveries were queued.
    pub async fn queue_webhook_deliveries(&self, upto: u64) -> Result<(u64, usize), StoreError> {
        self.writer
            .submit(move |tables| fan_out(tables, upto))
            .await
    }

    /// The fan-out cursor: the newest message id already looked at, if ever recorded.
    pub fn webhook_cursor(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        Ok(table
            .get(meta::WEBHOOK_CURSOR)?
            .map(|value| read_u64(value.value())))
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

    /// The deliveries due at `now_ms`, earliest first, at most `limit`.
    pub fn due_webhook_deliveries(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<DueDeliveries, StoreError> {
        let txn = self.db.begin_read()?;
        let mut found = DueDeliveries::default();
        for entry in txn.open_table(WEBHOOK_QUEUE)?.iter()? {
            let (key, value) = entry?;
            let (due_ms, webhook_id, message_id) = key.value();
            if due_ms > unix_ms(now_ms) {
                found.next_due_ms = Some(due_ms);
                break;
            }
            if found.due.len() == limit {
                break;
            }
            let QueuedDeliveryRecord::V1(state) = records::decode(value.value())?;
            found.due.push(QueuedDelivery {
                due_ms,
                webhook_id,
                message_id,
                state,
            });
        }
        Ok(found)
    }

    /// Whether `delivery` is still queued as it was read (not yet made by someone else).
    pub fn webhook_delivery_pending(&self, delivery: &QueuedDelivery) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn
            .open_table(WEBHOOK_QUEUE)?
            .get(delivery.key())?
            .is_some())
    }

    /// Records an attempt at a queued delivery: appended to the endpoint's log, and the
    /// delivery re-queued for `retry_at_ms` or ended. Nothing happens when the endpoint
    /// is gone (deleting it emptied its queue).
    pub async fn record_webhook_delivery(
        &self,
        delivery: QueuedDelivery,
        entry: DeliveryLogV1,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.writer
            .submit(move |tables| {
                if !append_log(tables, delivery.webhook_id, entry)? {
                    return Ok(());
                }
                tables.webhook_queue.remove(delivery.key())?;
                if let Some(retry_at_ms) = retry_at_ms {
                    let state = QueuedDeliveryV1 {
                        attempts: delivery.state.attempts + 1,
                        ..delivery.state
                    };
                    tables.webhook_queue.insert(
                        (
                            unix_ms(retry_at_ms),
                            delivery.webhook_id,
                            delivery.message_id,
                        ),
                        records::encode(&QueuedDeliveryRecord::V1(state))?.as_slice(),
                    )?;
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
            .submit(move |tables| append_log(tables, webhook_id, entry).map(drop))
            .await
    }
}

/// Appends to an endpoint's log, keeping the newest [`LOG_LEN`]; false if it is gone.
fn append_log(
    tables: &mut Tables<'_>,
    webhook_id: u64,
    entry: DeliveryLogV1,
) -> Result<bool, StoreError> {
    let Some(mut record) = tables
        .webhooks
        .get(webhook_id)?
        .map(|value| decode_webhook(value.value()))
        .transpose()?
    else {
        return Ok(false);
    };
    record.log.push(entry);
    let excess = record.log.len().saturating_sub(LOG_LEN);
    record.log.drain(..excess);
    tables.webhooks.insert(
        webhook_id,
        records::encode(&WebhookRecord::V1(record))?.as_slice(),
    )?;
    Ok(true)
}

/// Removes endpoints with their queued deliveries; returns how many existed.
fn remove_webhooks(tables: &mut Tables<'_>, ids: &[u64]) -> Result<usize, StoreError> {
    let mut removed = 0;
    for &id in ids {
        let Some(record) = tables
            .webhooks
            .remove(id)?
            .map(|value| decode_webhook(value.value()))
            .transpose()?
        else {
            continue;
        };
        tables.webhooks_by_owner.remove((record.owner, id))?;
        removed += 1;
    }
    if removed > 0 {
        // The queue is ordered by due time, so this looks at all of it; it is short
        // (deliveries leave it once made) and endpoints are rarely deleted.
        tables
            .webhook_queue
            .retain(|(_, webhook_id, _), _| !ids.contains(&webhook_id))?;
    }
    Ok(removed)
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

/// The fan-out job: a message belongs to the holder of its lease inbox when it arrived,
/// so later holders of the number never get it; public and unrouted inboxes have no
/// holder to deliver to.
fn fan_out(tables: &mut Tables<'_>, upto: u64) -> Result<(u64, usize), StoreError> {
    let start = meta_u64(&tables.meta, meta::WEBHOOK_CURSOR)?;
    if start >= upto {
        return Ok((start, 0));
    }
    let mut inboxes = Vec::new();
    for entry in tables
        .messages
        .range(start.saturating_add(1)..=upto)?
        .take(FANOUT_BATCH)
    {
        let (id, value) = entry?;
        let record = records::decode::<MessageRecord>(value.value())?.into_latest();
        inboxes.push((id.value(), record.inbox));
    }
    // Every message up to `upto` is committed (ids are handed out and committed in
    // order), so a short batch means all of them were seen.
    let cursor = match inboxes.last() {
        Some(&(last, _)) if inboxes.len() == FANOUT_BATCH => last,
        _ => upto,
    };
    let now = now_ms();
    let state = records::encode(&QueuedDeliveryRecord::V1(QueuedDeliveryV1 {
        attempts: 0,
        queued_at_ms: now,
    }))?;
    let mut queued = 0;
    for (message_id, inbox) in inboxes {
        let Inbox::Lease(lease_id) = inbox else {
            continue;
        };
        let Some(holder) = tables
            .leases
            .get(lease_id)?
            .map(|value| records::decode::<LeaseRecord>(value.value()))
            .transpose()?
            .map(|lease| lease.into_latest().holder)
        else {
            continue;
        };
        let mut endpoints = Vec::new();
        for entry in tables
            .webhooks_by_owner
            .range((holder, 0)..=(holder, u64::MAX))?
        {
            endpoints.push(entry?.0.value().1);
        }
        for webhook_id in endpoints {
            tables
                .webhook_queue
                .insert((unix_ms(now), webhook_id, message_id), state.as_slice())?;
            queued += 1;
        }
    }
    tables
        .meta
        .insert(meta::WEBHOOK_CURSOR, cursor.to_le_bytes().as_slice())?;
    Ok((cursor, queued))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::InboundSms;
    use crate::store::testing::store;
    use crate::store::{IngestOutcome, LeaseRequest, Role, SeedNumber};

    const NUMBER: &str = "+12025550101";
    const URL: &str = "https://hooks.example/receive?token=tok-4242";

    async fn user(store: &Store, name: &str) -> u64 {
        store
            .create_user(name, "password1", Role::User)
            .await
            .unwrap()
            .unwrap()
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
        store
            .lease_number(LeaseRequest {
                holder: alice,
                number_id: None,
                provider: None,
                prefix: None,
                duration: Duration::from_secs(600),
                max_active: 1,
            })
            .await
            .unwrap()
            .unwrap();
        let leased = receive(&store, "leased").await;
        assert_eq!(
            store.queue_webhook_deliveries(leased).await.unwrap(),
            (leased, 1)
        );
        // Already looked at: nothing is queued twice.
        assert_eq!(
            store.queue_webhook_deliveries(leased).await.unwrap(),
            (leased, 0)
        );
        let queue = store.due_webhook_deliveries(now_ms(), 10).unwrap();
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
            .record_webhook_delivery(queued, entry.clone(), entry.next_retry_ms)
            .await
            .unwrap();
        assert!(!store.webhook_delivery_pending(&queued).unwrap());
        let later = store.due_webhook_deliveries(now_ms(), 10).unwrap();
        assert!(later.due.is_empty());
        assert!(later.next_due_ms.is_some());
        let retry = store
            .due_webhook_deliveries(now_ms() + 120_000, 10)
            .unwrap()
            .due[0];
        assert_eq!(retry.state.attempts, 1);
        assert_eq!(store.webhook(alices).unwrap().unwrap().log, [entry]);

        // Deleting the account takes its endpoints and their queue with it.
        store.delete_user(alice, Duration::ZERO).await.unwrap();
        assert!(store.webhook(alices).unwrap().is_none());
        assert!(store.webhooks_of(alice).unwrap().is_empty());
        assert!(
            store
                .due_webhook_deliveries(i64::MAX, 10)
                .unwrap()
                .due
                .is_empty()
        );
        assert_eq!(store.webhooks_of(bob).unwrap().len(), 1);
        // The URL is sealed: its token is nowhere on disk.
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(file.unwrap().path()).unwrap_or_default();
            assert!(!bytes.windows(8).any(|window| window == b"tok-4242"));
        }
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
}
