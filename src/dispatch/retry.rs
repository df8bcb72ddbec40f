//! When to try again: one pure function, so the schedule is testable on its own and the
//! result can be persisted (`next_attempt_at`) to survive restarts. Short in-request
//! retries are not done here: a failed apply goes back to the outbox with this time.

use std::time::Duration;

/// The delay before the next attempt after `failures` failed attempts (1 = the first
/// failure): exponential from `base`, capped at `cap`, with full jitter (`unit` is a random
/// number in [0, 1)). A platform's `Retry-After` is honoured, clamped to `max_retry_after`:
/// we never come back sooner than it asked.
pub fn next_attempt_delay(
    failures: u32,
    base: Duration,
    cap: Duration,
    retry_after: Option<Duration>,
    max_retry_after: Duration,
    unit: f64,
) -> Duration {
    let exponent = failures.saturating_sub(1).min(32);
    let ceiling = base
        .checked_mul(1u32 << exponent.min(31))
        .unwrap_or(cap)
        .min(cap);
    // Full jitter spreads a herd of failures over the whole window; a small floor keeps a
    // struggling target from being hit again at once.
    let floor = (base / 10).min(ceiling);
    let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0)).max(floor);
    match retry_after {
        Some(asked) => jittered.max(asked.min(max_retry_after)),
        None => jittered,
    }
}

/// A random number in [0, 1) for the jitter.
pub fn jitter_unit() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(5);
    const CAP: Duration = Duration::from_secs(3600);
    const MAX_RA: Duration = Duration::from_secs(600);

    #[test]
    fn the_window_doubles_up_to_the_cap() {
        let top = |failures| next_attempt_delay(failures, BASE, CAP, None, MAX_RA, 1.0);
        assert_eq!(top(1), Duration::from_secs(5));
        assert_eq!(top(2), Duration::from_secs(10));
        assert_eq!(top(5), Duration::from_secs(80));
        assert_eq!(top(10), Duration::from_secs(2560));
        assert_eq!(top(11), CAP);
        assert_eq!(top(1000), CAP);
    }

    #[test]
    fn jitter_spreads_over_the_window_with_a_floor() {
        let at = |unit| next_attempt_delay(4, BASE, CAP, None, MAX_RA, unit);
        assert_eq!(at(0.5), Duration::from_secs(20));
        assert_eq!(at(0.0), Duration::from_millis(500));
        assert!(at(0.999) < Duration::from_secs(40));
    }

    #[test]
    fn retry_after_is_honoured_and_clamped() {
        let with = |ra, unit| next_attempt_delay(1, BASE, CAP, Some(ra), MAX_RA, unit);
        assert_eq!(with(Duration::from_secs(30), 0.5), Duration::from_secs(30));
        // The backoff may already be longer than what the platform asked.
        assert_eq!(
            next_attempt_delay(8, BASE, CAP, Some(Duration::from_secs(1)), MAX_RA, 1.0),
            Duration::from_secs(640)
        );
        assert_eq!(with(Duration::from_secs(86_400), 0.5), MAX_RA);
    }
}
