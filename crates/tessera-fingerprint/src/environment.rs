//! Where the identity was collected: bare metal, a virtual machine or a container.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvironmentKind {
    /// No sign of virtualisation.
    BareMetal,
    /// A hypervisor is present.
    VirtualMachine,
    /// A container (possibly inside a virtual machine).
    Container,
}

impl fmt::Display for EnvironmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnvironmentKind::BareMetal => "bare metal",
            EnvironmentKind::VirtualMachine => "virtual machine",
            EnvironmentKind::Container => "container",
        })
    }
}

/// The environment, with the evidence for the verdict and what it means for the identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// The verdict.
    pub kind: EnvironmentKind,
    /// The hypervisor, when one was named (`KVM`, `VMware`, …), also under a container.
    pub hypervisor: Option<String>,
    /// The container runtime, when one was named (`docker`, `podman`, `kubernetes`, …).
    pub container_runtime: Option<String>,
    /// The container id, when found.
    pub container_id: Option<String>,
    /// Each observation that led to the verdict.
    pub evidence: Vec<String>,
    /// What the environment means for the identity's stability or uniqueness.
    pub warnings: Vec<String>,
}

impl Environment {
    /// Whether other instances may share this identity (containers, cloned images), so that an
    /// override id file is the way to a unique, stable id.
    #[must_use]
    pub fn identity_may_be_shared(&self) -> bool {
        self.kind == EnvironmentKind::Container
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(rt) = &self.container_runtime {
            write!(f, " ({rt})")?;
        }
        if let Some(h) = &self.hypervisor {
            if self.kind == EnvironmentKind::Container {
                write!(f, " inside a virtual machine ({h})")?;
            } else {
                write!(f, " ({h})")?;
            }
        }
        Ok(())
    }
}
