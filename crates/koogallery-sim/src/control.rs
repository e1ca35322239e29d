//! The operator/buyer control API under `/sim/control` (the emulator's own; every endpoint is
//! listed in the crate README). It is unauthenticated: the emulator listens on loopback.
//!
//! Errors are `{"error": <kind>, "message": …}` with 400 (invalid), 404 (unknown id) or 409 (the
//! object's state does not allow the operation).

// Handlers return the finished answer as their error: it is built once and sent as is.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tessera_types::KooTime;
use time::Duration;

use crate::callbacks::IsvEndpoint;
use crate::faults::{FaultRule, HostFaults};
use crate::manifest::ManifestSpec;
use crate::market::{LicenseRequest, MarketError, NewOrder, Renewal};
use crate::routes::{json_response, own_error};
use crate::sim::{SimCore, SimHandle};

type Core = Arc<SimCore>;

/// Most bytes a control request body may have.
const MAX_CONTROL_BODY: usize = 1024 * 1024;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/info", get(info))
        .route("/orders", post(create_order).get(list_orders))
        .route("/orders/{order_id}", get(get_order))
        .route("/orders/{order_id}/codes", post(issue_code))
        .route("/codes/{code}", get(get_code))
        .route("/codes/{code}/accept", post(accept_code))
        .route("/codes/{code}/renew", post(renew_code))
        .route("/codes/{code}/expire", post(expire_code))
        .route("/codes/{code}/freeze", post(freeze_code))
        .route("/codes/{code}/unfreeze", post(unfreeze_code))
        .route("/codes/{code}/release", post(release_code))
        .route("/codes/{code}/usage", get(code_usage))
        .route("/instances/{instance_id}", get(get_instance))
        .route("/instances/{instance_id}/renew", post(renew_instance))
        .route("/instances/{instance_id}/freeze", post(freeze_instance))
        .route("/instances/{instance_id}/unfreeze", post(unfreeze_instance))
        .route("/instances/{instance_id}/release", post(release_instance))
        .route(
            "/instances/{instance_id}/fingerprint",
            post(submit_fingerprint),
        )
        .route("/instances/{instance_id}/license", get(instance_license))
        .route("/events/{event_id}", get(get_event))
        .route("/buyers/{customer_id}/token", get(buyer_token))
        .route("/callbacks", get(list_callbacks))
        .route("/callbacks/{id}", get(get_callback))
        .route("/callbacks/{id}/replay", post(replay_callback))
        .route("/isv", put(set_isv).delete(clear_isv).get(get_isv))
        .route("/clock", get(get_clock).put(set_clock))
        .route("/clock/advance", post(advance_clock))
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/faults/hosts", put(set_host_faults))
        .route("/faults/{id}", delete(remove_fault))
        .route("/heartbeat-extra", put(set_heartbeat_extra))
        .route("/updates/{product_id}", put(publish_manifest))
}

fn handle(core: &Core) -> SimHandle {
    SimHandle::from_core(core.clone())
}

/// Maps a books error to the control API's error answer.
pub(crate) fn market_error(e: &MarketError) -> Response {
    let (status, kind) = match e {
        MarketError::UnknownOrder(_)
        | MarketError::UnknownOrderLine(_)
        | MarketError::UnknownCode(_)
        | MarketError::UnknownInstance(_)
        | MarketError::UnknownEvent(_) => (404, "not_found"),
        MarketError::NotAllowed { .. } => (409, "not_allowed"),
        MarketError::Invalid(_) => (400, "invalid"),
    };
    own_error(status, kind, e.to_string())
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    if body.len() > MAX_CONTROL_BODY {
        return Err(own_error(
            413,
            "too_large",
            "the request body exceeds 1 MiB",
        ));
    }
    serde_json::from_slice(body).map_err(|e| own_error(400, "invalid_json", e.to_string()))
}

/// Bodies that may be empty (`{}` implied).
fn parse_or_default<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse(body)
}

fn ok<T: serde::Serialize>(status: u16, result: Result<T, MarketError>) -> Response {
    match result {
        Ok(v) => json_response(status, &v),
        Err(e) => market_error(&e),
    }
}

async fn info(State(core): State<Core>) -> Response {
    let h = handle(&core);
    json_response(
        200,
        &json!({
            "primaryUrl": h.primary_url(),
            "fallbackUrl": h.fallback_url(),
            "caPath": h.ca_path(),
            "accessKeys": h.credentials().iter().map(|c| c.access_key.clone()).collect::<Vec<_>>(),
            "now": KooTime::new(h.now()).format_compact(),
            "manifestKeyId": h.manifest_key_id(),
            "isv": h.core.driver.endpoint().map(|e| e.url),
        }),
    )
}

