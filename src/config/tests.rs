//! The config module's checks: key paths, lines, messages, partial parses.

use super::check::*;
use super::shape::*;
use super::*;

fn problems(text: &str) -> Vec<ConfigProblem> {
    match Config::parse(text) {
        Ok(_) => Vec::new(),
        Err(p) => p,
    }
}

fn keys(text: &str) -> Vec<(usize, String)> {
    problems(text)
        .into_iter()
        .map(|p| (p.line, p.key))
        .collect()
}

#[test]
fn line_of_counts_from_one() {
    assert_eq!(line_of("a\nb\nc", 0), 1);
    assert_eq!(line_of("a\nb\nc", 2), 2);
    assert_eq!(line_of("a\nb\nc", 4), 3);
    assert_eq!(line_of("a\nb\nc", 999), 3);
}

#[test]
fn key_paths_quote_non_bare_keys() {
    let p = KeyPath::root()
        .key("policies")
        .idx(0)
        .key("rules")
        .idx(2)
        .key("when");
    assert_eq!(p.to_string(), "policies[0].rules[2].when");
    let p = KeyPath::root().key("models").key("gpt.4").key("kind");
    assert_eq!(p.to_string(), "models.\"gpt.4\".kind");
    assert_eq!(KeyPath::root().to_string(), "toml");
}

#[test]
fn serde_messages_become_short_lines() {
    let m = |s: &str| clean_message(s).0;
    assert_eq!(
        m("unknown field `tokn`, expected one of `name`, `token`"),
        "unknown key \"tokn\" (allowed: name, token)"
    );
    assert_eq!(
        m("unknown field `zzz`, expected `approval`"),
        "unknown key \"zzz\" (allowed: approval)"
    );
    assert_eq!(
        m("unknown field `x`, there are no fields"),
        "unknown key \"x\""
    );
    assert_eq!(
        clean_message("missing field `kind`"),
        ("missing required key \"kind\"".into(), Some("kind".into()))
    );
    assert_eq!(
        m("invalid type: string \"many\", expected usize"),
        "expected a non-negative integer, found string \"many\""
    );
    assert_eq!(
        m("invalid value: string \"soon\", expected a duration"),
        "expected a duration like \"90s\" or \"15m\", found string \"soon\""
    );
    assert_eq!(m("first line\nsecond line\n"), "first line");
}

#[test]
fn plain_and_hashed_tokens_compare_equal() {
    let hashed = "sha256:20d2fe5e369db54ec7090639a9dc30ec4d608604936239d39e2de07fda09eb0b";
    assert_eq!(token_digest("hunter22"), token_digest(hashed));
    assert_eq!(
        token_digest(&hashed.to_ascii_uppercase().replace("SHA256:", "sha256:")),
        token_digest(hashed)
    );
    assert_eq!(token_digest("sha256:abc"), None);
    assert_eq!(token_digest(""), None);
}

#[test]
fn locator_falls_back_to_the_enclosing_table() {
    let text = "[server]\nlisten = \"x\"\n\n[[tools]]\nname = \"t\"\n";
    let loc = Locator::new(text);
    let tools0 = KeyPath::root().key("tools").idx(0);
    assert_eq!(loc.line(&tools0.key("name")), 5);
    assert_eq!(loc.line(&tools0.key("url")), 4);
    assert_eq!(loc.line(&KeyPath::root().key("server").key("listen")), 2);
    assert_eq!(loc.line(&KeyPath::root().key("nowhere")), 1);
}

#[test]
fn problems_come_in_file_order() {
    let text = "[ui]\ntheme = \"dark\"\n\n[server]\nmax_connections = 10\n";
    assert_eq!(
        keys(text),
        vec![(2, "ui.theme".into()), (5, "server.max_connections".into())]
    );
}

#[test]
fn quoted_table_names_keep_their_quotes() {
    let text = "[models.\"gpt.4\"]\nkind = \"llama\"\n";
    assert_eq!(keys(text), vec![(2, "models.\"gpt.4\".kind".into())]);
}

#[test]
fn every_syntax_error_line_is_reported() {
    let text = "[server\nlisten = \"127.0.0.1:7878\"\n[x]\ny = \n";
    let found = problems(text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!((found[0].line, found[0].key.as_str()), (1, "toml"));
    assert_eq!(found[1].line, 4);
}

#[test]
fn shape_errors_of_different_entries_are_all_reported() {
    let text = "[[identities]]\nname = \"a\"\nx = 1\n\n[[identities]]\nname = \"b\"\ny = 2\n";
    assert_eq!(
        keys(text),
        vec![(3, "identities[0].x".into()), (7, "identities[1].y".into())]
    );
}

#[test]
fn unknown_key_in_mcp_tool_override() {
    let text =
        "[[mcp_servers]]\nname = \"m\"\ncommand = \"x\"\n[mcp_servers.tools.q]\nmode = \"never\"\n";
    let found = problems(text);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].line, 5);
    assert_eq!(found[0].key, "mcp_servers[0].tools.q.mode");
    assert_eq!(found[0].message, "unknown key \"mode\" (allowed: approval)");
}

#[test]
fn a_rate_limited_approve_does_not_make_later_rules_unreachable() {
    let text = "[[policies]]\nname = \"p\"\n[[policies.rules]]\naction = \"approve\"\nmax_per_hour = 3\n[[policies.rules]]\naction = \"ask\"\n";
    assert_eq!(problems(text), Vec::new());
}

#[test]
fn odd_input_never_panics() {
    for text in [
        "",
        "=",
        "\u{feff}[server]\n",
        "[[identities]]\n",
        "[models]\nx = 1\n",
        "tools = [1, 2]\n",
        "[[policies]]\nname = \"p\"\nrules = \"x\"\n",
        "\0\u{1b}[31m",
        "[server]\nlisten = \"\u{202e}1:80\"\n",
    ] {
        let _ = Config::parse(text);
    }
}
