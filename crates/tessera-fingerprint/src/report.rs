//! What was read, from where, and what was left out and why: the material for `--explain`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::matching::ComponentKind;

/// What happened when a source was consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadStatus {
    /// Read and used.
    Used,
    /// The source does not exist on this machine.
    Absent,
    /// The source exists but could not be read or held no usable value.
    Unreadable,
    /// Deliberately left out (a virtual NIC, a removable disk, a root-only file).
    Excluded,
}

impl fmt::Display for ReadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadStatus::Used => "used",
            ReadStatus::Absent => "absent",
            ReadStatus::Unreadable => "unreadable",
            ReadStatus::Excluded => "excluded",
        })
    }
}

/// One candidate component and its fate.
///
/// `value` holds the raw value (a serial, a MAC) when one was read: keep reports on the
/// machine; the hardware id is what may travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentReport {
    /// Which component.
    pub kind: ComponentKind,
    /// Where it comes from (a file path, a WMI class, an ioreg key).
    pub source: String,
    /// What happened.
    pub status: ReadStatus,
    /// The raw value, when read.
    pub value: Option<String>,
    /// Why it is absent, unreadable or excluded.
    pub reason: Option<String>,
}

impl ComponentReport {
    pub(crate) fn used(kind: ComponentKind, source: impl Into<String>, value: String) -> Self {
        Self {
            kind,
            source: source.into(),
            status: ReadStatus::Used,
            value: Some(value),
            reason: None,
        }
    }

    pub(crate) fn not_used(
        kind: ComponentKind,
        source: impl Into<String>,
        status: ReadStatus,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            source: source.into(),
            status,
            value: None,
            reason: Some(reason.into()),
        }
    }

    /// Whether this component went into the identity.
    #[must_use]
    pub fn is_used(&self) -> bool {
        self.status == ReadStatus::Used && self.value.is_some()
    }
}

/// Descriptive facts about the machine, not part of the identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// CPU brand string.
    pub cpu_brand: Option<String>,
    /// Host name (not an identity component: people rename machines).
    pub host_name: Option<String>,
    /// Operating system, long form.
    pub os: Option<String>,
}
