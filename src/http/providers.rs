//! `/api/v1/admin/providers`: provider instances as run-time configuration (admins).
//!
//! A provider added here is held to exactly the rules of a `[[providers]]` table (the
//! same validation function), stored sealed, and registered at once: its webhooks work
//! and its numbers are in the pool without a restart. Providers of the configuration
//! file are listed too, read-only. No answer ever carries a secret: only whether it is set.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::health::{ProviderHealthJson, provider_health};
use super::json::{ApiJson, ApiPath};
use super::openapi::Problem;
use super::{ApiError, AppState};
use crate::auth::permissions::{Action, Caller, authorize};
use crate::config::{
    ConfigError, ProviderSettings, SANDBOX_PROVIDER, check_fallback, provider_config,
};
use crate::domain::PhoneNumber;
use crate::providers::registry::{ProviderInstance, ProviderSource};
use crate::store::{ProviderChange, SeedNumber};

/// A provider table, as JSON: the fields of a `[[providers]]` table in the configuration
/// file (see `config.example.toml`), secrets inline (`*_file` paths are for the file
/// only). Documentation only: the body is read as the configuration's own type.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewProvider {
    /// 1-40 of a-z, 0-9, '-' and '_'; the webhook URL is `/webhooks/{name}`. On update it
    /// may be left out; it cannot change.
    #[schema(example = "twilio-eu")]
    pub name: String,
    /// twilio, signalwire, generic, vonage, vonage-messages, plivo, telnyx, sinch,
    /// bandwidth, messagebird, bird or sms-gateway.
    #[schema(example = "twilio")]
    pub kind: String,
    /// The signing secret (auth token, signing key, password…); Telnyx has none. On
    /// update, leaving it out keeps the stored one. Never returned.
    #[schema(format = Password)]
    pub secret: Option<String>,
    /// Bandwidth: the callback user id.
    pub username: Option<String>,
    /// Telnyx: the account's Ed25519 public key, base64.
    pub public_key: Option<String>,
    /// Vonage SMS API: md5hash, md5, sha1, sha256 or sha512.
    pub signature_method: Option<String>,
    /// Its pool numbers.
    pub numbers: Option<Vec<NumberEntry>>,
    /// Sending: Twilio account SID, SignalWire project id.
    pub account_sid: Option<String>,
    /// Sending: Plivo auth id.
    pub auth_id: Option<String>,
    /// Sending: Vonage or Telnyx API key. Kept on update when left out; never returned.
    #[schema(format = Password)]
    pub api_key: Option<String>,
    /// Sending: Vonage API secret, SignalWire API token. Kept on update when left out;
    /// never returned.
    #[schema(format = Password)]
    pub api_secret: Option<String>,
    /// Sending: Telnyx messaging profile.
    pub messaging_profile_id: Option<String>,
    /// Sending: the REST API's base URL; default the provider's own.
    pub api_base_url: Option<String>,
    /// Providers (that can send) to send through, in order, when this one cannot.
    pub fallback: Option<Vec<String>>,
    /// The URL this provider calls when it is not the server's `public_url`: its
    /// webhook signatures are checked against this one.
    pub public_url: Option<String>,
}

/// A pool number: `"+14155550100"`, or with its own retention.
#[derive(serde::Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
#[schema(as = ProviderNumberEntry)]
pub enum NumberEntry {
    #[schema(example = "+14155550100")]
    Plain(String),
    Detailed {
        number: String,
        /// How long its messages are kept, e.g. "1h".
        retention: Option<String>,
    },
}

/// A provider instance, without its secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderJson {
    pub name: String,
    #[schema(example = "twilio")]
    pub kind: &'static str,
    /// `config` (the configuration file or the sandbox: read-only here) or `api`.
    pub source: ProviderSource,
    /// Where its provider must post SMS; null when neither this provider nor the server
    /// has a public URL (then it is `/webhooks/{name}` at whatever address reaches it).
    pub webhook_url: Option<String>,
    /// Its own public URL, when it overrides the server's.
    pub public_url: Option<String>,
    pub numbers: Vec<ProviderNumberJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaging_profile_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base_url: Option<String>,
    pub fallback: Vec<String>,
    /// Whether the signing secret is set (it is never shown).
    pub secret_set: bool,
    pub api_key_set: bool,
    pub api_secret_set: bool,
    /// Whether it has API credentials to send with (else it only receives).
    pub sends: bool,
    /// Its API's health; absent for providers that only receive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<ProviderHealthJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderNumberJson {
    /// E.164.
    pub number: String,
    /// Seconds; null means the server-wide `retention`.
    pub retention_secs: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProvidersJson {
    /// By name.
    pub providers: Vec<ProviderJson>,
}

