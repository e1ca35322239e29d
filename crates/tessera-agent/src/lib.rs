//! The per-user Tessera License agent (the part ISCDesk plays for KooGallery products).
//!
//! One agent runs per logged-in user. It loads product descriptors ([`products`]), keeps
//! authorization codes alive with the marketplace (activation, first-use-per-day and 12-hourly
//! heartbeats batched up to 100, daily usage reports, jittered backoff; [`core`]), imports and
//! verifies License files and strings ([`licensing`]), decides per product Active / Grace / Blocked
//! ([`enforcement`]) on trusted time ([`trusted_time`]), grants leases to applications
//! ([`leases`]), answers upgrade checks from signed manifests ([`upgrades`]), keeps secrets in the
//! OS keyring or a machine-bound encrypted file ([`secrets`]) and its state in SQLite ([`db`]).
//! Applications, the CLI and the tray reach it over `tessera-ipc` ([`service`]).
//!
//! Start one in-process with [`Agent::start`]; the `tessera-agent` binary is a thin wrapper.

pub mod agent;
pub mod config;
pub mod core;
pub mod db;
pub mod enforcement;
pub mod leases;
pub mod licensing;
pub mod logging;
pub mod market;
pub mod market_http;
pub mod paths;
pub mod products;
pub mod secrets;
pub mod service;
pub mod trusted_time;
pub mod upgrades;

pub use agent::{Agent, AgentHandle, AgentOptions, AgentStatus, Scheduling, StartError};
pub use config::Settings;
pub use paths::Paths;
