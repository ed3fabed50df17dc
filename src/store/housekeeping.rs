//! Housekeeping: deleting records that have outlived their use.
//!
//! Sessions, accounts, leases, invites and spent webhook nonces have no expiry index of
//! their own. The sweeper walks each of those tables a stretch of at most [`SCAN`]
//! records per tick, round and round, and deletes what nothing needs any more: one
//! writer job per stretch, so ingest never waits behind a whole table, and a table of
//! any size is covered in time.

use std::ops::Bound;
use std::time::Duration;

use redb::ReadableTable;
use serde::de::DeserializeOwned;

use super::records::{self, InviteRecord, LeaseRecord, UserRecord};
use super::tables::Tables;
use super::{Inbox, Store, StoreError, readable_or_skipped};

/// Records looked at per job at most, so one job never holds the writer long.
pub(super) const SCAN: usize = 1024;

/// A stretch of a table: each record read (or why it could not be), and the key the
/// next stretch starts after (`None`: this one reached the end of the table). Keys are
/// ids, or for tables keyed by a hash, its bytes.
pub(super) struct Stretch<R, K = u64> {
    pub records: Vec<(K, Result<R, StoreError>)>,
    pub next: Option<K>,
}

impl<R, K: Clone> Stretch<R, K> {
    fn of(records: Vec<(K, Result<R, StoreError>)>) -> Self {
        let next = if records.len() == SCAN {
            records.last().map(|(key, _)| key.clone())
        } else {
            None
        };
        Self { records, next }
    }
}

/// Reads the next [`SCAN`] records of `table` after id `after`.
pub(super) fn stretch<R: DeserializeOwned>(
    table: &impl ReadableTable<u64, &'static [u8]>,
    after: u64,
) -> Result<Stretch<R>, StoreError> {
    let mut records = Vec::with_capacity(SCAN);
    for entry in table.range(after.saturating_add(1)..)?.take(SCAN) {
        let (id, value) = entry?;
        records.push((id.value(), records::decode::<R>(value.value())));
    }
    Ok(Stretch::of(records))
}

/// Reads the next [`SCAN`] records of a table keyed by bytes, after key `after` (from
/// the start if `None`).
pub(super) fn byte_stretch<R: DeserializeOwned>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    after: Option<&[u8]>,
) -> Result<Stretch<R, Vec<u8>>, StoreError> {
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut records = Vec::with_capacity(SCAN);
    for entry in table.range::<&[u8]>((start, Bound::Unbounded))?.take(SCAN) {
        let (key, value) = entry?;
        records.push((key.value().to_vec(), records::decode::<R>(value.value())));
    }
    Ok(Stretch::of(records))
}

/// Where each walk stands between two ticks of the sweeper: the key its next stretch
/// starts after (`None`: from the start of its table).
#[derive(Debug, Default)]
pub struct Walks {
    pub sessions: Option<u64>,
    pub accounts: Option<u64>,
    pub leases: Option<u64>,
    pub invites: Option<Vec<u8>>,
    pub spent_nonces: Option<Vec<u8>>,
}

/// What a stretch of the accounts table held that had to go.
#[derive(Debug, Default)]
pub struct AccountsDue {
    /// Sign-ups never confirmed in time, deleted by the job (they own nothing yet).
    pub unconfirmed: usize,
    /// Temporary accounts past their end, to delete with everything they own.
    pub expired: Vec<u64>,
    pub next: Option<u64>,
}

impl Store {
    /// Looks at the next [`SCAN`] accounts after id `after`. Deletes sign-ups from open
    /// registration whose owner never followed the mailed link within
    /// `unconfirmed_after` (so abandoned or squatted sign-ups do not hold names), and
    /// returns the temporary accounts whose time is up: deleting those takes their
    /// messages too, which is more than one job should do.
    pub async fn accounts_due(
        &self,
        now: i64,
        unconfirmed_after: Duration,
        after: u64,
    ) -> Result<AccountsDue, StoreError> {
        let cutoff =
            now.saturating_sub(i64::try_from(unconfirmed_after.as_millis()).unwrap_or(i64::MAX));
        self.writer
            .submit(move |tables| {
                let stretch = stretch::<UserRecord>(&tables.users, after)?;
                let mut due = AccountsDue {
                    next: stretch.next,
                    ..AccountsDue::default()
                };
                for (id, read) in stretch.records {
                    let Some(user) = readable_or_skipped(read, "account", id)? else {
                        continue;
                    };
                    let user = user.into_latest();
                    if user.awaiting_verification && user.disabled && user.created_at_ms <= cutoff {
                        tables.users.remove(id)?;
                        tables.user_by_name.remove(user.username.as_str())?;
                        due.unconfirmed += 1;
                    } else if tables
                        .temporary_accounts
                        .get(id)?
                        .is_some_and(|end| end.value() <= now)
                    {
                        due.expired.push(id);
                    }
                }
                Ok(due)
            })
            .await
    }

