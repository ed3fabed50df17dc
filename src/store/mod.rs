//! The embedded store: redb tables, sealed records, the group-commit writer and the
//! retention sweeper.
//!
//! Reads open their own read transaction (many run at once); every write goes through
//! the [`Writer`] so that concurrent webhooks share one fsync.

pub mod cross_provider;
pub mod crypto;
mod email;
mod hooks;
mod housekeeping;
mod ingest;
mod leases;
mod messages;
mod nonces;
mod outbound;
mod outbound_expiry;
mod providers;
mod read;
mod reassemble;
pub mod records;
mod reports;
mod seed;
mod sessions;
pub mod sweeper;
pub mod tables;
mod users;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable};

pub use crypto::{Keyring, MasterKey};
pub use email::EmailTokenRefusal;
pub use hooks::{DueDeliveries, NewWebhook, Pick, QueuedDelivery, WebhookView};
pub use housekeeping::{AccountsDue, Walks};
pub use ingest::{IngestOutcome, NewMessage};
pub use leases::{LeaseRefusal, LeaseRequest, LeaseView, NumberAccess, NumberPatch, PUBLIC_HOLDER};
pub use nonces::NonceSpend;
pub use outbound::{NewOutbound, OutboundView};
pub use providers::{ProviderChange, StoredProvider};
pub use read::{MessagePage, MessageView, NumberView, Scope, StoreCounts};
pub use records::{
    Accepted, AttemptOutcome, AttemptV1, DeliveryLogV1, EmailTokenPurpose, Inbox, LeaseEnd,
    ReportEventV1, Role,
};
pub use reports::{ReportCounts, ReportOutcome};
pub use seed::{NumberExists, SeedNumber};
pub use sessions::{RefreshRefusal, SessionView};
pub use users::{
    MIN_PASSWORD_CHARS, PasswordCheck, RegistrationRefusal, UsernameTaken, hash_password,
    valid_username,
};
pub use writer::{Writer, WriterStats};

use tables::{Tables, meta};

/// The current layout of tables and records. Bumped by migrations.
/// 2: messages are indexed by typed inbox (leases), in `messages_by_inbox_v2`.
/// 4: the webhook queue is keyed by endpoint first.
/// 5: anonymous guests' accounts are temporary (`TEMPORARY_ACCOUNTS`).
const SCHEMA_VERSION: u64 = 5;

/// The store file inside the data directory.
pub const STORE_FILE: &str = "burnbox.redb";

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Storage(String),
    #[error("record encoding error: {0}")]
    Codec(String),
    #[error("encryption error: {0}")]
    Crypto(String),
    #[error("the store writer has stopped")]
    WriterStopped,
    #[error("another write in the same group commit failed, so this one was rolled back")]
    BatchRolledBack,
    #[error(
        "the master key does not match this store (was BURNBOX_MASTER_KEY changed or master.key replaced?)"
    )]
    WrongMasterKey,
    #[error(
        "the store was written by a newer burnbox (schema {found}, this build knows {SCHEMA_VERSION})"
    )]
    NewerSchema { found: u64 },
}

macro_rules! storage_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                Self::Storage(error.to_string())
            }
        }
    )*};
}
storage_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<crypto::CryptoError> for StoreError {
    fn from(error: crypto::CryptoError) -> Self {
        Self::Crypto(error.to_string())
    }
}

