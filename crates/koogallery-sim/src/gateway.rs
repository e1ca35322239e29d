//! The APIG check in front of the open APIs (PROTOCOL.md §5.1), using the marketplace's clock.

use koogallery::apig::{self, Credentials, ReceivedRequest};

use crate::sim::SimCore;

/// Verifies the `SDK-HMAC-SHA256` signature of a request against the configured AK/SK pairs and
/// the allowed skew. The error text is what `APIG.0303` carries.
///
/// # Errors
/// Any failed check (missing or malformed header, unknown key, skew, signature mismatch).
pub(crate) fn verify(
    core: &SimCore,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<(), String> {
    let received = ReceivedRequest::from_parts(parts, body);
    let skew = time::Duration::try_from(core.apig_skew).unwrap_or(apig::MAX_SKEW);
    let lookup = |ak: &str| core.secret_for(ak).map(|sk| Credentials::new(ak, sk));
    match apig::verify_with_skew(&received, lookup, core.now(), skew) {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::info!(error = %e, path = %parts.uri.path(), "APIG authentication refused");
            Err(format!("Incorrect app authentication information: {e}"))
        }
    }
}
