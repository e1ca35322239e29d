//! What the tray shows, as plain data: the [`AppState`] it knows, the overall [`TrayStatus`]
//! (which icon), the tooltip and the [`MenuModel`]. Nothing here touches a display, so every
//! rule is unit-tested; `ui` only turns these values into `tray-icon` calls.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use tessera_types::state::ProductModel;
use tessera_types::{LicenseState, ProductState, Snapshot, StateReason};

/// How close an expiry or grace deadline must be for the product to need attention.
pub const ATTENTION_WINDOW: Duration = Duration::days(7);

/// Longest status text put in a menu line or tooltip line; agent messages are cut to this.
const MAX_LINE_CHARS: usize = 120;

/// The icon the tray shows: the worst state over all products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrayStatus {
    /// Every product is licensed and nothing is due soon.
    Active,
    /// A product is in grace, expires within [`ATTENTION_WINDOW`], or has an update offered.
    Attention,
    /// A product is blocked.
    Blocked,
    /// The agent is not reachable; the state of the products is unknown.
    Unreachable,
}

impl TrayStatus {
    /// Every status, in order of increasing severity.
    pub const ALL: [TrayStatus; 4] = [
        TrayStatus::Active,
        TrayStatus::Attention,
        TrayStatus::Blocked,
        TrayStatus::Unreachable,
    ];

    /// A word for the status, as shown to a person.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            TrayStatus::Active => "Active",
            TrayStatus::Attention => "Needs attention",
            TrayStatus::Blocked => "Blocked",
            TrayStatus::Unreachable => "Agent not running",
        }
    }
}

/// Whether the agent can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentLink {
    /// Connected; `snapshot` is the latest state of every product.
    Connected {
        /// Every product's state.
        snapshot: Snapshot,
    },
    /// Not connected (never started, stopped, or restarting).
    Unreachable {
        /// Why, safe to show.
        reason: String,
    },
}

/// An upgrade the agent offers for a product (answer to `CheckNewVersions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateOffer {
    /// Whether the publisher forces it.
    pub forced: bool,
}

/// Everything the tray knows; the menu, icon, tooltip and notifications derive from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppState {
    /// The agent connection and the products' state.
    pub agent: AgentLink,
    /// Upgrades offered, by product id.
    pub updates: BTreeMap<String, UpdateOffer>,
    /// The time the view is computed for (from the injected clock).
    pub now: OffsetDateTime,
}

impl AppState {
    /// The state before the agent was ever reached.
    #[must_use]
    pub fn unreachable(now: OffsetDateTime, reason: impl Into<String>) -> Self {
        Self {
            agent: AgentLink::Unreachable {
                reason: reason.into(),
            },
            updates: BTreeMap::new(),
            now,
        }
    }

    /// The products, when the agent is connected.
    #[must_use]
    pub fn products(&self) -> &[ProductState] {
        match &self.agent {
            AgentLink::Connected { snapshot, .. } => &snapshot.products,
            AgentLink::Unreachable { .. } => &[],
        }
    }

    /// Whether the agent is connected.
    #[must_use]
    pub fn connected(&self) -> bool {
        matches!(self.agent, AgentLink::Connected { .. })
    }

    /// The icon to show.
    #[must_use]
    pub fn status(&self) -> TrayStatus {
        if !self.connected() {
            return TrayStatus::Unreachable;
        }
        self.products()
            .iter()
            .map(|p| self.product_status(p))
            .max()
            .unwrap_or(TrayStatus::Active)
    }

    /// The status of one product.
    #[must_use]
    pub fn product_status(&self, p: &ProductState) -> TrayStatus {
        match p.state {
            LicenseState::Blocked => TrayStatus::Blocked,
            LicenseState::Grace => TrayStatus::Attention,
            LicenseState::Active => {
                let soon = p
                    .expires_at
                    .is_some_and(|at| at - self.now <= ATTENTION_WINDOW);
                if soon || self.updates.contains_key(&p.product_id) {
                    TrayStatus::Attention
                } else {
                    TrayStatus::Active
                }
            }
        }
    }

