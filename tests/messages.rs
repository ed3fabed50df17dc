//! Reading messages as their holder: wait for the next one, the latest, mark read,
//! delete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::json;

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

#[tokio::test]
async fn waiting_returns_the_next_matching_message_as_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let alice = server.account("alice", "user").await;
    let number_id = leased(&server, &alice, TWILIO_NUMBER).await;

    // Wait for a one-time code from "Acme"; another sender's message and an Acme
    // message without a code come first.
    let path =
        format!("/api/v1/numbers/{number_id}/messages/next?after=0&timeout=30&from=acme&otp=true");
    let waiter = {
        let client = server.client.clone();
        let url = server.url(&path);
        let (user, password) = (alice.username.clone(), alice.password.clone());
        tokio::spawn(async move {
            client
                .get(url)
                .basic_auth(user, Some(password))
                .send()
                .await
                .unwrap()
        })
    };
    // Send only once the waiter is parked on the hub, so this proves it is woken.
    let parked = eventually(Duration::from_secs(10), || async {
        server.status().await["realtime"]["listeners"] == 1
    })
    .await;
    assert!(parked, "the waiter subscribed");
    assert_eq!(
        server
            .post_twilio("SMw1", "Other", TWILIO_NUMBER, "not this one")
            .await
            .status(),
        200
    );
    assert_eq!(
        server
            .post_twilio(
                "SMw2a",
                "Acme",
                TWILIO_NUMBER,
                "Acme: your parcel ships today"
            )
            .await
            .status(),
        200
    );
    assert_eq!(
        server
            .post_twilio("SMw2", "Acme", TWILIO_NUMBER, "Acme code 445566")
            .await
            .status(),
        200
    );
    let response = waiter.await.unwrap();
    assert_eq!(response.status(), 200);
    let message: serde_json::Value = response.json().await.unwrap();
    assert_eq!(message["text"], "Acme code 445566");
    assert_eq!(message["from"], "Acme");
    assert_eq!(message["otp"], "445566");
    assert_eq!(message["service"], "Acme");

    // With nothing new, the wait ends after its timeout with 204.
    let latest = message["id"].as_u64().unwrap();
    let started = Instant::now();
    let (status, _) = server
        .call(
            Some(&alice),
            Method::GET,
            &format!("/api/v1/numbers/{number_id}/messages/next?after={latest}&timeout=1"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Nobody else can wait on Alice's number.
    let bob = server.account("bob", "user").await;
    assert_eq!(
        server.call(Some(&bob), Method::GET, &path, None).await.0,
        404
    );
    let (status, problem) = server
        .call(
            Some(&alice),
            Method::GET,
            &format!("/api/v1/numbers/{number_id}/messages/next?timeout=999"),
            None,
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("timeout")));
    server.stop().await;
}

/// A wait longer than `request_timeout` ends as a wait does (204), not as a request that
/// took too long (503).
#[tokio::test]
async fn a_wait_may_last_longer_than_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.request_timeout = "1s".into();
    let server = TestServer::start_with(settings).await;
    let alice = server.account("alice", "user").await;
    let number_id = leased(&server, &alice, TWILIO_NUMBER).await;
    let started = Instant::now();
    let (status, body) = server
        .call(
            Some(&alice),
            Method::GET,
            &format!("/api/v1/numbers/{number_id}/messages/next?timeout=2"),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(1900));
    server.stop().await;
}

#[tokio::test]
async fn the_latest_message_can_be_read_marked_and_deleted_by_its_holder_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let alice = server.account("alice", "user").await;
    let bob = server.account("bob", "user").await;
    let number_id = leased(&server, &alice, TWILIO_NUMBER).await;
    let latest_path = format!("/api/v1/numbers/{number_id}/messages/latest");
    assert_eq!(
        server
            .call(Some(&alice), Method::GET, &latest_path, None)
            .await
            .0,
        404
    );
    for (sid, text) in [("SMl1", "first"), ("SMl2", "second")] {
        assert_eq!(
            server
                .post_twilio(sid, "+15005550006", TWILIO_NUMBER, text)
                .await
                .status(),
            200
        );
    }
    let (status, latest) = server
        .call(Some(&alice), Method::GET, &latest_path, None)
        .await;
    assert_eq!(
        (status, latest["text"].as_str(), latest["read"].as_bool()),
        (200, Some("second"), Some(false))
    );
    let message_id = latest["id"].as_u64().unwrap();

    let read_path = format!("/api/v1/messages/{number_id}/{message_id}/read");
    let one_path = format!("/api/v1/messages/{number_id}/{message_id}");
    assert_eq!(
        server
            .call(Some(&bob), Method::POST, &read_path, None)
            .await
            .0,
        404
    );
    assert_eq!(
        server
            .call(Some(&bob), Method::DELETE, &one_path, None)
            .await
            .0,
        404
    );
    assert_eq!(
        server
            .call(Some(&alice), Method::POST, &read_path, None)
            .await
            .0,
        204
    );
    let (_, latest) = server
        .call(Some(&alice), Method::GET, &latest_path, None)
        .await;
    assert_eq!(latest["read"], true);
    assert_eq!(
        server
            .call(Some(&alice), Method::DELETE, &one_path, None)
            .await
            .0,
        204
    );
    let (_, latest) = server
        .call(Some(&alice), Method::GET, &latest_path, None)
        .await;
    assert_eq!(latest["text"], "first");
    assert_eq!(
        server
            .call(Some(&alice), Method::DELETE, &one_path, None)
            .await
            .0,
        404
    );
    // The message id must belong to the number in the path.
    let other_number = server.number_id(GENERIC_NUMBER).await;
    let first_id = latest["id"].as_u64().unwrap();
    let mismatched = format!("/api/v1/messages/{other_number}/{first_id}");
    assert_eq!(
        server
            .call(Some(&Account::admin()), Method::DELETE, &mismatched, None)
            .await
            .0,
        404
    );
    server.stop().await;
}

#[tokio::test]
async fn listings_filter_by_sender_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let admin = Account::admin();
    for (sid, from) in [
        ("SMf1", "Acme"),
        ("SMf2", "Other"),
        ("SMf3", "ACME"),
        ("SMf4", "Other"),
    ] {
        assert_eq!(
            server
                .post_twilio(sid, from, TWILIO_NUMBER, "hello")
                .await
                .status(),
            200
        );
    }
    let (status, page) = server
        .call(
            Some(&admin),
            Method::GET,
            "/api/v1/messages?from=acme&limit=1",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let first: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["provider_message_id"].clone())
        .collect();
    assert_eq!(first, [twilio_sid("SMf3")]);
    let next = page["next_before"].as_u64().unwrap();
    let (_, page) = server
        .call(
            Some(&admin),
            Method::GET,
            &format!("/api/v1/messages?from=acme&limit=1&before={next}"),
            None,
        )
        .await;
    assert_eq!(
        page["messages"][0]["provider_message_id"],
        twilio_sid("SMf1")
    );

    let future = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let path = format!(
        "/api/v1/messages?since={}",
        form_urlencoded::byte_serialize(future.as_bytes()).collect::<String>()
    );
    let (status, page) = server.call(Some(&admin), Method::GET, &path, None).await;
    assert_eq!(
        (status, page["messages"].as_array().unwrap().len()),
        (200, 0)
    );
    let (_, page) = server
        .call(
            Some(&admin),
            Method::GET,
            "/api/v1/messages?since=2000-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 4);
    let (status, problem) = server
        .call(
            Some(&admin),
            Method::GET,
            "/api/v1/messages?since=yesterday",
            None,
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("since")));
    server.stop().await;
}
