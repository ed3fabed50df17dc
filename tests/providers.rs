//! Every provider adapter against the real server over real HTTP: a webhook signed the way
//! the provider signs it is acknowledged in the provider's format and its message is
//! readable through the API; a forged one is refused with 401 and stores nothing.
//!
//! The signatures here are computed from each provider's documented recipe with the hash
//! primitives directly, not with the adapters' own helpers, so a mistake in an adapter
//! cannot hide behind the same mistake in the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use burnbox::config::ProviderSettings;
use burnbox::providers::ProviderKind;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SENDER: &str = "+447700900001";

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn form(params: &[(&str, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// Starts the server with one extra provider (the base settings keep twilio and generic).
async fn start(dir: &std::path::Path, provider: ProviderSettings) -> TestServer {
    let mut settings = base_settings(dir);
    settings.providers.push(provider);
    TestServer::start_with(settings).await
}

/// The messages a provider instance delivered, read back through the admin API.
async fn messages_of(server: &TestServer, provider: &str) -> Vec<Value> {
    server
        .all_messages(None)
        .await
        .into_iter()
        .filter(|message| message["provider"] == provider)
        .collect()
}

/// Checks the one stored message of `provider`.
async fn assert_stored(
    server: &TestServer,
    provider: &str,
    id: &str,
    from: &str,
    to: &str,
    text: &str,
) {
    let messages = messages_of(server, provider).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = &messages[0];
    assert_eq!(message["provider_message_id"], id);
    assert_eq!(message["from"], from);
    assert_eq!(message["number"], to);
    assert_eq!(message["text"], text);
    // Routed to the pool number, not the unrouted inbox.
    assert_eq!(message["number_id"], server.number_id(to).await);
}

async fn assert_refused(response: reqwest::Response, code: &str) {
    assert_eq!(response.status(), 401);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], code);
}

async fn assert_empty_ack(response: reqwest::Response) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "");
}

