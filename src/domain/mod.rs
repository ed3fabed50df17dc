//! Plain types and rules of the product. No I/O, no knowledge of HTTP or storage.

mod delivery;
mod email;
pub mod otp;
mod outbound;
mod phone;
mod secret;
mod sms;
pub mod udh;
pub mod user_data;
mod webhook;

pub use delivery::{DeliveryReport, DeliveryStatus};
pub use email::{EmailAddress, EmailAddressError};
pub use outbound::{
    MAX_OUTBOUND_CHARS, OutboundStatus, OutboundText, OutboundTextError, same_country,
};
pub use phone::{PhoneNumber, PhoneNumberError, Sender, SenderError};
pub use secret::Secret;
pub use sms::{InboundSms, InboundSmsError, MAX_TEXT_BYTES, MessagePart, ProviderMessageId};
pub use webhook::{MAX_WEBHOOK_URL_CHARS, WebhookUrl, WebhookUrlError};
