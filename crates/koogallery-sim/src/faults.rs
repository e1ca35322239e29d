//! Fault injection, settable at run time per route and host (PROTOCOL.md §7 item 6).
//!
//! Route faults are rules matched in order: every matching latency rule adds its delay, and the
//! first matching terminal rule (forced status, `MKT.0250`, dropped connection) decides the
//! answer. A rule with `remaining` applies that many times and then retires, so "fail once, then
//! recover" is one rule. Host faults act below HTTP: the primary host refusing connections, or
//! presenting a certificate from a CA the client does not trust.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Which listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostRole {
    /// `mkt.myhuaweicloud.com` in production.
    Primary,
    /// `mkt.myhuaweicloud.cn` in production.
    Fallback,
}

/// What a route fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Waits this long before handling the request.
    Latency {
        /// Milliseconds of real time.
        millis: u64,
    },
    /// Answers with this HTTP status. Without a body, 5xx carry the route family's internal
    /// error envelope and other statuses an empty body.
    Status {
        /// HTTP status code.
        status: u16,
        /// Exact body to send, as JSON text.
        #[serde(default)]
        body: Option<String>,
    },
    /// Answers `MKT.0250` (access frequency over the limit) with HTTP 406.
    RateLimited,
    /// Closes the connection without answering.
    DropConnection,
}

impl FaultAction {
    fn is_terminal(&self) -> bool {
        !matches!(self, Self::Latency { .. })
    }
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Assigned by the emulator.
    #[serde(default)]
    pub id: u64,
    /// Route name (see [`crate::routes`]), a prefix ending in `*` (`license.*`), or `*`.
    pub route: String,
    /// Only requests arriving on this host; any host when absent.
    #[serde(default)]
    pub host: Option<HostRole>,
    /// What happens.
    pub action: FaultAction,
    /// How many more requests it applies to; forever when absent.
    #[serde(default)]
    pub remaining: Option<u32>,
}

impl FaultRule {
    /// A rule for `route` on any host, forever.
    #[must_use]
    pub fn new(route: &str, action: FaultAction) -> Self {
        Self {
            id: 0,
            route: route.to_owned(),
            host: None,
            action,
            remaining: None,
        }
    }

    /// The same rule, applied only `times` times.
    #[must_use]
    pub fn times(mut self, times: u32) -> Self {
        self.remaining = Some(times);
        self
    }

    /// The same rule, only on `host`.
    #[must_use]
    pub fn on(mut self, host: HostRole) -> Self {
        self.host = Some(host);
        self
    }

    fn matches(&self, route: &str, host: HostRole) -> bool {
        if self.host.is_some_and(|h| h != host) {
            return false;
        }
        match self.route.strip_suffix('*') {
            Some(prefix) => route.starts_with(prefix),
            None => self.route == route,
        }
    }
}

/// Faults below HTTP, per host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFaults {
    /// The primary listener drops every connection at once (clients must use the fallback).
    pub primary_down: bool,
    /// The primary listener presents a certificate from an untrusted CA.
    pub primary_untrusted_certificate: bool,
}

/// What to do with one request, after the rules were consulted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultDecision {
    /// Total added latency, in milliseconds.
    pub latency_millis: u64,
    /// The terminal action, if any.
    pub action: Option<FaultAction>,
}

/// Every fault currently set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSet {
    /// Route rules, in evaluation order.
    pub rules: Vec<FaultRule>,
    /// Host faults.
    pub hosts: HostFaults,
}

/// The live fault table.
#[derive(Debug)]
pub struct Faults {
    inner: Mutex<(FaultSet, u64)>,
    /// Host faults, watched by open connections so that "primary down" also cuts the
    /// connections a client already has pooled.
    hosts: tokio::sync::watch::Sender<HostFaults>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            inner: Mutex::new((FaultSet::default(), 0)),
            hosts: tokio::sync::watch::channel(HostFaults::default()).0,
        }
    }
}

