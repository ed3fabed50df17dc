//! Leases: one holder's use of one pool number for a while.
//!
//! A lease is its own inbox: messages that arrive while it is active belong to it and
//! to nobody else. When it ends (released, expired or revoked) the number rests in
//! quarantine, so codes still on their way to the previous holder land in the number's
//! admin-only inbox rather than with the next one.

use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable};

use super::records::{self, LeaseEnd, LeaseRecord, LeaseV1, NumberRecord, NumberV2};
use super::tables::{
    ACTIVE_LEASE_BY_NUMBER, ACTIVE_LEASES_BY_HOLDER, LEASES, NUMBERS, Tables, meta,
};
use super::{Keyring, Store, StoreError, context, next_id, now_ms, readable_or_skipped};

/// A lease as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub id: u64,
    pub number_id: u64,
    pub holder: u64,
    pub started_at_ms: i64,
    pub expires_at_ms: i64,
    pub ended: Option<(i64, LeaseEnd)>,
}

impl LeaseView {
    fn new(id: u64, lease: LeaseV1) -> Self {
        Self {
            id,
            number_id: lease.number_id,
            holder: lease.holder,
            started_at_ms: lease.started_at_ms,
            expires_at_ms: lease.expires_at_ms,
            ended: lease.ended,
        }
    }
}

/// What to lease.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    pub holder: u64,
    /// A particular number, or any that fits the filters.
    pub number_id: Option<u64>,
    pub provider: Option<String>,
    /// E.164 prefix, e.g. "+44" for the United Kingdom or "+1415" for San Francisco.
    pub prefix: Option<String>,
    pub duration: Duration,
    /// The holder may have at most this many active leases (guests: one).
    pub max_active: usize,
}

/// Why a lease operation was refused. Not a storage failure: the caller answers 4xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseRefusal {
    #[error("no number matching the request is free right now")]
    NoneAvailable,
    #[error("that number is not free (leased, public, disabled or in quarantine)")]
    NumberUnavailable,
    #[error("no such number")]
    NumberNotFound,
    #[error("the limit of active leases is reached")]
    TooManyLeases,
    #[error("no such lease")]
    LeaseNotFound,
    #[error("the lease has already ended")]
    LeaseEnded,
    /// The holder's account was deleted while the request was on its way (a guest's
    /// time ran out, or an admin deleted it).
    #[error("the account no longer exists")]
    HolderGone,
}

/// Who may read a number, and where its messages go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberAccess {
    pub public: bool,
    /// The active lease (id, holder); a public number's holder is [`PUBLIC_HOLDER`].
    pub lease: Option<(u64, u64)>,
}

impl NumberAccess {
    pub fn holder(&self) -> Option<u64> {
        self.lease.map(|(_, holder)| holder)
    }

    /// Whether everyone may read the number now: it is public and its public lease is
    /// running. A public number without one (disabled, or its lease released) delivers
    /// to its own inbox, which holds what came while it was idle: admins only.
    pub fn open_to_everyone(&self) -> bool {
        self.public && self.holder() == Some(PUBLIC_HOLDER)
    }

    /// The inbox new messages to the number land in.
    pub fn inbox(&self, number_id: u64) -> super::Inbox {
        match self.lease {
            Some((lease_id, _)) => super::Inbox::Lease(lease_id),
            None => super::Inbox::Number(number_id),
        }
    }
}

/// Admin changes to a pool number; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct NumberPatch {
    pub public: Option<bool>,
    pub disabled: Option<bool>,
    /// `Some(None)` returns the number to the server-wide retention.
    pub retention_secs: Option<Option<u64>>,
}

type Outcome<T> = Result<Result<T, LeaseRefusal>, StoreError>;

impl Store {
    /// Leases a free number to `request.holder`.
    pub async fn lease_number(&self, request: LeaseRequest) -> Outcome<LeaseView> {
        let keys = Arc::clone(&self.keys);
        self.writer
            .submit(move |tables| lease_in(tables, &keys, &request, now_ms()))
            .await
    }

