//! Start-up and shutdown: the library entry point [`serve`].
//!
//! Order matters. On the way up: data directory, master key, store, seed data, then
//! listeners. On the way down: stop accepting and let in-flight requests finish (their
//! commits included), stop background tasks, then let the writer drain and close the
//! store.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ProviderConfig, ProviderSettings};
use crate::http::{self, AppState, Scheme};
use crate::providers::registry::{ProviderInstance, ProviderRegistry, ProviderSource};
use crate::search::{SearchIndex, indexer};
use crate::store::{MasterKey, SeedNumber, Store};
use crate::{listener, sandbox, tls};

/// How long in-flight requests get to finish once shutdown starts.
const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// The master key file inside the data directory, when none is configured.
pub const MASTER_KEY_FILE: &str = "master.key";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("data directory {path}: {message}")]
    DataDir { path: String, message: String },
    #[error(transparent)]
    Crypto(#[from] crate::store::crypto::CryptoError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("provider {name}: {message}")]
    Provider { name: String, message: String },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("search index: {0}")]
    Search(String),
    #[error("listener: {0}")]
    Listen(std::io::Error),
    #[error("e-mail: {0}")]
    Mail(String),
    #[error("webhooks: {0}")]
    Hooks(String),
}

/// Bound listening sockets. Binding happens before `serve` so tests can bind port 0 and
/// learn the port, and so a bad address fails before anything is written to disk.
#[derive(Debug, Default)]
pub struct Listeners {
    pub http: Option<TcpListener>,
    pub https: Option<TcpListener>,
}

impl Listeners {
    pub fn bind(config: &Config) -> std::io::Result<Self> {
        let bind = |addr: Option<SocketAddr>| -> std::io::Result<Option<TcpListener>> {
            addr.map(|addr| {
                let listener = TcpListener::bind(addr)?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            })
            .transpose()
        };
        Ok(Self {
            http: bind(config.listen)?,
            https: bind(config.tls_listen)?,
        })
    }
}

