//! `/api/v1/leases`: take a number from the pool, extend the lease, give it back.

use std::sync::Arc;
use std::time::Duration;

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
use crate::config::Config;
use crate::store::{LeaseEnd, LeaseRequest, LeaseView, Role, now_ms};

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseJson {
    pub id: u64,
    pub number_id: u64,
    /// The leased number, E.164.
    pub number: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// When it ended (RFC 3339, UTC); absent while active.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    /// How it ended: `released` by its holder, `expired`, or `revoked` by an admin;
    /// absent while active.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "released")]
    pub end_reason: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeasesJson {
    pub leases: Vec<LeaseJson>,
}

fn lease_json(lease: LeaseView, number: String) -> LeaseJson {
    LeaseJson {
        id: lease.id,
        number_id: lease.number_id,
        number,
        started_at: rfc3339(lease.started_at_ms),
        expires_at: rfc3339(lease.expires_at_ms),
        ended_at: lease.ended.map(|(at, _)| rfc3339(at)),
        end_reason: lease.ended.map(|(_, how)| match how {
            LeaseEnd::Released => "released",
            LeaseEnd::Expired => "expired",
            LeaseEnd::Revoked => "revoked",
        }),
    }
}

/// Fills in the leased number's E.164 form.
fn with_number(state: &AppState, lease: LeaseView) -> Result<LeaseJson, ApiError> {
    let number = state
        .store
        .number(lease.number_id)?
        .map(|view| view.number)
        .unwrap_or_default();
    Ok(lease_json(lease, number))
}

/// How long a lease of `role` lasts when the caller does not say, and the most a caller
/// of that role may ask for.
fn default_duration(config: &Config, role: Role) -> Duration {
    match role {
        Role::Guest => config.lease_guest,
        Role::User | Role::Admin => config.lease_user,
    }
}

fn requested_duration(
    config: &Config,
    role: Role,
    secs: Option<u64>,
) -> Result<Duration, ApiError> {
    let limit = match role {
        Role::Guest => config.lease_guest,
        Role::User | Role::Admin => config.lease_max,
    };
    match secs {
        None => Ok(default_duration(config, role).min(limit)),
        Some(secs) if secs >= 60 && Duration::from_secs(secs) <= limit => {
            Ok(Duration::from_secs(secs))
        }
        Some(_) => Err(ApiError::validation(
            "duration_secs",
            format!(
                "must be from 60 to {} seconds for your role",
                limit.as_secs()
            ),
        )),
    }
}

/// What to lease; every field is optional (`{}` leases any free number).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLease {
    /// A particular number; otherwise any free one that fits the filters.
    pub number_id: Option<u64>,
    /// Only numbers of this provider instance.
    pub provider: Option<String>,
    /// E.164 prefix: "+44" (United Kingdom), "+1415" (San Francisco).
    #[schema(pattern = r"^\+[0-9]+$", example = "+44")]
    pub prefix: Option<String>,
    /// Lease length, at least 60 seconds; default and maximum depend on the role.
    #[schema(minimum = 60)]
    pub duration_secs: Option<u64>,
}

