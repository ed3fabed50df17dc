//! Provider adapters: each verifies a webhook against the provider's own signature
//! scheme and turns it into a provider-neutral [`WebhookEvent`]: an inbound SMS, a
//! delivery report, or an authentic event we deliberately do not handle.
//!
//! Adapters see raw bytes, headers and the public URL; they never touch the store and
//! never parse a payload before its signature checks out.

pub mod bandwidth;
mod fields;
pub mod generic;
pub mod health;
mod jwt;
pub mod messagebird;
pub mod plivo;
pub mod registry;
pub mod replay;
pub mod send;
pub mod sinch;
pub mod sms_gateway;
pub mod telnyx;
pub mod twilio;
pub mod vonage;
pub mod vonage_messages;

use http::HeaderMap;

use crate::domain::{DeliveryReport, InboundSms, InboundSmsError, PhoneNumber, Secret};
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
    /// The nonces (or token ids) this request spends, noted by the replay guard once its
    /// signature checked out, so the handler can record them durably.
    pub spent: SpentNonces,
}

/// One nonce a verified request spends, and the last second (unix) a request carrying
/// it could still be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentNonce {
    pub nonce: String,
    pub last_accepted: i64,
}

/// The nonces one request spends, noted while an adapter checks it (an adapter takes
/// the request by shared reference).
#[derive(Debug, Default)]
pub struct SpentNonces(std::sync::Mutex<Vec<SpentNonce>>);

impl SpentNonces {
    pub fn note(&self, nonce: &str, last_accepted: i64) {
        let mut spent = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !spent.iter().any(|known| known.nonce == nonce) {
            spent.push(SpentNonce {
                nonce: nonce.to_owned(),
                last_accepted,
            });
        }
    }

    pub fn take(&self) -> Vec<SpentNonce> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Why a webhook was refused. Each variant maps to one HTTP status and stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the request carries no signature ({0} is missing)")]
    Unsigned(&'static str),
    /// Unsigned, from a provider that sends an unsigned callback after an internal error
    /// of its own and retries it (signed, with luck) only on a 5xx answer.
    #[error("the request carries no signature ({0} is missing); the provider is asked to retry")]
    UnsignedRetry(&'static str),
    #[error("the signature does not match")]
    BadSignature,
    #[error("the signature timestamp is outside the accepted window")]
    Stale,
    #[error("the request's nonce or token id was already used")]
    Replayed,
    #[error("the request is malformed: {0}")]
    Malformed(String),
    #[error("the message is invalid: {0}")]
    InvalidMessage(#[from] InboundSmsError),
}

/// What an authentic webhook turned out to be.
#[derive(Debug, Clone)]
pub enum WebhookEvent {
    /// A message for one of our numbers: store it, then acknowledge.
    Sms(InboundSms),
    /// A status callback for a message we sent.
    Report(DeliveryReport),
    /// An authentic event we deliberately do not handle (e.g. Telnyx `message.sent`, an
    /// Android gateway's data SMS): acknowledge it so the provider stops sending it.
    Ignored,
}

impl From<InboundSms> for WebhookEvent {
    fn from(sms: InboundSms) -> Self {
        Self::Sms(sms)
    }
}

impl From<DeliveryReport> for WebhookEvent {
    fn from(report: DeliveryReport) -> Self {
        Self::Report(report)
    }
}

/// The body a provider expects in its 2xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// An empty 200: what every provider without a reply format of its own expects.
pub const EMPTY_ACK: Ack = Ack {
    content_type: "text/plain; charset=utf-8",
    body: "",
};

/// The kinds of provider this build understands (the `kind` of a `[[providers]]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Twilio,
    Signalwire,
    Generic,
    /// Vonage (Nexmo) SMS API, signed with `sig`.
    Vonage,
    /// Vonage Messages API, signed with a JWT bearer token.
    VonageMessages,
    Plivo,
    Telnyx,
    Sinch,
    Bandwidth,
    /// MessageBird REST API webhooks, `MessageBird-Signature-JWT`.
    Messagebird,
    /// Bird platform webhook subscriptions, `messagebird-signature`.
    Bird,
    /// SMS Gateway for Android (capcom6).
    SmsGateway,
}

impl ProviderKind {
    pub const ALL: [Self; 12] = [
        Self::Twilio,
        Self::Signalwire,
        Self::Generic,
        Self::Vonage,
        Self::VonageMessages,
        Self::Plivo,
        Self::Telnyx,
        Self::Sinch,
        Self::Bandwidth,
        Self::Messagebird,
        Self::Bird,
        Self::SmsGateway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Signalwire => "signalwire",
            Self::Generic => "generic",
            Self::Vonage => "vonage",
            Self::VonageMessages => "vonage-messages",
            Self::Plivo => "plivo",
            Self::Telnyx => "telnyx",
            Self::Sinch => "sinch",
            Self::Bandwidth => "bandwidth",
            Self::Messagebird => "messagebird",
            Self::Bird => "bird",
            Self::SmsGateway => "sms-gateway",
        }
    }

    /// Whether the kind is keyed by `secret`. Telnyx signs with a key pair: it needs only
    /// the public key, which is not a secret.
    pub fn needs_secret(self) -> bool {
        !matches!(self, Self::Telnyx)
    }

    /// The [`ProviderOptions`] fields this kind requires (and the only ones it accepts).
    pub fn option_fields(self) -> &'static [OptionField] {
        match self {
            Self::Bandwidth => &[OptionField::Username],
            Self::Telnyx => &[OptionField::PublicKey],
            Self::Vonage => &[OptionField::SignatureMethod],
            _ => &[],
        }
    }
}

