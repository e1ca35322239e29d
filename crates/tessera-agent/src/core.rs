//! The agent's core: products, codes, Licenses, trusted time, leases and the snapshot, behind one
//! lock that is never held across an await; network and database work happens outside it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use rand::Rng;
use time::{Duration, OffsetDateTime};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use tessera_ipc::proto::{EventFrame, SessionId};
use tessera_ipc::{IscEvent, ServerHandle, ServerMsg, SessionInfo};
use tessera_types::events::Event;
use tessera_types::state::ProductModel;
use tessera_types::{LicenseState, ProductState, SharedClock, Snapshot};

use crate::config::Settings;
use crate::db::{CodeRow, Db, LicenseRow};
use crate::enforcement::{self, CodeFacts, CodeStatus, ProductFacts, TimeView};
use crate::leases::LeaseTable;
use crate::market::{CODE_NOT_ACTIVATED, CODE_NOT_EXIST, MarketFailure, Marketplace};
use crate::products::Catalog;
use crate::secrets::Secrets;
use crate::trusted_time::{Observation, TrustedTime};

/// Most codes one heartbeat request carries (KooGallery's v2 batch limit).
pub const HEARTBEAT_BATCH: usize = 100;
/// First retry delay after a failed online check.
pub const BACKOFF_BASE: Duration = Duration::seconds(2);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::minutes(10);
/// A blocked code is re-checked on use at most this often.
const BLOCKED_RECHECK: Duration = Duration::minutes(1);
/// The trusted-time mark is persisted when it moved at least this far.
const TIME_PERSIST_STEP: Duration = Duration::minutes(1);

/// Mutable state of the agent.
#[derive(Debug)]
pub(crate) struct CoreState {
    pub trusted: TrustedTime,
    /// Whether the stored trusted-time row failed its MAC (until an online check).
    pub time_row_forged: bool,
    pub persisted_high_water: OffsetDateTime,
    pub codes: BTreeMap<String, CodeRow>,
    pub code_values: HashMap<String, Zeroizing<String>>,
    pub licenses: BTreeMap<String, LicenseRow>,
    pub snapshot: Snapshot,
    pub leases: LeaseTable,
    pub sessions: HashMap<SessionId, SessionInfo>,
    /// Products used (an application connected or checked out) since the last pass.
    pub used: HashSet<String>,
    /// Products whose code is used today (UTC day number), for usage reports.
    pub used_on: HashMap<String, i64>,
    /// Retry state per product: (failed attempts, next attempt not before).
    pub retry: HashMap<String, (u32, OffsetDateTime)>,
    /// Pending user-accepted upgrades: product → forced.
    pub upgrade_offers: HashMap<String, bool>,
}

/// Shared core of one agent.
#[derive(Debug)]
pub struct Core {
    pub(crate) clock: SharedClock,
    pub(crate) catalog: Catalog,
    pub(crate) settings: Settings,
    pub(crate) db: Db,
    pub(crate) secrets: Secrets,
    pub(crate) market: Option<Arc<dyn Marketplace>>,
    pub(crate) state: Mutex<CoreState>,
    pub(crate) server: OnceLock<ServerHandle>,
    /// Serialises scheduler passes.
    pub(crate) pass_lock: tokio::sync::Mutex<()>,
    /// Wakes the scheduler loop early (a product was used, a code activated).
    pub(crate) wake: Notify,
    /// Wakes the lease writer (a lease was granted, renewed, released or ended).
    pub(crate) leases_changed: Notify,
    pub(crate) usage_id: String,
}

/// The UTC day number of `t`.
pub(crate) fn day_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(86_400)
}

/// Full-jitter backoff: uniform in [0, min(cap, base·2^attempt)].
pub(crate) fn backoff_delay(attempt: u32, rng: &mut impl Rng) -> Duration {
    let base_ms: i64 = 2_000;
    let cap_ms: i64 = 600_000;
    let ceiling = base_ms.saturating_mul(1i64 << attempt.min(20)).min(cap_ms);
    Duration::milliseconds(rng.gen_range(0..=ceiling))
}

impl Core {
    pub(crate) fn lock(&self) -> MutexGuard<'_, CoreState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Local clock reading.
    pub(crate) fn local_now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Trusted now (does not observe; see [`Core::observe_time`]).
    pub(crate) fn trusted_now(&self, st: &CoreState) -> OffsetDateTime {
        st.trusted.now(self.local_now())
    }

