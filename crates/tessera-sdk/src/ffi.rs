//! The C ABI. Every exported function is wrapped in a panic boundary, checks its pointers
//! (NULL → `TESSERA_NULL_PARAMETER`), and writes its outputs only on success (except the size
//! needed after `TESSERA_INSUFFICIENT_SIZE`). The rules are in the README and the header preamble.

#![allow(non_camel_case_types)]

use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tessera_types::events::LicenseKind;
use tessera_types::{LicenseState, StateReason};

use crate::client::{Client, ClientOptions, SdkError};
use crate::result::tessera_result;
use crate::sinks::{EventSink, LogSink};
use crate::view::LinkStatus;

/// A client of the Tessera agent for one product.
///
/// Create with `tessera_client_new`, free with `tessera_client_free`. All functions may be
/// called concurrently from any threads on the same client, except `tessera_client_free`, which
/// must be the last call and must not race with any other call on that client. Under the hood,
/// this object owns a Rust `Client`: an IO thread with its own runtime and an events thread.
#[derive(Debug)]
pub struct tessera_client {
    client: Client,
    last_error: Mutex<String>,
}

/// An event kind: one of the `TESSERA_EVENT_*` values. Kinds added in later versions may
/// arrive too; skip the ones you do not know.
pub type tessera_event_kind = u32;
/// `EVENT_LICENSE_VERIFY`: the License string or file asked for.
pub const TESSERA_EVENT_LICENSE_VERIFY: tessera_event_kind = 1;
/// `EVENT_UPGRADENOTICE`: answer to `tessera_client_check_new_versions`.
pub const TESSERA_EVENT_UPGRADENOTICE: tessera_event_kind = 2;
/// `EVENT_UPDATE`: the user accepted an upgrade; save the user's work and exit.
pub const TESSERA_EVENT_UPDATE: tessera_event_kind = 3;
/// `EVENT_LICENSE_STATE`: the product's Active/Grace/Blocked state changed.
pub const TESSERA_EVENT_LICENSE_STATE: tessera_event_kind = 4;
/// `EVENT_HEARTBEAT_REPLY`: the result of an online check of the product.
pub const TESSERA_EVENT_HEARTBEAT_REPLY: tessera_event_kind = 5;
/// `EVENT_AGENT_CLOSING`: the agent is stopping; the client reconnects by itself.
pub const TESSERA_EVENT_AGENT_CLOSING: tessera_event_kind = 6;

/// Which form of License is asked for: `TESSERA_LICENSE_FILE` or `TESSERA_LICENSE_STRING`.
pub type tessera_license_kind = u32;
/// A License file; `EVENT_LICENSE_VERIFY` carries its path.
pub const TESSERA_LICENSE_FILE: tessera_license_kind = 1;
/// A License string; `EVENT_LICENSE_VERIFY` carries its content.
pub const TESSERA_LICENSE_STRING: tessera_license_kind = 2;

/// A log level: `TESSERA_LOG_OFF` or the most verbose level the log callback receives.
pub type tessera_log_level = u32;
/// No logs.
pub const TESSERA_LOG_OFF: tessera_log_level = 0;
/// Errors.
pub const TESSERA_LOG_ERROR: tessera_log_level = 1;
/// Warnings and above.
pub const TESSERA_LOG_WARN: tessera_log_level = 2;
/// Information and above.
pub const TESSERA_LOG_INFO: tessera_log_level = 3;
/// Debugging detail and above.
pub const TESSERA_LOG_DEBUG: tessera_log_level = 4;
/// Everything.
pub const TESSERA_LOG_TRACE: tessera_log_level = 5;

/// A seat of a feature held by a client; 0 is never a valid lease.
pub type tessera_lease = u64;

/// The product's licensing decision.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tessera_license_state {
    /// Not known yet (not connected, or the agent does not know the product).
    TESSERA_STATE_UNKNOWN = 0,
    /// Licensed and verified.
    TESSERA_STATE_ACTIVE = 1,
    /// Usable, but something needs attention before `deadline`.
    TESSERA_STATE_GRACE = 2,
    /// Not usable for new work.
    TESSERA_STATE_BLOCKED = 3,
}

