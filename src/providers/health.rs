//! Provider health: latency, error rate and a circuit breaker per provider instance,
//! fed by periodic probes and by every send. In memory only: after a restart the first
//! probe rebuilds it within one probe interval.
//!
//! The breaker: **closed** (used) → after `failure_threshold` consecutive failures,
//! **open** (skipped; its messages go to a fallback) → once `cooldown` has passed,
//! **half-open** (used again) → the next success closes it, the next failure opens it for
//! another cool-down. Probes keep running while it is open, so a provider that recovers
//! is noticed even when nothing is being sent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Outcomes remembered for the error rate.
const WINDOW: usize = 20;

/// Weight of the newest latency in the moving average.
const LATENCY_WEIGHT: f64 = 0.2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures (probes or sends) that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker waits before letting a trial through.
    pub cooldown: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Healthy: used for sending.
    Closed,
    /// Failing: skipped until the cool-down passes.
    Open,
    /// Cooled down: used again; the next outcome decides.
    HalfOpen,
}

/// What a probe or send call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider answered as it should.
    Success { latency: Duration },
    /// The provider answered, refusing this one message for good (a validation error):
    /// the provider itself works.
    Refused { latency: Duration },
    /// The provider failed: 5xx, 429, refused credentials, timeout, no connection.
    Failure { latency: Duration, detail: String },
}

/// Which kind of call an outcome came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Probe,
    Send,
}

/// A breaker changing state, for the log and the recent-errors list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

/// One provider's health as the status page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSnapshot {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// Failed share of the last [`WINDOW`] probes and sends (0 when there were none).
    pub error_rate: f64,
    /// Moving average of answer times, ms.
    pub latency_ms: Option<f64>,
    /// The last probe: when (unix ms), and its failure if it failed.
    pub last_probe: Option<(i64, Option<String>)>,
    pub sends_ok: u64,
    pub sends_failed: u64,
}

#[derive(Debug)]
struct ProviderHealth {
    state: BreakerState,
    opened_at: Option<Instant>,
    consecutive_failures: u32,
    recent: VecDeque<bool>,
    latency_ms: Option<f64>,
    last_probe: Option<(i64, Option<String>)>,
    sends_ok: u64,
    sends_failed: u64,
}

impl ProviderHealth {
    fn new() -> Self {
        Self {
            state: BreakerState::Closed,
            opened_at: None,
            consecutive_failures: 0,
            recent: VecDeque::with_capacity(WINDOW),
            latency_ms: None,
            last_probe: None,
            sends_ok: 0,
            sends_failed: 0,
        }
    }

    /// Moves an open breaker whose cool-down has passed to half-open.
    fn cool_down(&mut self, settings: &BreakerSettings, now: Instant) {
        if self.state == BreakerState::Open
            && self
                .opened_at
                .is_none_or(|opened| now.saturating_duration_since(opened) >= settings.cooldown)
        {
            self.state = BreakerState::HalfOpen;
        }
    }

    fn remember(&mut self, ok: bool, latency: Duration) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(ok);
        let sample = latency.as_secs_f64() * 1000.0;
        self.latency_ms = Some(match self.latency_ms {
            Some(average) => average + LATENCY_WEIGHT * (sample - average),
            None => sample,
        });
    }
}

/// Every provider's health, shared by the prober, the senders and the status page.
#[derive(Debug)]
pub struct HealthRegistry {
    settings: BreakerSettings,
    providers: Mutex<HashMap<String, ProviderHealth>>,
}