fn provider_json(state: &AppState, instance: &ProviderInstance) -> ProviderJson {
    let config = &instance.config;
    let settings = &config.settings;
    let public_url = config
        .public_url
        .as_ref()
        .or(state.config.public_url.as_ref());
    ProviderJson {
        name: instance.name.to_string(),
        kind: instance.kind.as_str(),
        source: instance.source,
        webhook_url: public_url.map(|url| {
            format!(
                "{}/webhooks/{}",
                url.as_str().trim_end_matches('/'),
                instance.name
            )
        }),
        public_url: config.public_url.as_ref().map(ToString::to_string),
        numbers: config
            .numbers
            .iter()
            .map(|number| ProviderNumberJson {
                number: number.number.as_str().to_owned(),
                retention_secs: number.retention.map(|d| d.as_secs()),
            })
            .collect(),
        username: settings.username.clone(),
        public_key: settings.public_key.clone(),
        signature_method: settings.signature_method.clone(),
        account_sid: settings.account_sid.clone(),
        auth_id: settings.auth_id.clone(),
        messaging_profile_id: settings.messaging_profile_id.clone(),
        api_base_url: settings.api_base_url.clone(),
        fallback: config.fallback.clone(),
        // The sandbox's secret is derived, not configured: ask the running instance.
        secret_set: !config.secret.is_empty(),
        api_key_set: settings.secret_is_set("api_key"),
        api_secret_set: settings.secret_is_set("api_secret"),
        sends: instance.client.is_some(),
        health: provider_health(state, &instance.name),
    }
}

/// Reads a provider table from a JSON body; a field that does not fit is named.
fn parse_settings(body: Value) -> Result<ProviderSettings, ApiError> {
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::validation("body", "expected a JSON object"))?;
    for key in ProviderSettings::SECRET_KEYS {
        let field = format!("{key}_file");
        if object.contains_key(&field) {
            return Err(ApiError::validation(
                field,
                "give secrets inline through the API; files on the server are for the configuration file",
            ));
        }
    }
    serde_path_to_error::deserialize(body).map_err(|error| {
        let path = error.path().to_string();
        let message = error.inner().to_string();
        // A missing or unknown field is reported at its parent: name the field itself.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|prefix| message.strip_prefix(prefix)?.split('`').next())
            .map(str::to_owned);
        let field = match (path.as_str(), named) {
            (".", Some(field)) => field,
            (".", None) => "body".to_owned(),
            (path, _) => path.to_owned(),
        };
        ApiError::validation(field, message)
    })
}

/// A configuration error about provider `name` as a validation problem naming the body
/// field (`providers.<name>.api_key` → `api_key`).
fn config_error(name: &str, error: &ConfigError) -> ApiError {
    let Some((key, message)) = error.invalid_setting() else {
        return ApiError::validation("body", error.to_string());
    };
    let prefix = format!("providers.{name}.");
    let field = match key.strip_prefix(&prefix) {
        Some(field) => field.to_owned(),
        None if key == "providers.name" => "name".to_owned(),
        None => "body".to_owned(),
    };
    ApiError::validation(field, message.to_owned())
}

/// Validates a table exactly as the configuration file would, plus its fallbacks
/// against the running providers, and builds the instance.
fn build_instance(
    state: &AppState,
    settings: ProviderSettings,
) -> Result<ProviderInstance, ApiError> {
    let name = settings.name.clone();
    let config = provider_config(settings, state.config.public_url.as_ref())
        .map_err(|error| config_error(&name, &error))?;
    check_fallback(&config, |other| {
        state
            .providers
            .get(other)
            .map(|instance| instance.client.is_some())
    })
    .map_err(|error| config_error(&name, &error))?;
    ProviderInstance::new(config, ProviderSource::Api, state.config.sending.timeout)
        .map_err(ApiError::Internal)
}

