//! The device identity as a whole, its collector and the cache for the warm path.

use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use tessera_types::SharedClock;
use time::{Duration, OffsetDateTime};

use crate::environment::Environment;
use crate::hardware_id::{HardwareId, HardwareIdSalt};
use crate::koogallery::KooGalleryFingerprint;
use crate::matching::ComponentKind;
use crate::override_file::{OverrideFile, OverrideStatus, default_override_path};
use crate::probe::Probe;
use crate::report::{ComponentReport, SystemInfo};
use crate::sysfs;

/// Everything known about this device's identity.
///
/// `components` carries raw serials and MACs for `--explain`: keep the whole struct on the
/// machine. What may travel is `fingerprint` (the user pastes it anyway) and `hardware_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    /// The KooGallery string (PROTOCOL.md §4.4).
    pub fingerprint: KooGalleryFingerprint,
    /// The tolerant, salted hardware id.
    pub hardware_id: HardwareId,
    /// Bare metal, VM or container, with evidence.
    pub environment: Environment,
    /// Every candidate component and what became of it.
    pub components: Vec<ComponentReport>,
    /// Descriptive facts (CPU brand, host, OS).
    pub system: SystemInfo,
    /// The override id file, if any (not verified here).
    pub override_status: OverrideStatus,
    /// Where the identity was read from (a root path, `WMI`, `IOKit`).
    pub source: String,
    /// Everything a person should know about this identity's stability or uniqueness.
    pub warnings: Vec<String>,
}

impl DeviceIdentity {
    /// The components that went into the identity.
    pub fn used_components(&self) -> impl Iterator<Item = &ComponentReport> {
        self.components.iter().filter(|c| c.is_used())
    }
}

/// Choices for a collection.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// The salt for the hardware id.
    pub salt: HardwareIdSalt,
    /// Where to look for the override id file (inside the probe's tree for [`collect_with`]).
    pub override_path: String,
}

impl Default for CollectOptions {
    fn default() -> Self {
        Self {
            salt: HardwareIdSalt::default(),
            override_path: default_override_path().to_owned(),
        }
    }
}

/// What a platform collector gathers before the identity is derived from it.
#[derive(Debug, Clone)]
pub(crate) struct Collected {
    pub(crate) components: Vec<ComponentReport>,
    pub(crate) environment: Environment,
    pub(crate) system: SystemInfo,
    pub(crate) override_status: OverrideStatus,
    pub(crate) source: String,
}

/// Collects the identity from a Linux sysfs/procfs tree (the live `/` or a fixture).
#[must_use]
pub fn collect(probe: &dyn Probe) -> DeviceIdentity {
    collect_with(probe, &CollectOptions::default())
}

/// [`collect`] with explicit options.
#[must_use]
pub fn collect_with(probe: &dyn Probe, options: &CollectOptions) -> DeviceIdentity {
    derive(
        collect_tree(probe, options, sysfs::system_info(probe)),
        &options.salt,
    )
}

pub(crate) fn collect_tree(
    probe: &dyn Probe,
    options: &CollectOptions,
    system: SystemInfo,
) -> Collected {
    let components = sysfs::collect_components(probe);
    let machine_id = components
        .iter()
        .find(|c| c.kind == ComponentKind::MachineId);
    let environment = sysfs::detect_environment(probe, machine_id);
    let override_status = read_override(
        &options.override_path,
        || probe.exists(&options.override_path),
        || probe.read_bytes(&options.override_path),
    );
    Collected {
        components,
        environment,
        system,
        override_status,
        source: probe.describe(),
    }
}

/// Reads the override file through whichever reader the platform uses.
pub(crate) fn read_override(
    path: &str,
    exists: impl FnOnce() -> bool,
    read: impl FnOnce() -> std::io::Result<Vec<u8>>,
) -> OverrideStatus {
    if !exists() {
        return OverrideStatus::Absent {
            path: path.to_owned(),
        };
    }
    match read() {
        Ok(bytes) => match OverrideFile::parse(&bytes) {
            Ok(file) => OverrideStatus::Unverified {
                path: path.to_owned(),
                file,
            },
            Err(e) => OverrideStatus::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            },
        },
        Err(e) => OverrideStatus::Invalid {
            path: path.to_owned(),
            reason: format!("cannot be read: {e}"),
        },
    }
}

/// Collects this machine's identity with the platform's own sources.
#[must_use]
pub fn collect_local() -> DeviceIdentity {
    collect_local_with(&CollectOptions::default())
}

/// [`collect_local`] with explicit options.
#[must_use]
pub fn collect_local_with(options: &CollectOptions) -> DeviceIdentity {
    derive(crate::platform::collect_raw(options), &options.salt)
}

