//! The IPC side: every [`Call`] a client can make, answered from the [`Core`].
//!
//! Applications (sessions with a product id) act only on their own product; the CLI and the tray
//! (no product id) may act on any. Access to the socket itself is decided by the IPC server from
//! the kernel's peer credentials.

use time::OffsetDateTime;
use zeroize::Zeroizing;

use tessera_ipc::proto::{
    AuthCode, FingerprintInfo, LeaseId, LicenseSource, MAX_BATCH_CODES, ProductCode,
};
use tessera_ipc::{
    Call, CloseReason, ErrorCode, Lease, RemoteError, Reply, SessionHandler, SessionInfo,
};
use tessera_types::events::{DeliveredLicense, DeliveryStatus, Event, LicenseKind};
use tessera_types::state::ProductModel;
use tessera_types::{ProductState, Snapshot};

use crate::agent::Agent;
use crate::core::day_of;
use crate::db::CodeRow;
use crate::enforcement::CodeStatus;
use crate::market::{
    CODE_ILLEGAL_STATE, CODE_NOT_EXIST, CODE_NOT_RECEIVED, CodeInfo, MarketFailure, Marketplace,
};

/// Longest authorization code accepted (KooGallery: 64).
pub const MAX_CODE_LEN: usize = 64;

fn err(code: ErrorCode, message: impl Into<String>) -> RemoteError {
    RemoteError::new(code, message)
}

/// First characters and length of a code: enough to tell codes apart in status, useless to use.
pub(crate) fn code_hint(code: &str) -> String {
    let head: String = code.chars().take(4).collect();
    format!("{head}… ({} chars)", code.chars().count())
}

impl SessionHandler for Agent {
    async fn hello(&self, session: &SessionInfo) -> Result<Snapshot, RemoteError> {
        let pid = session.app.product_id.clone();
        {
            let mut st = self.core.lock();
            st.sessions.insert(session.session_id, session.clone());
        }
        if !pid.is_empty() && self.core.catalog.get(&pid).is_some() {
            self.core.mark_used(&pid);
        }
        tracing::debug!(session = %session.session_id, app = %session.app.name, product_id = %pid, "session opened");
        Ok(self.core.snapshot())
    }

