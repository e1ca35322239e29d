//! License state as the agent decides it and every client shows it.
//!
//! The agent owns the decision; the SDK, the CLI and the tray only read these values (the SDK's
//! hot path reads a [`Snapshot`] it keeps in memory). Times are RFC 3339 UTC on the wire so a
//! person reading a log or a `tessera status --json` output understands them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The enforcement decision for one product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LicenseState {
    /// Licensed and verified; new checkouts are granted.
    Active,
    /// Still usable, but something needs attention before `deadline` (offline grace running,
    /// expiry close): new checkouts are granted.
    Grace,
    /// Not usable: new checkouts are refused; running leases end at their expiry unless the
    /// product's policy blocks immediately.
    Blocked,
}

impl LicenseState {
    /// Whether a new checkout may be granted in this state.
    #[must_use]
    pub fn allows_new_checkout(self) -> bool {
        !matches!(self, LicenseState::Blocked)
    }
}

/// Why a product is in its state. Append-only: clients built against an older list read a
/// newer reason as [`StateReason::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateReason {
    /// A valid License or an `ALIVE` authorization code.
    Licensed,
    /// Nothing imported or activated for this product.
    NoLicense,
    /// The License or code validity has ended.
    Expired,
    /// The License's not-before lies in the future.
    NotYetValid,
    /// The marketplace froze the instance or code (e.g. overdue payment).
    Frozen,
    /// The marketplace released (deleted) the instance or code.
    Released,
    /// The heartbeat answered a code status other than `ALIVE`.
    CodeNotAlive,
    /// The License is bound to another device.
    BindingMismatch,
    /// The License signature does not verify with any trusted key.
    SignatureInvalid,
    /// The marketplace could not be reached; the offline grace period is running.
    OfflineGrace,
    /// The marketplace could not be reached for longer than the offline grace period.
    OfflineGraceSpent,
    /// The clock moved backwards beyond tolerance; no offline grace until an online check passes.
    ClockTampered,
    /// The application reported that its own License verification failed.
    VerifyFailed,
    /// The trial period has ended.
    TrialExpired,
    /// A reason this build does not know (sent by a newer agent).
    #[serde(other)]
    Unknown,
}

/// How the product is licensed on KooGallery (PROTOCOL.md §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductModel {
    /// Model A: an authorization code activated and queried online.
    AuthorizationCode,
    /// Model B: a License file or string issued by the ISV, bound to this device.
    LicenseFile,
}

/// One licensed feature of a product and how many seats of it are in use on this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureState {
    /// Feature name as the License names it (e.g. `solver.nonlinear`).
    pub name: String,
    /// Concurrent seats the License grants; `None` means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
    /// Leases currently held for this feature.
    #[serde(default)]
    pub in_use: u32,
    /// Highest application version the License covers, if it limits versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_ceiling: Option<String>,
}

impl FeatureState {
    /// Whether one more lease fits within the granted seats.
    #[must_use]
    pub fn has_free_seat(&self) -> bool {
        self.seats.is_none_or(|seats| self.in_use < seats)
    }
}

/// The agent's decision for one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductState {
    /// KooGallery product id (as in the product descriptor).
    pub product_id: String,
    /// Name to show a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Licensing model, when the product descriptor names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ProductModel>,
    /// The decision.
    pub state: LicenseState,
    /// Why.
    pub reason: StateReason,
    /// Human-readable detail, safe to show (never a code or License content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// In `Grace`: when the product becomes `Blocked` unless something changes.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<OffsetDateTime>,
    /// When the License or code validity ends; `None` for perpetual or unknown.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
    /// Last successful online check or local verification.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_verified_at: Option<OffsetDateTime>,
    /// Licensed features.
    #[serde(default)]
    pub features: Vec<FeatureState>,
}

impl ProductState {
    /// The feature named `name`, if the License grants it.
    #[must_use]
    pub fn feature(&self, name: &str) -> Option<&FeatureState> {
        self.features.iter().find(|f| f.name == name)
    }
}

/// Every product the agent knows, as of one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the agent produced this snapshot (its trusted clock).
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
    /// One entry per product, in product-id order.
    #[serde(default)]
    pub products: Vec<ProductState>,
}

impl Snapshot {
    /// A snapshot with no products.
    #[must_use]
    pub fn empty(taken_at: OffsetDateTime) -> Self {
        Self {
            taken_at,
            products: Vec::new(),
        }
    }

    /// The state of `product_id`, if the agent knows the product.
    #[must_use]
    pub fn product(&self, product_id: &str) -> Option<&ProductState> {
        self.products.iter().find(|p| p.product_id == product_id)
    }

    /// Replaces the entry for `state.product_id` (or adds it), keeping product-id order.
    pub fn upsert(&mut self, state: ProductState) {
        match self
            .products
            .binary_search_by(|p| p.product_id.as_str().cmp(state.product_id.as_str()))
        {
            Ok(i) => self.products[i] = state,
            Err(i) => self.products.insert(i, state),
        }
    }

    /// Whether a new checkout of `feature` of `product_id` would be granted as far as this
    /// snapshot can tell (product not blocked, feature granted, a seat free). The agent makes the
    /// final decision; this is the SDK's syscall-free pre-check.
    #[must_use]
    pub fn may_check_out(&self, product_id: &str, feature: &str) -> bool {
        self.product(product_id).is_some_and(|p| {
            p.state.allows_new_checkout()
                && p.feature(feature).is_some_and(FeatureState::has_free_seat)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, state: LicenseState) -> ProductState {
        ProductState {
            product_id: id.to_owned(),
            display_name: None,
            model: Some(ProductModel::LicenseFile),
            state,
            reason: StateReason::Licensed,
            message: None,
            deadline: None,
            expires_at: Some(OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()),
            last_verified_at: None,
            features: vec![FeatureState {
                name: "solver".to_owned(),
                seats: Some(1),
                in_use: 0,
                version_ceiling: None,
            }],
        }
    }

    #[test]
    fn checkout_precheck_follows_state_and_seats() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let mut snap = Snapshot::empty(t);
        snap.upsert(product("b", LicenseState::Active));
        snap.upsert(product("a", LicenseState::Blocked));
        assert_eq!(snap.products[0].product_id, "a");
        assert!(snap.may_check_out("b", "solver"));
        assert!(!snap.may_check_out("b", "mesher"));
        assert!(!snap.may_check_out("a", "solver"));
        assert!(!snap.may_check_out("zz", "solver"));

        let mut full = product("b", LicenseState::Grace);
        full.features[0].in_use = 1;
        snap.upsert(full);
        assert_eq!(snap.products.len(), 2);
        assert!(!snap.may_check_out("b", "solver"));
    }

    #[test]
    fn serde_round_trip_and_unknown_reason() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let mut snap = Snapshot::empty(t);
        snap.upsert(product("p1", LicenseState::Grace));
        let json = serde_json::to_string(&snap).unwrap();
        assert!(
            json.contains("\"taken_at\":\"2027-01-15T08:00:00Z\""),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snap);

        let newer = json.replace("\"licensed\"", "\"some_future_reason\"");
        let parsed: Snapshot = serde_json::from_str(&newer).unwrap();
        assert_eq!(parsed.products[0].reason, StateReason::Unknown);
    }
}
