//! The records stored in redb values, and their encoding.
//!
//! Each record type is an enum of versions encoded with bincode; bincode writes the
//! variant index first, so a later release adds `V2`, keeps decoding `V1`, and upgrades
//! on read. Never reorder or change a published variant.

use bincode::config::{Configuration, standard};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::StoreError;
use crate::domain::{DeliveryStatus, OutboundStatus};

fn codec() -> Configuration {
    standard()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    bincode::serde::encode_to_vec(value, codec()).map_err(|e| StoreError::Codec(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    bincode::serde::decode_from_slice(bytes, codec())
        .map(|(value, _)| value)
        .map_err(|e| StoreError::Codec(e.to_string()))
}

/// What is kept of a message deleted or expired, through the dedupe window
/// (`messages::DEDUPE_WINDOW_MS`) or, for a deleted one, until it would have expired.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DeletedMessageRecord {
    V1 {
        /// Every `DEDUPE` key that named it; they now say "gone".
        keys: Vec<[u8; 32]>,
        /// Its cross-provider content key, so a copy through another provider is
        /// recognised as this message.
        content_key: Option<[u8; 32]>,
    },
}

/// A stored message. The private parts are in `sealed` (a [`SealedMessage`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MessageRecord {
    V1(MessageV1),
    V2(MessageV2),
    V3(MessageV3),
    V4(MessageV4),
}

/// Where a message belongs. A message belongs to the lease that held its number when it
/// arrived, so a later holder of the same number never sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Inbox {
    /// The lease that held the number (its id).
    Lease(u64),
    /// A pool number with no lease at the time: public numbers, quarantine, idle numbers.
    Number(u64),
    /// Sent to a number outside the pool (admin only).
    Unrouted,
}

impl Inbox {
    /// The `MESSAGES_BY_INBOX` key prefix: (kind, id).
    pub fn key(self) -> (u8, u64) {
        match self {
            Self::Unrouted => (0, 0),
            Self::Number(id) => (1, id),
            Self::Lease(id) => (2, id),
        }
    }
}

/// First layout: `inbox` was a number id, 0 meaning unrouted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageV1 {
    pub inbox: u64,
    /// Provider instance name (configuration, not personal data).
    pub provider: String,
    /// When the provider says it arrived, else when we stored it (unix ms).
    pub received_at_ms: i64,
    pub stored_at_ms: i64,
    pub expires_at_ms: u64,
    /// The `DEDUPE` key, kept so the sweeper can delete it with the message.
    pub dedupe_key: [u8; 32],
    /// Sealed [`SealedMessage`], bound to the message id.
    pub sealed: Vec<u8>,
    pub read: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageV2 {
    pub inbox: Inbox,
    /// The pool number it was sent to, if it is in the pool.
    pub number_id: Option<u64>,
    /// Provider instance name (configuration, not personal data).
    pub provider: String,
    /// When the provider says it arrived, else when we stored it (unix ms).
    pub received_at_ms: i64,
    pub stored_at_ms: i64,
    pub expires_at_ms: u64,
    /// The `DEDUPE` key, kept so the sweeper can delete it with the message; also the
    /// sealing context of `sealed`.
    pub dedupe_key: [u8; 32],
    /// Sealed [`SealedMessage`].
    pub sealed: Vec<u8>,
    pub read: bool,
}

/// Third layout: messages put together from parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageV3 {
    pub inbox: Inbox,
    /// The pool number it was sent to, if it is in the pool.
    pub number_id: Option<u64>,
    /// Provider instance name (configuration, not personal data).
    pub provider: String,
    /// When the provider says it arrived, else when we stored it (unix ms).
    pub received_at_ms: i64,
    pub stored_at_ms: i64,
    pub expires_at_ms: u64,
    /// The `DEDUPE` key, kept so the sweeper can delete it with the message; also the
    /// sealing context of `sealed`.
    pub dedupe_key: [u8; 32],
    /// Sealed [`SealedMessage`].
    pub sealed: Vec<u8>,
    pub read: bool,
    /// More `DEDUPE` keys naming this message, deleted with it: the other parts it was
    /// put together from, and copies that arrived through other providers.
    pub part_keys: Vec<[u8; 32]>,
    /// Some parts never arrived: the text has gaps.
    pub partial: bool,
    /// Keyed hash of (sender, recipient, text), for matching the copy of this SMS that
    /// another provider delivers (`cross_provider.rs`); `None` for multipart messages.
    pub content_key: Option<[u8; 32]>,
}

