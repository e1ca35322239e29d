//! Plain data shared by every Tessera crate.
//!
//! This crate owns the vocabulary the others speak and nothing that does I/O:
//! - [`time`]: one tolerant parser and a formatter per wire form for every KooGallery time format
//!   (PROTOCOL.md §6 item 10), all UTC;
//! - [`clock`]: the injectable [`Clock`] all time comes from, with a [`ManualClock`] for tests;
//! - [`codes`]: every result code of PROTOCOL.md §3 with its meaning and whether a retry helps;
//! - [`state`]: the License state (Active/Grace/Blocked) and the [`Snapshot`] clients read;
//! - [`events`]: the events the agent pushes, with their append-only [`EventKind`] numbers.

pub mod clock;
pub mod codes;
pub mod events;
pub mod state;
pub mod time;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use codes::{ApigCode, IsvResultCode, LicenseApiCode, MktCode};
pub use events::{Event, EventKind};
pub use state::{LicenseState, ProductState, Snapshot, StateReason};
pub use time::{KooTime, TimeParseError};
