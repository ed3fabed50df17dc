//! Tests that run the real `burnbox` executable as a child process: a first start with
//! no configuration, the CLI tour, and crash safety under SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burnbox::providers::twilio;
use tokio::sync::Notify;

const BIN: &str = env!("CARGO_BIN_EXE_burnbox");
const TOKEN: &str = "crash-test-token";
const ADMIN_PASSWORD: &str = "crash-test-admin";

/// A running `burnbox serve` child and what it printed at start.
struct Process {
    child: Child,
    http: String,
    https: Option<String>,
    /// Lines printed before "listening" (the generated admin password is among them).
    banner: Vec<String>,
    /// Every later stderr line, collected by a thread so the pipe never fills.
    rest: Arc<Mutex<Vec<String>>>,
}

fn burnbox_command(data_dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BURNBOX_LOG", "info")
        .current_dir(data_dir.parent().unwrap())
        .stdin(Stdio::null());
    command
}

/// `burnbox serve` with a configuration file, a data directory and the known admin
/// password.
fn serve_with(config: &Path, data_dir: &Path) -> Command {
    let mut command = burnbox_command(data_dir);
    command
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("BURNBOX_ADMIN_PASSWORD", ADMIN_PASSWORD);
    command
}

/// Starts `burnbox serve ARGS` and waits for its listening lines.
fn start(mut command: Command, tls: bool) -> Process {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn burnbox");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut banner = Vec::new();
    let (mut http, mut https) = (None, None);
    while http.is_none() || (tls && https.is_none()) {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("burnbox exited during start-up: {banner:#?}"))
            .unwrap();
        if let Some(url) = line.split("listening on ").nth(1) {
            let url = url.trim().to_owned();
            if url.starts_with("https://") {
                https = Some(url);
            } else {
                http = Some(url);
            }
        }
        banner.push(line);
    }
    let rest = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&rest);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Process {
        child,
        http: http.unwrap(),
        https,
        banner,
        rest,
    }
}

fn client() -> reqwest::Client {
    burnbox::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn numbers() -> Vec<String> {
    (0..20)
        .map(|i| format!("+1415555{:04}", 1000 + i))
        .collect()
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("burnbox.toml");
    let list = numbers()
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &path,
        format!(
            "sandbox = false\nrate_limit_webhooks = 0\nlisten = \"127.0.0.1:0\"\ntls_listen = \"\"\n\
             [[providers]]\nname = \"twilio\"\nkind = \"twilio\"\nsecret = \"{TOKEN}\"\nnumbers = [{list}]\n"
        ),
    )
    .unwrap();
    path
}

async fn all_provider_ids(client: &reqwest::Client, base: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut url = format!("{base}/api/v1/messages?limit=500");
        if let Some(before) = before {
            url.push_str(&format!("&before={before}"));
        }
        let page: serde_json::Value = client
            .get(&url)
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for message in page["messages"].as_array().unwrap() {
            ids.push(message["provider_message_id"].as_str().unwrap().to_owned());
        }
        match page["next_before"].as_u64() {
            Some(next) => before = Some(next),
            None => return ids,
        }
    }
}

