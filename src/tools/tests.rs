//! Tools against real programs, a real HTTP server (axum on an ephemeral loopback port) and
//! the builtin order book.

use super::*;
use crate::config::{Config, NeedsApproval, check::BUILTIN_TOOLS};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use serde_json::json;
use std::time::Instant;

fn tools(toml_text: &str) -> Tools {
    let cfg = Config::parse(toml_text).unwrap_or_else(|p| panic!("{p:?}"));
    Tools::from_config(&cfg.tools).unwrap()
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("{other}"),
    }
}

fn command_tool(argv: &[&str], extra: &str) -> Tools {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    tools(&format!(
        "[[tools]]\nname = \"t\"\nkind = \"command\"\ncommand = [{}]\n{extra}\n",
        argv.join(", ")
    ))
}

fn python() -> &'static str {
    "python3"
}

// ---------------------------------------------------------------------------------------------
// Builtins

#[test]
fn builtins_are_the_ones_the_config_checker_knows() {
    let names: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
    assert_eq!(names, BUILTIN_TOOLS);
    let t = Tools::from_config(&[]).unwrap();
    let mut expected: Vec<&str> = BUILTIN_TOOLS.to_vec();
    expected.sort();
    assert_eq!(t.names().collect::<Vec<_>>(), expected);
    let spec = t.spec("issue_refund").unwrap();
    assert!(spec.description.starts_with("Issue a monetary refund"));
    assert_eq!(
        spec.parameters["required"],
        json!(["order_id", "amount", "reason"])
    );
    assert_eq!(
        t.needs_approval("get_order_details"),
        Some(NeedsApproval::Always(false))
    );
    assert_eq!(
        t.needs_approval("issue_refund"),
        Some(NeedsApproval::Always(true))
    );
    assert_eq!(
        t.needs_approval("delete_user_account"),
        Some(NeedsApproval::Always(true))
    );
    assert_eq!(t.needs_approval("nope"), None);
    assert!(t.spec("nope").is_none());
}

#[tokio::test]
async fn builtin_order_book() {
    let t = Tools::from_config(&[]).unwrap();
    let out = t
        .call("get_order_details", &map(json!({ "order_id": "ORD-1002" })))
        .await;
    let ToolOutput::Ok(text) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({ "order_id": "ORD-1002", "total": 149.99, "status": "delivered", "items": ["Widget A", "Widget B"] })
    );
    let ToolOutput::Ok(text) = t
        .call("get_order_details", &map(json!({ "order_id": "ORD-1001" })))
        .await
    else {
        panic!()
    };
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["total"],
        json!(24.99)
    );

    let out = t
        .call("get_order_details", &map(json!({ "order_id": "ORD-4242" })))
        .await;
    assert!(
        matches!(&out, ToolOutput::Error(e) if e.contains("no order \"ORD-4242\"")),
        "{out:?}"
    );

    let out = t
        .call(
            "issue_refund",
            &map(json!({ "order_id": "ORD-1003", "amount": 75, "reason": "lamp broken" })),
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(out.text()).unwrap(),
        json!({ "status": "refunded", "order_id": "ORD-1003", "amount": 75.0 })
    );
    assert!(out.is_ok());

    let out = t
        .call(
            "issue_refund",
            &map(json!({ "order_id": "ORD-1001", "amount": 25.00, "reason": "x" })),
        )
        .await;
    assert!(
        matches!(&out, ToolOutput::Error(e) if e.contains("exceeds the total 24.99")),
        "{out:?}"
    );
    let out = t
        .call(
            "issue_refund",
            &map(json!({ "order_id": "ORD-1001", "amount": -1, "reason": "x" })),
        )
        .await;
    assert!(!out.is_ok());

    let out = t
        .call(
            "delete_user_account",
            &map(json!({ "user_id": "U-456", "reason": "requested" })),
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(out.text()).unwrap(),
        json!({ "status": "deleted", "user_id": "U-456" })
    );
    let out = t.call("launch_rockets", &Map::new()).await;
    assert_eq!(
        out,
        ToolOutput::Error("unknown tool \"launch_rockets\"".into())
    );
}