/// Why the product is in its state. Append-only.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tessera_state_reason {
    /// Not known (not connected, or a reason newer than this build).
    TESSERA_REASON_UNKNOWN = 0,
    /// A valid License or an active authorization code.
    TESSERA_REASON_LICENSED = 1,
    /// Nothing imported or activated.
    TESSERA_REASON_NO_LICENSE = 2,
    /// The License or code validity has ended.
    TESSERA_REASON_EXPIRED = 3,
    /// The License is not valid yet.
    TESSERA_REASON_NOT_YET_VALID = 4,
    /// Frozen by the marketplace (e.g. overdue payment).
    TESSERA_REASON_FROZEN = 5,
    /// Released by the marketplace.
    TESSERA_REASON_RELEASED = 6,
    /// The authorization code is not `ALIVE`.
    TESSERA_REASON_CODE_NOT_ALIVE = 7,
    /// Bound to another device.
    TESSERA_REASON_BINDING_MISMATCH = 8,
    /// The signature does not verify.
    TESSERA_REASON_SIGNATURE_INVALID = 9,
    /// The marketplace is unreachable; the offline grace period is running until `deadline`.
    TESSERA_REASON_OFFLINE_GRACE = 10,
    /// The marketplace was unreachable past the offline grace period.
    TESSERA_REASON_OFFLINE_GRACE_SPENT = 11,
    /// The clock moved backwards.
    TESSERA_REASON_CLOCK_TAMPERED = 12,
    /// The application reported that its own verification failed.
    TESSERA_REASON_VERIFY_FAILED = 13,
    /// The trial has ended.
    TESSERA_REASON_TRIAL_EXPIRED = 14,
}

/// The link to the agent.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tessera_link {
    /// `tessera_client_connect` not called, or no connection made yet.
    TESSERA_LINK_NOT_CONNECTED = 0,
    /// Connected.
    TESSERA_LINK_CONNECTED = 1,
    /// Lost, reconnecting; decisions still hold until the lease ends.
    TESSERA_LINK_OFFLINE = 2,
    /// Lost past the lease: checks fail with `TESSERA_AGENT_LOST`.
    TESSERA_LINK_LOST = 3,
    /// The client is shutting down.
    TESSERA_LINK_CLOSED = 4,
}

/// The product's current state, as `tessera_client_state` reports it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct tessera_state {
    /// The decision.
    pub state: tessera_license_state,
    /// Why.
    pub reason: tessera_state_reason,
    /// The link to the agent.
    pub link: tessera_link,
    /// In grace: when the product becomes blocked unless something changes (Unix seconds, UTC);
    /// 0 when there is none.
    pub deadline: i64,
    /// When the License or code validity ends (Unix seconds, UTC); 0 for perpetual or unknown.
    pub expires_at: i64,
}

/// Receives events on the client's events thread: the kind, and the ISCDesk-shaped JSON
/// `{"operate":…,"params":{…},"comeBackParams":{…}}`, valid only during the call.
pub type tessera_event_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, kind: tessera_event_kind, json: *const c_char),
>;

/// Receives log lines on the client's events thread; `message` is valid only during the call.
pub type tessera_log_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, level: tessera_log_level, message: *const c_char),
>;

/// Called once with the userdata when libtessera no longer needs it (callback replaced or
/// client freed).
pub type tessera_userdata_free = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

trait PanicDefault {
    fn panic_default() -> Self;
}

impl PanicDefault for tessera_result {
    fn panic_default() -> Self {
        tessera_result::TESSERA_PANIC
    }
}

impl PanicDefault for bool {
    fn panic_default() -> Self {
        false
    }
}

impl PanicDefault for *const c_char {
    fn panic_default() -> Self {
        std::ptr::null()
    }
}

/// The panic boundary: a panic inside `body` becomes the type's default (`TESSERA_PANIC` for
/// results) instead of unwinding into C, which would be undefined behaviour.
fn boundary<T: PanicDefault>(body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| T::panic_default())
}

macro_rules! try_ffi {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}

/// # Safety
/// `client` is NULL or a pointer from `tessera_client_new` not yet freed.
unsafe fn client_ref<'a>(
    client: *const tessera_client,
) -> Result<&'a tessera_client, tessera_result> {
    // SAFETY: the caller guarantees the pointer is NULL or a live client.
    unsafe { client.as_ref() }.ok_or(tessera_result::TESSERA_NULL_PARAMETER)
}

