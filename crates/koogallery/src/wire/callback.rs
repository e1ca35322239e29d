//! Production interfaces, MKT → ISV (PROTOCOL.md §2.3): one POST URL, the JSON field
//! `activity` tells the scenario apart, the answer is `{resultCode, resultMsg, instanceId?}`.
//!
//! [`CallbackRequest`] serialises with its keys sorted alphabetically and no whitespace, the form
//! PROTOCOL.md §5.2 recommends the emulator signs and sends. A receiver must verify the signature
//! over the raw bytes it received (see [`crate::callback_sig`]) *before* parsing them with
//! [`CallbackRequest::parse`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tessera_types::{IsvResultCode, KooTime};

use super::{
    FieldError, FieldRule, is_test_flag, lenient, open_enum, optional, required, test_flag,
};

/// Largest callback body [`CallbackRequest::parse`] reads. The biggest documented body
/// (getLicenseAsync with a 1024-character fingerprint) is well under 2 KiB.
pub const MAX_CALLBACK_BODY: usize = 64 * 1024;

open_enum! {
    /// `scene` of refreshInstance / refreshLicenseCode.
    RefreshScene {
        /// A trial became a purchase.
        TrialToFormal = "TRIAL_TO_FORMAL",
        /// A renewal.
        Renewal = "RENEWAL",
        /// A renewal period was cancelled.
        UnsubscribeRenewalPeriod = "UNSUBSCRIBE_RENEWAL_PERIOD",
        /// A renewal with a change (SaaS docs).
        RenewalChange = "RENEWAL_CHANGE",
    }
}

open_enum! {
    /// `status` of updateInstanceStatus / updateLicenseCodeStatus.
    InstanceStatus {
        /// Suspend use.
        Freeze = "FREEZE",
        /// Resume use.
        Unfreeze = "UNFREEZE",
    }
}

/// Model B `newInstance` (§2.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewInstance {
    /// Order id (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub order_id: String,
    /// Order line id (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub order_line_id: String,
    /// Business id, different on every call including retries (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub business_id: String,
    /// `"1"` for a seller-console test (O, 2).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub test_flag: Option<String>,
}

/// Model B `refreshInstance` (§2.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshInstance {
    /// Why (M, 64).
    pub scene: RefreshScene,
    /// The *new* order (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub order_id: String,
    /// Its line (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub order_line_id: String,
    /// The instance (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub instance_id: String,
    /// Sent when the period type changes (O, 64).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub product_id: Option<String>,
    /// The new expiry (M): 14 or 17 digits on the wire, written back as 14.
    pub expire_time: KooTime,
    /// `"1"` for a seller-console test (O, 2).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub test_flag: Option<String>,
}

/// Model B `updateInstanceStatus` (§2.3.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateInstanceStatus {
    /// The instance (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub instance_id: String,
    /// `FREEZE` or `UNFREEZE` (M, 32).
    pub status: InstanceStatus,
    /// `"1"` for a seller-console test (O, 2).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub test_flag: Option<String>,
}

/// Model B `releaseInstance` (§2.3.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseInstance {
    /// The instance (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub instance_id: String,
    /// The unsubscribe order, when that caused the release (O, 64).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub order_id: Option<String>,
    /// Its line (O, 64).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub order_line_id: Option<String>,
    /// `"1"` for a seller-console test (O, 2).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub test_flag: Option<String>,
}

/// Model B `getLicenseAsync` (§2.3.5). Times travel as `yyyy-MM-dd HH:mm:ss z`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetLicenseAsync {
    /// The instance (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub instance_id: String,
    /// License start (M, 32).
    #[serde(with = "tessera_types::time::spaced")]
    pub effective_time: KooTime,
    /// License end (O, 32; required for periodic products, else `000902`).
    #[serde(
        default,
        with = "tessera_types::time::spaced::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expire_time: Option<KooTime>,
    /// The business serial number, reused for the upload (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub event_id: String,
    /// The device fingerprint (O, 1024; missing → `000903`).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_fingerprint: Option<String>,
    /// `"1"` for a seller-console test (O, 2).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub test_flag: Option<String>,
}

