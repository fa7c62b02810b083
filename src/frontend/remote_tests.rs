//! The remote link's JSON readers.

use super::*;

#[test]
fn run_json_reads_back_into_a_run() {
    let run = crate::tui::fixtures::transcript_run();
    // what `GET /v1/runs/{id}` sends: the summary's fields plus the conversation
    let mut v = serde_json::to_value(run.summary()).unwrap();
    v["max_turns"] = json!(run.max_turns);
    v["messages"] = serde_json::to_value(&run.messages).unwrap();
    v["calls"] = serde_json::to_value(&run.calls).unwrap();
    assert_eq!(run_from_json(v).unwrap(), run);
    assert!(run_from_json(json!({"run_id": "x"})).is_err());
}

#[test]
fn servers_json_reads_back() {
    // what `GET /v1/servers` sends
    let v = json!({"servers": [
        {"name": "github", "state": "ready", "tools": 26, "restarts": 0, "pid": 41},
        {"name": "postgres", "state": "failed: cannot start \"npx\": gone", "tools": 1,
         "restarts": 3, "pid": null},
        {"name": "files", "state": "restarting", "tools": 11, "restarts": 1},
        {"state": "ready"},
    ]});
    let s = servers_from_json(&v);
    assert_eq!(s.len(), 3, "{s:?}");
    assert!(s[0].ready && s[0].tools == 26 && s[0].error().is_none());
    assert!(!s[1].ready && s[1].failed());
    assert_eq!(s[1].word(), "failed");
    assert_eq!(s[1].error(), Some("cannot start \"npx\": gone"));
    assert_eq!(s[1].restarts, 3);
    assert!(!s[2].ready && !s[2].failed());
    assert_eq!(s[2].word(), "restarting");
    assert!(servers_from_json(&json!({"error": {}})).is_empty());
}

#[test]
fn local_status_becomes_the_same_view() {
    use crate::domain::{McpServerState, McpServerStatus};
    let st = McpServerStatus {
        name: "postgres".into(),
        state: McpServerState::Failed {
            error: "refused".into(),
        },
        tools: 1,
        restarts: 2,
        pid: None,
    };
    let v = ServerView::from_status(&st);
    // the daemon's JSON of the same status reads back to the same view
    let json = json!({"servers": [{"name": st.name, "state": st.state.to_string(),
        "tools": st.tools, "restarts": st.restarts, "pid": st.pid}]});
    assert_eq!(servers_from_json(&json), vec![v.clone()]);
    assert_eq!(v.error(), Some("refused"));
    let ready = ServerView::from_status(&McpServerStatus {
        state: McpServerState::Ready,
        ..st
    });
    assert!(ready.ready && ready.word() == "ready");
}
