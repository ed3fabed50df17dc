//! Accounts: look-up, password checks, creation.

use std::sync::Arc;

use argon2::password_hash::PasswordVerifier;
use redb::{ReadableDatabase, ReadableTable};

use super::records::{self, InviteRecord, InviteV1, LeaseEnd, Role, UserRecord, UserV3};
use super::tables::{TEMPORARY_ACCOUNTS, Tables, USER_BY_NAME, USERS, meta};
use super::{Keyring, Store, StoreError, next_id, now_ms};
use crate::auth::password;
use crate::domain::EmailAddress;

/// Usernames: 3 to 32 of a-z, 0-9, '.', '-', '_' (stored lower-case).
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

/// Hashes a password on a blocking thread: argon2 is deliberately slow, and neither the
/// async workers nor the writer should wait on it.
pub async fn hash_password(password: &str) -> Result<String, StoreError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| StoreError::Storage(e.to_string()))?
}

/// A new account, before it has an id.
pub(crate) struct NewAccount {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    /// Sealed under the new id; unverified until its owner follows the mailed link.
    pub email: Option<EmailAddress>,
    /// Locked until the owner follows the mailed link.
    pub awaiting_verification: bool,
    /// Deleted with everything it owns at this time (unix ms); `None`: permanent.
    pub expires_at_ms: Option<i64>,
}

/// Adds an account inside a write job, unless the name is taken.
pub(crate) fn insert_user(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    account: NewAccount,
) -> Result<Result<u64, UsernameTaken>, StoreError> {
    if tables
        .user_by_name
        .get(account.username.as_str())?
        .is_some()
    {
        return Ok(Err(UsernameTaken));
    }
    let id = next_id(&mut tables.meta, meta::NEXT_USER_ID)?;
    let sealed_email = account
        .email
        .map(|email| super::email::seal_email(keys, id, &email))
        .transpose()?;
    let user = UserV3 {
        username: account.username,
        password_hash: account.password_hash,
        role: account.role,
        created_at_ms: now_ms(),
        disabled: account.disabled,
        sealed_email,
        email_verified: false,
        awaiting_verification: account.awaiting_verification,
    };
    put_user(tables, id, &user)?;
    tables.user_by_name.insert(user.username.as_str(), id)?;
    if let Some(expires_at_ms) = account.expires_at_ms {
        tables.temporary_accounts.insert(id, expires_at_ms)?;
    }
    Ok(Ok(id))
}

/// A user inside a write job.
pub(crate) fn get_user(tables: &Tables<'_>, id: u64) -> Result<Option<UserV3>, StoreError> {
    Ok(tables
        .users
        .get(id)?
        .map(|v| records::decode::<UserRecord>(v.value()))
        .transpose()?
        .map(UserRecord::into_latest))
}

pub(crate) fn put_user(tables: &mut Tables<'_>, id: u64, user: &UserV3) -> Result<(), StoreError> {
    let bytes = records::encode(&UserRecord::V3(user.clone()))?;
    tables.users.insert(id, bytes.as_slice())?;
    Ok(())
}

/// Schema 5: the anonymous guests made before accounts could be temporary become
/// temporary, ending when their last session does (at once if none is left). They are
/// told apart by what `/auth/guest` made: the guest role, a `guest-` name with twelve hex
/// digits, and no invite spent on it (invited guests chose their name and password).
pub(crate) fn mark_anonymous_guests(tables: &mut Tables<'_>) -> Result<(), StoreError> {
    let anonymous_name = |name: &str| {
        name.strip_prefix("guest-").is_some_and(|suffix| {
            suffix.len() == 12 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        })
    };
    let mut invited = std::collections::HashSet::new();
    for entry in tables.invites.iter()? {
        let record = records::decode::<InviteRecord>(entry?.1.value());
        if let Ok(invite) = record {
            invited.extend(invite.into_latest().used_by);
        }
    }
    let mut guests = Vec::new();
    for entry in tables.users.iter()? {
        let (id, value) = entry?;
        let Ok(user) = records::decode::<UserRecord>(value.value()) else {
            continue;
        };
        let user = user.into_latest();
        if user.role == Role::Guest
            && anonymous_name(&user.username)
            && !invited.contains(&id.value())
        {
            guests.push((id.value(), user.created_at_ms));
        }
    }
    for (id, created_at_ms) in guests {
        let mut ends_at_ms = created_at_ms;
        for entry in tables.sessions_by_user.range((id, 0)..=(id, u64::MAX))? {
            let session_id = entry?.0.value().1;
            let session = tables
                .sessions
                .get(session_id)?
                .and_then(|v| records::decode::<records::SessionRecord>(v.value()).ok());
            if let Some(session) = session {
                ends_at_ms = ends_at_ms.max(session.into_latest().expires_at_ms);
            }
        }
        tables.temporary_accounts.insert(id, ends_at_ms)?;
    }
    Ok(())
}

