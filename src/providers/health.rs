//! Provider health: latency, error rate and a circuit breaker per provider instance,
//! fed by periodic probes and by every send. In memory only: after a restart the first
//! probe rebuilds it within one probe interval.
//!
//! The breaker: **closed** (used) → after `failure_threshold` consecutive failures,
//! **open** (skipped; its messages go to a fallback) → once `cooldown` has passed,
//! **half-open**: exactly one call (a send or a probe) is let through as the *trial*, and
//! its outcome closes the breaker or opens it for another cool-down. Until then every
//! other send is turned away as if the breaker were open: a provider that is still down
//! must not take a burst of messages on its first try back. A trial whose outcome never
//! comes (its task was dropped) frees its slot after `trial_timeout`, so the breaker
//! cannot stay half-open forever. Probes keep running while it is open, so a provider
//! that recovers is noticed even when nothing is being sent.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// How long a trial may take before another call may be the trial instead: the
    /// send timeout, which bounds every real provider call.
    pub trial_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Healthy: used for sending.
    Closed,
    /// Failing: skipped until the cool-down passes.
    Open,
    /// Cooled down: one trial call is let through; its outcome decides.
    HalfOpen,
}

/// Whether a call may go to a provider now; see [`HealthRegistry::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Go,
    /// Half-open, and this call is the one trial: go ahead, and hand the trial back with
    /// the outcome ([`HealthRegistry::record`]) so that it decides.
    Trial(Trial),
    /// Open, or another call is the trial: not now.
    Wait,
}