/// Every webhook that got a 2xx is stored exactly once, across three SIGKILLs in the
/// middle of a stream of concurrent signed webhooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_webhooks_survive_sigkill_exactly_once() {
    const ROUNDS: usize = 3;
    const PER_ROUND: usize = 2_500;
    const KILL_AFTER_ACKS: usize = 800;
    const CLIENTS: usize = 32;

    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let config = write_config(temp.path());
    let client = client();
    let numbers = numbers();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut sent_total = 0;
    let mut sent_ids = HashSet::new();

    for round in 0..ROUNDS {
        let mut process = start(serve_with(&config, &data_dir), false);
        let url = format!("{}/webhooks/twilio", process.http);

        // This round's new messages, plus a resend of everything acknowledged so far:
        // retries after a crash must not create second copies.
        // Twilio's shape: `SM` and 32 hex digits (here the round and the index).
        let mut plan: Vec<String> = (0..PER_ROUND)
            .map(|i| format!("SM{round:016x}{i:016x}"))
            .collect();
        plan.extend(acked.lock().unwrap().iter().take(300).cloned());
        sent_total += plan.len();
        sent_ids.extend(plan.iter().cloned());
        let plan = Arc::new(plan);
        let next = Arc::new(AtomicUsize::new(0));
        let round_acks = Arc::new(AtomicUsize::new(0));
        let enough = Arc::new(Notify::new());
        let dead = Arc::new(AtomicBool::new(false));

        let mut workers = Vec::new();
        for _ in 0..CLIENTS {
            let (client, url, plan, next, acked, round_acks, enough, dead, numbers) = (
                client.clone(),
                url.clone(),
                Arc::clone(&plan),
                Arc::clone(&next),
                Arc::clone(&acked),
                Arc::clone(&round_acks),
                Arc::clone(&enough),
                Arc::clone(&dead),
                numbers.clone(),
            );
            workers.push(tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= plan.len() || dead.load(Ordering::Relaxed) {
                        return;
                    }
                    let sid = &plan[index];
                    let to = &numbers[index % numbers.len()];
                    let text = format!("crash test {sid}");
                    let params = [
                        ("MessageSid", sid.as_str()),
                        ("From", "+15005550006"),
                        ("To", to),
                        ("Body", &text),
                    ];
                    let body = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(params)
                        .finish();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("x-twilio-signature", twilio::sign(TOKEN, &url, &params))
                        .body(body)
                        .send()
                        .await;
                    match response {
                        Ok(response) if response.status().is_success() => {
                            acked.lock().unwrap().insert(sid.clone());
                            if round_acks.fetch_add(1, Ordering::Relaxed) + 1 == KILL_AFTER_ACKS {
                                enough.notify_one();
                            }
                        }
                        // The process is gone: this and later requests were never acknowledged.
                        _ => return,
                    }
                }
            }));
        }
        enough.notified().await;
        process.child.kill().expect("SIGKILL");
        dead.store(true, Ordering::Relaxed);
        process.child.wait().unwrap();
        for worker in workers {
            worker.await.unwrap();
        }
        let acks = round_acks.load(Ordering::Relaxed);
        assert!(
            acks >= KILL_AFTER_ACKS && acks < plan.len(),
            "killed mid-stream ({acks} of {} acknowledged)",
            plan.len()
        );

        // Restart on the same data directory and read everything back.
        let mut command = burnbox_command(&data_dir);
        command
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_dir);
        let mut process = start(command, false);
        let stored = all_provider_ids(&client, &process.http).await;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for id in &stored {
            *counts.entry(id.as_str()).or_default() += 1;
        }
        let doubles: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            doubles.is_empty(),
            "round {round}: stored more than once: {doubles:?}"
        );
        let acked_now = acked.lock().unwrap().clone();
        let lost: Vec<_> = acked_now
            .iter()
            .filter(|id| !counts.contains_key(id.as_str()))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged but lost: {} e.g. {:?}",
            lost.len(),
            lost.first()
        );
        assert!(
            stored.iter().all(|id| sent_ids.contains(id)),
            "nothing we did not send"
        );
        eprintln!(
            "round {round}: {acks} acknowledged before SIGKILL; {} stored in total, {} acknowledged in total",
            stored.len(),
            acked_now.len()
        );
        process.child.kill().unwrap();
        process.child.wait().unwrap();
        let _ = &mut process;
    }
    assert!(sent_total >= 2_000 * ROUNDS);
}