    /// Moves a lease's expiry to `expires_at_ms`. With `holder` given, only that holder's
    /// lease is found (others get `LeaseNotFound`, revealing nothing).
    pub async fn extend_lease(
        &self,
        lease_id: u64,
        holder: Option<u64>,
        expires_at_ms: i64,
    ) -> Outcome<LeaseView> {
        self.writer
            .submit(move |tables| {
                let Some(mut lease) = active_lease(tables, lease_id, holder)? else {
                    return Ok(Err(LeaseRefusal::LeaseNotFound));
                };
                if lease.ended.is_some() {
                    return Ok(Err(LeaseRefusal::LeaseEnded));
                }
                tables
                    .lease_expiry
                    .remove((millis(lease.expires_at_ms), lease_id))?;
                lease.expires_at_ms = expires_at_ms;
                tables
                    .lease_expiry
                    .insert((millis(expires_at_ms), lease_id), ())?;
                put_lease(tables, lease_id, &lease)?;
                Ok(Ok(LeaseView::new(lease_id, lease)))
            })
            .await
    }

    /// Ends a lease now (the holder releases it, or an admin revokes it) and puts its
    /// number in quarantine.
    pub async fn end_lease(
        &self,
        lease_id: u64,
        holder: Option<u64>,
        how: LeaseEnd,
        quarantine: Duration,
    ) -> Outcome<LeaseView> {
        self.writer
            .submit(move |tables| {
                let Some(lease) = active_lease(tables, lease_id, holder)? else {
                    return Ok(Err(LeaseRefusal::LeaseNotFound));
                };
                if lease.ended.is_some() {
                    return Ok(Err(LeaseRefusal::LeaseEnded));
                }
                let lease = end_in(tables, lease_id, lease, how, now_ms(), quarantine)?;
                Ok(Ok(LeaseView::new(lease_id, lease)))
            })
            .await
    }

    /// Ends up to `batch` leases whose time is up. Returns how many.
    pub async fn expire_leases_batch(
        &self,
        now: i64,
        batch: usize,
        quarantine: Duration,
    ) -> Result<usize, StoreError> {
        self.writer
            .submit(move |tables| {
                let mut due = Vec::new();
                for entry in tables
                    .lease_expiry
                    .range(..(millis(now).saturating_add(1), 0))?
                    .take(batch)
                {
                    due.push(entry?.0.value());
                }
                for &(at, lease_id) in &due {
                    match readable_or_skipped(load_lease(tables, lease_id), "lease", lease_id)? {
                        Some(Some(lease)) if lease.ended.is_none() => {
                            end_in(tables, lease_id, lease, LeaseEnd::Expired, now, quarantine)?;
                        }
                        Some(_) => {}
                        None => forget_unreadable_lease(tables, at, lease_id)?,
                    }
                }
                Ok(due.len())
            })
            .await
    }

    /// Applies an admin's changes to a number. Making it public or disabling it revokes
    /// its active lease (with quarantine), since neither may stay with one holder.
    pub async fn update_number(
        &self,
        number_id: u64,
        patch: NumberPatch,
        quarantine: Duration,
    ) -> Outcome<()> {
        self.writer
            .submit(move |tables| {
                let Some(mut number) = load_number(tables, number_id)? else {
                    return Ok(Err(LeaseRefusal::NumberNotFound));
                };
                let now = now_ms();
                let active = active_lease_holder(tables, number_id)?;
                if patch.public == Some(true) && !number.public {
                    // Codes on their way to a holder (current, or one still in quarantine)
                    // must never land in an inbox everyone can read.
                    let leased = active.is_some_and(|(_, holder)| holder != PUBLIC_HOLDER);
                    if leased || number.available_from_ms > now {
                        return Ok(Err(LeaseRefusal::NumberUnavailable));
                    }
                }
                if let Some(public) = patch.public {
                    number.public = public;
                }
                if let Some(disabled) = patch.disabled {
                    number.disabled = disabled;
                }
                if let Some(retention) = patch.retention_secs {
                    number.retention_secs = retention;
                }
                put_number(tables, number_id, &number)?;
                let wants_public_lease = number.public && !number.disabled;
                if let Some((lease_id, holder)) = active {
                    let keep = holder == PUBLIC_HOLDER && wants_public_lease;
                    let user_lease_must_end =
                        holder != PUBLIC_HOLDER && (number.public || number.disabled);
                    if !keep && (user_lease_must_end || holder == PUBLIC_HOLDER) {
                        end_if_active(tables, lease_id, LeaseEnd::Revoked, now, quarantine)?;
                    }
                }
                if wants_public_lease && tables.active_lease_by_number.get(number_id)?.is_none() {
                    start_public_lease(tables, number_id, now)?;
                }
                Ok(Ok(()))
            })
            .await
    }

