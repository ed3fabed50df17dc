//! Long SMS that providers deliver in parts (Vonage `concat-*`, and binary SMS whose
//! User Data Header places them, from Vonage and Sinch): put back together in order,
//! whatever order the parts arrive in and however often one is retried; a message whose
//! part never comes is stored with a gap after `multipart_timeout`, flagged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use burnbox::providers::{ProviderKind, sinch};
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "vonage-signature-secret";
const NUMBER: &str = "+447700900100";
const SINCH_SECRET: &str = "sinch-callback-secret";
const SINCH_NUMBER: &str = "+447700900200";

/// One part as Vonage posts it, signed by Vonage's recipe (sorted `&k=v`, `&`/`=` in
/// values replaced, HMAC-SHA256, hex) with a fresh nonce, as every delivery attempt is.
fn part_url(
    server: &TestServer,
    message_id: &str,
    reference: &str,
    index: u8,
    total: u8,
    text: &str,
) -> String {
    let params: Vec<(&str, String)> = vec![
        ("text", text.into()),
        (
            "type",
            if text.is_ascii() { "text" } else { "unicode" }.into(),
        ),
        ("concat", "true".into()),
        ("concat-ref", reference.into()),
        ("concat-total", total.to_string()),
        ("concat-part", index.to_string()),
    ];
    signed_url(server, message_id, params)
}

/// A Vonage `type=binary` inbound: the octets and their User Data Header, both hex.
fn binary_url(server: &TestServer, message_id: &str, udh: &[u8], data: &[u8]) -> String {
    let params = vec![
        ("type", "binary".into()),
        ("udh", hex::encode_upper(udh)),
        ("data", hex::encode_upper(data)),
    ];
    signed_url(server, message_id, params)
}

/// The webhook URL of a Vonage inbound with `params` besides the common ones, signed.
fn signed_url(server: &TestServer, message_id: &str, params: Vec<(&str, String)>) -> String {
    let mut params: Vec<(&str, String)> = [
        ("msisdn", "447700900001".into()),
        ("to", NUMBER.trim_start_matches('+').into()),
        ("messageId", message_id.into()),
        ("message-timestamp", "2024-01-01 00:00:00".into()),
        ("timestamp", now_unix().to_string()),
        ("nonce", uuid::Uuid::new_v4().to_string()),
    ]
    .into_iter()
    .chain(params)
    .collect();
    let mut sorted = params.clone();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let signed: String = sorted
        .iter()
        .map(|(k, v)| format!("&{k}={}", v.replace(['&', '='], "_")))
        .collect();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    params.push(("sig", hex::encode(mac.finalize().into_bytes())));
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    server.url(&format!("/webhooks/vonage?{query}"))
}

async fn send(server: &TestServer, url: String) {
    let response = server.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn vonage_messages(server: &TestServer) -> Vec<Value> {
    server
        .all_messages(None)
        .await
        .into_iter()
        .filter(|message| message["provider"] == "vonage")
        .collect()
}

#[tokio::test]
async fn parts_in_any_order_and_retried_become_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    let mut vonage = provider("vonage", ProviderKind::Vonage, Some(SECRET), NUMBER);
    vonage.signature_method = Some("sha256".into());
    settings.providers.push(vonage);
    settings.multipart_timeout = "2s".into();
    settings.sweep_interval = "1s".into();
    let server = TestServer::start_with(settings).await;

    // GSM-7 with its extension characters, then UCS-2 with an emoji and Cyrillic.
    let texts = [
        "Dear customer, your verification code for the account ending 1234 is below. £€[] ",
        "Ваш код: 731946 😀 — never share it with anyone, not even our staff. ",
        "Reply STOP to opt out.",
    ];
    let url = |i: usize, id: &str| part_url(&server, id, "a7", i as u8 + 1, 3, texts[i]);
    send(&server, url(1, "P2")).await;
    send(&server, url(2, "P3")).await;
    assert!(
        vonage_messages(&server).await.is_empty(),
        "nothing shows before the message is whole"
    );
    // Part 3 again (the provider retried it): still nothing, and no double text later.
    send(&server, url(2, "P3")).await;
    send(&server, url(0, "P1")).await;
    let messages = vonage_messages(&server).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["text"], texts.concat());
    assert_eq!(messages[0]["partial"], false);
    assert_eq!(messages[0]["provider_message_id"], "P1");
    assert_eq!(messages[0]["otp"], "731946");
    // Late retries of any part change nothing.
    send(&server, url(1, "P2")).await;
    send(&server, url(0, "P1")).await;
    assert_eq!(vonage_messages(&server).await.len(), 1);

    // Another message whose middle part never arrives: stored after the timeout with a
    // gap, flagged partial.
    let lost = |i: usize, id: &str| part_url(&server, id, "b9", i as u8 + 1, 3, texts[i]);
    send(&server, lost(0, "Q1")).await;
    send(&server, lost(2, "Q3")).await;
    let arrived = eventually(Duration::from_secs(20), || async {
        vonage_messages(&server).await.len() == 2
    })
    .await;
    assert!(
        arrived,
        "the incomplete message is stored after the timeout"
    );
    let messages = vonage_messages(&server).await;
    let partial = messages
        .iter()
        .find(|m| m["provider_message_id"] == "Q1")
        .unwrap();
    assert_eq!(partial["partial"], true);
    assert_eq!(partial["text"], format!("{}[…]{}", texts[0], texts[2]));
    server.stop().await;
}