    /// One line for `p`: name, state, the date that matters, and the reason when blocked.
    #[must_use]
    pub fn product_line(&self, p: &ProductState) -> String {
        let name = display_name(p);
        let line = match p.state {
            LicenseState::Active => match p.expires_at {
                Some(at) if at - self.now <= ATTENTION_WINDOW => {
                    format!("{name}: expires {} ({})", date(at), self.days_left(at))
                }
                Some(at) => format!("{name}: active until {}", date(at)),
                None => format!("{name}: active, perpetual"),
            },
            LicenseState::Grace => {
                let why = reason_text(p.reason);
                match p.deadline {
                    Some(at) => format!(
                        "{name}: grace until {} ({}), {why}",
                        date(at),
                        self.days_left(at)
                    ),
                    None => format!("{name}: grace, {why}"),
                }
            }
            LicenseState::Blocked => {
                let why = reason_text(p.reason);
                match p.message.as_deref().map(str::trim) {
                    Some(m) if !m.is_empty() => format!("{name}: blocked, {why} ({m})"),
                    _ => format!("{name}: blocked, {why}"),
                }
            }
        };
        let line = match self.updates.get(&p.product_id) {
            Some(offer) if offer.forced => format!("{line}; required update available"),
            Some(_) => format!("{line}; update available"),
            None => line,
        };
        clip(&line)
    }

    /// "in 3 days", "today", "2 days ago": whole days from now to `at`, rounded up.
    #[must_use]
    pub fn days_left(&self, at: OffsetDateTime) -> String {
        match days_until(self.now, at) {
            d if d > 1 => format!("in {d} days"),
            1 => "in 1 day".to_owned(),
            0 => "today".to_owned(),
            -1 => "1 day ago".to_owned(),
            d => format!("{} days ago", -d),
        }
    }

    /// The tooltip: the overall status, then one line per product with its state and date.
    /// (Hosts show the item's title, "Tessera", beside it.)
    #[must_use]
    pub fn tooltip(&self) -> String {
        let mut out = self.status().label().to_owned();
        match &self.agent {
            AgentLink::Unreachable { reason } => {
                out.push('\n');
                out.push_str(&clip(reason));
            }
            AgentLink::Connected { snapshot, .. } if snapshot.products.is_empty() => {
                out.push_str("\nNo products are configured");
            }
            AgentLink::Connected { snapshot, .. } => {
                for p in &snapshot.products {
                    out.push('\n');
                    out.push_str(&self.product_line(p));
                }
            }
        }
        out
    }

    /// The product an authorization code from the clipboard is for: the only Model A product,
    /// else the first Model A product that is not active, else the first Model A product.
    #[must_use]
    pub fn code_target(&self) -> Option<&ProductState> {
        let model_a: Vec<&ProductState> = self
            .products()
            .iter()
            .filter(|p| p.model.is_none_or(|m| m == ProductModel::AuthorizationCode))
            .collect();
        model_a
            .iter()
            .find(|p| p.state != LicenseState::Active)
            .or(model_a.first())
            .copied()
    }

