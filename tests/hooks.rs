//! Users' outbound webhooks over real sockets: a local receiver (axum on 127.0.0.1:0)
//! gets each message of the user's lease, signed (checked here with the raw HMAC, not
//! the server's helper), retried after failures, after a restart too; the SSRF guard
//! refuses internal addresses at registration and again at connect time; nobody but
//! the owner sees, tests or deletes a webhook.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

/// How long a test waits for something the server does on its own (a retry, a
/// delivery); far above the short backoff the tests configure.
const WAIT: Duration = Duration::from_secs(20);

/// A token in every receiver URL: it must never reach the disk or a delivery log.
const URL_TOKEN: &str = "t0ken-in-the-url-77";

/// One request the receiver got, and the status it answered.
#[derive(Debug)]
struct Hit {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    answered: u16,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// What the receiver answers: the scripted statuses in order, then `otherwise`, with
/// a `location` header when one is set.
#[derive(Default)]
struct Script {
    next: VecDeque<u16>,
    otherwise: u16,
    location: Option<String>,
}

/// A webhook receiver on 127.0.0.1:0 that reports every request on a channel.
struct Receiver {
    addr: SocketAddr,
    hits: mpsc::UnboundedReceiver<Hit>,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    async fn start(next: &[u16], otherwise: u16) -> Self {
        let script = Arc::new(Mutex::new(Script {
            next: next.iter().copied().collect(),
            otherwise,
            location: None,
        }));
        let (report, hits) = mpsc::unbounded_channel();
        let answers = Arc::clone(&script);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (answers, report) = (Arc::clone(&answers), report.clone());
                async move {
                    let (status, location) = {
                        let mut script = answers.lock().unwrap();
                        let status = script.next.pop_front().unwrap_or(script.otherwise);
                        (status, script.location.clone())
                    };
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .map(|value| value.to_str().unwrap().to_owned())
                            .unwrap_or_default()
                    };
                    report
                        .send(Hit {
                            id: header("webhook-id"),
                            timestamp: header("webhook-timestamp"),
                            signature: header("webhook-signature"),
                            body: body.to_vec(),
                            answered: status,
                        })
                        .ok();
                    let mut answer = HeaderMap::new();
                    if let Some(location) = location {
                        answer.insert(LOCATION, location.parse().unwrap());
                    }
                    (StatusCode::from_u16(status).unwrap(), answer)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, hits, script }
    }

    /// The URL to register, with `host` (an IP or `localhost`) for this receiver.
    fn url(&self, host: &str) -> String {
        format!("http://{host}:{}/hook?token={URL_TOKEN}", self.addr.port())
    }

    fn redirect_to(&self, location: &str) {
        self.script.lock().unwrap().location = Some(location.to_owned());
    }

    fn answer_from_now(&self, status: u16) {
        self.script.lock().unwrap().otherwise = status;
    }

    async fn next_hit(&mut self) -> Hit {
        tokio::time::timeout(WAIT, self.hits.recv())
            .await
            .expect("the receiver got a request in time")
            .unwrap()
    }
}

