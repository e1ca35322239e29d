//! The story: every step a customer, the marketplace, the ISV and the application go through,
//! each checked and narrated on one numbered line.

use std::time::Duration as StdDuration;

use koogallery_sim::{
    CallbackOutcome, LicenseModel, LicenseRequest, ManifestSpec, NewOrder, Renewal, SimHandle,
};
use tessera::tessera_result;
use tessera_ipc::proto::FingerprintInfo;
use tessera_ipc::{AppInfo, Call, ClientConfig, Endpoint, IpcClient, Reply};
use tessera_license::{Verifier, VerifyContext};
use tessera_types::events::{DeliveredLicense, DeliveryStatus};
use tessera_types::{Clock as _, Event, EventKind, KooTime, LicenseState, ProductState};
use time::{Duration, OffsetDateTime};

use crate::SandboxError;
use crate::demo_app::DemoApp;
use crate::world::{INSTALLED_VERSION, NEWER_VERSION, PRODUCT_CODE, PRODUCT_FILE, World};

/// How long the story waits for work other tasks are doing (callbacks, signing, uploads).
const SETTLE_WAIT: StdDuration = StdDuration::from_secs(20);

/// One narrated step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Its number.
    pub number: u32,
    /// Its title.
    pub title: &'static str,
    /// The narration line, as printed.
    pub line: String,
}

/// Where narration goes; keeps what was said.
pub struct Narrator {
    sink: Box<dyn FnMut(&str) + Send>,
    steps: Vec<StepRecord>,
}

impl std::fmt::Debug for Narrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Narrator")
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl Narrator {
    /// A narrator that hands every line to `sink`.
    #[must_use]
    pub fn new(sink: impl FnMut(&str) + Send + 'static) -> Self {
        Self {
            sink: Box::new(sink),
            steps: Vec::new(),
        }
    }

    /// Says one line outside the numbered steps.
    pub fn say(&mut self, line: &str) {
        (self.sink)(line);
    }

    fn step(&mut self, number: u32, title: &'static str, text: &str) {
        let line = format!("{number}. {text}");
        (self.sink)(&line);
        self.steps.push(StepRecord {
            number,
            title,
            line,
        });
    }

    /// The steps narrated so far.
    #[must_use]
    pub fn steps(&self) -> &[StepRecord] {
        &self.steps
    }
}

/// A step under way: its number and title, for the error when it does not hold.
#[derive(Clone, Copy)]
struct Step {
    number: u32,
    title: &'static str,
}

impl Step {
    fn fail(self, detail: impl Into<String>) -> SandboxError {
        SandboxError::Step {
            number: self.number,
            title: self.title,
            detail: detail.into(),
        }
    }

    fn ensure(self, holds: bool, detail: impl FnOnce() -> String) -> Result<(), SandboxError> {
        if holds {
            Ok(())
        } else {
            Err(self.fail(detail()))
        }
    }
}