/// A handle to the open store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    keys: Arc<Keyring>,
    writer: Writer,
    /// Content of recent messages, to store an SMS that arrives through two providers once.
    recent: Arc<cross_provider::RecentContent>,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`, checks the master key against it and
    /// starts the writer thread, whose handle the caller joins at shutdown.
    pub fn open(data_dir: &Path, master: &MasterKey) -> Result<(Self, JoinHandle<()>), StoreError> {
        let db = Arc::new(Database::create(data_dir.join(STORE_FILE))?);
        let keys = Arc::new(Keyring::new(master));
        prepare(&db, &keys)?;
        let (writer, handle) =
            Writer::start(Arc::clone(&db)).map_err(|e| StoreError::Storage(e.to_string()))?;
        let recent = Arc::default();
        Ok((
            Self {
                db,
                keys,
                writer,
                recent,
            },
            handle,
        ))
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// True while reads work and the writer thread runs.
    pub fn is_ready(&self) -> bool {
        self.writer.is_alive() && self.db.begin_read().is_ok()
    }
}

/// Creates the tables, records the schema version and the key check on first open;
/// on later opens refuses a newer schema or a different master key.
fn prepare(db: &Database, keys: &Keyring) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut tables = Tables::open(&txn)?;
        let schema = tables
            .meta
            .get(meta::SCHEMA_VERSION)?
            .map(|v| read_u64(v.value()));
        match schema {
            Some(found) if found > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema { found });
            }
            Some(found) if found < SCHEMA_VERSION => {
                // Each step brings the store one schema further, in order.
                if found < 2 {
                    migrate_inbox_index(&mut tables)?;
                }
                if found < 3 {
                    leases::index_by_holder(&mut tables)?;
                }
                if found < 4 {
                    hooks::requeue_by_endpoint(&txn, &mut tables)?;
                }
                if found < 5 {
                    users::mark_anonymous_guests(&mut tables)?;
                }
                tables.meta.insert(
                    meta::SCHEMA_VERSION,
                    SCHEMA_VERSION.to_le_bytes().as_slice(),
                )?;
            }
            Some(_) => {}
            None => {
                tables.meta.insert(
                    meta::SCHEMA_VERSION,
                    SCHEMA_VERSION.to_le_bytes().as_slice(),
                )?;
            }
        }
        let check = tables
            .meta
            .get(meta::KEY_CHECK)?
            .map(|v| v.value().to_vec());
        match check {
            Some(sealed) => {
                keys.open(KEY_CHECK_CONTEXT, &sealed)
                    .map_err(|_| StoreError::WrongMasterKey)?;
            }
            None => {
                let sealed = keys.seal(KEY_CHECK_CONTEXT, b"burnbox")?;
                tables.meta.insert(meta::KEY_CHECK, sealed.as_slice())?;
            }
        }
    }
    // Schema 1's index, keyed by (number id, message id); rebuilt above.
    let old_index: redb::TableDefinition<(u64, u64), ()> =
        redb::TableDefinition::new("messages_by_inbox");
    txn.delete_table(old_index)?;
    txn.commit()?;
    Ok(())
}

/// Schema 1 → 2: index every message under its (upgraded) typed inbox.
fn migrate_inbox_index(tables: &mut Tables<'_>) -> Result<(), StoreError> {
    let mut entries = Vec::new();
    for entry in tables.messages.iter()? {
        let (id, value) = entry?;
        let record = records::decode::<records::MessageRecord>(value.value())?.into_latest();
        entries.push(ingest::inbox_key(record.inbox, id.value()));
    }
    for key in entries {
        tables.messages_by_inbox.insert(key, ())?;
    }
    Ok(())
}

const KEY_CHECK_CONTEXT: &[u8] = b"meta:key_check";

type MetaTable<'txn> = redb::Table<'txn, &'static str, &'static [u8]>;

fn read_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_le_bytes).unwrap_or(0)
}

/// Reads a `META` counter.
fn meta_u64(meta_table: &MetaTable<'_>, key: &str) -> Result<u64, StoreError> {
    Ok(meta_table
        .get(key)?
        .map(|v| read_u64(v.value()))
        .unwrap_or(0))
}

/// Adds `delta` to a `META` counter and returns the value before the addition, so id
/// counters hand out `previous + 1`.
fn bump_meta(meta_table: &mut MetaTable<'_>, key: &str, delta: u64) -> Result<u64, StoreError> {
    let previous = meta_u64(meta_table, key)?;
    meta_table.insert(key, (previous + delta).to_le_bytes().as_slice())?;
    Ok(previous)
}

/// The next id from a `META` counter (ids start at 1; 0 is never an id).
fn next_id(meta_table: &mut MetaTable<'_>, key: &str) -> Result<u64, StoreError> {
    Ok(bump_meta(meta_table, key, 1)? + 1)
}

/// What a background sweep read, or `None` for a record this build cannot read
/// (damaged, or written by a build it was downgraded from), which is logged and passed
/// over: failing would roll back every write sharing the commit, webhooks included, at
/// every sweep, for ever. Other errors (the storage itself) still fail.
fn readable_or_skipped<T>(
    read: Result<T, StoreError>,
    what: &'static str,
    id: impl std::fmt::Display,
) -> Result<Option<T>, StoreError> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::Codec(error)) => {
            tracing::warn!(what, %id, %error, "a sweep passed over a record it could not read");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The wall clock in unix milliseconds.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// The sealing context of a record: binds ciphertext to its table and id.
fn context(table: &str, id: u64) -> Vec<u8> {
    format!("{table}:{id}").into_bytes()
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Bytes no record layout decodes: what a damaged record, or one from a newer
    /// build, looks like to this one.
    pub const UNREADABLE: &[u8] = b"\xff not a record";

    /// A store in a fresh temporary directory.
    pub fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::parse(&"ab".repeat(32)).unwrap();
        let (store, _writer) = Store::open(dir.path(), &master).unwrap();
        (store, dir)
    }

    /// A store whose accounts 1 to `count` exist (made without hashing a password, which
    /// is slow in test builds): holders for tests that lease numbers.
    pub async fn holders(count: u64) -> (Store, tempfile::TempDir) {
        let (store, dir) = store();
        let keys = Arc::clone(&store.keys);
        store
            .writer
            .submit(move |tables| {
                for id in 1..=count {
                    let account = users::NewAccount {
                        username: format!("holder{id}"),
                        password_hash: String::new(),
                        role: Role::User,
                        disabled: false,
                        email: None,
                        awaiting_verification: false,
                        expires_at_ms: None,
                    };
                    let made = users::insert_user(tables, &keys, account)?;
                    assert_eq!(made, Ok(id), "ids count from one");
                }
                Ok(())
            })
            .await
            .unwrap();
        (store, dir)
    }

    /// A user account named `name`.
    pub async fn user(store: &Store, name: &str) -> u64 {
        store
            .create_user(name, "password1", Role::User)
            .await
            .unwrap()
            .unwrap()
    }

    /// `holder` leases any free number for ten minutes.
    pub async fn lease(store: &Store, holder: u64) {
        store
            .lease_number(LeaseRequest {
                holder,
                number_id: None,
                provider: None,
                prefix: None,
                duration: std::time::Duration::from_secs(600),
                max_active: 1,
            })
            .await
            .unwrap()
            .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_with_another_master_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = MasterKey::parse(&"ab".repeat(32)).unwrap();
        let (store, writer) = Store::open(dir.path(), &first).unwrap();
        drop(store);
        writer.join().unwrap();
        let other = MasterKey::parse(&"cd".repeat(32)).unwrap();
        assert!(matches!(
            Store::open(dir.path(), &other),
            Err(StoreError::WrongMasterKey)
        ));
        let (_store, _writer) = Store::open(dir.path(), &first).unwrap();
    }

    #[tokio::test]
    async fn opening_a_schema_2_store_indexes_leases_by_holder() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::parse(&"ab".repeat(32)).unwrap();
        let (store, writer) = Store::open(dir.path(), &master).unwrap();
        let number = store
            .ensure_numbers(vec![SeedNumber::new("p", "+12025550101", None)])
            .await
            .unwrap()[0];
        let holder = store
            .create_user("holder", "password1", Role::User)
            .await
            .unwrap()
            .unwrap();
        let lease = store
            .lease_number(LeaseRequest {
                holder,
                number_id: Some(number),
                provider: None,
                prefix: None,
                duration: std::time::Duration::from_secs(60),
                max_active: 5,
            })
            .await
            .unwrap()
            .unwrap();
        // Make it look like a store written by the release before the index existed.
        {
            let txn = store.db.begin_write().unwrap();
            {
                let mut tables = Tables::open(&txn).unwrap();
                tables.leases_by_holder.retain(|_, _| false).unwrap();
                tables
                    .meta
                    .insert(meta::SCHEMA_VERSION, 2u64.to_le_bytes().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        drop(store);
        writer.join().unwrap();

        let (store, _writer) = Store::open(dir.path(), &master).unwrap();
        let txn = store.db.begin_write().unwrap();
        let tables = Tables::open(&txn).unwrap();
        assert_eq!(leases::leases_of(&tables, holder).unwrap(), [lease.id]);
        assert_eq!(
            meta_u64(&tables.meta, meta::SCHEMA_VERSION).unwrap(),
            SCHEMA_VERSION
        );
    }

    #[tokio::test]
    async fn opening_a_schema_4_store_makes_anonymous_guests_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::parse(&"ab".repeat(32)).unwrap();
        let (store, writer) = Store::open(dir.path(), &master).unwrap();
        let guest = |name: &'static str| {
            let store = store.clone();
            async move {
                store
                    .create_user(name, "password1", Role::Guest)
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        // What `/auth/guest` made: one with a session still running, one without.
        let (live, over) = (
            guest("guest-0123456789ab").await,
            guest("guest-ba9876543210").await,
        );
        let session_end = now_ms() + 600_000;
        store
            .create_session(live, [1; 32], session_end - now_ms())
            .await
            .unwrap();
        // An invited guest who chose such a name, an ordinary guest name, and a user.
        let invited = guest("guest-aaaaaaaaaaaa").await;
        store
            .writer
            .submit(move |tables| {
                let record = records::InviteRecord::V1(records::InviteV1 {
                    created_by: 1,
                    role: Role::Guest,
                    expires_at_ms: now_ms() + 60_000,
                    used_by: Some(invited),
                });
                let bytes = records::encode(&record)?;
                tables
                    .invites
                    .insert([7; 32].as_slice(), bytes.as_slice())?;
                Ok(())
            })
            .await
            .unwrap();
        let named = guest("guest-erin").await;
        let user = store
            .create_user("guest-0123456789cd", "password1", Role::User)
            .await
            .unwrap()
            .unwrap();
        {
            let txn = store.db.begin_write().unwrap();
            {
                let mut tables = Tables::open(&txn).unwrap();
                tables
                    .meta
                    .insert(meta::SCHEMA_VERSION, 4u64.to_le_bytes().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        drop(store);
        writer.join().unwrap();

        let (store, _writer) = Store::open(dir.path(), &master).unwrap();
        let live_end = store.account_expiry(live).unwrap().unwrap();
        assert!((session_end - 1_000..=session_end + 1_000).contains(&live_end));
        let over_end = store.account_expiry(over).unwrap().unwrap();
        assert!(over_end <= now_ms(), "no session left: due at once");
        for permanent in [invited, named, user] {
            assert_eq!(store.account_expiry(permanent).unwrap(), None);
        }
    }

    #[test]
    fn ids_count_from_one() {
        let (store, _dir) = testing::store();
        let txn = store.db.begin_write().unwrap();
        let mut tables = Tables::open(&txn).unwrap();
        assert_eq!(next_id(&mut tables.meta, meta::NEXT_MESSAGE_ID).unwrap(), 1);
        assert_eq!(next_id(&mut tables.meta, meta::NEXT_MESSAGE_ID).unwrap(), 2);
        assert_eq!(meta_u64(&tables.meta, meta::NEXT_MESSAGE_ID).unwrap(), 2);
    }
}
