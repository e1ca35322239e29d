//! Leases: seats of a feature granted to a session until an expiry, renewed while connected.
//!
//! The table lives in memory and is written to the database at most once a second and at
//! shutdown (`Core::persist_leases`), so a session the SDK resumes after an agent restart keeps
//! its leases; a crash loses at most the last second of lease changes.

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Who holds a lease (an IPC session id, as text so this module does not depend on the IPC crate).
pub type Holder = String;

/// One granted seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Id handed to the application.
    pub id: String,
    /// The session that took it.
    pub holder: Holder,
    /// Product.
    pub product_id: String,
    /// Feature.
    pub feature: String,
    /// When the seat returns to the pool.
    pub expires_at: OffsetDateTime,
}

/// Why a checkout or renewal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Every seat is taken.
    #[error("all {seats} seats of feature {feature:?} are in use")]
    NoSeat {
        /// Feature.
        feature: String,
        /// Seats granted.
        seats: u32,
    },
    /// No such lease (expired, released, or another session's).
    #[error("no such lease")]
    NotFound,
}

/// The lease table.
#[derive(Debug, Default)]
pub struct LeaseTable {
    leases: HashMap<String, Lease>,
    in_use: HashMap<(String, String), u32>,
}

impl LeaseTable {
    /// Grants a seat of `feature` of `product_id` to `holder` for `length`, if one is free under
    /// `seats` (`None`: unlimited).
    ///
    /// # Errors
    /// [`LeaseError::NoSeat`] when every seat is taken.
    pub fn check_out(
        &mut self,
        holder: &str,
        product_id: &str,
        feature: &str,
        seats: Option<u32>,
        now: OffsetDateTime,
        length: Duration,
    ) -> Result<Lease, LeaseError> {
        let key = (product_id.to_owned(), feature.to_owned());
        let used = self.in_use.get(&key).copied().unwrap_or(0);
        if let Some(seats) = seats
            && used >= seats
        {
            return Err(LeaseError::NoSeat {
                feature: feature.to_owned(),
                seats,
            });
        }
        let lease = Lease {
            id: Uuid::new_v4().simple().to_string(),
            holder: holder.to_owned(),
            product_id: product_id.to_owned(),
            feature: feature.to_owned(),
            expires_at: now + length,
        };
        *self.in_use.entry(key).or_insert(0) += 1;
        self.leases.insert(lease.id.clone(), lease.clone());
        Ok(lease)
    }

    /// Extends `lease_id` held by `holder` to `now + length`.
    ///
    /// # Errors
    /// [`LeaseError::NotFound`] when the lease is gone or belongs to another holder.
    pub fn renew(
        &mut self,
        holder: &str,
        lease_id: &str,
        now: OffsetDateTime,
        length: Duration,
    ) -> Result<Lease, LeaseError> {
        match self.leases.get_mut(lease_id) {
            Some(l) if l.holder == holder && l.expires_at > now => {
                l.expires_at = now + length;
                Ok(l.clone())
            }
            _ => Err(LeaseError::NotFound),
        }
    }

    /// Gives back `lease_id` held by `holder`.
    ///
    /// # Errors
    /// [`LeaseError::NotFound`] when the lease is gone or belongs to another holder.
    pub fn release(&mut self, holder: &str, lease_id: &str) -> Result<Lease, LeaseError> {
        match self.leases.get(lease_id) {
            Some(l) if l.holder == holder => {
                let lease = self.leases.remove(lease_id).ok_or(LeaseError::NotFound)?;
                self.forget(&lease);
                Ok(lease)
            }
            _ => Err(LeaseError::NotFound),
        }
    }

    /// Drops every lease that ended at or before `now`; returns them.
    pub fn expire(&mut self, now: OffsetDateTime) -> Vec<Lease> {
        let ended: Vec<String> = self
            .leases
            .values()
            .filter(|l| l.expires_at <= now)
            .map(|l| l.id.clone())
            .collect();
        self.remove_ids(&ended)
    }

    /// Revokes every lease of `product_id` (policy `block_immediately`); returns them.
    pub fn revoke_product(&mut self, product_id: &str) -> Vec<Lease> {
        let ids: Vec<String> = self
            .leases
            .values()
            .filter(|l| l.product_id == product_id)
            .map(|l| l.id.clone())
            .collect();
        self.remove_ids(&ids)
    }

