//! E-mail addresses of accounts and the single-use links mailed to them.
//!
//! Addresses are personal data, so they are sealed like phone numbers; look-ups (for a
//! password reset) go through a blind index that holds verified addresses only.

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable};

use super::records::{self, EmailTokenPurpose, EmailTokenRecord, EmailTokenV2, UserV3};
use super::tables::{Tables, USER_BY_EMAIL, USERS};
use super::users::{get_user, put_user};
use super::{Keyring, Store, StoreError, now_ms};
use crate::domain::EmailAddress;

fn email_context(user_id: u64) -> Vec<u8> {
    format!("user-email:{user_id}").into_bytes()
}

fn email_index(keys: &Keyring, email: &EmailAddress) -> [u8; 32] {
    keys.blind_index("email", email.lookup_key().as_bytes())
}

pub(crate) fn seal_email(
    keys: &Keyring,
    user_id: u64,
    email: &EmailAddress,
) -> Result<Vec<u8>, StoreError> {
    Ok(keys.seal(&email_context(user_id), email.as_str().as_bytes())?)
}

/// The account whose verified address `email` is, inside a write job.
pub(crate) fn owner_of(
    tables: &Tables<'_>,
    keys: &Keyring,
    email: &EmailAddress,
) -> Result<Option<u64>, StoreError> {
    Ok(tables
        .user_by_email
        .get(email_index(keys, email).as_slice())?
        .map(|v| v.value()))
}

/// Drops the address of an account that is deleted, or changing it, from the index,
/// inside a write job.
pub(crate) fn forget_email(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    user_id: u64,
    user: &UserV3,
) -> Result<(), StoreError> {
    if let (Some(sealed), true) = (&user.sealed_email, user.email_verified) {
        let email = open_email(keys, user_id, sealed)?;
        let index = email_index(keys, &email);
        if tables
            .user_by_email
            .get(index.as_slice())?
            .map(|v| v.value())
            == Some(user_id)
        {
            tables.user_by_email.remove(index.as_slice())?;
        }
    }
    Ok(())
}

/// Deletes every password-reset link of `user_id`: once the password changed (by any
/// route), a link mailed earlier must not open the account again. The table is small
/// (mail is rate-limited per address), so it is scanned.
fn drop_reset_tokens(tables: &mut Tables<'_>, user_id: u64) -> Result<(), StoreError> {
    drop_tokens(tables, user_id, |purpose| {
        purpose == EmailTokenPurpose::ResetPassword
    })
}

/// Deletes the account's outstanding links whose purpose `doomed_purpose` accepts.
fn drop_tokens(
    tables: &mut Tables<'_>,
    user_id: u64,
    doomed_purpose: impl Fn(EmailTokenPurpose) -> bool,
) -> Result<(), StoreError> {
    let mut doomed = Vec::new();
    for entry in tables.email_tokens.iter()? {
        let (hash, value) = entry?;
        let token = records::decode::<EmailTokenRecord>(value.value())?.into_latest();
        if token.user_id == user_id && doomed_purpose(token.purpose) {
            doomed.push(hash.value().to_vec());
        }
    }
    for hash in doomed {
        tables.email_tokens.remove(hash.as_slice())?;
    }
    Ok(())
}

fn open_email(keys: &Keyring, user_id: u64, sealed: &[u8]) -> Result<EmailAddress, StoreError> {
    let bytes = keys.open(&email_context(user_id), sealed)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| StoreError::Crypto("a sealed e-mail address does not parse".into()))?;
    EmailAddress::parse(&text)
        .map_err(|_| StoreError::Crypto("a sealed e-mail address does not parse".into()))
}

/// Why a mailed link was not honoured. One answer for all: a link is either good or not,
/// and telling "expired" from "unknown" would only help someone guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailTokenRefusal {
    #[error("the link is unknown, used or expired")]
    Invalid,
    #[error("another account has confirmed that e-mail address")]
    EmailTaken,
}

