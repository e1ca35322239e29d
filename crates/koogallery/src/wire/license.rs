//! Model A License open APIs (PROTOCOL.md §2.1): activate, heartbeat, software-usage-info, and
//! the `{error_code, error_msg, data}` envelope they share with the market-event upload.

use serde::{Deserialize, Deserializer, Serialize};
use tessera_types::{KooTime, LicenseApiCode};

use super::{FieldError, FieldRule, MAX_BATCH, item_count, lenient, open_enum, optional, required};

/// Longest authorization code (`license`, 64 characters).
pub const MAX_LICENSE_CODE: usize = 64;
/// Longest `license_code_info` string.
pub const MAX_LICENSE_CODE_INFO: usize = 1024;
/// Largest `active_num` (9 digits).
pub const MAX_ACTIVE_NUM: u64 = 999_999_999;

/// The envelope of every License open API answer: `{error_code, error_msg, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseApiResponse<T> {
    /// The result code (PROTOCOL.md §3.1), kept as received so unknown codes can be reported.
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub error_code: String,
    /// The marketplace's message.
    #[serde(default, deserialize_with = "lenient::nullable_string::deserialize")]
    pub error_msg: String,
    /// The payload, present on success for the APIs that have one.
    #[serde(default = "no_data", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

// A path default rather than `#[serde(default)]`, which would demand `T: Default`.
fn no_data<T>() -> Option<T> {
    None
}

impl<T> LicenseApiResponse<T> {
    /// A success answer (`92020000`, "success") carrying `data`.
    pub fn success(data: Option<T>) -> Self {
        Self {
            error_code: LicenseApiCode::Success.code().to_owned(),
            error_msg: "success".to_owned(),
            data,
        }
    }

    /// An error answer with the documented message for `code`.
    #[must_use]
    pub fn error(code: LicenseApiCode) -> Self {
        Self {
            error_code: code.code().to_owned(),
            error_msg: code.meaning().to_owned(),
            data: None,
        }
    }

    /// The result code, or `None` when this build does not know it.
    #[must_use]
    pub fn code(&self) -> Option<LicenseApiCode> {
        LicenseApiCode::parse(&self.error_code)
    }

    /// Whether the call succeeded (`92020000`).
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.code() == Some(LicenseApiCode::Success)
    }

    /// Checks the documented lengths: `error_code` ≤ 16, `error_msg` ≤ 1024.
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        required("error_code", &self.error_code, 16)?;
        super::max_len("error_msg", &self.error_msg, 1024)
    }
}

open_enum! {
    /// The state of an authorization code (`status`). `FREEZE` is not in the heartbeat table but
    /// the code can be frozen (§2.3.7), so it is named rather than left to `Other`.
    CodeStatus {
        /// Usable.
        Alive = "ALIVE",
        /// Past its expiry.
        Expired = "EXPIRED",
        /// Released: unsubscribed or returned.
        Released = "RELEASED",
        /// Frozen by the marketplace.
        Freeze = "FREEZE",
    }
}

/// Activate one code, v1 (`POST …/v1/license/activate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateRequest {
    /// The authorization code (M, 64).
    pub license: String,
    /// When the License takes effect (O, `yyyyMMddHHmmss`).
    #[serde(
        default,
        with = "tessera_types::time::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub real_effect_time: Option<KooTime>,
}

impl ActivateRequest {
    /// Checks `license` (mandatory, ≤ 64).
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        required("license", &self.license, MAX_LICENSE_CODE)
    }
}

/// Activate up to 100 codes, v2 (`POST …/v2/license/activate`). The answer has no `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateBatchRequest {
    /// The codes (M, 1–100 items of ≤ 64).
    pub license_list: Vec<String>,
    /// When the Licenses take effect (O).
    #[serde(
        default,
        with = "tessera_types::time::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub real_effect_time: Option<KooTime>,
}

impl ActivateBatchRequest {
    /// Checks the list (1–100 items) and every code (mandatory, ≤ 64).
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_code_list("license_list", &self.license_list)
    }
}

