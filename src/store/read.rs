//! Read paths: messages newest first, the number pool, counts. Each opens one read
//! transaction, so a page is a consistent snapshot even while ingest commits.

use redb::{ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::ingest::message_context;
use super::records::Inbox;
use super::records::{self, MessageRecord, MessageV4, NumberRecord, SealedMessage};
use super::tables::{
    ACTIVE_LEASE_BY_NUMBER, EXPIRY, MESSAGES, MESSAGES_BY_INBOX, META, NUMBERS, meta,
};
use super::{Keyring, Store, StoreError, context, now_ms, read_u64};
use crate::domain::otp;

/// Which messages a listing covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every message (admins).
    All,
    /// The messages of these inboxes.
    Inboxes(Vec<Inbox>),
}

/// A message as the API shows it, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub id: u64,
    pub inbox: Inbox,
    /// The pool number it was sent to, if it is in the pool.
    pub number_id: Option<u64>,
    /// The recipient: the pool number, or whatever number an unrouted message was sent to.
    pub number: String,
    pub from: String,
    pub text: String,
    pub received_at_ms: i64,
    /// When burnbox stored it; ids follow this order.
    pub stored_at_ms: i64,
    pub expires_at_ms: u64,
    pub provider: String,
    pub provider_message_id: String,
    pub read: bool,
    /// Put together from parts, some of which never arrived.
    pub partial: bool,
    /// A binary SMS whose octets are not text: `text` is them in hex.
    pub binary: bool,
}

impl MessageView {
    /// The one-time code in the text (separators removed) and the service the message
    /// is from, each when recognisable; what every reader of messages shows and filters
    /// on. Extracted on every read rather than stored: it costs microseconds, keeps no
    /// more derived plaintext at rest, and improves for old messages when it improves.
    /// A binary message has neither: its hex is full of digit runs that are no code.
    pub fn otp_and_service(&self) -> (Option<String>, Option<String>) {
        if self.binary {
            return (None, None);
        }
        match otp::extract(&self.text, &self.from) {
            Some(code) => (Some(code.code), code.service),
            None => (None, otp::service(&self.text, &self.from)),
        }
    }
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
    pub public: bool,
    pub disabled: bool,
    /// Leasable from this time (unix ms); later than now while in quarantine.
    pub available_from_ms: i64,
    /// Its active lease, if leased.
    pub lease_id: Option<u64>,
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
    /// How overdue the oldest expired message is (0 when none is due).
    pub sweeper_lag_ms: u64,
}

