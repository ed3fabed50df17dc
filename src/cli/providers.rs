//! `burnbox providers …`: the admin API's provider management from the command line,
//! against a running server over HTTP(S), as an admin.
//!
//! The password comes from `--password-file` or the configuration (`BURNBOX_ADMIN_PASSWORD`,
//! `BURNBOX_ADMIN_PASSWORD_FILE`), never from the command line, where other users of the
//! machine could read it in the process list. The server is the configured HTTP
//! listener unless `--url` says otherwise, as for `simulate` and `healthcheck`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{ConfigArgs, http_client, local_server, runtime};
use crate::config::{Config, read_secret_file};
use crate::domain::Secret;

/// Where the admin API is and who calls it.
#[derive(Debug, Args)]
pub struct ProvidersArgs {
    /// Base URL of the running server; default: the configured HTTP listener.
    #[arg(long, global = true)]
    url: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
    /// The admin account to act as.
    #[arg(long, global = true, default_value = "admin")]
    user: String,
    /// A file holding the account's password; default: BURNBOX_ADMIN_PASSWORD, then the
    /// file BURNBOX_ADMIN_PASSWORD_FILE names.
    #[arg(long, global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ProvidersCommand,
}

#[derive(Debug, Subcommand)]
enum ProvidersCommand {
    /// List every provider instance (configuration file and API).
    List,
    /// Show one provider (without its secrets).
    Show { name: String },
    /// Add a provider: FILE is a `[[providers]]` table as JSON (or TOML for *.toml).
    Add {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Replace a provider added through the API; secrets left out are kept.
    Update {
        name: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Remove a provider added through the API; its numbers leave the pool.
    Remove { name: String },
}

/// An admin API call: method, path under `/api/v1/admin/providers`, body.
struct Call {
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
}

pub fn run(args: &ProvidersArgs) -> Result<(), String> {
    // The configuration gives the password (`BURNBOX_ADMIN_PASSWORD`, `…_FILE` or the
    // file's `admin_password`), the server when no --url is given, and its self-signed
    // certificate; it is needed only for what the flags leave out.
    let config = args.config.load();
    let password = password(args.password_file.as_deref(), &config)?;
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => local_server(config.as_ref()?, None)?,
    };
    let client = http_client(config.as_ref().ok())?;
    let call = match &args.command {
        ProvidersCommand::List => Call {
            method: reqwest::Method::GET,
            path: String::new(),
            body: None,
        },
        ProvidersCommand::Show { name } => Call {
            method: reqwest::Method::GET,
            path: format!("/{}", segment(name)?),
            body: None,
        },
        ProvidersCommand::Add { file } => Call {
            method: reqwest::Method::POST,
            path: String::new(),
            body: Some(read_table(file)?),
        },
        ProvidersCommand::Update { name, file } => Call {
            method: reqwest::Method::PUT,
            path: format!("/{}", segment(name)?),
            body: Some(read_table(file)?),
        },
        ProvidersCommand::Remove { name } => Call {
            method: reqwest::Method::DELETE,
            path: format!("/{}", segment(name)?),
            body: None,
        },
    };
    let answer = runtime()?.block_on(send(args, &client, &base, &password, call))?;
    match (&args.command, answer) {
        (ProvidersCommand::Remove { name }, _) => println!("removed {name}"),
        (_, answer) if args.json => println!("{}", pretty(&answer)),
        (ProvidersCommand::List, answer) => print!("{}", table(&answer)),
        (_, answer) => println!("{}", pretty(&answer)),
    }
    Ok(())
}

fn password(file: Option<&Path>, config: &Result<Config, String>) -> Result<Secret, String> {
    let password = match file {
        Some(path) => Secret::new(read_secret_file(path)?),
        None => config.as_ref()?.admin_password.clone().ok_or(
            "no password: set BURNBOX_ADMIN_PASSWORD (or BURNBOX_ADMIN_PASSWORD_FILE) \
             or pass --password-file FILE",
        )?,
    };
    if password.expose().is_empty() {
        return Err("the admin password is empty".into());
    }
    Ok(password)
}

/// A provider name as a path segment; names are tame (a-z, 0-9, '-', '_'), anything
/// else would change the path and is left to the server to refuse by name.
fn segment(name: &str) -> Result<&str, String> {
    if name.is_empty() || name.contains(['/', '?', '#', '%']) {
        return Err(format!("{name:?} is not a provider name"));
    }
    Ok(name)
}

/// The provider table in `file`: JSON, or TOML when the name ends in `.toml`.
pub(super) fn read_table(file: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
    let toml = file.extension().is_some_and(|ext| ext == "toml");
    let value = if toml {
        toml::from_str::<Value>(&text).map_err(|error| format!("{}: {error}", file.display()))?
    } else {
        serde_json::from_str::<Value>(&text)
            .map_err(|error| format!("{}: {error}", file.display()))?
    };
    if !value.is_object() {
        return Err(format!("{}: expected one provider table", file.display()));
    }
    Ok(value)
}

async fn send(
    args: &ProvidersArgs,
    client: &reqwest::Client,
    base: &str,
    password: &Secret,
    call: Call,
) -> Result<Value, String> {
    let url = format!("{base}/api/v1/admin/providers{}", call.path);
    let mut request = client
        .request(call.method, &url)
        .basic_auth(&args.user, Some(password.expose()));
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .map_err(|error| format!("{base}: {error}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    // The problem's `detail` says what is wrong (naming the field, for a bad input).
    Err(match body["detail"].as_str() {
        Some(detail) => format!("{detail} (HTTP {})", status.as_u16()),
        None => format!("the server answered {status}: {text}"),
    })
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// A short table of the provider list: one line per provider.
fn table(answer: &Value) -> String {
    let rows: Vec<[String; 5]> = answer["providers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|provider| {
            let text = |key: &str| provider[key].as_str().unwrap_or("-").to_owned();
            let numbers = provider["numbers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|number| number["number"].as_str())
                .collect::<Vec<_>>()
                .join(",");
            [
                text("name"),
                text("kind"),
                text("source"),
                if provider["sends"] == true {
                    "yes".into()
                } else {
                    "no".into()
                },
                if numbers.is_empty() {
                    "-".into()
                } else {
                    numbers
                },
            ]
        })
        .collect();
    let header = ["NAME", "KIND", "SOURCE", "SENDS", "NUMBERS"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_prints_as_a_table() {
        let answer = serde_json::json!({"providers": [
            {"name": "sandbox", "kind": "generic", "source": "config", "sends": false,
             "numbers": [{"number": "+12025550101"}, {"number": "+12025550102"}]},
            {"name": "tw2", "kind": "twilio", "source": "api", "sends": true, "numbers": []},
        ]});
        assert_eq!(
            table(&answer),
            "NAME     KIND     SOURCE  SENDS  NUMBERS\n\
             sandbox  generic  config  no     +12025550101,+12025550102\n\
             tw2      twilio   api     yes    -\n"
        );
    }

    #[test]
    fn names_cannot_change_the_path() {
        assert!(segment("tw-2").is_ok());
        assert!(segment("../users").is_err());
        assert!(segment("").is_err());
    }
}
