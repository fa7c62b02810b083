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

/// `config check` finds what can never work before a call meets it: unknown variables when
/// compiling, type mismatches and non-bool results when probing on the tools' own parameters.
#[test]
fn compile_and_probe_find_conditions_that_cannot_work() {
    let unknown = problems(
        "[[policies]]\nname = \"p\"\n[[policies.rules]]\nwhen = \"amount < 50\"\naction = \"approve\"\n",
    );
    assert_eq!(unknown.len(), 1);
    assert!(
        unknown[0]
            .message
            .starts_with("unknown variable \"amount\""),
        "{}",
        unknown[0].message
    );
    // A macro's own variable is not unknown.
    set(
        "[[policies]]\nname = \"p\"\n[[policies.rules]]\nwhen = \"args.items.all(x, x > 0)\"\naction = \"approve\"\n",
    );

    let probe = |when: &str| {
        let text = format!(
            "[[policies]]\nname = \"refunds\"\ntools = [\"issue_refund\"]\n[[policies.rules]]\nwhen = {when:?}\naction = \"approve\"\n"
        );
        let call = probe::SampleCall {
            tool: "issue_refund".into(),
            policy: None,
            arguments: probe::sample_arguments(&json!({
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}}
            })),
        };
        set(&text).probe(&[call])
    };
    let p = probe("args.amount < \"50\"");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].message
            .starts_with("type error for tool \"issue_refund\""),
        "{}",
        p[0].message
    );
    assert_eq!(p[0].key, "policies[0].rules[0].when");
    let p = probe("args.amount + 1.0");
    assert!(p[0].message.contains("gives float, not a bool"), "{p:?}");
    // Fine conditions, and keys a call may lack, are no problem.
    assert_eq!(probe("args.amount >= 0 && args.amount < 50"), vec![]);
    assert_eq!(probe("args.currency == 'EUR'"), vec![]);
    assert_eq!(probe("args.order_id.startsWith('ORD-')"), vec![]);
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

const LIMITED: &str = r#"
[[policies]]
name = "refunds"
[[policies.rules]]
when = "args.amount < 50"
action = "approve"
max_per_hour = 3
queue = "primary"
[[policies.rules]]
action = "ask"
"#;

#[test]
fn rate_limit_asks_once_reached() {
    let s = set(LIMITED);
    let a = args(json!({"amount": 10}));
    let c = call("issue_refund", &a);
    let now = noon();
    let mut limits = RateLimits::default();

    for k in 0..3 {
        let out = s.evaluate(&c, now, &limits);
        assert_eq!(out.action, RuleAction::Approve, "approval {k}");
        limits.record("refunds", 1, now - chrono::Duration::minutes(50 - k * 10));
    }
    let out = s.evaluate(&c, now, &limits);
    assert_eq!(out.action, RuleAction::Ask);
    assert_eq!(out.policy.name.as_deref(), Some("refunds"));
    assert_eq!(out.policy.rule, Some(1));
    assert_eq!(
        out.policy.reason,
        "rule 1 auto-approves at most 3 per hour; limit reached, asking"
    );
    assert_eq!(out.queue.as_deref(), Some("primary"));

    // Another policy's or rule's approvals do not count.
    assert_eq!(limits.count("refunds", 2, now), 0);
    assert_eq!(limits.count("other", 1, now), 0);

    // Eleven minutes later the first (50 minutes old, now 61) has left the window.
    let later = now + chrono::Duration::minutes(11);
    assert_eq!(limits.count("refunds", 1, later), 2);
    assert_eq!(s.evaluate(&c, later, &limits).action, RuleAction::Approve);
}

#[test]
fn rate_limit_ignores_entries_older_than_an_hour() {
    let s = set(LIMITED);
    let a = args(json!({"amount": 10}));
    let c = call("issue_refund", &a);
    let now = noon();
    let mut limits = RateLimits::default();
    for minutes in [61, 90, 120, 60] {
        limits.record("refunds", 1, now - chrono::Duration::minutes(minutes));
    }
    limits.record("refunds", 1, now - chrono::Duration::minutes(59));
    assert_eq!(limits.count("refunds", 1, now), 1);
    assert_eq!(s.evaluate(&c, now, &limits).action, RuleAction::Approve);
    limits.record("refunds", 1, now - chrono::Duration::seconds(1));
    limits.record("refunds", 1, now);
    assert_eq!(limits.count("refunds", 1, now), 3);
    assert_eq!(s.evaluate(&c, now, &limits).action, RuleAction::Ask);
}

