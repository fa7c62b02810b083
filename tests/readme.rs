//! The README's examples stay true.

/// `gatehouse config check` on a README block, run as a reader would: with the token variables
/// the block names set (an unset `token_env` is a problem of its own). The programs of command
/// tools are the reader's own (`/opt/billing/refund`): a missing one is the only problem let
/// through.
fn config_check(block: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("gatehouse.toml");
    std::fs::write(&path, block).expect("write the block");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(["config", "check", "--config"]).arg(&path);
    for line in block.lines() {
        if let Some(rest) = line.trim().strip_prefix("token_env = \"")
            && let Some((var, _)) = rest.split_once('"')
        {
            cmd.env(var, format!("token-of-{var}"));
        }
    }
    let out = cmd.output().expect("gatehouse runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let only_programs = stderr
        .lines()
        .skip(1)
        .all(|l| l.contains(": program \"/opt/"));
    if out.status.success() || (out.status.code() == Some(2) && only_programs) {
        Ok(())
    } else {
        Err(stderr)
    }
}

/// The config a block describes, as parsed (contents only; [`config_check`] judges it).
fn parsed(block: &str) -> gatehouse::config::Config {
    let p = gatehouse::config::shape::parse_config(block).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(p.problems, Vec::new());
    p.config
}

#[test]
fn readme_config_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```toml\n")
        .expect("a toml block in the README")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    config_check(&readme[start..end]).unwrap_or_else(|e| panic!("{e}"));
    let cfg = parsed(&readme[start..end]);
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
        if let Err(e) = config_check(&body[..end]) {
            panic!("README toml block {}: {e}", blocks + 1);
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
    config_check(&readme[start..end]).unwrap_or_else(|e| panic!("{e}"));
    let cfg = parsed(&readme[start..end]);
    let set = PolicySet::compile(&cfg.policies).unwrap();
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
