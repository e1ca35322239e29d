//! Full-jitter exponential backoff that honours `Retry-After`.
//!
//! Attempt `n` (0-based) waits a uniform random time in `[0, min(cap, base · 2ⁿ)]` ("full
//! jitter"), so a fleet of agents that lost the marketplace at the same moment does not come back
//! in lock-step. When the server sent `Retry-After`, the wait is at least that long (bounded by
//! `max_retry_after`, so a bogus header cannot park an agent for days). The RNG is a parameter so
//! tests are deterministic.

use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;

use crate::client::MarketError;

/// Backoff parameters. The defaults are ARCHITECTURE.md's: 2 s base, 10 min cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(600),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The ceiling for attempt `attempt`: `min(cap, base · 2^attempt)`.
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry number `attempt` (0 for the first retry).
    pub fn delay<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(rng.gen_range(0..=nanos));
        match retry_after {
            Some(server) => jittered.max(server.min(self.max_retry_after)),
            None => jittered,
        }
    }

    /// The wait before retrying after `error`, or `None` when a retry cannot help.
    pub fn delay_after<R: Rng + ?Sized>(
        &self,
        error: &MarketError,
        attempt: u32,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> Option<Duration> {
        if !error.is_retryable() {
            return None;
        }
        let server = error.retry_after().map(|r| r.delay_from(now));
        Some(self.delay(attempt, server, rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn ceilings_double_from_base_up_to_cap() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_secs(2));
        assert_eq!(b.ceiling(1), Duration::from_secs(4));
        assert_eq!(b.ceiling(8), Duration::from_secs(512));
        assert_eq!(b.ceiling(9), Duration::from_secs(600));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(600));
    }

    #[test]
    fn delays_stay_within_bounds_and_spread_out() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..40 {
            let mut low = 0;
            for _ in 0..200 {
                let d = b.delay(attempt, None, &mut rng);
                assert!(d <= b.ceiling(attempt), "{d:?} at {attempt}");
                if d < b.ceiling(attempt) / 2 {
                    low += 1;
                }
            }
            // Full jitter: about half the draws fall in the lower half.
            assert!((60..=140).contains(&low), "{low} low draws at {attempt}");
        }
    }

    #[test]
    fn same_seed_gives_same_schedule() {
        let b = Backoff::default();
        let a: Vec<_> = {
            let mut r = StdRng::seed_from_u64(1);
            (0..10).map(|n| b.delay(n, None, &mut r)).collect()
        };
        let c: Vec<_> = {
            let mut r = StdRng::seed_from_u64(1);
            (0..10).map(|n| b.delay(n, None, &mut r)).collect()
        };
        assert_eq!(a, c);
    }

    #[test]
    fn retry_after_is_a_floor_but_bounded() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let d = b.delay(0, Some(Duration::from_secs(30)), &mut rng);
            assert_eq!(d, Duration::from_secs(30));
        }
        let d = b.delay(0, Some(Duration::from_secs(86_400)), &mut rng);
        assert_eq!(d, Duration::from_secs(3600));
        // A short Retry-After does not shorten a long jittered wait below the jitter.
        let mut seen_longer = false;
        for _ in 0..100 {
            let d = b.delay(9, Some(Duration::from_secs(1)), &mut rng);
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(600));
            seen_longer |= d > Duration::from_secs(1);
        }
        assert!(seen_longer);
    }
}