/// Checks the Standard Webhooks signature with the HMAC primitive itself: HMAC-SHA256
/// keyed with the secret's base64 bytes, over `id.timestamp.body`.
fn assert_signed(secret: &str, hit: &Hit) {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", hit.id, hit.timestamp).as_bytes());
    mac.update(&hit.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert!(
        hit.signature.split(' ').any(|entry| entry == expected),
        "signature {:?} is not {expected}",
        hit.signature
    );
    let timestamp: i64 = hit.timestamp.parse().unwrap();
    assert!((timestamp - now_unix()).abs() < 60, "timestamp {timestamp}");
}

fn settings(dir: &Path, allow_private: bool) -> burnbox::config::Settings {
    let mut settings = base_settings(dir);
    settings.sandbox = false;
    settings.webhooks_allow_private = allow_private;
    // Short, so that retries happen within the test's wait.
    settings.webhooks_backoff = "100ms".into();
    settings.webhooks_backoff_max = "400ms".into();
    settings
}

/// A user holding the Twilio number.
async fn holder(server: &TestServer, name: &str) -> Account {
    holder_of(server, name, TWILIO_NUMBER).await
}

/// A user holding `number`.
async fn holder_of(server: &TestServer, name: &str, number: &str) -> Account {
    let account = server.account(name, "user").await;
    let number_id = server.number_id(number).await;
    let (status, lease) = server
        .call(
            Some(&account),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": number_id})),
        )
        .await;
    assert_eq!(status, 201, "{lease}");
    account
}

/// Registers `url` for `who`; returns (webhook id, secret).
async fn register(server: &TestServer, who: &Account, url: &str) -> (u64, String) {
    let (status, created) = server
        .call(
            Some(who),
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": url, "description": "test receiver"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    (
        created["id"].as_u64().unwrap(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

/// The delivery log (newest first) once `done` holds for it, polled until [`WAIT`]:
/// retries are driven by the clock, so there is no event to wait on.
async fn log_when(
    server: &TestServer,
    who: &Account,
    webhook_id: u64,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let path = format!("/api/v1/webhooks/{webhook_id}/deliveries");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, log) = server.call(Some(who), Method::GET, &path, None).await;
        assert_eq!(status, 200, "{log}");
        let log = log["deliveries"].as_array().unwrap().clone();
        if done(&log) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delivery log never got there: {log:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn receive_sms(server: &TestServer, sid: &str, text: &str) -> u64 {
    let response = server
        .post_twilio(sid, "+14155550199", TWILIO_NUMBER, text)
        .await;
    assert_eq!(response.status(), 200);
    let messages = server.all_messages(None).await;
    messages.iter().find(|m| m["text"] == text).unwrap()["id"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_message_once_signed_and_the_log_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(settings(dir.path(), true)).await;
    let mut receiver = Receiver::start(&[500, 500], 204).await;
    let alice = holder(&server, "alice").await;
    let (webhook_id, secret) = register(&server, &alice, &receiver.url("127.0.0.1")).await;

    let message_id = receive_sms(&server, "SMhook0001", "your code is 4711").await;
    let mut attempts = Vec::new();
    for _ in 0..3 {
        attempts.push(receiver.next_hit().await);
    }
    let answered: Vec<u16> = attempts.iter().map(|hit| hit.answered).collect();
    assert_eq!(answered, [500, 500, 204]);
    for hit in &attempts {
        assert_signed(&secret, hit);
        // One id for every attempt, so a receiver can drop repeats.
        assert_eq!(hit.id, attempts[0].id);
        // The event JSON of SSE and WebSocket clients.
        let event = hit.json();
        assert_eq!(event["type"], "message", "{event}");
        assert_eq!(event["id"], message_id);
        assert_eq!(event["message"]["text"], "your code is 4711");
    }

    let log = log_when(&server, &alice, webhook_id, |log| log.len() == 3).await;
    // Newest first.
    let summary: Vec<(u64, u64, bool)> = log
        .iter()
        .map(|entry| {
            assert_eq!(entry["message_id"], message_id);
            (
                entry["attempt"].as_u64().unwrap(),
                entry["status"].as_u64().unwrap(),
                entry["next_retry"].is_string(),
            )
        })
        .collect();
    assert_eq!(summary, [(3, 204, false), (2, 500, true), (1, 500, true)]);

    // Exactly once: the next request is the next message, not a repeat of the first.
    let second = receive_sms(&server, "SMhook0002", "your code is 9000").await;
    let hit = receiver.next_hit().await;
    assert_signed(&secret, &hit);
    assert_eq!(hit.json()["id"], second);
    assert_ne!(hit.id, attempts[0].id);

    // The URL (and its token) is sealed; the queue held ids only.
    server.stop().await;
    assert!(!data_dir_contains(dir.path(), URL_TOKEN.as_bytes()));
    assert!(!data_dir_contains(dir.path(), b"your code is 4711"));
}

#[tokio::test]
async fn send_test_delivers_a_signed_test_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(settings(dir.path(), true)).await;
    let mut receiver = Receiver::start(&[], 200).await;
    let bob = server.account("bob", "user").await;
    let (webhook_id, secret) = register(&server, &bob, &receiver.url("localhost")).await;

    let path = format!("/api/v1/webhooks/{webhook_id}/test");
    let (status, attempt) = server.call(Some(&bob), Method::POST, &path, None).await;
    assert_eq!(status, 200, "{attempt}");
    assert_eq!(attempt["status"], 200);
    assert_eq!(attempt["attempt"], 1);
    let hit = receiver.next_hit().await;
    assert_signed(&secret, &hit);
    assert_eq!(
        hit.json(),
        json!({"type": "test", "webhook_id": webhook_id})
    );

    let log = log_when(&server, &bob, webhook_id, |log| log.len() == 1).await;
    assert_eq!(log[0]["message_id"], Value::Null);
    assert_eq!(log[0]["status"], 200);

    // A receiver that answers 503 makes a failed test, still reported as 200 with
    // the receiver's status.
    receiver.answer_from_now(503);
    let (status, attempt) = server.call(Some(&bob), Method::POST, &path, None).await;
    assert_eq!((status, attempt["status"].clone()), (200, json!(503)));
    assert_eq!(receiver.next_hit().await.answered, 503);
    server.stop().await;
}

#[tokio::test]
async fn a_pending_retry_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start(&[], 503).await;
    let server = TestServer::start_with(settings(dir.path(), true)).await;
    let alice = holder(&server, "alice").await;
    let (webhook_id, secret) = register(&server, &alice, &receiver.url("localhost")).await;
    let message_id = receive_sms(&server, "SMhook0003", "restart code 1234").await;
    let first = receiver.next_hit().await;
    assert_eq!(first.answered, 503);
    log_when(&server, &alice, webhook_id, |log| {
        log.first()
            .is_some_and(|entry| entry["next_retry"].is_string())
    })
    .await;
    server.stop().await;

    // Only the restarted server can deliver it: the receiver accepts from now on.
    receiver.answer_from_now(200);
    let server = TestServer::start_with(settings(dir.path(), true)).await;
    let delivered = loop {
        let hit = receiver.next_hit().await;
        if hit.answered == 200 {
            break hit;
        }
    };
    assert_signed(&secret, &delivered);
    assert_eq!(delivered.id, first.id);
    assert_eq!(delivered.json()["id"], message_id);
    let log = log_when(&server, &alice, webhook_id, |log| {
        log.first().is_some_and(|entry| entry["status"] == 200)
    })
    .await;
    assert!(log[0]["attempt"].as_u64().unwrap() >= 2, "{log:#?}");
    assert_eq!(log[0]["next_retry"], Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn internal_addresses_are_refused_at_registration() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(settings(dir.path(), false)).await;
    let receiver = Receiver::start(&[], 200).await;
    let alice = server.account("alice", "user").await;
    let port = receiver.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        "http://10.0.0.1/".to_owned(),
        "http://172.16.5.4/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://[fd00::1]/".to_owned(),
        "http://[::ffff:127.0.0.1]/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://0.0.0.0/".to_owned(),
        "http://2130706433/".to_owned(),
    ] {
        let (status, problem) = server
            .call(
                Some(&alice),
                Method::POST,
                "/api/v1/webhooks",
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(status, 400, "{url}: {problem}");
        assert_eq!(problem["code"], "webhook_url_refused", "{url}: {problem}");
        assert_eq!(problem["field"], "url");
    }
    for (url, code) in [
        ("ftp://example.com/", "validation_failed"),
        ("file:///etc/passwd", "validation_failed"),
        ("https://no-such-host.invalid/", "validation_failed"),
    ] {
        let (status, problem) = server
            .call(
                Some(&alice),
                Method::POST,
                "/api/v1/webhooks",
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some(code)),
            "{url}"
        );
    }
    let (status, list) = server
        .call(Some(&alice), Method::GET, "/api/v1/webhooks", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["webhooks"], json!([]));
    server.stop().await;
}

/// Registered while private addresses were allowed, then the admin turned that off:
/// the guard at connect time refuses both a literal loopback IP and a name that
/// resolves to one, and the receiver never hears from the server.
#[tokio::test]
async fn the_guard_refuses_at_connect_time_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start(&[], 200).await;
    let server = TestServer::start_with(settings(dir.path(), true)).await;
    let alice = holder(&server, "alice").await;
    let (by_name, _) = register(&server, &alice, &receiver.url("localhost")).await;
    let (by_ip, _) = register(&server, &alice, &receiver.url("127.0.0.1")).await;
    server.stop().await;

    let server = TestServer::start_with(settings(dir.path(), false)).await;
    receive_sms(&server, "SMhook0004", "guarded code 5555").await;
    for webhook_id in [by_name, by_ip] {
        let log = log_when(&server, &alice, webhook_id, |log| !log.is_empty()).await;
        let error = log[0]["error"].as_str().unwrap();
        assert!(error.contains("SSRF guard"), "{error}");
        assert!(error.contains("loopback"), "{error}");
        assert!(!error.contains(URL_TOKEN), "{error}");
        assert_eq!(log[0]["status"], Value::Null);
        let path = format!("/api/v1/webhooks/{webhook_id}/test");
        let (status, attempt) = server.call(Some(&alice), Method::POST, &path, None).await;
        assert_eq!(status, 200);
        assert!(
            attempt["error"].as_str().unwrap().contains("SSRF guard"),
            "{attempt}"
        );
    }
    // Every attempt above is recorded after its connection was refused, so a request
    // that got through would already be here.
    assert!(receiver.hits.try_recv().is_err());
    server.stop().await;
}

#[tokio::test]
async fn only_the_owner_sees_tests_or_deletes_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = settings(dir.path(), true);
    config.webhooks_max_per_user = 1;
    let server = TestServer::start_with(config).await;
    let mut receiver = Receiver::start(&[], 200).await;
    let alice = server.account("alice", "user").await;
    let bob = server.account("bob", "user").await;
    let guest = server.account("guest1", "guest").await;
    let admin = Account::admin();
    let (webhook_id, _) = register(&server, &alice, &receiver.url("127.0.0.1")).await;

    // One webhook each here.
    let (status, problem) = server
        .call(
            Some(&alice),
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": receiver.url("localhost")})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("webhook_limit_reached"))
    );

    let (status, problem) = server
        .call(
            Some(&guest),
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": receiver.url("127.0.0.1")})),
        )
        .await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));

    for who in [&bob, &admin] {
        let (_, list) = server
            .call(Some(who), Method::GET, "/api/v1/webhooks", None)
            .await;
        assert_eq!(list["webhooks"], json!([]), "{}", who.username);
        for (method, path) in [
            (
                Method::GET,
                format!("/api/v1/webhooks/{webhook_id}/deliveries"),
            ),
            (Method::POST, format!("/api/v1/webhooks/{webhook_id}/test")),
            (Method::DELETE, format!("/api/v1/webhooks/{webhook_id}")),
        ] {
            let (status, problem) = server.call(Some(who), method.clone(), &path, None).await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (404, Some("not_found")),
                "{} {method} {path}",
                who.username
            );
        }
    }

    // The owner's list shows the URL but never the secret again.
    let (status, list) = server
        .call(Some(&alice), Method::GET, "/api/v1/webhooks", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["webhooks"][0]["id"], webhook_id);
    assert_eq!(list["webhooks"][0]["url"], receiver.url("127.0.0.1"));
    assert!(list["webhooks"][0].get("secret").is_none(), "{list}");

    // Nobody else's "send test" went out: the owner's is the first request.
    let path = format!("/api/v1/webhooks/{webhook_id}/test");
    assert_eq!(
        server.call(Some(&alice), Method::POST, &path, None).await.0,
        200
    );
    assert_eq!(receiver.next_hit().await.json()["type"], "test");
    assert!(receiver.hits.try_recv().is_err());

    let path = format!("/api/v1/webhooks/{webhook_id}");
    assert_eq!(
        server
            .call(Some(&alice), Method::DELETE, &path, None)
            .await
            .0,
        204
    );
    let deliveries = format!("{path}/deliveries");
    assert_eq!(
        server
            .call(Some(&alice), Method::GET, &deliveries, None)
            .await
            .0,
        404
    );
    server.stop().await;
}

