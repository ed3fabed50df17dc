//! `/api/v1/numbers`: the pool. Admins manage it; everyone sees the public numbers and
//! the numbers they hold.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json::{ApiJson, ApiPath};
use super::messages::{blocking, rfc3339};
use super::openapi::Problem;
use super::{ApiError, AppState};
use crate::auth::permissions::{Action, Caller, authorize};
use crate::domain::PhoneNumber;
use crate::store::{NumberPatch, NumberView, SeedNumber, now_ms};

#[derive(Debug, Serialize, ToSchema)]
pub struct NumberJson {
    pub id: u64,
    /// E.164.
    pub number: String,
    /// The provider instance that receives its messages.
    pub provider: String,
    /// Public numbers are never leased: anyone may read their inbox.
    pub public: bool,
    /// The active lease, when the caller may know it (admins; the holder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<u64>,
    /// Admin-only fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<NumberAdminJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NumberAdminJson {
    pub disabled: bool,
    /// Seconds; null means the server-wide `retention`.
    pub retention_secs: Option<u64>,
    /// RFC 3339 time until which the number rests in quarantine; null when leasable.
    #[schema(format = DateTime)]
    pub quarantined_until: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NumbersJson {
    pub numbers: Vec<NumberJson>,
}

fn number_json(view: NumberView, caller: &Caller, held: bool) -> NumberJson {
    let admin = caller.is_admin();
    NumberJson {
        id: view.id,
        number: view.number,
        provider: view.provider,
        public: view.public,
        lease_id: view.lease_id.filter(|_| admin || held),
        admin: admin.then(|| NumberAdminJson {
            disabled: view.disabled,
            retention_secs: view.retention_secs,
            quarantined_until: (view.available_from_ms > now_ms())
                .then(|| rfc3339(view.available_from_ms)),
        }),
    }
}

/// List the numbers the caller may see: public ones, the ones they hold, all for admins.
#[utoipa::path(
    get,
    path = "/api/v1/numbers",
    operation_id = "list_numbers",
    tag = "numbers",
    security(("basic" = []), ("bearer" = [])),
    responses((status = 200, description = "The visible numbers.", body = NumbersJson)),
)]
pub async fn list(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<NumbersJson>, ApiError> {
    let store = state.store.clone();
    let numbers = blocking(move || {
        let held: HashSet<u64> = store
            .active_leases(caller.user_id)?
            .into_iter()
            .map(|lease| lease.number_id)
            .collect();
        let numbers = store.list_numbers()?;
        Ok::<_, ApiError>(
            numbers
                .into_iter()
                .filter(|view| {
                    let holder = held.contains(&view.id).then_some(caller.user_id);
                    authorize(
                        &caller,
                        Action::ReadNumber {
                            public: view.public,
                            holder,
                        },
                    )
                    .is_ok()
                })
                .map(|view| {
                    let is_held = held.contains(&view.id);
                    number_json(view, &caller, is_held)
                })
                .collect(),
        )
    })
    .await?;
    Ok(Json(NumbersJson { numbers }))
}

/// One number, if the caller may see it.
#[utoipa::path(
    get,
    path = "/api/v1/numbers/{id}",
    operation_id = "get_number",
    tag = "numbers",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "The number id.")),
    responses(
        (status = 200, description = "The number.", body = NumberJson),
        (status = 404, description = "`not_found`: no such number, or not one the caller may see.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<NumberJson>, ApiError> {
    let store = state.store.clone();
    let number = blocking(move || {
        let access = store
            .number_access(id)?
            .ok_or(ApiError::NotFound("number"))?;
        let holder = access.holder();
        authorize(
            &caller,
            Action::ReadNumber {
                public: access.open_to_everyone(),
                holder,
            },
        )
        .map_err(|d| ApiError::denied(d, "number"))?;
        let view = store.number(id)?.ok_or(ApiError::NotFound("number"))?;
        Ok::<_, ApiError>(number_json(view, &caller, holder == Some(caller.user_id)))
    })
    .await?;
    Ok(Json(number))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNumber {
    /// E.164, like +14155550100.
    pub number: String,
    /// A configured provider instance name.
    pub provider: String,
    /// Public numbers are never leased: anyone may read their inbox.
    #[serde(default)]
    pub public: bool,
    /// How long its messages are kept, in seconds; default: the server-wide retention.
    #[schema(minimum = 1)]
    pub retention_secs: Option<u64>,
}

/// Add a number to the pool (admins).
#[utoipa::path(
    post,
    path = "/api/v1/numbers",
    operation_id = "create_number",
    tag = "numbers",
    security(("basic" = []), ("bearer" = [])),
    request_body = NewNumber,
    responses(
        (status = 201, description = "The number is in the pool.", body = NumberJson),
        (status = 400, description = "`validation_failed`: `field` names the invalid `number`, `provider`, `retention_secs` or `body`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`number_exists`: the number is already in the pool.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn create(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<NewNumber>,
) -> Result<(StatusCode, Json<NumberJson>), ApiError> {
    authorize(&caller, Action::ManagePool).map_err(|d| ApiError::denied(d, "numbers"))?;
    let number = PhoneNumber::parse(&body.number)
        .map_err(|e| ApiError::validation("number", e.to_string()))?;
    if !state.providers.contains(&body.provider) {
        return Err(ApiError::validation(
            "provider",
            "no provider of that name is configured",
        ));
    }
    let retention = positive_secs("retention_secs", body.retention_secs)?;
    let seed = SeedNumber {
        provider: body.provider,
        number,
        retention,
    };
    let id = state
        .store
        .add_number(seed)
        .await?
        .map_err(|_| ApiError::NumberExists)?;
    if body.public {
        let patch = NumberPatch {
            public: Some(true),
            ..NumberPatch::default()
        };
        state
            .store
            .update_number(id, patch, state.config.quarantine)
            .await??;
    }
    let view = state
        .store
        .number(id)?
        .ok_or(ApiError::NotFound("number"))?;
    Ok((StatusCode::CREATED, Json(number_json(view, &caller, false))))
}

/// Fields to change; omitted fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NumberUpdate {
    /// Making a number public ends its lease.
    pub public: Option<bool>,
    /// Disabled numbers are not leased; disabling ends the lease.
    pub disabled: Option<bool>,
    /// Seconds; `null` returns to the server-wide retention. Omit to leave it.
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub retention_secs: Option<Option<u64>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(deserializer).map(Some)
}

fn positive_secs(
    field: &'static str,
    secs: Option<u64>,
) -> Result<Option<std::time::Duration>, ApiError> {
    match secs {
        Some(0) => Err(ApiError::validation(field, "must be at least 1 second")),
        other => Ok(other.map(std::time::Duration::from_secs)),
    }
}

/// Change a number (admins): make it public, disable it, change its retention.
///
/// Making a number public or disabling it ends its lease.
#[utoipa::path(
    put,
    path = "/api/v1/numbers/{id}",
    operation_id = "update_number",
    tag = "numbers",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "The number id.")),
    request_body = NumberUpdate,
    responses(
        (status = 200, description = "The changed number.", body = NumberJson),
        (status = 400, description = "`validation_failed`: `field` names the invalid `retention_secs` or `body`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such number.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn update(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<NumberUpdate>,
) -> Result<Json<NumberJson>, ApiError> {
    authorize(&caller, Action::ManagePool).map_err(|d| ApiError::denied(d, "number"))?;
    if let Some(Some(secs)) = body.retention_secs {
        positive_secs("retention_secs", Some(secs))?;
    }
    let patch = NumberPatch {
        public: body.public,
        disabled: body.disabled,
        retention_secs: body.retention_secs,
    };
    state
        .store
        .update_number(id, patch, state.config.quarantine)
        .await??;
    let view = state
        .store
        .number(id)?
        .ok_or(ApiError::NotFound("number"))?;
    Ok(Json(number_json(view, &caller, false)))
}

/// Take a number out of the pool (admins); its messages stay until they expire.
#[utoipa::path(
    delete,
    path = "/api/v1/numbers/{id}",
    operation_id = "delete_number",
    tag = "numbers",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "The number id.")),
    responses(
        (status = 204, description = "The number is out of the pool."),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such number.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn delete(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<u64>,
) -> Result<StatusCode, ApiError> {
    authorize(&caller, Action::ManagePool).map_err(|d| ApiError::denied(d, "number"))?;
    state
        .store
        .delete_number(id, state.config.quarantine)
        .await??;
    Ok(StatusCode::NO_CONTENT)
}