    /// The menu for this state.
    #[must_use]
    pub fn menu(&self) -> MenuModel {
        let connected = self.connected();
        let mut entries = Vec::new();
        match &self.agent {
            AgentLink::Unreachable { .. } => {
                entries.push(MenuEntry::Status("Tessera agent is not running".to_owned()));
            }
            AgentLink::Connected { snapshot, .. } if snapshot.products.is_empty() => {
                entries.push(MenuEntry::Status("No products are configured".to_owned()));
            }
            AgentLink::Connected { snapshot, .. } => {
                entries.extend(
                    snapshot
                        .products
                        .iter()
                        .map(|p| MenuEntry::Status(self.product_line(p))),
                );
            }
        }
        entries.push(MenuEntry::Separator);
        let has_products = !self.products().is_empty();
        entries.push(MenuEntry::action(Action::CopyFingerprint, connected));
        entries.push(MenuEntry::action(
            Action::ActivateCode,
            self.code_target().is_some(),
        ));
        entries.push(MenuEntry::action(Action::ImportLicense, connected));
        entries.push(MenuEntry::action(
            Action::CheckForUpdates,
            connected && has_products,
        ));
        for product_id in self.updates.keys() {
            let Some(p) = self.products().iter().find(|p| &p.product_id == product_id) else {
                continue;
            };
            entries.push(MenuEntry::Action {
                text: clip(&format!("Install update of {}", display_name(p))),
                action: Action::InstallUpdate(product_id.clone()),
                enabled: true,
            });
        }
        entries.push(MenuEntry::action(Action::Renew, true));
        entries.push(MenuEntry::Separator);
        entries.push(MenuEntry::action(Action::OpenLogs, true));
        if !connected {
            entries.push(MenuEntry::action(Action::StartAgent, true));
        }
        entries.push(MenuEntry::Separator);
        entries.push(MenuEntry::action(Action::Quit, true));
        MenuModel { entries }
    }
}

/// What a menu item does when clicked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Ask the agent for the KooGallery fingerprint and put it on the clipboard.
    CopyFingerprint,
    /// Activate the authorization code on the clipboard ([`AppState::code_target`]).
    ActivateCode,
    /// Pick a License file and import it.
    ImportLicense,
    /// Ask the agent whether upgrades are published for the products.
    CheckForUpdates,
    /// Accept the offered upgrade of a product (the agent raises `EVENT_UPDATE`).
    InstallUpdate(String),
    /// Open KooGallery in the browser.
    Renew,
    /// Open the agent's log folder.
    OpenLogs,
    /// Start the agent.
    StartAgent,
    /// Quit the tray (the agent keeps running).
    Quit,
}

const INSTALL_UPDATE_PREFIX: &str = "install-update:";

impl Action {
    /// The menu item id (stable, parsed back by [`Action::from_id`]).
    #[must_use]
    pub fn id(&self) -> String {
        match self {
            Action::CopyFingerprint => "copy-fingerprint".to_owned(),
            Action::ActivateCode => "activate-code".to_owned(),
            Action::ImportLicense => "import-license".to_owned(),
            Action::CheckForUpdates => "check-updates".to_owned(),
            Action::InstallUpdate(p) => format!("{INSTALL_UPDATE_PREFIX}{p}"),
            Action::Renew => "renew".to_owned(),
            Action::OpenLogs => "open-logs".to_owned(),
            Action::StartAgent => "start-agent".to_owned(),
            Action::Quit => "quit".to_owned(),
        }
    }

    /// The action of a menu item id; `None` for status lines and unknown ids.
    #[must_use]
    pub fn from_id(id: &str) -> Option<Self> {
        Some(match id {
            "copy-fingerprint" => Action::CopyFingerprint,
            "activate-code" => Action::ActivateCode,
            "import-license" => Action::ImportLicense,
            "check-updates" => Action::CheckForUpdates,
            "renew" => Action::Renew,
            "open-logs" => Action::OpenLogs,
            "start-agent" => Action::StartAgent,
            "quit" => Action::Quit,
            other => Action::InstallUpdate(other.strip_prefix(INSTALL_UPDATE_PREFIX)?.to_owned()),
        })
    }

    /// The item's text (for per-product actions the menu builds its own).
    #[must_use]
    pub fn text(&self) -> &'static str {
        match self {
            Action::CopyFingerprint => "Copy device fingerprint",
            Action::ActivateCode => "Activate authorization code from clipboard",
            Action::ImportLicense => "Import License file…",
            Action::CheckForUpdates => "Check for updates",
            Action::InstallUpdate(_) => "Install update",
            Action::Renew => "Renew on KooGallery",
            Action::OpenLogs => "Open logs folder",
            Action::StartAgent => "Start agent",
            Action::Quit => "Quit tray",
        }
    }
}