/// `text` as UCS-2 (UTF-16BE) octets, as a phone sends text GSM-7 cannot hold.
fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// A concatenation User Data Header: 8-bit reference when it fits, else 16-bit.
fn concat_udh(reference: u16, total: u8, sequence: u8) -> Vec<u8> {
    match u8::try_from(reference) {
        Ok(reference) => vec![5, 0x00, 3, reference, total, sequence],
        Err(_) => {
            let [high, low] = reference.to_be_bytes();
            vec![6, 0x08, 4, high, low, total, sequence]
        }
    }
}

/// A Vonage and a Sinch provider, with a short `multipart_timeout`.
async fn binary_server(dir: &std::path::Path) -> TestServer {
    let mut settings = base_settings(dir);
    let mut vonage = provider("vonage", ProviderKind::Vonage, Some(SECRET), NUMBER);
    vonage.signature_method = Some("sha256".into());
    settings.providers.push(vonage);
    settings.providers.push(provider(
        "sinch",
        ProviderKind::Sinch,
        Some(SINCH_SECRET),
        SINCH_NUMBER,
    ));
    settings.multipart_timeout = "2s".into();
    settings.sweep_interval = "1s".into();
    TestServer::start_with(settings).await
}

#[tokio::test]
async fn binary_parts_placed_by_their_header_become_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = binary_server(dir.path()).await;

    // UCS-2 text in three binary parts (8-bit reference 0x5C), the first cut between
    // the two halves of the emoji's surrogate pair.
    let text = "Ваш код: 731946 😀 — никому его не сообщайте. Reply STOP to opt out 🙂";
    let octets = ucs2(text);
    let emoji = text.encode_utf16().position(|unit| unit == 0xD83D).unwrap();
    let cuts = [0, (emoji + 1) * 2, 80, octets.len()];
    let part = |i: usize, id: &str| {
        let udh = concat_udh(0x5C, 3, i as u8 + 1);
        binary_url(&server, id, &udh, &octets[cuts[i]..cuts[i + 1]])
    };
    // Shuffled, and part 2 retried (same id, fresh nonce, as Vonage retries).
    send(&server, part(2, "B3")).await;
    send(&server, part(1, "B2")).await;
    send(&server, part(1, "B2")).await;
    assert!(
        vonage_messages(&server).await.is_empty(),
        "nothing shows before the message is whole"
    );
    send(&server, part(0, "B1")).await;
    let messages = vonage_messages(&server).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["text"], text, "the emoji across parts is whole");
    assert_eq!(messages[0]["partial"], false);
    assert_eq!(messages[0]["binary"], false);
    assert_eq!(messages[0]["provider_message_id"], "B1");
    assert_eq!(messages[0]["otp"], "731946");
    // A late retry changes nothing.
    send(&server, part(2, "B3")).await;
    assert_eq!(vonage_messages(&server).await.len(), 1);

    // Three parts under a 16-bit reference whose middle part never comes: stored after
    // the timeout with a gap, flagged partial.
    let pieces = ["Part one, ", "part two, ", "part three."];
    let lost = |i: usize, id: &str| {
        let udh = concat_udh(0xBEEF, 3, i as u8 + 1);
        binary_url(&server, id, &udh, &ucs2(pieces[i]))
    };
    send(&server, lost(2, "C3")).await;
    send(&server, lost(0, "C1")).await;
    let arrived = eventually(Duration::from_secs(20), || async {
        vonage_messages(&server).await.len() == 2
    })
    .await;
    assert!(
        arrived,
        "the incomplete message is stored after the timeout"
    );
    let messages = vonage_messages(&server).await;
    let partial = messages
        .iter()
        .find(|m| m["provider_message_id"] == "C1")
        .unwrap();
    assert_eq!(partial["partial"], true);
    assert_eq!(partial["text"], "Part one, […]part three.");

    // Parts are sealed while they wait, messages once stored: no text in the clear.
    for needle in [b"731946".as_slice(), &ucs2("731946"), &ucs2("part three")] {
        assert!(!data_dir_contains(dir.path(), needle), "{needle:?} on disk");
    }
    server.stop().await;
}

