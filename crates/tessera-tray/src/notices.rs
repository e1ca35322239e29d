//! Which desktop notifications are due: a product becoming Blocked, 7/3/1 days before an expiry
//! or the end of a grace period, and an upgrade being offered. Each is sent once; the planner
//! remembers what it sent, so re-evaluating the same state (every state change and every tick)
//! sends nothing new.

use std::collections::HashSet;

use time::OffsetDateTime;

use tessera_types::{LicenseState, ProductState};

use crate::model::{AppState, date, days_until, display_name, reason_text};

/// Days before a deadline at which the user is reminded.
pub const REMINDER_DAYS: [i64; 3] = [7, 3, 1];

/// How pressing a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Information (update offered, action done).
    Normal,
    /// The user must act (blocked, deadline close, an action failed).
    Critical,
}

/// A desktop notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// First line.
    pub summary: String,
    /// Detail.
    pub body: String,
    /// How pressing.
    pub urgency: Urgency,
}

impl Notice {
    /// A normal notice.
    #[must_use]
    pub fn info(summary: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            body: body.into(),
            urgency: Urgency::Normal,
        }
    }

    /// A critical notice.
    #[must_use]
    pub fn critical(summary: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            body: body.into(),
            urgency: Urgency::Critical,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Sent {
    Blocked(String),
    Reminder {
        product_id: String,
        deadline: OffsetDateTime,
        days: i64,
    },
    Update(String),
}

/// Remembers the notifications already sent.
#[derive(Debug, Default)]
pub struct NoticePlanner {
    sent: HashSet<Sent>,
}

impl NoticePlanner {
    /// A planner that has sent nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The notifications `state` calls for that were not sent yet. While the agent is
    /// unreachable nothing is planned and nothing is forgotten (the state is unknown, not changed).
    pub fn due(&mut self, state: &AppState) -> Vec<Notice> {
        if !state.connected() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for p in state.products() {
            self.blocked(p, &mut out);
            self.reminder(state.now, p, &mut out);
        }
        for (product_id, offer) in &state.updates {
            if !self.sent.insert(Sent::Update(product_id.clone())) {
                continue;
            }
            let name = state
                .products()
                .iter()
                .find(|p| &p.product_id == product_id)
                .map_or_else(|| product_id.clone(), display_name);
            let body = if offer.forced {
                "A required update is published. Choose \"Install update\" in the Tessera menu; the application will ask you to save and exit."
            } else {
                "An update is published. Choose \"Install update\" in the Tessera menu when convenient."
            };
            out.push(Notice::info(format!("Update available for {name}"), body));
        }
        // An offer that is gone (installed, withdrawn) may be announced again if it comes back.
        self.sent.retain(|s| match s {
            Sent::Update(p) => state.updates.contains_key(p),
            _ => true,
        });
        out
    }

    fn blocked(&mut self, p: &ProductState, out: &mut Vec<Notice>) {
        let key = Sent::Blocked(p.product_id.clone());
        if p.state != LicenseState::Blocked {
            // Unblocked: a later block is news again.
            self.sent.remove(&key);
            return;
        }
        if self.sent.insert(key) {
            let detail = match p.message.as_deref().map(str::trim) {
                Some(m) if !m.is_empty() => format!("{}: {m}", reason_text(p.reason)),
                _ => reason_text(p.reason).to_owned(),
            };
            out.push(Notice::critical(
                format!("{} is blocked", display_name(p)),
                format!("{detail}. Renew on KooGallery or import a new License."),
            ));
        }
    }

    fn reminder(&mut self, now: OffsetDateTime, p: &ProductState, out: &mut Vec<Notice>) {
        let (deadline, what) = match p.state {
            LicenseState::Grace => match p.deadline {
                Some(d) => (d, "grace period ends"),
                None => return,
            },
            LicenseState::Active => match p.expires_at {
                Some(d) => (d, "License expires"),
                None => return,
            },
            LicenseState::Blocked => return,
        };
        let left = days_until(now, deadline);
        if left <= 0 {
            return;
        }
        // Only the tightest reminder due: a tray started 2 days before expiry says "2 days"
        // once, not the 7-day and 3-day reminders as well.
        let Some(days) = REMINDER_DAYS.iter().copied().filter(|d| left <= *d).min() else {
            return;
        };
        let key = Sent::Reminder {
            product_id: p.product_id.clone(),
            deadline,
            days,
        };
        let already = REMINDER_DAYS.iter().filter(|d| **d <= days).any(|d| {
            self.sent.contains(&Sent::Reminder {
                product_id: p.product_id.clone(),
                deadline,
                days: *d,
            })
        });
        if already || !self.sent.insert(key) {
            return;
        }
        let when = if left == 1 {
            "within a day".to_owned()
        } else {
            format!("in {left} days")
        };
        out.push(Notice::critical(
            format!("{}: {what} {when}", display_name(p)),
            format!(
                "On {} (UTC). Renew on KooGallery to keep working without interruption.",
                date(deadline)
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use time::Duration;

    use tessera_types::{Snapshot, StateReason};

    use super::*;
    use crate::model::{AgentLink, UpdateOffer};

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn state(now: OffsetDateTime, products: Vec<ProductState>) -> AppState {
        let mut snapshot = Snapshot::empty(now);
        for p in products {
            snapshot.upsert(p);
        }
        AppState {
            agent: AgentLink::Connected { snapshot },
            updates: BTreeMap::new(),
            now,
        }
    }

    fn product(state: LicenseState, expires_at: Option<OffsetDateTime>) -> ProductState {
        ProductState {
            product_id: "foo".into(),
            display_name: Some("FooCAD".into()),
            model: None,
            state,
            reason: StateReason::Licensed,
            message: None,
            deadline: None,
            expires_at,
            last_verified_at: None,
            features: Vec::new(),
        }
    }

    #[test]
    fn reminders_at_seven_three_and_one_day_each_once() {
        let expiry = at(1_800_000_000);
        let p = product(LicenseState::Active, Some(expiry));
        let mut planner = NoticePlanner::new();
        let mut sent = Vec::new();
        // Walk the clock hourly through the last ten days.
        let mut now = expiry - Duration::days(10);
        while now < expiry + Duration::days(1) {
            for n in planner.due(&state(now, vec![p.clone()])) {
                sent.push((days_until(now, expiry), n.summary));
            }
            now += Duration::hours(1);
        }
        assert_eq!(
            sent,
            vec![
                (7, "FooCAD: License expires in 7 days".to_owned()),
                (3, "FooCAD: License expires in 3 days".to_owned()),
                (1, "FooCAD: License expires within a day".to_owned()),
            ]
        );
    }

    #[test]
    fn a_late_start_sends_only_the_tightest_reminder_and_grace_counts() {
        let deadline = at(1_800_000_000);
        let mut p = product(LicenseState::Grace, None);
        p.deadline = Some(deadline);
        p.reason = StateReason::OfflineGrace;
        let mut planner = NoticePlanner::new();
        let now = deadline - Duration::days(2);
        let due = planner.due(&state(now, vec![p.clone()]));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].summary, "FooCAD: grace period ends in 2 days");
        assert_eq!(due[0].urgency, Urgency::Critical);
        assert!(due[0].body.contains("2027-01-15"), "{}", due[0].body);
        assert!(
            planner
                .due(&state(now + Duration::hours(5), vec![p.clone()]))
                .is_empty()
        );
        // A renewal moves the deadline: reminders start over for the new date.
        p.deadline = Some(deadline + Duration::days(5));
        let due = planner.due(&state(deadline, vec![p]));
        assert_eq!(due[0].summary, "FooCAD: grace period ends in 5 days");
    }

    #[test]
    fn blocked_is_announced_once_per_block() {
        let mut p = product(LicenseState::Blocked, None);
        p.reason = StateReason::Frozen;
        let mut planner = NoticePlanner::new();
        let now = at(1_800_000_000);
        let due = planner.due(&state(now, vec![p.clone()]));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].summary, "FooCAD is blocked");
        assert!(due[0].body.starts_with("frozen on KooGallery."));
        assert!(planner.due(&state(now, vec![p.clone()])).is_empty());
        // The agent going away and coming back is not a new block.
        assert!(planner.due(&AppState::unreachable(now, "down")).is_empty());
        assert!(planner.due(&state(now, vec![p.clone()])).is_empty());
        let active = product(LicenseState::Active, None);
        assert!(planner.due(&state(now, vec![active])).is_empty());
        assert_eq!(planner.due(&state(now, vec![p])).len(), 1);
    }

    #[test]
    fn update_offers_are_announced_once_while_offered() {
        let p = product(LicenseState::Active, None);
        let mut planner = NoticePlanner::new();
        let now = at(1_800_000_000);
        let mut s = state(now, vec![p]);
        s.updates.insert("foo".into(), UpdateOffer { forced: true });
        let due = planner.due(&s);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].summary, "Update available for FooCAD");
        assert!(due[0].body.contains("required update"));
        assert!(planner.due(&s).is_empty());
        let offer = s.updates.remove("foo").unwrap();
        assert!(planner.due(&s).is_empty());
        s.updates.insert("foo".into(), offer);
        assert_eq!(planner.due(&s).len(), 1);
    }
}
