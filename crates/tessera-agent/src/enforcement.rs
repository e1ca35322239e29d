//! The per-product decision: Active, Grace or Blocked, with a reason and a deadline.
//!
//! [`decide`] is a pure function of what the agent knows about a product (its code, its License,
//! the trusted time): every rule is here and nowhere else, and the tests below pin each one.
//!
//! Rules (numbers are the policy defaults):
//! - Model A: the last heartbeat status decides first: `EXPIRED`, `RELEASED`, frozen or a code
//!   the marketplace does not know block at once. An `ALIVE` code is Active while online; when the
//!   last online attempt failed it is in Grace until `last good check + offline grace (14 d)`,
//!   never past the code's expiry, then Blocked. A code not checked for longer than the grace is
//!   Blocked until a check succeeds, whether or not an attempt failed.
//! - Model B: a License that failed verification is Blocked with the verification's reason;
//!   a verified one is Active between its not-before and not-after (trusted time).
//! - Clock set back beyond 24 h, or a state row whose MAC fails: no offline grace; every product
//!   that depends on time is Blocked (`ClockTampered`) until an online check succeeds.
//! - A product with both models takes the better of the two decisions.

use time::OffsetDateTime;

use tessera_types::state::{FeatureState, ProductModel};
use tessera_types::{LicenseState, ProductState, StateReason};

use crate::products::{Policy, ProductDescriptor};

/// The marketplace status of an authorization code, as the agent last learned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeStatus {
    /// Activated and usable.
    Alive,
    /// Validity ended.
    Expired,
    /// Released (deleted) by the marketplace.
    Released,
    /// Frozen (overdue payment, violation).
    Frozen,
    /// The marketplace does not know the code.
    Unknown,
}

impl CodeStatus {
    /// Reads a heartbeat/activation `status` value.
    #[must_use]
    pub fn from_wire(status: &str) -> Self {
        match status.trim().to_ascii_uppercase().as_str() {
            "ALIVE" => CodeStatus::Alive,
            "EXPIRED" => CodeStatus::Expired,
            "RELEASED" => CodeStatus::Released,
            "FREEZE" | "FROZEN" => CodeStatus::Frozen,
            _ => CodeStatus::Unknown,
        }
    }

    /// The value stored in the database.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CodeStatus::Alive => "ALIVE",
            CodeStatus::Expired => "EXPIRED",
            CodeStatus::Released => "RELEASED",
            CodeStatus::Frozen => "FROZEN",
            CodeStatus::Unknown => "UNKNOWN",
        }
    }
}

/// What the agent knows about a product's authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFacts {
    /// Last status the marketplace gave.
    pub status: CodeStatus,
    /// Validity end the marketplace gave (an estimate until a heartbeat confirms it).
    pub expires_at: Option<OffsetDateTime>,
    /// Last successful online check (activation or heartbeat).
    pub last_good_check: OffsetDateTime,
    /// Whether the latest online attempt failed for a transport or server reason.
    pub offline: bool,
    /// Whether the row's MAC verified.
    pub integrity_ok: bool,
    /// Seats the order bought (`amount`), if known.
    pub amount: Option<u32>,
}

/// Why a License was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason shown.
    pub reason: StateReason,
    /// Detail, safe to show.
    pub message: String,
}

/// What the agent knows about a product's License (Model B).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LicenseFacts {
    /// Signature and binding verified.
    Verified {
        /// Start of validity.
        not_before: OffsetDateTime,
        /// End of validity; `None` for perpetual.
        not_after: Option<OffsetDateTime>,
        /// Granted features.
        features: Vec<FeatureState>,
        /// When it was verified.
        verified_at: OffsetDateTime,
    },
    /// Verification failed.
    Refused(Refusal),
}

/// The trusted-time view a decision uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeView {
    /// Trusted now.
    pub now: OffsetDateTime,
    /// Whether offline grace is withheld (clock rollback or failed MAC on the time record).
    pub tampered: bool,
}

/// Everything [`decide`] needs about one product.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductFacts {
    /// Model A.
    pub code: Option<CodeFacts>,
    /// Model B.
    pub license: Option<LicenseFacts>,
}

