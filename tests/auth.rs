//! Accounts over real HTTP: login, refresh-token rotation and reuse detection, logout,
//! logout everywhere, guest sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine;
use common::*;
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};

async fn login(server: &TestServer, username: &str, password: &str) -> (u16, Value) {
    server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": username, "password": password})),
        )
        .await
}

async fn with_token(
    server: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server
        .client
        .request(method, server.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn refresh(server: &TestServer, token: &Value) -> (u16, Value) {
    server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/refresh",
            Some(json!({"refresh_token": token})),
        )
        .await
}

#[tokio::test]
async fn login_issues_tokens_that_rotate_and_detect_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.account("alice", "user").await;

    assert_eq!(login(&server, "alice", "wrong-password").await.0, 401);
    let (status, first) = login(&server, "alice", "alice-password").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        (first["token_type"].as_str(), first["user"]["role"].as_str()),
        (Some("Bearer"), Some("user"))
    );
    assert_eq!(first["expires_in"], 900);
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(
        with_token(&server, access, Method::GET, "/api/v1/leases", None)
            .await
            .0,
        200
    );
    assert_eq!(
        with_token(&server, "not-a-jwt", Method::GET, "/api/v1/leases", None)
            .await
            .0,
        401
    );
    // The role travels in the token: a user's token does not open admin routes.
    assert_eq!(
        with_token(
            &server,
            access,
            Method::GET,
            "/api/v1/admin/system-status",
            None
        )
        .await
        .0,
        403
    );

    // A made-up token naming the live session and the last generation there is: no
    // generation follows it, so it is refused (not a crash) and the session lives on.
    let parts: Vec<&str> = first["refresh_token"]
        .as_str()
        .unwrap()
        .split('.')
        .collect();
    let last_generation = format!("{}.{}.{}.{}", parts[0], parts[1], u64::MAX, parts[3]);
    let (status, _) = refresh(&server, &json!(last_generation)).await;
    assert_eq!(status, 401);

    let (status, second) = refresh(&server, &first["refresh_token"]).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let access2 = second["access_token"].as_str().unwrap();
    assert_eq!(
        with_token(&server, access2, Method::GET, "/api/v1/leases", None)
            .await
            .0,
        200
    );

    // The spent first refresh token comes back: reuse is detected and the whole
    // session dies, including the newer refresh token and every access token.
    let (status, problem) = refresh(&server, &first["refresh_token"]).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("refresh_token_reused"))
    );
    let (status, problem) = refresh(&server, &second["refresh_token"]).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("refresh_token_ended"))
    );
    assert_eq!(
        with_token(&server, access2, Method::GET, "/api/v1/leases", None)
            .await
            .0,
        401
    );

    let (status, problem) = refresh(&server, &json!("rt1.1.1.garbage")).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("refresh_token_invalid"))
    );
    server.stop().await;
}

