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
    /// The configured provider instances.
    pub providers: Vec<ProviderStatusJson>,
    pub errors: ErrorsStatusJson,
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
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderStatusJson {
    /// The instance name, as in `/webhooks/{provider}`.
    pub name: String,
    /// The provider type.
    #[schema(example = "twilio")]
    pub kind: &'static str,
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
    let counts = state.store.counts()?;
    let stats = state.store.writer().stats();
    let store_bytes = std::fs::metadata(state.config.data_dir.join(crate::store::STORE_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(Json(SystemStatusJson {
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
        },
        providers: state
            .providers
            .values()
            .map(|p| ProviderStatusJson {
                name: p.name.to_string(),
                kind: p.kind.as_str(),
            })
            .collect(),
        errors: {
            let (recent, total) = state.diagnostics.snapshot();
            ErrorsStatusJson { total, recent }
        },
    }))
}
