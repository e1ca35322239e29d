//! Events the agent pushes to applications, as plain data.
//!
//! ISCDesk defines three of them (PROTOCOL.md §4.3); Tessera adds three. Each has a number in
//! [`EventKind`] that the C ABI exposes, so the numbers are append-only: a number once given is
//! never reused or changed. The ISCDesk JSON shape (`{"operate","params","comeBackParams"}`) is
//! built and parsed by `tessera-ipc`, which owns the wire.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::state::ProductState;

/// The kind of an event, with the number the C ABI uses. Append-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u32", try_from = "u32")]
#[repr(u32)]
pub enum EventKind {
    /// `EVENT_LICENSE_VERIFY`: the License string or file an application asked for.
    LicenseVerify = 1,
    /// `EVENT_UPGRADENOTICE`: answer to `CheckNewVersions`.
    UpgradeNotice = 2,
    /// `EVENT_UPDATE`: the user accepted an upgrade; the application should save and exit.
    Update = 3,
    /// `EVENT_LICENSE_STATE` (Tessera): a product's Active/Grace/Blocked decision changed.
    LicenseState = 4,
    /// `EVENT_HEARTBEAT_REPLY` (Tessera): the result of an online check of a product.
    HeartbeatReply = 5,
    /// `EVENT_AGENT_CLOSING` (Tessera): the agent is stopping; the client will reconnect.
    AgentClosing = 6,
}

impl EventKind {
    /// Every kind, in number order.
    pub const ALL: &'static [EventKind] = &[
        EventKind::LicenseVerify,
        EventKind::UpgradeNotice,
        EventKind::Update,
        EventKind::LicenseState,
        EventKind::HeartbeatReply,
        EventKind::AgentClosing,
    ];

    /// The number used on the IPC wire and in the C ABI.
    #[must_use]
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The kind for a number, or `None` for a number this build does not know.
    #[must_use]
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// The `operate` value of the ISCDesk-shaped payload.
    #[must_use]
    pub fn operate(self) -> &'static str {
        match self {
            EventKind::LicenseVerify => "LicenseVerify",
            EventKind::UpgradeNotice => "UpgradeNotice",
            EventKind::Update => "Update",
            EventKind::LicenseState => "LicenseState",
            EventKind::HeartbeatReply => "HeartbeatReply",
            EventKind::AgentClosing => "AgentClosing",
        }
    }

    /// The kind whose `operate` value is `operate`.
    #[must_use]
    pub fn from_operate(operate: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.operate() == operate)
    }

    /// The constant's name in the C header and in ISCDesk's documentation.
    #[must_use]
    pub fn constant_name(self) -> &'static str {
        match self {
            EventKind::LicenseVerify => "EVENT_LICENSE_VERIFY",
            EventKind::UpgradeNotice => "EVENT_UPGRADENOTICE",
            EventKind::Update => "EVENT_UPDATE",
            EventKind::LicenseState => "EVENT_LICENSE_STATE",
            EventKind::HeartbeatReply => "EVENT_HEARTBEAT_REPLY",
            EventKind::AgentClosing => "EVENT_AGENT_CLOSING",
        }
    }
}

impl From<EventKind> for u32 {
    fn from(kind: EventKind) -> u32 {
        kind.code()
    }
}

/// A number that names no [`EventKind`] this build knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event kind {0} is not known to this build")]
pub struct UnknownEventKind(pub u32);

impl TryFrom<u32> for EventKind {
    type Error = UnknownEventKind;
    fn try_from(code: u32) -> Result<Self, Self::Error> {
        EventKind::from_code(code).ok_or(UnknownEventKind(code))
    }
}

/// Whether the application's License request succeeded (`Status` of `EVENT_LICENSE_VERIFY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// The License is delivered in the event.
    Success,
    /// No License could be delivered.
    Failed,
}

/// Which form of License an application asks for (ISCDesk `LicenseType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseKind {
    /// A License file; the event carries its path.
    File,
    /// A License string; the event carries its content.
    String,
}

impl LicenseKind {
    /// The ISCDesk `LicenseType` value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LicenseKind::File => "file",
            LicenseKind::String => "string",
        }
    }
}