impl HealthRegistry {
    pub fn new<'a>(settings: BreakerSettings, names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            settings,
            providers: Mutex::new(
                names
                    .into_iter()
                    .map(|name| (name.to_owned(), ProviderHealth::new()))
                    .collect(),
            ),
        }
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut ProviderHealth) -> T) -> Option<T> {
        // Health is advisory: a panic elsewhere while holding the lock must not stop sending.
        let mut providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        providers.get_mut(name).map(f)
    }

    /// Starts a fresh record for `name` (a provider added, or replaced with new
    /// credentials: what the old ones did says nothing about the new).
    pub fn track(&self, name: &str) {
        let mut providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        providers.insert(name.to_owned(), ProviderHealth::new());
    }

    /// Drops the record of a provider that is gone or no longer sends.
    pub fn forget(&self, name: &str) {
        let mut providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        providers.remove(name);
    }

    /// Whether `name` may be used now: closed or half-open (an open breaker whose
    /// cool-down has passed turns half-open here). Unknown names are never available.
    pub fn available(&self, name: &str, now: Instant) -> bool {
        let settings = self.settings;
        self.with(name, |health| {
            health.cool_down(&settings, now);
            health.state != BreakerState::Open
        })
        .unwrap_or(false)
    }

    /// Records a probe or send outcome (with `at_ms`, the wall clock, for the status
    /// page) and returns the breaker's change of state, if any.
    pub fn record(
        &self,
        name: &str,
        check: Check,
        outcome: &Outcome,
        now: Instant,
        at_ms: i64,
    ) -> Option<Transition> {
        let settings = self.settings;
        self.with(name, |health| {
            health.cool_down(&settings, now);
            let before = health.state;
            let (ok, latency) = match outcome {
                Outcome::Success { latency } | Outcome::Refused { latency } => (true, *latency),
                Outcome::Failure { latency, .. } => (false, *latency),
            };
            health.remember(ok, latency);
            match check {
                Check::Probe => {
                    let failure = match outcome {
                        Outcome::Failure { detail, .. } => Some(detail.clone()),
                        _ => None,
                    };
                    health.last_probe = Some((at_ms, failure));
                }
                Check::Send if ok => health.sends_ok += 1,
                Check::Send => health.sends_failed += 1,
            }
            if ok {
                health.consecutive_failures = 0;
                // An open breaker stays open until its cool-down is over, however well the
                // provider answers meanwhile: one lucky answer is not recovery.
                if health.state == BreakerState::HalfOpen {
                    health.state = BreakerState::Closed;
                    health.opened_at = None;
                }
            } else {
                health.consecutive_failures = health.consecutive_failures.saturating_add(1);
                let trip = match health.state {
                    BreakerState::Closed => {
                        health.consecutive_failures >= settings.failure_threshold
                    }
                    BreakerState::HalfOpen => true,
                    BreakerState::Open => false,
                };
                if trip {
                    health.state = BreakerState::Open;
                    health.opened_at = Some(now);
                }
            }
            (health.state != before).then_some(Transition {
                from: before,
                to: health.state,
            })
        })
        .flatten()
    }

    pub fn snapshot(&self, name: &str, now: Instant) -> Option<HealthSnapshot> {
        let settings = self.settings;
        self.with(name, |health| {
            health.cool_down(&settings, now);
            let failures = health.recent.iter().filter(|ok| !**ok).count();
            HealthSnapshot {
                state: health.state,
                consecutive_failures: health.consecutive_failures,
                error_rate: if health.recent.is_empty() {
                    0.0
                } else {
                    failures as f64 / health.recent.len() as f64
                },
                latency_ms: health.latency_ms,
                last_probe: health.last_probe.clone(),
                sends_ok: health.sends_ok,
                sends_failed: health.sends_failed,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failure_threshold: 3,
        cooldown: Duration::from_secs(30),
    };
    const MS: Duration = Duration::from_millis(10);

    fn failure() -> Outcome {
        Outcome::Failure {
            latency: MS,
            detail: "HTTP 500".into(),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_recovers_through_half_open() {
        let registry = HealthRegistry::new(SETTINGS, ["p"]);
        let start = Instant::now();
        assert!(registry.available("p", start));
        assert_eq!(
            registry.record("p", Check::Send, &failure(), start, 0),
            None
        );
        assert_eq!(
            registry.record("p", Check::Probe, &failure(), start, 0),
            None
        );
        assert_eq!(
            registry.record("p", Check::Send, &failure(), start, 0),
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        assert!(!registry.available("p", start + Duration::from_secs(29)));
        // A success during the cool-down does not close it.
        let success = Outcome::Success { latency: MS };
        registry.record(
            "p",
            Check::Probe,
            &success,
            start + Duration::from_secs(1),
            0,
        );
        assert!(!registry.available("p", start + Duration::from_secs(29)));

        let later = start + Duration::from_secs(31);
        assert!(registry.available("p", later));
        assert_eq!(
            registry.snapshot("p", later).unwrap().state,
            BreakerState::HalfOpen
        );
        // A failed trial reopens it for another cool-down.
        assert!(
            registry
                .record("p", Check::Probe, &failure(), later, 0)
                .is_some()
        );
        assert!(!registry.available("p", later + Duration::from_secs(29)));
        let again = later + Duration::from_secs(30);
        assert!(registry.available("p", again));
        assert_eq!(
            registry.record("p", Check::Send, &success, again, 0),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed
            })
        );
        let snapshot = registry.snapshot("p", again).unwrap();
        assert_eq!(snapshot.consecutive_failures, 0);
        assert!(snapshot.error_rate > 0.5);
        assert_eq!((snapshot.sends_ok, snapshot.sends_failed), (1, 2));
    }

    #[test]
    fn refusals_are_not_failures_and_unknown_names_are_unavailable() {
        let registry = HealthRegistry::new(SETTINGS, ["p"]);
        let now = Instant::now();
        for _ in 0..5 {
            registry.record("p", Check::Send, &Outcome::Refused { latency: MS }, now, 0);
        }
        assert!(registry.available("p", now));
        assert_eq!(registry.snapshot("p", now).unwrap().error_rate, 0.0);
        assert!(!registry.available("q", now));
        registry.track("q");
        assert!(registry.available("q", now));
        registry.forget("p");
        assert!(!registry.available("p", now));
        assert!(registry.snapshot("p", now).is_none());
    }
}