/// Fourth layout: binary SMS.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageV4 {
    pub inbox: Inbox,
    /// The pool number it was sent to, if it is in the pool.
    pub number_id: Option<u64>,
    /// Provider instance name (configuration, not personal data).
    pub provider: String,
    /// When the provider says it arrived, else when we stored it (unix ms).
    pub received_at_ms: i64,
    pub stored_at_ms: i64,
    pub expires_at_ms: u64,
    /// The `DEDUPE` key, kept so the sweeper can delete it with the message; also the
    /// sealing context of `sealed`.
    pub dedupe_key: [u8; 32],
    /// Sealed [`SealedMessage`].
    pub sealed: Vec<u8>,
    pub read: bool,
    /// More `DEDUPE` keys naming this message, deleted with it: the other parts it was
    /// put together from, and copies that arrived through other providers.
    pub part_keys: Vec<[u8; 32]>,
    /// Some parts never arrived: the text has gaps.
    pub partial: bool,
    /// Keyed hash of (sender, recipient, text), for matching the copy of this SMS that
    /// another provider delivers (`cross_provider.rs`); `None` for multipart messages.
    pub content_key: Option<[u8; 32]>,
    /// A binary SMS whose octets are not text: the text is them in hex.
    pub binary: bool,
}

impl MessageRecord {
    pub fn into_latest(self) -> MessageV4 {
        match self {
            Self::V1(old) => v4_from_v3(v3_from_v2(v2_from_v1(old))),
            Self::V2(old) => v4_from_v3(v3_from_v2(old)),
            Self::V3(old) => v4_from_v3(old),
            Self::V4(message) => message,
        }
    }
}

fn v2_from_v1(old: MessageV1) -> MessageV2 {
    let (inbox, number_id) = match old.inbox {
        0 => (Inbox::Unrouted, None),
        id => (Inbox::Number(id), Some(id)),
    };
    MessageV2 {
        inbox,
        number_id,
        provider: old.provider,
        received_at_ms: old.received_at_ms,
        stored_at_ms: old.stored_at_ms,
        expires_at_ms: old.expires_at_ms,
        dedupe_key: old.dedupe_key,
        sealed: old.sealed,
        read: old.read,
    }
}

fn v3_from_v2(old: MessageV2) -> MessageV3 {
    MessageV3 {
        inbox: old.inbox,
        number_id: old.number_id,
        provider: old.provider,
        received_at_ms: old.received_at_ms,
        stored_at_ms: old.stored_at_ms,
        expires_at_ms: old.expires_at_ms,
        dedupe_key: old.dedupe_key,
        sealed: old.sealed,
        read: old.read,
        part_keys: Vec::new(),
        partial: false,
        content_key: None,
    }
}

fn v4_from_v3(old: MessageV3) -> MessageV4 {
    MessageV4 {
        inbox: old.inbox,
        number_id: old.number_id,
        provider: old.provider,
        received_at_ms: old.received_at_ms,
        stored_at_ms: old.stored_at_ms,
        expires_at_ms: old.expires_at_ms,
        dedupe_key: old.dedupe_key,
        sealed: old.sealed,
        read: old.read,
        part_keys: old.part_keys,
        partial: old.partial,
        content_key: old.content_key,
        binary: false,
    }
}

