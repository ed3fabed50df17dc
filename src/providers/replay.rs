//! Replay protection shared by the adapters: the timestamp window. The nonces (or JWT
//! ids) a verified request carries are noted on the request (`WebhookRequest::spent`),
//! and the webhook handler refuses one already spent by another request, on disk so a
//! restart forgets none (`store::nonces`).
//!
//! A signature proves who sent a request, not when; without these a request captured once
//! (from a log, a proxy, a misconfigured endpoint) could be posted again for ever.

use super::WebhookError;

/// How far a signed timestamp may be from our clock, in either direction: the 5 minutes
/// Telnyx and the Standard Webhooks spec name, and that the others' docs recommend. It
/// bounds both how long a captured request stays usable and how much clock skew a sender
/// (an Android phone, say) may have.
pub const TOLERANCE_SECS: i64 = 300;

/// Refuses `timestamp` (unix seconds) unless it is within `tolerance` of `now`.
pub fn check_window(now: i64, timestamp: i64, tolerance: i64) -> Result<(), WebhookError> {
    if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err(WebhookError::Stale);
    }
    Ok(())
}

/// Parses a unix-seconds timestamp header or parameter.
pub fn parse_unix(name: &str, value: &str) -> Result<i64, WebhookError> {
    value
        .trim()
        .parse()
        .map_err(|_| WebhookError::Malformed(format!("{name} is not a unix timestamp")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_inclusive_both_ways() {
        assert!(check_window(1000, 700, 300).is_ok());
        assert!(check_window(1000, 1300, 300).is_ok());
        assert_eq!(check_window(1000, 699, 300), Err(WebhookError::Stale));
        assert_eq!(check_window(1000, 1301, 300), Err(WebhookError::Stale));
        assert_eq!(check_window(0, i64::MIN, 300), Err(WebhookError::Stale));
    }

    #[test]
    fn bad_timestamps_are_malformed() {
        assert_eq!(parse_unix("t", " 42 "), Ok(42));
        assert!(matches!(
            parse_unix("t", "soon"),
            Err(WebhookError::Malformed(_))
        ));
    }
}
