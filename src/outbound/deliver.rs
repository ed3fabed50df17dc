//! Sending one message: rounds of attempts until a provider takes it, refuses it for
//! good, or the attempt budget is spent. A round tries each candidate (own provider,
//! then fallbacks) whose breaker lets it through; a retryable failure moves on to the
//! next candidate at once, and a round with no success waits (exponential backoff)
//! before the next.

use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::route::Candidate;
use super::{Outbox, backoff};
use crate::diagnostics::ErrorSource;
use crate::providers::health::{Admission, Check, Outcome, Trial};
use crate::providers::send::SendError;
use crate::store::{AttemptOutcome, AttemptV1, OutboundView, StoreError, now_ms};

/// Why a message's task stopped early.
enum Stop {
    /// Shutdown: the message stays pending for the next start.
    Shutdown,
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// The end of one round.
enum Round {
    /// Accepted or refused for good: nothing more to do.
    Done,
    /// No success this round; try again after a wait, if the budget allows.
    Retry,
}

/// Calls made to providers so far: what `send_max_attempts` bounds.
fn provider_calls(message: &OutboundView) -> usize {
    message
        .attempts
        .iter()
        .filter(|attempt| attempt.provider.is_some())
        .count()
}

/// Rounds in a row, up to now, in which no provider could be called (each breaker
/// open, or none able to send). They do not spend the call budget: an open breaker lets
/// a trial call through within its cooldown. Only when that never happens does the
/// message fail, after `send_max_attempts` such rounds.
fn rounds_without_a_call(message: &OutboundView) -> usize {
    message
        .attempts
        .iter()
        .rev()
        .take_while(|attempt| attempt.provider.is_none())
        .count()
}

impl Outbox {
    /// Sends message `id` until done, or until `stop`; each round holds one of the
    /// `sending` slots, the wait between rounds none.
    pub(super) async fn deliver(&self, id: u64, sending: &Semaphore, stop: &CancellationToken) {
        match self.deliver_rounds(id, sending, stop).await {
            Ok(()) | Err(Stop::Shutdown) => {}
            Err(Stop::Store(error)) => {
                // The message stays pending; the next start picks it up again.
                tracing::error!(outbound_id = id, %error, "outbound message not sent: store failure");
                self.inner.diagnostics.record(
                    ErrorSource::Outbound,
                    "unavailable",
                    format!("outbound message {id}: the store failed ({error}); it is retried at the next start"),
                );
            }
        }
    }

