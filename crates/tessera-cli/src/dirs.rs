//! Where the agent keeps its files, by the agent's own rules (`TESSERA_CONFIG_DIR`,
//! `TESSERA_STATE_DIR`, `TESSERA_SYSTEM_PRODUCTS_DIR`, else the platform's directories), so the
//! CLI can read logs and descriptors without asking the agent.

use std::path::PathBuf;

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The agent's config dir (holds `tessera.toml` and `products.d/`).
pub(crate) fn config_dir() -> Option<PathBuf> {
    env_path("TESSERA_CONFIG_DIR")
        .or_else(|| directories::BaseDirs::new().map(|b| b.config_dir().join("tessera")))
}

/// The agent's state dir (database, logs, secrets file fallback).
pub(crate) fn state_dir() -> Option<PathBuf> {
    env_path("TESSERA_STATE_DIR").or_else(|| {
        directories::BaseDirs::new().map(|b| {
            b.state_dir()
                .map_or_else(|| b.data_local_dir().join("tessera"), |s| s.join("tessera"))
        })
    })
}

/// The product descriptor dir shared by every user.
pub(crate) fn system_products_dir() -> Option<PathBuf> {
    env_path("TESSERA_SYSTEM_PRODUCTS_DIR").or_else(|| {
        if cfg!(target_os = "windows") {
            std::env::var_os("ProgramData")
                .map(|p| PathBuf::from(p).join("Tessera").join("products.d"))
        } else if cfg!(target_os = "macos") {
            Some(PathBuf::from(
                "/Library/Application Support/Tessera/products.d",
            ))
        } else {
            Some(PathBuf::from("/etc/tessera/products.d"))
        }
    })
}