/// A per-kind setting beyond the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionField {
    Username,
    PublicKey,
    SignatureMethod,
}

impl OptionField {
    pub const ALL: [Self; 3] = [Self::Username, Self::PublicKey, Self::SignatureMethod];

    /// The key in a `[[providers]]` table.
    pub fn key(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::PublicKey => "public_key",
            Self::SignatureMethod => "signature_method",
        }
    }
}

/// What some kinds need besides the secret; see [`ProviderKind::option_fields`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderOptions {
    /// Bandwidth: the callback user id that comes with the password (`secret`).
    pub username: Option<String>,
    /// Telnyx: the account's Ed25519 public key, base64 (Mission Control → Keys).
    pub public_key: Option<String>,
    /// Vonage SMS API: `md5hash`, `md5`, `sha1`, `sha256` or `sha512`, as set for the account.
    pub signature_method: Option<String>,
    /// The provider's first pool number, for payloads that may not name the recipient
    /// (SMS Gateway for Android when the phone does not know its own number).
    pub fallback_number: Option<PhoneNumber>,
}

impl ProviderOptions {
    pub fn get(&self, field: OptionField) -> Option<&str> {
        match field {
            OptionField::Username => self.username.as_deref(),
            OptionField::PublicKey => self.public_key.as_deref(),
            OptionField::SignatureMethod => self.signature_method.as_deref(),
        }
    }
}

/// A configured provider account, ready to verify its webhooks.
#[derive(Debug, Clone)]
pub enum Adapter {
    Twilio(twilio::TwilioAdapter),
    Generic(generic::GenericAdapter),
    Vonage(vonage::VonageAdapter),
    VonageMessages(vonage_messages::VonageMessagesAdapter),
    Plivo(plivo::PlivoAdapter),
    Telnyx(telnyx::TelnyxAdapter),
    Sinch(sinch::SinchAdapter),
    Bandwidth(bandwidth::BandwidthAdapter),
    Messagebird(messagebird::MessagebirdAdapter),
    Bird(messagebird::BirdAdapter),
    SmsGateway(sms_gateway::SmsGatewayAdapter),
}

