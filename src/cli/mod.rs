//! The command line: `burnbox serve`, `burnbox simulate`, `burnbox healthcheck`,
//! `burnbox providers`.

mod providers;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, FlagOverrides, Settings};
use crate::server::{self, Listeners};

#[derive(Debug, Parser)]
#[command(
    name = "burnbox",
    version,
    about = "Self-hosted disposable SMS: temporary numbers, encrypted inbox, real-time push."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (HTTP on 127.0.0.1:8080 and HTTPS on 127.0.0.1:8443 by default).
    Serve(ConfigArgs),
    /// Sign and post an inbound SMS webhook to a running server, as a provider would.
    Simulate(simulate::SimulateArgs),
    /// Manage provider instances of a running server through its admin API.
    Providers(providers::ProvidersArgs),
    /// Exit 0 if the server's /readyz answers 200 (for container health checks).
    Healthcheck {
        #[command(flatten)]
        config: ConfigArgs,
        /// Base URL of the server; default: the configured HTTP listener.
        #[arg(long)]
        server: Option<String>,
    },
}

/// Options shared by every command that reads the configuration.
#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file (see config.example.toml).
    #[arg(long, env = "BURNBOX_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (store, master key, TLS certificate).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address; an empty value disables the listener.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// HTTPS listen address; an empty value disables the listener.
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<String>,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, String> {
        let flags = FlagOverrides {
            data_dir: self.data_dir.clone(),
            listen: self.listen.clone(),
            tls_listen: self.tls_listen.clone(),
        };
        let settings = Settings::load(
            self.config.as_deref(),
            |name| std::env::var(name).ok(),
            &flags,
        )
        .map_err(|e| e.to_string())?;
        Config::try_from(settings).map_err(|e| e.to_string())
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Providers(args) => providers::run(&args),
        Command::Healthcheck { config, server } => healthcheck(&config, server),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("burnbox: {message}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn init_logging(filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn serve(args: &ConfigArgs) -> Result<(), String> {
    let config = args.load()?;
    init_logging(&config.log);
    let listeners = Listeners::bind(&config).map_err(|e| format!("cannot listen: {e}"))?;
    runtime()?.block_on(async move {
        server::serve(config, listeners, shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (systemd, Docker, Kubernetes).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// The base URL of the local server: `--server`, else the configured HTTP listener,
/// else the HTTPS one.
fn local_server(config: &Config, server: Option<String>) -> Result<String, String> {
    if let Some(server) = server {
        return Ok(server.trim_end_matches('/').to_owned());
    }
    let (scheme, addr) = match (config.listen, config.tls_listen) {
        (Some(addr), _) => ("http", addr),
        (None, Some(addr)) => ("https", addr),
        (None, None) => return Err("both listeners are disabled; pass --server URL".into()),
    };
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    Ok(format!("{scheme}://{host}:{}", addr.port()))
}

/// A client for the local server. With `config` and no certificate of its own
/// configured, the server's self-signed certificate (if it made one) is trusted too, so
/// a server that listens on HTTPS only is reachable without turning verification off.
fn http_client(config: Option<&Config>) -> Result<reqwest::Client, String> {
    crate::tls::install_crypto_provider();
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(15));
    if let Some(config) = config.filter(|config| config.tls_files.is_none()) {
        let path = crate::tls::self_signed_cert(&config.data_dir);
        if let Ok(pem) = std::fs::read(&path) {
            let certificate = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

fn healthcheck(args: &ConfigArgs, server: Option<String>) -> Result<(), String> {
    let config = args.load()?;
    let url = format!("{}/readyz", local_server(&config, server)?);
    runtime()?.block_on(async move {
        let response = http_client(Some(&config))?
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if response.status().is_success() {
            println!("ready");
            Ok(())
        } else {
            Err(format!("{url} answered {}", response.status()))
        }
    })
}