/// A receiver that never answers: it reports each request as it arrives (on the
/// channel), then holds it open.
async fn tarpit() -> (String, mpsc::UnboundedReceiver<()>) {
    let (report, arrived) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let report = report.clone();
            async move {
                report.send(()).ok();
                std::future::pending::<StatusCode>().await
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}/hook"), arrived)
}

/// Waits until `count` requests arrived at a tarpit.
async fn await_requests(arrived: &mut mpsc::UnboundedReceiver<()>, count: usize) {
    for _ in 0..count {
        tokio::time::timeout(WAIT, arrived.recv()).await.unwrap();
    }
}

/// `seen` plus the requests that arrived at a tarpit since.
fn requests_open(arrived: &mut mpsc::UnboundedReceiver<()>, seen: usize) -> usize {
    let mut open = seen;
    while arrived.try_recv().is_ok() {
        open += 1;
    }
    open
}

/// Bob, who holds the generic number and has a receiver that answers 200, gets `text`
/// through it without waiting for anyone else's deliveries.
async fn bob_gets_his_message_at_once(server: &TestServer, text: &str) {
    let mut receiver = Receiver::start(&[], 200).await;
    let bob = holder_of(server, "bob", GENERIC_NUMBER).await;
    register(server, &bob, &receiver.url("127.0.0.1")).await;
    let response = server
        .post_generic("g-bob", "Acme", GENERIC_NUMBER, text, now_unix())
        .await;
    assert_eq!(response.status(), 200);
    let hit = receiver.next_hit().await;
    assert_eq!(hit.json()["message"]["text"], text);
}