/// Polls `check` until it holds or [`SETTLE_WAIT`] passes. What is awaited is work other tasks
/// do (a callback answered, a License signed), not the passage of story time.
async fn settle(mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

async fn callback_result(sim: &SimHandle, id: u64) -> Result<String, String> {
    let record = tokio::time::timeout(SETTLE_WAIT, sim.callback_settled(id))
        .await
        .map_err(|_| "the callback did not settle in time".to_owned())?
        .ok_or_else(|| "the sim has no record of the callback".to_owned())?;
    match record.outcome {
        CallbackOutcome::Delivered { result_code } => Ok(result_code),
        other => Err(format!("{} was not delivered: {other:?}", record.activity)),
    }
}

fn day(t: OffsetDateTime) -> String {
    let d = t.date();
    format!("{}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn code_hint(code: &str) -> String {
    let head: String = code.chars().take(4).collect();
    format!("{head}… ({} chars)", code.chars().count())
}

fn product(world: &World, pid: &str) -> Option<ProductState> {
    world.agent.snapshot().product(pid).cloned()
}

fn describe(p: Option<&ProductState>) -> String {
    p.map_or_else(
        || "unknown to the agent".to_owned(),
        |p| format!("{:?} ({:?})", p.state, p.reason),
    )
}

async fn wait_state(world: &World, pid: &str, state: LicenseState) -> Option<ProductState> {
    let mut last = None;
    let held = settle(|| {
        last = product(world, pid);
        last.as_ref().is_some_and(|p| p.state == state)
    })
    .await;
    held.then_some(last).flatten()
}

async fn user_client(world: &World) -> Result<IpcClient, SandboxError> {
    let app = AppInfo {
        product_id: String::new(),
        name: "tessera-sandbox".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
    };
    let mut config = ClientConfig::new(Endpoint::at(world.agent_paths.socket.clone()), app);
    config.reconnect = None;
    IpcClient::connect(config)
        .await
        .map_err(|e| SandboxError::Start {
            what: "the user's IPC connection to the agent",
            source: Box::new(e),
        })
}

/// Runs the whole story against `world`, narrating through `narrator`.
///
/// # Errors
/// [`SandboxError::Step`] for the first step that does not hold.
#[allow(clippy::too_many_lines)] // one linear story reads best in one place
pub async fn run_story(world: &World, narrator: &mut Narrator) -> Result<(), SandboxError> {
    let sim = world.sim.handle();
    let user = user_client(world).await?;

    // 1. Everything is up.
    let s = Step {
        number: 1,
        title: "components started",
    };
    let snapshot = world.agent.snapshot();
    s.ensure(
        snapshot.product(PRODUCT_FILE).is_some() && snapshot.product(PRODUCT_CODE).is_some(),
        || "the agent did not load both product descriptors".to_owned(),
    )?;
    narrator.step(
        s.number,
        s.title,
        &format!(
            "koogallery-sim at {} (fallback {}), tessera-isv at {}, tessera-agent at {}: up; \
             products {PRODUCT_FILE} (License file) and {PRODUCT_CODE} (authorization code) loaded",
            sim.primary_url(),
            sim.fallback_url(),
            world.isv_url,
            world.agent_paths.socket.display()
        ),
    );

    // 2. Purchase (Model B): newInstance reaches the ISV, which creates the instance.
    let s = Step {
        number: 2,
        title: "purchase",
    };
    let created = sim
        .create_order(&NewOrder::yearly(LicenseModel::OnlineLicense, PRODUCT_FILE))
        .map_err(|e| s.fail(format!("KooGallery refused the order: {e}")))?;
    let callback = created
        .callback_id
        .ok_or_else(|| s.fail("KooGallery sent no newInstance callback"))?;
    let answer = callback_result(&sim, callback)
        .await
        .map_err(|e| s.fail(e))?;
    s.ensure(answer == "000000" || answer == "000004", || {
        format!("tessera-isv answered newInstance with {answer}")
    })?;
    let order_id = created.order.order_id.clone();
    let mut instance_id = None;
    settle(|| {
        instance_id = sim
            .order(&order_id)
            .and_then(|o| o.lines.first().and_then(|l| l.instance_id.clone()));
        instance_id.is_some()
    })
    .await;
    let instance_id =
        instance_id.ok_or_else(|| s.fail("KooGallery never learned the ISV's instance id"))?;
    narrator.step(
        s.number,
        s.title,
        &format!(
            "Purchase: order {order_id} for {PRODUCT_FILE}; newInstance → tessera-isv answered \
             {answer}, instance {instance_id}"
        ),
    );

    // 3. Fingerprint: the agent's device identity goes to KooGallery with the License request.
    let s = Step {
        number: 3,
        title: "fingerprint",
    };
    let fingerprint: FingerprintInfo = match user.call(Call::Fingerprint).await {
        Ok(Reply::Fingerprint(f)) => f,
        Ok(other) => return Err(s.fail(format!("unexpected answer {other:?}"))),
        Err(e) => return Err(s.fail(format!("the agent did not give its fingerprint: {e}"))),
    };
    let submitted = fingerprint
        .short_form
        .clone()
        .unwrap_or_else(|| fingerprint.koogallery.clone());
    s.ensure(
        !submitted.is_empty() && submitted.chars().count() <= 1024,
        || {
            format!(
                "the fingerprint has {} characters",
                submitted.chars().count()
            )
        },
    )?;
    let requested = sim
        .request_license(
            &instance_id,
            &LicenseRequest {
                device_fingerprint: submitted.clone(),
                effective_time: None,
                expire_time: None,
            },
        )
        .map_err(|e| s.fail(format!("KooGallery refused the License request: {e}")))?;
    let event_id = requested.result.event_id.clone();
    let callback = *requested
        .callback_ids
        .first()
        .ok_or_else(|| s.fail("KooGallery sent no getLicenseAsync callback"))?;
    let answer = callback_result(&sim, callback)
        .await
        .map_err(|e| s.fail(e))?;
    s.ensure(answer == "000000" || answer == "000004", || {
        format!("tessera-isv answered getLicenseAsync with {answer}")
    })?;
    narrator.step(
        s.number,
        s.title,
        &format!(
            "Fingerprint: the agent reports this device as a {}-character KooGallery fingerprint \
             (hardware id {}); submitted → getLicenseAsync event {event_id}, tessera-isv answered {answer}",
            submitted.chars().count(),
            fingerprint.hardware_id.as_deref().unwrap_or("unavailable"),
        ),
    );

    // 4. The ISV signs and uploads; the app asks for its License and verifies it itself.
    let s = Step {
        number: 4,
        title: "License issued and verified",
    };
    let delivered = settle(|| sim.event(&event_id).is_some_and(|e| e.delivery.is_some())).await;
    s.ensure(delivered, || {
        "tessera-isv did not upload a License for the event".to_owned()
    })?;
    let cae = DemoApp::connect(
        &world.agent_paths.socket,
        PRODUCT_FILE,
        "Sandbox CAE Solver",
        INSTALLED_VERSION,
        world.clock.shared(),
    )
    .await
    .map_err(|e| s.fail(format!("the demo app could not connect: {e}")))?;
    cae.request_license_file("sandbox-solver.lic")
        .await
        .map_err(|e| s.fail(format!("GetLicenseFileRequest failed: {e}")))?;
    let path = match cae.next_event(EventKind::LicenseVerify).await {
        Some(Ok(Event::LicenseVerify {
            status: DeliveryStatus::Success,
            license: DeliveredLicense::File(path),
            ..
        })) => path,
        Some(Ok(Event::LicenseVerify { message, .. })) => {
            return Err(s.fail(format!(
                "EVENT_LICENSE_VERIFY reported a failed delivery: {}",
                message.unwrap_or_default()
            )));
        }
        Some(Ok(other)) => return Err(s.fail(format!("unexpected event {other:?}"))),
        Some(Err(e)) => return Err(s.fail(e)),
        None => return Err(s.fail("no EVENT_LICENSE_VERIFY arrived")),
    };
    let bytes = std::fs::read(&path)
        .map_err(|e| s.fail(format!("cannot read the delivered License {path}: {e}")))?;
    let identity = tokio::task::spawn_blocking(tessera_fingerprint::collect_local)
        .await
        .map_err(|e| s.fail(format!("collecting the device identity failed: {e}")))?;
    let verifier = Verifier::with_keys([world.isv_key.clone()]);
    let now = world.clock.now();
    let signed = verifier
        .verify(&bytes, &VerifyContext::new(PRODUCT_FILE, now, &identity))
        .map_err(|e| s.fail(format!("the demo app's own verification refused it: {e}")))?;
    cae.verify_notify(true, "")
        .await
        .map_err(|e| s.fail(format!("LicenseVerifyNotify failed: {e}")))?;
    let state = wait_state(world, PRODUCT_FILE, LicenseState::Active)
        .await
        .ok_or_else(|| {
            s.fail(format!(
                "the agent has {PRODUCT_FILE} {}",
                describe(product(world, PRODUCT_FILE).as_ref())
            ))
        })?;
    let license = &signed.license;
    let features: Vec<String> = license
        .features
        .iter()
        .map(|f| format!("{}×{}", f.name, f.count))
        .collect();
    narrator.step(
        s.number,
        s.title,
        &format!(
            "License issued by tessera-isv (id {}, {} chars, key {}), delivered through KooGallery, \
             verified against this device: ok; features {}; valid until {}; agent: {:?}",
            license.license_id,
            bytes.len(),
            signed.key_id.as_str(),
            features.join(", "),
            license.not_after.map_or_else(|| "perpetual".to_owned(), day),
            state.state,
        ),
    );

    // 5. A feature is checked out and given back.
    let s = Step {
        number: 5,
        title: "feature checked out",
    };
    let lease = cae
        .checkout("solver")
        .await
        .map_err(|e| s.fail(format!("checkout of solver refused: {e}")))?;
    let in_use = product(world, PRODUCT_FILE)
        .and_then(|p| p.feature("solver").map(|f| (f.in_use, f.seats)))
        .unwrap_or((0, None));
    s.ensure(in_use.0 >= 1, || {
        "the agent does not count the lease".to_owned()
    })?;
    let check = cae.check("solver");
    s.ensure(check == tessera_result::TESSERA_OK, || {
        format!("the SDK's check says {check:?}")
    })?;
    cae.release(lease)
        .await
        .map_err(|e| s.fail(format!("release failed: {e}")))?;
    narrator.step(
        s.number,
        s.title,
        &format!(
            "Feature checked out: solver (lease granted, {} of {} seats in use), SDK check: \
             TESSERA_OK; released",
            in_use.0,
            in_use
                .1
                .map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
        ),
    );

    // 6. Model A: a code is bought, accepted and activated.
    let s = Step {
        number: 6,
        title: "authorization code activated",
    };
    let mut order = NewOrder::yearly(LicenseModel::AuthorizationCode, PRODUCT_CODE);
    order.expire_time = Some(KooTime::new(world.clock.now() + Duration::days(30)));
    let created = sim
        .create_order(&order)
        .map_err(|e| s.fail(format!("KooGallery refused the order: {e}")))?;
    let code = sim
        .issue_code(&created.order.order_id, None)
        .map_err(|e| s.fail(format!("KooGallery issued no code: {e}")))?
        .code;
    sim.accept_code(&code)
        .map_err(|e| s.fail(format!("accepting the code failed: {e}")))?;
    let cad = DemoApp::connect(
        &world.agent_paths.socket,
        PRODUCT_CODE,
        "Sandbox CAD Modeler",
        INSTALLED_VERSION,
        world.clock.shared(),
    )
    .await
    .map_err(|e| s.fail(format!("the demo app could not connect: {e}")))?;
    cad.activate_code(&code)
        .await
        .map_err(|e| s.fail(format!("activation refused: {e}")))?;
    let state = wait_state(world, PRODUCT_CODE, LicenseState::Active)
        .await
        .ok_or_else(|| {
            s.fail(format!(
                "the agent has {PRODUCT_CODE} {}",
                describe(product(world, PRODUCT_CODE).as_ref())
            ))
        })?;
    let lease = cad
        .checkout("modeler")
        .await
        .map_err(|e| s.fail(format!("checkout of modeler refused: {e}")))?;
    cad.release(lease)
        .await
        .map_err(|e| s.fail(format!("release failed: {e}")))?;
    narrator.step(
        s.number,
        s.title,
        &format!(
            "Authorization code {} bought, accepted by the buyer and activated: {PRODUCT_CODE} {:?} \
             until {}; modeler checked out and released",
            code_hint(&code),
            state.state,
            state.expires_at.map_or_else(|| "(no expiry)".to_owned(), day)
        ),
    );

    // 7. The next day, the heartbeat.
    let s = Step {
        number: 7,
        title: "daily heartbeat",
    };
    let before = sim.code(&code).map_or(0, |c| c.heartbeats);
    cad.drain_events().await;
    world.clock.advance(Duration::days(1));
    world.agent.tick().await;
    match cad.next_event(EventKind::HeartbeatReply).await {
        Some(Ok(Event::HeartbeatReply {
            ok: true, status, ..
        })) => {
            s.ensure(status.as_deref() == Some("ALIVE"), || {
                format!("the heartbeat answered {status:?}")
            })?;
        }
        Some(Ok(other)) => return Err(s.fail(format!("the heartbeat failed: {other:?}"))),
        Some(Err(e)) => return Err(s.fail(e)),
        None => return Err(s.fail("no EVENT_HEARTBEAT_REPLY arrived")),
    }
    let after = sim.code(&code).map_or(0, |c| c.heartbeats);
    s.ensure(after > before, || {
        "KooGallery saw no heartbeat for the code".to_owned()
    })?;
    let state = product(world, PRODUCT_CODE);
    s.ensure(
        state
            .as_ref()
            .is_some_and(|p| p.state == LicenseState::Active),
        || format!("the agent has {}", describe(state.as_ref())),
    )?;
    narrator.step(
        s.number,
        s.title,
        &format!(
            "Daily heartbeat: clock +24 h → the agent queried KooGallery: ALIVE (heartbeats seen \
             by KooGallery: {after}); {PRODUCT_CODE} stays Active"
        ),
    );

    // 8. Expiry without renewal: blocked.
    let s = Step {
        number: 8,
        title: "expiry blocks",
    };
    world.clock.advance(Duration::days(30));
    world.agent.tick().await;
    let state = wait_state(world, PRODUCT_CODE, LicenseState::Blocked)
        .await
        .ok_or_else(|| {
            s.fail(format!(
                "after expiry the agent has {PRODUCT_CODE} {}",
                describe(product(world, PRODUCT_CODE).as_ref())
            ))
        })?;
    let marketplace = sim.code(&code).map_or_else(
        || "no record of it".to_owned(),
        |c| format!("{:?}", c.state),
    );
    let refused = match cad.checkout("modeler").await {
        Ok(lease) => {
            let _ = cad.release(lease).await;
            return Err(s.fail("a new checkout was granted on a blocked product"));
        }
        Err(e) => e.code(),
    };
    narrator.step(
        s.number,
        s.title,
        &format!(
            "Expiry: clock +30 days, past the code's end → KooGallery has it {marketplace}; \
             agent: Blocked ({:?}); new checkout refused ({refused:?})",
            state.reason
        ),
    );

    // 9. Renewal: active again.
    let s = Step {
        number: 9,
        title: "renewal restores",
    };
    let renewed_until = world.clock.now() + Duration::days(365);
    let renewed = sim
        .renew_code(
            &code,
            &Renewal {
                expire_time: KooTime::new(renewed_until),
                scene: None,
                product_id: None,
            },
        )
        .map_err(|e| s.fail(format!("KooGallery refused the renewal: {e}")))?;
    let mut isv_answers = Vec::new();
    for id in &renewed.callback_ids {
        isv_answers.push(callback_result(&sim, *id).await.map_err(|e| s.fail(e))?);
    }
    let before = sim.code(&code).map_or(0, |c| c.heartbeats);
    world.clock.advance(Duration::minutes(5));
    // The app tries again: that use is what makes the agent re-check a blocked code.
    if let Ok(lease) = cad.checkout("modeler").await {
        let _ = cad.release(lease).await;
    }
    world.agent.tick().await;
    let state = wait_state(world, PRODUCT_CODE, LicenseState::Active)
        .await
        .ok_or_else(|| {
            s.fail(format!(
                "after renewal the agent has {PRODUCT_CODE} {}",
                describe(product(world, PRODUCT_CODE).as_ref())
            ))
        })?;
    let lease = cad
        .checkout("modeler")
        .await
        .map_err(|e| s.fail(format!("checkout after renewal refused: {e}")))?;
    cad.release(lease)
        .await
        .map_err(|e| s.fail(format!("release failed: {e}")))?;
    let after = sim.code(&code).map_or(0, |c| c.heartbeats);
    s.ensure(after > before, || {
        "the agent became Active without asking KooGallery".to_owned()
    })?;
    narrator.step(
        s.number,
        s.title,
        &format!(
            "Renewal in KooGallery until {} (refreshLicenseCode → tessera-isv answered {}); next \
             heartbeat → ALIVE; agent: {:?}; checkout granted again",
            day(renewed_until),
            if isv_answers.is_empty() {
                "nothing sent".to_owned()
            } else {
                isv_answers.join(", ")
            },
            state.state
        ),
    );

    // 10. Upgrade: CheckNewVersions → EVENT_UPGRADENOTICE, user accepts → EVENT_UPDATE.
    let s = Step {
        number: 10,
        title: "upgrade",
    };
    let now = world.clock.now();
    sim.publish_manifest(
        PRODUCT_FILE,
        ManifestSpec {
            latest_version: NEWER_VERSION.to_owned(),
            min_supported_version: INSTALLED_VERSION.to_owned(),
            forced: false,
            released_at: now,
            download_url: format!("https://downloads.example.invalid/{NEWER_VERSION}/solver.pkg"),
            sha256: "0".repeat(64),
            notes: "sandbox release".to_owned(),
            valid_until: now + Duration::days(30),
        },
    )
    .map_err(|e| s.fail(format!("the sim could not publish the manifest: {e}")))?;
    cae.drain_events().await;
    cae.check_new_versions()
        .await
        .map_err(|e| s.fail(format!("CheckNewVersions failed: {e}")))?;
    match cae.next_event(EventKind::UpgradeNotice).await {
        Some(Ok(Event::UpgradeNotice { available: true })) => {}
        Some(Ok(other)) => return Err(s.fail(format!("expected an upgrade, got {other:?}"))),
        Some(Err(e)) => return Err(s.fail(e)),
        None => return Err(s.fail("no EVENT_UPGRADENOTICE arrived")),
    }
    match user
        .call(Call::AcceptUpdate {
            product_id: Some(PRODUCT_FILE.to_owned()),
        })
        .await
    {
        Ok(Reply::Ack) => {}
        Ok(other) => return Err(s.fail(format!("unexpected answer {other:?}"))),
        Err(e) => return Err(s.fail(format!("the agent refused the acceptance: {e}"))),
    }
    let forced = match cae.next_event(EventKind::Update).await {
        Some(Ok(Event::Update { forced })) => forced,
        Some(Ok(other)) => return Err(s.fail(format!("unexpected event {other:?}"))),
        Some(Err(e)) => return Err(s.fail(e)),
        None => return Err(s.fail("no EVENT_UPDATE arrived")),
    };
    s.ensure(!forced, || {
        "the optional upgrade arrived as forced".to_owned()
    })?;
    cae.upgrade_notify(true)
        .await
        .map_err(|e| s.fail(format!("UpgradeNotify failed: {e}")))?;
    narrator.step(
        s.number,
        s.title,
        &format!(
            "CheckNewVersions → EVENT_UPGRADENOTICE (available: true, {NEWER_VERSION} > \
             {INSTALLED_VERSION}); user accepted (as `tessera accept-update`) → EVENT_UPDATE \
             (fromForceWin: false); app answered UpgradeNotify(true)"
        ),
    );

    user.close().await;
    cae.close().await;
    cad.close().await;
    Ok(())
}
