//! An inbound SMS as every provider adapter hands it to the store.

use std::fmt;

use super::udh;
use super::{PhoneNumber, Sender};

/// Longest message text we store. A concatenated SMS tops out around 39 KiB
/// (255 parts of 153 GSM-7 characters); anything longer is not an SMS.
pub const MAX_TEXT_BYTES: usize = 40 * 1024;

/// The most one SMS carries: 140 octets of user data, its header included (3GPP TS 23.040).
pub const MAX_USER_DATA_BYTES: usize = 140;

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
    /// The text; empty for a binary SMS, whose text comes from `data`.
    pub text: String,
    /// `text` is octets in hex, not text: a binary SMS whose User Data Header could not
    /// be read, kept whole (header and data) rather than refused.
    pub hex: bool,
    /// For a binary SMS: its user data, header removed. The store reads it as text
    /// ([`super::user_data::Reading`]) only once the message is whole, because one
    /// character can straddle two parts.
    pub data: Option<Vec<u8>>,
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
    #[error("the user data and its header are longer than one SMS ({MAX_USER_DATA_BYTES} octets)")]
    UserDataTooLong,
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
            hex: false,
            data: None,
            received_at_ms,
            part: None,
        })
    }

    /// A binary SMS: `header` is its User Data Header with the length octet (empty when
    /// it has none), `data` the octets after it. A concatenation element in the header
    /// makes it one part of a longer message.
    ///
    /// A header whose structure is broken cannot say where it ends or which part this
    /// is, but the SMS is still one the provider delivered: it is kept, alone, as the hex
    /// of all its octets, header included, so nothing of it is lost or misread.
    pub fn binary(
        provider_message_id: &str,
        from: &str,
        to: &str,
        header: &[u8],
        data: Vec<u8>,
        received_at_ms: Option<i64>,
    ) -> Result<Self, InboundSmsError> {
        if header.len() + data.len() > MAX_USER_DATA_BYTES {
            return Err(InboundSmsError::UserDataTooLong);
        }
        let mut sms = Self::new(provider_message_id, from, to, "", received_at_ms)?;
        let Ok(header) = udh::parse(header) else {
            sms.text = hex::encode([header, &data].concat());
            sms.hex = true;
            return Ok(sms);
        };
        sms.data = Some(data);
        match header.concat {
            Some(concat) => sms.with_part(
                &concat.reference.key(),
                concat.total.into(),
                concat.sequence.into(),
            ),
            None => Ok(sms),
        }
    }

    /// Marks this as part `index` of `total` of the message `reference`. A "multipart"
    /// of one part is just a message, and so is a binary SMS kept as hex: its octets
    /// cannot be joined with its neighbours'.
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
        if total > 1 && !self.hex {
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
            .field("data_bytes", &self.data.as_ref().map(Vec::len))
            .field("hex", &self.hex)
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
    fn binary_messages_take_their_place_from_the_header() {
        let binary = |header: &str, data: &[u8]| {
            let header = hex::decode(header).unwrap();
            InboundSms::binary(
                "B1",
                "+14155550100",
                "+14155550199",
                &header,
                data.to_vec(),
                None,
            )
        };
        let part = binary("050003a70302", b"\x00A").unwrap();
        assert_eq!(part.text, "");
        assert_eq!(part.data.as_deref(), Some(b"\x00A".as_slice()));
        let position = part.part.unwrap();
        assert_eq!(
            (position.reference.as_str(), position.total, position.index),
            ("udh8:167", 3, 2)
        );
        assert_eq!(binary("", b"hi").unwrap().part, None, "no header: one SMS");
        assert_eq!(binary("06050415811581", b"hi").unwrap().part, None);
        // A part number past the total: the element is ignored, the SMS stands alone.
        let alone = binary("050003010203", b"hi").unwrap();
        assert_eq!((alone.part, alone.hex), (None, false));
        assert_eq!(alone.data.as_deref(), Some(b"hi".as_slice()));
        // A header that overruns itself: kept whole, as hex, header included.
        let kept = binary("0500030103", b"hi").unwrap();
        assert_eq!((kept.text.as_str(), kept.hex), ("05000301036869", true));
        assert_eq!((kept.data, kept.part), (None, None));
        let kept = binary("0500030103", b"hi").unwrap();
        assert_eq!(
            kept.with_part("c1", 2, 1).unwrap().part,
            None,
            "never a part"
        );
        assert_eq!(
            binary("050003a70302", &[0; 135]).unwrap_err(),
            InboundSmsError::UserDataTooLong
        );
        assert!(binary("050003a70302", &[0; 134]).is_ok());
        assert!(!format!("{:?}", binary("", b"secret").unwrap()).contains("secret"));
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
