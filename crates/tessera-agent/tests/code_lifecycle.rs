//! Model A against the emulator on a manual clock: activation, first-use-per-day heartbeat,
//! EXPIRED / RELEASED → Blocked, renewal → Active, offline grace, clock rollback, host fallback.

mod common;

use common::{PRODUCT, env};
use koogallery_sim::{HostFaults, RenewScene, Renewal};
use tessera_types::{Clock as _, KooTime, LicenseState, StateReason};
use time::Duration;

#[tokio::test]
async fn activation_makes_the_product_active_and_checkouts_work() {
    let env = env("").await;
    let app = env.client(PRODUCT).await;
    assert_eq!(env.state().state, LicenseState::Blocked);
    assert_eq!(env.state().reason, StateReason::NoLicense);
    assert!(app.checkout("solver").await.is_err());

    let code = env.new_code();
    let ps = env.activate(&app, &code).await;
    assert_eq!(
        (ps.state, ps.reason),
        (LicenseState::Active, StateReason::Licensed)
    );
    assert!(ps.expires_at.is_some());
    let lease = app.checkout("solver").await.unwrap();
    assert_eq!(lease.expires_at, env.clock.now() + Duration::minutes(15));

    // an unknown code is refused and nothing changes
    let cli = env.client("").await;
    let e = cli
        .call(tessera_ipc::Call::ActivateCode {
            product_id: Some(PRODUCT.into()),
            code: tessera_ipc::proto::AuthCode("PLNOSUCHCODE".into()),
        })
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("92020005"), "{e:?}");
    assert_eq!(env.state().state, LicenseState::Active);
}

#[tokio::test]
async fn heartbeat_runs_on_first_use_each_day_only() {
    let env = env("").await;
    let app = env.client(PRODUCT).await;
    let code = env.new_code();
    env.activate(&app, &code).await;
    let activated_check = env.state().last_verified_at.unwrap();

    // same day: a new use does not query again
    env.clock.advance(Duration::hours(2));
    let _second = env.client(PRODUCT).await;
    env.agent().tick().await;
    assert_eq!(env.state().last_verified_at.unwrap(), activated_check);

    // next day: the first use queries
    env.clock.advance(Duration::hours(24));
    let third = env.client(PRODUCT).await;
    third.checkout("solver").await.unwrap();
    env.agent().tick().await;
    let checked = env.state().last_verified_at.unwrap();
    assert!(checked > activated_check, "{checked} vs {activated_check}");
    assert_eq!(env.state().state, LicenseState::Active);
    // and a usage report went out for the day
    assert!(!env.sim.usage(&code).is_empty());
}

#[tokio::test]
async fn expired_then_renewed_then_released() {
    let env = env("").await;
    let app = env.client(PRODUCT).await;
    let code = env.new_code();
    env.activate(&app, &code).await;

    env.sim.expire_code(&code).unwrap();
    env.clock.advance(Duration::hours(25));
    app.checkout("solver").await.ok();
    env.agent().tick().await;
    let ps = env.state();
    assert_eq!(
        (ps.state, ps.reason),
        (LicenseState::Blocked, StateReason::Expired)
    );
    let refused = app.checkout("solver").await.unwrap_err();
    assert!(format!("{refused:?}").contains("EXPIRED"), "{refused:?}");

    let new_expiry = KooTime::new(env.clock.now() + Duration::days(365));
    env.sim
        .renew_code(
            &code,
            &Renewal {
                expire_time: new_expiry,
                scene: Some(RenewScene::Renewal),
                product_id: None,
            },
        )
        .unwrap();
    env.clock.advance(Duration::minutes(2));
    app.checkout("solver").await.ok();
    env.agent().tick().await;
    let ps = env.state();
    assert_eq!(
        (ps.state, ps.reason),
        (LicenseState::Active, StateReason::Licensed)
    );
    assert!(app.checkout("solver").await.is_ok());

    env.sim.release_code(&code, true).unwrap();
    env.clock.advance(Duration::days(1));
    app.checkout("solver").await.ok();
    env.agent().tick().await;
    let ps = env.state();
    assert_eq!(
        (ps.state, ps.reason),
        (LicenseState::Blocked, StateReason::Released)
    );
}

#[tokio::test]
async fn fourteen_days_offline_block_on_day_15_not_before() {
    let env = env("").await;
    let app = env.client(PRODUCT).await;
    let code = env.new_code();
    env.activate(&app, &code).await;
    let start = env.clock.now();
    env.offline();

    // every 12 h the connected app's product is checked and fails; grace runs
    for half_day in 1..28 {
        env.clock.set(start + Duration::hours(12 * half_day));
        env.agent().tick().await;
        let ps = env.state();
        assert_eq!(ps.state, LicenseState::Grace, "half-day {half_day}: {ps:?}");
        assert_eq!(ps.deadline, Some(start + Duration::days(14)));
    }
    env.clock
        .set(start + Duration::days(14) - Duration::seconds(1));
    env.agent().tick().await;
    assert_eq!(env.state().state, LicenseState::Grace);
    assert!(app.checkout("solver").await.is_ok());

    env.clock.set(start + Duration::days(14));
    env.agent().tick().await;
    let ps = env.state();
    assert_eq!(
        (ps.state, ps.reason),
        (LicenseState::Blocked, StateReason::OfflineGraceSpent)
    );
    assert!(app.checkout("solver").await.is_err());

    // back online: one successful check restores it
    env.sim.clear_faults();
    env.clock.advance(Duration::minutes(15));
    env.agent().tick().await;
    assert_eq!(env.state().state, LicenseState::Active);
}

