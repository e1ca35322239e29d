//! The production-interface signature, MKT → ISV (PROTOCOL.md §5.2).
//!
//! ```text
//! inner     = lower(hex(HMAC_SHA256(key = accessKey, msg = raw body)))
//! signature = hex(HMAC_SHA256(key = accessKey, msg = accessKey + nonce + timestamp + inner))
//! ```
//!
//! carried in the URL query as `signature`, `timestamp` (Unix seconds or milliseconds) and
//! `nonce`. The receiver checks the timestamp is within 60 s of its clock, the signature
//! (case-insensitively, in constant time) over the **raw received bytes**, and only then that
//! the nonce was not seen before in the window ([`NonceCache`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use percent_encoding::utf8_percent_encode;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tessera_types::{IsvResultCode, KooTime};
use time::{Duration, OffsetDateTime};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// How far the timestamp may be from the receiver's clock, either way.
pub const WINDOW: Duration = Duration::seconds(60);
/// Longest nonce accepted (examples are 16, 32 or 64 characters).
pub const MAX_NONCE_LEN: usize = 128;

/// The access key shared by MKT and the ISV for one interface type. `Debug` hides it; it is
/// wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AccessKey(String);

impl AccessKey {
    /// Wraps the key text from the seller console.
    #[must_use]
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessKey(<redacted>)")
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn signature_bytes(key: &AccessKey, body: &[u8], timestamp: &str, nonce: &str) -> [u8; 32] {
    let k = key.as_str().as_bytes();
    let inner = hex::encode(hmac(k, &[body]));
    hmac(
        k,
        &[k, nonce.as_bytes(), timestamp.as_bytes(), inner.as_bytes()],
    )
}

/// The signature of `body` as MKT sends it: 64 upper-case hex characters.
#[must_use]
pub fn sign(key: &AccessKey, body: &[u8], timestamp: &str, nonce: &str) -> String {
    hex::encode_upper(signature_bytes(key, body, timestamp, nonce))
}

/// The `inner` step (lower-case hex HMAC of the body), exposed for diagnostics and test vectors.
#[must_use]
pub fn inner_digest(key: &AccessKey, body: &[u8]) -> String {
    hex::encode(hmac(key.as_str().as_bytes(), &[body]))
}

/// The three signature parameters of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    /// Hex HMAC.
    pub signature: String,
    /// Unix epoch, seconds or milliseconds, exactly as sent.
    pub timestamp: String,
    /// A random string.
    pub nonce: String,
}

impl SignatureParams {
    /// Signs `body` at `now` (written as 13-digit milliseconds, like every documented example)
    /// with `nonce`.
    #[must_use]
    pub fn sign(key: &AccessKey, body: &[u8], now: OffsetDateTime, nonce: &str) -> Self {
        let timestamp = KooTime::new(now).unix_millis().to_string();
        Self {
            signature: sign(key, body, &timestamp, nonce),
            timestamp,
            nonce: nonce.to_owned(),
        }
    }

    /// `signature=…&timestamp=…&nonce=…`, percent-encoded, to append to the production URL.
    #[must_use]
    pub fn query_string(&self) -> String {
        let enc = |s: &str| utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        format!(
            "signature={}&timestamp={}&nonce={}",
            enc(&self.signature),
            enc(&self.timestamp),
            enc(&self.nonce)
        )
    }

    /// `base_url` with the parameters appended (after `?`, or `&` when it has a query already).
    #[must_use]
    pub fn append_to(&self, base_url: &str) -> String {
        let sep = if base_url.contains('?') { '&' } else { '?' };
        format!("{base_url}{sep}{}", self.query_string())
    }