    async fn request(
        &self,
        session: &SessionInfo,
        id: u64,
        call: Call,
    ) -> Result<Reply, RemoteError> {
        match call {
            Call::Status => Ok(Reply::Snapshot(self.core.snapshot())),
            Call::ActivateCode { product_id, code } => {
                let pid = self.product_for(session, product_id)?;
                self.activate(&pid, code).await.map(Reply::ProductState)
            }
            Call::ActivateCodes { codes } => self
                .activate_codes(session, codes)
                .await
                .map(Reply::Snapshot),
            Call::AgentInfo => Ok(Reply::AgentInfo(self.agent_info())),
            Call::ImportLicense { product_id, source } => {
                if let Some(p) = &product_id {
                    self.check_scope(session, p)?;
                }
                let product_id = product_id.or_else(|| {
                    (!session.app.product_id.is_empty()).then(|| session.app.product_id.clone())
                });
                let (text, kind) = read_source(source).await?;
                let ps = self
                    .import_license(product_id.as_deref(), &text, kind)
                    .await?;
                self.check_scope(session, &ps.product_id)?;
                Ok(Reply::ProductState(ps))
            }
            Call::RequestLicense {
                kind, file_name, ..
            } => {
                let pid = self.product_for(session, None)?;
                let event = self
                    .license_delivery(&pid, kind, file_name.as_deref())
                    .await;
                self.core.answer_event(session.session_id, id, &event);
                Ok(Reply::Ack)
            }
            Call::LicenseVerifyNotify { ok, message } => {
                let pid = self.product_for(session, None)?;
                let message: String = message.chars().take(1024).collect();
                let now = self.trusted_now();
                if ok {
                    tracing::info!(product_id = %pid, "application accepted its License");
                } else {
                    tracing::warn!(product_id = %pid, message = %message, "application refused its License");
                }
                self.core
                    .db
                    .record_verify_report(&pid, now, ok, &message)
                    .await
                    .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
                Ok(Reply::Ack)
            }
            Call::TrialExpired {
                kind, file_name, ..
            } => {
                let pid = self.product_for(session, None)?;
                tracing::info!(product_id = %pid, "application reports its trial expired");
                let event = self
                    .license_delivery(&pid, kind, file_name.as_deref())
                    .await;
                self.core.answer_event(session.session_id, id, &event);
                Ok(Reply::Ack)
            }
            Call::CheckNewVersions => {
                let pid = self.product_for(session, None)?;
                let available = self.check_new_versions(&pid).await;
                self.core
                    .answer_event(session.session_id, id, &Event::UpgradeNotice { available });
                Ok(Reply::Ack)
            }
            Call::UpgradeNotify { accept } => {
                let pid = self.product_for(session, None)?;
                let now = self.trusted_now();
                self.core
                    .db
                    .record_upgrade_answer(&pid, now, "app", accept)
                    .await
                    .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
                tracing::info!(product_id = %pid, accept, "application answered the upgrade offer");
                Ok(Reply::Ack)
            }
            Call::AcceptUpdate { product_id } => {
                let pid = self.product_for(session, product_id)?;
                self.accept_update(&pid).await?;
                Ok(Reply::Ack)
            }
            Call::Checkout {
                feature,
                product_id,
            } => {
                let pid = self.product_for(session, product_id)?;
                self.checkout(session, &pid, &feature).map(Reply::Lease)
            }
            Call::RenewLease { lease_id } => self.renew(session, &lease_id).map(Reply::Lease),
            Call::Release { lease_id } => {
                let mut st = self.core.lock();
                st.leases
                    .release(&session.session_id.to_string(), &lease_id.0)
                    .map_err(|e| err(ErrorCode::NotFound, e.to_string()))?;
                self.core.leases_changed.notify_one();
                Ok(Reply::Ack)
            }
            Call::Fingerprint => Ok(Reply::Fingerprint({
                let identity = self.identity();
                FingerprintInfo {
                    koogallery: identity.fingerprint.as_str().to_owned(),
                    short_form: Some(identity.fingerprint.to_request_form().as_str().to_owned()),
                    hardware_id: Some(identity.hardware_id.summary()),
                }
            })),
            Call::SetLogLevel { filter } => match &self.log_control {
                Some(control) => {
                    control(&filter).map_err(|why| err(ErrorCode::BadRequest, why))?;
                    *self
                        .log_filter
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(filter.clone());
                    tracing::info!(filter = %filter, "log filter changed");
                    Ok(Reply::Ack)
                }
                None => Err(err(
                    ErrorCode::Unsupported,
                    "this agent's log level is fixed by its host",
                )),
            },
            Call::Shutdown => {
                if !session.app.product_id.is_empty() {
                    return Err(err(
                        ErrorCode::Denied,
                        "applications may not stop the agent",
                    ));
                }
                tracing::info!("shutdown requested over IPC");
                self.shutdown_requested.notify_one();
                let _ = self.shutdown_tx.send(true);
                Ok(Reply::Ack)
            }
            Call::Subscribe { .. } => Ok(Reply::Ack),
            Call::Unsupported => Err(err(
                ErrorCode::Unsupported,
                "this agent does not serve that call",
            )),
        }
    }

    fn closed(&self, session: &SessionInfo, reason: CloseReason) {
        let mut st = self.core.lock();
        st.sessions.remove(&session.session_id);
        tracing::debug!(session = %session.session_id, ?reason, "session closed");
    }
}

