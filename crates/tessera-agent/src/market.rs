//! What the agent needs from the marketplace, as a trait, so the code lifecycle is written once
//! against it: production uses [`crate::market_http::KooMarket`] (an adapter over
//! `koogallery::client::MarketClient`); unit tests may supply their own.

use std::future::Future;
use std::pin::Pin;

use time::{Duration, OffsetDateTime};

/// A boxed future, as trait objects need.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the marketplace says about one code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    /// `ALIVE`, `EXPIRED`, `RELEASED`, ….
    pub status: String,
    /// Validity end (an estimate on activation).
    pub expires_at: Option<OffsetDateTime>,
    /// The marketplace product id, when given.
    pub product_id: Option<String>,
    /// Seats bought, when given.
    pub amount: Option<u32>,
}

/// A successful answer, with the server's `Date` for trusted time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// The payload.
    pub value: T,
    /// The HTTP `Date` of the answer.
    pub server_date: Option<OffsetDateTime>,
}

/// How a marketplace call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketFailure {
    /// The marketplace answered with a definite business refusal (`error_code`), which a retry
    /// will not change.
    #[error("the marketplace refused: {code} ({message})")]
    Refused {
        /// The `error_code` (e.g. `92020005`).
        code: String,
        /// Its message.
        message: String,
    },
    /// The marketplace could not be reached or answered with something a retry may fix
    /// (5xx, rate limit, gateway error, transport error).
    #[error("the marketplace is unavailable: {message}")]
    Unavailable {
        /// What happened, safe to show.
        message: String,
        /// `Retry-After`, if the server said.
        retry_after: Option<Duration>,
    },
}

/// `error_code` for "illegal state" (already activated).
pub const CODE_ILLEGAL_STATE: &str = "92020003";
/// `error_code` for "not yet received by the user".
pub const CODE_NOT_RECEIVED: &str = "92020004";
/// `error_code` for "code does not exist".
pub const CODE_NOT_EXIST: &str = "92020005";
/// `error_code` for "code not activated".
pub const CODE_NOT_ACTIVATED: &str = "92020011";

/// The per-code outcome of a (batch) heartbeat.
pub type HeartbeatOutcome = Result<CodeInfo, MarketFailure>;

/// The per-code outcome of a (batch) activation: the code's state afterwards, or its refusal.
pub type ActivationOutcome = Result<CodeInfo, MarketFailure>;

/// The marketplace's Model A APIs, as the agent uses them.
pub trait Marketplace: Send + Sync + std::fmt::Debug {
    /// Activates one code (v1).
    fn activate<'a>(
        &'a self,
        code: &'a str,
    ) -> BoxFuture<'a, Result<Answer<CodeInfo>, MarketFailure>>;

    /// Activates up to 100 codes at once (v1 for one, v2 for several). The outer error is for
    /// the whole request; the inner results are per code, in input order.
    fn activate_batch<'a>(
        &'a self,
        codes: &'a [String],
    ) -> BoxFuture<'a, Result<Answer<Vec<ActivationOutcome>>, MarketFailure>>;

    /// Queries up to 100 codes (v1 for one, v2 for several). The outer error is for the whole
    /// request; the inner results are per code, in input order.
    fn heartbeat<'a>(
        &'a self,
        codes: &'a [String],
    ) -> BoxFuture<'a, Result<Answer<Vec<HeartbeatOutcome>>, MarketFailure>>;

    /// Reports that `id` used each code today (`software-usage-info`).
    fn report_usage<'a>(
        &'a self,
        codes: &'a [String],
        id: &'a str,
    ) -> BoxFuture<'a, Result<Answer<()>, MarketFailure>>;
}