#[test]
fn rate_limits_prune_old_entries() {
    let mut limits = RateLimits::default();
    let t0 = noon();
    for k in 0..10_000i64 {
        limits.record("p", 1, t0 + chrono::Duration::seconds(k * 10));
    }
    // 10 seconds apart: 360 in any hour, the rest pruned.
    let last = t0 + chrono::Duration::seconds(99_990);
    assert_eq!(limits.count("p", 1, last), 360);
    assert!(limits.retained() <= 360, "{}", limits.retained());

    // Quiet windows are forgotten by a sweep.
    limits.record("q", 1, t0);
    limits.prune(last + chrono::Duration::hours(2));
    assert_eq!(limits.retained(), 0);
}

#[test]
fn time_window_with_now() {
    let s = set(r#"
[[policies]]
name = "deploys"
tools = ["deploy"]
[[policies.rules]]
when = "now.getHours() >= 9 && now.getHours() < 17 && now.getDayOfWeek() >= 1 && now.getDayOfWeek() <= 5"
action = "approve"
[[policies.rules]]
when = "now.getHours('Europe/Berlin') == 23"
action = "deny"
reason = "not at night in Berlin"
[[policies.rules]]
action = "ask"
"#);
    let a = Map::new();
    let c = call("deploy", &a);
    let limits = RateLimits::default();
    // 2025-06-02 is a Monday.
    assert_eq!(
        s.evaluate(&c, at(9, 0), &limits).action,
        RuleAction::Approve
    );
    assert_eq!(
        s.evaluate(&c, at(16, 59), &limits).action,
        RuleAction::Approve
    );
    assert_eq!(s.evaluate(&c, at(17, 0), &limits).action, RuleAction::Ask);
    assert_eq!(s.evaluate(&c, at(8, 59), &limits).action, RuleAction::Ask);
    // 21:30 UTC is 23:30 in Berlin (summer time).
    let out = s.evaluate(&c, at(21, 30), &limits);
    assert_eq!(out.action, RuleAction::Deny);
    assert_eq!(out.policy.reason, "not at night in Berlin");
    // Sunday noon.
    let sunday: DateTime<Utc> = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
    assert_eq!(s.evaluate(&c, sunday, &limits).action, RuleAction::Ask);

    let s = set(r#"
[[policies]]
name = "p"
[[policies.rules]]
when = "now < timestamp('2025-06-02T12:00:00Z') + duration('1h')"
action = "approve"
"#);
    assert_eq!(
        s.evaluate(&c, at(12, 59), &limits).action,
        RuleAction::Approve
    );
    assert_eq!(s.evaluate(&c, at(13, 0), &limits).action, RuleAction::Ask);
}

#[test]
fn tool_annotations_and_other_variables() {
    let s = set(r#"
[[policies]]
name = "mcp"
[[policies.rules]]
when = "tool.read_only && !tool.destructive"
action = "approve"
[[policies.rules]]
when = "server == null || agent == null || run == null"
action = "deny"
reason = "unknown origin"
[[policies.rules]]
when = "tool.name == tool_name && server == 'postgres' && agent == 'ops' && run.turn == 2 && tool.idempotent && !tool.open_world"
action = "ask"
queue = "dba"
"#);
    let a = Map::new();
    let mut c = call("query", &a);

    // Pessimistic defaults: not read-only.
    let out = eval(&s, &c);
    assert_eq!(out.action, RuleAction::Deny);
    assert_eq!(out.policy.rule, Some(2));

    c.annotations = ToolAnnotations {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    };
    let out = eval(&s, &c);
    assert_eq!(out.action, RuleAction::Approve);
    assert_eq!(
        out.policy.reason,
        "rule 1 matched (tool.read_only && !tool.destructive)"
    );

    c.annotations.read_only = false;
    let run = json!({"id": "r1", "turn": 2});
    c.server = Some("postgres");
    c.agent = Some("ops");
    c.run = Some(&run);
    let out = eval(&s, &c);
    assert_eq!(out.action, RuleAction::Ask);
    assert_eq!(out.policy.rule, Some(3));
    assert_eq!(out.queue.as_deref(), Some("dba"));
}

#[test]
fn nested_args_lists_and_extensions() {
    let s = set(r#"
[[policies]]
name = "p"
[[policies.rules]]
when = "args.items.all(i, i.qty <= 5) && size(args.items) < 3 && args.note.lowerAscii().contains('ok') && 'x' in args.tags"
action = "approve"
"#);
    let a = args(json!({
        "items": [{"qty": 1}, {"qty": 5.0}],
        "note": "Looks OK",
        "tags": ["x", "y"],
    }));
    assert_eq!(eval(&s, &call("t", &a)).action, RuleAction::Approve);
    let a = args(json!({"items": [{"qty": 6}], "note": "ok", "tags": ["x"]}));
    assert_eq!(eval(&s, &call("t", &a)).action, RuleAction::Ask);
}

#[test]
fn deeply_nested_args_ask() {
    let s = set(r#"
[[policies]]
name = "p"
[[policies.rules]]
when = "true || args.x == 1"
action = "approve"
"#);
    let mut v = json!(1);
    for _ in 0..100 {
        v = json!([v]);
    }
    let a = args(json!({ "x": v }));
    let out = eval(&s, &call("t", &a));
    assert_eq!(out.action, RuleAction::Ask);
    assert!(
        out.policy.reason.contains("nested more than"),
        "{}",
        out.policy.reason
    );
}

#[test]
fn compile_errors_have_key_and_line() {
    let text = r#"
[[policies]]
name = "ok"
[[policies.rules]]
when = "args.amount < 50"
action = "approve"

[[policies]]
name = "broken"
tools = ["issue_*", "bad[glob"]
[[policies.rules]]
action = "ask"
[[policies.rules]]
when = "args.amount < "
action = "approve"
[[policies.rules]]
when = "args.amount < 50 &&& true"
action = "approve"
"#;
    let p = problems(text);
    assert_eq!(p.len(), 3, "{p:#?}");

    assert_eq!(p[0].key, "policies[1].tools[1]");
    assert_eq!(p[0].line, 10);
    assert!(
        p[0].message.starts_with("invalid glob: "),
        "{}",
        p[0].message
    );

    assert_eq!(p[1].key, "policies[1].rules[1].when");
    assert_eq!(p[1].line, 14);
    assert!(
        p[1].message.starts_with("invalid CEL: "),
        "{}",
        p[1].message
    );
    assert!(!p[1].message.contains('\n'));

    assert_eq!(p[2].key, "policies[1].rules[2].when");
    assert_eq!(p[2].line, 17);
    assert!(
        p[2].message.starts_with("invalid CEL: "),
        "{}",
        p[2].message
    );
    assert!(!p[2].message.contains('\n'));

    // A multi-line condition: the line of the error within it.
    let text = r####"[[policies]]
name = "p"
[[policies.rules]]
when = """
args.a == 1 &&
  args.b = 2"""
action = "approve"
[[policies.rules]]
when = '''args.a == 1 &&
args.b = 2'''
action = "approve"
[[policies.rules]]
when = " "
action = "approve"
"####;
    let p = problems(text);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert_eq!(
        (p[0].key.as_str(), p[0].line),
        ("policies[0].rules[0].when", 6)
    );
    assert!(
        p[0].message.starts_with("invalid CEL: line 2, column 10: "),
        "{}",
        p[0].message
    );
    assert_eq!(
        (p[1].key.as_str(), p[1].line),
        ("policies[0].rules[1].when", 10)
    );
    assert_eq!(
        (p[2].key.as_str(), p[2].line),
        ("policies[0].rules[2].when", 13)
    );
    assert!(
        p[2].message.starts_with("empty condition"),
        "{}",
        p[2].message
    );

    // Offsets point into the text the policies came from.
    let cfg: Config = toml::from_str(text).unwrap();
    let p = PolicySet::compile(&cfg.policies).err().unwrap();
    assert!(
        p.iter().all(|p| text[p.offset..].starts_with(['"', '\''])),
        "{p:?}"
    );
}

#[test]
fn compile_reports_duplicate_names_and_misplaced_limits() {
    let text = r#"
[[policies]]
name = "p"

[[policies]]
name = "p"
[[policies.rules]]
action = "ask"
max_per_hour = 5
"#;
    let p = problems(text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(p[0].key, "policies[1].name");
    assert_eq!(p[0].line, 6);
    assert_eq!(p[1].key, "policies[1].rules[0].max_per_hour");
    assert_eq!(p[1].line, 8);
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