/// Messages deleted per write transaction when an account is deleted.
const DELETE_BATCH: usize = 256;

/// Shortest password accepted (NIST SP 800-63B asks for at least 8).
pub const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the username is taken")]
pub struct UsernameTaken;

/// The outcome of a password check.
#[derive(Debug, Clone)]
pub enum PasswordCheck {
    /// No such account, or the wrong password.
    Wrong,
    /// The right password for an account that may not log in (yet): an admin disabled
    /// it, or it waits for approval or for its e-mail address to be confirmed. Callers
    /// answer like `Wrong` unless they have something useful to say to the owner.
    Disabled(u64, UserV3),
    Valid(u64, UserV3),
}

impl PasswordCheck {
    /// The account, if it may log in.
    pub fn valid(self) -> Option<(u64, UserV3)> {
        match self {
            Self::Valid(id, user) => Some((id, user)),
            _ => None,
        }
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationRefusal {
    #[error("the username is taken")]
    UsernameTaken,
    #[error("the invite code is unknown, used or expired")]
    BadInvite,
}

impl Store {
    /// Stores an invite (by the hash of its code) that creates an account of `role`.
    pub async fn create_invite(
        &self,
        code_hash: [u8; 32],
        created_by: u64,
        role: Role,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.writer
            .submit(move |tables| {
                let record = InviteRecord::V1(InviteV1 {
                    created_by,
                    role,
                    expires_at_ms,
                    used_by: None,
                });
                tables
                    .invites
                    .insert(code_hash.as_slice(), records::encode(&record)?.as_slice())?;
                Ok(())
            })
            .await
    }

    /// Registers an account. With `invite` (the hash of a code), the invite must be
    /// unused and unexpired; it is spent in the same transaction, so one code makes one
    /// account. `disabled` accounts wait for an admin to enable them.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        invite: Option<[u8; 32]>,
        disabled: bool,
        email: Option<EmailAddress>,
        awaiting_verification: bool,
    ) -> Result<Result<(u64, Role), RegistrationRefusal>, StoreError> {
        let username = username.to_ascii_lowercase();
        let hash = hash_password(password).await?;
        let keys = Arc::clone(&self.keys);
        self.writer
            .submit(move |tables| {
                let mut role = Role::User;
                let mut spent = None;
                if let Some(code_hash) = invite {
                    let found = tables
                        .invites
                        .get(code_hash.as_slice())?
                        .map(|v| records::decode::<InviteRecord>(v.value()))
                        .transpose()?
                        .map(InviteRecord::into_latest);
                    match found {
                        Some(invite)
                            if invite.used_by.is_none() && invite.expires_at_ms > now_ms() =>
                        {
                            role = invite.role;
                            spent = Some(invite);
                        }
                        _ => return Ok(Err(RegistrationRefusal::BadInvite)),
                    }
                }
                let account = NewAccount {
                    username,
                    password_hash: hash,
                    role,
                    disabled,
                    awaiting_verification: disabled && awaiting_verification,
                    email,
                    expires_at_ms: None,
                };
                let Ok(id) = insert_user(tables, &keys, account)? else {
                    return Ok(Err(RegistrationRefusal::UsernameTaken));
                };
                if let (Some(mut invite), Some(code_hash)) = (spent, invite) {
                    invite.used_by = Some(id);
                    let bytes = records::encode(&InviteRecord::V1(invite))?;
                    tables
                        .invites
                        .insert(code_hash.as_slice(), bytes.as_slice())?;
                }
                Ok(Ok((id, role)))
            })
            .await
    }

    /// Creates an account. The password is hashed here (off the async workers), before
    /// the write, so the writer never waits on argon2.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<Result<u64, UsernameTaken>, StoreError> {
        self.create_account(username, password, role, None).await
    }

