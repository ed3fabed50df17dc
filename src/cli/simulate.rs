//! `burnbox simulate`: signs and posts an inbound SMS webhook the way the provider
//! would, so the whole path (verify → store → API) can be seen without a provider.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{ConfigArgs, http_client, local_server, providers, runtime};
use crate::config::{Config, ProviderConfig, ProviderSettings, SANDBOX_PROVIDER, provider_config};
use crate::providers::{ProviderKind, generic, twilio};
use crate::server::MASTER_KEY_FILE;
use crate::store::MasterKey;
use crate::{config, sandbox};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Base URL of the running server; default: the configured HTTP listener.
    #[arg(long)]
    server: Option<String>,
    /// Provider instance to sign as; default: the sandbox, else the first configured one.
    #[arg(long)]
    provider: Option<String>,
    /// Sign as the provider in FILE instead: the table given to `burnbox providers add`
    /// (JSON, or TOML for *.toml), for a provider that is not in the configuration.
    #[arg(long, value_name = "FILE", conflicts_with = "provider")]
    provider_file: Option<PathBuf>,
    /// Recipient number; default: the provider's first number.
    #[arg(long)]
    to: Option<String>,
    /// Sender number or id.
    #[arg(long, default_value = sandbox::DEFAULT_SENDER)]
    from: String,
    /// Provider message id; default: a fresh random one (reuse one to see dedupe at work).
    #[arg(long)]
    id: Option<String>,
    /// The message text.
    text: String,
}

pub fn run(args: &SimulateArgs) -> Result<(), String> {
    let config = args.config.load()?;
    let provider = match &args.provider_file {
        Some(file) => provider_from_file(&config, file)?,
        None => pick_provider(&config, args.provider.as_deref())?,
    };
    let to = match &args.to {
        Some(to) => to.clone(),
        None => provider
            .numbers
            .first()
            .map(|n| n.number.to_string())
            .ok_or_else(|| format!("provider {} has no numbers; pass --to", provider.name))?,
    };
    let server = local_server(&config, args.server.clone())?;
    let path = format!("/webhooks/{}", provider.name);
    // The signature covers the URL the server believes it was called on: the provider's
    // own public URL if it has one, else the global one, else the listener.
    let signed_url = match provider.public_url.as_ref().or(config.public_url.as_ref()) {
        Some(base) => format!("{}{path}", base.as_str().trim_end_matches('/')),
        None => format!("{server}{path}"),
    };
    let id = args.id.clone().unwrap_or_else(|| random_id(provider.kind));
    let (content_type, body, headers) =
        build_request(&provider, &signed_url, &id, &args.from, &to, &args.text)?;

    runtime()?.block_on(async move {
        let mut request = http_client(Some(&config))?
            .post(format!("{server}{path}"))
            .header("content-type", content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| format!("{server}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            println!(
                "delivered: {} → {to} via {} (message id {id}, HTTP {status})",
                args.from, provider.name
            );
            Ok(())
        } else {
            Err(format!("the server answered {status}: {text}"))
        }
    })
}

fn pick_provider(config: &Config, name: Option<&str>) -> Result<ProviderConfig, String> {
    let wanted = name.unwrap_or(if config.sandbox { SANDBOX_PROVIDER } else { "" });
    if wanted == SANDBOX_PROVIDER && config.sandbox {
        let key_file = config.data_dir.join(MASTER_KEY_FILE);
        let key_text = match &config.master_key {
            Some(key) => key.expose().to_owned(),
            None => config::read_secret_file(&key_file).map_err(|e| {
                format!("{e} (start `burnbox serve` once first, or pass --data-dir)")
            })?,
        };
        let master = MasterKey::parse(&key_text).map_err(|e| e.to_string())?;
        return Ok(sandbox::provider(&master));
    }
    config
        .providers
        .iter()
        .find(|provider| wanted.is_empty() || provider.name == wanted)
        .cloned()
        .ok_or_else(|| match name {
            Some(name) => format!(
                "no provider named {name:?} is in the configuration (one added with \
                 `burnbox providers add`: pass its file as --provider-file)"
            ),
            None => "the sandbox is off and no provider is configured".to_owned(),
        })
}

/// A provider table from a file, checked as the server checks one added through the API.
fn provider_from_file(config: &Config, file: &Path) -> Result<ProviderConfig, String> {
    let table = providers::read_table(file)?;
    let settings: ProviderSettings =
        serde_json::from_value(table).map_err(|error| format!("{}: {error}", file.display()))?;
    provider_config(settings, config.public_url.as_ref())
        .map_err(|error| format!("{}: {error}", file.display()))
}

fn random_id(kind: ProviderKind) -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    match kind {
        // Twilio message SIDs are "SM" + 32 hex digits.
        ProviderKind::Twilio | ProviderKind::Signalwire => format!("SM{}", hex::encode(bytes)),
        _ => format!("sim_{}", hex::encode(bytes)),
    }
}

type Request = (&'static str, Vec<u8>, Vec<(&'static str, String)>);

/// The body and headers the provider would send.
fn build_request(
    provider: &ProviderConfig,
    url: &str,
    id: &str,
    from: &str,
    to: &str,
    text: &str,
) -> Result<Request, String> {
    let secret = provider.secret.expose();
    match provider.kind {
        ProviderKind::Twilio | ProviderKind::Signalwire => {
            let params = [
                ("MessageSid", id),
                ("SmsSid", id),
                ("AccountSid", "AC00000000000000000000000000000000"),
                ("From", from),
                ("To", to),
                ("Body", text),
                ("NumMedia", "0"),
                ("NumSegments", "1"),
                ("SmsStatus", "received"),
                ("ApiVersion", "2010-04-01"),
            ];
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish()
                .into_bytes();
            let signature = twilio::sign(secret, url, &params);
            Ok((
                "application/x-www-form-urlencoded",
                body,
                vec![("x-twilio-signature", signature)],
            ))
        }
        ProviderKind::Generic => {
            let now = time::OffsetDateTime::now_utc();
            let received_at = now
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| e.to_string())?;
            let body = serde_json::to_vec(&serde_json::json!({
                "id": id, "from": from, "to": to, "text": text, "received_at": received_at,
            }))
            .map_err(|e| e.to_string())?;
            let timestamp = now.unix_timestamp();
            let webhook_id = format!("msg_{id}");
            let signature = generic::sign(secret, &webhook_id, timestamp, &body)?;
            Ok((
                "application/json",
                body,
                vec![
                    ("webhook-id", webhook_id),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                ],
            ))
        }
        other => Err(format!(
            "simulate signs only as twilio, signalwire or generic providers (and the sandbox), not {}",
            other.as_str()
        )),
    }
}
