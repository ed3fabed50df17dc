//! Read-path benchmark: with N stored messages (default 1,000,000), the latency of
//! `GET /api/v1/messages/{number_id}` (first page) and of search, over real HTTP against
//! the real binary. Prints one JSON object per phase and a summary.
//!
//! The store is filled through the library (group commit, many writers) because
//! sending a million signed webhooks would measure ingest, not reads; the server then
//! opens that data directory and rebuilds its in-memory search index from it.
//!
//! `BENCH_MESSAGES` (default 1000000), `BENCH_REQUESTS` (default 2000 per phase).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use burnbox::domain::InboundSms;
use burnbox::store::{MasterKey, SeedNumber, Store};

const MASTER_KEY_HEX: &str = "7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e";
const ADMIN_PASSWORD: &str = "bench-password";
const NUMBERS: usize = 1000;
const DAY: Duration = Duration::from_secs(86_400);

const SERVICES: [&str; 8] = [
    "Google", "WhatsApp", "Telegram", "Amazon", "PayPal", "Uber", "Discord", "Steam",
];
const TEMPLATES: [&str; 6] = [
    "Your {s} verification code is {c}. Do not share it.",
    "{c} is your {s} code",
    "{s}: use {c} to sign in. Expires in 10 minutes.",
    "Your order from {s} has shipped and arrives tomorrow",
    "{s} security alert: a new device signed in",
    "Reminder: your {s} appointment is at 15:30",
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn number(i: usize) -> String {
    format!("+1202555{:04}", 1000 + i)
}

fn text(i: usize) -> String {
    let service = SERVICES[i % SERVICES.len()];
    let code = format!("{:06}", (i * 7919) % 1_000_000);
    TEMPLATES[(i / 7) % TEMPLATES.len()]
        .replace("{s}", service)
        .replace("{c}", &code)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

async fn fill(data_dir: &std::path::Path, messages: usize) -> Duration {
    let master = MasterKey::parse(MASTER_KEY_HEX).unwrap();
    std::fs::create_dir_all(data_dir).unwrap();
    let (store, writer) = Store::open(data_dir, &master).unwrap();
    let seeds = (0..NUMBERS)
        .map(|i| SeedNumber::new("twilio", &number(i), None))
        .collect();
    store.ensure_numbers(seeds).await.unwrap();
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..512 {
        let (store, next) = (store.clone(), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= messages {
                    return;
                }
                let sms = InboundSms::new(
                    &format!("SM{i:032}"),
                    SERVICES[i % SERVICES.len()],
                    &number(i % NUMBERS),
                    &text(i),
                    None,
                )
                .unwrap();
                store.ingest("twilio".into(), sms, DAY).await.unwrap();
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    drop(store);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .unwrap()
        .unwrap();
    elapsed
}

struct Server {
    child: std::process::Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Server {
    let config = dir.join("burnbox.toml");
    std::fs::write(
        &config,
        "sandbox = false\nrate_limit_admin = 0\n[[providers]]\nname = \"twilio\"\nkind = \"twilio\"\nsecret = \"bench\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_burnbox"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("RUST_LOG")
        .env(
            "BURNBOX_LOG",
            "warn,burnbox::server=info,burnbox::search=info",
        )
        .env("BURNBOX_MASTER_KEY", MASTER_KEY_HEX)
        .env("BURNBOX_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("server started").unwrap();
        if let Some(url) = line.split("listening on ").nth(1) {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    Server { child, base }
}

/// Latencies of `requests` GETs of `path`, `concurrency` at a time.
async fn measure(
    client: &reqwest::Client,
    base: &str,
    paths: Vec<String>,
    concurrency: usize,
) -> (Vec<Duration>, usize) {
    let paths = Arc::new(paths);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, base, paths, next) = (
            client.clone(),
            base.to_owned(),
            Arc::clone(&paths),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(path) = paths.get(i) else {
                    return (times, errors);
                };
                let started = Instant::now();
                let response = client
                    .get(format!("{base}{path}"))
                    .basic_auth("admin", Some(ADMIN_PASSWORD))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        times.push(started.elapsed());
                    }
                    _ => errors += 1,
                }
            }
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (times, failed) = task.await.unwrap();
        all.extend(times);
        errors += failed;
    }
    all.sort();
    (all, errors)
}

fn report(phase: &str, times: &[Duration], errors: usize, elapsed: Duration) -> f64 {
    let p99 = percentile(times, 0.99);
    println!(
        "{}",
        serde_json::json!({
            "phase": phase, "requests": times.len(), "errors": errors,
            "per_s": times.len() as f64 / elapsed.as_secs_f64(),
            "p50_ms": percentile(times, 0.5), "p99_ms": p99, "max_ms": percentile(times, 1.0),
        })
    );
    p99
}

#[tokio::main]
async fn main() {
    burnbox::tls::install_crypto_provider();
    let messages = env_usize("BENCH_MESSAGES", 1_000_000);
    let requests = env_usize("BENCH_REQUESTS", 2000);
    let dir = tempfile::tempdir().unwrap();

    let filled = fill(&dir.path().join("data"), messages).await;
    let store_bytes = std::fs::metadata(dir.path().join("data").join(burnbox::store::STORE_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({"phase": "fill", "messages": messages, "seconds": filled.as_secs_f64(), "per_s": messages as f64 / filled.as_secs_f64(), "store_bytes": store_bytes})
    );

    let started = Instant::now();
    let server = start(dir.path());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    // The index is rebuilt at start, oldest message first, in one commit at the end:
    // once the newest message is searchable, the whole store is.
    let newest = text(messages - 1);
    let probe = format!(
        "/api/v1/messages/{}?q={}",
        (messages - 1) % NUMBERS + 1,
        newest.split(' ').next_back().unwrap_or("code")
    );
    loop {
        let response = client
            .get(format!("{}{probe}", server.base))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await;
        if let Ok(response) = response
            && let Ok(page) = response.json::<serde_json::Value>().await
            && page["messages"].as_array().is_some_and(|m| !m.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "{}",
        serde_json::json!({"phase": "start_and_index_rebuild", "seconds": started.elapsed().as_secs_f64()})
    );

    // Warm the credential memory and connections.
    measure(
        &client,
        &server.base,
        vec!["/api/v1/messages/1?limit=50".into(); 50],
        4,
    )
    .await;

    let inbox_paths: Vec<String> = (0..requests)
        .map(|i| format!("/api/v1/messages/{}?limit=50", i % NUMBERS + 1))
        .collect();
    let started = Instant::now();
    let (times, errors) = measure(&client, &server.base, inbox_paths, 8).await;
    let inbox_p99 = report("number_first_page", &times, errors, started.elapsed());

    let words = [
        "code",
        "verification",
        "google",
        "shipped",
        "security",
        "appointment",
    ];
    let search_paths: Vec<String> = (0..requests)
        .map(|i| {
            format!(
                "/api/v1/messages/{}?q={}&limit=20",
                i % NUMBERS + 1,
                words[i % words.len()]
            )
        })
        .collect();
    let started = Instant::now();
    let (times, errors) = measure(&client, &server.base, search_paths, 8).await;
    let search_p99 = report("search_in_number", &times, errors, started.elapsed());

    let global: Vec<String> = (0..requests / 4)
        .map(|i| format!("/api/v1/messages?q={}&limit=20", words[i % words.len()]))
        .collect();
    let started = Instant::now();
    let (times, errors) = measure(&client, &server.base, global, 8).await;
    let global_p99 = report("search_all_admin", &times, errors, started.elapsed());

    println!(
        "{}",
        serde_json::json!({
            "phase": "summary", "messages": messages,
            "number_first_page_p99_ms": inbox_p99, "search_in_number_p99_ms": search_p99, "search_all_p99_ms": global_p99,
            "target_ms": 20.0, "pass": inbox_p99 < 20.0 && search_p99 < 20.0,
        })
    );
}
