//! Every redb table, declared in one place. Keys are ids unless said; values are
//! versioned records (see `records.rs`) unless they are plain ids.
//!
//! Nothing here holds a phone number or message text in the clear: those live inside
//! sealed envelopes, and look-ups go through keyed hashes (`*_BY_HASH`, `DEDUPE`).

use redb::TableDefinition;

/// Small named values: schema version, key check, id counters, running totals.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// user id → `UserRecord`.
pub const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
/// lower-cased username → user id.
pub const USER_BY_NAME: TableDefinition<&str, u64> = TableDefinition::new("user_by_name");
/// user id → when (unix ms) the account is deleted with everything it owns: temporary
/// accounts (anonymous guests'). Apart from `USERS` so a downgrade reads every account.
pub const TEMPORARY_ACCOUNTS: TableDefinition<u64, i64> =
    TableDefinition::new("temporary_accounts");

/// number id → `NumberRecord` (its E.164 form sealed).
pub const NUMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("numbers");
/// blind index of the E.164 number → number id.
pub const NUMBER_BY_HASH: TableDefinition<&[u8], u64> = TableDefinition::new("number_by_hash");

/// message id → `MessageRecord` (sender, recipient, text and provider id sealed).
pub const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// (inbox kind, inbox id, message id) → (); see `records::Inbox::key`.
pub const MESSAGES_BY_INBOX: TableDefinition<(u8, u64, u64), ()> =
    TableDefinition::new("messages_by_inbox_v2");
/// blind index of (provider, provider message id) → message id: exactly-once ingest.
pub const DEDUPE: TableDefinition<&[u8], u64> = TableDefinition::new("dedupe");
/// (expires at, unix ms; message id) → (): the sweeper walks this in key order.
pub const EXPIRY: TableDefinition<(u64, u64), ()> = TableDefinition::new("expiry");
/// message id → [`DeletedMessageRecord`]: what is left of a message its owner deleted or
/// that expired (its dedupe keys, no content) through the dedupe window, so a provider's
/// retry or a copy through another provider does not bring it back. An `EXPIRY` entry at
/// the window's end brings the sweeper back for it.
pub const DELETED_MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("deleted_messages");

/// lease id → `LeaseRecord`.
pub const LEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("leases");
/// number id → its active lease id (absent when the number is not leased).
pub const ACTIVE_LEASE_BY_NUMBER: TableDefinition<u64, u64> =
    TableDefinition::new("active_lease_by_number");
/// (holder user id, lease id) → (), active leases only.
pub const ACTIVE_LEASES_BY_HOLDER: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("active_leases_by_holder");
/// (holder user id, lease id) → (), every lease, ended ones too: what an account owns.
pub const LEASES_BY_HOLDER: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("leases_by_holder");
/// (expires at, unix ms; lease id) → (), active leases only: the sweeper ends them.
pub const LEASE_EXPIRY: TableDefinition<(u64, u64), ()> = TableDefinition::new("lease_expiry");

/// session (refresh-token family) id → `SessionRecord`.
pub const SESSIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("sessions");
/// (user id, session id) → (): a user's sessions, for "log out everywhere".
pub const SESSIONS_BY_USER: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("sessions_by_user");

/// SHA-256 of an invite code → `InviteRecord` (the code itself is never stored).
pub const INVITES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("invites");
/// Keyed hash of provider and nonce → `SpentNonceRecord` (see `nonces.rs`).
pub const SPENT_NONCES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("spent_nonces");

/// Blind index of a verified e-mail address (lower-cased) → user id. Only verified
/// addresses are indexed, so nobody can block an address by registering it unconfirmed.
pub const USER_BY_EMAIL: TableDefinition<&[u8], u64> = TableDefinition::new("user_by_email");
/// SHA-256 of an e-mailed link's secret → `EmailTokenRecord`.
pub const EMAIL_TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("email_tokens");

/// Blind index of (provider, sender, recipient, reference, part count, generation) →
/// `PendingRecord`: parts of multipart messages that are not whole yet, and tombstones
/// of those recently stored.
pub const PENDING_PARTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending_parts");
/// outbound message id → `OutboundRecord` (sender, recipient and text sealed).
pub const OUTBOUND: TableDefinition<u64, &[u8]> = TableDefinition::new("outbound");
/// outbound ids still to be sent (no provider took them yet, not given up): the sender
/// resumes these at start.
pub const OUTBOUND_PENDING: TableDefinition<u64, ()> = TableDefinition::new("outbound_pending");
/// keyed hash of (provider, provider message id) → outbound id: links delivery reports.
pub const OUTBOUND_BY_PROVIDER_ID: TableDefinition<&[u8], u64> =
    TableDefinition::new("outbound_by_provider_id");
