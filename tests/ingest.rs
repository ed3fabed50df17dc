//! The path of one SMS, end to end over real HTTP: signed webhook → durable store → API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use burnbox::config::NumberSettings;
use burnbox::providers::twilio;
use common::*;

#[tokio::test]
async fn a_signed_twilio_webhook_is_stored_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;

    let response = server
        .post_twilio(
            "SM00000000000000000000000000000001",
            "+15005550006",
            TWILIO_NUMBER,
            "Your code is 482913",
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("<Response></Response>")
    );

    let number_id = server.number_id(TWILIO_NUMBER).await;
    let messages = server.all_messages(Some(&number_id.to_string())).await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message["number"], TWILIO_NUMBER);
    assert_eq!(message["number_id"], number_id);
    assert_eq!(message["from"], "+15005550006");
    assert_eq!(message["text"], "Your code is 482913");
    assert_eq!(message["provider"], "twilio");
    assert_eq!(
        message["provider_message_id"],
        "SM00000000000000000000000000000001"
    );
    assert!(message["received_at"].as_str().unwrap().ends_with('Z'));
    server.stop().await;
}

#[tokio::test]
async fn a_forged_or_unsigned_webhook_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let url = server.url("/webhooks/twilio");
    let params = twilio_params("SM1", "+15005550006", TWILIO_NUMBER, "forged");
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let wrong_key = twilio::sign("not-the-token", &url, &pairs);
    let response = server.post_form(&url, &pairs, &wrong_key).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "webhook_signature_invalid");

    // Signed for one body, sent with another.
    let good = twilio::sign(TWILIO_TOKEN, &url, &pairs);
    let mut tampered = pairs.clone();
    tampered[5] = ("Body", "tampered");
    assert_eq!(server.post_form(&url, &tampered, &good).await.status(), 401);

    let unsigned = server
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("MessageSid=SM2&From=%2B1&To=%2B14155550100&Body=x")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_eq!(
        unsigned.json::<serde_json::Value>().await.unwrap()["code"],
        "webhook_unsigned"
    );

    let status = server.status().await;
    assert_eq!(status["store"]["messages"], 0);
    assert!(server.all_messages(None).await.is_empty());

    // The admin sees why: every refusal is in system-status, newest first, naming the
    // provider and the reason; repeats of one failure are folded into one entry.
    assert_eq!(status["errors"]["total"], 3, "{status}");
    let recent = status["errors"]["recent"].as_array().unwrap();
    let codes: Vec<(&str, u64)> = recent
        .iter()
        .map(|e| (e["code"].as_str().unwrap(), e["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [("webhook_unsigned", 1), ("webhook_signature_invalid", 2)]
    );
    assert!(
        recent.iter().all(|e| e["source"] == "webhook"
            && e["detail"].as_str().unwrap().contains("provider twilio"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_duplicate_webhook_is_acknowledged_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    for _ in 0..3 {
        let response = server
            .post_twilio("SMdup", "+15005550006", TWILIO_NUMBER, "once")
            .await;
        assert_eq!(response.status(), 200);
    }
    // The generic provider dedupes on its payload id the same way.
    for _ in 0..2 {
        let response = server
            .post_generic("g-1", "Acme", GENERIC_NUMBER, "once too", now_unix())
            .await;
        assert_eq!(response.status(), 200);
    }
    let messages = server.all_messages(None).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    let status = server.status().await;
    assert_eq!(status["store"]["duplicates_total"], 3);
    server.stop().await;
}

#[tokio::test]
async fn a_message_for_an_unknown_number_lands_in_the_unrouted_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let response = server
        .post_twilio("SMx", "+15005550006", "+14155550999", "who is this")
        .await;
    assert_eq!(response.status(), 200);

    let unrouted = server.all_messages(Some("unrouted")).await;
    assert_eq!(unrouted.len(), 1);
    assert_eq!(unrouted[0]["number"], "+14155550999");
    assert_eq!(unrouted[0]["number_id"], serde_json::Value::Null);
    let number_id = server.number_id(TWILIO_NUMBER).await;
    assert!(
        server
            .all_messages(Some(&number_id.to_string()))
            .await
            .is_empty()
    );
    assert_eq!(server.status().await["store"]["unrouted_total"], 1);
    server.stop().await;
}

#[tokio::test]
async fn standard_webhooks_outside_the_five_minute_window_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let stale = server
        .post_generic("old", "Acme", GENERIC_NUMBER, "late", now_unix() - 301)
        .await;
    assert_eq!(stale.status(), 401);
    assert_eq!(
        stale.json::<serde_json::Value>().await.unwrap()["code"],
        "webhook_stale"
    );
    let future = server
        .post_generic("new", "Acme", GENERIC_NUMBER, "early", now_unix() + 301)
        .await;
    assert_eq!(future.status(), 401);
    let fresh = server
        .post_generic("ok", "Acme", GENERIC_NUMBER, "on time", now_unix() - 200)
        .await;
    assert_eq!(fresh.status(), 200);
    let messages = server.all_messages(None).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["text"], "on time");
    server.stop().await;
}

#[tokio::test]
async fn oversized_malformed_and_misaddressed_webhooks_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;

    let huge = "x".repeat(70 * 1024);
    let response = server
        .client
        .post(server.url("/webhooks/twilio"))
        .header("x-twilio-signature", "irrelevant")
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["code"],
        "payload_too_large"
    );

    // Without a Content-Length the limit still holds while streaming.
    let stream = futures::stream::iter((0..70).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024])));
    let response = server
        .client
        .post(server.url("/webhooks/twilio"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Correctly signed, but no recipient: 400 naming the problem.
    let url = server.url("/webhooks/twilio");
    let sid = twilio_sid("SM9");
    let pairs = [
        ("MessageSid", sid.as_str()),
        ("From", "+15005550006"),
        ("Body", "no To"),
    ];
    let signature = twilio::sign(TWILIO_TOKEN, &url, &pairs);
    let response = server.post_form(&url, &pairs, &signature).await;
    assert_eq!(response.status(), 400);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "webhook_malformed");
    assert!(
        problem["detail"].as_str().unwrap().contains("To"),
        "{problem}"
    );

    let response = server
        .client
        .post(server.url("/webhooks/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["code"],
        "provider_not_found"
    );

    let response = server
        .client
        .delete(server.url("/webhooks/twilio"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    assert_eq!(server.status().await["store"]["messages"], 0);
    server.stop().await;
}

#[tokio::test]
async fn twilio_may_call_with_get_and_signs_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let params = twilio_params("SMget", "+15005550006", TWILIO_NUMBER, "by GET");
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let url = server.url(&format!("/webhooks/twilio?{query}"));
    // For GET, Twilio signs the full URL and appends no parameters.
    let signature = twilio::sign(TWILIO_TOKEN, &url, &[]);
    let response = server
        .client
        .get(&url)
        .header("x-twilio-signature", &signature)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let forged = server
        .client
        .get(url.replace("by+GET", "by+POST"))
        .header("x-twilio-signature", &signature);
    assert_eq!(forged.send().await.unwrap().status(), 401);
    let messages = server.all_messages(None).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["text"], "by GET");
    server.stop().await;
}

#[tokio::test]
async fn switching_the_sandbox_off_removes_its_numbers_and_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.sandbox = true;
    let server = TestServer::start_with(settings.clone()).await;
    let (_, numbers) = server.admin_get("/api/v1/numbers").await;
    assert_eq!(
        numbers["numbers"].as_array().unwrap().len(),
        5,
        "two configured + three sandbox"
    );
    server.stop().await;

    settings.sandbox = false;
    let server = TestServer::start_with(settings).await;
    let (_, numbers) = server.admin_get("/api/v1/numbers").await;
    let providers: Vec<_> = numbers["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["provider"].clone())
        .collect();
    assert_eq!(providers, ["twilio", "generic"]);
    let response = server
        .client
        .post(server.url("/webhooks/sandbox"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn the_signature_covers_the_configured_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.public_url = Some("https://sms.example.com/burnbox".into());
    let server = TestServer::start_with(settings).await;
    let params = twilio_params("SMpub", "+15005550006", TWILIO_NUMBER, "via proxy");
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let local = server.url("/webhooks/twilio");

    let for_local_url = twilio::sign(TWILIO_TOKEN, &local, &pairs);
    assert_eq!(
        server
            .post_form(&local, &pairs, &for_local_url)
            .await
            .status(),
        401
    );
    // Twilio's :443 form of the public URL is accepted too.
    let for_public_url = twilio::sign(
        TWILIO_TOKEN,
        "https://sms.example.com:443/burnbox/webhooks/twilio",
        &pairs,
    );
    assert_eq!(
        server
            .post_form(&local, &pairs, &for_public_url)
            .await
            .status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn forwarded_headers_are_believed_only_from_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let params = twilio_params("SMfwd", "+15005550006", TWILIO_NUMBER, "forwarded");
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let signature = twilio::sign(
        TWILIO_TOKEN,
        "https://public.example.org/webhooks/twilio",
        &pairs,
    );
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let send_to = |server: &TestServer, url: String| {
        server
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", &signature)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "public.example.org")
            .body(body.clone())
            .send()
    };
    let send = |server: &TestServer| send_to(server, server.url("/webhooks/twilio"));

    let server = TestServer::start(dir.path()).await;
    assert_eq!(
        send(&server).await.unwrap().status(),
        401,
        "loopback is not a trusted proxy by default"
    );
    server.stop().await;

    let mut settings = base_settings(dir.path());
    settings.trusted_proxies = vec!["127.0.0.1/32".into()];
    let server = TestServer::start_with(settings.clone()).await;
    assert_eq!(send(&server).await.unwrap().status(), 200);
    server.stop().await;

    // A dual-stack listener sees the IPv4 proxy as ::ffff:127.0.0.1: still trusted.
    settings.listen = "[::]:0".into();
    let server = TestServer::start_with(settings).await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let over_ipv4 = format!("http://127.0.0.1:{port}/webhooks/twilio");
    assert_eq!(send_to(&server, over_ipv4).await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn the_api_requires_the_admin_password() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let anonymous = server.get("/api/v1/messages").await;
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let wrong = server
        .client
        .get(server.url("/api/v1/messages"))
        .basic_auth("admin", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<serde_json::Value>().await.unwrap()["code"],
        "bad_credentials"
    );
    let (status, _) = server.admin_get("/api/v1/messages").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn messages_page_newest_first_and_bad_parameters_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    for i in 0..5 {
        let response = server
            .post_twilio(
                &format!("SMp{i}"),
                "+15005550006",
                TWILIO_NUMBER,
                &format!("m{i}"),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    let (_, first) = server.admin_get("/api/v1/messages?limit=2").await;
    let texts: Vec<_> = first["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, ["m4", "m3"]);
    let before = first["next_before"].as_u64().unwrap();
    let (_, second) = server
        .admin_get(&format!("/api/v1/messages?limit=2&before={before}"))
        .await;
    let texts: Vec<_> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, ["m2", "m1"]);
    assert_eq!(server.all_messages(None).await.len(), 5);

    let (status, problem) = server.admin_get("/api/v1/messages?limit=0").await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("limit")));
    let (status, problem) = server.admin_get("/api/v1/messages/abc").await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (400, Some("number_id"))
    );
    let (status, problem) = server.admin_get("/api/v1/messages/999").await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
    server.stop().await;
}

#[tokio::test]
async fn messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    assert_eq!(
        server
            .post_twilio("SMkeep", "+15005550006", TWILIO_NUMBER, "kept")
            .await
            .status(),
        200
    );
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let messages = server.all_messages(None).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["text"], "kept");
    // The same provider message after the restart is still a duplicate.
    assert_eq!(
        server
            .post_twilio("SMkeep", "+15005550006", TWILIO_NUMBER, "kept")
            .await
            .status(),
        200
    );
    assert_eq!(server.all_messages(None).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn retention_deletes_expired_messages_per_number() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.sweep_interval = "100ms".into();
    // The Twilio number keeps messages for one second; everything else for a day.
    settings.providers[0].numbers = vec![NumberSettings::Detailed {
        number: TWILIO_NUMBER.into(),
        retention: Some("1s".into()),
    }];
    let server = TestServer::start_with(settings).await;
    for i in 0..3 {
        let response = server
            .post_twilio(
                &format!("SMr{i}"),
                "+15005550006",
                TWILIO_NUMBER,
                "short-lived",
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        server
            .post_generic("g", "Acme", GENERIC_NUMBER, "long-lived", now_unix())
            .await
            .status(),
        200
    );
    assert_eq!(server.all_messages(None).await.len(), 4);

    let swept = eventually(Duration::from_secs(10), || async {
        server.status().await["store"]["expired_total"] == 3
    })
    .await;
    assert!(swept, "the sweeper deleted the three expired messages");
    let left = server.all_messages(None).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["text"], "long-lived");
    let status = server.status().await;
    assert_eq!(status["store"]["messages"], 1);
    // Twilio retrying a webhook it thinks failed, after the message expired: answered
    // as a duplicate, not stored again.
    let retry = server
        .post_twilio("SMr0", "+15005550006", TWILIO_NUMBER, "short-lived")
        .await;
    assert_eq!(retry.status(), 200);
    let status = server.status().await;
    assert_eq!(status["store"]["messages"], 1);
    assert_eq!(status["store"]["duplicates_total"], 1);
    server.stop().await;

    // Read back from disk after a restart: the expired messages are gone from the store.
    let server = TestServer::start(dir.path()).await;
    let left = server.all_messages(None).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["text"], "long-lived");
    server.stop().await;
}

#[tokio::test]
async fn health_endpoints_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.headers()["x-content-type-options"], "nosniff");
    assert_eq!(ready.headers()["cache-control"], "no-store");
    assert!(ready.headers().contains_key("x-request-id"));
    let missing = server.get("/nope").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    server.stop().await;
}

