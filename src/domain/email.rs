//! E-mail addresses, validated once at the edge.

use std::fmt;

/// Longest address accepted (RFC 5321's path limit less the angle brackets).
const MAX_LEN: usize = 254;

/// A syntactically valid e-mail address, trimmed, with its domain lower-cased.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailAddressError {
    #[error("longer than {MAX_LEN} characters")]
    TooLong,
    #[error("not an address like name@example.com")]
    Invalid,
}

impl EmailAddress {
    pub fn parse(text: &str) -> Result<Self, EmailAddressError> {
        let text = text.trim();
        if text.len() > MAX_LEN {
            return Err(EmailAddressError::TooLong);
        }
        let address: lettre::Address = text.parse().map_err(|_| EmailAddressError::Invalid)?;
        // Domains are case-insensitive; local parts are in theory not, but no mail system
        // in use treats them so, and one person must not get two accounts by case.
        Ok(Self(format!(
            "{}@{}",
            address.user(),
            address.domain().to_ascii_lowercase()
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form two addresses are compared in (and looked up by): wholly lower-case.
    pub fn lookup_key(&self) -> String {
        self.0.to_lowercase()
    }
}

// Addresses are personal data: debug output shows only the domain.
impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.0.rsplit_once('@').map_or("?", |(_, d)| d);
        write!(f, "EmailAddress(…@{domain})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let address = EmailAddress::parse("  Alice.B@Example.COM ").unwrap();
        assert_eq!(address.as_str(), "Alice.B@example.com");
        assert_eq!(address.lookup_key(), "alice.b@example.com");
        assert_eq!(format!("{address:?}"), "EmailAddress(…@example.com)");
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a b@example.com",
            "a@b@c",
        ] {
            assert_eq!(
                EmailAddress::parse(bad),
                Err(EmailAddressError::Invalid),
                "{bad:?}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), Err(EmailAddressError::TooLong));
    }
}