/// Decides the state of `product`.
#[must_use]
pub fn decide(product: &ProductDescriptor, facts: &ProductFacts, time: TimeView) -> ProductState {
    let mut candidates = Vec::new();
    if product.uses(ProductModel::AuthorizationCode) {
        candidates.push(decide_code(product, facts.code.as_ref(), time));
    }
    if product.uses(ProductModel::LicenseFile) {
        candidates.push(decide_license(facts.license.as_ref(), time));
    }
    let best = candidates
        .into_iter()
        .max_by_key(|d| rank(d.state))
        .unwrap_or_else(|| Decision::blocked(StateReason::NoLicense, "the product names no model"));
    let model = if product.models.len() == 1 {
        Some(product.models[0])
    } else {
        best.model
    };
    ProductState {
        product_id: product.product_id.clone(),
        display_name: Some(product.name.clone()),
        model,
        state: best.state,
        reason: best.reason,
        message: best.message,
        deadline: best.deadline,
        expires_at: best.expires_at,
        last_verified_at: best.last_verified_at,
        features: best.features,
    }
}

fn rank(s: LicenseState) -> u8 {
    match s {
        LicenseState::Blocked => 0,
        LicenseState::Grace => 1,
        LicenseState::Active => 2,
    }
}

struct Decision {
    state: LicenseState,
    reason: StateReason,
    message: Option<String>,
    deadline: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    last_verified_at: Option<OffsetDateTime>,
    features: Vec<FeatureState>,
    model: Option<ProductModel>,
}

impl Decision {
    fn blocked(reason: StateReason, message: &str) -> Self {
        Self {
            state: LicenseState::Blocked,
            reason,
            message: Some(message.to_owned()),
            deadline: None,
            expires_at: None,
            last_verified_at: None,
            features: Vec::new(),
            model: None,
        }
    }
}

fn code_features(product: &ProductDescriptor, amount: Option<u32>) -> Vec<FeatureState> {
    product
        .features
        .iter()
        .map(|f| FeatureState {
            name: f.name.clone(),
            seats: f.seats.or(amount),
            in_use: 0,
            version_ceiling: None,
        })
        .collect()
}

fn decide_code(product: &ProductDescriptor, code: Option<&CodeFacts>, time: TimeView) -> Decision {
    let policy: &Policy = &product.policy;
    let Some(code) = code else {
        return Decision {
            model: Some(ProductModel::AuthorizationCode),
            ..Decision::blocked(StateReason::NoLicense, "no authorization code is activated")
        };
    };
    let mut d = Decision {
        state: LicenseState::Blocked,
        reason: StateReason::CodeNotAlive,
        message: None,
        deadline: None,
        expires_at: code.expires_at,
        last_verified_at: Some(code.last_good_check),
        features: code_features(product, code.amount),
        model: Some(ProductModel::AuthorizationCode),
    };
    let (reason, message) = match code.status {
        CodeStatus::Alive => (None, ""),
        CodeStatus::Expired => (
            Some(StateReason::Expired),
            "the marketplace reports the code EXPIRED; renew it",
        ),
        CodeStatus::Released => (
            Some(StateReason::Released),
            "the marketplace reports the code RELEASED",
        ),
        CodeStatus::Frozen => (
            Some(StateReason::Frozen),
            "the marketplace froze the code; renew to unfreeze it",
        ),
        CodeStatus::Unknown => (
            Some(StateReason::CodeNotAlive),
            "the marketplace does not know this code",
        ),
    };
    if let Some(reason) = reason {
        d.reason = reason;
        d.message = Some(message.to_owned());
        return d;
    }
    if !code.integrity_ok || time.tampered {
        d.reason = StateReason::ClockTampered;
        d.message = Some(if code.integrity_ok {
            "the clock was set back; an online check is needed".to_owned()
        } else {
            "the stored check record failed its integrity check; an online check is needed"
                .to_owned()
        });
        return d;
    }
    let grace_end = code.last_good_check + policy.offline_grace();
    let deadline = code.expires_at.map_or(grace_end, |e| e.min(grace_end));
    if code.offline || time.now >= grace_end {
        if time.now >= deadline {
            let expired = code.expires_at.is_some_and(|e| e <= grace_end);
            d.reason = if expired {
                StateReason::Expired
            } else {
                StateReason::OfflineGraceSpent
            };
            d.message = Some(if expired {
                "the code's validity ended while the marketplace was unreachable".to_owned()
            } else {
                format!(
                    "no successful online check for {} days",
                    policy.offline_grace_days
                )
            });
            return d;
        }
        d.state = LicenseState::Grace;
        d.reason = StateReason::OfflineGrace;
        d.deadline = Some(deadline);
        d.message = Some("the marketplace is unreachable; offline grace is running".to_owned());
        return d;
    }
    d.state = LicenseState::Active;
    d.reason = StateReason::Licensed;
    d
}