/// A browser keeps Basic credentials once its prompt is answered and attaches them to
/// requests any site makes; those carry `Origin`, and Basic is refused on them. Scripts
/// (no `Origin`) and tokens are unaffected.
#[tokio::test]
async fn basic_credentials_are_refused_on_requests_from_web_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let basic = |origin: Option<&str>| {
        let mut request = server
            .client
            .get(server.url("/api/v1/messages"))
            .basic_auth("admin", Some(common::ADMIN_PASSWORD));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    assert_eq!(basic(None).await.unwrap().status(), 200);
    let refused = basic(Some("https://evil.example")).await.unwrap();
    assert_eq!(refused.status(), 400);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "validation_failed");
    assert_eq!(problem["field"], "authorization");

    // The WebSocket handshake a page on another site would open with them.
    let mut handshake =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            server.url("/api/v1/ws").replacen("http", "ws", 1),
        )
        .unwrap();
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("admin:{}", common::ADMIN_PASSWORD));
    let headers = handshake.headers_mut();
    headers.insert(
        "authorization",
        format!("Basic {credentials}").parse().unwrap(),
    );
    headers.insert("origin", "https://evil.example".parse().unwrap());
    // Refused in-band, like every refused handshake: an error frame, then close 4401.
    let (mut ws, _) = tokio_tungstenite::connect_async(handshake).await.unwrap();
    let frame = ws.next().await.unwrap().unwrap();
    let error: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(error["code"], "validation_failed", "{error}");
    match ws.next().await.unwrap().unwrap() {
        tokio_tungstenite::tungstenite::Message::Close(Some(close)) => {
            assert_eq!(u16::from(close.code), 4401);
        }
        other => panic!("expected close 4401, got {other:?}"),
    }

    // A token from a web page works, over HTTP and on a WebSocket, even when the
    // browser attaches the Basic credentials it cached to the handshake.
    let (status, tokens) = login(&server, "admin", common::ADMIN_PASSWORD).await;
    assert_eq!(status, 200);
    let access = tokens["access_token"].as_str().unwrap();
    let mut handshake =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "{}?access_token={access}",
            server.url("/api/v1/ws").replacen("http", "ws", 1)
        ))
        .unwrap();
    let headers = handshake.headers_mut();
    headers.insert(
        "authorization",
        format!("Basic {credentials}").parse().unwrap(),
    );
    headers.insert("origin", "https://app.example".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(handshake).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        json!({"type": "ping"}).to_string(),
    ))
    .await
    .unwrap();
    let frame = ws.next().await.unwrap().unwrap();
    let pong: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(pong["type"], "pong", "{pong}");
    let with_origin = server
        .client
        .get(server.url("/api/v1/messages"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(with_origin.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn logout_ends_one_session_and_logout_all_ends_every_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.account("bob", "user").await;
    let (_, laptop) = login(&server, "bob", "bob-password").await;
    let (_, phone) = login(&server, "bob", "bob-password").await;
    let (_, tablet) = login(&server, "bob", "bob-password").await;
    let token = |session: &Value| session["access_token"].as_str().unwrap().to_owned();

    assert_eq!(
        with_token(
            &server,
            &token(&laptop),
            Method::POST,
            "/api/v1/auth/logout",
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        with_token(
            &server,
            &token(&laptop),
            Method::GET,
            "/api/v1/leases",
            None
        )
        .await
        .0,
        401,
        "at once, not at expiry"
    );
    assert_eq!(refresh(&server, &laptop["refresh_token"]).await.0, 401);
    assert_eq!(
        with_token(&server, &token(&phone), Method::GET, "/api/v1/leases", None)
            .await
            .0,
        200,
        "other sessions live on"
    );

    assert_eq!(
        with_token(
            &server,
            &token(&phone),
            Method::POST,
            "/api/v1/auth/logout-all",
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        with_token(
            &server,
            &token(&tablet),
            Method::GET,
            "/api/v1/leases",
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(refresh(&server, &tablet["refresh_token"]).await.0, 401);
    // A new login works as before.
    assert_eq!(login(&server, "bob", "bob-password").await.0, 200);
    server.stop().await;
}

/// Starts a guest session; its tokens and account.
async fn start_guest(server: &TestServer) -> Value {
    let (status, guest) = server
        .call(None, Method::POST, "/api/v1/auth/guest", None)
        .await;
    assert_eq!(status, 201, "{guest}");
    guest
}

#[tokio::test]
async fn guests_get_a_short_session_one_lease_and_a_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.quarantine = "0s".into();
    let server = TestServer::start_with(settings).await;

    let guest = start_guest(&server).await;
    assert_eq!(guest["user"]["role"], "guest");
    assert_eq!(guest["refresh_expires_in"], 3600);
    // It cannot refresh, so its access token lasts the session, not 15 minutes.
    assert_eq!(guest["expires_in"], 3600);
    let access = guest["access_token"].as_str().unwrap();
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let (status, lease) = with_token(
        &server,
        access,
        Method::POST,
        "/api/v1/leases",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "{lease}");
    let (status, problem) = with_token(
        &server,
        access,
        Method::POST,
        "/api/v1/leases",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("lease_limit_reached"))
    );
    // A guest session cannot be stretched by refreshing.
    assert_eq!(refresh(&server, &guest["refresh_token"]).await.0, 401);

    // Five guest sessions per address in a burst (one used above), then 429.
    for _ in 0..4 {
        assert_eq!(
            server
                .call(None, Method::POST, "/api/v1/auth/guest", None)
                .await
                .0,
            201
        );
    }
    let response = server
        .client
        .post(server.url("/api/v1/auth/guest"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    server.stop().await;
}

#[tokio::test]
async fn a_guest_account_goes_with_what_it_received_when_its_session_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.guest_session = "2s".into();
    settings.sweep_interval = "100ms".into();
    settings.quarantine = "0s".into();
    let server = TestServer::start_with(settings).await;
    let guest = start_guest(&server).await;
    let access = guest["access_token"].as_str().unwrap();
    let name = guest["user"]["username"].as_str().unwrap().to_owned();
    let number_id = server.number_id(TWILIO_NUMBER).await;
    let (status, lease) = with_token(
        &server,
        access,
        Method::POST,
        "/api/v1/leases",
        Some(json!({"number_id": number_id})),
    )
    .await;
    assert_eq!(status, 201, "{lease}");
    let response = server
        .post_twilio("SMguest", "+15005550006", TWILIO_NUMBER, "code 424242")
        .await;
    assert_eq!(response.status(), 200);
    let (status, inbox) = with_token(&server, access, Method::GET, "/api/v1/messages", None).await;
    assert_eq!(
        (status, inbox["messages"][0]["text"].as_str()),
        (200, Some("code 424242"))
    );

    // Admins see when it goes; then it goes, with its lease's messages.
    let guest_listed = || async {
        let (status, users) = server.admin_get("/api/v1/admin/users").await;
        assert_eq!(status, 200, "{users}");
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|user| user["username"] == name.as_str())
            .cloned()
    };
    let listed = guest_listed()
        .await
        .expect("the guest is an account meanwhile");
    assert!(listed["expires_at"].is_string(), "{listed}");
    let gone = eventually(std::time::Duration::from_secs(15), || async {
        guest_listed().await.is_none()
    })
    .await;
    assert!(gone, "the sweeper deleted the guest account");
    assert!(
        server.all_messages(None).await.is_empty(),
        "its message went too"
    );
    // The number is free for the next holder at once (no quarantine here).
    let admin = Account::admin();
    let (status, lease) = server
        .call(
            Some(&admin),
            Method::POST,
            "/api/v1/leases",
            Some(json!({"number_id": number_id})),
        )
        .await;
    assert_eq!(status, 201, "{lease}");
    server.stop().await;
}

async fn register(server: &TestServer, body: Value) -> (u16, Value) {
    server
        .call(None, Method::POST, "/api/v1/auth/register", Some(body))
        .await
}

#[tokio::test]
async fn registration_follows_the_setting_closed_invite_or_open() {
    // Closed (the default): only admins create accounts.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let (status, problem) = register(
        &server,
        json!({"username": "zoe", "password": "password-1"}),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("registration_closed"))
    );
    server.stop().await;

    // Invite: a code from an admin makes one account of its role.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.registration = "invite".into();
    let server = TestServer::start_with(settings).await;
    let (status, problem) = register(
        &server,
        json!({"username": "zoe", "password": "password-1"}),
    )
    .await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("invite")));
    let (status, invite) = server
        .call(
            Some(&Account::admin()),
            Method::POST,
            "/api/v1/admin/invites",
            Some(json!({"role": "guest"})),
        )
        .await;
    assert_eq!(status, 201, "{invite}");
    let code = invite["code"].as_str().unwrap();
    let (status, registered) = register(
        &server,
        json!({"username": "zoe", "password": "password-1", "invite": code}),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    assert_eq!(
        (
            registered["user"]["role"].as_str(),
            registered["pending_approval"].as_bool()
        ),
        (Some("guest"), Some(false))
    );
    assert_eq!(login(&server, "zoe", "password-1").await.0, 200);
    let (status, problem) = register(
        &server,
        json!({"username": "yves", "password": "password-1", "invite": code}),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("invite_invalid")),
        "single use"
    );
    let (status, _) = register(
        &server,
        json!({"username": "yves", "password": "password-1", "invite": "made-up"}),
    )
    .await;
    assert_eq!(status, 403);
    let zoe = server.account("carl", "user").await;
    assert_eq!(
        server
            .call(
                Some(&zoe),
                Method::POST,
                "/api/v1/admin/invites",
                Some(json!({}))
            )
            .await
            .0,
        403
    );
    server.stop().await;

    // Open: anyone may register; an admin approves by enabling the account.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.registration = "open".into();
    let server = TestServer::start_with(settings).await;
    let (status, registered) = register(
        &server,
        json!({"username": "xena", "password": "password-1"}),
    )
    .await;
    assert_eq!(
        (status, registered["pending_approval"].as_bool()),
        (201, Some(true))
    );
    assert_eq!(
        login(&server, "xena", "password-1").await.0,
        401,
        "waits for approval"
    );
    let id = registered["user"]["id"].as_u64().unwrap();
    let path = format!("/api/v1/admin/users/{id}");
    assert_eq!(
        server
            .call(
                Some(&Account::admin()),
                Method::PUT,
                &path,
                Some(json!({"disabled": false}))
            )
            .await
            .0,
        200
    );
    assert_eq!(login(&server, "xena", "password-1").await.0, 200);
    let (status, problem) = register(
        &server,
        json!({"username": "xena", "password": "password-2"}),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("username_taken"))
    );
    let (status, problem) = register(&server, json!({"username": "wu", "password": "short"})).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("username")));
    server.stop().await;
}
