//! Provider instances as run-time configuration: the admin API and the `burnbox
//! providers` command against the real server over HTTP. A provider added through the
//! API receives at once, survives a restart, changes its secret, leaves with its
//! numbers; its secrets appear in no answer and nowhere on disk in the clear.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use burnbox::config::Settings;
use burnbox::providers::twilio;
use common::{Account, TWILIO_NUMBER, TestServer, base_settings, data_dir_contains, twilio_params};
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &str = "api-provider-secret-7f3a9c";
const NEW_SECRET: &str = "api-provider-rotated-51d0e2";
const NUMBER: &str = "+14155550177";
const OTHER_NUMBER: &str = "+14155550178";

/// Posts a Twilio-signed SMS to `/webhooks/{provider}`, signed with `secret` over
/// `signed_url` (default: the URL posted to).
async fn post_twilio_as(
    server: &TestServer,
    provider: &str,
    secret: &str,
    signed_url: Option<&str>,
    sid: &str,
    to: &str,
    text: &str,
) -> reqwest::Response {
    let url = server.url(&format!("/webhooks/{provider}"));
    let params = twilio_params(sid, "+447700900123", to, text);
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let signature = twilio::sign(secret, signed_url.unwrap_or(&url), &pairs);
    server.post_form(&url, &pairs, &signature).await
}

async fn admin(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    server
        .call(Some(&Account::admin()), method, path, body)
        .await
}

