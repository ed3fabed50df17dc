//! Liveness, readiness and the admin status page.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::Problem;
use super::{ApiError, AppState};
use crate::auth::permissions::{Action, Caller, authorize};
use crate::diagnostics::ErrorEvent;
use crate::providers::health::BreakerState;
use crate::providers::registry::ProviderInstance;

/// A provider's API health as the status page and the providers API show it; `None`
/// for providers that only receive.
pub(super) fn provider_health(state: &AppState, name: &str) -> Option<ProviderHealthJson> {
    state.outbox.health(name).map(|health| {
        let (last_probe_at, last_probe_ok, last_probe_error) = match health.last_probe {
            Some((at_ms, error)) => (
                Some(super::messages::rfc3339(at_ms)),
                Some(error.is_none()),
                error,
            ),
            None => (None, None, None),
        };
        ProviderHealthJson {
            state: health.state,
            consecutive_failures: health.consecutive_failures,
            error_rate: health.error_rate,
            latency_ms: health.latency_ms.map(|ms| (ms * 10.0).round() / 10.0),
            last_probe_at,
            last_probe_ok,
            last_probe_error,
            sends_ok: health.sends_ok,
            sends_failed: health.sends_failed,
        }
    })
}

fn provider_status(state: &AppState, provider: &ProviderInstance) -> ProviderStatusJson {
    ProviderStatusJson {
        name: provider.name.to_string(),
        kind: provider.kind.as_str(),
        sends: provider.client.is_some(),
        health: provider_health(state, &provider.name),
    }
}
use crate::realtime::Transport;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthJson {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process is up and answering.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    responses((status = 200, description = "The process is up.", body = HealthJson)),
)]
pub async fn healthz() -> Json<HealthJson> {
    Json(HealthJson { status: "ok" })
}

