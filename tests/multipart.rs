//! Long SMS that providers deliver in parts (Vonage `concat-*`): put back together in
//! order, whatever order the parts arrive in and however often one is retried; a message
//! whose part never comes is stored with a gap after `multipart_timeout`, flagged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use burnbox::providers::ProviderKind;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

const SECRET: &str = "vonage-signature-secret";
const NUMBER: &str = "+447700900100";

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
    let mut params: Vec<(&str, String)> = vec![
        ("msisdn", "447700900001".into()),
        ("to", NUMBER.trim_start_matches('+').into()),
        ("messageId", message_id.into()),
        ("text", text.into()),
        (
            "type",
            if text.is_ascii() { "text" } else { "unicode" }.into(),
        ),
        ("concat", "true".into()),
        ("concat-ref", reference.into()),
        ("concat-total", total.to_string()),
        ("concat-part", index.to_string()),
        ("message-timestamp", "2024-01-01 00:00:00".into()),
        ("timestamp", now_unix().to_string()),
        ("nonce", uuid::Uuid::new_v4().to_string()),
    ];
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
