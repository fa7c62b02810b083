mod compile;
mod limits;

use super::*;
use crate::config::Config;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

fn set(text: &str) -> PolicySet {
    let cfg: Config = toml::from_str(text).expect("toml");
    match PolicySet::compile(&cfg.policies) {
        Ok(s) => s,
        Err(problems) => panic!("compile failed: {problems:?}"),
    }
}

/// A problem as `config check` reports it: key, message and the line `preflight` gives it.
#[derive(Debug)]
struct Problem {
    key: String,
    line: usize,
    message: String,
}

fn problems(text: &str) -> Vec<Problem> {
    let cfg: Config = toml::from_str(text).expect("toml");
    match PolicySet::compile(&cfg.policies) {
        Ok(_) => panic!("expected problems"),
        Err(p) => p
            .into_iter()
            .map(|p| Problem {
                line: crate::preflight::policy_line(text, &p),
                key: p.key,
                message: p.message,
            })
            .collect(),
    }
}

fn args(v: serde_json::Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn call<'a>(tool: &'a str, args: &'a Map<String, Value>) -> CallContext<'a> {
    CallContext {
        tool,
        server: None,
        args,
        agent: None,
        run: None,
        annotations: ToolAnnotations::default(),
        policy: None,
        identity: Default::default(),
        context: None,
    }
}

fn at(h: u32, m: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2025, 6, 2, h, m, 0).unwrap()
}

fn noon() -> Timestamp {
    at(12, 0)
}

fn eval(s: &PolicySet, c: &CallContext<'_>) -> PolicyOutcome {
    s.evaluate(c, noon(), &RateLimits::default())
}

const REFUNDS: &str = r#"
[[policies]]
name = "refunds"
tools = ["issue_refund"]
[[policies.rules]]
when = "args.amount < 50"
action = "approve"
[[policies.rules]]
action = "ask"
queue = "primary"
timeout = "30m"
"#;

#[test]
fn refund_under_50_approves() {
    let s = set(REFUNDS);
    for amount in [json!(30), json!(30.5), json!(0), json!(49.99), json!(-5)] {
        let a = args(json!({"order_id": "o1", "amount": amount}));
        let out = eval(&s, &call("issue_refund", &a));
        assert_eq!(out.action, RuleAction::Approve, "amount {amount}");
        assert_eq!(out.policy.name.as_deref(), Some("refunds"));
        assert_eq!(out.policy.rule, Some(1));
        assert_eq!(out.policy.reason, "rule 1 matched (args.amount < 50)");
        assert_eq!(out.queue, None);
        assert_eq!(out.timeout, None);
    }
}

#[test]
fn refund_of_50_and_above_asks_in_the_rules_queue() {
    let s = set(REFUNDS);
    for amount in [
        json!(50),
        json!(50.0),
        json!(50.01),
        json!(1e6),
        json!(u64::MAX),
    ] {
        let a = args(json!({"order_id": "o1", "amount": amount}));
        let out = eval(&s, &call("issue_refund", &a));
        assert_eq!(out.action, RuleAction::Ask, "amount {amount}");
        assert_eq!(out.policy.rule, Some(2));
        assert_eq!(out.policy.reason, "rule 2 matched (always)");
        assert_eq!(out.queue.as_deref(), Some("primary"));
        assert_eq!(out.timeout, Some(Duration::from_secs(30 * 60)));
    }
}

