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

/// How long a message's dedupe keys outlive it, however short its retention. Providers
/// retry a webhook they think failed for up to about a day (Vonage, Plivo, Bandwidth,
/// Sinch), and an Android forwarder for up to about two; a retry after the message
/// expired or was deleted is then answered as a duplicate instead of storing it anew.
/// What stays is keyed hashes of provider message ids, never content or numbers.
pub(crate) const DEDUPE_WINDOW_MS: i64 = 48 * 3600 * 1000;

/// Deletes a message at its owner's request: its content and inbox entry go at once;
/// its dedupe keys stay, saying "gone", until it would have expired or the dedupe window
/// closes, whichever is later. A provider retrying a webhook it thinks failed, or
/// another provider's copy, is then a duplicate rather than the deleted message back.
/// The `EXPIRY` entry, moved to that time, is the sweeper's cue to remove the keys.
pub(crate) fn forget_message(tables: &mut Tables<'_>, message_id: u64) -> Result<bool, StoreError> {
    let Some(record) = take_message(tables, message_id)? else {
        return Ok(false);
    };
    let keep_until = keys_kept_until(&record).max(record.expires_at_ms);
    if keep_until != record.expires_at_ms {
        tables.expiry.remove((record.expires_at_ms, message_id))?;
        tables.expiry.insert((keep_until, message_id), ())?;
    }
    let content_key = record.content_key;
    entomb(tables, message_id, record, content_key)?;
    Ok(true)
}

/// Removes a message at the end of its retention, with its inbox and expiry entries;
/// its dedupe keys stay until the dedupe window closes (a fresh `EXPIRY` entry brings
/// the sweeper back for them). For what was left of a message deleted or expired
/// earlier, removes its dedupe keys. True for a message that expired now.
pub(crate) fn expire_message(
    tables: &mut Tables<'_>,
    message_id: u64,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let Some(record) = take_message(tables, message_id)? else {
        let deleted = tables
            .deleted_messages
            .remove(message_id)?
            .map(|v| records::decode::<DeletedMessageRecord>(v.value()))
            .transpose();
        // Unreadable, it cannot name its keys; it goes, and was counted already.
        let deleted = readable_or_skipped(deleted, "deleted message", message_id)?.flatten();
        if let Some(DeletedMessageRecord::V1 { keys, .. }) = deleted {
            for key in &keys {
                tables.dedupe.remove(key.as_slice())?;
            }
        }
        return Ok(false);
    };
    tables.expiry.remove((record.expires_at_ms, message_id))?;
    let keep_until = keys_kept_until(&record);
    if keep_until > now_ms {
        tables.expiry.insert((keep_until, message_id), ())?;
        // Without its content key: the message's time is up, so nothing that says
        // what it held outlives it, and a copy through another provider is new.
        entomb(tables, message_id, record, None)?;
    } else {
        tables.dedupe.remove(record.dedupe_key.as_slice())?;
        for key in &record.part_keys {
            tables.dedupe.remove(key.as_slice())?;
        }
    }
    Ok(true)
}

/// When the dedupe window of a message stored at `stored_at_ms` closes.
fn keys_kept_until(record: &MessageV4) -> u64 {
    u64::try_from(record.stored_at_ms.saturating_add(DEDUPE_WINDOW_MS)).unwrap_or(0)
}

/// Leaves what must outlive a removed message: its dedupe keys, saying "gone", and the
/// tombstone that lists them (and, for a deleted one, its content key, so a copy
/// through another provider is recognised as the deleted message).
fn entomb(
    tables: &mut Tables<'_>,
    message_id: u64,
    record: MessageV4,
    content_key: Option<[u8; 32]>,
) -> Result<(), StoreError> {
    let keys: Vec<[u8; 32]> = std::iter::once(record.dedupe_key)
        .chain(record.part_keys)
        .collect();
    for key in &keys {
        tables.dedupe.insert(key.as_slice(), GONE)?;
    }
    let tombstone = records::encode(&DeletedMessageRecord::V1 { keys, content_key })?;
    tables
        .deleted_messages
        .insert(message_id, tombstone.as_slice())?;
    Ok(())
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
    /// the same SMS, does not bring back a message its owner deleted; once the dedupe
    /// window has closed, nothing of it is left.
    #[tokio::test]
    async fn a_deleted_message_stays_deleted_through_the_dedupe_window() {
        let (store, _dir) = store();
        let id = deleted_message(&store).await;

        let retry = store.ingest("p".into(), sms(), MINUTE).await.unwrap();
        assert_eq!(retry, IngestOutcome::Duplicate(None));
        let copy = store.ingest("other".into(), sms(), MINUTE).await.unwrap();
        assert_eq!(copy, IngestOutcome::Duplicate(None));
        let counts = store.counts().unwrap();
        assert_eq!((counts.messages, counts.duplicates_total), (0, 2));

        // Its retention ending changes nothing: the keys are kept for the window.
        let expired = now_ms() + 61_000;
        assert!(
            store
                .sweep_expired_batch(expired, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // What was left goes when the window closes; it is not counted as expired,
        // having been deleted already.
        let later = expired + super::DEDUPE_WINDOW_MS;
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