impl Adapter {
    /// Builds the adapter for `kind` from its signing secret (empty for Telnyx) and the
    /// kind's options. Errors name the setting at fault.
    pub fn new(
        kind: ProviderKind,
        secret: &Secret,
        options: &ProviderOptions,
    ) -> Result<Self, String> {
        let required = |field: OptionField| {
            options
                .get(field)
                .ok_or_else(|| format!("`{}` is required for kind {}", field.key(), kind.as_str()))
        };
        Ok(match kind {
            ProviderKind::Twilio => Self::Twilio(twilio::TwilioAdapter::twilio(secret.clone())),
            ProviderKind::Signalwire => {
                Self::Twilio(twilio::TwilioAdapter::signalwire(secret.clone()))
            }
            ProviderKind::Generic => Self::Generic(generic::GenericAdapter::new(secret)?),
            ProviderKind::Vonage => Self::Vonage(vonage::VonageAdapter::new(
                secret.clone(),
                required(OptionField::SignatureMethod)?,
            )?),
            ProviderKind::VonageMessages => {
                Self::VonageMessages(vonage_messages::VonageMessagesAdapter::new(secret.clone()))
            }
            ProviderKind::Plivo => Self::Plivo(plivo::PlivoAdapter::new(secret.clone())),
            ProviderKind::Telnyx => Self::Telnyx(telnyx::TelnyxAdapter::new(required(
                OptionField::PublicKey,
            )?)?),
            ProviderKind::Sinch => Self::Sinch(sinch::SinchAdapter::new(secret.clone())),
            ProviderKind::Bandwidth => Self::Bandwidth(bandwidth::BandwidthAdapter::new(
                required(OptionField::Username)?,
                secret.clone(),
            )),
            ProviderKind::Messagebird => {
                Self::Messagebird(messagebird::MessagebirdAdapter::new(secret.clone()))
            }
            ProviderKind::Bird => Self::Bird(messagebird::BirdAdapter::new(secret.clone())),
            ProviderKind::SmsGateway => Self::SmsGateway(sms_gateway::SmsGatewayAdapter::new(
                secret.clone(),
                options.fallback_number.clone(),
            )),
        })
    }

    /// Verifies the request and says what it carries: one event, except for providers
    /// that batch several into one request (Bandwidth).
    pub fn verify_and_parse(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        let one = |event: Result<WebhookEvent, WebhookError>| event.map(|event| vec![event]);
        match self {
            Self::Twilio(adapter) => one(adapter.verify_and_parse(request)),
            Self::Generic(adapter) => one(adapter.verify_and_parse(request).map(Into::into)),
            Self::Vonage(adapter) => one(adapter.verify_and_parse(request)),
            Self::VonageMessages(adapter) => one(adapter.verify_and_parse(request)),
            Self::Plivo(adapter) => one(adapter.verify_and_parse(request)),
            Self::Telnyx(adapter) => one(adapter.verify_and_parse(request)),
            Self::Sinch(adapter) => one(adapter.verify_and_parse(request)),
            Self::Bandwidth(adapter) => adapter.verify_and_parse(request),
            Self::Messagebird(adapter) => one(adapter.verify_and_parse(request)),
            Self::Bird(adapter) => one(adapter.verify_and_parse(request)),
            Self::SmsGateway(adapter) => one(adapter.verify_and_parse(request)),
        }
    }

    pub fn ack(&self) -> Ack {
        match self {
            Self::Twilio(_) => twilio::ACK,
            Self::Generic(_) => generic::ACK,
            Self::Plivo(_) => plivo::ACK,
            Self::Vonage(_)
            | Self::VonageMessages(_)
            | Self::Telnyx(_)
            | Self::Sinch(_)
            | Self::Bandwidth(_)
            | Self::Messagebird(_)
            | Self::Bird(_)
            | Self::SmsGateway(_) => EMPTY_ACK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_builds_an_adapter() {
        let options = ProviderOptions {
            username: Some("user".into()),
            public_key: Some("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".into()),
            signature_method: Some("sha256".into()),
            fallback_number: None,
        };
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        for kind in ProviderKind::ALL {
            let secret = if kind.needs_secret() {
                secret.clone()
            } else {
                Secret::default()
            };
            assert!(Adapter::new(kind, &secret, &options).is_ok(), "{kind:?}");
        }
    }

    #[test]
    fn kind_names_round_trip_through_serde() {
        for kind in ProviderKind::ALL {
            let text = serde_json::to_string(&kind).unwrap();
            assert_eq!(text, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<ProviderKind>(&text).unwrap(), kind);
        }
    }
}
