//! E-mail verification, password reset and password change, through a real SMTP server
//! (mailin-embedded) started by each test, and the real burnbox server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burnbox::config::Settings;
use burnbox::domain::Secret;
use common::{Account, TestServer, assert_only_its_own_style_is_allowed, base_settings};
use mailin_embedded::response::{self, Response};
use mailin_embedded::{AuthMechanism, Handler, Server, SslConfig};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Where the mailed links point; the tests follow them on the test server instead.
const PUBLIC_URL: &str = "https://sms.example.test";
const FROM: &str = "burnbox <burnbox@example.test>";

/// One message as the SMTP server received it, decoded by a real MIME parser.
#[derive(Debug)]
struct Mail {
    to: Vec<String>,
    subject: String,
    body: String,
}

impl Mail {
    /// The path and query of the link in the body that starts with `prefix`.
    fn link(&self, prefix: &str) -> String {
        let start = self
            .body
            .find(&format!("{PUBLIC_URL}{prefix}"))
            .unwrap_or_else(|| panic!("a {prefix} link in {:?}", self.body));
        let link = self.body[start..].split_whitespace().next().unwrap();
        link.trim_start_matches(PUBLIC_URL).to_owned()
    }

    fn token(&self, prefix: &str) -> String {
        let link = self.link(prefix);
        link.split_once("token=").unwrap().1.to_owned()
    }
}

/// The SMTP session handler: collects each message and hands it to the test.
#[derive(Clone)]
struct Sink {
    delivered: mpsc::UnboundedSender<Mail>,
    logins: Arc<Mutex<Vec<(String, String)>>>,
    recipients: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Sink {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.recipients = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let parsed = mailparse::parse_mail(&self.data).expect("a MIME message");
        let subject = parsed
            .headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case("subject"))
            .map(|h| h.get_value())
            .unwrap_or_default();
        let _ = self.delivered.send(Mail {
            to: self.recipients.clone(),
            subject,
            body: parsed.get_body().expect("a decodable body"),
        });
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.logins
            .lock()
            .unwrap()
            .push((user.to_owned(), password.to_owned()));
        if (user, password) == ("relay-user", "relay-pass") {
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
}

struct SmtpServer {
    port: u16,
    inbox: mpsc::UnboundedReceiver<Mail>,
    logins: Arc<Mutex<Vec<(String, String)>>>,
}

impl SmtpServer {
    /// A plain SMTP server on 127.0.0.1, or one offering STARTTLS (and AUTH PLAIN)
    /// with the given certificate files.
    fn start(tls: Option<(String, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (delivered, inbox) = mpsc::unbounded_channel();
        let logins = Arc::new(Mutex::new(Vec::new()));
        let mut server = Server::new(Sink {
            delivered,
            logins: Arc::clone(&logins),
            recipients: Vec::new(),
            data: Vec::new(),
        });
        server.with_name("smtp.test").with_tcp_listener(listener);
        if let Some((cert_path, key_path)) = tls {
            server
                .with_ssl(SslConfig::SelfSigned {
                    cert_path,
                    key_path,
                })
                .unwrap()
                .with_auth(AuthMechanism::Plain);
        }
        // Serves until the test process ends.
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Self {
            port,
            inbox,
            logins,
        }
    }

    /// Asserts that no mail arrives. Absence has no event to wait for, so this waits a
    /// while; mail sent in the background reaches this server within milliseconds.
    async fn assert_quiet(&mut self, why: &str) {
        let arrived = tokio::time::timeout(Duration::from_millis(500), self.inbox.recv()).await;
        assert!(arrived.is_err(), "{why}: {arrived:?}");
    }

    async fn next_mail(&mut self) -> Mail {
        tokio::time::timeout(Duration::from_secs(20), self.inbox.recv())
            .await
            .expect("a mail arrives")
            .unwrap()
    }
}

fn mail_settings(dir: &std::path::Path, smtp_port: u16, registration: &str) -> Settings {
    let mut settings = base_settings(dir);
    settings.registration = registration.into();
    settings.public_url = Some(PUBLIC_URL.into());
    settings.smtp_host = Some("127.0.0.1".into());
    settings.smtp_port = smtp_port;
    settings.smtp_security = "none".into();
    settings.smtp_from = Some(FROM.into());
    settings
}

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

async fn post_form(server: &TestServer, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = server
        .client
        .post(server.url(path))
        .form(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Registers `username` with `email` under open registration and follows the link.
async fn registered_and_confirmed(
    server: &TestServer,
    smtp: &mut SmtpServer,
    username: &str,
    email: &str,
) {
    let (status, body) = server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/register",
            Some(json!({"username": username, "password": "password1", "email": email})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mail = smtp.next_mail().await;
    let (status, _) = server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/verify-email",
            Some(json!({"token": mail.token("/auth/verify-email")})),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn open_registration_works_once_the_mailed_link_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = SmtpServer::start(None);
    let server = TestServer::start_with(mail_settings(dir.path(), smtp.port, "open")).await;

    let register =
        |body: Value| server.call(None, Method::POST, "/api/v1/auth/register", Some(body));
    let (status, problem) = register(json!({"username": "alice", "password": "password1"})).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("email")));
    let (status, problem) =
        register(json!({"username": "alice", "password": "password1", "email": "nope"})).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("email")));