    /// Deletes the ended leases among the next [`SCAN`] after id `after` that ended
    /// `kept_for` ago or longer and whose inbox is empty: the record says who held the
    /// number, which nobody needs once the lease's last message has expired. Returns
    /// how many went, and where the next job starts.
    pub async fn purge_leases_batch(
        &self,
        now: i64,
        kept_for: Duration,
        after: u64,
    ) -> Result<(usize, Option<u64>), StoreError> {
        let cutoff = now.saturating_sub(i64::try_from(kept_for.as_millis()).unwrap_or(i64::MAX));
        self.writer
            .submit(move |tables| {
                let stretch = stretch::<LeaseRecord>(&tables.leases, after)?;
                let mut purged = 0;
                for (id, read) in stretch.records {
                    let Some(lease) = readable_or_skipped(read, "lease", id)? else {
                        continue;
                    };
                    let lease = lease.into_latest();
                    let ended_long_ago = lease.ended.is_some_and(|(at, _)| at <= cutoff);
                    if ended_long_ago && inbox_is_empty(tables, Inbox::Lease(id))? {
                        tables.leases.remove(id)?;
                        tables.leases_by_holder.remove((lease.holder, id))?;
                        purged += 1;
                    }
                }
                Ok((purged, stretch.next))
            })
            .await
    }

    /// Deletes the expired invites (used or not) among the next [`SCAN`] after key
    /// `after`: an expired code is refused whether its record is there or not. Returns
    /// how many went, and where the next job starts.
    pub async fn purge_invites_batch(
        &self,
        now: i64,
        after: Option<Vec<u8>>,
    ) -> Result<(usize, Option<Vec<u8>>), StoreError> {
        self.writer
            .submit(move |tables| {
                let Stretch { records, next } =
                    byte_stretch::<InviteRecord>(&tables.invites, after.as_deref())?;
                let mut purged = 0;
                for (key, read) in records {
                    // Named by the start of its key: a hash, not the code itself.
                    let name = hex::encode(key.get(..4).unwrap_or_default());
                    let Some(invite) = readable_or_skipped(read, "invite", name)? else {
                        continue;
                    };
                    if invite.into_latest().expires_at_ms <= now {
                        tables.invites.remove(key.as_slice())?;
                        purged += 1;
                    }
                }
                Ok((purged, next))
            })
            .await
    }
}