/// # Safety
/// `s` is NULL or a NUL-terminated string valid for the call.
unsafe fn required_str<'a>(s: *const c_char) -> Result<&'a str, tessera_result> {
    if s.is_null() {
        return Err(tessera_result::TESSERA_NULL_PARAMETER);
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(s) };
    bytes
        .to_str()
        .map_err(|_| tessera_result::TESSERA_INVALID_PARAMETER)
}

/// # Safety
/// As [`required_str`]; NULL reads as `None`.
unsafe fn optional_str<'a>(s: *const c_char) -> Result<Option<&'a str>, tessera_result> {
    if s.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { required_str(s) }.map(Some)
    }
}

/// Copies `text` and a NUL into `buf`.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes; `written` is NULL or valid for one `size_t`.
unsafe fn write_str(
    text: &[u8],
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    if written.is_null() || (buf.is_null() && len > 0) {
        return tessera_result::TESSERA_NULL_PARAMETER;
    }
    let needed = text.len() + 1;
    if len < needed {
        // SAFETY: `written` is non-NULL and valid per the contract.
        unsafe { written.write(needed) };
        return tessera_result::TESSERA_INSUFFICIENT_SIZE;
    }
    // SAFETY: `buf` holds at least `needed` bytes; the regions cannot overlap (ours is Rust's).
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
        written.write(text.len());
    }
    tessera_result::TESSERA_OK
}

impl tessera_client {
    fn record(&self, result: Result<(), SdkError>) -> tessera_result {
        match result {
            Ok(()) => tessera_result::TESSERA_OK,
            Err(e) => self.fail(&e),
        }
    }

    fn fail(&self, e: &SdkError) -> tessera_result {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.clear();
        last.push_str(e.message());
        e.code()
    }

    fn reject(&self, code: tessera_result, why: &str) -> tessera_result {
        self.fail(&SdkError::new(code, why))
    }
}

fn license_kind(kind: tessera_license_kind) -> Option<LicenseKind> {
    match kind {
        TESSERA_LICENSE_FILE => Some(LicenseKind::File),
        TESSERA_LICENSE_STRING => Some(LicenseKind::String),
        _ => None,
    }
}

fn log_level(level: tessera_log_level) -> Option<tracing::Level> {
    match level {
        TESSERA_LOG_ERROR => Some(tracing::Level::ERROR),
        TESSERA_LOG_WARN => Some(tracing::Level::WARN),
        TESSERA_LOG_INFO => Some(tracing::Level::INFO),
        TESSERA_LOG_DEBUG => Some(tracing::Level::DEBUG),
        TESSERA_LOG_TRACE => Some(tracing::Level::TRACE),
        _ => None,
    }
}

/// The library version, `MAJOR.MINOR.PATCH` (the same as `TESSERA_VERSION_STRING` at build
/// time of the header). Static; do not free.
#[unsafe(no_mangle)]
pub extern "C" fn tessera_version() -> *const c_char {
    boundary(|| concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast())
}

/// Writes the description of `result` into `buf` (NUL-terminated); `*written` receives its
/// length. `TESSERA_INVALID_PARAMETER` for a number this build does not know.
///
/// # Safety
/// `buf` is valid for `len` bytes; `written` for one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_result_message(
    result: u32,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    boundary(|| match tessera_result::from_code(result) {
        // SAFETY: forwarded contract.
        Some(r) => unsafe { write_str(r.message().as_bytes(), buf, len, written) },
        None => tessera_result::TESSERA_INVALID_PARAMETER,
    })
}

/// Whether `result` says the License forbids use (as opposed to a call or connection problem).
#[unsafe(no_mangle)]
pub extern "C" fn tessera_result_is_license_error(result: u32) -> bool {
    boundary(|| tessera_result::from_code(result).is_some_and(tessera_result::is_license_error))
}

/// Whether `result` says the agent could not be reached or could not answer.
#[unsafe(no_mangle)]
pub extern "C" fn tessera_result_is_agent_error(result: u32) -> bool {
    boundary(|| tessera_result::from_code(result).is_some_and(tessera_result::is_agent_error))
}