    /// Takes a number out of the pool, revoking its lease. Its messages stay until they
    /// expire; new ones to it are unrouted.
    pub async fn delete_number(&self, number_id: u64, quarantine: Duration) -> Outcome<()> {
        let keys = Arc::clone(&self.keys);
        self.writer
            .submit(move |tables| {
                let Some(number) = load_number(tables, number_id)? else {
                    return Ok(Err(LeaseRefusal::NumberNotFound));
                };
                revoke_active(tables, number_id, quarantine)?;
                let e164 = keys.open(&context("number", number_id), &number.sealed_number)?;
                let hash = super::ingest::number_key(&keys, &String::from_utf8_lossy(&e164));
                tables.numbers.remove(number_id)?;
                tables.number_by_hash.remove(hash.as_slice())?;
                Ok(Ok(()))
            })
            .await
    }

    /// A lease by id, active or not.
    pub fn lease(&self, lease_id: u64) -> Result<Option<LeaseView>, StoreError> {
        let txn = self.db.begin_read()?;
        let lease = txn
            .open_table(LEASES)?
            .get(lease_id)?
            .map(|v| records::decode::<LeaseRecord>(v.value()))
            .transpose()?
            .map(|record| LeaseView::new(lease_id, record.into_latest()));
        Ok(lease)
    }

    /// The holder's active leases, oldest first.
    pub fn active_leases(&self, holder: u64) -> Result<Vec<LeaseView>, StoreError> {
        let txn = self.db.begin_read()?;
        let leases = txn.open_table(LEASES)?;
        let mut found = Vec::new();
        for entry in txn
            .open_table(ACTIVE_LEASES_BY_HOLDER)?
            .range((holder, 0)..=(holder, u64::MAX))?
        {
            let lease_id = entry?.0.value().1;
            if let Some(value) = leases.get(lease_id)? {
                let lease = records::decode::<LeaseRecord>(value.value())?.into_latest();
                found.push(LeaseView::new(lease_id, lease));
            }
        }
        Ok(found)
    }

    /// The active lease of a number, if it is leased.
    pub fn active_lease_of_number(&self, number_id: u64) -> Result<Option<LeaseView>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(lease_id) = txn
            .open_table(ACTIVE_LEASE_BY_NUMBER)?
            .get(number_id)?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        drop(txn);
        self.lease(lease_id)
    }

    /// A number's leasing state, for permission checks and for finding its current
    /// inbox, read in one snapshot so the two always agree.
    pub fn number_access(&self, number_id: u64) -> Result<Option<NumberAccess>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(number) = txn
            .open_table(NUMBERS)?
            .get(number_id)?
            .map(|v| records::decode::<NumberRecord>(v.value()))
            .transpose()?
            .map(NumberRecord::into_latest)
        else {
            return Ok(None);
        };
        let lease = match txn.open_table(ACTIVE_LEASE_BY_NUMBER)?.get(number_id)? {
            Some(lease_id) => {
                let lease_id = lease_id.value();
                txn.open_table(LEASES)?
                    .get(lease_id)?
                    .map(|v| records::decode::<LeaseRecord>(v.value()))
                    .transpose()?
                    .map(|record| (lease_id, record.into_latest().holder))
            }
            None => None,
        };
        Ok(Some(NumberAccess {
            public: number.public,
            lease,
        }))
    }
}

/// The "holder" of a public number's lease: no account (ids start at 1). A public
/// number's messages go to that lease, a fresh inbox each time the number becomes
/// public, so nothing from an earlier holder or an idle spell is ever public.
pub const PUBLIC_HOLDER: u64 = 0;

fn start_public_lease(
    tables: &mut Tables<'_>,
    number_id: u64,
    now: i64,
) -> Result<u64, StoreError> {
    let lease_id = next_id(&mut tables.meta, meta::NEXT_LEASE_ID)?;
    let lease = LeaseV1 {
        number_id,
        holder: PUBLIC_HOLDER,
        started_at_ms: now,
        // Ends only when the number stops being public: no expiry entry.
        expires_at_ms: i64::MAX,
        ended: None,
    };
    put_lease(tables, lease_id, &lease)?;
    tables.active_lease_by_number.insert(number_id, lease_id)?;
    Ok(lease_id)
}

