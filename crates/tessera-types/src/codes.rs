//! Every result code of PROTOCOL.md §3, with its meaning and whether a retry can help.
//!
//! Codes travel as strings on the wire; [`LicenseApiCode::parse`] and friends return `None` for a
//! code this build does not know, so a caller can keep the raw string and report it.

use serde::{Deserialize, Serialize};

macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, $http:literal, $retry:literal, $meaning:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $code)] $variant, )+
        }

        impl $name {
            /// Every code, in the order of PROTOCOL.md.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code as sent on the wire.
            #[must_use]
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code,)+ }
            }

            /// The code for a wire string, or `None` when this build does not know it.
            #[must_use]
            pub fn parse(code: &str) -> Option<Self> {
                match code.trim() { $($code => Some($name::$variant),)+ _ => None }
            }

            /// What the code means, in a sentence a user can act on.
            #[must_use]
            pub fn meaning(self) -> &'static str {
                match self { $($name::$variant => $meaning,)+ }
            }

            /// Whether sending the same request again later can succeed.
            #[must_use]
            pub fn retryable(self) -> bool {
                match self { $($name::$variant => $retry,)+ }
            }

            /// The HTTP status KooGallery documents for this code (200 where it answers 200).
            #[must_use]
            pub fn http_status(self) -> u16 {
                match self { $($name::$variant => $http,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{} ({})", self.code(), self.meaning())
            }
        }
    };
}

code_enum! {
    /// `error_code` of the License open APIs: activate, heartbeat, usage, market-event upload
    /// (PROTOCOL.md §3.1).
    LicenseApiCode {
        Success = "92020000", 200, false, "success";
        /// Documented both as "internal error" (200/500) and "Unauthorized" (403); the HTTP status
        /// tells them apart, and a retry helps only the internal error.
        InternalError = "92020001", 200, true, "internal error on the marketplace, or authentication failed (HTTP 403)";
        InvalidParam = "92020002", 200, false, "invalid parameter";
        IllegalState = "92020003", 200, false, "the code's state does not allow this, e.g. it is already activated";
        NotReceived = "92020004", 200, false, "the user has not accepted (received) the code on KooGallery yet";
        NotExist = "92020005", 200, false, "the authorization code does not exist";
        NotActivated = "92020011", 200, false, "the authorization code has not been activated";
        InvalidCodeInBatch = "92020020", 200, false, "the batch contains an invalid authorization code";
        ReqParamInvalid = "95000001", 400, false, "a request field failed the regex, required or length check";
        MethodNotSupported = "95000002", 405, false, "HTTP method not supported";
        ContentTypeNotSupported = "95000003", 415, false, "content type not supported (must be application/json)";
        MessageNotReadable = "95000004", 400, false, "the request body is not valid JSON";
    }
}

code_enum! {
    /// `resultCode` of the order query and the SaaS open APIs (PROTOCOL.md §3.2).
    MktCode {
        Success = "MKT.0000", 200, false, "success";
        InternalError = "MKT.0999", 500, true, "marketplace internal error";
        InputFailure = "MKT.0100", 500, false, "a value is out of range or badly formatted";
        InvalidParameter = "MKT.0101", 400, false, "unknown, extra or missing mandatory parameter";
        RequestParameterError = "MKT.0199", 400, false, "other request parameter error";
        IllegalOperation = "MKT.0150", 401, false, "not allowed, e.g. the order belongs to another seller";
        NoAuthority = "MKT.0151", 401, false, "the credentials are not a seller's";
        IllegalToken = "MKT.0154", 401, false, "authentication failed";
        RateLimited = "MKT.0250", 406, true, "access frequency over the limit; slow down and retry";
        InstanceNotFound = "MKT.9001", 500, false, "instance id not found";
        InvalidUsageEntries = "MKT.9002", 500, false, "invalid usage entries (metering)";
        TooManyUsageRecords = "MKT.9003", 500, false, "more than 100 usage records (metering)";
        UsageTooOld = "MKT.9004", 500, false, "usage record older than 21 days (metering)";
    }
}

