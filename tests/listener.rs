//! The listener over real sockets: which protocol each connection gets, connections that
//! never say anything, HTTP/2 connections left idle, and idle connections at shutdown.
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

/// The HTTPS listener's address, for raw sockets.
fn tls_addr(server: &TestServer) -> String {
    let base = server.https_base.as_deref().expect("HTTPS is on");
    base.trim_start_matches("https://").to_owned()
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
            .expect("the server did not close the connection within 10 s");
        match read {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Connects to `addr`, sends `first`, and reads until the server closes the connection:
/// what it sent, and how long after connecting it closed.
async fn open_until_closed(addr: &str, first: &[u8]) -> (Vec<u8>, Duration) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let connected = Instant::now();
    socket.write_all(first).await.unwrap();
    (read_until_closed(&mut socket).await, connected.elapsed())
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
    let tls = tls_addr(&server);

    // Silent on the plain listener; a start that could still be HTTP/2's preface; a TLS
    // handshake that never begins; an HTTP/2 connection that never asks anything. Each
    // is read at once and on its own, so each close is timed from its own connect.
    let silent = open_until_closed(&plain, b"");
    let undecided = open_until_closed(&plain, b"PR");
    let no_handshake = open_until_closed(&tls, b"");
    let h2_idle = open_until_closed(&plain, H2_PREFACE_AND_SETTINGS);
    let (silent, undecided, no_handshake, h2_idle) =
        tokio::join!(silent, undecided, no_handshake, h2_idle);
    for (name, (received, open_for)) in [
        ("silent", silent),
        ("undecided", undecided),
        ("no handshake", no_handshake),
    ] {
        assert!(received.is_empty(), "{name}: closed without an answer");
        assert!(
            open_for >= Duration::from_millis(800),
            "{name}: closed by the 1 s timeout, not at once ({open_for:?})"
        );
    }
    // The HTTP/2 server answers the handshake with its own settings, then gives up.
    let (received, open_for) = h2_idle;
    assert!(
        is_h2_settings(&received),
        "the HTTP/2 handshake was answered"
    );
    assert!(
        open_for >= Duration::from_millis(800),
        "HTTP/2 without a request: closed by the timeout ({open_for:?})"
    );
    // Well-behaved clients are unaffected.
    assert_eq!(server.get("/healthz").await.status(), 200);
    server.stop().await;
}

/// Whether `received` starts with an HTTP/2 SETTINGS frame (type 4 on stream 0), which
/// is how an HTTP/2 server answers a client's preface.
fn is_h2_settings(received: &[u8]) -> bool {
    received.len() >= 9 && received[3] == 0x04 && received[5..9] == [0, 0, 0, 0]
}

/// Sends `parts` with a pause after each, so the server's first reads likely see them
/// apart (the answer is the same either way), and returns the first bytes of the answer.
async fn send_in_parts<S>(socket: &mut S, parts: &[&[u8]]) -> Vec<u8>
where
    S: AsyncReadExt + AsyncWriteExt + Unpin,
{
    for part in parts {
        socket.write_all(part).await.unwrap();
        socket.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    answer.truncate(read);
    answer
}

#[tokio::test]
async fn the_protocol_is_told_from_first_bytes_that_come_apart_and_over_tls_without_alpn() {
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(with_tls(dir.path())).await;
    let plain = server.base.trim_start_matches("http://").to_owned();
    let h1: &[&[u8]] = &[b"P", b"R", b"OPFIND /healthz HTTP/1.1\r\nhost: x\r\n\r\n"];
    let h2: &[&[u8]] = &[b"P", b"R", &H2_PREFACE_AND_SETTINGS[2..]];

    // `PROPFIND` shares `PR` with the preface: still HTTP/1 (and not a method we serve).
    let mut socket = TcpStream::connect(&plain).await.unwrap();
    let answer = send_in_parts(&mut socket, h1).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 405"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut socket = TcpStream::connect(&plain).await.unwrap();
    assert!(is_h2_settings(&send_in_parts(&mut socket, h2).await));

    // A TLS client that offers no ALPN, speaking either protocol.
    let mut roots = rustls::RootCertStore::empty();
    let cert = dir.path().join("tls/cert.pem");
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    assert!(config.alpn_protocols.is_empty());
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tls = tls_addr(&server);
    let connect = || async {
        let tcp = TcpStream::connect(&tls).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    };
    let get: &[&[u8]] = &[b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"];
    let answer = send_in_parts(&mut connect().await, get).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(is_h2_settings(
        &send_in_parts(&mut connect().await, h2).await
    ));
    server.stop().await;
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4) and an empty SETTINGS frame.
const H2_PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn a_request_head_over_8_kib_is_refused_with_431() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let head = |filler: usize| {
        let padding = "a".repeat(filler);
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-padding: {padding}\r\n\r\n")
    };
    for (filler, status) in [(7 * 1024, "200"), (9 * 1024, "431")] {
        let mut socket = TcpStream::connect(&addr).await.unwrap();
        let answer = send_in_parts(&mut socket, &[head(filler).as_bytes()]).await;
        let expected = format!("HTTP/1.1 {status}");
        assert!(
            answer.starts_with(expected.as_bytes()),
            "{filler}-byte header: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    server.stop().await;
}

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

/// An HTTP/2 client on a connection of its own, and a task that ends (with the time)
/// when the server closes that connection.
async fn h2_connection(
    addr: &str,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Instant>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    let closed = tokio::spawn(async move {
        let _ = connection.await;
        Instant::now()
    });
    (send, closed)
}

/// Sends a GET as the admin and returns the response once its head is in.
async fn h2_get(
    send: &mut h2::client::SendRequest<bytes::Bytes>,
    authority: &str,
    path: &str,
) -> http::Response<h2::RecvStream> {
    use base64::Engine;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    let request = http::Request::get(format!("http://{authority}{path}"))
        .header("authorization", format!("Basic {credentials}"))
        .body(())
        .unwrap();
    let ready = send.clone().ready().await.unwrap();
    *send = ready;
    let (response, _) = send.send_request(request, true).unwrap();
    response.await.unwrap()
}

/// How long after `since` the connection watched by `closed` was closed (panics if it
/// is still open after 10 s).
async fn closed_after(closed: tokio::task::JoinHandle<Instant>, since: Instant) -> Duration {
    let at = tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the server closed the idle HTTP/2 connection")
        .unwrap();
    at.saturating_duration_since(since)
}

#[tokio::test]
async fn http2_connections_close_once_idle_but_not_while_a_stream_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.request_timeout = "1s".into();
    let server = TestServer::start_with(settings).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let number = server.number_id(TWILIO_NUMBER).await;

    // One client asks once and falls quiet; another holds an event stream open.
    let (mut quiet, quiet_closed) = h2_connection(&addr).await;
    let mut answer = h2_get(&mut quiet, &addr, "/healthz").await;
    assert_eq!(answer.status(), 200);
    while answer.body_mut().data().await.is_some() {}
    let quiet_since = Instant::now();
    let (mut watching, watching_closed) = h2_connection(&addr).await;
    let stream = h2_get(
        &mut watching,
        &addr,
        &format!("/api/v1/events?numbers={number}"),
    )
    .await;
    assert_eq!(stream.status(), 200);
    let streaming_since = Instant::now();

    let quiet_for = closed_after(quiet_closed, quiet_since).await;
    assert!(
        quiet_for >= Duration::from_millis(800),
        "closed by the 1 s idle limit, not at once ({quiet_for:?})"
    );
    // Well past its own idle limit, the connection with a stream open still serves.
    tokio::time::sleep_until((streaming_since + Duration::from_millis(2500)).into()).await;
    assert!(!watching_closed.is_finished(), "an open stream keeps it");
    let answer = h2_get(&mut watching, &addr, "/healthz").await;
    assert_eq!(answer.status(), 200);

    // Once the stream ends, the connection is idle and goes the same way.
    drop(stream);
    let ended = Instant::now();
    let watching_for = closed_after(watching_closed, ended).await;
    assert!(
        watching_for >= Duration::from_millis(800),
        "closed by the idle limit after the stream ended ({watching_for:?})"
    );
    server.stop().await;
}
