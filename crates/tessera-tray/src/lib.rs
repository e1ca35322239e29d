//! `tessera-tray`: the Tessera icon in the system tray.
//!
//! A thin client of the agent over `tessera-ipc`: it holds no secrets, makes no marketplace
//! calls and has no License logic of its own. It subscribes to the agent's events and renders
//! the state; the user's actions (activate a code, import a License, accept an update) are
//! requests to the agent.
//!
//! - [`model`]: the [`AppState`](model::AppState) and everything derived from it as plain data:
//!   overall status (icon), tooltip, and the menu ([`MenuModel`](model::MenuModel));
//! - [`notices`]: which desktop notifications are due (blocked; 7/3/1 days before an expiry or
//!   the end of grace; update offered), each sent once;
//! - [`icons`]: the per-state icons embedded from `assets/`;
//! - [`link`]: the agent connection on a tokio thread (reconnects when the agent restarts);
//! - [`ui`]: the thread that owns the `!Send` tray icon (`tray-icon`, `ksni` backend on Linux);
//! - [`platform`]: opening URLs and folders, starting the agent, the single-instance lock.

pub mod icons;
pub mod link;
pub mod model;
pub mod notices;
pub mod platform;
pub mod ui;

pub use model::{Action, AgentLink, AppState, MenuEntry, MenuModel, TrayStatus, UpdateOffer};
pub use notices::{Notice, NoticePlanner};
pub use ui::{TrayError, TrayOptions, run};