    /// Creates an anonymous guest's account, which the sweeper deletes with everything
    /// it owns once `lifetime` has passed: its one session cannot be refreshed, so
    /// after that nobody can use the account or read what it received.
    pub async fn create_guest(
        &self,
        username: &str,
        password: &str,
        lifetime: std::time::Duration,
    ) -> Result<Result<u64, UsernameTaken>, StoreError> {
        self.create_account(username, password, Role::Guest, Some(lifetime))
            .await
    }

    async fn create_account(
        &self,
        username: &str,
        password: &str,
        role: Role,
        lifetime: Option<std::time::Duration>,
    ) -> Result<Result<u64, UsernameTaken>, StoreError> {
        let username = username.to_ascii_lowercase();
        let hash = hash_password(password).await?;
        let keys = Arc::clone(&self.keys);
        self.writer
            .submit(move |tables| {
                // Counted from the write, after the slow hash: the account ends with
                // the session started right after it, not a hash's time before.
                let expires_at_ms = lifetime.map(|lifetime| {
                    let lifetime = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
                    now_ms().saturating_add(lifetime)
                });
                let account = NewAccount {
                    username,
                    password_hash: hash,
                    role,
                    disabled: false,
                    awaiting_verification: false,
                    email: None,
                    expires_at_ms,
                };
                insert_user(tables, &keys, account)
            })
            .await
    }

    /// A user by id.
    pub fn user(&self, id: u64) -> Result<Option<UserV3>, StoreError> {
        let txn = self.db.begin_read()?;
        let user = txn
            .open_table(USERS)?
            .get(id)?
            .map(|v| records::decode::<UserRecord>(v.value()))
            .transpose()?
            .map(UserRecord::into_latest);
        Ok(user)
    }

    /// When a temporary account is deleted (unix ms); `None` for a permanent one.
    pub fn account_expiry(&self, id: u64) -> Result<Option<i64>, StoreError> {
        let txn = self.db.begin_read()?;
        let end = txn.open_table(TEMPORARY_ACCOUNTS)?.get(id)?;
        Ok(end.map(|end| end.value()))
    }

