//! Outbound messages: created sealed and pending, then changed only by recorded
//! attempts and delivery reports, each in one transaction with its indexes.

use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable};

use super::records::{
    self, Accepted, AttemptOutcome, AttemptV1, DeliveryReportRecord, OutboundRecord, OutboundV1,
    ReportEventV1, SealedOutbound,
};
use super::tables::{DELIVERY_REPORTS, OUTBOUND, OUTBOUND_PENDING, Tables, meta};
use super::{Keyring, Store, StoreError, context, next_id, now_ms};
use crate::domain::{OutboundStatus, OutboundText, PhoneNumber};

/// What to send: checked by the caller (permissions, number held, valid fields).
#[derive(Debug, Clone)]
pub struct NewOutbound {
    pub sender: u64,
    pub number_id: u64,
    pub provider: String,
    pub from: PhoneNumber,
    pub to: PhoneNumber,
    pub text: OutboundText,
    /// Deleted this long after it is created, like received messages.
    pub retention: Duration,
}

/// An outbound message as the API and the sender see it, decrypted.
#[derive(Debug, Clone)]
pub struct OutboundView {
    pub id: u64,
    pub sender: u64,
    pub number_id: u64,
    pub provider: String,
    pub from: String,
    pub to: String,
    pub text: String,
    pub created_at_ms: i64,
    pub status: OutboundStatus,
    pub updated_at_ms: i64,
    pub attempts: Vec<AttemptV1>,
    pub accepted: Option<Accepted>,
    /// Delivery reports about it: (provider message id, report), in arrival order per id.
    pub reports: Vec<(String, ReportEventV1)>,
}

/// The keyed hash of (provider instance, provider message id): the key of both the
/// report table and the outbound index, so a report finds its message in one look-up.
pub(crate) fn sent_key(keys: &Keyring, provider: &str, provider_message_id: &str) -> [u8; 32] {
    let mut value = Vec::with_capacity(provider.len() + 1 + provider_message_id.len());
    value.extend_from_slice(provider.as_bytes());
    value.push(0);
    value.extend_from_slice(provider_message_id.as_bytes());
    keys.blind_index("sent-message", &value)
}

fn outbound_context(id: u64) -> Vec<u8> {
    context("outbound", id)
}

impl Store {
    /// Stores a new outbound message as pending and returns its id, once durable.
    pub async fn create_outbound(&self, new: NewOutbound) -> Result<u64, StoreError> {
        let keys = Arc::clone(&self.keys);
        let private = records::encode(&SealedOutbound::V1 {
            from: new.from.as_str().to_owned(),
            to: new.to.as_str().to_owned(),
            text: new.text.as_str().to_owned(),
        })?;
        self.writer
            .submit(move |tables| {
                let id = next_id(&mut tables.meta, meta::NEXT_OUTBOUND_ID)?;
                // Sealed here because the context needs the id; one AES-GCM of a short
                // text is far cheaper than the commit it rides in.
                let sealed = keys.seal(&outbound_context(id), &private)?;
                let now = now_ms();
                let expires_at_ms = expires_at(now, new.retention);
                let record = OutboundRecord::V1(OutboundV1 {
                    sender: new.sender,
                    number_id: new.number_id,
                    provider: new.provider,
                    created_at_ms: now,
                    expires_at_ms,
                    status: OutboundStatus::Pending,
                    updated_at_ms: now,
                    sealed,
                    attempts: Vec::new(),
                    accepted: None,
                });
                tables
                    .outbound
                    .insert(id, records::encode(&record)?.as_slice())?;
                tables.outbound_pending.insert(id, ())?;
                tables.outbound_expiry.insert((expires_at_ms, id), ())?;
                Ok(id)
            })
            .await
    }