/// Creates a client for `product_id`, used by the application `app_name` `app_version`, and
/// starts its two threads. It does not connect: call `tessera_client_connect`. The agent's
/// endpoint is `TESSERA_SOCKET` if set, else the per-user default, read when connecting.
///
/// On success `*out` receives the client; the caller owns it and must free it with
/// `tessera_client_free`.
///
/// # Safety
/// The strings are NUL-terminated; `out` is valid for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_new(
    product_id: *const c_char,
    app_name: *const c_char,
    app_version: *const c_char,
    out: *mut *mut tessera_client,
) -> tessera_result {
    boundary(|| {
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        // SAFETY: forwarded contract.
        let (product, name, version) = unsafe {
            (
                try_ffi!(required_str(product_id)),
                try_ffi!(required_str(app_name)),
                try_ffi!(required_str(app_version)),
            )
        };
        match Client::new(ClientOptions::new(product, name, version)) {
            Ok(client) => {
                let boxed = Box::new(tessera_client {
                    client,
                    last_error: Mutex::new(String::new()),
                });
                // SAFETY: `out` is non-NULL and valid per the contract.
                unsafe { out.write(Box::into_raw(boxed)) };
                tessera_result::TESSERA_OK
            }
            Err(e) => e.code(),
        }
    })
}

/// Starts connecting to the agent (once) and waits up to `timeout_ms` (at least 50 ms) for the
/// connection.
/// Whatever it returns, the client keeps trying in the background and reconnects by itself
/// after any loss. `TESSERA_OK` when connected; else the last failure, e.g.
/// `TESSERA_AGENT_UNAVAILABLE`.
///
/// # Safety
/// `client` is NULL or a live client.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_connect(
    client: *const tessera_client,
    timeout_ms: u32,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        c.record(
            c.client
                .connect(Duration::from_millis(u64::from(timeout_ms))),
        )
    })
}

/// Whether `feature` may be used now: `TESSERA_OK`, or why not (`TESSERA_NOT_CONNECTED`,
/// `TESSERA_AGENT_LOST`, `TESSERA_FEATURE_NOT_LICENSED`, a blocking reason such as
/// `TESSERA_LICENSE_EXPIRED`, …). A feature this client holds a lease on stays usable until the
/// lease ends.
///
/// The hot path: reads an in-process snapshot; no syscall, no allocation, no lock shared with
/// the IO thread. It does not set the last error text.
///
/// # Safety
/// `client` is NULL or a live client; `feature` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_check(
    client: *const tessera_client,
    feature: *const c_char,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        if feature.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        // SAFETY: non-NULL and NUL-terminated per the contract.
        let name = unsafe { CStr::from_ptr(feature) };
        c.client.check(name.to_bytes())
    })
}

/// Takes a seat of `feature` from the agent; on success `*out_lease` receives its handle. The
/// lease is renewed in the background, survives agent restarts, and lasts until
/// `tessera_client_release` or `tessera_client_free`.
///
/// # Safety
/// `client` is NULL or a live client; `feature` is NUL-terminated; `out_lease` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_checkout(
    client: *const tessera_client,
    feature: *const c_char,
    out_lease: *mut tessera_lease,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        // SAFETY: forwarded contract.
        let feature = try_ffi!(unsafe { required_str(feature) });
        if out_lease.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        match c.client.checkout(feature) {
            Ok(lease) => {
                // SAFETY: non-NULL and valid per the contract.
                unsafe { out_lease.write(lease) };
                tessera_result::TESSERA_OK
            }
            Err(e) => c.fail(&e),
        }
    })
}

/// Gives a seat back. `TESSERA_LEASE_NOT_FOUND` for a handle this client does not hold.
///
/// # Safety
/// `client` is NULL or a live client.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_release(
    client: *const tessera_client,
    lease: tessera_lease,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        c.record(c.client.release(lease))
    })
}

