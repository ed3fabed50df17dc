//! Read paths: messages newest first, the number pool, counts. Each opens one read
//! transaction, so a page is a consistent snapshot even while ingest commits.

use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::ingest::{Inbox, message_context};
use super::records::{self, MessageRecord, NumberRecord, SealedMessage};
use super::tables::{MESSAGES, MESSAGES_BY_INBOX, META, NUMBERS, meta};
use super::{Keyring, Store, StoreError, context, read_u64};

/// A message as the API shows it, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub id: u64,
    pub inbox: Inbox,
    /// The recipient: the pool number, or whatever number an unrouted message was sent to.
    pub number: String,
    pub from: String,
    pub text: String,
    pub received_at_ms: i64,
    pub expires_at_ms: u64,
    pub provider: String,
    pub provider_message_id: String,
    pub read: bool,
}

/// One page of messages, newest first, and the cursor for the next (older) page.
#[derive(Debug, Clone)]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next_before: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberView {
    pub id: u64,
    pub number: String,
    pub provider: String,
    pub retention_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounts {
    /// Messages stored now.
    pub messages: u64,
    pub numbers: u64,
    /// Messages ever received for numbers outside the pool.
    pub unrouted_total: u64,
    pub duplicates_total: u64,
    pub expired_total: u64,
}

impl Store {
    /// Messages newest first: of one inbox, or (for admins) of every inbox, starting
    /// below message id `before` when given.
    pub fn list_messages(
        &self,
        inbox: Option<Inbox>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        let txn = self.db.begin_read()?;
        let upper = before.unwrap_or(u64::MAX);
        let mut ids = Vec::with_capacity(limit + 1);
        match inbox {
            None => {
                for entry in txn
                    .open_table(MESSAGES)?
                    .range(..upper)?
                    .rev()
                    .take(limit + 1)
                {
                    ids.push(entry?.0.value());
                }
            }
            Some(inbox) => {
                let inbox_id = match inbox {
                    Inbox::Number(id) => id,
                    Inbox::Unrouted => super::tables::UNROUTED_INBOX,
                };
                let range = (inbox_id, 0)..(inbox_id, upper);
                for entry in txn
                    .open_table(MESSAGES_BY_INBOX)?
                    .range(range)?
                    .rev()
                    .take(limit + 1)
                {
                    ids.push(entry?.0.value().1);
                }
            }
        }
        let next_before = (ids.len() > limit).then(|| ids[limit - 1]);
        ids.truncate(limit);
        let table = txn.open_table(MESSAGES)?;
        let messages = ids
            .into_iter()
            .filter_map(|id| load_message(&table, &self.keys, id).transpose())
            .collect::<Result<_, _>>()?;
        Ok(MessagePage {
            messages,
            next_before,
        })
    }

    /// The pool, in id order.
    pub fn list_numbers(&self) -> Result<Vec<NumberView>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut numbers = Vec::new();
        for entry in txn.open_table(NUMBERS)?.iter()? {
            let (id, value) = entry?;
            let id = id.value();
            let record = records::decode::<NumberRecord>(value.value())?.into_latest();
            let number = self
                .keys
                .open(&context("number", id), &record.sealed_number)?;
            numbers.push(NumberView {
                id,
                number: String::from_utf8(number).map_err(|e| StoreError::Codec(e.to_string()))?,
                provider: record.provider,
                retention_secs: record.retention_secs,
            });
        }
        Ok(numbers)
    }

    pub fn number_exists(&self, id: u64) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(NUMBERS)?.get(id)?.is_some())
    }

    pub fn counts(&self) -> Result<StoreCounts, StoreError> {
        let txn = self.db.begin_read()?;
        let meta_table = txn.open_table(META)?;
        let counter = |key: &str| -> Result<u64, StoreError> {
            Ok(meta_table
                .get(key)?
                .map(|v| read_u64(v.value()))
                .unwrap_or(0))
        };
        Ok(StoreCounts {
            messages: txn.open_table(MESSAGES)?.len()?,
            numbers: txn.open_table(NUMBERS)?.len()?,
            unrouted_total: counter(meta::UNROUTED_TOTAL)?,
            duplicates_total: counter(meta::DUPLICATES_TOTAL)?,
            expired_total: counter(meta::EXPIRED_TOTAL)?,
        })
    }
}

fn load_message(
    messages: &ReadOnlyTable<u64, &[u8]>,
    keys: &Keyring,
    id: u64,
) -> Result<Option<MessageView>, StoreError> {
    let Some(value) = messages.get(id)? else {
        return Ok(None);
    };
    let record = records::decode::<MessageRecord>(value.value())?.into_latest();
    let private = keys.open(&message_context(&record.dedupe_key), &record.sealed)?;
    let SealedMessage::V1 {
        provider_message_id,
        from,
        to,
        text,
    } = records::decode(&private)?;
    Ok(Some(MessageView {
        id,
        inbox: Inbox::from_id(record.inbox),
        number: to,
        from,
        text,
        received_at_ms: record.received_at_ms,
        expires_at_ms: record.expires_at_ms,
        provider: record.provider,
        provider_message_id,
        read: record.read,
    }))
}
