//! Provider adapters: each verifies a webhook against the provider's own signature
//! scheme and turns it into a provider-neutral [`InboundSms`].
//!
//! Adapters see raw bytes, headers and the public URL; they never touch the store and
//! never parse a payload before its signature checks out.

pub mod generic;
pub mod twilio;

use http::HeaderMap;

use crate::domain::{InboundSms, InboundSmsError, Secret};

/// What an adapter needs to know about one webhook request.
pub struct WebhookRequest<'a> {
    /// The URL exactly as the provider requested it: public scheme, host, optional port,
    /// path and the raw (still percent-encoded) query string.
    pub public_url: &'a str,
    pub headers: &'a HeaderMap,
    /// The raw body, byte for byte as received.
    pub body: &'a [u8],
    /// The current time, unix seconds (injected so timestamp windows are testable).
    pub now_unix: i64,
}

/// Why a webhook was refused. Each variant maps to one HTTP status and stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the request carries no signature ({0} is missing)")]
    Unsigned(&'static str),
    #[error("the signature does not match")]
    BadSignature,
    #[error("the signature timestamp is outside the accepted window")]
    Stale,
    #[error("the request is malformed: {0}")]
    Malformed(String),
    #[error("the message is invalid: {0}")]
    InvalidMessage(#[from] InboundSmsError),
}

/// The body a provider expects in its 2xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The kinds of provider this build understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Twilio,
    Signalwire,
    Generic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Signalwire => "signalwire",
            Self::Generic => "generic",
        }
    }
}

/// A configured provider account, ready to verify its webhooks.
#[derive(Debug, Clone)]
pub enum Adapter {
    Twilio(twilio::TwilioAdapter),
    Generic(generic::GenericAdapter),
}

impl Adapter {
    /// Builds the adapter for `kind` with its signing secret (Twilio auth token,
    /// SignalWire signing key, or Standard Webhooks `whsec_…` secret).
    pub fn new(kind: ProviderKind, secret: &Secret) -> Result<Self, String> {
        Ok(match kind {
            ProviderKind::Twilio => Self::Twilio(twilio::TwilioAdapter::twilio(secret.clone())),
            ProviderKind::Signalwire => {
                Self::Twilio(twilio::TwilioAdapter::signalwire(secret.clone()))
            }
            ProviderKind::Generic => Self::Generic(generic::GenericAdapter::new(secret)?),
        })
    }

    pub fn verify_and_parse(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<InboundSms, WebhookError> {
        match self {
            Self::Twilio(adapter) => adapter.verify_and_parse(request),
            Self::Generic(adapter) => adapter.verify_and_parse(request),
        }
    }

    pub fn ack(&self) -> Ack {
        match self {
            Self::Twilio(_) => twilio::ACK,
            Self::Generic(_) => generic::ACK,
        }
    }
}
