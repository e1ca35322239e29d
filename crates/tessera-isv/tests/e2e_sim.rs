//! End to end against koogallery-sim, on both backends: the whole Model B lifecycle, and a
//! crash between signing and uploading that still delivers exactly one License.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use common::{CALLBACK_KEY, Db, config, eventually, signing_key, start_isv, test_db};
use koogallery_sim::{
    CallbackOutcome, IsvEndpoint, LicenseModel, LicensePayload, LicenseRequest, NewOrder, Renewal,
    Sim, SimConfig, SimHandle,
};
use tessera_isv::cli::marketplace;
use tessera_isv::market::BoxFuture;
use tessera_isv::service::JobHooks;
use tessera_isv::store::InstanceStatus;
use tessera_license::{FingerprintHash, Verifier};
use tessera_types::{KooTime, ManualClock, SharedClock, SystemClock};
use time::Duration;

const FP: &str = "04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.||BFEBFBFF00090672";

async fn start_sim(dir: &tempfile::TempDir) -> Sim {
    Sim::start(SimConfig::new(dir.path().join("sim")))
        .await
        .expect("sim starts")
}

fn isv_config(db_url: &str, sim: &SimHandle, delivery: &str) -> tessera_isv::config::IsvConfig {
    let cred = &sim.credentials()[0];
    config(
        db_url,
        &[sim.primary_url(), sim.fallback_url()],
        Some(&sim.ca_path()),
        &cred.access_key,
        &cred.secret_key,
        delivery,
    )
}

async fn settled(sim: &SimHandle, id: u64) -> String {
    let record = sim.callback_settled(id).await.expect("callback recorded");
    match record.outcome {
        CallbackOutcome::Delivered { result_code } => result_code,
        other => panic!("callback {} not delivered: {other:?}", record.activity),
    }
}

fn point_sim_at(sim: &SimHandle, url: String) {
    sim.set_isv_endpoint(Some(IsvEndpoint {
        url,
        access_key: CALLBACK_KEY.to_owned(),
        extra_ca_pem: None,
    }))
    .expect("endpoint accepted");
}

/// Fetches the delivered License as a buyer would, from the sim's HTTPS delivery channel.
async fn fetch_delivered(sim: &SimHandle, buyer_token: &str, instance_id: &str) -> Vec<u8> {
    let ca = reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).expect("sim CA");
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("client");
    let url = format!(
        "{}/sim/delivery/instances/{instance_id}/license",
        sim.primary_url()
    );
    let v: serde_json::Value = http
        .get(url)
        .bearer_auth(buyer_token)
        .send()
        .await
        .expect("delivery channel answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(v["status"], "delivered", "{v}");
    assert_eq!(v["kind"], "FILE");
    base64::engine::general_purpose::STANDARD
        .decode(v["content"].as_str().expect("content"))
        .expect("base64")
}

