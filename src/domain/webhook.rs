//! Users' webhook URLs, validated once at the edge. Where they may point (the SSRF
//! guard) is decided by `hooks::ssrf`, which needs the network; this is only the shape.

use std::fmt;

/// Longest URL accepted.
pub const MAX_WEBHOOK_URL_CHARS: usize = 2048;

/// An absolute http(s) URL with a host.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("is longer than {MAX_WEBHOOK_URL_CHARS} characters")]
    TooLong,
    #[error("is not an absolute URL")]
    Invalid,
    #[error("must use the https or http scheme")]
    Scheme,
    #[error("has no host")]
    NoHost,
}

impl WebhookUrl {
    pub fn parse(text: &str) -> Result<Self, WebhookUrlError> {
        let text = text.trim();
        if text.chars().count() > MAX_WEBHOOK_URL_CHARS {
            return Err(WebhookUrlError::TooLong);
        }
        let url = url::Url::parse(text).map_err(|_| WebhookUrlError::Invalid)?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(WebhookUrlError::Scheme);
        }
        if url.host().is_none() {
            return Err(WebhookUrlError::NoHost);
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0.into()
    }
}

// URLs often carry the receiver's token: debug output shows only the host.
impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.0.host_str().unwrap_or("?");
        write!(f, "WebhookUrl({}://{host}/…)", self.0.scheme())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_http_urls_with_a_host() {
        let url = WebhookUrl::parse(" https://example.com/hook?token=abc ").unwrap();
        assert_eq!(url.as_url().host_str(), Some("example.com"));
        assert_eq!(format!("{url:?}"), "WebhookUrl(https://example.com/…)");
        assert_eq!(url.into_string(), "https://example.com/hook?token=abc");
    }

    #[test]
    fn refuses_other_shapes() {
        for (bad, error) in [
            ("not a url", WebhookUrlError::Invalid),
            ("/relative/path", WebhookUrlError::Invalid),
            ("http://", WebhookUrlError::Invalid),
            ("ftp://example.com/", WebhookUrlError::Scheme),
            ("file:///etc/passwd", WebhookUrlError::Scheme),
            ("unix:/run/socket", WebhookUrlError::Scheme),
        ] {
            assert_eq!(WebhookUrl::parse(bad), Err(error), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_WEBHOOK_URL_CHARS));
        assert_eq!(WebhookUrl::parse(&long), Err(WebhookUrlError::TooLong));
    }
}
