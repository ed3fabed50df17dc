//! Ingest: one verified inbound SMS becomes one stored message, exactly once. Parts of a
//! multipart message are held until the message is whole, then stored as one.

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use redb::ReadableTable;

use super::cross_provider::{RecentContent, Sighting};
use super::reassemble::join;
use super::records::{
    self, DeletedMessageRecord, Inbox, MessageRecord, MessageV4, NumberRecord, PartBody, PartsV2,
    PendingRecord, PendingV2, SealedMessage, SealedPartV2, SealedParts,
};
use super::tables::{Tables, meta};
use super::{Keyring, Store, StoreError, bump_meta, next_id, now_ms, readable_or_skipped};
use crate::domain::user_data::{Reading, Run};
use crate::domain::{InboundSms, MessagePart};

/// The `DEDUPE` value of a part whose message is not whole yet.
const HELD: u64 = u64::MAX;

/// The `DEDUPE` value of a key whose message was deleted by its owner or expired, kept
/// through the dedupe window (see `tables::DELETED_MESSAGES`).
pub(crate) const GONE: u64 = u64::MAX - 1;

/// The message a `DEDUPE` value names: none while its parts are held, or once deleted.
fn named_message(value: u64) -> Option<u64> {
    (value != HELD && value != GONE).then_some(value)
}

/// How many messages sharing a concatenation reference (and provider, sender, recipient
/// and part count) are held or remembered at once, each under its own generation of the
/// group key. An 8-bit reference comes round after 256 messages, so a second message
/// with it within a tombstone's life (three `multipart_timeout`s) is rare and a fifth is
/// a flood; past that a part is stored on its own rather than refused.
const GENERATIONS: u8 = 4;

/// What became of one inbound SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored as a new message (for a part: the part that made its message whole).
    Stored(NewMessage),
    /// Already here, so nothing changed: the message id, or `None` for a part whose
    /// message is not whole yet.
    Duplicate(Option<u64>),
    /// A part, kept (durably) until its message is whole or `multipart_timeout` passes.
    Held,
}

impl IngestOutcome {
    pub fn message_id(&self) -> Option<u64> {
        match self {
            Self::Stored(message) => Some(message.message_id),
            Self::Duplicate(id) => *id,
            Self::Held => None,
        }
    }

    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate(_))
    }

    /// Where a newly stored message went.
    pub fn inbox(&self) -> Option<Inbox> {
        match self {
            Self::Stored(message) => Some(message.inbox),
            Self::Duplicate(_) | Self::Held => None,
        }
    }
}

/// A message just stored, with what the search index and the real-time hub need.
#[derive(Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub message_id: u64,
    pub inbox: Inbox,
    pub received_at_ms: i64,
    pub from: String,
    pub text: String,
}

// The text is the most private thing we hold: never print it.
impl fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMessage")
            .field("message_id", &self.message_id)
            .field("inbox", &self.inbox)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Stores `sms` received through provider instance `provider`, once. Returns after
    /// the group commit that holds it is durable on disk.
    pub async fn ingest(
        &self,
        provider: Arc<str>,
        mut sms: InboundSms,
        default_retention: Duration,
    ) -> Result<IngestOutcome, StoreError> {
        // Hashing, encoding and sealing run here, on the caller's task and in parallel
        // with other webhooks, so the single writer thread only touches tables.
        if let Some(part) = sms.part.take() {
            let keys = Arc::clone(&self.keys);
            let incoming = IncomingPart::new(&keys, provider, sms, part, default_retention);
            return self
                .writer
                .submit(move |tables| part_in(tables, &keys, incoming))
                .await;
        }
        let dedupe = dedupe_key(&self.keys, &provider, sms.provider_message_id.as_str());
        let number = number_key(&self.keys, sms.to.as_str());
        // A binary SMS in one part is whole already: read its octets now.
        let (text, binary) = match sms.data.take() {
            Some(data) => {
                let reading = Reading::of(&[Run::whole(&data)]);
                (reading.text(&data), reading.is_binary())
            }
            None => (std::mem::take(&mut sms.text), sms.hex),
        };
        let private = SealedMessage::V1 {
            provider_message_id: sms.provider_message_id.as_str().to_owned(),
            from: sms.from.as_str().to_owned(),
            to: sms.to.as_str().to_owned(),
            text: text.clone(),
        };
        let sealed = self
            .keys
            .seal(&message_context(&dedupe), &records::encode(&private)?)?;
        let content = content_key(&self.keys, &sms, &text);
        let prepared = Prepared {
            provider,
            dedupe,
            number,
            sealed,
            received_at_ms: sms.received_at_ms,
            default_retention,
            part_keys: Vec::new(),
            partial: false,
            binary,
            content: Some(content),
            arrived_ms: now_ms(),
            from: sms.from.as_str().to_owned(),
            text,
        };
        let recent = Arc::clone(&self.recent);
        self.writer
            .submit(move |tables| ingest_in(tables, &recent, content, prepared))
            .await
    }

    /// Stores, with gaps, every multipart message whose first part arrived `timeout`
    /// or longer ago and whose other parts never came, and forgets tombstones of
    /// completed ones after three timeouts. Returns the messages stored, and how many
    /// pending records could not be read (dropped, so they cannot fail every sweep).
    ///
    /// Walks the whole table in writer jobs that each read at most [`PENDING_SCAN`]
    /// records and act on at most `batch`, so ingest never waits behind the walk.
    pub async fn complete_overdue_parts(
        &self,
        timeout: Duration,
        default_retention: Duration,
        batch: usize,
    ) -> Result<(Vec<NewMessage>, usize), StoreError> {
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        let due = PartsDue {
            cutoff: now.saturating_sub(timeout_ms),
            forget_before: now.saturating_sub(timeout_ms.saturating_mul(3)),
            default_retention,
            batch: batch.max(1),
        };
        let mut stored = Vec::new();
        let mut dropped = 0;
        let mut after = None;
        loop {
            let keys = Arc::clone(&self.keys);
            let step = self
                .writer
                .submit(move |tables| overdue_parts_in(tables, &keys, due, after))
                .await?;
            stored.extend(step.stored);
            dropped += step.dropped;
            match step.read_up_to {
                Some(key) => after = Some(key),
                None => return Ok((stored, dropped)),
            }
        }
    }
}

