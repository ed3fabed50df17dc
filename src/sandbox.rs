//! The built-in sandbox provider: three fictional numbers and a Standard Webhooks
//! secret derived from the master key, so `burnbox simulate` on the same machine can
//! sign for it without any setup.

use base64::Engine;

use crate::config::{
    NumberConfig, NumberSettings, ProviderConfig, ProviderSettings, SANDBOX_PROVIDER,
};
use crate::domain::{PhoneNumber, Secret};
use crate::providers::{ProviderKind, ProviderOptions};
use crate::store::MasterKey;

/// From the 555-0100..0199 block, which North American numbering reserves for fiction:
/// no real phone can ever have these numbers.
pub const NUMBERS: [&str; 3] = ["+12025550101", "+12025550102", "+12025550103"];

/// The sender `burnbox simulate` uses when none is given (same fictional block).
pub const DEFAULT_SENDER: &str = "+12025550199";

/// The sandbox's webhook secret, `whsec_…`.
pub fn secret(master: &MasterKey) -> Secret {
    let key = master.derive("sandbox-webhook/1");
    Secret::new(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

/// The sandbox as a provider entry, like one from the configuration file.
pub fn provider(master: &MasterKey) -> ProviderConfig {
    ProviderConfig {
        name: SANDBOX_PROVIDER.to_owned(),
        kind: ProviderKind::Generic,
        secret: secret(master),
        options: ProviderOptions::default(),
        numbers: NUMBERS
            .iter()
            .filter_map(|number| PhoneNumber::parse(number).ok())
            .map(|number| NumberConfig {
                number,
                retention: None,
            })
            .collect(),
        api: None,
        fallback: Vec::new(),
        public_url: None,
        // What the admin API shows; the secret is derived, never configured.
        settings: ProviderSettings {
            numbers: NUMBERS
                .iter()
                .map(|number| NumberSettings::Plain((*number).to_owned()))
                .collect(),
            ..ProviderSettings::new(SANDBOX_PROVIDER, ProviderKind::Generic)
        },
    }
}
