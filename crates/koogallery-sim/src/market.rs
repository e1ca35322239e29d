//! The marketplace's books: orders, authorization codes (Model A), instances and License events
//! (Model B), usage reports and buyers.
//!
//! Everything here is synchronous and takes the current time as an argument, so the lifecycle
//! rules of PROTOCOL.md §1.2–1.3 are unit-tested without a server. Operations that MKT follows up
//! with a production-interface call return the [`Callback`]s to send; the caller hands them to
//! the callback driver.

use std::collections::BTreeMap;

use rand::Rng;
use rand::distributions::Alphanumeric;
use serde::{Deserialize, Serialize};
use tessera_types::{KooTime, LicenseApiCode};
use time::{Duration, OffsetDateTime};

use crate::callbacks::Callback;

/// Longest id KooGallery accepts for codes, orders, lines, instances and events.
pub const MAX_ID_LEN: usize = 64;
/// Most codes one batch call may carry.
pub const MAX_BATCH: usize = 100;
/// Usage reports kept per code; older ones are dropped first.
const MAX_USAGE_REPORTS_PER_CODE: usize = 1000;
/// The longest License string a CHARACTERS upload may carry.
pub const MAX_CHARACTERS_LEN: usize = 1024;
/// The default buyer when an order names none.
pub const DEFAULT_CUSTOMER_ID: &str = "sim-buyer";

/// The two KooGallery License delivery models (PROTOCOL.md §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseModel {
    /// Model A: marketplace-generated authorization codes.
    AuthorizationCode,
    /// Model B: an ISV-issued License file/string bound to a device fingerprint.
    OnlineLicense,
}

/// `chargingMode` of an order line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChargingMode {
    /// Subscription for a period.
    Period,
    /// Bought once, no expiry.
    OneTime,
    /// Pay per use.
    OnDemand,
    /// Prepaid usage package.
    OnDemandPkg,
}

impl ChargingMode {
    /// The wire string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Period => "PERIOD",
            Self::OneTime => "ONE_TIME",
            Self::OnDemand => "ON_DEMAND",
            Self::OnDemandPkg => "ON_DEMAND_PKG",
        }
    }
}

/// `orderType` of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderType {
    /// A new purchase.
    New,
    /// A trial.
    Trial,
    /// A trial turned into a purchase.
    TrialToFormal,
    /// An unsubscription (also a renewal cancellation).
    Unsubscribe,
    /// A renewal.
    Renew,
    /// A specification change.
    Change,
}

impl OrderType {
    /// The wire string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "NEW",
            Self::Trial => "TRIAL",
            Self::TrialToFormal => "TRIAL_TO_FORMAL",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::Renew => "RENEW",
            Self::Change => "CHANGE",
        }
    }
}

/// `periodType` of a periodic order line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodType {
    /// Yearly.
    Year,
    /// Monthly.
    Month,
    /// Daily (trials).
    Day,
}

impl PeriodType {
    /// The wire string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Year => "year",
            Self::Month => "month",
            Self::Day => "day",
        }
    }

    fn length(self, number: u32) -> Duration {
        let n = i64::from(number);
        match self {
            Self::Year => Duration::days(365 * n),
            Self::Month => Duration::days(30 * n),
            Self::Day => Duration::days(n),
        }
    }
}

/// Renewal scenes of refreshInstance / refreshLicenseCode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RenewScene {
    /// A trial became a purchase (Model B only).
    TrialToFormal,
    /// A renewal.
    Renewal,
    /// A renewal was cancelled; the expiry moves back.
    UnsubscribeRenewalPeriod,
}

impl RenewScene {
    /// The wire string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrialToFormal => "TRIAL_TO_FORMAL",
            Self::Renewal => "RENEWAL",
            Self::UnsubscribeRenewalPeriod => "UNSUBSCRIBE_RENEWAL_PERIOD",
        }
    }

    fn order_type(self) -> OrderType {
        match self {
            Self::TrialToFormal => OrderType::TrialToFormal,
            Self::Renewal => OrderType::Renew,
            Self::UnsubscribeRenewalPeriod => OrderType::Unsubscribe,
        }
    }
}

/// The buyer of an order (`orderInfo.buyerInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buyer {
    /// KooGallery customer id.
    pub customer_id: String,
    /// Display name.
    pub customer_name: String,
    /// The member user the License is assigned to.
    pub user_id: String,
    /// That user's name.
    pub user_name: String,
    /// Contact e-mail.
    pub email: String,
    /// Contact phone.
    pub mobile_phone: String,
}

impl Buyer {
    fn for_customer(customer_id: &str) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            customer_name: format!("{customer_id} Ltd."),
            user_id: format!("{customer_id}-user"),
            user_name: format!("{customer_id} engineer"),
            email: format!("{customer_id}@example.invalid"),
            mobile_phone: "+86-000-0000-0000".to_owned(),
        }
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// `orderLineId`.
    pub order_line_id: String,
    /// How it is charged.
    pub charging_mode: ChargingMode,
    /// Period unit, for periodic lines.
    pub period_type: Option<PeriodType>,
    /// Number of periods.
    pub period_number: Option<u32>,
    /// When the line expires (absent for one-time and on-demand lines).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expire_time: Option<OffsetDateTime>,
    /// Product id.
    pub product_id: String,
    /// SKU code.
    pub sku_code: String,
    /// Product display name.
    pub product_name: String,
    /// The quantity attribute (seats).
    pub linear_value: u64,
    /// The instance the ISV created for this line (Model B).
    pub instance_id: Option<String>,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// `orderId`.
    pub order_id: String,
    /// Kind of order.
    pub order_type: OrderType,
    /// When it was placed.
    #[serde(with = "time::serde::rfc3339")]
    pub create_time: OffsetDateTime,
    /// Which delivery model its product uses.
    pub model: LicenseModel,
    /// Who bought it.
    pub buyer: Buyer,
    /// Its lines.
    pub lines: Vec<OrderLine>,
    /// Orders created for the seller-center debugging console carry `testFlag = "1"`.
    pub test: bool,
    /// Whether MKT gave up delivering it and unsubscribed it (PROTOCOL.md §2.3.9).
    pub failed: bool,
}

/// What the operator asks for when creating an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Delivery model of the product.
    pub model: LicenseModel,
    /// Product id.
    pub product_id: String,
    /// Product name (default: derived from the id).
    #[serde(default)]
    pub product_name: Option<String>,
    /// SKU code (default: derived from the id).
    #[serde(default)]
    pub sku_code: Option<String>,
    /// Charging mode (default `PERIOD`).
    #[serde(default)]
    pub charging_mode: Option<ChargingMode>,
    /// Period unit (default `year` for periodic lines).
    #[serde(default)]
    pub period_type: Option<PeriodType>,
    /// Number of periods (default 1).
    #[serde(default)]
    pub period_number: Option<u32>,
    /// Seats (`linearValue`, and `amount` of a code; default 1).
    #[serde(default)]
    pub quantity: Option<u64>,
    /// Explicit expiry (any KooGallery time format); default: creation + period.
    #[serde(default)]
    pub expire_time: Option<KooTime>,
    /// Kind of order (default `NEW`).
    #[serde(default)]
    pub order_type: Option<OrderType>,
    /// Buyer's customer id (default `sim-buyer`).
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Sends callbacks with `testFlag = "1"`.
    #[serde(default)]
    pub test: bool,
}

