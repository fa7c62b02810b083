//! `gatehouse config check` semantics: every `tests/invalid_configs/NAME.toml` must fail to load
//! with exactly the text of `NAME.expected` (file path shown as just `NAME.toml`), and every
//! `valid_*.toml` there must load.
//!
//! To regenerate the expected files after an intended change of messages, run
//! `GATEHOUSE_BLESS=1 cargo test --test config_check` and review the diff.

use gatehouse::config::ConfigError;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid_configs")
}

/// All `*.toml` files of the fixture directory, sorted, split into (valid, invalid).
fn fixtures() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/invalid_configs exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .partition(|p| file_name(p).starts_with("valid_"))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// The error text as `config check` prints it, with the path shortened to the file name.
fn error_text(path: &Path, mut err: ConfigError) -> String {
    err.file = PathBuf::from(file_name(path));
    format!("{err}\n")
}

#[test]
fn invalid_configs_report_expected_problems() {
    let bless = std::env::var_os("GATEHOUSE_BLESS").is_some();
    let (_, invalid) = fixtures();
    assert!(invalid.len() >= 20, "fixtures missing: {invalid:?}");
    let mut failures = Vec::new();
    for path in &invalid {
        let expected_path = path.with_extension("expected");
        let actual = match gatehouse::preflight::load(path) {
            Ok(_) => {
                failures.push(format!("{}: loaded, but should fail", file_name(path)));
                continue;
            }
            Err(err) => error_text(path, err),
        };
        if bless {
            std::fs::write(&expected_path, &actual).expect("write .expected");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Err(e) => failures.push(format!(
                "{}: cannot read {}: {e}\n--- actual ---\n{actual}",
                file_name(path),
                file_name(&expected_path)
            )),
            Ok(expected) if expected != actual => failures.push(format!(
                "{}: output differs\n--- expected ---\n{expected}--- actual ---\n{actual}",
                file_name(path)
            )),
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_expected_file_has_a_config() {
    for entry in std::fs::read_dir(dir()).expect("tests/invalid_configs exists") {
        let path = entry.expect("readable dir entry").path();
        if path.extension().is_some_and(|e| e == "expected") {
            let toml = path.with_extension("toml");
            assert!(toml.exists(), "{} has no config", file_name(&path));
            assert!(
                !file_name(&toml).starts_with("valid_"),
                "{} belongs to a valid config",
                file_name(&path)
            );
        }
    }
}

/// The real `gatehouse config check`, with the token variables the valid fixtures name set
/// (an unset `token_env` is itself a problem).
#[test]
fn valid_configs_load() {
    let (valid, _) = fixtures();
    assert!(valid.len() >= 2, "fixtures missing: {valid:?}");
    for path in &valid {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["config", "check", "--config"])
            .arg(path)
            .env("BOT_TOKEN", "bot-token")
            .output()
            .expect("gatehouse runs");
        assert!(
            out.status.success(),
            "{} should load:\n{}",
            file_name(path),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(": ok ("), "{stdout}");
    }
}

/// DESIGN §7's example is a sketch (its reviewer bob has no identity, its refund program is not
/// on this machine: `design_example.expected` says so); its shape parses whole.
#[test]
fn design_example_parses_with_its_contents() {
    let text = std::fs::read_to_string(dir().join("design_example.toml")).expect("the fixture");
    let parsed = gatehouse::config::shape::parse_config(&text).expect("no syntax errors");
    assert_eq!(parsed.problems, Vec::new());
    let cfg = parsed.config;
    assert_eq!(cfg.server.listen, "127.0.0.1:7878");
    assert_eq!(cfg.identities.len(), 2);
    assert_eq!(cfg.models.len(), 1);
    assert_eq!(cfg.agents.len(), 1);
    assert_eq!(cfg.tools.len(), 1);
    assert_eq!(cfg.mcp_servers.len(), 1);
    assert_eq!(cfg.policies.len(), 1);
    assert_eq!(cfg.policies[0].rules.len(), 2);
    assert_eq!(cfg.escalation.len(), 2);
    assert_eq!(
        cfg.escalation[0].after,
        std::time::Duration::from_secs(15 * 60)
    );
    assert_eq!(
        cfg.notify.webhook.as_deref(),
        Some("https://hooks.example.internal/gatehouse")
    );
}

#[test]
fn every_problem_is_one_line_with_a_line_number() {
    let (_, invalid) = fixtures();
    for path in &invalid {
        let Err(err) = gatehouse::preflight::load(path) else {
            continue; // reported by invalid_configs_report_expected_problems
        };
        assert!(!err.problems.is_empty(), "{}", file_name(path));
        for p in &err.problems {
            assert!(p.line >= 1, "{}: {p:?} has no line", file_name(path));
            assert!(!p.key.is_empty(), "{}: {p:?} has no key", file_name(path));
            assert!(
                !p.message.is_empty() && !p.message.contains('\n'),
                "{}: {p:?} message is not one line",
                file_name(path)
            );
        }
    }
}

#[test]
fn unreadable_file_is_a_problem() {
    let path = dir().join("does_not_exist.toml");
    let err = gatehouse::preflight::load(&path).expect_err("a missing file cannot load");
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.problems[0].key, "");
    assert!(err.problems[0].message.starts_with("cannot read"));
    // The file as a whole: no line 0, no key.
    assert_eq!(
        err.to_string(),
        format!("{}: {}", path.display(), err.problems[0].message)
    );
}

#[test]
fn parse_reports_problems_without_a_file() {
    let problems =
        gatehouse::preflight::parse("[ui]\ntheme = \"dark\"\n").expect_err("unknown theme");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].line, 2);
    assert_eq!(problems[0].key, "ui.theme");
}
