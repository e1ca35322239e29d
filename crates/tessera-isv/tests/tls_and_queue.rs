//! The production URL over HTTPS (the sim calls it, trusting a test CA), and the job queue's
//! lease rules on both backends.

mod common;

use std::sync::Arc;

use common::{CALLBACK_KEY, Db, config, start_isv, test_db};
use koogallery_sim::tls::SimPki;
use koogallery_sim::{CallbackOutcome, IsvEndpoint, LicenseModel, NewOrder, Sim, SimConfig};
use tessera_isv::cli::marketplace;
use tessera_isv::store::{JobState, Store};
use tessera_types::{SharedClock, SystemClock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_calls_the_production_url_over_https() {
    let db = test_db(Db::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = SimPki::load_or_create(&dir.path().join("isv-pki"), &[]).expect("test PKI");
    let sim = Sim::start(SimConfig::new(dir.path().join("sim")))
        .await
        .unwrap();
    let h = sim.handle();
    let cred = &h.credentials()[0];
    let mut cfg = config(
        &db.url,
        &[h.primary_url()],
        Some(&h.ca_path()),
        &cred.access_key,
        &cred.secret_key,
        "file",
    );
    cfg.server.plain_http = false;
    cfg.server.tls_cert = Some(pki.dir.join("server.pem"));
    cfg.server.tls_key = Some(pki.dir.join("server-key.pem"));
    let clock: SharedClock = SystemClock::shared();
    let market = Arc::new(marketplace(&cfg, clock.clone()).unwrap());
    let isv = start_isv(cfg, clock, market, None).await;
    let url = format!("https://127.0.0.1:{}/produce", isv.addr.port());

    // A caller that does not trust the ISV's CA cannot get through …
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(h.ca_pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    assert!(untrusting.post(&url).body("{}").send().await.is_err());

    // … MKT (the sim) trusting it gets answers.
    h.set_isv_endpoint(Some(IsvEndpoint {
        url,
        access_key: CALLBACK_KEY.to_owned(),
        extra_ca_pem: Some(pki.ca_pem.clone()),
    }))
    .unwrap();
    let created = h
        .create_order(&NewOrder::yearly(LicenseModel::OnlineLicense, "prod-cad"))
        .unwrap();
    let record = h
        .callback_settled(created.callback_id.unwrap())
        .await
        .unwrap();
    assert_eq!(
        record.outcome,
        CallbackOutcome::Delivered {
            result_code: "000000".into()
        }
    );
    assert_eq!(isv.service.store().instances().await.unwrap().len(), 1);
    drop(isv);
    sim.shutdown().await;
}

async fn leases_keep_two_workers_apart(db: Db) {
    let Some(test_db) = test_db(db).await else {
        return;
    };
    // Two "instances" of the ISV sharing one database.
    let a = Store::open(&test_db.url).await.unwrap();
    let b = Store::open(&test_db.url).await.unwrap();
    assert!(
        a.enqueue("query_order", "k1", "{}", 1_000, 1_000)
            .await
            .unwrap()
    );
    assert!(
        !b.enqueue("query_order", "k1", "{}", 1_000, 1_000)
            .await
            .unwrap(),
        "deduplicated"
    );

    let job = a
        .claim_job("worker-a", 2_000, 62_000)
        .await
        .unwrap()
        .expect("due");
    assert_eq!(job.attempts, 1);
    assert!(
        b.claim_job("worker-b", 3_000, 63_000)
            .await
            .unwrap()
            .is_none(),
        "leased"
    );

    // Worker A dies; after its lease B takes over, and A can no longer finish the job.
    let taken = b
        .claim_job("worker-b", 62_000, 122_000)
        .await
        .unwrap()
        .expect("lease ran out");
    assert_eq!((taken.id, taken.attempts), (job.id, 2));
    assert!(
        !a.finish_job(job.id, "worker-a", JobState::Done, None, 62_500)
            .await
            .unwrap()
    );
    assert!(
        b.retry_job(job.id, "worker-b", 200_000, "busy", 63_000)
            .await
            .unwrap()
    );
    assert!(
        a.claim_job("worker-a", 199_999, 260_000)
            .await
            .unwrap()
            .is_none(),
        "not due yet"
    );
    let again = a
        .claim_job("worker-a", 200_000, 260_000)
        .await
        .unwrap()
        .expect("due again");
    assert!(
        a.finish_job(
            again.id,
            "worker-a",
            JobState::Dead,
            Some("gave up"),
            200_100
        )
        .await
        .unwrap()
    );
    assert_eq!(a.job_counts().await.unwrap().dead, 1);
    assert!(b.revive_job(again.id, 300_000).await.unwrap());
    assert!(
        !b.revive_job(again.id, 300_000).await.unwrap(),
        "only dead jobs revive"
    );
    assert_eq!(b.job_counts().await.unwrap().pending, 1);

    // Concurrent claims of one due job: exactly one wins.
    let mut handles = Vec::new();
    for w in 0..8 {
        let s = if w % 2 == 0 { a.clone() } else { b.clone() };
        handles.push(tokio::spawn(async move {
            s.claim_job(&format!("w{w}"), 400_000, 460_000)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for h in handles {
        winners += usize::from(h.await.unwrap().is_some());
    }
    assert_eq!(winners, 1);

    // Nonces: first sighting fresh, repeat refused until it expires, then usable again.
    assert!(a.remember_nonce("n1", 0, 120_000).await.unwrap());
    assert!(!b.remember_nonce("n1", 1_000, 121_000).await.unwrap());
    assert!(b.remember_nonce("n1", 120_000, 240_000).await.unwrap());
    assert_eq!(a.purge_nonces(240_000).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_keep_two_workers_apart_sqlite() {
    leases_keep_two_workers_apart(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_keep_two_workers_apart_postgres() {
    leases_keep_two_workers_apart(Db::Postgres).await;
}