    /// Reads the parameters from a raw URL query string (other parameters are ignored).
    ///
    /// # Errors
    /// When one of the three is missing or repeated.
    pub fn from_query(query: &str) -> Result<Self, CallbackAuthError> {
        let (mut signature, mut timestamp, mut nonce) = (None, None, None);
        for (k, v) in crate::apig::parse_query(query) {
            let slot = match k.as_str() {
                "signature" => &mut signature,
                "timestamp" => &mut timestamp,
                "nonce" => &mut nonce,
                _ => continue,
            };
            if slot.replace(v).is_some() {
                return Err(CallbackAuthError::MissingParameter("repeated parameter"));
            }
        }
        Ok(Self {
            signature: signature.ok_or(CallbackAuthError::MissingParameter("signature"))?,
            timestamp: timestamp.ok_or(CallbackAuthError::MissingParameter("timestamp"))?,
            nonce: nonce.ok_or(CallbackAuthError::MissingParameter("nonce"))?,
        })
    }
}

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackAuthError {
    /// `signature`, `timestamp` or `nonce` is absent (or repeated).
    #[error("callback URL lacks a single {0} parameter")]
    MissingParameter(&'static str),
    /// The timestamp is not 9–11 (seconds) or 13 (milliseconds) digits.
    #[error("callback timestamp is not Unix seconds or milliseconds")]
    BadTimestamp,
    /// The timestamp is outside the window around the receiver's clock.
    #[error("callback timestamp is {seconds} s away from this clock, outside the window")]
    Stale {
        /// `timestamp − now` in whole seconds.
        seconds: i64,
    },
    /// The nonce is empty, too long or not printable ASCII.
    #[error("callback nonce is empty, longer than {MAX_NONCE_LEN} or not printable ASCII")]
    BadNonce,
    /// The signature is not 64 hex digits or does not match.
    #[error("callback signature does not match the body")]
    BadSignature,
    /// The nonce was already used inside the window.
    #[error("callback nonce was already used (replay)")]
    Replayed,
    /// The nonce store could not answer; the call should be retried later.
    #[error("nonce store unavailable")]
    NonceStoreUnavailable(#[source] NonceStoreError),
}

impl CallbackAuthError {
    /// The answer PROTOCOL.md §3.3 gives: `000001` for authentication failures, `000005`
    /// (internal, MKT retries) when the nonce store is unavailable.
    #[must_use]
    pub fn result_code(&self) -> IsvResultCode {
        match self {
            Self::NonceStoreUnavailable(_) => IsvResultCode::InternalError,
            _ => IsvResultCode::AuthFailed,
        }
    }
}

/// Why a nonce store could not record a nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceStoreError {
    /// The store holds its maximum of live nonces. Refusing is safer than forgetting a nonce
    /// that is still inside the window (which would allow a replay).
    #[error("nonce store is full ({0} live nonces)")]
    Full(usize),
    /// A backing store (e.g. a database) failed.
    #[error("nonce store backend failed: {0}")]
    Backend(String),
}

/// The outcome of [`NonceCache::check_and_insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// First sighting; now remembered.
    Fresh,
    /// Already seen inside the window.
    Replayed,
}

/// Remembers nonces for the anti-replay check. Implementations must be atomic: two concurrent
/// calls with the same nonce must not both see [`NonceCheck::Fresh`].
///
/// The method returns a future so a database-backed store can be asynchronous; the in-memory
/// [`MemoryNonceCache`] completes immediately.
pub trait NonceCache: Send + Sync {
    /// Records `nonce` as seen at `seen_at`, to be remembered for at least `window`, and says
    /// whether it had been seen before within that time.
    fn check_and_insert(
        &self,
        nonce: &str,
        seen_at: OffsetDateTime,
        window: Duration,
    ) -> impl Future<Output = Result<NonceCheck, NonceStoreError>> + Send;
}

/// A bounded in-memory [`NonceCache`]. Nonces are forgotten once older than their window; when
/// `capacity` live nonces are held, new ones are refused until some expire.
pub struct MemoryNonceCache {
    capacity: usize,
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    expiry: HashMap<String, OffsetDateTime>,
    // Insertion order; expiries are monotone as long as the window is constant and the clock
    // does not go back, and a stale front entry only delays eviction, never breaks correctness.
    order: VecDeque<(OffsetDateTime, String)>,
}

