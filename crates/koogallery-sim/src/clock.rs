//! The marketplace's own notion of "now": an injected base clock plus an offset the operator can
//! move through the control API, so expiry logic can be exercised without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tessera_types::{Clock, SharedClock};
use time::{Duration, OffsetDateTime};

/// A clock that follows `base` shifted by a settable offset. Cloning shares the offset.
#[derive(Debug, Clone)]
pub struct SimClock {
    base: SharedClock,
    offset_millis: Arc<AtomicI64>,
}

impl SimClock {
    /// A clock following `base` exactly until told otherwise.
    #[must_use]
    pub fn new(base: SharedClock) -> Self {
        Self {
            base,
            offset_millis: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Moves the marketplace's time by `by` (negative moves it back).
    pub fn advance(&self, by: Duration) {
        let millis = i64::try_from(by.whole_milliseconds()).unwrap_or(i64::MAX);
        self.offset_millis.fetch_add(millis, Ordering::SeqCst);
    }

    /// Makes the marketplace's time read `to` now (it keeps running with the base clock).
    pub fn set(&self, to: OffsetDateTime) {
        let delta = to - self.base.now();
        let millis = i64::try_from(delta.whole_milliseconds()).unwrap_or(i64::MAX);
        self.offset_millis.store(millis, Ordering::SeqCst);
    }

    /// The current offset from the base clock.
    #[must_use]
    pub fn offset(&self) -> Duration {
        Duration::milliseconds(self.offset_millis.load(Ordering::SeqCst))
    }

    /// This clock as a [`SharedClock`].
    #[must_use]
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for SimClock {
    fn now(&self) -> OffsetDateTime {
        self.base.now() + self.offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_types::ManualClock;

    #[test]
    fn set_and_advance_shift_the_base_clock() {
        let base = ManualClock::at_unix(1_700_000_000);
        let sim = SimClock::new(base.shared());
        sim.advance(Duration::days(2));
        assert_eq!(sim.now().unix_timestamp(), 1_700_000_000 + 2 * 86_400);
        base.advance(Duration::seconds(5));
        assert_eq!(sim.now().unix_timestamp(), 1_700_000_005 + 2 * 86_400);
        let target = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        sim.set(target);
        assert_eq!(sim.now(), target);
        assert_eq!(sim.shared().now(), target);
    }
}
