//! The OpenAPI 3.1 document at `/api/v1/openapi.json` and the docs page at `/api/v1/docs`.
//!
//! The document is generated from the `#[utoipa::path]` annotations of the very handlers
//! the router is built from (see `api_routes` in the parent module), then completed here
//! with what every operation shares: security schemes, the problem responses that any
//! route can give, and the error code list from [`ERROR_CODES`].

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::schema::{Object, SchemaFormat, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Header, Ref, RefOr, Response as ApiResponse, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::error::ERROR_CODES;
use super::{ApiError, PROBLEM_JSON};

/// The error body of every failure (RFC 9457 problem details). A documentation type: the
/// body itself is written by `ApiError`'s `IntoResponse`.
pub struct Problem;

impl PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        let codes = ERROR_CODES
            .iter()
            .map(|(code, status, meaning)| format!("- `{code}` ({status}): {meaning}"))
            .collect::<Vec<_>>()
            .join("\n");
        let string = |description: &str| {
            Object::builder()
                .schema_type(Type::String)
                .description(Some(description))
        };
        Object::builder()
            .schema_type(Type::Object)
            .description(Some(
                "An error, as `application/problem+json` (RFC 9457). Match on `code`.",
            ))
            .property(
                "type",
                string("`urn:burnbox:error:<code>`.")
                    .format(Some(SchemaFormat::Custom("uri".to_owned()))),
            )
            .required("type")
            .property("title", string("The HTTP status text."))
            .required("title")
            .property(
                "status",
                Object::builder()
                    .schema_type(Type::Integer)
                    .description(Some("The HTTP status code.")),
            )
            .required("status")
            .property("detail", string("What went wrong, for people."))
            .required("detail")
            .property(
                "code",
                string(&format!(
                    "The stable, machine-readable error code:\n\n{codes}"
                ))
                .enum_values(Some(ERROR_CODES.iter().map(|(code, _, _)| *code))),
            )
            .required("code")
            .property(
                "field",
                string("With `validation_failed`: the parameter, header or body field at fault."),
            )
            .examples([serde_json::json!({
                "type": "urn:burnbox:error:validation_failed",
                "title": "Bad Request",
                "status": 400,
                "detail": "`limit`: must be a whole number from 1 to 500",
                "code": "validation_failed",
                "field": "limit",
            })])
            .into()
    }
}

impl ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
}

/// The document's fixed parts; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "burnbox",
        version = env!("CARGO_PKG_VERSION"),
        description = "Self-hosted disposable-SMS server: lease a temporary number, read the \
            SMS it receives, give it back.\n\n\
            Authenticate with HTTP Basic (scripts) or with an access token from \
            `/api/v1/auth/login` or `/api/v1/auth/guest` as `Authorization: Bearer <token>`. \
            Basic is refused (400 `validation_failed`, field `authorization`) on a request \
            with an `Origin` header: web pages use tokens. \
            Every error is `application/problem+json` with a stable `code` (see the `Problem` \
            schema); an unknown route answers 404 `not_found`, a known route with another \
            method 405 `method_not_allowed`. Responses carry an `X-Request-Id` for the logs.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later"),
    ),
    tags(
        (name = "auth", description = "Log in, refresh tokens, log out, guest sessions."),
        (name = "leases", description = "Take a number from the pool, extend the lease, give it back."),
        (name = "messages", description = "Read, wait for, mark and delete received SMS."),
        (name = "numbers", description = "The pool of numbers; admins manage it."),
        (name = "realtime", description = "New messages as they arrive: server-sent events, WebSocket \
            (and Socket.IO at `/socket.io/`, with the same events), each resumable by message id."),
        (name = "admin", description = "Accounts and server status (admins)."),
        (name = "webhooks", description = "Where SMS providers deliver messages; signed by the provider, no account."),
        (name = "user-webhooks", description = "Your own webhook URLs: each new message of your leases, POSTed and signed (Standard Webhooks), retried for up to 24 h, with a delivery log."),
        (name = "health", description = "Liveness and readiness probes."),
        (name = "meta", description = "This document and the API page."),
    ),
    components(schemas(Problem)),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description =
            Some("Username and password on every request; failed guesses are rate-limited.".into());
        components.add_security_scheme("basic", SecurityScheme::Http(basic));
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        bearer.description = Some(
            "An access token from `/api/v1/auth/login`, `/refresh` or `/guest`; it dies \
             with its session at logout."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        // Browsers cannot set headers on EventSource or WebSocket; only the streaming
        // endpoints take the token in the URL.
        components.add_security_scheme(
            "access_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "access_token",
                "An access token in the URL, for `/api/v1/events` and `/api/v1/ws` only \
                 (browsers cannot send headers there). URLs end up in logs: prefer the \
                 `Authorization` header where the client can send it.",
            ))),
        );
    }
}