fn reason_of(reason: StateReason) -> tessera_state_reason {
    use tessera_state_reason as R;
    match reason {
        StateReason::Licensed => R::TESSERA_REASON_LICENSED,
        StateReason::NoLicense => R::TESSERA_REASON_NO_LICENSE,
        StateReason::Expired => R::TESSERA_REASON_EXPIRED,
        StateReason::NotYetValid => R::TESSERA_REASON_NOT_YET_VALID,
        StateReason::Frozen => R::TESSERA_REASON_FROZEN,
        StateReason::Released => R::TESSERA_REASON_RELEASED,
        StateReason::CodeNotAlive => R::TESSERA_REASON_CODE_NOT_ALIVE,
        StateReason::BindingMismatch => R::TESSERA_REASON_BINDING_MISMATCH,
        StateReason::SignatureInvalid => R::TESSERA_REASON_SIGNATURE_INVALID,
        StateReason::OfflineGrace => R::TESSERA_REASON_OFFLINE_GRACE,
        StateReason::OfflineGraceSpent => R::TESSERA_REASON_OFFLINE_GRACE_SPENT,
        StateReason::ClockTampered => R::TESSERA_REASON_CLOCK_TAMPERED,
        StateReason::VerifyFailed => R::TESSERA_REASON_VERIFY_FAILED,
        StateReason::TrialExpired => R::TESSERA_REASON_TRIAL_EXPIRED,
        StateReason::Unknown => R::TESSERA_REASON_UNKNOWN,
    }
}

/// The state of the client's product now, as the agent last told it (no round trip).
///
/// # Safety
/// `client` is NULL or a live client; `out` is valid for one `tessera_state`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_state(
    client: *const tessera_client,
    out: *mut tessera_state,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        let link = match c.client.link() {
            LinkStatus::NotConnected => tessera_link::TESSERA_LINK_NOT_CONNECTED,
            LinkStatus::Connected => tessera_link::TESSERA_LINK_CONNECTED,
            LinkStatus::Offline => tessera_link::TESSERA_LINK_OFFLINE,
            LinkStatus::Lost => tessera_link::TESSERA_LINK_LOST,
            LinkStatus::Closed => tessera_link::TESSERA_LINK_CLOSED,
        };
        let mut state = tessera_state {
            state: tessera_license_state::TESSERA_STATE_UNKNOWN,
            reason: tessera_state_reason::TESSERA_REASON_UNKNOWN,
            link,
            deadline: 0,
            expires_at: 0,
        };
        if let Some(p) = c.client.product_state() {
            state.state = match p.state {
                LicenseState::Active => tessera_license_state::TESSERA_STATE_ACTIVE,
                LicenseState::Grace => tessera_license_state::TESSERA_STATE_GRACE,
                LicenseState::Blocked => tessera_license_state::TESSERA_STATE_BLOCKED,
            };
            state.reason = reason_of(p.reason);
            state.deadline = p.deadline.map_or(0, time::OffsetDateTime::unix_timestamp);
            state.expires_at = p.expires_at.map_or(0, time::OffsetDateTime::unix_timestamp);
        }
        // SAFETY: non-NULL and valid per the contract.
        unsafe { out.write(state) };
        tessera_result::TESSERA_OK
    })
}

/// The product's full state as JSON (state, reason, message to show, deadline, expiry,
/// features and seats), or `null` when not known yet. String output rules as everywhere.
///
/// # Safety
/// `client` is NULL or a live client; `buf` is valid for `len` bytes; `written` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_state_json(
    client: *const tessera_client,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        let json = match c.client.product_state() {
            Some(p) => serde_json::to_string(&*p).unwrap_or_else(|_| "null".into()),
            None => "null".into(),
        };
        // SAFETY: forwarded contract.
        unsafe { write_str(json.as_bytes(), buf, len, written) }
    })
}

/// ISCDesk `GetLicenseFileRequest` (`kind` = `TESSERA_LICENSE_FILE`, `file_name` may be NULL)
/// or `GetLicenseStringRequest` (`TESSERA_LICENSE_STRING`). `dev_info` may be NULL (empty). The
/// License arrives as `TESSERA_EVENT_LICENSE_VERIFY`.
///
/// # Safety
/// `client` is NULL or a live client; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_request_license(
    client: *const tessera_client,
    kind: tessera_license_kind,
    file_name: *const c_char,
    dev_info: *const c_char,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        // SAFETY: forwarded contract.
        let (file_name, dev_info) = unsafe {
            (
                try_ffi!(optional_str(file_name)),
                try_ffi!(optional_str(dev_info)),
            )
        };
        let Some(kind) = license_kind(kind) else {
            return c.reject(
                tessera_result::TESSERA_INVALID_PARAMETER,
                "the License kind is neither TESSERA_LICENSE_FILE nor TESSERA_LICENSE_STRING",
            );
        };
        c.record(
            c.client
                .request_license(kind, file_name, dev_info.unwrap_or("")),
        )
    })
}