/// Model A `refreshLicenseCode` (§2.3.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshLicenseCode {
    /// `RENEWAL` or `UNSUBSCRIBE_RENEWAL_PERIOD` (M, 64).
    pub scene: RefreshScene,
    /// The *new* order (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub order_id: String,
    /// Its line (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub order_line_id: String,
    /// The authorization code (M, 64).
    pub license: String,
    /// Sent when the period type changed (O, 64).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub product_id: Option<String>,
    /// The new expiry (M, `yyyyMMddHHmmss`).
    pub expire_time: KooTime,
    /// `"1"` for a seller-console test (O, 2).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub test_flag: Option<String>,
}

/// Model A `updateLicenseCodeStatus` (§2.3.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateLicenseCodeStatus {
    /// The authorization code (M, 64).
    pub license: String,
    /// `FREEZE` or `UNFREEZE` (M, 32).
    pub status: InstanceStatus,
    /// `"1"` for a seller-console test (O, 2).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub test_flag: Option<String>,
}

/// Model A `releaseLicenseCode` (§2.3.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseLicenseCode {
    /// The authorization code (M, 64).
    pub license: String,
    /// The unsubscribe order (O, 64).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub order_id: Option<String>,
    /// Its line (O, 64).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub order_line_id: Option<String>,
    /// `"1"` for a seller-console test (O, 2).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub test_flag: Option<String>,
}

/// One production-interface call, by `activity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackRequest {
    /// `newInstance`.
    NewInstance(NewInstance),
    /// `refreshInstance`.
    RefreshInstance(RefreshInstance),
    /// `updateInstanceStatus`.
    UpdateInstanceStatus(UpdateInstanceStatus),
    /// `releaseInstance`.
    ReleaseInstance(ReleaseInstance),
    /// `getLicenseAsync`.
    GetLicenseAsync(GetLicenseAsync),
    /// `refreshLicenseCode`.
    RefreshLicenseCode(RefreshLicenseCode),
    /// `updateLicenseCodeStatus`.
    UpdateLicenseCodeStatus(UpdateLicenseCodeStatus),
    /// `releaseLicenseCode`.
    ReleaseLicenseCode(ReleaseLicenseCode),
}