/// The pool's numbers of `provider`.
async fn pool_of(server: &TestServer, provider: &str) -> Vec<String> {
    let (status, body) = server.admin_get("/api/v1/numbers").await;
    assert_eq!(status, 200);
    let mut numbers: Vec<String> = body["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["provider"] == provider)
        .map(|n| n["number"].as_str().unwrap().to_owned())
        .collect();
    numbers.sort();
    numbers
}

fn texts(messages: &[Value]) -> Vec<&str> {
    messages.iter().filter_map(|m| m["text"].as_str()).collect()
}

fn assert_no_secret(answer: &Value) {
    let text = answer.to_string();
    for secret in [
        SECRET,
        NEW_SECRET,
        common::TWILIO_TOKEN,
        common::GENERIC_SECRET,
    ] {
        assert!(!text.contains(secret), "a secret in an answer: {text}");
    }
}

fn settings(dir: &Path) -> Settings {
    Settings {
        sandbox: false,
        ..base_settings(dir)
    }
}

#[tokio::test]
async fn a_provider_added_through_the_api_receives_at_once_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(settings(dir.path())).await;

    let (status, created) = admin(
        &server,
        Method::POST,
        "/api/v1/admin/providers",
        Some(json!({"name": "tw2", "kind": "twilio", "secret": SECRET, "numbers": [NUMBER]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_no_secret(&created);
    assert_eq!(created["source"], "api");
    assert_eq!(created["secret_set"], true);
    assert_eq!(created["api_key_set"], false);
    assert_eq!(created["numbers"][0]["number"], NUMBER);
    assert_eq!(pool_of(&server, "tw2").await, [NUMBER]);

    // No restart: the webhook works now, and a wrong signature does not.
    let response = post_twilio_as(
        &server,
        "tw2",
        SECRET,
        None,
        "SMapi1",
        NUMBER,
        "first via api",
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let response = post_twilio_as(&server, "tw2", "guess", None, "SMapi2", NUMBER, "forged").await;
    assert_eq!(response.status(), 401);
    let messages = server.all_messages(None).await;
    assert_eq!(texts(&messages), ["first via api"]);
    assert_eq!(messages[0]["provider"], "tw2");

    let (status, list) = admin(&server, Method::GET, "/api/v1/admin/providers", None).await;
    assert_eq!(status, 200);
    assert_no_secret(&list);
    let names: Vec<(&str, &str)> = list["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [("generic", "config"), ("tw2", "api"), ("twilio", "config")]
    );
    let status_page = server.status().await;
    assert!(
        status_page["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "tw2"),
        "{status_page}"
    );
    server.stop().await;
    assert!(!data_dir_contains(dir.path(), SECRET.as_bytes()));

    // Loaded from the store at the next start.
    let server = TestServer::start_with(settings(dir.path())).await;
    let (status, shown) = admin(&server, Method::GET, "/api/v1/admin/providers/tw2", None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["source"], "api");
    let response = post_twilio_as(
        &server,
        "tw2",
        SECRET,
        None,
        "SMapi3",
        NUMBER,
        "after restart",
    )
    .await;
    assert_eq!(response.status(), 200);

    // A new secret: the old one is refused at once, the new one accepted.
    let (status, updated) = admin(
        &server,
        Method::PUT,
        "/api/v1/admin/providers/tw2",
        Some(json!({"kind": "twilio", "secret": NEW_SECRET, "numbers": [NUMBER]})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_no_secret(&updated);
    let response =
        post_twilio_as(&server, "tw2", SECRET, None, "SMapi4", NUMBER, "old secret").await;
    assert_eq!(response.status(), 401);
    let response = post_twilio_as(
        &server,
        "tw2",
        NEW_SECRET,
        None,
        "SMapi5",
        NUMBER,
        "new secret",
    )
    .await;
    assert_eq!(response.status(), 200);

    // Leaving the secret out keeps it; numbers follow the new list.
    let (status, updated) = admin(
        &server,
        Method::PUT,
        "/api/v1/admin/providers/tw2",
        Some(json!({"name": "tw2", "kind": "twilio", "numbers": [OTHER_NUMBER]})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["secret_set"], true);
    assert_eq!(pool_of(&server, "tw2").await, [OTHER_NUMBER]);
    let response = post_twilio_as(
        &server,
        "tw2",
        NEW_SECRET,
        None,
        "SMapi6",
        OTHER_NUMBER,
        "kept secret",
    )
    .await;
    assert_eq!(response.status(), 200);
    // Renaming is not an update.
    let (status, refused) = admin(
        &server,
        Method::PUT,
        "/api/v1/admin/providers/tw2",
        Some(json!({"name": "tw3", "kind": "twilio"})),
    )
    .await;
    assert_eq!((status, refused["field"].as_str()), (400, Some("name")));

    // Deleted: its webhook is unknown, its numbers are out of the pool, its messages stay.
    let (status, _) = admin(&server, Method::DELETE, "/api/v1/admin/providers/tw2", None).await;
    assert_eq!(status, 204);
    let response = post_twilio_as(
        &server,
        "tw2",
        NEW_SECRET,
        None,
        "SMapi7",
        OTHER_NUMBER,
        "gone",
    )
    .await;
    assert_eq!(response.status(), 404);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "provider_not_found");
    assert!(pool_of(&server, "tw2").await.is_empty());
    let (status, problem) = admin(&server, Method::GET, "/api/v1/admin/providers/tw2", None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("provider_not_found"))
    );
    let (status, _) = admin(&server, Method::DELETE, "/api/v1/admin/providers/tw2", None).await;
    assert_eq!(status, 404);
    assert_eq!(server.all_messages(None).await.len(), 4);
    server.stop().await;
    for secret in [SECRET, NEW_SECRET] {
        assert!(
            !data_dir_contains(dir.path(), secret.as_bytes()),
            "{secret} on disk"
        );
    }

    // Still gone after a restart.
    let server = TestServer::start_with(settings(dir.path())).await;
    let (status, _) = admin(&server, Method::GET, "/api/v1/admin/providers/tw2", None).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn configured_providers_are_read_only_and_bad_tables_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let (status, problem) = admin(
        &server,
        Method::PUT,
        "/api/v1/admin/providers/twilio",
        Some(json!({"kind": "twilio", "secret": "x"})),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("provider_read_only"))
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("configuration file")
    );
    let (status, problem) = admin(
        &server,
        Method::DELETE,
        "/api/v1/admin/providers/twilio",
        None,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("provider_read_only"))
    );
    let (status, shown) = admin(&server, Method::GET, "/api/v1/admin/providers/twilio", None).await;
    assert_eq!(status, 200);
    assert_no_secret(&shown);
    assert_eq!(shown["source"], "config");
    assert_eq!(shown["numbers"][0]["number"], TWILIO_NUMBER);

    for name in ["twilio", "sandbox"] {
        let (status, problem) = admin(
            &server,
            Method::POST,
            "/api/v1/admin/providers",
            Some(json!({"name": name, "kind": "twilio", "secret": "x"})),
        )
        .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (409, Some("provider_exists")),
            "{name}"
        );
    }

    let cases = [
        (
            json!({"name": "p", "kind": "carrier-pigeon", "secret": "x"}),
            "kind",
        ),
        (
            json!({"name": "p", "kind": "twilio", "secret": "x", "numbers": ["12"]}),
            "numbers",
        ),
        (json!({"name": "p", "kind": "twilio"}), "secret"),
        (
            json!({"name": "p", "kind": "twilio", "secret": ""}),
            "secret",
        ),
        (
            json!({"name": "p", "kind": "twilio", "secret_file": "/etc/passwd"}),
            "secret_file",
        ),
        (
            json!({"name": "Bad Name", "kind": "twilio", "secret": "x"}),
            "name",
        ),
        (json!({"kind": "twilio", "secret": "x"}), "name"),
        (
            json!({"name": "p", "kind": "generic", "secret": "not-whsec"}),
            "secret",
        ),
        (
            json!({"name": "p", "kind": "telnyx", "public_key": "short"}),
            "public_key",
        ),
        (
            json!({"name": "p", "kind": "bandwidth", "secret": "x"}),
            "username",
        ),
        (
            json!({"name": "p", "kind": "generic", "secret": common::GENERIC_SECRET, "api_key": "k"}),
            "api_key",
        ),
        (
            json!({"name": "p", "kind": "twilio", "secret": "x", "fallback": ["nope"]}),
            "fallback",
        ),
        (
            json!({"name": "p", "kind": "twilio", "secret": "x", "fallback": ["generic"]}),
            "fallback",
        ),
        (
            json!({"name": "p", "kind": "twilio", "secret": "x", "public_url": "ftp://x"}),
            "public_url",
        ),
        (
            json!({"name": "p", "kind": "twilio", "secret": "x", "colour": "red"}),
            "colour",
        ),
        (json!(["not", "a", "table"]), "body"),
    ];
    for (body, field) in cases {
        let (status, problem) = admin(
            &server,
            Method::POST,
            "/api/v1/admin/providers",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(problem["code"], "validation_failed", "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let (status, list) = admin(&server, Method::GET, "/api/v1/admin/providers", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        list["providers"].as_array().unwrap().len(),
        3,
        "nothing was added: {list}"
    );
    for (method, path) in [
        (Method::PUT, "/api/v1/admin/providers/nope"),
        (Method::GET, "/api/v1/admin/providers/nope"),
        (Method::DELETE, "/api/v1/admin/providers/nope"),
    ] {
        let body = (method == Method::PUT).then(|| json!({"kind": "twilio", "secret": "x"}));
        let (status, problem) = admin(&server, method.clone(), path, body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (404, Some("provider_not_found")),
            "{method}"
        );
    }
    // Body cap: the API's body limit applies.
    let huge = json!({"name": "p", "kind": "twilio", "secret": "x".repeat(70 * 1024)});
    let (status, problem) =
        admin(&server, Method::POST, "/api/v1/admin/providers", Some(huge)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    server.stop().await;
}

#[tokio::test]
async fn an_instance_public_url_is_what_its_signatures_cover() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let public = "https://sms.example.net/inbound";
    let (status, created) = admin(
        &server,
        Method::POST,
        "/api/v1/admin/providers",
        Some(
            json!({"name": "behind-proxy", "kind": "twilio", "secret": SECRET,
                    "numbers": [NUMBER], "public_url": public}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let webhook_url = format!("{public}/webhooks/behind-proxy");
    assert_eq!(created["webhook_url"], webhook_url.as_str());
    assert_eq!(created["public_url"], public);
    let response = post_twilio_as(
        &server,
        "behind-proxy",
        SECRET,
        Some(&webhook_url),
        "SMpub1",
        NUMBER,
        "signed for the public URL",
    )
    .await;
    assert_eq!(response.status(), 200);
    // Signed over the address it was really posted to: not what the provider would sign.
    let response = post_twilio_as(
        &server,
        "behind-proxy",
        SECRET,
        None,
        "SMpub2",
        NUMBER,
        "local",
    )
    .await;
    assert_eq!(response.status(), 401);
    // Other providers still use the server's own URL.
    let response = server
        .post_twilio("SMpub3", "+447700900123", TWILIO_NUMBER, "config provider")
        .await;
    assert_eq!(response.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn the_configuration_wins_a_name_and_fallbacks_are_protected() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    // "sender" can send (its API is nowhere: probes fail, which is fine here).
    let sender = json!({"name": "sender", "kind": "twilio", "secret": "s", "account_sid": "AC1",
                        "api_base_url": "http://127.0.0.1:9", "numbers": ["+14155550190"]});
    assert_eq!(
        admin(
            &server,
            Method::POST,
            "/api/v1/admin/providers",
            Some(sender)
        )
        .await
        .0,
        201
    );
    // Probed at once, not a probe interval (60 s) later.
    let probed = common::eventually(std::time::Duration::from_secs(10), || async {
        let (_, shown) = admin(&server, Method::GET, "/api/v1/admin/providers/sender", None).await;
        shown["health"]["last_probe_at"].is_string()
    })
    .await;
    assert!(probed, "the new provider was not probed");
    let (_, shown) = admin(&server, Method::GET, "/api/v1/admin/providers/sender", None).await;
    assert_eq!(shown["health"]["last_probe_ok"], false, "{shown}");
    let user = json!({"name": "user", "kind": "twilio", "secret": "u", "fallback": ["sender"]});
    let (status, created) =
        admin(&server, Method::POST, "/api/v1/admin/providers", Some(user)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["fallback"], json!(["sender"]));
    let (status, problem) = admin(
        &server,
        Method::DELETE,
        "/api/v1/admin/providers/sender",
        None,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("provider_in_use")),
        "{problem}"
    );
    // Taking its API credentials away would leave "user" without a fallback too.
    let (status, problem) = admin(
        &server,
        Method::PUT,
        "/api/v1/admin/providers/sender",
        Some(json!({"kind": "twilio"})),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("provider_in_use")),
        "{problem}"
    );
    assert_eq!(
        admin(
            &server,
            Method::DELETE,
            "/api/v1/admin/providers/user",
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        admin(
            &server,
            Method::DELETE,
            "/api/v1/admin/providers/sender",
            None
        )
        .await
        .0,
        204
    );

    // A number two providers list belongs to the first; when that one goes, the other
    // takes it over in place; when nobody lists it any more, it leaves the pool.
    for name in ["first", "second"] {
        let body =
            json!({"name": name, "kind": "twilio", "secret": "x", "numbers": ["+14155550191"]});
        assert_eq!(
            admin(&server, Method::POST, "/api/v1/admin/providers", Some(body))
                .await
                .0,
            201
        );
    }
    let id = server.number_id("+14155550191").await;
    assert_eq!(pool_of(&server, "first").await, ["+14155550191"]);
    assert_eq!(
        admin(
            &server,
            Method::DELETE,
            "/api/v1/admin/providers/first",
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(pool_of(&server, "second").await, ["+14155550191"]);
    assert_eq!(
        server.number_id("+14155550191").await,
        id,
        "handed over in place"
    );
    let (status, _) = admin(
        &server,
        Method::PUT,
        "/api/v1/admin/providers/second",
        Some(json!({"kind": "twilio", "numbers": []})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(pool_of(&server, "second").await.is_empty());

    // A stored provider whose name the configuration file takes later: the file wins,
    // the status page says so, and the stale record can be deleted.
    let shadow = json!({"name": "shadow", "kind": "twilio", "secret": SECRET, "numbers": [NUMBER]});
    assert_eq!(
        admin(
            &server,
            Method::POST,
            "/api/v1/admin/providers",
            Some(shadow)
        )
        .await
        .0,
        201
    );
    server.stop().await;
    let mut with_shadow = base_settings(dir.path());
    with_shadow.providers.push(common::provider(
        "shadow",
        burnbox::providers::ProviderKind::Twilio,
        Some(NEW_SECRET),
        OTHER_NUMBER,
    ));
    let server = TestServer::start_with(with_shadow).await;
    let (_, shown) = admin(&server, Method::GET, "/api/v1/admin/providers/shadow", None).await;
    assert_eq!(shown["source"], "config", "{shown}");
    let status_page = server.status().await;
    let errors = status_page["errors"]["recent"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["code"] == "provider_skipped"
                && e["detail"].as_str().unwrap().contains("shadow")),
        "{status_page}"
    );
    let response = post_twilio_as(
        &server,
        "shadow",
        NEW_SECRET,
        None,
        "SMsh1",
        OTHER_NUMBER,
        "file wins",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        admin(
            &server,
            Method::DELETE,
            "/api/v1/admin/providers/shadow",
            None
        )
        .await
        .0,
        204
    );
    let (status, problem) = admin(
        &server,
        Method::DELETE,
        "/api/v1/admin/providers/shadow",
        None,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("provider_read_only"))
    );
    assert_eq!(pool_of(&server, "shadow").await, [OTHER_NUMBER]);
    server.stop().await;
}

/// Runs `burnbox providers ARGS` against the server; returns (success, stdout, stderr).
/// The burnbox binary with nothing from this process's environment.
fn burnbox() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_burnbox"));
    command.env_clear();
    command
}

/// Runs `command`, which must succeed; its standard output.
async fn succeeds(command: &mut tokio::process::Command) -> String {
    let output = command.output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn cli(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let output = burnbox()
        .env("BURNBOX_ADMIN_PASSWORD", common::ADMIN_PASSWORD)
        .arg("providers")
        .args(args)
        .args(["--url", &server.base])
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_adds_lists_shows_updates_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let file = dir.path().join("provider.json");
    std::fs::write(
        &file,
        json!({"name": "cli-tw", "kind": "twilio", "secret": SECRET, "numbers": [NUMBER]})
            .to_string(),
    )
    .unwrap();
    let file = file.to_str().unwrap();

    let (ok, out, err) = cli(&server, &["add", "--file", file]).await;
    assert!(ok, "{err}");
    assert!(out.contains("\"cli-tw\"") && !out.contains(SECRET), "{out}");
    let (ok, out, err) = cli(&server, &["list"]).await;
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("cli-tw"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("twilio") && line.contains("api") && line.contains(NUMBER),
        "{line}"
    );
    assert!(out.lines().next().unwrap().starts_with("NAME"), "{out}");
    let (ok, out, _) = cli(&server, &["list", "--json"]).await;
    assert!(ok);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["providers"].as_array().unwrap().len(), 4);
    let response =
        post_twilio_as(&server, "cli-tw", SECRET, None, "SMcli1", NUMBER, "via cli").await;
    assert_eq!(response.status(), 200);
    // `simulate` signs as a provider added at runtime, given the same file.
    succeeds(burnbox().args([
        "simulate",
        "--provider-file",
        file,
        "--server",
        &server.base,
        "simulated via file",
    ]))
    .await;
    let (status, listed) = admin(&server, Method::GET, "/api/v1/messages", None).await;
    assert_eq!(status, 200);
    assert!(
        listed.to_string().contains("simulated via file"),
        "{listed}"
    );

    // A TOML table works too; left-out secrets are kept.
    let toml_file = dir.path().join("provider.toml");
    std::fs::write(
        &toml_file,
        format!("kind = \"twilio\"\nnumbers = [\"{OTHER_NUMBER}\"]\n"),
    )
    .unwrap();
    let (ok, out, err) = cli(
        &server,
        &["update", "cli-tw", "--file", toml_file.to_str().unwrap()],
    )
    .await;
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["numbers"][0]["number"], OTHER_NUMBER);
    assert_eq!(shown["secret_set"], true);

    // Errors: the problem's detail, exit code 1.
    let (ok, _, err) = cli(&server, &["add", "--file", file]).await;
    assert!(!ok);
    assert!(
        err.contains("exists already") && err.contains("409"),
        "{err}"
    );
    let (ok, _, err) = cli(&server, &["remove", "twilio"]).await;
    assert!(!ok && err.contains("configuration file"), "{err}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, json!({"name": "bad", "kind": "twilio"}).to_string()).unwrap();
    let (ok, _, err) = cli(&server, &["add", "--file", bad.to_str().unwrap()]).await;
    assert!(!ok && err.contains("`secret`"), "{err}");

    let (ok, out, err) = cli(&server, &["remove", "cli-tw"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "removed cli-tw");
    let (ok, out, _) = cli(&server, &["list"]).await;
    assert!(ok && !out.contains("cli-tw"), "{out}");
    let (ok, _, err) = cli(&server, &["show", "cli-tw"]).await;
    assert!(!ok && err.contains("404"), "{err}");

    // Without a password, or with a wrong one, nothing happens.
    let output = burnbox()
        .args(["providers", "list", "--url", &server.base])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("BURNBOX_ADMIN_PASSWORD"));
    // The password from the file BURNBOX_ADMIN_PASSWORD_FILE names, and the server
    // from the configured listener, as the service's own environment would give them.
    let right = dir.path().join("right-password");
    std::fs::write(&right, format!("{}\n", common::ADMIN_PASSWORD)).unwrap();
    let listed = succeeds(
        burnbox()
            .env("BURNBOX_ADMIN_PASSWORD_FILE", &right)
            .env("BURNBOX_LISTEN", server.base.trim_start_matches("http://"))
            .args(["providers", "list"]),
    )
    .await;
    assert!(listed.contains("twilio"));
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let (ok, _, err) = cli(
        &server,
        &["list", "--password-file", wrong.to_str().unwrap()],
    )
    .await;
    assert!(!ok && err.contains("401"), "{err}");
    server.stop().await;
}
