//! Retention for what we sent: outbound messages and delivery reports are deleted
//! `retention` after they were stored, like received messages, through their own expiry
//! indexes. Each is on its own clock: a report can outlive its message by the few
//! seconds between the send and the report, or the other way round, never by more.

use redb::ReadableTable;

use super::outbound::sent_key;
use super::records::{self, DeliveryReportRecord, OutboundRecord};
use super::tables::{Tables, meta};
use super::{Keyring, Store, StoreError, meta_u64, readable_or_skipped};

impl Store {
    /// Deletes up to `batch` outbound messages and up to `batch` delivery reports whose
    /// time is up at `now_ms`. Returns how many of each were deleted.
    pub async fn sweep_outbound_batch(
        &self,
        now_ms: i64,
        batch: usize,
    ) -> Result<(usize, usize), StoreError> {
        let now = u64::try_from(now_ms).unwrap_or(0);
        let keys = std::sync::Arc::clone(&self.keys);
        self.writer
            .submit(move |tables| {
                Ok((
                    sweep_outbound(tables, &keys, now, batch)?,
                    sweep_reports(tables, now, batch)?,
                ))
            })
            .await
    }
}

fn sweep_outbound(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    now: u64,
    batch: usize,
) -> Result<usize, StoreError> {
    let mut due = Vec::with_capacity(batch);
    for entry in tables
        .outbound_expiry
        .range(..(now.saturating_add(1), 0))?
        .take(batch)
    {
        due.push(entry?.0.value());
    }
    for (expires_at, id) in &due {
        tables.outbound_expiry.remove((*expires_at, *id))?;
        tables.outbound_pending.remove(*id)?;
        let removed = tables
            .outbound
            .remove(*id)?
            .map(|value| records::decode::<OutboundRecord>(value.value()))
            .transpose();
        // Unreadable: gone all the same, its provider-id keys with no way to find them.
        let Some(Some(OutboundRecord::V1(record))) =
            readable_or_skipped(removed, "outbound message", *id)?
        else {
            continue;
        };
        for message_id in record.accepted.iter().flat_map(|a| {
            a.message_ids
                .iter()
                .map(move |message_id| (a.provider.as_str(), message_id))
        }) {
            let key = sent_key(keys, message_id.0, message_id.1);
            tables.outbound_by_provider_id.remove(key.as_slice())?;
        }
    }
    Ok(due.len())
}