/// Parts of a multipart message that is not whole yet, or the tombstone of one that is
/// stored, under the blind index of (provider, sender, recipient, reference, part count,
/// generation); see `ingest.rs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PendingRecord {
    V1(PendingV1),
    V2(PendingV2),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingV1 {
    pub provider: String,
    /// When the first part arrived; the message is completed with gaps after
    /// `multipart_timeout` from here.
    pub first_seen_ms: i64,
    pub total: u8,
    /// Blind index of the recipient, for routing once whole.
    pub number: [u8; 32],
    /// Sealed [`SealedParts`] (context `multipart:` + the group key); empty once
    /// `completed`.
    pub sealed: Vec<u8>,
    /// Once the message is stored: its id. The record stays a while as a tombstone, so
    /// a part that turns up late joins that message instead of starting a new one.
    pub completed: Option<u64>,
}

/// Second layout: a tombstone knows which positions its message has. Parts still held
/// are written as [`PendingV1`] (`filled` is empty until then), which the release
/// before this one reads: after a downgrade its sweeper still stores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingV2 {
    pub provider: String,
    /// When the first part arrived; the message is completed with gaps after
    /// `multipart_timeout` from here.
    pub first_seen_ms: i64,
    pub total: u8,
    /// Blind index of the recipient, for routing once whole.
    pub number: [u8; 32],
    /// Sealed [`SealedParts`] (context `multipart:` + the group key); empty once
    /// `completed`.
    pub sealed: Vec<u8>,
    /// Once the message is stored: its id. The record stays a while as a tombstone, so
    /// a part that turns up late joins that message instead of starting a new one.
    pub completed: Option<u64>,
    /// Once `completed`: the positions the message has a part for. Only a part for
    /// another position is late; one for a position it has belongs to another message
    /// that reuses the reference.
    pub filled: Vec<u8>,
}

impl PendingRecord {
    /// Held parts in the first layout, a tombstone in the second.
    pub fn of(pending: PendingV2) -> Self {
        if pending.completed.is_some() {
            return Self::V2(pending);
        }
        Self::V1(PendingV1 {
            provider: pending.provider,
            first_seen_ms: pending.first_seen_ms,
            total: pending.total,
            number: pending.number,
            sealed: pending.sealed,
            completed: None,
        })
    }

    pub fn into_latest(self) -> PendingV2 {
        match self {
            // A first-layout tombstone (from before the part count was in the group key,
            // so never looked up again; the sweeper only forgets it) does not know its
            // positions: `filled` stays empty.
            Self::V1(old) => PendingV2 {
                provider: old.provider,
                first_seen_ms: old.first_seen_ms,
                total: old.total,
                number: old.number,
                sealed: old.sealed,
                completed: old.completed,
                filled: Vec::new(),
            },
            Self::V2(pending) => pending,
        }
    }
}