/// Turns collected components into the identity.
pub(crate) fn derive(mut collected: Collected, salt: &HardwareIdSalt) -> DeviceIdentity {
    if let Some(id) = &collected.environment.container_id {
        collected.components.push(ComponentReport::used(
            ComponentKind::ContainerInstance,
            "container id (cgroup or mountinfo)",
            id.clone(),
        ));
    }
    let used = |kind: ComponentKind| -> Vec<&str> {
        collected
            .components
            .iter()
            .filter(|c| c.kind == kind && c.is_used())
            .filter_map(|c| c.value.as_deref())
            .collect()
    };
    let first = |kind| used(kind).first().copied().unwrap_or_default();
    let fingerprint = KooGalleryFingerprint::from_values(
        &used(ComponentKind::Mac),
        &used(ComponentKind::Disk),
        first(ComponentKind::BoardSerial),
        first(ComponentKind::CpuId),
    );
    let hardware_id = HardwareId::from_values(
        collected
            .components
            .iter()
            .filter(|c| c.is_used())
            .filter_map(|c| Some((c.kind, c.value.as_deref()?))),
        salt,
    );
    let mut warnings = collected.environment.warnings.clone();
    if fingerprint.is_empty() {
        warnings.push(
            "no hardware component was readable: the KooGallery fingerprint is empty".to_owned(),
        );
    } else if fingerprint.macs().is_empty() {
        warnings.push(
            "no physical network adapter with a permanent address: the MAC slot is empty"
                .to_owned(),
        );
    }
    if let OverrideStatus::Unverified { path, .. } = &collected.override_status {
        warnings.push(format!(
            "an override id file is present at {path}; it replaces the hardware id once its signature is verified"
        ));
    }
    if let OverrideStatus::Invalid { path, reason } = &collected.override_status {
        warnings.push(format!(
            "the override id file at {path} is unusable: {reason}"
        ));
    }
    DeviceIdentity {
        fingerprint,
        hardware_id,
        environment: collected.environment,
        components: collected.components,
        system: collected.system,
        override_status: collected.override_status,
        source: collected.source,
        warnings,
    }
}

type Collector = dyn Fn() -> DeviceIdentity + Send + Sync;

/// A collected identity kept for `max_age`, for callers that ask often (the agent checks the
/// binding on every License request). Reading a fresh entry takes a read lock and a clock read.
pub struct IdentityCache {
    collector: Box<Collector>,
    clock: SharedClock,
    max_age: Duration,
    slot: RwLock<Option<(OffsetDateTime, Arc<DeviceIdentity>)>>,
}

impl std::fmt::Debug for IdentityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCache")
            .field("max_age", &self.max_age)
            .field(
                "cached",
                &self.slot.read().map(|s| s.is_some()).unwrap_or(false),
            )
            .finish_non_exhaustive()
    }
}

impl IdentityCache {
    /// A cache over `probe` (a Linux tree).
    #[must_use]
    pub fn new(
        probe: Arc<dyn Probe>,
        options: CollectOptions,
        clock: SharedClock,
        max_age: Duration,
    ) -> Self {
        Self::with_collector(
            move || collect_with(probe.as_ref(), &options),
            clock,
            max_age,
        )
    }

    /// A cache over this machine's platform sources.
    #[must_use]
    pub fn local(options: CollectOptions, clock: SharedClock, max_age: Duration) -> Self {
        Self::with_collector(move || collect_local_with(&options), clock, max_age)
    }

    /// A cache over any collector.
    #[must_use]
    pub fn with_collector(
        collector: impl Fn() -> DeviceIdentity + Send + Sync + 'static,
        clock: SharedClock,
        max_age: Duration,
    ) -> Self {
        Self {
            collector: Box::new(collector),
            clock,
            max_age,
            slot: RwLock::new(None),
        }
    }

    /// The identity, collected again when the cached one is older than `max_age` (or the clock
    /// went backwards past it).
    pub fn get(&self) -> Arc<DeviceIdentity> {
        let now = self.clock.now();
        if let Some((at, identity)) = self
            .slot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let age = now - *at;
            if age >= Duration::ZERO && age < self.max_age {
                return Arc::clone(identity);
            }
        }
        self.refresh()
    }

    /// Collects now and caches the result.
    pub fn refresh(&self) -> Arc<DeviceIdentity> {
        let identity = Arc::new((self.collector)());
        let now = self.clock.now();
        *self.slot.write().unwrap_or_else(PoisonError::into_inner) =
            Some((now, Arc::clone(&identity)));
        identity
    }

    /// Forgets the cached identity (after a hardware change notification).
    pub fn invalidate(&self) {
        *self.slot.write().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
