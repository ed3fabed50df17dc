//! Reading headers and payload fields once a request is authentic.
//!
//! Errors name the header or field, never its content: payloads carry message text and
//! phone numbers, and refusals are logged.

use std::borrow::Cow;

use http::HeaderMap;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::{WebhookError, WebhookRequest};

/// A header that must be present, as visible ASCII.
pub fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, WebhookError> {
    optional_header(headers, name)?.ok_or(WebhookError::Unsigned(name))
}

/// A header that may be absent, as visible ASCII.
pub fn optional_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h str>, WebhookError> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| WebhookError::Malformed(format!("{name} is not visible ASCII")))
        })
        .transpose()
}

pub fn malformed(what: impl std::fmt::Display) -> WebhookError {
    WebhookError::Malformed(what.to_string())
}

pub fn parse_json(body: &[u8]) -> Result<Value, WebhookError> {
    serde_json::from_slice(body).map_err(|_| malformed("the body is not valid JSON"))
}

/// The string at `path` (object keys, or array indexes written as numbers), or `None`
/// when absent or null. Numbers and booleans are read as their JSON text, since
/// providers are not consistent about quoting ids and codes.
pub fn json_str<'v>(value: &'v Value, path: &[&str]) -> Result<Option<Cow<'v, str>>, WebhookError> {
    let mut current = value;
    for segment in path {
        let next = match current {
            Value::Object(map) => map.get(*segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(next) => current = next,
            None => return Ok(None),
        }
    }
    match current {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(Cow::Borrowed(text))),
        Value::Number(number) => Ok(Some(Cow::Owned(number.to_string()))),
        Value::Bool(flag) => Ok(Some(Cow::Owned(flag.to_string()))),
        _ => Err(malformed(format_args!(
            "the field `{}` is not a string",
            path.join(".")
        ))),
    }
}

/// Like [`json_str`], but the field must be there.
pub fn json_required<'v>(value: &'v Value, path: &[&str]) -> Result<Cow<'v, str>, WebhookError> {
    json_str(value, path)?.ok_or_else(|| missing(&path.join(".")))
}

pub fn missing(name: &str) -> WebhookError {
    malformed(format_args!("the webhook has no `{name}` field"))
}

/// Octets written as hex (a binary SMS's `udh` or data), either case.
pub fn hex_octets(name: &str, text: &str) -> Result<Vec<u8>, WebhookError> {
    hex::decode(text.trim()).map_err(|_| malformed(format_args!("the field `{name}` is not hex")))
}

/// Form fields (a POST body or a query string), decoded.
pub type Form<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// A callback's parameters: the form body of a POST or, when there is no body (a GET
/// callback), the query string.
pub fn form_params<'a>(url: &'a str, body: &'a [u8]) -> Form<'a> {
    if body.is_empty() {
        form_urlencoded::parse(query_of(url).as_bytes()).collect()
    } else {
        form_urlencoded::parse(body).collect()
    }
}

/// The parameters of a callback that may come as a GET query, a POST form or a flat JSON
/// object (numbers and booleans as their text, null as empty), as Vonage and MessageBird
/// send them.
pub fn flat_params<'r>(request: &'r WebhookRequest<'_>) -> Result<Form<'r>, WebhookError> {
    if request.body.is_empty() || !is_json(request.headers) {
        return Ok(form_params(request.public_url, request.body));
    }
    let value = parse_json(request.body)?;
    let object = value
        .as_object()
        .ok_or_else(|| malformed("the JSON body is not an object"))?;
    let mut out = Vec::with_capacity(object.len());
    for (name, value) in object {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            Value::Null => String::new(),
            _ => {
                return Err(malformed(format_args!(
                    "the field `{name}` is not a scalar"
                )));
            }
        };
        out.push((name.clone().into(), text.into()));
    }
    Ok(out)
}

pub fn form_get<'f>(form: &'f Form<'_>, name: &str) -> Option<&'f str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| &**value)
}

