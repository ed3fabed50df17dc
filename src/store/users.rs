//! Accounts: look-up, password checks, creation.

use argon2::password_hash::PasswordVerifier;
use redb::{ReadableDatabase, ReadableTable};

use super::records::{self, Role, UserRecord, UserV1};
use super::tables::{USER_BY_NAME, USERS, meta};
use super::{Store, StoreError, next_id, now_ms};
use crate::auth::password;

/// Usernames: 3 to 32 of a-z, 0-9, '.', '-', '_' (stored lower-case).
pub fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

/// Shortest password accepted (NIST SP 800-63B asks for at least 8).
pub const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the username is taken")]
pub struct UsernameTaken;

impl Store {
    /// Creates an account. The password is hashed here (off the async workers), before
    /// the write, so the writer never waits on argon2.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<Result<u64, UsernameTaken>, StoreError> {
        let username = username.to_ascii_lowercase();
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || password::hash(&password))
            .await
            .map_err(|e| StoreError::Storage(e.to_string()))??;
        self.writer
            .submit(move |tables| {
                if tables.user_by_name.get(username.as_str())?.is_some() {
                    return Ok(Err(UsernameTaken));
                }
                let id = next_id(&mut tables.meta, meta::NEXT_USER_ID)?;
                let record = UserRecord::V1(UserV1 {
                    username: username.clone(),
                    password_hash: hash,
                    role,
                    created_at_ms: now_ms(),
                });
                tables
                    .users
                    .insert(id, records::encode(&record)?.as_slice())?;
                tables.user_by_name.insert(username.as_str(), id)?;
                Ok(Ok(id))
            })
            .await
    }

    /// A user by id.
    pub fn user(&self, id: u64) -> Result<Option<UserV1>, StoreError> {
        let txn = self.db.begin_read()?;
        let user = txn
            .open_table(USERS)?
            .get(id)?
            .map(|v| records::decode::<UserRecord>(v.value()))
            .transpose()?
            .map(UserRecord::into_latest);
        Ok(user)
    }

    /// Looks a user up by name (case-insensitive).
    pub fn find_user(&self, username: &str) -> Result<Option<(u64, UserV1)>, StoreError> {
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
    ) -> Result<Option<(u64, UserV1)>, StoreError> {
        let user = self.find_user(username)?;
        let hash = user.as_ref().map_or(password::dummy_hash(), |(_, user)| {
            user.password_hash.as_str()
        });
        let verified = password::hasher()
            .verify_password(candidate.as_bytes(), hash)
            .is_ok();
        Ok(user.filter(|_| verified))
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
        let (found, user) = store.check_password("ALICE", "password1").unwrap().unwrap();
        assert_eq!(
            (found, user.role, user.username.as_str()),
            (id, Role::User, "alice")
        );
    }
}
