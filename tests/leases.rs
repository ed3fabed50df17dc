//! Number leases over real HTTP: isolation between holders, quarantine, public numbers,
//! guests, and every endpoint × role.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

async fn server_with(quarantine: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.quarantine = quarantine.into();
    settings.sandbox = false;
    (TestServer::start_with(settings).await, dir)
}

fn texts(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_new_holder_never_sees_the_previous_holders_messages() {
    let (server, _dir) = server_with("0s").await;
    let alice = server.account("alice", "user").await;
    let bob = server.account("bob", "user").await;
    let number_id = server.number_id(TWILIO_NUMBER).await;

    let (status, lease) = server
        .call(
            Some(&alice),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": number_id})),
        )
        .await;
    assert_eq!(status, 201, "{lease}");
    assert_eq!(lease["number"], TWILIO_NUMBER);
    let lease_id = lease["id"].as_u64().unwrap();
    assert_eq!(
        server
            .post_twilio("SMa1", "+15005550006", TWILIO_NUMBER, "alice's code 111111")
            .await
            .status(),
        200
    );

    let inbox = format!("/api/v1/messages/{number_id}");
    let (status, page) = server.call(Some(&alice), Method::GET, &inbox, None).await;
    assert_eq!(status, 200);
    assert_eq!(texts(&page), ["alice's code 111111"]);
    let (_, page) = server
        .call(Some(&alice), Method::GET, "/api/v1/messages", None)
        .await;
    assert_eq!(texts(&page), ["alice's code 111111"]);
    // Bob sees nothing of it, by any path.
    assert_eq!(
        server.call(Some(&bob), Method::GET, &inbox, None).await.0,
        404
    );
    let (_, page) = server
        .call(Some(&bob), Method::GET, "/api/v1/messages", None)
        .await;
    assert!(texts(&page).is_empty());
    assert_eq!(
        server
            .call(
                Some(&bob),
                Method::GET,
                &format!("/api/v1/numbers/{number_id}"),
                None
            )
            .await
            .0,
        404
    );

    // Alice gives it back; with no quarantine Bob can take it at once, and starts empty.
    let (status, ended) = server
        .call(
            Some(&alice),
            Method::DELETE,
            &format!("/api/v1/leases/{lease_id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, ended["end_reason"].as_str()),
        (200, Some("released"))
    );
    let (status, _) = server
        .call(
            Some(&bob),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": number_id})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, page) = server.call(Some(&bob), Method::GET, &inbox, None).await;
    assert!(
        texts(&page).is_empty(),
        "a new lease never shows the previous holder's messages"
    );
    assert_eq!(
        server
            .post_twilio("SMb1", "+15005550006", TWILIO_NUMBER, "bob's code 222222")
            .await
            .status(),
        200
    );
    let (_, page) = server.call(Some(&bob), Method::GET, &inbox, None).await;
    assert_eq!(texts(&page), ["bob's code 222222"]);
    // And Alice no longer reaches the number.
    assert_eq!(
        server.call(Some(&alice), Method::GET, &inbox, None).await.0,
        404
    );
    let (_, page) = server
        .call(Some(&alice), Method::GET, "/api/v1/messages", None)
        .await;
    assert!(texts(&page).is_empty());
    // Admins see everything.
    let (_, page) = server
        .call(
            Some(&Account::admin()),
            Method::GET,
            "/api/v1/messages",
            None,
        )
        .await;
    assert_eq!(texts(&page).len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_released_number_rests_in_quarantine() {
    let (server, _dir) = server_with("24h").await;
    let alice = server.account("alice", "user").await;
    let number_id = server.number_id(TWILIO_NUMBER).await;
    let (_, lease) = server
        .call(
            Some(&alice),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": number_id})),
        )
        .await;
    let lease_id = lease["id"].as_u64().unwrap();
    server
        .call(
            Some(&alice),
            Method::DELETE,
            &format!("/api/v1/leases/{lease_id}"),
            None,
        )
        .await;

    let (status, problem) = server
        .call(
            Some(&alice),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": number_id})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("number_unavailable"))
    );
    // A message arriving now goes to the number's admin-only inbox.
    assert_eq!(
        server
            .post_twilio("SMlate", "+15005550006", TWILIO_NUMBER, "late code")
            .await
            .status(),
        200
    );
    let (_, page) = server
        .call(Some(&alice), Method::GET, "/api/v1/messages", None)
        .await;
    assert!(texts(&page).is_empty());
    let (_, number) = server
        .call(
            Some(&Account::admin()),
            Method::GET,
            &format!("/api/v1/numbers/{number_id}"),
            None,
        )
        .await;
    assert!(number["admin"]["quarantined_until"].is_string(), "{number}");
    server.stop().await;
}

/// An admin's change to pool number `id`.
async fn change_number(server: &TestServer, id: u64, change: Value) -> (u16, Value) {
    let path = format!("/api/v1/numbers/{id}");
    server
        .call(Some(&Account::admin()), Method::PUT, &path, Some(change))
        .await
}

/// Number `id`'s current inbox, as `who` reads it.
async fn inbox_of(server: &TestServer, who: &Account, id: u64) -> (u16, Value) {
    let path = format!("/api/v1/messages/{id}");
    server.call(Some(who), Method::GET, &path, None).await
}

#[tokio::test]
async fn public_numbers_are_readable_by_anyone_and_never_leased() {
    let (server, _dir) = server_with("0s").await;
    let guest = server.account("guest1", "guest").await;
    let number_id = server.number_id(GENERIC_NUMBER).await;
    let admin = Account::admin();
    let (status, number) = change_number(&server, number_id, json!({"public": true})).await;
    assert_eq!((status, &number["public"]), (200, &json!(true)));
    assert_eq!(
        server
            .post_generic(
                "pub1",
                "Acme",
                GENERIC_NUMBER,
                "public code 333333",
                now_unix()
            )
            .await
            .status(),
        200
    );

    let (status, page) = inbox_of(&server, &guest, number_id).await;
    assert_eq!(status, 200);
    assert_eq!(texts(&page), ["public code 333333"]);
    let (_, numbers) = server
        .call(Some(&guest), Method::GET, "/api/v1/numbers", None)
        .await;
    let listed: Vec<_> = numbers["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        listed,
        [number_id],
        "a guest sees the public number and nothing else"
    );
    assert!(numbers["numbers"][0].get("admin").is_none());
    let (status, problem) = server
        .call(
            Some(&guest),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": number_id})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("number_unavailable"))
    );

    // Disabled, the public number has no public lease: what arrives now lands in its
    // own idle inbox, which is the admins' alone.
    let (status, _) = change_number(&server, number_id, json!({"disabled": true})).await;
    assert_eq!(status, 200);
    let late = server
        .post_generic(
            "pub2",
            "Acme",
            GENERIC_NUMBER,
            "idle code 444444",
            now_unix(),
        )
        .await;
    assert_eq!(late.status(), 200);
    let (status, _) = inbox_of(&server, &guest, number_id).await;
    assert_eq!(status, 404, "the idle inbox is not public");
    let (status, page) = inbox_of(&server, &admin, number_id).await;
    assert_eq!(status, 200);
    assert_eq!(texts(&page), ["idle code 444444"]);
    server.stop().await;
}

#[tokio::test]
async fn guests_hold_one_short_lease_and_inputs_are_validated() {
    let (server, _dir) = server_with("0s").await;
    let guest = server.account("guest1", "guest").await;
    let (status, lease) = server
        .call(
            Some(&guest),
            Method::POST,
            "/api/v1/leases",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "{lease}");
    let started = time::OffsetDateTime::parse(
        lease["started_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        lease["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(
        (expires - started).whole_seconds(),
        3600,
        "a guest lease lasts lease_guest"
    );
    let (status, problem) = server
        .call(
            Some(&guest),
            Method::POST,
            "/api/v1/leases",
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("lease_limit_reached"))
    );
    let (status, problem) = server
        .call(
            Some(&guest),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"duration_secs": 86400})),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (400, Some("duration_secs"))
    );

    let user = server.account("carol", "user").await;
    let (status, problem) = server
        .call(
            Some(&user),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"prefix": "44"})),
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("prefix")));
    let (status, problem) = server
        .call(
            Some(&user),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"colour": "red"})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("validation_failed"))
    );
    let (status, lease) = server
        .call(
            Some(&user),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"prefix": "+44"})),
        )
        .await;
    assert_eq!(
        (status, lease["number"].as_str()),
        (201, Some(GENERIC_NUMBER))
    );
    let (status, problem) = server
        .call(Some(&user), Method::POST, "/api/v1/leases", Some(json!({})))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("no_number_available"))
    );

    let admin = Account::admin();
    let (status, problem) = server
        .call(
            Some(&admin),
            Method::POST,
            "/api/v1/numbers",
            Some(json!({"number": "not a number", "provider": "twilio"})),
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("number")));
    let (status, problem) = server
        .call(
            Some(&admin),
            Method::POST,
            "/api/v1/numbers",
            Some(json!({"number": TWILIO_NUMBER, "provider": "twilio"})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("number_exists"))
    );
    let (status, problem) = server
        .call(
            Some(&admin),
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"username": "carol", "password": "long enough", "role": "user"})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("username_taken"))
    );
    let response = server
        .client
        .post(server.url("/api/v1/leases"))
        .basic_auth("carol", Some("carol-password"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    server.stop().await;
}

/// Every endpoint × role: anonymous, guest, user (not the holder), the holder, admin.
#[tokio::test]
async fn every_endpoint_answers_each_role_as_the_permission_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.quarantine = "0s".into();
    settings.sandbox = false;
    // The webhooks registered below point at a closed port on 127.0.0.1.
    settings.webhooks_allow_private = true;
    let server = TestServer::start_with(settings).await;
    let admin = Account::admin();
    let holder = server.account("holder", "user").await;
    let user = server.account("other", "user").await;
    let guest = server.account("guest1", "guest").await;
    let twilio_id = server.number_id(TWILIO_NUMBER).await;
    let generic_id = server.number_id(GENERIC_NUMBER).await;
    let (_, lease) = server
        .call(
            Some(&holder),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": twilio_id})),
        )
        .await;
    let lease_id = lease["id"].as_u64().unwrap();
    let (status, hook) = server
        .call(
            Some(&holder),
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/holder"})),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_u64().unwrap();

    // (method, path, body, [anonymous, guest, other user, holder, admin])
    let table: Vec<(Method, String, Option<Value>, [u16; 5])> = vec![
        (
            Method::GET,
            "/api/v1/messages".into(),
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            Method::GET,
            "/api/v1/messages/unrouted".into(),
            None,
            [401, 403, 403, 403, 200],
        ),
        (
            Method::GET,
            format!("/api/v1/messages/{twilio_id}"),
            None,
            [401, 404, 404, 200, 200],
        ),
        (
            Method::GET,
            format!("/api/v1/messages/{generic_id}"),
            None,
            [401, 404, 404, 404, 200],
        ),
        (
            Method::GET,
            "/api/v1/numbers".into(),
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            Method::GET,
            format!("/api/v1/numbers/{twilio_id}"),
            None,
            [401, 404, 404, 200, 200],
        ),
        (
            Method::PUT,
            format!("/api/v1/numbers/{generic_id}"),
            Some(json!({"disabled": false})),
            [401, 403, 403, 403, 200],
        ),
        (
            Method::GET,
            "/api/v1/leases".into(),
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            Method::POST,
            format!("/api/v1/leases/{lease_id}/extend"),
            Some(json!({})),
            [401, 404, 404, 200, 200],
        ),
        (
            Method::GET,
            "/api/v1/admin/system-status".into(),
            None,
            [401, 403, 403, 403, 200],
        ),
        (
            Method::GET,
            "/metrics".into(),
            None,
            [401, 403, 403, 403, 200],
        ),
        (
            Method::POST,
            "/api/v1/admin/users".into(),
            Some(json!({"username": "x-#N#", "password": "password-1", "role": "user"})),
            [401, 403, 403, 403, 201],
        ),
        (
            Method::POST,
            "/api/v1/numbers".into(),
            Some(json!({"number": "+3#N#0123456789", "provider": "twilio"})),
            [401, 403, 403, 403, 201],
        ),
        // Sending: guests never, users only with `users_may_send` (off here); the admin
        // passes every check but this number's provider has no API credentials.
        (
            Method::POST,
            "/api/v1/messages".into(),
            Some(json!({"number_id": twilio_id, "to": "+447700900001", "text": "hi"})),
            [401, 403, 403, 403, 409],
        ),
        (
            Method::GET,
            "/api/v1/outbound/999999".into(),
            None,
            [401, 404, 404, 404, 404],
        ),
        // Providers: admins only. The admin (#4) creates p4, then changes and removes it.
        (
            Method::GET,
            "/api/v1/admin/providers".into(),
            None,
            [401, 403, 403, 403, 200],
        ),
        (
            Method::GET,
            "/api/v1/admin/providers/twilio".into(),
            None,
            [401, 403, 403, 403, 200],
        ),
        (
            Method::POST,
            "/api/v1/admin/providers".into(),
            Some(json!({"name": "p#N#", "kind": "twilio", "secret": "s"})),
            [401, 403, 403, 403, 201],
        ),
        (
            Method::PUT,
            "/api/v1/admin/providers/p4".into(),
            Some(json!({"kind": "twilio", "secret": "t"})),
            [401, 403, 403, 403, 200],
        ),
        (
            Method::PUT,
            "/api/v1/admin/providers/twilio".into(),
            Some(json!({"kind": "twilio", "secret": "t"})),
            [401, 403, 403, 403, 409],
        ),
        (
            Method::DELETE,
            "/api/v1/admin/providers/p4".into(),
            None,
            [401, 403, 403, 403, 204],
        ),
        // Webhooks: users and admins register their own; nobody else sees one, admins
        // included (its URL often carries a token).
        (
            Method::GET,
            "/api/v1/webhooks".into(),
            None,
            [401, 403, 200, 200, 200],
        ),
        (
            Method::POST,
            "/api/v1/webhooks".into(),
            Some(json!({"url": "http://127.0.0.1:9/#N#"})),
            [401, 403, 201, 201, 201],
        ),
        (
            Method::GET,
            format!("/api/v1/webhooks/{hook_id}/deliveries"),
            None,
            [401, 404, 404, 200, 404],
        ),
        (
            Method::POST,
            format!("/api/v1/webhooks/{hook_id}/test"),
            None,
            [401, 404, 404, 200, 404],
        ),
        (
            Method::DELETE,
            "/api/v1/webhooks/999999".into(),
            None,
            [401, 404, 404, 404, 404],
        ),
        // Guests have no password; everyone else gets as far as the (wrong) current one.
        (
            Method::POST,
            "/api/v1/auth/password".into(),
            Some(json!({"current_password": "not-it", "new_password": "password-2"})),
            [401, 403, 401, 401, 401],
        ),
        // Without SMTP a new address could never be confirmed.
        (
            Method::PUT,
            "/api/v1/auth/email".into(),
            Some(json!({"email": "new@example.org", "current_password": "not-it"})),
            [401, 403, 403, 403, 403],
        ),
    ];
    let callers = [None, Some(&guest), Some(&user), Some(&holder), Some(&admin)];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &table {
        for (index, who) in callers.iter().enumerate() {
            // Creating endpoints need a fresh value per call.
            let body = body.as_ref().map(|b| {
                serde_json::from_str::<Value>(&b.to_string().replace("#N#", &index.to_string()))
                    .unwrap()
            });
            let (status, answer) = server.call(*who, method.clone(), path, body).await;
            if status != expected[index] {
                failures.push(format!(
                    "{method} {path} as #{index}: {status} (wanted {}) {answer}",
                    expected[index]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Destructive endpoints last: another user cannot release the lease; its holder can;
    // only admins delete numbers; only its owner deletes a webhook.
    let hook_path = format!("/api/v1/webhooks/{hook_id}");
    for (who, expected) in [(&user, 404), (&admin, 404), (&holder, 204)] {
        let (status, answer) = server
            .call(Some(who), Method::DELETE, &hook_path, None)
            .await;
        assert_eq!(status, expected, "{} {answer}", who.username);
    }
    assert_eq!(
        server
            .call(
                Some(&user),
                Method::DELETE,
                &format!("/api/v1/leases/{lease_id}"),
                None
            )
            .await
            .0,
        404
    );
    assert_eq!(
        server
            .call(
                Some(&holder),
                Method::DELETE,
                &format!("/api/v1/leases/{lease_id}"),
                None
            )
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call(
                Some(&user),
                Method::DELETE,
                &format!("/api/v1/numbers/{generic_id}"),
                None
            )
            .await
            .0,
        403
    );
    assert_eq!(
        server
            .call(
                Some(&admin),
                Method::DELETE,
                &format!("/api/v1/numbers/{generic_id}"),
                None
            )
            .await
            .0,
        204
    );
    assert_eq!(
        server
            .call(
                Some(&admin),
                Method::GET,
                &format!("/api/v1/numbers/{generic_id}"),
                None
            )
            .await
            .0,
        404
    );
    server.stop().await;
}