/// The active lease of a number and its holder.
fn active_lease_holder(
    tables: &Tables<'_>,
    number_id: u64,
) -> Result<Option<(u64, u64)>, StoreError> {
    let Some(lease_id) = tables
        .active_lease_by_number
        .get(number_id)?
        .map(|v| v.value())
    else {
        return Ok(None);
    };
    Ok(load_lease(tables, lease_id)?.map(|lease| (lease_id, lease.holder)))
}

fn millis(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

fn load_number(tables: &Tables<'_>, number_id: u64) -> Result<Option<NumberV2>, StoreError> {
    Ok(tables
        .numbers
        .get(number_id)?
        .map(|v| records::decode::<NumberRecord>(v.value()))
        .transpose()?
        .map(NumberRecord::into_latest))
}

fn put_number(
    tables: &mut Tables<'_>,
    number_id: u64,
    number: &NumberV2,
) -> Result<(), StoreError> {
    let bytes = records::encode(&NumberRecord::V2(number.clone()))?;
    tables.numbers.insert(number_id, bytes.as_slice())?;
    Ok(())
}

fn load_lease(tables: &Tables<'_>, lease_id: u64) -> Result<Option<LeaseV1>, StoreError> {
    Ok(tables
        .leases
        .get(lease_id)?
        .map(|v| records::decode::<LeaseRecord>(v.value()))
        .transpose()?
        .map(LeaseRecord::into_latest))
}

fn put_lease(tables: &mut Tables<'_>, lease_id: u64, lease: &LeaseV1) -> Result<(), StoreError> {
    let bytes = records::encode(&LeaseRecord::V1(lease.clone()))?;
    tables.leases.insert(lease_id, bytes.as_slice())?;
    tables
        .leases_by_holder
        .insert((lease.holder, lease_id), ())?;
    Ok(())
}

/// Every lease of `holder`, ended ones too (their messages are still the holder's).
pub(crate) fn leases_of(tables: &Tables<'_>, holder: u64) -> Result<Vec<u64>, StoreError> {
    let mut ids = Vec::new();
    for entry in tables
        .leases_by_holder
        .range((holder, 0)..=(holder, u64::MAX))?
    {
        ids.push(entry?.0.value().1);
    }
    Ok(ids)
}

/// Schema 3: builds `LEASES_BY_HOLDER` for leases made before it existed.
pub(crate) fn index_by_holder(tables: &mut Tables<'_>) -> Result<(), StoreError> {
    let mut entries = Vec::new();
    for entry in tables.leases.iter()? {
        let (id, value) = entry?;
        let lease = records::decode::<LeaseRecord>(value.value())?.into_latest();
        entries.push((lease.holder, id.value()));
    }
    for key in entries {
        tables.leases_by_holder.insert(key, ())?;
    }
    Ok(())
}

/// A lease by id, only if `holder` (when given) holds it.
fn active_lease(
    tables: &Tables<'_>,
    lease_id: u64,
    holder: Option<u64>,
) -> Result<Option<LeaseV1>, StoreError> {
    Ok(load_lease(tables, lease_id)?
        .filter(|lease| holder.is_none_or(|holder| lease.holder == holder)))
}

fn lease_in(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    request: &LeaseRequest,
    now: i64,
) -> Outcome<LeaseView> {
    if super::users::get_user(tables, request.holder)?.is_none() {
        return Ok(Err(LeaseRefusal::HolderGone));
    }
    let active = tables
        .active_leases_by_holder
        .range((request.holder, 0)..=(request.holder, u64::MAX))?
        .count();
    if active >= request.max_active {
        return Ok(Err(LeaseRefusal::TooManyLeases));
    }
    let leasable = |tables: &Tables<'_>, id: u64, number: &NumberV2| -> Result<bool, StoreError> {
        Ok(!number.public
            && !number.disabled
            && number.available_from_ms <= now
            && tables.active_lease_by_number.get(id)?.is_none())
    };
    let number_id = match request.number_id {
        Some(id) => {
            let Some(number) = load_number(tables, id)? else {
                return Ok(Err(LeaseRefusal::NumberNotFound));
            };
            if !leasable(tables, id, &number)? {
                return Ok(Err(LeaseRefusal::NumberUnavailable));
            }
            id
        }
        None => {
            // The free number that has rested longest (never used counts as longest),
            // so a number's previous holder is as far in the past as the pool allows.
            let mut best: Option<(i64, u64)> = None;
            for entry in tables.numbers.iter()? {
                let (id, value) = entry?;
                let id = id.value();
                let number = records::decode::<NumberRecord>(value.value())?.into_latest();
                if request
                    .provider
                    .as_ref()
                    .is_some_and(|p| *p != number.provider)
                    || !leasable(tables, id, &number)?
                {
                    continue;
                }
                if let Some(prefix) = &request.prefix {
                    let e164 = keys.open(&context("number", id), &number.sealed_number)?;
                    if !e164.starts_with(prefix.as_bytes()) {
                        continue;
                    }
                }
                let rested_since = number.last_released_ms.unwrap_or(i64::MIN);
                if best.is_none_or(|(since, _)| rested_since < since) {
                    best = Some((rested_since, id));
                }
            }
            match best {
                Some((_, id)) => id,
                None => return Ok(Err(LeaseRefusal::NoneAvailable)),
            }
        }
    };
    let lease_id = next_id(&mut tables.meta, meta::NEXT_LEASE_ID)?;
    let expires_at_ms =
        now.saturating_add(i64::try_from(request.duration.as_millis()).unwrap_or(i64::MAX));
    let lease = LeaseV1 {
        number_id,
        holder: request.holder,
        started_at_ms: now,
        expires_at_ms,
        ended: None,
    };
    put_lease(tables, lease_id, &lease)?;
    tables.active_lease_by_number.insert(number_id, lease_id)?;
    tables
        .active_leases_by_holder
        .insert((request.holder, lease_id), ())?;
    tables
        .lease_expiry
        .insert((millis(expires_at_ms), lease_id), ())?;
    Ok(Ok(LeaseView::new(lease_id, lease)))
}