    let (status, body) = register(
        json!({"username": "alice", "password": "password1", "email": "Alice@Example.ORG"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["verification_sent"], true);
    assert_eq!(body["pending_approval"], false);

    let mail = smtp.next_mail().await;
    assert_eq!(mail.to, ["Alice@example.org"]);
    assert_eq!(mail.subject, "Confirm your burnbox account");
    assert!(mail.body.contains("\"alice\""), "{}", mail.body);

    // Locked until confirmed; the owner is told why and gets a fresh link.
    let (status, problem) = login(&server, "alice", "password1").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("email_unverified"))
    );
    let resent = smtp.next_mail().await;
    assert_ne!(
        resent.token("/auth/verify-email"),
        mail.token("/auth/verify-email")
    );
    // A wrong password still says nothing about the account.
    let (status, problem) = login(&server, "alice", "password2").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("bad_credentials"))
    );

    // Opening the link shows a confirmation page and spends nothing (mail scanners
    // open links too).
    let page = server.get(&mail.link("/auth/verify-email")).await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("form-action 'self'") && !csp.contains("script-src"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert_only_its_own_style_is_allowed(&html, &csp);
    assert!(html.contains(&mail.token("/auth/verify-email")) && html.contains("<form"));
    let (_, users) = server.admin_get("/api/v1/admin/users?q=alice").await;
    assert_eq!(users["users"][0]["disabled"], true, "still locked: {users}");

    // The person's click (the form POST) confirms it.
    let token = mail.token("/auth/verify-email");
    let (status, html) = post_form(&server, "/auth/verify-email", &[("token", &token)]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("alice") && html.contains("Log in"), "{html}");
    let (status, tokens) = login(&server, "alice", "password1").await;
    assert_eq!(status, 200, "{tokens}");

    let (_, users) = server.admin_get("/api/v1/admin/users?q=alice").await;
    assert_eq!(users["users"][0]["email"], "Alice@example.org");
    assert_eq!(users["users"][0]["email_verified"], true);

    // A link works once.
    let (status, problem) = server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/verify-email",
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("link_invalid"))
    );
    let (status, html) = post_form(&server, "/auth/verify-email", &[("token", &token)]).await;
    assert_eq!(status, 400);
    assert!(html.contains("link_invalid"));

    // A confirmed address belongs to one account. Registration does not say so (that
    // would tell anyone who has an account); the address's owner learns it from the link.
    let (status, _) = register(
        json!({"username": "alice2", "password": "password1", "email": "alice@example.org"}),
    )
    .await;
    assert_eq!(status, 201);
    let second = smtp.next_mail().await;
    let (status, problem) = server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/verify-email",
            Some(json!({"token": second.token("/auth/verify-email")})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("email_taken"))
    );
    assert_eq!(login(&server, "alice2", "password1").await.0, 403);

    // The address is personal data: it is nowhere on disk in the clear.
    server.stop().await;
    for needle in [
        "Alice@example.org",
        "alice@example.org",
        "Alice@Example.ORG",
    ] {
        assert!(
            !common::data_dir_contains(dir.path(), needle.as_bytes()),
            "{needle} is on disk"
        );
    }
}