/// A first start with nothing configured: private data directory and key, a printed
/// admin password, HTTPS with TLS 1.3 only, the sandbox, `simulate`, no plaintext on
/// disk, and a clean stop on SIGTERM.
#[tokio::test]
async fn a_fresh_start_needs_no_configuration_and_keeps_no_plaintext() {
    // The TLS clients below are built before `client()` would install it; run alone,
    // nothing else in this binary has.
    burnbox::tls::install_crypto_provider();
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("burnbox-data");
    let mut command = burnbox_command(&data_dir);
    // No --data-dir: the default ./burnbox-data (relative to the working directory).
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
    ]);
    let mut process = start(command, true);

    let password = process
        .banner
        .iter()
        .find_map(|line| line.split("password: ").nth(1))
        .expect("the generated admin password is printed")
        .trim()
        .to_owned();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data_dir), 0o700);
        assert_eq!(mode(&data_dir.join("master.key")), 0o600);
        assert_eq!(mode(&data_dir.join("tls/key.pem")), 0o600);
    }

    // HTTPS answers with TLS 1.3 and refuses a client limited to TLS 1.2.
    let https = process.https.clone().unwrap();
    let tls13 = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    assert_eq!(
        tls13
            .get(format!("{https}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let tls12 = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(tls12.get(format!("{https}/healthz")).send().await.is_err());

    // The README's tour: simulate a message, then read it back.
    let text = "Your Burnbox code is 731946";
    let sender = "+12025550177";
    let output = Command::new(BIN)
        .current_dir(temp.path())
        .args([
            "simulate",
            "--server",
            &process.http,
            "--from",
            sender,
            text,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("delivered"));

    let client = client();
    let page: serde_json::Value = client
        .get(format!("{}/api/v1/messages", process.http))
        .basic_auth("admin", Some(&password))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = &page["messages"][0];
    assert_eq!(message["text"], text);
    assert_eq!(message["from"], sender);
    assert_eq!(message["number"], burnbox::sandbox::NUMBERS[0]);
    assert_eq!(message["provider"], "sandbox");

    // SIGTERM: graceful stop, exit status 0.
    let pid = process.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = process.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let mut stopped = false;
    for _ in 0..100 {
        if process
            .rest
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("stopped cleanly"))
        {
            stopped = true;
            break;
        }
        // The reader thread may still be draining the closed pipe.
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        stopped,
        "the server logged a clean stop: {:?}",
        process.rest.lock().unwrap()
    );

    // No plaintext at rest: not the text, the sender or the recipient, in UTF-8,
    // digits only, or UTF-16.
    let recipient = burnbox::sandbox::NUMBERS[0];
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for value in [text, "731946", sender, recipient] {
        needles.push(value.as_bytes().to_vec());
        let digits: String = value.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 6 {
            needles.push(digits.into_bytes());
        }
        needles.push(value.encode_utf16().flat_map(u16::to_le_bytes).collect());
    }
    let mut files = 0;
    for entry in common::files_under(&data_dir) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        for needle in &needles {
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_slice()),
                "{} contains {:?}",
                entry.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert!(
        files >= 3,
        "the store, the key and the certificate were searched"
    );
}

/// `simulate` signs the way the provider would: over the provider's own `public_url`
/// when it has one, which is what the server checks the signature against.
#[tokio::test]
async fn simulate_signs_over_the_providers_own_public_url() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let config = temp.path().join("burnbox.toml");
    std::fs::write(
        &config,
        format!(
            "sandbox = false\nlisten = \"127.0.0.1:0\"\ntls_listen = \"\"\n\
             public_url = \"https://everyone.example.org\"\n\
             [[providers]]\nname = \"tw\"\nkind = \"twilio\"\nsecret = \"{TOKEN}\"\n\
             public_url = \"https://tw-only.example.org\"\nnumbers = [\"+14155551000\"]\n"
        ),
    )
    .unwrap();
    let mut process = start(serve_with(&config, &data_dir), false);

    let output = burnbox_command(&data_dir)
        .args(["simulate", "--config"])
        .arg(&config)
        .args([
            "--provider",
            "tw",
            "--server",
            &process.http,
            "hello via tw",
        ])
        .output()
        .unwrap();
    let _ = process.child.kill();
    let _ = process.child.wait();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("delivered"));
}

/// With only the HTTPS listener on, `simulate` and `healthcheck` find it from the
/// configuration and trust the server's own self-signed certificate.
#[tokio::test]
async fn the_cli_reaches_a_server_that_listens_on_https_only() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let https_only = |command: &mut Command| {
        command
            .env("BURNBOX_LISTEN", "")
            .env("BURNBOX_TLS_LISTEN", format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data_dir);
    };
    let mut serve = burnbox_command(&data_dir);
    serve.arg("serve");
    https_only(&mut serve);
    let mut child = serve
        .env("BURNBOX_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("listening on https://"))
    {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("burnbox exited during start-up: {seen:#?}"))
            .unwrap();
        seen.push(line);
    }
    std::thread::spawn(move || lines.for_each(drop));

    let run = |args: &[&str]| {
        let mut command = burnbox_command(&data_dir);
        command.args(args);
        https_only(&mut command);
        command.output().unwrap()
    };
    let health = run(&["healthcheck"]);
    let simulated = run(&["simulate", "over TLS"]);
    let _ = child.kill();
    let _ = child.wait();
    for output in [health, simulated] {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
