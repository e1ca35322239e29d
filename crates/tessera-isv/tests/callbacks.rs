//! Callback handling against both backends with a fake marketplace: refused callbacks change
//! nothing, getLicenseAsync's validations answer their codes, and repeats are idempotent.

mod common;

use std::sync::{Arc, Mutex};

use common::{CALLBACK_KEY, CODE_KEY, Db, Isv, config, eventually, start_isv, test_db};
use koogallery::callback_sig::{AccessKey, SignatureParams};
use koogallery::wire::OrderInfo;
use tessera_isv::market::{BoxFuture, MarketFailure, Marketplace, Upload};
use tessera_isv::store::{InstanceStatus, JobState};
use tessera_types::{ManualClock, SharedClock};
use time::{Duration, OffsetDateTime};

const FP: &str = "04:7C:16:5E:E3:5D|001B_444A_488B_5CEC.||BFEBFBFF00090672";
const FP2: &str = "AA:BB:CC:DD:EE:FF|DISK2||CPU2";
const START: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// A marketplace that serves one order and records uploads.
#[derive(Debug, Default)]
struct FakeMarket {
    uploads: Mutex<Vec<(String, Upload)>>,
    fail_uploads: Mutex<Option<bool>>,
}

impl FakeMarket {
    fn order() -> OrderInfo {
        serde_json::from_value(serde_json::json!({
            "orderId": "CS-1", "orderType": "NEW", "createTime": "20260101000000",
            "orderLine": [{"orderLineId": "CS-1-000001", "chargingMode": "PERIOD",
                "periodType": "year", "periodNumber": 1, "expireTime": "20270101000000",
                "productInfo": [{"productId": "prod-cad", "skuCode": "sku", "linearValue": 2,
                    "productName": "CAD"}]}]
        }))
        .expect("order sample parses")
    }
}

impl Marketplace for FakeMarket {
    fn query_order<'a>(
        &'a self,
        _order_id: &'a str,
        _order_line_id: &'a str,
    ) -> BoxFuture<'a, Result<OrderInfo, MarketFailure>> {
        Box::pin(async { Ok(Self::order()) })
    }

    fn upload_license<'a>(
        &'a self,
        event_id: &'a str,
        upload: &'a Upload,
    ) -> BoxFuture<'a, Result<(), MarketFailure>> {
        Box::pin(async move {
            if let Some(retryable) = *self.fail_uploads.lock().unwrap() {
                return Err(MarketFailure {
                    retryable,
                    retry_after: None,
                    message: "injected failure".into(),
                });
            }
            self.uploads
                .lock()
                .unwrap()
                .push((event_id.to_owned(), upload.clone()));
            Ok(())
        })
    }
}

struct Harness {
    isv: Isv,
    clock: ManualClock,
    market: Arc<FakeMarket>,
    http: reqwest::Client,
    _db: common::TestDb,
}

async fn harness(db: Db) -> Option<Harness> {
    let test_db = test_db(db).await?;
    let clock = ManualClock::at_unix(START);
    let shared: SharedClock = clock.shared();
    let market = Arc::new(FakeMarket::default());
    let cfg = config(
        &test_db.url,
        &["https://unused.invalid".into()],
        None,
        "ak",
        "sk",
        "file",
    );
    let isv = start_isv(cfg, shared, market.clone(), None).await;
    Some(Harness {
        isv,
        clock,
        market,
        http: reqwest::Client::new(),
        _db: test_db,
    })
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Harness {
    fn now(&self) -> OffsetDateTime {
        use tessera_types::Clock as _;
        self.clock.now()
    }

    async fn post_raw(&self, query: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let url = if query.is_empty() {
            self.isv.url()
        } else {
            format!("{}?{query}", self.isv.url())
        };
        let r = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("ISV answers");
        let status = r.status().as_u16();
        let json = r.json().await.expect("JSON answer");
        (status, json)
    }

    async fn signed(&self, key: &str, body: &str) -> (String, serde_json::Value) {
        let params =
            SignatureParams::sign(&AccessKey::new(key), body.as_bytes(), self.now(), &nonce());
        let (status, json) = self
            .post_raw(&params.query_string(), body.as_bytes().to_vec())
            .await;
        assert_eq!(status, 200, "every answer is HTTP 200");
        (
            json["resultCode"].as_str().unwrap_or_default().to_owned(),
            json,
        )
    }

    async fn code(&self, body: &str) -> String {
        self.signed(CALLBACK_KEY, body).await.0
    }

    async fn new_instance(&self, order: &str) -> String {
        let body = format!(
            r#"{{"activity":"newInstance","businessId":"{}","orderId":"{order}","orderLineId":"{order}-000001","testFlag":"0"}}"#,
            nonce()
        );
        let (code, json) = self.signed(CALLBACK_KEY, &body).await;
        assert_eq!(code, "000000");
        json["instanceId"].as_str().expect("instanceId").to_owned()
    }

    async fn state(&self) -> (usize, Vec<(i64, JobState)>, usize) {
        let store = self.isv.service.store();
        let instances = store.instances().await.unwrap();
        let licenses: usize = {
            let mut n = 0;
            for i in &instances {
                n += store.licenses_of(&i.instance_id).await.unwrap().len();
            }
            n
        };
        let jobs = store
            .jobs(None)
            .await
            .unwrap()
            .into_iter()
            .map(|j| (j.id, j.state))
            .collect();
        (instances.len(), jobs, licenses)
    }
}

fn get_license(instance: &str, event: &str, fp: Option<&str>, expire: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "activity": "getLicenseAsync", "instanceId": instance,
        "effectiveTime": "2026-01-01 00:00:00 z", "eventId": event, "testFlag": "0"
    });
    if let Some(fp) = fp {
        v["deviceFingerprint"] = fp.into();
    }
    if let Some(e) = expire {
        v["expireTime"] = e.into();
    }
    v.to_string()
}

