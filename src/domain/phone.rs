//! Phone numbers (E.164) and SMS senders (a number or an alphanumeric sender id).

use std::fmt;

/// An E.164 phone number: `+` followed by 8 to 15 digits, the first not zero.
///
/// Parsing is forgiving about presentation (spaces, dashes, dots, brackets, a `00`
/// international prefix, a missing `+`) because providers and scripts format numbers
/// differently, and the blind index only finds a number if every path normalises it
/// the same way.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number may contain only digits, spaces, '+', '-', '.', '(' and ')'")]
    InvalidCharacter,
    #[error("phone number must have 8 to 15 digits in E.164 form")]
    WrongLength,
    #[error("an E.164 country code cannot start with 0")]
    LeadingZero,
}

impl PhoneNumber {
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneNumberError::Empty);
        }
        let mut digits = String::with_capacity(16);
        for (index, c) in trimmed.chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if index == 0 => {}
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(PhoneNumberError::InvalidCharacter),
            }
        }
        let digits = match digits.strip_prefix("00") {
            Some(rest) if !trimmed.starts_with('+') => rest.to_owned(),
            _ => digits,
        };
        if !(8..=15).contains(&digits.len()) {
            return Err(PhoneNumberError::WrongLength);
        }
        if digits.starts_with('0') {
            return Err(PhoneNumberError::LeadingZero);
        }
        Ok(Self(format!("+{digits}")))
    }

    /// The canonical `+<digits>` form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Phone numbers are personal data: keep them out of logs that print `Debug`.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PhoneNumber(+…{})",
            &self.0[self.0.len().saturating_sub(2)..]
        )
    }
}

/// Who sent an SMS: usually a phone number, but short codes ("12345") and
/// alphanumeric sender ids ("Google", "VERIFY") are common for one-time codes.
#[derive(Clone, PartialEq, Eq)]
pub struct Sender(String);

/// Longest sender we accept; alphanumeric ids are at most 11 characters and numbers
/// 15 digits, so this leaves room for formatting without letting a client store essays.
const MAX_SENDER_CHARS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderError {
    #[error("sender is empty")]
    Empty,
    #[error("sender is longer than {MAX_SENDER_CHARS} characters")]
    TooLong,
    #[error("sender contains control characters")]
    ControlCharacter,
}

impl Sender {
    /// A sender that parses as a phone number is stored in E.164 form; anything else
    /// printable and short is kept as given.
    pub fn parse(input: &str) -> Result<Self, SenderError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(SenderError::Empty);
        }
        if trimmed.chars().count() > MAX_SENDER_CHARS {
            return Err(SenderError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(SenderError::ControlCharacter);
        }
        match PhoneNumber::parse(trimmed) {
            Ok(number) if trimmed.starts_with('+') || trimmed.starts_with("00") => {
                Ok(Self(number.0))
            }
            _ => Ok(Self(trimmed.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sender(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_presentation_to_e164() {
        for input in [
            "+1 415 555 0100",
            "+1-415-555-0100",
            "+1 (415) 555.0100",
            "0014155550100",
            "14155550100",
        ] {
            assert_eq!(
                PhoneNumber::parse(input).unwrap().as_str(),
                "+14155550100",
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        assert_eq!(PhoneNumber::parse(""), Err(PhoneNumberError::Empty));
        assert_eq!(
            PhoneNumber::parse("+1415abc"),
            Err(PhoneNumberError::InvalidCharacter)
        );
        assert_eq!(
            PhoneNumber::parse("1+415"),
            Err(PhoneNumberError::InvalidCharacter)
        );
        assert_eq!(
            PhoneNumber::parse("+1234567"),
            Err(PhoneNumberError::WrongLength)
        );
        assert_eq!(
            PhoneNumber::parse("+1234567890123456"),
            Err(PhoneNumberError::WrongLength)
        );
        assert_eq!(
            PhoneNumber::parse("+0123456789"),
            Err(PhoneNumberError::LeadingZero)
        );
    }

    #[test]
    fn debug_output_hides_the_number() {
        let number = PhoneNumber::parse("+14155550100").unwrap();
        assert!(!format!("{number:?}").contains("4155550"));
    }

    #[test]
    fn senders_keep_alphanumeric_ids_and_normalise_numbers() {
        assert_eq!(Sender::parse("Google").unwrap().as_str(), "Google");
        assert_eq!(Sender::parse("12345").unwrap().as_str(), "12345");
        assert_eq!(
            Sender::parse("+1 415 555 0100").unwrap().as_str(),
            "+14155550100"
        );
        assert_eq!(Sender::parse(" "), Err(SenderError::Empty));
        assert_eq!(Sender::parse("a\u{7}b"), Err(SenderError::ControlCharacter));
        assert_eq!(Sender::parse(&"x".repeat(33)), Err(SenderError::TooLong));
    }
}
