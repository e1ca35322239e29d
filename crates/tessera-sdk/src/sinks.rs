//! Where events and log lines go: the application's callbacks, called on the client's own
//! `tessera-events` thread, or the pull queue when no event callback is set.
//!
//! Callbacks run on a thread of their own rather than on the IO thread so that a callback may
//! call back into the client (answer `EVENT_UPDATE` with an upgrade decision, check out a
//! feature) without waiting on itself. Only what would wait for the callback to finish is
//! refused from inside one: freeing the client and replacing a callback.

use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle, ThreadId};

use tracing::Level;

/// Receives events: the [`tessera_types::EventKind`] number and the ISCDesk-shaped JSON.
pub trait EventSink: Send + Sync {
    /// One event. Runs on the client's `tessera-events` thread.
    fn event(&self, kind: u32, json: &CString);
}

/// Receives the client's log lines.
pub trait LogSink: Send + Sync {
    /// One line. Runs on the client's `tessera-events` thread.
    fn log(&self, level: Level, message: &CString);
}

impl<F: Fn(u32, &CString) + Send + Sync> EventSink for F {
    fn event(&self, kind: u32, json: &CString) {
        self(kind, json);
    }
}

/// Log levels as numbers, most severe first (0 = off).
#[must_use]
pub fn level_number(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Why a sink could not be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("callbacks cannot be replaced from inside a callback")]
pub struct InsideCallback;

enum Delivery {
    Event { kind: u32, json: CString },
    Log { level: Level, message: CString },
    Stop,
}

/// Pending events for the pull API, bounded; the oldest are dropped when it is full.
#[derive(Debug)]
struct PullQueue {
    events: VecDeque<(u32, CString)>,
    capacity: usize,
    dropped: u64,
}

struct Slots {
    event: Option<Box<dyn EventSink>>,
    log: Option<Box<dyn LogSink>>,
}

/// The callback slots, the pull queue and the `tessera-events` thread.
pub struct Sinks {
    tx: Mutex<Option<mpsc::Sender<Delivery>>>,
    slots: Mutex<Slots>,
    // Held by the events thread while a callback runs, so a replacement made from another thread
    // returns only once the old callback can no longer be running.
    in_flight: Mutex<()>,
    pull: Mutex<PullQueue>,
    log_level: AtomicU8,
    closing: AtomicBool,
    thread_id: OnceLock<ThreadId>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks")
            .field("log_level", &self.log_level)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Callbacks run outside these locks; a poisoned lock only means a panic elsewhere, and the
    // protected data (queues, slots) stays consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sinks {
    /// Starts the `tessera-events` thread.
    ///
    /// # Errors
    /// The OS error when the thread cannot be spawned.
    pub fn start(pull_capacity: usize) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = mpsc::channel();
        let sinks = Arc::new(Self {
            tx: Mutex::new(Some(tx)),
            slots: Mutex::new(Slots {
                event: None,
                log: None,
            }),
            in_flight: Mutex::new(()),
            pull: Mutex::new(PullQueue {
                events: VecDeque::new(),
                capacity: pull_capacity.max(1),
                dropped: 0,
            }),
            log_level: AtomicU8::new(0),
            closing: AtomicBool::new(false),
            thread_id: OnceLock::new(),
            thread: Mutex::new(None),
        });
        let worker = Arc::downgrade(&sinks);
        let handle = thread::Builder::new()
            .name("tessera-events".into())
            .spawn(move || run(&worker, &rx))?;
        let _ = sinks.thread_id.set(handle.thread().id());
        *lock(&sinks.thread) = Some(handle);
        Ok(sinks)
    }

    /// Whether the calling thread is the `tessera-events` thread (i.e. inside a callback).
    #[must_use]
    pub fn on_callback_thread(&self) -> bool {
        self.thread_id.get() == Some(&thread::current().id())
    }

    /// Queues an event for the callback (or the pull queue).
    pub fn event(&self, kind: u32, json: CString) {
        self.send(Delivery::Event { kind, json });
    }

    /// Whether a log line at `level` would reach a callback.
    #[must_use]
    pub fn wants_log(&self, level: Level) -> bool {
        level_number(level) <= self.log_level.load(Ordering::Relaxed)
    }

    /// Queues a log line for the log callback.
    pub fn log(&self, level: Level, message: CString) {
        if self.wants_log(level) {
            self.send(Delivery::Log { level, message });
        }
    }

    fn send(&self, delivery: Delivery) {
        if let Some(tx) = lock(&self.tx).as_ref() {
            let _ = tx.send(delivery);
        }
    }

    /// Sets (or with `None` removes) the event callback. The previous one is dropped once it
    /// cannot be running any more, on the calling thread.
    ///
    /// # Errors
    /// [`InsideCallback`] when called from a callback.
    pub fn set_event_sink(&self, sink: Option<Box<dyn EventSink>>) -> Result<(), InsideCallback> {
        if self.on_callback_thread() {
            return Err(InsideCallback);
        }
        let old = {
            let _running = lock(&self.in_flight);
            std::mem::replace(&mut lock(&self.slots).event, sink)
        };
        drop(old);
        Ok(())
    }

    /// Sets (or removes) the log callback and the most verbose level it receives.
    ///
    /// # Errors
    /// [`InsideCallback`] when called from a callback.
    pub fn set_log_sink(
        &self,
        sink: Option<Box<dyn LogSink>>,
        max_level: Level,
    ) -> Result<(), InsideCallback> {
        if self.on_callback_thread() {
            return Err(InsideCallback);
        }
        let level = if sink.is_some() {
            level_number(max_level)
        } else {
            0
        };
        let old = {
            let _running = lock(&self.in_flight);
            self.log_level.store(level, Ordering::Relaxed);
            std::mem::replace(&mut lock(&self.slots).log, sink)
        };
        drop(old);
        Ok(())
    }

    /// The oldest pulled event's kind and size (JSON length + 1 for the NUL), if any.
    #[must_use]
    pub fn peek(&self) -> Option<(u32, usize)> {
        lock(&self.pull)
            .events
            .front()
            .map(|(kind, json)| (*kind, json.as_bytes_with_nul().len()))
    }

    /// Takes the oldest pulled event.
    #[must_use]
    pub fn pop(&self) -> Option<(u32, CString)> {
        lock(&self.pull).events.pop_front()
    }

    /// Takes the oldest pulled event if its JSON with the NUL fits in `room` bytes; otherwise
    /// leaves it queued and returns the size it needs.
    ///
    /// # Errors
    /// The size needed when the event does not fit.
    pub fn pop_fitting(&self, room: usize) -> Result<Option<(u32, CString)>, usize> {
        let mut pull = lock(&self.pull);
        match pull.events.front() {
            None => Ok(None),
            Some((_, json)) if json.as_bytes_with_nul().len() > room => {
                Err(json.as_bytes_with_nul().len())
            }
            Some(_) => Ok(pull.events.pop_front()),
        }
    }

    /// Events dropped from the pull queue because it was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        lock(&self.pull).dropped
    }

    /// Stops the events thread: events still queued are discarded, a callback running now is
    /// waited for (unless this is that callback's thread), then the callbacks are dropped.
    pub fn stop(&self) {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(tx) = lock(&self.tx).take() {
            let _ = tx.send(Delivery::Stop);
        }
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle
            && !self.on_callback_thread()
        {
            let _ = handle.join();
        }
        // From inside a callback the slots are held by that very callback; they are dropped with
        // the last reference instead.
        if !self.on_callback_thread() {
            let old = {
                let mut slots = lock(&self.slots);
                (slots.event.take(), slots.log.take())
            };
            drop(old);
        }
        lock(&self.pull).events.clear();
    }

    fn deliver(&self, delivery: Delivery) -> bool {
        if self.closing.load(Ordering::SeqCst) {
            return false;
        }
        let _running = lock(&self.in_flight);
        match delivery {
            Delivery::Stop => return false,
            Delivery::Event { kind, json } => {
                let slots = lock(&self.slots);
                if let Some(sink) = slots.event.as_deref() {
                    // The slot lock is held while the callback runs: replacements wait on
                    // `in_flight` first, so they cannot deadlock on it, and the callback can
                    // only reach the slots through the refused set_* calls.
                    sink.event(kind, &json);
                } else {
                    drop(slots);
                    let mut pull = lock(&self.pull);
                    if pull.events.len() >= pull.capacity {
                        pull.events.pop_front();
                        pull.dropped += 1;
                    }
                    pull.events.push_back((kind, json));
                }
            }
            Delivery::Log { level, message } => {
                if let Some(sink) = lock(&self.slots).log.as_deref() {
                    sink.log(level, &message);
                }
            }
        }
        true
    }
}