async fn full_lifecycle(db: Db) {
    let Some(test_db) = test_db(db).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&dir).await;
    let h = sim.handle();
    let clock: SharedClock = SystemClock::shared();
    let market =
        Arc::new(marketplace(&isv_config(&test_db.url, &h, "file"), clock.clone()).unwrap());
    let isv = start_isv(isv_config(&test_db.url, &h, "file"), clock, market, None).await;
    point_sim_at(&h, isv.url());
    let store = isv.service.store();

    // Purchase → newInstance → the ISV records it and queries the order in the background.
    let created = h
        .create_order(&NewOrder::yearly(LicenseModel::OnlineLicense, "prod-cad"))
        .expect("order");
    assert_eq!(
        settled(&h, created.callback_id.expect("newInstance sent")).await,
        "000000"
    );
    let instances = store.instances().await.unwrap();
    assert_eq!(instances.len(), 1);
    let instance_id = instances[0].instance_id.clone();
    assert_eq!(instances[0].order_id, created.order.order_id);
    let sim_instance = h
        .instance(&instance_id)
        .expect("sim knows the ISV's instance id");
    eventually("order details", || async {
        store
            .instance(&instance_id)
            .await
            .unwrap()
            .unwrap()
            .order_fetched_ms
            .is_some()
    })
    .await;
    let i = store.instance(&instance_id).await.unwrap().unwrap();
    assert_eq!(i.product_id.as_deref(), Some("prod-cad"));
    assert_eq!(
        i.expire_ms.map(|m| m / 1000),
        sim_instance.expire_time.map(|t| t.unix_timestamp())
    );

    // The device asks for a License → getLicenseAsync → signed, uploaded, delivered.
    let requested = h
        .request_license(
            &instance_id,
            &LicenseRequest {
                device_fingerprint: FP.to_owned(),
                effective_time: None,
                expire_time: None,
            },
        )
        .expect("license request");
    assert_eq!(settled(&h, requested.callback_ids[0]).await, "000004");
    let event_id = requested.result.event_id.clone();
    eventually("License delivered", || async {
        h.event(&event_id).is_some_and(|e| e.delivery.is_some())
    })
    .await;
    let delivered = fetch_delivered(&h, &created.buyer_token, &instance_id).await;
    let fp_key = tessera_isv::issuer::fingerprint_key(FP);
    let stored = store.license(&event_id, &fp_key).await.unwrap().unwrap();
    assert_eq!(
        delivered, stored.body,
        "the sim holds exactly the bytes the ISV stored"
    );
    let verifier = Verifier::with_keys([signing_key().public_key().clone()]);
    let signed = verifier
        .open(&delivered)
        .expect("the delivered License verifies");
    assert_eq!(signed.license.product_id, "prod-cad");
    assert_eq!(signed.license.instance_id, instance_id);
    assert_eq!(
        signed.license.binding.fingerprint_hash(),
        FingerprintHash::of(FP)
    );
    assert_ne!(
        signed.license.binding.fingerprint_hash(),
        FingerprintHash::of("A|B|C|D")
    );
    assert_eq!(
        signed.license.not_after.map(|t| t.unix_timestamp()),
        sim_instance.expire_time.map(|t| t.unix_timestamp())
    );
    assert_eq!(signed.license.features.len(), 2);
    eventually("upload acknowledged", || async {
        store
            .license(&event_id, &fp_key)
            .await
            .unwrap()
            .unwrap()
            .uploaded_ms
            .is_some()
    })
    .await;

    // Renewal → refreshInstance extends the expiry.
    let new_expiry = KooTime::new(h.now() + Duration::days(730));
    let renewed = h
        .renew_instance(
            &instance_id,
            &Renewal {
                expire_time: new_expiry,
                scene: None,
                product_id: None,
            },
        )
        .expect("renewal");
    assert_eq!(settled(&h, renewed.callback_ids[0]).await, "000000");
    let i = store.instance(&instance_id).await.unwrap().unwrap();
    assert_eq!(
        i.expire_ms.map(|m| m / 1000),
        Some(new_expiry.unix_seconds())
    );
    assert_eq!(i.last_scene.as_deref(), Some("RENEWAL"));
    let report = tessera_isv::status::StatusReport::collect(store)
        .await
        .unwrap();
    assert_eq!(report.instances[0].renewal_reissue_due, 1);

    // Freeze, unfreeze, release: each reflected in the ISV's state.
    let frozen = h.set_instance_frozen(&instance_id, true).expect("freeze");
    assert_eq!(settled(&h, frozen.callback_ids[0]).await, "000000");
    assert_eq!(
        store.instance(&instance_id).await.unwrap().unwrap().status,
        InstanceStatus::Frozen
    );
    let thawed = h
        .set_instance_frozen(&instance_id, false)
        .expect("unfreeze");
    assert_eq!(settled(&h, thawed.callback_ids[0]).await, "000000");
    assert_eq!(
        store.instance(&instance_id).await.unwrap().unwrap().status,
        InstanceStatus::Active
    );
    let released = h.release_instance(&instance_id, false).expect("release");
    assert_eq!(settled(&h, released.callback_ids[0]).await, "000000");
    assert_eq!(
        store.instance(&instance_id).await.unwrap().unwrap().status,
        InstanceStatus::Released
    );
    let report = tessera_isv::status::StatusReport::collect(store)
        .await
        .unwrap();
    assert_eq!(report.instances[0].status, "RELEASED");
    assert!(report.instances[0].licenses[0].uploaded);
    assert_eq!(report.jobs.dead, 0);
    drop(isv);
    sim.shutdown().await;
}

/// Signals when the worker is about to upload, then never lets it continue: the process is
/// "killed" at exactly that point.
#[derive(Debug)]
struct StallBeforeUpload {
    reached: tokio::sync::mpsc::UnboundedSender<String>,
}

impl JobHooks for StallBeforeUpload {
    fn before_upload<'a>(&'a self, event_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = self.reached.send(event_id.to_owned());
            std::future::pending::<()>().await;
        })
    }
}

