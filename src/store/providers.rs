//! Provider instances added through the admin API: one record per name, the whole
//! settings table sealed (secrets included, never in the clear on disk). Saving or
//! deleting one changes its numbers in the same transaction, so the pool never lists
//! numbers of a provider that is not stored, nor misses those of one that is.

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable};
use zeroize::Zeroizing;

use super::records::{self, ProviderRecord, ProviderV1};
use super::seed::{ensure_number_in, remove_numbers_in};
use super::tables::PROVIDERS;
use super::{SeedNumber, Store, StoreError, now_ms};
use crate::domain::PhoneNumber;

/// A stored provider: its name and its settings document, in the clear in memory only
/// (wiped when dropped).
pub struct StoredProvider {
    pub name: String,
    pub document: Zeroizing<Vec<u8>>,
}

/// A provider to save, with the pool changes that go with it.
pub struct ProviderChange {
    pub name: String,
    /// The settings document (JSON) to seal.
    pub document: Zeroizing<Vec<u8>>,
    /// Numbers to put in the pool or update, each under the provider it names (this
    /// one, or another that takes over a number this one gives up).
    pub add: Vec<SeedNumber>,
    /// Numbers of this provider to take out of the pool.
    pub remove: Vec<PhoneNumber>,
}

/// Binds a sealed document to its provider's name, so it cannot be moved to another.
fn provider_context(name: &str) -> Vec<u8> {
    format!("provider:{name}").into_bytes()
}

