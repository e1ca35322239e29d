//! Model B: importing a good, a tampered, a foreign-device and an expired License file; and the
//! update-manifest answer (available true and false).

mod common;

use common::env;
use koogallery_sim::ManifestSpec;
use tessera_ipc::proto::{LicenseSource, LicenseText};
use tessera_ipc::{Call, Reply};
use tessera_license::{Binding, FORMAT_VERSION, Feature, License, Nonce, SigningKey};
use tessera_types::{Clock as _, Event, LicenseState, ProductState, StateReason};
use time::{Duration, OffsetDateTime};

const PRODUCT_B: &str = "OFFER-cae-solver-pro";
const KEY_PRIVATE: &str = include_str!("../../tessera-license/tests/keys/test-isv-a.pkcs8.pem");
const KEY_PUBLIC: &str = include_str!("../../tessera-license/tests/keys/test-isv-a.spki.pem");

fn license(fingerprint: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> License {
    License {
        format_version: FORMAT_VERSION,
        license_id: "lic-1".into(),
        product_id: PRODUCT_B.into(),
        instance_id: "inst-1".into(),
        order_id: "CS1".into(),
        features: vec![Feature {
            name: "solver".into(),
            count: 2,
            max_version: None,
        }],
        binding: Binding::fingerprint(fingerprint),
        issued_at: not_before,
        not_before,
        not_after: Some(not_after),
        trial: false,
        nonce: Nonce([7; 16]),
    }
}

fn descriptor(sim: &koogallery_sim::Sim, version: &str) -> String {
    format!(
        "product_id = \"{PRODUCT_B}\"\nname = \"Solver\"\nmodels = [\"license_file\"]\n\
         update_manifest_url = \"{}/sim/updates/{PRODUCT_B}/manifest\"\ncurrent_version = \"{version}\"\n\
         update_manifest_key_pem = \"\"\"\n{}\"\"\"\n[[keys]]\nkey_id = \"f05d7a13b971fd09\"\npublic_key_pem = \"\"\"\n{KEY_PUBLIC}\"\"\"\n",
        sim.primary_url(),
        sim.manifest_public_key_pem(),
    )
}

async fn import(client: &tessera_ipc::IpcClient, text: &str) -> Result<ProductState, String> {
    match client
        .call(Call::ImportLicense {
            product_id: Some(PRODUCT_B.into()),
            source: LicenseSource::Content {
                content: LicenseText(text.to_owned()),
            },
        })
        .await
    {
        Ok(Reply::ProductState(ps)) => Ok(ps),
        Ok(other) => Err(format!("{other:?}")),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[tokio::test]
async fn good_tampered_foreign_and_expired_files() {
    let mut env = env("").await;
    std::fs::write(
        env.paths.user_products_dir().join("solver.toml"),
        descriptor(&env.sim, "1.0"),
    )
    .unwrap();
    env.agent.take().unwrap().shutdown("restart", true).await;
    env.agent = Some(env.start_agent().await);
    let cli = env.client("").await;
    let key = SigningKey::from_pkcs8_pem(KEY_PRIVATE).unwrap();
    let here = tessera_fingerprint::collect_local()
        .fingerprint
        .as_str()
        .to_owned();
    let now = env.clock.now();

    // tampered: nothing installed yet, so the refusal is recorded and shown
    let good = key
        .sign_file(&license(
            &here,
            now - Duration::days(1),
            now + Duration::days(30),
        ))
        .unwrap();
    let mut tampered = good.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let ps = import(&cli, &String::from_utf8(tampered).unwrap())
        .await
        .unwrap();
    assert_eq!(
        (ps.state, ps.reason),
        (LicenseState::Blocked, StateReason::SignatureInvalid)
    );

    // foreign device
    let foreign = key
        .sign_file(&license(
            "AA:BB:CC:DD:EE:FF|OTHERDISK|OTHERBOARD|OTHERCPU",
            now - Duration::days(1),
            now + Duration::days(30),
        ))
        .unwrap();
    let ps = import(&cli, &foreign).await.unwrap();
    assert_eq!(
        (ps.state, ps.reason),
        (LicenseState::Blocked, StateReason::BindingMismatch)
    );

    // expired
    let expired = key
        .sign_file(&license(
            &here,
            now - Duration::days(60),
            now - Duration::days(1),
        ))
        .unwrap();
    let ps = import(&cli, &expired).await.unwrap();
    assert_eq!(
        (ps.state, ps.reason),
        (LicenseState::Blocked, StateReason::Expired)
    );

    // good
    let ps = import(&cli, &good).await.unwrap();
    assert_eq!(
        (ps.state, ps.reason),
        (LicenseState::Active, StateReason::Licensed)
    );
    assert_eq!(ps.features[0].seats, Some(2));

    // a bad file never replaces the verified one
    assert!(import(&cli, &foreign).await.is_err());
    assert_eq!(
        env.agent().snapshot().product(PRODUCT_B).unwrap().state,
        LicenseState::Active
    );

    // the application asks for its License as a string and as a file
    let app = env.client(PRODUCT_B).await;
    let mut events = app.events();
    app.call(Call::RequestLicense {
        kind: tessera_types::events::LicenseKind::File,
        file_name: Some("solver.lic".into()),
        dev_info: String::new(),
    })
    .await
    .unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    match ev.event().unwrap() {
        Event::LicenseVerify {
            status, license, ..
        } => {
            assert_eq!(status, tessera_types::events::DeliveryStatus::Success);
            let tessera_types::events::DeliveredLicense::File(path) = license else {
                panic!("file expected")
            };
            assert_eq!(std::fs::read_to_string(path).unwrap(), good);
        }
        other => panic!("unexpected {other:?}"),
    }
    // two seats
    let a = app.checkout("solver").await.unwrap();
    app.checkout("solver").await.unwrap();
    assert!(app.checkout("solver").await.is_err());
    app.release(a.lease_id).await.unwrap();
    app.checkout("solver").await.unwrap();

    // expiry on the trusted clock
    env.clock.advance(Duration::days(31));
    env.agent().tick().await;
    assert_eq!(
        env.agent().snapshot().product(PRODUCT_B).unwrap().reason,
        StateReason::Expired
    );
}

#[tokio::test]
async fn upgrade_notice_true_then_false_and_update_on_accept() {
    let mut env = env("").await;
    std::fs::write(
        env.paths.user_products_dir().join("solver.toml"),
        descriptor(&env.sim, "2026.1.0"),
    )
    .unwrap();
    env.agent.take().unwrap().shutdown("restart", true).await;
    env.agent = Some(env.start_agent().await);
    let now = env.clock.now();
    let spec = |latest: &str, forced: bool| ManifestSpec {
        latest_version: latest.into(),
        min_supported_version: "2025.1.0".into(),
        forced,
        released_at: now,
        download_url: "https://example.invalid/pkg".into(),
        sha256: "00".repeat(32),
        notes: String::new(),
        valid_until: now + Duration::days(30),
    };
    env.sim
        .publish_manifest(PRODUCT_B, spec("2026.2.0", true))
        .unwrap();
    let app = env.client(PRODUCT_B).await;
    let mut events = app.events();
    app.call(Call::CheckNewVersions).await.unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ev.event().unwrap(),
        Event::UpgradeNotice { available: true }
    );

    env.agent().accept_update(PRODUCT_B).await.unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.event().unwrap(), Event::Update { forced: true });
    app.call(Call::UpgradeNotify { accept: true })
        .await
        .unwrap();

    // the installed version is the newest: false (after the cache's hour)
    env.sim
        .publish_manifest(PRODUCT_B, spec("2026.1.0", false))
        .unwrap();
    env.clock.advance(Duration::hours(2));
    app.call(Call::CheckNewVersions).await.unwrap();
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ev.event().unwrap(),
        Event::UpgradeNotice { available: false }
    );
}

