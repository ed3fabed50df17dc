//! `/api/v1/leases`: take a number from the pool, extend the lease, give it back.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::json::ApiJson;
use super::messages::{blocking, rfc3339};
use super::{ApiError, AppState};
use crate::auth::permissions::{Action, Caller, authorize};
use crate::config::Config;
use crate::store::{LeaseEnd, LeaseRequest, LeaseView, Role, now_ms};

#[derive(Debug, Serialize)]
pub struct LeaseJson {
    pub id: u64,
    pub number_id: u64,
    /// The leased number, E.164.
    pub number: String,
    pub started_at: String,
    pub expires_at: String,
    /// When and how it ended; absent while active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<&'static str>,
}

#[derive(Debug, Serialize)]
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLease {
    /// A particular number; otherwise any free one that fits the filters.
    pub number_id: Option<u64>,
    pub provider: Option<String>,
    /// E.164 prefix: "+44" (United Kingdom), "+1415" (San Francisco).
    pub prefix: Option<String>,
    pub duration_secs: Option<u64>,
}

/// `POST /api/v1/leases`: lease a free number.
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

/// `GET /api/v1/leases`: the caller's active leases.
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// How much longer; default: the role's lease length. Capped at `lease_max` from now.
    pub duration_secs: Option<u64>,
}

/// `POST /api/v1/leases/{id}/extend`.
pub async fn extend(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<u64>,
    ApiJson(body): ApiJson<Extension>,
) -> Result<Json<LeaseJson>, ApiError> {
    let lease = managed_lease(&state, &caller, id)?;
    let more = requested_duration(&state.config, caller.role, body.duration_secs)?;
    let now = now_ms();
    let cap = now.saturating_add(millis(state.config.lease_max));
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

/// `DELETE /api/v1/leases/{id}`: give the number back (it rests in quarantine).
pub async fn release(
    caller: Caller,
    State(state): State<Arc<AppState>>,
    Path(id): Path<u64>,
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