fn sweep_reports(tables: &mut Tables<'_>, now: u64, batch: usize) -> Result<usize, StoreError> {
    let mut due = Vec::with_capacity(batch);
    for entry in tables
        .report_expiry
        .range(..(now.saturating_add(1), 0))?
        .take(batch)
    {
        let (expiry, key) = entry?;
        due.push((expiry.value(), key.value().to_vec()));
    }
    let mut unlinked_gone = 0u64;
    for (expiry, key) in &due {
        tables.report_expiry.remove(*expiry)?;
        let removed = tables
            .delivery_reports
            .remove(key.as_slice())?
            .map(|value| records::decode::<DeliveryReportRecord>(value.value()))
            .transpose();
        if let Some(Some(DeliveryReportRecord::V1(report))) =
            readable_or_skipped(removed, "delivery report", expiry.1)?
            && report.outbound_id.is_none()
        {
            unlinked_gone += 1;
        }
    }
    if unlinked_gone > 0 {
        let unlinked = meta_u64(&tables.meta, meta::UNLINKED_REPORTS)?;
        tables.meta.insert(
            meta::UNLINKED_REPORTS,
            unlinked
                .saturating_sub(unlinked_gone)
                .to_le_bytes()
                .as_slice(),
        )?;
    }
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::domain::{DeliveryReport, DeliveryStatus, OutboundText, PhoneNumber};
    use crate::store::testing::{UNREADABLE, store};
    use crate::store::{AttemptOutcome, AttemptV1, NewOutbound, Store, now_ms};

    /// A message queued for sending from a pool number, kept for `retention`.
    async fn sent(store: &Store, text: &str, retention: Duration) -> u64 {
        store
            .create_outbound(NewOutbound {
                sender: 1,
                number_id: 1,
                provider: "p".into(),
                from: PhoneNumber::parse("+14155550100").unwrap(),
                to: PhoneNumber::parse("+447700900001").unwrap(),
                text: OutboundText::parse(text).unwrap(),
                retention,
            })
            .await
            .unwrap()
    }

    /// Provider `p` took the message as `provider_message_id`.
    fn accepted(provider_message_id: &str) -> AttemptV1 {
        AttemptV1 {
            provider: Some("p".into()),
            from_number_id: Some(1),
            at_ms: 1,
            latency_ms: 1,
            outcome: AttemptOutcome::Accepted {
                provider_message_id: provider_message_id.into(),
            },
        }
    }

    #[tokio::test]
    async fn sent_messages_and_reports_expire_with_their_indexes() {
        let (store, _dir) = store();
        let minute = Duration::from_secs(60);
        let id = sent(&store, "bye", minute).await;
        store
            .record_attempt(id, accepted("m1"), Vec::new())
            .await
            .unwrap();
        let report = |id: &str| DeliveryReport::new(id, DeliveryStatus::Sent, None, None).unwrap();
        store.store_report("p", report("m1"), minute).await.unwrap();
        store
            .store_report("p", report("stranger"), minute)
            .await
            .unwrap();
        assert_eq!(store.report_counts().unwrap().unlinked, 1);

        assert_eq!(
            store.sweep_outbound_batch(now_ms(), 10).await.unwrap(),
            (0, 0)
        );
        let later = now_ms() + 61_000;
        assert_eq!(store.sweep_outbound_batch(later, 10).await.unwrap(), (1, 2));
        assert!(store.outbound(id).unwrap().is_none());
        assert_eq!(store.report_counts().unwrap().unlinked, 0);
        // The index is gone too: a late report for m1 is a stranger now.
        let late = store.store_report("p", report("m1"), minute).await.unwrap();
        assert_eq!(late.outbound_id, None);
    }

    #[tokio::test]
    async fn a_send_that_ends_after_its_message_expired_leaves_no_index() {
        let (store, _dir) = store();
        let minute = Duration::from_secs(60);
        let id = sent(&store, "late", minute).await;
        let later = now_ms() + 61_000;
        assert_eq!(store.sweep_outbound_batch(later, 10).await.unwrap(), (1, 0));
        let status = store.record_attempt(id, accepted("m1"), Vec::new()).await;
        assert_eq!(status.unwrap(), None, "nothing to record it in");
        let report = DeliveryReport::new("m1", DeliveryStatus::Sent, None, None).unwrap();
        let stored = store.store_report("p", report, minute).await.unwrap();
        assert_eq!(
            stored.outbound_id, None,
            "no index entry names the gone message"
        );
    }

    /// A record this build cannot read goes like the others instead of failing every
    /// sweep and the writes that share its commit.
    #[tokio::test]
    async fn an_unreadable_sent_message_expires_all_the_same() {
        let (store, _dir) = store();
        let minute = Duration::from_secs(60);
        let ids = [
            sent(&store, "one", minute).await,
            sent(&store, "two", minute).await,
        ];
        let damaged = ids[0];
        store
            .writer
            .submit(move |tables| {
                tables.outbound.insert(damaged, UNREADABLE)?;
                Ok(())
            })
            .await
            .unwrap();
        let later = now_ms() + 61_000;
        assert_eq!(store.sweep_outbound_batch(later, 10).await.unwrap(), (2, 0));
        assert!(store.outbound(ids[1]).unwrap().is_none());
        assert_eq!(store.sweep_outbound_batch(later, 10).await.unwrap(), (0, 0));
    }
}
