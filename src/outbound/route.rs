//! Which provider, from which number: the message's own provider first, then each
//! fallback in its configured order, each with an *equivalent number*:
//!
//! 1. the same number, when it is also listed under the fallback provider (a number
//!    reachable through two providers: ported or hosted messaging), else
//! 2. a pool number of the fallback provider in the same country (libphonenumber's
//!    region; the calling code when the region is unknown) that is enabled, not public
//!    and not leased, so the recipient's reply lands in an admin-only inbox rather than
//!    with another user or in public.
//!
//! A fallback without such a number, or without API credentials, is skipped.

use crate::domain::{PhoneNumber, same_country};
use crate::store::{NumberView, OutboundView, StoreError};

use super::Outbox;

/// One way to send a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub provider: String,
    pub number_id: u64,
    pub from: PhoneNumber,
}

impl Outbox {
    /// The ways to send `message`, in order of preference (health is not considered here).
    pub(super) fn candidates(&self, message: &OutboundView) -> Result<Vec<Candidate>, StoreError> {
        let Ok(from) = PhoneNumber::parse(&message.from) else {
            return Ok(Vec::new());
        };
        let providers = &self.inner.providers;
        let Some(own) = providers.get(&message.provider) else {
            return Ok(Vec::new());
        };
        let mut candidates = Vec::new();
        if own.client.is_some() {
            candidates.push(Candidate {
                provider: message.provider.clone(),
                number_id: message.number_id,
                from: from.clone(),
            });
        }
        let mut pool: Option<Vec<NumberView>> = None;
        for name in &own.fallback {
            let Some(fallback) = providers.get(name).filter(|p| p.client.is_some()) else {
                continue;
            };
            if fallback.numbers.contains(&from) {
                candidates.push(Candidate {
                    provider: name.clone(),
                    number_id: message.number_id,
                    from: from.clone(),
                });
                continue;
            }
            if pool.is_none() {
                pool = Some(self.inner.store.list_numbers()?);
            }
            let equivalent = pool.iter().flatten().find_map(|number| {
                let usable = number.provider == *name
                    && !number.disabled
                    && !number.public
                    && number.lease_id.is_none();
                let parsed = PhoneNumber::parse(&number.number).ok()?;
                (usable && same_country(&from, &parsed)).then_some((number.id, parsed))
            });
            if let Some((number_id, number)) = equivalent {
                candidates.push(Candidate {
                    provider: name.clone(),
                    number_id,
                    from: number,
                });
            }
        }
        Ok(candidates)
    }
}