#[tokio::test]
async fn a_changed_device_identity_is_noticed_within_a_day() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tessera_fingerprint::{HardwareId, HardwareIdSalt, KooGalleryFingerprint};

    let mut env = env("").await;
    std::fs::write(
        env.paths.user_products_dir().join("solver.toml"),
        descriptor(&env.sim, "1.0"),
    )
    .unwrap();
    let local = tessera_fingerprint::collect_local();
    let mut moved = local.clone();
    moved.fingerprint =
        KooGalleryFingerprint::from_values(&["AA:BB:CC:DD:EE:01"], &["OTHERDISK"], "BOARD", "CPU");
    moved.hardware_id =
        HardwareId::from_override("another-device", &HardwareIdSalt::new(b"salt".to_vec()));
    let swapped = Arc::new(AtomicBool::new(false));
    let collections = Arc::new(AtomicUsize::new(0));
    {
        let (swapped, collections) = (swapped.clone(), collections.clone());
        env.identity_collector = Some(Arc::new(move || {
            collections.fetch_add(1, Ordering::SeqCst);
            if swapped.load(Ordering::SeqCst) {
                moved.clone()
            } else {
                local.clone()
            }
        }));
    }
    env.agent.take().unwrap().shutdown("restart", true).await;
    env.agent = Some(env.start_agent().await);
    let started_with = collections.load(Ordering::SeqCst);

    let cli = env.client("").await;
    let key = SigningKey::from_pkcs8_pem(KEY_PRIVATE).unwrap();
    let here = tessera_fingerprint::collect_local()
        .fingerprint
        .as_str()
        .to_owned();
    let now = env.clock.now();
    let good = key
        .sign_file(&license(
            &here,
            now - Duration::days(1),
            now + Duration::days(30),
        ))
        .unwrap();
    let ps = import(&cli, &good).await.unwrap();
    assert_eq!(ps.state, LicenseState::Active);

    // The disk is swapped; within the day the cached identity stands and nothing is collected.
    swapped.store(true, Ordering::SeqCst);
    env.clock.advance(Duration::hours(23));
    env.agent().tick().await;
    assert_eq!(collections.load(Ordering::SeqCst), started_with);
    let state = |env: &common::Env| env.agent().snapshot().product(PRODUCT_B).cloned().unwrap();
    assert_eq!(state(&env).state, LicenseState::Active);

    // A day after the last collection the identity is read again and the License re-verified.
    env.clock.advance(Duration::hours(1));
    env.agent().tick().await;
    assert_eq!(collections.load(Ordering::SeqCst), started_with + 1);
    let ps = state(&env);
    assert_eq!(
        (ps.state, ps.reason),
        (LicenseState::Blocked, StateReason::BindingMismatch),
        "{ps:?}"
    );
    // the fingerprint the agent reports is the new one
    let Reply::Fingerprint(f) = cli.call(Call::Fingerprint).await.unwrap() else {
        panic!("no fingerprint reply");
    };
    assert!(f.koogallery.contains("OTHERDISK"), "{f:?}");
}
