//! The result codes every C function returns, and their messages.

use tessera_types::StateReason;

/// The result of a libtessera call.
///
/// Numbered and append-only: a number once given keeps its meaning forever, retired numbers stay
/// reserved (listed as comments), new codes are added at the end. `TESSERA_OK` is 1000, not
/// 0, so a code can never be mistaken for a boolean or a count; compare with the named constants.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum tessera_result {
    /// Success.
    TESSERA_OK = 1000,
    /// A required pointer argument was NULL.
    TESSERA_NULL_PARAMETER = 1001,
    /// libtessera hit an internal bug (a Rust panic); the call had no effect. Please report it.
    TESSERA_PANIC = 1002,
    /// An argument is invalid: not UTF-8, too long, or out of range.
    TESSERA_INVALID_PARAMETER = 1003,
    /// The output buffer is too small; `*written` holds the size needed (terminating NUL included).
    TESSERA_INSUFFICIENT_SIZE = 1004,
    /// The call is not allowed from inside a libtessera callback (freeing the client or replacing
    /// a callback from inside one would deadlock).
    TESSERA_CALLED_FROM_CALLBACK = 1005,
    /// `tessera_client_connect` has not been called (or has not succeeded yet) on this client.
    TESSERA_NOT_CONNECTED = 1006,
    /// The agent cannot be reached right now; libtessera keeps trying in the background.
    TESSERA_AGENT_UNAVAILABLE = 1007,
    /// The agent has been unreachable for longer than the lease: cached decisions are no longer
    /// trusted and checks fail until it comes back.
    TESSERA_AGENT_LOST = 1008,
    /// The agent did not answer in time.
    TESSERA_TIMEOUT = 1009,
    /// The agent speaks another protocol version; update libtessera or the agent.
    TESSERA_PROTOCOL_MISMATCH = 1010,
    /// The agent refused this application's session.
    TESSERA_REFUSED = 1011,
    /// The pull queue is empty.
    TESSERA_NO_EVENT = 1012,
    /// The agent is shutting down.
    TESSERA_SHUTTING_DOWN = 1013,
    /// The agent does not know this call (it is older than libtessera).
    TESSERA_UNSUPPORTED = 1014,
    /// The agent refused the request as not allowed for this application.
    TESSERA_DENIED = 1015,
    /// The agent has too many requests in flight from this application; retry.
    TESSERA_BUSY = 1016,
    /// The agent failed internally; the last error text says more.
    TESSERA_AGENT_ERROR = 1017,
    /// The agent does not know this product (no product descriptor installed for it).
    TESSERA_UNKNOWN_PRODUCT = 1018,
    /// The product's License does not grant this feature.
    TESSERA_FEATURE_NOT_LICENSED = 1019,
    /// Every seat of the feature is in use.
    TESSERA_NO_SEAT = 1020,
    /// No such lease (never granted, already released, or expired).
    TESSERA_LEASE_NOT_FOUND = 1021,
    /// The product is blocked (reason not known to this build; see the state message).
    TESSERA_LICENSE_BLOCKED = 1022,
    /// Blocked: nothing imported or activated for this product.
    TESSERA_NO_LICENSE = 1023,
    /// Blocked: the License or code validity has ended.
    TESSERA_LICENSE_EXPIRED = 1024,
    /// Blocked: the License is not valid yet.
    TESSERA_LICENSE_NOT_YET_VALID = 1025,
    /// Blocked: the marketplace froze the instance or code.
    TESSERA_LICENSE_FROZEN = 1026,
    /// Blocked: the marketplace released the instance or code.
    TESSERA_LICENSE_RELEASED = 1027,
    /// Blocked: the authorization code is not `ALIVE`.
    TESSERA_CODE_NOT_ALIVE = 1028,
    /// Blocked: the License is bound to another device.
    TESSERA_BINDING_MISMATCH = 1029,
    /// Blocked: the License signature does not verify.
    TESSERA_SIGNATURE_INVALID = 1030,
    /// Blocked: the marketplace was unreachable past the offline grace period.
    TESSERA_OFFLINE_GRACE_SPENT = 1031,
    /// Blocked: the clock moved backwards; an online check is needed.
    TESSERA_CLOCK_TAMPERED = 1032,
    /// Blocked: the application reported that its own License verification failed.
    TESSERA_VERIFY_FAILED = 1033,
    /// Blocked: the trial period has ended.
    TESSERA_TRIAL_EXPIRED = 1034,
    /// The client is shutting down.
    TESSERA_CLOSED = 1035,
}

