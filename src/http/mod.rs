//! The gateway: the router, its layers and the handlers, grouped by area. This is the
//! only module that knows about HTTP.

mod auth;
mod caller;
mod docs_page;
mod email_links;
mod error;
mod forwarded;
mod health;
mod hooks;
mod json;
mod leases;
mod limits;
mod link_pages;
mod messages;
mod metrics;
mod numbers;
mod openapi;
mod outbound;
mod providers;
mod socketio;
mod sse;
mod streams;
mod users;
mod webhooks;
mod ws;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::guest_limiter;
pub use email_links::mail_limiter;
pub use error::{ApiError, ERROR_CODES, PROBLEM_JSON};
pub use limits::{FORGET_EVERY, Limits};
pub use messages::event_json;
pub use webhooks::announce;

use crate::auth::password_guard::PasswordGuard;
use crate::auth::tokens::TokenKeys;
use crate::config::Config;
use crate::diagnostics::{ErrorSource, RecentErrors};
use crate::providers::registry::ProviderRegistry;
use crate::store::Store;

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub passwords: PasswordGuard,
    pub tokens: TokenKeys,
    pub limits: limits::Limits,
    pub realtime: crate::realtime::Realtime,
    pub search: crate::search::SearchIndex,
    pub indexer: crate::search::indexer::Indexer,
    /// Guest sessions per client address.
    pub guest_limiter: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    /// The provider instances; they change at run time (admin API), so look them up
    /// per request.
    pub providers: Arc<ProviderRegistry>,
    pub started: Instant,
    pub diagnostics: RecentErrors,
    /// The SMTP relay, when e-mail is configured.
    pub mailer: Option<crate::mail::Mailer>,
    /// Mails per recipient address (verification and reset links).
    pub mail_limiter: governor::DefaultKeyedRateLimiter<String>,
    /// The outbound SMS sender (queue, provider health).
    pub outbox: crate::outbound::Outbox,
    /// Short background jobs a request starts and does not wait for (mail): shutdown
    /// waits for them like any other task, so a mail is not cut off half sent.
    pub background: tokio_util::task::TaskTracker,
    /// Users' outbound webhooks ("send test", settings).
    pub hooks: crate::hooks::Hooks,
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

/// Every route as (method, path template), in OpenAPI's spelling. The router is built from
/// the annotated handlers in [`api_routes`], so each route is in the OpenAPI document by
/// construction; this list is what tests check that against (a unit test: the document
/// has exactly these operations; `tests/openapi.rs`: the served document has them and the
/// server answers each), so a route added or removed without updating it fails a test.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/readyz"),
    ("POST", "/webhooks/{provider}"),
    ("GET", "/webhooks/{provider}"),
    ("POST", "/webhooks/{provider}/status"),
    ("GET", "/webhooks/{provider}/status"),
    ("GET", "/api/v1/messages"),
    ("POST", "/api/v1/messages"),
    ("GET", "/api/v1/outbound/{id}"),
    ("GET", "/api/v1/messages/{inbox}"),
    ("DELETE", "/api/v1/messages/{number_id}/{message_id}"),
    ("POST", "/api/v1/messages/{number_id}/{message_id}/read"),
    ("GET", "/api/v1/numbers/{id}/messages/latest"),
    ("GET", "/api/v1/numbers/{id}/messages/next"),
    ("GET", "/api/v1/numbers"),
    ("POST", "/api/v1/numbers"),
    ("GET", "/api/v1/numbers/{id}"),
    ("PUT", "/api/v1/numbers/{id}"),
    ("DELETE", "/api/v1/numbers/{id}"),
    ("GET", "/api/v1/leases"),
    ("POST", "/api/v1/leases"),
    ("DELETE", "/api/v1/leases/{id}"),
    ("POST", "/api/v1/leases/{id}/extend"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/admin/invites"),
    ("GET", "/api/v1/admin/users"),
    ("POST", "/api/v1/admin/users"),
    ("PUT", "/api/v1/admin/users/{id}"),
    ("DELETE", "/api/v1/admin/users/{id}"),
    ("GET", "/api/v1/admin/system-status"),
    ("GET", "/api/v1/admin/providers"),
    ("POST", "/api/v1/admin/providers"),
    ("GET", "/api/v1/admin/providers/{name}"),
    ("PUT", "/api/v1/admin/providers/{name}"),
    ("DELETE", "/api/v1/admin/providers/{name}"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/logout-all"),
    ("POST", "/api/v1/auth/guest"),
    ("POST", "/api/v1/auth/password"),
    ("PUT", "/api/v1/auth/email"),
    ("POST", "/api/v1/auth/verify-email"),
    ("POST", "/api/v1/auth/password-reset"),
    ("POST", "/api/v1/auth/password-reset/confirm"),
    ("GET", "/api/v1/webhooks"),
    ("POST", "/api/v1/webhooks"),
    ("DELETE", "/api/v1/webhooks/{id}"),
    ("GET", "/api/v1/webhooks/{id}/deliveries"),
    ("POST", "/api/v1/webhooks/{id}/test"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/ws"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/docs"),
];

/// The routes and their documentation, from one list of `#[utoipa::path]` handlers.
/// Register routes only through `routes!` here: a plain `.route(...)` would be served
/// but missing from the document.
fn api_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
        // Twilio can be set to call with GET (parameters in the signed query).
        .routes(routes!(webhooks::receive, webhooks::receive_get))
        .routes(routes!(
            webhooks::receive_status,
            webhooks::receive_status_get
        ))
        .routes(routes!(messages::list_all, outbound::send))
        .routes(routes!(outbound::get))
        .routes(routes!(messages::list_inbox))
        .routes(routes!(messages::delete_one))
        .routes(routes!(messages::mark_read))
        .routes(routes!(messages::latest))
        .routes(routes!(messages::wait_next))
        .routes(routes!(numbers::list, numbers::create))
        .routes(routes!(numbers::get, numbers::update, numbers::delete))
        .routes(routes!(leases::list, leases::create))
        .routes(routes!(leases::release))
        .routes(routes!(leases::extend))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::update, users::delete))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::logout_all))
        .routes(routes!(auth::guest))
        .routes(routes!(auth::register))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::change_email))
        .routes(routes!(email_links::verify_email))
        .routes(routes!(email_links::request_password_reset))
        .routes(routes!(email_links::confirm_password_reset))
        .routes(routes!(users::create_invite))
        .routes(routes!(health::system_status))
        .routes(routes!(hooks::list, hooks::create))
        .routes(routes!(hooks::delete))
        .routes(routes!(hooks::deliveries))
        .routes(routes!(hooks::test))
        .routes(routes!(sse::events))
        .routes(routes!(ws::connect))
        .routes(routes!(providers::list, providers::create))
        .routes(routes!(
            providers::get,
            providers::update,
            providers::delete
        ))
        .routes(routes!(openapi::document))
        .routes(routes!(openapi::page))
}

