//! The README's examples stay true.

#[test]
fn readme_config_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```toml\n")
        .expect("a toml block in the README")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let cfg =
        gatehouse::config::Config::parse(&readme[start..end]).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(cfg.identities.len(), 2);
    assert_eq!(cfg.policies[0].rules.len(), 2);
}

#[test]
fn readme_gives_the_two_setup_commands() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.contains("cargo run --release -- demo"));
    assert!(readme.contains("cargo test --locked"));
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(
        ci.contains("cargo test --locked"),
        ".ci/run must run the README's test command"
    );
}

/// Every TOML block of the README is a config `gatehouse config check` accepts.
#[test]
fn every_readme_config_block_checks() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(at) = rest.find("```toml\n") {
        let body = &rest[at + "```toml\n".len()..];
        let end = body.find("```").expect("closed block");
        if let Err(p) = gatehouse::config::Config::parse(&body[..end]) {
            panic!("README toml block {}: {p:?}", blocks + 1);
        }
        blocks += 1;
        rest = &body[end..];
    }
    assert!(blocks >= 3, "{blocks} toml blocks");
}

/// The README's database policy lets a plain SELECT through and asks for every write.
#[test]
fn readme_database_policy_gates_writes() {
    use gatehouse::config::RuleAction;
    use gatehouse::policy::{CallContext, PolicySet, RateLimits, ToolAnnotations};
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let at = readme
        .find("name = \"postgres\"")
        .expect("the postgres example");
    let start = readme[..at].rfind("```toml\n").unwrap() + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let cfg = gatehouse::config::Config::parse(&readme[start..end]).unwrap();
    let set = PolicySet::compile(&cfg.policies, "").unwrap();
    let decide = |sql: &str, annotations: ToolAnnotations| {
        let args = serde_json::json!({ "sql": sql });
        set.evaluate(
            &CallContext {
                tool: "query",
                server: Some("postgres"),
                args: args.as_object().unwrap(),
                agent: Some("DataAgent"),
                run: None,
                annotations,
                policy: Some("db-writes"),
                identity: Default::default(),
                context: None,
            },
            gatehouse::domain::now(),
            &RateLimits::default(),
        )
        .action
    };
    let pessimistic = ToolAnnotations::default();
    assert_eq!(
        decide("SELECT * FROM orders", pessimistic),
        RuleAction::Approve
    );
    for write in [
        "INSERT INTO orders VALUES (1)",
        "select 1; drop table orders",
        "SELECT * INTO backup FROM orders",
        "  update orders set total = 0",
        "DELETE FROM users",
    ] {
        assert_eq!(decide(write, pessimistic), RuleAction::Ask, "{write}");
    }
}