#[test]
fn config_entries_override_and_alias_builtins() {
    let t = tools(
        r#"
[[tools]]
name = "issue_refund"
description = "Refund through billing."
kind = "command"
command = ["cat"]
needs_approval = false

[[tools]]
name = "refund_small"
kind = "builtin"
builtin = "issue_refund"

[[tools]]
name = "get_order_details"
kind = "builtin"
"#,
    );
    let spec = t.spec("issue_refund").unwrap();
    assert_eq!(spec.description, "Refund through billing.");
    assert_eq!(
        spec.parameters,
        json!({ "type": "object", "properties": {} })
    );
    assert_eq!(
        t.needs_approval("issue_refund"),
        Some(NeedsApproval::Always(false))
    );
    // The alias has the builtin's schema, description and gate.
    let alias = t.spec("refund_small").unwrap();
    assert_eq!(alias.parameters, Builtin::IssueRefund.parameters());
    assert_eq!(alias.description, Builtin::IssueRefund.description());
    assert_eq!(
        t.needs_approval("refund_small"),
        Some(NeedsApproval::Always(true))
    );
    assert_eq!(
        t.needs_approval("get_order_details"),
        Some(NeedsApproval::Always(false))
    );
    assert!(t.contains("delete_user_account"));
}

#[test]
fn an_invalid_schema_is_refused_naming_the_tool() {
    let cfg = Config::parse(
        r#"
[[tools]]
name = "pay"
kind = "http"
url = "http://127.0.0.1:9/pay"
parameters = { type = "object", properties = { amount = { type = "money" } } }
"#,
    )
    .unwrap();
    let e = Tools::from_config(&cfg.tools).unwrap_err();
    assert!(e.starts_with("tools.pay: invalid parameters schema"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Validation

#[test]
fn validation_names_the_field() {
    let t = Tools::from_config(&[]).unwrap();
    let e = t
        .validate(
            "issue_refund",
            &json!({ "order_id": "ORD-1002", "reason": "x" }),
        )
        .unwrap_err();
    assert_eq!(
        e,
        "invalid arguments for issue_refund: missing required field \"amount\""
    );

    let e = t
        .validate(
            "issue_refund",
            &json!({ "order_id": "ORD-1002", "amount": "lots", "reason": "x" }),
        )
        .unwrap_err();
    assert_eq!(
        e,
        "invalid arguments for issue_refund: field \"amount\": \"lots\" is not of type \"number\""
    );

    let e = t
        .validate(
            "delete_user_account",
            &json!({ "user_id": 456, "reason": "x", "force": true }),
        )
        .unwrap_err();
    assert!(
        e.contains("field \"user_id\": 456 is not of type \"string\""),
        "{e}"
    );
    assert!(e.contains("unexpected field \"force\""), "{e}");

    let e = t.validate("issue_refund", &json!([1, 2])).unwrap_err();
    assert_eq!(
        e,
        "the arguments of issue_refund must be a JSON object, not an array"
    );
    let e = t.validate("nope", &json!({})).unwrap_err();
    assert_eq!(e, "unknown tool \"nope\"");

    let ok = t
        .validate(
            "issue_refund",
            &json!({ "order_id": "ORD-1002", "amount": 10.5, "reason": "x" }),
        )
        .unwrap();
    assert_eq!(ok["amount"], json!(10.5));
}

#[test]
fn validation_of_raw_text_and_nested_fields() {
    let t = tools(
        r#"
[[tools]]
name = "ship"
kind = "command"
command = ["cat"]
[tools.parameters]
type = "object"
required = ["items", "mode"]
[tools.parameters.properties.mode]
type = "string"
enum = ["ground", "air"]
[tools.parameters.properties.items]
type = "array"
items = { type = "object", required = ["sku"], properties = { sku = { type = "string" }, qty = { type = "integer" } } }
"#,
    );
    let e = t
        .validate_raw("ship", "{\"items\": [{\"qty\": 1.5}], \"mode\": \"sea\"}")
        .unwrap_err();
    assert!(e.contains("missing required field \"items[0].sku\""), "{e}");
    assert!(
        e.contains("field \"items[0].qty\": 1.5 is not of type \"integer\""),
        "{e}"
    );
    assert!(e.contains("field \"mode\": \"sea\" is not one of"), "{e}");

    let e = t.validate_raw("ship", "{\"items\": [").unwrap_err();
    assert!(
        e.starts_with("the arguments of ship are not valid JSON:"),
        "{e}"
    );
    let e = t.validate_raw("ship", "").unwrap_err();
    assert!(e.contains("missing required field \"items\""), "{e}");
    let ok = t
        .validate_raw(
            "ship",
            r#"{"items": [{"sku": "A-1", "qty": 2}], "mode": "air"}"#,
        )
        .unwrap();
    assert_eq!(ok["mode"], "air");
}

// ---------------------------------------------------------------------------------------------
// Command tools

#[tokio::test]
async fn command_gets_the_arguments_on_stdin() {
    let t = command_tool(&["cat"], "");
    let args = map(json!({ "order_id": "ORD-1", "amount": 3.5 }));
    let out = t.call("t", &args).await;
    assert_eq!(
        serde_json::from_str::<Value>(out.text()).unwrap(),
        Value::Object(args.clone())
    );
    assert!(out.is_ok());

    let t = command_tool(
        &[
            python(),
            "-c",
            "import json, sys; a = json.load(sys.stdin); print(json.dumps({'doubled': a['amount'] * 2, 'argv': sys.argv[1:]}))",
            "--flag",
            "two words",
        ],
        "",
    );
    let out = t.call("t", &args).await;
    assert_eq!(
        serde_json::from_str::<Value>(out.text()).unwrap(),
        json!({ "doubled": 7.0, "argv": ["--flag", "two words"] })
    );
}

#[tokio::test]
async fn command_arguments_are_never_shell_expanded() {
    // `$HOME` and `;` reach the program as they are: there is no shell.
    let t = command_tool(&["echo", "$HOME; echo pwned"], "");
    let out = t.call("t", &Map::new()).await;
    assert_eq!(out, ToolOutput::Ok("$HOME; echo pwned\n".into()));
}

#[tokio::test]
async fn command_failure_is_an_error_with_stderr() {
    let t = command_tool(
        &[
            python(),
            "-c",
            "import sys; print('partial'); sys.stderr.write('line 1\\nline 2\\nline 3\\nline 4\\nline 5\\nline 6\\nrefund API said no\\n'); sys.exit(3)",
        ],
        "",
    );
    let out = t.call("t", &Map::new()).await;
    let ToolOutput::Error(e) = out else {
        panic!("{out:?}")
    };
    assert!(e.starts_with("\"python3\" exited with status 3: "), "{e}");
    assert!(e.ends_with("refund API said no"), "{e}");
    assert!(
        !e.contains("line 1") && e.contains("line 3"),
        "last five lines only: {e}"
    );

    let t = command_tool(&["false"], "");
    assert_eq!(
        t.call("t", &Map::new()).await,
        ToolOutput::Error("\"false\" exited with status 1 (nothing on standard error)".into())
    );

    // A program that cannot start is the operator's problem: the model is told only that the
    // tool is unavailable, the cause (an OS error naming a path) goes to the operator.
    let t = command_tool(&["/nonexistent/refund-tool"], "");
    let out = t.call("t", &Map::new()).await;
    assert!(
        matches!(&out, ToolOutput::Unavailable { cause, .. } if cause.starts_with("cannot start \"/nonexistent/refund-tool\"")),
        "{out:?}"
    );
    assert!(!out.text().contains("nonexistent"), "{}", out.text());
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by whoever adopted it) counts as dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A script that starts a background `sleep` (writing its pid to a file) and waits for it.
fn slow_script(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let pidfile = dir.join("child.pid");
    let script = dir.join("slow-tool");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 60 &\necho $! > '{}'\nwait\n",
            pidfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (script, pidfile)
}

async fn assert_killed(pidfile: &std::path::Path) {
    let child: u32 = std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(child) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !alive(child),
        "the tool's background child {child} survived"
    );
}

#[tokio::test]
async fn command_timeout_kills_the_program_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let (script, pidfile) = slow_script(dir.path());
    let t = command_tool(&[script.to_str().unwrap()], "timeout = \"500ms\"");
    let started = Instant::now();
    let out = t.call("t", &Map::new()).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        out,
        ToolOutput::Error("timed out after 500ms (the program was killed)".into())
    );
    assert_killed(&pidfile).await;
}

