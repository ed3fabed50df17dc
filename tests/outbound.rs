//! Outbound SMS against the real server over HTTP, with a local fake of each provider's
//! REST API (Twilio, SignalWire, Vonage, Plivo, Telnyx) that speaks the documented request and
//! response formats, checks credentials the way the real API does, and records every
//! request. Delivery reports come back through `/webhooks/{name}/status`, signed with
//! each provider's own scheme.
//!
//! Waiting is done by polling the API until a condition holds (with a deadline), never
//! by sleeping a fixed time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use burnbox::config::{NumberSettings, ProviderSettings, Settings};
use burnbox::domain::Secret;
use burnbox::providers::{ProviderKind, plivo, twilio, vonage};
use common::*;
use serde_json::{Value, json};

const PUBLIC_URL: &str = "https://sms.example.com";
const RECIPIENT: &str = "+447700900123";

const TW_SID: &str = "AC00000000000000000000000000000001";
const TW_TOKEN: &str = "twilio-auth-token";
const TW_NUMBER: &str = "+14155550140";
const VONAGE_KEY: &str = "vonagekey";
const VONAGE_API_SECRET: &str = "vonage-api-secret";
const VONAGE_SIGNATURE_SECRET: &str = "vonage-signature-secret";
const VONAGE_NUMBER: &str = "+447700900140";
const PLIVO_ID: &str = "MAPLIVOAUTHID0000001";
const PLIVO_TOKEN: &str = "plivo-auth-token";
const PLIVO_NUMBER: &str = "+14155550141";
const TELNYX_KEY: &str = "KEYtelnyx0001";
const TELNYX_NUMBER: &str = "+14155550142";
const TELNYX_SEED: [u8; 32] = [7; 32];
/// SignalWire: the project id stands where Twilio has the account SID; the REST API takes
/// an API token, webhooks are signed with the Signing Key.
const SW_PROJECT: &str = "b3877c40-da60-4998-90ad-b792e98472af";
const SW_TOKEN: &str = "PTsignalwire-api-token";
const SW_SIGNING_KEY: &str = "PSK_signalwire-signing-key";
const SW_NUMBER: &str = "+14155550143";

/// One request the fake API received.
#[derive(Debug, Clone)]
struct Recorded {
    api: &'static str,
    path: String,
    /// The request's parameters: form fields, JSON fields or query, flattened to text.
    fields: BTreeMap<String, String>,
    status: u16,
}

#[derive(Default)]
struct FakeState {
    requests: Mutex<Vec<Recorded>>,
    /// APIs ("twilio", "vonage", "plivo", "telnyx") that answer 500 to everything.
    failing: Mutex<HashSet<&'static str>>,
    next_id: AtomicU64,
}

/// The fake provider APIs, on 127.0.0.1 with a port of their own.
#[derive(Clone)]
struct FakeApi {
    base: String,
    state: Arc<FakeState>,
}

impl FakeApi {
    async fn start() -> Self {
        let state = Arc::new(FakeState::default());
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{file}",
                get(twilio_account).with_state(Arc::clone(&state)),
            )
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(twilio_send).with_state(Arc::clone(&state)),
            )
            .route(
                "/api/laml/2010-04-01/Accounts/{file}",
                get(signalwire_account).with_state(Arc::clone(&state)),
            )
            .route(
                "/api/laml/2010-04-01/Accounts/{project}/Messages.json",
                post(signalwire_send).with_state(Arc::clone(&state)),
            )
            .route(
                "/sms/json",
                post(vonage_send).with_state(Arc::clone(&state)),
            )
            .route(
                "/account/get-balance",
                get(vonage_balance).with_state(Arc::clone(&state)),
            )
            .route(
                "/v1/Account/{id}/Message/",
                post(plivo_send).with_state(Arc::clone(&state)),
            )
            .route(
                "/v1/Account/{id}/",
                get(plivo_account).with_state(Arc::clone(&state)),
            )
            .route(
                "/v2/messages",
                post(telnyx_send).with_state(Arc::clone(&state)),
            )
            .route(
                "/v2/balance",
                get(telnyx_balance).with_state(Arc::clone(&state)),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, state }
    }

    fn fail(&self, api: &'static str, failing: bool) {
        let mut set = self.state.failing.lock().unwrap();
        if failing {
            set.insert(api);
        } else {
            set.remove(api);
        }
    }

    /// The send requests an API received (probes left out).
    fn sends(&self, api: &str) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.api == api && is_send_path(&r.path))
            .cloned()
            .collect()
    }
}

fn is_send_path(path: &str) -> bool {
    path.ends_with("/Messages.json")
        || path == "/sms/json"
        || path.ends_with("/Message/")
        || path == "/v2/messages"
}

impl FakeState {
    fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records the request and says whether the API is failing (then it answers 500).
    fn record(
        &self,
        api: &'static str,
        path: String,
        fields: BTreeMap<String, String>,
        status: u16,
    ) -> Option<Response> {
        let failing = self.failing.lock().unwrap().contains(api);
        let status = if failing { 500 } else { status };
        self.requests.lock().unwrap().push(Recorded {
            api,
            path,
            fields,
            status,
        });
        failing.then(|| (StatusCode::INTERNAL_SERVER_ERROR, "upstream trouble").into_response())
    }
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(BASE64.decode(encoded).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn form_fields(body: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn json_fields(body: &[u8]) -> BTreeMap<String, String> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
        })
        .collect()
}

