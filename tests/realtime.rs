//! Real-time delivery over real sockets against the real server: WebSocket
//! (tokio-tungstenite), SSE (an EventSource-compatible parser over reqwest) and Socket.IO
//! (the official `socket.io-client` in Node). Each receives messages, refuses foreign
//! numbers, resumes by id after a disconnect and after a restart, and a slow client is
//! dropped with a resume id while a fast one is unaffected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use eventsource_stream::Eventsource;
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How long a test waits for an event before failing (generous: CI machines are small and
/// busy; passing tests never wait this long).
const WAIT: Duration = Duration::from_secs(30);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn leased(server: &TestServer, who: &Account, number: &str) -> u64 {
    let number_id = server.number_id(number).await;
    let (status, lease) = server
        .call(
            Some(who),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": number_id})),
        )
        .await;
    assert_eq!(status, 201, "{lease}");
    number_id
}

async fn token(server: &TestServer, who: &Account) -> String {
    let (status, body) = server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": who.username, "password": who.password})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// Waits until the hub has `count` subscribers, so a test sends only once its clients
/// are listening (no sleeps).
async fn listeners(server: &TestServer, count: u64) {
    let reached = eventually(WAIT, || async {
        server.status().await["realtime"]["listeners"].as_u64() == Some(count)
    })
    .await;
    assert!(
        reached,
        "expected {count} listeners: {}",
        server.status().await["realtime"]
    );
}

/// Sends an SMS to `to` through the Twilio webhook; returns nothing (ids come from events).
async fn sms(server: &TestServer, sid: &str, to: &str, text: &str) {
    let response = server.post_twilio(sid, "+15005550006", to, text).await;
    assert_eq!(response.status(), 200);
}

fn ws_url(server: &TestServer, query: &str) -> String {
    format!("{}/api/v1/ws{query}", server.base.replacen("http", "ws", 1))
}

async fn ws_connect(server: &TestServer, token: &str) -> Ws {
    let mut request = ws_url(server, "").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws
}

async fn ws_send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next JSON frame (pings are answered by tungstenite itself), or the close frame.
async fn ws_next(ws: &mut Ws) -> Result<Value, Option<(CloseCode, String)>> {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within the wait");
        match message {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                return Err(frame.map(|f| (f.code, f.reason.to_string())));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(None),
        }
    }
}

async fn ws_json(ws: &mut Ws) -> Value {
    ws_next(ws).await.expect("a JSON frame, not a close")
}

async fn ws_subscribe(ws: &mut Ws, numbers: &[u64], after: Option<u64>) {
    ws_send(
        ws,
        json!({"type": "subscribe", "numbers": numbers, "after": after}),
    )
    .await;
    let ack = ws_json(ws).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    assert_eq!(ack["numbers"], json!(numbers));
}

/// An SSE stream: the response (for headers) already checked, then its events.
async fn sse_open(
    server: &TestServer,
    query: &str,
    last_event_id: Option<u64>,
) -> (
    reqwest::header::HeaderMap,
    std::pin::Pin<Box<dyn futures::Stream<Item = eventsource_stream::Event> + Send>>,
) {
    let mut request = server
        .client
        .get(server.url(&format!("/api/v1/events?{query}")))
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{query}");
    let headers = response.headers().clone();
    let events = response
        .bytes_stream()
        .eventsource()
        .map(|event| event.expect("a well-formed event"));
    (headers, Box::pin(events))
}

async fn sse_next(
    events: &mut std::pin::Pin<Box<dyn futures::Stream<Item = eventsource_stream::Event> + Send>>,
) -> Option<eventsource_stream::Event> {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event within the wait")
}

/// The next `message` event's JSON (skipping the opening comment/retry event).
async fn sse_message(
    events: &mut std::pin::Pin<Box<dyn futures::Stream<Item = eventsource_stream::Event> + Send>>,
) -> (u64, Value) {
    loop {
        let event = sse_next(events).await.expect("the stream goes on");
        if event.event == "message" {
            let json: Value = serde_json::from_str(&event.data).unwrap();
            return (event.id.parse().unwrap(), json);
        }
        assert_eq!(event.event, "ready", "only ready comes before messages");
    }
}

#[tokio::test]
async fn websocket_delivers_messages_of_held_numbers_and_refuses_foreign_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let alice = server.account("alice", "user").await;
    let mallory = server.account("mallory", "user").await;
    let number = leased(&server, &alice, TWILIO_NUMBER).await;
    let alice_token = token(&server, &alice).await;

    let mut ws = ws_connect(&server, &alice_token).await;
    ws_subscribe(&mut ws, &[number], None).await;
    listeners(&server, 1).await;
    assert_eq!(
        server.status().await["realtime"]["websocket_connections"],
        1
    );
    sms(&server, "SMws1", TWILIO_NUMBER, "Your code is 123456").await;
    let event = ws_json(&mut ws).await;
    assert_eq!(event["type"], "message");
    assert_eq!(event["number_id"], number);
    assert_eq!(event["message"]["text"], "Your code is 123456");
    assert_eq!(event["message"]["otp"], "123456");
    // The same JSON as the REST API.
    let (_, rest) = server
        .call(
            Some(&alice),
            Method::GET,
            &format!("/api/v1/numbers/{number}/messages/latest"),
            None,
        )
        .await;
    assert_eq!(event["message"], rest);
    assert_eq!(event["id"], rest["id"]);

    // App-level ping for clients that cannot send WebSocket pings.
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_json(&mut ws).await["type"], "pong");
    // Unsubscribed: the next message is not delivered (the pong after it proves order).
    ws_send(&mut ws, json!({"type": "unsubscribe", "numbers": [number]})).await;
    assert_eq!(ws_json(&mut ws).await["type"], "unsubscribed");
    listeners(&server, 0).await;
    sms(&server, "SMws2", TWILIO_NUMBER, "not delivered").await;
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_json(&mut ws).await["type"], "pong");

    // Mallory may not follow alice's number: an error frame, then close 4403.
    let mallory_token = token(&server, &mallory).await;
    let mut foreign = ws_connect(&server, &mallory_token).await;
    ws_send(
        &mut foreign,
        json!({"type": "subscribe", "numbers": [number]}),
    )
    .await;
    let refusal = ws_json(&mut foreign).await;
    assert_eq!(refusal["type"], "error");
    assert_eq!(refusal["code"], "not_found");
    let close = ws_next(&mut foreign).await.unwrap_err().unwrap();
    assert_eq!(close.0, CloseCode::from(4403));

    // No credentials: close 4401. A browser-style `?access_token=` works.
    let (mut anonymous, _) = tokio_tungstenite::connect_async(ws_url(&server, ""))
        .await
        .unwrap();
    let close = loop {
        match ws_next(&mut anonymous).await {
            Ok(frame) => assert_eq!(frame["code"], "unauthenticated"),
            Err(close) => break close.unwrap(),
        }
    };
    assert_eq!(close.0, CloseCode::from(4401));
    let (mut browser, _) =
        tokio_tungstenite::connect_async(ws_url(&server, &format!("?access_token={alice_token}")))
            .await
            .unwrap();
    ws_subscribe(&mut browser, &[number], None).await;
}