#[tokio::test]
async fn dropping_a_call_kills_the_program_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let (script, pidfile) = slow_script(dir.path());
    let t = command_tool(&[script.to_str().unwrap()], "");
    // The caller gives up (a cancelled run, a runner shutting down): the call future is dropped.
    let args = Map::new();
    let mut call = Box::pin(t.call("t", &args));
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&pidfile).map_or(true, |p| !p.ends_with('\n')) {
        assert!(Instant::now() < deadline, "the script did not start");
        tokio::select! {
            out = &mut call => panic!("the call ended: {out:?}"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    drop(call);
    assert_killed(&pidfile).await;
}

#[tokio::test]
async fn command_output_is_capped() {
    let t = command_tool(
        &[
            python(),
            "-c",
            "import sys; sys.stdout.write('x' * (2 * 1024 * 1024))",
        ],
        "",
    );
    let out = t.call("t", &Map::new()).await;
    assert_eq!(
        out,
        ToolOutput::Error(
            "the output of \"python3\" exceeds 1 MiB (the program was killed)".into()
        )
    );
    // Exactly 1 MiB is fine.
    let t = command_tool(
        &[
            python(),
            "-c",
            "import sys; sys.stdout.write('y' * (1024 * 1024))",
        ],
        "",
    );
    assert_eq!(t.call("t", &Map::new()).await.text().len(), 1024 * 1024);
}

#[tokio::test]
async fn command_that_ignores_stdin_still_works() {
    let big = "z".repeat(512 * 1024);
    let t = command_tool(&["true"], "");
    let out = t.call("t", &map(json!({ "blob": big }))).await;
    assert_eq!(out, ToolOutput::Ok(String::new()));
}

// ---------------------------------------------------------------------------------------------
// HTTP tools

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn http_tool(url: &str, extra: &str) -> Tools {
    tools(&format!(
        "[[tools]]\nname = \"h\"\nkind = \"http\"\nurl = \"{url}\"\n{extra}\n"
    ))
}

#[tokio::test]
async fn http_tool_posts_the_arguments_as_json() {
    let app = Router::new()
        .route(
            "/refund",
            post(|headers: HeaderMap, body: Bytes| async move {
                let args: Value = serde_json::from_slice(&body).unwrap();
                let ct = headers
                    .get(header::CONTENT_TYPE)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                json!({ "got": args, "content_type": ct }).to_string()
            }),
        )
        .route(
            "/broken",
            post(|| async { (StatusCode::BAD_GATEWAY, "billing backend unreachable") }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "too late"
            }),
        );
    let base = serve(app).await;
    let args = map(json!({ "order_id": "ORD-1002", "amount": 149.99 }));

    let out = http_tool(&format!("{base}/refund"), "")
        .call("h", &args)
        .await;
    assert!(out.is_ok(), "{out:?}");
    assert_eq!(
        serde_json::from_str::<Value>(out.text()).unwrap(),
        json!({ "got": { "order_id": "ORD-1002", "amount": 149.99 }, "content_type": "application/json" })
    );

    let out = http_tool(&format!("{base}/broken"), "")
        .call("h", &args)
        .await;
    assert_eq!(
        out,
        ToolOutput::Error(format!(
            "HTTP 502 Bad Gateway from {base}/broken: billing backend unreachable"
        ))
    );

    let out = http_tool(&format!("{base}/missing"), "")
        .call("h", &args)
        .await;
    assert!(
        matches!(&out, ToolOutput::Error(e) if e.starts_with("HTTP 404 Not Found")),
        "{out:?}"
    );

    let started = Instant::now();
    let out = http_tool(&format!("{base}/slow"), "timeout = \"300ms\"")
        .call("h", &args)
        .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        out,
        ToolOutput::Error(format!("timed out after 300ms waiting for {base}/slow"))
    );
}