/// The blind index of the account's current address, if it has one.
fn current_address(
    keys: &Keyring,
    user_id: u64,
    user: &UserV3,
) -> Result<Option<[u8; 32]>, StoreError> {
    user.sealed_email
        .as_deref()
        .map(|sealed| Ok(email_index(keys, &open_email(keys, user_id, sealed)?)))
        .transpose()
}

/// Removes the token and returns it if it is live, for `purpose`, and the address it was
/// mailed to is still the account's. Spent on every attempt, good or not, so a link works
/// at most once.
fn take_token(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    token_hash: &[u8; 32],
    purpose: EmailTokenPurpose,
) -> Result<Option<(EmailTokenV2, UserV3)>, StoreError> {
    let Some(token) = tables
        .email_tokens
        .remove(token_hash.as_slice())?
        .map(|v| records::decode::<EmailTokenRecord>(v.value()))
        .transpose()?
        .map(EmailTokenRecord::into_latest)
    else {
        return Ok(None);
    };
    if token.purpose != purpose || token.expires_at_ms <= now_ms() {
        return Ok(None);
    }
    let Some(user) = get_user(tables, token.user_id)? else {
        return Ok(None);
    };
    if let Some(sent_to) = token.sent_to
        && current_address(keys, token.user_id, &user)? != Some(sent_to)
    {
        return Ok(None);
    }
    Ok(Some((token, user)))
}

impl Store {
    /// The account's address, if it has one (and whether it is verified).
    pub fn user_email(
        &self,
        user_id: u64,
        user: &UserV3,
    ) -> Result<Option<(EmailAddress, bool)>, StoreError> {
        user.sealed_email
            .as_deref()
            .map(|sealed| {
                Ok((
                    open_email(&self.keys, user_id, sealed)?,
                    user.email_verified,
                ))
            })
            .transpose()
    }

