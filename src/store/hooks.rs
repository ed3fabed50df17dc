//! Users' outbound webhooks: endpoints (URL and secret sealed), their delivery logs, and
//! the durable queue of deliveries still to be made (ids only, never message text).

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable};

use super::records::{
    self, DeliveryLogV1, Inbox, LeaseRecord, MessageRecord, QueuedDeliveryRecord, QueuedDeliveryV1,
    SealedWebhook, WebhookRecord, WebhookV1,
};
use super::tables::{Tables, WEBHOOK_QUEUE, WEBHOOKS, WEBHOOKS_BY_OWNER, meta};
use super::{Store, StoreError, context, meta_u64, next_id, now_ms};

/// Delivery attempts kept per endpoint (the log the API shows).
pub const LOG_LEN: usize = 50;

/// Messages looked at per fan-out job.
const FANOUT_BATCH: usize = 256;

/// An endpoint to register; checked by the caller (URL shape, limits).
#[derive(Debug, Clone)]
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
    pub log: Vec<DeliveryLogV1>,
}

impl std::fmt::Debug for WebhookView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookView")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// One queued delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedDelivery {
    pub webhook_id: u64,
    pub message_id: u64,
    pub state: QueuedDeliveryV1,
}

fn webhook_context(id: u64) -> Vec<u8> {
    context("webhook", id)
}

fn decode_webhook(bytes: &[u8]) -> Result<WebhookV1, StoreError> {
    let WebhookRecord::V1(record) = records::decode(bytes)?;
    Ok(record)
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
            .submit(move |tables| {
                let Some(record) = tables
                    .webhooks
                    .remove(id)?
                    .map(|value| decode_webhook(value.value()))
                    .transpose()?
                else {
                    return Ok(false);
                };
                tables.webhooks_by_owner.remove((record.owner, id))?;
                tables
                    .webhook_queue
                    .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
                Ok(true)
            })
            .await
    }

    /// The newest message id already queued for webhooks, if any was recorded.
    pub fn webhook_cursor(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(super::tables::META)?;
        Ok(table
            .get(meta::WEBHOOK_CURSOR)?
            .map(|value| super::read_u64(value.value())))
    }

    /// Queues a delivery to every endpoint of the lease holder for each message stored
    /// after `after` (a batch at most), and records the new cursor in the same commit.
    /// Returns the cursor reached and how many deliveries were queued.
    pub async fn queue_webhook_deliveries(&self, after: u64) -> Result<(u64, usize), StoreError> {
        self.writer
            .submit(move |tables| fan_out(tables, after))
            .await
    }

    /// Every queued delivery, in (endpoint, message) order.
    pub fn webhook_queue(&self) -> Result<Vec<QueuedDelivery>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut queued = Vec::new();
        for entry in txn.open_table(WEBHOOK_QUEUE)?.iter()? {
            let (key, value) = entry?;
            let (webhook_id, message_id) = key.value();
            let QueuedDeliveryRecord::V1(state) = records::decode(value.value())?;
            queued.push(QueuedDelivery {
                webhook_id,
                message_id,
                state,
            });
        }
        Ok(queued)
    }

    /// Appends an attempt to an endpoint's log and, for a message delivery, either
    /// re-queues it (`next`) or ends it. Nothing happens if the endpoint is gone.
    pub async fn record_webhook_attempt(
        &self,
        webhook_id: u64,
        entry: DeliveryLogV1,
        next: Option<QueuedDeliveryV1>,
    ) -> Result<(), StoreError> {
        self.writer
            .submit(move |tables| {
                let Some(mut record) = tables
                    .webhooks
                    .get(webhook_id)?
                    .map(|value| decode_webhook(value.value()))
                    .transpose()?
                else {
                    return Ok(());
                };
                if let Some(message_id) = entry.message_id {
                    let key = (webhook_id, message_id);
                    match next {
                        Some(state) => {
                            let bytes = records::encode(&QueuedDeliveryRecord::V1(state))?;
                            tables.webhook_queue.insert(key, bytes.as_slice())?;
                        }
                        None => {
                            tables.webhook_queue.remove(key)?;
                        }
                    }
                }
                record.log.push(entry);
                let excess = record.log.len().saturating_sub(LOG_LEN);
                record.log.drain(..excess);
                tables.webhooks.insert(
                    webhook_id,
                    records::encode(&WebhookRecord::V1(record))?.as_slice(),
                )?;
                Ok(())
            })
            .await
    }
}

/// The fan-out job: a message belongs to the holder of its lease inbox when it arrived,
/// so later holders of the number never get it.
fn fan_out(tables: &mut Tables<'_>, after: u64) -> Result<(u64, usize), StoreError> {
    let stored = meta_u64(&tables.meta, meta::WEBHOOK_CURSOR)?;
    let mut cursor = after.max(stored);
    let mut inboxes = Vec::new();
    for entry in tables
        .messages
        .range(cursor.saturating_add(1)..)?
        .take(FANOUT_BATCH)
    {
        let (id, value) = entry?;
        let record = records::decode::<MessageRecord>(value.value())?.into_latest();
        inboxes.push((id.value(), record.inbox));
    }
    let now = now_ms();
    let state = records::encode(&QueuedDeliveryRecord::V1(QueuedDeliveryV1 {
        attempts: 0,
        next_at_ms: now,
        queued_at_ms: now,
    }))?;
    let mut queued = 0;
    for (message_id, inbox) in inboxes {
        cursor = message_id;
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
                .insert((webhook_id, message_id), state.as_slice())?;
            queued += 1;
        }
    }
    tables
        .meta
        .insert(meta::WEBHOOK_CURSOR, cursor.to_le_bytes().as_slice())?;
    Ok((cursor, queued))
}
