//! `kill -9` at 50 seeded random moments while the real binary activates codes and imports
//! Licenses: after every restart each acknowledged activation and import is still there, and the
//! database passes `PRAGMA integrity_check`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use common::process::{BinAgent, code_product, kill9, real_time_sim};
use koogallery_sim::{LicenseModel, NewOrder, Sim};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sqlx::Connection as _;
use tessera_ipc::proto::{AuthCode, LicenseSource, LicenseText};
use tessera_ipc::{Call, IpcClient, Reply};
use tessera_license::{Binding, FORMAT_VERSION, Feature, License, Nonce, SigningKey};
use tessera_types::{LicenseState, Snapshot};
use time::{Duration, OffsetDateTime};

const KILLS: usize = 50;
const SEED: u64 = 0x7e55_e4a0_d00b;
/// Products of each kind. Operations beyond these go round again (a new code for an active
/// product, the same License again), which must keep the product active too. Every product's
/// state rides in the handshake, so the total stays well inside one 64 KiB frame.
const PRODUCTS: usize = 100;
const KEY_PRIVATE: &str = include_str!("../../tessera-license/tests/keys/test-isv-a.pkcs8.pem");
const KEY_PUBLIC: &str = include_str!("../../tessera-license/tests/keys/test-isv-a.spki.pem");

fn license_product(id: &str) -> String {
    format!(
        "product_id = \"{id}\"\nname = \"{id}\"\nmodels = [\"license_file\"]\n\
         [[keys]]\nkey_id = \"f05d7a13b971fd09\"\npublic_key_pem = \"\"\"\n{KEY_PUBLIC}\"\"\"\n"
    )
}

fn code_for(sim: &Sim) -> String {
    let order = sim
        .create_order(&NewOrder::yearly(LicenseModel::AuthorizationCode, "P-CAD"))
        .unwrap();
    let code = sim.issue_code(&order.order.order_id, None).unwrap().code;
    sim.accept_code(&code).unwrap();
    code
}

fn license_text(key: &SigningKey, product: &str, fingerprint: &str) -> String {
    let now = OffsetDateTime::now_utc();
    key.sign_file(&License {
        format_version: FORMAT_VERSION,
        license_id: format!("lic-{product}"),
        product_id: product.into(),
        instance_id: "inst".into(),
        order_id: "CS1".into(),
        features: vec![Feature {
            name: "solver".into(),
            count: 1,
            max_version: None,
        }],
        binding: Binding::fingerprint(fingerprint),
        issued_at: now - Duration::days(1),
        not_before: now - Duration::days(1),
        not_after: Some(now + Duration::days(365)),
        trial: false,
        nonce: Nonce([9; 16]),
    })
    .unwrap()
}

#[derive(Default)]
struct Acked {
    products: Vec<String>,
}

/// Activates codes and imports Licenses, alternating, until the agent goes away.
async fn activity(
    client: IpcClient,
    sim: Arc<Sim>,
    next: Arc<Mutex<usize>>,
    licenses: Arc<Vec<String>>,
    acked: Arc<Mutex<Acked>>,
) {
    loop {
        let i = {
            let mut n = next.lock().unwrap();
            *n += 1;
            *n - 1
        };
        let n = (i / 2) % PRODUCTS;
        let (product, call) = if i % 2 == 0 {
            let product = format!("DA-{n}");
            let code = code_for(&sim);
            let call = Call::ActivateCode {
                product_id: Some(product.clone()),
                code: AuthCode(code),
            };
            (product, call)
        } else {
            let product = format!("DB-{n}");
            let call = Call::ImportLicense {
                product_id: Some(product.clone()),
                source: LicenseSource::Content {
                    content: LicenseText(licenses[n].clone()),
                },
            };
            (product, call)
        };
        match client.call(call).await {
            Ok(Reply::ProductState(ps)) => {
                assert_eq!(ps.state, LicenseState::Active, "{product}: {ps:?}");
                acked.lock().unwrap().products.push(product);
            }
            Ok(other) => panic!("unexpected reply {other:?}"),
            // The agent was killed mid-call: this operation was never acknowledged.
            Err(_) => return,
        }
    }
}

fn assert_all_present(snapshot: &Snapshot, acked: &Acked, round: usize) {
    for p in &acked.products {
        let ps = snapshot
            .product(p)
            .unwrap_or_else(|| panic!("round {round}: {p} is missing"));
        assert_eq!(
            ps.state,
            LicenseState::Active,
            "round {round}: acknowledged {p} was lost: {ps:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_state_survives_kill_9_at_random_moments() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let sim = Arc::new(real_time_sim(dir.path()).await);
    let agent = BinAgent::under(&dir.path().join("agent"));
    agent.configure(&sim, "");
    for i in 0..PRODUCTS {
        agent.add_product(&format!("a{i}.toml"), &code_product(&format!("DA-{i}")));
        agent.add_product(&format!("b{i}.toml"), &license_product(&format!("DB-{i}")));
    }
    agent.import_credentials(None);
    let key = SigningKey::from_pkcs8_pem(KEY_PRIVATE).unwrap();
    let here = tessera_fingerprint::collect_local()
        .fingerprint
        .as_str()
        .to_owned();
    let licenses = Arc::new(
        (0..PRODUCTS)
            .map(|i| license_text(&key, &format!("DB-{i}"), &here))
            .collect::<Vec<_>>(),
    );

    let mut rng = StdRng::seed_from_u64(SEED);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let next = Arc::new(Mutex::new(0usize));
    for round in 0..KILLS {
        let mut child = agent.spawn();
        let client = agent.connect(&mut child).await;
        // Everything acknowledged before the previous kill is back.
        assert_all_present(
            &client.status().await.unwrap(),
            &acked.lock().unwrap(),
            round,
        );
        let work = tokio::spawn(activity(
            client,
            sim.clone(),
            next.clone(),
            licenses.clone(),
            acked.clone(),
        ));
        let moment = StdDuration::from_micros(rng.gen_range(0..250_000));
        tokio::time::sleep(moment).await;
        kill9(&mut child);
        work.await.unwrap();
    }

    let mut child = agent.spawn();
    let client = agent.connect(&mut child).await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert_all_present(&client.status().await.unwrap(), &acked, KILLS);
    drop(client);
    kill9(&mut child);
    assert!(
        acked.products.len() >= KILLS,
        "too little activity to mean anything: {} operations acknowledged",
        acked.products.len()
    );

    let url = format!("sqlite://{}", agent.state_dir.join("agent.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let elapsed = started.elapsed();
    eprintln!(
        "{KILLS} kills, {} acknowledged operations, {:.1} s",
        acked.products.len(),
        elapsed.as_secs_f64()
    );
    assert!(elapsed < StdDuration::from_secs(60), "took {elapsed:?}");
}
