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
        })
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
