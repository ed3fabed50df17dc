//! Changes to stored messages after ingest: read marks and deletion (by their owner, or
//! by the retention sweeper).

use redb::ReadableTable;

use super::ingest::inbox_key;
use super::records::{self, MessageRecord, MessageV4};
use super::tables::Tables;
use super::{Store, StoreError};

impl Store {
    /// Deletes one message now. Returns whether it existed.
    pub async fn delete_message(&self, message_id: u64) -> Result<bool, StoreError> {
        self.writer
            .submit(move |tables| Ok(remove_message(tables, message_id)?.is_some()))
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

/// Removes a message and every index entry that points at it (inbox, dedupe, expiry).
/// Once the dedupe entry is gone, a late provider retry would store it again; retention
/// is far longer than any provider retries, so that never happens in practice.
pub(crate) fn remove_message(
    tables: &mut Tables<'_>,
    message_id: u64,
) -> Result<Option<MessageV4>, StoreError> {
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
    tables.dedupe.remove(record.dedupe_key.as_slice())?;
    for key in &record.part_keys {
        tables.dedupe.remove(key.as_slice())?;
    }
    tables.expiry.remove((record.expires_at_ms, message_id))?;
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::domain::InboundSms;
    use crate::store::Scope;
    use crate::store::testing::store;

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
        // Nothing is left for the sweeper either.
        assert_eq!(
            store.sweep_expired_batch(i64::MAX / 2, 10).await.unwrap(),
            Vec::<u64>::new()
        );
        assert!(!store.mark_read(id).await.unwrap());
    }
}