pub fn form_required<'f>(form: &'f Form<'_>, name: &str) -> Result<&'f str, WebhookError> {
    form_get(form, name).ok_or_else(|| missing(name))
}

/// The raw query string of `url` (without `?` and any fragment), or "" if there is none.
pub fn query_of(url: &str) -> &str {
    let without_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    without_fragment
        .split_once('?')
        .map_or("", |(_, query)| query)
}

pub fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|media| media.eq_ignore_ascii_case("application/json"))
}

fn media_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .split(';')
        .next()
        .map(str::trim)
}

/// An RFC 3339 timestamp as unix milliseconds.
pub fn rfc3339_ms(name: &str, text: &str) -> Result<i64, WebhookError> {
    let instant = OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|_| malformed(format_args!("`{name}` is not an RFC 3339 timestamp")))?;
    to_ms(name, instant)
}

/// `YYYY-MM-DD HH:MM:SS` (optionally with a fraction), read as UTC: how Vonage and Plivo
/// write times.
pub fn utc_datetime_ms(name: &str, text: &str) -> Result<i64, WebhookError> {
    let invalid = || malformed(format_args!("`{name}` is not a `YYYY-MM-DD HH:MM:SS` time"));
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let instant = PrimitiveDateTime::parse(whole, &format)
        .map_err(|_| invalid())?
        .assume_utc();
    let mut ms = to_ms(name, instant)?;
    if !fraction.is_empty() {
        if !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let millis: String = fraction.chars().chain("000".chars()).take(3).collect();
        ms += millis.parse::<i64>().map_err(|_| invalid())?;
    }
    Ok(ms)
}

fn to_ms(name: &str, instant: OffsetDateTime) -> Result<i64, WebhookError> {
    i64::try_from(instant.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| malformed(format_args!("`{name}` is out of range")))
}

/// Vonage, Plivo and Sinch write international numbers without the `+`. A sender that is
/// all digits and long enough to be one gets it back, so the same person is the same
/// sender whichever provider delivered the message; short codes stay as they are.
pub fn international_sender(raw: &str) -> Cow<'_, str> {
    let digits = raw.trim();
    if (10..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Cow::Owned(format!("+{digits}"))
    } else {
        Cow::Borrowed(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_read_strings_numbers_and_arrays() {
        let value: Value =
            serde_json::from_str(r#"{"a":{"b":[{"c":"x"}],"n":42,"z":null,"o":{}}}"#).unwrap();
        assert_eq!(
            json_str(&value, &["a", "b", "0", "c"]).unwrap().unwrap(),
            "x"
        );
        assert_eq!(json_str(&value, &["a", "n"]).unwrap().unwrap(), "42");
        assert_eq!(json_str(&value, &["a", "z"]).unwrap(), None);
        assert_eq!(json_str(&value, &["a", "b", "1", "c"]).unwrap(), None);
        assert!(json_str(&value, &["a", "o"]).is_err());
        assert_eq!(json_required(&value, &["q"]).unwrap_err(), missing("q"));
    }

    #[test]
    fn times_parse() {
        assert_eq!(
            rfc3339_ms("t", "2024-01-01T00:00:00.250+00:00").unwrap(),
            1_704_067_200_250
        );
        assert_eq!(
            utc_datetime_ms("t", "2024-01-01 00:00:01").unwrap(),
            1_704_067_201_000
        );
        assert_eq!(
            utc_datetime_ms("t", "2024-01-01 00:00:01.123456").unwrap(),
            1_704_067_201_123
        );
        assert!(utc_datetime_ms("t", "yesterday").is_err());
        assert!(rfc3339_ms("t", "2024-01-01").is_err());
    }

    #[test]
    fn international_senders_get_their_plus() {
        assert_eq!(international_sender("447700900001"), "+447700900001");
        assert_eq!(international_sender("12345"), "12345");
        assert_eq!(international_sender("Google"), "Google");
        assert_eq!(international_sender("+14155550100"), "+14155550100");
    }
}
