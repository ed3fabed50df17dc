//! Start-up writes: the pool numbers named in the configuration and the first admin.

use std::sync::Arc;
use std::time::Duration;

use redb::ReadableTable;

use super::ingest::number_key;
use super::records::{self, NumberRecord, NumberV2, Role};
use super::tables::{Tables, meta};
use super::{Keyring, Store, StoreError, context, next_id, now_ms};
use crate::auth::password;
use crate::domain::PhoneNumber;

/// A number to put in the pool (or update) at start.
#[derive(Debug, Clone)]
pub struct SeedNumber {
    pub provider: String,
    pub number: PhoneNumber,
    pub retention: Option<Duration>,
}

impl SeedNumber {
    /// For tests and the sandbox: panics on an invalid literal number.
    pub fn new(provider: &str, number: &str, retention: Option<Duration>) -> Self {
        Self {
            provider: provider.to_owned(),
            number: PhoneNumber::parse(number)
                .unwrap_or_else(|error| panic!("seed number {number:?}: {error}")),
            retention,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the number is already in the pool")]
pub struct NumberExists;

/// The account the first start creates.
pub const ADMIN_USERNAME: &str = "admin";

impl Store {
    /// Adds each number to the pool, or updates its provider and retention if it is
    /// there already. Returns the number ids in input order.
    pub async fn ensure_numbers(&self, numbers: Vec<SeedNumber>) -> Result<Vec<u64>, StoreError> {
        let keys = Arc::clone(&self.keys);
        self.writer
            .submit(move |tables| {
                numbers
                    .iter()
                    .map(|seed| ensure_number_in(tables, &keys, seed))
                    .collect()
            })
            .await
    }

    /// Adds one number to the pool; refuses one that is there already (unlike
    /// [`Store::ensure_numbers`], which the configuration uses and which updates).
    pub async fn add_number(
        &self,
        seed: SeedNumber,
    ) -> Result<Result<u64, NumberExists>, StoreError> {
        let keys = Arc::clone(&self.keys);
        self.writer
            .submit(move |tables| {
                let hash = number_key(&keys, seed.number.as_str());
                if tables.number_by_hash.get(hash.as_slice())?.is_some() {
                    return Ok(Err(NumberExists));
                }
                ensure_number_in(tables, &keys, &seed).map(Ok)
            })
            .await
    }

    /// Takes every number of `provider` out of the pool (the sandbox's, when it is
    /// switched off). Their stored messages stay until they expire. Returns how many.
    pub async fn remove_provider_numbers(&self, provider: &str) -> Result<usize, StoreError> {
        let keys = Arc::clone(&self.keys);
        let provider = provider.to_owned();
        self.writer
            .submit(move |tables| remove_numbers_in(tables, &keys, &provider, None))
            .await
    }

    /// Creates the admin account if it does not exist. Returns the password it was
    /// given when it had to be generated (to print once), else `None`.
    pub async fn ensure_admin(
        &self,
        configured: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        if self.find_user(ADMIN_USERNAME)?.is_some() {
            return Ok(None);
        }
        let (password, generated) = match configured {
            Some(password) => (password.to_owned(), false),
            None => (password::generate()?, true),
        };
        // A concurrent start could have created it meanwhile: that is fine, keep theirs.
        let _ = self
            .create_user(ADMIN_USERNAME, &password, Role::Admin)
            .await?;
        Ok(generated.then_some(password))
    }
}

/// Takes the numbers of `provider` out of the pool: all of them, or those among `only`
/// (numbers another provider holds are left alone). Their leases end; their stored
/// messages stay until they expire. Returns how many left.
pub(super) fn remove_numbers_in(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    provider: &str,
    only: Option<&[PhoneNumber]>,
) -> Result<usize, StoreError> {
    let Tables {
        numbers,
        number_by_hash,
        ..
    } = tables;
    let mut doomed = Vec::new();
    for entry in numbers.iter()? {
        let (id, value) = entry?;
        let record = records::decode::<NumberRecord>(value.value())?.into_latest();
        if record.provider != provider {
            continue;
        }
        let e164 = keys.open(&context("number", id.value()), &record.sealed_number)?;
        let e164 = String::from_utf8_lossy(&e164).into_owned();
        if only.is_some_and(|only| !only.iter().any(|number| number.as_str() == e164)) {
            continue;
        }
        doomed.push((id.value(), number_key(keys, &e164)));
    }
    for (id, hash) in &doomed {
        numbers.remove(id)?;
        number_by_hash.remove(hash.as_slice())?;
    }
    // Their leases end too, or they would linger in the active tables.
    for (id, _) in &doomed {
        let active = tables.active_lease_by_number.get(*id)?.map(|v| v.value());
        if let Some(lease_id) = active {
            super::leases::end_if_active(
                tables,
                lease_id,
                super::LeaseEnd::Revoked,
                now_ms(),
                std::time::Duration::ZERO,
            )?;
        }
    }
    Ok(doomed.len())
}

pub(super) fn ensure_number_in(
    tables: &mut Tables<'_>,
    keys: &Keyring,
    seed: &SeedNumber,
) -> Result<u64, StoreError> {
    let hash = number_key(keys, seed.number.as_str());
    let retention_secs = seed.retention.map(|d| d.as_secs().max(1));
    let existing = tables
        .number_by_hash
        .get(hash.as_slice())?
        .map(|v| v.value());
    if let Some(id) = existing {
        let numbers = &mut tables.numbers;
        let current = numbers
            .get(id)?
            .map(|v| records::decode::<NumberRecord>(v.value()))
            .transpose()?
            .map(NumberRecord::into_latest);
        if let Some(mut number) = current
            && (number.provider != seed.provider || number.retention_secs != retention_secs)
        {
            number.provider.clone_from(&seed.provider);
            number.retention_secs = retention_secs;
            numbers.insert(id, records::encode(&NumberRecord::V2(number))?.as_slice())?;
        }
        return Ok(id);
    }
    let id = next_id(&mut tables.meta, meta::NEXT_NUMBER_ID)?;
    let record = NumberRecord::V2(NumberV2 {
        provider: seed.provider.clone(),
        sealed_number: keys.seal(&context("number", id), seed.number.as_str().as_bytes())?,
        retention_secs,
        created_at_ms: now_ms(),
        public: false,
        disabled: false,
        available_from_ms: 0,
        last_released_ms: None,
    });
    tables
        .numbers
        .insert(id, records::encode(&record)?.as_slice())?;
    tables.number_by_hash.insert(hash.as_slice(), id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store;

    #[tokio::test]
    async fn numbers_are_added_once_and_updated_in_place() {
        let (store, _dir) = store();
        let ids = store
            .ensure_numbers(vec![
                SeedNumber::new("a", "+12025550101", None),
                SeedNumber::new("a", "+12025550102", None),
            ])
            .await
            .unwrap();
        let again = store
            .ensure_numbers(vec![SeedNumber::new(
                "b",
                "+1 202 555 0101",
                Some(Duration::from_secs(60)),
            )])
            .await
            .unwrap();
        assert_eq!(again[0], ids[0]);
        let numbers = store.list_numbers().unwrap();
        assert_eq!(numbers.len(), 2);
        assert_eq!(numbers[0].provider, "b");
        assert_eq!(numbers[0].retention_secs, Some(60));
        assert_eq!(numbers[0].number, "+12025550101");
    }

    #[tokio::test]
    async fn a_providers_numbers_can_leave_the_pool() {
        let (store, _dir) = store();
        store
            .ensure_numbers(vec![
                SeedNumber::new("sandbox", "+12025550101", None),
                SeedNumber::new("twilio", "+14155550100", None),
            ])
            .await
            .unwrap();
        assert_eq!(store.remove_provider_numbers("sandbox").await.unwrap(), 1);
        let numbers = store.list_numbers().unwrap();
        assert_eq!(numbers.len(), 1);
        assert_eq!(numbers[0].provider, "twilio");
        // A message to the removed number is now unrouted.
        let sms = crate::domain::InboundSms::new("x", "a", "+12025550101", "t", None).unwrap();
        let outcome = store
            .ingest("sandbox".into(), sms, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(outcome.inbox(), Some(crate::store::Inbox::Unrouted));
    }

    #[tokio::test]
    async fn the_admin_is_created_once_and_checks_its_password() {
        let (store, _dir) = store();
        assert_eq!(
            store.ensure_admin(Some("correct horse")).await.unwrap(),
            None
        );
        assert_eq!(
            store.ensure_admin(None).await.unwrap(),
            None,
            "already exists"
        );
        assert!(
            store
                .check_password("admin", "correct horse")
                .unwrap()
                .valid()
                .is_some()
        );
        assert!(
            store
                .check_password("ADMIN", "correct horse")
                .unwrap()
                .valid()
                .is_some()
        );
        assert!(
            store
                .check_password("admin", "wrong")
                .unwrap()
                .valid()
                .is_none()
        );
        assert!(
            store
                .check_password("nobody", "correct horse")
                .unwrap()
                .valid()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_generated_admin_password_is_returned_once() {
        let (store, _dir) = store();
        let password = store.ensure_admin(None).await.unwrap().unwrap();
        assert!(password.len() >= 20);
        assert!(
            store
                .check_password("admin", &password)
                .unwrap()
                .valid()
                .is_some()
        );
    }
}
