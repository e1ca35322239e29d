//! Model B order query (PROTOCOL.md §2.2.1):
//! `GET …/v1/order/query?orderId=…&orderLineId=…` → `{resultCode, resultMsg, orderInfo}`.

use serde::{Deserialize, Serialize};
use tessera_types::{KooTime, MktCode};

use super::{FieldError, lenient, open_enum, optional, required};

/// The order query answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderQueryResponse {
    /// `MKT.0000` on success (PROTOCOL.md §3.2), kept as received.
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub result_code: String,
    /// The marketplace's message.
    #[serde(default, deserialize_with = "lenient::nullable_string::deserialize")]
    pub result_msg: String,
    /// The order, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_info: Option<OrderInfo>,
}

impl OrderQueryResponse {
    /// The result code, or `None` when this build does not know it.
    #[must_use]
    pub fn code(&self) -> Option<MktCode> {
        MktCode::parse(&self.result_code)
    }

    /// Whether the query succeeded (`MKT.0000`).
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.code() == Some(MktCode::Success)
    }

    /// An error answer with the documented message for `code`.
    #[must_use]
    pub fn error(code: MktCode) -> Self {
        Self {
            result_code: code.code().to_owned(),
            result_msg: code.meaning().to_owned(),
            order_info: None,
        }
    }

    /// Checks the envelope and, when present, the order.
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        required("resultCode", &self.result_code, 16)?;
        super::max_len("resultMsg", &self.result_msg, 1024)?;
        self.order_info.as_ref().map_or(Ok(()), OrderInfo::validate)
    }
}

open_enum! {
    /// `orderType`.
    OrderType {
        /// A new purchase.
        New = "NEW",
        /// A trial.
        Trial = "TRIAL",
        /// A trial turned into a purchase.
        TrialToFormal = "TRIAL_TO_FORMAL",
        /// An unsubscription.
        Unsubscribe = "UNSUBSCRIBE",
        /// A renewal.
        Renew = "RENEW",
        /// A specification change.
        Change = "CHANGE",
    }
}

open_enum! {
    /// `chargingMode` of an order line.
    ChargingMode {
        /// Pay per use.
        OnDemand = "ON_DEMAND",
        /// Paid once.
        OneTime = "ONE_TIME",
        /// Periodic subscription.
        Period = "PERIOD",
        /// Prepaid usage package.
        OnDemandPkg = "ON_DEMAND_PKG",
    }
}

/// `orderInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderInfo {
    /// The order id (M, 64).
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub order_id: String,
    /// The order type (M, 32).
    pub order_type: OrderType,
    /// When the order was placed (M, `yyyyMMddHHmmss`).
    pub create_time: KooTime,
    /// The order lines (M).
    #[serde(default)]
    pub order_line: Vec<OrderLine>,
    /// The buyer (O).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_info: Option<BuyerInfo>,
    /// Extension parameters (O).
    #[serde(default)]
    pub extend_params: Vec<ExtendParam>,
}

impl OrderInfo {
    /// Checks the documented lengths of the order and its lines.
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        required("orderInfo.orderId", &self.order_id, 64)?;
        required("orderInfo.orderType", self.order_type.as_str(), 32)?;
        for (i, line) in self.order_line.iter().enumerate() {
            let at = format!("orderInfo.orderLine[{i}]");
            required(&format!("{at}.orderLineId"), &line.order_line_id, 64)?;
            required(
                &format!("{at}.chargingMode"),
                line.charging_mode.as_str(),
                25,
            )?;
        }
        Ok(())
    }
}

/// One order line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// The line id (M, 64), e.g. `MOCKPERIODYEARNEW-000001`.
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub order_line_id: String,
    /// How the line is charged (M).
    pub charging_mode: ChargingMode,
    /// When the line expires (O).
    #[serde(
        default,
        with = "tessera_types::time::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub expire_time: Option<KooTime>,
    /// `year`, `month`, `day`… (O).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub period_type: Option<String>,
    /// How many periods (O).
    #[serde(
        default,
        with = "lenient::opt_uint",
        skip_serializing_if = "Option::is_none"
    )]
    pub period_number: Option<u64>,
    /// The products of the line.
    #[serde(default)]
    pub product_info: Vec<ProductInfo>,
    /// Extension parameters (O).
    #[serde(default)]
    pub extend_params: Vec<ExtendParam>,
    /// Currency (O).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub currency: Option<String>,
    /// The amount after discount (O); documented as a string, tolerated as a number.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub currency_after_discount: Option<String>,
}