/// The License carried by `EVENT_LICENSE_VERIFY`.
#[derive(Clone, PartialEq, Eq)]
pub enum DeliveredLicense {
    /// `LicenseType: "string"` with `LicenseContent`.
    String(String),
    /// `LicenseType: "file"` with `LicenseFilePath`.
    File(String),
}

impl DeliveredLicense {
    /// The ISCDesk `LicenseType` of this delivery.
    #[must_use]
    pub fn kind(&self) -> LicenseKind {
        match self {
            DeliveredLicense::String(_) => LicenseKind::String,
            DeliveredLicense::File(_) => LicenseKind::File,
        }
    }
}

// License content must not reach logs; the file path may.
impl std::fmt::Debug for DeliveredLicense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveredLicense::String(s) => write!(f, "String(<{} chars>)", s.chars().count()),
            DeliveredLicense::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// One event, typed. See [`EventKind`] for when each is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `EVENT_LICENSE_VERIFY`.
    LicenseVerify {
        /// Whether a License is delivered.
        status: DeliveryStatus,
        /// The License (empty content or path when `status` is `Failed`).
        license: DeliveredLicense,
        /// Tessera extension: why delivery failed, safe to show.
        message: Option<String>,
    },
    /// `EVENT_UPGRADENOTICE`.
    UpgradeNotice {
        /// Whether a newer version exists.
        available: bool,
    },
    /// `EVENT_UPDATE`.
    Update {
        /// `fromForceWin`: the upgrade is forced; the application must save and exit.
        forced: bool,
    },
    /// `EVENT_LICENSE_STATE`.
    LicenseState(ProductState),
    /// `EVENT_HEARTBEAT_REPLY`.
    HeartbeatReply {
        /// The product checked.
        product_id: String,
        /// Whether the marketplace answered and the code or instance is usable.
        ok: bool,
        /// The marketplace status (e.g. `ALIVE`, `FREEZE`), when it answered.
        status: Option<String>,
        /// When the agent checks again.
        next_check_at: Option<OffsetDateTime>,
    },
    /// `EVENT_AGENT_CLOSING`.
    AgentClosing {
        /// Why, safe to show.
        reason: String,
        /// Whether the agent expects to come back (update, restart) rather than stay down.
        restarting: bool,
    },
}

impl Event {
    /// The kind of this event.
    #[must_use]
    pub fn kind(&self) -> EventKind {
        match self {
            Event::LicenseVerify { .. } => EventKind::LicenseVerify,
            Event::UpgradeNotice { .. } => EventKind::UpgradeNotice,
            Event::Update { .. } => EventKind::Update,
            Event::LicenseState(_) => EventKind::LicenseState,
            Event::HeartbeatReply { .. } => EventKind::HeartbeatReply,
            Event::AgentClosing { .. } => EventKind::AgentClosing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_round_trip() {
        let expected = [
            (1, "EVENT_LICENSE_VERIFY", "LicenseVerify"),
            (2, "EVENT_UPGRADENOTICE", "UpgradeNotice"),
            (3, "EVENT_UPDATE", "Update"),
            (4, "EVENT_LICENSE_STATE", "LicenseState"),
            (5, "EVENT_HEARTBEAT_REPLY", "HeartbeatReply"),
            (6, "EVENT_AGENT_CLOSING", "AgentClosing"),
        ];
        assert_eq!(EventKind::ALL.len(), expected.len());
        for (kind, (code, name, operate)) in EventKind::ALL.iter().zip(expected) {
            assert_eq!(kind.code(), code);
            assert_eq!(kind.constant_name(), name);
            assert_eq!(kind.operate(), operate);
            assert_eq!(EventKind::from_code(code), Some(*kind));
            assert_eq!(EventKind::from_operate(operate), Some(*kind));
            assert_eq!(serde_json::to_string(kind).unwrap(), code.to_string());
        }
        assert_eq!(EventKind::from_code(0), None);
        assert!(serde_json::from_str::<EventKind>("99").is_err());
    }

    #[test]
    fn license_content_stays_out_of_debug() {
        let ev = DeliveredLicense::String("SECRET-LICENSE-BODY".to_owned());
        let shown = format!("{ev:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert_eq!(ev.kind(), LicenseKind::String);
    }
}
