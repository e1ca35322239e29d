//! The HTTP surface: the MKT open APIs (faithful, PROTOCOL.md §2.1–2.2), and the emulator's own
//! delivery channel and update-manifest host. The control API is in [`crate::control`].
//!
//! Route names (used by fault rules):
//!
//! | route | endpoint |
//! |---|---|
//! | `license.activate.v1` / `.v2` | `POST /api/mkp-openapi-public/global/v{1,2}/license/activate` |
//! | `license.heartbeat.v1` / `.v2` | `POST /api/mkp-openapi-public/global/v{1,2}/license/heartbeat` |
//! | `license.usage` | `POST /api/mkp-openapi-public/global/v2/license/software-usage-info` |
//! | `order.query` | `GET /api/mkp-openapi-public/global/v1/order/query` |
//! | `market_event.upload` | `POST /api/mkp-openapi-public/global/v1/market-event/{event_id}/file` |
//! | `delivery` | `/sim/delivery/...` |
//! | `updates` | `/sim/updates/...` |

// Handlers return the finished answer as their error: it is built once and sent as is.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use koogallery::wire::{
    ActivateBatchRequest, ActivateData, ActivateRequest, HeartbeatBatchData, HeartbeatBatchRequest,
    HeartbeatRequest, IsvUpdateFileReq, LicenseApiResponse, LicenseCodeInfo, LicenseInfo,
    OrderQueryResponse, UploadKind, UsageInfoRequest,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tessera_types::{ApigCode, KooTime, LicenseApiCode, MktCode};

use crate::faults::FaultAction;
use crate::market::{
    ApiRefusal, CodeStatusReport, Delivery, LicensePayload, MarketError, MarketEvent, UsageEntry,
};
use crate::server::ConnCtx;
use crate::sim::{SimCore, lock};

/// The APIG body limit (PROTOCOL.md §3.4: more than 12 MB is `APIG.0201` / 413).
pub const MAX_BODY: usize = 12 * 1024 * 1024;
const OPEN_API: &str = "/api/mkp-openapi-public/global";
const JSON_UTF8: &str = "application/json;charset=UTF-8";

type Core = Arc<SimCore>;

/// The whole router: open APIs, delivery, updates and control.
pub(crate) fn router(core: Core) -> Router {
    Router::new()
        .route(&format!("{OPEN_API}/v1/license/activate"), any(activate_v1))
        .route(&format!("{OPEN_API}/v2/license/activate"), any(activate_v2))
        .route(
            &format!("{OPEN_API}/v1/license/heartbeat"),
            any(heartbeat_v1),
        )
        .route(
            &format!("{OPEN_API}/v2/license/heartbeat"),
            any(heartbeat_v2),
        )
        .route(
            &format!("{OPEN_API}/v2/license/software-usage-info"),
            any(usage_info),
        )
        .route(&format!("{OPEN_API}/v1/order/query"), any(order_query))
        .route(
            &format!("{OPEN_API}/v1/market-event/{{event_id}}/file"),
            any(upload),
        )
        .route("/sim/delivery/instances", get(delivery_instances))
        .route(
            "/sim/delivery/instances/{instance_id}/license",
            get(delivery_license),
        )
        .route(
            "/sim/delivery/instances/{instance_id}/license-requests",
            axum::routing::post(delivery_request),
        )
        .route("/sim/delivery/events/{event_id}", get(delivery_event))
        .route("/sim/updates/public-key.pem", get(manifest_key))
        .route("/sim/updates/{product_id}/manifest", get(manifest))
        .nest("/sim/control", crate::control::router())
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            core.clone(),
            stamp_date,
        ))
        .with_state(core)
}

/// Every answer carries `Date` from the marketplace's clock (clients use it as trusted time, so
/// moving the emulator's clock must show there too) and `Server`.
async fn stamp_date(
    State(core): State<Core>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(req).await;
    let date = koogallery::client::http_date(core.now());
    if let Ok(v) = HeaderValue::from_str(&date) {
        response.headers_mut().insert(header::DATE, v);
    }
    response
        .headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("koogallery-sim"));
    response
}

