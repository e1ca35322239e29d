//! The two MKT open APIs the ISV calls (order query, market-event upload), behind a trait so the
//! job queue can be exercised without a network and the production client can be swapped.

use std::future::Future;
use std::pin::Pin;

use koogallery::client::{MarketClient, MarketError};
use koogallery::wire::{OrderInfo, OrderQuery};
use tessera_types::SharedClock;

/// A boxed future, for the object-safe [`Marketplace`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a marketplace call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("marketplace call failed: {message}")]
pub struct MarketFailure {
    /// Whether trying again later can succeed (network, 5xx, rate limit).
    pub retryable: bool,
    /// The server's `Retry-After`, already turned into a wait.
    pub retry_after: Option<std::time::Duration>,
    /// What failed, for the job's `last_error` (never contains secrets).
    pub message: String,
}

/// One License upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    /// `type=FILE`: the file, sent with its SHA-256.
    File {
        /// The file name sent.
        file_name: String,
        /// The License file bytes.
        contents: Vec<u8>,
    },
    /// `type=CHARACTERS`: the License string.
    Characters(String),
}

/// The MKT open APIs used by the ISV.
pub trait Marketplace: Send + Sync + std::fmt::Debug {
    /// `GET …/order/query?orderId=…&orderLineId=…` (PROTOCOL.md §2.2.1).
    fn query_order<'a>(
        &'a self,
        order_id: &'a str,
        order_line_id: &'a str,
    ) -> BoxFuture<'a, Result<OrderInfo, MarketFailure>>;

    /// `POST …/market-event/{eventId}/file` (PROTOCOL.md §2.2.2).
    fn upload_license<'a>(
        &'a self,
        event_id: &'a str,
        upload: &'a Upload,
    ) -> BoxFuture<'a, Result<(), MarketFailure>>;
}

/// The production [`Marketplace`]: koogallery's [`MarketClient`] (APIG signing, host fallback,
/// strict TLS).
#[derive(Debug)]
pub struct HttpMarketplace {
    client: MarketClient,
    clock: SharedClock,
}

impl HttpMarketplace {
    /// Wraps a client; `clock` turns `Retry-After` dates into waits.
    #[must_use]
    pub fn new(client: MarketClient, clock: SharedClock) -> Self {
        Self { client, clock }
    }

    fn failure(&self, e: &MarketError) -> MarketFailure {
        let now = self.clock.now();
        MarketFailure {
            retryable: e.is_retryable(),
            retry_after: e.retry_after().map(|r| r.delay_from(now)),
            message: error_chain(e),
        }
    }
}

/// `error: cause: cause…`, for stored job errors.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl Marketplace for HttpMarketplace {
    fn query_order<'a>(
        &'a self,
        order_id: &'a str,
        order_line_id: &'a str,
    ) -> BoxFuture<'a, Result<OrderInfo, MarketFailure>> {
        Box::pin(async move {
            let query = OrderQuery {
                order_id: order_id.to_owned(),
                order_line_id: Some(order_line_id.to_owned()),
            };
            self.client
                .query_order(&query)
                .await
                .map(|r| r.data)
                .map_err(|e| self.failure(&e))
        })
    }

    fn upload_license<'a>(
        &'a self,
        event_id: &'a str,
        upload: &'a Upload,
    ) -> BoxFuture<'a, Result<(), MarketFailure>> {
        Box::pin(async move {
            let result = match upload {
                Upload::File {
                    file_name,
                    contents,
                } => {
                    self.client
                        .upload_license_file(event_id, file_name, contents)
                        .await
                }
                Upload::Characters(s) => self.client.upload_license_string(event_id, s).await,
            };
            result.map(|_| ()).map_err(|e| self.failure(&e))
        })
    }
}