/// Alice's receiver never answers and her messages pile up; Bob's message still goes out
/// at once, long before her attempts time out, and she never has more than two requests
/// open.
#[tokio::test]
async fn a_receiver_that_never_answers_holds_up_only_its_own_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = settings(dir.path(), true);
    // Far longer than the test waits: only other endpoints' slots can let Bob through.
    config.webhooks_timeout = "300s".into();
    let server = TestServer::start_with(config).await;
    let (tarpit_url, mut arrived) = tarpit().await;
    let alice = holder(&server, "alice").await;
    register(&server, &alice, &tarpit_url).await;
    // More than all delivery slots together.
    for n in 0..20 {
        receive_sms(&server, &format!("SMtarpit{n:04}"), &format!("stuck {n}")).await;
    }
    await_requests(&mut arrived, 2).await;
    bob_gets_his_message_at_once(&server, "bob's code 2468").await;
    assert_eq!(
        requests_open(&mut arrived, 2),
        2,
        "requests open at the tarpit"
    );
    server.stop().await;
}

/// Alice has eight receivers that never answer, two requests open at each would fill
/// every delivery slot; she gets half of them, and Bob's message goes out at once.
#[tokio::test]
async fn an_account_with_many_stuck_receivers_holds_half_the_slots() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = settings(dir.path(), true);
    config.webhooks_timeout = "300s".into();
    config.webhooks_max_per_user = 8;
    let server = TestServer::start_with(config).await;
    let (tarpit_url, mut arrived) = tarpit().await;
    let alice = holder(&server, "alice").await;
    for endpoint in 0..8 {
        register(
            &server,
            &alice,
            &format!("{tarpit_url}?endpoint={endpoint}"),
        )
        .await;
    }
    for n in 0..3 {
        receive_sms(&server, &format!("SMmany{n:04}"), &format!("stuck {n}")).await;
    }
    await_requests(&mut arrived, 8).await;
    bob_gets_his_message_at_once(&server, "bob's code 1357").await;
    assert_eq!(
        requests_open(&mut arrived, 8),
        8,
        "requests open at Alice's receivers"
    );
    server.stop().await;
}