/// Most rules kept at once (a runaway script cannot grow the table without bound).
const MAX_RULES: usize = 256;

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, (FaultSet, u64)> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a rule; returns its id.
    ///
    /// # Errors
    /// When the table is full or the rule is malformed.
    pub fn add(&self, mut rule: FaultRule) -> Result<u64, String> {
        if rule.route.is_empty() || rule.route.len() > 128 {
            return Err("route must be 1 to 128 characters".to_owned());
        }
        if let FaultAction::Status { status, .. } = &rule.action
            && !(100..=599).contains(status)
        {
            return Err(format!("{status} is not an HTTP status"));
        }
        let mut guard = self.lock();
        if guard.0.rules.len() >= MAX_RULES {
            return Err(format!("at most {MAX_RULES} fault rules may be set"));
        }
        guard.1 += 1;
        rule.id = guard.1;
        let id = rule.id;
        guard.0.rules.push(rule);
        Ok(id)
    }

    /// Removes a rule; false when there was none with that id.
    pub fn remove(&self, id: u64) -> bool {
        let mut guard = self.lock();
        let before = guard.0.rules.len();
        guard.0.rules.retain(|r| r.id != id);
        guard.0.rules.len() != before
    }

    /// Removes every rule and host fault.
    pub fn clear(&self) {
        let mut guard = self.lock();
        guard.0 = FaultSet::default();
        self.hosts.send_replace(HostFaults::default());
    }

    /// Sets the host faults.
    pub fn set_hosts(&self, hosts: HostFaults) {
        self.lock().0.hosts = hosts;
        self.hosts.send_replace(hosts);
    }

    /// Follows changes of the host faults.
    #[must_use]
    pub fn watch_hosts(&self) -> tokio::sync::watch::Receiver<HostFaults> {
        self.hosts.subscribe()
    }

    /// The host faults.
    #[must_use]
    pub fn hosts(&self) -> HostFaults {
        self.lock().0.hosts
    }

    /// A copy of everything set.
    #[must_use]
    pub fn snapshot(&self) -> FaultSet {
        self.lock().0.clone()
    }

    /// Consults (and consumes) the rules for one request.
    pub fn decide(&self, route: &str, host: HostRole) -> FaultDecision {
        let mut guard = self.lock();
        let mut decision = FaultDecision::default();
        for rule in &mut guard.0.rules {
            if !rule.matches(route, host) || rule.remaining == Some(0) {
                continue;
            }
            if rule.action.is_terminal() && decision.action.is_some() {
                continue;
            }
            if let Some(n) = &mut rule.remaining {
                *n -= 1;
            }
            match &rule.action {
                FaultAction::Latency { millis } => {
                    decision.latency_millis = decision.latency_millis.saturating_add(*millis);
                }
                other => decision.action = Some(other.clone()),
            }
        }
        guard.0.rules.retain(|r| r.remaining != Some(0));
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules_retire_and_latency_adds_up() {
        let faults = Faults::default();
        faults
            .add(FaultRule::new(
                "license.*",
                FaultAction::Latency { millis: 5 },
            ))
            .unwrap();
        faults
            .add(FaultRule::new("*", FaultAction::Latency { millis: 7 }))
            .unwrap();
        faults
            .add(FaultRule::new("license.heartbeat.v1", FaultAction::RateLimited).times(1))
            .unwrap();
        let first = faults.decide("license.heartbeat.v1", HostRole::Primary);
        assert_eq!(first.latency_millis, 12);
        assert_eq!(first.action, Some(FaultAction::RateLimited));
        let second = faults.decide("license.heartbeat.v1", HostRole::Primary);
        assert_eq!(second.action, None);
        assert_eq!(
            faults
                .decide("order.query", HostRole::Primary)
                .latency_millis,
            7
        );
        assert_eq!(faults.snapshot().rules.len(), 2);
    }

    #[test]
    fn host_filter_and_first_terminal_rule_win() {
        let faults = Faults::default();
        let id = faults
            .add(FaultRule::new("*", FaultAction::DropConnection).on(HostRole::Primary))
            .unwrap();
        faults
            .add(FaultRule::new(
                "*",
                FaultAction::Status {
                    status: 503,
                    body: None,
                },
            ))
            .unwrap();
        assert_eq!(
            faults.decide("order.query", HostRole::Primary).action,
            Some(FaultAction::DropConnection)
        );
        assert!(matches!(
            faults.decide("order.query", HostRole::Fallback).action,
            Some(FaultAction::Status { status: 503, .. })
        ));
        assert!(faults.remove(id));
        assert!(!faults.remove(id));
        assert!(
            faults
                .add(FaultRule::new(
                    "*",
                    FaultAction::Status {
                        status: 42,
                        body: None
                    }
                ))
                .is_err()
        );
        faults.clear();
        assert_eq!(faults.snapshot(), FaultSet::default());
    }
}