#[tokio::test]
async fn vonage_sms_api_get_signed_with_sha256() {
    const SECRET: &str = "vonage-signature-secret";
    const NUMBER: &str = "+447700900100";
    let dir = tempfile::tempdir().unwrap();
    let mut table = provider("vonage", ProviderKind::Vonage, Some(SECRET), NUMBER);
    table.signature_method = Some("sha256".into());
    let server = start(dir.path(), table).await;

    let params = |text: &str, nonce: &str| -> Vec<(&'static str, String)> {
        vec![
            ("msisdn", "447700900001".into()),
            ("to", "447700900100".into()),
            ("messageId", "0B00000012345678".into()),
            ("text", text.into()),
            ("type", "text".into()),
            ("keyword", "YOUR".into()),
            ("api-key", "abcd1234".into()),
            ("message-timestamp", "2024-01-01 00:00:00".into()),
            ("timestamp", now_unix().to_string()),
            ("nonce", nonce.into()),
        ]
    };
    // Vonage's recipe: sorted `&k=v` with `&`/`=` in values replaced, HMAC-SHA256, hex.
    let signed = |mut params: Vec<(&'static str, String)>, key: &str| {
        let mut sorted = params.clone();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let text: String = sorted
            .iter()
            .map(|(k, v)| format!("&{k}={}", v.replace(['&', '='], "_")))
            .collect();
        params.push((
            "sig",
            hex::encode(hmac_sha256(key.as_bytes(), &[text.as_bytes()])),
        ));
        params
    };
    let url = |params: &[(&str, String)]| server.url(&format!("/webhooks/vonage?{}", form(params)));

    let forged = signed(params("Your code is 1111", "n-1"), "not-the-secret");
    assert_refused(
        server.client.get(url(&forged)).send().await.unwrap(),
        "webhook_signature_invalid",
    )
    .await;
    assert!(messages_of(&server, "vonage").await.is_empty());

    let good = signed(params("Your code is 4321 & welcome", "n-2"), SECRET);
    assert_empty_ack(server.client.get(url(&good)).send().await.unwrap()).await;
    assert_stored(
        &server,
        "vonage",
        "0B00000012345678",
        SENDER,
        NUMBER,
        "Your code is 4321 & welcome",
    )
    .await;
    // The same request again (the provider's retry after our answer was lost) is a
    // duplicate: acknowledged, nothing stored twice.
    assert_empty_ack(server.client.get(url(&good)).send().await.unwrap()).await;
    assert_eq!(messages_of(&server, "vonage").await.len(), 1);
    // Its nonce in any other request (here the same parameters in another order, so the
    // signature still holds) is a replay.
    let reordered: Vec<_> = good.iter().rev().cloned().collect();
    assert_refused(
        server.client.get(url(&reordered)).send().await.unwrap(),
        "webhook_replayed",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn vonage_messages_api_jwt() {
    const SECRET: &str = "vonage-messages-secret";
    const NUMBER: &str = "+447700900101";
    let dir = tempfile::tempdir().unwrap();
    let table = provider(
        "vonage-messages",
        ProviderKind::VonageMessages,
        Some(SECRET),
        NUMBER,
    );
    let server = start(dir.path(), table).await;

    let body = json!({
        "channel": "sms", "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-000000000101",
        "to": "447700900101", "from": "447700900001",
        "timestamp": "2024-01-01T00:00:00.000Z", "text": "Messages code 2468",
        "message_type": "text", "sms": {"num_messages": "1"},
    })
    .to_string();
    let token = |key: &str, jti: &str| {
        let claims = json!({
            "iat": now_unix(), "jti": jti, "iss": "Vonage", "api_key": "abcd1234",
            "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
            "payload_hash": hex::encode(Sha256::digest(body.as_bytes())),
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let post = |token: String| {
        server
            .client
            .post(server.url("/webhooks/vonage-messages"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(body.clone())
            .send()
    };

    assert_refused(
        post(token("wrong-secret", "j-1")).await.unwrap(),
        "webhook_signature_invalid",
    )
    .await;
    // Unsigned (Vonage after an internal error): a 503, which Vonage retries.
    let unsigned = server
        .client
        .post(server.url("/webhooks/vonage-messages"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 503);
    let problem: Value = unsigned.json().await.unwrap();
    assert_eq!(problem["code"], "webhook_unsigned_retry");
    assert!(messages_of(&server, "vonage-messages").await.is_empty());
    assert_empty_ack(post(token(SECRET, "j-2")).await.unwrap()).await;
    assert_stored(
        &server,
        "vonage-messages",
        "aaaaaaaa-bbbb-cccc-dddd-000000000101",
        SENDER,
        NUMBER,
        "Messages code 2468",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn plivo_v3_post() {
    const TOKEN: &str = "MAplivotestauthtoken000000000000";
    const NUMBER: &str = "+14155550110";
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        provider("plivo", ProviderKind::Plivo, Some(TOKEN), NUMBER),
    )
    .await;
    let url = server.url("/webhooks/plivo");

    let params: Vec<(&str, String)> = vec![
        ("From", "447700900001".into()),
        ("To", "14155550110".into()),
        ("Text", "Plivo code 97531".into()),
        ("Type", "sms".into()),
        ("MessageUUID", "16c0f4a2-0000-11ee-8000-000000000110".into()),
        ("Units", "1".into()),
        ("TotalRate", "0".into()),
        ("TotalAmount", "0".into()),
    ];
    // plivo-python's recipe for a POST to a URL without query: `url?` + sorted `kv`,
    // then `.nonce`; base64 HMAC-SHA256 with the auth token.
    let sign = |key: &str, nonce: &str| {
        let mut sorted = params.clone();
        sorted.sort();
        let mut text = format!("{url}?");
        for (k, v) in &sorted {
            text.push_str(k);
            text.push_str(v);
        }
        text.push('.');
        text.push_str(nonce);
        BASE64.encode(hmac_sha256(key.as_bytes(), &[text.as_bytes()]))
    };
    let post = |signature: String, nonce: &str| {
        server
            .client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Plivo-Signature-V3", signature)
            .header("X-Plivo-Signature-V3-Nonce", nonce)
            .body(form(&params))
            .send()
    };

    assert_refused(
        post(sign("wrong-token", "111"), "111").await.unwrap(),
        "webhook_signature_invalid",
    )
    .await;
    assert!(messages_of(&server, "plivo").await.is_empty());
    let response = post(sign(TOKEN, "222"), "222").await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/xml")
    );
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("<Response></Response>")
    );
    assert_stored(
        &server,
        "plivo",
        "16c0f4a2-0000-11ee-8000-000000000110",
        SENDER,
        NUMBER,
        "Plivo code 97531",
    )
    .await;
    server.stop().await;
}

const TELNYX_SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
const TELNYX_NUMBER: &str = "+13125550120";

async fn telnyx_server(dir: &std::path::Path) -> TestServer {
    let key = Ed25519KeyPair::from_seed_unchecked(&TELNYX_SEED).unwrap();
    let mut table = provider("telnyx", ProviderKind::Telnyx, None, TELNYX_NUMBER);
    table.public_key = Some(BASE64.encode(key.public_key().as_ref()));
    start(dir, table).await
}

/// Posts `body` signed with `seed` the way Telnyx signs: Ed25519 over `timestamp|body`.
async fn post_telnyx(server: &TestServer, seed: &[u8; 32], body: &str) -> reqwest::Response {
    let key = Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
    let timestamp = now_unix().to_string();
    let signature = key.sign(format!("{timestamp}|{body}").as_bytes());
    server
        .client
        .post(server.url("/webhooks/telnyx"))
        .header("content-type", "application/json")
        .header(
            "telnyx-signature-ed25519",
            BASE64.encode(signature.as_ref()),
        )
        .header("telnyx-timestamp", timestamp)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn telnyx_ed25519() {
    let dir = tempfile::tempdir().unwrap();
    let server = telnyx_server(dir.path()).await;
    let body = json!({
        "data": {
            "event_type": "message.received", "id": "b301ed3f-1490-491f-995f-6e64e69674d4",
            "occurred_at": "2024-01-01T00:00:00.000+00:00", "record_type": "event",
            "payload": {
                "id": "84cca175-9755-4859-b67f-4730d7f58aa3", "direction": "inbound",
                "from": {"phone_number": SENDER, "carrier": "Vodafone", "line_type": "Wireless"},
                "to": [{"phone_number": TELNYX_NUMBER, "status": "webhook_delivered"}],
                "text": "Telnyx code 8642", "encoding": "GSM-7", "parts": 1, "type": "SMS",
                "received_at": "2024-01-01T00:00:00.000+00:00",
            },
        },
        "meta": {"attempt": 1, "delivered_to": server.url("/webhooks/telnyx")},
    })
    .to_string();

    let forged = post_telnyx(&server, &[7u8; 32], &body).await;
    assert_refused(forged, "webhook_signature_invalid").await;
    assert!(messages_of(&server, "telnyx").await.is_empty());
    assert_empty_ack(post_telnyx(&server, &TELNYX_SEED, &body).await).await;
    assert_stored(
        &server,
        "telnyx",
        "84cca175-9755-4859-b67f-4730d7f58aa3",
        SENDER,
        TELNYX_NUMBER,
        "Telnyx code 8642",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn delivery_reports_are_stored_once_and_ignored_events_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let server = telnyx_server(dir.path()).await;
    let finalized = json!({"data": {"event_type": "message.finalized", "id": "e-1",
        "occurred_at": "2024-01-01T00:00:05.000+00:00",
        "payload": {"id": "out-1", "direction": "outbound",
            "to": [{"phone_number": SENDER, "status": "delivered"}]}}})
    .to_string();
    // Stored durably, then acknowledged; a repeat is acknowledged and stored once. The id
    // is not one of our sends, so the report is kept unlinked and counted.
    assert_empty_ack(post_telnyx(&server, &TELNYX_SEED, &finalized).await).await;
    assert_empty_ack(post_telnyx(&server, &TELNYX_SEED, &finalized).await).await;
    let outbound = &server.status().await["outbound"];
    assert_eq!(outbound["reports_total"], 1, "{outbound}");
    assert_eq!(outbound["report_repeats_total"], 1);
    assert_eq!(outbound["unlinked_reports"], 1);

    let sent = json!({"data": {"event_type": "message.sent", "id": "e-2",
        "payload": {"id": "out-1", "direction": "outbound"}}})
    .to_string();
    assert_empty_ack(post_telnyx(&server, &TELNYX_SEED, &sent).await).await;
    assert!(server.all_messages(None).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn sinch_hmac_with_nonce() {
    const SECRET: &str = "sinch-callback-secret";
    const NUMBER: &str = "+12065550130";
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        provider("sinch", ProviderKind::Sinch, Some(SECRET), NUMBER),
    )
    .await;
    let body = json!({
        "id": "01FC66621XXXXX119Z8PMV1130", "from": "447700900001", "to": "12065550130",
        "body": "Sinch code 1357", "type": "mo_text", "operator_id": "23410",
        "received_at": "2024-01-01T00:00:00.000Z",
    })
    .to_string();
    let post = |key: &str, nonce: &str| {
        let timestamp = now_unix().to_string();
        let signed = format!("{body}.{nonce}.{timestamp}");
        server
            .client
            .post(server.url("/webhooks/sinch"))
            .header("content-type", "application/json")
            .header(
                "x-sinch-webhook-signature",
                BASE64.encode(hmac_sha256(key.as_bytes(), &[signed.as_bytes()])),
            )
            .header("x-sinch-webhook-signature-nonce", nonce.to_owned())
            .header("x-sinch-webhook-signature-timestamp", timestamp)
            .body(body.clone())
            .send()
    };

    assert_refused(
        post("wrong", "01HNONCE0001").await.unwrap(),
        "webhook_signature_invalid",
    )
    .await;
    assert!(messages_of(&server, "sinch").await.is_empty());
    assert_empty_ack(post(SECRET, "01HNONCE0002").await.unwrap()).await;
    assert_stored(
        &server,
        "sinch",
        "01FC66621XXXXX119Z8PMV1130",
        SENDER,
        NUMBER,
        "Sinch code 1357",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn bandwidth_basic_credentials() {
    const USER: &str = "bw-callback-user";
    const PASSWORD: &str = "bw-callback-password";
    const NUMBER: &str = "+19195550140";
    let dir = tempfile::tempdir().unwrap();
    let mut table = provider("bandwidth", ProviderKind::Bandwidth, Some(PASSWORD), NUMBER);
    table.username = Some(USER.into());
    let server = start(dir.path(), table).await;
    let body = json!([{
        "type": "message-received", "time": "2024-01-01T00:00:00.000Z",
        "description": "Incoming message received", "to": NUMBER,
        "message": {
            "id": "1589228074636lm4k2je7j7jklbn2", "owner": NUMBER,
            "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2",
            "time": "2024-01-01T00:00:00.000Z", "segmentCount": 1, "direction": "in",
            "to": [NUMBER], "from": SENDER, "text": "Bandwidth code 8080", "media": [], "tag": "",
        },
    }])
    .to_string();
    let post = |user: &str, password: &str| {
        server
            .client
            .post(server.url("/webhooks/bandwidth"))
            .header("content-type", "application/json; charset=utf-8")
            .basic_auth(user, Some(password))
            .body(body.clone())
            .send()
    };

    assert_refused(
        post(USER, "guessed").await.unwrap(),
        "webhook_signature_invalid",
    )
    .await;
    assert!(messages_of(&server, "bandwidth").await.is_empty());
    assert_empty_ack(post(USER, PASSWORD).await.unwrap()).await;
    assert_stored(
        &server,
        "bandwidth",
        "1589228074636lm4k2je7j7jklbn2",
        SENDER,
        NUMBER,
        "Bandwidth code 8080",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn messagebird_signature_jwt() {
    const KEY: &str = "messagebird-signing-key";
    const NUMBER: &str = "+31612345150";
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        provider("messagebird", ProviderKind::Messagebird, Some(KEY), NUMBER),
    )
    .await;
    let body = form(&[
        ("id", "e8077d803532c0b5937c639b60216938".into()),
        ("recipient", "31612345150".into()),
        ("originator", "447700900001".into()),
        ("body", "MessageBird code 2020".into()),
        ("createdDatetime", "2024-01-01T00:00:00+00:00".into()),
    ]);
    let url = server.url("/webhooks/messagebird");
    let token = |key: &str, jti: &str| {
        let now = now_unix();
        let claims = json!({
            "iss": "MessageBird", "nbf": now, "exp": now + 60, "jti": jti,
            "url_hash": hex::encode(Sha256::digest(url.as_bytes())),
            "payload_hash": hex::encode(Sha256::digest(body.as_bytes())),
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    };
    let post = |token: String| {
        server
            .client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("MessageBird-Signature-JWT", token)
            .body(body.clone())
            .send()
    };

    assert_refused(
        post(token("wrong-key", "j-1")).await.unwrap(),
        "webhook_signature_invalid",
    )
    .await;
    assert!(messages_of(&server, "messagebird").await.is_empty());
    let good = token(KEY, "j-2");
    assert_empty_ack(post(good.clone()).await.unwrap()).await;
    assert_stored(
        &server,
        "messagebird",
        "e8077d803532c0b5937c639b60216938",
        SENDER,
        NUMBER,
        "MessageBird code 2020",
    )
    .await;
    // The provider's retry after a lost answer is a duplicate.
    assert_empty_ack(post(good).await.unwrap()).await;
    assert_eq!(messages_of(&server, "messagebird").await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn bird_platform_signature() {
    const KEY: &str = "bird-signing-key";
    const NUMBER: &str = "+31612345160";
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        provider("bird", ProviderKind::Bird, Some(KEY), NUMBER),
    )
    .await;
    let body = json!({
        "service": "channels", "event": "sms.inbound",
        "payload": {
            "id": "7c5a3f1e-0000-4000-8000-000000000160", "channelId": "c1",
            "sender": {"contact": {"identifierKey": "phonenumber", "identifierValue": SENDER}},
            "receiver": {"contacts": [{"identifierKey": "phonenumber", "identifierValue": NUMBER}]},
            "body": {"type": "text", "text": {"text": "Bird code 6060"}},
            "createdAt": "2024-01-01T00:00:00.000Z",
        },
    })
    .to_string();
    let url = server.url("/webhooks/bird");
    let post = |key: &str| {
        let timestamp = now_unix().to_string();
        let signature = hmac_sha256(
            key.as_bytes(),
            &[
                timestamp.as_bytes(),
                b"\n",
                url.as_bytes(),
                b"\n",
                &Sha256::digest(body.as_bytes()),
            ],
        );
        server
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("messagebird-signature", BASE64.encode(signature))
            .header("messagebird-request-timestamp", timestamp)
            .header("messagebird-request-id", "r-1")
            .body(body.clone())
            .send()
    };

    assert_refused(
        post("wrong-key").await.unwrap(),
        "webhook_signature_invalid",
    )
    .await;
    assert!(messages_of(&server, "bird").await.is_empty());
    assert_empty_ack(post(KEY).await.unwrap()).await;
    assert_stored(
        &server,
        "bird",
        "7c5a3f1e-0000-4000-8000-000000000160",
        SENDER,
        NUMBER,
        "Bird code 6060",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn sms_gateway_for_android() {
    const KEY: &str = "abcd1234";
    const NUMBER: &str = "+15550001170";
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        provider("phone", ProviderKind::SmsGateway, Some(KEY), NUMBER),
    )
    .await;
    // Two texts with the same content share a messageId; the envelope ids differ.
    let body = |envelope: &str| {
        json!({
            "deviceId": "ffffffffceb0b1db0000018e937c815b", "event": "sms:received",
            "id": envelope, "webhookId": "LreFUt-Z3sSq0JufY9uWB",
            "payload": {
                "messageId": "abc123", "message": "Android code 1717", "sender": SENDER,
                "recipient": null, "simNumber": 1,
                "receivedAt": "2024-06-22T15:46:11.000+07:00",
            },
        })
        .to_string()
    };
    let post = |key: &str, body: String| {
        let timestamp = now_unix().to_string();
        let signature = hmac_sha256(key.as_bytes(), &[body.as_bytes(), timestamp.as_bytes()]);
        server
            .client
            .post(server.url("/webhooks/phone"))
            .header("content-type", "application/json")
            .header("user-agent", "me.capcom.smsgateway/1.0")
            .header("x-signature", hex::encode(signature))
            .header("x-timestamp", timestamp)
            .body(body)
            .send()
    };

    assert_refused(
        post("wrongkey", body("Ey6ECgOkVVFjz3CL48B8C"))
            .await
            .unwrap(),
        "webhook_signature_invalid",
    )
    .await;
    assert!(messages_of(&server, "phone").await.is_empty());
    assert_empty_ack(post(KEY, body("Ey6ECgOkVVFjz3CL48B8C")).await.unwrap()).await;
    // The recipient was null: the message lands on the provider's number.
    assert_stored(
        &server,
        "phone",
        "Ey6ECgOkVVFjz3CL48B8C",
        SENDER,
        NUMBER,
        "Android code 1717",
    )
    .await;
    // Same text again, new envelope: a second message, not a duplicate.
    assert_empty_ack(post(KEY, body("Zz9ECgOkVVFjz3CL48B8D")).await.unwrap()).await;
    assert_eq!(messages_of(&server, "phone").await.len(), 2);
    server.stop().await;
}

/// Plivo's V2 signature covers the URL and nonce but not the body, and nothing dates it:
/// a request captured once could be posted again with any message. Its nonce stays
/// spent across a restart, so the captured copy is refused then too; Plivo's own
/// byte-for-byte retry of it still gets its answer (a duplicate, stored once).
#[tokio::test]
async fn a_plivo_v2_nonce_stays_spent_across_a_restart() {
    const TOKEN: &str = "MAplivotestauthtoken000000000000";
    const NUMBER: &str = "+14155550111";
    const PUBLIC: &str = "https://sms.example.org";
    let dir = tempfile::tempdir().unwrap();
    let settings = || {
        let mut settings = base_settings(dir.path());
        // Signed against the public URL, so the signature holds across the restart's
        // new port.
        settings.public_url = Some(PUBLIC.into());
        settings
            .providers
            .push(provider("plivo", ProviderKind::Plivo, Some(TOKEN), NUMBER));
        settings
    };
    let params = |uuid: &str, text: &str| {
        form(&[
            ("From", "447700900001".into()),
            ("To", "14155550111".into()),
            ("Text", text.into()),
            ("Type", "sms".into()),
            ("MessageUUID", uuid.into()),
        ])
    };
    // plivo-python's V2 recipe: base64 HMAC-SHA256(token, base URI + nonce).
    let nonce = "28411797329470218410";
    let signature = BASE64.encode(hmac_sha256(
        TOKEN.as_bytes(),
        &[
            format!("{PUBLIC}/webhooks/plivo").as_bytes(),
            nonce.as_bytes(),
        ],
    ));
    let post = |server: &TestServer, body: String| {
        server
            .client
            .post(server.url("/webhooks/plivo"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Plivo-Signature-V2", signature.as_str())
            .header("X-Plivo-Signature-V2-Nonce", nonce)
            .body(body)
            .send()
    };
    let genuine = params("16c0f4a2-0000-11ee-8000-000000000111", "Plivo code 13579");
    let forged = params("16c0f4a2-0000-11ee-8000-00000000f0f0", "Forged code 00000");

    let server = TestServer::start_with(settings()).await;
    assert_eq!(post(&server, genuine.clone()).await.unwrap().status(), 200);
    assert_refused(
        post(&server, forged.clone()).await.unwrap(),
        "webhook_replayed",
    )
    .await;
    server.stop().await;

    let server = TestServer::start_with(settings()).await;
    assert_refused(post(&server, forged).await.unwrap(), "webhook_replayed").await;
    assert_eq!(post(&server, genuine).await.unwrap().status(), 200);
    let stored = messages_of(&server, "plivo").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["text"], "Plivo code 13579");
    assert_eq!(server.status().await["store"]["duplicates_total"], 1);
    server.stop().await;
}