    async fn deliver_rounds(
        &self,
        id: u64,
        sending: &Semaphore,
        stop: &CancellationToken,
    ) -> Result<(), Stop> {
        let settings = self.inner.settings;
        let mut round = 0u32;
        loop {
            let slot = tokio::select! {
                () = stop.cancelled() => return Err(Stop::Shutdown),
                slot = sending.acquire() => slot.map_err(|_| Stop::Shutdown)?,
            };
            // Read once the slot is ours, so the round acts on the message as it is now.
            let Some((message, candidates)) = self.load(id).await? else {
                return Ok(());
            };
            if message.status.is_final() || message.accepted.is_some() {
                return Ok(());
            }
            let max = settings.max_attempts as usize;
            if provider_calls(&message) >= max || rounds_without_a_call(&message) >= max {
                self.give_up(id).await?;
                return Ok(());
            }
            if let Round::Done = self.round(&message, &candidates, stop).await? {
                return Ok(());
            }
            drop(slot);
            let wait = backoff::delay(settings.backoff, settings.backoff_max, round);
            round = round.saturating_add(1);
            tokio::select! {
                () = stop.cancelled() => return Err(Stop::Shutdown),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The message and its candidates, read off the async threads.
    async fn load(&self, id: u64) -> Result<Option<(OutboundView, Vec<Candidate>)>, Stop> {
        let outbox = self.clone();
        tokio::task::spawn_blocking(move || {
            let Some(message) = outbox.inner.store.outbound(id)? else {
                return Ok(None);
            };
            let candidates = outbox.candidates(&message)?;
            Ok(Some((message, candidates)))
        })
        .await
        .map_err(|error| Stop::Store(StoreError::Storage(error.to_string())))?
    }

    async fn round(
        &self,
        message: &OutboundView,
        candidates: &[Candidate],
        stop: &CancellationToken,
    ) -> Result<Round, Stop> {
        let budget =
            (self.inner.settings.max_attempts as usize).saturating_sub(provider_calls(message));
        let mut used = 0;
        for candidate in candidates {
            if used >= budget {
                break;
            }
            let trial = match self.inner.health.admit(&candidate.provider, Instant::now()) {
                Admission::Go => None,
                Admission::Trial(trial) => Some(trial),
                // Open, or another call is its trial: on to the next candidate.
                Admission::Wait => continue,
            };
            used += 1;
            let (outcome, latency, part_ids) =
                self.attempt(message, candidate, trial, stop).await?;
            let done = matches!(
                outcome,
                AttemptOutcome::Accepted { .. } | AttemptOutcome::Rejected(_)
            );
            let attempt = AttemptV1 {
                provider: Some(candidate.provider.clone()),
                from_number_id: Some(candidate.number_id),
                at_ms: now_ms(),
                latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                outcome,
            };
            self.inner
                .store
                .record_attempt(message.id, attempt, part_ids)
                .await?;
            if done {
                return Ok(Round::Done);
            }
        }
        if used == 0 {
            let detail = if candidates.is_empty() {
                "no provider can send from this number"
            } else {
                "every provider that could send it is unhealthy (circuit breaker open, or half-open with its one trial call under way)"
            };
            let attempt = AttemptV1 {
                provider: None,
                from_number_id: None,
                at_ms: now_ms(),
                latency_ms: 0,
                outcome: AttemptOutcome::Unavailable(detail.to_owned()),
            };
            self.inner
                .store
                .record_attempt(message.id, attempt, Vec::new())
                .await?;
        }
        Ok(Round::Retry)
    }

    /// One provider call, recorded in the provider's health (as its half-open trial,
    /// when it is one).
    async fn attempt(
        &self,
        message: &OutboundView,
        candidate: &Candidate,
        trial: Option<Trial>,
        stop: &CancellationToken,
    ) -> Result<(AttemptOutcome, Duration, Vec<String>), Stop> {
        // A call that never reaches the provider hands its trial back undecided.
        let release = || {
            if let Some(trial) = trial {
                self.inner.health.release(&candidate.provider, trial);
            }
        };
        let Some(client) = self
            .inner
            .providers
            .get(&candidate.provider)
            .and_then(|p| p.client.clone())
        else {
            release();
            return Ok((
                AttemptOutcome::Unavailable("the provider cannot send".into()),
                Duration::ZERO,
                Vec::new(),
            ));
        };
        let Ok(to) = crate::domain::PhoneNumber::parse(&message.to) else {
            release();
            return Ok((
                AttemptOutcome::Rejected("the stored recipient is not a phone number".into()),
                Duration::ZERO,
                Vec::new(),
            ));
        };
        let started = Instant::now();
        // Cut off at shutdown: the provider may have taken it, and then the next start
        // sends it again. Waiting instead could hold shutdown for `send_timeout`.
        let result = tokio::select! {
            () = stop.cancelled() => {
                release();
                return Err(Stop::Shutdown);
            }
            result = client.send(&candidate.from, &to, &message.text) => result,
        };
        let latency = started.elapsed();
        let (health, outcome, part_ids) = match result {
            Ok(sent) => (
                Outcome::Success { latency },
                AttemptOutcome::Accepted {
                    provider_message_id: sent.message_id.as_str().to_owned(),
                },
                sent.part_ids
                    .iter()
                    .map(|id| id.as_str().to_owned())
                    .collect(),
            ),
            Err(SendError::Permanent(detail)) => (
                Outcome::Refused { latency },
                AttemptOutcome::Rejected(detail),
                Vec::new(),
            ),
            Err(SendError::Retryable(detail)) => (
                Outcome::Failure {
                    latency,
                    detail: detail.clone(),
                },
                AttemptOutcome::Retryable(detail),
                Vec::new(),
            ),
        };
        self.record_health(&candidate.provider, Check::Send, &health, trial);
        match &outcome {
            AttemptOutcome::Accepted { .. } => tracing::info!(
                outbound_id = message.id,
                provider = %candidate.provider,
                latency_ms = latency.as_millis() as u64,
                "outbound message accepted"
            ),
            AttemptOutcome::Rejected(detail) | AttemptOutcome::Retryable(detail) => {
                tracing::warn!(outbound_id = message.id, provider = %candidate.provider, detail, "outbound attempt failed");
                self.inner.diagnostics.record(
                    ErrorSource::Outbound,
                    "send_failed",
                    format!(
                        "outbound message {} via {}: {detail}",
                        message.id, candidate.provider
                    ),
                );
            }
            AttemptOutcome::Unavailable(_) => {}
        }
        Ok((outcome, latency, part_ids))
    }

    async fn give_up(&self, id: u64) -> Result<(), Stop> {
        self.inner.store.fail_outbound(id).await?;
        tracing::warn!(
            outbound_id = id,
            "outbound message failed: attempts used up"
        );
        self.inner.diagnostics.record(
            ErrorSource::Outbound,
            "send_gave_up",
            format!("outbound message {id}: every attempt failed"),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OutboundStatus;

    fn attempt(provider: Option<&str>, outcome: AttemptOutcome) -> AttemptV1 {
        AttemptV1 {
            provider: provider.map(str::to_owned),
            from_number_id: None,
            at_ms: 0,
            latency_ms: 0,
            outcome,
        }
    }

    fn message(attempts: Vec<AttemptV1>) -> OutboundView {
        OutboundView {
            id: 1,
            sender: 1,
            number_id: 1,
            provider: "p".into(),
            from: "+14155550100".into(),
            to: "+14155550101".into(),
            text: "hi".into(),
            created_at_ms: 0,
            status: OutboundStatus::Pending,
            updated_at_ms: 0,
            attempts,
            accepted: None,
            reports: Vec::new(),
        }
    }

    /// Rounds with the breaker open spend no call; only a run of them ends the message.
    #[test]
    fn only_provider_calls_spend_the_budget_and_only_a_run_of_idle_rounds_ends_it() {
        let idle = || attempt(None, AttemptOutcome::Unavailable("breaker open".into()));
        let failed = || attempt(Some("p"), AttemptOutcome::Retryable("503".into()));
        let sent = message(vec![idle(), failed(), idle(), idle(), failed(), idle()]);
        assert_eq!(provider_calls(&sent), 2);
        assert_eq!(
            rounds_without_a_call(&sent),
            1,
            "counted since the last call"
        );
        let stuck = message(vec![failed(), idle(), idle(), idle()]);
        assert_eq!(rounds_without_a_call(&stuck), 3);
        assert_eq!(rounds_without_a_call(&message(Vec::new())), 0);
    }
}