#[tokio::test]
async fn http_tool_connection_refused_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = http_tool(&format!("http://127.0.0.1:{port}/x"), "")
        .call("h", &Map::new())
        .await;
    assert!(
        matches!(&out, ToolOutput::Unavailable { cause, .. } if cause.starts_with(&format!("POST http://127.0.0.1:{port}/x failed"))),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_command_gets_its_own_env_and_none_of_gatehouses_secrets() {
    let t = command_tool(&["/usr/bin/env"], "env = { BILLING_MODE = \"sandbox\" }");
    let out = t.call("t", &Map::new()).await;
    assert!(out.is_ok(), "{out:?}");
    let keys: Vec<&str> = out
        .text()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert!(keys.contains(&"BILLING_MODE"), "{keys:?}");
    assert!(keys.contains(&"PATH"), "{keys:?}");
    // The test process has many more (CARGO_*, RUST_*, tokens a CI may set): none gets through.
    for k in keys {
        assert!(
            [
                "BILLING_MODE",
                "PATH",
                "HOME",
                "LANG",
                "TZ",
                "TMPDIR",
                "USER",
                "LOGNAME"
            ]
            .contains(&k)
                || k.starts_with("LC_"),
            "{k} leaked into the tool's environment"
        );
    }
    assert!(std::env::vars().any(|(k, _)| k.starts_with("CARGO")));
}