impl Store {
    /// Messages newest first, starting below message id `before` when given: every
    /// message (admins), or those of the given inboxes merged (a caller's leases).
    pub fn list_messages(
        &self,
        scope: &Scope,
        before: Option<u64>,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        let txn = self.db.begin_read()?;
        let upper = before.unwrap_or(u64::MAX);
        let mut ids = Vec::with_capacity(limit + 1);
        match scope {
            Scope::All => {
                for entry in txn
                    .open_table(MESSAGES)?
                    .range(..upper)?
                    .rev()
                    .take(limit + 1)
                {
                    ids.push(entry?.0.value());
                }
            }
            Scope::Inboxes(inboxes) => {
                let by_inbox = txn.open_table(MESSAGES_BY_INBOX)?;
                for inbox in inboxes {
                    let (kind, id) = inbox.key();
                    for entry in by_inbox
                        .range((kind, id, 0)..(kind, id, upper))?
                        .rev()
                        .take(limit + 1)
                    {
                        ids.push(entry?.0.value().2);
                    }
                }
                // Each inbox gave its newest; the page is the newest of them all.
                ids.sort_unstable_by(|a, b| b.cmp(a));
                ids.truncate(limit + 1);
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

    /// Messages of `inbox` with ids above `after`, oldest first: what a waiting client
    /// has not seen yet.
    pub fn messages_after(
        &self,
        inbox: Inbox,
        after: u64,
        limit: usize,
    ) -> Result<Vec<MessageView>, StoreError> {
        let txn = self.db.begin_read()?;
        let (kind, id) = inbox.key();
        let mut ids = Vec::with_capacity(limit);
        for entry in txn
            .open_table(MESSAGES_BY_INBOX)?
            .range((kind, id, after.saturating_add(1))..=(kind, id, u64::MAX))?
            .take(limit)
        {
            ids.push(entry?.0.value().2);
        }
        let table = txn.open_table(MESSAGES)?;
        ids.into_iter()
            .filter_map(|id| load_message(&table, &self.keys, id).transpose())
            .collect()
    }

    /// Messages with ids above `after`, oldest first, looking at `limit` at most: those
    /// whose inbox `wanted` accepts, decrypted, and the last id looked at (where the next
    /// call starts; `None` when there is nothing newer). What the real-time publisher has
    /// not published yet: ids are committed in order, so a snapshot holds every id up to
    /// its newest (less those already expired). Messages nobody wants are never
    /// decrypted, so following ingest costs little while nobody is listening.
    pub fn messages_since(
        &self,
        after: u64,
        limit: usize,
        wanted: impl Fn(Inbox) -> bool,
    ) -> Result<(Vec<MessageView>, Option<u64>), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        let mut messages = Vec::new();
        let mut last = None;
        for entry in table.range(after.saturating_add(1)..)?.take(limit) {
            let (id, value) = entry?;
            let id = id.value();
            last = Some(id);
            let record = records::decode::<MessageRecord>(value.value())?.into_latest();
            if wanted(record.inbox) {
                messages.push(open_message(&self.keys, id, record)?);
            }
        }
        Ok((messages, last))
    }

    /// Calls `each` with every stored message, oldest first, decrypted (to rebuild the
    /// in-memory search index at start). One read snapshot, so ingest goes on meanwhile.
    pub fn for_each_message(&self, mut each: impl FnMut(MessageView)) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        let mut count = 0;
        for entry in table.iter()? {
            let (id, value) = entry?;
            let record = records::decode::<MessageRecord>(value.value())?.into_latest();
            each(open_message(&self.keys, id.value(), record)?);
            count += 1;
        }
        Ok(count)
    }

    /// The newest message id overall (0 when there is none).
    pub fn latest_message_id(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let last = txn.open_table(MESSAGES)?.last()?.map(|(id, _)| id.value());
        Ok(last.unwrap_or(0))
    }

    /// One message, decrypted.
    pub fn message(&self, id: u64) -> Result<Option<MessageView>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        load_message(&table, &self.keys, id)
    }

    /// The pool, in id order.
    pub fn list_numbers(&self) -> Result<Vec<NumberView>, StoreError> {
        let txn = self.db.begin_read()?;
        let active = txn.open_table(ACTIVE_LEASE_BY_NUMBER)?;
        let mut numbers = Vec::new();
        for entry in txn.open_table(NUMBERS)?.iter()? {
            let (id, value) = entry?;
            numbers.push(self.number_view(id.value(), value.value(), &active)?);
        }
        Ok(numbers)
    }

    /// One pool number.
    pub fn number(&self, id: u64) -> Result<Option<NumberView>, StoreError> {
        let txn = self.db.begin_read()?;
        let active = txn.open_table(ACTIVE_LEASE_BY_NUMBER)?;
        let Some(value) = txn.open_table(NUMBERS)?.get(id)? else {
            return Ok(None);
        };
        self.number_view(id, value.value(), &active).map(Some)
    }

