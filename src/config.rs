//! Settings: one declaration per setting, layered default → TOML file → `BURNBOX_*`
//! environment → command-line flag, then validated into a [`Config`] the server trusts.
//!
//! Every scalar setting is listed once in [`SETTINGS`] with its TOML key, environment
//! variable, default and the reason for that default. The environment overlay, the
//! `*_FILE` variants for secrets and the test that keeps `config.example.toml` honest are
//! all driven from that list.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::domain::{PhoneNumber, Secret};
use crate::providers::send::{ApiConfig, ApiCredentials};
use crate::providers::{Adapter, OptionField, ProviderKind, ProviderOptions};

/// The value shape of a setting, used to type values that arrive as environment strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Bool,
    /// A comma-separated list in the environment, an array in TOML.
    List,
    /// A secret: also readable from the file named by `<key>_file` / `BURNBOX_<KEY>_FILE`.
    Secret,
}

/// One setting's declaration.
#[derive(Debug)]
pub struct SettingSpec {
    pub key: &'static str,
    pub kind: Kind,
    /// The default as it appears in TOML, or `None` when unset by default.
    pub default: Option<&'static str>,
    pub reason: &'static str,
}

impl SettingSpec {
    pub fn env_name(&self) -> String {
        format!("BURNBOX_{}", self.key.to_ascii_uppercase())
    }
}

/// Every scalar setting. `[[providers]]` tables are documented in `config.example.toml`.
pub const SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        key: "data_dir",
        kind: Kind::Text,
        default: Some("\"./burnbox-data\""),
        reason: "store, master key and TLS certificate live here; created with mode 0700",
    },
    SettingSpec {
        key: "listen",
        kind: Kind::Text,
        default: Some("\"127.0.0.1:8080\""),
        reason: "plain HTTP listener; loopback so a fresh install is not exposed; empty disables it",
    },
    SettingSpec {
        key: "tls_listen",
        kind: Kind::Text,
        default: Some("\"127.0.0.1:8443\""),
        reason: "HTTPS listener (TLS 1.3 only); empty disables it",
    },
    SettingSpec {
        key: "tls_cert",
        kind: Kind::Text,
        default: None,
        reason: "PEM certificate chain; unset means a self-signed one is generated in data_dir/tls",
    },
    SettingSpec {
        key: "tls_key",
        kind: Kind::Text,
        default: None,
        reason: "PEM private key for tls_cert",
    },
    SettingSpec {
        key: "public_url",
        kind: Kind::Text,
        default: None,
        reason: "the URL providers call (https://sms.example.com); signatures cover it, so set it behind a proxy",
    },
    SettingSpec {
        key: "trusted_proxies",
        kind: Kind::List,
        default: Some("[]"),
        reason: "CIDRs whose X-Forwarded-Proto/Host/For are believed; nobody by default, so clients cannot spoof the URL or their address",
    },
    SettingSpec {
        key: "master_key",
        kind: Kind::Secret,
        default: None,
        reason: "256-bit key (64 hex chars or base64) encrypting the store; unset means data_dir/master.key is generated",
    },
    SettingSpec {
        key: "admin_password",
        kind: Kind::Secret,
        default: None,
        reason: "password given to the `admin` account when it is first created; unset means a random one is printed once",
    },
    SettingSpec {
        key: "retention",
        kind: Kind::Text,
        default: Some("\"24h\""),
        reason: "disposable means disposable: messages are deleted this long after they arrive (sent messages and delivery reports this long after they were stored)",
    },
    SettingSpec {
        key: "sweep_interval",
        kind: Kind::Text,
        default: Some("\"30s\""),
        reason: "how often expired messages are looked for; a message outlives its retention by at most this",
    },
    SettingSpec {
        key: "multipart_timeout",
        kind: Kind::Text,
        default: Some("\"5m\""),
        reason: "a long SMS whose parts arrive separately waits this long for a missing part, then is stored with a gap and flagged partial",
    },
    SettingSpec {
        key: "sweep_batch",
        kind: Kind::Integer,
        default: Some("256"),
        reason: "deletions per write transaction, so a large sweep never holds up ingest for more than a few ms",
    },
    SettingSpec {
        key: "access_token_ttl",
        kind: Kind::Text,
        default: Some("\"15m\""),
        reason: "JWT access tokens are short-lived; clients renew them with the refresh token",
    },
    SettingSpec {
        key: "refresh_token_ttl",
        kind: Kind::Text,
        default: Some("\"30d\""),
        reason: "a login stays valid this long after its last use (each refresh restarts it)",
    },
    SettingSpec {
        key: "guest_session",
        kind: Kind::Text,
        default: Some("\"1h\""),
        reason: "a guest session ends this long after it starts; then the guest's account and messages go",
    },
    SettingSpec {
        key: "registration",
        kind: Kind::Text,
        default: Some("\"closed\""),
        reason: "who may create an account: \"closed\" (admins only), \"invite\" (with an admin's code), \"open\" (anyone who confirms an e-mail address; without SMTP an admin approves)",
    },
    SettingSpec {
        key: "smtp_host",
        kind: Kind::Text,
        default: None,
        reason: "mail relay for e-mail verification and password resets; unset means burnbox sends no e-mail",
    },
    SettingSpec {
        key: "smtp_port",
        kind: Kind::Integer,
        default: Some("587"),
        reason: "587 for STARTTLS submission, 465 for implicit TLS, 25 for a local relay",
    },
    SettingSpec {
        key: "smtp_security",
        kind: Kind::Text,
        default: Some("\"starttls\""),
        reason: "\"starttls\" (required, never downgraded), \"tls\" (implicit TLS) or \"none\" (only for a relay on this host)",
    },
    SettingSpec {
        key: "smtp_username",
        kind: Kind::Text,
        default: None,
        reason: "SMTP AUTH user name; unset means no authentication",
    },
    SettingSpec {
        key: "smtp_password",
        kind: Kind::Secret,
        default: None,
        reason: "SMTP AUTH password",
    },
    SettingSpec {
        key: "smtp_from",
        kind: Kind::Text,
        default: None,
        reason: "sender of burnbox's e-mail, e.g. \"burnbox <sms@example.com>\"; required with smtp_host",
    },
    SettingSpec {
        key: "smtp_ca_file",
        kind: Kind::Text,
        default: None,
        reason: "PEM CA certificate to trust for the relay (a private CA); the public web roots are always trusted",
    },
    SettingSpec {
        key: "email_verification_ttl",
        kind: Kind::Text,
        default: Some("\"24h\""),
        reason: "how long an e-mail verification link works",
    },
    SettingSpec {
        key: "password_reset_ttl",
        kind: Kind::Text,
        default: Some("\"1h\""),
        reason: "how long a password-reset link works; short, since it opens an account",
    },
    SettingSpec {
        key: "quarantine",
        kind: Kind::Text,
        default: Some("\"24h\""),
        reason: "a released number rests this long before anyone else can lease it, so late codes never reach a new holder",
    },
    SettingSpec {
        key: "lease_user",
        kind: Kind::Text,
        default: Some("\"24h\""),
        reason: "how long a user's lease lasts unless they ask for another length (60 s up to lease_max)",
    },
    SettingSpec {
        key: "lease_guest",
        kind: Kind::Text,
        default: Some("\"1h\""),
        reason: "how long a guest's lease lasts; guests are anonymous, so keep it short",
    },
    SettingSpec {
        key: "lease_max",
        kind: Kind::Text,
        default: Some("\"7d\""),
        reason: "no lease, however often extended, runs longer than this from now",
    },
    SettingSpec {
        key: "user_max_leases",
        kind: Kind::Integer,
        default: Some("5"),
        reason: "active leases per user, so one account cannot take the whole pool (guests: always 1)",
    },
    SettingSpec {
        key: "rate_limit_user",
        kind: Kind::Integer,
        default: Some("100"),
        reason: "API requests per minute per user account (0 turns the limit off)",
    },
    SettingSpec {
        key: "rate_limit_guest",
        kind: Kind::Integer,
        default: Some("60"),
        reason: "API requests per minute per guest session (0 turns the limit off)",
    },
    SettingSpec {
        key: "rate_limit_admin",
        kind: Kind::Integer,
        default: Some("1200"),
        reason: "API requests per minute per admin account; high, since admin scripts page through everything",
    },
    SettingSpec {
        key: "rate_limit_anonymous",
        kind: Kind::Integer,
        default: Some("30"),
        reason: "requests per minute per client address to endpoints that need no account (login, refresh, guest, sign-up, e-mail links); 0 turns it off",
    },
    SettingSpec {
        key: "rate_limit_webhooks",
        kind: Kind::Integer,
        default: Some("6000"),
        reason: "webhooks per minute per sending address, counted apart from API limits (0 turns it off)",
    },
    SettingSpec {
        key: "webhook_body_limit",
        kind: Kind::Integer,
        default: Some("65536"),
        reason: "bytes; a provider webhook is a few KiB, anything larger is refused with 413 before parsing",
    },
    SettingSpec {
        key: "api_body_limit",
        kind: Kind::Integer,
        default: Some("65536"),
        reason: "bytes; API requests are small JSON documents",
    },
    SettingSpec {
        key: "request_timeout",
        kind: Kind::Text,
        default: Some("\"30s\""),
        reason: "a request unanswered after this gets 503 (a long poll: after its own timeout on top), and a connection that sends no complete request head in this time (HTTP/2: has nothing in progress) is closed",
    },
    SettingSpec {
        key: "metrics_token",
        kind: Kind::Secret,
        default: None,
        reason: "Bearer token a Prometheus scrape presents at /metrics; admins can always read it",
    },
    SettingSpec {
        key: "realtime_queue",
        kind: Kind::Integer,
        default: Some("256"),
        reason: "events a WebSocket/SSE/Socket.IO client may have waiting; one that falls further behind is dropped with a resume id instead of slowing anyone",
    },
    SettingSpec {
        key: "realtime_keepalive",
        kind: Kind::Text,
        default: Some("\"20s\""),
        reason: "WebSocket and Socket.IO ping and SSE comment interval, below the idle timeouts of common proxies (60 s)",
    },
    SettingSpec {
        key: "realtime_idle_timeout",
        kind: Kind::Text,
        default: Some("\"60s\""),
        reason: "a WebSocket or Socket.IO client that sends nothing, not even a pong, for this long is closed as dead",
    },
    SettingSpec {
        key: "realtime_write_timeout",
        kind: Kind::Text,
        default: Some("\"10s\""),
        reason: "a WebSocket whose client does not take one frame within this is dropped (it resumes by id); SSE and Socket.IO fall back on realtime_queue",
    },
    SettingSpec {
        key: "realtime_max_connections_per_user",
        kind: Kind::Integer,
        default: Some("20"),
        reason: "open WebSocket/SSE/Socket.IO connections per account (0 turns the limit off)",
    },
    SettingSpec {
        key: "realtime_max_connections_per_ip",
        kind: Kind::Integer,
        default: Some("50"),
        reason: "open WebSocket/SSE/Socket.IO connections per client address, IPv6 per /64 (0 turns the limit off)",
    },
    SettingSpec {
        key: "realtime_max_subscriptions",
        kind: Kind::Integer,
        default: Some("50"),
        reason: "numbers one connection may follow at once",
    },
    SettingSpec {
        key: "log",
        kind: Kind::Text,
        default: Some("\"info\""),
        reason: "tracing filter (e.g. \"info,burnbox=debug\"); RUST_LOG overrides it",
    },
    SettingSpec {
        key: "users_may_send",
        kind: Kind::Bool,
        default: Some("false"),
        reason: "whether users (not only admins) may send SMS from the numbers they lease; guests never may",
    },
    SettingSpec {
        key: "send_timeout",
        kind: Kind::Text,
        default: Some("\"10s\""),
        reason: "one call to a provider's API gives up after this and counts as a retryable failure",
    },
    SettingSpec {
        key: "send_max_attempts",
        kind: Kind::Integer,
        default: Some("6"),
        reason: "provider calls per outbound message at most (failovers included) before it is marked failed; as many rounds in a row with no provider to call fail it too",
    },
    SettingSpec {
        key: "send_backoff",
        kind: Kind::Text,
        default: Some("\"2s\""),
        reason: "wait before the first retry round; each further round waits twice as long",
    },
    SettingSpec {
        key: "send_backoff_max",
        kind: Kind::Text,
        default: Some("\"5m\""),
        reason: "the longest wait between retry rounds, so a long outage retries every few minutes",
    },
    SettingSpec {
        key: "provider_probe_interval",
        kind: Kind::Text,
        default: Some("\"60s\""),
        reason: "how often each provider's API is probed with a cheap authenticated call (account or balance)",
    },
    SettingSpec {
        key: "breaker_failures",
        kind: Kind::Integer,
        default: Some("3"),
        reason: "consecutive failed probes or sends that mark a provider unhealthy (its messages go to a fallback)",
    },
    SettingSpec {
        key: "webhooks_allow_private",
        kind: Kind::Bool,
        default: Some("false"),
        reason: "whether user webhooks may reach loopback, private, link-local, CGNAT or this host's own addresses (SSRF guard, checked at connect time)",
    },
    SettingSpec {
        key: "webhooks_max_per_user",
        kind: Kind::Integer,
        default: Some("5"),
        reason: "webhook URLs one account may register (0: nobody may register one)",
    },
    SettingSpec {
        key: "webhooks_timeout",
        kind: Kind::Text,
        default: Some("\"10s\""),
        reason: "one webhook delivery attempt gives up after this and is retried",
    },
    SettingSpec {
        key: "webhooks_backoff",
        kind: Kind::Text,
        default: Some("\"5s\""),
        reason: "wait before the first webhook retry; each further retry waits twice as long",
    },
    SettingSpec {
        key: "webhooks_backoff_max",
        kind: Kind::Text,
        default: Some("\"1h\""),
        reason: "the longest wait between webhook retries",
    },
    SettingSpec {
        key: "webhooks_give_up",
        kind: Kind::Text,
        default: Some("\"24h\""),
        reason: "a webhook delivery still failing this long after it was queued (within moments of the message arriving) is dropped",
    },
    SettingSpec {
        key: "breaker_cooldown",
        kind: Kind::Text,
        default: Some("\"30s\""),
        reason: "how long an unhealthy provider rests before it is tried again (half-open)",
    },
    SettingSpec {
        key: "sandbox",
        kind: Kind::Bool,
        default: Some("true"),
        reason: "a built-in provider with three fictional numbers so `burnbox simulate` works out of the box",
    },
];

