//! The wait between retry rounds: exponential, capped, with jitter so that messages held
//! up by the same outage do not all retry in the same instant when it ends.

use std::time::Duration;

/// Spread of the jitter: each wait is 80 % to 120 % of the nominal one.
const JITTER: f64 = 0.2;

/// The wait after retry round `round` (0 for the first): `base · 2^round`, at most `max`.
pub fn delay(base: Duration, max: Duration, round: u32) -> Duration {
    let nominal = base
        .checked_mul(2u32.saturating_pow(round.min(30)))
        .unwrap_or(max)
        .min(max);
    // A failed random source only loses the jitter, never the wait.
    let unit = getrandom::u32().map_or(0.5, |r| f64::from(r) / f64::from(u32::MAX));
    nominal.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_within_the_jitter() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        for (round, nominal) in [(0, 2.0), (1, 4.0), (3, 16.0), (5, 60.0), (40, 60.0)] {
            let wait = delay(base, max, round).as_secs_f64();
            assert!(
                (nominal * 0.8..=nominal * 1.2).contains(&wait),
                "round {round}: {wait}"
            );
        }
    }
}
