//! An inbound SMS as every provider adapter hands it to the store.

use std::fmt;

use super::{PhoneNumber, Sender};

/// Longest message text we store. A concatenated SMS tops out around 39 KiB
/// (255 parts of 153 GSM-7 characters); anything longer is not an SMS.
pub const MAX_TEXT_BYTES: usize = 40 * 1024;

/// Longest provider message id; real ones are 34 (Twilio) to ~40 characters.
const MAX_PROVIDER_ID_BYTES: usize = 128;

/// The provider's own id for a message, the key of exactly-once ingest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProviderMessageId(String);

impl ProviderMessageId {
    pub fn parse(input: &str) -> Result<Self, InboundSmsError> {
        if input.is_empty() {
            return Err(InboundSmsError::MissingId);
        }
        if input.len() > MAX_PROVIDER_ID_BYTES || input.chars().any(char::is_control) {
            return Err(InboundSmsError::InvalidId);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProviderMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderMessageId({})", self.0)
    }
}

/// A verified inbound SMS, provider-neutral. Constructed only through
/// [`InboundSms::new`], so every instance is valid.
#[derive(Clone)]
pub struct InboundSms {
    pub provider_message_id: ProviderMessageId,
    pub from: Sender,
    pub to: PhoneNumber,
    pub text: String,
    /// When the provider says the message arrived (unix milliseconds), if it says.
    pub received_at_ms: Option<i64>,
    /// Set when this is one part of a longer message that the provider delivers in
    /// pieces; the store holds parts until the message is whole.
    pub part: Option<MessagePart>,
}

/// Where a part belongs: the sender's concatenation reference, how many parts the whole
/// message has, and which one this is (1-based), as in the concatenation header of
/// GSM 03.40.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePart {
    pub reference: String,
    pub total: u8,
    pub index: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundSmsError {
    #[error("the message id is missing")]
    MissingId,
    #[error("the message id is too long or contains control characters")]
    InvalidId,
    #[error("the sender is invalid: {0}")]
    From(#[from] super::SenderError),
    #[error("the recipient is not a phone number: {0}")]
    To(#[from] super::PhoneNumberError),
    #[error("the text is longer than {MAX_TEXT_BYTES} bytes")]
    TextTooLong,
    #[error("the multipart fields are inconsistent (part {index} of {total})")]
    BadPart { index: u16, total: u16 },
}

impl InboundSms {
    pub fn new(
        provider_message_id: &str,
        from: &str,
        to: &str,
        text: &str,
        received_at_ms: Option<i64>,
    ) -> Result<Self, InboundSmsError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(InboundSmsError::TextTooLong);
        }
        Ok(Self {
            provider_message_id: ProviderMessageId::parse(provider_message_id)?,
            from: Sender::parse(from)?,
            to: PhoneNumber::parse(to)?,
            text: text.to_owned(),
            received_at_ms,
            part: None,
        })
    }

    /// Marks this as part `index` of `total` of the message `reference`. A "multipart"
    /// of one part is just a message.
    pub fn with_part(
        mut self,
        reference: &str,
        total: u16,
        index: u16,
    ) -> Result<Self, InboundSmsError> {
        let bad = InboundSmsError::BadPart { index, total };
        let reference = reference.trim();
        if reference.is_empty() || reference.len() > 64 || !(1..=total).contains(&index) {
            return Err(bad);
        }
        let (Ok(total), Ok(index)) = (u8::try_from(total), u8::try_from(index)) else {
            return Err(bad);
        };
        if total > 1 {
            self.part = Some(MessagePart {
                reference: reference.to_owned(),
                total,
                index,
            });
        }
        Ok(self)
    }
}

/// Message text is the most private thing we hold: never print it.
impl fmt::Debug for InboundSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundSms")
            .field("provider_message_id", &self.provider_message_id)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("text_bytes", &self.text.len())
            .field("part", &self.part)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_valid_message() {
        let sms =
            InboundSms::new("SM1", "+14155550100", "+1 415 555 0199", "code 1234", None).unwrap();
        assert_eq!(sms.to.as_str(), "+14155550199");
        assert!(!format!("{sms:?}").contains("1234"));
    }

    #[test]
    fn multipart_fields_are_checked() {
        let sms = || InboundSms::new("SM1", "+14155550100", "+14155550199", "x", None).unwrap();
        let part = sms().with_part("a1", 3, 2).unwrap().part.unwrap();
        assert_eq!(
            (part.reference.as_str(), part.total, part.index),
            ("a1", 3, 2)
        );
        assert_eq!(sms().with_part("a1", 1, 1).unwrap().part, None);
        for (reference, total, index) in [("a1", 3, 0), ("a1", 3, 4), ("", 2, 1), ("a1", 300, 1)] {
            assert!(
                sms().with_part(reference, total, index).is_err(),
                "{total} {index}"
            );
        }
    }

    #[test]
    fn rejects_invalid_parts() {
        assert_eq!(
            InboundSms::new("", "a", "+14155550100", "", None).unwrap_err(),
            InboundSmsError::MissingId
        );
        assert!(matches!(
            InboundSms::new("x", "a", "nope", "", None),
            Err(InboundSmsError::To(_))
        ));
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        assert_eq!(
            InboundSms::new("x", "a", "+14155550100", &long, None).unwrap_err(),
            InboundSmsError::TextTooLong
        );
    }
}