fn validate_code_list(field: &str, codes: &[String]) -> Result<(), FieldError> {
    item_count(field, codes.len(), 1, MAX_BATCH)?;
    for (i, code) in codes.iter().enumerate() {
        required(&format!("{field}[{i}]"), code, MAX_LICENSE_CODE)?;
    }
    Ok(())
}

/// `data` of a successful v1 activation: `license_code_info` is JSON *encoded in a string*.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivateData {
    /// The JSON text of a [`LicenseCodeInfo`], as received.
    pub license_code_info: String,
}

impl ActivateData {
    /// Encodes `info` into the string form the marketplace sends.
    ///
    /// # Panics
    /// Never: a `LicenseCodeInfo` always serialises.
    #[must_use]
    pub fn from_info(info: &LicenseCodeInfo) -> Self {
        Self {
            license_code_info: serde_json::to_string(info)
                .expect("LicenseCodeInfo has only string keys and plain values"),
        }
    }

    /// Decodes the inner JSON.
    ///
    /// # Errors
    /// When the string is not a JSON `LicenseCodeInfo`.
    pub fn info(&self) -> Result<LicenseCodeInfo, serde_json::Error> {
        serde_json::from_str(&self.license_code_info)
    }

    /// Checks `license_code_info` (mandatory, ≤ 1024).
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        required(
            "data.license_code_info",
            &self.license_code_info,
            MAX_LICENSE_CODE_INFO,
        )
    }
}

impl<'de> Deserialize<'de> for ActivateData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            license_code_info: serde_json::Value,
        }
        let raw = Raw::deserialize(d)?;
        // Documented as a string; an object is accepted too in case a gateway "fixes" it.
        let license_code_info = match raw.license_code_info {
            serde_json::Value::String(s) => s,
            v @ serde_json::Value::Object(_) => v.to_string(),
            _ => {
                return Err(serde::de::Error::custom(
                    "license_code_info must be a JSON string (or object)",
                ));
            }
        };
        Ok(Self { license_code_info })
    }
}

/// The decoded `license_code_info` of an activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseCodeInfo {
    /// `ALIVE` after a successful activation.
    pub status: CodeStatus,
    /// The expected expiry (an estimate, says the documentation).
    #[serde(
        default,
        with = "tessera_types::time::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub expire_time: Option<KooTime>,
    /// The product the code belongs to.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub product_id: Option<String>,
    /// The order the code was bought with.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub order_id: Option<String>,
    /// The quantity-type pricing attribute (e.g. seats).
    #[serde(
        default,
        with = "lenient::opt_uint",
        skip_serializing_if = "Option::is_none"
    )]
    pub amount: Option<u64>,
}

/// Query one code / heartbeat, v1 (`POST …/v1/license/heartbeat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// The authorization code (M, 64).
    pub license: String,
    /// Retired usage report; still validated by the marketplace when present.
    #[serde(
        default,
        rename = "heartbeatInfo",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat_info: Option<HeartbeatInfo>,
}

/// The retired `heartbeatInfo` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatInfo {
    /// The end user's id inside the software (M, 256).
    #[serde(rename = "thirdPartyAccount")]
    pub third_party_account: String,
    /// The client's login IP (O, 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

impl HeartbeatRequest {
    /// Checks `license` and, when present, `heartbeatInfo`.
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        required("license", &self.license, MAX_LICENSE_CODE)?;
        if let Some(info) = &self.heartbeat_info {
            required(
                "heartbeatInfo.thirdPartyAccount",
                &info.third_party_account,
                256,
            )?;
            optional("heartbeatInfo.ip", info.ip.as_deref(), 32)?;
        }
        Ok(())
    }
}

/// Query up to 100 codes, v2 (`POST …/v2/license/heartbeat`).
///
/// The v2 schema was not captured (PROTOCOL.md §2.1.2, §6 gap 1). By analogy with activate v2
/// this crate uses `{"license_list":[…]}` (≤ 100) and expects [`HeartbeatBatchData`] back; the
/// emulator implements the same shape, so the choice is made in exactly one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatBatchRequest {
    /// The codes (1–100 items of ≤ 64).
    pub license_list: Vec<String>,
}

