//! Changes to stored messages after ingest: read marks and deletion (by their owner, or
//! by the retention sweeper).

use redb::ReadableTable;

use super::ingest::{GONE, inbox_key};
use super::records::{self, DeletedMessageRecord, MessageRecord, MessageV4};
use super::tables::Tables;
use super::{Store, StoreError, readable_or_skipped};

impl Store {
    /// Deletes one message now, for its owner. Returns whether it existed. A record
    /// that cannot be read goes too, rather than fail the webhooks sharing the commit.
    pub async fn delete_message(&self, message_id: u64) -> Result<bool, StoreError> {
        self.writer
            .submit(move |tables| {
                let forgotten = forget_message(tables, message_id);
                Ok(readable_or_skipped(forgotten, "message", message_id)?.unwrap_or(true))
            })
            .await
    }

    /// Marks a message read. Returns whether it existed.
    pub async fn mark_read(&self, message_id: u64) -> Result<bool, StoreError> {
        self.writer
            .submit(move |tables| {
                let Some(mut record) = tables
                    .messages
                    .get(message_id)?
                    .map(|v| records::decode::<MessageRecord>(v.value()))
                    .transpose()?
                    .map(MessageRecord::into_latest)
                else {
                    return Ok(false);
                };
                if !record.read {
                    record.read = true;
                    let bytes = records::encode(&MessageRecord::V4(record))?;
                    tables.messages.insert(message_id, bytes.as_slice())?;
                }
                Ok(true)
            })
            .await
    }
}

/// Deletes a message at its owner's request: its content and inbox entry go at once;
/// its dedupe keys stay, saying "gone", until it would have expired. A provider
/// retrying a webhook it thinks failed, or another provider's copy, is then a duplicate
/// rather than the deleted message back. The `EXPIRY` entry stays for the sweeper.
pub(crate) fn forget_message(tables: &mut Tables<'_>, message_id: u64) -> Result<bool, StoreError> {
    let Some(record) = take_message(tables, message_id)? else {
        return Ok(false);
    };
    let keys: Vec<[u8; 32]> = std::iter::once(record.dedupe_key)
        .chain(record.part_keys)
        .collect();
    for key in &keys {
        tables.dedupe.insert(key.as_slice(), GONE)?;
    }
    let tombstone = records::encode(&DeletedMessageRecord::V1 {
        keys,
        content_key: record.content_key,
    })?;
    tables
        .deleted_messages
        .insert(message_id, tombstone.as_slice())?;
    Ok(true)
}

/// Removes a message at the end of its retention, with every index entry that points at
/// it (inbox, dedupe, expiry); for a message its owner deleted, what was left of it.
/// Once the dedupe entry is gone, a late provider retry would store it again; retention
/// is far longer than any provider retries, so that never happens in practice.
pub(crate) fn remove_message(
    tables: &mut Tables<'_>,
    message_id: u64,
) -> Result<Option<MessageV4>, StoreError> {
    let Some(record) = take_message(tables, message_id)? else {
        let deleted = tables
            .deleted_messages
            .remove(message_id)?
            .map(|v| records::decode::<DeletedMessageRecord>(v.value()))
            .transpose()?;
        if let Some(DeletedMessageRecord::V1 { keys, .. }) = deleted {
            for key in &keys {
                tables.dedupe.remove(key.as_slice())?;
            }
        }
        return Ok(None);
    };
    tables.dedupe.remove(record.dedupe_key.as_slice())?;
    for key in &record.part_keys {
        tables.dedupe.remove(key.as_slice())?;
    }
    tables.expiry.remove((record.expires_at_ms, message_id))?;
    Ok(Some(record))
}

