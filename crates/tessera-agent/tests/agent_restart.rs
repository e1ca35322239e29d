//! What survives an agent restart: a resumed session keeps its leases; a session that does not
//! come back has its leases run out; `AgentInfo` reports the agent itself.

mod common;

use common::{PRODUCT, env};
use tessera_ipc::{Call, Reply};
use tessera_types::Clock as _;
use time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_keeps_its_lease_across_an_agent_restart() {
    let mut env = env("[[features]]\nname = \"solver\"\nseats = 2").await;
    let cli = env.client("").await;
    let code = env.new_code();
    env.activate(&cli, &code).await;
    drop(cli);
    let app = env.reconnecting_client(PRODUCT).await;
    let gone = env.client(PRODUCT).await;
    let lease = app.checkout("solver").await.unwrap();
    let orphan = gone.checkout("solver").await.unwrap();

    env.agent.take().unwrap().shutdown("upgrade", true).await;
    drop(gone);
    env.clock.advance(Duration::minutes(5));
    env.agent = Some(env.start_agent().await);

    // The client reconnects on its own, resumes its session, and its lease is still valid.
    let renewed = match app
        .call(Call::RenewLease {
            lease_id: lease.lease_id.clone(),
        })
        .await
        .unwrap()
    {
        Reply::Lease(l) => l,
        other => panic!("unexpected reply {other:?}"),
    };
    assert_eq!(renewed.lease_id, lease.lease_id);
    assert_eq!(renewed.expires_at, env.clock.now() + Duration::minutes(15));
    let solver = |env: &common::Env| {
        env.state()
            .features
            .iter()
            .find(|f| f.name == "solver")
            .map_or(0, |f| f.in_use)
    };
    env.agent().tick().await;
    assert_eq!(solver(&env), 2, "both restored leases hold a seat");
    let third = env.client(PRODUCT).await;
    let e = third.checkout("solver").await.unwrap_err();
    assert!(format!("{e:?}").contains("NoSeat"), "{e:?}");

    // The session that never came back keeps its seat only until its lease ends.
    env.clock.advance(Duration::minutes(11));
    env.agent().tick().await;
    assert_eq!(solver(&env), 1);
    let e = third
        .call(Call::RenewLease {
            lease_id: orphan.lease_id,
        })
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("NotFound"), "{e:?}");
}

#[tokio::test]
async fn agent_info_reports_the_agent_itself() {
    let env = env("").await;
    std::fs::write(
        env.paths.user_products_dir().join("broken.toml"),
        "product_id = 42",
    )
    .unwrap();
    let cli = env.client("").await;
    let info = cli.agent_info().await.unwrap();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.pid, std::process::id());
    assert_eq!(info.secrets_store, "memory");
    assert_eq!(info.socket, env.paths.socket);
    assert_eq!(info.state_dir, env.paths.state_dir);
    assert!(!info.clock_tampered);
    assert!(info.descriptor_problems.is_empty(), "{info:?}");
    assert!(info.integrity_failures.is_empty());
    assert_eq!(info.log_dir, None);

    // a broken descriptor shows after a restart, and an application may ask too
    let mut env = env;
    env.agent.take().unwrap().shutdown("restart", true).await;
    env.agent = Some(env.start_agent().await);
    let app = env.client(PRODUCT).await;
    let info = app.agent_info().await.unwrap();
    assert_eq!(info.descriptor_problems.len(), 1, "{info:?}");
    assert!(
        info.descriptor_problems[0].contains("broken.toml"),
        "{info:?}"
    );
}
