//! `[notify] webhook` against a real receiver on 127.0.0.1: a receiver that stalls on one
//! notice does not hold back the others.

mod common;

use common::webhook::Webhook;
use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_stalled_receiver_does_not_delay_other_notices() {
    let hook = Webhook::start().await;
    // Notices about deletions are never answered: each delivery attempt waits out its timeout.
    hook.stall("delete_user_account");
    let ws = Workspace::new();
    ws.write_config(&format!(
        "{}\n[[escalation]]\nqueue = \"primary\"\nreviewers = [\"alice\"]\nafter = \"1s\"\n\n\
         [[escalation]]\nqueue = \"backup\"\nreviewers = [\"bob\"]\nafter = \"1h\"\n\n\
         [notify]\nwebhook = {}\n",
        config_text(),
        toml_str(&hook.url)
    ));
    let d = ws.start();
    let api = d.api();

    // No policy covers these tools: they wait in the first tier for its `after`.
    let delete = api
        .submit_pending(BOT, "delete_user_account", json!({"user_id": "U-9"}))
        .await;
    let stalled = hook
        .wait_for(Duration::from_secs(10), |n| {
            n["approval_id"] == delete["id"]
        })
        .await
        .expect("the deletion's escalation notice reaches the receiver");
    assert_eq!(stalled["event"], "approval.escalated", "{stalled}");

    // While that delivery hangs, a later approval's notice still gets through, at once.
    let reboot = api
        .submit_pending(BOT, "reboot_server", json!({"host": "db-1"}))
        .await;
    let next = hook
        .wait_for(Duration::from_secs(5), |n| n["approval_id"] == reboot["id"])
        .await;
    assert!(
        next.is_some(),
        "the second notice waited behind the stalled one: {:?}",
        hook.notices()
    );
    assert_eq!(next.expect("checked")["queue"], "backup");
}