fn inbox_is_empty(tables: &Tables<'_>, inbox: Inbox) -> Result<bool, StoreError> {
    let (kind, id) = inbox.key();
    Ok(tables
        .messages_by_inbox
        .range((kind, id, 0)..=(kind, id, u64::MAX))?
        .next()
        .is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EmailAddress, InboundSms};
    use crate::store::records::{LeaseEnd, Role};
    use crate::store::testing::{UNREADABLE, store};
    use crate::store::{LeaseRequest, SeedNumber, now_ms};

    const NUMBER: &str = "+12025550101";

    async fn with_number() -> (Store, tempfile::TempDir) {
        let (store, dir) = store();
        store
            .ensure_numbers(vec![SeedNumber::new("p", NUMBER, None)])
            .await
            .unwrap();
        (store, dir)
    }

    /// `holder` leases the number; one message arrives in the lease, kept `retention`.
    async fn lease_with_message(store: &Store, holder: u64, retention: Duration) -> u64 {
        let request = LeaseRequest {
            holder,
            number_id: None,
            provider: None,
            prefix: None,
            duration: Duration::from_secs(3600),
            max_active: 1,
        };
        let lease = store.lease_number(request).await.unwrap().unwrap();
        let sms = InboundSms::new(&format!("m{}", lease.id), "a", NUMBER, "hi", None).unwrap();
        store.ingest("p".into(), sms, retention).await.unwrap();
        lease.id
    }

    #[tokio::test]
    async fn abandoned_sign_ups_are_removed_and_nothing_else() {
        let (store, _dir) = store();
        let email = || Some(EmailAddress::parse("a@example.org").unwrap());
        store
            .register("waiting", "password1", None, true, email(), true)
            .await
            .unwrap()
            .unwrap();
        // Waiting for an admin (no mail), and an active account: both stay.
        store
            .register("approval", "password1", None, true, None, false)
            .await
            .unwrap()
            .unwrap();
        store
            .register("active", "password1", None, false, email(), false)
            .await
            .unwrap()
            .unwrap();
        let due = |after| store.accounts_due(now_ms(), after, 0);
        assert_eq!(due(Duration::from_secs(3600)).await.unwrap().unconfirmed, 0);
        let swept = due(Duration::ZERO).await.unwrap();
        assert_eq!((swept.unconfirmed, swept.expired.len()), (1, 0));
        assert!(store.find_user("waiting").unwrap().is_none());
        assert!(store.find_user("approval").unwrap().is_some());
        assert!(store.find_user("active").unwrap().is_some());
        // The name is free again.
        store
            .register("waiting", "password1", None, true, email(), true)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_guest_account_goes_with_its_messages_once_its_time_is_up() {
        let (store, _dir) = with_number().await;
        let guest = store
            .create_guest("guest-1", "password1", Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let lease = lease_with_message(&store, guest, Duration::from_secs(3600)).await;
        // Invited guests and guests an admin kept are permanent.
        let invited = store
            .create_user("invited", "password1", Role::Guest)
            .await
            .unwrap()
            .unwrap();
        let kept = store
            .create_guest("guest-2", "password1", Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        store
            .update_user(kept, Some(Role::User), None)
            .await
            .unwrap()
            .unwrap();
        let later = store
            .create_guest("guest-3", "password1", Duration::from_secs(3600))
            .await
            .unwrap()
            .unwrap();

        let now = now_ms();
        let due = store.accounts_due(now, Duration::ZERO, 0).await.unwrap();
        assert_eq!(due.expired, [guest]);
        let deleted = store
            .delete_expired_account(guest, now, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(deleted.len(), 1, "its message went with it");
        assert_eq!(store.counts().unwrap().messages, 0);
        assert!(store.find_user("guest-1").unwrap().is_none());
        assert!(store.lease(lease).unwrap().unwrap().ended.is_some());
        for id in [invited, kept, later] {
            assert!(store.user(id).unwrap().is_some());
            let none = store.delete_expired_account(id, now, Duration::ZERO).await;
            assert!(
                none.unwrap().is_none(),
                "account {id} is not temporary or not due"
            );
        }
        assert!(store.account_expiry(later).unwrap().is_some());
        assert!(store.account_expiry(kept).unwrap().is_none());
        assert!(
            store.account_expiry(guest).unwrap().is_none(),
            "forgotten with it"
        );
    }

    #[tokio::test]
    async fn an_ended_lease_goes_after_its_last_message() {
        let (store, _dir) = with_number().await;
        let holder = store
            .create_user("holder", "password1", Role::User)
            .await
            .unwrap()
            .unwrap();
        let ended = lease_with_message(&store, holder, Duration::ZERO).await;
        store
            .end_lease(ended, Some(holder), LeaseEnd::Released, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let running = lease_with_message(&store, holder, Duration::ZERO).await;
        let purge = |kept_for| store.purge_leases_batch(now_ms(), kept_for, 0);

        assert_eq!(
            purge(Duration::ZERO).await.unwrap(),
            (0, None),
            "a message is left"
        );
        store.sweep_expired_batch(now_ms(), 10).await.unwrap();
        assert_eq!(
            purge(Duration::from_secs(3600)).await.unwrap(),
            (0, None),
            "ended too recently"
        );
        assert_eq!(purge(Duration::ZERO).await.unwrap(), (1, None));
        assert!(store.lease(ended).unwrap().is_none());
        assert!(
            store.lease(running).unwrap().is_some(),
            "running leases stay"
        );
    }

    #[tokio::test]
    async fn expired_invites_go_and_the_walk_covers_any_number() {
        let (store, _dir) = store();
        let now = now_ms();
        let count = u8::try_from(SCAN / 256).unwrap();
        for high in 0..=count {
            for low in 0..=255u8 {
                let expires_at_ms = if low == 7 { now + 60_000 } else { now - 1 };
                let mut code = [0; 32];
                (code[0], code[1]) = (high, low);
                store
                    .create_invite(code, 1, Role::User, expires_at_ms)
                    .await
                    .unwrap();
            }
        }
        // And one no build of ours can read: skipped, not deleted, not fatal.
        store
            .writer
            .submit(|tables| {
                tables.invites.insert([0xff; 32].as_slice(), UNREADABLE)?;
                Ok(())
            })
            .await
            .unwrap();
        let total = (usize::from(count) + 1) * 256;
        let (first, next) = store.purge_invites_batch(now, None).await.unwrap();
        assert_eq!(first, SCAN - SCAN / 256);
        let (rest, end) = store.purge_invites_batch(now, next).await.unwrap();
        assert_eq!(end, None, "the second stretch reaches the end");
        assert_eq!(first + rest, total - total / 256, "every expired one went");
        let left = store
            .writer
            .submit(|tables| Ok(redb::ReadableTableMetadata::len(&tables.invites)?))
            .await
            .unwrap();
        assert_eq!(left, u64::try_from(total / 256 + 1).unwrap());
    }
}