/// Settings as read, before validation. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: String,
    pub tls_listen: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub public_url: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub master_key: Option<Secret>,
    pub admin_password: Option<Secret>,
    pub retention: String,
    pub sweep_interval: String,
    pub sweep_batch: usize,
    pub multipart_timeout: String,
    pub access_token_ttl: String,
    pub refresh_token_ttl: String,
    pub guest_session: String,
    pub registration: String,
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub smtp_security: String,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<Secret>,
    pub smtp_from: Option<String>,
    pub smtp_ca_file: Option<PathBuf>,
    pub email_verification_ttl: String,
    pub password_reset_ttl: String,
    pub quarantine: String,
    pub lease_user: String,
    pub lease_guest: String,
    pub lease_max: String,
    pub user_max_leases: usize,
    pub rate_limit_user: u32,
    pub rate_limit_guest: u32,
    pub rate_limit_admin: u32,
    pub rate_limit_anonymous: u32,
    pub rate_limit_webhooks: u32,
    pub webhook_body_limit: usize,
    pub api_body_limit: usize,
    pub request_timeout: String,
    pub metrics_token: Option<Secret>,
    pub realtime_queue: usize,
    pub realtime_keepalive: String,
    pub realtime_idle_timeout: String,
    pub realtime_write_timeout: String,
    pub realtime_max_connections_per_user: usize,
    pub realtime_max_connections_per_ip: usize,
    pub realtime_max_subscriptions: usize,
    pub log: String,
    pub users_may_send: bool,
    pub send_timeout: String,
    pub send_max_attempts: u32,
    pub send_backoff: String,
    pub send_backoff_max: String,
    pub provider_probe_interval: String,
    pub breaker_failures: u32,
    pub breaker_cooldown: String,
    pub webhooks_allow_private: bool,
    pub webhooks_max_per_user: usize,
    pub webhooks_timeout: String,
    pub webhooks_backoff: String,
    pub webhooks_backoff_max: String,
    pub webhooks_give_up: String,
    pub sandbox: bool,
    pub providers: Vec<ProviderSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./burnbox-data"),
            listen: "127.0.0.1:8080".into(),
            tls_listen: "127.0.0.1:8443".into(),
            tls_cert: None,
            tls_key: None,
            public_url: None,
            trusted_proxies: Vec::new(),
            master_key: None,
            admin_password: None,
            retention: "24h".into(),
            sweep_interval: "30s".into(),
            sweep_batch: 256,
            multipart_timeout: "5m".into(),
            access_token_ttl: "15m".into(),
            refresh_token_ttl: "30d".into(),
            guest_session: "1h".into(),
            registration: "closed".into(),
            smtp_host: None,
            smtp_port: 587,
            smtp_security: "starttls".into(),
            smtp_username: None,
            smtp_password: None,
            smtp_from: None,
            smtp_ca_file: None,
            email_verification_ttl: "24h".into(),
            password_reset_ttl: "1h".into(),
            quarantine: "24h".into(),
            lease_user: "24h".into(),
            lease_guest: "1h".into(),
            lease_max: "7d".into(),
            user_max_leases: 5,
            rate_limit_user: 100,
            rate_limit_guest: 60,
            rate_limit_admin: 1200,
            rate_limit_anonymous: 30,
            rate_limit_webhooks: 6000,
            webhook_body_limit: 64 * 1024,
            api_body_limit: 64 * 1024,
            request_timeout: "30s".into(),
            metrics_token: None,
            realtime_queue: 256,
            realtime_keepalive: "20s".into(),
            realtime_idle_timeout: "60s".into(),
            realtime_write_timeout: "10s".into(),
            realtime_max_connections_per_user: 20,
            realtime_max_connections_per_ip: 50,
            realtime_max_subscriptions: 50,
            log: "info".into(),
            users_may_send: false,
            send_timeout: "10s".into(),
            send_max_attempts: 6,
            send_backoff: "2s".into(),
            send_backoff_max: "5m".into(),
            provider_probe_interval: "60s".into(),
            breaker_failures: 3,
            breaker_cooldown: "30s".into(),
            webhooks_allow_private: false,
            webhooks_max_per_user: 5,
            webhooks_timeout: "10s".into(),
            webhooks_backoff: "5s".into(),
            webhooks_backoff_max: "1h".into(),
            webhooks_give_up: "24h".into(),
            sandbox: true,
            providers: Vec::new(),
        }
    }
}