#[test]
fn numbers_compare_across_int_and_double() {
    let s = set(r#"
[[policies]]
name = "p"
[[policies.rules]]
when = "args.count == 3 && args.ratio < 1 && args.ratio > 0.25 && args.big > 1.5 && args.whole == 2"
action = "approve"
"#);
    let a = args(json!({"count": 3, "ratio": 0.5, "big": 2, "whole": 2.0}));
    assert_eq!(eval(&s, &call("t", &a)).action, RuleAction::Approve);
    let a = args(json!({"count": 3.0, "ratio": 0.5, "big": 2.5, "whole": 2}));
    assert_eq!(eval(&s, &call("t", &a)).action, RuleAction::Approve);
}

#[test]
fn deny_with_reason_and_default_reason() {
    let s = set(r#"
[[policies]]
name = "deletes"
tools = ["delete_*"]
[[policies.rules]]
when = "args.table == 'users'"
action = "deny"
reason = "never delete users"
[[policies.rules]]
action = "deny"
"#);
    let a = args(json!({"table": "users"}));
    let out = eval(&s, &call("delete_rows", &a));
    assert_eq!(out.action, RuleAction::Deny);
    assert_eq!(out.policy.rule, Some(1));
    assert_eq!(out.policy.reason, "never delete users");

    let a = args(json!({"table": "orders"}));
    let out = eval(&s, &call("delete_rows", &a));
    assert_eq!(out.action, RuleAction::Deny);
    assert_eq!(out.policy.rule, Some(2));
    assert_eq!(out.policy.reason, "denied by policy deletes rule 2");
}

#[test]
fn ask_reason_includes_the_rules_reason() {
    let s = set(r#"
[[policies]]
name = "refunds"
[[policies.rules]]
when = """
args.amount
    >= 50"""
action = "ask"
reason = "large refund"
"#);
    let a = args(json!({"amount": 70}));
    let out = eval(&s, &call("issue_refund", &a));
    assert_eq!(out.action, RuleAction::Ask);
    assert_eq!(
        out.policy.reason,
        "rule 1 matched (args.amount >= 50): large refund"
    );
}

const MANY: &str = r#"
[[policies]]
name = "reads"
tools = ["get_*", "list_*"]
[[policies.rules]]
action = "approve"

[[policies]]
name = "get_secret_too_late"
tools = ["get_secret"]
[[policies.rules]]
action = "deny"

[[policies]]
name = "refunds"
tools = ["issue_refund"]
[[policies.rules]]
when = "args.amount < 50"
action = "approve"

[[policies]]
name = "catch_all"
[[policies.rules]]
action = "ask"
queue = "backup"
"#;

#[test]
fn globs_pick_the_first_matching_policy() {
    let s = set(MANY);
    let a = Map::new();
    let out = eval(&s, &call("get_order_details", &a));
    assert_eq!(out.action, RuleAction::Approve);
    assert_eq!(out.policy.name.as_deref(), Some("reads"));
    assert_eq!(out.policy.reason, "rule 1 matched (always)");

    // "get_secret" matches both "reads" and "get_secret_too_late": the first wins.
    let out = eval(&s, &call("get_secret", &a));
    assert_eq!(out.policy.name.as_deref(), Some("reads"));
    assert_eq!(out.action, RuleAction::Approve);

    let out = eval(&s, &call("list_orders", &a));
    assert_eq!(out.policy.name.as_deref(), Some("reads"));

    // Empty `tools` covers every tool.
    let out = eval(&s, &call("drop_table", &a));
    assert_eq!(out.policy.name.as_deref(), Some("catch_all"));
    assert_eq!(out.action, RuleAction::Ask);
    assert_eq!(out.queue.as_deref(), Some("backup"));

    // A matching policy whose rules all miss asks; it does not fall through to later policies.
    let big = args(json!({"amount": 500}));
    let out = eval(&s, &call("issue_refund", &big));
    assert_eq!(out.action, RuleAction::Ask);
    assert_eq!(out.policy.name.as_deref(), Some("refunds"));
    assert_eq!(out.policy.rule, None);
    assert_eq!(
        out.policy.reason,
        "no rule of policy refunds matched; asking"
    );
}

#[test]
fn explicit_policy_overrides_globs() {
    let s = set(MANY);
    let a = args(json!({"amount": 10}));
    let mut c = call("get_order_details", &a);
    c.policy = Some("refunds");
    let out = eval(&s, &c);
    assert_eq!(out.policy.name.as_deref(), Some("refunds"));
    assert_eq!(out.action, RuleAction::Approve);

    // Named even though its globs do not cover the tool.
    c.policy = Some("get_secret_too_late");
    let out = eval(&s, &c);
    assert_eq!(out.policy.name.as_deref(), Some("get_secret_too_late"));
    assert_eq!(out.action, RuleAction::Deny);

    c.policy = Some("nope");
    let out = eval(&s, &c);
    assert_eq!(out.action, RuleAction::Ask);
    assert_eq!(out.policy.name, None);
    assert_eq!(out.policy.reason, "policy \"nope\" does not exist; asking");
}

#[test]
fn no_policy_asks() {
    let s = set(REFUNDS);
    let a = Map::new();
    let out = eval(&s, &call("deploy", &a));
    assert_eq!(
        out,
        PolicyOutcome {
            action: RuleAction::Ask,
            policy: PolicyRef {
                name: None,
                rule: None,
                reason: "no policy covers tool \"deploy\"; asking".into(),
            },
            queue: None,
            timeout: None,
            approvals: None,
        }
    );
    let out = eval(&PolicySet::empty(), &call("issue_refund", &a));
    assert_eq!(out.action, RuleAction::Ask);
    assert_eq!(
        out.policy.reason,
        "no policy covers tool \"issue_refund\"; asking"
    );
}

#[test]
fn missing_field_asks_and_never_approves() {
    // Even a rule written to approve on the negation must not approve on error.
    let s = set(r#"
[[policies]]
name = "refunds"
[[policies.rules]]
when = "!(args.amount >= 50)"
action = "approve"
[[policies.rules]]
action = "approve"
"#);
    let a = args(json!({"order_id": "o1"}));
    let out = eval(&s, &call("issue_refund", &a));
    assert_eq!(out.action, RuleAction::Ask);
    assert_eq!(out.policy.name.as_deref(), Some("refunds"));
    assert_eq!(out.policy.rule, Some(1));
    assert!(
        out.policy.reason.starts_with("rule 1 failed to evaluate: "),
        "{}",
        out.policy.reason
    );
    assert!(
        out.policy.reason.contains("amount"),
        "{}",
        out.policy.reason
    );
    assert!(
        out.policy.reason.ends_with("; asking"),
        "{}",
        out.policy.reason
    );

    // Wrong type: a string amount.
    let a = args(json!({"amount": "10"}));
    let out = eval(&s, &call("issue_refund", &a));
    assert_eq!(out.action, RuleAction::Ask);
    assert!(
        out.policy.reason.starts_with("rule 1 failed to evaluate: "),
        "{}",
        out.policy.reason
    );

    // An error in a deny rule does not deny either.
    let s = set(r#"
[[policies]]
name = "p"
[[policies.rules]]
when = "args.nope == 1"
action = "deny"
"#);
    let a = Map::new();
    assert_eq!(eval(&s, &call("t", &a)).action, RuleAction::Ask);
}

#[test]
fn non_bool_result_and_other_errors_ask() {
    for (when, needle) in [
        ("args.amount", "result is int, not bool"),
        ("'yes'", "result is string, not bool"),
        ("null", "result is null, not bool"),
        ("args.amount + 9223372036854775807 > 0", "verflow"),
        ("args.amount / 0 > 1", "ivision by zero"),
        ("args.missing_thing == 1", "No such key"),
    ] {
        let text = format!(
            "[[policies]]\nname = \"p\"\n[[policies.rules]]\nwhen = {when:?}\naction = \"approve\"\n"
        );
        let s = set(&text);
        let a = args(json!({"amount": 10}));
        let out = eval(&s, &call("t", &a));
        assert_eq!(out.action, RuleAction::Ask, "{when}");
        assert_eq!(out.policy.rule, Some(1));
        assert!(
            out.policy.reason.contains(needle),
            "{when}: {}",
            out.policy.reason
        );
        assert!(!out.policy.reason.contains('\n'));
    }
}

#[test]
fn has_guards_a_missing_field() {
    let s = set(r#"
[[policies]]
name = "p"
[[policies.rules]]
when = "has(args.amount) && args.amount < 50"
action = "approve"
"#);
    let a = Map::new();
    let out = eval(&s, &call("t", &a));
    assert_eq!(out.action, RuleAction::Ask);
    assert_eq!(out.policy.reason, "no rule of policy p matched; asking");
}

#[test]
fn policy_set_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PolicySet>();
    check::<RateLimits>();
}

/// Per-evaluation cost; run with
/// `cargo test --release --lib policy::tests::bench_evaluate -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_evaluate() {
    let s = set(REFUNDS);
    let a = args(json!({"order_id": "ord_123", "amount": 30.5, "currency": "EUR"}));
    let c = call("issue_refund", &a);
    let limits = RateLimits::default();
    let now = noon();
    let n = 100_000;
    let start = std::time::Instant::now();
    let mut approved = 0;
    for _ in 0..n {
        if std::hint::black_box(s.evaluate(std::hint::black_box(&c), now, &limits)).action
            == RuleAction::Approve
        {
            approved += 1;
        }
    }
    let took = start.elapsed();
    assert_eq!(approved, n);
    println!(
        "{n} evaluations of `args.amount < 50`: {took:?}, {:?} each",
        took / n
    );
}
