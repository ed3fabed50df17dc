//! Ingest: one verified inbound SMS becomes one stored message, exactly once.

use std::sync::Arc;
use std::time::Duration;

use redb::ReadableTable;

use super::records::{self, Inbox, MessageRecord, MessageV2, NumberRecord, SealedMessage};
use super::tables::{Tables, meta};
use super::{Keyring, Store, StoreError, bump_meta, next_id, now_ms};
use crate::domain::InboundSms;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    pub message_id: u64,
    pub inbox: Inbox,
    /// True when this provider message was already stored; nothing changed.
    pub duplicate: bool,
}

impl Store {
    /// Stores `sms` received through provider instance `provider`, once. Returns after
    /// the group commit that holds it is durable on disk.
    pub async fn ingest(
        &self,
        provider: Arc<str>,
        sms: InboundSms,
        default_retention: Duration,
    ) -> Result<IngestOutcome, StoreError> {
        // Hashing, encoding and sealing run here, on the caller's task and in parallel
        // with other webhooks, so the single writer thread only touches tables.
        let dedupe = dedupe_key(&self.keys, &provider, sms.provider_message_id.as_str());
        let number = number_key(&self.keys, sms.to.as_str());
        let private = SealedMessage::V1 {
            provider_message_id: sms.provider_message_id.as_str().to_owned(),
            from: sms.from.as_str().to_owned(),
            to: sms.to.as_str().to_owned(),
            text: sms.text,
        };
        let sealed = self
            .keys
            .seal(&message_context(&dedupe), &records::encode(&private)?)?;
        let prepared = Prepared {
            provider,
            dedupe,
            number,
            sealed,
            received_at_ms: sms.received_at_ms,
            default_retention,
        };
        self.writer
            .submit(move |tables| ingest_in(tables, prepared))
            .await
    }
}

/// The `MESSAGES_BY_INBOX` key of a message.
pub(crate) fn inbox_key(inbox: Inbox, message_id: u64) -> (u8, u64, u64) {
    let (kind, id) = inbox.key();
    (kind, id, message_id)
}

/// A message ready for the writer: everything that needs no table is done.
struct Prepared {
    provider: Arc<str>,
    dedupe: [u8; 32],
    number: [u8; 32],
    sealed: Vec<u8>,
    received_at_ms: Option<i64>,
    default_retention: Duration,
}

/// The dedupe key of a provider message: a keyed hash, so the table reveals nothing
/// about which providers or ids were seen.
pub(crate) fn dedupe_key(keys: &Keyring, provider: &str, provider_message_id: &str) -> [u8; 32] {
    let mut value = Vec::with_capacity(provider.len() + 1 + provider_message_id.len());
    value.extend_from_slice(provider.as_bytes());
    value.push(0);
    value.extend_from_slice(provider_message_id.as_bytes());
    keys.blind_index("dedupe", &value)
}

pub(crate) fn number_key(keys: &Keyring, e164: &str) -> [u8; 32] {
    keys.blind_index("number", e164.as_bytes())
}

/// The sealing context of a message's private part: its dedupe key, which is unique
/// per message and kept in the record, so a sealed part moved to another record fails
/// to open.
pub(crate) fn message_context(dedupe_key: &[u8; 32]) -> Vec<u8> {
    [b"message:".as_slice(), dedupe_key].concat()
}