/// One `[[providers]]` table: a provider account and the numbers it serves.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// Unique; the webhook URL is `/webhooks/{name}`.
    pub name: String,
    pub kind: ProviderKind,
    /// The provider's signing secret (auth token, signing key, password…); see
    /// `config.example.toml` for what each kind expects. Telnyx has none.
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    /// Bandwidth: the callback user id (the password is `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Telnyx: the account's Ed25519 public key, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Vonage SMS API: md5hash, md5, sha1, sha256 or sha512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_method: Option<String>,
    #[serde(default)]
    pub numbers: Vec<NumberSettings>,
    /// Sending (see `config.example.toml`): Twilio account SID, SignalWire project id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    /// Sending: Plivo auth id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_id: Option<String>,
    /// Sending: Vonage API key, Telnyx API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// Sending: Vonage API secret, SignalWire API token; Twilio and Plivo use `secret`
    /// (the auth token) unless this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_secret_file: Option<PathBuf>,
    /// Sending: Telnyx messaging profile (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_profile_id: Option<String>,
    /// Sending: the REST API's base URL; default the provider's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base_url: Option<String>,
    /// Provider names to send through, in order, when this one cannot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<String>,
    /// The URL this account's provider calls, when it differs from the global
    /// `public_url` (another host name or proxy): its webhook signatures cover this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

impl ProviderSettings {
    /// A table with only a name and a kind, every other field unset.
    pub fn new(name: &str, kind: ProviderKind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            secret: None,
            secret_file: None,
            username: None,
            public_key: None,
            signature_method: None,
            numbers: Vec::new(),
            account_sid: None,
            auth_id: None,
            api_key: None,
            api_key_file: None,
            api_secret: None,
            api_secret_file: None,
            messaging_profile_id: None,
            api_base_url: None,
            fallback: Vec::new(),
            public_url: None,
        }
    }

    /// The secret fields' keys: what the admin API never returns and the store seals.
    /// Each also has a `<key>_file` form, for the configuration file only.
    pub const SECRET_KEYS: [&'static str; 3] = ["secret", "api_key", "api_secret"];

    /// The secret fields by key, in the order of [`ProviderSettings::SECRET_KEYS`].
    fn secrets(&self) -> [(&'static str, Option<&Secret>); 3] {
        let [secret, api_key, api_secret] = Self::SECRET_KEYS;
        [
            (secret, self.secret.as_ref()),
            (api_key, self.api_key.as_ref()),
            (api_secret, self.api_secret.as_ref()),
        ]
    }

    /// Whether the secret `key` (one of [`ProviderSettings::SECRET_KEYS`]) is given,
    /// inline or as a file.
    pub fn secret_is_set(&self, key: &str) -> bool {
        let file = match key {
            "secret" => &self.secret_file,
            "api_key" => &self.api_key_file,
            "api_secret" => &self.api_secret_file,
            _ => return false,
        };
        file.is_some()
            || self
                .secrets()
                .iter()
                .any(|(field, secret)| *field == key && secret.is_some())
    }

    /// Its numbers that parse (for bookkeeping of a table already stored; validation
    /// proper is [`provider_config`]'s).
    pub fn phone_numbers(&self) -> Vec<PhoneNumber> {
        self.numbers
            .iter()
            .filter_map(|number| {
                let text = match number {
                    NumberSettings::Plain(text) => text,
                    NumberSettings::Detailed { number, .. } => number,
                };
                PhoneNumber::parse(text).ok()
            })
            .collect()
    }

    /// The table as JSON *with* its secrets, for sealing into the store and nothing else.
    /// JSON rather than a fixed binary layout, so a field added later reads as its default.
    pub fn to_sealable_json(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        // `Secret` serialises as a placeholder (so dumps cannot leak it): put the values
        // back in by hand, here only.
        let mut value = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let object = value
            .as_object_mut()
            .ok_or("a provider table is not a JSON object")?;
        for (key, secret) in self.secrets() {
            match secret {
                Some(secret) => object.insert(key.to_owned(), secret.expose().into()),
                None => object.remove(key),
            };
        }
        let bytes = serde_json::to_vec(&value).map_err(|e| e.to_string());
        // The copies inside `value` go with it; only the returned bytes are wiped on drop.
        drop(value);
        bytes.map(zeroize::Zeroizing::new)
    }

    /// Reads what [`ProviderSettings::to_sealable_json`] wrote.
    pub fn from_sealed_json(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// A pool number: either `"+14155550100"` or `{ number = "+1…", retention = "1h" }`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum NumberSettings {
    Plain(String),
    Detailed {
        number: String,
        retention: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("setting `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    /// The setting at fault and what is wrong with it, for an invalid value.
    pub fn invalid_setting(&self) -> Option<(&str, &str)> {
        match self {
            Self::Invalid { key, message } => Some((key, message)),
            _ => None,
        }
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Flags that override every other layer (only those the user passed).
#[derive(Debug, Default, Clone)]
pub struct FlagOverrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub tls_listen: Option<String>,
}

impl Settings {
    /// Reads the layers in order: defaults, then `file` (if any), then the environment
    /// given by `env` (a lookup, so tests need not touch the process environment), then flags.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &FlagOverrides,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|error| ConfigError::Parse {
                        path: path.to_owned(),
                        message: describe_parse_error(&text, &error),
                    })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, &env)?;
        let mut settings = Settings::deserialize(toml::Value::Table(table)).map_err(|error| {
            ConfigError::Parse {
                path: file.map_or_else(|| PathBuf::from("<environment>"), Path::to_owned),
                message: without_secret_values(&error.to_string()),
            }
        })?;
        if let Some(dir) = &flags.data_dir {
            settings.data_dir = dir.clone();
        }
        if let Some(listen) = &flags.listen {
            settings.listen = listen.clone();
        }
        if let Some(listen) = &flags.tls_listen {
            settings.tls_listen = listen.clone();
        }
        Ok(settings)
    }
}

/// Words in the names of settings that hold secrets (`admin_password`, a provider's
/// `secret`, `metrics_token`, `master_key`, `api_key`…): an error about one must not
/// print its value, as errors go to the terminal and the service log.
const SECRET_WORDS: [&str; 4] = ["password", "secret", "token", "key"];

fn names_a_secret(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| text.contains(word))
}

/// A TOML syntax error as the parser puts it (with the offending line quoted), unless
/// that line sets a secret: then only where it is and what is wrong.
fn describe_parse_error(text: &str, error: &toml::de::Error) -> String {
    let Some(before) = error.span().and_then(|span| text.get(..span.start)) else {
        return error.message().trim().to_owned();
    };
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let line = text[line_start..].lines().next().unwrap_or_default();
    let key = line.split('=').next().unwrap_or_default().trim();
    if !names_a_secret(key) {
        return error.to_string();
    }
    format!(
        "line {}, column {}: {} (the line sets `{key}`, so it is not shown)",
        before.matches('\n').count() + 1,
        before.len() - line_start + 1,
        error.message().trim()
    )
}