    /// Every temporary account's end (unix ms), by account id: few (live guests only),
    /// so account listings read them in one go.
    pub fn account_expiries(&self) -> Result<std::collections::HashMap<u64, i64>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut ends = std::collections::HashMap::new();
        for entry in txn.open_table(TEMPORARY_ACCOUNTS)?.iter()? {
            let (id, end) = entry?;
            ends.insert(id.value(), end.value());
        }
        Ok(ends)
    }

    /// Looks a user up by name (case-insensitive).
    pub fn find_user(&self, username: &str) -> Result<Option<(u64, UserV3)>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(id) = txn
            .open_table(USER_BY_NAME)?
            .get(username.to_ascii_lowercase().as_str())?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let user = txn
            .open_table(USERS)?
            .get(id)?
            .map(|v| records::decode::<UserRecord>(v.value()))
            .transpose()?
            .map(|record| (id, record.into_latest()));
        Ok(user)
    }

    /// Checks a username and password. Always spends one argon2 verification, even for
    /// unknown users, so response time does not reveal which accounts exist.
    pub fn check_password(
        &self,
        username: &str,
        candidate: &str,
    ) -> Result<PasswordCheck, StoreError> {
        let user = self.find_user(username)?;
        let hash = user.as_ref().map_or(password::dummy_hash(), |(_, user)| {
            user.password_hash.as_str()
        });
        let verified = password::hasher()
            .verify_password(candidate.as_bytes(), hash)
            .is_ok();
        Ok(match user {
            Some((id, user)) if verified && !user.disabled => PasswordCheck::Valid(id, user),
            Some((id, user)) if verified => PasswordCheck::Disabled(id, user),
            _ => PasswordCheck::Wrong,
        })
    }

    /// Accounts in id order, optionally only those whose name contains `search`.
    pub fn list_users(&self, search: Option<&str>) -> Result<Vec<(u64, UserV3)>, StoreError> {
        let search = search.map(str::to_ascii_lowercase);
        let txn = self.db.begin_read()?;
        let mut users = Vec::new();
        for entry in txn.open_table(USERS)?.iter()? {
            let (id, value) = entry?;
            let user = records::decode::<UserRecord>(value.value())?.into_latest();
            if search
                .as_ref()
                .is_none_or(|s| user.username.contains(s.as_str()))
            {
                users.push((id.value(), user));
            }
        }
        Ok(users)
    }

    /// Changes an account's role and/or disabled flag. Disabling revokes every session,
    /// so the account is locked out at once. Returns the account, or `None` if unknown.
    pub async fn update_user(
        &self,
        id: u64,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<Option<UserV3>, StoreError> {
        self.writer
            .submit(move |tables| {
                let Some(mut user) = tables
                    .users
                    .get(id)?
                    .map(|v| records::decode::<UserRecord>(v.value()))
                    .transpose()?
                    .map(UserRecord::into_latest)
                else {
                    return Ok(None);
                };
                if let Some(role) = role {
                    user.role = role;
                    // An admin who makes a temporary guest anything else means to keep it.
                    if role != Role::Guest {
                        tables.temporary_accounts.remove(id)?;
                    }
                }
                if let Some(disabled) = disabled {
                    user.disabled = disabled;
                    // The admin has decided; a verification link no longer unlocks.
                    user.awaiting_verification = false;
                }
                put_user(tables, id, &user)?;
                if user.disabled || role.is_some() {
                    // A role change also ends sessions: tokens carry the old role.
                    super::sessions::revoke_all_in(tables, id, None)?;
                }
                Ok(Some(user))
            })
            .await
    }

    /// Deletes an account with everything it owns: its sessions end, its webhooks go, its
    /// leases are revoked (numbers go to quarantine), and every message of its leases is
    /// deleted.
    /// Returns the ids of the deleted messages (for the search index), or `None` if the
    /// account does not exist.
    pub async fn delete_user(
        &self,
        id: u64,
        quarantine: std::time::Duration,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        self.delete_account(id, quarantine, |_| Ok(true)).await
    }

    /// Deletes a temporary account like [`Store::delete_user`] if its time is up at
    /// `now` (an admin may have made it permanent since the sweeper saw it).
    pub async fn delete_expired_account(
        &self,
        id: u64,
        now: i64,
        quarantine: std::time::Duration,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        self.delete_account(id, quarantine, move |tables| {
            Ok(tables
                .temporary_accounts
                .get(id)?
                .is_some_and(|end| end.value() <= now))
        })
        .await
    }

    /// Deletes the account if `doomed` says so of it.
    async fn delete_account(
        &self,
        id: u64,
        quarantine: std::time::Duration,
        doomed: impl FnOnce(&Tables<'_>) -> Result<bool, StoreError> + Send + 'static,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        let keys = Arc::clone(&self.keys);
        let leases = self
            .writer
            .submit(move |tables| {
                if !doomed(tables)? {
                    return Ok(None);
                }
                let Some(user) = get_user(tables, id)? else {
                    return Ok(None);
                };
                tables.users.remove(id)?;
                tables.temporary_accounts.remove(id)?;
                tables.user_by_name.remove(user.username.as_str())?;
                super::email::forget_email(tables, &keys, id, &user)?;
                super::sessions::revoke_all_in(tables, id, None)?;
                super::hooks::remove_webhooks_of(tables, id)?;
                let leases = super::leases::leases_of(tables, id)?;
                for lease_id in &leases {
                    let ended = super::leases::end_if_active(
                        tables,
                        *lease_id,
                        LeaseEnd::Revoked,
                        now_ms(),
                        quarantine,
                    );
                    // One unreadable lease must not keep the account (and whatever else
                    // it owns) for ever; the lease sweep forgets such a lease at its end.
                    super::readable_or_skipped(ended, "lease", *lease_id)?;
                }
                Ok(Some(leases))
            })
            .await?;
        let Some(leases) = leases else {
            return Ok(None);
        };
        // Their messages go in small batches, like the sweeper's, so ingest never waits
        // behind one huge transaction.
        let mut deleted = Vec::new();
        for lease_id in leases {
            loop {
                let batch = self
                    .writer
                    .submit(move |tables| {
                        let (kind, inbox) = super::Inbox::Lease(lease_id).key();
                        let mut ids = Vec::new();
                        for entry in tables
                            .messages_by_inbox
                            .range((kind, inbox, 0)..=(kind, inbox, u64::MAX))?
                            .take(DELETE_BATCH)
                        {
                            ids.push(entry?.0.value().2);
                        }
                        for message_id in &ids {
                            let forgotten = super::messages::forget_message(tables, *message_id);
                            super::readable_or_skipped(forgotten, "message", *message_id)?;
                            // Gone already if the message was there; an entry left by
                            // an unreadable record must go too, or this never ends.
                            tables
                                .messages_by_inbox
                                .remove((kind, inbox, *message_id))?;
                        }
                        Ok(ids)
                    })
                    .await?;
                let done = batch.len() < DELETE_BATCH;
                deleted.extend(batch);
                if done {
                    break;
                }
            }
        }
        Ok(Some(deleted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store;

    #[test]
    fn usernames_are_tame() {
        assert!(valid_username("alice.b-c_9"));
        assert!(!valid_username("Al"));
        assert!(!valid_username("al ice"));
        assert!(!valid_username(&"a".repeat(33)));
    }

    /// An hour's lease of any number for `holder`, who may hold `max_active` at once.
    fn hour_lease(holder: u64, max_active: usize) -> crate::store::LeaseRequest {
        crate::store::LeaseRequest {
            holder,
            number_id: None,
            provider: None,
            prefix: None,
            duration: std::time::Duration::from_secs(3600),
            max_active,
        }
    }

    #[tokio::test]
    async fn accounts_can_be_disabled_and_deleted_with_everything_they_own() {
        use crate::domain::InboundSms;
        use crate::store::SeedNumber;

        let (store, _dir) = store();
        store
            .ensure_numbers(vec![SeedNumber::new("p", "+12025550101", None)])
            .await
            .unwrap();
        let id = store
            .create_user("carol", "password1", Role::User)
            .await
            .unwrap()
            .unwrap();
        let session = store.create_session(id, [1; 32], 60_000).await.unwrap();
        store
            .update_user(id, None, Some(true))
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .check_password("carol", "password1")
                .unwrap()
                .valid()
                .is_none(),
            "disabled"
        );
        assert!(
            store.live_session(session.id).unwrap().is_none(),
            "sessions revoked"
        );
        store
            .update_user(id, None, Some(false))
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .check_password("carol", "password1")
                .unwrap()
                .valid()
                .is_some()
        );

        let lease = store
            .lease_number(hour_lease(id, 1))
            .await
            .unwrap()
            .unwrap();
        for i in 0..3 {
            let sms = InboundSms::new(&format!("m{i}"), "a", "+12025550101", "hi", None).unwrap();
            store
                .ingest("p".into(), sms, std::time::Duration::from_secs(60))
                .await
                .unwrap();
        }
        let deleted = store
            .delete_user(id, std::time::Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(deleted.len(), 3);
        assert!(store.find_user("carol").unwrap().is_none());
        assert_eq!(store.counts().unwrap().messages, 0);
        assert!(store.lease(lease.id).unwrap().unwrap().ended.is_some());
        assert!(
            store
                .delete_user(id, std::time::Duration::ZERO)
                .await
                .unwrap()
                .is_none()
        );
    }

    /// One damaged lease record does not keep an account (and everything else it owns)
    /// for ever: the account and its other lease's messages go all the same.
    #[tokio::test]
    async fn an_account_with_an_unreadable_lease_is_still_deleted() {
        use crate::domain::InboundSms;
        use crate::store::SeedNumber;
        use crate::store::testing::UNREADABLE;

        let (store, _dir) = store();
        let numbers = ["+12025550101", "+12025550102"];
        store
            .ensure_numbers(
                numbers
                    .iter()
                    .map(|n| SeedNumber::new("p", n, None))
                    .collect(),
            )
            .await
            .unwrap();
        let id = store
            .create_user("dave", "password1", Role::User)
            .await
            .unwrap()
            .unwrap();
        let mut leases = Vec::new();
        for _ in numbers {
            let lease = store.lease_number(hour_lease(id, 2)).await.unwrap();
            leases.push(lease.unwrap());
        }
        for (i, number) in numbers.iter().enumerate() {
            let sms = InboundSms::new(&format!("m{i}"), "a", number, "hi", None).unwrap();
            store
                .ingest("p".into(), sms, std::time::Duration::from_secs(60))
                .await
                .unwrap();
        }
        let damaged = leases[0].id;
        store
            .writer
            .submit(move |tables| {
                tables.leases.insert(damaged, UNREADABLE)?;
                Ok(())
            })
            .await
            .unwrap();

        let deleted = store
            .delete_user(id, std::time::Duration::ZERO)
            .await
            .unwrap()
            .expect("deleted despite the damaged lease");
        assert_eq!(deleted.len(), 2, "both leases' messages went");
        assert!(store.find_user("dave").unwrap().is_none());
        assert_eq!(store.counts().unwrap().messages, 0);
        assert!(store.lease(leases[1].id).unwrap().unwrap().ended.is_some());
    }

    #[tokio::test]
    async fn an_invite_makes_one_account_of_its_role_before_it_expires() {
        let (store, _dir) = store();
        let later = now_ms() + 60_000;
        store
            .create_invite([1; 32], 1, Role::Guest, later)
            .await
            .unwrap();
        store
            .create_invite([2; 32], 1, Role::User, now_ms() - 1)
            .await
            .unwrap();
        let (_, role) = store
            .register("erin", "password1", Some([1; 32]), false, None, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(role, Role::Guest);
        assert_eq!(
            store
                .register("frank", "password1", Some([1; 32]), false, None, false)
                .await
                .unwrap(),
            Err(RegistrationRefusal::BadInvite),
            "used"
        );
        assert_eq!(
            store
                .register("frank", "password1", Some([2; 32]), false, None, false)
                .await
                .unwrap(),
            Err(RegistrationRefusal::BadInvite),
            "expired"
        );
        assert_eq!(
            store
                .register("frank", "password1", Some([9; 32]), false, None, false)
                .await
                .unwrap(),
            Err(RegistrationRefusal::BadInvite),
            "unknown"
        );
        let (id, _) = store
            .register("grace", "password1", None, true, None, false)
            .await
            .unwrap()
            .unwrap();
        assert!(
            store
                .check_password("grace", "password1")
                .unwrap()
                .valid()
                .is_none(),
            "waits for approval"
        );
        store.update_user(id, None, Some(false)).await.unwrap();
        assert!(
            store
                .check_password("grace", "password1")
                .unwrap()
                .valid()
                .is_some()
        );
    }

    #[tokio::test]
    async fn accounts_are_unique_case_insensitively() {
        let (store, _dir) = store();
        let id = store
            .create_user("Alice", "password1", Role::User)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .create_user("alice", "password2", Role::User)
                .await
                .unwrap(),
            Err(UsernameTaken)
        );
        let (found, user) = store
            .check_password("ALICE", "password1")
            .unwrap()
            .valid()
            .unwrap();
        assert_eq!(
            (found, user.role, user.username.as_str()),
            (id, Role::User, "alice")
        );
    }
}