/// The token of one half-open trial. Only the outcome that carries the current trial
/// closes or reopens the breaker; a stale one (its slot expired and went to another
/// call) is counted like any other outcome but decides nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trial(u64);

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
    /// The trial under way while half-open, and when it started.
    trial: Option<(Trial, Instant)>,
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
            trial: None,
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
            self.trial = None;
        }
    }

    /// Hands out the trial numbered `next` if the slot is free (none yet, or the last
    /// one is overdue).
    fn take_trial(
        &mut self,
        settings: &BreakerSettings,
        now: Instant,
        next: impl FnOnce() -> Trial,
    ) -> Option<Trial> {
        let busy = self.trial.is_some_and(|(_, started)| {
            now.saturating_duration_since(started) < settings.trial_timeout
        });
        if busy {
            return None;
        }
        let trial = next();
        self.trial = Some((trial, now));
        Some(trial)
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
    /// Numbers the trials across every record, so that a record started afresh
    /// ([`Self::track`]) never reissues a number a call from before may still hold.
    trials: AtomicU64,
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
            trials: AtomicU64::new(0),
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

    /// Whether a call may go to `name` now: always when closed; when half-open (an open
    /// breaker whose cool-down has passed turns half-open here) only as the one trial;
    /// never when open. Unknown names always wait.
    pub fn admit(&self, name: &str, now: Instant) -> Admission {
        let settings = self.settings;
        self.with(name, |health| {
            health.cool_down(&settings, now);
            match health.state {
                BreakerState::Closed => Admission::Go,
                BreakerState::Open => Admission::Wait,
                BreakerState::HalfOpen => health
                    .take_trial(&settings, now, || {
                        Trial(self.trials.fetch_add(1, Ordering::Relaxed) + 1)
                    })
                    .map_or(Admission::Wait, Admission::Trial),
            }
        })
        .unwrap_or(Admission::Wait)
    }

    /// Hands back a trial that ended without asking the provider anything (the call
    /// could not be made), so another call can be the trial at once instead of after
    /// `trial_timeout`. Decides nothing.
    pub fn release(&self, name: &str, trial: Trial) {
        self.with(name, |health| {
            if health.trial.is_some_and(|(current, _)| current == trial) {
                health.trial = None;
            }
        });
    }

    /// Records a probe or send outcome (with `at_ms`, the wall clock, for the status
    /// page) and returns the breaker's change of state, if any. `trial` is what
    /// [`admit`](Self::admit) handed out for this call, if it was the trial: while
    /// half-open, only the current trial's outcome moves the breaker.
    pub fn record(
        &self,
        name: &str,
        check: Check,
        outcome: &Outcome,
        trial: Option<Trial>,
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
            // While half-open only the trial decides; other outcomes (a probe that ran
            // beside it, a call admitted before the breaker opened) are only counted.
            let decides = match health.state {
                BreakerState::HalfOpen => {
                    trial.is_some() && health.trial.map(|(current, _)| current) == trial
                }
                BreakerState::Closed | BreakerState::Open => true,
            };
            if ok {
                health.consecutive_failures = 0;
                // An open breaker stays open until its cool-down is over, however well the
                // provider answers meanwhile: one lucky answer is not recovery.
                if health.state == BreakerState::HalfOpen && decides {
                    health.state = BreakerState::Closed;
                    health.opened_at = None;
                    health.trial = None;
                }
            } else {
                health.consecutive_failures = health.consecutive_failures.saturating_add(1);
                let trip = match health.state {
                    BreakerState::Closed => {
                        health.consecutive_failures >= settings.failure_threshold
                    }
                    BreakerState::HalfOpen => decides,
                    BreakerState::Open => false,
                };
                if trip {
                    health.state = BreakerState::Open;
                    health.opened_at = Some(now);
                    health.trial = None;
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
    use std::sync::{Arc, Barrier};

    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failure_threshold: 3,
        cooldown: Duration::from_secs(30),
        trial_timeout: Duration::from_secs(10),
    };
    const MS: Duration = Duration::from_millis(10);
    const SUCCESS: Outcome = Outcome::Success { latency: MS };

    fn failure() -> Outcome {
        Outcome::Failure {
            latency: MS,
            detail: "HTTP 500".into(),
        }
    }

    fn trial(admission: Admission) -> Trial {
        match admission {
            Admission::Trial(trial) => trial,
            other => panic!("expected the trial, got {other:?}"),
        }
    }

    /// A registry whose provider "p" opened at `start`.
    fn opened(start: Instant) -> HealthRegistry {
        let registry = HealthRegistry::new(SETTINGS, ["p"]);
        for _ in 0..SETTINGS.failure_threshold {
            registry.record("p", Check::Send, &failure(), None, start, 0);
        }
        assert_eq!(registry.admit("p", start), Admission::Wait);
        registry
    }

    #[test]
    fn opens_after_consecutive_failures_and_recovers_through_a_trial() {
        let registry = HealthRegistry::new(SETTINGS, ["p"]);
        let start = Instant::now();
        assert_eq!(registry.admit("p", start), Admission::Go);
        assert_eq!(
            registry.record("p", Check::Send, &failure(), None, start, 0),
            None
        );
        assert_eq!(
            registry.record("p", Check::Probe, &failure(), None, start, 0),
            None
        );
        assert_eq!(
            registry.record("p", Check::Send, &failure(), None, start, 0),
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        assert_eq!(
            registry.admit("p", start + Duration::from_secs(29)),
            Admission::Wait
        );
        // A success during the cool-down does not close it.
        let early = start + Duration::from_secs(1);
        registry.record("p", Check::Probe, &SUCCESS, None, early, 0);
        assert_eq!(
            registry.admit("p", start + Duration::from_secs(29)),
            Admission::Wait
        );

        let later = start + Duration::from_secs(31);
        let first = trial(registry.admit("p", later));
        assert_eq!(
            registry.snapshot("p", later).unwrap().state,
            BreakerState::HalfOpen
        );
        // A failed trial reopens it for another cool-down.
        assert!(
            registry
                .record("p", Check::Probe, &failure(), Some(first), later, 0)
                .is_some()
        );
        assert_eq!(
            registry.admit("p", later + Duration::from_secs(29)),
            Admission::Wait
        );
        let again = later + Duration::from_secs(30);
        let second = trial(registry.admit("p", again));
        assert_eq!(
            registry.record("p", Check::Send, &SUCCESS, Some(second), again, 0),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed
            })
        );
        assert_eq!(registry.admit("p", again), Admission::Go);
        let snapshot = registry.snapshot("p", again).unwrap();
        assert_eq!(snapshot.consecutive_failures, 0);
        assert!(snapshot.error_rate > 0.5);
        assert_eq!((snapshot.sends_ok, snapshot.sends_failed), (1, 2));
    }

    #[test]
    fn concurrent_callers_after_the_cooldown_get_exactly_one_trial() {
        let start = Instant::now();
        let registry = Arc::new(opened(start));
        let cooled = start + SETTINGS.cooldown;
        const CALLERS: usize = 16;
        let barrier = Arc::new(Barrier::new(CALLERS));
        let admissions: Vec<Admission> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..CALLERS)
                .map(|_| {
                    let (registry, barrier) = (Arc::clone(&registry), Arc::clone(&barrier));
                    scope.spawn(move || {
                        barrier.wait();
                        registry.admit("p", cooled)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let trials: Vec<Trial> = admissions
            .iter()
            .filter_map(|a| match a {
                Admission::Trial(trial) => Some(*trial),
                _ => None,
            })
            .collect();
        assert_eq!(trials.len(), 1, "{admissions:?}");
        assert_eq!(
            admissions.iter().filter(|a| **a == Admission::Wait).count(),
            CALLERS - 1
        );
        // Still the trial's: later callers wait too, and outcomes without the trial
        // (a probe running beside it) decide nothing.
        let during = cooled + Duration::from_secs(1);
        assert_eq!(registry.admit("p", during), Admission::Wait);
        assert_eq!(
            registry.record("p", Check::Probe, &SUCCESS, None, during, 0),
            None
        );
        assert_eq!(
            registry.record("p", Check::Probe, &failure(), None, during, 0),
            None
        );
        assert_eq!(registry.admit("p", during), Admission::Wait);
        // The trial's success closes it for everyone.
        assert_eq!(
            registry.record("p", Check::Send, &SUCCESS, Some(trials[0]), during, 0),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed
            })
        );
        assert_eq!(registry.admit("p", during), Admission::Go);
    }

    #[test]
    fn a_released_trial_frees_its_slot_at_once_and_decides_nothing() {
        let start = Instant::now();
        let registry = opened(start);
        let cooled = start + SETTINGS.cooldown;
        let unused = trial(registry.admit("p", cooled));
        assert_eq!(registry.admit("p", cooled), Admission::Wait);
        registry.release("p", unused);
        let next = trial(registry.admit("p", cooled));
        assert_ne!(unused, next);
        // Releasing a trial that is no longer current leaves the current one alone.
        registry.release("p", unused);
        assert_eq!(registry.admit("p", cooled), Admission::Wait);
        assert_eq!(
            registry.snapshot("p", cooled).unwrap().state,
            BreakerState::HalfOpen
        );
    }

    #[test]
    fn a_record_started_afresh_never_reissues_a_trial_number() {
        let start = Instant::now();
        let registry = opened(start);
        let cooled = start + SETTINGS.cooldown;
        let before = trial(registry.admit("p", cooled));
        // New credentials: a fresh record, opened again, cooled down again.
        registry.track("p");
        for _ in 0..SETTINGS.failure_threshold {
            registry.record("p", Check::Probe, &failure(), None, cooled, 0);
        }
        let cooled_again = cooled + SETTINGS.cooldown;
        let after = trial(registry.admit("p", cooled_again));
        assert_ne!(before, after);
        // The call from before reporting now decides nothing.
        assert_eq!(
            registry.record("p", Check::Send, &failure(), Some(before), cooled_again, 0),
            None
        );
    }

    #[test]
    fn a_trial_that_never_reports_frees_its_slot_after_the_trial_timeout() {
        let start = Instant::now();
        let registry = opened(start);
        let cooled = start + SETTINGS.cooldown;
        // The trial's task is dropped: no outcome ever comes.
        let lost = trial(registry.admit("p", cooled));
        let almost = cooled + SETTINGS.trial_timeout - MS;
        assert_eq!(registry.admit("p", almost), Admission::Wait);
        let overdue = cooled + SETTINGS.trial_timeout;
        let next = trial(registry.admit("p", overdue));
        assert_ne!(lost, next);
        assert_eq!(registry.admit("p", overdue), Admission::Wait);
        // The lost trial reporting late decides nothing; the current one does.
        assert_eq!(
            registry.record("p", Check::Send, &failure(), Some(lost), overdue, 0),
            None
        );
        assert_eq!(
            registry.snapshot("p", overdue).unwrap().state,
            BreakerState::HalfOpen
        );
        assert_eq!(
            registry.record("p", Check::Send, &failure(), Some(next), overdue, 0),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Open
            })
        );
        assert_eq!(registry.admit("p", overdue), Admission::Wait);
    }

    #[test]
    fn refusals_are_not_failures_and_unknown_names_wait() {
        let registry = HealthRegistry::new(SETTINGS, ["p"]);
        let now = Instant::now();
        for _ in 0..5 {
            let refused = Outcome::Refused { latency: MS };
            registry.record("p", Check::Send, &refused, None, now, 0);
        }
        assert_eq!(registry.admit("p", now), Admission::Go);
        assert_eq!(registry.snapshot("p", now).unwrap().error_rate, 0.0);
        assert_eq!(registry.admit("q", now), Admission::Wait);
        registry.track("q");
        assert_eq!(registry.admit("q", now), Admission::Go);
        registry.forget("p");
        assert_eq!(registry.admit("p", now), Admission::Wait);
        assert!(registry.snapshot("p", now).is_none());
    }
}