/// Stores the instance with its pool changes, then registers it. `previous` are the
/// numbers it had before (empty for a new one): those it no longer lists leave the
/// pool, or go to another provider that serves them too.
async fn save(
    state: &AppState,
    instance: ProviderInstance,
    previous: &[PhoneNumber],
) -> Result<Arc<ProviderInstance>, ApiError> {
    let name = instance.name.to_string();
    let document = instance
        .config
        .settings
        .to_sealable_json()
        .map_err(ApiError::Internal)?;
    // A number another provider lists stays with it: it was in the pool first.
    let mut add: Vec<SeedNumber> = instance
        .config
        .numbers
        .iter()
        .filter(|number| state.providers.other_owner(&number.number, &name).is_none())
        .map(|number| SeedNumber {
            provider: name.clone(),
            number: number.number.clone(),
            retention: number.retention,
        })
        .collect();
    let mut remove = Vec::new();
    for number in previous.iter().filter(|number| !instance.serves(number)) {
        match state.providers.other_owner(number, &name) {
            Some(other) => add.push(handover(state, &other, number)),
            None => remove.push(number.clone()),
        }
    }
    state
        .store
        .put_provider(ProviderChange {
            name: name.clone(),
            document,
            add,
            remove,
        })
        .await?;
    let instance = state.providers.insert(instance);
    state.outbox.provider_changed(&name);
    tracing::info!(provider = %name, kind = instance.kind.as_str(), "provider saved through the API");
    Ok(instance)
}

/// `number`, given up by one provider, under `other` (which lists it too), with the
/// retention `other` gives it.
fn handover(state: &AppState, other: &str, number: &PhoneNumber) -> SeedNumber {
    let retention = state.providers.get(other).and_then(|instance| {
        instance
            .config
            .numbers
            .iter()
            .find(|n| n.number == *number)
            .and_then(|n| n.retention)
    });
    SeedNumber {
        provider: other.to_owned(),
        number: number.clone(),
        retention,
    }
}

/// Refuses to leave providers falling back to `name` without a sender.
fn check_not_needed(state: &AppState, name: &str) -> Result<(), ApiError> {
    let users: Vec<String> = state
        .providers
        .fallback_users(name)
        .into_iter()
        .filter(|user| user != name)
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    Err(ApiError::ProviderInUse(format!(
        "{} list {name} as a fallback: remove it there first",
        users.join(", ")
    )))
}

fn read_only(instance: &ProviderInstance) -> Result<(), ApiError> {
    match instance.source {
        ProviderSource::Config => Err(ApiError::ProviderReadOnly(instance.name.to_string())),
        ProviderSource::Api => Ok(()),
    }
}

