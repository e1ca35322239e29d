//! The thread that owns the tray icon (`TrayIcon` is `!Send`): it keeps the [`AppState`],
//! renders it with `tray-icon` (ksni on Linux), runs the menu's actions and sends the desktop
//! notifications. The agent link runs on a tokio thread and reaches this thread through a
//! channel; menu clicks arrive on the same channel.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

use tray_icon::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

use tessera_types::SharedClock;

use crate::icons;
use crate::link::{self, Command, LinkConfig, LinkMsg, UiSink};
use crate::model::{Action, AgentLink, AppState, MenuEntry, MenuModel, TrayStatus};
use crate::notices::{Notice, NoticePlanner};
use crate::platform;

/// The StatusNotifierItem id (and tray-icon id) of the Tessera tray.
pub const TRAY_ID: &str = "tessera-tray";

/// How the tray runs.
#[derive(Debug, Clone)]
pub struct TrayOptions {
    /// How to reach the agent.
    pub link: LinkConfig,
    /// The page "Renew on KooGallery" opens.
    pub renew_url: String,
    /// The agent's log folder, when known.
    pub log_dir: Option<PathBuf>,
    /// Where time comes from.
    pub clock: SharedClock,
    /// How often the view is re-evaluated without news (day counts, reminders).
    pub tick: Duration,
    /// Whether to send desktop notifications.
    pub notifications: bool,
}

/// The tray could not start.
#[derive(Debug, thiserror::Error)]
pub enum TrayError {
    /// An embedded icon is broken.
    #[error("cannot load the tray icons")]
    Icons(#[source] icons::IconError),
    /// The icon could not be created (no session bus, …).
    #[error("cannot create the tray icon")]
    Tray(#[source] tray_icon::Error),
    /// The icon could not be given its pixels.
    #[error("cannot create the tray icon image")]
    Image(#[source] tray_icon::BadIcon),
    /// A worker thread could not be started.
    #[error("cannot start the {0} thread")]
    Thread(&'static str, #[source] std::io::Error),
}

/// Everything that reaches the UI thread.
#[derive(Debug)]
enum UiMsg {
    Link(LinkMsg),
    Menu(String),
    FilePicked(PathBuf),
}

/// Runs the tray until "Quit tray". Blocks the calling thread, which owns the icon.
///
/// # Errors
/// [`TrayError`] when the icon cannot be shown at all.
pub fn run(options: TrayOptions) -> Result<(), TrayError> {
    let (ui_tx, ui_rx) = mpsc::channel::<UiMsg>();
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::channel::<Command>(32);

    let link_tx = ui_tx.clone();
    let sink = UiSink::new(move |m| {
        let _ = link_tx.send(UiMsg::Link(m));
    });
    let link_config = options.link.clone();
    let link_thread = std::thread::Builder::new()
        .name("tray-agent-link".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt.block_on(link::run(link_config, cmd_rx, sink)),
                Err(e) => tracing::error!(error = %e, "cannot start the agent link runtime"),
            }
        })
        .map_err(|e| TrayError::Thread("agent link", e))?;

    let menu_tx = ui_tx.clone();
    MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
        let _ = menu_tx.send(UiMsg::Menu(e.id.0));
    }));

    let notifier = if options.notifications {
        Some(spawn_notifier()?)
    } else {
        None
    };

    let mut ui = Ui::new(options, cmd_tx, ui_tx, notifier)?;
    ui.event_loop(&ui_rx);
    // Dropping the command sender ends the link; it is idle or finishing one call.
    drop(ui);
    let _ = link_thread.join();
    Ok(())
}

struct Ui {
    options: TrayOptions,
    state: AppState,
    planner: NoticePlanner,
    icons: Vec<(TrayStatus, icons::Rgba)>,
    tray: TrayIcon,
    shown: (TrayStatus, String, MenuModel),
    commands: tokio::sync::mpsc::Sender<Command>,
    to_self: Sender<UiMsg>,
    notifier: Option<Sender<Notice>>,
    clipboard: Option<arboard::Clipboard>,
}