code_enum! {
    /// `resultCode` the ISV answers on its production interface (PROTOCOL.md §3.3).
    IsvResultCode {
        Success = "000000", 200, false, "success";
        AuthFailed = "000001", 200, false, "authentication failed: bad signature, stale timestamp or replayed nonce";
        InvalidParams = "000002", 200, false, "invalid request parameters";
        NotFound = "000003", 200, false, "the instance or authorization code does not exist";
        Processing = "000004", 200, false, "accepted; processing asynchronously";
        /// MKT retries on every code but 000000/000004; this one is the transient kind.
        InternalError = "000005", 200, true, "internal error on the ISV side";
        NoResources = "000100", 200, true, "no instance resources available";
        QuotaExhausted = "000900", 200, false, "the effective order has no License quota left";
        OutsideOrderPeriod = "000901", 200, false, "the License must be requested within the order's validity period";
        ExpiryRequired = "000902", 200, false, "a periodic License requires an expiry date";
        FingerprintRequired = "000903", 200, false, "a device fingerprint or hardware id must be supplied";
    }
}

impl IsvResultCode {
    /// Whether MKT counts this answer as delivered (PROTOCOL.md §3.3: anything else is retried).
    #[must_use]
    pub fn is_accepted(self) -> bool {
        matches!(self, Self::Success | Self::Processing)
    }
}

code_enum! {
    /// Errors of the API gateway in front of the MKT open APIs (PROTOCOL.md §3.4).
    ApigCode {
        ApiNotFound = "APIG.0101", 404, false, "the API does not exist or is not published";
        BackendError = "APIG.0103", 502, true, "gateway backend error";
        PluginError = "APIG.0104", 500, true, "gateway plug-in error";
        EnvironmentError = "APIG.0105", 500, true, "gateway environment error";
        OrchestrationError = "APIG.0106", 400, false, "orchestration or parameter error";
        /// Covers bad request, too large, URI too long, backend unavailable and backend timeout;
        /// the HTTP status tells which, and only 502/504 are worth a retry.
        BadRequestOrBackend = "APIG.0201", 400, false, "bad request, body too large, or backend unavailable/timeout";
        IamAuthIncorrect = "APIG.0301", 401, false, "IAM authentication information is incorrect";
        IamNotAuthorised = "APIG.0302", 403, false, "IAM user not authorised";
        AppAuthIncorrect = "APIG.0303", 401, false, "AK/SK signature is wrong or X-Sdk-Date is more than 15 minutes off";
    }
}

impl ApigCode {
    /// Retry decision using the HTTP status too, for the codes that share one number.
    #[must_use]
    pub fn retryable_with_status(self, http_status: u16) -> bool {
        match self {
            Self::BadRequestOrBackend => matches!(http_status, 502..=504),
            _ => self.retryable(),
        }
    }
}

impl LicenseApiCode {
    /// Retry decision using the HTTP status too: `92020001` with 403 is an authentication
    /// failure, with 200/500 an internal error.
    #[must_use]
    pub fn retryable_with_status(self, http_status: u16) -> bool {
        match self {
            Self::InternalError => http_status != 401 && http_status != 403,
            _ => self.retryable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_string() {
        for c in LicenseApiCode::ALL {
            assert_eq!(LicenseApiCode::parse(c.code()), Some(*c));
            assert_eq!(
                serde_json::to_string(c).unwrap(),
                format!("\"{}\"", c.code())
            );
        }
        for c in MktCode::ALL {
            assert_eq!(MktCode::parse(c.code()), Some(*c));
        }
        for c in IsvResultCode::ALL {
            assert_eq!(IsvResultCode::parse(c.code()), Some(*c));
            assert_eq!(c.code().len(), 6);
        }
        for c in ApigCode::ALL {
            assert_eq!(ApigCode::parse(c.code()), Some(*c));
        }
        assert_eq!(LicenseApiCode::ALL.len(), 12);
        assert_eq!(MktCode::ALL.len(), 13);
        assert_eq!(IsvResultCode::ALL.len(), 11);
    }

    #[test]
    fn retry_advice_follows_the_meaning() {
        assert!(MktCode::RateLimited.retryable());
        assert!(!LicenseApiCode::NotExist.retryable());
        assert!(LicenseApiCode::InternalError.retryable_with_status(500));
        assert!(!LicenseApiCode::InternalError.retryable_with_status(403));
        assert!(ApigCode::BadRequestOrBackend.retryable_with_status(504));
        assert!(!ApigCode::BadRequestOrBackend.retryable_with_status(413));
        assert!(IsvResultCode::Processing.is_accepted());
        assert!(!IsvResultCode::InternalError.is_accepted());
        assert_eq!(LicenseApiCode::parse("12345"), None);
        assert!(
            MktCode::RateLimited
                .to_string()
                .contains("MKT.0250 (access frequency")
        );
    }
}
