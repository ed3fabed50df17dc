//! Liveness, readiness and the admin status page.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::auth::permissions::{Action, Caller, authorize};

/// `GET /healthz`: the process is up and answering.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store is open and its writer is running, so a webhook would be
/// stored. Load balancers and `burnbox healthcheck` use this.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    if state.store.is_ready() {
        Ok(Json(json!({ "status": "ready" })))
    } else {
        Err(ApiError::Unavailable)
    }
}

/// `GET /api/v1/admin/system-status`.
pub async fn system_status(
    caller: Caller,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&caller, Action::ViewSystem).map_err(|d| ApiError::denied(d, "status"))?;
    let counts = state.store.counts()?;
    let stats = state.store.writer().stats();
    let store_bytes = std::fs::metadata(state.config.data_dir.join(crate::store::STORE_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "store": {
            "file_bytes": store_bytes,
            "messages": counts.messages,
            "numbers": counts.numbers,
            "unrouted_total": counts.unrouted_total,
            "duplicates_total": counts.duplicates_total,
            "expired_total": counts.expired_total,
        },
        "realtime": {
            "listeners": state.hub.listeners(),
        },
        "writer": {
            "alive": state.store.writer().is_alive(),
            "commits": stats.commits.load(Ordering::Relaxed),
            "jobs": stats.jobs.load(Ordering::Relaxed),
            "failed_commits": stats.failed_commits.load(Ordering::Relaxed),
        },
        "providers": state.providers.values().map(|p| json!({
            "name": &*p.name,
            "kind": p.kind.as_str(),
        })).collect::<Vec<_>>(),
    })))
}
