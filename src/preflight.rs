//! Everything checked before gatehouse acts on a config file, in one pass: the file's own rules
//! (`config`: syntax, shape, references), and what only other parts know — the policies' CEL
//! conditions (`policy`), the scripted models (`model`), `[ui.keys]` (the console's keymap), and
//! this machine (token variables set, command tools' programs present). Joined here so that
//! none of those modules imports another's checks.

use crate::config::shape::{self, Parsed};
use crate::config::{Config, ConfigError, ConfigProblem};
use crate::policy::PolicyProblem;
use crate::policy::probe::{SampleCall, sample_arguments};
use std::path::Path;

/// Read, parse and check a config file. Every problem found is returned, each with its line.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    Config::load_with(path, parse)
}

/// [`load`] without the checks of this machine (token variables set, tools' programs present):
/// for a config that is only read here, not run (`policy replay` of a candidate written for
/// another box).
pub fn load_portable(path: &Path) -> Result<Config, ConfigError> {
    Config::load_with(path, |text| parse_with(text, false))
}

/// Parse and check config text.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigProblem>> {
    parse_with(text, true)
}

fn parse_with(text: &str, this_machine: bool) -> Result<Config, Vec<ConfigProblem>> {
    let parsed = shape::parse_config(text)?;
    let mut problems = crate::config::check::check(&parsed, text);
    let mut add = |p: ConfigProblem| {
        // A key the config module already reported is kept once.
        if !problems.iter().any(|q| q.key == p.key) {
            problems.push(p);
        }
    };
    for p in policy_problems(&parsed, text) {
        add(p);
    }
    for p in model_problems(&parsed.config, text) {
        add(p);
    }
    for p in key_problems(&parsed.config, text) {
        add(p);
    }
    if this_machine {
        for p in machine_problems(&parsed, text) {
            add(p);
        }
    }
    problems.sort_by_key(|p| p.line);
    if problems.is_empty() {
        Ok(parsed.config)
    } else {
        Err(problems)
    }
}

fn at(text: &str, key: String, message: String) -> ConfigProblem {
    ConfigProblem {
        line: shape::line_of_key(text, &key),
        key,
        message,
    }
}

/// The policies compiled, then every condition tried on calls shaped like the tools' own.
fn policy_problems(parsed: &Parsed, text: &str) -> Vec<ConfigProblem> {
    let (set, mut problems) = crate::policy::PolicySet::compile_all(&parsed.config.policies);
    for p in set.probe(&sample_calls(&parsed.config)) {
        if !problems.iter().any(|q| q.key == p.key) {
            problems.push(p);
        }
    }
    problems
        .into_iter()
        .map(|p| ConfigProblem {
            line: policy_line(text, &p),
            key: shape::renumber(parsed, &p.key),
            message: p.message,
        })
        .collect()
}

/// One call of every tool the config can run (builtins included), with arguments of the
/// types its `parameters` declare.
fn sample_calls(cfg: &Config) -> Vec<SampleCall> {
    let Ok(tools) = crate::tools::Tools::from_config(&cfg.tools) else {
        return Vec::new();
    };
    tools
        .names()
        .filter_map(|name| {
            let spec = tools.spec(name)?;
            let policy = match tools.needs_approval(name) {
                Some(crate::config::NeedsApproval::Policy(p)) => Some(p),
                _ => None,
            };
            Some(SampleCall {
                tool: name.to_string(),
                policy,
                arguments: sample_arguments(&spec.parameters),
            })
        })
        .collect()
}

/// The config line of a policy problem: its value's line, plus the problem's line within a
/// multi-line string (TOML drops a newline right after the opening `"""`).
pub(crate) fn policy_line(text: &str, p: &PolicyProblem) -> usize {
    let first = shape::line_of(text, p.offset);
    let rest = text.get(p.offset..).unwrap_or("");
    let Some(body) = rest
        .strip_prefix("\"\"\"")
        .or_else(|| rest.strip_prefix("'''"))
    else {
        return first;
    };
    let skipped = usize::from(body.starts_with('\n') || body.starts_with("\r\n"));
    first + skipped + p.expr_line - 1
}

fn model_problems(cfg: &Config, text: &str) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    for (name, m) in &cfg.models {
        if let crate::config::ModelConfig::Scripted(m) = m
            && let Some(script) = m.script.as_deref()
            && !crate::model::SCRIPTS.contains(&script)
        {
            out.push(at(
                text,
                format!("models.{name}.script"),
                format!(
                    "unknown script {script:?} (built in: {})",
                    crate::model::SCRIPTS.join(", ")
                ),
            ));
        }
    }
    out
}

fn key_problems(cfg: &Config, text: &str) -> Vec<ConfigProblem> {
    match crate::tui::keymap::Keymap::with_overrides(&cfg.ui.keys) {
        Ok(_) => Vec::new(),
        Err(e) => vec![at(text, format!("ui.keys.{}", e.action), e.message)],
    }
}

/// What the file says that this machine must provide.
fn machine_problems(parsed: &Parsed, text: &str) -> Vec<ConfigProblem> {
    let cfg = &parsed.config;
    let mut out = Vec::new();
    for (i, id) in cfg.identities.iter().enumerate() {
        if let Some(var) = &id.token_env {
            let var = var.get_ref();
            let key = shape::renumber(parsed, &format!("identities[{i}].token_env"));
            match std::env::var_os(var) {
                None => out.push(at(
                    text,
                    key,
                    format!(
                        "environment variable {var} is not set (identity {})",
                        id.name.get_ref()
                    ),
                )),
                Some(v) if v.is_empty() => out.push(at(
                    text,
                    key,
                    format!("environment variable {var} is empty"),
                )),
                Some(_) => {}
            }
        }
    }
    for (i, t) in parsed.tool_tables.iter().enumerate() {
        if t.kind == "command"
            && let Some(program) = t.command.as_ref().and_then(|c| c.first())
            && !program.trim().is_empty()
            && let Err(why) = find_program(program)
        {
            let key = shape::renumber(parsed, &format!("tools[{i}].command[0]"));
            out.push(at(text, key, why));
        }
    }
    out
}

/// Where a command tool's program would be found when it runs: a path as written, or the first
/// executable of that name on `PATH`.
fn find_program(program: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = Path::new(program);
        return match std::fs::metadata(p) {
            Err(e) => Err(format!("program {program:?} cannot be run: {e}")),
            Ok(_) if !executable(p) => {
                Err(format!("program {program:?} is not an executable file"))
            }
            Ok(_) => Ok(()),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| executable(&dir.join(program))) {
        Ok(())
    } else {
        Err(format!("program {program:?} is not found on PATH"))
    }
}
