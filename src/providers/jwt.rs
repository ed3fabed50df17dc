//! HMAC-signed JWTs (HS256/384/512), as Vonage Messages and MessageBird sign webhooks.
//!
//! Written out rather than taken from `jsonwebtoken` because the claims these providers
//! use (`payload_hash`, `url_hash`, a `jti` to remember) and the clock (the request's
//! `now_unix`, so windows are testable) are checked by the adapters themselves; all this
//! does is prove the token was made with the key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};

use super::WebhookError;

/// The HMAC algorithms a provider may use; anything else (notably `none`) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Hs256,
    Hs384,
    Hs512,
}

impl Alg {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(Self::Hs256),
            "HS384" => Some(Self::Hs384),
            "HS512" => Some(Self::Hs512),
            _ => None,
        }
    }
}

/// The claims of `token` if it is signed with `key` by one of `allowed`.
pub fn verify(
    token: &str,
    key: &[u8],
    allowed: &[Alg],
) -> Result<Map<String, Value>, WebhookError> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(WebhookError::Malformed("the token is not a JWT".to_owned()));
    };
    let header = decode_object(header)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Alg::from_name)
        .filter(|alg| allowed.contains(alg))
        .ok_or(WebhookError::BadSignature)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature.trim_end_matches('='))
        .map_err(|_| WebhookError::BadSignature)?;
    let signed = &token.trim().as_bytes()[..header_and_payload_len(token.trim())];
    let authentic = match alg {
        Alg::Hs256 => mac_matches::<Hmac<Sha256>>(key, signed, &signature),
        Alg::Hs384 => mac_matches::<Hmac<Sha384>>(key, signed, &signature),
        Alg::Hs512 => mac_matches::<Hmac<Sha512>>(key, signed, &signature),
    };
    if !authentic {
        return Err(WebhookError::BadSignature);
    }
    decode_object(payload)
}

/// Length of `header.payload`, the part the signature covers.
fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

fn mac_matches<M: Mac + KeyInit>(key: &[u8], signed: &[u8], signature: &[u8]) -> bool {
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
        return false;
    };
    mac.update(signed);
    // `verify_slice` compares in constant time.
    mac.verify_slice(signature).is_ok()
}

fn decode_object(part: &str) -> Result<Map<String, Value>, WebhookError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| WebhookError::Malformed("the token is not base64url".to_owned()))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(WebhookError::Malformed(
            "the token does not hold a JSON object".to_owned(),
        )),
    }
}

/// A claim that must be an integer (JWT times are unix seconds).
pub fn int_claim(claims: &Map<String, Value>, name: &str) -> Result<i64, WebhookError> {
    claims
        .get(name)
        .and_then(Value::as_i64)
        .ok_or_else(|| WebhookError::Malformed(format!("the token has no integer `{name}` claim")))
}

/// A claim that must be a string.
pub fn str_claim<'c>(claims: &'c Map<String, Value>, name: &str) -> Result<&'c str, WebhookError> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::Malformed(format!("the token has no `{name}` claim")))
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn mint(alg: jsonwebtoken::Algorithm, key: &[u8]) -> String {
        let claims = serde_json::json!({"jti": "x", "iat": 5});
        jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key)).unwrap()
    }

    #[test]
    fn accepts_allowed_algorithms_with_the_key() {
        use jsonwebtoken::Algorithm::*;
        let all = [Alg::Hs256, Alg::Hs384, Alg::Hs512];
        for alg in [HS256, HS384, HS512] {
            let claims = verify(&mint(alg, b"k"), b"k", &all).unwrap();
            assert_eq!(int_claim(&claims, "iat").unwrap(), 5);
            assert_eq!(str_claim(&claims, "jti").unwrap(), "x");
            assert_eq!(
                verify(&mint(alg, b"k"), b"other", &all),
                Err(WebhookError::BadSignature)
            );
        }
        assert_eq!(
            verify(&mint(HS512, b"k"), b"k", &[Alg::Hs256]),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn refuses_none_and_garbage() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"jti":"x"}"#);
        let unsigned = format!("{header}.{payload}.");
        assert_eq!(
            verify(&unsigned, b"k", &[Alg::Hs256]),
            Err(WebhookError::BadSignature)
        );
        assert!(matches!(
            verify("a.b", b"k", &[Alg::Hs256]),
            Err(WebhookError::Malformed(_))
        ));
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }
}
