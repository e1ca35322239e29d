//! Tolerant comparison of two identities: the policy, and a verdict that explains itself.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One kind of hardware component. Disks and network adapters can occur several times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// `/etc/machine-id` (Linux), `MachineGuid` (Windows), `IOPlatformUUID` (macOS).
    MachineId,
    /// The SMBIOS system (product) UUID.
    ProductUuid,
    /// The mainboard serial number.
    BoardSerial,
    /// The CPU id (`Win32_Processor.ProcessorId` form: CPUID leaf 1 EDX then EAX, hex).
    CpuId,
    /// The serial number of one fixed disk.
    Disk,
    /// The permanent MAC address of one physical network adapter.
    Mac,
    /// The id of the container this process runs in. Hardware seen from a container is the
    /// host's, so only this tells two containers on one host apart.
    ContainerInstance,
    /// The device id from a signed override file (containers, cloned images).
    OverrideId,
}

impl ComponentKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [ComponentKind; 8] = [
        ComponentKind::MachineId,
        ComponentKind::ProductUuid,
        ComponentKind::BoardSerial,
        ComponentKind::CpuId,
        ComponentKind::Disk,
        ComponentKind::Mac,
        ComponentKind::ContainerInstance,
        ComponentKind::OverrideId,
    ];

    /// A short tag, stable across versions: it is mixed into the component hashes.
    #[must_use]
    pub fn tag(self) -> &'static str {
        match self {
            ComponentKind::MachineId => "machine_id",
            ComponentKind::ProductUuid => "product_uuid",
            ComponentKind::BoardSerial => "board_serial",
            ComponentKind::CpuId => "cpu_id",
            ComponentKind::Disk => "disk",
            ComponentKind::Mac => "mac",
            ComponentKind::ContainerInstance => "container_instance",
            ComponentKind::OverrideId => "override_id",
        }
    }

    /// Whether several components of this kind may exist (disks, network adapters).
    #[must_use]
    pub fn is_multi(self) -> bool {
        matches!(self, ComponentKind::Disk | ComponentKind::Mac)
    }

    /// Components that identify the instance itself rather than the hardware it runs on; if one
    /// differs, no policy lets the ids match: two containers on one host share every hardware
    /// component and differ only here.
    #[must_use]
    pub fn is_decisive(self) -> bool {
        matches!(
            self,
            ComponentKind::ContainerInstance | ComponentKind::OverrideId
        )
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ComponentKind::MachineId => "machine id",
            ComponentKind::ProductUuid => "product UUID",
            ComponentKind::BoardSerial => "board serial",
            ComponentKind::CpuId => "CPU id",
            ComponentKind::Disk => "disk",
            ComponentKind::Mac => "network adapter",
            ComponentKind::ContainerInstance => "container instance",
            ComponentKind::OverrideId => "override id",
        })
    }
}

/// How many components may differ before two identities stop matching.
///
/// In every policy at least one component must agree, and a decisive component
/// ([`ComponentKind::is_decisive`]) that differs fails the match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchPolicy {
    /// Every component agrees.
    Strict,
    /// All but one component agree: one disk swapped, one NIC replaced, one OS reinstall.
    #[default]
    AllButOne,
    /// At least half of the compared components agree.
    Loose,
}

impl MatchPolicy {
    /// Every policy, strictest first.
    pub const ALL: [MatchPolicy; 3] = [
        MatchPolicy::Strict,
        MatchPolicy::AllButOne,
        MatchPolicy::Loose,
    ];

    fn accepts(self, agreed: usize, changed: usize) -> bool {
        agreed >= 1
            && match self {
                MatchPolicy::Strict => changed == 0,
                MatchPolicy::AllButOne => changed <= 1,
                MatchPolicy::Loose => agreed >= changed,
            }
    }
}

impl fmt::Display for MatchPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchPolicy::Strict => "strict",
            MatchPolicy::AllButOne => "all-but-one",
            MatchPolicy::Loose => "loose",
        })
    }
}

impl std::str::FromStr for MatchPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "strict" => Ok(MatchPolicy::Strict),
            "all-but-one" | "allbutone" | "default" => Ok(MatchPolicy::AllButOne),
            "loose" => Ok(MatchPolicy::Loose),
            other => Err(format!(
                "unknown match policy {other:?} (expected strict, all-but-one or loose)"
            )),
        }
    }
}

/// How one component differs between the reference and the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Present in both with different values (for disks and NICs: one went, another came).
    Replaced,
    /// Present only in the candidate.
    Added,
    /// Present only in the reference.
    Removed,
}

/// One component that differs, in plain language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentChange {
    /// Which component.
    pub component: ComponentKind,
    /// How it changed.
    pub change: ChangeKind,
    /// The values involved, for a human (hash prefixes for hardware ids, values for the
    /// KooGallery string, which the user pasted anyway).
    pub detail: String,
}