#[tokio::test]
async fn a_forgotten_password_is_reset_through_a_mailed_link() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = SmtpServer::start(None);
    let server = TestServer::start_with(mail_settings(dir.path(), smtp.port, "open")).await;
    registered_and_confirmed(&server, &mut smtp, "bob", "bob@example.org").await;
    let (_, session) = login(&server, "bob", "password1").await;

    let ask = |email: &'static str| {
        server.call(
            None,
            Method::POST,
            "/api/v1/auth/password-reset",
            Some(json!({ "email": email })),
        )
    };
    // The same answer whether or not the address has an account.
    assert_eq!(ask("nobody@example.org").await.0, 202);
    assert_eq!(ask("BOB@example.org").await.0, 202);
    let mail = smtp.next_mail().await;
    assert_eq!(mail.to, ["bob@example.org"]);
    assert_eq!(mail.subject, "Reset your burnbox password");
    smtp.assert_quiet("no mail for the unknown address").await;
    let token = mail.token("/auth/reset-password");
    // A second link asked for meanwhile dies with the password change below.
    assert_eq!(ask("bob@example.org").await.0, 202);
    let spare = smtp.next_mail().await.token("/auth/reset-password");

    // The page asks for the new password; bad input spends nothing.
    let page = server.get(&mail.link("/auth/reset-password")).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("type=\"password\""));
    let (status, html) = post_form(
        &server,
        "/auth/reset-password",
        &[
            ("token", &token),
            ("password", "new-password-1"),
            ("password_again", "typo"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert!(html.contains("differ"));
    let (status, problem) = server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/password-reset/confirm",
            Some(json!({"token": token, "password": "short"})),
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("password")));

    let (status, html) = post_form(
        &server,
        "/auth/reset-password",
        &[
            ("token", &token),
            ("password", "new-password-1"),
            ("password_again", "new-password-1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(
        smtp.next_mail().await.subject,
        "Your burnbox password was changed"
    );

    assert_eq!(login(&server, "bob", "password1").await.0, 401);
    assert_eq!(login(&server, "bob", "new-password-1").await.0, 200);
    // Every session of the account ended.
    let (status, problem) = server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/refresh",
            Some(json!({"refresh_token": session["refresh_token"]})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("refresh_token_ended"))
    );
    // Once only, and no other link outlives the change.
    for used in [&token, &spare] {
        let (status, problem) = server
            .call(
                None,
                Method::POST,
                "/api/v1/auth/password-reset/confirm",
                Some(json!({"token": used, "password": "new-password-2"})),
            )
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("link_invalid"))
        );
    }
    server.stop().await;
}

/// An admin's decision about an account outlasts its verification link.
/// A link page refused by the rate limit says when to come back, as the API does.
#[tokio::test]
async fn a_rate_limited_link_page_says_when_to_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.rate_limit_anonymous = 1;
    let server = TestServer::start_with(settings).await;
    let post = || {
        server
            .client
            .post(server.url("/auth/verify-email"))
            .form(&[("token", "not-a-token")])
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 400);
    let refused = post().await.unwrap();
    assert_eq!(refused.status(), 429);
    let seconds: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seconds >= 1);
    assert!(
        refused.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(refused.text().await.unwrap().contains("rate_limited"));
    server.stop().await;
}

#[tokio::test]
async fn a_link_does_not_unlock_an_account_an_admin_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = SmtpServer::start(None);
    let server = TestServer::start_with(mail_settings(dir.path(), smtp.port, "open")).await;
    let (status, body) = server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/register",
            Some(json!({"username": "mallory", "password": "password1", "email": "m@example.org"})),
        )
        .await;
    assert_eq!(status, 201);
    let id = body["user"]["id"].as_u64().unwrap();
    let mail = smtp.next_mail().await;
    let (status, _) = server
        .call(
            Some(&Account::admin()),
            Method::PUT,
            &format!("/api/v1/admin/users/{id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, html) = post_form(
        &server,
        "/auth/verify-email",
        &[("token", &mail.token("/auth/verify-email"))],
    )
    .await;
    assert_eq!(status, 200, "the address itself is confirmed: {html}");
    assert!(
        html.contains("disabled") && !html.contains("Log in"),
        "{html}"
    );
    // Still locked, and no longer "waiting for a link": no new one is mailed.
    let (status, problem) = login(&server, "mallory", "password1").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("bad_credentials"))
    );
    smtp.assert_quiet("no mail for a disabled account").await;
    server.stop().await;
}