/// The private part of a pending multipart message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SealedParts {
    V1 {
        from: String,
        to: String,
        received_at_ms: Option<i64>,
        parts: Vec<SealedPart>,
    },
    /// Parts of binary SMS: their octets are kept until the message is whole.
    V2(PartsV2),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedPart {
    pub index: u8,
    pub provider_message_id: String,
    /// The part's own `DEDUPE` key (a retried part is recognised by it).
    pub dedupe: [u8; 32],
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartsV2 {
    pub from: String,
    pub to: String,
    pub received_at_ms: Option<i64>,
    pub parts: Vec<SealedPartV2>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedPartV2 {
    pub index: u8,
    pub provider_message_id: String,
    /// The part's own `DEDUPE` key (a retried part is recognised by it).
    pub dedupe: [u8; 32],
    pub body: PartBody,
}

/// What one part carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PartBody {
    Text(String),
    /// A binary SMS's user data, header removed.
    Data(Vec<u8>),
}

impl SealedParts {
    /// In the first layout when every part is text: the release before binary SMS reads
    /// only that, and after a downgrade its sweeper drops what it cannot read, parts
    /// already acknowledged included.
    pub fn of(parts: PartsV2) -> Self {
        let text: Option<Vec<SealedPart>> = parts
            .parts
            .iter()
            .map(|part| match &part.body {
                PartBody::Text(text) => Some(SealedPart {
                    index: part.index,
                    provider_message_id: part.provider_message_id.clone(),
                    dedupe: part.dedupe,
                    text: text.clone(),
                }),
                PartBody::Data(_) => None,
            })
            .collect();
        match text {
            Some(text) => Self::V1 {
                from: parts.from,
                to: parts.to,
                received_at_ms: parts.received_at_ms,
                parts: text,
            },
            None => Self::V2(parts),
        }
    }

    pub fn into_latest(self) -> PartsV2 {
        match self {
            Self::V1 {
                from,
                to,
                received_at_ms,
                parts,
            } => PartsV2 {
                from,
                to,
                received_at_ms,
                parts: parts
                    .into_iter()
                    .map(|part| SealedPartV2 {
                        index: part.index,
                        provider_message_id: part.provider_message_id,
                        dedupe: part.dedupe,
                        body: PartBody::Text(part.text),
                    })
                    .collect(),
            },
            Self::V2(parts) => parts,
        }
    }
}

/// The private part of a message, encrypted as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SealedMessage {
    V1 {
        provider_message_id: String,
        from: String,
        to: String,
        text: String,
    },
}

/// A number in the pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NumberRecord {
    V1(NumberV1),
    V2(NumberV2),
}

/// First layout: no leasing state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NumberV1 {
    pub provider: String,
    /// Sealed E.164 string, bound to the number id.
    pub sealed_number: Vec<u8>,
    /// Overrides the global retention for this number's messages.
    pub retention_secs: Option<u64>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NumberV2 {
    pub provider: String,
    /// Sealed E.164 string, bound to the number id.
    pub sealed_number: Vec<u8>,
    /// Overrides the global retention for this number's messages.
    pub retention_secs: Option<u64>,
    pub created_at_ms: i64,
    /// Its inbox is readable by anyone, like the public receive-SMS sites; never leased.
    pub public: bool,
    /// Taken out of service by an admin: not leasable, messages still stored.
    pub disabled: bool,
    /// Not leasable before this (unix ms): the quarantine after a lease ends, so that
    /// codes meant for the previous holder stop arriving before anyone else holds it.
    pub available_from_ms: i64,
    /// When its last lease ended; leasing picks the number that has rested longest.
    pub last_released_ms: Option<i64>,
}

impl NumberRecord {
    pub fn into_latest(self) -> NumberV2 {
        match self {
            Self::V1(old) => NumberV2 {
                provider: old.provider,
                sealed_number: old.sealed_number,
                retention_secs: old.retention_secs,
                created_at_ms: old.created_at_ms,
                public: false,
                disabled: false,
                available_from_ms: 0,
                last_released_ms: None,
            },
            Self::V2(number) => number,
        }
    }
}

/// A lease: one holder's use of one number for a while.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaseRecord {
    V1(LeaseV1),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseEnd {
    Released,
    Expired,
    /// Ended by an admin (number disabled or deleted, holder removed).
    Revoked,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseV1 {
    pub number_id: u64,
    /// The user id of the holder.
    pub holder: u64,
    pub started_at_ms: i64,
    pub expires_at_ms: i64,
    /// Set once the lease is over.
    pub ended: Option<(i64, LeaseEnd)>,
}

impl LeaseV1 {
    /// Not ended, and not past its end time (the sweeper ends such leases a little later).
    pub fn is_running(&self, now_ms: i64) -> bool {
        self.ended.is_none() && self.expires_at_ms > now_ms
    }
}

impl LeaseRecord {
    pub fn into_latest(self) -> LeaseV1 {
        match self {
            Self::V1(lease) => lease,
        }
    }
}

/// An invitation to register, issued by an admin; single use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum InviteRecord {
    V1(InviteV1),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteV1 {
    pub created_by: u64,
    pub role: Role,
    pub expires_at_ms: i64,
    /// The account it created, once used.
    pub used_by: Option<u64>,
}

impl InviteRecord {
    pub fn into_latest(self) -> InviteV1 {
        match self {
            Self::V1(invite) => invite,
        }
    }
}

/// A nonce (or token id) a verified webhook spent, kept as long as a request carrying it
/// could pass the provider's check, so a captured request is still refused after a
/// restart. Keyed by a keyed hash of provider and nonce.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SpentNonceRecord {
    V1 {
        /// The last second (unix) a request carrying the nonce could be accepted.
        last_accepted: i64,
        /// A keyed hash of the request that spent it: the provider's byte-for-byte
        /// retry of that request is let through, any other request is a replay.
        request: [u8; 32],
    },
}