fn decide_license(license: Option<&LicenseFacts>, time: TimeView) -> Decision {
    let model = Some(ProductModel::LicenseFile);
    match license {
        None => Decision {
            model,
            ..Decision::blocked(StateReason::NoLicense, "no License is imported")
        },
        Some(LicenseFacts::Refused(r)) => Decision {
            model,
            ..Decision::blocked(r.reason, &r.message)
        },
        Some(LicenseFacts::Verified {
            not_before,
            not_after,
            features,
            verified_at,
        }) => {
            let mut d = Decision {
                state: LicenseState::Active,
                reason: StateReason::Licensed,
                message: None,
                deadline: None,
                expires_at: *not_after,
                last_verified_at: Some(*verified_at),
                features: features.clone(),
                model,
            };
            if time.tampered {
                d.state = LicenseState::Blocked;
                d.reason = StateReason::ClockTampered;
                d.message = Some("the clock was set back; an online check is needed".to_owned());
            } else if time.now < *not_before {
                d.state = LicenseState::Blocked;
                d.reason = StateReason::NotYetValid;
                d.message = Some("the License is not valid yet".to_owned());
            } else if not_after.is_some_and(|end| time.now >= end) {
                d.state = LicenseState::Blocked;
                d.reason = StateReason::Expired;
                d.message = Some("the License has expired".to_owned());
            }
            d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use time::Duration;

    fn t(days: f64) -> OffsetDateTime {
        #[allow(clippy::cast_possible_truncation)]
        let secs = (days * 86_400.0) as i64;
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    fn product(models: &str) -> ProductDescriptor {
        let keys = if models.contains("license_file") {
            "[[keys]]\nkey_id = \"k\"\npublic_key_pem = \"x\"\n"
        } else {
            ""
        };
        ProductDescriptor::parse(
            &format!("product_id = \"p\"\nname = \"P\"\nmodels = {models}\n{keys}[[features]]\nname = \"solver\"\n"),
            Path::new("p.toml"),
        )
        .unwrap()
    }

    fn alive(last_good: f64, offline: bool) -> ProductFacts {
        ProductFacts {
            code: Some(CodeFacts {
                status: CodeStatus::Alive,
                expires_at: Some(t(365.0)),
                last_good_check: t(last_good),
                offline,
                integrity_ok: true,
                amount: Some(3),
            }),
            license: None,
        }
    }

    fn at(days: f64) -> TimeView {
        TimeView {
            now: t(days),
            tampered: false,
        }
    }

    #[test]
    fn code_online_is_active_and_seats_come_from_amount() {
        let p = product("[\"authorization_code\"]");
        let s = decide(&p, &alive(0.0, false), at(0.5));
        assert_eq!(
            (s.state, s.reason),
            (LicenseState::Active, StateReason::Licensed)
        );
        assert_eq!(s.features[0].seats, Some(3));
        assert_eq!(s.expires_at, Some(t(365.0)));
    }

    #[test]
    fn offline_grace_runs_14_days_and_blocks_on_day_15_not_before() {
        let p = product("[\"authorization_code\"]");
        let s = decide(&p, &alive(0.0, true), at(13.99));
        assert_eq!(
            (s.state, s.reason),
            (LicenseState::Grace, StateReason::OfflineGrace)
        );
        assert_eq!(s.deadline, Some(t(14.0)));
        let just_before = TimeView {
            now: t(14.0) - Duration::seconds(1),
            tampered: false,
        };
        assert_eq!(
            decide(&p, &alive(0.0, true), just_before).state,
            LicenseState::Grace
        );
        let s = decide(&p, &alive(0.0, true), at(14.0));
        assert_eq!(
            (s.state, s.reason),
            (LicenseState::Blocked, StateReason::OfflineGraceSpent)
        );
    }

    #[test]
    fn grace_never_passes_the_codes_expiry() {
        let p = product("[\"authorization_code\"]");
        let mut f = alive(0.0, true);
        f.code.as_mut().unwrap().expires_at = Some(t(3.0));
        let s = decide(&p, &f, at(2.0));
        assert_eq!(s.deadline, Some(t(3.0)));
        let s = decide(&p, &f, at(3.0));
        assert_eq!(
            (s.state, s.reason),
            (LicenseState::Blocked, StateReason::Expired)
        );
    }

    #[test]
    fn unchecked_for_longer_than_grace_needs_a_check_even_without_a_failure() {
        let p = product("[\"authorization_code\"]");
        let s = decide(&p, &alive(0.0, false), at(20.0));
        assert_eq!(s.state, LicenseState::Blocked);
        let s = decide(&p, &alive(0.0, false), at(10.0));
        assert_eq!(s.state, LicenseState::Active);
    }

    #[test]
    fn marketplace_statuses_block_with_their_reason() {
        let p = product("[\"authorization_code\"]");
        for (status, reason) in [
            (CodeStatus::Expired, StateReason::Expired),
            (CodeStatus::Released, StateReason::Released),
            (CodeStatus::Frozen, StateReason::Frozen),
            (CodeStatus::Unknown, StateReason::CodeNotAlive),
        ] {
            let mut f = alive(0.0, false);
            f.code.as_mut().unwrap().status = status;
            let s = decide(&p, &f, at(0.1));
            assert_eq!((s.state, s.reason), (LicenseState::Blocked, reason));
        }
        let s = decide(&p, &ProductFacts::default(), at(0.0));
        assert_eq!(
            (s.state, s.reason),
            (LicenseState::Blocked, StateReason::NoLicense)
        );
    }

    #[test]
    fn tampering_or_bad_mac_withholds_grace() {
        let p = product("[\"authorization_code\"]");
        let tampered = TimeView {
            now: t(1.0),
            tampered: true,
        };
        let s = decide(&p, &alive(0.0, true), tampered);
        assert_eq!(
            (s.state, s.reason),
            (LicenseState::Blocked, StateReason::ClockTampered)
        );
        let mut f = alive(0.0, false);
        f.code.as_mut().unwrap().integrity_ok = false;
        let s = decide(&p, &f, at(0.1));
        assert_eq!(
            (s.state, s.reason),
            (LicenseState::Blocked, StateReason::ClockTampered)
        );
    }

    #[test]
    fn license_validity_window_and_refusals() {
        let p = product("[\"license_file\"]");
        let lic = |nb: f64, na: Option<f64>| ProductFacts {
            code: None,
            license: Some(LicenseFacts::Verified {
                not_before: t(nb),
                not_after: na.map(t),
                features: vec![],
                verified_at: t(0.0),
            }),
        };
        assert_eq!(
            decide(&p, &lic(0.0, Some(30.0)), at(1.0)).state,
            LicenseState::Active
        );
        assert_eq!(
            decide(&p, &lic(0.0, None), at(1000.0)).state,
            LicenseState::Active
        );
        let s = decide(&p, &lic(0.0, Some(30.0)), at(30.0));
        assert_eq!(
            (s.state, s.reason),
            (LicenseState::Blocked, StateReason::Expired)
        );
        let s = decide(&p, &lic(5.0, None), at(1.0));
        assert_eq!(s.reason, StateReason::NotYetValid);
        let refused = ProductFacts {
            code: None,
            license: Some(LicenseFacts::Refused(Refusal {
                reason: StateReason::BindingMismatch,
                message: "bound to another device".into(),
            })),
        };
        let s = decide(&p, &refused, at(1.0));
        assert_eq!(
            (s.state, s.reason),
            (LicenseState::Blocked, StateReason::BindingMismatch)
        );
    }

    #[test]
    fn both_models_take_the_better_decision() {
        let p = product("[\"authorization_code\", \"license_file\"]");
        let mut f = alive(0.0, false);
        f.license = Some(LicenseFacts::Refused(Refusal {
            reason: StateReason::SignatureInvalid,
            message: "bad".into(),
        }));
        let s = decide(&p, &f, at(0.1));
        assert_eq!(s.state, LicenseState::Active);
        assert_eq!(s.model, Some(ProductModel::AuthorizationCode));
    }
}