impl tessera_result {
    /// Every code, in number order.
    pub const ALL: &'static [tessera_result] = &[
        Self::TESSERA_OK,
        Self::TESSERA_NULL_PARAMETER,
        Self::TESSERA_PANIC,
        Self::TESSERA_INVALID_PARAMETER,
        Self::TESSERA_INSUFFICIENT_SIZE,
        Self::TESSERA_CALLED_FROM_CALLBACK,
        Self::TESSERA_NOT_CONNECTED,
        Self::TESSERA_AGENT_UNAVAILABLE,
        Self::TESSERA_AGENT_LOST,
        Self::TESSERA_TIMEOUT,
        Self::TESSERA_PROTOCOL_MISMATCH,
        Self::TESSERA_REFUSED,
        Self::TESSERA_NO_EVENT,
        Self::TESSERA_SHUTTING_DOWN,
        Self::TESSERA_UNSUPPORTED,
        Self::TESSERA_DENIED,
        Self::TESSERA_BUSY,
        Self::TESSERA_AGENT_ERROR,
        Self::TESSERA_UNKNOWN_PRODUCT,
        Self::TESSERA_FEATURE_NOT_LICENSED,
        Self::TESSERA_NO_SEAT,
        Self::TESSERA_LEASE_NOT_FOUND,
        Self::TESSERA_LICENSE_BLOCKED,
        Self::TESSERA_NO_LICENSE,
        Self::TESSERA_LICENSE_EXPIRED,
        Self::TESSERA_LICENSE_NOT_YET_VALID,
        Self::TESSERA_LICENSE_FROZEN,
        Self::TESSERA_LICENSE_RELEASED,
        Self::TESSERA_CODE_NOT_ALIVE,
        Self::TESSERA_BINDING_MISMATCH,
        Self::TESSERA_SIGNATURE_INVALID,
        Self::TESSERA_OFFLINE_GRACE_SPENT,
        Self::TESSERA_CLOCK_TAMPERED,
        Self::TESSERA_VERIFY_FAILED,
        Self::TESSERA_TRIAL_EXPIRED,
        Self::TESSERA_CLOSED,
    ];

    /// The number.
    #[must_use]
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The code with number `code`, if this build knows it.
    #[must_use]
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.code() == code)
    }

    /// A one-line description, safe to show a user.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::TESSERA_OK => "success",
            Self::TESSERA_NULL_PARAMETER => "a required argument was NULL",
            Self::TESSERA_PANIC => "internal error in libtessera (please report it)",
            Self::TESSERA_INVALID_PARAMETER => {
                "an argument is invalid (not UTF-8, too long or out of range)"
            }
            Self::TESSERA_INSUFFICIENT_SIZE => "the output buffer is too small",
            Self::TESSERA_CALLED_FROM_CALLBACK => {
                "this call is not allowed from inside a libtessera callback"
            }
            Self::TESSERA_NOT_CONNECTED => {
                "the client is not connected: call tessera_client_connect first"
            }
            Self::TESSERA_AGENT_UNAVAILABLE => {
                "the Tessera agent cannot be reached; retrying in the background"
            }
            Self::TESSERA_AGENT_LOST => {
                "the Tessera agent has been unreachable for longer than the lease"
            }
            Self::TESSERA_TIMEOUT => "the Tessera agent did not answer in time",
            Self::TESSERA_PROTOCOL_MISMATCH => "the Tessera agent speaks another protocol version",
            Self::TESSERA_REFUSED => "the Tessera agent refused this application",
            Self::TESSERA_NO_EVENT => "no event is waiting",
            Self::TESSERA_SHUTTING_DOWN => "the Tessera agent is shutting down",
            Self::TESSERA_UNSUPPORTED => "the Tessera agent does not support this call",
            Self::TESSERA_DENIED => {
                "the Tessera agent does not allow this call for this application"
            }
            Self::TESSERA_BUSY => "the Tessera agent is busy; retry",
            Self::TESSERA_AGENT_ERROR => "the Tessera agent failed internally",
            Self::TESSERA_UNKNOWN_PRODUCT => "the Tessera agent does not know this product",
            Self::TESSERA_FEATURE_NOT_LICENSED => "the License does not grant this feature",
            Self::TESSERA_NO_SEAT => "every seat of this feature is in use",
            Self::TESSERA_LEASE_NOT_FOUND => "no such lease",
            Self::TESSERA_LICENSE_BLOCKED => "the License does not allow use now",
            Self::TESSERA_NO_LICENSE => "no License is installed for this product",
            Self::TESSERA_LICENSE_EXPIRED => "the License has expired",
            Self::TESSERA_LICENSE_NOT_YET_VALID => "the License is not valid yet",
            Self::TESSERA_LICENSE_FROZEN => "the License is frozen by the marketplace",
            Self::TESSERA_LICENSE_RELEASED => "the License was released by the marketplace",
            Self::TESSERA_CODE_NOT_ALIVE => "the authorization code is not active",
            Self::TESSERA_BINDING_MISMATCH => "the License is bound to another device",
            Self::TESSERA_SIGNATURE_INVALID => "the License signature is invalid",
            Self::TESSERA_OFFLINE_GRACE_SPENT => {
                "the offline grace period is over; connect to the network"
            }
            Self::TESSERA_CLOCK_TAMPERED => {
                "the system clock moved backwards; an online check is needed"
            }
            Self::TESSERA_VERIFY_FAILED => "the application rejected its License",
            Self::TESSERA_TRIAL_EXPIRED => "the trial period has ended",
            Self::TESSERA_CLOSED => "the client is shutting down",
        }
    }

    /// Whether the code says the License (not the call or the connection) forbids use.
    #[must_use]
    pub fn is_license_error(self) -> bool {
        matches!(
            self,
            Self::TESSERA_UNKNOWN_PRODUCT
                | Self::TESSERA_FEATURE_NOT_LICENSED
                | Self::TESSERA_NO_SEAT
                | Self::TESSERA_LICENSE_BLOCKED
                | Self::TESSERA_NO_LICENSE
                | Self::TESSERA_LICENSE_EXPIRED
                | Self::TESSERA_LICENSE_NOT_YET_VALID
                | Self::TESSERA_LICENSE_FROZEN
                | Self::TESSERA_LICENSE_RELEASED
                | Self::TESSERA_CODE_NOT_ALIVE
                | Self::TESSERA_BINDING_MISMATCH
                | Self::TESSERA_SIGNATURE_INVALID
                | Self::TESSERA_OFFLINE_GRACE_SPENT
                | Self::TESSERA_CLOCK_TAMPERED
                | Self::TESSERA_VERIFY_FAILED
                | Self::TESSERA_TRIAL_EXPIRED
        )
    }

    /// Whether the code says the agent could not be reached or answered (retrying may help).
    #[must_use]
    pub fn is_agent_error(self) -> bool {
        matches!(
            self,
            Self::TESSERA_NOT_CONNECTED
                | Self::TESSERA_AGENT_UNAVAILABLE
                | Self::TESSERA_AGENT_LOST
                | Self::TESSERA_TIMEOUT
                | Self::TESSERA_SHUTTING_DOWN
                | Self::TESSERA_BUSY
                | Self::TESSERA_AGENT_ERROR
        )
    }

    /// The code for a product blocked for `reason`.
    #[must_use]
    pub fn for_blocked(reason: StateReason) -> Self {
        match reason {
            StateReason::NoLicense => Self::TESSERA_NO_LICENSE,
            StateReason::Expired => Self::TESSERA_LICENSE_EXPIRED,
            StateReason::NotYetValid => Self::TESSERA_LICENSE_NOT_YET_VALID,
            StateReason::Frozen => Self::TESSERA_LICENSE_FROZEN,
            StateReason::Released => Self::TESSERA_LICENSE_RELEASED,
            StateReason::CodeNotAlive => Self::TESSERA_CODE_NOT_ALIVE,
            StateReason::BindingMismatch => Self::TESSERA_BINDING_MISMATCH,
            StateReason::SignatureInvalid => Self::TESSERA_SIGNATURE_INVALID,
            StateReason::OfflineGraceSpent => Self::TESSERA_OFFLINE_GRACE_SPENT,
            StateReason::ClockTampered => Self::TESSERA_CLOCK_TAMPERED,
            StateReason::VerifyFailed => Self::TESSERA_VERIFY_FAILED,
            StateReason::TrialExpired => Self::TESSERA_TRIAL_EXPIRED,
            StateReason::Licensed | StateReason::OfflineGrace | StateReason::Unknown => {
                Self::TESSERA_LICENSE_BLOCKED
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_dense_unique_and_round_trip() {
        for (i, r) in tessera_result::ALL.iter().enumerate() {
            assert_eq!(r.code(), 1000 + u32::try_from(i).unwrap(), "{r:?}");
            assert_eq!(tessera_result::from_code(r.code()), Some(*r));
            assert!(!r.message().is_empty());
        }
        assert_eq!(tessera_result::from_code(999), None);
        assert_eq!(tessera_result::from_code(5000), None);
    }

    #[test]
    fn groups_do_not_overlap() {
        for r in tessera_result::ALL {
            assert!(!(r.is_license_error() && r.is_agent_error()), "{r:?}");
        }
        assert!(tessera_result::TESSERA_AGENT_LOST.is_agent_error());
        assert!(tessera_result::TESSERA_LICENSE_EXPIRED.is_license_error());
        assert!(!tessera_result::TESSERA_OK.is_license_error());
    }

    #[test]
    fn every_blocking_reason_has_a_specific_code() {
        assert_eq!(
            tessera_result::for_blocked(StateReason::Expired),
            tessera_result::TESSERA_LICENSE_EXPIRED
        );
        assert_eq!(
            tessera_result::for_blocked(StateReason::Unknown),
            tessera_result::TESSERA_LICENSE_BLOCKED
        );
        assert!(tessera_result::for_blocked(StateReason::Frozen).is_license_error());
    }
}