/// A login session: one family of refresh tokens, each replacing the one before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SessionRecord {
    V1(SessionV1),
    V2(SessionV2),
}

/// Spent refresh-token hashes a session remembers: with 15-minute access tokens, about
/// sixteen hours of rotations by a client that stays open.
pub const SPENT_KEPT: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionV1 {
    pub user_id: u64,
    pub created_at_ms: i64,
    /// The refresh token stops working after this; each rotation moves it forward.
    pub expires_at_ms: i64,
    /// Which token of the family is current; older ones are spent.
    pub generation: u64,
    /// SHA-256 of the current token's secret (never the secret itself).
    pub secret_hash: [u8; 32],
    /// SHA-256 of the previous token's secret: presenting it again is the reuse that
    /// revokes the session. Only a token that proves its secret can do that, so a forged
    /// token with an old generation number cannot log anyone out.
    pub previous_hash: Option<[u8; 32]>,
    pub revoked: bool,
}

/// Second layout: every recent spent token is remembered, not only the last one, so a
/// thief who rotated twice is caught when the victim's older token comes back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionV2 {
    pub user_id: u64,
    pub created_at_ms: i64,
    /// The refresh token stops working after this; each rotation moves it forward.
    pub expires_at_ms: i64,
    /// Which token of the family is current; older ones are spent.
    pub generation: u64,
    /// SHA-256 of the current token's secret (never the secret itself).
    pub secret_hash: [u8; 32],
    /// SHA-256 of the spent tokens' secrets, newest last, at most [`SPENT_KEPT`]:
    /// presenting one again is the reuse that revokes the session. Only a token that
    /// proves its secret can do that, so a forged token cannot log anyone out.
    pub spent: Vec<[u8; 32]>,
    pub revoked: bool,
}