impl MemoryNonceCache {
    /// A cache holding at most `capacity` live nonces.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(MemoryInner::default()),
        }
    }

    /// The number of nonces currently remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().expiry.len()
    }

    /// Whether no nonce is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters here (worst case a nonce is remembered twice), so recover the guard.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_now(
        &self,
        nonce: &str,
        seen_at: OffsetDateTime,
        window: Duration,
    ) -> Result<NonceCheck, NonceStoreError> {
        let mut inner = self.lock();
        let MemoryInner { expiry, order } = &mut *inner;
        while let Some((at, _)) = order.front() {
            if *at > seen_at {
                break;
            }
            let (at, n) = order.pop_front().expect("front exists");
            if expiry.get(&n) == Some(&at) {
                expiry.remove(&n);
            }
        }
        if expiry.get(nonce).is_some_and(|until| *until > seen_at) {
            return Ok(NonceCheck::Replayed);
        }
        if expiry.len() >= self.capacity {
            // The front of `order` may be out of date; sweep once before refusing.
            expiry.retain(|_, until| *until > seen_at);
            order.retain(|(at, n)| expiry.get(n) == Some(at));
            if expiry.len() >= self.capacity {
                return Err(NonceStoreError::Full(expiry.len()));
            }
        }
        // Remember for the window on both sides of the signed timestamp, since the sender's
        // clock may be up to a window ahead of ours.
        let until = seen_at + window + window;
        expiry.insert(nonce.to_owned(), until);
        order.push_back((until, nonce.to_owned()));
        Ok(NonceCheck::Fresh)
    }
}

impl fmt::Debug for MemoryNonceCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryNonceCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl NonceCache for MemoryNonceCache {
    fn check_and_insert(
        &self,
        nonce: &str,
        seen_at: OffsetDateTime,
        window: Duration,
    ) -> impl Future<Output = Result<NonceCheck, NonceStoreError>> + Send {
        std::future::ready(self.check_now(nonce, seen_at, window))
    }
}

/// What a verified callback carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCallback {
    /// The signed timestamp.
    pub timestamp: KooTime,
    /// The nonce.
    pub nonce: String,
}

/// Checks the timestamp window and the signature, without the replay check (pure, no state).
///
/// # Errors
/// A malformed or stale timestamp, a bad nonce, or a signature that does not match.
pub fn verify_signature(
    key: &AccessKey,
    body: &[u8],
    params: &SignatureParams,
    now: OffsetDateTime,
) -> Result<VerifiedCallback, CallbackAuthError> {
    let ts = params.timestamp.as_str();
    if ts.len() > 13 {
        return Err(CallbackAuthError::BadTimestamp);
    }
    let timestamp = KooTime::from_epoch_digits(ts).map_err(|_| CallbackAuthError::BadTimestamp)?;
    let offset = timestamp.datetime() - now;
    if offset.abs() > WINDOW {
        return Err(CallbackAuthError::Stale {
            seconds: offset.whole_seconds(),
        });
    }
    let nonce = params.nonce.as_str();
    if nonce.is_empty()
        || nonce.len() > MAX_NONCE_LEN
        || !nonce.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(CallbackAuthError::BadNonce);
    }
    let mut given = [0u8; 32];
    if params.signature.len() != 64 || hex::decode_to_slice(&params.signature, &mut given).is_err()
    {
        return Err(CallbackAuthError::BadSignature);
    }
    let expected = signature_bytes(key, body, ts, nonce);
    if !bool::from(expected.ct_eq(&given)) {
        return Err(CallbackAuthError::BadSignature);
    }
    Ok(VerifiedCallback {
        timestamp,
        nonce: nonce.to_owned(),
    })
}