    /// The enabled account whose verified address is `email`.
    pub fn user_by_email(&self, email: &EmailAddress) -> Result<Option<(u64, UserV3)>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(id) = txn
            .open_table(USER_BY_EMAIL)?
            .get(email_index(&self.keys, email).as_slice())?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let user = txn
            .open_table(USERS)?
            .get(id)?
            .map(|v| records::decode::<records::UserRecord>(v.value()))
            .transpose()?
            .map(records::UserRecord::into_latest)
            .filter(|user| !user.disabled);
        Ok(user.map(|user| (id, user)))
    }

    /// Stores a link's token (by its hash) for `purpose`, valid until `expires_at_ms`.
    /// Expired tokens are cleared out on the way: they are few (mail is rate-limited).
    ///
    /// The link is bound to `sent_to`: it is refused here (`false`) unless that is the
    /// account's address now, and later unless it still is. The check and the write are
    /// one job, so an address change cannot slip in between.
    pub async fn create_email_token(
        &self,
        token_hash: [u8; 32],
        user_id: u64,
        sent_to: &EmailAddress,
        purpose: EmailTokenPurpose,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let keys = Arc::clone(&self.keys);
        let sent_to = email_index(&keys, sent_to);
        self.writer
            .submit(move |tables| {
                let current = match get_user(tables, user_id)? {
                    Some(user) => current_address(&keys, user_id, &user)?,
                    None => None,
                };
                if current != Some(sent_to) {
                    return Ok(false);
                }
                let now = now_ms();
                let mut expired = Vec::new();
                for entry in tables.email_tokens.iter()? {
                    let (hash, value) = entry?;
                    let token = records::decode::<EmailTokenRecord>(value.value())?.into_latest();
                    if token.expires_at_ms <= now {
                        expired.push(hash.value().to_vec());
                    }
                }
                for hash in expired {
                    tables.email_tokens.remove(hash.as_slice())?;
                }
                let record = EmailTokenRecord::V2(EmailTokenV2 {
                    user_id,
                    purpose,
                    expires_at_ms,
                    sent_to: Some(sent_to),
                });
                tables
                    .email_tokens
                    .insert(token_hash.as_slice(), records::encode(&record)?.as_slice())?;
                Ok(true)
            })
            .await
    }

    /// Spends a verification link: the address becomes the account's verified one, and
    /// an account that was waiting for it (open registration) is unlocked.
    pub async fn verify_email(
        &self,
        token_hash: [u8; 32],
    ) -> Result<Result<(u64, UserV3), EmailTokenRefusal>, StoreError> {
        let keys = Arc::clone(&self.keys);
        self.writer
            .submit(move |tables| {
                let Some((token, mut user)) =
                    take_token(tables, &keys, &token_hash, EmailTokenPurpose::VerifyEmail)?
                else {
                    return Ok(Err(EmailTokenRefusal::Invalid));
                };
                let Some(sealed) = &user.sealed_email else {
                    return Ok(Err(EmailTokenRefusal::Invalid));
                };
                let email = open_email(&keys, token.user_id, sealed)?;
                match owner_of(tables, &keys, &email)? {
                    Some(owner) if owner != token.user_id => {
                        return Ok(Err(EmailTokenRefusal::EmailTaken));
                    }
                    _ => {}
                }
                if user.awaiting_verification {
                    // Waiting for this link was the only reason the account was locked.
                    user.disabled = false;
                    user.awaiting_verification = false;
                }
                user.email_verified = true;
                tables
                    .user_by_email
                    .insert(email_index(&keys, &email).as_slice(), token.user_id)?;
                put_user(tables, token.user_id, &user)?;
                Ok(Ok((token.user_id, user)))
            })
            .await
    }

    /// Spends a password-reset link: sets the new password (already hashed) and ends
    /// every session of the account.
    pub async fn reset_password(
        &self,
        token_hash: [u8; 32],
        password_hash: String,
    ) -> Result<Result<(u64, UserV3), EmailTokenRefusal>, StoreError> {
        let keys = Arc::clone(&self.keys);
        self.writer
            .submit(move |tables| {
                let Some((token, mut user)) =
                    take_token(tables, &keys, &token_hash, EmailTokenPurpose::ResetPassword)?
                else {
                    return Ok(Err(EmailTokenRefusal::Invalid));
                };
                if user.disabled {
                    return Ok(Err(EmailTokenRefusal::Invalid));
                }
                user.password_hash = password_hash;
                put_user(tables, token.user_id, &user)?;
                drop_reset_tokens(tables, token.user_id)?;
                super::sessions::revoke_all_in(tables, token.user_id, None)?;
                Ok(Ok((token.user_id, user)))
            })
            .await
    }

    /// Gives the account a new address, unconfirmed until its owner follows the link
    /// mailed to it. The old address leaves the index, and every outstanding link of
    /// the account dies: a verification link mailed to the old address must not confirm
    /// the new one, nor a reset link reach an address that is no longer the account's.
    /// Only over the password hash `replacing` (checked by the caller); `None` when the
    /// account is gone or its password changed meanwhile. Returns the account and the
    /// address it had confirmed before, if any, whose owner should hear of the change.
    pub async fn change_email(
        &self,
        user_id: u64,
        email: EmailAddress,
        replacing: String,
    ) -> Result<Option<(UserV3, Option<EmailAddress>)>, StoreError> {
        let keys = Arc::clone(&self.keys);
        self.writer
            .submit(move |tables| {
                let Some(mut user) = get_user(tables, user_id)? else {
                    return Ok(None);
                };
                if user.password_hash != replacing {
                    return Ok(None);
                }
                let previous = match (&user.sealed_email, user.email_verified) {
                    (Some(sealed), true) => Some(open_email(&keys, user_id, sealed)?),
                    _ => None,
                };
                let sealed = seal_email(&keys, user_id, &email)?;
                forget_email(tables, &keys, user_id, &user)?;
                drop_tokens(tables, user_id, |_| true)?;
                user.sealed_email = Some(sealed);
                user.email_verified = false;
                put_user(tables, user_id, &user)?;
                Ok(Some((user, previous)))
            })
            .await
    }

    /// Sets a new password (hashed here, off the async workers) and ends every session
    /// of the account but `keep`. With `replacing`, only if the stored hash is still that
    /// one: a change checked against the old password must not undo a reset (or another
    /// change) that landed in between. `None` when there is no such account or the
    /// password has changed meanwhile.
    pub async fn set_password(
        &self,
        user_id: u64,
        password: &str,
        keep: Option<u64>,
        replacing: Option<String>,
    ) -> Result<Option<UserV3>, StoreError> {
        let hash = super::users::hash_password(password).await?;
        self.writer
            .submit(move |tables| {
                let Some(mut user) = get_user(tables, user_id)? else {
                    return Ok(None);
                };
                if replacing.is_some_and(|old| old != user.password_hash) {
                    return Ok(None);
                }
                user.password_hash = hash;
                put_user(tables, user_id, &user)?;
                drop_reset_tokens(tables, user_id)?;
                super::sessions::revoke_all_in(tables, user_id, keep)?;
                Ok(Some(user))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::EmailAddress;
    use crate::store::testing::store;

    #[tokio::test]
    async fn a_change_checked_against_a_replaced_password_does_not_land() {
        let (store, _dir) = store();
        let (id, _) = store
            .register("erin", "password1", None, false, None, false)
            .await
            .unwrap()
            .unwrap();
        let checked = store.user(id).unwrap().unwrap().password_hash;
        // A reset lands between the check of the old password and the change.
        store
            .set_password(id, "password2", None, None)
            .await
            .unwrap()
            .unwrap();
        let after_reset = store.user(id).unwrap().unwrap().password_hash;
        assert!(
            store
                .set_password(id, "password3", None, Some(checked))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.user(id).unwrap().unwrap().password_hash, after_reset);
        // Over the hash as it stands, the change goes through.
        assert!(
            store
                .set_password(id, "password3", None, Some(after_reset.clone()))
                .await
                .unwrap()
                .is_some()
        );
        assert_ne!(store.user(id).unwrap().unwrap().password_hash, after_reset);
    }

    /// A link works only for the address it was mailed to: one made for an address the
    /// account no longer has is refused, and one whose address changed under it (a
    /// change racing its creation) does not confirm the new address.
    #[tokio::test]
    async fn a_link_is_bound_to_the_address_it_was_mailed_to() {
        let (store, _dir) = store();
        let old = EmailAddress::parse("old@example.org").unwrap();
        let new = EmailAddress::parse("new@example.org").unwrap();
        let (id, _) = store
            .register("erin", "password1", None, false, Some(old.clone()), false)
            .await
            .unwrap()
            .unwrap();
        let expires = super::now_ms() + 60_000;
        let verify = super::EmailTokenPurpose::VerifyEmail;
        assert!(
            !store
                .create_email_token([1; 32], id, &new, verify, expires)
                .await
                .unwrap(),
            "not the account's address"
        );
        assert!(
            store
                .create_email_token([2; 32], id, &old, verify, expires)
                .await
                .unwrap()
        );
        // The address changes without the token being dropped, as if the change had
        // landed between the handler's look-up and the token's creation.
        let keys = std::sync::Arc::clone(&store.keys);
        store
            .writer
            .submit(move |tables| {
                let mut user = super::get_user(tables, id)?.unwrap();
                user.sealed_email = Some(super::seal_email(&keys, id, &new)?);
                super::put_user(tables, id, &user)?;
                Ok(())
            })
            .await
            .unwrap();
        for token in [[1; 32], [2; 32]] {
            assert_eq!(
                store.verify_email(token).await.unwrap().unwrap_err(),
                super::EmailTokenRefusal::Invalid
            );
        }
        let user = store.user(id).unwrap().unwrap();
        assert!(!user.email_verified);
    }
}
