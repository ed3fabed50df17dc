//! Full-text search over real HTTP: ranked hits with snippets, only within what the
//! caller may read, kept in step with deletes, rebuilt after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

async fn search(server: &TestServer, who: &Account, q: &str) -> Vec<Value> {
    let path = format!("/api/v1/messages?q={}", urlencode(q));
    let (status, page) = server.call(Some(who), Method::GET, &path, None).await;
    assert_eq!(status, 200, "{page}");
    page["messages"].as_array().unwrap().clone()
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Search results trail ingest by up to a second (the index commits in
/// batches): wait until the expected number of hits shows up.
async fn hits(server: &TestServer, who: &Account, q: &str, expected: usize) -> Vec<Value> {
    let found = eventually(Duration::from_secs(10), || async {
        search(server, who, q).await.len() == expected
    })
    .await;
    let last = search(server, who, q).await;
    assert!(found, "{q:?}: wanted {expected} hits, got {last:?}");
    last
}

#[tokio::test]
async fn search_finds_only_the_callers_messages_ranked_with_snippets() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.sandbox = false;
    let server = TestServer::start_with(settings.clone()).await;
    let alice = server.account("alice", "user").await;
    let bob = server.account("bob", "user").await;
    let twilio_id = server.number_id(TWILIO_NUMBER).await;
    let generic_id = server.number_id(GENERIC_NUMBER).await;
    server
        .call(
            Some(&alice),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": twilio_id})),
        )
        .await;
    server
        .call(
            Some(&bob),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": generic_id})),
        )
        .await;

    server
        .post_twilio(
            "SMs1",
            "Acme",
            TWILIO_NUMBER,
            "Your Acme code is 123456. Acme never asks for it.",
        )
        .await;
    server
        .post_twilio(
            "SMs2",
            "Acme",
            TWILIO_NUMBER,
            "Acme: <b>sale</b> ends today",
        )
        .await;
    server
        .post_twilio("SMs3", "+15005550006", TWILIO_NUMBER, "您的验证码是778899")
        .await;
    server
        .post_generic(
            "g1",
            "Acme",
            GENERIC_NUMBER,
            "Acme code 999999 for Bob",
            now_unix(),
        )
        .await;

    let found = hits(&server, &alice, "acme", 2).await;
    assert_eq!(
        found[0]["text"], "Your Acme code is 123456. Acme never asks for it.",
        "two mentions rank first"
    );
    assert!(
        found[0]["snippet"]
            .as_str()
            .unwrap()
            .contains("<mark>Acme</mark>")
    );
    let escaped = found
        .iter()
        .find(|m| m["text"].as_str().unwrap().contains("sale"))
        .unwrap();
    assert!(
        escaped["snippet"].as_str().unwrap().contains("&lt;b&gt;"),
        "snippets are HTML-escaped"
    );
    assert_eq!(
        hits(&server, &bob, "acme", 1).await[0]["text"],
        "Acme code 999999 for Bob"
    );
    assert_eq!(hits(&server, &Account::admin(), "acme", 3).await.len(), 3);
    assert_eq!(
        hits(&server, &alice, "验证码", 1).await[0]["text"],
        "您的验证码是778899"
    );
    // Per number too, and nothing of Alice's through Bob's number.
    let (_, page) = server
        .call(
            Some(&bob),
            Method::GET,
            &format!("/api/v1/messages/{generic_id}?q=acme"),
            None,
        )
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);

    // Deleting a message removes it from search.
    let message_id = found[0]["id"].as_u64().unwrap();
    let path = format!("/api/v1/messages/{twilio_id}/{message_id}");
    assert_eq!(
        server
            .call(Some(&alice), Method::DELETE, &path, None)
            .await
            .0,
        204
    );
    hits(&server, &alice, "acme", 1).await;
    server.stop().await;

    // After a restart the in-memory index is rebuilt from the store.
    let server = TestServer::start_with(settings).await;
    assert_eq!(hits(&server, &alice, "sale", 1).await[0]["from"], "Acme");
    assert_eq!(hits(&server, &bob, "bob", 1).await.len(), 1);
    server.stop().await;
}