/// A reusable problem response, named in `components.responses`.
fn problem_response(description: &str) -> ApiResponse {
    let mut response = ApiResponse::new(description);
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        RefOr::T(Content::new(Some(Ref::from_schema_name(Problem::name())))),
    );
    response
}

fn header(description: &str, schema_type: Type) -> RefOr<Header> {
    let mut header = Header::new(Object::with_type(schema_type));
    header.description = Some(description.to_owned());
    RefOr::T(header)
}

/// The responses any operation can give, by kind: added to each operation by
/// [`complete`] rather than repeated on every handler.
const UNAUTHORIZED: &str = "Unauthorized";
const RATE_LIMITED: &str = "RateLimited";
const PAYLOAD_TOO_LARGE: &str = "PayloadTooLarge";
const UNAVAILABLE: &str = "Unavailable";
const INTERNAL: &str = "InternalError";

fn shared_responses() -> [(&'static str, ApiResponse); 5] {
    let mut unauthorized = problem_response(
        "`unauthenticated`: no credentials; `bad_credentials`: wrong password, or an \
         expired, forged or logged-out access token.",
    );
    unauthorized.headers.insert(
        "WWW-Authenticate".into(),
        header("`Basic realm=\"burnbox\", charset=\"UTF-8\"`", Type::String),
    );
    let mut rate_limited = problem_response(
        "`rate_limited`: too many requests for this account or address, or too many failed \
         password guesses.",
    );
    rate_limited.headers.insert(
        "Retry-After".into(),
        header("Seconds until a retry can succeed.", Type::Integer),
    );
    rate_limited.headers.insert(
        "RateLimit-Limit".into(),
        header(
            "Requests per minute allowed (request-rate limits only).",
            Type::Integer,
        ),
    );
    rate_limited.headers.insert(
        "RateLimit-Remaining".into(),
        header(
            "Always 0 on this response (request-rate limits only).",
            Type::Integer,
        ),
    );
    rate_limited.headers.insert(
        "RateLimit-Reset".into(),
        header(
            "Seconds until the window resets (request-rate limits only).",
            Type::Integer,
        ),
    );
    [
        (UNAUTHORIZED, unauthorized),
        (RATE_LIMITED, rate_limited),
        (
            PAYLOAD_TOO_LARGE,
            problem_response("`payload_too_large`: the body is larger than the API body limit."),
        ),
        (
            UNAVAILABLE,
            problem_response(
                "`unavailable`: the store is not available; `timeout`: the request took \
                 longer than the server allows. Retry later.",
            ),
        ),
        (
            INTERNAL,
            problem_response("`internal`: an unexpected error; the server log has details."),
        ),
    ]
}

/// Completes the generated document: the shared problem responses on every operation
/// that can give them, so each handler documents only its own outcomes.
pub fn complete(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    for (name, response) in shared_responses() {
        components
            .responses
            .insert(name.to_owned(), RefOr::T(response));
    }
    for item in openapi.paths.paths.values_mut() {
        for method in METHODS {
            if let Some(operation) = operation_mut(item, method) {
                add_shared_responses(operation);
                absent_not_null_headers(operation);
            }
        }
    }
}

/// The generator types an `Option` header as nullable, but a header is absent or a
/// string, never null: keep only the real type.
fn absent_not_null_headers(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        if parameter.parameter_in != ParameterIn::Header {
            continue;
        }
        if let Some(RefOr::T(Schema::Object(object))) = &mut parameter.schema
            && let SchemaType::Array(types) = &object.schema_type
            && let [only] = types
                .iter()
                .filter(|kind| **kind != Type::Null)
                .collect::<Vec<_>>()
                .as_slice()
        {
            object.schema_type = SchemaType::Type((*only).clone());
        }
    }
}

