//! `tessera-sandbox`: the whole Tessera story on one machine, in one command.
//!
//! [`World::start`] brings up koogallery-sim (the marketplace, over HTTPS with a fresh test CA),
//! tessera-isv (the ISV's production interface and License issuer, with a fresh signing key)
//! and tessera-agent on loopback, all state in one temporary directory and all on one clock.
//! [`run_story`] then drives two demo apps (through libtessera's Rust API) and the marketplace
//! through the lifecycle — purchase, fingerprint, License issued and verified, checkout,
//! authorization code, heartbeat, expiry, renewal, upgrade — moving the clock forward in jumps,
//! and narrates one numbered line per step saying what was checked. The first step that does not
//! hold stops the story with [`SandboxError::Step`].
//!
//! Secrets and Licenses are never printed: codes are shortened to a hint, Licenses to their id
//! and length.

pub mod cli;
pub mod demo_app;
pub mod story;
pub mod world;

pub use story::{Narrator, StepRecord, run_story};
pub use world::{World, WorldOptions};

/// Why the sandbox stopped.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A component could not be started.
    #[error("cannot start {what}")]
    Start {
        /// The component.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A step of the story did not hold.
    #[error("step {number} ({title}) failed: {detail}")]
    Step {
        /// The step's number in the narration.
        number: u32,
        /// The step's title.
        title: &'static str,
        /// What was expected and what happened instead.
        detail: String,
    },
}