#[tokio::test]
async fn changing_a_password_keeps_this_session_and_ends_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = SmtpServer::start(None);
    let server = TestServer::start_with(mail_settings(dir.path(), smtp.port, "open")).await;
    registered_and_confirmed(&server, &mut smtp, "carol", "carol@example.org").await;
    let (_, here) = login(&server, "carol", "password1").await;
    let (_, elsewhere) = login(&server, "carol", "password1").await;
    let bearer = format!("Bearer {}", here["access_token"].as_str().unwrap());
    let change = |current: &str, new: &str| {
        server
            .client
            .post(server.url("/api/v1/auth/password"))
            .header("authorization", &bearer)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };

    let wrong = change("password9", "new-password-1").await.unwrap();
    assert_eq!(wrong.status(), 401);
    let short = change("password1", "short").await.unwrap();
    assert_eq!(short.status(), 400);
    assert_eq!(
        change("password1", "new-password-1")
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        smtp.next_mail().await.subject,
        "Your burnbox password was changed"
    );

    let refresh = |session: &Value| {
        server.call(
            None,
            Method::POST,
            "/api/v1/auth/refresh",
            Some(json!({"refresh_token": session["refresh_token"]})),
        )
    };
    assert_eq!(refresh(&here).await.0, 200, "this session lives on");
    assert_eq!(refresh(&elsewhere).await.0, 401, "the other one ended");
    // The old password is gone at once, also from the login memory that skips argon2.
    let old = Account {
        username: "carol".into(),
        password: "password1".into(),
    };
    assert_eq!(
        server
            .call(Some(&old), Method::GET, "/api/v1/numbers", None)
            .await
            .0,
        401
    );
    assert_eq!(login(&server, "carol", "new-password-1").await.0, 200);

    // Guests have no password to change.
    let (_, guest) = server
        .call(None, Method::POST, "/api/v1/auth/guest", None)
        .await;
    let response = server
        .client
        .post(server.url("/api/v1/auth/password"))
        .bearer_auth(guest["access_token"].as_str().unwrap())
        .json(&json!({"current_password": "x", "new_password": "new-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    server.stop().await;
}

#[tokio::test]
async fn when_the_relay_is_down_registration_is_taken_back_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start_with(mail_settings(dir.path(), closed, "open")).await;
    let body = json!({"username": "dave", "password": "password1", "email": "dave@example.org"});
    for _ in 0..2 {
        // The second try is refused the same way, not as `username_taken`.
        let (status, problem) = server
            .call(
                None,
                Method::POST,
                "/api/v1/auth/register",
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (503, Some("mail_unavailable"))
        );
    }
    let status = server.status().await;
    let errors = status["errors"]["recent"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["source"] == "mail"), "{status}");
    server.stop().await;
}