impl NewOrder {
    /// A yearly order for one seat of `product_id`.
    #[must_use]
    pub fn yearly(model: LicenseModel, product_id: &str) -> Self {
        Self {
            model,
            product_id: product_id.to_owned(),
            product_name: None,
            sku_code: None,
            charging_mode: None,
            period_type: None,
            period_number: None,
            quantity: None,
            expire_time: None,
            order_type: None,
            customer_id: None,
            test: false,
        }
    }
}

/// The lifecycle of an authorization code (PROTOCOL.md §1.3; the names before ALIVE are ours,
/// KooGallery documents none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CodeState {
    /// Issued, the user has not accepted (验收) it yet: activation gives 92020004.
    Unreceived,
    /// Accepted by the user, not activated: heartbeat gives 92020011.
    Received,
    /// Activated and within its validity.
    Alive,
    /// Past its expiry.
    Expired,
    /// Frozen after expiry without renewal (or a violation).
    Frozen,
    /// Released after the retention period or on unsubscription.
    Released,
}

/// An authorization code and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCode {
    /// The code (`PL…`).
    pub code: String,
    /// Order it was issued for.
    pub order_id: String,
    /// Order line.
    pub order_line_id: String,
    /// Product.
    pub product_id: String,
    /// The quantity attribute.
    pub amount: u64,
    /// Current state (ALIVE turns EXPIRED lazily when the sim clock passes `expire_time`).
    pub state: CodeState,
    /// When it was activated.
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    /// When it takes effect (`real_effect_time`, else the activation).
    #[serde(with = "time::serde::rfc3339::option")]
    pub effect_time: Option<OffsetDateTime>,
    /// When it expires (none for perpetual codes).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expire_time: Option<OffsetDateTime>,
    /// Successful heartbeats seen (the seller center's 已检测).
    pub heartbeats: u64,
    /// Whether the buyer or ISV was sent `testFlag = "1"`.
    pub test: bool,
}

impl AuthCode {
    fn settle(&mut self, now: OffsetDateTime) {
        if self.state == CodeState::Alive && self.expire_time.is_some_and(|t| t <= now) {
            self.state = CodeState::Expired;
        }
    }

    /// The `status` the heartbeat reports. A frozen code is an expired one that was not renewed.
    #[must_use]
    pub fn heartbeat_status(&self) -> &'static str {
        match self.state {
            CodeState::Released => "RELEASED",
            CodeState::Expired | CodeState::Frozen => "EXPIRED",
            _ => "ALIVE",
        }
    }
}

/// Model B instance status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    /// In use.
    Active,
    /// Frozen (expired, or a violation).
    Frozen,
    /// Released.
    Released,
}

/// A Model B instance, as the ISV named it in its newInstance answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `instanceId` from the ISV.
    pub instance_id: String,
    /// Order that created it.
    pub order_id: String,
    /// Its line.
    pub order_line_id: String,
    /// Product.
    pub product_id: String,
    /// Buyer.
    pub customer_id: String,
    /// Status.
    pub status: InstanceStatus,
    /// Expiry (absent for one-time products).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expire_time: Option<OffsetDateTime>,
    /// Whether callbacks for it carry `testFlag = "1"`.
    pub test: bool,
}

/// What an ISV uploaded for an event (PROTOCOL.md §2.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LicensePayload {
    /// A License file.
    File {
        /// Its name.
        file_name: String,
        /// Its bytes.
        #[serde(with = "b64")]
        bytes: Vec<u8>,
    },
    /// A License string.
    Characters {
        /// The string.
        text: String,
    },
}

/// A delivered License.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The content.
    pub payload: LicensePayload,
    /// SHA-256 of the content bytes, lower-case hex.
    pub sha256: String,
    /// When it was uploaded.
    #[serde(with = "time::serde::rfc3339")]
    pub uploaded_at: OffsetDateTime,
}

/// A getLicenseAsync request MKT made (the `eventId` an upload refers to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketEvent {
    /// `eventId`.
    pub event_id: String,
    /// The instance the License is for.
    pub instance_id: String,
    /// The device fingerprint submitted.
    pub fingerprint: String,
    /// License start.
    #[serde(with = "time::serde::rfc3339")]
    pub effective_time: OffsetDateTime,
    /// License end (periodic products).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expire_time: Option<OffsetDateTime>,
    /// When MKT created the event.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The latest upload, if any.
    pub delivery: Option<Delivery>,
    /// How many uploads arrived (a re-upload replaces the content).
    pub uploads: u32,
    /// Whether a re-upload brought different content: the same eventId and fingerprint must
    /// yield the same License (PROTOCOL.md §2.3.5), so this flags an ISV bug.
    pub content_changed: bool,
}

/// One `software_usage_Info` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    /// Login or device id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Daily active count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_num: Option<u64>,
}

/// One usage report for one code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// When it arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub reported_at: OffsetDateTime,
    /// What it said.
    pub entries: Vec<UsageEntry>,
}

/// Why an operator or API request was refused by the books.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketError {
    /// No such order.
    #[error("order {0} does not exist")]
    UnknownOrder(String),
    /// No such order line.
    #[error("order line {0} does not exist")]
    UnknownOrderLine(String),
    /// No such code.
    #[error("authorization code {0} does not exist")]
    UnknownCode(String),
    /// No such instance.
    #[error("instance {0} does not exist")]
    UnknownInstance(String),
    /// No such event.
    #[error("market event {0} does not exist")]
    UnknownEvent(String),
    /// The operation does not apply to the object's state or model.
    #[error("cannot {action} {what}: {why}")]
    NotAllowed {
        /// The operation.
        action: &'static str,
        /// The object.
        what: String,
        /// The reason.
        why: String,
    },
    /// A request field is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// The outcome of an open-API call on codes: the documented code, and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRefusal {
    /// The `error_code`.
    pub code: LicenseApiCode,
    /// The `error_msg`.
    pub message: String,
}

impl ApiRefusal {
    fn new(code: LicenseApiCode) -> Self {
        Self {
            code,
            message: code.meaning().to_owned(),
        }
    }

