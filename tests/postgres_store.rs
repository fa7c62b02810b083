//! The PostgreSQL store (`[store] kind = "postgres"`) against a real PostgreSQL server of the
//! test's own (see `common::postgres`): the durability essentials of the sled store.
//! Several daemons on one database: tests/postgres_daemons.rs.

mod common;

use common::postgres::{Postgres, URL_ENV};
use common::*;
use serde_json::{Value, json};

fn postgres_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write_config(&format!(
        "{}\n[store]\nkind = \"postgres\"\nurl_env = \"{URL_ENV}\"\n",
        config_text()
    ));
    ws
}

fn submission(n: usize) -> Value {
    json!({
        "tool": "transfer",
        "arguments": {"n": n, "amount": n * 10 + 1},
        "idempotency_key": format!("k-{n}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_and_decisions_survive_kill_9_on_postgres() {
    let pg = Postgres::start();
    let ws = postgres_workspace();
    let env = [(URL_ENV, pg.url.as_str())];
    let mut daemon = Daemon::start_with_env(&ws.config(), &ws.data(), &env);
    let api = daemon.api();

    let mut ids = Vec::new();
    for n in 0..6 {
        let r = api.submit(BOT, &submission(n)).await;
        assert_eq!(r.status, 201, "submit {n}: {r:?}");
        assert_eq!(r.body["status"], "pending", "{r:?}");
        ids.push(r.id());
    }
    // An idempotent retry answers with the same approval.
    let again = api.submit(BOT, &submission(0)).await;
    assert_eq!(again.id(), ids[0], "{again:?}");

    let r = api.decide(ALICE, &ids[0], "approve", Some("fine")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = api.decide(BOB, &ids[1], "deny", Some("no")).await;
    assert_eq!(r.status, 200, "{r:?}");
    // A second decision is refused and changes nothing.
    let r = api.decide(BOB, &ids[0], "deny", None).await;
    assert_eq!(r.expect_error(409), "already_decided");

    let before = api.audit_all().await;
    assert_chain(&before);
    daemon.kill();

    // Nothing acknowledged is lost: same approvals, same states, same audit log.
    let daemon = Daemon::start_with_env(&ws.config(), &ws.data(), &env);
    let api = daemon.api();
    assert_eq!(api.approval(&ids[0]).await["status"], "approved");
    assert_eq!(api.approval(&ids[1]).await["status"], "denied");
    let pending: Vec<String> = api
        .list_all("pending")
        .await
        .iter()
        .map(|a| a["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(pending, ids[2..].to_vec());
    let decided = api.list_all("all").await;
    assert_eq!(decided.len(), 6, "{decided:?}");
    let after = api.audit_all().await;
    assert_eq!(after, before);
    assert_chain(&after);

    // The idempotency key and the 409 still hold after the restart, and new writes follow
    // the chain.
    let again = api.submit(BOT, &submission(1)).await;
    assert_eq!(again.id(), ids[1], "{again:?}");
    let r = api.decide(ALICE, &ids[1], "approve", None).await;
    assert_eq!(r.expect_error(409), "already_decided");
    let r = api.decide(ALICE, &ids[2], "approve", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let last = api.audit_all().await;
    assert!(last.len() > after.len());
    assert_chain(&last);

    // It all lives in PostgreSQL: the head row follows the newest record, and sled never
    // made a store in the data directory.
    let (db, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(conn);
    let head = db
        .query_one("SELECT seq, head_hash FROM gatehouse_head", &[])
        .await
        .expect("the head row");
    let newest = last.last().expect("records");
    assert_eq!(
        head.get::<_, i64>(0) as u64,
        newest["seq"].as_u64().unwrap_or(0)
    );
    assert_eq!(
        head.get::<_, String>(1),
        newest["hash"].as_str().unwrap_or("")
    );
    let rows: i64 = db
        .query_one("SELECT count(*) FROM gatehouse_audit", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows as usize, last.len());
    assert!(!ws.data().join("store").exists());

    // `audit export` from the daemon verifies as one chain.
    let url = daemon.url.clone();
    let dir = ws.dir.path().to_path_buf();
    let verified = tokio::task::spawn_blocking(move || {
        let mut c = command();
        c.env("GATEHOUSE_TOKEN", ALICE)
            .args(["audit", "export", "--connect", &url]);
        let export = run(c);
        assert_eq!(export.code, Some(0), "{export:?}");
        let file = dir.join("export.jsonl");
        std::fs::write(&file, &export.stdout).expect("write the export");
        let mut c = command();
        c.args(["audit", "verify", "--file"]).arg(&file);
        run(c)
    })
    .await
    .expect("export and verify");
    assert_eq!(verified.code, Some(0), "{verified:?}");
    assert!(
        verified
            .stdout
            .contains(&format!("ok, {} records", last.len())),
        "{verified:?}"
    );
}

#[test]
fn postgres_store_without_its_url_variable_is_refused() {
    let ws = postgres_workspace();
    let out = serve_expecting_failure(&ws.config(), &ws.data());
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "reads the database URL from ${URL_ENV}, which is not set"
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn unreachable_postgres_is_a_clear_error() {
    let ws = postgres_workspace();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut c = command();
    c.env(
        URL_ENV,
        format!("postgres://gatehouse@127.0.0.1:{port}/postgres"),
    )
    .args(["serve", "--config"])
    .arg(ws.config())
    .arg("--data")
    .arg(ws.data())
    .args(["--listen", "127.0.0.1:0"]);
    let out = run(c);
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
}

fn store_copy(data: &std::path::Path, url: &str) -> Finished {
    let mut c = command();
    c.env(URL_ENV, url)
        .args(["store", "copy", "--data"])
        .arg(data)
        .args(["--to-url-env", URL_ENV]);
    run(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_a_sled_store_into_postgres() {
    let pg = Postgres::start();
    let ws = Workspace::new();
    let mut daemon = ws.start();
    let api = daemon.api();
    let mut ids = Vec::new();
    for n in 0..4 {
        let r = api.submit(BOT, &submission(n)).await;
        assert_eq!(r.status, 201, "{r:?}");
        ids.push(r.id());
    }
    let r = api.decide(ALICE, &ids[0], "approve", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let records = api.audit_all().await;
    assert!(daemon.stop().success());

    // A directory that is not a data directory is refused, and nothing is written.
    let empty = tempfile::tempdir().expect("a temp dir");
    let out = store_copy(&empty.path().join("typo"), &pg.url);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("not a gatehouse data directory"),
        "{out:?}"
    );

    let out = store_copy(&ws.data(), &pg.url);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "copied {} audit records, 4 approvals",
            records.len()
        )),
        "{out:?}"
    );
    // Copying again would mix two stores: refused.
    let out = store_copy(&ws.data(), &pg.url);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("already holds"), "{out:?}");

    let pws = postgres_workspace();
    let daemon = Daemon::start_with_env(&pws.config(), &pws.data(), &[(URL_ENV, &pg.url)]);
    let api = daemon.api();
    assert_eq!(api.audit_all().await, records);
    assert_eq!(api.approval(&ids[0]).await["status"], "approved");
    assert_eq!(api.list_all("pending").await.len(), 3);
    // Idempotency keys came along, and the chain goes on from the copied head.
    let again = api.submit(BOT, &submission(2)).await;
    assert_eq!(again.id(), ids[2], "{again:?}");
    let r = api.decide(BOB, &ids[1], "deny", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_chain(&api.audit_all().await);
}