#[tokio::test]
async fn system_status_reports_how_far_the_sweeper_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    // Messages expire after a second, but the sweeper only looks once an hour.
    settings.retention = "1s".into();
    settings.sweep_interval = "1h".into();
    let server = TestServer::start_with(settings).await;
    assert_eq!(server.status().await["store"]["sweeper_lag_secs"], 0);
    let response = server
        .post_twilio("SMlag", "+15005550006", TWILIO_NUMBER, "x")
        .await;
    assert_eq!(response.status(), 200);
    let behind = eventually(Duration::from_secs(10), || async {
        server.status().await["store"]["sweeper_lag_secs"].as_u64() >= Some(1)
    })
    .await;
    assert!(behind, "an overdue message shows as sweeper lag");
    server.stop().await;
}

/// A number reachable through two providers (ported, or a dual setup): the same SMS
/// through both is stored once; the same text sent twice is still two messages.
#[tokio::test]
async fn one_sms_through_two_providers_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    let generic = settings
        .providers
        .iter_mut()
        .find(|p| p.name == "generic")
        .unwrap();
    generic
        .numbers
        .push(burnbox::config::NumberSettings::Plain(TWILIO_NUMBER.into()));
    let server = TestServer::start_with(settings).await;
    let from = "+15005550006";
    let text = "Your code is 246810";

    assert_eq!(
        server
            .post_twilio("SMa", from, TWILIO_NUMBER, text)
            .await
            .status(),
        200
    );
    assert_eq!(
        server
            .post_generic("g-1", from, TWILIO_NUMBER, text, now_unix())
            .await
            .status(),
        200
    );
    assert_eq!(
        server.all_messages(None).await.len(),
        1,
        "the copy is not stored"
    );
    // The sender really sends it again: a second message, through either provider.
    assert_eq!(
        server
            .post_generic("g-2", from, TWILIO_NUMBER, text, now_unix())
            .await
            .status(),
        200
    );
    assert_eq!(
        server
            .post_twilio("SMb", from, TWILIO_NUMBER, text)
            .await
            .status(),
        200
    );
    // Retries of any copy change nothing.
    server
        .post_generic("g-1", from, TWILIO_NUMBER, text, now_unix())
        .await;
    server.post_twilio("SMa", from, TWILIO_NUMBER, text).await;
    let messages = server.all_messages(None).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    // Another text is another message.
    server
        .post_generic(
            "g-3",
            from,
            TWILIO_NUMBER,
            "Your code is 135790",
            now_unix(),
        )
        .await;
    assert_eq!(server.all_messages(None).await.len(), 3);
    assert_eq!(server.status().await["store"]["duplicates_total"], 4);
    server.stop().await;
}