/// Why a callback body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CallbackParseError {
    /// The body is larger than [`MAX_CALLBACK_BODY`].
    #[error("callback body has {0} bytes, more than the {MAX_CALLBACK_BODY} accepted")]
    TooLarge(usize),
    /// The body is not a JSON object.
    #[error("callback body is not a JSON object")]
    NotJson(#[source] serde_json::Error),
    /// There is no string `activity` field.
    #[error("callback body has no string `activity` field")]
    MissingActivity,
    /// `activity` names a scenario this build does not handle.
    #[error("callback activity {0:?} is not one this ISV handles")]
    UnknownActivity(String),
    /// The activity is known but its fields do not fit it.
    #[error("callback {activity} has missing or malformed fields")]
    Malformed {
        /// The activity.
        activity: &'static str,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
}

impl CallbackParseError {
    /// The answer code PROTOCOL.md §3.3 gives this failure (`000002`, invalid parameters).
    #[must_use]
    pub fn result_code(&self) -> IsvResultCode {
        IsvResultCode::InvalidParams
    }
}

impl CallbackRequest {
    /// Every activity name, in PROTOCOL.md order.
    pub const ACTIVITIES: [&'static str; 8] = [
        "newInstance",
        "refreshInstance",
        "updateInstanceStatus",
        "releaseInstance",
        "getLicenseAsync",
        "refreshLicenseCode",
        "updateLicenseCodeStatus",
        "releaseLicenseCode",
    ];

    /// The `activity` value of this call.
    #[must_use]
    pub fn activity(&self) -> &'static str {
        match self {
            Self::NewInstance(_) => Self::ACTIVITIES[0],
            Self::RefreshInstance(_) => Self::ACTIVITIES[1],
            Self::UpdateInstanceStatus(_) => Self::ACTIVITIES[2],
            Self::ReleaseInstance(_) => Self::ACTIVITIES[3],
            Self::GetLicenseAsync(_) => Self::ACTIVITIES[4],
            Self::RefreshLicenseCode(_) => Self::ACTIVITIES[5],
            Self::UpdateLicenseCodeStatus(_) => Self::ACTIVITIES[6],
            Self::ReleaseLicenseCode(_) => Self::ACTIVITIES[7],
        }
    }

    /// The `testFlag` value, if any.
    #[must_use]
    pub fn test_flag(&self) -> Option<&str> {
        match self {
            Self::NewInstance(r) => r.test_flag.as_deref(),
            Self::RefreshInstance(r) => r.test_flag.as_deref(),
            Self::UpdateInstanceStatus(r) => r.test_flag.as_deref(),
            Self::ReleaseInstance(r) => r.test_flag.as_deref(),
            Self::GetLicenseAsync(r) => r.test_flag.as_deref(),
            Self::RefreshLicenseCode(r) => r.test_flag.as_deref(),
            Self::UpdateLicenseCodeStatus(r) => r.test_flag.as_deref(),
            Self::ReleaseLicenseCode(r) => r.test_flag.as_deref(),
        }
    }

    /// Whether this is a seller-console debugging call (`testFlag` = `"1"`).
    #[must_use]
    pub fn is_test(&self) -> bool {
        is_test_flag(self.test_flag())
    }

    /// Reads a callback from the raw body bytes.
    ///
    /// # Errors
    /// Too large, not JSON, no `activity`, an unknown `activity`, or fields that do not fit it —
    /// each a distinct [`CallbackParseError`].
    pub fn parse(body: &[u8]) -> Result<Self, CallbackParseError> {
        if body.len() > MAX_CALLBACK_BODY {
            return Err(CallbackParseError::TooLarge(body.len()));
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(CallbackParseError::NotJson)?;
        Self::from_value(value)
    }

    fn from_value(value: serde_json::Value) -> Result<Self, CallbackParseError> {
        let activity = value
            .get("activity")
            .and_then(serde_json::Value::as_str)
            .ok_or(CallbackParseError::MissingActivity)?;
        let Some(&name) = Self::ACTIVITIES.iter().find(|a| **a == activity) else {
            let shown: String = activity.chars().take(64).collect();
            return Err(CallbackParseError::UnknownActivity(shown));
        };
        let malformed = |source| CallbackParseError::Malformed {
            activity: name,
            source,
        };
        fn typed<T: serde::de::DeserializeOwned>(
            v: serde_json::Value,
        ) -> Result<T, serde_json::Error> {
            serde_json::from_value(v)
        }
        Ok(match name {
            "newInstance" => Self::NewInstance(typed(value).map_err(malformed)?),
            "refreshInstance" => Self::RefreshInstance(typed(value).map_err(malformed)?),
            "updateInstanceStatus" => Self::UpdateInstanceStatus(typed(value).map_err(malformed)?),
            "releaseInstance" => Self::ReleaseInstance(typed(value).map_err(malformed)?),
            "getLicenseAsync" => Self::GetLicenseAsync(typed(value).map_err(malformed)?),
            "refreshLicenseCode" => Self::RefreshLicenseCode(typed(value).map_err(malformed)?),
            "updateLicenseCodeStatus" => {
                Self::UpdateLicenseCodeStatus(typed(value).map_err(malformed)?)
            }
            _ => Self::ReleaseLicenseCode(typed(value).map_err(malformed)?),
        })
    }

    /// The body to send: compact JSON with keys sorted alphabetically (PROTOCOL.md §5.2).
    ///
    /// # Panics
    /// Never: every callback struct serialises to a JSON object.
    #[must_use]
    pub fn to_body(&self) -> Vec<u8> {
        super::to_sorted_json(self).expect("callback requests always serialise")
    }

    fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        let mut v = match self {
            Self::NewInstance(r) => serde_json::to_value(r),
            Self::RefreshInstance(r) => serde_json::to_value(r),
            Self::UpdateInstanceStatus(r) => serde_json::to_value(r),
            Self::ReleaseInstance(r) => serde_json::to_value(r),
            Self::GetLicenseAsync(r) => serde_json::to_value(r),
            Self::RefreshLicenseCode(r) => serde_json::to_value(r),
            Self::UpdateLicenseCodeStatus(r) => serde_json::to_value(r),
            Self::ReleaseLicenseCode(r) => serde_json::to_value(r),
        }?;
        if let Some(map) = v.as_object_mut() {
            map.insert("activity".to_owned(), self.activity().into());
        }
        Ok(v)
    }

    /// Checks the documented mandatory fields and lengths of the call.
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        test_flag(self.test_flag())?;
        match self {
            Self::NewInstance(r) => {
                required("orderId", &r.order_id, 64)?;
                required("orderLineId", &r.order_line_id, 64)?;
                required("businessId", &r.business_id, 64)
            }
            Self::RefreshInstance(r) => {
                required("scene", r.scene.as_str(), 64)?;
                required("orderId", &r.order_id, 64)?;
                required("orderLineId", &r.order_line_id, 64)?;
                required("instanceId", &r.instance_id, 64)?;
                optional("productId", r.product_id.as_deref(), 64)
            }
            Self::UpdateInstanceStatus(r) => {
                required("instanceId", &r.instance_id, 64)?;
                known_status(&r.status)
            }
            Self::ReleaseInstance(r) => {
                required("instanceId", &r.instance_id, 64)?;
                optional("orderId", r.order_id.as_deref(), 64)?;
                optional("orderLineId", r.order_line_id.as_deref(), 64)
            }
            Self::GetLicenseAsync(r) => {
                required("instanceId", &r.instance_id, 64)?;
                required("eventId", &r.event_id, 64)?;
                optional("deviceFingerprint", r.device_fingerprint.as_deref(), 1024)
            }
            Self::RefreshLicenseCode(r) => {
                required("scene", r.scene.as_str(), 64)?;
                required("orderId", &r.order_id, 64)?;
                required("orderLineId", &r.order_line_id, 64)?;
                required("license", &r.license, 64)?;
                optional("productId", r.product_id.as_deref(), 64)
            }
            Self::UpdateLicenseCodeStatus(r) => {
                required("license", &r.license, 64)?;
                known_status(&r.status)
            }
            Self::ReleaseLicenseCode(r) => {
                required("license", &r.license, 64)?;
                optional("orderId", r.order_id.as_deref(), 64)?;
                optional("orderLineId", r.order_line_id.as_deref(), 64)
            }
        }
    }
}