/// A type error about a secret setting names the value it found (`integer `1234``):
/// keep the setting's name and what was expected, drop the value.
fn without_secret_values(message: &str) -> String {
    if !names_a_secret(message) {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    for (index, piece) in message.split('`').enumerate() {
        if index % 2 == 1 {
            out.push_str(if names_a_secret(piece) { piece } else { "…" });
            out.push('`');
        } else {
            out.push_str(piece);
            out.push('`');
        }
    }
    out.pop();
    out
}

/// Overlays `BURNBOX_<KEY>` (and `BURNBOX_<KEY>_FILE` for secrets) onto the TOML table.
fn apply_env(
    table: &mut toml::Table,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for spec in SETTINGS {
        let name = spec.env_name();
        if spec.kind == Kind::Secret {
            let file_name = format!("{name}_FILE");
            if let Some(path) = env(&file_name) {
                let secret =
                    read_secret_file(Path::new(&path)).map_err(|message| ConfigError::Env {
                        name: file_name.clone(),
                        message,
                    })?;
                table.insert(spec.key.into(), toml::Value::String(secret));
                table.remove(&format!("{}_file", spec.key));
            }
        }
        let Some(raw) = env(&name) else { continue };
        let env_error = |message: String| ConfigError::Env {
            name: name.clone(),
            message,
        };
        let value = match spec.kind {
            Kind::Text | Kind::Secret => toml::Value::String(raw),
            Kind::Integer => toml::Value::Integer(
                raw.trim()
                    .parse()
                    .map_err(|_| env_error(format!("expected a whole number, got {raw:?}")))?,
            ),
            Kind::Bool => toml::Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => return Err(env_error(format!("expected true or false, got {raw:?}"))),
            }),
            Kind::List => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| toml::Value::String(item.to_owned()))
                    .collect(),
            ),
        };
        table.insert(spec.key.into(), value);
        if spec.kind == Kind::Secret {
            table.remove(&format!("{}_file", spec.key));
        }
    }
    // `<secret>_file` keys in the TOML file itself.
    for spec in SETTINGS.iter().filter(|spec| spec.kind == Kind::Secret) {
        let file_key = format!("{}_file", spec.key);
        if let Some(value) = table.remove(&file_key) {
            let path = value
                .as_str()
                .ok_or_else(|| invalid(&file_key, "expected a path"))?
                .to_owned();
            let secret = read_secret_file(Path::new(&path))
                .map_err(|message| invalid(&file_key, message))?;
            table.entry(spec.key).or_insert(toml::Value::String(secret));
        }
    }
    Ok(())
}

/// Reads a secret from a file (systemd credentials, Docker/Kubernetes secrets),
/// dropping the trailing newline editors add.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// Validated configuration: everything the server needs, already parsed.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: Option<SocketAddr>,
    pub tls_listen: Option<SocketAddr>,
    pub tls_files: Option<(PathBuf, PathBuf)>,
    pub public_url: Option<url::Url>,
    pub trusted_proxies: Vec<IpNet>,
    pub master_key: Option<Secret>,
    pub admin_password: Option<Secret>,
    pub retention: Duration,
    pub sweep_interval: Duration,
    pub sweep_batch: usize,
    pub multipart_timeout: Duration,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub guest_session: Duration,
    pub registration: Registration,
    /// The relay for outgoing e-mail; `None` means burnbox sends none.
    pub smtp: Option<SmtpConfig>,
    pub email_verification_ttl: Duration,
    pub password_reset_ttl: Duration,
    pub quarantine: Duration,
    pub lease_user: Duration,
    pub lease_guest: Duration,
    pub lease_max: Duration,
    pub user_max_leases: usize,
    pub rate_limit_user: u32,
    pub rate_limit_guest: u32,
    pub rate_limit_admin: u32,
    pub rate_limit_anonymous: u32,
    pub rate_limit_webhooks: u32,
    pub webhook_body_limit: usize,
    pub api_body_limit: usize,
    pub request_timeout: Duration,
    /// Bearer token for `/metrics` (besides admin logins).
    pub metrics_token: Option<Secret>,
    pub realtime: RealtimeConfig,
    pub log: String,
    pub users_may_send: bool,
    pub sending: SendingConfig,
    pub hooks: HooksConfig,
    pub sandbox: bool,
    pub providers: Vec<ProviderConfig>,
}

/// How outbound messages are sent, retried and failed over.
#[derive(Debug, Clone, Copy)]
pub struct SendingConfig {
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub probe_interval: Duration,
    pub breaker: crate::providers::health::BreakerSettings,
}

/// Users' outbound webhooks: the SSRF guard, limits and retries.
#[derive(Debug, Clone, Copy)]
pub struct HooksConfig {
    pub allow_private: bool,
    pub max_per_user: usize,
    pub timeout: Duration,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub give_up: Duration,
}

/// Real-time delivery (WebSocket, SSE, Socket.IO): queues, keepalive and limits.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// Events one subscriber may have waiting before it counts as too slow.
    pub queue: usize,
    pub keepalive: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// 0: no limit.
    pub max_connections_per_user: usize,
    /// 0: no limit.
    pub max_connections_per_ip: usize,
    pub max_subscriptions: usize,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Empty for kinds that need none ([`ProviderKind::needs_secret`]).
    pub secret: Secret,
    pub options: ProviderOptions,
    pub numbers: Vec<NumberConfig>,
    /// How to send through this account; `None` means it only receives.
    pub api: Option<ApiConfig>,
    /// Providers to send through, in order, when this one cannot.
    pub fallback: Vec<String>,
    /// Overrides the global `public_url` for this account's webhooks and callbacks.
    pub public_url: Option<url::Url>,
    /// The table as given, for the admin API (which shows it without its secrets) and
    /// for updates that keep secrets they do not repeat.
    pub settings: ProviderSettings,
}

#[derive(Debug, Clone)]
pub struct NumberConfig {
    pub number: PhoneNumber,
    pub retention: Option<Duration>,
}

/// How to reach the mail relay.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub credentials: Option<(String, Secret)>,
    /// The `From` mailbox, e.g. `burnbox <sms@example.com>`.
    pub from: String,
    pub ca_file: Option<PathBuf>,
}

/// Transport security towards the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS; refused if the relay cannot.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host or a trusted link.
    None,
}

/// Who may create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Only admins create accounts.
    Closed,
    /// Anyone with an unused invite code from an admin.
    Invite,
    /// Anyone. With SMTP configured the account works once its e-mail address is
    /// confirmed; without, it waits until an admin enables it.
    Open,
}

/// The relay settings, all or nothing: `smtp_host` switches e-mail on, and then the
/// sender and a public URL (the links in the mail point there) are required.
fn smtp_config(settings: &Settings) -> Result<Option<SmtpConfig>, ConfigError> {
    let public_url_set = settings
        .public_url
        .as_deref()
        .is_some_and(|url| !url.trim().is_empty());
    let Some(host) = settings
        .smtp_host
        .as_deref()
        .map(str::trim)
        .filter(|host| !host.is_empty())
    else {
        return Ok(None);
    };
    let security = match settings.smtp_security.as_str() {
        "starttls" => SmtpSecurity::StartTls,
        "tls" => SmtpSecurity::Tls,
        "none" => SmtpSecurity::None,
        other => {
            return Err(invalid(
                "smtp_security",
                format!("{other:?}: use starttls, tls or none"),
            ));
        }
    };
    let from = settings
        .smtp_from
        .as_deref()
        .map(str::trim)
        .filter(|from| !from.is_empty())
        .ok_or_else(|| invalid("smtp_from", "required when smtp_host is set"))?;
    if from.parse::<lettre::message::Mailbox>().is_err() {
        return Err(invalid(
            "smtp_from",
            format!("{from:?} is not a mailbox like \"burnbox <sms@example.com>\""),
        ));
    }
    if !public_url_set {
        // Links in e-mail must not be built from a request's Host header, which the
        // requester chooses (the classic password-reset poisoning).
        return Err(invalid(
            "public_url",
            "required when smtp_host is set: links in e-mail point there",
        ));
    }
    let credentials = match (&settings.smtp_username, &settings.smtp_password) {
        (Some(user), Some(password)) if !user.is_empty() => Some((user.clone(), password.clone())),
        (None, None) => None,
        (Some(user), None) if user.is_empty() => None,
        _ => {
            return Err(invalid(
                "smtp_username",
                "smtp_username and smtp_password must be set together",
            ));
        }
    };
    Ok(Some(SmtpConfig {
        host: host.to_owned(),
        port: settings.smtp_port,
        security,
        credentials,
        from: from.to_owned(),
        ca_file: settings
            .smtp_ca_file
            .clone()
            .filter(|path| !path.as_os_str().is_empty()),
    }))
}

/// The name of the built-in sandbox provider.
pub const SANDBOX_PROVIDER: &str = "sandbox";

fn parse_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let duration = humantime::parse_duration(text).map_err(|error| {
        invalid(
            key,
            format!("{text:?} is not a duration like \"30s\" or \"24h\": {error}"),
        )
    })?;
    if duration.is_zero() {
        return Err(invalid(key, "must be longer than zero"));
    }
    Ok(duration)
}

/// Like [`parse_duration`], but "0s" is allowed (quarantine off).
fn parse_duration_or_zero(key: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|error| {
        invalid(
            key,
            format!("{text:?} is not a duration like \"30s\" or \"24h\": {error}"),
        )
    })
}

fn parse_listen(key: &str, text: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|_| {
        invalid(
            key,
            format!("{text:?} is not an address like 127.0.0.1:8080 or [::]:8080"),
        )
    })
}

