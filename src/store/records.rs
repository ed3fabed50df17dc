//! The records stored in redb values, and their encoding.
//!
//! Each record type is an enum of versions encoded with bincode; bincode writes the
//! variant index first, so a later release adds `V2`, keeps decoding `V1`, and upgrades
//! on read. Never reorder or change a published variant.

use bincode::config::{Configuration, standard};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::StoreError;

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

/// A stored message. The private parts are in `sealed` (a [`SealedMessage`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MessageRecord {
    V1(MessageV1),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageV1 {
    /// The owning inbox (number id), or `UNROUTED_INBOX`.
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

impl MessageRecord {
    pub fn into_latest(self) -> MessageV1 {
        match self {
            Self::V1(message) => message,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NumberV1 {
    pub provider: String,
    /// Sealed E.164 string, bound to the number id.
    pub sealed_number: Vec<u8>,
    /// Overrides the global retention for this number's messages.
    pub retention_secs: Option<u64>,
    pub created_at_ms: i64,
}

impl NumberRecord {
    pub fn into_latest(self) -> NumberV1 {
        match self {
            Self::V1(number) => number,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserV1 {
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub created_at_ms: i64,
}

impl UserRecord {
    pub fn into_latest(self) -> UserV1 {
        match self {
            Self::V1(user) => user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
