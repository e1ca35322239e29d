//! Logs: `tracing` to stderr (journald under systemd) and to a daily-rotated file in the state dir
//! (7 files kept), with a filter that can be changed at run time over IPC.
//!
//! Nothing logged carries a secret: codes appear as a 4-character hint, License content never.

use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use crate::agent::LogControl;

/// Keeps the file writer flushing; drop it last.
#[must_use = "dropping the guard stops file logging"]
#[derive(Debug)]
pub struct LogGuard {
    _file: tracing_appender::non_blocking::WorkerGuard,
}

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogSetupError {
    /// The filter is not a valid directive.
    #[error("invalid log filter {0:?}")]
    Filter(String),
    /// The log dir or file could not be created.
    #[error("cannot create the log file in {path}")]
    File {
        /// The dir.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A global subscriber is already installed.
    #[error("a logger is already installed")]
    AlreadySet,
}

/// Installs the process's subscriber (binaries only). Returns the guard and the IPC log control.
///
/// # Errors
/// See [`LogSetupError`].
pub fn init(log_dir: &Path, filter: &str) -> Result<(LogGuard, LogControl), LogSetupError> {
    let env_filter =
        EnvFilter::try_new(filter).map_err(|_| LogSetupError::Filter(filter.to_owned()))?;
    crate::paths::create_private_dir(log_dir).map_err(|e| LogSetupError::File {
        path: log_dir.to_path_buf(),
        source: Box::new(e),
    })?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("tessera-agent")
        .filename_suffix("log")
        .max_log_files(7)
        .build(log_dir)
        .map_err(|e| LogSetupError::File {
            path: log_dir.to_path_buf(),
            source: Box::new(e),
        })?;
    let (file_writer, guard) = tracing_appender::non_blocking(appender);
    let (filter_layer, reload_handle) = reload::Layer::new(env_filter);
    tracing_subscriber::registry()
        .with(filter_layer)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(file_writer),
        )
        .try_init()
        .map_err(|_| LogSetupError::AlreadySet)?;
    let control: LogControl = std::sync::Arc::new(move |directive: &str| {
        let f = EnvFilter::try_new(directive).map_err(|e| format!("invalid filter: {e}"))?;
        reload_handle.reload(f).map_err(|e| e.to_string())
    });
    Ok((LogGuard { _file: guard }, control))
}