/// A client waiting for its first code whose connection drops (a proxy's idle timeout, a
/// network change) comes back from where its stream started, not from whatever is newest
/// by then: the SMS that arrived in the gap is delivered.
#[tokio::test]
async fn a_stream_dropped_before_its_first_message_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let alice = server.account("alice", "user").await;
    let number = leased(&server, &alice, TWILIO_NUMBER).await;
    let alice_token = token(&server, &alice).await;
    // Something stored before, so the starting point is not simply zero.
    sms(&server, "SMgap0", TWILIO_NUMBER, "before anyone listened").await;

    // SSE: the `ready` event's id is where the stream starts, as EventSource keeps it.
    let query = format!("numbers={number}&access_token={alice_token}");
    let (_, mut events) = sse_open(&server, &query, None).await;
    let ready = sse_next(&mut events).await.unwrap();
    assert_eq!(ready.event, "ready");
    let start: u64 = ready.id.parse().expect("the ready event has an id");
    let body: Value = serde_json::from_str(&ready.data).unwrap();
    assert_eq!(body["after"], start);
    assert!(start > 0, "it starts after what was stored before");
    drop(events);
    // WebSocket: the `subscribed` ack says the same.
    let mut ws = ws_connect(&server, &alice_token).await;
    ws_send(&mut ws, json!({"type": "subscribe", "numbers": [number]})).await;
    let ack = ws_json(&mut ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["after"].as_u64()),
        (Some("subscribed"), Some(start))
    );
    ws.close(None).await.unwrap();
    listeners(&server, 0).await;

    sms(&server, "SMgap1", TWILIO_NUMBER, "while nobody listened").await;

    let (_, mut events) = sse_open(&server, &query, Some(start)).await;
    let (_, event) = sse_message(&mut events).await;
    assert_eq!(event["message"]["text"], "while nobody listened");
    let mut ws = ws_connect(&server, &alice_token).await;
    ws_subscribe(&mut ws, &[number], Some(start)).await;
    let event = ws_json(&mut ws).await;
    assert_eq!(event["message"]["text"], "while nobody listened", "{event}");
    server.stop().await;
}