impl fmt::Display for ComponentChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.change {
            ChangeKind::Replaced => "replaced",
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
        };
        write!(f, "{} {verb}", self.component)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// The outcome of comparing two identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchVerdict {
    /// Whether the candidate is the same device under `policy`.
    pub matched: bool,
    /// The policy applied.
    pub policy: MatchPolicy,
    /// Components that agree.
    pub agreed: usize,
    /// Components that differ; each counts once toward the policy.
    pub changed: Vec<ComponentChange>,
    /// Why the verdict is what it is when the counts alone do not say (nothing to compare,
    /// different salts, a decisive component differs).
    pub note: Option<String>,
}

impl MatchVerdict {
    /// Applies `policy` to counted agreements and changes.
    pub(crate) fn decide(
        policy: MatchPolicy,
        agreed: usize,
        changed: Vec<ComponentChange>,
    ) -> Self {
        let decisive = changed.iter().find(|c| c.component.is_decisive());
        let (matched, note) = if let Some(d) = decisive {
            (
                false,
                Some(format!(
                    "the {} differs, and it alone tells instances on the same hardware apart",
                    d.component
                )),
            )
        } else if agreed == 0 && changed.is_empty() {
            (false, Some("no component could be compared".to_owned()))
        } else {
            (policy.accepts(agreed, changed.len()), None)
        };
        Self {
            matched,
            policy,
            agreed,
            changed,
            note,
        }
    }

    /// A verdict that refuses to compare, with the reason.
    pub(crate) fn incomparable(policy: MatchPolicy, why: impl Into<String>) -> Self {
        Self {
            matched: false,
            policy,
            agreed: 0,
            changed: Vec::new(),
            note: Some(why.into()),
        }
    }

    /// Plain language: `match, 1 component changed: disk replaced (…)`.
    #[must_use]
    pub fn explain(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for MatchVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.matched { "match" } else { "no match" })?;
        match self.changed.len() {
            0 if self.agreed > 0 => write!(f, ", all {} components agree", self.agreed)?,
            0 => {}
            n => {
                let plural = if n == 1 { "" } else { "s" };
                write!(f, ", {n} component{plural} changed: ")?;
                for (i, change) in self.changed.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{change}")?;
                }
            }
        }
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

/// Compares a multi-valued component (disks, NICs) as sets: common values agree, values gone
/// and values new are paired into replacements first, the rest are removals or additions.
pub(crate) fn compare_sets(
    kind: ComponentKind,
    reference: &[String],
    candidate: &[String],
    show: impl Fn(&str) -> String,
    agreed: &mut usize,
    changed: &mut Vec<ComponentChange>,
) {
    let gone: Vec<&String> = reference
        .iter()
        .filter(|v| !candidate.contains(v))
        .collect();
    let new: Vec<&String> = candidate
        .iter()
        .filter(|v| !reference.contains(v))
        .collect();
    *agreed += reference.iter().filter(|v| candidate.contains(v)).count();
    let pairs = gone.len().min(new.len());
    for (was, now) in gone.iter().zip(new.iter()) {
        changed.push(ComponentChange {
            component: kind,
            change: ChangeKind::Replaced,
            detail: format!("was {}, now {}", show(was), show(now)),
        });
    }
    for was in &gone[pairs..] {
        changed.push(ComponentChange {
            component: kind,
            change: ChangeKind::Removed,
            detail: show(was),
        });
    }
    for now in &new[pairs..] {
        changed.push(ComponentChange {
            component: kind,
            change: ChangeKind::Added,
            detail: show(now),
        });
    }
}

/// Compares a single-valued component; `None` means unreadable or absent on that side.
pub(crate) fn compare_single(
    kind: ComponentKind,
    reference: Option<&str>,
    candidate: Option<&str>,
    show: impl Fn(&str) -> String,
    agreed: &mut usize,
    changed: &mut Vec<ComponentChange>,
) {
    let change = match (reference, candidate) {
        (None, None) => return,
        (Some(a), Some(b)) if a == b => {
            *agreed += 1;
            return;
        }
        (Some(a), Some(b)) => ComponentChange {
            component: kind,
            change: ChangeKind::Replaced,
            detail: format!("was {}, now {}", show(a), show(b)),
        },
        (Some(a), None) => ComponentChange {
            component: kind,
            change: ChangeKind::Removed,
            detail: format!("was {}, now unreadable or absent", show(a)),
        },
        (None, Some(b)) => ComponentChange {
            component: kind,
            change: ChangeKind::Added,
            detail: show(b),
        },
    };
    changed.push(change);
}