/// Imports the License file at `path` (read by the agent) for this product.
///
/// # Safety
/// `client` is NULL or a live client; `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_import_license_file(
    client: *const tessera_client,
    path: *const c_char,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        // SAFETY: forwarded contract.
        let path = try_ffi!(unsafe { required_str(path) });
        c.record(c.client.import_license_file(path))
    })
}

/// Imports a License file's content or a License string for this product.
///
/// # Safety
/// `client` is NULL or a live client; `content` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_import_license_string(
    client: *const tessera_client,
    content: *const c_char,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        // SAFETY: forwarded contract.
        let content = try_ffi!(unsafe { required_str(content) });
        c.record(c.client.import_license_string(content))
    })
}

/// ISCDesk `LicenseVerifyNotify`: the application's own verification result; `message` may be
/// NULL.
///
/// # Safety
/// `client` is NULL or a live client; `message` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_verify_notify(
    client: *const tessera_client,
    ok: bool,
    message: *const c_char,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        // SAFETY: forwarded contract.
        let message = try_ffi!(unsafe { optional_str(message) });
        c.record(c.client.verify_notify(ok, message.unwrap_or("")))
    })
}

/// ISCDesk `TrialExpirationAndGetLicense`: the trial has ended; the agent guides the user to buy
/// or apply for a License. `dev_info` and `file_name` may be NULL.
///
/// # Safety
/// `client` is NULL or a live client; the strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_trial_expired(
    client: *const tessera_client,
    kind: tessera_license_kind,
    dev_info: *const c_char,
    file_name: *const c_char,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        // SAFETY: forwarded contract.
        let (dev_info, file_name) = unsafe {
            (
                try_ffi!(optional_str(dev_info)),
                try_ffi!(optional_str(file_name)),
            )
        };
        let Some(kind) = license_kind(kind) else {
            return c.reject(
                tessera_result::TESSERA_INVALID_PARAMETER,
                "the License kind is neither TESSERA_LICENSE_FILE nor TESSERA_LICENSE_STRING",
            );
        };
        c.record(
            c.client
                .trial_expired(kind, dev_info.unwrap_or(""), file_name),
        )
    })
}

/// ISCDesk `CheckNewVersions`: the answer arrives as `TESSERA_EVENT_UPGRADENOTICE`.
///
/// # Safety
/// `client` is NULL or a live client.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_check_new_versions(
    client: *const tessera_client,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        c.record(c.client.check_new_versions())
    })
}

/// ISCDesk `UpgradeNotify(bUpgrade)`: the answer to an optional upgrade.
///
/// # Safety
/// `client` is NULL or a live client.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_upgrade_notify(
    client: *const tessera_client,
    accept: bool,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        c.record(c.client.upgrade_notify(accept))
    })
}

/// Activates a KooGallery authorization code for this product.
///
/// # Safety
/// `client` is NULL or a live client; `code` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_activate_code(
    client: *const tessera_client,
    code: *const c_char,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        // SAFETY: forwarded contract.
        let code = try_ffi!(unsafe { required_str(code) });
        c.record(c.client.activate_code(code))
    })
}

/// The text of the last failure of a call on this client (empty if none): what failed and why.
/// Shared by all threads using the client; `tessera_client_check` does not set it.
///
/// # Safety
/// `client` is NULL or a live client; `buf` is valid for `len` bytes; `written` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_last_error(
    client: *const tessera_client,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        let text = c
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // SAFETY: forwarded contract.
        unsafe { write_str(text.as_bytes(), buf, len, written) }
    })
}

struct UserData {
    ptr: *mut c_void,
    free: tessera_userdata_free,
}

// SAFETY: the application promises, by registering the callback, that its userdata may be
// used from the client's events thread; libtessera only passes it back.
unsafe impl Send for UserData {}
// SAFETY: as above; the pointer is never dereferenced by libtessera.
unsafe impl Sync for UserData {}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the application gave this function for this pointer.
            unsafe { free(self.ptr) };
        }
    }
}

