//! The listener over real sockets: which protocol each connection gets, connections that
//! never say anything, and idle connections at shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn with_tls(dir: &std::path::Path) -> burnbox::config::Settings {
    let mut settings = base_settings(dir);
    settings.tls_listen = "127.0.0.1:0".into();
    settings
}

fn tls_client(configure: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder) -> reqwest::Client {
    configure(reqwest::Client::builder().tls_danger_accept_invalid_certs(true))
        .build()
        .unwrap()
}

#[tokio::test]
async fn each_listener_serves_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(with_tls(dir.path())).await;
    let https = server.https_base.clone().unwrap();
    let plain_h1 = reqwest::Client::builder().http1_only().build().unwrap();
    let plain_h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let tls_h1 = tls_client(reqwest::ClientBuilder::http1_only);
    // Offers both over ALPN and takes what the server picks.
    let tls_any = tls_client(|builder| builder);
    let cases = [
        (&plain_h1, server.base.clone(), Version::HTTP_11),
        (&plain_h2, server.base.clone(), Version::HTTP_2),
        (&tls_h1, https.clone(), Version::HTTP_11),
        (&tls_any, https.clone(), Version::HTTP_2),
    ];
    for (client, base, version) in cases {
        let response = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{base} over {version:?}");
        assert_eq!(response.version(), version, "{base}");
        // Requests whose method starts like the HTTP/2 preface's `PRI` are still HTTP/1
        // requests, with their bodies intact.
        let login = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200, "{base} over {version:?}");
        assert_eq!(login.version(), version);
    }
    server.stop().await;
}

/// Reads until the server closes the connection (panics if that takes 10 s) and returns
/// what it sent before.
async fn read_until_closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 256];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer))
            .await
            .expect("the server closed the connection");
        match read {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Panics unless the server closes the connection without answering anything.
async fn closed_without_answer(socket: &mut TcpStream) {
    let received = read_until_closed(socket).await;
    assert!(
        received.is_empty(),
        "closed without an answer: {}",
        String::from_utf8_lossy(&received)
    );
}

#[tokio::test]
async fn connections_that_never_start_talking_are_closed_after_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = with_tls(dir.path());
    settings.request_timeout = "1s".into();
    let server = TestServer::start_with(settings).await;
    let plain = server.base.trim_start_matches("http://").to_owned();
    let tls = server
        .https_base
        .as_deref()
        .unwrap()
        .trim_start_matches("https://")
        .to_owned();

    // Silent on the plain listener; a start that could still be HTTP/2's preface; a TLS
    // handshake that never begins; an HTTP/2 connection that never asks anything.
    let started = Instant::now();
    let mut h2_idle = TcpStream::connect(&plain).await.unwrap();
    h2_idle.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
    let mut silent = TcpStream::connect(&plain).await.unwrap();
    let mut undecided = TcpStream::connect(&plain).await.unwrap();
    undecided.write_all(b"PR").await.unwrap();
    let mut no_handshake = TcpStream::connect(&tls).await.unwrap();
    for socket in [&mut silent, &mut undecided, &mut no_handshake] {
        closed_without_answer(socket).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300),
            "closed by the timeout, not at once ({waited:?})"
        );
    }
    // The HTTP/2 server answers the handshake with its own settings, then gives up.
    let h2_sent = read_until_closed(&mut h2_idle).await;
    let waited = started.elapsed();
    assert!(!h2_sent.is_empty(), "the HTTP/2 handshake was answered");
    assert!(
        waited >= Duration::from_millis(300),
        "closed by the timeout ({waited:?})"
    );
    // Well-behaved clients are unaffected.
    assert_eq!(server.get("/healthz").await.status(), 200);
    server.stop().await;
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4) and an empty SETTINGS frame.
const H2_PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn idle_connections_are_closed_at_once_when_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let read = idle.read(&mut answer).await.unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));

    // A keep-alive connection with no request in flight is closed as shutdown starts,
    // not held open for the grace period (10 s).
    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        started.elapsed()
    );
    closed_without_answer(&mut idle).await;
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "the listener is closed"
    );
}