/// Which envelope errors of a route use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `{error_code, error_msg}` (License APIs and the upload).
    License,
    /// `{resultCode, resultMsg}` (order query).
    Order,
    /// The emulator's own `{error, message}`.
    Own,
}

/// A JSON answer with the marketplace's content type.
pub(crate) fn json_response(status: u16, body: &impl Serialize) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    response
}

/// The emulator's own error shape (control, delivery, updates).
pub(crate) fn own_error(status: u16, error: &str, message: impl Into<String>) -> Response {
    json_response(status, &json!({"error": error, "message": message.into()}))
}

fn license_error(code: LicenseApiCode, message: impl Into<String>) -> Response {
    json_response(
        code.http_status(),
        &json!({"error_code": code.code(), "error_msg": message.into()}),
    )
}

fn refusal(r: ApiRefusal) -> Response {
    license_error(r.code, r.message)
}

fn mkt_error(code: MktCode, message: impl Into<String>) -> Response {
    json_response(
        code.http_status(),
        &json!({"resultCode": code.code(), "resultMsg": message.into()}),
    )
}

fn apig_error(code: ApigCode, status: u16, message: impl Into<String>) -> Response {
    json_response(
        status,
        &json!({"error_code": code.code(), "error_msg": message.into()}),
    )
}

async fn unknown_route(req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        apig_error(
            ApigCode::ApiNotFound,
            404,
            "The API does not exist or has not been published in the environment",
        )
    } else {
        own_error(404, "not_found", "no such emulator endpoint")
    }
}

/// Applies route faults; `Err` is the answer to send instead of handling the request.
async fn apply_faults(
    core: &SimCore,
    ctx: &ConnCtx,
    route: &str,
    family: Family,
) -> Result<(), Response> {
    let decision = core.faults.decide(route, ctx.role);
    if decision.latency_millis > 0 {
        tokio::time::sleep(Duration::from_millis(decision.latency_millis)).await;
    }
    match decision.action {
        None | Some(FaultAction::Latency { .. }) => Ok(()),
        Some(FaultAction::DropConnection) => {
            ctx.drop_connection();
            // The connection task closes the socket; this request never gets an answer.
            std::future::pending::<()>().await;
            Err(own_error(500, "dropped", "connection dropped"))
        }
        Some(FaultAction::RateLimited) => Err(match family {
            Family::Order => mkt_error(MktCode::RateLimited, "Access frequency overlimit"),
            _ => json_response(
                MktCode::RateLimited.http_status(),
                &json!({"error_code": MktCode::RateLimited.code(), "error_msg": "Access frequency overlimit"}),
            ),
        }),
        Some(FaultAction::Status { status, body }) => Err(match body {
            Some(text) => {
                let mut r = json_response(status, &Value::Null);
                *r.body_mut() = Body::from(text);
                r
            }
            None if status >= 500 => match family {
                Family::License => json_response(
                    status,
                    &json!({"error_code": LicenseApiCode::InternalError.code(), "error_msg": "internal error"}),
                ),
                Family::Order => json_response(
                    status,
                    &json!({"resultCode": MktCode::InternalError.code(), "resultMsg": "System internal error."}),
                ),
                Family::Own => own_error(status, "injected", "injected fault"),
            },
            None => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                status.into_response()
            }
        }),
    }
}

/// What every open API does before its own logic: faults, the body (bounded), the APIG
/// signature, the method.
async fn gateway(
    core: &SimCore,
    route: &str,
    family: Family,
    method: Method,
    req: Request,
) -> Result<(axum::http::request::Parts, Bytes), Response> {
    let ctx = req.extensions().get::<ConnCtx>().cloned();
    if let Some(ctx) = &ctx {
        apply_faults(core, ctx, route, family).await?;
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        apig_error(
            ApigCode::BadRequestOrBackend,
            413,
            "Request entity too large",
        )
    })?;
    crate::gateway::verify(core, &parts, &body)
        .map_err(|why| apig_error(ApigCode::AppAuthIncorrect, 401, why))?;
    if parts.method != method {
        let code = LicenseApiCode::MethodNotSupported;
        return Err(match family {
            Family::Order => json_response(
                code.http_status(),
                &json!({"resultCode": code.code(), "resultMsg": "Request method not supported"}),
            ),
            _ => license_error(code, "Request method not supported"),
        });
    }
    Ok((parts, body))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// License APIs take `application/json` (a charset parameter is fine) and a JSON body that