/// A due lease whose record cannot be read, so cannot be ended properly: its entries go
/// (found by scanning the active-lease tables, which hold one row per active lease), so
/// it is not picked again, its number can be leased again, and its holder's count drops.
fn forget_unreadable_lease(
    tables: &mut Tables<'_>,
    expires_at: u64,
    lease_id: u64,
) -> Result<(), StoreError> {
    tables.lease_expiry.remove((expires_at, lease_id))?;
    let mut numbers = Vec::new();
    for entry in tables.active_lease_by_number.iter()? {
        let (number, lease) = entry?;
        if lease.value() == lease_id {
            numbers.push(number.value());
        }
    }
    for number in numbers {
        tables.active_lease_by_number.remove(number)?;
    }
    let mut holders = Vec::new();
    for entry in tables.active_leases_by_holder.iter()? {
        let (holder, lease) = entry?.0.value();
        if lease == lease_id {
            holders.push(holder);
        }
    }
    for holder in holders {
        tables.active_leases_by_holder.remove((holder, lease_id))?;
    }
    Ok(())
}

fn end_in(
    tables: &mut Tables<'_>,
    lease_id: u64,
    mut lease: LeaseV1,
    how: LeaseEnd,
    now: i64,
    quarantine: Duration,
) -> Result<LeaseV1, StoreError> {
    lease.ended = Some((now, how));
    put_lease(tables, lease_id, &lease)?;
    tables.active_lease_by_number.remove(lease.number_id)?;
    tables
        .active_leases_by_holder
        .remove((lease.holder, lease_id))?;
    tables
        .lease_expiry
        .remove((millis(lease.expires_at_ms), lease_id))?;
    if let Some(mut number) = load_number(tables, lease.number_id)? {
        number.available_from_ms =
            now.saturating_add(i64::try_from(quarantine.as_millis()).unwrap_or(i64::MAX));
        number.last_released_ms = Some(now);
        put_number(tables, lease.number_id, &number)?;
    }
    Ok(lease)
}

