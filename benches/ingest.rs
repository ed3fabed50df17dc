//! Ingest benchmark: signed Twilio webhooks over real HTTP against the release binary.
//!
//! Spawns `burnbox serve` on an ephemeral port with a fresh data directory, then runs:
//!
//! 0. `disk_sync`: how long a durable write takes on this machine's disk (the floor
//!    under every acknowledgement; no server running),
//! 1. a warm-up (untimed),
//! 2. `healthz_closed_loop`: C clients hammering `GET /healthz` (the framework's ceiling),
//! 3. `ingest_closed_loop`: the same C clients posting signed webhooks, with what the
//!    store writer did meanwhile (commits/s, jobs per commit, apply and commit time per
//!    commit, busy share of the wall time),
//! 4. `ingest_open_loop_1000`: webhooks at a fixed 1,000/s, latency measured from the
//!    scheduled send time so a slow server cannot hide its queueing (no coordinated
//!    omission).
//!
//! Every phase prints one JSON object on stdout; a final `summary` object compares the
//! results with the targets. Server output goes to stderr. It never fails on a missed
//! target: it is a measurement, not a test.
//!
//! Knobs (environment): `BENCH_CONCURRENCY` (default 32), `BENCH_SECONDS` (default 5),
//! `BENCH_OPEN_RATE` (default 1000), `BENCH_MAX_RATE` (default 40000: the closed-loop
//! ingest phase pre-signs `BENCH_MAX_RATE * BENCH_SECONDS` webhooks and stops early, with
//! `"pool_exhausted": true`, if the server is faster than that).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};

const AUTH_TOKEN: &str = "bench-auth-token";
const ADMIN_PASSWORD: &str = "bench-password";
const FROM: &str = "+14155550100";
const BODY_TEXT: &str = "Your verification code is 123456";
const POOL_NUMBERS: u32 = 1000;
const WARMUP: usize = 200;

/// Targets from the issue (2-core machine).
const TARGET_RATIO: f64 = 0.5;
const TARGET_P99_MS: f64 = 20.0;

struct Settings {
    concurrency: usize,
    seconds: u64,
    open_rate: u64,
    max_rate: u64,
}

impl Settings {
    fn from_env() -> Self {
        fn var(name: &str, default: u64) -> u64 {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        }
        Self {
            concurrency: usize::try_from(var("BENCH_CONCURRENCY", 32)).unwrap_or(32),
            seconds: var("BENCH_SECONDS", 5),
            open_rate: var("BENCH_OPEN_RATE", 1000),
            max_rate: var("BENCH_MAX_RATE", 40_000),
        }
    }
}

/// One pre-signed webhook: the form body and its `X-Twilio-Signature`.
#[derive(Clone)]
struct Signed {
    body: String,
    signature: HeaderValue,
}

/// Signs `count` webhooks with unique `MessageSid`s starting at `first`, spreading
/// them round robin over the pool numbers.
fn presign(url: &str, first: u64, count: usize) -> Vec<Signed> {
    (0..count as u64)
        .map(|i| {
            let n = first + i;
            let sid = format!("SM{n:032x}");
            let to = format!("+1202555{}", 1000 + n % u64::from(POOL_NUMBERS));
            let params = [
                ("MessageSid", sid.as_str()),
                ("From", FROM),
                ("To", to.as_str()),
                ("Body", BODY_TEXT),
                ("NumMedia", "0"),
            ];
            let signature = burnbox::providers::twilio::sign(AUTH_TOKEN, url, &params);
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            Signed {
                body,
                signature: HeaderValue::from_str(&signature)
                    .expect("base64 is a valid header value"),
            }
        })
        .collect()
}

