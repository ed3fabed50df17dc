//! Deliveries whose attempt could not be read or recorded. Their queue row is unchanged
//! and still due, so without a pause the dispatcher would pick them again at once: a
//! busy loop for a record the store cannot read, or the same message POSTed again and
//! again while the store cannot commit. The pause lives in memory only: the store is
//! what failed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The first pause; each further failure of the same delivery doubles it.
const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// The longest pause: a store that recovers gets the delivery made within this.
const LONGEST_PAUSE: Duration = Duration::from_secs(300);

/// (webhook id, message id).
pub type Key = (u64, u64);

#[derive(Debug, Default)]
pub struct Cooldown {
    /// Until when each delivery is skipped, and how many times in a row it failed.
    paused: HashMap<Key, (Instant, u32)>,
}

impl Cooldown {
    /// `key` failed again at `now`: skip it for twice as long as last time.
    pub fn pause(&mut self, key: Key, now: Instant) {
        self.forget_stale(now);
        let failures = self.paused.get(&key).map_or(0, |&(_, failures)| failures);
        let pause = FIRST_PAUSE
            .saturating_mul(2u32.saturating_pow(failures))
            .min(LONGEST_PAUSE);
        self.paused
            .insert(key, (now + pause, failures.saturating_add(1)));
    }

    /// `key` was recorded: it starts afresh should it ever fail.
    pub fn clear(&mut self, key: Key) {
        self.paused.remove(&key);
    }

    pub fn is_paused(&self, key: Key, now: Instant) -> bool {
        self.paused.get(&key).is_some_and(|&(until, _)| until > now)
    }

    /// The deliveries skipped at `now`.
    pub fn paused_at(&self, now: Instant) -> Vec<Key> {
        self.paused
            .keys()
            .copied()
            .filter(|&key| self.is_paused(key, now))
            .collect()
    }

    /// How long until the first pause ends, if one is running.
    pub fn next_end(&self, now: Instant) -> Option<Duration> {
        self.paused
            .values()
            .filter(|&&(until, _)| until > now)
            .map(|&(until, _)| until - now)
            .min()
    }

    /// Drops deliveries whose pause ended long ago (made meanwhile, or their endpoint
    /// deleted), so the map cannot grow without bound.
    fn forget_stale(&mut self, now: Instant) {
        self.paused
            .retain(|_, &mut (until, _)| until + LONGEST_PAUSE > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_delivery_is_skipped_for_a_growing_while() {
        let mut cooldown = Cooldown::default();
        let start = Instant::now();
        let key = (1, 7);
        assert!(!cooldown.is_paused(key, start));
        assert_eq!(cooldown.next_end(start), None);

        cooldown.pause(key, start);
        assert!(cooldown.is_paused(key, start));
        assert_eq!(cooldown.paused_at(start), [key]);
        assert_eq!(cooldown.next_end(start), Some(FIRST_PAUSE));
        // Others are not held up.
        assert!(!cooldown.is_paused((1, 8), start));
        assert!(!cooldown.is_paused((2, 7), start));
        assert!(!cooldown.is_paused(key, start + FIRST_PAUSE));

        // Failing again doubles the pause, up to the longest.
        let again = start + FIRST_PAUSE;
        cooldown.pause(key, again);
        assert_eq!(cooldown.next_end(again), Some(2 * FIRST_PAUSE));
        for _ in 0..20 {
            cooldown.pause(key, again);
        }
        assert_eq!(cooldown.next_end(again), Some(LONGEST_PAUSE));

        // Recorded: the next failure starts from the first pause again.
        cooldown.clear(key);
        assert!(!cooldown.is_paused(key, again));
        cooldown.pause(key, again);
        assert_eq!(cooldown.next_end(again), Some(FIRST_PAUSE));
    }

    #[test]
    fn long_finished_pauses_are_forgotten() {
        let mut cooldown = Cooldown::default();
        let start = Instant::now();
        cooldown.pause((1, 1), start);
        let later = start + FIRST_PAUSE + LONGEST_PAUSE;
        cooldown.pause((2, 2), later);
        assert_eq!(cooldown.paused.len(), 1);
        assert_eq!(cooldown.paused_at(later), [(2, 2)]);
    }
}