#[tokio::test]
async fn clock_rolled_back_48h_while_offline_refuses_grace() {
    let env = env("").await;
    let app = env.client(PRODUCT).await;
    let code = env.new_code();
    env.activate(&app, &code).await;
    env.offline();
    env.clock.advance(Duration::days(3));
    env.agent().tick().await;
    assert_eq!(env.state().state, LicenseState::Grace);

    env.clock.advance(Duration::hours(-48));
    env.agent().tick().await;
    let ps = env.state();
    assert_eq!(
        (ps.state, ps.reason),
        (LicenseState::Blocked, StateReason::ClockTampered)
    );
    assert!(env.agent().status().clock_tampered);
    assert!(app.checkout("solver").await.is_err());

    // a rollback within 24 h alone would not have done this; an online check clears it
    env.sim.clear_faults();
    env.clock.advance(Duration::minutes(20));
    env.agent().tick().await;
    assert_eq!(env.state().state, LicenseState::Active);
    assert!(!env.agent().status().clock_tampered);
}

#[tokio::test]
async fn fallback_host_is_used_when_the_primary_is_down() {
    let env = env("").await;
    env.sim.set_host_faults(HostFaults {
        primary_down: true,
        ..HostFaults::default()
    });
    let app = env.client(PRODUCT).await;
    let code = env.new_code();
    let ps = env.activate(&app, &code).await;
    assert_eq!(ps.state, LicenseState::Active);
    env.clock.advance(Duration::days(1));
    app.checkout("solver").await.unwrap();
    env.agent().tick().await;
    assert_eq!(env.state().state, LicenseState::Active);
    assert!(env.state().last_verified_at.unwrap() > env.clock.now() - Duration::minutes(1));
}

#[tokio::test]
async fn blocking_pushes_a_state_event_and_leases_run_to_their_end() {
    let env = env("lease_minutes = 1440").await;
    let app = env.client(PRODUCT).await;
    let code = env.new_code();
    env.activate(&app, &code).await;
    let lease = app.checkout("solver").await.unwrap();
    let mut events = app.events();

    env.sim.release_code(&code, true).unwrap();
    env.clock.advance(Duration::hours(12));
    env.agent().tick().await;
    assert_eq!(env.state().state, LicenseState::Blocked);
    let mut saw_state = false;
    while let Ok(Some(ev)) =
        tokio::time::timeout(std::time::Duration::from_secs(2), events.next()).await
    {
        if let Ok(tessera_types::Event::LicenseState(ps)) = ev.event()
            && ps.state == LicenseState::Blocked
        {
            saw_state = true;
            break;
        }
    }
    assert!(saw_state, "EVENT_LICENSE_STATE Blocked was pushed");
    // the running lease is not revoked (default policy), but cannot be renewed
    let renew = app
        .call(tessera_ipc::Call::RenewLease {
            lease_id: lease.lease_id.clone(),
        })
        .await;
    assert!(renew.is_err());
    assert!(
        app.release(lease.lease_id).await.is_ok(),
        "the lease was still held"
    );
}

#[tokio::test]
async fn several_codes_activate_in_one_v2_batch() {
    use koogallery_sim::{FaultAction, FaultRule};
    use tessera_ipc::proto::{AuthCode, ProductCode};
    use tessera_ipc::{Call, Reply};

    let mut env = env("").await;
    std::fs::write(
        env.paths.user_products_dir().join("cae.toml"),
        "product_id = \"P-CAE\"\nname = \"FooCAE\"\nmodels = [\"authorization_code\"]\n",
    )
    .unwrap();
    env.agent.take().unwrap().shutdown("restart", true).await;
    env.agent = Some(env.start_agent().await);
    let cli = env.client("").await;
    let batch = |a: &str, b: &str| Call::ActivateCodes {
        codes: vec![
            ProductCode {
                product_id: PRODUCT.into(),
                code: AuthCode(a.into()),
            },
            ProductCode {
                product_id: "P-CAE".into(),
                code: AuthCode(b.into()),
            },
        ],
    };

    // v1 is broken: a batch of two must not need it
    let v1 = env
        .sim
        .add_fault(FaultRule::new(
            "license.activate.v1",
            FaultAction::Status {
                status: 400,
                body: None,
            },
        ))
        .unwrap();
    let (a, b) = (env.new_code(), env.new_code());
    let Reply::Snapshot(snap) = cli.call(batch(&a, &b)).await.unwrap() else {
        panic!("expected a snapshot");
    };
    for p in [PRODUCT, "P-CAE"] {
        let ps = snap.product(p).unwrap();
        assert_eq!(
            (ps.state, ps.reason),
            (LicenseState::Active, StateReason::Licensed),
            "{p}"
        );
        assert!(
            ps.expires_at.is_some(),
            "{p}: the v2 heartbeat gave the expiry"
        );
    }
    assert!(env.sim.remove_fault(v1));

    // one unknown code: the batch is refused, each code is tried alone, the good one is stored
    let c = env.new_code();
    let e = cli.call(batch("PLNOSUCHCODE", &c)).await.unwrap_err();
    let shown = format!("{e:?}");
    assert!(
        shown.contains("1 of 2") && shown.contains(PRODUCT),
        "{shown}"
    );
    assert_eq!(
        env.agent().snapshot().product("P-CAE").unwrap().state,
        LicenseState::Active
    );
    // a product may appear once, and the batch is not empty
    let dup = Call::ActivateCodes {
        codes: vec![
            ProductCode {
                product_id: PRODUCT.into(),
                code: AuthCode(c.clone()),
            };
            2
        ],
    };
    assert!(format!("{:?}", cli.call(dup).await.unwrap_err()).contains("twice"));
    let e = cli
        .call(Call::ActivateCodes { codes: Vec::new() })
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("BadRequest"), "{e:?}");
}