async fn refused_callbacks_change_nothing(db: Db) {
    let Some(h) = harness(db).await else { return };
    let instance = h.new_instance("CS-1").await;
    let store = h.isv.service.store();
    eventually("order query job done", || async {
        store.job_counts().await.unwrap().done == 1
    })
    .await;
    let before = h.state().await;
    let body =
        format!(r#"{{"activity":"releaseInstance","instanceId":"{instance}","testFlag":"0"}}"#);

    // Wrong key.
    assert_eq!(h.signed("NOT-THE-KEY", &body).await.0, "000001");
    // A Model B activity signed with the Model A key is refused too (keys are per family).
    assert_eq!(h.signed(CODE_KEY, &body).await.0, "000001");
    // Stale timestamp: signed 61 s in the past.
    let old = SignatureParams::sign(
        &AccessKey::new(CALLBACK_KEY),
        body.as_bytes(),
        h.now() - Duration::seconds(61),
        &nonce(),
    );
    let (status, json) = h
        .post_raw(&old.query_string(), body.clone().into_bytes())
        .await;
    assert_eq!((status, json["resultCode"].as_str()), (200, Some("000001")));
    // No signature parameters at all.
    let (_, json) = h.post_raw("", body.clone().into_bytes()).await;
    assert_eq!(json["resultCode"], "000001");
    // Tampered body under a valid signature.
    let params = SignatureParams::sign(
        &AccessKey::new(CALLBACK_KEY),
        body.as_bytes(),
        h.now(),
        &nonce(),
    );
    let tampered = body.replace(&instance, "someone-else");
    let (_, json) = h
        .post_raw(&params.query_string(), tampered.into_bytes())
        .await;
    assert_eq!(json["resultCode"], "000001");
    // Malformed JSON, correctly signed.
    assert_eq!(h.code(r#"{"activity":"releaseInstance","#).await, "000002");
    // Unknown activity, correctly signed.
    assert_eq!(
        h.code(r#"{"activity":"launchRockets","instanceId":"x"}"#)
            .await,
        "000002"
    );
    // A known activity missing a mandatory field.
    assert_eq!(h.code(r#"{"activity":"releaseInstance"}"#).await, "000002");
    // Oversized body (64 KiB limit).
    let big = format!(
        r#"{{"activity":"releaseInstance","instanceId":"{instance}","pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    assert_eq!(h.code(&big).await, "000002");
    // Not a POST.
    let r = h.http.get(h.isv.url()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["resultCode"],
        "000002"
    );

    assert_eq!(
        h.state().await,
        before,
        "refused callbacks must not change state"
    );
    let i = h
        .isv
        .service
        .store()
        .instance(&instance)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(i.status, InstanceStatus::Active);

    // Replay: the first delivery works, the identical second one is refused.
    let params = SignatureParams::sign(
        &AccessKey::new(CALLBACK_KEY),
        body.as_bytes(),
        h.now(),
        &nonce(),
    );
    let (_, first) = h
        .post_raw(&params.query_string(), body.clone().into_bytes())
        .await;
    assert_eq!(first["resultCode"], "000000");
    let after_release = h.state().await;
    let (_, replay) = h
        .post_raw(&params.query_string(), body.clone().into_bytes())
        .await;
    assert_eq!(replay["resultCode"], "000001");
    assert_eq!(h.state().await, after_release);
    // The nonce is remembered in the database: a restarted ISV (new service, same database)
    // still refuses it.
    let store = tessera_isv::store::Store::open(&h._db.url).await.unwrap();
    assert!(
        !store
            .remember_nonce(&params.nonce, 0, i64::MAX)
            .await
            .unwrap()
    );
    // And expired nonces are purged.
    h.clock.advance(Duration::minutes(5));
    assert!(store.purge_nonces(START * 1000 + 300_000).await.unwrap() >= 1);
}

async fn lifecycle_and_license_rules(db: Db) {
    let Some(h) = harness(db).await else { return };
    let instance = h.new_instance("CS-1").await;
    // newInstance is idempotent on orderId + orderLineId (businessId differs every call).
    assert_eq!(h.new_instance("CS-1").await, instance);
    let store = h.isv.service.store();
    eventually("order details fetched", || async {
        store
            .instance(&instance)
            .await
            .unwrap()
            .unwrap()
            .order_fetched_ms
            .is_some()
    })
    .await;
    let i = store.instance(&instance).await.unwrap().unwrap();
    assert_eq!(i.product_id.as_deref(), Some("prod-cad"));
    assert_eq!(i.linear_value, Some(2));

    let exp = Some("2026-12-31 00:00:00 z");
    assert_eq!(
        h.code(&get_license(&instance, "E1", None, exp)).await,
        "000903"
    );
    assert_eq!(
        h.code(&get_license(&instance, "E1", Some("  "), exp)).await,
        "000903"
    );
    assert_eq!(
        h.code(&get_license("nope", "E1", Some(FP), exp)).await,
        "000003"
    );
    assert_eq!(
        h.code(&get_license(&instance, "E1", Some(FP), None)).await,
        "000902"
    );
    let too_late = Some("2028-06-01 00:00:00 z");
    assert_eq!(
        h.code(&get_license(&instance, "E1", Some(FP), too_late))
            .await,
        "000901"
    );
    assert_eq!(
        h.state().await.2,
        0,
        "no License issued by refused requests"
    );

    assert_eq!(
        h.code(&get_license(&instance, "E1", Some(FP), exp)).await,
        "000004"
    );
    eventually("License uploaded", || async {
        h.market.uploads.lock().unwrap().len() == 1
    })
    .await;
    // The same eventId + fingerprint: the same License bytes, uploaded again.
    assert_eq!(
        h.code(&get_license(&instance, "E1", Some(FP), exp)).await,
        "000004"
    );
    eventually("License re-uploaded", || async {
        h.market.uploads.lock().unwrap().len() == 2
    })
    .await;
    {
        let uploads = h.market.uploads.lock().unwrap();
        assert_eq!(uploads[0], uploads[1]);
        assert!(
            matches!(&uploads[0].1, Upload::File { file_name, .. } if file_name == "license.lic")
        );
    }
    // A second device fits the quota of 2; a third does not; a licensed device still may.
    assert_eq!(
        h.code(&get_license(&instance, "E2", Some(FP2), exp)).await,
        "000004"
    );
    assert_eq!(
        h.code(&get_license(&instance, "E3", Some("X|Y|Z|W"), exp))
            .await,
        "000900"
    );
    assert_eq!(
        h.code(&get_license(&instance, "E4", Some(FP), exp)).await,
        "000004"
    );
    assert_eq!(store.licenses_of(&instance).await.unwrap().len(), 3);

    // Renewal extends the expiry; freeze blocks new Licenses; unfreeze and release.
    let refresh = format!(
        r#"{{"activity":"refreshInstance","expireTime":"20280101000000000","instanceId":"{instance}","orderId":"CS-2","orderLineId":"CS-2-000001","scene":"RENEWAL","testFlag":"0"}}"#
    );
    assert_eq!(h.code(&refresh).await, "000000");
    let i = store.instance(&instance).await.unwrap().unwrap();
    assert_eq!(i.last_scene.as_deref(), Some("RENEWAL"));
    assert_eq!(i.expire_ms, Some(1_830_297_600_000));
    let status = |s: &str| {
        format!(r#"{{"activity":"updateInstanceStatus","instanceId":"{instance}","status":"{s}"}}"#)
    };
    assert_eq!(h.code(&status("FREEZE")).await, "000000");
    assert_eq!(
        h.code(&status("FREEZE")).await,
        "000000",
        "repeated freeze succeeds"
    );
    assert_eq!(
        store.instance(&instance).await.unwrap().unwrap().status,
        InstanceStatus::Frozen
    );
    assert_eq!(
        h.code(&get_license(&instance, "E5", Some(FP), exp)).await,
        "000901"
    );
    assert_eq!(h.code(&status("UNFREEZE")).await, "000000");
    assert_eq!(
        store.instance(&instance).await.unwrap().unwrap().status,
        InstanceStatus::Active
    );
    let release = format!(r#"{{"activity":"releaseInstance","instanceId":"{instance}"}}"#);
    assert_eq!(h.code(&release).await, "000000");
    assert_eq!(
        h.code(&release).await,
        "000000",
        "repeated release succeeds"
    );
    assert_eq!(
        h.code(&status("FREEZE")).await,
        "000003",
        "a released instance is gone"
    );
    assert_eq!(h.code(&refresh).await, "000003");
    let unknown = r#"{"activity":"releaseInstance","instanceId":"never-created"}"#;
    assert_eq!(h.code(unknown).await, "000003");

    // Model A codes, signed with the code key.
    let code_cb = |body: &str| body.to_owned();
    let refresh_code = code_cb(
        r#"{"activity":"refreshLicenseCode","expireTime":"20270523201932","license":"PLCODE0001","orderId":"O2","orderLineId":"O2-000001","scene":"RENEWAL"}"#,
    );
    assert_eq!(h.signed(CODE_KEY, &refresh_code).await.0, "000000");
    let freeze_code =
        r#"{"activity":"updateLicenseCodeStatus","license":"PLCODE0001","status":"FREEZE"}"#;
    assert_eq!(h.signed(CODE_KEY, freeze_code).await.0, "000000");
    let unknown_code =
        r#"{"activity":"updateLicenseCodeStatus","license":"PLNOPE","status":"FREEZE"}"#;
    assert_eq!(h.signed(CODE_KEY, unknown_code).await.0, "000003");
    let release_code = r#"{"activity":"releaseLicenseCode","license":"PLCODE0001"}"#;
    assert_eq!(h.signed(CODE_KEY, release_code).await.0, "000000");
    assert_eq!(h.signed(CODE_KEY, release_code).await.0, "000000");
    let codes = store.codes().await.unwrap();
    assert_eq!(codes.len(), 1);
    assert_eq!(codes[0].status, "RELEASED");
    assert_eq!(codes[0].order_id.as_deref(), Some("O2"));

    let report = tessera_isv::status::StatusReport::collect(store)
        .await
        .unwrap();
    assert_eq!(report.instances[0].status, "RELEASED");
    assert_eq!(report.instances[0].licenses.len(), 3);
    assert_eq!(report.license_codes[0].code, "PLCODE…");
}

async fn failed_uploads_retry_then_dead_letter(db: Db) {
    let Some(h) = harness(db).await else { return };
    let instance = h.new_instance("CS-1").await;
    *h.market.fail_uploads.lock().unwrap() = Some(true);
    let exp = Some("2026-12-31 00:00:00 z");
    assert_eq!(
        h.code(&get_license(&instance, "E1", Some(FP), exp)).await,
        "000004"
    );
    let store = h.isv.service.store();
    // Each failure schedules a retry with backoff; moving the clock past it makes it due.
    for attempt in 1..=3 {
        eventually("an upload attempt", || async {
            store.jobs(None).await.unwrap().iter().any(|j| {
                j.kind == "deliver_license" && j.attempts == attempt && j.lease_owner.is_none()
            })
        })
        .await;
        h.clock.advance(Duration::minutes(11));
    }
    eventually("dead letter", || async {
        store.job_counts().await.unwrap().dead == 1
    })
    .await;
    let report = tessera_isv::status::StatusReport::collect(store)
        .await
        .unwrap();
    assert_eq!(report.jobs.dead_jobs.len(), 1);
    assert!(
        report.jobs.dead_jobs[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("injected")
    );
    assert!(!report.instances[0].licenses[0].uploaded);
    // An operator revives it once the marketplace is back.
    *h.market.fail_uploads.lock().unwrap() = None;
    let id = report.jobs.dead_jobs[0].id;
    use tessera_types::Clock as _;
    let now_ms = h.clock.now().unix_timestamp() * 1000;
    assert!(store.revive_job(id, now_ms).await.unwrap());
    eventually("delivered after revive", || async {
        h.market.uploads.lock().unwrap().len() == 1
    })
    .await;
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
    refused_callbacks_change_nothing,
    lifecycle_and_license_rules,
    failed_uploads_retry_then_dead_letter,
);
