//! The prober: every `provider_probe_interval`, one cheap authenticated call to each
//! provider with API credentials, recorded in its health. The first round runs at start,
//! and another at once when a provider that sends is added or changed at run time.

use std::time::Instant;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Outbox;
use crate::diagnostics::ErrorSource;
use crate::providers::health::{Admission, BreakerState, Check, Outcome, Trial};
use crate::store::now_ms;

pub(super) async fn run(outbox: &Outbox, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(outbox.inner.settings.probe_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
            () = outbox.inner.probe_now.notified() => {}
        }
        let mut probes = JoinSet::new();
        // A provider added after this snapshot is probed from the next round on.
        for provider in outbox.inner.providers.snapshot() {
            let Some(client) = provider.client.clone() else {
                continue;
            };
            let name = provider.name.to_string();
            // A probe runs whatever the breaker says (that is how recovery is noticed
            // while nothing is sent), but decides a half-open breaker only as its trial.
            let trial = match outbox.inner.health.admit(&name, Instant::now()) {
                Admission::Trial(trial) => Some(trial),
                Admission::Go | Admission::Wait => None,
            };
            probes.spawn(async move {
                let started = Instant::now();
                let result = client.probe().await;
                (name, trial, started, result)
            });
        }
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = probes.join_next() => next,
            };
            let Some(joined) = next else { break };
            let Ok((name, trial, started, result)) = joined else {
                continue;
            };
            let latency = started.elapsed();
            let outcome = match result {
                Ok(()) => Outcome::Success { latency },
                Err(error) => Outcome::Failure {
                    latency,
                    detail: error.detail().to_owned(),
                },
            };
            outbox.record_health(&name, Check::Probe, &outcome, trial);
        }
    }
}

impl Outbox {
    /// Records a probe or send outcome (`trial`: the half-open trial it was, if any); a
    /// breaker that opens or closes is logged, and one that opens goes to the recent
    /// errors the admin sees.
    pub(super) fn record_health(
        &self,
        provider: &str,
        check: Check,
        outcome: &Outcome,
        trial: Option<Trial>,
    ) {
        let Some(change) =
            self.inner
                .health
                .record(provider, check, outcome, trial, Instant::now(), now_ms())
        else {
            return;
        };
        match change.to {
            BreakerState::Open => {
                let detail = match outcome {
                    Outcome::Failure { detail, .. } => detail.as_str(),
                    _ => "",
                };
                tracing::warn!(provider, detail, "provider unhealthy: circuit breaker open");
                self.inner.diagnostics.record(
                    ErrorSource::Outbound,
                    "provider_unhealthy",
                    format!("provider {provider}: circuit breaker opened ({detail})"),
                );
            }
            BreakerState::Closed => {
                tracing::info!(provider, "provider healthy again: circuit breaker closed");
            }
            BreakerState::HalfOpen => {}
        }
    }
}
