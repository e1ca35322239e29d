//! The injectable source of wall-clock time.
//!
//! Every component that reads the time takes a [`SharedClock`] so that tests can move time
//! forward (or backward, to simulate tampering) without sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::{Duration, OffsetDateTime};

/// A source of the current UTC time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// A clock shared between tasks.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// A [`SharedClock`] reading the system time.
    #[must_use]
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
///
/// Millisecond resolution is what every KooGallery format carries, and it lets the value live in
/// one atomic so readers never block a writer.
#[derive(Clone)]
pub struct ManualClock {
    unix_millis: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `start` (truncated to milliseconds).
    #[must_use]
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            unix_millis: Arc::new(AtomicI64::new(to_millis(start))),
        }
    }

    /// A clock standing at the given Unix time in seconds.
    ///
    /// # Panics
    /// If `secs` is outside the range `time` can represent (years −9999..=9999).
    #[must_use]
    pub fn at_unix(secs: i64) -> Self {
        Self::new(OffsetDateTime::from_unix_timestamp(secs).expect("unix time in range"))
    }

    /// This clock as a [`SharedClock`]; the returned handle follows every later change.
    #[must_use]
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }

    /// Moves the clock by `by` (which may be negative, to simulate a clock set back).
    pub fn advance(&self, by: Duration) {
        let millis = i64::try_from(by.whole_milliseconds()).unwrap_or(i64::MAX);
        self.unix_millis.fetch_add(millis, Ordering::SeqCst);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: OffsetDateTime) {
        self.unix_millis.store(to_millis(to), Ordering::SeqCst);
    }
}

fn to_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let millis = self.unix_millis.load(Ordering::SeqCst);
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let shared = clock.shared();
        assert_eq!(shared.now().unix_timestamp(), 1_700_000_000);
        clock.advance(Duration::hours(25));
        assert_eq!(shared.now().unix_timestamp(), 1_700_000_000 + 25 * 3600);
        clock.advance(Duration::days(-2));
        assert_eq!(
            shared.now().unix_timestamp(),
            1_700_000_000 + 3600 - 24 * 3600
        );
    }

    #[test]
    fn system_clock_is_utc_and_recent() {
        let now = SystemClock.now();
        assert!(now.offset().is_utc());
        assert!(now.year() >= 2024);
    }
}
