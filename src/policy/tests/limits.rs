//! Rate limits, time windows, and the variables a condition can read.

use super::*;

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