/// Twilio: Basic `AccountSid:AuthToken`, form `To`, `From`, `Body`; 201 with `sid`.
async fn twilio_send(
    State(state): State<Arc<FakeState>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let authorized = basic(&headers) == Some((TW_SID.into(), TW_TOKEN.into())) && sid == TW_SID;
    let complete = ["To", "From", "Body"]
        .iter()
        .all(|f| fields.contains_key(*f));
    let status = match (authorized, complete) {
        (false, _) => 401,
        (true, false) => 400,
        (true, true) => 201,
    };
    let path = format!("/2010-04-01/Accounts/{sid}/Messages.json");
    if let Some(failure) = state.record("twilio", path, fields.clone(), status) {
        return failure;
    }
    match status {
        401 => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": 20003, "message": "Authenticate", "status": 401})),
        )
            .into_response(),
        400 => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"code": 21604, "message": "A 'To' phone number is required.", "status": 400})),
        )
            .into_response(),
        _ => (
            StatusCode::CREATED,
            axum::Json(json!({
                "sid": format!("SM{:032}", state.new_id()), "status": "queued",
                "to": fields["To"], "from": fields["From"], "body": fields["Body"],
                "account_sid": TW_SID, "direction": "outbound-api",
            })),
        )
            .into_response(),
    }
}

async fn twilio_account(
    State(state): State<Arc<FakeState>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorized = basic(&headers) == Some((TW_SID.into(), TW_TOKEN.into()))
        && file == format!("{TW_SID}.json");
    let status = if authorized { 200 } else { 401 };
    if let Some(failure) = state.record(
        "twilio",
        format!("/2010-04-01/Accounts/{file}"),
        BTreeMap::new(),
        status,
    ) {
        return failure;
    }
    let code = StatusCode::from_u16(status).unwrap();
    (code, axum::Json(json!({"sid": TW_SID, "status": "active"}))).into_response()
}

/// SignalWire's compatibility API, under the space's `/api/laml`: Basic
/// `ProjectID:APIToken`, form `From`, `To`, `Body`; 201 with `sid` (a UUID) and `status`.
async fn signalwire_send(
    State(state): State<Arc<FakeState>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let authorized =
        basic(&headers) == Some((SW_PROJECT.into(), SW_TOKEN.into())) && project == SW_PROJECT;
    let complete = ["From", "To", "Body"]
        .iter()
        .all(|f| fields.contains_key(*f));
    let status = match (authorized, complete) {
        (false, _) => 401,
        (true, false) => 400,
        (true, true) => 201,
    };
    let path = format!("/api/laml/2010-04-01/Accounts/{project}/Messages.json");
    if let Some(failure) = state.record("signalwire", path, fields.clone(), status) {
        return failure;
    }
    match status {
        401 => (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
        400 => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"code": "21604", "message": "'To' is required", "status": 400})),
        )
            .into_response(),
        _ => (
            StatusCode::CREATED,
            axum::Json(json!({
                "sid": uuid::Uuid::new_v4().to_string(), "status": "queued",
                "account_sid": SW_PROJECT, "api_version": "2010-04-01",
                "to": fields["To"], "from": fields["From"], "body": fields["Body"],
                "direction": "outbound-api", "num_segments": 1,
            })),
        )
            .into_response(),
    }
}

/// The project as an Account resource: what the health probe reads.
async fn signalwire_account(
    State(state): State<Arc<FakeState>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorized = basic(&headers) == Some((SW_PROJECT.into(), SW_TOKEN.into()))
        && file == format!("{SW_PROJECT}.json");
    let status = if authorized { 200 } else { 401 };
    let path = format!("/api/laml/2010-04-01/Accounts/{file}");
    if let Some(failure) = state.record("signalwire", path, BTreeMap::new(), status) {
        return failure;
    }
    let code = StatusCode::from_u16(status).unwrap();
    (
        code,
        axum::Json(json!({"sid": SW_PROJECT, "status": "active"})),
    )
        .into_response()
}

/// Vonage: form `api_key`, `api_secret`, `from`, `to`, `text`; always HTTP 200 with a
/// per-message `status`.
async fn vonage_send(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let fields = form_fields(&body);
    let authorized = fields.get("api_key").map(String::as_str) == Some(VONAGE_KEY)
        && fields.get("api_secret").map(String::as_str) == Some(VONAGE_API_SECRET);
    if let Some(failure) = state.record("vonage", "/sms/json".into(), fields.clone(), 200) {
        return failure;
    }
    let message = if authorized {
        json!({"to": fields.get("to"), "message-id": format!("0A{:014X}", state.new_id()), "status": "0",
            "remaining-balance": "3.14", "message-price": "0.03", "network": "23410"})
    } else {
        json!({"status": "4", "error-text": "Bad Credentials"})
    };
    axum::Json(json!({"message-count": "1", "messages": [message]})).into_response()
}

async fn vonage_balance(
    State(state): State<Arc<FakeState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let fields = form_fields(query.unwrap_or_default().as_bytes());
    let authorized = fields.get("api_key").map(String::as_str) == Some(VONAGE_KEY)
        && fields.get("api_secret").map(String::as_str) == Some(VONAGE_API_SECRET);
    let status = if authorized { 200 } else { 401 };
    if let Some(failure) = state.record(
        "vonage",
        "/account/get-balance".into(),
        BTreeMap::new(),
        status,
    ) {
        return failure;
    }
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"value": 10.5, "autoReload": false})),
    )
        .into_response()
}

