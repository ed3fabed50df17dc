//! Gateway protections over real sockets: password guessing limits and connections that
//! never finish their request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn password_guessing_is_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let guess = |password: &'static str| {
        server
            .client
            .get(server.url("/api/v1/messages"))
            .basic_auth("admin", Some(password))
            .send()
    };
    // The right password works many times in a row: verified once, then remembered.
    for _ in 0..30 {
        assert_eq!(guess(ADMIN_PASSWORD).await.unwrap().status(), 200);
    }
    // Ten password verifications per address in a burst: the first, successful one
    // above counted, so nine wrong guesses are answered and the tenth is refused.
    for i in 0..9 {
        assert_eq!(guess("wrong").await.unwrap().status(), 401, "guess {i}");
    }
    let limited = guess("still wrong").await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(
        limited.json::<serde_json::Value>().await.unwrap()["code"],
        "rate_limited"
    );
    // While limited, not even the right password gets through from this address.
    assert_eq!(guess(ADMIN_PASSWORD).await.unwrap().status(), 429);
    server.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_request_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.request_timeout = "1s".into();
    let server = TestServer::start_with(settings).await;
    let addr = server.base.trim_start_matches("http://").to_owned();

    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    // The server closes the connection (read returns 0 or an error) without ever
    // answering a request it never received in full.
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer))
        .await
        .expect("the server closed the connection");
    let closed = match read {
        Ok(0) | Err(_) => true,
        Ok(n) => !String::from_utf8_lossy(&buffer[..n]).contains("200"),
    };
    assert!(closed);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed by the timeout, not at once"
    );
    // Well-behaved clients are unaffected.
    assert_eq!(server.get("/healthz").await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn api_requests_are_limited_per_account_and_webhooks_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.rate_limit_user = 5;
    settings.rate_limit_webhooks = 3;
    let server = TestServer::start_with(settings).await;
    let alice = server.account("alice", "user").await;
    let bob = server.account("bob", "user").await;

    for i in 0..5 {
        let (status, _) = server
            .call(Some(&alice), reqwest::Method::GET, "/api/v1/leases", None)
            .await;
        assert_eq!(status, 200, "request {i}");
    }
    let limited = server
        .client
        .get(server.url("/api/v1/leases"))
        .basic_auth(&alice.username, Some(&alice.password))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let header = |name: &str| limited.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("ratelimit-limit"), "5");
    assert_eq!(header("ratelimit-remaining"), "0");
    let retry_after: u64 = header("retry-after").parse().unwrap();
    assert!(
        (1..=12).contains(&retry_after),
        "one request per 12 s refills"
    );
    assert_eq!(
        limited.json::<serde_json::Value>().await.unwrap()["code"],
        "rate_limited"
    );
    // Another account has its own allowance.
    assert_eq!(
        server
            .call(Some(&bob), reqwest::Method::GET, "/api/v1/leases", None)
            .await
            .0,
        200
    );

    // Webhooks are counted apart: Alice's exhausted allowance does not touch them, and
    // their own limit holds.
    for i in 0..3 {
        let response = server
            .post_twilio(&format!("SMrl{i}"), "+15005550006", TWILIO_NUMBER, "x")
            .await;
        assert_eq!(response.status(), 200, "webhook {i}");
    }
    let response = server
        .post_twilio("SMrl3", "+15005550006", TWILIO_NUMBER, "x")
        .await;
    assert_eq!(response.status(), 429);
    server.stop().await;
}

#[tokio::test]
async fn endpoints_without_an_account_are_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.rate_limit_anonymous = 2;
    let server = TestServer::start_with(settings).await;
    let login = || {
        server.call(
            None,
            reqwest::Method::POST,
            "/api/v1/auth/login",
            Some(serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
    };
    assert_eq!(login().await.0, 200);
    // A refresh counts against the same allowance (a garbage token is still an attempt).
    let (status, _) = server
        .call(
            None,
            reqwest::Method::POST,
            "/api/v1/auth/refresh",
            Some(serde_json::json!({"refresh_token": "rt1.1.1.x"})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, problem) = login().await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (429, Some("rate_limited"))
    );
    server.stop().await;
}

#[tokio::test]
async fn server_errors_reach_the_recent_errors_of_system_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.request_timeout = "1s".into();
    let server = TestServer::start_with(settings).await;
    assert_eq!(server.status().await["errors"]["total"], 0);

    // A webhook whose body never arrives in full outlives the request timeout: 503.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(
            b"POST /webhooks/twilio HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nMessageSid=SM1",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 1024];
        while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "answered before closing");
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("the server answers within its timeout");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503"));

    let status = server.status().await;
    assert_eq!(status["errors"]["total"], 1, "{status}");
    let event = &status["errors"]["recent"][0];
    assert_eq!(event["source"], "webhook");
    assert_eq!(event["code"], "timeout");
    assert!(
        event["detail"]
            .as_str()
            .unwrap()
            .starts_with("POST /webhooks/twilio")
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_served_to_the_token_and_admins_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.metrics_token = Some(burnbox::domain::Secret::new("scrape-token-1"));
    let server = TestServer::start_with(settings).await;
    assert_eq!(
        server
            .post_twilio("SMm1", "+15005550006", TWILIO_NUMBER, "code 1234")
            .await
            .status(),
        200
    );
    let scrape = |auth: Option<&'static str>| {
        let mut request = server.client.get(server.url("/metrics"));
        if let Some(token) = auth {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(scrape(None).await.unwrap().status(), 401);
    assert_eq!(scrape(Some("wrong")).await.unwrap().status(), 401);
    let alice = server.account("alice", "user").await;
    let (status, _) = server
        .call(Some(&alice), reqwest::Method::GET, "/metrics", None)
        .await;
    assert_eq!(status, 403);

    let response = scrape(Some("scrape-token-1")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|line| line.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .split(' ')
            .nth(1)
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(line("burnbox_messages"), 1.0);
    assert_eq!(line("burnbox_writer_alive"), 1.0);
    assert!(line("burnbox_writer_jobs_total") >= 1.0);
    // The writer's busy time, split in two, is there to be read against wall time.
    assert!(line("burnbox_writer_apply_seconds_total") > 0.0);
    assert!(line("burnbox_writer_commit_seconds_total") > 0.0);
    assert_eq!(
        line("burnbox_realtime_connections{transport=\"websocket\"}"),
        0.0
    );
    assert!(text.contains(&format!(
        "burnbox_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.ends_with("# EOF\n"));
    // Admins read it with their own login too.
    let (status, _) = server
        .call(
            Some(&Account::admin()),
            reqwest::Method::GET,
            "/metrics",
            None,
        )
        .await;
    // `call` parses JSON; the body is text, so only the status is checked here.
    assert_eq!(status, 200);
    server.stop().await;
}