/// Takes a message's record out of the store, with its inbox entry.
fn take_message(tables: &mut Tables<'_>, message_id: u64) -> Result<Option<MessageV4>, StoreError> {
    let Some(record) = tables
        .messages
        .remove(message_id)?
        .map(|v| records::decode::<MessageRecord>(v.value()))
        .transpose()?
        .map(MessageRecord::into_latest)
    else {
        return Ok(None);
    };
    tables
        .messages_by_inbox
        .remove(inbox_key(record.inbox, message_id))?;
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::domain::InboundSms;
    use crate::store::testing::{UNREADABLE, store};
    use crate::store::{IngestOutcome, Scope, now_ms};

    #[tokio::test]
    async fn messages_can_be_marked_read_and_deleted() {
        let (store, _dir) = store();
        let sms = InboundSms::new("m1", "a", "+12025550101", "hello", None).unwrap();
        let id = store
            .ingest("p".into(), sms, Duration::from_secs(60))
            .await
            .unwrap()
            .message_id()
            .unwrap();
        assert!(!store.message(id).unwrap().unwrap().read);
        assert!(store.mark_read(id).await.unwrap());
        assert!(store.message(id).unwrap().unwrap().read);
        assert!(store.delete_message(id).await.unwrap());
        assert!(!store.delete_message(id).await.unwrap());
        assert!(store.message(id).unwrap().is_none());
        assert!(
            store
                .list_messages(&Scope::All, None, 10)
                .unwrap()
                .messages
                .is_empty()
        );
        assert!(!store.mark_read(id).await.unwrap());
    }

    /// A record that cannot be read is deleted all the same, without failing the job
    /// (and with it every webhook sharing the commit).
    #[tokio::test]
    async fn an_unreadable_message_can_still_be_deleted() {
        let (store, _dir) = store();
        store
            .writer()
            .submit(|tables| {
                tables.messages.insert(9, UNREADABLE)?;
                Ok(())
            })
            .await
            .unwrap();
        assert!(store.delete_message(9).await.unwrap());
        assert!(!store.delete_message(9).await.unwrap());
    }

    const MINUTE: Duration = Duration::from_secs(60);

    fn sms() -> InboundSms {
        InboundSms::new("m1", "a", "+12025550101", "code 4711", None).unwrap()
    }

    /// A message `sms()` stored for a minute, then deleted by its owner.
    async fn deleted_message(store: &crate::store::Store) -> u64 {
        let id = store
            .ingest("p".into(), sms(), MINUTE)
            .await
            .unwrap()
            .message_id()
            .unwrap();
        assert!(store.delete_message(id).await.unwrap());
        id
    }

    /// What is left of a deleted message, damaged, does not fail a copy's ingest (and
    /// the writes sharing its commit): the copy is stored as a message of its own.
    #[tokio::test]
    async fn an_unreadable_deleted_message_does_not_fail_ingest() {
        let (store, _dir) = store();
        let id = deleted_message(&store).await;
        store
            .writer()
            .submit(move |tables| {
                tables.deleted_messages.insert(id, UNREADABLE)?;
                Ok(())
            })
            .await
            .unwrap();
        let copy = store.ingest("other".into(), sms(), MINUTE).await.unwrap();
        assert!(!copy.is_duplicate(), "{copy:?}");
    }

    /// A provider retrying a webhook it thinks failed, or another provider's copy of
    /// the same SMS, does not bring back a message its owner deleted; once it would have
    /// expired, nothing of it is left.
    #[tokio::test]
    async fn a_deleted_message_stays_deleted_until_it_would_have_expired() {
        let (store, _dir) = store();
        let id = deleted_message(&store).await;

        let retry = store.ingest("p".into(), sms(), MINUTE).await.unwrap();
        assert_eq!(retry, IngestOutcome::Duplicate(None));
        let copy = store.ingest("other".into(), sms(), MINUTE).await.unwrap();
        assert_eq!(copy, IngestOutcome::Duplicate(None));
        let counts = store.counts().unwrap();
        assert_eq!((counts.messages, counts.duplicates_total), (0, 2));

        // What was left goes when the message would have expired; it is not counted
        // as expired, having been deleted already.
        let later = now_ms() + 61_000;
        assert_eq!(store.sweep_expired_batch(later, 10).await.unwrap(), [id]);
        assert_eq!(store.counts().unwrap().expired_total, 0);
        assert!(
            store
                .sweep_expired_batch(later, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // A later delivery with the same id is a new message again.
        assert!(
            !store
                .ingest("p".into(), sms(), MINUTE)
                .await
                .unwrap()
                .is_duplicate()
        );
    }
}