/// Lease a free number; its messages are visible only to the holder while the lease lasts.
#[utoipa::path(
    post,
    path = "/api/v1/leases",
    operation_id = "create_lease",
    tag = "leases",
    security(("basic" = []), ("bearer" = [])),
    request_body = NewLease,
    responses(
        (status = 201, description = "The new lease.", body = LeaseJson),
        (status = 400, description = "`validation_failed`: `field` names the invalid `duration_secs`, `prefix` or `body`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the requested `number_id` does not exist.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_number_available`: nothing matching is free; `number_unavailable`: the requested number is not free; `lease_limit_reached`: the caller holds as many leases as their role allows.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn create(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<NewLease>,
) -> Result<(StatusCode, Json<LeaseJson>), ApiError> {
    authorize(&caller, Action::Lease).map_err(|d| ApiError::denied(d, "leases"))?;
    let duration = requested_duration(&state.config, caller.role, body.duration_secs)?;
    if let Some(prefix) = &body.prefix
        && !(prefix.starts_with('+')
            && prefix.len() > 1
            && prefix[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ApiError::validation(
            "prefix",
            "must be '+' followed by digits, like +44",
        ));
    }
    let request = LeaseRequest {
        holder: caller.user_id,
        number_id: body.number_id,
        provider: body.provider,
        prefix: body.prefix,
        duration,
        max_active: match caller.role {
            Role::Guest => 1,
            Role::User => state.config.user_max_leases,
            Role::Admin => usize::MAX,
        },
    };
    let lease = state.store.lease_number(request).await??;
    Ok((StatusCode::CREATED, Json(with_number(&state, lease)?)))
}

/// The caller's active leases.
#[utoipa::path(
    get,
    path = "/api/v1/leases",
    operation_id = "list_leases",
    tag = "leases",
    security(("basic" = []), ("bearer" = [])),
    responses((status = 200, description = "The active leases.", body = LeasesJson)),
)]
pub async fn list(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<LeasesJson>, ApiError> {
    let app = Arc::clone(&state);
    let leases = blocking(move || {
        app.store
            .active_leases(caller.user_id)?
            .into_iter()
            .map(|lease| with_number(&app, lease))
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(Json(LeasesJson { leases }))
}

/// Finds a lease the caller may manage; others' leases are "not found".
fn managed_lease(state: &AppState, caller: &Caller, id: u64) -> Result<LeaseView, ApiError> {
    let lease = state.store.lease(id)?.ok_or(ApiError::NotFound("lease"))?;
    authorize(
        caller,
        Action::ManageLease {
            holder: lease.holder,
        },
    )
    .map_err(|d| ApiError::denied(d, "lease"))?;
    Ok(lease)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// How much longer, at least 60 seconds; default: the role's lease length. Capped at
    /// the server's maximum lease length from now.
    #[schema(minimum = 60)]
    pub duration_secs: Option<u64>,
}

/// Extend a lease.
#[utoipa::path(
    post,
    path = "/api/v1/leases/{id}/extend",
    operation_id = "extend_lease",
    tag = "leases",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "The lease id.")),
    request_body = Extension,
    responses(
        (status = 200, description = "The extended lease.", body = LeaseJson),
        (status = 400, description = "`validation_failed`: `field` names the invalid `duration_secs` or `body`.",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such lease, or not the caller's.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_ended`: the lease has already ended.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn extend(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<Extension>,
) -> Result<Json<LeaseJson>, ApiError> {
    let lease = managed_lease(&state, &caller, id)?;
    let more = requested_duration(&state.config, caller.role, body.duration_secs)?;
    let now = now_ms();
    // Guests never hold a number past `lease_guest` from when they took it; others
    // never past `lease_max` from now.
    let cap = match caller.role {
        Role::Guest => lease
            .started_at_ms
            .saturating_add(millis(state.config.lease_guest)),
        Role::User | Role::Admin => now.saturating_add(millis(state.config.lease_max)),
    };
    let expires_at = lease
        .expires_at_ms
        .max(now)
        .saturating_add(millis(more))
        .min(cap);
    let lease = state
        .store
        .extend_lease(id, Some(lease.holder), expires_at)
        .await??;
    Ok(Json(with_number(&state, lease)?))
}

/// Release a lease: give the number back (it rests in quarantine before its next lease).
#[utoipa::path(
    delete,
    path = "/api/v1/leases/{id}",
    operation_id = "release_lease",
    tag = "leases",
    security(("basic" = []), ("bearer" = [])),
    params(("id" = u64, Path, description = "The lease id.")),
    responses(
        (status = 200, description = "The ended lease.", body = LeaseJson),
        (status = 404, description = "`not_found`: no such lease, or not the caller's.",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_ended`: the lease has already ended.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn release(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<LeaseJson>, ApiError> {
    let lease = managed_lease(&state, &caller, id)?;
    let how = if lease.holder == caller.user_id {
        LeaseEnd::Released
    } else {
        LeaseEnd::Revoked
    };
    let lease = state
        .store
        .end_lease(id, Some(lease.holder), how, state.config.quarantine)
        .await??;
    Ok(Json(with_number(&state, lease)?))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