/// Pending records one clean-up job reads at most: small records, so well under a
/// millisecond of the writer's time.
const PENDING_SCAN: usize = 1024;

/// Which pending records are due, and how many one job may act on.
#[derive(Debug, Clone, Copy)]
struct PartsDue {
    /// Groups first seen at or before this (unix ms) are overdue.
    cutoff: i64,
    /// Tombstones first seen at or before this are forgotten.
    forget_before: i64,
    default_retention: Duration,
    batch: usize,
}

/// What one clean-up job did, and where the next one starts.
struct PartsStep {
    stored: Vec<NewMessage>,
    dropped: usize,
    /// The last group key read; `None` once the table's end was reached.
    read_up_to: Option<Vec<u8>>,
}

/// One bounded step of [`Store::complete_overdue_parts`], from the group after `after`.
fn overdue_parts_in(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    due: PartsDue,
    after: Option<Vec<u8>>,
) -> Result<PartsStep, StoreError> {
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    let mut read = 0;
    let mut read_up_to = None;
    let range = match &after {
        Some(key) => tables
            .pending_parts
            .range::<&[u8]>((Bound::Excluded(key.as_slice()), Bound::Unbounded))?,
        None => tables.pending_parts.range::<&[u8]>(..)?,
    };
    for entry in range {
        let (group, value) = entry?;
        let group = group.value().to_vec();
        match records::decode::<PendingRecord>(value.value()) {
            Ok(record) => {
                let pending = record.into_latest();
                let gone =
                    pending.completed.is_some() && pending.first_seen_ms <= due.forget_before;
                let overdue = pending.completed.is_none() && pending.first_seen_ms <= due.cutoff;
                if gone || overdue {
                    found.push((group.clone(), pending));
                }
            }
            Err(_) => unreadable.push(group.clone()),
        }
        read += 1;
        if found.len() + unreadable.len() >= due.batch || read >= PENDING_SCAN {
            read_up_to = Some(group);
            break;
        }
    }
    for group in &unreadable {
        tables.pending_parts.remove(group.as_slice())?;
    }
    let mut dropped = unreadable.len();
    let mut stored = Vec::new();
    for (group, pending) in found {
        if pending.completed.is_some() {
            tables.pending_parts.remove(group.as_slice())?;
            continue;
        }
        match open_parts(keys, &group, &pending) {
            Ok(parts) => {
                stored.push(complete(
                    tables,
                    keys,
                    &group,
                    pending,
                    parts,
                    due.default_retention,
                )?);
            }
            Err(_) => {
                tables.pending_parts.remove(group.as_slice())?;
                dropped += 1;
            }
        }
    }
    Ok(PartsStep {
        stored,
        dropped,
        read_up_to,
    })
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
    /// For a message put together from parts: the other parts' dedupe keys.
    part_keys: Vec<[u8; 32]>,
    partial: bool,
    /// Binary octets that are not text: `text` is their hex.
    binary: bool,
    /// For matching copies through other providers (not for multipart messages).
    content: Option<[u8; 32]>,
    /// When it reached us (for a multipart message: its first part). A lease that
    /// started later must not receive it.
    arrived_ms: i64,
    from: String,
    text: String,
}

/// One part of a multipart message, on its way to the writer.
struct IncomingPart {
    provider: Arc<str>,
    /// Its group's key in each generation.
    groups: Vec<[u8; 32]>,
    /// Its group's key before the part count was in it (see [`legacy_group`]).
    legacy_group: [u8; 32],
    number: [u8; 32],
    dedupe: [u8; 32],
    part: MessagePart,
    sms: InboundSms,
    default_retention: Duration,
}