/// Readiness: the store is open and its writer running, so a webhook would be stored.
///
/// Load balancers and `burnbox healthcheck` use this.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready to store messages.", body = HealthJson),
        (status = 503, description = "`unavailable`: the store is not ready.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<HealthJson>, ApiError> {
    if state.store.is_ready() {
        Ok(Json(HealthJson { status: "ready" }))
    } else {
        Err(ApiError::Unavailable)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SystemStatusJson {
    /// The server's version.
    pub version: &'static str,
    pub uptime_secs: u64,
    pub store: StoreStatusJson,
    pub realtime: RealtimeStatusJson,
    pub writer: WriterStatusJson,
    /// The provider instances (configuration file and admin API).
    pub providers: Vec<ProviderStatusJson>,
    pub outbound: OutboundStatusJson,
    pub errors: ErrorsStatusJson,
}

/// Sent SMS and delivery reports.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutboundStatusJson {
    /// Outbound messages ever stored.
    pub total: u64,
    /// Waiting for a provider to take them (including between retries).
    pub pending: u64,
    /// Distinct delivery reports stored.
    pub reports_total: u64,
    /// Delivery reports received again and stored once.
    pub report_repeats_total: u64,
    /// Provider messages with reports that match no outbound message of ours.
    pub unlinked_reports: u64,
}

/// Recent failures, kept in memory since the server started.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorsStatusJson {
    /// Failures recorded since start: server errors, refused webhooks, e-mail that could
    /// not be sent, failed background tasks.
    pub total: u64,
    /// The newest failures (at most 50), newest first.
    pub recent: Vec<ErrorEvent>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreStatusJson {
    /// Size of the store file on disk.
    pub file_bytes: u64,
    /// Messages stored now.
    pub messages: u64,
    /// Numbers in the pool.
    pub numbers: u64,
    /// Messages ever received for numbers outside the pool.
    pub unrouted_total: u64,
    /// Webhook deliveries recognised as repeats and stored once.
    pub duplicates_total: u64,
    /// Messages deleted at the end of their retention.
    pub expired_total: u64,
    /// How long the oldest message past its retention has waited for the sweeper, in
    /// seconds; 0 when none is due. More than a couple of `sweep_interval`s means the
    /// sweeper is stuck or falling behind.
    pub sweeper_lag_secs: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RealtimeStatusJson {
    /// Subscriptions waiting for new messages now, of every front end (long-poll waiters
    /// included).
    pub listeners: usize,
    /// Inboxes with at least one subscriber now.
    pub topics: usize,
    /// Subscribers dropped since start for falling behind (each was told its resume id).
    pub dropped_slow_total: u64,
    /// Open WebSocket connections (`/api/v1/ws`).
    pub websocket_connections: usize,
    /// Open server-sent event streams (`/api/v1/events`).
    pub sse_connections: usize,
    /// Open Socket.IO connections (`/socket.io/`).
    pub socketio_connections: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WriterStatusJson {
    pub alive: bool,
    pub commits: u64,
    pub jobs: u64,
    pub failed_commits: u64,
    /// Microseconds the writer spent applying jobs since start.
    pub apply_micros: u64,
    /// Microseconds the writer spent committing (fsync included) since start.
    pub commit_micros: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderStatusJson {
    /// The instance name, as in `/webhooks/{provider}`.
    pub name: String,
    /// The provider type.
    #[schema(example = "twilio")]
    pub kind: &'static str,
    /// Whether it has API credentials to send with (else it only receives).
    pub sends: bool,
    /// Its API's health; absent for providers that only receive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<ProviderHealthJson>,
}

/// A provider's API health, from periodic probes and from sends.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderHealthJson {
    /// The circuit breaker: `closed` (healthy, used), `open` (unhealthy, skipped in favour
    /// of fallbacks), `half_open` (cooled down, being tried again).
    pub state: BreakerState,
    /// Failed probes and sends in a row.
    pub consecutive_failures: u32,
    /// Failed share of the last 20 probes and sends, 0 to 1.
    pub error_rate: f64,
    /// Moving average of the API's answer time, ms; null before the first call.
    pub latency_ms: Option<f64>,
    /// When the last probe ran (RFC 3339); null before the first.
    #[schema(format = DateTime)]
    pub last_probe_at: Option<String>,
    /// Whether the last probe succeeded; null before the first.
    pub last_probe_ok: Option<bool>,
    /// The last probe's failure: HTTP status or provider error code, or the network failure.
    pub last_probe_error: Option<String>,
    /// Sends the provider took (or refused for good) and sends that failed.
    pub sends_ok: u64,
    pub sends_failed: u64,
}

/// System status: version, uptime, store, writer and provider figures, and recent
/// errors (admins).
#[utoipa::path(
    get,
    path = "/api/v1/admin/system-status",
    operation_id = "system_status",
    tag = "admin",
    security(("basic" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The status.", body = SystemStatusJson),
        (status = 403, description = "`forbidden`: admins only.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn system_status(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<SystemStatusJson>, ApiError> {
    authorize(&caller, Action::ViewSystem).map_err(|d| ApiError::denied(d, "status"))?;
    Ok(Json(snapshot(&state)?))
}

/// Everything system-status shows, read now; `/metrics` renders the same figures.
pub fn snapshot(state: &AppState) -> Result<SystemStatusJson, ApiError> {
    let counts = state.store.counts()?;
    let stats = state.store.writer().stats();
    let store_bytes = std::fs::metadata(state.config.data_dir.join(crate::store::STORE_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(SystemStatusJson {
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: state.started.elapsed().as_secs(),
        store: StoreStatusJson {
            file_bytes: store_bytes,
            messages: counts.messages,
            numbers: counts.numbers,
            unrouted_total: counts.unrouted_total,
            duplicates_total: counts.duplicates_total,
            expired_total: counts.expired_total,
            sweeper_lag_secs: counts.sweeper_lag_ms / 1000,
        },
        realtime: RealtimeStatusJson {
            listeners: state.realtime.hub.listeners(),
            topics: state.realtime.hub.topics(),
            dropped_slow_total: state.realtime.hub.dropped_slow(),
            websocket_connections: state.realtime.connections.open_count(Transport::WebSocket),
            sse_connections: state.realtime.connections.open_count(Transport::Sse),
            socketio_connections: state.realtime.connections.open_count(Transport::SocketIo),
        },
        writer: WriterStatusJson {
            alive: state.store.writer().is_alive(),
            commits: stats.commits.load(Ordering::Relaxed),
            jobs: stats.jobs.load(Ordering::Relaxed),
            failed_commits: stats.failed_commits.load(Ordering::Relaxed),
            apply_micros: stats.apply_micros.load(Ordering::Relaxed),
            commit_micros: stats.commit_micros.load(Ordering::Relaxed),
        },
        providers: {
            // By name (the registry's order).
            state
                .providers
                .snapshot()
                .iter()
                .map(|p| provider_status(state, p))
                .collect()
        },
        outbound: {
            let (total, pending) = state.store.outbound_counts()?;
            let reports = state.store.report_counts()?;
            OutboundStatusJson {
                total,
                pending,
                reports_total: reports.total,
                report_repeats_total: reports.repeats,
                unlinked_reports: reports.unlinked,
            }
        },
        errors: {
            let (recent, total) = state.diagnostics.snapshot();
            ErrorsStatusJson { total, recent }
        },
    })
}
