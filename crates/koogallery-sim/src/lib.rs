//! `koogallery-sim`: an emulator of the Huawei Cloud KooGallery marketplace (MKT) for tests, the
//! sandbox and manual experiments.
//!
//! What it does, faithfully to PROTOCOL.md:
//! - serves the open APIs of §2.1–2.2 over real HTTPS (its own test CA), on a primary and a
//!   fallback host, behind an APIG `SDK-HMAC-SHA256` check with the ±15 min skew rule;
//! - keeps the books: authorization codes through their §1.3 lifecycle, the nine mock orders
//!   plus created ones, Model B instances, License events and usage reports ([`market`]);
//! - makes MKT's signed production-interface calls to an ISV with the §2.3.9 retry schedule on a
//!   compressed clock, logging every attempt ([`callbacks`]);
//! - injects faults per route and host ([`faults`]).
//!
//! What it invents (KooGallery documents none of it): the buyer's delivery channel
//! (`/sim/delivery`), signed update manifests ([`manifest`], `/sim/updates`) and the operator
//! control API (`/sim/control`, [`control`]); [`SimHandle`] offers the same operations in Rust.
//!
//! ```no_run
//! # async fn demo() -> Result<(), koogallery_sim::SimError> {
//! let sim = koogallery_sim::Sim::start(koogallery_sim::SimConfig::new("/tmp/sim-state")).await?;
//! println!("MKT at {} (fallback {}), trust {}", sim.primary_url(), sim.fallback_url(),
//!     sim.ca_path().display());
//! # Ok(()) }
//! ```

pub mod callbacks;
pub mod cli;
pub mod clock;
pub mod control;
pub mod faults;
pub mod fsutil;
mod gateway;
pub mod manifest;
pub mod market;
pub mod routes;
pub mod server;
mod sim;
pub mod tls;

pub use callbacks::{
    Callback, CallbackAttempt, CallbackOutcome, CallbackRecord, IsvEndpoint, RetrySchedule,
};
pub use faults::{FaultAction, FaultRule, FaultSet, HostFaults, HostRole};
pub use manifest::{ManifestPayload, ManifestSpec, SignedManifest};
pub use market::{
    AuthCode, ChargingMode, CodeState, Instance, InstanceStatus, LicenseModel, LicensePayload,
    LicenseRequest, MarketError, MarketEvent, NewOrder, Order, OrderType, PeriodType, RenewScene,
    Renewal,
};
pub use sim::{
    ApiCredential, CreatedOrder, DEFAULT_ACCESS_KEY, DEFAULT_EXTRA_NAMES, DEFAULT_SECRET_KEY,
    ManifestKeySource, Outcome, Sim, SimConfig, SimError, SimHandle,
};

/// Shortens an authorization code for logs and messages: codes are credentials.
#[must_use]
pub fn redact(code: &str) -> String {
    let head: String = code.chars().take(6).collect();
    if code.chars().count() <= 6 {
        head
    } else {
        format!("{head}…")
    }
}

/// An error and its sources on one line, for answers that cross the HTTP boundary.
#[must_use]
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