impl HeartbeatBatchRequest {
    /// Checks the list (1–100 items) and every code (mandatory, ≤ 64).
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_code_list("license_list", &self.license_list)
    }
}

/// The state of one code as the heartbeat reports it. The object is documented as extensible,
/// so fields this build does not name are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseInfo {
    /// The code (M, 64).
    pub license_code: String,
    /// `ALIVE`, `EXPIRED` or `RELEASED` (M, 10).
    pub status: CodeStatus,
    /// When the code was activated. Its format was not captured; an unreadable value is dropped.
    #[serde(
        default,
        with = "lenient::best_effort_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub activate_time: Option<KooTime>,
    /// [INFER] The code's expiry, when the marketplace sends it.
    #[serde(
        default,
        with = "lenient::best_effort_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub expire_time: Option<KooTime>,
    /// [INFER] The product, when the marketplace sends it.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub product_id: Option<String>,
    /// Every other field, as received.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl LicenseInfo {
    /// Checks `license_code` (mandatory, ≤ 64) and that `status` is a known value (≤ 10).
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        required("license_code", &self.license_code, MAX_LICENSE_CODE)?;
        required("status", self.status.as_str(), 10)
    }
}

/// `data` of a v2 heartbeat (see [`HeartbeatBatchRequest`] for the inferred shape).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HeartbeatBatchData {
    /// One entry per code the marketplace knows.
    #[serde(default)]
    pub license_info_list: Vec<LicenseInfo>,
}

/// Software usage statistics (`POST …/v2/license/software-usage-info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageInfoRequest {
    /// One entry per code (M, 1–100).
    pub usage_info: Vec<UsageEntry>,
}

/// The usage of one code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    /// The code (M, 64).
    pub license: String,
    /// The usage lines (M, 1–100). The wire key really is `software_usage_Info`.
    #[serde(rename = "software_usage_Info", alias = "software_usage_info")]
    pub software_usage_info: Vec<SoftwareUsage>,
}

/// One usage line: exactly one of a login id or a daily active count.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SoftwareUsage {
    /// A login id: an account or a device code (≤ 256).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<String>,
    /// The daily active count (≤ 9 digits).
    #[serde(
        default,
        with = "lenient::opt_uint",
        skip_serializing_if = "Option::is_none"
    )]
    pub active_num: Option<u64>,
}

impl SoftwareUsage {
    /// A line reporting one login id.
    #[must_use]
    pub fn login(id: impl Into<String>) -> Self {
        Self {
            id: Some(id.into()),
            active_num: None,
        }
    }

    /// A line reporting a daily active count.
    #[must_use]
    pub fn active_count(n: u64) -> Self {
        Self {
            id: None,
            active_num: Some(n),
        }
    }
}