impl Ui {
    fn new(
        options: TrayOptions,
        commands: tokio::sync::mpsc::Sender<Command>,
        to_self: Sender<UiMsg>,
        notifier: Option<Sender<Notice>>,
    ) -> Result<Self, TrayError> {
        let icons = TrayStatus::ALL
            .into_iter()
            .map(|s| icons::decode(s).map(|i| (s, i)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(TrayError::Icons)?;
        let state = AppState::unreachable(options.clock.now(), "Connecting to the agent…");
        let status = state.status();
        let tooltip = state.tooltip();
        let menu = state.menu();
        let tray = TrayIconBuilder::new()
            .with_id(TRAY_ID)
            .with_title("Tessera")
            .with_tooltip(&tooltip)
            .with_icon(icon_for(&icons, status)?)
            .with_menu(Box::new(render_menu(&menu)))
            .build()
            .map_err(TrayError::Tray)?;
        Ok(Self {
            options,
            state,
            planner: NoticePlanner::new(),
            icons,
            tray,
            shown: (status, tooltip, menu),
            commands,
            to_self,
            notifier,
            clipboard: None,
        })
    }

    fn event_loop(&mut self, rx: &mpsc::Receiver<UiMsg>) {
        loop {
            let msg = match rx.recv_timeout(self.options.tick) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            self.state.now = self.options.clock.now();
            match msg {
                Some(UiMsg::Link(m)) => self.apply(m),
                Some(UiMsg::Menu(id)) => {
                    if let Some(action) = Action::from_id(&id) {
                        if action == Action::Quit {
                            tracing::info!("quit from the tray menu");
                            return;
                        }
                        self.act(action);
                    }
                }
                Some(UiMsg::FilePicked(path)) => self.command(Command::ImportLicense(path)),
                None => {}
            }
            self.render();
            for notice in self.planner.due(&self.state) {
                self.notify(notice);
            }
        }
    }

    fn apply(&mut self, msg: LinkMsg) {
        match msg {
            LinkMsg::Connected(snapshot) => {
                self.state
                    .updates
                    .retain(|pid, _| snapshot.product(pid).is_some());
                self.state.agent = AgentLink::Connected { snapshot };
            }
            LinkMsg::Unreachable(reason) => {
                self.state.agent = AgentLink::Unreachable { reason };
            }
            LinkMsg::Updates(offers) => self.state.updates = offers,
            LinkMsg::UpdateAccepted(pid) => {
                self.state.updates.remove(&pid);
            }
            LinkMsg::Fingerprint(fp) => self.copy_fingerprint(&fp),
            LinkMsg::Notice(n) => self.notify(n),
        }
    }

    fn act(&mut self, action: Action) {
        tracing::debug!(action = ?action, "menu action");
        match action {
            Action::CopyFingerprint => self.command(Command::FetchFingerprint),
            Action::ActivateCode => self.activate_from_clipboard(),
            Action::ImportLicense => self.pick_license_file(),
            Action::CheckForUpdates => {
                let products = self
                    .state
                    .products()
                    .iter()
                    .map(|p| p.product_id.clone())
                    .collect();
                self.command(Command::CheckUpdates(products));
            }
            Action::InstallUpdate(pid) => self.command(Command::AcceptUpdate(pid)),
            Action::Renew => {
                if let Err(e) = platform::open(&self.options.renew_url) {
                    self.notify(Notice::critical("Cannot open the browser", e.to_string()));
                }
            }
            Action::OpenLogs => self.open_logs(),
            Action::StartAgent => {
                let spawned = std::thread::Builder::new()
                    .name("tray-start-agent".into())
                    .spawn(|| {
                        if let Err(e) = platform::start_agent() {
                            tracing::warn!(error = %e, "cannot start the agent");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot start the agent");
                }
            }
            Action::Quit => {}
        }
    }

    fn command(&mut self, cmd: Command) {
        if self.commands.try_send(cmd).is_err() {
            self.notify(Notice::critical(
                "Tessera is busy",
                "Too many requests are waiting for the agent; try again in a moment.",
            ));
        }
    }

    fn clipboard(&mut self) -> Result<&mut arboard::Clipboard, arboard::Error> {
        if self.clipboard.is_none() {
            // Kept for the tray's lifetime: on X11 the owner of the selection serves it.
            self.clipboard = Some(arboard::Clipboard::new()?);
        }
        self.clipboard
            .as_mut()
            .ok_or(arboard::Error::ClipboardNotSupported)
    }

    fn copy_fingerprint(&mut self, fingerprint: &str) {
        let copied = self
            .clipboard()
            .and_then(|c| c.set_text(fingerprint.to_owned()));
        match copied {
            Ok(()) => self.notify(Notice::info(
                "Device fingerprint copied",
                "Paste it into the fingerprint field of your order on KooGallery.",
            )),
            Err(e) => self.notify(Notice::critical(
                "Cannot use the clipboard",
                format!("{e}. Run `tessera fingerprint` in a terminal instead."),
            )),
        }
    }

    fn activate_from_clipboard(&mut self) {
        let Some(product_id) = self.state.code_target().map(|p| p.product_id.clone()) else {
            self.notify(Notice::critical(
                "No product takes authorization codes",
                "None of the configured products is licensed by authorization code.",
            ));
            return;
        };
        let text = match self.clipboard().and_then(|c| c.get_text()) {
            Ok(t) => t,
            Err(e) => {
                self.notify(Notice::critical("Cannot read the clipboard", e.to_string()));
                return;
            }
        };
        match link::clean_code(&text) {
            Ok(code) => self.command(Command::ActivateCode { product_id, code }),
            Err(why) => self.notify(Notice::critical(
                "No authorization code on the clipboard",
                why,
            )),
        }
    }

    fn pick_license_file(&mut self) {
        let tx = self.to_self.clone();
        // The dialog blocks until the user chooses; the icon's thread must keep answering.
        let spawned = std::thread::Builder::new()
            .name("tray-file-dialog".into())
            .spawn(move || {
                let picked = rfd::FileDialog::new()
                    .set_title("Import a Tessera License file")
                    .add_filter("License files", &["lic", "license", "txt"])
                    .add_filter("All files", &["*"])
                    .pick_file();
                if let Some(path) = picked {
                    let _ = tx.send(UiMsg::FilePicked(path));
                }
            });
        if let Err(e) = spawned {
            self.notify(Notice::critical(
                "Cannot open the file dialog",
                e.to_string(),
            ));
        }
    }

    fn open_logs(&mut self) {
        let Some(dir) = self.options.log_dir.clone() else {
            self.notify(Notice::critical(
                "No logs folder",
                "The agent's state directory is unknown (no home directory).",
            ));
            return;
        };
        if !dir.is_dir() {
            self.notify(Notice::info(
                "No logs yet",
                format!("The agent has not written {} yet.", dir.display()),
            ));
            return;
        }
        if let Err(e) = platform::open(&dir.to_string_lossy()) {
            self.notify(Notice::critical(
                "Cannot open the logs folder",
                e.to_string(),
            ));
        }
    }

    fn render(&mut self) {
        let status = self.state.status();
        let tooltip = self.state.tooltip();
        let menu = self.state.menu();
        if status != self.shown.0 {
            tracing::info!(status = ?status, "tray state changed");
            match icon_for(&self.icons, status) {
                Ok(icon) => {
                    if let Err(e) = self.tray.set_icon(Some(icon)) {
                        tracing::warn!(error = %e, "cannot change the tray icon");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot build the tray icon"),
            }
        }
        if tooltip != self.shown.1
            && let Err(e) = self.tray.set_tooltip(Some(&tooltip))
        {
            tracing::warn!(error = %e, "cannot change the tooltip");
        }
        if menu != self.shown.2 {
            self.tray.set_menu(Some(Box::new(render_menu(&menu))));
        }
        self.shown = (status, tooltip, menu);
    }

    fn notify(&mut self, notice: Notice) {
        tracing::info!(summary = %notice.summary, body = %notice.body, "notice");
        if let Some(tx) = &self.notifier {
            let _ = tx.send(notice);
        }
    }
}

fn icon_for(icons: &[(TrayStatus, icons::Rgba)], status: TrayStatus) -> Result<Icon, TrayError> {
    let rgba = icons
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, i)| i)
        .ok_or(TrayError::Icons(icons::IconError::Format { status }))?;
    Icon::from_rgba(rgba.pixels.clone(), rgba.size, rgba.size).map_err(TrayError::Image)
}

/// Turns the menu model into a `muda` menu. Status lines are disabled items.
fn render_menu(model: &MenuModel) -> Menu {
    let menu = Menu::new();
    for (i, entry) in model.entries.iter().enumerate() {
        let appended = match entry {
            MenuEntry::Status(text) => {
                menu.append(&MenuItem::with_id(format!("status-{i}"), text, false, None))
            }
            MenuEntry::Separator => menu.append(&PredefinedMenuItem::separator()),
            MenuEntry::Action {
                action,
                text,
                enabled,
            } => menu.append(&MenuItem::with_id(action.id(), text, *enabled, None)),
        };
        if let Err(e) = appended {
            tracing::warn!(error = %e, "cannot add a menu item");
        }
    }
    menu
}

/// Desktop notifications go out from their own thread: the notification service may be slow
/// or absent, and the icon's thread must not wait for it.
fn spawn_notifier() -> Result<Sender<Notice>, TrayError> {
    let (tx, rx) = mpsc::channel::<Notice>();
    std::thread::Builder::new()
        .name("tray-notifier".into())
        .spawn(move || {
            for notice in rx {
                let mut n = notify_rust::Notification::new();
                n.appname("Tessera")
                    .summary(&notice.summary)
                    .body(&notice.body)
                    .icon("tessera");
                #[cfg(all(unix, not(target_os = "macos")))]
                n.urgency(match notice.urgency {
                    crate::notices::Urgency::Normal => notify_rust::Urgency::Normal,
                    crate::notices::Urgency::Critical => notify_rust::Urgency::Critical,
                });
                if let Err(e) = n.show() {
                    tracing::debug!(error = %e, "desktop notification not shown");
                }
            }
        })
        .map_err(|e| TrayError::Thread("notifier", e))?;
    Ok(tx)
}