/// One line of the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuEntry {
    /// A status line (shown greyed out; clicking does nothing).
    Status(String),
    /// A separator.
    Separator,
    /// A clickable item.
    Action {
        /// What it does.
        action: Action,
        /// Its text.
        text: String,
        /// Whether it can be clicked now.
        enabled: bool,
    },
}

impl MenuEntry {
    fn action(action: Action, enabled: bool) -> Self {
        Self::Action {
            text: action.text().to_owned(),
            action,
            enabled,
        }
    }
}

/// The whole menu, top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuModel {
    /// The lines.
    pub entries: Vec<MenuEntry>,
}

impl MenuModel {
    /// The texts of every status line and item, in order (separators left out).
    #[must_use]
    pub fn labels(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                MenuEntry::Status(t) | MenuEntry::Action { text: t, .. } => Some(t.as_str()),
                MenuEntry::Separator => None,
            })
            .collect()
    }

    /// The entry for `action`, if the menu has it.
    #[must_use]
    pub fn find(&self, action: &Action) -> Option<&MenuEntry> {
        self.entries
            .iter()
            .find(|e| matches!(e, MenuEntry::Action { action: a, .. } if a == action))
    }
}

/// The product's name for a person: the display name, else the product id.
#[must_use]
pub fn display_name(p: &ProductState) -> String {
    let name = p
        .display_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(&p.product_id);
    name.chars().filter(|c| !c.is_control()).take(60).collect()
}

/// Why a product is in its state, in words.
#[must_use]
pub fn reason_text(reason: StateReason) -> &'static str {
    match reason {
        StateReason::Licensed => "licensed",
        StateReason::NoLicense => "no License or code yet",
        StateReason::Expired => "the License has expired",
        StateReason::NotYetValid => "the License is not valid yet",
        StateReason::Frozen => "frozen on KooGallery",
        StateReason::Released => "released on KooGallery",
        StateReason::CodeNotAlive => "the authorization code is not active",
        StateReason::BindingMismatch => "the License is for another device",
        StateReason::SignatureInvalid => "the License signature is invalid",
        StateReason::OfflineGrace => "KooGallery unreachable",
        StateReason::OfflineGraceSpent => "offline too long",
        StateReason::ClockTampered => "the clock was set back",
        StateReason::VerifyFailed => "the application refused its License",
        StateReason::TrialExpired => "the trial has ended",
        StateReason::Unknown => "see tessera status",
    }
}

/// Whole days from `now` until `at`, rounded up (a deadline 1 h away is "in 1 day"; one that
/// passed 1 h ago is "today" = 0).
#[must_use]
pub fn days_until(now: OffsetDateTime, at: OffsetDateTime) -> i64 {
    let secs = (at - now).whole_seconds();
    secs.div_euclid(86_400) + i64::from(secs.rem_euclid(86_400) != 0)
}