    fn time_view(&self, st: &CoreState) -> TimeView {
        TimeView {
            now: self.trusted_now(st),
            tampered: st.trusted.tampered() || st.time_row_forged,
        }
    }

    /// Feeds the local clock into trusted time; returns the record to persist if it should be.
    pub(crate) fn observe_time(&self, st: &mut CoreState) -> Option<TrustedTime> {
        let local = self.local_now();
        let before = st.trusted;
        if let Observation::RollbackDetected { behind } = st.trusted.observe_local(local) {
            tracing::warn!(
                behind_hours = behind.whole_hours(),
                "the clock was set back beyond tolerance; offline grace withheld until an online check succeeds"
            );
        }
        let moved = st.trusted.high_water - st.persisted_high_water >= TIME_PERSIST_STEP;
        if moved
            || st.trusted.tampered_at != before.tampered_at
            || st.trusted.offset != before.offset
        {
            st.persisted_high_water = st.trusted.high_water;
            Some(st.trusted)
        } else {
            None
        }
    }

    /// Recomputes every product's state and pushes `EVENT_LICENSE_STATE` for each change.
    pub(crate) fn recompute(&self) {
        let mut st = self.lock();
        self.recompute_locked(&mut st);
    }

    pub(crate) fn recompute_locked(&self, st: &mut CoreState) {
        let view = self.time_view(st);
        let mut changed = Vec::new();
        for (pid, product) in &self.catalog.products {
            let facts = ProductFacts {
                code: st.codes.get(pid).map(|c| CodeFacts {
                    status: c.status,
                    expires_at: c.expires_at,
                    last_good_check: c.last_good_check,
                    offline: c.offline,
                    integrity_ok: c.integrity_ok,
                    amount: c.amount,
                }),
                license: st.licenses.get(pid).map(|l| l.facts.clone()),
            };
            let decided = enforcement::decide(product, &facts, view);
            let differs = st.snapshot.product(pid).is_none_or(|old| {
                (
                    old.state,
                    old.reason,
                    old.deadline,
                    old.expires_at,
                    &old.message,
                ) != (
                    decided.state,
                    decided.reason,
                    decided.deadline,
                    decided.expires_at,
                    &decided.message,
                )
            });
            let was_blocked = st
                .snapshot
                .product(pid)
                .is_some_and(|old| old.state == LicenseState::Blocked);
            if differs {
                tracing::info!(
                    product_id = %pid,
                    state = ?decided.state,
                    reason = ?decided.reason,
                    "product state changed"
                );
                if decided.state == LicenseState::Blocked
                    && !was_blocked
                    && product.policy.block_immediately
                {
                    let revoked = st.leases.revoke_product(pid);
                    if !revoked.is_empty() {
                        self.leases_changed.notify_one();
                        tracing::info!(product_id = %pid, leases = revoked.len(), "leases revoked (block_immediately)");
                    }
                }
                changed.push(decided.clone());
            }
            st.snapshot.upsert(decided);
        }
        st.snapshot.taken_at = view.now;
        for ps in changed {
            self.push_state(&ps);
        }
    }