/// Runs burnbox until `shutdown` completes, then shuts down gracefully.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    tls::install_crypto_provider();
    prepare_data_dir(&config.data_dir)?;
    let master = MasterKey::load_or_create(
        config.master_key.as_ref(),
        &config.data_dir.join(MASTER_KEY_FILE),
    )?;
    let (store, writer_thread) = Store::open(&config.data_dir, &master)?;

    let mut provider_configs = config.providers.clone();
    if config.sandbox {
        provider_configs.insert(0, sandbox::provider(&master));
    }
    let token_keys = crate::auth::tokens::TokenKeys::new(&master.derive("jwt-signing/1"));
    drop(master);
    let diagnostics = crate::diagnostics::RecentErrors::default();
    let providers = Arc::new(build_registry(
        provider_configs,
        &store,
        &config,
        &diagnostics,
    )?);
    // A number listed under several providers (reachable through each, for sending)
    // belongs to the first that lists it (configuration file first, in its order); the
    // others are its fallbacks' equivalent.
    let mut seen = std::collections::HashSet::new();
    let mut instances = providers.snapshot();
    instances.sort_by_key(|instance| {
        (
            instance.source != ProviderSource::Config,
            config_order(&config, &instance.name),
        )
    });
    let seeds = instances
        .iter()
        .flat_map(|provider| {
            provider.config.numbers.iter().map(|number| SeedNumber {
                provider: provider.name.to_string(),
                number: number.number.clone(),
                retention: number.retention,
            })
        })
        .filter(|seed| seen.insert(seed.number.clone()))
        .collect();
    store.ensure_numbers(seeds).await?;
    if !config.sandbox {
        let removed = store
            .remove_provider_numbers(crate::config::SANDBOX_PROVIDER)
            .await?;
        if removed > 0 {
            tracing::info!(removed, "sandbox is off: its numbers left the pool");
        }
    }
    if let Some(password) = store
        .ensure_admin(config.admin_password.as_ref().map(|secret| secret.expose()))
        .await?
    {
        // Printed once, on stderr rather than through the log, and never stored in the
        // clear. (Under a service manager stderr is kept too: the packaged unit supplies
        // the password as a credential instead.)
        eprintln!(
            "\n  Created the `admin` account with password: {password}\n  \
             It is shown only now. Set BURNBOX_ADMIN_PASSWORD before the first start to choose it.\n"
        );
    }

    let tls_config = match &listeners.https {
        Some(_) => Some(tls::server_config(
            config
                .tls_files
                .as_ref()
                .map(|(cert, key)| (cert.as_path(), key.as_path())),
            &tls::self_signed_dir(&config.data_dir),
        )?),
        None => None,
    };

    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let limits = http::Limits::new(&config);
    let latest = store.latest_message_id()?;
    let realtime =
        crate::realtime::Realtime::new(latest, config.realtime.clone(), http::event_json);
    tasks.spawn(crate::realtime::publisher::run(
        Arc::clone(&realtime.hub),
        store.clone(),
        latest,
        stop.clone(),
    ));
    let search = SearchIndex::new().map_err(|e| ServeError::Search(e.to_string()))?;
    let mailer = config
        .smtp
        .as_ref()
        .map(crate::mail::Mailer::new)
        .transpose()
        .map_err(|error| ServeError::Mail(error.to_string()))?;
    let (indexer, indexing) = indexer::start(
        search.clone(),
        rebuild_from(store.clone()),
        diagnostics.clone(),
        stop.clone(),
    );
    tasks.spawn(indexing);
    let (outbox, outbox_queue) = crate::outbound::Outbox::new(
        store.clone(),
        Arc::clone(&providers),
        config.sending,
        diagnostics.clone(),
    );
    let resumed = outbox.resume()?;
    if resumed > 0 {
        tracing::info!(
            resumed,
            "outbound messages left pending are being sent again"
        );
    }
    tasks.spawn(outbox.clone().run(outbox_queue, stop.clone()));
    tasks.spawn(outbox.clone().probe_forever(stop.clone()));
    let hooks = crate::hooks::Hooks::new(
        store.clone(),
        config.hooks,
        http::event_json,
        diagnostics.clone(),
    )
    .map_err(ServeError::Hooks)?;
    tasks.spawn(
        hooks
            .clone()
            .run(Arc::clone(&realtime.hub), latest, stop.clone()),
    );
    let state = Arc::new(AppState {
        limits,
        realtime,
        search,
        indexer: indexer.clone(),
        config: Arc::new(config),
        store: store.clone(),
        passwords: crate::auth::password_guard::PasswordGuard::new(store.clone())?,
        tokens: token_keys,
        guest_limiter: http::guest_limiter(),
        providers,
        started: Instant::now(),
        diagnostics,
        mailer,
        mail_limiter: http::mail_limiter(),
        outbox,
        background: tasks.clone(),
        hooks,
    });

    if let Some(listener) = listeners.http {
        spawn_listener(&tasks, listener, &state, None, &stop)?;
    }
    if let (Some(listener), Some(tls_config)) = (listeners.https, tls_config) {
        spawn_listener(&tasks, listener, &state, Some(tls_config), &stop)?;
    }
    let announcing = Arc::clone(&state);
    tasks.spawn(crate::store::sweeper::run(
        Box::new(move |deleted| indexer.delete(deleted)),
        Box::new(move |stored| {
            for message in stored {
                http::announce(&announcing, message);
            }
        }),
        store.clone(),
        crate::store::sweeper::SweepSettings {
            interval: state.config.sweep_interval,
            batch: state.config.sweep_batch,
            quarantine: state.config.quarantine,
            multipart_timeout: state.config.multipart_timeout,
            retention: state.config.retention,
            unverified_accounts_after: state.config.email_verification_ttl,
        },
        state.diagnostics.clone(),
        stop.clone(),
    ));
    tasks.spawn(forget_idle_clients(Arc::clone(&state), stop.clone()));
    tasks.close();

    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    stop.cancel();
    // Streams never finish by themselves: tell each client to reconnect later, so the
    // listeners' graceful shutdown is not spent waiting for them.
    if tokio::time::timeout(GRACE_PERIOD, state.realtime.close())
        .await
        .is_err()
    {
        tracing::warn!("some real-time streams did not close within the grace period");
    }
    if tokio::time::timeout(GRACE_PERIOD + Duration::from_secs(2), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some requests did not finish within the grace period");
    }
    // The last `Writer` clones go with the state and the store; the writer thread then
    // commits whatever is queued and exits, and the database closes with it.
    drop(state);
    drop(store);
    // A task that outlived the grace period still holds a `Writer`, and the thread waits
    // for it. Every commit is atomic and durable, so leaving without the clean close
    // loses nothing; it only makes the next start check the file first.
    let joined = tokio::time::timeout(
        GRACE_PERIOD / 2,
        tokio::task::spawn_blocking(move || writer_thread.join()),
    )
    .await;
    match joined {
        Ok(Ok(Ok(()))) => tracing::info!("stopped cleanly"),
        Ok(_) => tracing::error!("the store writer thread ended abnormally"),
        Err(_) => tracing::warn!(
            "the store is still in use by work that outlived the grace period; \
             stopping without closing it (committed data is safe)"
        ),
    }
    Ok(())
}