/// Plivo: Basic `auth_id:auth_token`, JSON `src`, `dst`, `text`; 202 with `message_uuid`.
async fn plivo_send(
    State(state): State<Arc<FakeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = json_fields(&body);
    let authorized =
        basic(&headers) == Some((PLIVO_ID.into(), PLIVO_TOKEN.into())) && id == PLIVO_ID;
    let status = if authorized { 202 } else { 401 };
    if let Some(failure) = state.record(
        "plivo",
        format!("/v1/Account/{id}/Message/"),
        fields,
        status,
    ) {
        return failure;
    }
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "not authorized"})),
        )
            .into_response();
    }
    let uuid = format!("db3ce55a-7f1d-11e1-8ea7-{:012}", state.new_id());
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"api_id": "a1", "message": "message(s) queued", "message_uuid": [uuid]})),
    )
        .into_response()
}

async fn plivo_account(
    State(state): State<Arc<FakeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorized =
        basic(&headers) == Some((PLIVO_ID.into(), PLIVO_TOKEN.into())) && id == PLIVO_ID;
    let status = if authorized { 200 } else { 401 };
    if let Some(failure) = state.record(
        "plivo",
        format!("/v1/Account/{id}/"),
        BTreeMap::new(),
        status,
    ) {
        return failure;
    }
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"auth_id": PLIVO_ID})),
    )
        .into_response()
}

fn bearer_ok(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TELNYX_KEY}"))
}

/// Telnyx: `Authorization: Bearer <key>`, JSON `from`, `to`, `text`; `{"data": {"id"}}`.
async fn telnyx_send(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = json_fields(&body);
    let status = if bearer_ok(&headers) { 200 } else { 401 };
    if let Some(failure) = state.record("telnyx", "/v2/messages".into(), fields, status) {
        return failure;
    }
    if status == 401 {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"errors": [{"code": "10009", "title": "Authentication failed"}]})),
        )
            .into_response();
    }
    let id = format!("40385f64-5717-4562-b3fc-{:012}", state.new_id());
    axum::Json(json!({"data": {"id": id, "record_type": "message", "direction": "outbound"}}))
        .into_response()
}

async fn telnyx_balance(State(state): State<Arc<FakeState>>, headers: HeaderMap) -> Response {
    let status = if bearer_ok(&headers) { 200 } else { 401 };
    if let Some(failure) = state.record("telnyx", "/v2/balance".into(), BTreeMap::new(), status) {
        return failure;
    }
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"data": {"balance": "300.00", "currency": "USD"}})),
    )
        .into_response()
}

fn telnyx_public_key() -> String {
    let key = Ed25519KeyPair::from_seed_unchecked(&TELNYX_SEED).unwrap();
    BASE64.encode(key.public_key().as_ref())
}

fn table(name: &str, kind: ProviderKind, numbers: &[&str]) -> ProviderSettings {
    ProviderSettings {
        numbers: numbers
            .iter()
            .map(|n| NumberSettings::Plain((*n).into()))
            .collect(),
        ..ProviderSettings::new(name, kind)
    }
}

fn twilio_table(name: &str, fake: &FakeApi, numbers: &[&str]) -> ProviderSettings {
    ProviderSettings {
        secret: Some(Secret::new(TW_TOKEN)),
        account_sid: Some(TW_SID.into()),
        api_base_url: Some(fake.base.clone()),
        ..table(name, ProviderKind::Twilio, numbers)
    }
}

fn telnyx_table(name: &str, fake: &FakeApi, numbers: &[&str]) -> ProviderSettings {
    ProviderSettings {
        public_key: Some(telnyx_public_key()),
        api_key: Some(Secret::new(TELNYX_KEY)),
        api_base_url: Some(fake.base.clone()),
        ..table(name, ProviderKind::Telnyx, numbers)
    }
}

/// Base settings with the public URL set (so providers are given status callback URLs,
/// and webhooks are verified against it) and short timings.
fn settings(dir: &std::path::Path, providers: Vec<ProviderSettings>) -> Settings {
    let mut settings = base_settings(dir);
    settings.public_url = Some(PUBLIC_URL.into());
    settings.providers = providers;
    settings.send_backoff = "50ms".into();
    settings.send_backoff_max = "200ms".into();
    settings.send_timeout = "5s".into();
    settings
}

async fn send(server: &TestServer, who: &Account, number: &str, text: &str) -> (u16, Value) {
    let number_id = server.number_id(number).await;
    server
        .call(
            Some(who),
            reqwest::Method::POST,
            "/api/v1/messages",
            Some(json!({"number_id": number_id, "to": RECIPIENT, "text": text})),
        )
        .await
}

async fn queue(server: &TestServer, number: &str, text: &str) -> u64 {
    let (status, body) = send(server, &Account::admin(), number, text).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "pending");
    body["id"].as_u64().unwrap()
}

/// Polls the outbound message until `done` holds (10 s at most) and returns it.
async fn wait_for(server: &TestServer, id: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, message) = server.admin_get(&format!("/api/v1/outbound/{id}")).await;
        assert_eq!(status, 200, "{message}");
        if done(&message) {
            return message;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "outbound message {id} never got there: {message:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status_is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |message| message["status"] == status
}