    /// The snapshot with lease counts filled in.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        Self::snapshot_of(&st)
    }

    pub(crate) fn snapshot_of(st: &CoreState) -> Snapshot {
        let mut snap = st.snapshot.clone();
        for p in &mut snap.products {
            for f in &mut p.features {
                f.in_use = st.leases.in_use(&p.product_id, &f.name);
            }
        }
        snap
    }

    fn push_state(&self, ps: &ProductState) {
        let Some(server) = self.server.get() else {
            return;
        };
        let pid = ps.product_id.clone();
        let event = Event::LicenseState(ps.clone());
        if let Err(e) = server.broadcast_event(&event, |s| {
            s.app.product_id.is_empty() || s.app.product_id == pid
        }) {
            tracing::warn!(error = %e, "could not push a state change");
        }
    }

    /// Pushes `event` to the sessions of `product_id` (and product-less sessions: CLI, tray).
    pub(crate) fn push_to_product(&self, product_id: &str, event: &Event) {
        let Some(server) = self.server.get() else {
            return;
        };
        if let Err(e) = server.broadcast_event(event, |s| {
            s.app.product_id.is_empty() || s.app.product_id == product_id
        }) {
            tracing::warn!(error = %e, "could not push an event");
        }
    }

    /// Pushes `event` to the sessions of `product_id` only.
    pub(crate) fn push_to_apps(&self, product_id: &str, event: &Event) -> usize {
        let Some(server) = self.server.get() else {
            return 0;
        };
        server
            .broadcast_event(event, |s| s.app.product_id == product_id)
            .unwrap_or(0)
    }

    /// Sends `event` to one session as the answer to request `re`.
    pub(crate) fn answer_event(&self, session: SessionId, re: u64, event: &Event) {
        let Some(server) = self.server.get() else {
            return;
        };
        let msg = ServerMsg::Event(EventFrame {
            kind: event.kind().code(),
            payload: IscEvent::from_event(event).with_request_id(re),
        });
        if let Err(e) = server.send(session, &msg) {
            tracing::debug!(error = %e, "could not answer with an event");
        }
    }

    /// Marks `product_id` as used now (first use of the day triggers a heartbeat).
    pub(crate) fn mark_used(&self, product_id: &str) {
        let mut st = self.lock();
        let today = day_of(self.trusted_now(&st));
        let first_today = st.used_on.get(product_id) != Some(&today);
        st.used.insert(product_id.to_owned());
        st.used_on.insert(product_id.to_owned(), today);
        drop(st);
        if first_today {
            self.wake.notify_one();
        }
    }

    /// Writes the lease table to the database as it is now.
    pub(crate) async fn persist_leases(&self) {
        let leases: Vec<crate::leases::Lease> = self.lock().leases.all().cloned().collect();
        if let Err(e) = self.db.put_leases(&leases).await {
            tracing::error!(error = %e, "could not persist the leases");
        }
    }

    /// One scheduler pass: observe time, expire leases, run due heartbeats and usage reports,
    /// recompute. Returns when the next pass is due (trusted time).
    pub(crate) async fn pass(&self) -> OffsetDateTime {
        let _serial = self.pass_lock.lock().await;
        let (to_persist, due, usage_due) = {
            let mut st = self.lock();
            let to_persist = self.observe_time(&mut st);
            let now = self.trusted_now(&st);
            let ended = st.leases.expire(now);
            if !ended.is_empty() {
                self.leases_changed.notify_one();
                tracing::debug!(count = ended.len(), "leases expired");
            }
            let due = self.due_codes(&st, now);
            let today = day_of(now);
            let usage_due: Vec<String> = st
                .codes
                .values()
                .filter(|c| c.status == CodeStatus::Alive && c.usage_day != Some(today))
                .filter(|c| st.used_on.get(&c.product_id) == Some(&today))
                .map(|c| c.product_id.clone())
                .collect();
            st.used.clear();
            (to_persist, due, usage_due)
        };
        if let Some(t) = to_persist
            && let Err(e) = self.db.put_trusted_time(&t).await
        {
            tracing::error!(error = %e, "could not persist trusted time");
        }
        if !due.is_empty() {
            self.heartbeat(&due).await;
        }
        if !usage_due.is_empty() {
            self.report_usage(&usage_due).await;
        }
        self.recompute();
        self.next_due()
    }

    /// Products whose code needs an online check now.
    fn due_codes(&self, st: &CoreState, now: OffsetDateTime) -> Vec<String> {
        let tampered = st.trusted.tampered() || st.time_row_forged;
        let today = day_of(now);
        let mut due = Vec::new();
        for c in st.codes.values() {
            if !st.code_values.contains_key(&c.product_id) {
                continue;
            }
            let Some(product) = self.catalog.get(&c.product_id) else {
                continue;
            };
            // A retry time further ahead than any backoff means the clock was set back: retry now.
            if let Some((_, not_before)) = st.retry.get(&c.product_id)
                && self.local_now() < *not_before
                && *not_before - self.local_now() <= Duration::hours(1)
            {
                continue;
            }
            let connected = st
                .sessions
                .values()
                .any(|s| s.app.product_id == c.product_id);
            let used_now = st.used.contains(&c.product_id);
            let last_attempt = c.last_attempt_at.unwrap_or(c.last_good_check);
            let is_due = if c.offline || tampered || !c.integrity_ok {
                // retrying: the retry table above decides when
                true
            } else if c.status != CodeStatus::Alive {
                used_now && now - last_attempt >= BLOCKED_RECHECK
            } else {
                (used_now && day_of(c.last_good_check) < today)
                    || (connected && now - last_attempt >= product.policy.heartbeat_interval())
                    || (connected
                        && c.expires_at
                            .is_some_and(|e| now >= e && c.last_good_check < e))
            };
            if is_due {
                due.push(c.product_id.clone());
            }
        }
        due
    }

    /// When the next pass should run, in trusted time.
    pub(crate) fn next_due(&self) -> OffsetDateTime {
        let st = self.lock();
        let now = self.trusted_now(&st);
        let mut next = now + Duration::hours(1);
        for c in st.codes.values() {
            if let Some((_, at)) = st.retry.get(&c.product_id) {
                next = next.min(now + (*at - self.local_now()));
            }
            let connected = st
                .sessions
                .values()
                .any(|s| s.app.product_id == c.product_id);
            if connected
                && c.status == CodeStatus::Alive
                && let Some(product) = self.catalog.get(&c.product_id)
            {
                let last = c.last_attempt_at.unwrap_or(c.last_good_check);
                next = next.min(last + product.policy.heartbeat_interval());
            }
            if c.offline
                && let Some(product) = self.catalog.get(&c.product_id)
            {
                next = next.min(c.last_good_check + product.policy.offline_grace());
            }
        }
        if let Some(lease_end) = st.leases.next_expiry() {
            next = next.min(lease_end);
        }
        for p in &st.snapshot.products {
            if let Some(d) = p.deadline {
                next = next.min(d);
            }
            if let Some(e) = p.expires_at
                && e > now
            {
                next = next.min(e);
            }
        }
        next.max(now)
    }

    /// Runs the heartbeat for `products` (batched) and applies the answers.
    pub(crate) async fn heartbeat(&self, products: &[String]) {
        let Some(market) = self.market.clone() else {
            tracing::warn!("no marketplace configured; cannot check codes");
            return;
        };
        for chunk in products.chunks(HEARTBEAT_BATCH) {
            let (pids, codes): (Vec<String>, Vec<String>) = {
                let st = self.lock();
                chunk
                    .iter()
                    .filter_map(|pid| {
                        st.code_values
                            .get(pid)
                            .map(|c| (pid.clone(), c.as_str().to_owned()))
                    })
                    .unzip()
            };
            let codes = Zeroizing::new(codes);
            let result = market.heartbeat(&codes).await;
            self.apply_heartbeat(&pids, result).await;
        }
    }

    async fn apply_heartbeat(
        &self,
        pids: &[String],
        result: Result<crate::market::Answer<Vec<crate::market::HeartbeatOutcome>>, MarketFailure>,
    ) {
        let mut rows = Vec::new();
        let mut replies = Vec::new();
        let to_persist;
        {
            let mut st = self.lock();
            let local = self.local_now();
            match &result {
                Ok(answer) => {
                    if let Some(server) = answer
                        .server_date
                        .filter(|_| self.settings.marketplace.trust_server_time)
                    {
                        st.trusted.observe_online(local, server);
                        st.time_row_forged = false;
                    } else {
                        st.trusted.observe_online(local, local);
                        st.time_row_forged = false;
                    }
                }
                Err(_) => {
                    let _ = st.trusted.observe_local(local);
                }
            }
            let now = self.trusted_now(&st);
            st.persisted_high_water = st.trusted.high_water;
            to_persist = st.trusted;
            for (i, pid) in pids.iter().enumerate() {
                let outcome = match &result {
                    Ok(answer) => answer.value.get(i).cloned().unwrap_or_else(|| {
                        Err(MarketFailure::Unavailable {
                            message: "the marketplace answer left this code out".to_owned(),
                            retry_after: None,
                        })
                    }),
                    Err(e) => Err(e.clone()),
                };
                let retry_after = match &outcome {
                    Err(MarketFailure::Unavailable { retry_after, .. }) => *retry_after,
                    _ => None,
                };
                let Some(row) = st.codes.get_mut(pid) else {
                    continue;
                };
                row.last_attempt_at = Some(now);
                let mut ok = false;
                let mut status_text = None;
                match outcome {
                    Ok(info) => {
                        row.status = CodeStatus::from_wire(&info.status);
                        if info.expires_at.is_some() {
                            row.expires_at = info.expires_at;
                        }
                        if info.amount.is_some() {
                            row.amount = info.amount;
                        }
                        row.last_good_check = now;
                        row.offline = false;
                        row.integrity_ok = true;
                        row.last_error = None;
                        ok = row.status == CodeStatus::Alive;
                        status_text = Some(info.status);
                    }
                    Err(MarketFailure::Refused { code, message }) => {
                        // A definite answer about the code: not a transport problem.
                        row.offline = false;
                        row.integrity_ok = true;
                        row.last_good_check = now;
                        if code == CODE_NOT_EXIST || code == CODE_NOT_ACTIVATED {
                            row.status = CodeStatus::Unknown;
                        }
                        row.last_error = Some(format!("{code}: {message}"));
                        status_text = Some(code);
                    }
                    Err(MarketFailure::Unavailable { message, .. }) => {
                        row.offline = true;
                        row.last_error = Some(message);
                    }
                }
                let row = row.clone();
                if row.offline {
                    let attempt = st.retry.get(pid).map_or(0, |(a, _)| *a);
                    let mut delay = backoff_delay(attempt, &mut rand::thread_rng());
                    if let Some(ra) = retry_after {
                        delay = delay.max(ra);
                    }
                    // Retry timing follows the local clock: trusted time may stand still while
                    // the local clock catches up after a rollback.
                    st.retry.insert(pid.clone(), (attempt + 1, local + delay));
                } else {
                    st.retry.remove(pid);
                }
                let next_check = self
                    .catalog
                    .get(pid)
                    .map(|p| now + p.policy.heartbeat_interval());
                replies.push((pid.clone(), ok, status_text, next_check));
                rows.push(row);
            }
        }
        if let Err(e) = self.db.put_trusted_time(&to_persist).await {
            tracing::error!(error = %e, "could not persist trusted time");
        }
        for row in &rows {
            if let Err(e) = self.db.put_code(row).await {
                tracing::error!(error = %e, product_id = %row.product_id, "could not persist a code check");
            }
        }
        match &result {
            Ok(_) => tracing::info!(codes = pids.len(), "heartbeat answered"),
            Err(e) => tracing::warn!(codes = pids.len(), error = %e, "heartbeat failed"),
        }
        self.recompute();
        for (pid, ok, status, next_check_at) in replies {
            self.push_to_product(
                &pid,
                &Event::HeartbeatReply {
                    product_id: pid.clone(),
                    ok,
                    status,
                    next_check_at,
                },
            );
        }
    }

    async fn report_usage(&self, products: &[String]) {
        let Some(market) = self.market.clone() else {
            return;
        };
        let (pids, codes): (Vec<String>, Vec<String>) = {
            let st = self.lock();
            products
                .iter()
                .filter_map(|pid| {
                    st.code_values
                        .get(pid)
                        .map(|c| (pid.clone(), c.as_str().to_owned()))
                })
                .unzip()
        };
        let codes = Zeroizing::new(codes);
        for (chunk_pids, chunk_codes) in pids
            .chunks(HEARTBEAT_BATCH)
            .zip(codes.chunks(HEARTBEAT_BATCH))
        {
            match market.report_usage(chunk_codes, &self.usage_id).await {
                Ok(_) => {
                    let rows: Vec<CodeRow> = {
                        let mut st = self.lock();
                        let today = day_of(self.trusted_now(&st));
                        chunk_pids
                            .iter()
                            .filter_map(|pid| {
                                st.codes.get_mut(pid).map(|r| {
                                    r.usage_day = Some(today);
                                    r.clone()
                                })
                            })
                            .collect()
                    };
                    for r in &rows {
                        if let Err(e) = self.db.put_code(r).await {
                            tracing::error!(error = %e, "could not persist a usage report");
                        }
                    }
                    tracing::info!(codes = rows.len(), "usage reported");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "usage report failed; retried on the next pass");
                }
            }
        }
    }

    /// Whether a session may act on `product_id` (applications only on their own product).
    pub(crate) fn may_act_on(session: &SessionInfo, product_id: &str) -> bool {
        session.app.product_id.is_empty() || session.app.product_id == product_id
    }

    /// Whether `product_id` uses `model`.
    pub(crate) fn uses(&self, product_id: &str, model: ProductModel) -> bool {
        self.catalog.get(product_id).is_some_and(|p| p.uses(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_capped_at_ten_minutes() {
        let mut rng = rand::thread_rng();
        for attempt in 0..30 {
            for _ in 0..50 {
                let d = backoff_delay(attempt, &mut rng);
                assert!(d >= Duration::ZERO);
                assert!(d <= BACKOFF_CAP);
                let ceiling = (2i64 * 1000).saturating_mul(1i64 << attempt.min(20));
                assert!(d.whole_milliseconds() <= i128::from(ceiling));
            }
        }
        let spread: HashSet<i128> = (0..20)
            .map(|_| backoff_delay(10, &mut rng).whole_milliseconds())
            .collect();
        assert!(spread.len() > 10, "delays disperse");
    }

    #[test]
    fn days_are_utc() {
        let t = OffsetDateTime::from_unix_timestamp(86_400 * 3 + 5).unwrap();
        assert_eq!(day_of(t), 3);
        assert_eq!(day_of(t - Duration::seconds(6)), 2);
    }
}