    /// Moves every lease of `from` to `to` (a session resumed under a new connection).
    pub fn reassign(&mut self, from: &str, to: &str) {
        for l in self.leases.values_mut().filter(|l| l.holder == from) {
            l.holder = to.to_owned();
        }
    }

    /// Puts back a lease loaded from the database (its seat counts again).
    pub fn restore(&mut self, lease: Lease) {
        let key = (lease.product_id.clone(), lease.feature.clone());
        if let Some(old) = self.leases.insert(lease.id.clone(), lease) {
            self.forget(&old);
        }
        *self.in_use.entry(key).or_insert(0) += 1;
    }

    /// Every lease held.
    pub fn all(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// The lease `lease_id`, if held.
    #[must_use]
    pub fn get(&self, lease_id: &str) -> Option<&Lease> {
        self.leases.get(lease_id)
    }

    /// Seats of `feature` of `product_id` in use.
    #[must_use]
    pub fn in_use(&self, product_id: &str, feature: &str) -> u32 {
        self.in_use
            .get(&(product_id.to_owned(), feature.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Number of leases held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// The earliest lease expiry, for the scheduler.
    #[must_use]
    pub fn next_expiry(&self) -> Option<OffsetDateTime> {
        self.leases.values().map(|l| l.expires_at).min()
    }

    fn remove_ids(&mut self, ids: &[String]) -> Vec<Lease> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(l) = self.leases.remove(id) {
                self.forget(&l);
                out.push(l);
            }
        }
        out
    }

    fn forget(&mut self, lease: &Lease) {
        let key = (lease.product_id.clone(), lease.feature.clone());
        if let Some(n) = self.in_use.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_use.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(mins: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + mins * 60).unwrap()
    }

    #[test]
    fn seats_are_counted_and_returned() {
        let mut tab = LeaseTable::default();
        let len = Duration::minutes(15);
        let a = tab
            .check_out("s1", "p", "solver", Some(2), t(0), len)
            .unwrap();
        tab.check_out("s2", "p", "solver", Some(2), t(0), len)
            .unwrap();
        assert!(matches!(
            tab.check_out("s3", "p", "solver", Some(2), t(0), len),
            Err(LeaseError::NoSeat { seats: 2, .. })
        ));
        assert_eq!(tab.in_use("p", "solver"), 2);
        assert_eq!(
            tab.release("s2", &a.id),
            Err(LeaseError::NotFound),
            "not the holder"
        );
        tab.release("s1", &a.id).unwrap();
        assert_eq!(tab.in_use("p", "solver"), 1);
        tab.check_out("s3", "p", "solver", Some(2), t(0), len)
            .unwrap();
        assert!(tab.check_out("s4", "p", "other", None, t(0), len).is_ok());
    }

    #[test]
    fn leases_expire_unless_renewed() {
        let mut tab = LeaseTable::default();
        let len = Duration::minutes(15);
        let a = tab.check_out("s1", "p", "f", Some(1), t(0), len).unwrap();
        let b = tab.check_out("s1", "q", "f", None, t(0), len).unwrap();
        assert_eq!(
            tab.renew("s1", &a.id, t(10), len).unwrap().expires_at,
            t(25)
        );
        let ended = tab.expire(t(15));
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].id, b.id);
        assert_eq!(
            tab.renew("s1", &b.id, t(16), len),
            Err(LeaseError::NotFound)
        );
        assert_eq!(tab.next_expiry(), Some(t(25)));
        assert_eq!(tab.revoke_product("p").len(), 1);
        assert!(tab.is_empty());
        assert_eq!(tab.in_use("p", "f"), 0);
    }

    #[test]
    fn reassign_moves_leases_to_the_resumed_session() {
        let mut tab = LeaseTable::default();
        let a = tab
            .check_out("old", "p", "f", None, t(0), Duration::minutes(15))
            .unwrap();
        tab.reassign("old", "new");
        assert!(tab.release("old", &a.id).is_err());
        assert!(tab.release("new", &a.id).is_ok());
    }
}
