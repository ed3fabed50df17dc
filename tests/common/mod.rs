//! Test helpers: start the real server on 127.0.0.1:0 and talk to it over real sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burnbox::config::{Config, NumberSettings, ProviderSettings, Settings};
use burnbox::domain::Secret;
use burnbox::providers::{ProviderKind, generic, twilio};
use burnbox::server::{Listeners, serve};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_PASSWORD: &str = "test-admin-password";
pub const MASTER_KEY_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
pub const TWILIO_TOKEN: &str = "test-twilio-auth-token";
pub const TWILIO_NUMBER: &str = "+14155550100";
/// Standard Webhooks secret of the `generic` provider (base64 of "burnbox-generic-test-secret!").
pub const GENERIC_SECRET: &str = "whsec_YnVybmJveC1nZW5lcmljLXRlc3Qtc2VjcmV0IQ==";
pub const GENERIC_NUMBER: &str = "+442071838750";

pub struct TestServer {
    pub base: String,
    pub https_base: Option<String>,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The settings every test starts from: both listeners on port 0 (HTTPS off unless a
/// test turns it on), a known admin password and master key, and two providers.
pub fn base_settings(data_dir: &Path) -> Settings {
    Settings {
        data_dir: data_dir.to_owned(),
        listen: "127.0.0.1:0".into(),
        tls_listen: String::new(),
        admin_password: Some(Secret::new(ADMIN_PASSWORD)),
        master_key: Some(Secret::new(MASTER_KEY_HEX)),
        log: "warn".into(),
        providers: vec![
            provider(
                "twilio",
                ProviderKind::Twilio,
                Some(TWILIO_TOKEN),
                TWILIO_NUMBER,
            ),
            provider(
                "generic",
                ProviderKind::Generic,
                Some(GENERIC_SECRET),
                GENERIC_NUMBER,
            ),
        ],
        ..Settings::default()
    }
}

/// A `[[providers]]` table with one number and no kind-specific options.
pub fn provider(
    name: &str,
    kind: ProviderKind,
    secret: Option<&str>,
    number: &str,
) -> ProviderSettings {
    ProviderSettings {
        secret: secret.map(Secret::new),
        numbers: vec![NumberSettings::Plain(number.into())],
        ..ProviderSettings::new(name, kind)
    }
}

impl TestServer {
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(base_settings(data_dir)).await
    }

    pub async fn start_with(settings: Settings) -> Self {
        let data_dir = settings.data_dir.clone();
        let config = Config::try_from(settings).expect("valid test settings");
        let listeners = Listeners::bind(&config).expect("bind 127.0.0.1:0");
        let base = format!(
            "http://{}",
            listeners.http.as_ref().unwrap().local_addr().unwrap()
        );
        let https_base = listeners
            .https
            .as_ref()
            .map(|l| format!("https://{}", l.local_addr().unwrap()));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(config, listeners, async move {
                let _ = stopped.await;
            })
            .await
            .expect("server ran and stopped cleanly");
        });
        burnbox::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let server = Self {
            base,
            https_base,
            data_dir,
            client,
            shutdown: Some(shutdown),
            task: Some(task),
        };
        server.wait_ready().await;
        server
    }

    /// Waits for /readyz: the listener is bound before `serve` runs, so connections
    /// queue until start-up (seeding, key check) is done and the first answer is real.
    async fn wait_ready(&self) {
        let response = self
            .client
            .get(self.url("/readyz"))
            .send()
            .await
            .expect("server answers");
        assert_eq!(response.status(), 200, "server is ready");
    }

    /// Graceful shutdown; returns once the store is closed.
    pub async fn stop(mut self) {
        self.shutdown.take().unwrap().send(()).ok();
        self.task
            .take()
            .unwrap()
            .await
            .expect("server task did not panic");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An unauthenticated GET.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A request as `who` (username, password), or anonymous; returns the status and
    /// the JSON body (null when there is none).
    pub async fn call(
        &self,
        who: Option<&Account>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(account) = who {
            request = request.basic_auth(&account.username, Some(&account.password));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates an account through the admin API.
    pub async fn account(&self, username: &str, role: &str) -> Account {
        let account = Account {
            username: username.to_owned(),
            password: format!("{username}-password"),
        };
        let body =
            serde_json::json!({"username": username, "password": account.password, "role": role});
        let (status, created) = self
            .call(
                Some(&Account::admin()),
                reqwest::Method::POST,
                "/api/v1/admin/users",
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        account
    }

    /// Every message, following `next_before` through all pages.
    pub async fn all_messages(&self, inbox: Option<&str>) -> Vec<Value> {
        let mut messages = Vec::new();
        let mut before: Option<u64> = None;
        loop {
            let mut path = match inbox {
                Some(inbox) => format!("/api/v1/messages/{inbox}?limit=500"),
                None => "/api/v1/messages?limit=500".to_owned(),
            };
            if let Some(before) = before {
                path.push_str(&format!("&before={before}"));
            }
            let (status, page) = self.admin_get(&path).await;
            assert_eq!(status, 200, "{page}");
            messages.extend(page["messages"].as_array().unwrap().iter().cloned());
            match page["next_before"].as_u64() {
                Some(next) => before = Some(next),
                None => return messages,
            }
        }
    }

    pub async fn status(&self) -> Value {
        let (status, body) = self.admin_get("/api/v1/admin/system-status").await;
        assert_eq!(status, 200);
        body
    }

    /// The id of a pool number, looked up through the API.
    pub async fn number_id(&self, number: &str) -> u64 {
        let (_, body) = self.admin_get("/api/v1/numbers").await;
        body["numbers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["number"] == number)
            .unwrap_or_else(|| panic!("{number} is in the pool: {body}"))["id"]
            .as_u64()
            .unwrap()
    }

    /// Posts an inbound SMS exactly as Twilio would, signed with the test token.
    pub async fn post_twilio(
        &self,
        sid: &str,
        from: &str,
        to: &str,
        text: &str,
    ) -> reqwest::Response {
        let url = self.url("/webhooks/twilio");
        let params = twilio_params(sid, from, to, text);
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let signature = twilio::sign(TWILIO_TOKEN, &url, &pairs);
        self.post_form(&url, &pairs, &signature).await
    }

    pub async fn post_form(
        &self,
        url: &str,
        pairs: &[(&str, &str)],
        signature: &str,
    ) -> reqwest::Response {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a Standard Webhooks-signed message to the `generic` provider, with the
    /// given signature timestamp.
    pub async fn post_generic(
        &self,
        id: &str,
        from: &str,
        to: &str,
        text: &str,
        timestamp: i64,
    ) -> reqwest::Response {
        let body = serde_json::to_vec(
            &serde_json::json!({"id": id, "from": from, "to": to, "text": text}),
        )
        .unwrap();
        let webhook_id = format!("msg_{id}");
        let signature = generic::sign(GENERIC_SECRET, &webhook_id, timestamp, &body).unwrap();
        self.client
            .post(self.url("/webhooks/generic"))
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

/// Credentials for [`TestServer::call`].
#[derive(Debug, Clone)]
pub struct Account {
    pub username: String,
    pub password: String,
}

impl Account {
    pub fn admin() -> Self {
        Self {
            username: "admin".into(),
            password: ADMIN_PASSWORD.into(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The Twilio message SID (`SM` and 32 hex digits, the only shape burnbox accepts) that
/// a test's short label such as `SMf1` stands for: the label's bytes in hex, zero-padded.
/// A label that is a SID already is kept.
pub fn twilio_sid(label: &str) -> String {
    let is_sid = label.len() == 34
        && label.starts_with("SM")
        && label[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if is_sid {
        return label.to_owned();
    }
    let hex = hex::encode(label.as_bytes());
    assert!(hex.len() <= 32, "a test label of at most 16 bytes: {label}");
    format!("SM{hex:0>32}")
}

pub fn twilio_params(sid: &str, from: &str, to: &str, text: &str) -> Vec<(&'static str, String)> {
    let sid = twilio_sid(sid);
    vec![
        ("MessageSid", sid.clone()),
        ("SmsSid", sid),
        (
            "AccountSid",
            "AC0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("From", from.to_owned()),
        ("To", to.to_owned()),
        ("Body", text.to_owned()),
        ("NumMedia", "0".to_owned()),
    ]
}

pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Polls `check` until it returns true or `within` passes. Only for effects driven by
/// the clock (retention), where there is no event to await.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Whether any file under `dir` holds `needle` byte for byte.
pub fn data_dir_contains(dir: &Path, needle: &[u8]) -> bool {
    files_under(dir).iter().any(|file| {
        std::fs::read(file)
            .unwrap()
            .windows(needle.len())
            .any(|window| window == needle)
    })
}

/// Asserts that a page's CSP lets through its one inline style block, by hash, and no
/// other style: no `'unsafe-inline'`, and no `style=` attributes the hash cannot cover.
pub fn assert_only_its_own_style_is_allowed(html: &str, csp: &str) {
    use base64::Engine as _;
    use sha2::Digest as _;
    assert!(!csp.contains("unsafe"), "{csp}");
    let style = html
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(style, _)| style)
        .expect("an inline style");
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style));
    assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
    assert_eq!(html.matches("<style>").count(), 1);
    assert!(
        !html.contains(" style="),
        "inline style attributes are not covered by the hash"
    );
}