/// passes the documented field rules.
fn json_body<T: serde::de::DeserializeOwned>(
    parts: &axum::http::request::Parts,
    body: &[u8],
    validate: impl FnOnce(&T) -> Result<(), koogallery::wire::FieldError>,
) -> Result<T, Response> {
    let ct = content_type(&parts.headers);
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime != "application/json" {
        return Err(license_error(
            LicenseApiCode::ContentTypeNotSupported,
            "Content type not supported",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        license_error(
            LicenseApiCode::MessageNotReadable,
            "req message is not readable",
        )
    })?;
    let parsed: T = serde_json::from_value(value).map_err(|e| {
        license_error(
            LicenseApiCode::ReqParamInvalid,
            format!("req param is invalid: {e}"),
        )
    })?;
    validate(&parsed).map_err(|e| {
        license_error(
            LicenseApiCode::ReqParamInvalid,
            format!("req param is invalid: {e}"),
        )
    })?;
    Ok(parsed)
}

fn koo(t: Option<time::OffsetDateTime>) -> Option<KooTime> {
    t.map(KooTime::new)
}

fn code_info(auth: &crate::market::AuthCode) -> LicenseCodeInfo {
    LicenseCodeInfo {
        status: koogallery::wire::CodeStatus::from_wire(auth.heartbeat_status()),
        expire_time: koo(auth.expire_time),
        product_id: Some(auth.product_id.clone()),
        order_id: Some(auth.order_id.clone()),
        amount: Some(auth.amount),
    }
}

async fn activate_v1(State(core): State<Core>, req: Request) -> Response {
    let (parts, body) = match gateway(
        &core,
        "license.activate.v1",
        Family::License,
        Method::POST,
        req,
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req: ActivateRequest = match json_body(&parts, &body, ActivateRequest::validate) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let now = core.now();
    let result = lock(&core.market).activate(
        std::slice::from_ref(&req.license),
        req.real_effect_time,
        false,
        now,
    );
    match result {
        Ok(done) => {
            tracing::info!(code = %crate::redact(&req.license), "code activated");
            let data = done.first().map(|a| ActivateData::from_info(&code_info(a)));
            json_response(200, &LicenseApiResponse::success(data))
        }
        Err(r) => refusal(r),
    }
}

async fn activate_v2(State(core): State<Core>, req: Request) -> Response {
    let (parts, body) = match gateway(
        &core,
        "license.activate.v2",
        Family::License,
        Method::POST,
        req,
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req: ActivateBatchRequest = match json_body(&parts, &body, ActivateBatchRequest::validate) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let now = core.now();
    let result = lock(&core.market).activate(&req.license_list, req.real_effect_time, true, now);
    match result {
        Ok(_) => json_response(200, &LicenseApiResponse::<Value>::success(None)),
        Err(r) => refusal(r),
    }
}

fn license_info(core: &SimCore, report: CodeStatusReport) -> LicenseInfo {
    let mut extra = Map::new();
    extra.insert("order_id".to_owned(), Value::String(report.order_id));
    extra.insert("amount".to_owned(), Value::from(report.amount));
    for (k, v) in lock(&core.heartbeat_extra).iter() {
        extra.insert(k.clone(), v.clone());
    }
    for fixed in [
        "license_code",
        "status",
        "activate_time",
        "expire_time",
        "product_id",
    ] {
        extra.remove(fixed);
    }
    LicenseInfo {
        license_code: report.code,
        status: koogallery::wire::CodeStatus::from_wire(report.status),
        activate_time: koo(report.activate_time),
        expire_time: koo(report.expire_time),
        product_id: Some(report.product_id),
        extra,
    }
}

async fn heartbeat_v1(State(core): State<Core>, req: Request) -> Response {
    let (parts, body) = match gateway(
        &core,
        "license.heartbeat.v1",
        Family::License,
        Method::POST,
        req,
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req: HeartbeatRequest = match json_body(&parts, &body, HeartbeatRequest::validate) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let now = core.now();
    let result = lock(&core.market).heartbeat(&[req.license], false, now);
    match result {
        Ok(mut reports) => match reports.pop() {
            Some(report) => json_response(
                200,
                &LicenseApiResponse::success(Some(license_info(&core, report))),
            ),
            None => license_error(LicenseApiCode::InternalError, "internal error"),
        },
        Err(r) => refusal(r),
    }
}

async fn heartbeat_v2(State(core): State<Core>, req: Request) -> Response {
    let (parts, body) = match gateway(
        &core,
        "license.heartbeat.v2",
        Family::License,
        Method::POST,
        req,
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req: HeartbeatBatchRequest = match json_body(&parts, &body, HeartbeatBatchRequest::validate)
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let now = core.now();
    let result = lock(&core.market).heartbeat(&req.license_list, true, now);
    match result {
        Ok(reports) => {
            let data = HeartbeatBatchData {
                license_info_list: reports
                    .into_iter()
                    .map(|r| license_info(&core, r))
                    .collect(),
            };
            json_response(200, &LicenseApiResponse::success(Some(data)))
        }
        Err(r) => refusal(r),
    }
}

async fn usage_info(State(core): State<Core>, req: Request) -> Response {
    let (parts, body) =
        match gateway(&core, "license.usage", Family::License, Method::POST, req).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    let req: UsageInfoRequest = match json_body(&parts, &body, UsageInfoRequest::validate) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let reports = req
        .usage_info
        .into_iter()
        .map(|entry| {
            let lines = entry
                .software_usage_info
                .into_iter()
                .map(|u| UsageEntry {
                    id: u.id,
                    active_num: u.active_num,
                })
                .collect();
            (entry.license, lines)
        })
        .collect();
    let now = core.now();
    let refused = lock(&core.market).record_usage(reports, now);
    // The failure field's real name is not captured (PROTOCOL.md §6 item 2); this one starts
    // with `check_fail_` as documented.
    let data = json!({"check_fail_license_list": refused});
    json_response(200, &LicenseApiResponse::success(Some(data)))
}

async fn order_query(State(core): State<Core>, req: Request) -> Response {
    let (parts, _body) = match gateway(&core, "order.query", Family::Order, Method::GET, req).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut order_id = None;
    let mut line_id = None;
    for (k, v) in url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "orderId" => order_id = Some(v.into_owned()),
            "orderLineId" => line_id = Some(v.into_owned()),
            _ => {
                return mkt_error(
                    MktCode::InvalidParameter,
                    format!("Invalid parameter: unknown parameter {k:?}"),
                );
            }
        }
    }
    let Some(order_id) = order_id.filter(|o| !o.is_empty()) else {
        return mkt_error(
            MktCode::InvalidParameter,
            "Invalid parameter: orderId is mandatory",
        );
    };
    if order_id.chars().count() > 64 || line_id.as_ref().is_some_and(|l| l.chars().count() > 64) {
        return mkt_error(
            MktCode::InputFailure,
            "Failure of input parameter: longer than 64 characters",
        );
    }
    let Some(order) = lock(&core.market).order(&order_id).cloned() else {
        return mkt_error(
            MktCode::InputFailure,
            "Failure of input parameter: order not found",
        );
    };
    let lines: Vec<_> = order
        .lines
        .iter()
        .filter(|l| line_id.as_ref().is_none_or(|id| &l.order_line_id == id))
        .collect();
    if lines.is_empty() {
        return mkt_error(
            MktCode::InputFailure,
            "Failure of input parameter: order line not found",
        );
    }
    let info = koogallery::wire::OrderInfo {
        order_id: order.order_id.clone(),
        order_type: koogallery::wire::OrderType::from_wire(order.order_type.as_str()),
        create_time: KooTime::new(order.create_time),
        order_line: lines
            .into_iter()
            .map(|l| koogallery::wire::OrderLine {
                order_line_id: l.order_line_id.clone(),
                charging_mode: koogallery::wire::ChargingMode::from_wire(l.charging_mode.as_str()),
                expire_time: koo(l.expire_time),
                period_type: l.period_type.map(|p| p.as_str().to_owned()),
                period_number: l.period_number.map(u64::from),
                product_info: vec![koogallery::wire::ProductInfo {
                    product_id: Some(l.product_id.clone()),
                    sku_code: Some(l.sku_code.clone()),
                    linear_value: Some(l.linear_value),
                    product_name: Some(l.product_name.clone()),
                }],
                extend_params: Vec::new(),
                currency: Some("CNY".to_owned()),
                currency_after_discount: Some("CNY".to_owned()),
            })
            .collect(),
        buyer_info: Some(koogallery::wire::BuyerInfo {
            mobile_phone: Some(order.buyer.mobile_phone.clone()),
            email: Some(order.buyer.email.clone()),
            customer_id: Some(order.buyer.customer_id.clone()),
            customer_name: Some(order.buyer.customer_name.clone()),
            customer_real_name: Some(order.buyer.customer_name.clone()),
            customer_type: Some("1".to_owned()),
            user_id: Some(order.buyer.user_id.clone()),
            user_name: Some(order.buyer.user_name.clone()),
        }),
        extend_params: Vec::new(),
    };
    let response = OrderQueryResponse {
        result_code: MktCode::Success.code().to_owned(),
        result_msg: "Success.".to_owned(),
        order_info: Some(info),
    };
    json_response(200, &response)
}

async fn upload(State(core): State<Core>, Path(event_id): Path<String>, req: Request) -> Response {
    let (parts, body) = match gateway(
        &core,
        "market_event.upload",
        Family::License,
        Method::POST,
        req,
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = koogallery::wire::event::validate_event_id(&event_id) {
        return license_error(
            LicenseApiCode::ReqParamInvalid,
            format!("req param is invalid: {e}"),
        );
    }
    if !content_type(&parts.headers).starts_with("multipart/form-data") {
        return license_error(
            LicenseApiCode::ContentTypeNotSupported,
            "Content type not supported",
        );
    }
    let request = Request::from_parts(parts, Body::from(body));
    let mut multipart = match axum::extract::Multipart::from_request(request, &()).await {
        Ok(m) => m,
        Err(_) => {
            return license_error(
                LicenseApiCode::MessageNotReadable,
                "req message is not readable",
            );
        }
    };
    let mut descriptor: Option<Bytes> = None;
    let mut file: Option<(String, Bytes)> = None;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                let file_name = field.file_name().unwrap_or("").to_owned();
                let Ok(bytes) = field.bytes().await else {
                    return license_error(
                        LicenseApiCode::MessageNotReadable,
                        "req message is not readable",
                    );
                };
                match name.as_str() {
                    "isvUpdateFileReq" => descriptor = Some(bytes),
                    "file" => file = Some((file_name, bytes)),
                    // Unknown parts are ignored, as the gateway forwards only what it knows.
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) => {
                return license_error(
                    LicenseApiCode::MessageNotReadable,
                    "req message is not readable",
                );
            }
        }
    }
    let Some(descriptor) = descriptor else {
        return license_error(
            LicenseApiCode::ReqParamInvalid,
            "req param is invalid: isvUpdateFileReq is mandatory",
        );
    };
    let req: IsvUpdateFileReq = match serde_json::from_slice(&descriptor) {
        Ok(r) => r,
        Err(_) => {
            return license_error(
                LicenseApiCode::MessageNotReadable,
                "req message is not readable",
            );
        }
    };
    if let Err(e) = req.validate() {
        return license_error(
            LicenseApiCode::ReqParamInvalid,
            format!("req param is invalid: {e}"),
        );
    }
    let now = core.now();
    let delivery = match req.kind {
        UploadKind::File => {
            let Some((part_name, bytes)) = file else {
                return license_error(
                    LicenseApiCode::ReqParamInvalid,
                    "req param is invalid: the file part is mandatory for FILE",
                );
            };
            if !req.matches_file(&bytes) {
                return license_error(
                    LicenseApiCode::InvalidParam,
                    "invalid param: sha256 does not match the file",
                );
            }
            let file_name = req
                .file_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or(part_name);
            Delivery {
                sha256: hex::encode(Sha256::digest(&bytes)),
                payload: LicensePayload::File {
                    file_name,
                    bytes: bytes.to_vec(),
                },
                uploaded_at: now,
            }
        }
        _ => {
            let text = req.characters.clone().unwrap_or_default();
            Delivery {
                sha256: hex::encode(Sha256::digest(text.as_bytes())),
                payload: LicensePayload::Characters { text },
                uploaded_at: now,
            }
        }
    };
    let stored = lock(&core.market).store_delivery(&event_id, delivery);
    match stored {
        Ok(event) => {
            tracing::info!(event_id = %event.event_id, instance_id = %event.instance_id, "License uploaded");
            json_response(200, &LicenseApiResponse::<Value>::success(None))
        }
        Err(MarketError::UnknownEvent(_)) => license_error(
            LicenseApiCode::InvalidParam,
            "invalid param: unknown event_id",
        ),
        Err(e) => license_error(LicenseApiCode::InvalidParam, e.to_string()),
    }
}

// ---- the emulator's own delivery channel (ISCDesk's undocumented side, PROTOCOL.md §6 item 5)

/// Resolves the buyer of a `Authorization: Bearer <token>` header.
fn buyer(core: &SimCore, headers: &HeaderMap) -> Result<String, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if token.is_empty() || token.len() > 128 {
        return Err(own_error(
            401,
            "unauthorized",
            "a buyer token is required (Authorization: Bearer …)",
        ));
    }
    lock(&core.market)
        .buyer_of_token(token)
        .map(str::to_owned)
        .ok_or_else(|| own_error(401, "unauthorized", "unknown buyer token"))
}

/// The delivery channel's fault check (route `delivery`).
async fn delivery_gate(
    core: &SimCore,
    headers: &HeaderMap,
    ctx: Option<&ConnCtx>,
) -> Result<String, Response> {
    if let Some(ctx) = ctx {
        apply_faults(core, ctx, "delivery", Family::Own).await?;
    }
    buyer(core, headers)
}

/// The delivered License as the delivery channel returns it.
#[must_use]
pub fn delivery_json(event: &MarketEvent, instance_status: Option<&str>) -> Value {
    use base64::Engine;
    let Some(d) = &event.delivery else {
        return json!({"eventId": event.event_id, "instanceId": event.instance_id, "status": "pending"});
    };
    let (kind, file_name, content, encoding) = match &d.payload {
        LicensePayload::File { file_name, bytes } => (
            "FILE",
            Some(file_name.clone()),
            base64::engine::general_purpose::STANDARD.encode(bytes),
            "base64",
        ),
        LicensePayload::Characters { text } => ("CHARACTERS", None, text.clone(), "utf-8"),
    };
    json!({
        "status": "delivered",
        "instanceId": event.instance_id,
        "instanceStatus": instance_status,
        "eventId": event.event_id,
        "kind": kind,
        "fileName": file_name,
        "encoding": encoding,
        "content": content,
        "sha256": d.sha256,
        "uploadedAt": KooTime::new(d.uploaded_at).format_compact(),
        "effectiveTime": KooTime::new(event.effective_time).format_compact(),
        "expireTime": event.expire_time.map(|t| KooTime::new(t).format_compact()),
        "deviceFingerprint": event.fingerprint,
    })
}

async fn delivery_instances(State(core): State<Core>, req: Request) -> Response {
    let buyer = match delivery_gate(&core, req.headers(), req.extensions().get::<ConnCtx>()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let market = lock(&core.market);
    let instances: Vec<Value> = market
        .orders()
        .into_iter()
        .flat_map(|o| o.lines)
        .filter_map(|l| l.instance_id)
        .filter_map(|id| market.instance(&id).cloned())
        .filter(|i| i.customer_id == buyer)
        .map(|i| {
            json!({"instanceId": i.instance_id, "productId": i.product_id, "status": i.status,
            "expireTime": i.expire_time.map(|t| KooTime::new(t).format_compact())})
        })
        .collect();
    json_response(200, &json!({"instances": instances}))
}

async fn delivery_license(
    State(core): State<Core>,
    Path(instance_id): Path<String>,
    req: Request,
) -> Response {
    let buyer = match delivery_gate(&core, req.headers(), req.extensions().get::<ConnCtx>()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let market = lock(&core.market);
    // Another buyer's instance answers exactly like a missing one: ids are not confirmed.
    let Some(instance) = market
        .instance(&instance_id)
        .filter(|i| i.customer_id == buyer)
    else {
        return own_error(404, "not_found", "no such instance for this buyer");
    };
    let status = serde_json::to_value(instance.status).ok();
    let status = status.as_ref().and_then(Value::as_str);
    match market.latest_delivery(&instance_id) {
        Some(event) => json_response(200, &delivery_json(event, status)),
        None => own_error(
            404,
            "not_delivered",
            "no License has been delivered for this instance yet",
        ),
    }
}

async fn delivery_event(
    State(core): State<Core>,
    Path(event_id): Path<String>,
    req: Request,
) -> Response {
    let buyer = match delivery_gate(&core, req.headers(), req.extensions().get::<ConnCtx>()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let market = lock(&core.market);
    let found = market.event(&event_id).and_then(|e| {
        market
            .instance(&e.instance_id)
            .filter(|i| i.customer_id == buyer)
            .map(|i| (e, i))
    });
    match found {
        Some((event, instance)) => {
            let status = serde_json::to_value(instance.status).ok();
            json_response(
                200,
                &delivery_json(event, status.as_ref().and_then(Value::as_str)),
            )
        }
        None => own_error(404, "not_found", "no such event for this buyer"),
    }
}

async fn delivery_request(
    State(core): State<Core>,
    Path(instance_id): Path<String>,
    req: Request,
) -> Response {
    let buyer = match delivery_gate(&core, req.headers(), req.extensions().get::<ConnCtx>()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return own_error(413, "too_large", "the request body exceeds 64 KiB"),
    };
    let request: crate::market::LicenseRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return own_error(400, "invalid_json", e.to_string()),
    };
    let owned = lock(&core.market)
        .instance(&instance_id)
        .is_some_and(|i| i.customer_id == buyer);
    if !owned {
        return own_error(404, "not_found", "no such instance for this buyer");
    }
    let handle = crate::sim::SimHandle::from_core(core.clone());
    match handle.request_license(&instance_id, &request) {
        Ok(outcome) => json_response(
            202,
            &json!({"eventId": outcome.result.event_id, "instanceId": instance_id}),
        ),
        Err(e) => crate::control::market_error(&e),
    }
}

// ---- update manifests (the emulator's own)

async fn manifest(
    State(core): State<Core>,
    Path(product_id): Path<String>,
    req: Request,
) -> Response {
    if let Some(ctx) = req.extensions().get::<ConnCtx>()
        && let Err(r) = apply_faults(&core, ctx, "updates", Family::Own).await
    {
        return r;
    }
    match lock(&core.manifests).get(&product_id) {
        Some(m) => json_response(200, &m.signed),
        None => own_error(
            404,
            "not_found",
            "no manifest is published for this product",
        ),
    }
}

async fn manifest_key(State(core): State<Core>, req: Request) -> Response {
    if let Some(ctx) = req.extensions().get::<ConnCtx>()
        && let Err(r) = apply_faults(&core, ctx, "updates", Family::Own).await
    {
        return r;
    }
    let mut response = core.signer.public_key_pem().to_owned().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    if let Ok(v) = HeaderValue::from_str(core.signer.key_id()) {
        response.headers_mut().insert("x-key-id", v);
    }
    response
}