/// The running server: the child process, its address and its data directory.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr_lines: Arc<AtomicU64>,
    warn_lines: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let numbers = (0..POOL_NUMBERS)
            .map(|i| format!("\"+1202555{}\"", 1000 + i))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "sandbox = false\nrate_limit_webhooks = 0\n\n[[providers]]\nname = \"twilio\"\nkind = \"twilio\"\n\
             secret = \"{AUTH_TOKEN}\"\nnumbers = [{numbers}]\n"
        );
        let config_path = dir.path().join("burnbox.toml");
        std::fs::write(&config_path, config).map_err(|e| format!("writing the config: {e}"))?;

        let mut child = Command::new(env!("CARGO_BIN_EXE_burnbox"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--tls-listen", ""])
            .env("BURNBOX_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("BURNBOX_LOG", "warn,burnbox::server=info")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", env!("CARGO_BIN_EXE_burnbox")))?;

        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let stderr_lines = Arc::new(AtomicU64::new(0));
        let warn_lines = Arc::new(AtomicU64::new(0));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        {
            let stderr_lines = Arc::clone(&stderr_lines);
            let warn_lines = Arc::clone(&warn_lines);
            // Reads until the pipe closes, so the server can never block on a full pipe.
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    stderr_lines.fetch_add(1, Ordering::Relaxed);
                    if line.contains("WARN") || line.contains("ERROR") {
                        warn_lines.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(addr) = tx.as_ref().and_then(|_| parse_listening(&line)) {
                        let _ = tx.take().map(|tx| tx.send(addr));
                    }
                    let _ = writeln!(std::io::stderr().lock(), "[server] {line}");
                }
            });
        }
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Ok(Self {
                child,
                addr,
                stderr_lines,
                warn_lines,
                _dir: dir,
            }),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(format!(
                    "the server never said where it listens ({e}); exit: {status}"
                ))
            }
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM, a grace period, then SIGKILL.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        self.child
            .wait()
            .map(|s| format!("killed after the grace period: {s}"))
            .unwrap_or_default()
    }
}

/// `… listening on http://127.0.0.1:PORT` → the address.
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '\x1b')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// What one phase observed.
#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Outcome {
    fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn record(&mut self, result: Result<(), String>, latency: Duration) {
        match result {
            Ok(()) => {
                self.ok += 1;
                self.latencies.push(latency);
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    /// p50/p99/max of the successful requests, in milliseconds.
    fn percentiles(&mut self) -> (f64, f64, f64) {
        self.latencies.sort_unstable();
        let at = |q: f64| -> f64 {
            if self.latencies.is_empty() {
                return f64::NAN;
            }
            let rank = (q * self.latencies.len() as f64).ceil() as usize;
            ms(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
        };
        (at(0.50), at(0.99), at(1.0))
    }
}

fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn get_healthz(client: &reqwest::Client, url: &str) -> Result<(), String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    response.bytes().await.map_err(|e| e.to_string())?;
    if status == reqwest::StatusCode::OK {
        Ok(())
    } else {
        Err(format!("healthz answered {status}"))
    }
}

async fn post_webhook(client: &reqwest::Client, url: &str, signed: Signed) -> Result<(), String> {
    let response = client
        .post(url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signed.signature)
        .body(signed.body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status == reqwest::StatusCode::OK {
        Ok(())
    } else {
        Err(format!(
            "webhook answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    }
}

/// C tasks, each sending its next request as soon as the previous one is answered,
/// until `seconds` have passed. Returns the outcome and the elapsed wall time.
async fn closed_loop<F, Fut>(concurrency: usize, seconds: u64, request: F) -> (Outcome, Duration)
where
    F: Fn() -> Option<Fut> + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let request = Arc::new(request);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let request = Arc::clone(&request);
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                while Instant::now() < deadline {
                    let Some(future) = request() else { break };
                    let sent = Instant::now();
                    let result = future.await;
                    outcome.record(result, sent.elapsed());
                }
                outcome
            })
        })
        .collect();
    let mut total = Outcome::default();
    for task in tasks {
        total.merge(task.await.expect("a client task panicked"));
    }
    (total, start.elapsed())
}

fn emit(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// How long this machine's disk takes to make a write durable, measured on the
/// filesystem the server's data directory will live on, before the server starts.
/// Every acknowledged webhook waits for at least one such sync (shared with the rest of
/// its group commit), so C senders in a closed loop cannot get more than C ÷ (sync time)
/// acknowledgements a second, however fast the code is. One page is the floor; 16
/// scattered pages is about what a group commit of a few messages writes.
fn disk_sync() -> Result<Value, String> {
    use std::os::unix::fs::FileExt;
    const PAGE: u64 = 4096;
    const PAGES_IN_FILE: u64 = 16 * 1024;
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.path().join("sync-probe"))
        .map_err(|e| format!("sync probe: {e}"))?;
    file.set_len(PAGE * PAGES_IN_FILE)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("sync probe: {e}"))?;
    let page = [0x5a_u8; PAGE as usize];
    let mut step = 0u64;
    let mut measure = |pages: u64, rounds: usize| -> Result<Outcome, String> {
        let mut outcome = Outcome::default();
        for _ in 0..rounds {
            let started = Instant::now();
            for _ in 0..pages {
                // Scattered like a B-tree's pages, not one sequential run.
                step += 1;
                let at = step.wrapping_mul(2_654_435_761) % PAGES_IN_FILE;
                file.write_at(&page, at * PAGE)
                    .map_err(|e| format!("sync probe: {e}"))?;
            }
            file.sync_data().map_err(|e| format!("sync probe: {e}"))?;
            outcome.record(Ok(()), started.elapsed());
        }
        Ok(outcome)
    };
    let (one_p50, one_p99, _) = measure(1, 200)?.percentiles();
    let (many_p50, many_p99, _) = measure(16, 100)?.percentiles();
    Ok(json!({
        "phase": "disk_sync",
        "one_page_p50_ms": one_p50,
        "one_page_p99_ms": one_p99,
        "sixteen_pages_p50_ms": many_p50,
        "sixteen_pages_p99_ms": many_p99,
    }))
}

