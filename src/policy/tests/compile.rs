//! What compiling a policy set finds: conditions that cannot work, errors with key and line.

use super::*;

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