fn known_status(status: &InstanceStatus) -> Result<(), FieldError> {
    if status.is_known() {
        Ok(())
    } else {
        Err(FieldError::new(
            "status",
            FieldRule::Invalid("must be FREEZE or UNFREEZE"),
        ))
    }
}

/// Writes the call as one JSON object with `activity` and keys sorted alphabetically.
impl Serialize for CallbackRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.to_value().map_err(serde::ser::Error::custom)?;
        super::Sorted(&v).serialize(s)
    }
}

impl<'de> Deserialize<'de> for CallbackRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Self::from_value(v).map_err(|e| match e {
            CallbackParseError::Malformed { activity, source } => {
                serde::de::Error::custom(format!("callback {activity}: {source}"))
            }
            other => serde::de::Error::custom(other),
        })
    }
}

/// The ISV's answer on the production interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackResponse {
    /// A 6-character code (PROTOCOL.md §3.3), kept as received.
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub result_code: String,
    /// A message (O, ≤ 255).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub result_msg: Option<String>,
    /// The instance id newInstance returns (M there, 64).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_id: Option<String>,
}

impl CallbackResponse {
    /// An answer with `code` and its documented meaning as the message.
    #[must_use]
    pub fn new(code: IsvResultCode) -> Self {
        Self {
            result_code: code.code().to_owned(),
            result_msg: Some(code.meaning().to_owned()),
            instance_id: None,
        }
    }

