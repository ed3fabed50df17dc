//! Delivery reports: each distinct report stored once per provider message, linked to
//! the outbound message it is about (now, or when the send that caused it is recorded),
//! and moving that message's status forward.

use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable};

use super::outbound::{expires_at, sent_key, update};
use super::records::{self, DeliveryReportRecord, DeliveryReportV1, ReportEventV1};
use super::tables::{META, Tables, meta};
use super::{Store, StoreError, bump_meta, meta_u64, next_id, now_ms, read_u64};
use crate::domain::{DeliveryReport, DeliveryStatus, OutboundStatus};

/// Distinct reports kept per provider message. Real messages have three or four
/// (queued, sent, delivered); the cap keeps a misbehaving provider from growing one
/// record without bound.
const MAX_EVENTS: usize = 32;

/// What storing a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOutcome {
    /// The outbound message it is about, if we know it.
    pub outbound_id: Option<u64>,
    /// The same report was stored before; nothing changed.
    pub repeated: bool,
    /// The linked message's status after the report.
    pub status: Option<OutboundStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportCounts {
    /// Distinct reports stored.
    pub total: u64,
    /// Reports received again and stored once.
    pub repeats: u64,
    /// Provider messages with reports that match no outbound message of ours.
    pub unlinked: u64,
}

impl Store {
    /// Stores a verified report from provider instance `provider`, once; returns after
    /// it is durable, so the webhook may then be acknowledged.
    pub async fn store_report(
        &self,
        provider: &str,
        report: DeliveryReport,
        retention: Duration,
    ) -> Result<ReportOutcome, StoreError> {
        let key = sent_key(&self.keys, provider, report.provider_message_id.as_str());
        let provider: Arc<str> = Arc::from(provider);
        self.writer
            .submit(move |tables| store_in(tables, key, &provider, report, retention))
            .await
    }

    pub fn report_counts(&self) -> Result<ReportCounts, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let counter = |key: &str| -> Result<u64, StoreError> {
            Ok(table.get(key)?.map(|v| read_u64(v.value())).unwrap_or(0))
        };
        Ok(ReportCounts {
            total: counter(meta::REPORTS_TOTAL)?,
            repeats: counter(meta::REPORT_REPEATS_TOTAL)?,
            unlinked: counter(meta::UNLINKED_REPORTS)?,
        })
    }
}

fn store_in(
    tables: &mut Tables<'_>,
    key: [u8; 32],
    provider: &str,
    report: DeliveryReport,
    retention: Duration,
) -> Result<ReportOutcome, StoreError> {
    let existing = tables
        .delivery_reports
        .get(key.as_slice())?
        .map(|value| records::decode::<DeliveryReportRecord>(value.value()))
        .transpose()?;
    let is_new = existing.is_none();
    let DeliveryReportRecord::V1(mut record) = match existing {
        Some(record) => record,
        None => {
            let expiry = (
                expires_at(now_ms(), retention),
                next_id(&mut tables.meta, meta::NEXT_REPORT_SEQ)?,
            );
            tables.report_expiry.insert(expiry, key.as_slice())?;
            DeliveryReportRecord::V1(DeliveryReportV1 {
                provider: provider.to_owned(),
                provider_message_id: report.provider_message_id.as_str().to_owned(),
                outbound_id: None,
                events: Vec::new(),
                expiry,
            })
        }
    };
    let repeated = record.events.len() >= MAX_EVENTS
        || record.events.iter().any(|event| {
            event.status == report.status
                && event.error_code == report.error_code
                && event.at_ms == report.at_ms
        });
    if repeated {
        bump_meta(&mut tables.meta, meta::REPORT_REPEATS_TOTAL, 1)?;
        return Ok(ReportOutcome {
            outbound_id: record.outbound_id,
            repeated: true,
            status: None,
        });
    }
    record.events.push(ReportEventV1 {
        status: report.status,
        error_code: report.error_code,
        at_ms: report.at_ms,
        received_at_ms: now_ms(),
    });
    if record.outbound_id.is_none() {
        record.outbound_id = tables
            .outbound_by_provider_id
            .get(key.as_slice())?
            .map(|v| v.value());
        if is_new && record.outbound_id.is_none() {
            bump_meta(&mut tables.meta, meta::UNLINKED_REPORTS, 1)?;
        }
    }
    let bytes = records::encode(&DeliveryReportRecord::V1(record.clone()))?;
    tables
        .delivery_reports
        .insert(key.as_slice(), bytes.as_slice())?;
    bump_meta(&mut tables.meta, meta::REPORTS_TOTAL, 1)?;
    let status = match record.outbound_id {
        Some(id) => update(tables, id, |outbound| {
            outbound.status = outbound.status.after_report(report.status);
            Ok(())
        })?,
        None => None,
    };
    Ok(ReportOutcome {
        outbound_id: record.outbound_id,
        repeated: false,
        status,
    })
}

/// Links the unlinked report under `key` (if any) to outbound message `outbound_id`
/// and returns its statuses, for the caller to apply.
pub(super) fn link_report(
    tables: &mut Tables<'_>,
    key: &[u8; 32],
    outbound_id: u64,
) -> Result<Vec<DeliveryStatus>, StoreError> {
    let Some(DeliveryReportRecord::V1(mut record)) = tables
        .delivery_reports
        .get(key.as_slice())?
        .map(|value| records::decode::<DeliveryReportRecord>(value.value()))
        .transpose()?
    else {
        return Ok(Vec::new());
    };
    if record.outbound_id.is_some() {
        return Ok(Vec::new());
    }
    record.outbound_id = Some(outbound_id);
    let bytes = records::encode(&DeliveryReportRecord::V1(record.clone()))?;
    tables
        .delivery_reports
        .insert(key.as_slice(), bytes.as_slice())?;
    let unlinked = meta_u64(&tables.meta, meta::UNLINKED_REPORTS)?;
    tables.meta.insert(
        meta::UNLINKED_REPORTS,
        unlinked.saturating_sub(1).to_le_bytes().as_slice(),
    )?;
    Ok(record.events.iter().map(|event| event.status).collect())
}