impl UsageInfoRequest {
    /// Checks the list sizes, every code, and that each line carries exactly one of `id` and
    /// `active_num` within its limit.
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        item_count("usage_info", self.usage_info.len(), 1, MAX_BATCH)?;
        for (i, entry) in self.usage_info.iter().enumerate() {
            required(
                &format!("usage_info[{i}].license"),
                &entry.license,
                MAX_LICENSE_CODE,
            )?;
            let lines = format!("usage_info[{i}].software_usage_Info");
            item_count(&lines, entry.software_usage_info.len(), 1, MAX_BATCH)?;
            for (j, line) in entry.software_usage_info.iter().enumerate() {
                let at = format!("{lines}[{j}]");
                match (&line.id, line.active_num) {
                    (Some(id), None) => required(&format!("{at}.id"), id, 256)?,
                    (None, Some(n)) if n > MAX_ACTIVE_NUM => {
                        return Err(FieldError::new(
                            format!("{at}.active_num"),
                            FieldRule::Invalid("more than 9 digits"),
                        ));
                    }
                    (None, Some(_)) => {}
                    _ => {
                        return Err(FieldError::new(
                            at,
                            FieldRule::ExactlyOneOf("id", "active_num"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `data` of a usage report: a list of failed items under a `check_fail_…` key whose exact name
/// and shape were not captured (PROTOCOL.md §6 gap 2), so every field is kept as raw JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UsageData {
    /// Every field of `data`, as received.
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl UsageData {
    /// The `check_fail_*` fields, as received.
    pub fn check_failures(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.fields
            .iter()
            .filter(|(k, _)| k.starts_with("check_fail"))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// Whether any `check_fail_*` field reports something (a non-empty list or object, or any
    /// other non-null value).
    #[must_use]
    pub fn has_failures(&self) -> bool {
        self.check_failures().any(|(_, v)| match v {
            serde_json::Value::Null => false,
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(o) => !o.is_empty(),
            _ => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_answer_decodes_the_documented_example() {
        let body = r#"{"error_code":"92020000","error_msg":"success",
 "data":{"license_code_info":"{\"status\":\"ALIVE\",\"expire_time\":\"20230726121646\",\"product_id\":\"12345\",\"amount\":2,\"order_id\":\"CS123\"}"}}"#;
        let r: LicenseApiResponse<ActivateData> = serde_json::from_str(body).unwrap();
        assert!(r.is_success());
        let info = r.data.unwrap().info().unwrap();
        assert_eq!(info.status, CodeStatus::Alive);
        assert_eq!(info.amount, Some(2));
        assert_eq!(info.order_id.as_deref(), Some("CS123"));
        assert_eq!(
            info.expire_time.unwrap(),
            KooTime::parse("20230726121646").unwrap()
        );
    }

    #[test]
    fn activate_data_round_trips_through_its_string_form() {
        let info = LicenseCodeInfo {
            status: CodeStatus::Alive,
            expire_time: Some(KooTime::parse("20270101000000").unwrap()),
            product_id: Some("p-1".into()),
            order_id: None,
            amount: Some(5),
        };
        let data = ActivateData::from_info(&info);
        let json = serde_json::to_string(&LicenseApiResponse::success(Some(data))).unwrap();
        // The inner object travels as an escaped string, not as an object.
        assert!(json.contains(r#""license_code_info":"{\"status\":\"ALIVE\""#));
        let back: LicenseApiResponse<ActivateData> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.data.unwrap().info().unwrap(), info);
        // Tolerated: an object where a string is documented, and quantities as strings.
        let obj: ActivateData = serde_json::from_str(
            r#"{"license_code_info":{"status":"alive","amount":"3","product_id":7}}"#,
        )
        .unwrap();
        let info = obj.info().unwrap();
        assert_eq!(info.status, CodeStatus::Alive);
        assert_eq!(info.amount, Some(3));
        assert_eq!(info.product_id.as_deref(), Some("7"));
    }

    #[test]
    fn heartbeat_info_keeps_unknown_fields_and_tolerates_new_statuses() {
        let r: LicenseApiResponse<LicenseInfo> = serde_json::from_str(
            r#"{"error_code":"92020000","error_msg":null,"data":{"license_code":"PL1","status":"HIBERNATING",
                "activate_time":"2024-01-02 03:04:05","expire_time":"not a time","new_field":{"a":1}}}"#,
        )
        .unwrap();
        assert_eq!(r.error_msg, "");
        let d = r.data.unwrap();
        assert_eq!(d.status, CodeStatus::Other("HIBERNATING".into()));
        assert_eq!(
            d.activate_time.unwrap(),
            KooTime::parse("20240102030405").unwrap()
        );
        assert_eq!(d.expire_time, None);
        assert_eq!(d.extra["new_field"]["a"], 1);
        let again = serde_json::to_value(&d).unwrap();
        assert_eq!(again["new_field"]["a"], 1);
        assert_eq!(again["activate_time"], "20240102030405");
    }

    #[test]
    fn batch_heartbeat_uses_the_inferred_list_shapes() {
        let req = HeartbeatBatchRequest {
            license_list: vec!["PL1".into(), "PL2".into()],
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"license_list":["PL1","PL2"]}"#
        );
        let data: HeartbeatBatchData = serde_json::from_str(
            r#"{"license_info_list":[{"license_code":"PL1","status":"ALIVE"},{"license_code":"PL2","status":"RELEASED"}]}"#,
        )
        .unwrap();
        assert_eq!(data.license_info_list[1].status, CodeStatus::Released);
        let too_many = HeartbeatBatchRequest {
            license_list: (0..101).map(|i| format!("PL{i}")).collect(),
        };
        let err = too_many.validate().unwrap_err();
        assert_eq!(err.field, "license_list");
        assert!(matches!(err.rule, FieldRule::ItemCount { actual: 101, .. }));
        let empty_code = HeartbeatBatchRequest {
            license_list: vec!["PL1".into(), String::new()],
        };
        assert_eq!(empty_code.validate().unwrap_err().field, "license_list[1]");
    }

    #[test]
    fn usage_report_uses_the_capital_i_key_and_needs_exactly_one_value() {
        let req = UsageInfoRequest {
            usage_info: vec![UsageEntry {
                license: "PLX".into(),
                software_usage_info: vec![SoftwareUsage::login("account1")],
            }],
        };
        req.validate().unwrap();
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"usage_info":[{"license":"PLX","software_usage_Info":[{"id":"account1"}]}]}"#
        );
        let parsed: UsageInfoRequest = serde_json::from_str(
            r#"{"usage_info":[{"license":"PLX","software_usage_Info":[{"active_num":"100"}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            parsed.usage_info[0].software_usage_info[0].active_num,
            Some(100)
        );
        let both = UsageInfoRequest {
            usage_info: vec![UsageEntry {
                license: "PLX".into(),
                software_usage_info: vec![SoftwareUsage {
                    id: Some("a".into()),
                    active_num: Some(1),
                }],
            }],
        };
        let err = both.validate().unwrap_err();
        assert_eq!(err.field, "usage_info[0].software_usage_Info[0]");
        assert_eq!(err.rule, FieldRule::ExactlyOneOf("id", "active_num"));
        let neither = UsageInfoRequest {
            usage_info: vec![UsageEntry {
                license: "PLX".into(),
                software_usage_info: vec![SoftwareUsage::default()],
            }],
        };
        assert!(neither.validate().is_err());
        let huge = UsageInfoRequest {
            usage_info: vec![UsageEntry {
                license: "PLX".into(),
                software_usage_info: vec![SoftwareUsage::active_count(1_000_000_000)],
            }],
        };
        assert_eq!(
            huge.validate().unwrap_err().field,
            "usage_info[0].software_usage_Info[0].active_num"
        );
    }

    #[test]
    fn usage_answer_keeps_any_check_fail_field() {
        let r: LicenseApiResponse<UsageData> = serde_json::from_str(
            r#"{"error_code":"92020002","error_msg":"invalid param","data":{"check_fail_license_list":[{"license":"PLX","reason":"x"}],"other":1}}"#,
        )
        .unwrap();
        assert_eq!(r.code(), Some(LicenseApiCode::InvalidParam));
        let d = r.data.unwrap();
        assert!(d.has_failures());
        assert_eq!(d.check_failures().count(), 1);
        let ok: UsageData = serde_json::from_str(r#"{"check_fail_list":[]}"#).unwrap();
        assert!(!ok.has_failures());
    }

    #[test]
    fn activation_requests_validate_their_codes() {
        let long = ActivateRequest {
            license: "P".repeat(65),
            real_effect_time: None,
        };
        assert!(matches!(
            long.validate().unwrap_err().rule,
            FieldRule::TooLong { max: 64, .. }
        ));
        let req: ActivateBatchRequest = serde_json::from_str(
            r#"{"license_list":["PL****001","PL****002"],"real_effect_time":"20260102153555","extra":true}"#,
        )
        .unwrap();
        req.validate().unwrap();
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"license_list":["PL****001","PL****002"],"real_effect_time":"20260102153555"}"#
        );
        let hb = HeartbeatRequest {
            license: "PL1".into(),
            heartbeat_info: Some(HeartbeatInfo {
                third_party_account: String::new(),
                ip: None,
            }),
        };
        assert_eq!(
            hb.validate().unwrap_err().field,
            "heartbeatInfo.thirdPartyAccount"
        );
    }
}