    /// The same answer with `instanceId` set (newInstance).
    #[must_use]
    pub fn with_instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_id = Some(instance_id.into());
        self
    }

    /// The code, or `None` when this build does not know it.
    #[must_use]
    pub fn code(&self) -> Option<IsvResultCode> {
        IsvResultCode::parse(&self.result_code)
    }

    /// Whether MKT counts this answer as delivered (`000000` or `000004`).
    #[must_use]
    pub fn is_accepted(&self) -> bool {
        self.code().is_some_and(IsvResultCode::is_accepted)
    }

    /// Checks `resultCode` (6 characters), `resultMsg` (≤ 255) and `instanceId` (≤ 64).
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        required("resultCode", &self.result_code, 6)?;
        if self.result_code.chars().count() != 6 {
            return Err(FieldError::new(
                "resultCode",
                FieldRule::Invalid("must be exactly 6 characters"),
            ));
        }
        optional("resultMsg", self.result_msg.as_deref(), 255)?;
        optional("instanceId", self.instance_id.as_deref(), 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW_INSTANCE: &str = r#"{"activity":"newInstance","businessId":"b-0001","orderId":"MOCKPERIODYEARNEW","orderLineId":"MOCKPERIODYEARNEW-000001","testFlag":"1"}"#;

    #[test]
    fn serialises_sorted_and_compact_matching_the_signed_vector_body() {
        let req = CallbackRequest::NewInstance(NewInstance {
            order_id: "MOCKPERIODYEARNEW".into(),
            order_line_id: "MOCKPERIODYEARNEW-000001".into(),
            business_id: "b-0001".into(),
            test_flag: Some("1".into()),
        });
        assert_eq!(String::from_utf8(req.to_body()).unwrap(), NEW_INSTANCE);
        assert_eq!(serde_json::to_string(&req).unwrap(), NEW_INSTANCE);
        assert_eq!(
            CallbackRequest::parse(NEW_INSTANCE.as_bytes()).unwrap(),
            req
        );
        assert!(req.is_test());
    }

    #[test]
    fn every_activity_round_trips_with_sorted_keys() {
        let t = KooTime::parse("20231027103015").unwrap();
        let all = vec![
            CallbackRequest::NewInstance(NewInstance {
                order_id: "o".into(),
                order_line_id: "l".into(),
                business_id: "b".into(),
                test_flag: None,
            }),
            CallbackRequest::RefreshInstance(RefreshInstance {
                scene: RefreshScene::Renewal,
                order_id: "o".into(),
                order_line_id: "l".into(),
                instance_id: "i".into(),
                product_id: Some("p".into()),
                expire_time: t,
                test_flag: Some("0".into()),
            }),
            CallbackRequest::UpdateInstanceStatus(UpdateInstanceStatus {
                instance_id: "i".into(),
                status: InstanceStatus::Freeze,
                test_flag: None,
            }),
            CallbackRequest::ReleaseInstance(ReleaseInstance {
                instance_id: "i".into(),
                order_id: None,
                order_line_id: None,
                test_flag: None,
            }),
            CallbackRequest::GetLicenseAsync(GetLicenseAsync {
                instance_id: "i".into(),
                effective_time: t,
                expire_time: Some(t),
                event_id: "e".into(),
                device_fingerprint: Some("04:7C:16:5E:E3:5D|A||B".into()),
                test_flag: Some("0".into()),
            }),
            CallbackRequest::RefreshLicenseCode(RefreshLicenseCode {
                scene: RefreshScene::UnsubscribeRenewalPeriod,
                order_id: "o".into(),
                order_line_id: "l".into(),
                license: "PL".into(),
                product_id: None,
                expire_time: t,
                test_flag: None,
            }),
            CallbackRequest::UpdateLicenseCodeStatus(UpdateLicenseCodeStatus {
                license: "PL".into(),
                status: InstanceStatus::Unfreeze,
                test_flag: None,
            }),
            CallbackRequest::ReleaseLicenseCode(ReleaseLicenseCode {
                license: "PL".into(),
                order_id: Some("o".into()),
                order_line_id: Some("l".into()),
                test_flag: None,
            }),
        ];
        for req in all {
            req.validate().unwrap();
            let body = req.to_body();
            let text = std::str::from_utf8(&body).unwrap();
            assert!(!text.contains(' ') || text.contains("10:30:15 z"), "{text}");
            let keys: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
                .unwrap()
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            let mut sorted = keys.clone();
            sorted.sort();
            // serde_json's default map is sorted anyway; check the text order itself.
            let positions: Vec<usize> = sorted
                .iter()
                .map(|k| text.find(&format!("\"{k}\":")).unwrap())
                .collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
            assert_eq!(CallbackRequest::parse(&body).unwrap(), req, "{text}");
        }
    }

    #[test]
    fn get_license_async_reads_the_documented_spaced_times() {
        let body = r#"{"activity":"getLicenseAsync","instanceId":"inst","effectiveTime":"2023-10-27 10:30:15 z","expireTime":"2024-10-27 10:30:15 z","eventId":"ev","deviceFingerprint":"04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.||BFEBFBFF00090672","testFlag":"0"}"#;
        let CallbackRequest::GetLicenseAsync(r) = CallbackRequest::parse(body.as_bytes()).unwrap()
        else {
            panic!("wrong activity");
        };
        assert_eq!(r.effective_time, KooTime::parse("20231027103015").unwrap());
        assert_eq!(
            r.expire_time.unwrap(),
            KooTime::parse("20241027103015").unwrap()
        );
        let out = String::from_utf8(CallbackRequest::GetLicenseAsync(r).to_body()).unwrap();
        assert!(
            out.contains(r#""effectiveTime":"2023-10-27 10:30:15 z""#),
            "{out}"
        );
    }

    #[test]
    fn refresh_instance_accepts_17_digit_expiry() {
        let body = r#"{"activity":"refreshInstance","scene":"RENEWAL","orderId":"o","orderLineId":"l","instanceId":"i","expireTime":"20221124023618256"}"#;
        let CallbackRequest::RefreshInstance(r) = CallbackRequest::parse(body.as_bytes()).unwrap()
        else {
            panic!("wrong activity");
        };
        assert_eq!(r.expire_time.unix_millis() % 1000, 256);
    }

    #[test]
    fn parse_errors_tell_unknown_activity_from_malformed() {
        assert!(matches!(
            CallbackRequest::parse(br#"{"activity":"getLicense"}"#),
            Err(CallbackParseError::UnknownActivity(a)) if a == "getLicense"
        ));
        assert!(matches!(
            CallbackRequest::parse(br#"{"activity":"newInstance","orderId":"o"}"#),
            Err(CallbackParseError::Malformed {
                activity: "newInstance",
                ..
            })
        ));
        assert!(matches!(
            CallbackRequest::parse(br#"{"orderId":"o"}"#),
            Err(CallbackParseError::MissingActivity)
        ));
        assert!(matches!(
            CallbackRequest::parse(b"not json"),
            Err(CallbackParseError::NotJson(_))
        ));
        let big = vec![b' '; MAX_CALLBACK_BODY + 1];
        assert!(matches!(
            CallbackRequest::parse(&big),
            Err(CallbackParseError::TooLarge(_))
        ));
        let bad_time = br#"{"activity":"getLicenseAsync","instanceId":"i","effectiveTime":"someday","eventId":"e"}"#;
        let err = CallbackRequest::parse(bad_time).unwrap_err();
        assert_eq!(err.result_code(), IsvResultCode::InvalidParams);
    }

    #[test]
    fn validation_names_the_field() {
        let req = CallbackRequest::UpdateInstanceStatus(UpdateInstanceStatus {
            instance_id: "i".into(),
            status: InstanceStatus::Other("PAUSE".into()),
            test_flag: None,
        });
        assert_eq!(req.validate().unwrap_err().field, "status");
        let req = CallbackRequest::NewInstance(NewInstance {
            order_id: "o".repeat(65),
            order_line_id: "l".into(),
            business_id: "b".into(),
            test_flag: Some("123".into()),
        });
        assert_eq!(req.validate().unwrap_err().field, "testFlag");
    }

    #[test]
    fn response_carries_instance_id_and_checks_code_length() {
        let r = CallbackResponse::new(IsvResultCode::Success).with_instance_id("4ef28f");
        r.validate().unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""resultCode":"000000""#));
        assert!(json.contains(r#""instanceId":"4ef28f""#));
        let back: CallbackResponse = serde_json::from_str(&json).unwrap();
        assert!(back.is_accepted());
        let bad = CallbackResponse {
            result_code: "0".into(),
            result_msg: None,
            instance_id: None,
        };
        assert_eq!(bad.validate().unwrap_err().field, "resultCode");
        let parsed: CallbackResponse = serde_json::from_str(r#"{"resultCode":"000005"}"#).unwrap();
        assert!(!parsed.is_accepted());
    }
}
