//! Forwards the client's `tracing` output (its own and `tessera-ipc`'s) to the application's log
//! callback. Installed as the default subscriber of the client's IO thread only, never globally:
//! the host application's own logging is left alone.

use std::ffi::CString;
use std::fmt::Write as _;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use crate::sinks::Sinks;

/// The layer that hands formatted events to [`Sinks::log`].
#[derive(Debug)]
pub struct ForwardLayer {
    sinks: Arc<Sinks>,
}

impl ForwardLayer {
    /// A layer feeding `sinks`.
    #[must_use]
    pub fn new(sinks: Arc<Sinks>) -> Self {
        Self { sinks }
    }
}

struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for ForwardLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if !self.sinks.wants_log(level) {
            return;
        }
        let mut line = Line(format!("{}: ", event.metadata().target()));
        event.record(&mut line);
        let text = line.0.replace('\0', "\u{fffd}");
        if let Ok(message) = CString::new(text) {
            self.sinks.log(level, message);
        }
    }
}