/// One product of an order line.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductInfo {
    /// Product id.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub product_id: Option<String>,
    /// SKU code.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub sku_code: Option<String>,
    /// The quantity (linear) attribute, e.g. the number of seats.
    #[serde(
        default,
        with = "lenient::opt_uint",
        skip_serializing_if = "Option::is_none"
    )]
    pub linear_value: Option<u64>,
    /// Product name.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub product_name: Option<String>,
}

/// `buyerInfo`. Every field is optional here: the sample redacts them and nothing in a License
/// decision depends on them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct BuyerInfo {
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub mobile_phone: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub email: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub customer_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub customer_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub customer_real_name: Option<String>,
    /// A number in the sample (`0`); kept as text.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub customer_type: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_name: Option<String>,
}

/// A `{name, value}` extension parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendParam {
    /// Parameter name.
    #[serde(deserialize_with = "lenient::string::deserialize")]
    pub name: String,
    /// Parameter value.
    #[serde(default, deserialize_with = "lenient::nullable_string::deserialize")]
    pub value: String,
}

/// The query parameters of an order query: `orderId` (M, 64) and `orderLineId` (O, 64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderQuery {
    /// The order id.
    pub order_id: String,
    /// The order line id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_line_id: Option<String>,
}

impl OrderQuery {
    /// Checks both ids.
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        required("orderId", &self.order_id, 64)?;
        optional("orderLineId", self.order_line_id.as_deref(), 64)
    }

    /// The query pairs in wire order.
    #[must_use]
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![("orderId".to_owned(), self.order_id.clone())];
        if let Some(line) = &self.order_line_id {
            v.push(("orderLineId".to_owned(), line.clone()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"resultCode":"MKT.0000","resultMsg":"Success",
 "orderInfo":{"orderId":"CS2411210908XXXX","orderType":"NEW","createTime":"20241121090846",
  "orderLine":[{"orderLineId":"CS2411210908XXXX-000001","chargingMode":"PERIOD","periodType":"year","periodNumber":1,
    "expireTime":"20251121235959",
    "productInfo":[{"productId":"p","skuCode":"s","linearValue":50,"productName":"n"}],
    "extendParams":[],"currency":"CNY","currencyAfterDiscount":"1.00"}],
  "buyerInfo":{"mobilePhone":"m","email":"e","customerId":"c","customerName":"n","customerRealName":"r","customerType":0,"userId":"u","userName":"un"},
  "extendParams":[], "somethingNew": 1}}"#;

    #[test]
    fn documented_sample_parses_and_round_trips() {
        let r: OrderQueryResponse = serde_json::from_str(SAMPLE).unwrap();
        assert!(r.is_success());
        r.validate().unwrap();
        let o = r.order_info.as_ref().unwrap();
        assert_eq!(o.order_type, OrderType::New);
        assert_eq!(o.create_time, KooTime::parse("20241121090846").unwrap());
        let line = &o.order_line[0];
        assert_eq!(line.charging_mode, ChargingMode::Period);
        assert_eq!(line.period_number, Some(1));
        assert_eq!(line.product_info[0].linear_value, Some(50));
        assert_eq!(
            o.buyer_info.as_ref().unwrap().customer_type.as_deref(),
            Some("0")
        );
        let back: OrderQueryResponse =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn numbers_as_strings_and_unknown_enums_are_tolerated() {
        let r: OrderQueryResponse = serde_json::from_str(
            r#"{"resultCode":"MKT.0000","resultMsg":"ok","orderInfo":{"orderId":123,"orderType":"SWAP",
            "createTime":"2024-11-21 09:08:46","orderLine":[{"orderLineId":"x","chargingMode":"LEASE",
            "periodNumber":"12","productInfo":[{"linearValue":"7"}],"expireTime":""}]}}"#,
        )
        .unwrap();
        let o = r.order_info.unwrap();
        assert_eq!(o.order_id, "123");
        assert_eq!(o.order_type, OrderType::Other("SWAP".into()));
        assert!(!o.order_type.is_known());
        assert_eq!(o.order_line[0].period_number, Some(12));
        assert_eq!(o.order_line[0].product_info[0].linear_value, Some(7));
        assert_eq!(o.order_line[0].expire_time, None);
        assert_eq!(
            o.order_line[0].charging_mode,
            ChargingMode::Other("LEASE".into())
        );
    }

    #[test]
    fn error_answer_without_order_parses() {
        let r: OrderQueryResponse =
            serde_json::from_str(r#"{"resultCode":"MKT.0154","resultMsg":"Illegal token"}"#)
                .unwrap();
        assert_eq!(r.code(), Some(MktCode::IllegalToken));
        assert!(r.order_info.is_none());
        let q = OrderQuery {
            order_id: String::new(),
            order_line_id: None,
        };
        assert_eq!(q.validate().unwrap_err().field, "orderId");
    }
}