/// Redirects are not followed (the target was never checked by the SSRF guard): a 302
/// is a failed attempt, logged with its status, and the target never hears a thing.
#[tokio::test]
async fn a_redirect_is_logged_as_such_and_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(settings(dir.path(), true)).await;
    let mut target = Receiver::start(&[], 200).await;
    let mut receiver = Receiver::start(&[], 302).await;
    receiver.redirect_to(&target.url("127.0.0.1"));
    let alice = holder(&server, "alice").await;
    let (webhook_id, _) = register(&server, &alice, &receiver.url("127.0.0.1")).await;

    // "Send test" answers after the attempt, so a followed redirect would be made by then.
    let path = format!("/api/v1/webhooks/{webhook_id}/test");
    let (status, attempt) = server.call(Some(&alice), Method::POST, &path, None).await;
    assert_eq!((status, attempt["status"].clone()), (200, json!(302)));
    assert_eq!(receiver.next_hit().await.answered, 302);

    let message_id = receive_sms(&server, "SMredirect1", "redirected code 1357").await;
    assert_eq!(receiver.next_hit().await.answered, 302);
    let log = log_when(&server, &alice, webhook_id, |log| {
        log.iter().any(|entry| entry["message_id"] == message_id)
    })
    .await;
    let entry = log.iter().find(|e| e["message_id"] == message_id).unwrap();
    assert_eq!(entry["status"], 302, "{entry}");
    assert!(entry["next_retry"].is_string(), "{entry}");
    // The attempt is recorded only after its answer came back.
    assert!(target.hits.try_recv().is_err());
    server.stop().await;
}