fn main() -> ExitCode {
    let settings = Settings::from_env();
    let disk = match disk_sync() {
        Ok(disk) => disk,
        Err(error) => {
            emit(&json!({ "phase": "error", "error": error }));
            return ExitCode::FAILURE;
        }
    };
    emit(&disk);
    let server = match Server::start() {
        Ok(server) => server,
        Err(error) => {
            emit(&json!({ "phase": "error", "error": error }));
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(run(&settings, &server.base()));
    let stderr_lines = server.stderr_lines.load(Ordering::Relaxed);
    let warn_lines = server.warn_lines.load(Ordering::Relaxed);
    let exit = server.stop();
    match result {
        Ok(mut summary) => {
            summary["server_stderr_lines"] = json!(stderr_lines);
            summary["server_warn_or_error_lines"] = json!(warn_lines);
            summary["server_exit"] = json!(exit);
            summary["disk_sync_one_page_p50_ms"] = disk["one_page_p50_ms"].clone();
            summary["disk_sync_sixteen_pages_p50_ms"] = disk["sixteen_pages_p50_ms"].clone();
            emit(&summary);
            ExitCode::SUCCESS
        }
        Err(error) => {
            emit(&json!({ "phase": "error", "error": error, "server_exit": exit }));
            ExitCode::FAILURE
        }
    }
}

/// The server's own account of itself, as the admin reads it.
async fn system_status(client: &reqwest::Client, base: &str) -> Result<Value, String> {
    client
        .get(format!("{base}/api/v1/admin/system-status"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .map_err(|e| format!("system-status: {e}"))?
        .error_for_status()
        .map_err(|e| format!("system-status: {e}"))?
        .json()
        .await
        .map_err(|e| format!("system-status: {e}"))
}

/// What the one store writer did between two readings of its counters: commits per
/// second, jobs per commit, time per commit spent applying jobs and committing (fsync
/// included), and the share of the wall time it was busy. A share near 1 means ingest
/// was waiting on the writer, not on HTTP.
fn writer_share(before: &Value, after: &Value, elapsed: Duration) -> Value {
    let delta = |key: &str| {
        let (Some(before), Some(after)) = (before[key].as_u64(), after[key].as_u64()) else {
            return None;
        };
        Some(after.saturating_sub(before) as f64)
    };
    let (Some(commits), Some(jobs), Some(apply), Some(commit)) = (
        delta("commits"),
        delta("jobs"),
        delta("apply_micros"),
        delta("commit_micros"),
    ) else {
        // A server without these counters: say nothing rather than a wrong zero.
        return Value::Null;
    };
    let per_commit = commits.max(1.0);
    json!({
        "commits_per_s": round3(commits / elapsed.as_secs_f64()),
        "jobs_per_commit": round3(jobs / per_commit),
        "apply_us_per_commit": round3(apply / per_commit),
        "commit_us_per_commit": round3(commit / per_commit),
        "busy_fraction": round3((apply + commit) / 1e6 / elapsed.as_secs_f64()),
    })
}

async fn run(settings: &Settings, base: &str) -> Result<Value, String> {
    burnbox::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(settings.concurrency.max(64) * 2)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let healthz_url: Arc<str> = Arc::from(format!("{base}/healthz"));
    let webhook_url: Arc<str> = Arc::from(format!("{base}/webhooks/twilio"));

    // Everything is signed before any clock starts.
    let closed_count = usize::try_from(settings.max_rate * settings.seconds).unwrap_or(usize::MAX);
    let open_count = usize::try_from(settings.open_rate * settings.seconds).unwrap_or(usize::MAX);
    let mut next_sid = 0u64;
    let mut batch = |count: usize| {
        let signed = presign(&webhook_url, next_sid, count);
        next_sid += count as u64;
        signed
    };
    let warmup = batch(WARMUP);
    let closed = Arc::new(batch(closed_count));
    let open = batch(open_count);

    // 1. Warm-up: opens the pooled connections and the store's first pages.
    let mut warm = Outcome::default();
    let warm_start = Instant::now();
    let warm_tasks: Vec<_> = warmup
        .into_iter()
        .map(|signed| {
            let client = client.clone();
            let (healthz_url, webhook_url) = (Arc::clone(&healthz_url), Arc::clone(&webhook_url));
            tokio::spawn(async move {
                let sent = Instant::now();
                let health = get_healthz(&client, &healthz_url).await;
                let hook = post_webhook(&client, &webhook_url, signed).await;
                (health, hook, sent.elapsed())
            })
        })
        .collect();
    let mut warm_health_errors = 0u64;
    for task in warm_tasks {
        let (health, hook, latency) = task.await.map_err(|e| e.to_string())?;
        warm_health_errors += u64::from(health.is_err());
        warm.record(hook, latency);
    }
    emit(&json!({
        "phase": "warmup",
        "healthz": WARMUP,
        "healthz_errors": warm_health_errors,
        "webhooks": WARMUP,
        "webhooks_acked": warm.ok,
        "webhook_errors": warm.errors,
        "first_error": warm.first_error,
        "elapsed_s": round3(warm_start.elapsed().as_secs_f64()),
    }));

    // 2. The framework's ceiling.
    let (mut health, elapsed) = {
        let client = client.clone();
        let url = Arc::clone(&healthz_url);
        closed_loop(settings.concurrency, settings.seconds, move || {
            let client = client.clone();
            let url = Arc::clone(&url);
            Some(async move { get_healthz(&client, &url).await })
        })
        .await
    };
    let healthz_rate = health.ok as f64 / elapsed.as_secs_f64();
    let (p50, p99, max) = health.percentiles();
    emit(&json!({
        "phase": "healthz_closed_loop",
        "concurrency": settings.concurrency,
        "elapsed_s": round3(elapsed.as_secs_f64()),
        "requests": health.ok,
        "requests_per_s": round3(healthz_rate),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
        "errors": health.errors,
        "first_error": health.first_error,
    }));

    // 3. Ingest as fast as the same clients can go.
    let writer_before = system_status(&client, base).await?["writer"].take();
    let taken = Arc::new(AtomicUsize::new(0));
    let exhausted = Arc::new(AtomicBool::new(false));
    let (mut ingest, elapsed) = {
        let client = client.clone();
        let url = Arc::clone(&webhook_url);
        let (taken, exhausted) = (Arc::clone(&taken), Arc::clone(&exhausted));
        closed_loop(settings.concurrency, settings.seconds, move || {
            let index = taken.fetch_add(1, Ordering::Relaxed);
            let Some(signed) = closed.get(index).cloned() else {
                exhausted.store(true, Ordering::Relaxed);
                return None;
            };
            let client = client.clone();
            let url = Arc::clone(&url);
            Some(async move { post_webhook(&client, &url, signed).await })
        })
        .await
    };
    let ingest_rate = ingest.ok as f64 / elapsed.as_secs_f64();
    let (ingest_p50, ingest_p99, ingest_max) = ingest.percentiles();
    let writer = writer_share(
        &writer_before,
        &system_status(&client, base).await?["writer"],
        elapsed,
    );
    emit(&json!({
        "phase": "ingest_closed_loop",
        "writer": writer,
        "concurrency": settings.concurrency,
        "elapsed_s": round3(elapsed.as_secs_f64()),
        "acked": ingest.ok,
        "acked_per_s": round3(ingest_rate),
        "p50_ms": ingest_p50,
        "p99_ms": ingest_p99,
        "max_ms": ingest_max,
        "errors": ingest.errors,
        "first_error": ingest.first_error,
        "pool_exhausted": exhausted.load(Ordering::Relaxed),
    }));

    // 4. Open loop: a fixed arrival rate, each request on its own task, latency from
    //    the moment it was due to be sent.
    let interval = Duration::from_secs_f64(1.0 / settings.open_rate as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let max_send_lag_ns = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(open.len());
    for (i, signed) in open.into_iter().enumerate() {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let lag = due.elapsed();
        max_send_lag_ns.fetch_max(
            u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let client = client.clone();
        let url = Arc::clone(&webhook_url);
        tasks.push(tokio::spawn(async move {
            let result = post_webhook(&client, &url, signed).await;
            (result, due.elapsed(), tokio::time::Instant::now())
        }));
    }
    let mut open_outcome = Outcome::default();
    let mut last_done = start;
    for task in tasks {
        let (result, latency, done) = task.await.map_err(|e| e.to_string())?;
        last_done = last_done.max(done);
        open_outcome.record(result, latency);
    }
    let open_elapsed = last_done.saturating_duration_since(start);
    let open_rate = open_outcome.ok as f64 / open_elapsed.as_secs_f64();
    let (open_p50, open_p99, open_max) = open_outcome.percentiles();
    let open_phase = format!("ingest_open_loop_{}", settings.open_rate);
    emit(&json!({
        "phase": open_phase,
        "target_per_s": settings.open_rate,
        "sent": open_count,
        "elapsed_s": round3(open_elapsed.as_secs_f64()),
        "acked": open_outcome.ok,
        "acked_per_s": round3(open_rate),
        "p50_ms": open_p50,
        "p99_ms": open_p99,
        "max_ms": open_max,
        "max_send_lag_ms": round3(max_send_lag_ns.load(Ordering::Relaxed) as f64 / 1e6),
        "errors": open_outcome.errors,
        "first_error": open_outcome.first_error,
    }));

    // What the server says it stored.
    let status = system_status(&client, base).await?;
    let acked_total = warm.ok + ingest.ok + open_outcome.ok;
    let commits = status["writer"]["commits"].as_u64();
    let jobs = status["writer"]["jobs"].as_u64();
    let ratio = ingest_rate / healthz_rate;
    let ratio_pass = ratio >= TARGET_RATIO;
    let p99_pass = open_p99 < TARGET_P99_MS && open_outcome.errors == 0;
    Ok(json!({
        "phase": "summary",
        "healthz_per_s": round3(healthz_rate),
        "ingest_acked_per_s": round3(ingest_rate),
        "ingest_to_healthz_ratio": round3(ratio),
        "ratio_target": TARGET_RATIO,
        "ratio_pass": ratio_pass,
        "open_loop_p99_ms": open_p99,
        "p99_target_ms": TARGET_P99_MS,
        "p99_pass": p99_pass,
        "pass": ratio_pass && p99_pass,
        "webhooks_acked_total": acked_total,
        "webhook_errors_total": warm.errors + ingest.errors + open_outcome.errors,
        "store_messages": status["store"]["messages"],
        "store_messages_match_acked": status["store"]["messages"].as_u64() == Some(acked_total),
        "store_duplicates_total": status["store"]["duplicates_total"],
        "writer_commits": commits,
        "writer_jobs": jobs,
        "writer_failed_commits": status["writer"]["failed_commits"],
        "ingest_writer_busy_fraction": writer["busy_fraction"],
        "mean_group_commit_batch": match (jobs, commits) {
            (Some(jobs), Some(commits)) if commits > 0 => json!(round3(jobs as f64 / commits as f64)),
            _ => Value::Null,
        },
        "available_parallelism": std::thread::available_parallelism().map(|n| n.get()).ok(),
    }))
}