struct CEventSink {
    callback: unsafe extern "C" fn(*mut c_void, tessera_event_kind, *const c_char),
    userdata: UserData,
}

impl EventSink for CEventSink {
    fn event(&self, kind: u32, json: &CString) {
        // SAFETY: the application registered this function; the string outlives the call.
        unsafe { (self.callback)(self.userdata.ptr, kind, json.as_ptr()) };
    }
}

struct CLogSink {
    callback: unsafe extern "C" fn(*mut c_void, tessera_log_level, *const c_char),
    userdata: UserData,
}

impl LogSink for CLogSink {
    fn log(&self, level: tracing::Level, message: &CString) {
        let level = u32::from(crate::sinks::level_number(level));
        // SAFETY: the application registered this function; the string outlives the call.
        unsafe { (self.callback)(self.userdata.ptr, level, message.as_ptr()) };
    }
}

/// Sets the event callback (NULL removes it; events then wait for `tessera_client_next_event`).
/// Calls come on the client's events thread, one at a time, with `userdata`. When this returns,
/// the previous callback is no longer running and its `userdata_free` (if any) has been called.
/// `TESSERA_CALLED_FROM_CALLBACK` from inside a callback.
///
/// # Safety
/// `client` is NULL or a live client; `callback` and `userdata_free` are NULL or valid
/// functions; `userdata` may be used from another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_set_event_callback(
    client: *const tessera_client,
    callback: tessera_event_callback,
    userdata: *mut c_void,
    userdata_free: tessera_userdata_free,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        let sink = callback.map(|callback| {
            Box::new(CEventSink {
                callback,
                userdata: UserData {
                    ptr: userdata,
                    free: userdata_free,
                },
            }) as Box<dyn EventSink>
        });
        c.record(c.client.set_event_sink(sink))
    })
}

/// Sets the log callback and the most verbose level it receives (`TESSERA_LOG_OFF` or a NULL
/// callback removes it). Lines come on the client's events thread. Same replacement rules as
/// `tessera_client_set_event_callback`.
///
/// # Safety
/// As `tessera_client_set_event_callback`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_set_log_callback(
    client: *const tessera_client,
    callback: tessera_log_callback,
    userdata: *mut c_void,
    userdata_free: tessera_userdata_free,
    max_level: tessera_log_level,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        if max_level > TESSERA_LOG_TRACE {
            return c.reject(
                tessera_result::TESSERA_INVALID_PARAMETER,
                "the log level is not a TESSERA_LOG_* value",
            );
        }
        let level = log_level(max_level).unwrap_or(tracing::Level::ERROR);
        let sink = match (callback, max_level) {
            (Some(callback), level) if level != TESSERA_LOG_OFF => Some(Box::new(CLogSink {
                callback,
                userdata: UserData {
                    ptr: userdata,
                    free: userdata_free,
                },
            })
                as Box<dyn LogSink>),
            _ => None,
        };
        c.record(c.client.set_log_sink(sink, level))
    })
}

