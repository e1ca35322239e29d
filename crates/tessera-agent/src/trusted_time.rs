//! Trusted time: what the agent believes the time is, and whether the local clock was set back.
//!
//! The agent keeps a high-water mark of every time it has trusted: the local clock (corrected by
//! the last server offset) and the marketplace's `Date` headers. A local reading more than
//! [`ROLLBACK_TOLERANCE`] behind the mark is tampering: the flag stays up, and no offline grace is
//! given, until an online check succeeds. Smaller backward steps (NTP corrections, a dual-boot
//! RTC in local time) are absorbed: trusted time never runs backwards, so they cannot extend a
//! grace period either.
//!
//! A server `Date` more than [`SKEW_IN_SYNC`] from the local clock is kept as an offset, so a
//! machine whose clock is simply wrong keeps working online and its grace is counted in server
//! time (reliability-anchors R9).

use time::{Duration, OffsetDateTime};

/// A backward jump beyond this against the high-water mark is tampering.
pub const ROLLBACK_TOLERANCE: Duration = Duration::hours(24);
/// Server and local clocks closer than this are "in sync" and no offset is kept.
pub const SKEW_IN_SYNC: Duration = Duration::minutes(5);

/// The persisted trusted-time record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedTime {
    /// Latest trusted time ever observed.
    pub high_water: OffsetDateTime,
    /// Server time minus local time at the last online contact (zero when in sync).
    pub offset: Duration,
    /// When a rollback was detected, if the flag is up.
    pub tampered_at: Option<OffsetDateTime>,
}

/// What an observation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Time moved forward or stayed within tolerance.
    Normal,
    /// The clock jumped back beyond tolerance now (the flag was just raised).
    RollbackDetected {
        /// How far behind the high-water mark the clock was.
        behind: Duration,
    },
}

impl TrustedTime {
    /// A fresh record starting at `now`.
    #[must_use]
    pub fn new(now: OffsetDateTime) -> Self {
        Self {
            high_water: now,
            offset: Duration::ZERO,
            tampered_at: None,
        }
    }

    /// Whether offline grace is withheld because the clock was set back.
    #[must_use]
    pub fn tampered(&self) -> bool {
        self.tampered_at.is_some()
    }

    /// The trusted time for a local clock reading: the corrected reading, never before the
    /// high-water mark.
    #[must_use]
    pub fn now(&self, local: OffsetDateTime) -> OffsetDateTime {
        (local + self.offset).max(self.high_water)
    }

    /// Records a local clock reading.
    pub fn observe_local(&mut self, local: OffsetDateTime) -> Observation {
        let corrected = local + self.offset;
        let behind = self.high_water - corrected;
        if behind > ROLLBACK_TOLERANCE {
            let first = self.tampered_at.is_none();
            if first {
                self.tampered_at = Some(self.high_water);
                return Observation::RollbackDetected { behind };
            }
            return Observation::Normal;
        }
        if corrected > self.high_water {
            self.high_water = corrected;
        }
        Observation::Normal
    }

    /// Records a successful online check answered with server time `server` (the HTTP `Date`)
    /// while the local clock read `local`. The server is authoritative: it clears the tamper flag
    /// and resets the mark, even backwards (a clock once set far ahead must not block forever).
    pub fn observe_online(&mut self, local: OffsetDateTime, server: OffsetDateTime) {
        let skew = server - local;
        self.offset = if skew.abs() <= SKEW_IN_SYNC {
            Duration::ZERO
        } else {
            skew
        };
        self.high_water = server.max(local + self.offset);
        self.tampered_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn small_backward_steps_are_absorbed_and_do_not_rewind() {
        let mut tt = TrustedTime::new(t(0));
        assert_eq!(tt.observe_local(t(3600)), Observation::Normal);
        assert_eq!(tt.observe_local(t(3600 - 23 * 3600)), Observation::Normal);
        assert!(!tt.tampered());
        assert_eq!(tt.now(t(3600 - 23 * 3600)), t(3600));
    }

    #[test]
    fn rollback_beyond_24h_raises_the_flag_once_until_online() {
        let mut tt = TrustedTime::new(t(0));
        tt.observe_local(t(100 * 3600));
        let obs = tt.observe_local(t(100 * 3600 - 48 * 3600));
        assert_eq!(
            obs,
            Observation::RollbackDetected {
                behind: Duration::hours(48)
            }
        );
        assert!(tt.tampered());
        assert_eq!(
            tt.observe_local(t(100 * 3600 - 47 * 3600)),
            Observation::Normal
        );
        assert!(tt.tampered(), "moving forward a little does not clear it");
        // an online check with the true time clears it and records the offset
        tt.observe_online(t(100 * 3600 - 47 * 3600), t(101 * 3600));
        assert!(!tt.tampered());
        assert_eq!(tt.offset, Duration::hours(48));
        assert_eq!(tt.now(t(100 * 3600 - 47 * 3600)), t(101 * 3600));
        assert_eq!(
            tt.observe_local(t(100 * 3600 - 46 * 3600)),
            Observation::Normal
        );
        assert!(!tt.tampered());
    }

    #[test]
    fn exactly_24h_back_is_tolerated() {
        let mut tt = TrustedTime::new(t(0));
        tt.observe_local(t(48 * 3600));
        assert_eq!(tt.observe_local(t(24 * 3600)), Observation::Normal);
        assert!(!tt.tampered());
    }

    #[test]
    fn online_in_sync_keeps_no_offset_and_server_resets_a_clock_set_ahead() {
        let mut tt = TrustedTime::new(t(0));
        tt.observe_local(t(365 * 86_400));
        tt.observe_online(t(0), t(60));
        assert_eq!(tt.offset, Duration::ZERO);
        assert_eq!(tt.high_water, t(60));
        assert_eq!(tt.observe_local(t(120)), Observation::Normal);
        assert!(!tt.tampered());
    }
}