async fn create_order(State(core): State<Core>, body: Bytes) -> Response {
    let req: NewOrder = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    ok(201, handle(&core).create_order(&req))
}

async fn list_orders(State(core): State<Core>) -> Response {
    json_response(200, &handle(&core).orders())
}

async fn get_order(State(core): State<Core>, Path(order_id): Path<String>) -> Response {
    ok(
        200,
        handle(&core)
            .order(&order_id)
            .ok_or(MarketError::UnknownOrder(order_id)),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IssueCode {
    #[serde(default)]
    order_line_id: Option<String>,
}

async fn issue_code(
    State(core): State<Core>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let req: IssueCode = match parse_or_default(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    ok(
        201,
        handle(&core).issue_code(&order_id, req.order_line_id.as_deref()),
    )
}

async fn get_code(State(core): State<Core>, Path(code): Path<String>) -> Response {
    let found = handle(&core).code(&code);
    ok(
        200,
        found.ok_or(MarketError::UnknownCode(crate::redact(&code))),
    )
}

async fn accept_code(State(core): State<Core>, Path(code): Path<String>) -> Response {
    ok(200, handle(&core).accept_code(&code))
}

async fn renew_code(State(core): State<Core>, Path(code): Path<String>, body: Bytes) -> Response {
    let req: Renewal = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    ok(200, handle(&core).renew_code(&code, &req))
}

async fn expire_code(State(core): State<Core>, Path(code): Path<String>) -> Response {
    ok(200, handle(&core).expire_code(&code))
}

async fn freeze_code(State(core): State<Core>, Path(code): Path<String>) -> Response {
    ok(200, handle(&core).freeze_code(&code))
}

async fn unfreeze_code(State(core): State<Core>, Path(code): Path<String>) -> Response {
    ok(200, handle(&core).unfreeze_code(&code))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Release {
    #[serde(default)]
    unsubscribe: bool,
}

async fn release_code(State(core): State<Core>, Path(code): Path<String>, body: Bytes) -> Response {
    let req: Release = match parse_or_default(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    ok(200, handle(&core).release_code(&code, req.unsubscribe))
}

async fn code_usage(State(core): State<Core>, Path(code): Path<String>) -> Response {
    json_response(200, &handle(&core).usage(&code))
}

async fn get_instance(State(core): State<Core>, Path(id): Path<String>) -> Response {
    let found = handle(&core).instance(&id);
    ok(200, found.ok_or(MarketError::UnknownInstance(id)))
}

async fn renew_instance(State(core): State<Core>, Path(id): Path<String>, body: Bytes) -> Response {
    let req: Renewal = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    ok(200, handle(&core).renew_instance(&id, &req))
}

async fn freeze_instance(State(core): State<Core>, Path(id): Path<String>) -> Response {
    ok(200, handle(&core).set_instance_frozen(&id, true))
}

async fn unfreeze_instance(State(core): State<Core>, Path(id): Path<String>) -> Response {
    ok(200, handle(&core).set_instance_frozen(&id, false))
}

async fn release_instance(
    State(core): State<Core>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let req: Release = match parse_or_default(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    ok(200, handle(&core).release_instance(&id, req.unsubscribe))
}

async fn submit_fingerprint(
    State(core): State<Core>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let req: LicenseRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    ok(202, handle(&core).request_license(&id, &req))
}

async fn instance_license(State(core): State<Core>, Path(id): Path<String>) -> Response {
    let h = handle(&core);
    let status = h.instance(&id).map(|i| i.status);
    match (status, h.delivered_license(&id)) {
        (None, _) => market_error(&MarketError::UnknownInstance(id)),
        (Some(_), None) => own_error(
            404,
            "not_delivered",
            "no License has been delivered for this instance yet",
        ),
        (Some(status), Some(event)) => {
            let status = serde_json::to_value(status).ok();
            json_response(
                200,
                &crate::routes::delivery_json(&event, status.as_ref().and_then(Value::as_str)),
            )
        }
    }
}

async fn get_event(State(core): State<Core>, Path(id): Path<String>) -> Response {
    let found = handle(&core).event(&id);
    ok(200, found.ok_or(MarketError::UnknownEvent(id)))
}

async fn buyer_token(State(core): State<Core>, Path(customer_id): Path<String>) -> Response {
    if customer_id.is_empty() || customer_id.len() > crate::market::MAX_ID_LEN {
        return own_error(400, "invalid", "customer id must be 1 to 64 characters");
    }
    json_response(
        200,
        &json!({"customerId": customer_id, "token": handle(&core).buyer_token(&customer_id)}),
    )
}

#[derive(Debug, Deserialize)]
struct CallbackFilter {
    activity: Option<String>,
    subject: Option<String>,
}

async fn list_callbacks(
    State(core): State<Core>,
    Query(filter): Query<CallbackFilter>,
) -> Response {
    let records: Vec<_> = handle(&core)
        .callbacks()
        .into_iter()
        .filter(|r| filter.activity.as_ref().is_none_or(|a| &r.activity == a))
        .filter(|r| filter.subject.as_ref().is_none_or(|s| &r.subject == s))
        .collect();
    json_response(200, &records)
}

async fn get_callback(State(core): State<Core>, Path(id): Path<u64>) -> Response {
    match handle(&core).callback(id) {
        Some(r) => json_response(200, &r),
        None => own_error(404, "not_found", "no such callback"),
    }
}

async fn replay_callback(State(core): State<Core>, Path(id): Path<u64>) -> Response {
    match handle(&core).replay_callback(id) {
        Some(new_id) => json_response(202, &json!({"id": new_id})),
        None => own_error(404, "not_found", "no such callback (or it left the log)"),
    }
}

async fn set_isv(State(core): State<Core>, body: Bytes) -> Response {
    let req: IsvEndpoint = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match handle(&core).set_isv_endpoint(Some(req)) {
        Ok(()) => json_response(200, &json!({"ok": true})),
        Err(e) => own_error(400, "invalid", crate::error_chain(&e)),
    }
}

async fn clear_isv(State(core): State<Core>) -> Response {
    match handle(&core).set_isv_endpoint(None) {
        Ok(()) => json_response(200, &json!({"ok": true})),
        Err(e) => own_error(400, "invalid", crate::error_chain(&e)),
    }
}

async fn get_isv(State(core): State<Core>) -> Response {
    let endpoint = core.driver.endpoint();
    json_response(
        200,
        &json!({"url": endpoint.as_ref().map(|e| e.url.clone())}),
    )
}

fn clock_json(core: &Core) -> Value {
    let now = core.now();
    json!({
        "now": KooTime::new(now).format_compact(),
        "unixMillis": KooTime::new(now).unix_millis(),
        "offsetSeconds": core.clock.offset().whole_seconds(),
    })
}

async fn get_clock(State(core): State<Core>) -> Response {
    json_response(200, &clock_json(&core))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetClock {
    /// Any KooGallery time format.
    now: KooTime,
}

async fn set_clock(State(core): State<Core>, body: Bytes) -> Response {
    let req: SetClock = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    core.clock.set(req.now.datetime());
    json_response(200, &clock_json(&core))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: i64,
}

async fn advance_clock(State(core): State<Core>, body: Bytes) -> Response {
    let req: Advance = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    // ±100 years is plenty and keeps every later time computation in range.
    if req.seconds.unsigned_abs() > 100 * 366 * 86_400 {
        return own_error(400, "invalid", "seconds must be within ±100 years");
    }
    core.clock.advance(Duration::seconds(req.seconds));
    json_response(200, &clock_json(&core))
}

async fn list_faults(State(core): State<Core>) -> Response {
    json_response(200, &core.faults.snapshot())
}

async fn add_fault(State(core): State<Core>, body: Bytes) -> Response {
    let rule: FaultRule = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match core.faults.add(rule) {
        Ok(id) => json_response(201, &json!({"id": id})),
        Err(why) => own_error(400, "invalid", why),
    }
}

async fn clear_faults(State(core): State<Core>) -> Response {
    core.faults.clear();
    json_response(200, &core.faults.snapshot())
}

async fn set_host_faults(State(core): State<Core>, body: Bytes) -> Response {
    let hosts: HostFaults = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    core.faults.set_hosts(hosts);
    json_response(200, &core.faults.snapshot())
}

async fn remove_fault(State(core): State<Core>, Path(id): Path<u64>) -> Response {
    if core.faults.remove(id) {
        json_response(200, &json!({"removed": id}))
    } else {
        own_error(404, "not_found", "no such fault rule")
    }
}

async fn set_heartbeat_extra(State(core): State<Core>, body: Bytes) -> Response {
    let extra: Map<String, Value> = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    handle(&core).set_heartbeat_extra(extra);
    json_response(200, &json!({"ok": true}))
}

async fn publish_manifest(
    State(core): State<Core>,
    Path(product_id): Path<String>,
    body: Bytes,
) -> Response {
    let spec: ManifestSpec = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match handle(&core).publish_manifest(&product_id, spec) {
        Ok(signed) => json_response(200, &signed),
        Err(e) => own_error(400, "invalid", crate::error_chain(&e)),
    }
}
