//! tmp
pub mod callbacks;
pub mod clock;
pub mod faults;
pub mod fsutil;
pub mod manifest;
pub mod market;
pub(crate) mod sig;
pub mod tls;

/// Shortens a secret-ish identifier (an authorization code) for logs and messages.
#[must_use]
pub fn redact(code: &str) -> String {
    let head: String = code.chars().take(6).collect();
    if code.chars().count() <= 6 { head } else { format!("{head}…") }
}