/// The breaker state of a provider, from system-status.
async fn breaker(server: &TestServer, name: &str) -> String {
    let status = server.status().await;
    status["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["health"]["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

async fn wait_breaker(server: &TestServer, name: &str, state: &str) {
    let reached = eventually(Duration::from_secs(10), || async {
        breaker(server, name).await == state
    })
    .await;
    assert!(
        reached,
        "{name} never became {state}: {}",
        server.status().await["providers"]
    );
}

async fn post_status_form(
    server: &TestServer,
    name: &str,
    header: (&str, String),
    extra: &[(&str, String)],
    params: &[(&str, String)],
) -> reqwest::Response {
    let mut request = server
        .client
        .post(server.url(&format!("/webhooks/{name}/status")))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(header.0, header.1);
    for (name, value) in extra {
        request = request.header(*name, value);
    }
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    request.body(body).send().await.unwrap()
}

/// Posts a status callback signed the Twilio way (SignalWire too, with its Signing Key)
/// over the provider's public status URL.
async fn post_twilio_style_status(
    server: &TestServer,
    name: &str,
    signature_header: &str,
    key: &str,
    params: &[(&str, String)],
) -> reqwest::Response {
    let url = format!("{PUBLIC_URL}/webhooks/{name}/status");
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let signature = twilio::sign(key, &url, &pairs);
    post_status_form(server, name, (signature_header, signature), &[], params).await
}

#[tokio::test]
async fn each_provider_sends_and_links_its_signed_delivery_report() {
    let fake = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let vonage_table = ProviderSettings {
        secret: Some(Secret::new(VONAGE_SIGNATURE_SECRET)),
        signature_method: Some("sha256".into()),
        api_key: Some(Secret::new(VONAGE_KEY)),
        api_secret: Some(Secret::new(VONAGE_API_SECRET)),
        api_base_url: Some(fake.base.clone()),
        ..table("vonage", ProviderKind::Vonage, &[VONAGE_NUMBER])
    };
    let plivo_table = ProviderSettings {
        secret: Some(Secret::new(PLIVO_TOKEN)),
        auth_id: Some(PLIVO_ID.into()),
        api_base_url: Some(fake.base.clone()),
        ..table("plivo", ProviderKind::Plivo, &[PLIVO_NUMBER])
    };
    let server = TestServer::start_with(settings(
        dir.path(),
        vec![
            twilio_table("twilio", &fake, &[TW_NUMBER]),
            vonage_table,
            plivo_table,
            telnyx_table("telnyx", &fake, &[TELNYX_NUMBER]),
        ],
    ))
    .await;

    // Twilio: form To/From/Body and the status callback URL, Basic SID:token.
    let id = queue(&server, TW_NUMBER, "Twilio says hi").await;
    let sent = wait_for(&server, id, status_is("sent")).await;
    let request = &fake.sends("twilio")[0];
    assert_eq!(request.status, 201);
    assert_eq!(request.fields["To"], RECIPIENT);
    assert_eq!(request.fields["From"], TW_NUMBER);
    assert_eq!(request.fields["Body"], "Twilio says hi");
    assert_eq!(
        request.fields["StatusCallback"],
        format!("{PUBLIC_URL}/webhooks/twilio/status")
    );
    assert_eq!(sent["sent_via"], "twilio");
    let sid = sent["provider_message_id"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("SM"));
    let params: Vec<(&str, String)> = vec![
        ("MessageSid", sid.clone()),
        ("SmsSid", sid.clone()),
        ("MessageStatus", "delivered".into()),
        ("SmsStatus", "delivered".into()),
        ("AccountSid", TW_SID.into()),
        ("From", TW_NUMBER.into()),
        ("To", RECIPIENT.into()),
    ];
    let response =
        post_twilio_style_status(&server, "twilio", "x-twilio-signature", TW_TOKEN, &params).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("<Response>"));
    let delivered = wait_for(&server, id, status_is("delivered")).await;
    assert_eq!(
        delivered["delivery_reports"][0]["provider_message_id"],
        sid.as_str()
    );
    assert_eq!(delivered["delivery_reports"][0]["status"], "delivered");

    // Vonage: form api_key/api_secret/from/to (digits, no '+')/text; DLR signed with `sig`.
    let id = queue(&server, VONAGE_NUMBER, "Vonage says hi").await;
    let sent = wait_for(&server, id, status_is("sent")).await;
    let request = &fake.sends("vonage")[0];
    assert_eq!(request.fields["api_key"], VONAGE_KEY);
    assert_eq!(request.fields["api_secret"], VONAGE_API_SECRET);
    assert_eq!(request.fields["from"], &VONAGE_NUMBER[1..]);
    assert_eq!(request.fields["to"], &RECIPIENT[1..]);
    assert_eq!(request.fields["text"], "Vonage says hi");
    assert_eq!(
        request.fields["callback"],
        format!("{PUBLIC_URL}/webhooks/vonage/status")
    );
    let message_id = sent["provider_message_id"].as_str().unwrap().to_owned();
    let mut params: Vec<(&str, String)> = vec![
        ("msisdn", RECIPIENT[1..].into()),
        ("to", VONAGE_NUMBER[1..].into()),
        ("network-code", "23410".into()),
        ("messageId", message_id.clone()),
        ("price", "0.03330000".into()),
        ("status", "delivered".into()),
        ("scts", "2401011200".into()),
        ("err-code", "0".into()),
        ("message-timestamp", "2024-01-01 12:00:00".into()),
        ("timestamp", now_unix().to_string()),
        ("nonce", "dlr-nonce-1".into()),
    ];
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let sig = vonage::sign(
        vonage::SignatureMethod::HmacSha256,
        VONAGE_SIGNATURE_SECRET,
        &pairs,
    );
    params.push(("sig", sig));
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let response = server
        .client
        .get(server.url(&format!("/webhooks/vonage/status?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let delivered = wait_for(&server, id, status_is("delivered")).await;
    assert_eq!(
        delivered["delivery_reports"][0]["provider_message_id"],
        message_id.as_str()
    );

    // Plivo: JSON src/dst/text with the callback url, Basic auth_id:token; V3-signed callback.
    let id = queue(&server, PLIVO_NUMBER, "Plivo says hi").await;
    let sent = wait_for(&server, id, status_is("sent")).await;
    let request = &fake.sends("plivo")[0];
    assert_eq!(request.path, format!("/v1/Account/{PLIVO_ID}/Message/"));
    assert_eq!(request.fields["src"], &PLIVO_NUMBER[1..]);
    assert_eq!(request.fields["dst"], &RECIPIENT[1..]);
    assert_eq!(request.fields["text"], "Plivo says hi");
    assert_eq!(
        request.fields["url"],
        format!("{PUBLIC_URL}/webhooks/plivo/status")
    );
    let uuid = sent["provider_message_id"].as_str().unwrap().to_owned();
    let params: Vec<(&str, String)> = vec![
        ("MessageUUID", uuid.clone()),
        ("Status", "delivered".into()),
        ("From", PLIVO_NUMBER[1..].into()),
        ("To", RECIPIENT[1..].into()),
        ("ErrorCode", "000".into()),
        ("Units", "1".into()),
        ("Type", "sms".into()),
    ];
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = format!("{PUBLIC_URL}/webhooks/plivo/status");
    let signature = plivo::sign_v3(
        PLIVO_TOKEN.as_bytes(),
        &url,
        "plivo-nonce-1",
        plivo::Method::Post,
        &pairs,
    );
    let response = post_status_form(
        &server,
        "plivo",
        ("X-Plivo-Signature-V3", signature),
        &[("X-Plivo-Signature-V3-Nonce", "plivo-nonce-1".into())],
        &params,
    )
    .await;
    assert_eq!(response.status(), 200);
    let delivered = wait_for(&server, id, status_is("delivered")).await;
    assert_eq!(
        delivered["delivery_reports"][0]["error_code"],
        Value::Null,
        "000 means no error"
    );

    // Telnyx: JSON from/to/text and webhook_url, Bearer key; Ed25519-signed finalized event.
    let id = queue(&server, TELNYX_NUMBER, "Telnyx says hi").await;
    let sent = wait_for(&server, id, status_is("sent")).await;
    let request = &fake.sends("telnyx")[0];
    assert_eq!(request.fields["from"], TELNYX_NUMBER);
    assert_eq!(request.fields["to"], RECIPIENT);
    assert_eq!(request.fields["text"], "Telnyx says hi");
    assert_eq!(
        request.fields["webhook_url"],
        format!("{PUBLIC_URL}/webhooks/telnyx/status")
    );
    let message_id = sent["provider_message_id"].as_str().unwrap().to_owned();
    let body = json!({"data": {"event_type": "message.finalized", "id": "ev-1",
        "occurred_at": "2024-01-01T12:00:05.000+00:00", "record_type": "event",
        "payload": {"id": message_id, "direction": "outbound", "type": "SMS",
            "from": {"phone_number": TELNYX_NUMBER},
            "to": [{"phone_number": RECIPIENT, "status": "delivered"}]}},
        "meta": {"attempt": 1}})
    .to_string();
    let key = Ed25519KeyPair::from_seed_unchecked(&TELNYX_SEED).unwrap();
    let timestamp = now_unix().to_string();
    let signature = key.sign(format!("{timestamp}|{body}").as_bytes());
    for _ in 0..2 {
        // Telnyx may deliver an event twice: stored once.
        let response = server
            .client
            .post(server.url("/webhooks/telnyx/status"))
            .header("content-type", "application/json")
            .header(
                "telnyx-signature-ed25519",
                BASE64.encode(signature.as_ref()),
            )
            .header("telnyx-timestamp", &timestamp)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let delivered = wait_for(&server, id, status_is("delivered")).await;
    assert_eq!(delivered["delivery_reports"].as_array().unwrap().len(), 1);
    assert_eq!(delivered["attempts"][0]["outcome"], "accepted");
    assert_eq!(delivered["attempts"][0]["provider"], "telnyx");

    let status = server.status().await;
    assert_eq!(status["outbound"]["total"], 4);
    assert_eq!(status["outbound"]["pending"], 0);
    assert_eq!(status["outbound"]["reports_total"], 4);
    assert_eq!(status["outbound"]["report_repeats_total"], 1);
    assert_eq!(status["outbound"]["unlinked_reports"], 0);
    for name in ["twilio", "vonage", "plivo", "telnyx"] {
        let provider = status["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        assert_eq!(provider["sends"], true, "{provider}");
        assert_eq!(provider["health"]["state"], "closed", "{provider}");
        assert_eq!(provider["health"]["sends_ok"], 1, "{provider}");
    }
    // No plaintext text or recipient on disk.
    for needle in [
        "Twilio says hi",
        "Telnyx says hi",
        RECIPIENT,
        &RECIPIENT[1..],
    ] {
        assert!(
            !data_dir_contains(&server.data_dir, needle.as_bytes()),
            "{needle} is on disk"
        );
    }
    server.stop().await;
}

/// Provider "primary" (Twilio) falls back to "backup" (Telnyx), whose pool number is in
/// the same country (+1): the equivalent number when the primary's is not listed there.
fn failover_settings(dir: &std::path::Path, fake: &FakeApi) -> Settings {
    let primary = ProviderSettings {
        fallback: vec!["backup".into()],
        ..twilio_table("primary", fake, &[TW_NUMBER])
    };
    let mut settings = settings(
        dir,
        vec![primary, telnyx_table("backup", fake, &[TELNYX_NUMBER])],
    );
    settings.provider_probe_interval = "100ms".into();
    settings.breaker_failures = 2;
    settings.breaker_cooldown = "500ms".into();
    settings
}

#[tokio::test]
async fn signalwire_sends_through_its_space_compatibility_api() {
    let fake = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The Space URL without a path, as the dashboard shows it (here the fake's address):
    // the requests must go to the compatibility API under `/api/laml`.
    let signalwire = ProviderSettings {
        secret: Some(Secret::new(SW_SIGNING_KEY)),
        account_sid: Some(SW_PROJECT.into()),
        api_secret: Some(Secret::new(SW_TOKEN)),
        api_base_url: Some(fake.base.clone()),
        ..table("signalwire", ProviderKind::Signalwire, &[SW_NUMBER])
    };
    let server = TestServer::start_with(settings(dir.path(), vec![signalwire])).await;

    // The health probe reads the project's Account resource with the same credentials.
    let account = format!("/api/laml/2010-04-01/Accounts/{SW_PROJECT}.json");
    let probed = eventually(Duration::from_secs(10), || async {
        fake.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.api == "signalwire" && r.path == account && r.status == 200)
    })
    .await;
    assert!(probed, "no authenticated probe of {account}");

    let id = queue(&server, SW_NUMBER, "SignalWire says hi").await;
    let sent = wait_for(&server, id, status_is("sent")).await;
    let requests = fake.sends("signalwire");
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(
        request.path,
        format!("/api/laml/2010-04-01/Accounts/{SW_PROJECT}/Messages.json")
    );
    assert_eq!(request.status, 201, "Basic ProjectID:APIToken was accepted");
    assert_eq!(request.fields["From"], SW_NUMBER);
    assert_eq!(request.fields["To"], RECIPIENT);
    assert_eq!(request.fields["Body"], "SignalWire says hi");
    assert_eq!(
        request.fields["StatusCallback"],
        format!("{PUBLIC_URL}/webhooks/signalwire/status")
    );
    assert!(
        fake.sends("twilio").is_empty(),
        "nothing went to Twilio's paths"
    );
    assert_eq!(sent["sent_via"], "signalwire");
    let sid = sent["provider_message_id"].as_str().unwrap().to_owned();
    assert!(
        uuid::Uuid::parse_str(&sid).is_ok(),
        "the answer's sid: {sid}"
    );
    let attempts = sent["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{sent:#}");
    assert_eq!(attempts[0]["outcome"], "accepted");
    assert_eq!(attempts[0]["provider_message_id"], sid.as_str());

    // Its status callback, signed like Twilio's but with the Signing Key, links up.
    let params: Vec<(&str, String)> = vec![
        ("MessageSid", sid.clone()),
        ("MessageStatus", "delivered".into()),
        ("AccountSid", SW_PROJECT.into()),
        ("From", SW_NUMBER.into()),
        ("To", RECIPIENT.into()),
    ];
    let response = post_twilio_style_status(
        &server,
        "signalwire",
        "x-signalwire-signature",
        SW_SIGNING_KEY,
        &params,
    )
    .await;
    assert_eq!(response.status(), 200);
    let delivered = wait_for(&server, id, status_is("delivered")).await;
    assert_eq!(
        delivered["delivery_reports"][0]["provider_message_id"],
        sid.as_str()
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unhealthy_primary_fails_over_and_recovers_through_half_open() {
    let fake = FakeApi::start().await;
    fake.fail("twilio", true);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(failover_settings(dir.path(), &fake)).await;

    // Failed probes open the primary's breaker.
    wait_breaker(&server, "primary", "open").await;
    let status = server.status().await;
    let primary = status["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "primary")
        .unwrap()
        .clone();
    assert_eq!(primary["health"]["last_probe_ok"], false, "{primary}");
    assert_eq!(primary["health"]["last_probe_error"], "HTTP 500");
    assert!(primary["health"]["consecutive_failures"].as_u64().unwrap() >= 2);
    assert!(primary["health"]["error_rate"].as_f64().unwrap() > 0.0);
    assert!(
        status["errors"]["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "provider_unhealthy" && e["source"] == "outbound"),
        "{}",
        status["errors"]
    );

    // A message from the primary's number goes out through the backup, from the
    // backup's number in the same country; the open primary is not called.
    let before = fake.sends("twilio").len();
    let id = queue(&server, TW_NUMBER, "via the backup").await;
    let sent = wait_for(&server, id, status_is("sent")).await;
    assert_eq!(sent["sent_via"], "backup");
    let attempts = sent["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{sent:#}");
    assert_eq!(attempts[0]["provider"], "backup");
    assert_eq!(
        attempts[0]["number_id"],
        server.number_id(TELNYX_NUMBER).await
    );
    assert_eq!(fake.sends("twilio").len(), before);
    let request = fake.sends("telnyx").pop().unwrap();
    assert_eq!(request.fields["from"], TELNYX_NUMBER);
    assert_eq!(request.fields["text"], "via the backup");

    // The primary comes back: after the cool-down a probe (half-open trial) closes it,
    // and the next message goes through it again.
    fake.fail("twilio", false);
    wait_breaker(&server, "primary", "closed").await;
    let id = queue(&server, TW_NUMBER, "via the primary").await;
    let sent = wait_for(&server, id, status_is("sent")).await;
    assert_eq!(sent["sent_via"], "primary");
    assert_eq!(
        fake.sends("twilio").pop().unwrap().fields["Body"],
        "via the primary"
    );
    server.stop().await;
}

#[tokio::test]
async fn retryable_failures_fail_over_at_once_then_retry_with_backoff_until_the_budget_is_spent() {
    let fake = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = failover_settings(dir.path(), &fake);
    // Breakers that never open and no probes in the way: every round calls both.
    settings.breaker_failures = 1000;
    settings.provider_probe_interval = "1h".into();
    settings.send_max_attempts = 5;
    settings.send_backoff = "100ms".into();
    settings.send_backoff_max = "400ms".into();
    let server = TestServer::start_with(settings).await;

    // The primary fails (5xx), the backup takes it in the same round.
    fake.fail("twilio", true);
    let id = queue(&server, TW_NUMBER, "second try").await;
    let sent = wait_for(&server, id, status_is("sent")).await;
    let outcomes: Vec<(&str, &str)> = sent["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes, [("primary", "retryable"), ("backup", "accepted")]);
    assert_eq!(sent["attempts"][0]["detail"], "HTTP 500");

    // Both fail: rounds of (primary, backup) with growing waits, until 5 attempts.
    fake.fail("telnyx", true);
    let id = queue(&server, TW_NUMBER, "never arrives").await;
    let failed = wait_for(&server, id, status_is("failed")).await;
    let attempts = failed["attempts"].as_array().unwrap();
    let providers: Vec<&str> = attempts
        .iter()
        .map(|a| a["provider"].as_str().unwrap())
        .collect();
    assert_eq!(
        providers,
        ["primary", "backup", "primary", "backup", "primary"]
    );
    assert!(attempts.iter().all(|a| a["outcome"] == "retryable"));
    let at = |i: usize| {
        time::OffsetDateTime::parse(
            attempts[i]["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    // Backoff between rounds: ≥ 80 % of 100 ms, then of 200 ms (jitter is ±20 %).
    assert!(
        at(2) - at(1) >= time::Duration::milliseconds(80),
        "{failed:#}"
    );
    assert!(
        at(4) - at(3) >= time::Duration::milliseconds(160),
        "{failed:#}"
    );
    let recent = server.status().await["errors"]["recent"].clone();
    assert!(
        recent
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "send_gave_up"),
        "{recent}"
    );
    assert!(
        !recent.to_string().contains(RECIPIENT),
        "failures name no number"
    );
    server.stop().await;
}

/// Messages waiting out a long backoff for a provider that is down hold no send slot:
/// more of them than the server sends at once (32) do not hold up a message through a
/// provider that works.
#[tokio::test]
async fn messages_waiting_for_a_down_provider_do_not_hold_up_others() {
    const WAITING: usize = 40;
    let fake = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(
        dir.path(),
        vec![
            twilio_table("down", &fake, &[TW_NUMBER]),
            telnyx_table("up", &fake, &[TELNYX_NUMBER]),
        ],
    );
    // One failed call each, then a wait far longer than the test.
    settings.send_backoff = "1h".into();
    settings.send_backoff_max = "1h".into();
    settings.breaker_failures = 1000;
    settings.provider_probe_interval = "1h".into();
    fake.fail("twilio", true);
    let server = TestServer::start_with(settings).await;
    let mut waiting = Vec::new();
    for i in 0..WAITING {
        waiting.push(queue(&server, TW_NUMBER, &format!("stuck {i}")).await);
    }
    // Every one of them had its round: none waited for a slot held by a sleeping one.
    for id in &waiting {
        wait_for(&server, *id, |m| {
            m["attempts"].as_array().unwrap().len() == 1
        })
        .await;
    }
    let id = queue(&server, TELNYX_NUMBER, "goes now").await;
    let sent = wait_for(&server, id, status_is("sent")).await;
    assert_eq!(sent["attempts"][0]["provider"], "up");
    for id in &waiting {
        let (_, message) = server.admin_get(&format!("/api/v1/outbound/{id}")).await;
        assert_eq!(message["status"], "pending", "{message:#}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_pending_message_survives_a_restart_and_nothing_private_reaches_the_disk() {
    let fake = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(
        dir.path(),
        vec![twilio_table("twilio", &fake, &[TW_NUMBER])],
    );
    // One attempt, then a wait far longer than the test: it stays pending.
    settings.send_backoff = "1h".into();
    settings.send_backoff_max = "1h".into();
    fake.fail("twilio", true);
    let server = TestServer::start_with(settings.clone()).await;
    let text = "the secret plan is 31337";
    let id = queue(&server, TW_NUMBER, text).await;
    let pending = wait_for(&server, id, |m| {
        m["attempts"].as_array().unwrap().len() == 1
    })
    .await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(server.status().await["outbound"]["pending"], 1);
    server.stop().await;
    for needle in [text, RECIPIENT, &RECIPIENT[1..]] {
        assert!(
            !data_dir_contains(dir.path(), needle.as_bytes()),
            "{needle:?} is on disk"
        );
    }

    // At the next start the message is picked up again and sent.
    fake.fail("twilio", false);
    let server = TestServer::start_with(settings).await;
    let sent = wait_for(&server, id, status_is("sent")).await;
    assert_eq!(sent["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(fake.sends("twilio").pop().unwrap().fields["Body"], text);
    server.stop().await;
}

#[tokio::test]
async fn who_may_send_from_which_number_and_what_is_refused() {
    let fake = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(
        dir.path(),
        vec![twilio_table("twilio", &fake, &[TW_NUMBER, "+14155550143"])],
    );
    settings.users_may_send = true;
    let server = TestServer::start_with(settings).await;
    let admin = Account::admin();
    let alice = server.account("alice", "user").await;
    let bob = server.account("bob", "user").await;
    let guest = server.account("guest1", "guest").await;
    let number_id = server.number_id(TW_NUMBER).await;
    let (status, _) = server
        .call(
            Some(&alice),
            reqwest::Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": number_id})),
        )
        .await;
    assert_eq!(status, 201);

    // Guests never; a user from a number they do not hold: 404; the holder: 202.
    assert_eq!(send(&server, &guest, TW_NUMBER, "hi").await.0, 403);
    let (status, problem) = send(&server, &bob, TW_NUMBER, "hi").await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
    assert_eq!(send(&server, &bob, "+14155550143", "hi").await.0, 404);
    let (status, queued) = send(&server, &alice, TW_NUMBER, "from alice").await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["id"].as_u64().unwrap();
    // The sender and admins see it; nobody else.
    let path = format!("/api/v1/outbound/{id}");
    assert_eq!(
        server
            .call(Some(&alice), reqwest::Method::GET, &path, None)
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call(Some(&bob), reqwest::Method::GET, &path, None)
            .await
            .0,
        404
    );
    assert_eq!(
        server
            .call(Some(&guest), reqwest::Method::GET, &path, None)
            .await
            .0,
        404
    );
    wait_for(&server, id, status_is("sent")).await;
    // Admins send from any pool number, leased or not.
    assert_eq!(
        send(&server, &admin, "+14155550143", "from admin").await.0,
        202
    );

    // Invalid input is refused naming the field.
    let post = |body: Value| {
        server.call(
            Some(&admin),
            reqwest::Method::POST,
            "/api/v1/messages",
            Some(body),
        )
    };
    for (body, field) in [
        (
            json!({"number_id": number_id, "to": "not a number", "text": "x"}),
            "to",
        ),
        (
            json!({"number_id": number_id, "to": RECIPIENT, "text": "   "}),
            "text",
        ),
        (
            json!({"number_id": number_id, "to": RECIPIENT, "text": "x".repeat(1601)}),
            "text",
        ),
        (json!({"number_id": number_id, "to": RECIPIENT}), "body"),
    ] {
        let (status, problem) = post(body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(problem["code"], "validation_failed");
        assert_eq!(problem["field"], field, "{body}");
    }
    let (status, _) = post(json!({"number_id": 999_999, "to": RECIPIENT, "text": "x"})).await;
    assert_eq!(status, 404);
    // The sandbox numbers' provider has no API and no fallback.
    let sandbox = server.number_id("+12025550101").await;
    let (status, problem) = post(json!({"number_id": sandbox, "to": RECIPIENT, "text": "x"})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("sending_unavailable"))
    );
    server.stop().await;

    // Without `users_may_send`, even the holder of a lease may not send.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(settings_without_users(dir.path(), &fake)).await;
    let carol = server.account("carol", "user").await;
    let number_id = server.number_id(TW_NUMBER).await;
    server
        .call(
            Some(&carol),
            reqwest::Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": number_id})),
        )
        .await;
    let (status, problem) = send(&server, &carol, TW_NUMBER, "hi").await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    server.stop().await;
}

fn settings_without_users(dir: &std::path::Path, fake: &FakeApi) -> Settings {
    settings(dir, vec![twilio_table("twilio", fake, &[TW_NUMBER])])
}

/// A primary that refuses connections, and one that accepts and never answers (past
/// `send_timeout`): both are retryable failures, so the backup sends at once.
#[tokio::test]
async fn refused_connections_and_timeouts_fail_over_too() {
    let fake = FakeApi::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        // Accepts, keeps every connection open, and never says a word.
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    for base in [format!("http://{closed}"), format!("http://{silent_addr}")] {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = failover_settings(dir.path(), &fake);
        settings.providers[0].api_base_url = Some(base.clone());
        settings.provider_probe_interval = "1h".into();
        settings.breaker_failures = 1000;
        settings.send_timeout = "300ms".into();
        let server = TestServer::start_with(settings).await;
        let id = queue(&server, TW_NUMBER, "around the outage").await;
        let sent = wait_for(&server, id, status_is("sent")).await;
        let outcomes: Vec<(&str, &str)> = sent["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["provider"].as_str().unwrap(),
                    a["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            [("primary", "retryable"), ("backup", "accepted")],
            "{base}: {sent:#}"
        );
        assert_eq!(sent["sent_via"], "backup");
        server.stop().await;
    }
}
