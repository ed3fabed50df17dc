//! `GET /metrics`: the system-status figures in the Prometheus/OpenMetrics text format,
//! so a self-hoster's existing monitoring can alert on a failing provider or a stuck
//! sweeper.
//!
//! The figures are read at scrape time from the same snapshot as system-status; there
//! is no second set of counters to drift from it.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use subtle::ConstantTimeEq;

use super::health::{SystemStatusJson, snapshot};
use super::openapi::Problem;
use super::{ApiError, AppState};
use crate::auth::permissions::{Action, Caller, authorize};
use crate::providers::health::BreakerState;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Admitted to read metrics: the `metrics_token` as a Bearer token (what a Prometheus
/// scrape config holds), or an admin.
pub struct MetricsReader;

impl FromRequestParts<Arc<AppState>> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        if let Some(expected) = &state.config.metrics_token {
            let presented = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if let Some(presented) = presented
                && bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes()))
            {
                return Ok(Self);
            }
        }
        let caller = Caller::from_request_parts(parts, state).await?;
        authorize(&caller, Action::ViewSystem).map_err(|d| ApiError::denied(d, "metrics"))?;
        Ok(Self)
    }
}

/// Prometheus metrics (the `metrics_token`, or an admin).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    security(("bearer" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The figures of system-status in the OpenMetrics text format.",
            content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "`unauthenticated` / `bad_credentials`: no or a wrong token or login.",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: admins (or the metrics token) only.",
            body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn metrics(
    _reader: MetricsReader,
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    let status = snapshot(&state)?;
    let text = render(&status).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
    Ok(response)
}

type Labelled = Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>;

fn render(status: &SystemStatusJson) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("burnbox");
    registry.register(
        "build",
        "The running version",
        Info::new(vec![("version".to_owned(), status.version.to_owned())]),
    );
    let mut gauge = |name: &str, help: &str, value: f64| {
        registry.register(name, help, ConstGauge::new(value));
    };
    gauge(
        "uptime_seconds",
        "Seconds since start",
        status.uptime_secs as f64,
    );
    gauge(
        "store_file_bytes",
        "Size of the store file",
        status.store.file_bytes as f64,
    );
    gauge(
        "messages",
        "Messages stored now",
        status.store.messages as f64,
    );
    gauge(
        "numbers",
        "Numbers in the pool",
        status.store.numbers as f64,
    );
    gauge(
        "sweeper_lag_seconds",
        "How overdue the oldest expired message is (0: none)",
        status.store.sweeper_lag_secs as f64,
    );
    gauge(
        "realtime_listeners",
        "Clients waiting for new messages",
        status.realtime.listeners as f64,
    );
    gauge(
        "writer_alive",
        "1 while the store writer runs",
        f64::from(u8::from(status.writer.alive)),
    );
    gauge(
        "outbound_pending",
        "Outbound messages not yet taken by a provider",
        status.outbound.pending as f64,
    );
    for (name, help, micros) in [
        (
            "writer_apply_seconds",
            "Time the store writer spent applying writes",
            status.writer.apply_micros,
        ),
        (
            "writer_commit_seconds",
            "Time the store writer spent committing them (fsync included)",
            status.writer.commit_micros,
        ),
    ] {
        registry.register(name, help, ConstCounter::new(micros as f64 / 1e6));
    }
    let mut counter = |name: &str, help: &str, value: u64| {
        registry.register(name, help, ConstCounter::new(value));
    };
    counter(
        "unrouted_messages",
        "Messages received for numbers outside the pool",
        status.store.unrouted_total,
    );
    counter(
        "duplicate_webhooks",
        "Webhook deliveries recognised as repeats",
        status.store.duplicates_total,
    );
    counter(
        "expired_messages",
        "Messages deleted at the end of their retention",
        status.store.expired_total,
    );
    counter("writer_commits", "Group commits", status.writer.commits);
    counter("writer_jobs", "Writes committed", status.writer.jobs);
    counter(
        "writer_failed_commits",
        "Group commits that failed and were rolled back",
        status.writer.failed_commits,
    );
    counter(
        "outbound_messages",
        "Outbound messages accepted",
        status.outbound.total,
    );
    counter(
        "delivery_reports",
        "Delivery reports stored",
        status.outbound.reports_total,
    );
    counter(
        "errors",
        "Failures recorded for system-status",
        status.errors.total,
    );

    let connections = Labelled::default();
    for (transport, open) in [
        ("websocket", status.realtime.websocket_connections),
        ("sse", status.realtime.sse_connections),
        ("socketio", status.realtime.socketio_connections),
    ] {
        connections
            .get_or_create(&vec![("transport".to_owned(), transport.to_owned())])
            .set(open as f64);
    }
    registry.register(
        "realtime_connections",
        "Open push connections by transport",
        connections,
    );
    registry.register(
        "realtime_dropped_slow",
        "Push subscribers dropped for falling behind (told their resume id)",
        ConstCounter::new(status.realtime.dropped_slow_total),
    );

    let up = Labelled::default();
    let error_rate = Labelled::default();
    let latency = Labelled::default();
    for provider in &status.providers {
        let Some(health) = &provider.health else {
            continue;
        };
        let labels = vec![
            ("provider".to_owned(), provider.name.clone()),
            ("kind".to_owned(), provider.kind.to_owned()),
        ];
        // 1 while sends go through it; an open breaker means it is being skipped.
        let healthy = !matches!(health.state, BreakerState::Open);
        up.get_or_create(&labels).set(f64::from(u8::from(healthy)));
        error_rate.get_or_create(&labels).set(health.error_rate);
        if let Some(ms) = health.latency_ms {
            latency.get_or_create(&labels).set(ms / 1000.0);
        }
    }
    registry.register(
        "provider_up",
        "1 unless the provider's circuit breaker is open",
        up,
    );
    registry.register(
        "provider_error_rate",
        "Share of failed probes and sends (recent window)",
        error_rate,
    );
    registry.register(
        "provider_latency_seconds",
        "Moving average of probe and send latency",
        latency,
    );

    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}
