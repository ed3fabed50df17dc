//! The prober: every `provider_probe_interval`, one cheap authenticated call to each
//! provider with API credentials, recorded in its health. The first round runs at start,
//! and another at once when a provider that sends is added or changed at run time.

use std::time::Instant;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Outbox;
use crate::diagnostics::ErrorSource;
use crate::providers::health::{BreakerState, Check, Outcome};
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
            probes.spawn(async move {
                let started = Instant::now();
                let result = client.probe().await;
                (name, started, result)
            });
        }
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = probes.join_next() => next,
            };
            let Some(joined) = next else { break };
            let Ok((name, started, result)) = joined else {
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
            outbox.record_health(&name, Check::Probe, &outcome);
        }
    }
}

impl Outbox {
    /// Records a probe or send outcome; a breaker that opens or closes is logged, and
    /// one that opens goes to the recent errors the admin sees.
    pub(super) fn record_health(&self, provider: &str, check: Check, outcome: &Outcome) {
        let Some(change) =
            self.inner
                .health
                .record(provider, check, outcome, Instant::now(), now_ms())
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