/// `YYYY-MM-DD` (UTC).
#[must_use]
pub fn date(at: OffsetDateTime) -> String {
    let d = at.to_offset(time::UtcOffset::UTC).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Keeps one line short and free of control characters (agent messages are untrusted text).
fn clip(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= MAX_LINE_CHARS {
        clean
    } else {
        let mut cut: String = clean.chars().take(MAX_LINE_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW).unwrap()
    }

    fn product(id: &str, state: LicenseState, reason: StateReason) -> ProductState {
        ProductState {
            product_id: id.to_owned(),
            display_name: Some(format!("{id} CAD")),
            model: Some(ProductModel::AuthorizationCode),
            state,
            reason,
            message: None,
            deadline: None,
            expires_at: None,
            last_verified_at: None,
            features: Vec::new(),
        }
    }

    fn connected(products: Vec<ProductState>) -> AppState {
        let mut snapshot = Snapshot::empty(now());
        for p in products {
            snapshot.upsert(p);
        }
        AppState {
            agent: AgentLink::Connected { snapshot },
            updates: BTreeMap::new(),
            now: now(),
        }
    }

    fn in_days(d: i64) -> Option<OffsetDateTime> {
        Some(now() + Duration::days(d))
    }

    #[test]
    fn unreachable_agent_shows_grey_and_offers_start() {
        let s = AppState::unreachable(now(), "no agent listens at /run/user/1000/tessera");
        assert_eq!(s.status(), TrayStatus::Unreachable);
        let menu = s.menu();
        assert_eq!(
            menu.entries[0],
            MenuEntry::Status("Tessera agent is not running".into())
        );
        assert!(matches!(
            menu.find(&Action::StartAgent),
            Some(MenuEntry::Action { enabled: true, .. })
        ));
        for needs_agent in [
            Action::CopyFingerprint,
            Action::ActivateCode,
            Action::ImportLicense,
            Action::CheckForUpdates,
        ] {
            assert!(
                matches!(
                    menu.find(&needs_agent),
                    Some(MenuEntry::Action { enabled: false, .. })
                ),
                "{needs_agent:?} must be disabled without an agent"
            );
        }
        assert_eq!(menu.labels().last(), Some(&"Quit tray"));
        assert!(s.tooltip().starts_with("Agent not running\n"));
    }

    #[test]
    fn status_is_the_worst_product() {
        let mut a = product("a", LicenseState::Active, StateReason::Licensed);
        a.expires_at = in_days(30);
        assert_eq!(connected(vec![a.clone()]).status(), TrayStatus::Active);
        let g = product("g", LicenseState::Grace, StateReason::OfflineGrace);
        assert_eq!(
            connected(vec![a.clone(), g.clone()]).status(),
            TrayStatus::Attention
        );
        let b = product("b", LicenseState::Blocked, StateReason::Expired);
        assert_eq!(connected(vec![a, g, b]).status(), TrayStatus::Blocked);
        assert_eq!(connected(vec![]).status(), TrayStatus::Active);
    }

    #[test]
    fn expiry_within_seven_days_or_an_update_needs_attention() {
        let mut p = product("a", LicenseState::Active, StateReason::Licensed);
        p.expires_at = Some(now() + Duration::days(7) + Duration::seconds(1));
        assert_eq!(connected(vec![p.clone()]).status(), TrayStatus::Active);
        p.expires_at = in_days(7);
        let s = connected(vec![p.clone()]);
        assert_eq!(s.status(), TrayStatus::Attention);
        assert_eq!(s.product_line(&p), "a CAD: expires 2027-01-22 (in 7 days)");

        p.expires_at = in_days(100);
        let mut s = connected(vec![p.clone()]);
        s.updates.insert("a".into(), UpdateOffer { forced: false });
        assert_eq!(s.status(), TrayStatus::Attention);
        assert_eq!(
            s.product_line(&p),
            "a CAD: active until 2027-04-25; update available"
        );
        let menu = s.menu();
        assert!(
            menu.find(&Action::InstallUpdate("a".into())).is_some(),
            "{menu:?}"
        );
        assert!(menu.labels().contains(&"Install update of a CAD"));
    }

    #[test]
    fn lines_name_state_date_and_reason() {
        let mut grace = product("g", LicenseState::Grace, StateReason::OfflineGrace);
        grace.deadline = Some(now() + Duration::hours(49));
        let mut blocked = product("b", LicenseState::Blocked, StateReason::Frozen);
        blocked.message = Some("overdue\npayment".into());
        blocked.display_name = None;
        let perpetual = product("p", LicenseState::Active, StateReason::Licensed);
        let s = connected(vec![grace.clone(), blocked.clone(), perpetual.clone()]);
        assert_eq!(
            s.product_line(&grace),
            "g CAD: grace until 2027-01-17 (in 3 days), KooGallery unreachable"
        );
        assert_eq!(
            s.product_line(&blocked),
            "b: blocked, frozen on KooGallery (overdue payment)"
        );
        assert_eq!(s.product_line(&perpetual), "p CAD: active, perpetual");
        let tip = s.tooltip();
        assert_eq!(tip.lines().count(), 4, "{tip}");
        assert!(tip.starts_with("Blocked\nb: blocked"), "{tip}");
        let labels = s.menu().labels().join("|");
        assert!(
            labels.starts_with("b: blocked, frozen on KooGallery (overdue payment)|g CAD: grace"),
            "{labels}"
        );
    }

    #[test]
    fn untrusted_agent_text_is_cut_and_cleaned() {
        let mut p = product("x", LicenseState::Blocked, StateReason::Unknown);
        p.message = Some("A".repeat(5000));
        p.display_name = Some("Evil\u{7}Name".into());
        let line = connected(vec![p.clone()]).product_line(&p);
        assert_eq!(line.chars().count(), MAX_LINE_CHARS);
        assert!(line.starts_with("EvilName: blocked, see tessera status (AAA"));
        assert!(line.ends_with('…'));
    }

    #[test]
    fn the_full_menu_in_order() {
        let mut a = product("a", LicenseState::Active, StateReason::Licensed);
        a.expires_at = in_days(40);
        let s = connected(vec![a]);
        assert_eq!(
            s.menu().labels(),
            vec![
                "a CAD: active until 2027-02-24",
                "Copy device fingerprint",
                "Activate authorization code from clipboard",
                "Import License file…",
                "Check for updates",
                "Renew on KooGallery",
                "Open logs folder",
                "Quit tray",
            ]
        );
        let empty = connected(vec![]);
        let menu = empty.menu();
        assert_eq!(menu.labels()[0], "No products are configured");
        assert!(matches!(
            menu.find(&Action::CheckForUpdates),
            Some(MenuEntry::Action { enabled: false, .. })
        ));
        assert!(matches!(
            menu.find(&Action::ActivateCode),
            Some(MenuEntry::Action { enabled: false, .. })
        ));
    }

    #[test]
    fn action_ids_round_trip() {
        let all = [
            Action::CopyFingerprint,
            Action::ActivateCode,
            Action::ImportLicense,
            Action::CheckForUpdates,
            Action::InstallUpdate("00301-667251-0--0".into()),
            Action::Renew,
            Action::OpenLogs,
            Action::StartAgent,
            Action::Quit,
        ];
        for a in all {
            assert_eq!(Action::from_id(&a.id()), Some(a));
        }
        assert_eq!(Action::from_id("status:0"), None);
        assert_eq!(Action::from_id(""), None);
    }

    #[test]
    fn code_goes_to_the_model_a_product_that_needs_it() {
        let mut file = product("f", LicenseState::Blocked, StateReason::NoLicense);
        file.model = Some(ProductModel::LicenseFile);
        let ok = product("m", LicenseState::Active, StateReason::Licensed);
        let needs = product("n", LicenseState::Blocked, StateReason::NoLicense);
        let s = connected(vec![file.clone(), ok.clone(), needs]);
        assert_eq!(s.code_target().map(|p| p.product_id.as_str()), Some("n"));
        let s = connected(vec![file.clone(), ok]);
        assert_eq!(s.code_target().map(|p| p.product_id.as_str()), Some("m"));
        assert_eq!(connected(vec![file]).code_target(), None);
    }

    #[test]
    fn days_round_up() {
        let t = now();
        assert_eq!(days_until(t, t), 0);
        assert_eq!(days_until(t, t + Duration::seconds(1)), 1);
        assert_eq!(days_until(t, t + Duration::days(1)), 1);
        assert_eq!(
            days_until(t, t + Duration::days(1) + Duration::seconds(1)),
            2
        );
        assert_eq!(days_until(t, t - Duration::seconds(1)), 0);
        assert_eq!(days_until(t, t - Duration::days(2)), -2);
        let s = connected(vec![]);
        assert_eq!(s.days_left(t - Duration::days(2)), "2 days ago");
        assert_eq!(s.days_left(t + Duration::hours(2)), "in 1 day");
    }
}
