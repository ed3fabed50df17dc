//! An SMS we send: its validated text and where it is on its way to the handset.

use super::{DeliveryStatus, PhoneNumber};

/// Longest text we hand to a provider, in characters. Twilio and Telnyx refuse more
/// than 1600 (ten concatenated segments); keeping to the smallest limit means a message
/// that one provider takes, its fallback takes too.
pub const MAX_OUTBOUND_CHARS: usize = 1600;

/// The text of an outbound SMS: not empty, at most [`MAX_OUTBOUND_CHARS`] characters, and
/// no control characters other than line breaks and tabs (they have no place in an SMS and
/// some providers reject the whole message for them).
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundText(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundTextError {
    #[error("the text is empty")]
    Empty,
    #[error("the text is longer than {MAX_OUTBOUND_CHARS} characters")]
    TooLong,
    #[error("the text contains control characters")]
    ControlCharacter,
}

impl OutboundText {
    pub fn parse(input: &str) -> Result<Self, OutboundTextError> {
        if input.trim().is_empty() {
            return Err(OutboundTextError::Empty);
        }
        if input.chars().count() > MAX_OUTBOUND_CHARS {
            return Err(OutboundTextError::TooLong);
        }
        if input
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(OutboundTextError::ControlCharacter);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Message text is private: never print it.
impl std::fmt::Debug for OutboundText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutboundText({} chars)", self.0.chars().count())
    }
}

/// Where an outbound message is. It only ever moves forward: a later, lower-ranked
/// report (a late `sent` after `delivered`) changes nothing, and a final status is final.
/// Stored by variant index (see `store::records`): add variants only at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum OutboundStatus {
    /// Accepted by burnbox, not yet by a provider (waiting for an attempt or a retry).
    Pending,
    /// A provider took it and queued it.
    Queued,
    /// Handed to the carrier.
    Sent,
    /// The handset received it.
    Delivered,
    /// Sent, but the handset never got it.
    Undelivered,
    /// Refused by the provider, or every attempt failed.
    Failed,
}

impl OutboundStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Undelivered | Self::Failed)
    }

    /// Progress order; every final status ranks above every other.
    fn rank(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Queued => 1,
            Self::Sent => 2,
            Self::Delivered | Self::Undelivered | Self::Failed => 3,
        }
    }

    /// The status after a delivery report saying `reported`: never backwards, never out
    /// of a final status, and an unknown state changes nothing.
    pub fn after_report(self, reported: DeliveryStatus) -> Self {
        let next = match reported {
            DeliveryStatus::Queued => Self::Queued,
            DeliveryStatus::Sent => Self::Sent,
            DeliveryStatus::Delivered => Self::Delivered,
            DeliveryStatus::Undelivered => Self::Undelivered,
            DeliveryStatus::Failed => Self::Failed,
            DeliveryStatus::Unknown => return self,
        };
        if self.is_final() || next.rank() < self.rank() {
            self
        } else {
            next
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
        }
    }
}

/// Whether two numbers are in the same country: the same region when libphonenumber
/// knows both (so +1 Canada and +1 United States differ), else the same calling code.
pub fn same_country(a: &PhoneNumber, b: &PhoneNumber) -> bool {
    let (Ok(a), Ok(b)) = (
        phonenumber::parse(None, a.as_str()),
        phonenumber::parse(None, b.as_str()),
    ) else {
        return false;
    };
    match (a.country().id(), b.country().id()) {
        (Some(a), Some(b)) => a == b,
        _ => a.code().value() == b.code().value(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_validated() {
        assert_eq!(
            OutboundText::parse("  ").unwrap_err(),
            OutboundTextError::Empty
        );
        assert_eq!(
            OutboundText::parse(&"é".repeat(MAX_OUTBOUND_CHARS + 1)).unwrap_err(),
            OutboundTextError::TooLong
        );
        assert!(OutboundText::parse(&"é".repeat(MAX_OUTBOUND_CHARS)).is_ok());
        assert_eq!(
            OutboundText::parse("a\u{0}b").unwrap_err(),
            OutboundTextError::ControlCharacter
        );
        let text = OutboundText::parse("line one\nline two").unwrap();
        assert!(!format!("{text:?}").contains("line"));
    }

    #[test]
    fn status_only_moves_forward() {
        use DeliveryStatus as D;
        use OutboundStatus as S;
        assert_eq!(S::Pending.after_report(D::Queued), S::Queued);
        assert_eq!(S::Sent.after_report(D::Queued), S::Sent, "no regress");
        assert_eq!(S::Sent.after_report(D::Delivered), S::Delivered);
        assert_eq!(S::Delivered.after_report(D::Failed), S::Delivered, "final");
        assert_eq!(S::Failed.after_report(D::Sent), S::Failed);
        assert_eq!(S::Sent.after_report(D::Unknown), S::Sent);
        assert_eq!(S::Queued.after_report(D::Undelivered), S::Undelivered);
    }

    #[test]
    fn countries_compare_by_region_then_calling_code() {
        let n = |s: &str| PhoneNumber::parse(s).unwrap();
        assert!(same_country(&n("+447700900001"), &n("+442071838750")));
        assert!(!same_country(&n("+447700900001"), &n("+14155550100")));
        // Canada (Toronto 416) and the United States (San Francisco 415) share +1.
        assert!(!same_country(&n("+14165550123"), &n("+14155552671")));
        assert!(same_country(&n("+14155552671"), &n("+12125552368")));
    }
}