impl Store {
    /// Every stored provider, by name.
    pub fn stored_providers(&self) -> Result<Vec<StoredProvider>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PROVIDERS)?;
        let mut providers = Vec::new();
        for entry in table.iter()? {
            let (name, value) = entry?;
            let name = name.value().to_owned();
            let document = self.open_provider(&name, value.value())?;
            providers.push(StoredProvider { name, document });
        }
        Ok(providers)
    }

    /// One stored provider.
    pub fn stored_provider(&self, name: &str) -> Result<Option<StoredProvider>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PROVIDERS)?;
        let Some(value) = table.get(name)? else {
            return Ok(None);
        };
        let document = self.open_provider(name, value.value())?;
        Ok(Some(StoredProvider {
            name: name.to_owned(),
            document,
        }))
    }

    fn open_provider(&self, name: &str, value: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let record = records::decode::<ProviderRecord>(value)?.into_latest();
        Ok(Zeroizing::new(
            self.keys.open(&provider_context(name), &record.sealed)?,
        ))
    }

    /// Creates or replaces a provider and applies its pool changes, in one transaction.
    pub async fn put_provider(&self, change: ProviderChange) -> Result<(), StoreError> {
        let sealed = self
            .keys
            .seal(&provider_context(&change.name), &change.document)?;
        drop(change.document);
        let keys = Arc::clone(&self.keys);
        let ProviderChange {
            name, add, remove, ..
        } = change;
        self.writer
            .submit(move |tables| {
                let now = now_ms();
                let created_at_ms = tables
                    .providers
                    .get(name.as_str())?
                    .map(|value| records::decode::<ProviderRecord>(value.value()))
                    .transpose()?
                    .map_or(now, |record| record.into_latest().created_at_ms);
                let record = ProviderRecord::V1(ProviderV1 {
                    created_at_ms,
                    updated_at_ms: now,
                    sealed,
                });
                // Encode before the first change: an error must leave the transaction as it was.
                let encoded = records::encode(&record)?;
                tables.providers.insert(name.as_str(), encoded.as_slice())?;
                if !remove.is_empty() {
                    remove_numbers_in(tables, &keys, &name, Some(&remove))?;
                }
                for seed in &add {
                    ensure_number_in(tables, &keys, seed)?;
                }
                Ok(())
            })
            .await
    }

    /// Deletes a stored provider, and its numbers leave the pool (their messages stay
    /// until they expire): all numbers of that provider name, or only those among
    /// `only`. `handover` first gives numbers that another provider serves too to that
    /// one, in place (same number id, lease and inbox). `None` when no provider of that
    /// name is stored; else how many numbers left the pool.
    pub async fn delete_provider(
        &self,
        name: &str,
        handover: Vec<SeedNumber>,
        only: Option<Vec<PhoneNumber>>,
    ) -> Result<Option<usize>, StoreError> {
        let keys = Arc::clone(&self.keys);
        let name = name.to_owned();
        self.writer
            .submit(move |tables| {
                if tables.providers.get(name.as_str())?.is_none() {
                    return Ok(None);
                }
                tables.providers.remove(name.as_str())?;
                for seed in &handover {
                    ensure_number_in(tables, &keys, seed)?;
                }
                remove_numbers_in(tables, &keys, &name, only.as_deref()).map(Some)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store;

    fn change(name: &str, document: &str, add: &[&str], remove: &[&str]) -> ProviderChange {
        ProviderChange {
            name: name.into(),
            document: Zeroizing::new(document.as_bytes().to_vec()),
            add: add.iter().map(|n| SeedNumber::new(name, n, None)).collect(),
            remove: remove
                .iter()
                .map(|n| PhoneNumber::parse(n).unwrap())
                .collect(),
        }
    }

    fn pool(store: &Store) -> Vec<(String, String)> {
        store
            .list_numbers()
            .unwrap()
            .into_iter()
            .map(|n| (n.provider, n.number))
            .collect()
    }

    #[tokio::test]
    async fn providers_are_sealed_and_carry_their_numbers() {
        let (store, dir) = store();
        store
            .put_provider(change(
                "tw2",
                r#"{"secret":"needle-secret-value"}"#,
                &["+14155550101", "+14155550102"],
                &[],
            ))
            .await
            .unwrap();
        store
            .ensure_numbers(vec![SeedNumber::new("other", "+14155550109", None)])
            .await
            .unwrap();
        assert_eq!(pool(&store).len(), 3);
        let stored = store.stored_provider("tw2").unwrap().unwrap();
        assert_eq!(&stored.document[..], br#"{"secret":"needle-secret-value"}"#);
        assert!(store.stored_provider("nope").unwrap().is_none());

        // Replacing: one number leaves, one arrives; another provider's are untouched.
        store
            .put_provider(change(
                "tw2",
                "{}",
                &["+14155550103"],
                &["+14155550101", "+14155550109"],
            ))
            .await
            .unwrap();
        let mut numbers = pool(&store);
        numbers.sort();
        assert_eq!(
            numbers,
            [
                ("other".into(), "+14155550109".into()),
                ("tw2".into(), "+14155550102".into()),
                ("tw2".into(), "+14155550103".into()),
            ]
        );
        assert_eq!(store.stored_providers().unwrap().len(), 1);

        // Deleting: one number goes to another provider that serves it too, one leaves.
        let handover = vec![SeedNumber::new("other", "+14155550103", None)];
        assert_eq!(
            store.delete_provider("tw2", handover, None).await.unwrap(),
            Some(1)
        );
        assert_eq!(
            store.delete_provider("tw2", vec![], None).await.unwrap(),
            None
        );
        let mut numbers = pool(&store);
        numbers.sort();
        assert_eq!(
            numbers,
            [
                ("other".into(), "+14155550103".into()),
                ("other".into(), "+14155550109".into()),
            ]
        );
        // Or only some of the name's numbers leave (a stale record whose name another
        // provider uses now: its other numbers are that provider's).
        store
            .put_provider(change("other", "{}", &[], &[]))
            .await
            .unwrap();
        let only = vec![PhoneNumber::parse("+14155550103").unwrap()];
        assert_eq!(
            store
                .delete_provider("other", vec![], Some(only))
                .await
                .unwrap(),
            Some(1)
        );
        assert_eq!(pool(&store), [("other".into(), "+14155550109".into())]);
        assert!(store.stored_providers().unwrap().is_empty());
        drop(store);
        let file = std::fs::read(dir.path().join(crate::store::STORE_FILE)).unwrap();
        assert!(
            !file
                .windows(b"needle-secret-value".len())
                .any(|w| w == b"needle-secret-value")
        );
    }
}