impl SessionRecord {
    pub fn into_latest(self) -> SessionV2 {
        match self {
            Self::V1(session) => SessionV2 {
                user_id: session.user_id,
                created_at_ms: session.created_at_ms,
                expires_at_ms: session.expires_at_ms,
                generation: session.generation,
                secret_hash: session.secret_hash,
                spent: session.previous_hash.into_iter().collect(),
                revoked: session.revoked,
            },
            Self::V2(session) => session,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Admin,
    User,
    Guest,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum UserRecord {
    V1(UserV1),
    V2(UserV2),
    V3(UserV3),
}

/// First layout: no way to disable an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserV1 {
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub created_at_ms: i64,
}

/// Second layout: no e-mail address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserV2 {
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub created_at_ms: i64,
    /// Disabled accounts cannot log in and have no live sessions.
    pub disabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserV3 {
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub created_at_ms: i64,
    /// Disabled accounts cannot log in and have no live sessions.
    pub disabled: bool,
    /// The account's e-mail address, sealed (context `user-email:<id>`).
    pub sealed_email: Option<Vec<u8>>,
    /// The owner proved the address by following a link sent to it. Only verified
    /// addresses receive password resets.
    pub email_verified: bool,
    /// Locked only until the owner follows the mailed link (open registration). An
    /// admin's decision (enable or disable) clears it: after that the link changes
    /// nothing about the lock.
    pub awaiting_verification: bool,
}

impl UserRecord {
    pub fn into_latest(self) -> UserV3 {
        match self {
            Self::V1(old) => UserV3 {
                username: old.username,
                password_hash: old.password_hash,
                role: old.role,
                created_at_ms: old.created_at_ms,
                disabled: false,
                sealed_email: None,
                email_verified: false,
                awaiting_verification: false,
            },
            Self::V2(old) => UserV3 {
                username: old.username,
                password_hash: old.password_hash,
                role: old.role,
                created_at_ms: old.created_at_ms,
                disabled: old.disabled,
                sealed_email: None,
                email_verified: false,
                awaiting_verification: false,
            },
            Self::V3(user) => user,
        }
    }
}

/// A link mailed to a user: proves control of an address, or resets a password.
/// Stored under the SHA-256 of its secret; single use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EmailTokenRecord {
    V1(EmailTokenV1),
    V2(EmailTokenV2),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmailTokenPurpose {
    /// Confirms the account's address (and, for open registration, unlocks it).
    VerifyEmail,
    /// Lets the holder choose a new password.
    ResetPassword,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailTokenV1 {
    pub user_id: u64,
    pub purpose: EmailTokenPurpose,
    pub expires_at_ms: i64,
}

/// V2 binds the link to the address it was mailed to: it works only while that is
/// still the account's address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailTokenV2 {
    pub user_id: u64,
    pub purpose: EmailTokenPurpose,
    pub expires_at_ms: i64,
    /// The blind index of the address the link went to; `None` for links made before
    /// links were bound to an address.
    pub sent_to: Option<[u8; 32]>,
}

impl EmailTokenRecord {
    pub fn into_latest(self) -> EmailTokenV2 {
        match self {
            Self::V1(token) => EmailTokenV2 {
                user_id: token.user_id,
                purpose: token.purpose,
                expires_at_ms: token.expires_at_ms,
                sent_to: None,
            },
            Self::V2(token) => token,
        }
    }
}

/// An SMS a user asked us to send. The private parts are in `sealed` (a
/// [`SealedOutbound`], context `outbound:<id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OutboundRecord {
    V1(OutboundV1),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboundV1 {
    /// The user who sent it.
    pub sender: u64,
    /// The pool number it is sent from.
    pub number_id: u64,
    /// That number's provider instance (later attempts may use a fallback).
    pub provider: String,
    pub created_at_ms: i64,
    /// Deleted (with its `OUTBOUND_EXPIRY` entry) after this, unix ms.
    pub expires_at_ms: u64,
    /// Stored by variant index: `OutboundStatus` only ever gains variants at the end.
    pub status: OutboundStatus,
    pub updated_at_ms: i64,
    pub sealed: Vec<u8>,
    /// Every provider call, in order.
    pub attempts: Vec<AttemptV1>,
    /// The provider that took it, and its ids for it (Vonage: one per part).
    pub accepted: Option<Accepted>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub provider: String,
    /// The provider's ids: opaque handles of our own message, no text or number, so
    /// kept in the clear (reports are found by their keyed hash, not by these).
    pub message_ids: Vec<String>,
}

/// The private part of an outbound message, encrypted as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SealedOutbound {
    V1 {
        from: String,
        to: String,
        text: String,
    },
}

/// One provider call for an outbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptV1 {
    /// The provider instance tried; `None` when no provider could be tried at all.
    pub provider: Option<String>,
    /// The pool number it was sent from (a fallback may use an equivalent number).
    pub from_number_id: Option<u64>,
    pub at_ms: i64,
    /// How long the provider took to answer (0 when it was not called).
    pub latency_ms: u64,
    pub outcome: AttemptOutcome,
}