    fn with(code: LicenseApiCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What a heartbeat reports for one code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeStatusReport {
    /// The code.
    pub code: String,
    /// `ALIVE`, `EXPIRED` or `RELEASED`.
    pub status: &'static str,
    /// Activation time.
    pub activate_time: Option<OffsetDateTime>,
    /// Expiry.
    pub expire_time: Option<OffsetDateTime>,
    /// Product.
    pub product_id: String,
    /// Order.
    pub order_id: String,
    /// Quantity.
    pub amount: u64,
}

/// A renewal requested by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    /// The new expiry.
    pub expire_time: KooTime,
    /// Why (default `RENEWAL`).
    #[serde(default)]
    pub scene: Option<RenewScene>,
    /// A new product id, when the period type changes.
    #[serde(default)]
    pub product_id: Option<String>,
}

/// A request for a License for an instance (what ISCDesk does when the app asks for one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseRequest {
    /// The device fingerprint (≤ 1024 characters, as getLicenseAsync allows).
    pub device_fingerprint: String,
    /// License start (default: now).
    #[serde(default)]
    pub effective_time: Option<KooTime>,
    /// License end (default: the instance's expiry).
    #[serde(default)]
    pub expire_time: Option<KooTime>,
}

/// A mock order: id, type, charging mode, period.
type MockOrder = (
    &'static str,
    OrderType,
    ChargingMode,
    Option<(PeriodType, u32)>,
);

/// The books.
#[derive(Debug, Default)]
pub struct Market {
    orders: BTreeMap<String, Order>,
    codes: BTreeMap<String, AuthCode>,
    instances: BTreeMap<String, Instance>,
    events: BTreeMap<String, MarketEvent>,
    usage: BTreeMap<String, Vec<UsageReport>>,
    buyer_tokens: BTreeMap<String, String>,
    order_seq: u64,
}

fn random_alnum(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(|b| char::from(b).to_ascii_uppercase())
        .collect()
}

fn check_id(field: &str, value: &str) -> Result<(), MarketError> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(MarketError::Invalid(format!(
            "{field} must be 1 to {MAX_ID_LEN} characters"
        )));
    }
    Ok(())
}

impl Market {
    /// Empty books.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Books holding the nine mock orders of PROTOCOL.md §2.2.1, placed a day before `now`.
    #[must_use]
    pub fn with_mock_orders(now: OffsetDateTime) -> Self {
        let mut market = Self::new();
        let created = now - Duration::days(1);
        let mocks: [MockOrder; 9] = [
            (
                "MOCKPERIODYEARNEW",
                OrderType::New,
                ChargingMode::Period,
                Some((PeriodType::Year, 1)),
            ),
            (
                "MOCKONETIMENEW",
                OrderType::New,
                ChargingMode::OneTime,
                None,
            ),
            ("MOCKONDEMAND", OrderType::New, ChargingMode::OnDemand, None),
            (
                "MOCKONDEMANDPKG",
                OrderType::New,
                ChargingMode::OnDemandPkg,
                Some((PeriodType::Year, 1)),
            ),
            (
                "MOCKPERIODDAYTRIAL",
                OrderType::Trial,
                ChargingMode::Period,
                Some((PeriodType::Day, 7)),
            ),
            (
                "MOCKMONTYTRIALTOFORMAL",
                OrderType::TrialToFormal,
                ChargingMode::Period,
                Some((PeriodType::Month, 1)),
            ),
            (
                "MOCKMONTYUNSUBSCRIBE",
                OrderType::Unsubscribe,
                ChargingMode::Period,
                Some((PeriodType::Month, 1)),
            ),
            (
                "MOCKMONTYRENEW",
                OrderType::Renew,
                ChargingMode::Period,
                Some((PeriodType::Month, 1)),
            ),
            (
                "MOCKMONTYCHANGE",
                OrderType::Change,
                ChargingMode::Period,
                Some((PeriodType::Month, 1)),
            ),
        ];
        for (order_id, order_type, charging_mode, period) in mocks {
            let line = OrderLine {
                order_line_id: format!("{order_id}-000001"),
                charging_mode,
                period_type: period.map(|p| p.0),
                period_number: period.map(|p| p.1),
                expire_time: period.map(|(unit, n)| created + unit.length(n)),
                product_id: "MOCKPRODUCT0001".to_owned(),
                sku_code: format!("MOCKSKU-{}", charging_mode.as_str()),
                product_name: "Mock CAD Suite".to_owned(),
                linear_value: 5,
                instance_id: None,
            };
            market.orders.insert(
                order_id.to_owned(),
                Order {
                    order_id: order_id.to_owned(),
                    order_type,
                    create_time: created,
                    model: LicenseModel::OnlineLicense,
                    buyer: Buyer::for_customer(DEFAULT_CUSTOMER_ID),
                    lines: vec![line],
                    test: true,
                    failed: false,
                },
            );
        }
        market
    }

    fn next_order_id(&mut self, now: OffsetDateTime) -> String {
        self.order_seq += 1;
        let stamp = KooTime::new(now).format_compact();
        // CS + yyMMddHHmm + 4 digits, the shape of the documented sample `CS2411210908XXXX`.
        format!("CS{}{:04}", &stamp[2..12], self.order_seq % 10_000)
    }

    /// The delivery token of a buyer, created on first use.
    pub fn buyer_token(&mut self, customer_id: &str) -> String {
        self.buyer_tokens
            .entry(customer_id.to_owned())
            .or_insert_with(|| random_alnum(40))
            .clone()
    }

    /// The buyer a delivery token belongs to.
    #[must_use]
    pub fn buyer_of_token(&self, token: &str) -> Option<&str> {
        use subtle_compare as sc;
        self.buyer_tokens
            .iter()
            .find(|(_, t)| sc::eq(t.as_bytes(), token.as_bytes()))
            .map(|(c, _)| c.as_str())
    }

    /// Places an order. For Model B, the caller sends the returned newInstance callback.
    ///
    /// # Errors
    /// When a field is invalid.
    pub fn create_order(
        &mut self,
        req: &NewOrder,
        now: OffsetDateTime,
    ) -> Result<(Order, Option<Callback>), MarketError> {
        check_id("product_id", &req.product_id)?;
        let customer_id = req.customer_id.as_deref().unwrap_or(DEFAULT_CUSTOMER_ID);
        check_id("customer_id", customer_id)?;
        let charging_mode = req.charging_mode.unwrap_or(ChargingMode::Period);
        let periodic = matches!(
            charging_mode,
            ChargingMode::Period | ChargingMode::OnDemandPkg
        );
        let (period_type, period_number) = if periodic {
            (
                Some(req.period_type.unwrap_or(PeriodType::Year)),
                Some(req.period_number.unwrap_or(1).max(1)),
            )
        } else {
            (None, None)
        };
        let expire_time = match (req.expire_time, period_type, period_number) {
            (Some(t), _, _) => Some(t.datetime()),
            (None, Some(unit), Some(n)) => Some(now + unit.length(n)),
            _ => None,
        };
        if expire_time.is_some_and(|t| t <= now) {
            return Err(MarketError::Invalid(
                "expire_time must lie after the order time".to_owned(),
            ));
        }
        let order_id = self.next_order_id(now);
        let line = OrderLine {
            order_line_id: format!("{order_id}-000001"),
            charging_mode,
            period_type,
            period_number,
            expire_time,
            product_id: req.product_id.clone(),
            sku_code: req
                .sku_code
                .clone()
                .unwrap_or_else(|| format!("{}-SKU", req.product_id)),
            product_name: req
                .product_name
                .clone()
                .unwrap_or_else(|| format!("Product {}", req.product_id)),
            linear_value: req.quantity.unwrap_or(1).max(1),
            instance_id: None,
        };
        let order = Order {
            order_id: order_id.clone(),
            order_type: req.order_type.unwrap_or(OrderType::New),
            create_time: now,
            model: req.model,
            buyer: Buyer::for_customer(customer_id),
            lines: vec![line.clone()],
            test: req.test,
            failed: false,
        };
        self.buyer_token(customer_id);
        self.orders.insert(order_id.clone(), order.clone());
        let callback =
            (req.model == LicenseModel::OnlineLicense).then_some(Callback::NewInstance {
                order_id,
                order_line_id: line.order_line_id,
                test: req.test,
            });
        Ok((order, callback))
    }