/// Ends a lease if it is still active (used when its holder's account goes away).
pub(crate) fn end_if_active(
    tables: &mut Tables<'_>,
    lease_id: u64,
    how: LeaseEnd,
    now: i64,
    quarantine: Duration,
) -> Result<(), StoreError> {
    if let Some(lease) = load_lease(tables, lease_id)?
        && lease.ended.is_none()
    {
        end_in(tables, lease_id, lease, how, now, quarantine)?;
    }
    Ok(())
}

fn revoke_active(
    tables: &mut Tables<'_>,
    number_id: u64,
    quarantine: Duration,
) -> Result<(), StoreError> {
    let active = tables
        .active_lease_by_number
        .get(number_id)?
        .map(|v| v.value());
    if let Some(lease_id) = active
        && let Some(lease) = load_lease(tables, lease_id)?
    {
        end_in(
            tables,
            lease_id,
            lease,
            LeaseEnd::Revoked,
            now_ms(),
            quarantine,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InboundSms;
    use crate::store::testing::{UNREADABLE, holders};
    use crate::store::{Inbox, Scope, SeedNumber};

    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86_400);

    fn request(holder: u64) -> LeaseRequest {
        LeaseRequest {
            holder,
            number_id: None,
            provider: None,
            prefix: None,
            duration: HOUR,
            max_active: 5,
        }
    }

    async fn deliver(store: &Store, id: &str, to: &str) -> Inbox {
        let sms = InboundSms::new(id, "Acme", to, &format!("code for {id}"), None).unwrap();
        store
            .ingest("p".into(), sms, DAY)
            .await
            .unwrap()
            .inbox()
            .unwrap()
    }

    /// A request whose account was deleted on its way (a guest's time ran out) leases
    /// nothing: the number would be held for nobody.
    #[tokio::test]
    async fn an_account_deleted_meanwhile_leases_nothing() {
        let (store, _dir) = holders(1).await;
        store
            .ensure_numbers(vec![SeedNumber::new("p", "+12025550101", None)])
            .await
            .unwrap();
        store.delete_user(1, HOUR).await.unwrap().unwrap();
        assert_eq!(
            store.lease_number(request(1)).await.unwrap(),
            Err(LeaseRefusal::HolderGone)
        );
        let number = store.list_numbers().unwrap().remove(0);
        assert!(store.active_lease_of_number(number.id).unwrap().is_none());
    }

    /// A lease record this build cannot read does not fail every sweep (and the writes
    /// sharing its commit): it is passed over once and not picked again.
    #[tokio::test]
    async fn an_unreadable_due_lease_is_passed_over_once() {
        let (store, _dir) = holders(9).await;
        store
            .ensure_numbers(vec![SeedNumber::new("p", "+12025550101", None)])
            .await
            .unwrap();
        let expiring = LeaseRequest {
            duration: Duration::ZERO,
            ..request(1)
        };
        let lease = store.lease_number(expiring).await.unwrap().unwrap();
        store
            .writer
            .submit(move |tables| {
                tables.leases.insert(lease.id, UNREADABLE)?;
                Ok(())
            })
            .await
            .unwrap();
        let sweep = || store.expire_leases_batch(now_ms(), 10, Duration::ZERO);
        assert_eq!(sweep().await.unwrap(), 1);
        assert_eq!(sweep().await.unwrap(), 0);
        // Its number is free again and its holder holds nothing.
        assert!(store.active_leases(1).unwrap().is_empty());
        let again = store.lease_number(request(2)).await.unwrap().unwrap();
        assert_eq!(again.number_id, lease.number_id);
    }

    #[tokio::test]
    async fn a_new_holder_never_sees_the_previous_holders_messages() {
        let (store, _dir) = holders(9).await;
        store
            .ensure_numbers(vec![SeedNumber::new("p", "+12025550101", None)])
            .await
            .unwrap();

        let first = store.lease_number(request(1)).await.unwrap().unwrap();
        assert_eq!(
            deliver(&store, "a", "+12025550101").await,
            Inbox::Lease(first.id)
        );
        // Released with no quarantine, so the number is free again at once.
        store
            .end_lease(first.id, Some(1), LeaseEnd::Released, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            deliver(&store, "b", "+12025550101").await,
            Inbox::Number(first.number_id)
        );

        let second = store.lease_number(request(2)).await.unwrap().unwrap();
        assert_eq!(second.number_id, first.number_id);
        assert_ne!(second.id, first.id);
        let page = store
            .list_messages(&Scope::Inboxes(vec![Inbox::Lease(second.id)]), None, 10)
            .unwrap();
        assert!(page.messages.is_empty(), "the new lease starts empty");
        assert_eq!(
            deliver(&store, "c", "+12025550101").await,
            Inbox::Lease(second.id)
        );
        let page = store
            .list_messages(&Scope::Inboxes(vec![Inbox::Lease(second.id)]), None, 10)
            .unwrap();
        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.messages[0].text, "code for c");
    }

    #[tokio::test]
    async fn released_numbers_rest_in_quarantine() {
        let (store, _dir) = holders(9).await;
        store
            .ensure_numbers(vec![SeedNumber::new("p", "+12025550101", None)])
            .await
            .unwrap();
        let lease = store.lease_number(request(1)).await.unwrap().unwrap();
        assert_eq!(
            store.lease_number(request(2)).await.unwrap(),
            Err(LeaseRefusal::NoneAvailable)
        );
        store
            .end_lease(lease.id, Some(1), LeaseEnd::Released, DAY)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store.lease_number(request(2)).await.unwrap(),
            Err(LeaseRefusal::NoneAvailable)
        );
        let specific = LeaseRequest {
            number_id: Some(lease.number_id),
            ..request(2)
        };
        assert_eq!(
            store.lease_number(specific).await.unwrap(),
            Err(LeaseRefusal::NumberUnavailable)
        );
        assert_eq!(
            store
                .end_lease(lease.id, Some(1), LeaseEnd::Released, DAY)
                .await
                .unwrap(),
            Err(LeaseRefusal::LeaseEnded)
        );
    }

    #[tokio::test]
    async fn leases_expire_through_the_sweeper_and_the_longest_rested_number_goes_next() {
        let (store, _dir) = holders(9).await;
        store
            .ensure_numbers(vec![
                SeedNumber::new("p", "+12025550101", None),
                SeedNumber::new("p", "+12025550102", None),
            ])
            .await
            .unwrap();
        // A lease with no time left is due at once.
        let expiring = LeaseRequest {
            duration: Duration::ZERO,
            ..request(1)
        };
        let first = store.lease_number(expiring).await.unwrap().unwrap();
        assert_eq!(store.active_leases(1).unwrap().len(), 1);
        assert_eq!(
            store
                .expire_leases_batch(now_ms(), 10, Duration::ZERO)
                .await
                .unwrap(),
            1
        );
        assert!(store.active_leases(1).unwrap().is_empty());
        assert_eq!(
            store.lease(first.id).unwrap().unwrap().ended.unwrap().1,
            LeaseEnd::Expired
        );
        assert_eq!(
            store
                .expire_leases_batch(now_ms(), 10, Duration::ZERO)
                .await
                .unwrap(),
            0
        );

        // The other number was never leased, so it has rested longer: it goes next,
        // then the first one.
        let second = store.lease_number(request(2)).await.unwrap().unwrap();
        assert_ne!(second.number_id, first.number_id);
        let third = store.lease_number(request(3)).await.unwrap().unwrap();
        assert_eq!(third.number_id, first.number_id);
    }

    #[tokio::test]
    async fn holders_only_reach_their_own_leases_and_limits_hold() {
        let (store, _dir) = holders(9).await;
        store
            .ensure_numbers(vec![
                SeedNumber::new("p", "+12025550101", None),
                SeedNumber::new("q", "+442071838750", None),
            ])
            .await
            .unwrap();
        let guest = LeaseRequest {
            max_active: 1,
            ..request(7)
        };
        let lease = store.lease_number(guest.clone()).await.unwrap().unwrap();
        assert_eq!(
            store.lease_number(guest).await.unwrap(),
            Err(LeaseRefusal::TooManyLeases)
        );
        assert_eq!(
            store
                .extend_lease(lease.id, Some(8), now_ms() + 1)
                .await
                .unwrap(),
            Err(LeaseRefusal::LeaseNotFound),
            "another user cannot touch it"
        );
        let extended = store
            .extend_lease(lease.id, Some(7), lease.expires_at_ms + 1000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(extended.expires_at_ms, lease.expires_at_ms + 1000);

        let uk = LeaseRequest {
            prefix: Some("+44".into()),
            ..request(9)
        };
        let uk_lease = store.lease_number(uk).await.unwrap().unwrap();
        let by_provider = LeaseRequest {
            provider: Some("nope".into()),
            ..request(9)
        };
        assert_eq!(
            store.lease_number(by_provider).await.unwrap(),
            Err(LeaseRefusal::NoneAvailable)
        );
        assert_eq!(
            store
                .number_access(uk_lease.number_id)
                .unwrap()
                .unwrap()
                .holder(),
            Some(9)
        );
    }

    #[tokio::test]
    async fn public_numbers_get_a_fresh_inbox_and_never_take_anyones_codes() {
        let (store, _dir) = holders(9).await;
        let ids = store
            .ensure_numbers(vec![SeedNumber::new("p", "+12025550101", None)])
            .await
            .unwrap();
        let public = NumberPatch {
            public: Some(true),
            ..NumberPatch::default()
        };
        let lease = store.lease_number(request(1)).await.unwrap().unwrap();
        assert_eq!(
            store
                .update_number(ids[0], public.clone(), DAY)
                .await
                .unwrap(),
            Err(LeaseRefusal::NumberUnavailable),
            "not while someone holds it"
        );
        store
            .end_lease(lease.id, Some(1), LeaseEnd::Released, DAY)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .update_number(ids[0], public.clone(), DAY)
                .await
                .unwrap(),
            Err(LeaseRefusal::NumberUnavailable),
            "nor while it rests in quarantine"
        );
        // A late code for the previous holder lands while the number is idle.
        assert_eq!(
            deliver(&store, "late", "+12025550101").await,
            Inbox::Number(ids[0])
        );
        force_available(&store, ids[0]).await;
        store
            .update_number(ids[0], public, DAY)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store.lease_number(request(2)).await.unwrap(),
            Err(LeaseRefusal::NoneAvailable)
        );
        let public_inbox = deliver(&store, "new", "+12025550101").await;
        let Inbox::Lease(public_lease) = public_inbox else {
            panic!("a public number has an inbox of its own: {public_inbox:?}");
        };
        assert_eq!(
            store.lease(public_lease).unwrap().unwrap().holder,
            PUBLIC_HOLDER
        );
        let page = store
            .list_messages(&Scope::Inboxes(vec![public_inbox]), None, 10)
            .unwrap();
        assert_eq!(
            page.messages.len(),
            1,
            "the late code is not in the public inbox"
        );
        let access = store.number_access(ids[0]).unwrap().unwrap();
        assert_eq!(
            (access.public, access.holder()),
            (true, Some(PUBLIC_HOLDER))
        );
        assert_eq!(access.inbox(ids[0]), public_inbox);

        // Back to private: the public lease ends and the number rests again.
        let private = NumberPatch {
            public: Some(false),
            ..NumberPatch::default()
        };
        store
            .update_number(ids[0], private, DAY)
            .await
            .unwrap()
            .unwrap();
        assert!(store.lease(public_lease).unwrap().unwrap().ended.is_some());
        assert_eq!(
            store.lease_number(request(2)).await.unwrap(),
            Err(LeaseRefusal::NoneAvailable)
        );

        // Disabling revokes a holder's lease; deleting takes the number out of the pool.
        force_available(&store, ids[0]).await;
        let held = store.lease_number(request(3)).await.unwrap().unwrap();
        let disable = NumberPatch {
            disabled: Some(true),
            ..NumberPatch::default()
        };
        store
            .update_number(ids[0], disable, DAY)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store.lease(held.id).unwrap().unwrap().ended.unwrap().1,
            LeaseEnd::Revoked
        );
        store.delete_number(ids[0], DAY).await.unwrap().unwrap();
        assert_eq!(
            deliver(&store, "gone", "+12025550101").await,
            Inbox::Unrouted
        );
    }

    /// Ends a number's quarantine now (tests cannot wait a day).
    async fn force_available(store: &Store, number_id: u64) {
        store
            .writer
            .submit(move |tables| {
                let mut number = load_number(tables, number_id)?.unwrap();
                number.available_from_ms = 0;
                put_number(tables, number_id, &number)
            })
            .await
            .unwrap();
    }
}