/// The full check: [`verify_signature`], then the nonce against `cache` (only signed nonces are
/// recorded, so unsigned garbage cannot fill the cache).
///
/// # Errors
/// As [`verify_signature`], plus [`CallbackAuthError::Replayed`] and
/// [`CallbackAuthError::NonceStoreUnavailable`].
pub async fn verify<C: NonceCache + ?Sized>(
    key: &AccessKey,
    body: &[u8],
    params: &SignatureParams,
    now: OffsetDateTime,
    cache: &C,
) -> Result<VerifiedCallback, CallbackAuthError> {
    let verified = verify_signature(key, body, params, now)?;
    match cache
        .check_and_insert(&verified.nonce, now, WINDOW)
        .await
        .map_err(CallbackAuthError::NonceStoreUnavailable)?
    {
        NonceCheck::Fresh => Ok(verified),
        NonceCheck::Replayed => Err(CallbackAuthError::Replayed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "TESTACCESSKEY";
    const NONCE: &str = "0123456789abcdef0123456789abcdef";
    const BODY: &[u8] = br#"{"activity":"newInstance","businessId":"b-0001","orderId":"MOCKPERIODYEARNEW","orderLineId":"MOCKPERIODYEARNEW-000001","testFlag":"1"}"#;
    const SIGNATURE: &str = "5656C3074A77F24973918E3F9ED036A612800BF84BF7A6F400C3F3BA2223F6EA";

    fn at_ms(ms: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
    }

    fn params(signature: &str, timestamp: &str, nonce: &str) -> SignatureParams {
        SignatureParams {
            signature: signature.into(),
            timestamp: timestamp.into(),
            nonce: nonce.into(),
        }
    }

    fn block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn local_vector_matches() {
        let key = AccessKey::new(KEY);
        assert_eq!(
            inner_digest(&key, BODY),
            "781c3b76f0cd32c77bedc6eb0aa3906ff2c2dba6fc479b0737d17f582e579708"
        );
        assert_eq!(sign(&key, BODY, "1700000000000", NONCE), SIGNATURE);
        let p = SignatureParams::sign(&key, BODY, at_ms(1_700_000_000_000), NONCE);
        assert_eq!(p, params(SIGNATURE, "1700000000000", NONCE));
    }

    #[test]
    fn accepts_lower_case_and_both_timestamp_units() {
        let key = AccessKey::new(KEY);
        let now = at_ms(1_700_000_000_000);
        let lower = SIGNATURE.to_ascii_lowercase();
        verify_signature(&key, BODY, &params(&lower, "1700000000000", NONCE), now).unwrap();
        let secs_sig = sign(&key, BODY, "1700000000", NONCE);
        let v = verify_signature(
            &key,
            BODY,
            &params(&secs_sig, "1700000000", NONCE),
            now + Duration::seconds(59),
        )
        .unwrap();
        assert_eq!(v.timestamp.unix_seconds(), 1_700_000_000);
        // The timestamp is signed as the exact string: the same instant in the other unit fails.
        assert_eq!(
            verify_signature(&key, BODY, &params(&secs_sig, "1700000000000", NONCE), now),
            Err(CallbackAuthError::BadSignature)
        );
    }

    #[test]
    fn stale_tampered_and_malformed_calls_are_refused() {
        let key = AccessKey::new(KEY);
        let p = params(SIGNATURE, "1700000000000", NONCE);
        let t0 = at_ms(1_700_000_000_000);
        assert_eq!(
            verify_signature(&key, BODY, &p, t0 + Duration::seconds(61)),
            Err(CallbackAuthError::Stale { seconds: -61 })
        );
        assert_eq!(
            verify_signature(&key, BODY, &p, t0 - Duration::seconds(61)),
            Err(CallbackAuthError::Stale { seconds: 61 })
        );
        verify_signature(&key, BODY, &p, t0 + Duration::seconds(60)).unwrap();
        let mut body = BODY.to_vec();
        body[5] ^= 1;
        assert_eq!(
            verify_signature(&key, &body, &p, t0),
            Err(CallbackAuthError::BadSignature)
        );
        assert_eq!(
            verify_signature(&AccessKey::new("OTHER"), BODY, &p, t0),
            Err(CallbackAuthError::BadSignature)
        );
        assert_eq!(
            verify_signature(&key, BODY, &params(SIGNATURE, "1700000000000", "other"), t0),
            Err(CallbackAuthError::BadSignature)
        );
        assert_eq!(
            verify_signature(&key, BODY, &params("12", "1700000000000", NONCE), t0),
            Err(CallbackAuthError::BadSignature)
        );
        assert_eq!(
            verify_signature(&key, BODY, &params(SIGNATURE, "17000000000000", NONCE), t0),
            Err(CallbackAuthError::BadTimestamp)
        );
        assert_eq!(
            verify_signature(&key, BODY, &params(SIGNATURE, "-1", NONCE), t0),
            Err(CallbackAuthError::BadTimestamp)
        );
        assert_eq!(
            verify_signature(&key, BODY, &params(SIGNATURE, "1700000000000", "a b"), t0),
            Err(CallbackAuthError::BadNonce)
        );
        assert_eq!(
            CallbackAuthError::BadSignature.result_code(),
            IsvResultCode::AuthFailed
        );
    }

    #[test]
    fn replay_is_refused_within_the_window() {
        let key = AccessKey::new(KEY);
        let cache = MemoryNonceCache::new(16);
        let p = params(SIGNATURE, "1700000000000", NONCE);
        let t0 = at_ms(1_700_000_000_000);
        block(verify(&key, BODY, &p, t0, &cache)).unwrap();
        assert_eq!(
            block(verify(&key, BODY, &p, t0 + Duration::seconds(30), &cache)),
            Err(CallbackAuthError::Replayed)
        );
        // A call failing its signature does not consume a nonce.
        let forged = params(&"0".repeat(64), "1700000000000", "fresh-nonce");
        assert!(block(verify(&key, BODY, &forged, t0, &cache)).is_err());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn memory_cache_evicts_expired_nonces_and_is_bounded() {
        let cache = MemoryNonceCache::new(2);
        let t0 = at_ms(1_700_000_000_000);
        let check = |n: &str, t| block(cache.check_and_insert(n, t, WINDOW));
        assert_eq!(check("a", t0), Ok(NonceCheck::Fresh));
        assert_eq!(
            check("a", t0 + Duration::seconds(119)),
            Ok(NonceCheck::Replayed)
        );
        assert_eq!(check("b", t0), Ok(NonceCheck::Fresh));
        assert_eq!(check("c", t0), Err(NonceStoreError::Full(2)));
        assert_eq!(
            CallbackAuthError::NonceStoreUnavailable(NonceStoreError::Full(2)).result_code(),
            IsvResultCode::InternalError
        );
        // Two windows later both are forgotten and room is made.
        let later = t0 + Duration::seconds(121);
        assert_eq!(check("c", later), Ok(NonceCheck::Fresh));
        assert_eq!(cache.len(), 1);
        assert_eq!(check("a", later), Ok(NonceCheck::Fresh));
    }

    #[test]
    fn url_parameters_round_trip() {
        let key = AccessKey::new(KEY);
        let p = SignatureParams::sign(&key, BODY, at_ms(1_700_000_000_123), "n+/=1");
        let url = p.append_to("https://isv.example.com/produce");
        let query = url.split_once('?').unwrap().1;
        assert_eq!(SignatureParams::from_query(query).unwrap(), p);
        assert_eq!(
            p.append_to("https://isv.example.com/produce?x=1")
                .matches('?')
                .count(),
            1
        );
        assert_eq!(
            SignatureParams::from_query("signature=a&timestamp=1"),
            Err(CallbackAuthError::MissingParameter("nonce"))
        );
        assert!(!format!("{key:?}").contains(KEY));
    }
}