/// keyed hash of (provider, provider message id) → `DeliveryReportRecord`.
pub const DELIVERY_REPORTS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("delivery_reports");

/// (expires at, unix ms; outbound id) → (): outbound messages are as disposable as
/// received ones.
pub const OUTBOUND_EXPIRY: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("outbound_expiry");
/// (expires at, unix ms; sequence) → `DELIVERY_REPORTS` key: reports expire on their own,
/// so reports about messages we never sent do not pile up.
pub const REPORT_EXPIRY: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("report_expiry");

/// provider instance name → `ProviderRecord`: the providers added through the admin
/// API (those of the configuration file are not stored), their settings sealed whole.
pub const PROVIDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("providers");

/// webhook id → `WebhookRecord` (URL and secret sealed).
pub const WEBHOOKS: TableDefinition<u64, &[u8]> = TableDefinition::new("webhooks");
/// (owner user id, webhook id) → ().
pub const WEBHOOKS_BY_OWNER: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("webhooks_by_owner");
/// (webhook id; due at, unix ms; message id) → `QueuedDeliveryRecord`: deliveries still
/// to be made, each endpoint's in the order they are due; they outlive a restart. Keyed
/// by endpoint first so the dispatcher reads the next few of each endpoint with room
/// without stepping over another endpoint's backlog (schema 4).
pub const WEBHOOK_QUEUE: TableDefinition<(u64, u64, u64), &[u8]> =
    TableDefinition::new("webhook_queue_by_endpoint");

/// `META` keys.
pub mod meta {
    pub const SCHEMA_VERSION: &str = "schema_version";
    /// A value sealed at creation; opening it proves the master key matches the store.
    pub const KEY_CHECK: &str = "key_check";
    pub const NEXT_MESSAGE_ID: &str = "next_message_id";
    pub const NEXT_NUMBER_ID: &str = "next_number_id";
    pub const NEXT_USER_ID: &str = "next_user_id";
    pub const NEXT_LEASE_ID: &str = "next_lease_id";
    pub const NEXT_SESSION_ID: &str = "next_session_id";
    /// Messages ever received for numbers outside the pool.
    pub const UNROUTED_TOTAL: &str = "unrouted_total";
    /// Duplicate webhooks answered without storing anything.
    pub const DUPLICATES_TOTAL: &str = "duplicates_total";
    /// Messages deleted by the retention sweeper.
    pub const EXPIRED_TOTAL: &str = "expired_total";
    pub const NEXT_OUTBOUND_ID: &str = "next_outbound_id";
    /// Distinct delivery reports stored.
    pub const REPORTS_TOTAL: &str = "reports_total";
    /// Delivery reports received again and stored once.
    pub const REPORT_REPEATS_TOTAL: &str = "report_repeats_total";
    /// Provider messages with reports but no outbound message of ours (yet).
    pub const UNLINKED_REPORTS: &str = "unlinked_reports";
    pub const NEXT_REPORT_SEQ: &str = "next_report_seq";
    pub const NEXT_WEBHOOK_ID: &str = "next_webhook_id";
    /// The newest message id already queued for webhooks (advanced with the queue, in
    /// one transaction, so a restart neither loses nor repeats a message).
    pub const WEBHOOK_CURSOR: &str = "webhook_cursor";
}