/// What one attempt came to. Details are HTTP statuses and provider error codes only,
/// never provider prose (which can quote the recipient's number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptOutcome {
    /// The provider took the message under this id.
    Accepted { provider_message_id: String },
    /// Failed in a way worth retrying (5xx, 429, timeout…).
    Retryable(String),
    /// Refused for good (a validation error).
    Rejected(String),
    /// No provider could be called (every candidate's breaker open, or none can send).
    Unavailable(String),
}

/// Delivery reports for one provider message, keyed by the hash of (provider, id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DeliveryReportRecord {
    V1(DeliveryReportV1),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryReportV1 {
    pub provider: String,
    pub provider_message_id: String,
    /// The outbound message it is about, once known (a report can arrive before the
    /// send that caused it is recorded, or be about a message sent outside burnbox).
    pub outbound_id: Option<u64>,
    /// Each distinct report once, in arrival order.
    pub events: Vec<ReportEventV1>,
    /// The `REPORT_EXPIRY` key: the record is deleted then.
    pub expiry: (u64, u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportEventV1 {
    /// Stored by variant index: `DeliveryStatus` only ever gains variants at the end.
    pub status: DeliveryStatus,
    pub error_code: Option<String>,
    /// When the provider says the status was reached (unix ms).
    pub at_ms: Option<i64>,
    pub received_at_ms: i64,
}

/// A provider instance added through the admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ProviderRecord {
    V1(ProviderV1),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderV1 {
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The whole `[[providers]]` table as JSON, secrets included, sealed and bound to the
    /// name: a field added in a later release needs no new record version.
    pub sealed: Vec<u8>,
}

impl ProviderRecord {
    pub fn into_latest(self) -> ProviderV1 {
        match self {
            Self::V1(provider) => provider,
        }
    }
}

/// A user's outbound webhook endpoint. Its URL and secret are in `sealed` (a
/// [`SealedWebhook`], context `webhook:<id>`): URLs often carry tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WebhookRecord {
    V1(WebhookV1),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookV1 {
    pub owner: u64,
    pub created_at_ms: i64,
    pub sealed: Vec<u8>,
    /// The most recent delivery attempts, oldest first, capped.
    pub log: Vec<DeliveryLogV1>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SealedWebhook {
    V1 {
        url: String,
        /// `whsec_<base64>`: the Standard Webhooks signing secret.
        secret: String,
        description: Option<String>,
    },
}

/// One delivery attempt, as the delivery log shows it. Holds no message content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryLogV1 {
    /// `None` for a "send test" event.
    pub message_id: Option<u64>,
    pub at_ms: i64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why no answer counted (connection refused, timeout, SSRF guard), URL-free.
    pub error: Option<String>,
    /// When the next attempt is due; `None` once delivered or given up.
    pub next_retry_ms: Option<i64>,
}

/// A delivery still to be made, under its `WEBHOOK_QUEUE` key (endpoint, due time,
/// message): the message is read from the store when sending, so the queue holds ids only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum QueuedDeliveryRecord {
    V1(QueuedDeliveryV1),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedDeliveryV1 {
    /// Attempts made so far.
    pub attempts: u32,
    /// When the message was queued: retries stop `webhooks_give_up` after this.
    pub queued_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_records_upgrade_on_read() {
        let v1 = NumberRecord::V1(NumberV1 {
            provider: "sandbox".into(),
            sealed_number: vec![1],
            retention_secs: None,
            created_at_ms: 5,
        });
        let upgraded: NumberRecord = decode(&encode(&v1).unwrap()).unwrap();
        let number = upgraded.into_latest();
        assert!(!number.public && !number.disabled);
        assert_eq!(number.available_from_ms, 0);

        let message = MessageRecord::V1(MessageV1 {
            inbox: 7,
            provider: "p".into(),
            received_at_ms: 1,
            stored_at_ms: 1,
            expires_at_ms: 2,
            dedupe_key: [0; 32],
            sealed: vec![],
            read: false,
        });
        let upgraded: MessageRecord = decode(&encode(&message).unwrap()).unwrap();
        let message = upgraded.into_latest();
        assert_eq!(
            (message.inbox, message.number_id),
            (Inbox::Number(7), Some(7))
        );
        assert!(!message.binary && !message.partial);

        // Parts held by a release before binary SMS keep their text.
        let parts = SealedParts::V1 {
            from: "+14155550100".into(),
            to: "+14155550199".into(),
            received_at_ms: None,
            parts: vec![SealedPart {
                index: 2,
                provider_message_id: "P2".into(),
                dedupe: [2; 32],
                text: "two".into(),
            }],
        };
        let upgraded: SealedParts = decode(&encode(&parts).unwrap()).unwrap();
        let parts = upgraded.into_latest();
        assert_eq!(parts.parts.len(), 1);
        assert_eq!(parts.parts[0].index, 2);
        assert!(matches!(&parts.parts[0].body, PartBody::Text(text) if text == "two"));
    }

    #[test]
    fn a_multipart_message_of_the_third_layout_keeps_every_field_on_upgrade() {
        let v3 = MessageRecord::V3(MessageV3 {
            inbox: Inbox::Lease(9),
            number_id: Some(4),
            provider: "vonage".into(),
            received_at_ms: 11,
            stored_at_ms: 12,
            expires_at_ms: 13,
            dedupe_key: [1; 32],
            sealed: vec![5, 6, 7],
            read: true,
            part_keys: vec![[2; 32], [3; 32]],
            partial: true,
            content_key: Some([4; 32]),
        });
        let upgraded: MessageRecord = decode(&encode(&v3).unwrap()).unwrap();
        let message = upgraded.into_latest();
        assert_eq!(
            (message.inbox, message.number_id, message.provider.as_str()),
            (Inbox::Lease(9), Some(4), "vonage")
        );
        assert_eq!(
            (
                message.received_at_ms,
                message.stored_at_ms,
                message.expires_at_ms
            ),
            (11, 12, 13)
        );
        assert_eq!(message.dedupe_key, [1; 32]);
        assert_eq!(message.sealed, [5, 6, 7]);
        assert_eq!(message.part_keys, [[2; 32], [3; 32]]);
        assert_eq!(message.content_key, Some([4; 32]));
        assert!(message.read && message.partial && !message.binary);
    }

    #[test]
    fn held_parts_are_written_in_the_first_layout_and_tombstones_in_the_second() {
        let pending = PendingV2 {
            provider: "p".into(),
            first_seen_ms: 3,
            total: 2,
            number: [7; 32],
            sealed: vec![1],
            completed: None,
            filled: Vec::new(),
        };
        let held = PendingRecord::of(pending.clone());
        assert!(matches!(held, PendingRecord::V1(_)));
        let back: PendingRecord = decode(&encode(&held).unwrap()).unwrap();
        assert_eq!(back.into_latest(), pending);
        let tombstone = PendingV2 {
            completed: Some(8),
            filled: vec![2],
            sealed: Vec::new(),
            ..pending
        };
        let record = PendingRecord::of(tombstone.clone());
        let back: PendingRecord = decode(&encode(&record).unwrap()).unwrap();
        assert!(matches!(back, PendingRecord::V2(_)));
        assert_eq!(back.into_latest(), tombstone);
    }

    #[test]
    fn records_round_trip_and_lead_with_their_version() {
        let record = NumberRecord::V1(NumberV1 {
            provider: "sandbox".into(),
            sealed_number: vec![1, 2, 3],
            retention_secs: Some(60),
            created_at_ms: 5,
        });
        let bytes = encode(&record).unwrap();
        assert_eq!(bytes[0], 0, "variant index of V1 comes first");
        let back: NumberRecord = decode(&bytes).unwrap();
        assert_eq!(back.into_latest().retention_secs, Some(60));
        assert!(decode::<NumberRecord>(&[9, 9]).is_err());
    }
}