/// Provider names become URL path segments and log fields: keep them tame.
fn valid_provider_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Each kind takes exactly the option fields it needs: a missing one is an error, and so is
/// one it would ignore (most likely a setting meant for another provider table).
fn check_options(
    key: &str,
    kind: ProviderKind,
    options: &ProviderOptions,
) -> Result<(), ConfigError> {
    for field in OptionField::ALL {
        let wanted = kind.option_fields().contains(&field);
        match (wanted, options.get(field).map(str::trim)) {
            (true, None | Some("")) => {
                return Err(invalid(
                    format!("{key}.{}", field.key()),
                    format!("required for kind {}", kind.as_str()),
                ));
            }
            (false, Some(_)) => {
                return Err(invalid(
                    format!("{key}.{}", field.key()),
                    format!("not used by kind {}", kind.as_str()),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The REST API settings of one `[[providers]]` table: `None` when the table sets none
/// (the provider only receives). Every field is checked against the kind, so a setting
/// meant for another provider, or half a set of credentials, is an error naming it.
fn api_config(
    key: &str,
    provider: &ProviderSettings,
    secret: &Secret,
    public_url: Option<&url::Url>,
) -> Result<Option<ApiConfig>, ConfigError> {
    let field_error = |field: &str, message: String| invalid(format!("{key}.{field}"), message);
    let api_key = secret_field(key, "api_key", &provider.api_key, &provider.api_key_file)?;
    let api_secret = secret_field(
        key,
        "api_secret",
        &provider.api_secret,
        &provider.api_secret_file,
    )?;
    let text = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let account_sid = text(&provider.account_sid);
    let auth_id = text(&provider.auth_id);
    let profile = text(&provider.messaging_profile_id);
    let base_url = text(&provider.api_base_url);
    let set = [
        ("account_sid", account_sid.is_some()),
        ("auth_id", auth_id.is_some()),
        ("api_key", api_key.is_some()),
        ("api_secret", api_secret.is_some()),
        ("messaging_profile_id", profile.is_some()),
        ("api_base_url", base_url.is_some()),
    ];
    // (the field that switches sending on, the fields this kind takes, its default base URL)
    let (switch, accepted, default_base): (&str, &[&str], Option<&str>) = match provider.kind {
        ProviderKind::Twilio => (
            "account_sid",
            &["account_sid", "api_secret", "api_base_url"],
            Some("https://api.twilio.com"),
        ),
        ProviderKind::Signalwire => (
            "account_sid",
            &["account_sid", "api_secret", "api_base_url"],
            None,
        ),
        ProviderKind::Vonage => (
            "api_key",
            &["api_key", "api_secret", "api_base_url"],
            Some("https://rest.nexmo.com"),
        ),
        ProviderKind::Plivo => (
            "auth_id",
            &["auth_id", "api_secret", "api_base_url"],
            Some("https://api.plivo.com"),
        ),
        ProviderKind::Telnyx => (
            "api_key",
            &["api_key", "messaging_profile_id", "api_base_url"],
            Some("https://api.telnyx.com"),
        ),
        _ => ("", &[], None),
    };
    for (field, present) in set {
        if present && !accepted.contains(&field) {
            return Err(field_error(
                field,
                format!(
                    "not used by kind {}{}",
                    provider.kind.as_str(),
                    if accepted.is_empty() {
                        " (sending works with twilio, signalwire, vonage, plivo and telnyx)"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    let switched_on = set
        .iter()
        .any(|(field, present)| *present && *field == switch);
    if !switched_on {
        if let Some((field, _)) = set.iter().find(|(_, present)| *present) {
            return Err(field_error(switch, format!("required with {field}")));
        }
        return Ok(None);
    }
    let required = |value: Option<Secret>, field: &str| {
        value.ok_or_else(|| {
            field_error(
                field,
                format!("required with {switch} for kind {}", provider.kind.as_str()),
            )
        })
    };
    let credentials = match provider.kind {
        ProviderKind::Twilio => ApiCredentials::Twilio {
            account_sid: account_sid.unwrap_or_default(),
            auth_token: api_secret.unwrap_or_else(|| secret.clone()),
        },
        // The webhook secret is the Signing Key; the REST API wants the API token.
        ProviderKind::Signalwire => ApiCredentials::Twilio {
            account_sid: account_sid.unwrap_or_default(),
            auth_token: required(api_secret, "api_secret")?,
        },
        ProviderKind::Vonage => ApiCredentials::Vonage {
            api_key: api_key.unwrap_or_default(),
            api_secret: required(api_secret, "api_secret")?,
        },
        ProviderKind::Plivo => ApiCredentials::Plivo {
            auth_id: auth_id.unwrap_or_default(),
            auth_token: api_secret.unwrap_or_else(|| secret.clone()),
        },
        ProviderKind::Telnyx => ApiCredentials::Telnyx {
            api_key: api_key.unwrap_or_default(),
            messaging_profile_id: profile,
        },
        _ => return Ok(None),
    };
    let base_url = match (base_url, default_base) {
        (Some(url), _) => url,
        (None, Some(default)) => default.to_owned(),
        (None, None) => {
            return Err(field_error(
                "api_base_url",
                format!(
                    "required for kind {}: the space's URL, e.g. https://example.signalwire.com/api/laml",
                    provider.kind.as_str()
                ),
            ));
        }
    };
    let base_url = if provider.kind == ProviderKind::Signalwire {
        signalwire_base(&base_url)
    } else {
        base_url
    };
    let parsed = url::Url::parse(&base_url)
        .map_err(|error| field_error("api_base_url", format!("{base_url:?}: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(field_error(
            "api_base_url",
            "must be an http:// or https:// URL with a host".to_owned(),
        ));
    }
    Ok(Some(ApiConfig {
        base_url: base_url.trim_end_matches('/').to_owned(),
        credentials,
        status_callback: public_url.map(|url| {
            format!(
                "{}/webhooks/{}/status",
                url.as_str().trim_end_matches('/'),
                provider.name
            )
        }),
    }))
}

/// SignalWire's dashboard shows the space URL as `example.signalwire.com`; its REST API
/// lives under `https://example.signalwire.com/api/laml`. A space given by its name alone
/// (`example`), as a host, or as a URL without a path is completed to that; a URL with a
/// path (a proxy, a test server) is kept.
fn signalwire_base(url: &str) -> String {
    let url = if url.contains("://") {
        url.to_owned()
    } else if url.contains(['.', ':', '/']) {
        format!("https://{url}")
    } else {
        format!("https://{url}.signalwire.com")
    };
    match url::Url::parse(&url) {
        Ok(parsed) if parsed.path() == "/" && parsed.query().is_none() => {
            format!("{}/api/laml", url.trim_end_matches('/'))
        }
        _ => url,
    }
}

/// The sending settings as read.
struct SendingSettings {
    timeout: String,
    max_attempts: u32,
    backoff: String,
    backoff_max: String,
    probe_interval: String,
    breaker_failures: u32,
    breaker_cooldown: String,
}

fn sending_config(settings: &SendingSettings) -> Result<SendingConfig, ConfigError> {
    if settings.max_attempts == 0 {
        return Err(invalid("send_max_attempts", "must be at least 1"));
    }
    if settings.breaker_failures == 0 {
        return Err(invalid("breaker_failures", "must be at least 1"));
    }
    let backoff = parse_duration("send_backoff", &settings.backoff)?;
    let backoff_max = parse_duration("send_backoff_max", &settings.backoff_max)?;
    if backoff_max < backoff {
        return Err(invalid("send_backoff_max", "must be at least send_backoff"));
    }
    let timeout = parse_duration("send_timeout", &settings.timeout)?;
    Ok(SendingConfig {
        timeout,
        max_attempts: settings.max_attempts,
        backoff,
        backoff_max,
        probe_interval: parse_duration("provider_probe_interval", &settings.probe_interval)?,
        breaker: crate::providers::health::BreakerSettings {
            failure_threshold: settings.breaker_failures,
            cooldown: parse_duration("breaker_cooldown", &settings.breaker_cooldown)?,
            // Every provider call ends within the send timeout, counted from when its
            // request goes out; a trial's slot is taken a little earlier (route, connect),
            // so it waits twice as long before deciding the trial was dropped. Sooner, a
            // slow failing trial would report after its slot had gone to another call.
            trial_timeout: timeout.saturating_mul(2),
        },
    })
}

fn hooks_config(settings: &Settings) -> Result<HooksConfig, ConfigError> {
    let backoff = parse_duration("webhooks_backoff", &settings.webhooks_backoff)?;
    let backoff_max = parse_duration("webhooks_backoff_max", &settings.webhooks_backoff_max)?;
    if backoff_max < backoff {
        return Err(invalid(
            "webhooks_backoff_max",
            "must be at least webhooks_backoff",
        ));
    }
    Ok(HooksConfig {
        allow_private: settings.webhooks_allow_private,
        max_per_user: settings.webhooks_max_per_user,
        timeout: parse_duration("webhooks_timeout", &settings.webhooks_timeout)?,
        backoff,
        backoff_max,
        give_up: parse_duration("webhooks_give_up", &settings.webhooks_give_up)?,
    })
}

/// A secret given inline or as `<field>_file`, not both; an empty one is an error.
fn secret_field(
    key: &str,
    field: &str,
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    let name = format!("{key}.{field}");
    let secret = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                name,
                format!("set only one of {field} and {field}_file"),
            ));
        }
        (Some(secret), None) => secret.clone(),
        (None, Some(path)) => {
            Secret::new(read_secret_file(path).map_err(|message| invalid(&name, message))?)
        }
        (None, None) => return Ok(None),
    };
    if secret.is_empty() {
        return Err(invalid(name, "is empty"));
    }
    Ok(Some(secret))
}

/// Every `fallback` names another provider that can send, each at most once.
fn check_fallbacks(providers: &[ProviderConfig]) -> Result<(), ConfigError> {
    for provider in providers {
        check_fallback(provider, |name| {
            providers
                .iter()
                .find(|other| other.name == name)
                .map(|other| other.api.is_some())
        })?;
    }
    Ok(())
}

/// One provider's `fallback` list against the providers that exist: `sends(name)` is
/// `None` for no such provider, else whether it has API credentials. The configuration
/// file checks against its own tables, the admin API against the running registry.
pub fn check_fallback(
    provider: &ProviderConfig,
    sends: impl Fn(&str) -> Option<bool>,
) -> Result<(), ConfigError> {
    let key = format!("providers.{}.fallback", provider.name);
    let mut seen = BTreeSet::new();
    for name in &provider.fallback {
        if *name == provider.name {
            return Err(invalid(&key, "a provider cannot be its own fallback"));
        }
        if !seen.insert(name) {
            return Err(invalid(&key, format!("{name:?} is listed twice")));
        }
        match sends(name) {
            None => return Err(invalid(&key, format!("no provider is named {name:?}"))),
            Some(false) => {
                return Err(invalid(
                    &key,
                    format!("{name:?} cannot send: it has no API credentials"),
                ));
            }
            Some(true) => {}
        }
    }
    Ok(())
}

/// An `http(s)://` URL with a host, or `None` when unset or empty.
fn parse_public_url(key: &str, text: Option<&str>) -> Result<Option<url::Url>, ConfigError> {
    let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(None);
    };
    let url = url::Url::parse(text).map_err(|error| invalid(key, format!("{text:?}: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid(
            key,
            "must be an http:// or https:// URL with a host",
        ));
    }
    Ok(Some(url))
}

/// Validates one `[[providers]]` table into a [`ProviderConfig`]: the one check shared by
/// the configuration file and the admin API, so a provider added at run time is held to
/// exactly the rules of one in the file. Errors name the field, as
/// `providers.<name>.<field>` (`providers.name` for the name itself). What involves other
/// providers (unique names, `fallback`) is the caller's to check.
pub fn provider_config(
    provider: ProviderSettings,
    global_public_url: Option<&url::Url>,
) -> Result<ProviderConfig, ConfigError> {
    if !valid_provider_name(&provider.name) {
        return Err(invalid(
            "providers.name",
            format!("{:?}: use 1-40 of a-z, 0-9, '-' and '_'", provider.name),
        ));
    }
    let key = format!("providers.{}", provider.name);
    let field = |name: &str| format!("{key}.{name}");
    let secret = match (
        provider.kind.needs_secret(),
        provider.secret.clone(),
        provider.secret_file.clone(),
    ) {
        (false, None, None) => Secret::default(),
        (false, _, _) => {
            return Err(invalid(
                field("secret"),
                format!(
                    "kind {} takes no secret or secret_file",
                    provider.kind.as_str()
                ),
            ));
        }
        (true, Some(secret), None) => secret,
        (true, None, Some(path)) => Secret::new(
            read_secret_file(&path).map_err(|message| invalid(field("secret_file"), message))?,
        ),
        (true, _, _) => {
            return Err(invalid(
                field("secret"),
                "set exactly one of secret and secret_file",
            ));
        }
    };
    if provider.kind.needs_secret() && secret.is_empty() {
        return Err(invalid(field("secret"), "the secret is empty"));
    }
    let public_url = parse_public_url(&field("public_url"), provider.public_url.as_deref())?;
    let api = api_config(
        &key,
        &provider,
        &secret,
        public_url.as_ref().or(global_public_url),
    )?;
    let numbers: Vec<NumberConfig> = provider
        .numbers
        .iter()
        .map(|number| {
            let (text, retention) = match number {
                NumberSettings::Plain(text) => (text, None),
                NumberSettings::Detailed { number, retention } => (number, retention.as_ref()),
            };
            Ok(NumberConfig {
                number: PhoneNumber::parse(text).map_err(|error| {
                    invalid(field("numbers"), format!("number {text:?}: {error}"))
                })?,
                retention: retention
                    .map(|text| parse_duration(&field("numbers.retention"), text))
                    .transpose()?,
            })
        })
        .collect::<Result<_, ConfigError>>()?;
    let options = ProviderOptions {
        username: provider.username.clone(),
        public_key: provider.public_key.clone(),
        signature_method: provider.signature_method.clone(),
        fallback_number: numbers.first().map(|n| n.number.clone()),
    };
    check_options(&key, provider.kind, &options)?;
    // Build the adapter once here so a bad key or method is a configuration error
    // naming the setting, not a failure at the first webhook. Its errors are about the
    // kind's own option (Telnyx's key, Vonage's method) if it has one, else the secret.
    let adapter_field = provider
        .kind
        .option_fields()
        .first()
        .map_or("secret", |option| option.key());
    Adapter::new(provider.kind, &secret, &options)
        .map_err(|message| invalid(field(adapter_field), message))?;
    Ok(ProviderConfig {
        name: provider.name.clone(),
        kind: provider.kind,
        secret,
        options,
        numbers,
        api,
        fallback: provider.fallback.clone(),
        public_url,
        settings: provider,
    })
}

impl TryFrom<Settings> for Config {
    type Error = ConfigError;

    fn try_from(settings: Settings) -> Result<Self, ConfigError> {
        let smtp = smtp_config(&settings)?;
        let hooks = hooks_config(&settings)?;
        let listen = parse_listen("listen", &settings.listen)?;
        let tls_listen = parse_listen("tls_listen", &settings.tls_listen)?;
        // An empty path (`BURNBOX_TLS_CERT=` in a compose file) means unset, as for
        // every other optional setting.
        let set = |path: Option<PathBuf>| path.filter(|path| !path.as_os_str().is_empty());
        let tls_files = match (set(settings.tls_cert), set(settings.tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "tls_cert",
                    "tls_cert and tls_key must be set together",
                ));
            }
        };
        let public_url = parse_public_url("public_url", settings.public_url.as_deref())?;
        let trusted_proxies = settings
            .trusted_proxies
            .iter()
            .map(|text| {
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "trusted_proxies",
                            format!("{text:?} is not an IP address or CIDR"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        if settings.sweep_batch == 0 {
            return Err(invalid("sweep_batch", "must be at least 1"));
        }
        for (key, limit) in [
            ("webhook_body_limit", settings.webhook_body_limit),
            ("api_body_limit", settings.api_body_limit),
        ] {
            if limit < 1024 {
                return Err(invalid(key, "must be at least 1024 bytes"));
            }
        }
        let mut names = BTreeSet::new();
        if settings.sandbox {
            names.insert(SANDBOX_PROVIDER.to_owned());
        }
        let settings_sending = SendingSettings {
            timeout: settings.send_timeout.clone(),
            max_attempts: settings.send_max_attempts,
            backoff: settings.send_backoff.clone(),
            backoff_max: settings.send_backoff_max.clone(),
            probe_interval: settings.provider_probe_interval.clone(),
            breaker_failures: settings.breaker_failures,
            breaker_cooldown: settings.breaker_cooldown.clone(),
        };
        let mut providers = Vec::with_capacity(settings.providers.len());
        for provider in settings.providers {
            let provider = provider_config(provider, public_url.as_ref())?;
            if !names.insert(provider.name.clone()) {
                return Err(invalid(
                    format!("providers.{}", provider.name),
                    "the name is used twice (\"sandbox\" is taken while sandbox = true)",
                ));
            }
            providers.push(provider);
        }
        check_fallbacks(&providers)?;
        let sending = sending_config(&settings_sending)?;
        Ok(Config {
            data_dir: settings.data_dir,
            listen,
            tls_listen,
            tls_files,
            public_url,
            trusted_proxies,
            master_key: settings.master_key.filter(|key| !key.is_empty()),
            admin_password: settings
                .admin_password
                .filter(|password| !password.is_empty()),
            retention: parse_duration("retention", &settings.retention)?,
            sweep_interval: parse_duration("sweep_interval", &settings.sweep_interval)?,
            sweep_batch: settings.sweep_batch,
            multipart_timeout: parse_duration("multipart_timeout", &settings.multipart_timeout)?,
            access_token_ttl: parse_duration("access_token_ttl", &settings.access_token_ttl)?,
            refresh_token_ttl: parse_duration("refresh_token_ttl", &settings.refresh_token_ttl)?,
            guest_session: parse_duration("guest_session", &settings.guest_session)?,
            registration: match settings.registration.as_str() {
                "closed" => Registration::Closed,
                "invite" => Registration::Invite,
                "open" => Registration::Open,
                other => {
                    return Err(invalid(
                        "registration",
                        format!("{other:?}: use closed, invite or open"),
                    ));
                }
            },
            smtp,
            email_verification_ttl: parse_duration(
                "email_verification_ttl",
                &settings.email_verification_ttl,
            )?,
            password_reset_ttl: parse_duration("password_reset_ttl", &settings.password_reset_ttl)?,
            quarantine: parse_duration_or_zero("quarantine", &settings.quarantine)?,
            lease_user: parse_duration("lease_user", &settings.lease_user)?,
            lease_guest: parse_duration("lease_guest", &settings.lease_guest)?,
            lease_max: parse_duration("lease_max", &settings.lease_max)?,
            user_max_leases: settings.user_max_leases,
            rate_limit_user: settings.rate_limit_user,
            rate_limit_guest: settings.rate_limit_guest,
            rate_limit_admin: settings.rate_limit_admin,
            rate_limit_anonymous: settings.rate_limit_anonymous,
            rate_limit_webhooks: settings.rate_limit_webhooks,
            webhook_body_limit: settings.webhook_body_limit,
            api_body_limit: settings.api_body_limit,
            request_timeout: parse_duration("request_timeout", &settings.request_timeout)?,
            metrics_token: settings.metrics_token.filter(|token| !token.is_empty()),
            realtime: RealtimeConfig {
                queue: settings.realtime_queue.max(1),
                keepalive: parse_duration("realtime_keepalive", &settings.realtime_keepalive)?,
                idle_timeout: parse_duration(
                    "realtime_idle_timeout",
                    &settings.realtime_idle_timeout,
                )?,
                write_timeout: parse_duration(
                    "realtime_write_timeout",
                    &settings.realtime_write_timeout,
                )?,
                max_connections_per_user: settings.realtime_max_connections_per_user,
                max_connections_per_ip: settings.realtime_max_connections_per_ip,
                max_subscriptions: settings.realtime_max_subscriptions.max(1),
            },
            log: settings.log,
            users_may_send: settings.users_may_send,
            sending,
            hooks,
            sandbox: settings.sandbox,
            providers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../config.example.toml");

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_example_file_parses_to_exactly_the_defaults() {
        let table: toml::Table = EXAMPLE.parse().unwrap();
        let parsed = Settings::deserialize(toml::Value::Table(table)).unwrap();
        assert_eq!(parsed, Settings::default());
    }

    #[test]
    fn the_example_file_documents_every_setting_with_its_default() {
        for spec in SETTINGS {
            let line = match spec.default {
                Some(default) => format!("{} = {}", spec.key, default),
                None => format!("# {} = ", spec.key),
            };
            assert!(
                EXAMPLE.contains(&line),
                "config.example.toml lacks `{line}`"
            );
        }
        assert!(EXAMPLE.contains("[[providers]]"));
    }

    #[test]
    fn declared_defaults_match_the_struct_defaults() {
        let defaults = toml::Value::try_from(Settings::default()).unwrap();
        for spec in SETTINGS {
            let declared = spec
                .default
                .map(|text| format!("v = {text}").parse::<toml::Table>().unwrap()["v"].clone());
            let actual = defaults.get(spec.key).cloned();
            if spec.kind == Kind::Secret {
                assert_eq!(declared, None, "{}", spec.key);
                continue;
            }
            assert_eq!(actual, declared, "{}", spec.key);
        }
    }

    #[test]
    fn the_default_settings_validate() {
        let config = Config::try_from(Settings::default()).unwrap();
        assert_eq!(config.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(config.retention, Duration::from_secs(24 * 3600));
        assert!(config.sandbox);
    }

    #[test]
    fn layers_apply_in_order_file_env_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("burnbox.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\nretention = \"2h\"\nsweep_batch = 7\n",
        )
        .unwrap();
        let env = |name: &str| match name {
            "BURNBOX_LISTEN" => Some("127.0.0.1:2".to_owned()),
            "BURNBOX_SANDBOX" => Some("off".to_owned()),
            "BURNBOX_TRUSTED_PROXIES" => Some("10.0.0.0/8, ::1".to_owned()),
            _ => None,
        };
        let flags = FlagOverrides {
            tls_listen: Some(String::new()),
            ..FlagOverrides::default()
        };
        let settings = Settings::load(Some(&file), env, &flags).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:2");
        assert_eq!(settings.retention, "2h");
        assert_eq!(settings.sweep_batch, 7);
        assert!(!settings.sandbox);
        let config = Config::try_from(settings).unwrap();
        assert_eq!(
            config.tls_listen, None,
            "an empty flag disables the listener"
        );
        assert_eq!(config.trusted_proxies.len(), 2);

        let flags = FlagOverrides {
            listen: Some("127.0.0.1:3".into()),
            ..FlagOverrides::default()
        };
        assert_eq!(
            Settings::load(Some(&file), env, &flags).unwrap().listen,
            "127.0.0.1:3"
        );
    }

    #[test]
    fn errors_about_a_secret_setting_do_not_print_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("burnbox.toml");
        let load_error = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Settings::load(Some(&file), |_| None, &FlagOverrides::default())
                .unwrap_err()
                .to_string()
        };
        // A bad escape inside the password: the parser would quote the whole line.
        let error = load_error("sandbox = true\nadmin_password = \"hunter\\q2\"\n");
        assert!(!error.contains("hunter"), "{error}");
        assert!(
            error.contains("line 2") && error.contains("admin_password"),
            "{error}"
        );
        // A number where a string belongs: serde would name the number.
        let error = load_error("metrics_token = 987654321\n");
        assert!(!error.contains("987654321"), "{error}");
        assert!(error.contains("metrics_token"), "{error}");
        // Other settings keep the full, quoted explanation.
        let error = load_error("retention = \"1d\nsandbox = true\n");
        assert!(error.contains("retention = \"1d"), "{error}");
    }

    #[test]
    fn an_empty_optional_path_from_the_environment_is_unset() {
        let env = |name: &str| {
            matches!(
                name,
                "BURNBOX_TLS_CERT" | "BURNBOX_TLS_KEY" | "BURNBOX_SMTP_CA_FILE"
            )
            .then(String::new)
        };
        let settings = Settings::load(None, env, &FlagOverrides::default()).unwrap();
        let config = Config::try_from(settings).unwrap();
        assert!(
            config.tls_files.is_none(),
            "a self-signed certificate, as unset"
        );
        // With only one of the pair empty, the other alone is the error.
        let env = |name: &str| match name {
            "BURNBOX_TLS_CERT" => Some("/etc/burnbox/cert.pem".to_owned()),
            "BURNBOX_TLS_KEY" => Some(String::new()),
            _ => None,
        };
        let settings = Settings::load(None, env, &FlagOverrides::default()).unwrap();
        assert!(Config::try_from(settings).is_err());
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "s3cret-value\n").unwrap();
        let path = key_file.display().to_string();
        let env = move |name: &str| (name == "BURNBOX_ADMIN_PASSWORD_FILE").then(|| path.clone());
        let settings = Settings::load(None, env, &FlagOverrides::default()).unwrap();
        assert_eq!(
            settings.admin_password.as_ref().unwrap().expose(),
            "s3cret-value"
        );
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases: [(&str, &str); 14] = [
            (
                "[[providers]]\nname = \"bw\"\nkind = \"bandwidth\"\nsecret = \"x\"",
                "providers.bw.username",
            ),
            (
                "[[providers]]\nname = \"t\"\nkind = \"twilio\"\nsecret = \"x\"\npublic_key = \"k\"",
                "providers.t.public_key",
            ),
            (
                "[[providers]]\nname = \"tx\"\nkind = \"telnyx\"\nsecret = \"x\"\npublic_key = \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"",
                "providers.tx",
            ),
            (
                "[[providers]]\nname = \"tx\"\nkind = \"telnyx\"\npublic_key = \"short\"",
                "public_key",
            ),
            ("retention = \"soon\"", "retention"),
            // E-mail is all or nothing, and links must never come from a Host header.
            (
                "smtp_host = \"mail\"\npublic_url = \"https://x\"",
                "smtp_from",
            ),
            ("smtp_host = \"mail\"\nsmtp_from = \"a@b.c\"", "public_url"),
            (
                "smtp_host = \"mail\"\nsmtp_from = \"not a mailbox\"\npublic_url = \"https://x\"",
                "smtp_from",
            ),
            (
                "smtp_host = \"mail\"\nsmtp_from = \"a@b.c\"\npublic_url = \"https://x\"\nsmtp_security = \"ssl\"",
                "smtp_security",
            ),
            ("listen = \"localhost\"", "listen"),
            ("trusted_proxies = [\"proxy\"]", "trusted_proxies"),
            ("public_url = \"ftp://x\"", "public_url"),
            (
                "[[providers]]\nname = \"Bad Name\"\nkind = \"twilio\"\nsecret = \"x\"",
                "providers.name",
            ),
            (
                "[[providers]]\nname = \"t\"\nkind = \"twilio\"\nsecret = \"x\"\nnumbers = [\"12\"]",
                "providers.t",
            ),
        ];
        for (toml_text, key) in cases {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("c.toml");
            std::fs::write(&file, toml_text).unwrap();
            let settings = Settings::load(Some(&file), no_env, &FlagOverrides::default()).unwrap();
            let error = Config::try_from(settings).unwrap_err().to_string();
            assert!(error.contains(key), "{toml_text}: {error}");
        }
    }

    fn config_from(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, text).unwrap();
        Config::try_from(Settings::load(
            Some(&file),
            no_env,
            &FlagOverrides::default(),
        )?)
    }

    #[test]
    fn provider_api_settings_are_checked_and_name_the_field() {
        let table = |kind: &str, extra: &str| {
            format!("[[providers]]\nname = \"p\"\nkind = \"{kind}\"\nsecret = \"s\"\n{extra}\n")
        };
        let cases = [
            (table("twilio", "api_key = \"k\""), "providers.p.api_key"),
            (
                table("twilio", "api_secret = \"t\""),
                "providers.p.account_sid",
            ),
            (
                table("generic", "api_base_url = \"http://x\""),
                "providers.p.api_base_url",
            ),
            (
                table("vonage", "signature_method = \"sha256\"\napi_key = \"k\""),
                "providers.p.api_secret",
            ),
            (
                table("signalwire", "account_sid = \"p\"\napi_secret = \"t\""),
                "providers.p.api_base_url",
            ),
            (
                table(
                    "twilio",
                    "account_sid = \"AC1\"\napi_base_url = \"ftp://x\"",
                ),
                "providers.p.api_base_url",
            ),
            (
                table("twilio", "account_sid = \"AC1\"\nfallback = [\"nope\"]"),
                "providers.p.fallback",
            ),
            (
                table("twilio", "account_sid = \"AC1\"\nfallback = [\"p\"]"),
                "providers.p.fallback",
            ),
            (
                table(
                    "twilio",
                    "account_sid = \"AC1\"\napi_secret = \"t\"\napi_secret_file = \"/x\"",
                ),
                "providers.p.api_secret",
            ),
            ("send_max_attempts = 0".to_owned(), "send_max_attempts"),
            (
                "send_backoff = \"10s\"\nsend_backoff_max = \"1s\"".to_owned(),
                "send_backoff_max",
            ),
            (
                format!(
                    "{}[[providers]]\nname = \"g\"\nkind = \"generic\"\nsecret = \"whsec_YWFhYQ==\"\nfallback = [\"p\"]\n",
                    table("twilio", "")
                ),
                "providers.g.fallback",
            ),
        ];
        for (text, key) in cases {
            let error = config_from(&text).unwrap_err().to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn provider_api_settings_build_clients_with_defaults() {
        let text = "public_url = \"https://sms.example.com/\"\n\
            [[providers]]\nname = \"tw\"\nkind = \"twilio\"\nsecret = \"token\"\n\
            account_sid = \"AC1\"\nfallback = [\"tx\"]\n\
            [[providers]]\nname = \"tx\"\nkind = \"telnyx\"\n\
            public_key = \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\n\
            api_key = \"KEY1\"\napi_base_url = \"http://127.0.0.1:9/\"\n";
        let config = config_from(text).unwrap();
        let twilio = config.providers[0].api.as_ref().unwrap();
        assert_eq!(twilio.base_url, "https://api.twilio.com");
        assert_eq!(
            twilio.status_callback.as_deref(),
            Some("https://sms.example.com/webhooks/tw/status")
        );
        let crate::providers::send::ApiCredentials::Twilio { auth_token, .. } = &twilio.credentials
        else {
            panic!("twilio credentials")
        };
        assert_eq!(auth_token.expose(), "token", "the auth token is the secret");
        assert_eq!(config.providers[0].fallback, ["tx"]);
        let telnyx = config.providers[1].api.as_ref().unwrap();
        assert_eq!(telnyx.base_url, "http://127.0.0.1:9");
        assert!(
            !format!("{config:?}").contains("KEY1"),
            "secrets stay redacted"
        );
        assert!(config_from("").unwrap().providers.is_empty());
    }

    #[test]
    fn a_signalwire_space_becomes_its_compatibility_api_base() {
        let base = |url: &str| {
            let text = format!(
                "[[providers]]\nname = \"sw\"\nkind = \"signalwire\"\nsecret = \"PSK_1\"\n\
                account_sid = \"project\"\napi_secret = \"PT1\"\napi_base_url = \"{url}\"\n"
            );
            config_from(&text).unwrap().providers[0]
                .api
                .as_ref()
                .unwrap()
                .base_url
                .clone()
        };
        let laml = "https://example.signalwire.com/api/laml";
        assert_eq!(base("example"), laml);
        assert_eq!(base("example.signalwire.com"), laml);
        assert_eq!(base("https://example.signalwire.com/"), laml);
        assert_eq!(base(laml), laml);
        assert_eq!(
            base("http://127.0.0.1:9/proxy/laml/"),
            "http://127.0.0.1:9/proxy/laml"
        );
    }

    #[test]
    fn provider_kinds_take_their_options() {
        let text = "sandbox = false\n\
            [[providers]]\nname = \"tx\"\nkind = \"telnyx\"\n\
            public_key = \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\n\
            numbers = [\"+13125550001\"]\n";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, text).unwrap();
        let settings = Settings::load(Some(&file), no_env, &FlagOverrides::default()).unwrap();
        let config = Config::try_from(settings).unwrap();
        let provider = &config.providers[0];
        assert_eq!(provider.kind, ProviderKind::Telnyx);
        assert!(provider.secret.is_empty());
        assert_eq!(
            provider
                .options
                .fallback_number
                .as_ref()
                .map(PhoneNumber::as_str),
            Some("+13125550001")
        );
    }

    #[test]
    fn a_provider_table_is_sealable_with_its_secrets_and_checked_on_its_own() {
        let table = ProviderSettings {
            secret: Some(Secret::new("webhook-secret")),
            api_secret: Some(Secret::new("api-secret")),
            account_sid: Some("AC1".into()),
            public_url: Some("https://eu.example.com/".into()),
            numbers: vec![NumberSettings::Detailed {
                number: "+14155550100".into(),
                retention: Some("1h".into()),
            }],
            ..ProviderSettings::new("tw", ProviderKind::Twilio)
        };
        assert!(table.secret_is_set("secret") && table.secret_is_set("api_secret"));
        assert!(!table.secret_is_set("api_key"));
        assert_eq!(table.phone_numbers()[0].as_str(), "+14155550100");
        // Dumps hide the secrets; the sealable document keeps them, and reads back whole.
        assert!(
            !serde_json::to_string(&table)
                .unwrap()
                .contains("webhook-secret")
        );
        let document = table.to_sealable_json().unwrap();
        let back = ProviderSettings::from_sealed_json(&document).unwrap();
        assert_eq!(back, table);
        assert_eq!(back.secret.unwrap().expose(), "webhook-secret");

        let global = url::Url::parse("https://sms.example.com").unwrap();
        let config = provider_config(table.clone(), Some(&global)).unwrap();
        assert_eq!(
            config.api.unwrap().status_callback.as_deref(),
            Some("https://eu.example.com/webhooks/tw/status"),
            "the instance's own public URL wins"
        );
        assert_eq!(config.settings, table);

        let error = |table: ProviderSettings| {
            provider_config(table, None)
                .unwrap_err()
                .invalid_setting()
                .map(|(key, _)| key.to_owned())
                .unwrap()
        };
        let twilio = |name: &str| ProviderSettings::new(name, ProviderKind::Twilio);
        assert_eq!(error(twilio("t")), "providers.t.secret");
        assert_eq!(
            error(ProviderSettings {
                secret: Some(Secret::new("x")),
                public_url: Some("mailto:x".into()),
                ..twilio("t")
            }),
            "providers.t.public_url"
        );
        assert_eq!(
            error(ProviderSettings {
                secret: Some(Secret::new("x")),
                numbers: vec![NumberSettings::Plain("12".into())],
                ..twilio("t")
            }),
            "providers.t.numbers"
        );
        assert_eq!(error(twilio("T")), "providers.name");
    }

    #[test]
    fn unknown_keys_and_bad_env_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listn = \"x\"").unwrap();
        assert!(Settings::load(Some(&file), no_env, &FlagOverrides::default()).is_err());
        let env = |name: &str| (name == "BURNBOX_SWEEP_BATCH").then(|| "many".to_owned());
        let error = Settings::load(None, env, &FlagOverrides::default()).unwrap_err();
        assert!(error.to_string().contains("BURNBOX_SWEEP_BATCH"));
    }
}
