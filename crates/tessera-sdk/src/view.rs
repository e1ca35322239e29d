//! The hot-path view: what `check` reads.
//!
//! The IO thread builds a new immutable [`View`] whenever something that changes an answer
//! happens (a pushed state, a lease taken or ended, the link lost or back) and swaps it in
//! atomically. A check loads the current view and compares bytes: no syscall, no allocation, no
//! lock the IO thread ever takes.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tessera_types::{LicenseState, ProductState};

use crate::result::tessera_result;

/// Where the link to the agent stands, as far as checks are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// `connect` not called, or no connection made yet.
    NotConnected,
    /// Connected and greeted.
    Connected,
    /// Lost, within the lease: cached decisions still hold.
    Offline,
    /// Lost for longer than the lease: checks fail with `TESSERA_AGENT_LOST`.
    Lost,
    /// The client is shutting down.
    Closed,
}

/// One immutable state of everything a check needs.
#[derive(Debug, Clone)]
pub struct View {
    /// The link.
    pub link: LinkStatus,
    /// The product's state as the agent last told it.
    pub product: Option<Arc<ProductState>>,
    /// Features this client holds a live lease on: usable whatever the product state says (a
    /// block takes effect for new checkouts; running work keeps its seat until the lease ends).
    pub held: Box<[Box<str>]>,
}

impl View {
    /// The view of a client that has not connected.
    #[must_use]
    pub fn initial() -> Self {
        Self {
            link: LinkStatus::NotConnected,
            product: None,
            held: Box::new([]),
        }
    }

    /// Whether `feature` may be used now, as far as this view tells.
    #[must_use]
    pub fn check(&self, feature: &[u8]) -> tessera_result {
        match self.link {
            LinkStatus::Connected | LinkStatus::Offline => {}
            LinkStatus::NotConnected => return tessera_result::TESSERA_NOT_CONNECTED,
            LinkStatus::Lost => return tessera_result::TESSERA_AGENT_LOST,
            LinkStatus::Closed => return tessera_result::TESSERA_CLOSED,
        }
        if self.held.iter().any(|f| f.as_bytes() == feature) {
            return tessera_result::TESSERA_OK;
        }
        let Some(product) = &self.product else {
            return tessera_result::TESSERA_UNKNOWN_PRODUCT;
        };
        if product.state == LicenseState::Blocked {
            return tessera_result::for_blocked(product.reason);
        }
        if product
            .features
            .iter()
            .any(|f| f.name.as_bytes() == feature)
        {
            tessera_result::TESSERA_OK
        } else {
            tessera_result::TESSERA_FEATURE_NOT_LICENSED
        }
    }
}

/// The atomically swapped slot holding the current [`View`].
#[derive(Debug)]
pub struct ViewCell {
    current: ArcSwap<View>,
}

impl ViewCell {
    /// A cell holding [`View::initial`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            current: ArcSwap::from_pointee(View::initial()),
        }
    }

    /// Answers a check from the current view.
    #[inline]
    pub fn check(&self, feature: &[u8]) -> tessera_result {
        self.current.load().check(feature)
    }

    /// The current view.
    #[must_use]
    pub fn load(&self) -> Arc<View> {
        self.current.load_full()
    }

    /// Replaces the view.
    pub fn store(&self, view: View) {
        self.current.store(Arc::new(view));
    }
}

impl Default for ViewCell {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use tessera_types::StateReason;
    use tessera_types::state::FeatureState;

    use super::*;

    fn product(state: LicenseState, reason: StateReason) -> Arc<ProductState> {
        Arc::new(ProductState {
            product_id: "foocad".into(),
            display_name: None,
            model: None,
            state,
            reason,
            message: None,
            deadline: None,
            expires_at: None,
            last_verified_at: None,
            features: vec![FeatureState {
                name: "solver".into(),
                seats: Some(1),
                in_use: 1,
                version_ceiling: None,
            }],
        })
    }

    #[test]
    fn link_decides_before_the_license() {
        let mut view = View {
            link: LinkStatus::Connected,
            product: Some(product(LicenseState::Active, StateReason::Licensed)),
            held: Box::new([]),
        };
        assert_eq!(view.check(b"solver"), tessera_result::TESSERA_OK);
        // A full seat count does not fail a check: checks do not take seats.
        assert_eq!(
            view.check(b"mesher"),
            tessera_result::TESSERA_FEATURE_NOT_LICENSED
        );
        view.link = LinkStatus::Offline;
        assert_eq!(view.check(b"solver"), tessera_result::TESSERA_OK);
        view.link = LinkStatus::Lost;
        assert_eq!(view.check(b"solver"), tessera_result::TESSERA_AGENT_LOST);
        view.link = LinkStatus::NotConnected;
        assert_eq!(view.check(b"solver"), tessera_result::TESSERA_NOT_CONNECTED);
        view.link = LinkStatus::Closed;
        assert_eq!(view.check(b"solver"), tessera_result::TESSERA_CLOSED);
    }

    #[test]
    fn blocked_product_fails_with_its_reason_unless_a_lease_is_held() {
        let mut view = View {
            link: LinkStatus::Connected,
            product: Some(product(LicenseState::Blocked, StateReason::Frozen)),
            held: Box::new([]),
        };
        assert_eq!(
            view.check(b"solver"),
            tessera_result::TESSERA_LICENSE_FROZEN
        );
        view.held = vec![Box::from("solver")].into_boxed_slice();
        assert_eq!(view.check(b"solver"), tessera_result::TESSERA_OK);
        assert_eq!(view.check(b"solve"), tessera_result::TESSERA_LICENSE_FROZEN);
        view.product = Some(product(LicenseState::Grace, StateReason::OfflineGrace));
        view.held = Box::new([]);
        assert_eq!(view.check(b"solver"), tessera_result::TESSERA_OK);
        view.product = None;
        assert_eq!(
            view.check(b"solver"),
            tessera_result::TESSERA_UNKNOWN_PRODUCT
        );
    }

    #[test]
    fn cell_swaps_views() {
        let cell = ViewCell::new();
        assert_eq!(cell.check(b"solver"), tessera_result::TESSERA_NOT_CONNECTED);
        cell.store(View {
            link: LinkStatus::Connected,
            product: Some(product(LicenseState::Active, StateReason::Licensed)),
            held: Box::new([]),
        });
        assert_eq!(cell.check(b"solver"), tessera_result::TESSERA_OK);
        assert_eq!(cell.load().link, LinkStatus::Connected);
    }
}