/// Every table, open in one write transaction. The writer opens them once per group
/// commit and hands them to each job: opening a redb table costs a look-up in the table
/// tree and a root update when it closes, which per job would cost more than the job.
pub struct Tables<'txn> {
    pub meta: redb::Table<'txn, &'static str, &'static [u8]>,
    pub users: redb::Table<'txn, u64, &'static [u8]>,
    pub user_by_name: redb::Table<'txn, &'static str, u64>,
    pub temporary_accounts: redb::Table<'txn, u64, i64>,
    pub numbers: redb::Table<'txn, u64, &'static [u8]>,
    pub number_by_hash: redb::Table<'txn, &'static [u8], u64>,
    pub messages: redb::Table<'txn, u64, &'static [u8]>,
    pub messages_by_inbox: redb::Table<'txn, (u8, u64, u64), ()>,
    pub dedupe: redb::Table<'txn, &'static [u8], u64>,
    pub expiry: redb::Table<'txn, (u64, u64), ()>,
    pub deleted_messages: redb::Table<'txn, u64, &'static [u8]>,
    pub leases: redb::Table<'txn, u64, &'static [u8]>,
    pub active_lease_by_number: redb::Table<'txn, u64, u64>,
    pub active_leases_by_holder: redb::Table<'txn, (u64, u64), ()>,
    pub lease_expiry: redb::Table<'txn, (u64, u64), ()>,
    pub sessions: redb::Table<'txn, u64, &'static [u8]>,
    pub sessions_by_user: redb::Table<'txn, (u64, u64), ()>,
    pub invites: redb::Table<'txn, &'static [u8], &'static [u8]>,
    pub user_by_email: redb::Table<'txn, &'static [u8], u64>,
    pub email_tokens: redb::Table<'txn, &'static [u8], &'static [u8]>,
    pub leases_by_holder: redb::Table<'txn, (u64, u64), ()>,
    pub pending_parts: redb::Table<'txn, &'static [u8], &'static [u8]>,
    pub outbound: redb::Table<'txn, u64, &'static [u8]>,
    pub outbound_pending: redb::Table<'txn, u64, ()>,
    pub outbound_by_provider_id: redb::Table<'txn, &'static [u8], u64>,
    pub delivery_reports: redb::Table<'txn, &'static [u8], &'static [u8]>,
    pub outbound_expiry: redb::Table<'txn, (u64, u64), ()>,
    pub report_expiry: redb::Table<'txn, (u64, u64), &'static [u8]>,
    pub providers: redb::Table<'txn, &'static str, &'static [u8]>,
    pub webhooks: redb::Table<'txn, u64, &'static [u8]>,
    pub webhooks_by_owner: redb::Table<'txn, (u64, u64), ()>,
    pub webhook_queue: redb::Table<'txn, (u64, u64, u64), &'static [u8]>,
    pub spent_nonces: redb::Table<'txn, &'static [u8], &'static [u8]>,
    /// Steps that take back what jobs changed outside the store (in-memory state kept
    /// in step with it), run newest first if the batch does not commit.
    undo: Vec<Box<dyn FnOnce() + Send>>,
}

impl<'txn> Tables<'txn> {
    /// Opens (creating on first use) every table.
    pub fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Self {
            meta: txn.open_table(META)?,
            users: txn.open_table(USERS)?,
            user_by_name: txn.open_table(USER_BY_NAME)?,
            temporary_accounts: txn.open_table(TEMPORARY_ACCOUNTS)?,
            numbers: txn.open_table(NUMBERS)?,
            number_by_hash: txn.open_table(NUMBER_BY_HASH)?,
            messages: txn.open_table(MESSAGES)?,
            messages_by_inbox: txn.open_table(MESSAGES_BY_INBOX)?,
            dedupe: txn.open_table(DEDUPE)?,
            expiry: txn.open_table(EXPIRY)?,
            deleted_messages: txn.open_table(DELETED_MESSAGES)?,
            leases: txn.open_table(LEASES)?,
            active_lease_by_number: txn.open_table(ACTIVE_LEASE_BY_NUMBER)?,
            active_leases_by_holder: txn.open_table(ACTIVE_LEASES_BY_HOLDER)?,
            lease_expiry: txn.open_table(LEASE_EXPIRY)?,
            sessions: txn.open_table(SESSIONS)?,
            sessions_by_user: txn.open_table(SESSIONS_BY_USER)?,
            invites: txn.open_table(INVITES)?,
            user_by_email: txn.open_table(USER_BY_EMAIL)?,
            email_tokens: txn.open_table(EMAIL_TOKENS)?,
            leases_by_holder: txn.open_table(LEASES_BY_HOLDER)?,
            pending_parts: txn.open_table(PENDING_PARTS)?,
            outbound: txn.open_table(OUTBOUND)?,
            outbound_pending: txn.open_table(OUTBOUND_PENDING)?,
            outbound_by_provider_id: txn.open_table(OUTBOUND_BY_PROVIDER_ID)?,
            delivery_reports: txn.open_table(DELIVERY_REPORTS)?,
            outbound_expiry: txn.open_table(OUTBOUND_EXPIRY)?,
            report_expiry: txn.open_table(REPORT_EXPIRY)?,
            providers: txn.open_table(PROVIDERS)?,
            webhooks: txn.open_table(WEBHOOKS)?,
            webhooks_by_owner: txn.open_table(WEBHOOKS_BY_OWNER)?,
            webhook_queue: txn.open_table(WEBHOOK_QUEUE)?,
            spent_nonces: txn.open_table(SPENT_NONCES)?,
            undo: Vec::new(),
        })
    }

    /// Registers `step` to run if this transaction does not commit.
    pub fn on_rollback(&mut self, step: impl FnOnce() + Send + 'static) {
        self.undo.push(Box::new(step));
    }

    /// Closes the tables, handing back the rollback steps registered meanwhile.
    pub fn close(self) -> Rollback {
        Rollback(self.undo)
    }
}

/// What to take back if a batch does not commit.
pub struct Rollback(Vec<Box<dyn FnOnce() + Send>>);

impl Rollback {
    pub fn run(self) {
        for step in self.0.into_iter().rev() {
            step();
        }
    }
}
