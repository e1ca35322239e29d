//! Device identity for Tessera: what a customer pastes into KooGallery, and what a License is
//! bound to.
//!
//! - [`KooGalleryFingerprint`]: the `MAC|disk|board|CPU` string of PROTOCOL.md §4.4, with the
//!   ≤ 1024-character request form for `getLicenseAsync` and a slot-wise tolerant comparison.
//! - [`HardwareId`]: one salted SHA-256 per component (machine id, product UUID, board serial,
//!   CPU id, each fixed disk, each physical NIC, the container instance), compared with a
//!   [`MatchPolicy`] into a [`MatchVerdict`] that says in plain words what changed.
//! - [`Environment`]: bare metal, virtual machine or container, with the evidence.
//! - [`OverrideFile`]: the ISV-signed id file for containers and cloned images, parsed here and
//!   verified by tessera-license.
//! - [`collect`] reads a Linux sysfs/procfs tree through a [`Probe`] (fixture trees in tests);
//!   [`collect_local`] reads this machine with the platform's own sources; [`IdentityCache`]
//!   keeps the result for the warm path.
//!
//! The rules that decide which NICs and disks count, and why, are in the crate README.

mod environment;
mod error;
mod hardware_id;
mod identity;
mod koogallery;
mod matching;
mod override_file;
pub mod platform;
mod probe;
mod report;
mod sysfs;

pub use environment::{Environment, EnvironmentKind};
pub use error::FingerprintError;
pub use hardware_id::{HARDWARE_ID_VERSION, HardwareId, HardwareIdSalt, HashedComponent};
pub use identity::{
    CollectOptions, DeviceIdentity, IdentityCache, collect, collect_local, collect_local_with,
    collect_with,
};
pub use koogallery::{KooGalleryFingerprint, MAX_FINGERPRINT_BYTES, MAX_REQUEST_FORM_CHARS};
pub use matching::{ChangeKind, ComponentChange, ComponentKind, MatchPolicy, MatchVerdict};
pub use override_file::{
    MAX_OVERRIDE_FILE_BYTES, OVERRIDE_FORMAT, OverrideFile, OverridePayload, OverrideStatus,
    Signature, default_override_path,
};
pub use probe::{FsProbe, MAX_SOURCE_BYTES, Probe, resolve_link};
pub use report::{ComponentReport, ReadStatus, SystemInfo};