#[tokio::test]
async fn without_smtp_resets_are_refused_and_open_registration_waits_for_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dir.path());
    settings.registration = "open".into();
    let server = TestServer::start_with(settings).await;
    let (status, problem) = server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/password-reset",
            Some(json!({"email": "erin@example.org"})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("email_disabled"))
    );
    let (status, body) = server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/register",
            Some(json!({"username": "erin", "password": "password1", "email": "erin@example.org"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        (
            body["pending_approval"].as_bool(),
            body["verification_sent"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(login(&server, "erin", "password1").await.0, 401);
    server.stop().await;
}

/// A relay with STARTTLS under a private CA and AUTH: the CA comes from `smtp_ca_file`,
/// and the credentials travel only inside TLS.
#[tokio::test]
async fn starttls_with_a_private_ca_and_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "burnbox test relay CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &rcgen::Issuer::new(ca_params, ca_key))
        .unwrap();
    let path = |name: &str| certs.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(path("leaf.pem"), leaf.pem()).unwrap();
    std::fs::write(path("leaf.key"), leaf_key.serialize_pem()).unwrap();

    let mut smtp = SmtpServer::start(Some((path("leaf.pem"), path("leaf.key"))));
    let mut settings = mail_settings(dir.path(), smtp.port, "open");
    settings.smtp_host = Some("localhost".into());
    settings.smtp_security = "starttls".into();
    settings.smtp_username = Some("relay-user".into());
    settings.smtp_password = Some(Secret::new("relay-pass"));
    settings.smtp_ca_file = Some(path("ca.pem").into());
    let server = TestServer::start_with(settings).await;
    registered_and_confirmed(&server, &mut smtp, "frank", "frank@example.org").await;
    assert_eq!(
        *smtp.logins.lock().unwrap(),
        [("relay-user".to_owned(), "relay-pass".to_owned())]
    );
    assert_eq!(login(&server, "frank", "password1").await.0, 200);
    server.stop().await;
}

/// A new address takes over only once confirmed; links mailed before a change die, and
/// the old owner hears of the change.
#[tokio::test]
async fn changing_the_address_moves_mail_to_the_new_one_once_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = SmtpServer::start(None);
    let server = TestServer::start_with(mail_settings(dir.path(), smtp.port, "open")).await;
    registered_and_confirmed(&server, &mut smtp, "dora", "dora@example.org").await;
    let (_, session) = login(&server, "dora", "password1").await;
    let bearer = format!("Bearer {}", session["access_token"].as_str().unwrap());
    let change = |email: &str, password: &str| {
        server
            .client
            .put(server.url("/api/v1/auth/email"))
            .header("authorization", &bearer)
            .json(&json!({"email": email, "current_password": password}))
            .send()
    };
    let ask_reset = |email: &'static str| {
        server.call(
            None,
            Method::POST,
            "/api/v1/auth/password-reset",
            Some(json!({ "email": email })),
        )
    };
    let spend = |path: &'static str, body: Value| server.call(None, Method::POST, path, Some(body));
    // A reset link from before the change must not outlive it.
    assert_eq!(ask_reset("dora@example.org").await.0, 202);
    let stale_reset = smtp.next_mail().await.token("/auth/reset-password");

    let wrong = change("dora@new.example", "password9").await.unwrap();
    assert_eq!(wrong.status(), 401);
    let bad = change("not-an-address", "password1").await.unwrap();
    assert_eq!(bad.status(), 400);
    smtp.assert_quiet("refused changes mail nobody").await;
    let changed = change("dora@new.example", "password1").await.unwrap();
    assert_eq!(changed.status(), 202);
    // Two letters, sent independently: the notice to the old address, the link to the new.
    let mut mails = vec![smtp.next_mail().await, smtp.next_mail().await];
    mails.sort_by(|a, b| a.to.cmp(&b.to));
    let [notice, first_link] = <[Mail; 2]>::try_from(mails).unwrap();
    assert_eq!(notice.to, ["dora@example.org"]);
    assert_eq!(notice.subject, "Your burnbox e-mail address was changed");
    assert_eq!(first_link.to, ["dora@new.example"]);
    // Changed again before confirming: only the newest address gets a link, and nobody
    // a notice (the address in between was never confirmed).
    let again = change("dora@other.example", "password1").await.unwrap();
    assert_eq!(again.status(), 202);
    let link_mail = smtp.next_mail().await;
    assert_eq!(link_mail.to, ["dora@other.example"]);
    smtp.assert_quiet("no notice for an unconfirmed address")
        .await;

    for (path, body) in [
        (
            "/api/v1/auth/password-reset/confirm",
            json!({"token": stale_reset, "password": "new-password-1"}),
        ),
        (
            "/api/v1/auth/verify-email",
            json!({"token": first_link.token("/auth/verify-email")}),
        ),
    ] {
        let (status, problem) = spend(path, body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("link_invalid")),
            "{path}"
        );
    }
    // Until confirmed, no address gets a reset link.
    for email in ["dora@example.org", "dora@other.example"] {
        assert_eq!(ask_reset(email).await.0, 202);
    }
    smtp.assert_quiet("no reset before the link").await;

    let (status, _) = spend(
        "/api/v1/auth/verify-email",
        json!({"token": link_mail.token("/auth/verify-email")}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ask_reset("dora@other.example").await.0, 202);
    let reset = smtp.next_mail().await;
    assert_eq!(reset.to, ["dora@other.example"]);
    assert_eq!(reset.subject, "Reset your burnbox password");
    // The confirmed address again: nothing to do, nothing mailed.
    let same = change("DORA@other.example", "password1").await.unwrap();
    assert_eq!(same.status(), 204);
    assert_eq!(ask_reset("dora@example.org").await.0, 202);
    smtp.assert_quiet("the old address is done").await;
    server.stop().await;
}

/// An address that has had its share of mail is refused before anything changes: the
/// links already mailed to it keep working.
#[tokio::test]
async fn a_change_over_the_mail_limit_is_refused_and_keeps_the_last_link() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = SmtpServer::start(None);
    let server = TestServer::start_with(mail_settings(dir.path(), smtp.port, "open")).await;
    registered_and_confirmed(&server, &mut smtp, "finn", "finn@example.org").await;
    let (_, session) = login(&server, "finn", "password1").await;
    let bearer = format!("Bearer {}", session["access_token"].as_str().unwrap());
    let change = || {
        server
            .client
            .put(server.url("/api/v1/auth/email"))
            .header("authorization", &bearer)
            .json(&json!({"email": "finn@new.example", "current_password": "password1"}))
            .send()
    };
    // Three links at once, then the address has to wait.
    let mut last = None;
    for _ in 0..3 {
        assert_eq!(change().await.unwrap().status(), 202);
        loop {
            let mail = smtp.next_mail().await;
            if mail.to == ["finn@new.example"] {
                last = Some(mail);
                break;
            }
        }
    }
    let refused = change().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");
    let (status, _) = server
        .call(
            None,
            Method::POST,
            "/api/v1/auth/verify-email",
            Some(json!({"token": last.unwrap().token("/auth/verify-email")})),
        )
        .await;
    assert_eq!(status, 200, "the last link mailed still works");
    server.stop().await;
}
