//! Plain data shared by every Tessera crate.
//!
//! This crate owns the vocabulary the others speak and nothing that does I/O:
//! - [`time`]: one tolerant parser and a formatter per wire form for every KooGallery time format
//!   (PROTOCOL.md §6 item 10), all UTC;
//! - [`clock`]: the injectable [`Clock`] all time comes from, with a [`ManualClock`] for tests;
//! - [`codes`]: every result code of PROTOCOL.md §3 with its meaning and whether a retry helps.

pub mod clock;
pub mod codes;
pub mod time;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use codes::{ApigCode, IsvResultCode, LicenseApiCode, MktCode};
pub use time::{KooTime, TimeParseError};
