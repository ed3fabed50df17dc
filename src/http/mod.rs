//! The gateway: the router, its layers and the handlers, grouped by area. This is the
//! only module that knows about HTTP.

mod auth;
mod caller;
mod error;
mod forwarded;
mod health;
mod json;
mod leases;
mod limits;
mod messages;
mod numbers;
mod users;
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use auth::guest_limiter;
pub use error::{ApiError, PROBLEM_JSON};
pub use limits::{FORGET_EVERY, Limits};

use crate::auth::password_guard::PasswordGuard;
use crate::auth::tokens::TokenKeys;
use crate::config::Config;
use crate::providers::{Adapter, ProviderKind};
use crate::store::Store;

/// A provider instance the webhook route can dispatch to.
#[derive(Debug, Clone)]
pub struct ProviderInstance {
    pub name: Arc<str>,
    pub kind: ProviderKind,
    pub adapter: Adapter,
}

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub passwords: PasswordGuard,
    pub tokens: TokenKeys,
    pub limits: limits::Limits,
    pub hub: crate::realtime::Hub,
    pub search: crate::search::SearchIndex,
    pub indexer: crate::search::indexer::Indexer,
    /// Guest sessions per client address.
    pub guest_limiter: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    pub providers: HashMap<String, ProviderInstance>,
    pub started: Instant,
}

/// Which listener a request came in on; the public URL of a webhook depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application for one listener.
pub fn router(state: Arc<AppState>, scheme: Scheme) -> Router {
    let timeout = state.config.request_timeout;
    let api_body_limit = state.config.api_body_limit;
    let routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/webhooks/{provider}",
            // Twilio can be set to call with GET (parameters in the signed query).
            post(webhooks::receive).get(webhooks::receive),
        )
        .route("/api/v1/messages", get(messages::list_all))
        .route("/api/v1/messages/{inbox}", get(messages::list_inbox))
        .route(
            "/api/v1/messages/{number_id}/{message_id}",
            delete(messages::delete_one),
        )
        .route(
            "/api/v1/messages/{number_id}/{message_id}/read",
            post(messages::mark_read),
        )
        .route(
            "/api/v1/numbers/{id}/messages/latest",
            get(messages::latest),
        )
        .route(
            "/api/v1/numbers/{id}/messages/next",
            get(messages::wait_next),
        )
        .route("/api/v1/numbers", get(numbers::list).post(numbers::create))
        .route(
            "/api/v1/numbers/{id}",
            get(numbers::get)
                .put(numbers::update)
                .delete(numbers::delete),
        )
        .route("/api/v1/leases", get(leases::list).post(leases::create))
        .route("/api/v1/leases/{id}", delete(leases::release))
        .route("/api/v1/leases/{id}/extend", post(leases::extend))
        .route("/api/v1/admin/users", post(users::create))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/refresh", post(auth::refresh))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/auth/logout-all", post(auth::logout_all))
        .route("/api/v1/auth/guest", post(auth::guest))
        .route("/api/v1/admin/system-status", get(health::system_status))
        .fallback(|| async { ApiError::NotFound("this route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(api_body_limit))
        .layer(axum::Extension(scheme))
        .with_state(Arc::clone(&state));

    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http().make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // The path only: query strings can carry signatures (Twilio's bodySHA256).
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id,
                    )
                }),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
            .layer(middleware::from_fn_with_state(timeout, request_timeout))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("DENY"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            ))
            // Messages are private and short-lived: no cache anywhere may keep them.
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            )),
    )
}

/// The search document of a message (text and sender, under its inbox).
pub fn search_document(
    message: &crate::store::MessageView,
) -> crate::search::indexer::OwnedDocument {
    crate::search::indexer::OwnedDocument {
        message_id: message.id,
        inbox: message.inbox.key(),
        received_at_ms: message.received_at_ms,
        text: message.text.clone(),
        from: message.from.clone(),
    }
}

/// Answers 503 `timeout` when a request outlives `request_timeout`. A webhook cut off
/// here may still commit; the provider's retry is then answered as a duplicate.
async fn request_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}
