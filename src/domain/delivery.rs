//! A delivery report (status callback) for a message we sent, provider-neutral.

use super::{InboundSmsError, ProviderMessageId};

/// Where a sent message is, in one vocabulary for every provider. Providers have ten or
/// more states each; these are the ones a user can act on.
/// Stored by variant index (see `store::records`): add variants only at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DeliveryStatus {
    /// Accepted by the provider, not yet handed to a carrier.
    Queued,
    /// Handed to the carrier; no receipt yet.
    Sent,
    /// The handset received it (a read receipt counts too: it implies delivery).
    Delivered,
    /// Never left the provider or carrier: rejected, refused, failed to send, cancelled.
    Failed,
    /// Sent, but the handset never got it: expired, unreachable, delivery failed.
    Undelivered,
    /// The provider reported a state it does not explain (or one we do not know).
    Unknown,
}

/// A verified status callback. Built only through [`DeliveryReport::new`], so the id is
/// always a valid provider message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The provider's id of the message the report is about.
    pub provider_message_id: ProviderMessageId,
    pub status: DeliveryStatus,
    /// The provider's or carrier's error code, as the provider spells it.
    pub error_code: Option<String>,
    /// When the status was reached (unix milliseconds), if the provider says.
    pub at_ms: Option<i64>,
}

/// Longest error code kept; real ones are a few digits or a short word.
const MAX_ERROR_CODE_CHARS: usize = 64;

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Undelivered => "undelivered",
            Self::Unknown => "unknown",
        }
    }
}

impl DeliveryReport {
    pub fn new(
        provider_message_id: &str,
        status: DeliveryStatus,
        error_code: Option<&str>,
        at_ms: Option<i64>,
    ) -> Result<Self, InboundSmsError> {
        // An empty or all-zero code ("0", Plivo's "000") means "no error"; keep only real
        // codes, trimmed to a size that cannot bloat storage.
        let error_code = error_code
            .map(str::trim)
            .filter(|code| !code.is_empty() && !code.chars().all(|c| c == '0'))
            .map(|code| {
                code.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_ERROR_CODE_CHARS)
                    .collect()
            });
        Ok(Self {
            provider_message_id: ProviderMessageId::parse(provider_message_id)?,
            status,
            error_code,
            at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_drops_empty_codes() {
        let report = DeliveryReport::new("m1", DeliveryStatus::Delivered, Some("0"), None).unwrap();
        assert_eq!(report.error_code, None);
        let report =
            DeliveryReport::new("m1", DeliveryStatus::Failed, Some(" 4001 "), Some(5)).unwrap();
        assert_eq!(report.error_code.as_deref(), Some("4001"));
        assert_eq!(report.at_ms, Some(5));
        assert_eq!(
            DeliveryReport::new("", DeliveryStatus::Sent, None, None).unwrap_err(),
            InboundSmsError::MissingId
        );
    }
}
