//! The ISCDesk event shape `{"operate": …, "params": {…}, "comeBackParams": {…}}` (PROTOCOL.md
//! §4.3), built from and parsed into [`tessera_types::Event`].
//!
//! ISCDesk's own events keep ISCDesk's field names and its string booleans (`"true"`/`"false"`)
//! so applications written for ISCDesk parse them unchanged; parsing also accepts JSON booleans
//! (one documentation variant uses them). Tessera's own events use snake_case keys and JSON types;
//! `EVENT_LICENSE_STATE` params are exactly a serialised [`ProductState`]. Keys inside `params`
//! come out in sorted order (JSON objects are unordered; ISCDesk parsers look keys up by name).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use tessera_types::events::{DeliveredLicense, DeliveryStatus, LicenseKind};
use tessera_types::{Event, EventKind, ProductState};

/// An event as ISCDesk applications see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IscEvent {
    /// Event name, e.g. `LicenseVerify`.
    pub operate: String,
    /// Event data.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Data the request carried for the application to get back (Tessera: the request id, as
    /// `requestId`, when the event answers a request).
    #[serde(rename = "comeBackParams", default)]
    pub come_back_params: Map<String, Value>,
}

/// Why an ISCDesk-shaped payload is not a known event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventParseError {
    /// `operate` names no event this build knows.
    #[error("unknown event operate {0:?}")]
    UnknownOperate(String),
    /// A required parameter is missing or has the wrong type.
    #[error("event {operate} has a missing or invalid {field:?} parameter")]
    BadParam {
        /// The event.
        operate: &'static str,
        /// The parameter.
        field: &'static str,
    },
}

impl IscEvent {
    /// The ISCDesk-shaped form of `event`, with an empty `comeBackParams`.
    #[must_use]
    pub fn from_event(event: &Event) -> Self {
        let mut params = Map::new();
        match event {
            Event::LicenseVerify {
                status,
                license,
                message,
            } => {
                let status = match status {
                    DeliveryStatus::Success => "success",
                    DeliveryStatus::Failed => "failed",
                };
                params.insert("Status".into(), status.into());
                match license {
                    DeliveredLicense::String(content) => {
                        params.insert("LicenseContent".into(), content.as_str().into());
                    }
                    DeliveredLicense::File(path) => {
                        params.insert("LicenseFilePath".into(), path.as_str().into());
                    }
                }
                params.insert("LicenseType".into(), license.kind().as_str().into());
                if let Some(message) = message {
                    params.insert("Message".into(), message.as_str().into());
                }
            }
            Event::UpgradeNotice { available } => {
                params.insert("available".into(), bool_str(*available).into());
            }
            Event::Update { forced } => {
                params.insert("fromForceWin".into(), bool_str(*forced).into());
            }
            Event::LicenseState(state) => {
                if let Ok(Value::Object(map)) = serde_json::to_value(state) {
                    params = map;
                }
            }
            Event::HeartbeatReply {
                product_id,
                ok,
                status,
                next_check_at,
            } => {
                params.insert("product_id".into(), product_id.as_str().into());
                params.insert("ok".into(), (*ok).into());
                if let Some(status) = status {
                    params.insert("status".into(), status.as_str().into());
                }
                if let Some(at) = next_check_at.and_then(|t| t.format(&Rfc3339).ok()) {
                    params.insert("next_check_at".into(), at.into());
                }
            }
            Event::AgentClosing { reason, restarting } => {
                params.insert("reason".into(), reason.as_str().into());
                params.insert("restarting".into(), (*restarting).into());
            }
        }
        Self {
            operate: event.kind().operate().to_owned(),
            params,
            come_back_params: Map::new(),
        }
    }

    /// Adds the id of the request this event answers to `comeBackParams`.
    #[must_use]
    pub fn with_request_id(mut self, id: u64) -> Self {
        self.come_back_params.insert("requestId".into(), id.into());
        self
    }