impl IncomingPart {
    fn new(
        keys: &Keyring,
        provider: Arc<str>,
        sms: InboundSms,
        part: MessagePart,
        default_retention: Duration,
    ) -> Self {
        let group = |fields: &[&str]| {
            let value = [
                &[
                    &*provider,
                    sms.from.as_str(),
                    sms.to.as_str(),
                    &part.reference,
                ],
                fields,
            ]
            .concat()
            .join("\0");
            keys.blind_index("multipart", value.as_bytes())
        };
        // Senders reuse references, so a group is also told apart by its part count and
        // held in one of several generations (see `part_in`).
        let total = part.total.to_string();
        let groups = (0..GENERATIONS)
            .map(|generation| group(&[&total, &generation.to_string()]))
            .collect();
        Self {
            legacy_group: group(&[]),
            groups,
            number: number_key(keys, sms.to.as_str()),
            dedupe: dedupe_key(keys, &provider, sms.provider_message_id.as_str()),
            provider,
            part,
            sms,
            default_retention,
        }
    }
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

fn parts_context(group: &[u8]) -> Vec<u8> {
    [b"multipart:".as_slice(), group].concat()
}

/// Which copies are the same SMS through different providers: sender, recipient, text.
fn content_key(keys: &Keyring, sms: &InboundSms, text: &str) -> [u8; 32] {
    let value = [sms.from.as_str(), sms.to.as_str(), text].join("\0");
    keys.blind_index("content", value.as_bytes())
}

fn ingest_in(
    tables: &mut Tables<'_>,
    recent: &Arc<RecentContent>,
    content: [u8; 32],
    message: Prepared,
) -> Result<IngestOutcome, StoreError> {
    let existing = tables
        .dedupe
        .get(message.dedupe.as_slice())?
        .map(|v| v.value());
    if let Some(value) = existing {
        bump_meta(&mut tables.meta, meta::DUPLICATES_TOTAL, 1)?;
        return Ok(IngestOutcome::Duplicate(named_message(value)));
    }
    let now = now_ms();
    if let Sighting::SeenAs(message_id) = recent.sighting(&content, &message.provider, now)
        && let Some(named) = attach_copy(tables, message_id, message.dedupe, Some(content))?
    {
        bump_meta(&mut tables.meta, meta::DUPLICATES_TOTAL, 1)?;
        note(tables, recent, content, &message.provider, None, now);
        return Ok(IngestOutcome::Duplicate(named));
    }
    let provider = Arc::clone(&message.provider);
    let stored = store_new(tables, message)?;
    note(
        tables,
        recent,
        content,
        &provider,
        Some(stored.message_id),
        now,
    );
    Ok(IngestOutcome::Stored(stored))
}

/// Notes a copy in the cross-provider memory for as long as its batch commits.
fn note(
    tables: &mut Tables<'_>,
    recent: &Arc<RecentContent>,
    content: [u8; 32],
    provider: &str,
    stored: Option<u64>,
    now: i64,
) {
    let noted = recent.note(content, provider, stored, now);
    let recent = Arc::clone(recent);
    tables.on_rollback(move || recent.undo(noted));
}

/// Records `copy` (another dedupe key: a copy through another provider, or a late
/// part) as a key of stored message `message_id`, so its retries are duplicates and it
/// goes when the message goes. With `content`, only if the message has that content:
/// the cross-provider memory is a hint (a rolled-back batch can leave it naming an id
/// that was never stored, or later given to another message), the store is the truth.
/// A message its owner deleted takes the copy too, so the copy does not bring it back.
///
/// `None`: not attached. `Some(named)`: attached, and `named` is the message id, or
/// `None` for a deleted message.
fn attach_copy(
    tables: &mut Tables<'_>,
    message_id: u64,
    copy: [u8; 32],
    content: Option<[u8; 32]>,
) -> Result<Option<Option<u64>>, StoreError> {
    let matches = |key: Option<[u8; 32]>| content.is_none() || key == content;
    let record = tables
        .messages
        .get(message_id)?
        .map(|v| records::decode::<MessageRecord>(v.value()))
        .transpose()?
        .map(MessageRecord::into_latest);
    if let Some(mut record) = record {
        if !matches(record.content_key) {
            return Ok(None);
        }
        record.part_keys.push(copy);
        tables.messages.insert(
            message_id,
            records::encode(&MessageRecord::V4(record))?.as_slice(),
        )?;
        tables.dedupe.insert(copy.as_slice(), message_id)?;
        return Ok(Some(Some(message_id)));
    }
    let deleted = tables
        .deleted_messages
        .get(message_id)?
        .map(|v| records::decode::<DeletedMessageRecord>(v.value()))
        .transpose();
    // An unreadable one cannot take the copy; failing would fail every write sharing
    // the commit for as long as something names it.
    let Some(Some(DeletedMessageRecord::V1 {
        mut keys,
        content_key,
    })) = readable_or_skipped(deleted, "deleted message", message_id)?
    else {
        return Ok(None);
    };
    if !matches(content_key) {
        return Ok(None);
    }
    keys.push(copy);
    let tombstone = records::encode(&DeletedMessageRecord::V1 { keys, content_key })?;
    tables
        .deleted_messages
        .insert(message_id, tombstone.as_slice())?;
    tables.dedupe.insert(copy.as_slice(), GONE)?;
    Ok(Some(None))
}

/// Routes and stores a message that is not a duplicate.
fn store_new(tables: &mut Tables<'_>, message: Prepared) -> Result<NewMessage, StoreError> {
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
            // The message belongs to whoever held the number when it arrived; with no
            // holder it stays with the number (public inbox, or admin-only while idle).
            let lease = tables.active_lease_by_number.get(id)?.map(|v| v.value());
            let lease = match lease {
                Some(lease_id) => tables
                    .leases
                    .get(lease_id)?
                    .map(|v| records::decode::<records::LeaseRecord>(v.value()))
                    .transpose()?
                    .map(records::LeaseRecord::into_latest)
                    .filter(|lease| lease.started_at_ms <= message.arrived_ms)
                    .map(|_| lease_id),
                None => None,
            };
            (lease.map_or(Inbox::Number(id), Inbox::Lease), retention)
        }
        None => (Inbox::Unrouted, message.default_retention),
    };

    let message_id = next_id(&mut tables.meta, meta::NEXT_MESSAGE_ID)?;
    let stored_at_ms = now_ms();
    let expires_at_ms = u64::try_from(stored_at_ms)
        .unwrap_or(0)
        .saturating_add(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
    let received_at_ms = message.received_at_ms.unwrap_or(stored_at_ms);
    let record = MessageRecord::V4(MessageV4 {
        inbox,
        number_id,
        provider: message.provider.to_string(),
        received_at_ms,
        stored_at_ms,
        expires_at_ms,
        dedupe_key: message.dedupe,
        sealed: message.sealed,
        read: false,
        part_keys: message.part_keys,
        partial: message.partial,
        content_key: message.content,
        binary: message.binary,
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
    Ok(NewMessage {
        message_id,
        inbox,
        received_at_ms,
        from: message.from,
        text: message.text,
    })
}

/// One generation's record, read for an arriving part.
struct Group {
    key: [u8; 32],
    pending: PendingV2,
    /// The parts held; `None` for a tombstone.
    parts: Option<PartsV2>,
}

impl Group {
    /// Whether the group has no part at `index` yet, so the part may be one of its.
    fn open_at(&self, index: u8) -> bool {
        match &self.parts {
            Some(parts) => parts.parts.iter().all(|part| part.index != index),
            None => !self.pending.filled.contains(&index),
        }
    }
}

/// Adds one part to its message's group; stores the message when this part makes it
/// whole.
///
/// Senders reuse concatenation references, so a part joins the newest group that has
/// no part at its position, held parts before tombstones (a tombstone keeps only a late
/// part's id, a held message its text too, so a message still waiting is the better
/// home). A part for a position every group has (another id: a retry has the same id
/// and is caught by `DEDUPE`) is of a new message that reuses the reference, and starts
/// a group of its own.
fn part_in(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    incoming: IncomingPart,
) -> Result<IngestOutcome, StoreError> {
    if let Some(value) = tables
        .dedupe
        .get(incoming.dedupe.as_slice())?
        .map(|v| v.value())
    {
        bump_meta(&mut tables.meta, meta::DUPLICATES_TOTAL, 1)?;
        return Ok(IngestOutcome::Duplicate(named_message(value)));
    }
    let index = incoming.part.index;
    let (mut groups, free) = read_groups(tables, keys, &incoming.groups)?;
    groups.extend(legacy_group(tables, keys, &incoming)?);
    // Best home last; groups begun in the same millisecond stay in generation order, so
    // the later generation wins.
    groups.sort_by_key(|group| (group.parts.is_some(), group.pending.first_seen_ms));
    let slot = match groups.iter().rposition(|group| group.open_at(index)) {
        Some(at) => {
            let Group {
                key,
                pending,
                parts,
            } = groups.swap_remove(at);
            if let Some(parts) = parts {
                return add_part(tables, keys, &key, pending, parts, incoming);
            }
            match late_part(tables, &key, pending, index, incoming.dedupe)? {
                Some(outcome) => return Ok(outcome),
                // Nothing of its message is left: the tombstone's place is free.
                None => Some(key),
            }
        }
        None => free.first().copied().or_else(|| oldest_tombstone(&groups)),
    };
    let (pending, parts) = new_group(&incoming);
    match slot {
        Some(key) => add_part(tables, keys, &key, pending, parts, incoming),
        None => store_alone(tables, keys, pending, parts, incoming),
    }
}

/// Every generation of a part's group: the records found, and the keys still free.
fn read_groups(
    tables: &Tables<'_>,
    keys: &Keyring,
    group_keys: &[[u8; 32]],
) -> Result<(Vec<Group>, Vec<[u8; 32]>), StoreError> {
    let mut groups = Vec::new();
    let mut free = Vec::new();
    for key in group_keys {
        let Some(pending) = read_pending(tables, key)? else {
            free.push(*key);
            continue;
        };
        let parts = match pending.completed {
            Some(_) => None,
            None => Some(open_parts(keys, key, &pending)?),
        };
        groups.push(Group {
            key: *key,
            pending,
            parts,
        });
    }
    Ok((groups, free))
}

/// Parts of the same part count held by the release before the part count was in the
/// group key, under that key: a message begun before an upgrade still comes together.
/// That release's tombstones do not know their positions, so they are left to the
/// sweeper, and no new group goes there.
fn legacy_group(
    tables: &Tables<'_>,
    keys: &Keyring,
    incoming: &IncomingPart,
) -> Result<Option<Group>, StoreError> {
    let key = incoming.legacy_group;
    let Some(pending) = read_pending(tables, &key)?
        .filter(|pending| pending.completed.is_none() && pending.total == incoming.part.total)
    else {
        return Ok(None);
    };
    let parts = open_parts(keys, &key, &pending)?;
    Ok(Some(Group {
        key,
        pending,
        parts: Some(parts),
    }))
}

fn read_pending(tables: &Tables<'_>, key: &[u8; 32]) -> Result<Option<PendingV2>, StoreError> {
    tables
        .pending_parts
        .get(key.as_slice())?
        .map(|v| records::decode::<PendingRecord>(v.value()))
        .transpose()
        .map(|found| found.map(PendingRecord::into_latest))
}

/// The tombstone to give up when every generation is taken: the oldest.
fn oldest_tombstone(groups: &[Group]) -> Option<[u8; 32]> {
    groups
        .iter()
        .filter(|group| group.parts.is_none())
        .min_by_key(|group| group.pending.first_seen_ms)
        .map(|group| group.key)
}

/// A part for a position its stored message lacks (it came after the timeout): it
/// joins that message as a duplicate rather than start another, and the position is
/// taken from then on. A message deleted or expired within the dedupe window takes it
/// too, so no fragment of it comes back. `None` once nothing of the message is left.
fn late_part(
    tables: &mut Tables<'_>,
    group: &[u8; 32],
    mut tombstone: PendingV2,
    index: u8,
    dedupe: [u8; 32],
) -> Result<Option<IngestOutcome>, StoreError> {
    let Some(message_id) = tombstone.completed else {
        return Ok(None);
    };
    let Some(named) = attach_copy(tables, message_id, dedupe, None)? else {
        return Ok(None);
    };
    tombstone.filled.push(index);
    put_pending(tables, group, tombstone)?;
    bump_meta(&mut tables.meta, meta::DUPLICATES_TOTAL, 1)?;
    Ok(Some(IngestOutcome::Duplicate(named)))
}

/// An empty group for the message `incoming` is a part of.
fn new_group(incoming: &IncomingPart) -> (PendingV2, PartsV2) {
    let pending = PendingV2 {
        provider: incoming.provider.to_string(),
        first_seen_ms: now_ms(),
        total: incoming.part.total,
        number: incoming.number,
        sealed: Vec::new(),
        completed: None,
        filled: Vec::new(),
    };
    let parts = PartsV2 {
        from: incoming.sms.from.as_str().to_owned(),
        to: incoming.sms.to.as_str().to_owned(),
        received_at_ms: incoming.sms.received_at_ms,
        parts: Vec::new(),
    };
    (pending, parts)
}

fn sealed_part(incoming: IncomingPart) -> SealedPartV2 {
    let body = match incoming.sms.data {
        Some(data) => PartBody::Data(data),
        None => PartBody::Text(incoming.sms.text),
    };
    SealedPartV2 {
        index: incoming.part.index,
        provider_message_id: incoming.sms.provider_message_id.as_str().to_owned(),
        dedupe: incoming.dedupe,
        body,
    }
}

/// Adds the part to the group under `group`, and stores the message if it is whole.
fn add_part(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    group: &[u8; 32],
    mut pending: PendingV2,
    mut parts: PartsV2,
    incoming: IncomingPart,
) -> Result<IngestOutcome, StoreError> {
    let retention = incoming.default_retention;
    tables.dedupe.insert(incoming.dedupe.as_slice(), HELD)?;
    parts.parts.push(sealed_part(incoming));
    let whole = (1..=pending.total).all(|index| parts.parts.iter().any(|p| p.index == index));
    if whole {
        let message = complete(tables, keys, group, pending, parts, retention)?;
        return Ok(IngestOutcome::Stored(message));
    }
    let sealed = records::encode(&SealedParts::of(parts))?;
    pending.sealed = keys.seal(&parts_context(group), &sealed)?;
    put_pending(tables, group, pending)?;
    Ok(IngestOutcome::Held)
}

/// Every generation is held by a message that has this position already: a flood of
/// messages reusing one reference. Rather than refuse the part or drop a group, it is
/// stored as a message of its own, with gaps for the rest.
fn store_alone(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    pending: PendingV2,
    mut parts: PartsV2,
    incoming: IncomingPart,
) -> Result<IngestOutcome, StoreError> {
    let retention = incoming.default_retention;
    parts.parts.push(sealed_part(incoming));
    let message = store_joined(tables, keys, &pending, parts, retention)?;
    Ok(IngestOutcome::Stored(message))
}

fn put_pending(
    tables: &mut Tables<'_>,
    group: &[u8],
    pending: PendingV2,
) -> Result<(), StoreError> {
    tables.pending_parts.insert(
        group,
        records::encode(&PendingRecord::of(pending))?.as_slice(),
    )?;
    Ok(())
}

fn open_parts(keys: &Keyring, group: &[u8], pending: &PendingV2) -> Result<PartsV2, StoreError> {
    let bytes = keys.open(&parts_context(group), &pending.sealed)?;
    records::decode::<SealedParts>(&bytes).map(SealedParts::into_latest)
}

/// Stores the message and leaves a tombstone that knows its positions, for late parts.
fn complete(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    group: &[u8],
    mut pending: PendingV2,
    parts: PartsV2,
    default_retention: Duration,
) -> Result<NewMessage, StoreError> {
    let filled = parts.parts.iter().map(|part| part.index).collect();
    let message = store_joined(tables, keys, &pending, parts, default_retention)?;
    pending.completed = Some(message.message_id);
    pending.sealed = Vec::new();
    pending.filled = filled;
    put_pending(tables, group, pending)?;
    Ok(message)
}

/// Puts the parts together in order (with a marker where one is missing) and stores the
/// message; every part's id then answers as a duplicate of it.
fn store_joined(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    pending: &PendingV2,
    parts: PartsV2,
    default_retention: Duration,
) -> Result<NewMessage, StoreError> {
    let PartsV2 {
        from,
        to,
        received_at_ms,
        mut parts,
    } = parts;
    parts.sort_by_key(|part| part.index);
    // A part numbered past the announced total still counts (a provider's slip).
    let last = parts
        .last()
        .map_or(pending.total, |part| part.index.max(pending.total));
    let joined = join(&parts, last);
    let Some((first, rest)) = parts.split_first() else {
        return Err(StoreError::Codec("a pending message without parts".into()));
    };
    // The first part's key is the message's own; the others are deleted with it.
    let dedupe = first.dedupe;
    let private = SealedMessage::V1 {
        provider_message_id: first.provider_message_id.clone(),
        from: from.clone(),
        to,
        text: joined.text.clone(),
    };
    let sealed = keys.seal(&message_context(&dedupe), &records::encode(&private)?)?;
    let part_keys: Vec<[u8; 32]> = rest.iter().map(|part| part.dedupe).collect();
    let message = store_new(
        tables,
        Prepared {
            provider: Arc::from(pending.provider.as_str()),
            dedupe,
            number: pending.number,
            sealed,
            received_at_ms,
            default_retention,
            part_keys: part_keys.clone(),
            partial: joined.partial,
            binary: joined.binary,
            content: None,
            arrived_ms: pending.first_seen_ms,
            from,
            text: joined.text,
        },
    )?;
    for key in &part_keys {
        tables.dedupe.insert(key.as_slice(), message.message_id)?;
    }
    Ok(message)
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
        assert!(matches!(routed, IngestOutcome::Stored(m) if m.inbox == Inbox::Number(number_id)));
        let stranger = store
            .ingest("sandbox".into(), sms("b", "+12025550199", "hi"), DAY)
            .await
            .unwrap();
        assert!(matches!(stranger, IngestOutcome::Stored(m) if m.inbox == Inbox::Unrouted));
        assert_eq!(store.counts().unwrap().unrouted_total, 1);
    }

    /// The copy of an SMS through a second provider, in a group commit that another job
    /// makes fail, is remembered by nobody: its retry is still recognised as the copy.
    #[tokio::test]
    async fn a_rolled_back_copy_through_another_provider_is_not_counted() {
        let (store, _dir) = store();
        let first = store
            .ingest("a".into(), sms("a-1", "+12025550101", "code 1234"), DAY)
            .await
            .unwrap();
        let stored_id = first.message_id().unwrap();

        // Hold the writer inside a job so the next two land in one batch, in order.
        let (running, is_running) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let writer = store.writer.clone();
        let holder = tokio::spawn(async move {
            writer
                .submit(move |_| {
                    running.send(()).unwrap();
                    released.recv().unwrap();
                    Ok(())
                })
                .await
        });
        tokio::task::spawn_blocking(move || is_running.recv().unwrap())
            .await
            .unwrap();
        let copy = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .ingest("b".into(), sms("b-1", "+12025550101", "code 1234"), DAY)
                    .await
            })
        };
        while store.writer.queued() < 1 {
            tokio::task::yield_now().await;
        }
        let failing = {
            let writer = store.writer.clone();
            tokio::spawn(async move {
                writer
                    .submit(|_| Err::<(), _>(StoreError::Storage("made to fail".into())))
                    .await
            })
        };
        while store.writer.queued() < 2 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        assert!(matches!(
            copy.await.unwrap(),
            Err(StoreError::BatchRolledBack)
        ));
        assert!(failing.await.unwrap().is_err());

        // Provider b retries its copy: still the same SMS, still stored once.
        let retry = store
            .ingest("b".into(), sms("b-1", "+12025550101", "code 1234"), DAY)
            .await
            .unwrap();
        assert_eq!(retry, IngestOutcome::Duplicate(Some(stored_id)));
        assert_eq!(store.counts().unwrap().messages, 1);
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
        assert!(!first.is_duplicate());
        assert!(again.is_duplicate());
        assert_eq!(again.message_id(), first.message_id());
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
        assert!(!other.is_duplicate());
    }

    #[tokio::test]
    async fn a_deleted_multipart_message_keeps_every_part_key_through_the_dedupe_window() {
        let (store, _dir) = store();
        let first = store
            .ingest("p".into(), part("one", 2, 1), DAY)
            .await
            .unwrap();
        assert_eq!(first, IngestOutcome::Held);
        let whole = store
            .ingest("p".into(), part("two", 2, 2), DAY)
            .await
            .unwrap();
        let IngestOutcome::Stored(message) = whole else {
            panic!("whole after two parts: {whole:?}");
        };
        assert_eq!(message.text, "onetwo");
        assert_eq!(
            store
                .ingest("p".into(), part("two", 2, 2), DAY)
                .await
                .unwrap(),
            IngestOutcome::Duplicate(Some(message.message_id))
        );
        assert!(store.delete_message(message.message_id).await.unwrap());
        // Retried parts do not bring it back, whichever part comes.
        for (id, index) in [("one", 1), ("two", 2)] {
            assert_eq!(
                store
                    .ingest("p".into(), part(id, 2, index), DAY)
                    .await
                    .unwrap(),
                IngestOutcome::Duplicate(None)
            );
        }
        assert!(store.message(message.message_id).unwrap().is_none());
        // Once the dedupe window (longer than its day of retention) has closed, both
        // keys go: the parts count as new again.
        let window_closed = now_ms() + crate::store::messages::DEDUPE_WINDOW_MS + 1_000;
        assert_eq!(
            store.sweep_expired_batch(window_closed, 10).await.unwrap(),
            [message.message_id]
        );
        assert_eq!(
            store
                .ingest("p".into(), part("two", 2, 2), DAY)
                .await
                .unwrap(),
            IngestOutcome::Held
        );
        assert!(matches!(
            store
                .ingest("p".into(), part("one", 2, 1), DAY)
                .await
                .unwrap(),
            IngestOutcome::Stored(_)
        ));
    }

    fn part(id: &str, total: u16, index: u16) -> InboundSms {
        sms(id, "+12025550101", id)
            .with_part("ref", total, index)
            .unwrap()
    }

    /// More overdue groups than one job may act on are all completed in one call:
    /// the walk goes on in further jobs instead of leaving the rest for the next sweep.
    #[tokio::test]
    async fn every_overdue_group_is_completed_however_many_there_are() {
        let (store, _dir) = store();
        for n in 0..7 {
            let first = sms(&format!("first-{n}"), "+12025550101", &format!("m{n}"))
                .with_part(&format!("ref-{n}"), 2, 1)
                .unwrap();
            assert_eq!(
                store.ingest("p".into(), first, DAY).await.unwrap(),
                IngestOutcome::Held
            );
        }
        let (stored, dropped) = store
            .complete_overdue_parts(Duration::ZERO, DAY, 2)
            .await
            .unwrap();
        assert_eq!((stored.len(), dropped), (7, 0));
        let (again, _) = store
            .complete_overdue_parts(Duration::ZERO, DAY, 2)
            .await
            .unwrap();
        assert!(again.is_empty(), "nothing is completed twice");
        assert_eq!(store.counts().unwrap().messages, 7);
    }

    #[tokio::test]
    async fn a_part_after_the_timeout_joins_the_stored_message() {
        let (store, _dir) = store();
        store
            .ingest("p".into(), part("a", 3, 1), DAY)
            .await
            .unwrap();
        store
            .ingest("p".into(), part("c", 3, 3), DAY)
            .await
            .unwrap();
        let (stored, dropped) = store
            .complete_overdue_parts(Duration::ZERO, DAY, 10)
            .await
            .unwrap();
        assert_eq!((stored.len(), dropped), (1, 0));
        assert_eq!(stored[0].text, "a[…]c");
        let late = store
            .ingest("p".into(), part("b", 3, 2), DAY)
            .await
            .unwrap();
        assert_eq!(late, IngestOutcome::Duplicate(Some(stored[0].message_id)));
        // The gap is filled now: another part 2 (another id) is of another message.
        let other = store
            .ingest("p".into(), part("b2", 3, 2), DAY)
            .await
            .unwrap();
        assert_eq!(other, IngestOutcome::Held);
        // No second, gappy message later either.
        let (again, _) = store
            .complete_overdue_parts(Duration::ZERO, DAY, 10)
            .await
            .unwrap();
        let texts: Vec<&str> = again.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["[…]b2[…]"]);
        assert_eq!(store.counts().unwrap().messages, 2);
    }

    /// Ingests each SMS in turn through provider `p`.
    async fn ingest_all(store: &Store, sms: Vec<InboundSms>) -> Vec<IngestOutcome> {
        let mut outcomes = Vec::new();
        for sms in sms {
            outcomes.push(store.ingest("p".into(), sms, DAY).await.unwrap());
        }
        outcomes
    }

    fn stored_text(outcome: &IngestOutcome) -> &str {
        match outcome {
            IngestOutcome::Stored(message) => &message.text,
            other => panic!("not stored: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_reference_reused_after_its_message_is_whole_starts_a_new_message() {
        let (store, _dir) = store();
        let a = ingest_all(&store, vec![part("a1", 2, 1), part("a2", 2, 2)]).await;
        assert_eq!(stored_text(&a[1]), "a1a2");
        // Message B, the same reference minutes later, new ids: not a late part of A.
        let b = ingest_all(&store, vec![part("b2", 2, 2), part("b1", 2, 1)]).await;
        assert_eq!(b[0], IngestOutcome::Held);
        assert_eq!(stored_text(&b[1]), "b1b2");
        // Retries of either message's parts are still duplicates of their own message.
        let retries = ingest_all(&store, vec![part("a2", 2, 2), part("b2", 2, 2)]).await;
        assert_eq!(retries[0], IngestOutcome::Duplicate(a[1].message_id()));
        assert_eq!(retries[1], IngestOutcome::Duplicate(b[1].message_id()));
        assert_eq!(store.counts().unwrap().messages, 2);
    }

    #[tokio::test]
    async fn a_reference_reused_while_parts_are_held_starts_a_new_group() {
        let (store, _dir) = store();
        // A's second part never comes; B reuses the reference.
        let outcomes = ingest_all(
            &store,
            vec![part("a1", 2, 1), part("b1", 2, 1), part("b1", 2, 1)],
        )
        .await;
        assert_eq!(outcomes[0], IngestOutcome::Held);
        assert_eq!(outcomes[1], IngestOutcome::Held, "same position, other id");
        assert_eq!(outcomes[2], IngestOutcome::Duplicate(None), "a retry");
        let b = ingest_all(&store, vec![part("b2", 2, 2)]).await;
        assert_eq!(stored_text(&b[0]), "b1b2", "B's part joins B, not A");
        let (stored, _) = store
            .complete_overdue_parts(Duration::ZERO, DAY, 10)
            .await
            .unwrap();
        let texts: Vec<&str> = stored.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["a1[…]"]);
    }

    #[tokio::test]
    async fn messages_with_the_same_reference_but_another_part_count_are_apart() {
        let (store, _dir) = store();
        let outcomes = ingest_all(
            &store,
            vec![part("a1", 3, 1), part("b2", 2, 2), part("b1", 2, 1)],
        )
        .await;
        assert_eq!(outcomes[1], IngestOutcome::Held);
        assert_eq!(stored_text(&outcomes[2]), "b1b2");
    }

    #[tokio::test]
    async fn a_flood_of_messages_reusing_a_reference_is_stored_not_dropped() {
        let (store, _dir) = store();
        let ids: Vec<String> = (0..=GENERATIONS).map(|i| format!("m{i}")).collect();
        let firsts = ids.iter().map(|id| part(id, 2, 1)).collect();
        let outcomes = ingest_all(&store, firsts).await;
        let held = usize::from(GENERATIONS);
        assert!(outcomes[..held].iter().all(|o| *o == IngestOutcome::Held));
        // No generation left: the part is stored on its own.
        assert_eq!(stored_text(&outcomes[held]), format!("m{GENERATIONS}[…]"));
        let retry = ingest_all(&store, vec![part(&ids[held], 2, 1)]).await;
        assert_eq!(
            retry[0],
            IngestOutcome::Duplicate(outcomes[held].message_id())
        );
    }

    #[tokio::test]
    async fn parts_held_before_the_part_count_was_in_the_group_key_still_join() {
        let (store, _dir) = store();
        // Held as the release before held it: first layout, under the key without the
        // part count.
        let mut first = part("old1", 2, 1);
        let place = first.part.take().unwrap();
        let incoming = IncomingPart::new(&store.keys, "p".into(), first, place, DAY);
        let keys = Arc::clone(&store.keys);
        let held = store
            .writer
            .submit(move |tables| {
                let (pending, parts) = new_group(&incoming);
                let key = incoming.legacy_group;
                add_part(tables, &keys, &key, pending, parts, incoming)
            })
            .await
            .unwrap();
        assert_eq!(held, IngestOutcome::Held);
        // A part of another part count is of another message.
        let outcomes = ingest_all(&store, vec![part("x2", 3, 2), part("new2", 2, 2)]).await;
        assert_eq!(outcomes[0], IngestOutcome::Held);
        assert_eq!(stored_text(&outcomes[1]), "old1new2");
    }

    #[tokio::test]
    async fn held_text_parts_stay_readable_by_the_release_before_binary_sms() {
        let (store, _dir) = store();
        ingest_all(&store, vec![part("t1", 2, 1)]).await;
        let binary =
            InboundSms::binary("d1", "+14155550199", "+12025550101", &[], vec![0x41], None)
                .unwrap()
                .with_part("bin", 2, 1)
                .unwrap();
        ingest_all(&store, vec![binary]).await;
        let held = held_records(&store);
        assert_eq!(held.len(), 2);
        for (record, parts) in held {
            assert!(matches!(record, PendingRecord::V1(_)));
            let latest = parts.clone().into_latest();
            match &latest.parts[0].body {
                PartBody::Text(_) => assert!(matches!(parts, SealedParts::V1 { .. })),
                PartBody::Data(_) => assert!(matches!(parts, SealedParts::V2(_))),
            }
        }
    }

    /// Every held group's record and its opened parts, as on disk.
    fn held_records(store: &Store) -> Vec<(PendingRecord, SealedParts)> {
        use redb::ReadableDatabase;
        let txn = store.db.begin_read().unwrap();
        let table = txn.open_table(crate::store::tables::PENDING_PARTS).unwrap();
        table
            .iter()
            .unwrap()
            .map(|entry| {
                let (key, value) = entry.unwrap();
                let record: PendingRecord = records::decode(value.value()).unwrap();
                let sealed = record.clone().into_latest().sealed;
                let bytes = store.keys.open(&parts_context(key.value()), &sealed);
                (record, records::decode(&bytes.unwrap()).unwrap())
            })
            .collect()
    }

    #[tokio::test]
    async fn binary_messages_are_read_once_whole_and_flagged_when_not_text() {
        let (store, _dir) = store();
        let binary = |id: &str, header: &[u8], data: Vec<u8>| {
            InboundSms::binary(id, "+14155550199", "+12025550101", header, data, None).unwrap()
        };
        // One SMS of octets that are not text: stored as hex, flagged.
        let push = binary("push", &[], vec![0x25, 0x06, 0x01, 0xae, 0x00, 0x01]);
        let IngestOutcome::Stored(push) = store.ingest("p".into(), push, DAY).await.unwrap() else {
            panic!("stored")
        };
        assert_eq!(push.text, "250601ae0001");
        // UCS-2 in two parts (16-bit reference), the emoji's surrogate pair cut in two:
        // read after joining, so it comes out whole.
        let octets: Vec<u8> = "Code 4821 😀"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        let (first, second) = octets.split_at(22);
        let header = |index: u8| [6, 0x08, 4, 0x12, 0x34, 2, index];
        let held = store
            .ingest("p".into(), binary("u2", &header(2), second.to_vec()), DAY)
            .await
            .unwrap();
        assert_eq!(held, IngestOutcome::Held);
        let IngestOutcome::Stored(text) = store
            .ingest("p".into(), binary("u1", &header(1), first.to_vec()), DAY)
            .await
            .unwrap()
        else {
            panic!("whole after two parts")
        };
        assert_eq!(text.text, "Code 4821 😀");
        let page = store
            .list_messages(&crate::store::Scope::All, None, 10)
            .unwrap();
        let flags: Vec<(&str, bool)> = page
            .messages
            .iter()
            .map(|m| (m.text.as_str(), m.binary))
            .collect();
        assert_eq!(flags, [("Code 4821 😀", false), ("250601ae0001", true)]);
    }

    #[tokio::test]
    async fn a_lease_that_starts_mid_message_does_not_get_it() {
        let (store, _dir) = store();
        let number_id = store
            .ensure_numbers(vec![SeedNumber::new("p", "+12025550101", None)])
            .await
            .unwrap()[0];
        store
            .ingest("p".into(), part("a", 2, 1), DAY)
            .await
            .unwrap();
        let holder = store
            .create_user("late", "password1", crate::store::Role::User)
            .await
            .unwrap()
            .unwrap();
        store
            .lease_number(crate::store::LeaseRequest {
                holder,
                number_id: Some(number_id),
                provider: None,
                prefix: None,
                duration: DAY,
                max_active: 5,
            })
            .await
            .unwrap()
            .unwrap();
        let whole = store
            .ingest("p".into(), part("b", 2, 2), DAY)
            .await
            .unwrap();
        assert_eq!(whole.inbox(), Some(Inbox::Number(number_id)));
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
            if !task.await.unwrap().unwrap().is_duplicate() {
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