    /// One outbound message with its attempts and delivery reports.
    pub fn outbound(&self, id: u64) -> Result<Option<OutboundView>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(value) = txn.open_table(OUTBOUND)?.get(id)? else {
            return Ok(None);
        };
        let record = decode(value.value())?;
        let private = self.keys.open(&outbound_context(id), &record.sealed)?;
        let SealedOutbound::V1 { from, to, text } = records::decode(&private)?;
        let mut reports = Vec::new();
        if let Some(accepted) = &record.accepted {
            let table = txn.open_table(DELIVERY_REPORTS)?;
            for message_id in &accepted.message_ids {
                let key = sent_key(&self.keys, &accepted.provider, message_id);
                if let Some(value) = table.get(key.as_slice())? {
                    let DeliveryReportRecord::V1(report) = records::decode(value.value())?;
                    reports.extend(
                        report
                            .events
                            .into_iter()
                            .map(|event| (message_id.clone(), event)),
                    );
                }
            }
        }
        Ok(Some(OutboundView {
            id,
            sender: record.sender,
            number_id: record.number_id,
            provider: record.provider,
            from,
            to,
            text,
            created_at_ms: record.created_at_ms,
            status: record.status,
            updated_at_ms: record.updated_at_ms,
            attempts: record.attempts,
            accepted: record.accepted,
            reports,
        }))
    }

    /// Outbound messages still to be sent, oldest first.
    pub fn pending_outbound(&self) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut ids = Vec::new();
        for entry in txn.open_table(OUTBOUND_PENDING)?.iter()? {
            ids.push(entry?.0.value());
        }
        Ok(ids)
    }

    /// Records one attempt and what follows from it: accepted → `sent` (unless a report
    /// already moved it further), its ids indexed and reports that arrived first linked;
    /// rejected → `failed`. Returns the status after it, `None` if the message is gone.
    pub async fn record_attempt(
        &self,
        id: u64,
        attempt: AttemptV1,
        part_ids: Vec<String>,
    ) -> Result<Option<OutboundStatus>, StoreError> {
        let keys = Arc::clone(&self.keys);
        self.writer
            .submit(move |tables| record_attempt_in(tables, &keys, id, attempt, part_ids))
            .await
    }

    /// Gives up on a message (attempts exhausted): `failed`, no longer pending.
    pub async fn fail_outbound(&self, id: u64) -> Result<Option<OutboundStatus>, StoreError> {
        self.writer
            .submit(move |tables| {
                update(tables, id, |record| {
                    if !record.status.is_final() {
                        record.status = OutboundStatus::Failed;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Outbound messages stored, and how many are still pending.
    pub fn outbound_counts(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let meta_table = txn.open_table(super::tables::META)?;
        let total = meta_u64_read(&meta_table, meta::NEXT_OUTBOUND_ID)?;
        let pending = redb::ReadableTableMetadata::len(&txn.open_table(OUTBOUND_PENDING)?)?;
        Ok((total, pending))
    }
}

/// `now_ms` plus `retention`, as an expiry key.
pub(super) fn expires_at(now_ms: i64, retention: Duration) -> u64 {
    u64::try_from(now_ms)
        .unwrap_or(0)
        .saturating_add(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX))
}

fn meta_u64_read(
    table: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<u64, StoreError> {
    Ok(table
        .get(key)?
        .map(|v| super::read_u64(v.value()))
        .unwrap_or(0))
}

fn decode(bytes: &[u8]) -> Result<OutboundV1, StoreError> {
    let OutboundRecord::V1(record) = records::decode(bytes)?;
    Ok(record)
}

/// Loads, changes and stores one record; a final status also ends its pending entry.
pub(super) fn update(
    tables: &mut Tables<'_>,
    id: u64,
    change: impl FnOnce(&mut OutboundV1) -> Result<(), StoreError>,
) -> Result<Option<OutboundStatus>, StoreError> {
    let Some(mut record) = tables
        .outbound
        .get(id)?
        .map(|value| decode(value.value()))
        .transpose()?
    else {
        return Ok(None);
    };
    let before = (
        record.status,
        record.attempts.len(),
        record.accepted.clone(),
    );
    change(&mut record)?;
    if (
        record.status,
        record.attempts.len(),
        record.accepted.clone(),
    ) != before
    {
        record.updated_at_ms = now_ms();
        let bytes = records::encode(&OutboundRecord::V1(record.clone()))?;
        tables.outbound.insert(id, bytes.as_slice())?;
    }
    if record.status != OutboundStatus::Pending {
        tables.outbound_pending.remove(id)?;
    }
    Ok(Some(record.status))
}

fn record_attempt_in(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    id: u64,
    attempt: AttemptV1,
    part_ids: Vec<String>,
) -> Result<Option<OutboundStatus>, StoreError> {
    let accepted = match (&attempt.outcome, &attempt.provider) {
        (
            AttemptOutcome::Accepted {
                provider_message_id,
            },
            Some(provider),
        ) => {
            let mut message_ids = vec![provider_message_id.clone()];
            message_ids.extend(part_ids);
            Some(Accepted {
                provider: provider.clone(),
                message_ids,
            })
        }
        _ => None,
    };
    let rejected = matches!(attempt.outcome, AttemptOutcome::Rejected(_));
    // Expired while it was being sent: nothing may point at it, or the index entries
    // would stay for ever (the sweeper finds them only through the record).
    if tables.outbound.get(id)?.is_none() {
        return Ok(None);
    }
    // Reports that arrived before this commit (a fast provider) are linked now.
    let mut early = Vec::new();
    if let Some(accepted) = &accepted {
        for message_id in &accepted.message_ids {
            let key = sent_key(keys, &accepted.provider, message_id);
            tables.outbound_by_provider_id.insert(key.as_slice(), id)?;
            early.extend(super::reports::link_report(tables, &key, id)?);
        }
    }
    update(tables, id, |record| {
        record.attempts.push(attempt);
        if let Some(accepted) = accepted {
            if !record.status.is_final() && record.accepted.is_none() {
                record.status = OutboundStatus::Sent;
            }
            record.accepted.get_or_insert(accepted);
        } else if rejected && !record.status.is_final() {
            record.status = OutboundStatus::Failed;
        }
        for status in early {
            record.status = record.status.after_report(status);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeliveryReport, DeliveryStatus};
    use crate::store::testing::store;

    fn new_outbound() -> NewOutbound {
        NewOutbound {
            sender: 1,
            number_id: 7,
            provider: "tw".into(),
            from: PhoneNumber::parse("+14155550100").unwrap(),
            to: PhoneNumber::parse("+447700900001").unwrap(),
            text: OutboundText::parse("hello there").unwrap(),
            retention: Duration::from_secs(3600),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn attempt(outcome: AttemptOutcome) -> AttemptV1 {
        AttemptV1 {
            provider: Some("tw".into()),
            from_number_id: Some(7),
            at_ms: 1,
            latency_ms: 3,
            outcome,
        }
    }

    #[tokio::test]
    async fn attempts_move_the_status_and_reports_link_in_either_order() {
        let (store, _dir) = store();
        let id = store.create_outbound(new_outbound()).await.unwrap();
        assert_eq!(store.pending_outbound().unwrap(), vec![id]);
        let view = store.outbound(id).unwrap().unwrap();
        assert_eq!(
            (view.status, view.text.as_str()),
            (OutboundStatus::Pending, "hello there")
        );

        store
            .record_attempt(
                id,
                attempt(AttemptOutcome::Retryable("HTTP 503".into())),
                vec![],
            )
            .await
            .unwrap();
        // A report that overtakes the send is kept unlinked, then linked by the send.
        let early = DeliveryReport::new("SM1", DeliveryStatus::Delivered, None, None).unwrap();
        let outcome = store.store_report("tw", early, HOUR).await.unwrap();
        assert_eq!(outcome.outbound_id, None);
        assert_eq!(store.report_counts().unwrap().unlinked, 1);
        let status = store
            .record_attempt(
                id,
                attempt(AttemptOutcome::Accepted {
                    provider_message_id: "SM1".into(),
                }),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(status, Some(OutboundStatus::Delivered));
        assert!(store.pending_outbound().unwrap().is_empty());
        assert_eq!(store.report_counts().unwrap().unlinked, 0);

        // Later reports never move it back; a repeat is stored once.
        let late = DeliveryReport::new("SM1", DeliveryStatus::Sent, None, None).unwrap();
        let outcome = store.store_report("tw", late.clone(), HOUR).await.unwrap();
        assert_eq!(outcome.outbound_id, Some(id));
        assert!(store.store_report("tw", late, HOUR).await.unwrap().repeated);
        let view = store.outbound(id).unwrap().unwrap();
        assert_eq!(view.status, OutboundStatus::Delivered);
        assert_eq!(view.attempts.len(), 2);
        assert_eq!(view.reports.len(), 2);
        assert_eq!(store.outbound_counts().unwrap(), (1, 0));
    }

    #[tokio::test]
    async fn rejection_and_giving_up_fail_the_message() {
        let (store, _dir) = store();
        let id = store.create_outbound(new_outbound()).await.unwrap();
        let status = store
            .record_attempt(
                id,
                attempt(AttemptOutcome::Rejected("HTTP 400".into())),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(status, Some(OutboundStatus::Failed));
        let other = store.create_outbound(new_outbound()).await.unwrap();
        assert_eq!(
            store.fail_outbound(other).await.unwrap(),
            Some(OutboundStatus::Failed)
        );
        assert!(store.pending_outbound().unwrap().is_empty());
        assert_eq!(store.fail_outbound(999).await.unwrap(), None);
    }
}