/// List every provider instance, from the configuration file and the API (admins).
#[utoipa::path(
    get,
    path = "/api/v1/admin/providers",
    operation_id = "list_providers",
    tag = "admin",
    security(("basic" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The providers, by name, without secrets.", body = ProvidersJson),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<ProvidersJson>, ApiError> {
    authorize(&caller, Action::ManageProviders).map_err(|d| ApiError::denied(d, "providers"))?;
    let providers = state
        .providers
        .snapshot()
        .iter()
        .map(|instance| provider_json(&state, instance))
        .collect();
    Ok(Json(ProvidersJson { providers }))
}

/// One provider instance (admins).
#[utoipa::path(
    get,
    path = "/api/v1/admin/providers/{name}",
    operation_id = "get_provider",
    tag = "admin",
    security(("basic" = []), ("bearer" = [])),
    params(("name" = String, Path, description = "The provider instance name.")),
    responses(
        (status = 200, description = "The provider, without secrets.", body = ProviderJson),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`provider_not_found`: no provider of that name.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ProviderJson>, ApiError> {
    authorize(&caller, Action::ManageProviders).map_err(|d| ApiError::denied(d, "provider"))?;
    let instance = state
        .providers
        .get(&name)
        .ok_or(ApiError::UnknownProvider)?;
    Ok(Json(provider_json(&state, &instance)))
}

/// Add a provider instance (admins): validated like a `[[providers]]` table, stored
/// sealed, its numbers put in the pool; its webhooks work at once.
#[utoipa::path(
    post,
    path = "/api/v1/admin/providers",
    operation_id = "create_provider",
    tag = "admin",
    security(("basic" = []), ("bearer" = [])),
    request_body = NewProvider,
    responses(
        (status = 201, description = "The provider is running.", body = ProviderJson),
        (status = 400, description = "`validation_failed`: `field` names the field at fault (`name`, `kind`, `secret`, `numbers`, `fallback`, …) or `body`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`provider_exists`: a provider of that name exists (the name `sandbox` is reserved).",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn create(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<ProviderJson>), ApiError> {
    authorize(&caller, Action::ManageProviders).map_err(|d| ApiError::denied(d, "providers"))?;
    let settings = parse_settings(body)?;
    let _changing = state.providers.lock_changes().await;
    // Reserved even while the sandbox is off: switching it off takes the numbers of
    // whatever is called "sandbox" out of the pool.
    if settings.name == SANDBOX_PROVIDER
        || state.providers.contains(&settings.name)
        || state.store.stored_provider(&settings.name)?.is_some()
    {
        return Err(ApiError::ProviderExists);
    }
    let instance = build_instance(&state, settings)?;
    let instance = save(&state, instance, &[]).await?;
    Ok((StatusCode::CREATED, Json(provider_json(&state, &instance))))
}

/// Replace a provider instance added through the API (admins). Secrets left out keep
/// their stored values (send `null` to clear one); numbers no longer listed leave the
/// pool (their messages stay until they expire).
#[utoipa::path(
    put,
    path = "/api/v1/admin/providers/{name}",
    operation_id = "update_provider",
    tag = "admin",
    security(("basic" = []), ("bearer" = [])),
    params(("name" = String, Path, description = "The provider instance name.")),
    request_body = NewProvider,
    responses(
        (status = 200, description = "The provider as it runs now.", body = ProviderJson),
        (status = 400, description = "`validation_failed`: `field` names the field at fault, or `body`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`provider_not_found`: no provider of that name.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`provider_read_only`: it is defined in the configuration file; `provider_in_use`: it would stop sending while other providers fall back to it.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn update(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiJson(mut body): ApiJson<Value>,
) -> Result<Json<ProviderJson>, ApiError> {
    authorize(&caller, Action::ManageProviders).map_err(|d| ApiError::denied(d, "provider"))?;
    let _changing = state.providers.lock_changes().await;
    let running = state.providers.get(&name);
    if let Some(instance) = &running {
        read_only(instance)?;
    }
    let stored_document = state
        .store
        .stored_provider(&name)?
        .ok_or(ApiError::UnknownProvider)?
        .document;
    let stored: Value = serde_json::from_slice(&stored_document)
        .map_err(|error| ApiError::Internal(format!("stored provider {name}: {error}")))?;
    let object = body
        .as_object_mut()
        .ok_or_else(|| ApiError::validation("body", "expected a JSON object"))?;
    match object.get("name") {
        None => {
            object.insert("name".into(), Value::from(name.as_str()));
        }
        Some(given) if given.as_str() == Some(name.as_str()) => {}
        Some(_) => {
            return Err(ApiError::validation(
                "name",
                "a provider cannot be renamed: add one under the new name and delete this one",
            ));
        }
    }
    for field in ProviderSettings::SECRET_KEYS {
        if let Some(kept) = stored.get(field).filter(|_| !object.contains_key(field)) {
            object.insert(field.to_owned(), kept.clone());
        }
    }
    let settings = parse_settings(body)?;
    let instance = build_instance(&state, settings)?;
    if instance.client.is_none() {
        check_not_needed(&state, &name)?;
    }
    // The stored table's numbers (also right for a record left out at start).
    let previous = ProviderSettings::from_sealed_json(&stored_document)
        .map(|old| old.phone_numbers())
        .unwrap_or_default();
    let instance = save(&state, instance, &previous).await?;
    Ok(Json(provider_json(&state, &instance)))
}

/// Remove a provider instance added through the API (admins): its webhooks stop, its
/// numbers leave the pool (their messages stay until they expire).
#[utoipa::path(
    delete,
    path = "/api/v1/admin/providers/{name}",
    operation_id = "delete_provider",
    tag = "admin",
    security(("basic" = []), ("bearer" = [])),
    params(("name" = String, Path, description = "The provider instance name.")),
    responses(
        (status = 204, description = "The provider is gone."),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`provider_not_found`: no provider of that name.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`provider_read_only`: it is defined in the configuration file; `provider_in_use`: other providers fall back to it.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn delete(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&caller, Action::ManageProviders).map_err(|d| ApiError::denied(d, "provider"))?;
    let _changing = state.providers.lock_changes().await;
    let running = state.providers.get(&name);
    if let Some(instance) = running
        .as_ref()
        .filter(|i| i.source == ProviderSource::Config)
    {
        return delete_shadowed(&state, instance).await;
    }
    check_not_needed(&state, &name)?;
    let handovers = running
        .iter()
        .flat_map(|instance| instance.config.numbers.iter())
        .filter_map(|number| {
            let other = state.providers.other_owner(&number.number, &name)?;
            Some(handover(&state, &other, &number.number))
        })
        .collect();
    let removed = state
        .store
        .delete_provider(&name, handovers, None)
        .await?
        .ok_or(ApiError::UnknownProvider)?;
    state.providers.remove(&name);
    state.outbox.provider_changed(&name);
    tracing::info!(provider = %name, removed, "provider deleted through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// A configuration-file provider is read-only, but a stale stored record under its name
/// (left out at start: the file wins) can go, with those of its numbers that no running
/// provider serves; the configured provider keeps its own.
async fn delete_shadowed(
    state: &AppState,
    instance: &ProviderInstance,
) -> Result<StatusCode, ApiError> {
    let Some(stored) = state.store.stored_provider(&instance.name)? else {
        return Err(ApiError::ProviderReadOnly(instance.name.to_string()));
    };
    let numbers: Vec<PhoneNumber> = ProviderSettings::from_sealed_json(&stored.document)
        .map(|settings| settings.phone_numbers())
        .unwrap_or_default()
        .into_iter()
        .filter(|number| {
            !instance.serves(number)
                && state
                    .providers
                    .other_owner(number, &instance.name)
                    .is_none()
        })
        .collect();
    state
        .store
        .delete_provider(&instance.name, Vec::new(), Some(numbers))
        .await?;
    tracing::info!(provider = %instance.name, "stale stored provider deleted; the configured one stays");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_field_is_accepted() {
        let schema = serde_json::to_value(<NewProvider as utoipa::PartialSchema>::schema())
            .unwrap_or_default();
        let mut body = serde_json::Map::new();
        for field in schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            body.insert(field.clone(), Value::Null);
        }
        assert!(body.len() > 10, "{schema}");
        body.insert("name".into(), "p".into());
        body.insert("kind".into(), "twilio".into());
        body.insert("numbers".into(), serde_json::json!(["+14155550100"]));
        body.insert("fallback".into(), serde_json::json!([]));
        parse_settings(Value::Object(body)).unwrap();
    }

    #[test]
    fn bad_bodies_name_their_field() {
        let field = |body: Value| match parse_settings(body) {
            Err(ApiError::Validation { field, .. }) => field.into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(serde_json::json!({"name": "p", "kind": "nope"})),
            "kind"
        );
        assert_eq!(field(serde_json::json!({"kind": "twilio"})), "name");
        assert_eq!(
            field(serde_json::json!({"name": "p", "kind": "twilio", "colour": 1})),
            "colour"
        );
        assert_eq!(
            field(serde_json::json!({"name": "p", "kind": "twilio", "numbers": [1]})),
            "numbers[0]"
        );
        assert_eq!(
            field(serde_json::json!({"name": "p", "kind": "twilio", "secret_file": "/etc/x"})),
            "secret_file"
        );
        assert_eq!(field(serde_json::json!([])), "body");
    }
}