    /// An order, for the order query.
    #[must_use]
    pub fn order(&self, order_id: &str) -> Option<&Order> {
        self.orders.get(order_id)
    }

    /// Every order, oldest id first.
    #[must_use]
    pub fn orders(&self) -> Vec<Order> {
        self.orders.values().cloned().collect()
    }

    /// Marks an order failed (MKT gave up delivering its newInstance) and so unsubscribed.
    pub fn fail_order(&mut self, order_id: &str) {
        if let Some(order) = self.orders.get_mut(order_id) {
            order.failed = true;
        }
    }

    fn line_mut(
        &mut self,
        order_id: &str,
        order_line_id: Option<&str>,
    ) -> Result<(&mut Order, usize), MarketError> {
        let order = self
            .orders
            .get_mut(order_id)
            .ok_or_else(|| MarketError::UnknownOrder(order_id.to_owned()))?;
        let index = match order_line_id {
            Some(id) => order
                .lines
                .iter()
                .position(|l| l.order_line_id == id)
                .ok_or_else(|| MarketError::UnknownOrderLine(id.to_owned()))?,
            None => 0,
        };
        if index >= order.lines.len() {
            return Err(MarketError::UnknownOrderLine(format!("{order_id}-000001")));
        }
        Ok((order, index))
    }

    /// Issues the authorization code of a Model A order line. The user has not accepted it yet.
    ///
    /// # Errors
    /// Unknown order or line, or a Model B order.
    pub fn issue_code(
        &mut self,
        order_id: &str,
        order_line_id: Option<&str>,
    ) -> Result<AuthCode, MarketError> {
        let (order, index) = self.line_mut(order_id, order_line_id)?;
        if order.model != LicenseModel::AuthorizationCode {
            return Err(MarketError::NotAllowed {
                action: "issue a code for",
                what: format!("order {order_id}"),
                why: "its product delivers online Licenses (Model B), not codes".to_owned(),
            });
        }
        let line = &order.lines[index];
        let auth = AuthCode {
            code: format!("PL{}", random_alnum(MAX_ID_LEN - 2)),
            order_id: order.order_id.clone(),
            order_line_id: line.order_line_id.clone(),
            product_id: line.product_id.clone(),
            amount: line.linear_value,
            state: CodeState::Unreceived,
            activated_at: None,
            effect_time: None,
            expire_time: line.expire_time,
            heartbeats: 0,
            test: order.test,
        };
        self.codes.insert(auth.code.clone(), auth.clone());
        Ok(auth)
    }

    /// A code, with its state settled against `now`.
    #[must_use]
    pub fn code(&mut self, code: &str, now: OffsetDateTime) -> Option<AuthCode> {
        let auth = self.codes.get_mut(code)?;
        auth.settle(now);
        Some(auth.clone())
    }

    fn code_mut(&mut self, code: &str, now: OffsetDateTime) -> Result<&mut AuthCode, MarketError> {
        let auth = self
            .codes
            .get_mut(code)
            .ok_or_else(|| MarketError::UnknownCode(crate::redact(code)))?;
        auth.settle(now);
        Ok(auth)
    }