    /// The kind named by `operate`, if known.
    #[must_use]
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_operate(&self.operate)
    }

    /// The typed event.
    ///
    /// # Errors
    /// [`EventParseError`] when `operate` is unknown or a required parameter is missing.
    pub fn to_event(&self) -> Result<Event, EventParseError> {
        let kind = self
            .kind()
            .ok_or_else(|| EventParseError::UnknownOperate(self.operate.clone()))?;
        let op = kind.operate();
        let p = &self.params;
        let bad = |field| EventParseError::BadParam { operate: op, field };
        Ok(match kind {
            EventKind::LicenseVerify => {
                let status = match p.get("Status").and_then(Value::as_str) {
                    Some(s) if s.eq_ignore_ascii_case("success") => DeliveryStatus::Success,
                    Some(s) if s.eq_ignore_ascii_case("failed") => DeliveryStatus::Failed,
                    _ => return Err(bad("Status")),
                };
                let text = |key| p.get(key).and_then(Value::as_str).map(str::to_owned);
                let kind = match p.get("LicenseType").and_then(Value::as_str) {
                    Some(t) if t.eq_ignore_ascii_case("file") => LicenseKind::File,
                    Some(t) if t.eq_ignore_ascii_case("string") => LicenseKind::String,
                    // Without a type, the field that is present decides.
                    None if p.contains_key("LicenseFilePath") => LicenseKind::File,
                    None => LicenseKind::String,
                    Some(_) => return Err(bad("LicenseType")),
                };
                let license = match kind {
                    LicenseKind::File => {
                        DeliveredLicense::File(text("LicenseFilePath").unwrap_or_default())
                    }
                    LicenseKind::String => {
                        DeliveredLicense::String(text("LicenseContent").unwrap_or_default())
                    }
                };
                Event::LicenseVerify {
                    status,
                    license,
                    message: text("Message"),
                }
            }
            EventKind::UpgradeNotice => Event::UpgradeNotice {
                available: lenient_bool(p.get("available")).ok_or_else(|| bad("available"))?,
            },
            EventKind::Update => Event::Update {
                forced: lenient_bool(p.get("fromForceWin")).ok_or_else(|| bad("fromForceWin"))?,
            },
            EventKind::LicenseState => Event::LicenseState(
                serde_json::from_value::<ProductState>(Value::Object(p.clone()))
                    .map_err(|_| bad("state"))?,
            ),
            EventKind::HeartbeatReply => Event::HeartbeatReply {
                product_id: p
                    .get("product_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("product_id"))?
                    .to_owned(),
                ok: lenient_bool(p.get("ok")).ok_or_else(|| bad("ok"))?,
                status: p.get("status").and_then(Value::as_str).map(str::to_owned),
                next_check_at: match p.get("next_check_at") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_str()
                            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
                            .ok_or_else(|| bad("next_check_at"))?,
                    ),
                },
            },
            EventKind::AgentClosing => Event::AgentClosing {
                reason: p
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                restarting: lenient_bool(p.get("restarting")).unwrap_or(false),
            },
        })
    }

    /// The payload as the JSON text handed to applications.
    #[must_use]
    pub fn to_json_string(&self) -> String {
        // A struct of strings and JSON maps always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

fn lenient_bool(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use tessera_types::{LicenseState, StateReason};

    use super::*;

    fn round_trip(event: &Event) -> IscEvent {
        let isc = IscEvent::from_event(event);
        let json = isc.to_json_string();
        let back: IscEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(&back.to_event().unwrap(), event, "{json}");
        isc
    }

    #[test]
    fn iscdesk_events_have_the_documented_shape() {
        let isc = round_trip(&Event::UpgradeNotice { available: true });
        assert_eq!(
            isc.to_json_string(),
            r#"{"operate":"UpgradeNotice","params":{"available":"true"},"comeBackParams":{}}"#
        );
        let isc = round_trip(&Event::Update { forced: false });
        assert_eq!(
            isc.to_json_string(),
            r#"{"operate":"Update","params":{"fromForceWin":"false"},"comeBackParams":{}}"#
        );
        let isc = round_trip(&Event::LicenseVerify {
            status: DeliveryStatus::Success,
            license: DeliveredLicense::File("D:\\license.lic".into()),
            message: None,
        });
        assert_eq!(
            isc.with_request_id(3).to_json_string(),
            r#"{"operate":"LicenseVerify","params":{"LicenseFilePath":"D:\\license.lic","LicenseType":"file","Status":"success"},"comeBackParams":{"requestId":3}}"#
        );
        round_trip(&Event::LicenseVerify {
            status: DeliveryStatus::Failed,
            license: DeliveredLicense::String(String::new()),
            message: Some("no License issued yet".into()),
        });
    }

    #[test]
    fn accepts_the_boolean_variant_and_rejects_garbage() {
        let isc: IscEvent = serde_json::from_str(
            r#"{"operate":"UpgradeNotice","params":{"available":false},"comeBackParams":{}}"#,
        )
        .unwrap();
        assert_eq!(
            isc.to_event().unwrap(),
            Event::UpgradeNotice { available: false }
        );
        let isc: IscEvent =
            serde_json::from_str(r#"{"operate":"Update","params":{"fromForceWin":"maybe"}}"#)
                .unwrap();
        assert_eq!(
            isc.to_event().unwrap_err(),
            EventParseError::BadParam {
                operate: "Update",
                field: "fromForceWin"
            }
        );
        let isc: IscEvent = serde_json::from_str(r#"{"operate":"SaveResult"}"#).unwrap();
        assert!(matches!(
            isc.to_event(),
            Err(EventParseError::UnknownOperate(_))
        ));
    }

    #[test]
    fn tessera_events_round_trip() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let isc = round_trip(&Event::LicenseState(ProductState {
            product_id: "p1".into(),
            display_name: Some("FooCAD".into()),
            model: None,
            state: LicenseState::Grace,
            reason: StateReason::OfflineGrace,
            message: Some("offline since yesterday".into()),
            deadline: Some(t),
            expires_at: None,
            last_verified_at: Some(t),
            features: vec![],
        }));
        assert_eq!(isc.params["state"], "Grace");
        assert_eq!(isc.params["deadline"], "2027-01-15T08:00:00Z");
        round_trip(&Event::HeartbeatReply {
            product_id: "p1".into(),
            ok: true,
            status: Some("ALIVE".into()),
            next_check_at: Some(t),
        });
        round_trip(&Event::AgentClosing {
            reason: "update".into(),
            restarting: true,
        });
    }
}
