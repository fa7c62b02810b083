//! A tool that cannot be run (its program gone since start-up) is an operator's problem, not
//! the model's: the daemon logs the cause, the model is told only that the tool is
//! unavailable, and `gatehouse run --wait` exits 1 instead of reporting success.

mod common;

use common::model_server::{ModelServer, Reply, call};
use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

#[test]
fn a_tool_that_cannot_start_is_logged_and_fails_run_wait() {
    let ws = Workspace::new();
    let program = ws.dir.path().join("refund-tool");
    std::fs::write(&program, "#!/bin/sh\necho refunded\n").expect("write the tool");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let model = ModelServer::scripted(vec![
        Reply::tools(
            Some("Refunding the order."),
            &[call("c1", "refund", json!({"order_id": "A-1"}))],
        ),
        Reply::text("Sorry, I could not issue the refund."),
    ]);
    ws.write_config(&format!(
        r#"{common}
[models.fake]
kind = "openai"
base_url = {base}
model = "test-model"

[[agents]]
name = "Support"
model = "fake"
tools = ["refund"]

[[tools]]
name = "refund"
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string" }} }} }}
kind = "command"
command = [{program}]
needs_approval = false
"#,
        common = config_text(),
        base = toml_str(&model.base_url()),
        program = toml_str(&program.to_string_lossy()),
    ));
    let d = ws.start();
    // The program disappears after start-up (a bad deploy, an unmounted volume).
    std::fs::remove_file(&program).expect("remove the tool");

    let mut c = command();
    c.args([
        "run",
        "Support",
        "Refund A-1",
        "--wait",
        "--connect",
        &d.url,
    ])
    .env("GATEHOUSE_TOKEN", BOT);
    let out = run(c);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("refund could not be run: cannot start"),
        "{out:?}"
    );
    // The model answered; what it was told names no path and no OS error.
    assert!(
        out.stdout.contains("Sorry, I could not issue the refund."),
        "{out:?}"
    );
    let told = model.requests()[1].to_string();
    assert!(told.contains("could not be run"), "{told}");
    assert!(
        !told.contains("refund-tool") && !told.contains("os error"),
        "{told}"
    );
    // The operator's log says what failed.
    assert!(
        d.stderr()
            .contains("tool refund could not be run: cannot start"),
        "{}",
        d.stderr()
    );
}