    fn number_view(
        &self,
        id: u64,
        value: &[u8],
        active: &ReadOnlyTable<u64, u64>,
    ) -> Result<NumberView, StoreError> {
        let record = records::decode::<NumberRecord>(value)?.into_latest();
        let number = self
            .keys
            .open(&context("number", id), &record.sealed_number)?;
        Ok(NumberView {
            id,
            number: String::from_utf8(number).map_err(|e| StoreError::Codec(e.to_string()))?,
            provider: record.provider,
            retention_secs: record.retention_secs,
            public: record.public,
            disabled: record.disabled,
            available_from_ms: record.available_from_ms,
            lease_id: active.get(id)?.map(|v| v.value()),
        })
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
            sweeper_lag_ms: txn
                .open_table(EXPIRY)?
                .first()?
                .map(|(key, _)| {
                    u64::try_from(now_ms())
                        .unwrap_or(0)
                        .saturating_sub(key.value().0)
                })
                .unwrap_or(0),
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
    open_message(keys, id, record).map(Some)
}

/// Message `id` as the API shows it: `record` with its sealed part opened.
fn open_message(keys: &Keyring, id: u64, record: MessageV4) -> Result<MessageView, StoreError> {
    // The first releases sealed under the id. Their records may since have been
    // rewritten in a later layout (marked read, say) with the sealed part unchanged, so
    // any layout may need it. Either way the sealed part opens only in its own record.
    let private = keys
        .open(&message_context(&record.dedupe_key), &record.sealed)
        .or_else(|_| keys.open(&context("message", id), &record.sealed))?;
    let SealedMessage::V1 {
        provider_message_id,
        from,
        to,
        text,
    } = records::decode(&private)?;
    Ok(MessageView {
        id,
        inbox: record.inbox,
        number_id: record.number_id,
        number: to,
        from,
        text,
        received_at_ms: record.received_at_ms,
        stored_at_ms: record.stored_at_ms,
        expires_at_ms: record.expires_at_ms,
        provider: record.provider,
        provider_message_id,
        read: record.read,
        partial: record.partial,
        binary: record.binary,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::domain::InboundSms;
    use crate::store::records::{self, MessageRecord, MessageV1, SealedMessage};
    use crate::store::testing::store;
    use crate::store::{Inbox, SeedNumber, context};

    /// The first layout, sealed as the first releases did: under the message id.
    #[tokio::test]
    async fn a_message_sealed_under_its_id_by_an_early_release_still_opens() {
        let (store, _dir) = store();
        let private = SealedMessage::V1 {
            provider_message_id: "SM1".into(),
            from: "+14155550100".into(),
            to: "+14155550199".into(),
            text: "old code 4242".into(),
        };
        let sealed = |id: u64| {
            store
                .keys
                .seal(&context("message", id), &records::encode(&private).unwrap())
                .unwrap()
        };
        let record = |sealed: Vec<u8>| {
            records::encode(&MessageRecord::V1(MessageV1 {
                inbox: 0,
                provider: "twilio".into(),
                received_at_ms: 1,
                stored_at_ms: 1,
                expires_at_ms: u64::MAX,
                dedupe_key: [7; 32],
                sealed,
                read: false,
            }))
            .unwrap()
        };
        // Message 5 is as the early release wrote it; message 6 carries message 5's
        // sealed part, which must not open there.
        let (five, six) = (record(sealed(5)), record(sealed(5)));
        store
            .writer()
            .submit(move |tables| {
                tables.messages.insert(5, five.as_slice())?;
                tables.messages.insert(6, six.as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        let message = store.message(5).unwrap().unwrap();
        assert_eq!(message.text, "old code 4242");
        assert_eq!(message.from, "+14155550100");
        assert_eq!(message.inbox, Inbox::Unrouted);
        assert!(
            store.message(6).is_err(),
            "a sealed part opens only in its own record"
        );
    }

    #[tokio::test]
    async fn messages_since_opens_only_wanted_inboxes_and_says_how_far_it_looked() {
        let (store, _dir) = store();
        store
            .ensure_numbers(vec![SeedNumber::new("p", "+12025550101", None)])
            .await
            .unwrap();
        let mut ids = Vec::new();
        for (n, to) in ["+12025550101", "+19995550000", "+12025550101"]
            .iter()
            .enumerate()
        {
            let sms = InboundSms::new(&format!("m{n}"), "+14155550199", to, "hi", None).unwrap();
            let outcome = store
                .ingest("p".into(), sms, Duration::from_secs(60))
                .await
                .unwrap();
            ids.push(outcome.message_id().unwrap());
        }

        let (unrouted, last) = store
            .messages_since(0, 10, |inbox| inbox == Inbox::Unrouted)
            .unwrap();
        assert_eq!(unrouted.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[1]]);
        assert_eq!(unrouted[0].number, "+19995550000", "opened");
        assert_eq!(last, Some(ids[2]), "looked past the unwanted ones");

        let (none, last) = store.messages_since(0, 2, |_| false).unwrap();
        assert!(none.is_empty());
        assert_eq!(last, Some(ids[1]), "stops after `limit` looked at");
        assert_eq!(
            store.messages_since(ids[2], 10, |_| true).unwrap(),
            (vec![], None)
        );
    }
}