/// The OpenAPI 3.1 document of the API, as served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut document) = api_routes().split_for_parts();
    openapi::complete(&mut document);
    document
}

/// The whole application for one listener.
pub fn router(state: Arc<AppState>, scheme: Scheme) -> Router {
    let timeout = state.config.request_timeout;
    let api_body_limit = state.config.api_body_limit;
    let (routes, _) = api_routes().split_for_parts();
    let routes = routes
        .merge(link_pages::router())
        .fallback(|| async { ApiError::NotFound("this route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // Socket.IO answers `/socket.io/` itself (polling and WebSocket transports).
        .layer(socketio::layer(&state))
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
            .layer(middleware::from_fn_with_state(
                state.diagnostics.clone(),
                record_failures,
            ))
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

/// Keeps server errors (5xx) in the recent-errors log that system-status shows.
/// Webhook refusals (4xx) are recorded by the webhook handler, which knows the provider.
async fn record_failures(
    State(errors): State<RecentErrors>,
    request: Request,
    next: Next,
) -> Response {
    let route = format!("{} {}", request.method(), request.uri().path());
    let response = next.run(request).await;
    if response.status().is_server_error() {
        let (code, detail) = response
            .extensions()
            .get::<error::FailureNote>()
            .map_or(("internal", String::new()), |note| {
                (note.code, note.detail.clone())
            });
        let source = if route.contains(" /webhooks/") {
            ErrorSource::Webhook
        } else {
            ErrorSource::Api
        };
        errors.record_about(source, code, route.clone(), format!("{route}: {detail}"));
    }
    response
}

/// Answers 503 `timeout` when a request outlives `request_timeout`. A webhook cut off
/// here may still commit; the provider's retry is then answered as a duplicate.
///
/// A long poll (`…/messages/next`) bounds its own wait (`timeout`, up to
/// [`messages::MAX_WAIT_SECS`]) and answers 204 when it passes, so it gets that much
/// more: otherwise any wait longer than `request_timeout` would end in a 503.
async fn request_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let limit = if path.starts_with("/api/v1/numbers/") && path.ends_with("/messages/next") {
        limit + Duration::from_secs(messages::MAX_WAIT_SECS)
    } else {
        limit
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// (method, path) of every operation in the generated document.
    fn documented() -> BTreeSet<(String, String)> {
        let document = serde_json::to_value(openapi()).unwrap_or_default();
        let mut found = BTreeSet::new();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            for method in [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ] {
                if item.get(method).is_some() {
                    found.insert((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        found
    }

    #[test]
    fn routes_lists_exactly_the_documented_routes() {
        let listed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        assert_eq!(listed.len(), ROUTES.len(), "ROUTES has no duplicates");
        assert_eq!(documented(), listed);
    }

    #[test]
    fn documented_limits_match_the_code() {
        let document = serde_json::to_value(openapi()).unwrap_or_default();
        let parameter = |path: &str, name: &str| {
            document["paths"][path]["get"]["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name)
                .map(|p| p["schema"].clone())
                .unwrap_or_default()
        };
        assert_eq!(
            parameter("/api/v1/messages", "limit")["maximum"],
            messages::MAX_LIMIT
        );
        assert_eq!(
            parameter("/api/v1/numbers/{id}/messages/next", "timeout")["maximum"],
            messages::MAX_WAIT_SECS
        );
        assert_eq!(
            document["components"]["schemas"]["NewUser"]["properties"]["password"]["minLength"],
            crate::store::MIN_PASSWORD_CHARS
        );
    }
}