/// Posts a Sinch callback, signed (HMAC over `body.nonce.timestamp`).
async fn post_sinch(server: &TestServer, body: &Value) -> reqwest::Response {
    let body = body.to_string();
    let nonce = uuid::Uuid::new_v4().to_string();
    let timestamp = now_unix().to_string();
    let signature = sinch::sign(SINCH_SECRET, body.as_bytes(), &nonce, &timestamp);
    server
        .client
        .post(server.url("/webhooks/sinch"))
        .header("content-type", "application/json")
        .header("x-sinch-webhook-signature", signature)
        .header("x-sinch-webhook-signature-nonce", nonce)
        .header("x-sinch-webhook-signature-timestamp", timestamp)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A Sinch `mo_binary`: the octets in base64, the User Data Header in hex.
fn sinch_binary(id: &str, udh: &[u8], data: &[u8]) -> Value {
    json!({
        "type": "mo_binary", "id": id, "from": "447700900001",
        "to": SINCH_NUMBER.trim_start_matches('+'),
        "body": BASE64.encode(data), "udh": hex::encode(udh),
        "received_at": "2024-01-01T00:00:00.000Z", "operator_id": "23410",
    })
}

async fn sinch_messages(server: &TestServer) -> Vec<Value> {
    server
        .all_messages(None)
        .await
        .into_iter()
        .filter(|message| message["provider"] == "sinch")
        .collect()
}

async fn assert_refused(response: reqwest::Response, code: &str) {
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], code, "{problem}");
}

#[tokio::test]
async fn sinch_binary_is_stored_and_an_unreadable_header_is_kept_as_hex() {
    let dir = tempfile::tempdir().unwrap();
    let server = binary_server(dir.path()).await;

    // 8-bit text behind an application port element, in two parts (16-bit reference),
    // the second first.
    let ports = [0x05, 0x04, 0x15, 0x81, 0x15, 0x81];
    let udh = |sequence: u8| {
        let mut udh = vec![12];
        udh.extend_from_slice(&ports);
        udh.extend_from_slice(&concat_udh(0x1234, 2, sequence)[1..]);
        udh
    };
    let second = sinch_binary("S2", &udh(2), b"is 482916");
    assert_eq!(post_sinch(&server, &second).await.status(), 200);
    let first = sinch_binary("S1", &udh(1), b"Your verification code ");
    assert_eq!(post_sinch(&server, &first).await.status(), 200);
    let messages = sinch_messages(&server).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["text"], "Your verification code is 482916");
    assert_eq!(
        (&messages[0]["otp"], &messages[0]["binary"]),
        (&json!("482916"), &json!(false))
    );

    // A WAP push in one SMS: not text, so stored as hex and flagged, no code read from it.
    let push = hex::decode("25060aaeaf848d9f8702056a0045c60c03").unwrap();
    let wap = sinch_binary("S3", &[6, 0x05, 0x04, 0x0b, 0x84, 0x23, 0xf0], &push);
    assert_eq!(post_sinch(&server, &wap).await.status(), 200);
    let messages = sinch_messages(&server).await;
    let stored = messages
        .iter()
        .find(|m| m["provider_message_id"] == "S3")
        .unwrap();
    assert_eq!(stored["text"], hex::encode(&push));
    assert_eq!(stored["binary"], true);
    assert_eq!(stored["otp"], Value::Null);

    // Authentic SMS with headers that cannot be used are kept, never refused: a part
    // number past the total (the element is ignored, the SMS stands alone), and a
    // truncated header (kept whole as hex, header included, flagged binary).
    let out_of_range = sinch_binary("S7", &concat_udh(9, 2, 3), b"Code 5150");
    assert_eq!(post_sinch(&server, &out_of_range).await.status(), 200);
    let truncated = sinch_binary("S4", &[5, 0x00, 3, 1, 2], b"x");
    assert_eq!(post_sinch(&server, &truncated).await.status(), 200);
    let vonage = binary_url(&server, "V1", &[6, 0x08, 4, 0, 1, 2], b"x");
    assert_eq!(
        server.client.get(vonage).send().await.unwrap().status(),
        200
    );
    let messages = sinch_messages(&server).await;
    let by_id = |id: &str| {
        let m = messages.iter().find(|m| m["provider_message_id"] == id);
        m.map(|m| (m["text"].clone(), m["binary"].clone(), m["partial"].clone()))
    };
    assert_eq!(
        by_id("S7"),
        Some((json!("Code 5150"), json!(false), json!(false)))
    );
    assert_eq!(
        by_id("S4"),
        Some((json!("050003010278"), json!(true), json!(false)))
    );
    let vonage = vonage_messages(&server).await;
    assert_eq!(vonage.len(), 1);
    assert_eq!(
        (&vonage[0]["text"], &vonage[0]["binary"]),
        (&json!("06080400010278"), &json!(true))
    );

    // Refused, whatever the provider, and nothing stored: octets that are not base64
    // or hex, more than one SMS holds.
    let mut not_base64 = sinch_binary("S5", &[], b"x");
    not_base64["body"] = json!("not base64!");
    assert_refused(post_sinch(&server, &not_base64).await, "webhook_malformed").await;
    let too_long = sinch_binary("S6", &concat_udh(1, 2, 1), &[0x41; 135]);
    assert_refused(
        post_sinch(&server, &too_long).await,
        "webhook_invalid_message",
    )
    .await;
    let params = vec![("type", "binary".into()), ("data", "7G".into())];
    let bad_hex = signed_url(&server, "V2", params);
    assert_refused(
        server.client.get(bad_hex).send().await.unwrap(),
        "webhook_malformed",
    )
    .await;
    assert_eq!(sinch_messages(&server).await.len(), 4);
    assert_eq!(vonage_messages(&server).await.len(), 1);
    server.stop().await;
}