/// Fills the empty in-memory search index from the store, in batches.
fn rebuild_from(store: Store) -> impl FnOnce(&SearchIndex) -> Result<u64, String> + Send + 'static {
    move |index| {
        const BATCH: usize = 2_000;
        let mut batch = Vec::with_capacity(BATCH);
        let mut failed = None;
        let count = store
            .for_each_message(|message| {
                batch.push(http::search_document(&message));
                if batch.len() == BATCH {
                    failed = failed.take().or(add_all(index, &batch).err());
                    batch.clear();
                }
            })
            .map_err(|e| e.to_string())?;
        add_all(index, &batch)?;
        failed.map_or(Ok(count), Err)
    }
}

fn add_all(index: &SearchIndex, documents: &[indexer::OwnedDocument]) -> Result<(), String> {
    let borrowed: Vec<_> = documents
        .iter()
        .map(indexer::OwnedDocument::borrowed)
        .collect();
    index.add(&borrowed).map_err(|e| e.to_string())
}

/// Periodically drops rate-limiter state of clients that went quiet.
async fn forget_idle_clients(state: Arc<AppState>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(http::FORGET_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        state.limits.forget_idle();
        state.passwords.forget_idle();
        state.guest_limiter.retain_recent();
        state.mail_limiter.retain_recent();
    }
}

/// Serves the application on one listener (plain HTTP, or HTTPS when `tls` is given)
/// until `stop`.
fn spawn_listener(
    tasks: &TaskTracker,
    listener: TcpListener,
    state: &Arc<AppState>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: &CancellationToken,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(ServeError::Listen)?;
    let scheme = if tls.is_some() {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let limits = listener::ConnectionLimits {
        // A client that sends no complete request head within the request timeout is
        // dropped, so idle or trickling sockets cannot pile up.
        head_timeout: state.config.request_timeout,
        grace: GRACE_PERIOD,
    };
    let app = http::router(Arc::clone(state), scheme);
    listener::spawn(tasks, listener, app, tls, limits, stop.clone()).map_err(ServeError::Listen)?;
    tracing::info!("listening on {}://{addr}", scheme.as_str());
    Ok(())
}

/// Creates the data directory with mode 0700, or tightens an existing one we own.
fn prepare_data_dir(path: &Path) -> Result<(), ServeError> {
    let error = |message: String| ServeError::DataDir {
        path: path.display().to_string(),
        message,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(|e| error(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| error(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| error(format!("cannot restrict permissions to 0700: {e}")))?;
        }
    }
    Ok(())
}

/// The registry at start: the configuration file's providers (and the sandbox), then
/// those added through the admin API. A bad configured provider stops the start; a
/// stored one that no longer validates, or whose name the configuration file now uses,
/// is left out (the configuration wins) with a warning on the status page, so one stale
/// record cannot keep the server down.
fn build_registry(
    configured: Vec<ProviderConfig>,
    store: &Store,
    config: &Config,
    diagnostics: &crate::diagnostics::RecentErrors,
) -> Result<ProviderRegistry, ServeError> {
    let timeout = config.sending.timeout;
    let registry = ProviderRegistry::default();
    for provider in configured {
        let name = provider.name.clone();
        let instance = ProviderInstance::new(provider, ProviderSource::Config, timeout)
            .map_err(|message| ServeError::Provider { name, message })?;
        registry.insert(instance);
    }
    for stored in store.stored_providers()? {
        let name = stored.name.clone();
        let skip = |message: String| {
            tracing::warn!(provider = %name, message, "stored provider left out");
            diagnostics.record(
                crate::diagnostics::ErrorSource::Background,
                "provider_skipped",
                format!("provider {name} (added through the API): {message}"),
            );
        };
        if registry.contains(&name) {
            skip(
                "the configuration file defines a provider of the same name, which wins; \
                 rename or delete the stored one"
                    .to_owned(),
            );
            continue;
        }
        let built = ProviderSettings::from_sealed_json(&stored.document)
            .and_then(|settings| {
                crate::config::provider_config(settings, config.public_url.as_ref())
                    .map_err(|error| error.to_string())
            })
            .and_then(|provider| ProviderInstance::new(provider, ProviderSource::Api, timeout));
        match built {
            Ok(instance) => {
                registry.insert(instance);
            }
            Err(message) => skip(message),
        }
    }
    Ok(registry)
}

/// A configured provider's position in the configuration file (the sandbox first).
fn config_order(config: &Config, name: &str) -> usize {
    if name == crate::config::SANDBOX_PROVIDER {
        return 0;
    }
    config
        .providers
        .iter()
        .position(|provider| provider.name == name)
        .map_or(usize::MAX, |index| index + 1)
}