#[tokio::test]
async fn sse_delivers_messages_with_ids_and_refuses_foreign_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let alice = server.account("alice", "user").await;
    let mallory = server.account("mallory", "user").await;
    let number = leased(&server, &alice, TWILIO_NUMBER).await;
    let alice_token = token(&server, &alice).await;

    // The token in the query, as a browser's EventSource must send it.
    let (headers, mut events) = sse_open(
        &server,
        &format!("numbers={number}&access_token={alice_token}"),
        None,
    )
    .await;
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-accel-buffering"], "no");
    let opening = sse_next(&mut events).await.unwrap();
    assert_eq!(opening.event, "ready", "{opening:?}");
    assert!(opening.retry.is_some(), "with a retry: hint: {opening:?}");
    let ready: Value = serde_json::from_str(&opening.data).unwrap();
    assert_eq!(ready["numbers"], json!([number]));
    listeners(&server, 1).await;
    assert_eq!(server.status().await["realtime"]["sse_connections"], 1);

    sms(&server, "SMsse1", TWILIO_NUMBER, "Code 9876 for Acme").await;
    let (id, event) = sse_message(&mut events).await;
    assert_eq!(event["type"], "message");
    assert_eq!(event["id"], id);
    assert_eq!(event["number_id"], number);
    assert_eq!(event["message"]["text"], "Code 9876 for Acme");

    // Refusals are problems before any stream: someone else's number, no credentials.
    let mallory_token = token(&server, &mallory).await;
    let response = server
        .client
        .get(server.url(&format!(
            "/api/v1/events?numbers={number}&access_token={mallory_token}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = server
        .get(&format!("/api/v1/events?numbers={number}"))
        .await;
    assert_eq!(response.status(), 401);
    let response = server
        .client
        .get(server.url(&format!(
            "/api/v1/events?numbers=oops&access_token={alice_token}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn resuming_after_a_disconnect_delivers_what_was_missed_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let alice = server.account("alice", "user").await;
    let number = leased(&server, &alice, TWILIO_NUMBER).await;
    let alice_token = token(&server, &alice).await;

    let mut ws = ws_connect(&server, &alice_token).await;
    ws_subscribe(&mut ws, &[number], None).await;
    listeners(&server, 1).await;
    sms(&server, "SMr1", TWILIO_NUMBER, "one").await;
    let first = ws_json(&mut ws).await["id"].as_u64().unwrap();
    drop(ws);
    listeners(&server, 0).await;

    // Sent while the client is away.
    for (sid, text) in [("SMr2", "two"), ("SMr3", "three"), ("SMr4", "four")] {
        sms(&server, sid, TWILIO_NUMBER, text).await;
    }

    // WebSocket: subscribe with the last id seen; then a live one after the replay.
    let mut ws = ws_connect(&server, &alice_token).await;
    ws_subscribe(&mut ws, &[number], Some(first)).await;
    let mut texts = Vec::new();
    let mut ids = vec![first];
    for _ in 0..3 {
        let event = ws_json(&mut ws).await;
        ids.push(event["id"].as_u64().unwrap());
        texts.push(event["message"]["text"].as_str().unwrap().to_owned());
    }
    assert_eq!(texts, ["two", "three", "four"]);
    sms(&server, "SMr5", TWILIO_NUMBER, "five").await;
    let live = ws_json(&mut ws).await;
    assert_eq!(live["message"]["text"], "five");
    ids.push(live["id"].as_u64().unwrap());
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    // Nothing more: a duplicate at the seam would show up before this pong.
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_json(&mut ws).await["type"], "pong");

    // SSE: Last-Event-ID from the third message replays exactly the fourth and fifth.
    let (_, mut events) = sse_open(
        &server,
        &format!("numbers={number}&access_token={alice_token}&after=0"),
        Some(ids[2]),
    )
    .await;
    let (fourth, json) = sse_message(&mut events).await;
    assert_eq!(
        (fourth, json["message"]["text"].clone()),
        (ids[3], "four".into())
    );
    let (fifth, _) = sse_message(&mut events).await;
    assert_eq!(fifth, ids[4]);
    sms(&server, "SMr6", TWILIO_NUMBER, "six").await;
    let (sixth, json) = sse_message(&mut events).await;
    assert!(sixth > fifth);
    assert_eq!(json["message"]["text"], "six");
}

#[tokio::test]
async fn resuming_after_a_server_restart_delivers_what_was_missed_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let alice = server.account("alice", "user").await;
    let number = leased(&server, &alice, TWILIO_NUMBER).await;
    let alice_token = token(&server, &alice).await;

    let mut ws = ws_connect(&server, &alice_token).await;
    ws_subscribe(&mut ws, &[number], None).await;
    let (_, mut sse) = sse_open(
        &server,
        &format!("numbers={number}&access_token={alice_token}"),
        None,
    )
    .await;
    listeners(&server, 2).await;
    sms(&server, "SMs1", TWILIO_NUMBER, "before the restart").await;
    let first = ws_json(&mut ws).await["id"].as_u64().unwrap();
    assert_eq!(sse_message(&mut sse).await.0, first);

    // Shutdown tells every client to come back later, with its resume id: WebSocket
    // with a resume frame and close 1012, SSE with a resume event and the stream's end.
    let stopping = tokio::spawn(server.stop());
    let resume = ws_json(&mut ws).await;
    assert_eq!(resume["type"], "resume", "{resume}");
    assert_eq!(resume["reason"], "shutdown");
    assert_eq!(resume["after"], first);
    let close = ws_next(&mut ws).await.unwrap_err().unwrap();
    assert_eq!(close.0, CloseCode::Restart);
    let last = sse_next(&mut sse).await.expect("a last event");
    assert_eq!(last.event, "resume");
    let resume: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(
        (resume["after"].as_u64(), resume["reason"].as_str()),
        (Some(first), Some("shutdown"))
    );
    assert!(sse_next(&mut sse).await.is_none(), "the stream ends");
    stopping.await.unwrap();

    let server = TestServer::start(dir.path()).await;
    let alice_token = token(&server, &alice).await;
    for (sid, text) in [("SMs2", "while away 1"), ("SMs3", "while away 2")] {
        sms(&server, sid, TWILIO_NUMBER, text).await;
    }
    let (_, mut events) = sse_open(
        &server,
        &format!("numbers={number}&access_token={alice_token}&after={first}"),
        None,
    )
    .await;
    let (second, json) = sse_message(&mut events).await;
    assert_eq!(json["message"]["text"], "while away 1");
    let (third, json) = sse_message(&mut events).await;
    assert_eq!(json["message"]["text"], "while away 2");
    sms(&server, "SMs4", TWILIO_NUMBER, "live again").await;
    let (fourth, json) = sse_message(&mut events).await;
    assert_eq!(json["message"]["text"], "live again");
    assert!(first < second && second < third && third < fourth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_dropped_with_a_resume_id_and_a_fast_one_is_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    // A small queue (but above the publisher's bursts in a debug build) and a patient
    // write timeout: the slow client is dropped by the hub (queue overflow), and its
    // goodbye still reaches it once it reads again.
    settings.realtime_queue = 128;
    settings.realtime_write_timeout = "60s".into();
    let server = TestServer::start_with(settings).await;
    let number = server.number_id(TWILIO_NUMBER).await;
    let (status, _) = server
        .call(
            Some(&Account::admin()),
            Method::PUT,
            &format!("/api/v1/numbers/{number}"),
            Some(json!({"public": true})),
        )
        .await;
    assert_eq!(status, 200);
    let reader = server.account("reader", "user").await;
    let reader_token = token(&server, &reader).await;

    // The slow client's socket takes little and it never reads until told.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = server.base.trim_start_matches("http://").parse().unwrap();
    let stream = socket.connect(address).await.unwrap();
    let mut request = ws_url(&server, "").into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {reader_token}").parse().unwrap(),
    );
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut slow, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    ws_subscribe(&mut slow, &[number], None).await;

    let mut fast = ws_connect(&server, &reader_token).await;
    ws_subscribe(&mut fast, &[number], None).await;
    listeners(&server, 2).await;
    // The fast client reads all the time.
    let (fast_ids, mut fast_received) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let fast_reader = tokio::spawn(async move {
        loop {
            let event = ws_json(&mut fast).await;
            let id = event["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("fast client: {event}"));
            if fast_ids.send(id).is_err() {
                break;
            }
        }
    });

    // Large messages fill the socket buffers quickly; send until the hub drops the slow
    // client, then a few more.
    let filler = "x".repeat(30_000);
    let mut sent = 0;
    let mut after_drop = 0;
    while after_drop < 3 {
        sent += 1;
        assert!(sent < 2_000, "the slow client was never dropped");
        sms(&server, &format!("SMslow{sent}"), TWILIO_NUMBER, &filler).await;
        let status = server.status().await;
        if status["realtime"]["dropped_slow_total"] == 1 {
            after_drop += 1;
        }
    }
    let all: Vec<u64> = server
        .all_messages(Some(&number.to_string()))
        .await
        .iter()
        .rev()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(all.len(), sent);
    let mut fast_got = Vec::new();
    while fast_got.len() < all.len() {
        fast_got.push(fast_received.recv().await.unwrap());
    }
    fast_reader.abort();
    assert_eq!(fast_got, all, "the fast client got every message in order");

    // The slow client reads again: what was written, then where to resume, then 4008.
    let mut got = Vec::new();
    let resume_after = loop {
        let frame = ws_json(&mut slow).await;
        match frame["type"].as_str() {
            Some("message") => got.push(frame["id"].as_u64().unwrap()),
            Some("resume") => {
                assert_eq!(frame["reason"], "too_slow");
                break frame["after"].as_u64().unwrap();
            }
            other => panic!("unexpected frame {other:?}"),
        }
    };
    let close = ws_next(&mut slow).await.unwrap_err().unwrap();
    assert_eq!(close.0, CloseCode::from(4008));
    assert!(close.1.contains(&resume_after.to_string()), "{close:?}");
    assert_eq!(got.last().copied().unwrap_or(0), resume_after);
    assert_eq!(
        got,
        all[..got.len()],
        "in order, nothing skipped before the drop"
    );

    // Resuming from the hint yields exactly the rest.
    let mut again = ws_connect(&server, &reader_token).await;
    ws_subscribe(&mut again, &[number], Some(resume_after)).await;
    for expected in &all[got.len()..] {
        assert_eq!(ws_json(&mut again).await["id"], *expected);
    }
    ws_send(&mut again, json!({"type": "ping"})).await;
    assert_eq!(ws_json(&mut again).await["type"], "pong");
}

#[tokio::test]
async fn connections_and_subscriptions_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.realtime_max_connections_per_user = 1;
    settings.realtime_max_subscriptions = 1;
    let server = TestServer::start_with(settings).await;
    let alice = server.account("alice", "user").await;
    let number = leased(&server, &alice, TWILIO_NUMBER).await;
    let other = leased(&server, &alice, GENERIC_NUMBER).await;
    let alice_token = token(&server, &alice).await;

    // One number per connection: a second is refused, the socket stays usable.
    let mut ws = ws_connect(&server, &alice_token).await;
    ws_subscribe(&mut ws, &[number], None).await;
    ws_send(&mut ws, json!({"type": "subscribe", "numbers": [other]})).await;
    let refusal = ws_json(&mut ws).await;
    assert_eq!(refusal["type"], "error");
    assert_eq!(refusal["code"], "validation_failed");
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_json(&mut ws).await["type"], "pong");
    drop(ws);
    let closed = eventually(WAIT, || async {
        server.status().await["realtime"]["websocket_connections"] == 0
    })
    .await;
    assert!(closed);
    let response = server
        .client
        .get(server.url(&format!(
            "/api/v1/events?numbers={number},{other}&access_token={alice_token}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let query = format!("numbers={number}&access_token={alice_token}");
    let (_, first) = sse_open(&server, &query, None).await;
    let response = server
        .client
        .get(server.url(&format!("/api/v1/events?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "too_many_connections");
    // A WebSocket over the limit is closed with 4429.
    let mut ws = ws_connect(&server, &alice_token).await;
    let close = loop {
        match ws_next(&mut ws).await {
            Ok(frame) => assert_eq!(frame["code"], "too_many_connections"),
            Err(close) => break close.unwrap(),
        }
    };
    assert_eq!(close.0, CloseCode::from(4429));
    // Closing the first frees the slot.
    drop(first);
    let freed = eventually(WAIT, || async {
        server.status().await["realtime"]["sse_connections"] == 0
    })
    .await;
    assert!(freed);
    let (_, _second) = sse_open(&server, &query, None).await;
}

/// The official socket.io-client (Node), installed from `tests/js/package-lock.json` the
/// first time a test needs it.
struct SocketIoClient {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

fn js_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

fn install_socketio_client() {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap();
    if *installed || js_dir().join("node_modules/socket.io-client").exists() {
        *installed = true;
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(js_dir())
        .status()
        .expect("npm is installed (Node runs the official socket.io-client)");
    assert!(status.success(), "npm ci in tests/js");
    *installed = true;
}

impl SocketIoClient {
    async fn start(
        server: &TestServer,
        token: &str,
        numbers: &[u64],
        env: &[(&str, &str)],
    ) -> Self {
        use tokio::io::AsyncBufReadExt;
        install_socketio_client();
        let numbers: Vec<String> = numbers.iter().map(u64::to_string).collect();
        let mut command = tokio::process::Command::new("node");
        command
            .arg(js_dir().join("socketio_client.mjs"))
            .env("BURNBOX_URL", &server.base)
            .env("BURNBOX_TOKEN", token)
            .env("NUMBERS", numbers.join(","))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("node runs");
        let stdout = child.stdout.take().unwrap();
        Self {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        }
    }

    /// The next thing the client reported.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("the client reports within the wait")
            .unwrap()
            .expect("the client is still running");
        serde_json::from_str(&line).unwrap()
    }

    /// Skips to the next report of `event`.
    async fn until(&mut self, event: &str) -> Value {
        loop {
            let report = self.next().await;
            assert_ne!(report["event"], "timeout");
            if report["event"] == event {
                return report;
            }
        }
    }

    async fn finished(mut self) {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
    }
}

#[tokio::test]
async fn socketio_client_receives_messages_refuses_foreign_numbers_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let alice = server.account("alice", "user").await;
    let mallory = server.account("mallory", "user").await;
    let number = leased(&server, &alice, TWILIO_NUMBER).await;
    let alice_token = token(&server, &alice).await;

    // Default transports: long-polling first, then the upgrade to WebSocket.
    let mut client = SocketIoClient::start(&server, &alice_token, &[number], &[]).await;
    let ack = client.until("ack").await;
    assert_eq!(ack["data"]["ok"], true, "{ack}");
    assert_eq!(ack["data"]["numbers"], json!([number]));
    listeners(&server, 1).await;
    assert_eq!(server.status().await["realtime"]["socketio_connections"], 1);
    sms(&server, "SMio1", TWILIO_NUMBER, "Socket code 424242").await;
    let message = client.until("message").await;
    let event = &message["data"];
    assert_eq!(event["type"], "message");
    assert_eq!(event["number_id"], number);
    assert_eq!(event["message"]["text"], "Socket code 424242");
    assert_eq!(event["message"]["otp"], "424242");
    let first = event["id"].as_u64().unwrap();
    client.finished().await;
    listeners(&server, 0).await;

    // Someone else's number: a refused ack, nothing subscribed.
    let mallory_token = token(&server, &mallory).await;
    let mut foreign = SocketIoClient::start(&server, &mallory_token, &[number], &[]).await;
    let ack = foreign.until("ack").await;
    assert_eq!(ack["data"]["ok"], false);
    assert_eq!(ack["data"]["code"], "not_found");
    foreign.finished().await;
    // No token, or a bad one: the handshake is refused with the error code.
    let mut anonymous = SocketIoClient::start(&server, "", &[number], &[]).await;
    assert_eq!(
        anonymous.until("connect_error").await["message"],
        "unauthenticated"
    );
    let mut forged = SocketIoClient::start(&server, "not-a-token", &[number], &[]).await;
    assert_eq!(
        forged.until("connect_error").await["message"],
        "bad_credentials"
    );

    // Resume with our id: what came while away, once, in order, then live.
    sms(&server, "SMio2", TWILIO_NUMBER, "away 1").await;
    sms(&server, "SMio3", TWILIO_NUMBER, "away 2").await;
    let after = first.to_string();
    let mut again = SocketIoClient::start(
        &server,
        &alice_token,
        &[number],
        &[
            ("AFTER", &after),
            ("COUNT", "3"),
            ("TRANSPORTS", "websocket"),
        ],
    )
    .await;
    assert_eq!(again.until("ack").await["data"]["ok"], true);
    let mut texts = Vec::new();
    let mut ids = vec![first];
    for _ in 0..2 {
        let message = again.until("message").await;
        ids.push(message["data"]["id"].as_u64().unwrap());
        texts.push(message["data"]["message"]["text"].clone());
    }
    assert_eq!(texts, [json!("away 1"), json!("away 2")]);
    sms(&server, "SMio4", TWILIO_NUMBER, "live").await;
    let live = again.until("message").await;
    assert_eq!(live["data"]["message"]["text"], "live");
    ids.push(live["data"]["id"].as_u64().unwrap());
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    again.finished().await;
}

/// A Socket.IO client's requests take effect, and are acked, in the order it sent them:
/// an unsubscribe sent right behind a subscribe, before its ack, leaves the number
/// unsubscribed; a malformed request between them is refused in its turn.
#[tokio::test]
async fn socketio_requests_take_effect_in_the_order_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let alice = server.account("alice", "user").await;
    let number = leased(&server, &alice, TWILIO_NUMBER).await;
    let alice_token = token(&server, &alice).await;
    // The server checks access before it subscribes, which takes a store read; an
    // unsubscribe handled meanwhile would overtake it. A few rounds give a race room.
    for _ in 0..5 {
        let mut client = SocketIoClient::start(
            &server,
            &alice_token,
            &[number],
            &[("UNSUBSCRIBE", "1"), ("TRANSPORTS", "websocket")],
        )
        .await;
        let mut reports = Vec::new();
        loop {
            let report = client.next().await;
            assert_ne!(report["event"], "timeout");
            let done = report["event"] == "unsubscribed";
            reports.push(report);
            if done {
                break;
            }
        }
        let events: Vec<&Value> = reports.iter().map(|report| &report["event"]).collect();
        assert_eq!(
            events,
            ["connect", "ack", "refused", "unsubscribed"],
            "{reports:?}"
        );
        assert_eq!(reports[1]["data"]["numbers"], json!([number]));
        assert_eq!(reports[2]["data"]["code"], "validation_failed");
        assert_eq!(reports[3]["data"]["numbers"], json!([number]));
        client.finished().await;
        listeners(&server, 0).await;
    }
}

/// WebSocket frames count against the caller's API rate: a flood is cut off.
#[tokio::test]
async fn a_websocket_flooding_frames_is_closed_at_its_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.rate_limit_user = 5;
    let server = TestServer::start_with(settings).await;
    let alice = server.account("alice", "user").await;
    let alice_token = token(&server, &alice).await;
    let mut ws = ws_connect(&server, &alice_token).await;
    let mut pongs = 0;
    let close = loop {
        ws_send(&mut ws, json!({"type": "ping"})).await;
        match ws_next(&mut ws).await {
            Ok(frame) if frame["type"] == "pong" => pongs += 1,
            Ok(frame) => assert_eq!(frame["code"], "rate_limited", "{frame}"),
            Err(close) => break close.unwrap(),
        }
        assert!(pongs <= 5, "more pongs than the limit allows");
    };
    assert_eq!(close.0, CloseCode::from(4429));
    assert!(pongs >= 1, "frames within the limit are answered");
}

/// A stream outlives the request that opened it, so logging out must end it: a new
/// subscription is refused at once, and an open stream closes within a keepalive.
#[tokio::test]
async fn streams_end_when_their_session_is_logged_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.realtime_keepalive = "200ms".into();
    let server = TestServer::start_with(settings).await;
    let alice = server.account("alice", "user").await;
    let number = leased(&server, &alice, TWILIO_NUMBER).await;
    let alice_token = token(&server, &alice).await;

    let mut ws = ws_connect(&server, &alice_token).await;
    ws_subscribe(&mut ws, &[number], None).await;
    let (_, mut events) = sse_open(
        &server,
        &format!("numbers={number}&access_token={alice_token}"),
        None,
    )
    .await;
    assert_eq!(sse_next(&mut events).await.unwrap().event, "ready");
    listeners(&server, 2).await;

    let logout = server
        .client
        .post(server.url("/api/v1/auth/logout"))
        .bearer_auth(&alice_token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);

    // The WebSocket: an error frame, then close 4401 (a subscribe now would be refused
    // the same way; the keepalive gets there first or the subscribe does).
    ws_send(&mut ws, json!({"type": "subscribe", "numbers": [number]})).await;
    let mut close = None;
    while close.is_none() {
        match ws_next(&mut ws).await {
            Ok(frame) => assert_eq!(frame["code"], "bad_credentials", "{frame}"),
            Err(end) => close = end,
        }
    }
    assert_eq!(close.unwrap().0, CloseCode::from(4401));

    // The event stream: a last `closed` event, then the end.
    let last = loop {
        let event = sse_next(&mut events).await.expect("a closing event");
        if event.event != "ready" {
            break event;
        }
    };
    assert_eq!(last.event, "closed", "{last:?}");
    assert!(sse_next(&mut events).await.is_none(), "the stream ends");
    listeners(&server, 0).await;

    // Socket.IO, with a session of its own: told `closed`, then disconnected.
    let bob = server.account("bob", "user").await;
    let bobs = leased(&server, &bob, GENERIC_NUMBER).await;
    let bob_token = token(&server, &bob).await;
    let mut client = SocketIoClient::start(&server, &bob_token, &[bobs], &[("COUNT", "5")]).await;
    assert_eq!(client.until("ack").await["data"]["ok"], true);
    listeners(&server, 1).await;
    let logout = server
        .client
        .post(server.url("/api/v1/auth/logout-all"))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let closed = client.until("closed").await;
    assert_eq!(closed["data"]["reason"], "signed_out", "{closed}");
    client.finished().await;
    listeners(&server, 0).await;
}

#[tokio::test]
async fn a_websocket_that_stays_silent_is_closed_as_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.realtime_keepalive = "100ms".into();
    settings.realtime_idle_timeout = "300ms".into();
    let server = TestServer::start_with(settings).await;
    let alice = server.account("alice", "user").await;
    let alice_token = token(&server, &alice).await;
    let mut ws = ws_connect(&server, &alice_token).await;
    // Not reading means not answering the server's pings either.
    let closed = eventually(WAIT, || async {
        server.status().await["realtime"]["websocket_connections"] == 0
    })
    .await;
    assert!(closed, "the silent connection was closed");
    let close = match ws_next(&mut ws).await {
        Ok(frame) => panic!("no frames expected: {frame}"),
        Err(close) => close.unwrap(),
    };
    assert_eq!(close.0, CloseCode::from(4408));

    // A client that answers pings (tungstenite does while reading) stays connected.
    let mut ws = ws_connect(&server, &alice_token).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        if let Ok(frame) = tokio::time::timeout_at(deadline, ws.next()).await {
            assert!(matches!(frame, Some(Ok(Message::Ping(_)))), "{frame:?}");
        }
    }
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_json(&mut ws).await["type"], "pong");
}