async fn crash_between_sign_and_upload(db: Db) {
    let Some(test_db) = test_db(db).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&dir).await;
    let h = sim.handle();
    use tessera_types::Clock as _;
    let isv_clock = ManualClock::new(SystemClock.now());
    let clock: SharedClock = isv_clock.shared();
    let cfg = isv_config(&test_db.url, &h, "file");
    let market = Arc::new(marketplace(&cfg, clock.clone()).unwrap());
    let (tx, mut reached) = tokio::sync::mpsc::unbounded_channel();
    let mut isv = start_isv(
        cfg,
        clock.clone(),
        market.clone(),
        Some(Arc::new(StallBeforeUpload { reached: tx })),
    )
    .await;
    point_sim_at(&h, isv.url());

    let created = h
        .create_order(&NewOrder::yearly(LicenseModel::OnlineLicense, "prod-cad"))
        .expect("order");
    assert_eq!(settled(&h, created.callback_id.unwrap()).await, "000000");
    let instance_id = isv.service.store().instances().await.unwrap()[0]
        .instance_id
        .clone();
    let requested = h
        .request_license(
            &instance_id,
            &LicenseRequest {
                device_fingerprint: FP.to_owned(),
                effective_time: None,
                expire_time: None,
            },
        )
        .unwrap();
    assert_eq!(settled(&h, requested.callback_ids[0]).await, "000004");
    let event_id = requested.result.event_id.clone();
    assert_eq!(reached.recv().await.as_deref(), Some(event_id.as_str()));
    let fp_key = tessera_isv::issuer::fingerprint_key(FP);
    let signed = isv
        .service
        .store()
        .license(&event_id, &fp_key)
        .await
        .unwrap()
        .expect("signed and stored before the crash");
    isv.kill();
    assert_eq!(
        h.event(&event_id).unwrap().uploads,
        0,
        "nothing uploaded before the crash"
    );

    // Restart on the same database; once the dead worker's lease has run out, the job is taken
    // over and the stored bytes are delivered.
    isv_clock.advance(Duration::seconds(6));
    let isv = start_isv(isv_config(&test_db.url, &h, "file"), clock, market, None).await;
    point_sim_at(&h, isv.url());
    let store = isv.service.store();
    eventually("delivered after restart", || async {
        store
            .license(&event_id, &fp_key)
            .await
            .unwrap()
            .unwrap()
            .uploaded_ms
            .is_some()
    })
    .await;
    let event = h.event(&event_id).unwrap();
    assert_eq!(event.uploads, 1, "exactly one upload");
    match event.delivery.unwrap().payload {
        LicensePayload::File { bytes, .. } => assert_eq!(bytes, signed.body, "the same bytes"),
        LicensePayload::Characters { .. } => panic!("expected a file"),
    }
    assert_eq!(store.licenses_of(&instance_id).await.unwrap().len(), 1);
    assert_eq!(store.job_counts().await.unwrap().pending, 0);
    drop(isv);
    sim.shutdown().await;
}

async fn string_delivery(db: Db) {
    let Some(test_db) = test_db(db).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&dir).await;
    let h = sim.handle();
    let clock: SharedClock = SystemClock::shared();
    let cfg = isv_config(&test_db.url, &h, "string");
    let market = Arc::new(marketplace(&cfg, clock.clone()).unwrap());
    let isv = start_isv(cfg, clock, market, None).await;
    point_sim_at(&h, isv.url());
    let created = h
        .create_order(&NewOrder::yearly(LicenseModel::OnlineLicense, "prod-cad"))
        .unwrap();
    assert_eq!(settled(&h, created.callback_id.unwrap()).await, "000000");
    let instance_id = isv.service.store().instances().await.unwrap()[0]
        .instance_id
        .clone();
    let requested = h
        .request_license(
            &instance_id,
            &LicenseRequest {
                device_fingerprint: FP.to_owned(),
                effective_time: None,
                expire_time: None,
            },
        )
        .unwrap();
    assert_eq!(settled(&h, requested.callback_ids[0]).await, "000004");
    let event_id = requested.result.event_id;
    eventually("string delivered", || async {
        h.event(&event_id).is_some_and(|e| e.delivery.is_some())
    })
    .await;
    let LicensePayload::Characters { text } = h.event(&event_id).unwrap().delivery.unwrap().payload
    else {
        panic!("expected CHARACTERS")
    };
    assert!(text.chars().count() <= 1024);
    let verifier = Verifier::with_keys([signing_key().public_key().clone()]);
    let signed = verifier
        .open(text.as_bytes())
        .expect("string form verifies");
    assert_eq!(
        signed.license.binding.fingerprint_hash(),
        FingerprintHash::of(FP)
    );
    drop(isv);
    sim.shutdown().await;
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Db::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Db::Postgres).await } )*
        }
    };
}

both_backends!(
    full_lifecycle,
    crash_between_sign_and_upload,
    string_delivery
);
