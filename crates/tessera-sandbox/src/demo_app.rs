//! The demo app: what a CAD/CAE application does through libtessera's Rust API — connect, ask
//! for its License, check out features, react to events.

use std::sync::Arc;
use std::time::Duration;

use tessera::{Client, ClientOptions, LeaseHandle, SdkError, tessera_result};
use tessera_ipc::{Endpoint, IscEvent};
use tessera_types::events::LicenseKind;
use tessera_types::{Event, EventKind, ProductState, SharedClock};
use tokio::sync::{Mutex, mpsc};

/// How long the demo app waits for an event it asked for.
pub const EVENT_WAIT: Duration = Duration::from_secs(15);

/// A demo application licensed under one product.
pub struct DemoApp {
    client: Arc<Client>,
    events: Mutex<mpsc::UnboundedReceiver<(u32, String)>>,
}

impl std::fmt::Debug for DemoApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoApp")
            .field("product_id", &self.client.product_id())
            .finish_non_exhaustive()
    }
}

impl DemoApp {
    /// Connects to the agent at `socket` as `name` `version` of `product_id`.
    ///
    /// # Errors
    /// The SDK's error when the client cannot be created or does not connect in time.
    pub async fn connect(
        socket: &std::path::Path,
        product_id: &str,
        name: &str,
        version: &str,
        clock: SharedClock,
    ) -> Result<Self, SdkError> {
        let mut options = ClientOptions::new(product_id, name, version);
        options.endpoint = Some(Endpoint::at(socket));
        options.clock = clock;
        let (tx, rx) = mpsc::unbounded_channel();
        let client = blocking(move || -> Result<Client, SdkError> {
            let client = Client::new(options)?;
            client.set_event_sink(Some(Box::new(
                move |kind: u32, json: &std::ffi::CString| {
                    let _ = tx.send((kind, json.to_string_lossy().into_owned()));
                },
            )))?;
            client.connect(Duration::from_secs(5))?;
            Ok(client)
        })
        .await?;
        Ok(Self {
            client: Arc::new(client),
            events: Mutex::new(rx),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Client) -> T + Send + 'static,
    ) -> Result<T, SdkError> {
        let client = self.client.clone();
        blocking(move || Ok(f(&client))).await
    }

    /// The SDK's in-process check of `feature` (no IPC).
    #[must_use]
    pub fn check(&self, feature: &str) -> tessera_result {
        self.client.check(feature.as_bytes())
    }

    /// The product state as the SDK last heard it.
    #[must_use]
    pub fn product_state(&self) -> Option<ProductState> {
        self.client.product_state().map(|p| (*p).clone())
    }

    /// ISCDesk `GetLicenseFileRequest`; the answer arrives as `EVENT_LICENSE_VERIFY`.
    ///
    /// # Errors
    /// The SDK's error.
    pub async fn request_license_file(&self, file_name: &str) -> Result<(), SdkError> {
        let name = file_name.to_owned();
        self.with(move |c| c.request_license(LicenseKind::File, Some(&name), ""))
            .await?
    }

    /// ISCDesk `LicenseVerifyNotify`.
    ///
    /// # Errors
    /// The SDK's error.
    pub async fn verify_notify(&self, ok: bool, message: &str) -> Result<(), SdkError> {
        let message = message.to_owned();
        self.with(move |c| c.verify_notify(ok, &message)).await?
    }

    /// Takes a seat of `feature`.
    ///
    /// # Errors
    /// The SDK's error (blocked, no seat, not licensed, …).
    pub async fn checkout(&self, feature: &str) -> Result<LeaseHandle, SdkError> {
        let feature = feature.to_owned();
        self.with(move |c| c.checkout(&feature)).await?
    }

    /// Gives a seat back.
    ///
    /// # Errors
    /// The SDK's error.
    pub async fn release(&self, lease: LeaseHandle) -> Result<(), SdkError> {
        self.with(move |c| c.release(lease)).await?
    }

    /// Activates an authorization code for this app's product.
    ///
    /// # Errors
    /// The SDK's error.
    pub async fn activate_code(&self, code: &str) -> Result<(), SdkError> {
        let code = zeroize::Zeroizing::new(code.to_owned());
        self.with(move |c| c.activate_code(&code)).await?
    }

    /// ISCDesk `CheckNewVersions`; the answer arrives as `EVENT_UPGRADENOTICE`.
    ///
    /// # Errors
    /// The SDK's error.
    pub async fn check_new_versions(&self) -> Result<(), SdkError> {
        self.with(Client::check_new_versions).await?
    }

    /// ISCDesk `UpgradeNotify(bUpgrade)`.
    ///
    /// # Errors
    /// The SDK's error.
    pub async fn upgrade_notify(&self, accept: bool) -> Result<(), SdkError> {
        self.with(move |c| c.upgrade_notify(accept)).await?
    }

    /// Re-evaluates the SDK's view against the clock now (after the story's clock jumps).
    ///
    /// # Errors
    /// The SDK's error.
    pub async fn refresh(&self) -> Result<(), SdkError> {
        self.with(Client::refresh).await?
    }

    /// Waits for the next event of `kind`, skipping others; `None` after [`EVENT_WAIT`].
    pub async fn next_event(&self, kind: EventKind) -> Option<Result<Event, String>> {
        let mut rx = self.events.lock().await;
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        loop {
            let (number, json) = tokio::time::timeout_at(deadline, rx.recv()).await.ok()??;
            if number != kind.code() {
                continue;
            }
            return Some(
                serde_json::from_str::<IscEvent>(&json)
                    .map_err(|e| format!("the event is not ISCDesk-shaped JSON: {e}"))
                    .and_then(|e| e.to_event().map_err(|e| e.to_string())),
            );
        }
    }

    /// Disconnects. The SDK joins its IO thread on drop, so that happens off the async workers.
    pub async fn close(self) {
        let client = self.client;
        let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    }

    /// Forgets the events received so far.
    pub async fn drain_events(&self) {
        let mut rx = self.events.lock().await;
        while rx.try_recv().is_ok() {}
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SdkError> + Send + 'static,
) -> Result<T, SdkError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        Err(SdkError::new(
            tessera_result::TESSERA_PANIC,
            "the SDK call panicked",
        ))
    })
}