/// The pull API: takes the oldest queued event (queued only while no event callback is set; at
/// most 256 are kept, the oldest dropped). On success `*out_kind` gets its kind and `buf` its
/// JSON. `TESSERA_NO_EVENT` when none is waiting; `TESSERA_INSUFFICIENT_SIZE` (event kept,
/// `*written` = size needed) when `buf` is too small.
///
/// # Safety
/// `client` is NULL or a live client; `out_kind` and `written` are valid; `buf` is valid for
/// `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_next_event(
    client: *const tessera_client,
    out_kind: *mut tessera_event_kind,
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> tessera_result {
    boundary(|| {
        // SAFETY: forwarded contract.
        let c = try_ffi!(unsafe { client_ref(client) });
        if out_kind.is_null() || written.is_null() || (buf.is_null() && len > 0) {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        match c.client.next_event_fitting(len) {
            Ok(None) => tessera_result::TESSERA_NO_EVENT,
            Ok(Some((kind, json))) => {
                // SAFETY: it fits (checked under the queue's lock); pointers valid per contract.
                let r = unsafe { write_str(json.as_bytes(), buf, len, written) };
                // SAFETY: non-NULL and valid per the contract.
                unsafe { out_kind.write(kind) };
                r
            }
            Err(needed) => {
                // SAFETY: non-NULL and valid per the contract.
                unsafe { written.write(needed) };
                tessera_result::TESSERA_INSUFFICIENT_SIZE
            }
        }
    })
}

/// Frees the client: says goodbye to the agent (its leases are released), stops its threads,
/// discards queued events, and calls the userdata finalizers. NULL is a no-op. Refused with
/// `TESSERA_CALLED_FROM_CALLBACK` (nothing freed) from inside a callback. Must not be called
/// twice, nor while another thread uses the client.
///
/// # Safety
/// `client` is NULL or a live client no other thread is using.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tessera_client_free(client: *mut tessera_client) -> tessera_result {
    boundary(|| {
        if client.is_null() {
            return tessera_result::TESSERA_OK;
        }
        // SAFETY: non-NULL and live per the contract.
        let c = unsafe { &*client };
        if c.client.in_callback() {
            return c.reject(
                tessera_result::TESSERA_CALLED_FROM_CALLBACK,
                "tessera_client_free cannot be called from inside a callback",
            );
        }
        // SAFETY: created by Box::into_raw in tessera_client_new and, per the contract, not
        // freed before and not used by anyone else.
        drop(unsafe { Box::from_raw(client) });
        tessera_result::TESSERA_OK
    })
}

#[cfg(test)]
mod tests {
    use tessera_types::EventKind;

    use super::*;

    #[test]
    fn event_kind_numbers_match_the_protocol() {
        let ours = [
            (TESSERA_EVENT_LICENSE_VERIFY, EventKind::LicenseVerify),
            (TESSERA_EVENT_UPGRADENOTICE, EventKind::UpgradeNotice),
            (TESSERA_EVENT_UPDATE, EventKind::Update),
            (TESSERA_EVENT_LICENSE_STATE, EventKind::LicenseState),
            (TESSERA_EVENT_HEARTBEAT_REPLY, EventKind::HeartbeatReply),
            (TESSERA_EVENT_AGENT_CLOSING, EventKind::AgentClosing),
        ];
        assert_eq!(ours.len(), EventKind::ALL.len());
        for (number, kind) in ours {
            assert_eq!(number, kind.code(), "{kind:?}");
        }
    }

    #[test]
    fn string_output_reports_the_size_needed() {
        let mut buf = [0 as c_char; 8];
        let mut written = 0usize;
        // SAFETY: valid buffers.
        unsafe {
            assert_eq!(
                write_str(
                    b"hello world",
                    buf.as_mut_ptr(),
                    buf.len(),
                    &raw mut written
                ),
                tessera_result::TESSERA_INSUFFICIENT_SIZE
            );
            assert_eq!(written, 12);
            assert_eq!(
                write_str(b"hello", buf.as_mut_ptr(), buf.len(), &raw mut written),
                tessera_result::TESSERA_OK
            );
            assert_eq!(written, 5);
            assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap(), "hello");
            assert_eq!(
                write_str(b"x", std::ptr::null_mut(), 0, &raw mut written),
                tessera_result::TESSERA_INSUFFICIENT_SIZE
            );
            assert_eq!(written, 2);
            assert_eq!(
                write_str(b"x", std::ptr::null_mut(), 4, &raw mut written),
                tessera_result::TESSERA_NULL_PARAMETER
            );
        }
    }

    #[test]
    fn a_panic_becomes_a_result_code() {
        let r: tessera_result = boundary(|| panic!("boom"));
        assert_eq!(r, tessera_result::TESSERA_PANIC);
    }

    #[test]
    fn null_handles_are_refused_and_free_null_is_a_no_op() {
        // SAFETY: NULL is allowed by every function's contract.
        unsafe {
            let null = std::ptr::null();
            assert_eq!(
                tessera_client_check(null, c"solver".as_ptr()),
                tessera_result::TESSERA_NULL_PARAMETER
            );
            assert_eq!(
                tessera_client_connect(null, 0),
                tessera_result::TESSERA_NULL_PARAMETER
            );
            assert_eq!(
                tessera_client_free(std::ptr::null_mut()),
                tessera_result::TESSERA_OK
            );
        }
    }
}