fn add_shared_responses(operation: &mut Operation) {
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let json_body = operation
        .request_body
        .as_ref()
        .is_some_and(|body| match body {
            RefOr::T(body) => body.content.contains_key("application/json"),
            RefOr::Ref(_) => true,
        });
    let mut shared = Vec::new();
    if secured {
        // The credentials are checked, and the account's request rate, before anything else.
        shared.push(("401", UNAUTHORIZED));
        shared.push(("429", RATE_LIMITED));
    }
    if json_body {
        shared.push(("413", PAYLOAD_TOO_LARGE));
    }
    // Every route runs under the request timeout and may fail unexpectedly.
    shared.push(("500", INTERNAL));
    shared.push(("503", UNAVAILABLE));
    for (status, name) in shared {
        // An operation that documents a status itself says more precisely what it means.
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
    }
}

/// The methods the API uses; the others never carry an operation here.
pub const METHODS: [HttpMethod; 4] = [
    HttpMethod::Get,
    HttpMethod::Post,
    HttpMethod::Put,
    HttpMethod::Delete,
];

fn operation_mut(
    item: &mut utoipa::openapi::PathItem,
    method: HttpMethod,
) -> Option<&mut Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        _ => None,
    }
}

/// The document and the page, rendered once: both are the same for every request.
struct Published {
    json: Result<Bytes, String>,
    html: Bytes,
    /// The docs page's own policy: the global one plus exactly its inline style.
    csp: HeaderValue,
}

static PUBLISHED: LazyLock<Published> = LazyLock::new(|| {
    let document = super::openapi();
    let json = serde_json::to_vec(&document)
        .map(Bytes::from)
        .map_err(|error| error.to_string());
    let page = match serde_json::to_value(&document) {
        Ok(value) => super::docs_page::render(&value),
        Err(error) => super::docs_page::render_error(&error.to_string()),
    };
    let csp = HeaderValue::from_str(&format!(
        "default-src 'none'; style-src {}; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'none'",
        page.style_source
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    Published {
        json,
        html: Bytes::from(page.html),
        csp,
    }
});

/// The document is public and changes only with the binary: clients may keep it a while.
const CACHE_BRIEFLY: HeaderValue = HeaderValue::from_static("public, max-age=300");

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi_document",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server.",
        body = serde_json::Value, content_type = "application/json")),
)]
pub async fn document() -> Result<Response, ApiError> {
    let json = PUBLISHED.json.clone().map_err(ApiError::Internal)?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, CACHE_BRIEFLY),
        ],
        json,
    )
        .into_response())
}

/// The API reference as a web page, rendered from this document.
#[utoipa::path(
    get,
    path = "/api/v1/docs",
    operation_id = "api_docs_page",
    tag = "meta",
    responses((status = 200, description = "A self-contained HTML page.",
        body = String, content_type = "text/html")),
)]
pub async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, CACHE_BRIEFLY),
            (header::CONTENT_SECURITY_POLICY, PUBLISHED.csp.clone()),
        ],
        PUBLISHED.html.clone(),
    )
        .into_response()
}