async fn read_source(
    source: LicenseSource,
) -> Result<(Zeroizing<String>, LicenseKind), RemoteError> {
    match source {
        LicenseSource::Content { content } => {
            if content.0.len() > crate::licensing::MAX_LICENSE_BYTES {
                return Err(err(
                    ErrorCode::BadRequest,
                    "the License is larger than any License can be",
                ));
            }
            let kind = if content.0.trim_start().starts_with("-----") || content.0.contains('\n') {
                LicenseKind::File
            } else {
                LicenseKind::String
            };
            Ok((Zeroizing::new(content.0), kind))
        }
        LicenseSource::Path { path } => {
            let meta = tokio::fs::metadata(&path).await.map_err(|e| {
                err(
                    ErrorCode::NotFound,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            if meta.len() > crate::licensing::MAX_LICENSE_BYTES as u64 {
                return Err(err(
                    ErrorCode::BadRequest,
                    "the file is larger than any License can be",
                ));
            }
            let text = tokio::fs::read_to_string(&path).await.map_err(|e| {
                err(
                    ErrorCode::BadRequest,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Ok((Zeroizing::new(text), LicenseKind::File))
        }
    }
}

impl Agent {
    pub(crate) fn trusted_now(&self) -> OffsetDateTime {
        let st = self.core.lock();
        self.core.trusted_now(&st)
    }

    fn check_scope(&self, session: &SessionInfo, product_id: &str) -> Result<(), RemoteError> {
        if crate::core::Core::may_act_on(session, product_id) {
            Ok(())
        } else {
            Err(err(
                ErrorCode::Denied,
                "an application may act only on its own product",
            ))
        }
    }

    /// The product a call is about: the one named, else the session's.
    fn product_for(
        &self,
        session: &SessionInfo,
        named: Option<String>,
    ) -> Result<String, RemoteError> {
        let pid = match named {
            Some(p) => p,
            None if !session.app.product_id.is_empty() => session.app.product_id.clone(),
            None => return Err(err(ErrorCode::BadRequest, "name the product")),
        };
        self.check_scope(session, &pid)?;
        if self.core.catalog.get(&pid).is_none() {
            return Err(err(
                ErrorCode::NotFound,
                format!("no product descriptor for {pid:?}"),
            ));
        }
        Ok(pid)
    }

    fn product_state(&self, pid: &str) -> Result<ProductState, RemoteError> {
        self.core
            .snapshot()
            .product(pid)
            .cloned()
            .ok_or_else(|| err(ErrorCode::NotFound, "unknown product"))
    }

    /// Checks that `pid` takes authorization codes and `code` looks like one.
    fn checked_code(&self, pid: &str, code: AuthCode) -> Result<Zeroizing<String>, RemoteError> {
        if !self.core.uses(pid, ProductModel::AuthorizationCode) {
            return Err(err(
                ErrorCode::BadRequest,
                format!("product {pid:?} does not use authorization codes"),
            ));
        }
        let code = Zeroizing::new(code.0.trim().to_owned());
        if code.is_empty()
            || code.len() > MAX_CODE_LEN
            || !code.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(err(
                ErrorCode::BadRequest,
                "an authorization code is 1 to 64 printable characters",
            ));
        }
        Ok(code)
    }

    fn market(&self) -> Result<std::sync::Arc<dyn Marketplace>, RemoteError> {
        self.core
            .market
            .clone()
            .ok_or_else(|| err(ErrorCode::Unavailable, "no marketplace is configured"))
    }

    /// `ActivateCode`: activates with the marketplace, then stores the code (secrets) and its row
    /// (database) before answering, so an acknowledged activation survives a crash.
    pub(crate) async fn activate(
        &self,
        pid: &str,
        code: AuthCode,
    ) -> Result<ProductState, RemoteError> {
        let code = self.checked_code(pid, code)?;
        let pid = pid.to_owned();
        self.activate_all(vec![(pid.clone(), code)]).await?;
        self.product_state(&pid)
    }

    /// `ActivateCodes`: one v2 batch activation for several products; every accepted code is
    /// stored before answering. Refusals are reported per product after the others are stored.
    pub(crate) async fn activate_codes(
        &self,
        session: &SessionInfo,
        codes: Vec<ProductCode>,
    ) -> Result<Snapshot, RemoteError> {
        if codes.is_empty() || codes.len() > MAX_BATCH_CODES {
            return Err(err(
                ErrorCode::BadRequest,
                format!("activate 1 to {MAX_BATCH_CODES} codes at once"),
            ));
        }
        let mut checked = Vec::with_capacity(codes.len());
        for ProductCode { product_id, code } in codes {
            let pid = self.product_for(session, Some(product_id))?;
            if checked.iter().any(|(p, _)| *p == pid) {
                return Err(err(
                    ErrorCode::BadRequest,
                    format!("product {pid:?} is named twice; a product holds one code"),
                ));
            }
            let code = self.checked_code(&pid, code)?;
            checked.push((pid, code));
        }
        self.activate_all(checked).await?;
        Ok(self.core.snapshot())
    }

    async fn activate_all(
        &self,
        items: Vec<(String, Zeroizing<String>)>,
    ) -> Result<(), RemoteError> {
        let market = self.market()?;
        let codes = Zeroizing::new(
            items
                .iter()
                .map(|(_, c)| c.as_str().to_owned())
                .collect::<Vec<_>>(),
        );
        let mut attempt = 0u32;
        let answer = loop {
            match market.activate_batch(&codes).await {
                Err(MarketFailure::Unavailable { message, .. }) if attempt < 2 => {
                    attempt += 1;
                    tracing::warn!(error = %message, attempt, "activation failed; retrying");
                    let delay = crate::core::backoff_delay(attempt, &mut rand::thread_rng());
                    let delay = std::time::Duration::from_millis(
                        u64::try_from(delay.whole_milliseconds().min(500)).unwrap_or(500),
                    );
                    tokio::time::sleep(delay).await;
                }
                other => break other,
            }
        };
        let answer = answer.map_err(|e| market_error(&e))?;
        let mut refusals = Vec::new();
        for (i, (pid, code)) in items.iter().enumerate() {
            let outcome = answer.value.get(i).cloned().unwrap_or_else(|| {
                Err(MarketFailure::Unavailable {
                    message: "the marketplace answer left this code out".to_owned(),
                    retry_after: None,
                })
            });
            let (info, server_date) = match outcome {
                Ok(info) => (info, answer.server_date),
                Err(MarketFailure::Refused { code: c, .. }) if c == CODE_ILLEGAL_STATE => {
                    // Activated before (another install, or a crash before we stored it): ask.
                    match self.already_active(market.as_ref(), code).await {
                        Ok(found) => found,
                        Err(e) => {
                            refusals.push((pid.clone(), e));
                            continue;
                        }
                    }
                }
                Err(e) => {
                    refusals.push((pid.clone(), market_error(&e)));
                    continue;
                }
            };
            self.store_code(pid, code, &info, server_date).await?;
            tracing::info!(product_id = %pid, code = %code_hint(code), "authorization code activated");
        }
        self.core.wake.notify_one();
        match refusals.as_slice() {
            [] => Ok(()),
            [(_, only)] if items.len() == 1 => Err(only.clone()),
            _ => Err(err(
                refusals[0].1.code,
                format!(
                    "{} of {} codes were not activated: {}",
                    refusals.len(),
                    items.len(),
                    refusals
                        .iter()
                        .map(|(pid, e)| format!("{pid}: {}", e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )),
        }
    }

    async fn already_active(
        &self,
        market: &dyn Marketplace,
        code: &Zeroizing<String>,
    ) -> Result<(CodeInfo, Option<OffsetDateTime>), RemoteError> {
        let codes = Zeroizing::new(vec![code.to_string()]);
        let a = market
            .heartbeat(&codes)
            .await
            .map_err(|e| market_error(&e))?;
        match a.value.into_iter().next() {
            Some(Ok(info)) => Ok((info, a.server_date)),
            _ => Err(err(
                ErrorCode::BadRequest,
                "the code is in a state that cannot be activated",
            )),
        }
    }

    async fn store_code(
        &self,
        pid: &str,
        code: &Zeroizing<String>,
        info: &CodeInfo,
        server_date: Option<OffsetDateTime>,
    ) -> Result<(), RemoteError> {
        if let Some(mp) = &info.product_id
            && mp != pid
        {
            tracing::warn!(product_id = %pid, marketplace_product = %mp, "the code belongs to another marketplace product id");
        }
        let secrets = self.core.secrets.clone();
        let name = format!("code:{pid}");
        let value = code.clone();
        tokio::task::spawn_blocking(move || secrets.set(&name, value.as_bytes()))
            .await
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?
            .map_err(|e| err(ErrorCode::Unavailable, e.to_string()))?;
        let (row, time) = {
            let mut st = self.core.lock();
            let local = self.core.local_now();
            let server = server_date
                .filter(|_| self.core.settings.marketplace.trust_server_time)
                .unwrap_or(local);
            st.trusted.observe_online(local, server);
            st.time_row_forged = false;
            st.persisted_high_water = st.trusted.high_water;
            let now = self.core.trusted_now(&st);
            let row = CodeRow {
                product_id: pid.to_owned(),
                code_hint: code_hint(code),
                status: CodeStatus::from_wire(&info.status),
                expires_at: info.expires_at,
                amount: info.amount,
                activated_at: now,
                last_good_check: now,
                offline: false,
                last_attempt_at: Some(now),
                last_error: None,
                usage_day: st.codes.get(pid).and_then(|r| r.usage_day),
                integrity_ok: true,
            };
            (row, st.trusted)
        };
        self.core
            .db
            .put_trusted_time(&time)
            .await
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        self.core
            .db
            .put_code(&row)
            .await
            .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        {
            let mut st = self.core.lock();
            st.codes.insert(pid.to_owned(), row);
            st.code_values.insert(pid.to_owned(), code.clone());
            st.retry.remove(pid);
            self.core.recompute_locked(&mut st);
        }
        Ok(())
    }

    fn checkout(
        &self,
        session: &SessionInfo,
        pid: &str,
        feature: &str,
    ) -> Result<Lease, RemoteError> {
        if feature.is_empty() || feature.len() > 64 {
            return Err(err(
                ErrorCode::BadRequest,
                "a feature name is 1 to 64 characters",
            ));
        }
        let policy = self
            .core
            .catalog
            .get(pid)
            .map(|p| p.policy)
            .ok_or_else(|| err(ErrorCode::NotFound, "unknown product"))?;
        self.core.mark_used(pid);
        let mut st = self.core.lock();
        let now = self.core.trusted_now(&st);
        let ps = st
            .snapshot
            .product(pid)
            .ok_or_else(|| err(ErrorCode::NotFound, "unknown product"))?;
        if !ps.state.allows_new_checkout() {
            let why = ps
                .message
                .clone()
                .unwrap_or_else(|| format!("{:?}", ps.reason));
            return Err(err(ErrorCode::Blocked, why));
        }
        let seats = if ps.features.is_empty() {
            None
        } else {
            match ps.features.iter().find(|f| f.name == feature) {
                Some(f) => f.seats,
                None => {
                    return Err(err(
                        ErrorCode::NotFound,
                        format!("the License grants no feature {feature:?}"),
                    ));
                }
            }
        };
        let lease = st
            .leases
            .check_out(
                &session.session_id.to_string(),
                pid,
                feature,
                seats,
                now,
                policy.lease(),
            )
            .map_err(|e| err(ErrorCode::NoSeat, e.to_string()))?;
        self.core.leases_changed.notify_one();
        Ok(Lease {
            lease_id: LeaseId(lease.id),
            product_id: lease.product_id,
            feature: lease.feature,
            expires_at: lease.expires_at,
        })
    }

    fn renew(&self, session: &SessionInfo, lease_id: &LeaseId) -> Result<Lease, RemoteError> {
        let mut st = self.core.lock();
        let now = self.core.trusted_now(&st);
        let pid = st
            .leases
            .get(&lease_id.0)
            .map(|l| l.product_id.clone())
            .ok_or_else(|| err(ErrorCode::NotFound, "no such lease"))?;
        let blocked = st
            .snapshot
            .product(&pid)
            .is_some_and(|p| !p.state.allows_new_checkout());
        if blocked {
            return Err(err(
                ErrorCode::Blocked,
                "the product is blocked; the lease runs to its end",
            ));
        }
        let length = self
            .core
            .catalog
            .get(&pid)
            .map(|p| p.policy.lease())
            .unwrap_or(time::Duration::minutes(15));
        let lease = st
            .leases
            .renew(&session.session_id.to_string(), &lease_id.0, now, length)
            .map_err(|e| err(ErrorCode::NotFound, e.to_string()))?;
        self.core.leases_changed.notify_one();
        let today = day_of(now);
        st.used_on.insert(pid, today);
        Ok(Lease {
            lease_id: LeaseId(lease.id),
            product_id: lease.product_id,
            feature: lease.feature,
            expires_at: lease.expires_at,
        })
    }

    /// The `EVENT_LICENSE_VERIFY` answer to a License request.
    async fn license_delivery(
        &self,
        pid: &str,
        kind: LicenseKind,
        file_name: Option<&str>,
    ) -> Event {
        let failed = |message: &str| Event::LicenseVerify {
            status: DeliveryStatus::Failed,
            license: match kind {
                LicenseKind::File => DeliveredLicense::File(String::new()),
                LicenseKind::String => DeliveredLicense::String(String::new()),
            },
            message: Some(message.to_owned()),
        };
        let mut stored = {
            let st = self.core.lock();
            st.licenses.get(pid).map(|l| l.content.clone())
        };
        if stored.is_none() {
            match self.fetch_delivered(pid).await {
                Ok(Some(text)) => stored = Some(text),
                Ok(None) => {}
                Err(e) => return failed(&e),
            }
        }
        let Some(content) = stored else {
            return failed("no License has been imported or delivered for this product");
        };
        match kind {
            LicenseKind::String => Event::LicenseVerify {
                status: DeliveryStatus::Success,
                license: DeliveredLicense::String(content),
                message: None,
            },
            LicenseKind::File => match self.write_delivered_file(pid, file_name, &content).await {
                Ok(path) => Event::LicenseVerify {
                    status: DeliveryStatus::Success,
                    license: DeliveredLicense::File(path),
                    message: None,
                },
                Err(e) => failed(&e),
            },
        }
    }

    async fn write_delivered_file(
        &self,
        pid: &str,
        file_name: Option<&str>,
        content: &str,
    ) -> Result<String, String> {
        let dir = self.paths.delivered_dir();
        let safe_name = file_name
            .and_then(|n| std::path::Path::new(n).file_name())
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty() && !n.starts_with('.'))
            .map_or_else(|| format!("{pid}.lic"), str::to_owned);
        let path = dir.join(safe_name);
        let body = content.as_bytes().to_vec();
        let target = path.clone();
        tokio::task::spawn_blocking(move || {
            crate::paths::create_private_dir(&dir)?;
            crate::secrets::write_atomic_private(&target, &body)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot write the License file: {e}"))?;
        Ok(path.display().to_string())
    }
}

fn market_error(e: &MarketFailure) -> RemoteError {
    match e {
        MarketFailure::Refused { code, .. } if code == CODE_NOT_RECEIVED => err(
            ErrorCode::BadRequest,
            "the code has not been received yet: accept it in KooGallery first (92020004)",
        ),
        MarketFailure::Refused { code, .. } if code == CODE_NOT_EXIST => err(
            ErrorCode::NotFound,
            "the marketplace does not know this code (92020005)",
        ),
        MarketFailure::Refused { code, message } => err(
            ErrorCode::BadRequest,
            format!("the marketplace refused the code: {code} {message}"),
        ),
        MarketFailure::Unavailable { message, .. } => err(
            ErrorCode::Unavailable,
            format!("the marketplace is unavailable: {message}"),
        ),
    }
}