    /// The user accepts (验收) the code.
    ///
    /// # Errors
    /// Unknown code, or already accepted.
    pub fn accept_code(
        &mut self,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<AuthCode, MarketError> {
        let auth = self.code_mut(code, now)?;
        if auth.state != CodeState::Unreceived {
            return Err(not_allowed("accept", code, auth.state));
        }
        auth.state = CodeState::Received;
        Ok(auth.clone())
    }

    /// Activates codes, all or none (v1 passes one).
    ///
    /// # Errors
    /// The documented `error_code`: 92020005/92020020 unknown, 92020004 not received,
    /// 92020003 any other state, 92020002 an effect time before the order time.
    pub fn activate(
        &mut self,
        codes: &[String],
        real_effect_time: Option<KooTime>,
        batch: bool,
        now: OffsetDateTime,
    ) -> Result<Vec<AuthCode>, ApiRefusal> {
        for code in codes {
            let Some(auth) = self.codes.get_mut(code) else {
                return Err(if batch {
                    ApiRefusal::new(LicenseApiCode::InvalidCodeInBatch)
                } else {
                    ApiRefusal::new(LicenseApiCode::NotExist)
                });
            };
            auth.settle(now);
            match auth.state {
                CodeState::Unreceived => {
                    return Err(ApiRefusal::with(
                        LicenseApiCode::NotReceived,
                        "can not active before user received.",
                    ));
                }
                CodeState::Received => {}
                _ => {
                    return Err(ApiRefusal::with(
                        LicenseApiCode::IllegalState,
                        "illegal state",
                    ));
                }
            }
            if let Some(effect) = real_effect_time {
                let order_time = self.orders.get(&auth.order_id).map(|o| o.create_time);
                if order_time.is_some_and(|t| effect.datetime() < t) {
                    return Err(ApiRefusal::with(
                        LicenseApiCode::InvalidParam,
                        "real_effect_time is earlier than the order time",
                    ));
                }
            }
        }
        let mut activated = Vec::with_capacity(codes.len());
        for code in codes {
            if let Some(auth) = self.codes.get_mut(code) {
                auth.state = CodeState::Alive;
                auth.activated_at = Some(now);
                auth.effect_time = Some(real_effect_time.map_or(now, KooTime::datetime));
                auth.settle(now);
                activated.push(auth.clone());
            }
        }
        Ok(activated)
    }

    /// Heartbeat (query) for codes.
    ///
    /// # Errors
    /// 92020005 (92020020 in a batch) for an unknown code, 92020011 for one never activated.
    pub fn heartbeat(
        &mut self,
        codes: &[String],
        batch: bool,
        now: OffsetDateTime,
    ) -> Result<Vec<CodeStatusReport>, ApiRefusal> {
        for code in codes {
            let Some(auth) = self.codes.get_mut(code) else {
                return Err(if batch {
                    ApiRefusal::new(LicenseApiCode::InvalidCodeInBatch)
                } else {
                    ApiRefusal::with(LicenseApiCode::NotExist, "license code notexist")
                });
            };
            auth.settle(now);
            if matches!(auth.state, CodeState::Unreceived | CodeState::Received) {
                return Err(ApiRefusal::with(
                    LicenseApiCode::NotActivated,
                    "license code has been not activated.",
                ));
            }
        }
        let mut reports = Vec::with_capacity(codes.len());
        for code in codes {
            if let Some(auth) = self.codes.get_mut(code) {
                auth.heartbeats += 1;
                reports.push(CodeStatusReport {
                    code: auth.code.clone(),
                    status: auth.heartbeat_status(),
                    activate_time: auth.activated_at,
                    expire_time: auth.expire_time,
                    product_id: auth.product_id.clone(),
                    order_id: auth.order_id.clone(),
                    amount: auth.amount,
                });
            }
        }
        Ok(reports)
    }

    /// Stores usage reports; returns the codes that were refused (unknown or never activated).
    pub fn record_usage(
        &mut self,
        reports: Vec<(String, Vec<UsageEntry>)>,
        now: OffsetDateTime,
    ) -> Vec<String> {
        let mut refused = Vec::new();
        for (code, entries) in reports {
            let known = self.codes.get_mut(&code).is_some_and(|auth| {
                auth.settle(now);
                !matches!(auth.state, CodeState::Unreceived | CodeState::Received)
            });
            if !known {
                refused.push(code);
                continue;
            }
            let list = self.usage.entry(code).or_default();
            list.push(UsageReport {
                reported_at: now,
                entries,
            });
            if list.len() > MAX_USAGE_REPORTS_PER_CODE {
                let excess = list.len() - MAX_USAGE_REPORTS_PER_CODE;
                list.drain(..excess);
            }
        }
        refused
    }

    /// The usage reports stored for a code.
    #[must_use]
    pub fn usage(&self, code: &str) -> Vec<UsageReport> {
        self.usage.get(code).cloned().unwrap_or_default()
    }

    fn follow_up_order(
        &mut self,
        base_order_id: &str,
        order_type: OrderType,
        product_id: &str,
        expire_time: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Order {
        let base = self.orders.get(base_order_id).cloned();
        let order_id = self.next_order_id(now);
        let (model, buyer, test, template) = match base {
            Some(b) => (b.model, b.buyer, b.test, b.lines.into_iter().next()),
            None => (
                LicenseModel::AuthorizationCode,
                Buyer::for_customer(DEFAULT_CUSTOMER_ID),
                false,
                None,
            ),
        };
        let line = OrderLine {
            order_line_id: format!("{order_id}-000001"),
            charging_mode: template
                .as_ref()
                .map_or(ChargingMode::Period, |l| l.charging_mode),
            period_type: template.as_ref().and_then(|l| l.period_type),
            period_number: template.as_ref().and_then(|l| l.period_number),
            expire_time,
            product_id: product_id.to_owned(),
            sku_code: template
                .as_ref()
                .map_or_else(|| format!("{product_id}-SKU"), |l| l.sku_code.clone()),
            product_name: template.as_ref().map_or_else(
                || format!("Product {product_id}"),
                |l| l.product_name.clone(),
            ),
            linear_value: template.as_ref().map_or(1, |l| l.linear_value),
            instance_id: template.and_then(|l| l.instance_id),
        };
        let order = Order {
            order_id: order_id.clone(),
            order_type,
            create_time: now,
            model,
            buyer,
            lines: vec![line],
            test,
            failed: false,
        };
        self.orders.insert(order_id, order.clone());
        order
    }

    /// Renews (or shortens, on a renewal cancellation) a code: a new order, refreshLicenseCode,
    /// and UNFREEZE first when the code was frozen.
    ///
    /// # Errors
    /// Unknown or released code, or the trial scene (Model B only).
    pub fn renew_code(
        &mut self,
        code: &str,
        renewal: &Renewal,
        now: OffsetDateTime,
    ) -> Result<(AuthCode, Vec<Callback>), MarketError> {
        let scene = renewal.scene.unwrap_or(RenewScene::Renewal);
        if scene == RenewScene::TrialToFormal {
            return Err(MarketError::Invalid(
                "refreshLicenseCode knows only RENEWAL and UNSUBSCRIBE_RENEWAL_PERIOD".to_owned(),
            ));
        }
        let auth = self.code_mut(code, now)?.clone();
        if auth.state == CodeState::Released {
            return Err(not_allowed("renew", code, auth.state));
        }
        let product_id = renewal
            .product_id
            .clone()
            .unwrap_or(auth.product_id.clone());
        check_id("product_id", &product_id)?;
        let new_expiry = renewal.expire_time.datetime();
        let order = self.follow_up_order(
            &auth.order_id,
            scene.order_type(),
            &product_id,
            Some(new_expiry),
            now,
        );
        let mut callbacks = Vec::new();
        let auth = self.code_mut(code, now)?;
        if auth.state == CodeState::Frozen && new_expiry > now {
            callbacks.push(Callback::UpdateLicenseCodeStatus {
                license: code.to_owned(),
                freeze: false,
                test: auth.test,
            });
        }
        auth.expire_time = Some(new_expiry);
        auth.product_id.clone_from(&product_id);
        if matches!(auth.state, CodeState::Expired | CodeState::Frozen) && new_expiry > now {
            auth.state = CodeState::Alive;
        }
        auth.settle(now);
        callbacks.insert(
            0,
            Callback::RefreshLicenseCode {
                license: code.to_owned(),
                scene,
                order_id: order.order_id.clone(),
                order_line_id: order.lines[0].order_line_id.clone(),
                product_id: renewal.product_id.clone(),
                expire_time: new_expiry,
                test: auth.test,
            },
        );
        Ok((auth.clone(), callbacks))
    }

    /// Expires a code now (the operator's shortcut for "its period ran out").
    ///
    /// # Errors
    /// Unknown code, or a code that is not ALIVE.
    pub fn expire_code(
        &mut self,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<AuthCode, MarketError> {
        let auth = self.code_mut(code, now)?;
        if auth.state != CodeState::Alive {
            return Err(not_allowed("expire", code, auth.state));
        }
        auth.expire_time = Some(now);
        auth.state = CodeState::Expired;
        Ok(auth.clone())
    }

    /// Freezes a code (expired without renewal, or a violation): updateLicenseCodeStatus FREEZE.
    ///
    /// # Errors
    /// Unknown code, or one that is not ALIVE or EXPIRED.
    pub fn freeze_code(
        &mut self,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<(AuthCode, Callback), MarketError> {
        let auth = self.code_mut(code, now)?;
        if !matches!(auth.state, CodeState::Alive | CodeState::Expired) {
            return Err(not_allowed("freeze", code, auth.state));
        }
        auth.state = CodeState::Frozen;
        let cb = Callback::UpdateLicenseCodeStatus {
            license: code.to_owned(),
            freeze: true,
            test: auth.test,
        };
        Ok((auth.clone(), cb))
    }

    /// Unfreezes a frozen code: updateLicenseCodeStatus UNFREEZE. It is ALIVE again, or EXPIRED
    /// if its expiry has passed (renew first for a real unfreeze).
    ///
    /// # Errors
    /// Unknown code, or one that is not frozen.
    pub fn unfreeze_code(
        &mut self,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<(AuthCode, Callback), MarketError> {
        let auth = self.code_mut(code, now)?;
        if auth.state != CodeState::Frozen {
            return Err(not_allowed("unfreeze", code, auth.state));
        }
        auth.state = CodeState::Alive;
        auth.settle(now);
        let cb = Callback::UpdateLicenseCodeStatus {
            license: code.to_owned(),
            freeze: false,
            test: auth.test,
        };
        Ok((auth.clone(), cb))
    }

    /// Releases a code: releaseLicenseCode. With `unsubscribe`, an UNSUBSCRIBE order is created
    /// and named in the callback.
    ///
    /// # Errors
    /// Unknown code, or one already released.
    pub fn release_code(
        &mut self,
        code: &str,
        unsubscribe: bool,
        now: OffsetDateTime,
    ) -> Result<(AuthCode, Callback), MarketError> {
        let auth = self.code_mut(code, now)?.clone();
        if auth.state == CodeState::Released {
            return Err(not_allowed("release", code, auth.state));
        }
        let unsub = unsubscribe.then(|| {
            self.follow_up_order(
                &auth.order_id,
                OrderType::Unsubscribe,
                &auth.product_id,
                None,
                now,
            )
        });
        let auth = self.code_mut(code, now)?;
        auth.state = CodeState::Released;
        let cb = Callback::ReleaseLicenseCode {
            license: code.to_owned(),
            order_id: unsub.as_ref().map(|o| o.order_id.clone()),
            order_line_id: unsub.map(|o| o.lines[0].order_line_id.clone()),
            test: auth.test,
        };
        Ok((auth.clone(), cb))
    }

    /// Records the instance the ISV created for an order line. Returns the instance id
    /// previously stored when it differs (an idempotency violation by the ISV).
    ///
    /// # Errors
    /// Unknown order or line, or an invalid id.
    pub fn register_instance(
        &mut self,
        order_id: &str,
        order_line_id: &str,
        instance_id: &str,
    ) -> Result<Option<String>, MarketError> {
        check_id("instanceId", instance_id)?;
        let (order, index) = self.line_mut(order_id, Some(order_line_id))?;
        let customer_id = order.buyer.customer_id.clone();
        let test = order.test;
        let line = &mut order.lines[index];
        if let Some(existing) = &line.instance_id {
            if existing != instance_id {
                return Ok(Some(existing.clone()));
            }
            return Ok(None);
        }
        line.instance_id = Some(instance_id.to_owned());
        let instance = Instance {
            instance_id: instance_id.to_owned(),
            order_id: order_id.to_owned(),
            order_line_id: order_line_id.to_owned(),
            product_id: line.product_id.clone(),
            customer_id,
            status: InstanceStatus::Active,
            expire_time: line.expire_time,
            test,
        };
        self.instances.insert(instance_id.to_owned(), instance);
        Ok(None)
    }

    /// An instance.
    #[must_use]
    pub fn instance(&self, instance_id: &str) -> Option<&Instance> {
        self.instances.get(instance_id)
    }

    fn instance_mut(&mut self, instance_id: &str) -> Result<&mut Instance, MarketError> {
        self.instances
            .get_mut(instance_id)
            .ok_or_else(|| MarketError::UnknownInstance(instance_id.to_owned()))
    }

    /// Renews an instance (or turns a trial formal, or cancels a renewal): refreshInstance.
    ///
    /// # Errors
    /// Unknown or released instance.
    pub fn renew_instance(
        &mut self,
        instance_id: &str,
        renewal: &Renewal,
        now: OffsetDateTime,
    ) -> Result<(Instance, Vec<Callback>), MarketError> {
        let scene = renewal.scene.unwrap_or(RenewScene::Renewal);
        let instance = self.instance_mut(instance_id)?.clone();
        if instance.status == InstanceStatus::Released {
            return Err(MarketError::NotAllowed {
                action: "renew",
                what: format!("instance {instance_id}"),
                why: "it is released".to_owned(),
            });
        }
        let product_id = renewal
            .product_id
            .clone()
            .unwrap_or(instance.product_id.clone());
        check_id("product_id", &product_id)?;
        let new_expiry = renewal.expire_time.datetime();
        let order = self.follow_up_order(
            &instance.order_id,
            scene.order_type(),
            &product_id,
            Some(new_expiry),
            now,
        );
        let instance = self.instance_mut(instance_id)?;
        let mut callbacks = vec![Callback::RefreshInstance {
            instance_id: instance_id.to_owned(),
            scene,
            order_id: order.order_id.clone(),
            order_line_id: order.lines[0].order_line_id.clone(),
            product_id: renewal.product_id.clone(),
            expire_time: new_expiry,
            test: instance.test,
        }];
        if instance.status == InstanceStatus::Frozen && new_expiry > now {
            instance.status = InstanceStatus::Active;
            callbacks.push(Callback::UpdateInstanceStatus {
                instance_id: instance_id.to_owned(),
                freeze: false,
                test: instance.test,
            });
        }
        instance.expire_time = Some(new_expiry);
        instance.product_id = product_id;
        Ok((instance.clone(), callbacks))
    }

    /// Freezes (`freeze`) or unfreezes an instance: updateInstanceStatus.
    ///
    /// # Errors
    /// Unknown instance, or the wrong state for the transition.
    pub fn set_instance_frozen(
        &mut self,
        instance_id: &str,
        freeze: bool,
    ) -> Result<(Instance, Callback), MarketError> {
        let instance = self.instance_mut(instance_id)?;
        let (from, to) = if freeze {
            (InstanceStatus::Active, InstanceStatus::Frozen)
        } else {
            (InstanceStatus::Frozen, InstanceStatus::Active)
        };
        if instance.status != from {
            return Err(MarketError::NotAllowed {
                action: if freeze { "freeze" } else { "unfreeze" },
                what: format!("instance {instance_id}"),
                why: format!("it is {:?}", instance.status),
            });
        }
        instance.status = to;
        let cb = Callback::UpdateInstanceStatus {
            instance_id: instance_id.to_owned(),
            freeze,
            test: instance.test,
        };
        Ok((instance.clone(), cb))
    }

    /// Releases an instance: releaseInstance (with an UNSUBSCRIBE order when `unsubscribe`).
    ///
    /// # Errors
    /// Unknown or already released instance.
    pub fn release_instance(
        &mut self,
        instance_id: &str,
        unsubscribe: bool,
        now: OffsetDateTime,
    ) -> Result<(Instance, Callback), MarketError> {
        let instance = self.instance_mut(instance_id)?.clone();
        if instance.status == InstanceStatus::Released {
            return Err(MarketError::NotAllowed {
                action: "release",
                what: format!("instance {instance_id}"),
                why: "it is already released".to_owned(),
            });
        }
        let unsub = unsubscribe.then(|| {
            self.follow_up_order(
                &instance.order_id,
                OrderType::Unsubscribe,
                &instance.product_id,
                None,
                now,
            )
        });
        let instance = self.instance_mut(instance_id)?;
        instance.status = InstanceStatus::Released;
        let cb = Callback::ReleaseInstance {
            instance_id: instance_id.to_owned(),
            order_id: unsub.as_ref().map(|o| o.order_id.clone()),
            order_line_id: unsub.map(|o| o.lines[0].order_line_id.clone()),
            test: instance.test,
        };
        Ok((instance.clone(), cb))
    }

    /// Opens a License event for an instance: getLicenseAsync with a fresh `eventId`.
    ///
    /// # Errors
    /// Unknown or non-active instance, or an invalid fingerprint or window.
    pub fn request_license(
        &mut self,
        instance_id: &str,
        req: &LicenseRequest,
        now: OffsetDateTime,
    ) -> Result<(MarketEvent, Callback), MarketError> {
        let fingerprint = req.device_fingerprint.trim();
        if fingerprint.is_empty() || fingerprint.chars().count() > MAX_CHARACTERS_LEN {
            return Err(MarketError::Invalid(format!(
                "device_fingerprint must be 1 to {MAX_CHARACTERS_LEN} characters"
            )));
        }
        let instance = self.instance_mut(instance_id)?;
        if instance.status != InstanceStatus::Active {
            return Err(MarketError::NotAllowed {
                action: "request a License for",
                what: format!("instance {instance_id}"),
                why: format!("it is {:?}", instance.status),
            });
        }
        let effective_time = req.effective_time.map_or(now, KooTime::datetime);
        let expire_time = req
            .expire_time
            .map(KooTime::datetime)
            .or(instance.expire_time);
        if expire_time.is_some_and(|e| e <= effective_time) {
            return Err(MarketError::Invalid(
                "expire_time must lie after effective_time".to_owned(),
            ));
        }
        let event = MarketEvent {
            event_id: format!("EV{}", random_alnum(30)),
            instance_id: instance_id.to_owned(),
            fingerprint: fingerprint.to_owned(),
            effective_time,
            expire_time,
            created_at: now,
            delivery: None,
            uploads: 0,
            content_changed: false,
        };
        let cb = Callback::GetLicenseAsync {
            instance_id: instance_id.to_owned(),
            event_id: event.event_id.clone(),
            effective_time,
            expire_time,
            device_fingerprint: event.fingerprint.clone(),
            test: instance.test,
        };
        self.events.insert(event.event_id.clone(), event.clone());
        Ok((event, cb))
    }

    /// Stores an uploaded License for an event (a re-upload replaces it).
    ///
    /// # Errors
    /// Unknown event.
    pub fn store_delivery(
        &mut self,
        event_id: &str,
        delivery: Delivery,
    ) -> Result<MarketEvent, MarketError> {
        let event = self
            .events
            .get_mut(event_id)
            .ok_or_else(|| MarketError::UnknownEvent(event_id.to_owned()))?;
        if event
            .delivery
            .as_ref()
            .is_some_and(|old| old.sha256 != delivery.sha256)
        {
            event.content_changed = true;
        }
        event.delivery = Some(delivery);
        event.uploads = event.uploads.saturating_add(1);
        Ok(event.clone())
    }

    /// An event.
    #[must_use]
    pub fn event(&self, event_id: &str) -> Option<&MarketEvent> {
        self.events.get(event_id)
    }

    /// The most recent delivered License of an instance, with its event.
    #[must_use]
    pub fn latest_delivery(&self, instance_id: &str) -> Option<&MarketEvent> {
        self.events
            .values()
            .filter(|e| e.instance_id == instance_id && e.delivery.is_some())
            .max_by_key(|e| e.delivery.as_ref().map(|d| d.uploaded_at))
    }
}

fn not_allowed(action: &'static str, code: &str, state: CodeState) -> MarketError {
    MarketError::NotAllowed {
        action,
        what: format!("code {}", crate::redact(code)),
        why: format!("it is {state:?}"),
    }
}

/// Constant-time comparison for tokens.
mod subtle_compare {
    pub(super) fn eq(a: &[u8], b: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap()
    }

    fn code_order(market: &mut Market) -> AuthCode {
        let (order, cb) = market
            .create_order(
                &NewOrder::yearly(LicenseModel::AuthorizationCode, "P-A"),
                t0(),
            )
            .unwrap();
        assert!(cb.is_none(), "Model A orders send no newInstance");
        market.issue_code(&order.order_id, None).unwrap()
    }

    #[test]
    fn mock_orders_are_all_served_with_their_line() {
        let market = Market::with_mock_orders(t0());
        for id in [
            "MOCKPERIODYEARNEW",
            "MOCKONETIMENEW",
            "MOCKONDEMAND",
            "MOCKONDEMANDPKG",
            "MOCKPERIODDAYTRIAL",
            "MOCKMONTYTRIALTOFORMAL",
            "MOCKMONTYUNSUBSCRIBE",
            "MOCKMONTYRENEW",
            "MOCKMONTYCHANGE",
        ] {
            let order = market.order(id).unwrap();
            assert_eq!(order.lines[0].order_line_id, format!("{id}-000001"));
        }
        assert!(
            market.order("MOCKONETIMENEW").unwrap().lines[0]
                .expire_time
                .is_none()
        );
        assert_eq!(
            market.order("MOCKPERIODDAYTRIAL").unwrap().order_type,
            OrderType::Trial
        );
    }

    #[test]
    fn code_lifecycle_follows_the_documented_errors() {
        let mut m = Market::new();
        let auth = code_order(&mut m);
        assert!(auth.code.starts_with("PL") && auth.code.len() == MAX_ID_LEN);
        let codes = vec![auth.code.clone()];
        assert_eq!(
            m.heartbeat(&codes, false, t0()).unwrap_err().code,
            LicenseApiCode::NotActivated
        );
        assert_eq!(
            m.activate(&codes, None, false, t0()).unwrap_err().code,
            LicenseApiCode::NotReceived
        );
        m.accept_code(&auth.code, t0()).unwrap();
        assert_eq!(
            m.heartbeat(&codes, false, t0()).unwrap_err().code,
            LicenseApiCode::NotActivated
        );
        let done = m.activate(&codes, None, false, t0()).unwrap();
        assert_eq!(done[0].state, CodeState::Alive);
        assert_eq!(
            m.activate(&codes, None, false, t0()).unwrap_err().code,
            LicenseApiCode::IllegalState
        );
        assert_eq!(m.heartbeat(&codes, false, t0()).unwrap()[0].status, "ALIVE");
        // A year later the code has expired by itself.
        let later = t0() + Duration::days(400);
        assert_eq!(
            m.heartbeat(&codes, false, later).unwrap()[0].status,
            "EXPIRED"
        );
        let (_, cb) = m.freeze_code(&auth.code, later).unwrap();
        assert!(matches!(
            cb,
            Callback::UpdateLicenseCodeStatus { freeze: true, .. }
        ));
        let (renewed, cbs) = m
            .renew_code(
                &auth.code,
                &Renewal {
                    expire_time: KooTime::new(later + Duration::days(365)),
                    scene: None,
                    product_id: None,
                },
                later,
            )
            .unwrap();
        assert_eq!(renewed.state, CodeState::Alive);
        assert!(matches!(cbs[0], Callback::RefreshLicenseCode { .. }));
        assert!(matches!(
            cbs[1],
            Callback::UpdateLicenseCodeStatus { freeze: false, .. }
        ));
        let (_, cb) = m.release_code(&auth.code, true, later).unwrap();
        assert!(matches!(
            cb,
            Callback::ReleaseLicenseCode {
                order_id: Some(_),
                ..
            }
        ));
        assert_eq!(
            m.heartbeat(&codes, false, later).unwrap()[0].status,
            "RELEASED"
        );
        assert!(m.release_code(&auth.code, false, later).is_err());
    }

    #[test]
    fn unknown_codes_differ_between_single_and_batch() {
        let mut m = Market::new();
        let unknown = vec!["PLNOPE".to_owned()];
        assert_eq!(
            m.activate(&unknown, None, false, t0()).unwrap_err().code,
            LicenseApiCode::NotExist
        );
        assert_eq!(
            m.activate(&unknown, None, true, t0()).unwrap_err().code,
            LicenseApiCode::InvalidCodeInBatch
        );
        assert_eq!(
            m.heartbeat(&unknown, false, t0()).unwrap_err().code,
            LicenseApiCode::NotExist
        );
    }

    #[test]
    fn batch_activation_is_all_or_nothing() {
        let mut m = Market::new();
        let a = code_order(&mut m);
        let b = code_order(&mut m);
        m.accept_code(&a.code, t0()).unwrap();
        let both = vec![a.code.clone(), b.code.clone()];
        assert_eq!(
            m.activate(&both, None, true, t0()).unwrap_err().code,
            LicenseApiCode::NotReceived
        );
        assert_eq!(m.code(&a.code, t0()).unwrap().state, CodeState::Received);
    }

    #[test]
    fn effect_time_before_the_order_is_refused() {
        let mut m = Market::new();
        let a = code_order(&mut m);
        m.accept_code(&a.code, t0()).unwrap();
        let early = KooTime::new(t0() - Duration::days(1));
        assert_eq!(
            m.activate(&[a.code], Some(early), false, t0())
                .unwrap_err()
                .code,
            LicenseApiCode::InvalidParam
        );
    }

    #[test]
    fn model_b_instance_events_and_deliveries() {
        let mut m = Market::new();
        let (order, cb) = m
            .create_order(&NewOrder::yearly(LicenseModel::OnlineLicense, "P-B"), t0())
            .unwrap();
        assert!(matches!(cb, Some(Callback::NewInstance { .. })));
        assert!(m.issue_code(&order.order_id, None).is_err());
        let line = order.lines[0].order_line_id.clone();
        assert_eq!(
            m.register_instance(&order.order_id, &line, "inst-1")
                .unwrap(),
            None
        );
        assert_eq!(
            m.register_instance(&order.order_id, &line, "inst-1")
                .unwrap(),
            None
        );
        assert_eq!(
            m.register_instance(&order.order_id, &line, "inst-2")
                .unwrap(),
            Some("inst-1".to_owned())
        );
        let req = LicenseRequest {
            device_fingerprint: "04:7C:16:5E:E3:5D|DISK||CPU".into(),
            effective_time: None,
            expire_time: None,
        };
        let (event, cb) = m.request_license("inst-1", &req, t0()).unwrap();
        assert!(matches!(
            cb,
            Callback::GetLicenseAsync {
                expire_time: Some(_),
                ..
            }
        ));
        assert!(m.latest_delivery("inst-1").is_none());
        m.store_delivery(
            &event.event_id,
            Delivery {
                payload: LicensePayload::Characters { text: "LIC".into() },
                sha256: String::new(),
                uploaded_at: t0(),
            },
        )
        .unwrap();
        assert_eq!(
            m.latest_delivery("inst-1").unwrap().event_id,
            event.event_id
        );
        assert!(matches!(
            m.store_delivery(
                "EVNOPE",
                m.event(&event.event_id).unwrap().delivery.clone().unwrap()
            ),
            Err(MarketError::UnknownEvent(_))
        ));
        m.set_instance_frozen("inst-1", true).unwrap();
        assert!(m.request_license("inst-1", &req, t0()).is_err());
        assert!(m.set_instance_frozen("inst-1", true).is_err());
        let (inst, cbs) = m
            .renew_instance(
                "inst-1",
                &Renewal {
                    expire_time: KooTime::new(t0() + Duration::days(800)),
                    scene: Some(RenewScene::Renewal),
                    product_id: None,
                },
                t0(),
            )
            .unwrap();
        assert_eq!(inst.status, InstanceStatus::Active);
        assert_eq!(cbs.len(), 2);
        m.release_instance("inst-1", false, t0()).unwrap();
        assert!(m.release_instance("inst-1", false, t0()).is_err());
    }

    #[test]
    fn usage_is_refused_for_codes_never_activated() {
        let mut m = Market::new();
        let a = code_order(&mut m);
        let entries = vec![UsageEntry {
            id: Some("alice".into()),
            active_num: None,
        }];
        let refused = m.record_usage(vec![(a.code.clone(), entries.clone())], t0());
        assert_eq!(refused, vec![a.code.clone()]);
        m.accept_code(&a.code, t0()).unwrap();
        m.activate(std::slice::from_ref(&a.code), None, false, t0())
            .unwrap();
        assert!(
            m.record_usage(vec![(a.code.clone(), entries)], t0())
                .is_empty()
        );
        assert_eq!(m.usage(&a.code).len(), 1);
    }

    #[test]
    fn buyer_tokens_are_stable_and_resolve_back() {
        let mut m = Market::new();
        let t = m.buyer_token("acme");
        assert_eq!(m.buyer_token("acme"), t);
        assert_eq!(m.buyer_of_token(&t), Some("acme"));
        assert_eq!(m.buyer_of_token("nope"), None);
    }
}