fn run(sinks: &std::sync::Weak<Sinks>, rx: &mpsc::Receiver<Delivery>) {
    while let Ok(delivery) = rx.recv() {
        let Some(sinks) = sinks.upgrade() else { return };
        // A callback that panics must not take the thread (and every later event) with it.
        let delivered =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sinks.deliver(delivery)));
        if !matches!(delivered, Ok(true)) && sinks.closing.load(Ordering::SeqCst) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    use super::*;

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            thread::yield_now();
        }
    }

    #[test]
    fn events_go_to_the_pull_queue_without_a_callback_bounded() {
        let sinks = Sinks::start(2).unwrap();
        for i in 1..=3 {
            sinks.event(i, CString::new(format!("{{\"n\":{i}}}")).unwrap());
        }
        wait_until("three deliveries", || sinks.dropped() == 1);
        assert_eq!(sinks.peek(), Some((2, 8)));
        assert_eq!(sinks.pop().unwrap().0, 2);
        assert_eq!(sinks.pop().unwrap().0, 3);
        assert!(sinks.pop().is_none());
        sinks.stop();
    }

    #[test]
    fn callbacks_run_on_the_events_thread_and_replacement_inside_is_refused() {
        let sinks = Sinks::start(8).unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&sinks);
        let (s, r) = (seen.clone(), refused.clone());
        sinks
            .set_event_sink(Some(Box::new(move |kind: u32, _json: &CString| {
                assert_eq!(thread::current().name(), Some("tessera-events"));
                if let Some(sinks) = weak.upgrade() {
                    r.store(
                        sinks.set_event_sink(None) == Err(InsideCallback),
                        Ordering::SeqCst,
                    );
                }
                // Counted last: the test reads `refused` once it sees the count.
                s.fetch_add(kind as usize, Ordering::SeqCst);
            })))
            .unwrap();
        sinks.event(5, CString::new("{}").unwrap());
        wait_until("the callback", || seen.load(Ordering::SeqCst) == 5);
        assert!(refused.load(Ordering::SeqCst));
        sinks.set_event_sink(None).unwrap();
        sinks.event(1, CString::new("{}").unwrap());
        wait_until("queued event", || sinks.peek().is_some());
        sinks.stop();
        assert!(sinks.pop().is_none(), "stop discards queued events");
    }
}