fn ingest_in(tables: &mut Tables<'_>, message: Prepared) -> Result<IngestOutcome, StoreError> {
    let existing = tables
        .dedupe
        .get(message.dedupe.as_slice())?
        .map(|v| v.value());
    if let Some(message_id) = existing {
        let inbox = tables
            .messages
            .get(message_id)?
            .map(|v| records::decode::<MessageRecord>(v.value()))
            .transpose()?
            .map_or(Inbox::Unrouted, |record| record.into_latest().inbox);
        bump_meta(&mut tables.meta, meta::DUPLICATES_TOTAL, 1)?;
        return Ok(IngestOutcome {
            message_id,
            inbox,
            duplicate: true,
        });
    }

    let number_id = tables
        .number_by_hash
        .get(message.number.as_slice())?
        .map(|v| v.value());
    let (inbox, retention) = match number_id {
        Some(id) => {
            let retention = tables
                .numbers
                .get(id)?
                .map(|v| records::decode::<NumberRecord>(v.value()))
                .transpose()?
                .and_then(|record| record.into_latest().retention_secs)
                .map_or(message.default_retention, Duration::from_secs);
            // The message belongs to whoever holds the number now; with no holder it
            // stays with the number (public inbox, or admin-only while idle).
            let lease = tables.active_lease_by_number.get(id)?.map(|v| v.value());
            (lease.map_or(Inbox::Number(id), Inbox::Lease), retention)
        }
        None => (Inbox::Unrouted, message.default_retention),
    };

    let message_id = next_id(&mut tables.meta, meta::NEXT_MESSAGE_ID)?;
    let stored_at_ms = now_ms();
    let expires_at_ms = u64::try_from(stored_at_ms)
        .unwrap_or(0)
        .saturating_add(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
    let record = MessageRecord::V2(MessageV2 {
        inbox,
        number_id,
        provider: message.provider.to_string(),
        received_at_ms: message.received_at_ms.unwrap_or(stored_at_ms),
        stored_at_ms,
        expires_at_ms,
        dedupe_key: message.dedupe,
        sealed: message.sealed,
        read: false,
    });

    tables
        .messages
        .insert(message_id, records::encode(&record)?.as_slice())?;
    tables
        .messages_by_inbox
        .insert(inbox_key(inbox, message_id), ())?;
    tables
        .dedupe
        .insert(message.dedupe.as_slice(), message_id)?;
    tables.expiry.insert((expires_at_ms, message_id), ())?;
    if inbox == Inbox::Unrouted {
        bump_meta(&mut tables.meta, meta::UNROUTED_TOTAL, 1)?;
    }
    Ok(IngestOutcome {
        message_id,
        inbox,
        duplicate: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SeedNumber;
    use crate::store::testing::store;

    fn sms(id: &str, to: &str, text: &str) -> InboundSms {
        InboundSms::new(id, "+14155550199", to, text, None).unwrap()
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[tokio::test]
    async fn routes_to_pool_numbers_and_keeps_strangers_apart() {
        let (store, _dir) = store();
        let number_id = store
            .ensure_numbers(vec![SeedNumber::new("sandbox", "+12025550101", None)])
            .await
            .unwrap()[0];
        let routed = store
            .ingest("sandbox".into(), sms("a", "+12025550101", "hi"), DAY)
            .await
            .unwrap();
        assert_eq!(routed.inbox, Inbox::Number(number_id));
        let stranger = store
            .ingest("sandbox".into(), sms("b", "+12025550199", "hi"), DAY)
            .await
            .unwrap();
        assert_eq!(stranger.inbox, Inbox::Unrouted);
        assert_eq!(store.counts().unwrap().unrouted_total, 1);
    }

    #[tokio::test]
    async fn a_duplicate_changes_nothing() {
        let (store, _dir) = store();
        let first = store
            .ingest("p".into(), sms("same", "+12025550101", "one"), DAY)
            .await
            .unwrap();
        let again = store
            .ingest("p".into(), sms("same", "+12025550101", "two"), DAY)
            .await
            .unwrap();
        assert!(!first.duplicate);
        assert!(again.duplicate);
        assert_eq!(again.message_id, first.message_id);
        let page = store
            .list_messages(&crate::store::Scope::All, None, 10)
            .unwrap();
        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.messages[0].text, "one");
        // The same id through another provider instance is another message.
        let other = store
            .ingest("q".into(), sms("same", "+12025550101", "three"), DAY)
            .await
            .unwrap();
        assert!(!other.duplicate);
    }

    #[tokio::test]
    async fn concurrent_submissions_share_commits_and_stay_exactly_once() {
        let (store, _dir) = store();
        let mut tasks = Vec::new();
        for i in 0..400 {
            let store = store.clone();
            // Every message is sent twice, concurrently.
            tasks.push(tokio::spawn(async move {
                store
                    .ingest(
                        "p".into(),
                        sms(&format!("m{}", i / 2), "+12025550101", "x"),
                        DAY,
                    )
                    .await
            }));
        }
        let mut fresh = 0;
        for task in tasks {
            if !task.await.unwrap().unwrap().duplicate {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 200);
        assert_eq!(store.counts().unwrap().messages, 200);
        let stats = store.writer().stats();
        let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            commits < 400,
            "400 writes took {commits} commits: no grouping happened"
        );
    }
}
