//! The provider instances the server runs with: those of the configuration file and
//! those added through the admin API, in one map that changes at run time. Webhooks,
//! the status page, the sender and the prober look providers up here, so an instance
//! added, replaced or removed takes effect at once, without a restart.
//!
//! Readers take an `Arc` to the instance they need and drop the lock at once; a request
//! that started with the old instance finishes with it. Changes are rare (an admin at
//! work) and serialised by [`ProviderRegistry::lock_changes`], so a check ("is the name
//! free?") and the change it allows cannot interleave with another admin's.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use super::Adapter;
use super::ProviderKind;
use super::send::SendClient;
use crate::config::ProviderConfig;
use crate::domain::PhoneNumber;

/// Where an instance is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderSource {
    /// A `[[providers]]` table of the configuration file (or the built-in sandbox):
    /// read-only at run time; edit the file and restart.
    Config,
    /// Added through the admin API and kept (sealed) in the store.
    Api,
}

impl ProviderSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// One provider account, ready to verify its webhooks and, with API credentials, to send.
#[derive(Debug)]
pub struct ProviderInstance {
    pub name: Arc<str>,
    pub kind: ProviderKind,
    pub source: ProviderSource,
    pub adapter: Adapter,
    /// Its REST API client; `None` when it only receives.
    pub client: Option<SendClient>,
    /// The validated settings (numbers, fallbacks, public URL, the table as given).
    pub config: ProviderConfig,
}

impl ProviderInstance {
    /// Builds the adapter and the API client (each call gives up after `send_timeout`).
    pub fn new(
        config: ProviderConfig,
        source: ProviderSource,
        send_timeout: Duration,
    ) -> Result<Self, String> {
        let adapter = Adapter::new(config.kind, &config.secret, &config.options)?;
        let client = config
            .api
            .clone()
            .map(|api| SendClient::new(api, send_timeout))
            .transpose()?;
        Ok(Self {
            name: Arc::from(config.name.as_str()),
            kind: config.kind,
            source,
            adapter,
            client,
            config,
        })
    }

    /// Whether `number` is one of its numbers.
    pub fn serves(&self, number: &PhoneNumber) -> bool {
        self.config.numbers.iter().any(|n| n.number == *number)
    }
}

/// Every running provider instance, by name.
#[derive(Debug, Default)]
pub struct ProviderRegistry {
    instances: RwLock<BTreeMap<String, Arc<ProviderInstance>>>,
    changes: tokio::sync::Mutex<()>,
}

impl ProviderRegistry {
    pub fn new(instances: impl IntoIterator<Item = ProviderInstance>) -> Self {
        let registry = Self::default();
        for instance in instances {
            registry.insert(instance);
        }
        registry
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<ProviderInstance>>> {
        // The map is never left half-changed (each change is one insert or remove), so
        // a panic elsewhere while holding the lock leaves it usable.
        self.instances
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<ProviderInstance>>> {
        self.instances
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, name: &str) -> Option<Arc<ProviderInstance>> {
        self.read().get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// Every instance, by name.
    pub fn snapshot(&self) -> Vec<Arc<ProviderInstance>> {
        self.read().values().cloned().collect()
    }

    /// Adds or replaces an instance; returns it as now registered.
    pub fn insert(&self, instance: ProviderInstance) -> Arc<ProviderInstance> {
        let instance = Arc::new(instance);
        self.write()
            .insert(instance.name.to_string(), Arc::clone(&instance));
        instance
    }

    pub fn remove(&self, name: &str) -> Option<Arc<ProviderInstance>> {
        self.write().remove(name)
    }

    /// Held by whoever changes the registry (and the store behind it), for the whole
    /// check-then-change.
    pub async fn lock_changes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// The other instances that list `name` among their fallbacks.
    pub fn fallback_users(&self, name: &str) -> Vec<String> {
        self.read()
            .values()
            .filter(|instance| instance.config.fallback.iter().any(|f| f == name))
            .map(|instance| instance.name.to_string())
            .collect()
    }

    /// Another instance than `except` that lists `number`: the pool keeps the number
    /// under that one (it was there first).
    pub fn other_owner(&self, number: &PhoneNumber, except: &str) -> Option<String> {
        self.read()
            .values()
            .find(|instance| &*instance.name != except && instance.serves(number))
            .map(|instance| instance.name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NumberSettings, ProviderSettings, provider_config};

    fn instance(name: &str, numbers: &[&str], fallback: &[&str]) -> ProviderInstance {
        let settings = ProviderSettings {
            secret: Some(crate::domain::Secret::new("token")),
            numbers: numbers
                .iter()
                .map(|n| NumberSettings::Plain((*n).into()))
                .collect(),
            fallback: fallback.iter().map(|f| (*f).into()).collect(),
            ..ProviderSettings::new(name, ProviderKind::Twilio)
        };
        let config = provider_config(settings, None).unwrap();
        ProviderInstance::new(config, ProviderSource::Api, Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn instances_come_and_go_at_run_time() {
        let registry = ProviderRegistry::new([instance("a", &["+14155550100"], &[])]);
        assert!(registry.contains("a"));
        registry.insert(instance("b", &["+14155550101"], &["a"]));
        let names: Vec<_> = registry
            .snapshot()
            .iter()
            .map(|i| i.name.to_string())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(registry.fallback_users("a"), ["b"]);
        let number = PhoneNumber::parse("+14155550100").unwrap();
        assert_eq!(registry.other_owner(&number, "b").as_deref(), Some("a"));
        assert_eq!(registry.other_owner(&number, "a"), None);
        // A request holding the old instance keeps it after a replacement.
        let old = registry.get("a").unwrap();
        registry.insert(instance("a", &["+14155550109"], &[]));
        assert!(old.serves(&number));
        assert!(!registry.get("a").unwrap().serves(&number));
        assert!(registry.remove("a").is_some());
        assert!(registry.get("a").is_none());
    }
}
