//! `[[tools]]`: names, kinds, parameter schemas, and what each needs for approval.

use super::{BUILTIN_TOOLS, Checker, TOOL_KINDS, defined, is_http_url, valid_tool_name};
use crate::config::shape::KeyPath;
use crate::config::{Config, NeedsApproval, ToolTable};

impl Checker<'_> {
    pub(super) fn tools(&mut self, cfg: &Config, tables: &[ToolTable]) {
        let base = self.entries("tools");
        self.unique(
            "tool name",
            tables
                .iter()
                .enumerate()
                .map(|(i, t)| (base.idx(i).key("name"), t.name.get_ref().as_str())),
        );
        let policy_names: Vec<&str> = cfg
            .policies
            .iter()
            .map(|p| p.name.get_ref().as_str())
            .collect();
        for (i, t) in tables.iter().enumerate() {
            let p = base.idx(i);
            let name = t.name.get_ref().as_str();
            if !name.trim().is_empty() && !valid_tool_name(name) {
                self.report(
                    &p.key("name"),
                    format!("invalid tool name {name:?} (use 1-64 letters, digits, _ or -)"),
                );
            }
            let kind = t.kind.as_str();
            match kind {
                "command" => match t.command.as_deref() {
                    None => self.report(
                        &p.key("command"),
                        "missing command (required for kind \"command\")",
                    ),
                    Some([]) => self.report(
                        &p.key("command"),
                        "empty command (expected [\"program\", \"arg\", ...])",
                    ),
                    Some([program, ..]) if program.trim().is_empty() => {
                        self.report(&p.key("command").idx(0), "empty program name")
                    }
                    Some(_) => {}
                },
                "http" => match t.url.as_deref() {
                    None => self.report(&p.key("url"), "missing url (required for kind \"http\")"),
                    Some(url) if !is_http_url(url) => self.report(
                        &p.key("url"),
                        format!("invalid url {url:?} (expected an http:// or https:// URL)"),
                    ),
                    Some(_) => {}
                },
                "builtin" => {
                    let (key, builtin) = match &t.builtin {
                        Some(b) => (p.key("builtin"), b.as_str()),
                        None => (p.key("name"), name),
                    };
                    if !builtin.trim().is_empty() && !BUILTIN_TOOLS.contains(&builtin) {
                        self.report(
                            &key,
                            format!(
                                "unknown builtin tool {builtin:?} (built in: {})",
                                BUILTIN_TOOLS.join(", ")
                            ),
                        );
                    }
                }
                other => self.report(
                    &p.key("kind"),
                    format!(
                        "unknown tool kind {other:?} (allowed: {})",
                        TOOL_KINDS.join(", ")
                    ),
                ),
            }
            if TOOL_KINDS.contains(&kind) {
                for (field, set, wants) in [
                    ("command", t.command.is_some(), "command"),
                    ("url", t.url.is_some(), "http"),
                    ("builtin", t.builtin.is_some(), "builtin"),
                ] {
                    if set && kind != wants {
                        self.report(
                            &p.key(field),
                            format!("{field} is only used with kind {wants:?} (this tool's kind is {kind:?})"),
                        );
                    }
                }
            }
            if let Some(na) = &t.needs_approval
                && let NeedsApproval::Policy(policy) = na.get_ref()
                && !policy_names.contains(&policy.as_str())
                && !self.is_broken(policy)
            {
                self.report(
                    &p.key("needs_approval"),
                    format!(
                        "unknown policy {policy:?} (expected true, false or a policy name; {})",
                        defined(&policy_names, "[[policies]]")
                    ),
                );
            }
            if let Some(params) = &t.parameters {
                self.parameters(&p.key("parameters"), params);
            }
            self.positive(&p.key("timeout"), t.timeout);
            self.positive(&p.key("approval_timeout"), t.approval_timeout);
        }
    }

    /// `parameters` is the JSON schema of the tool's arguments: an object schema.
    pub(super) fn parameters(&mut self, p: &KeyPath, params: &toml::Value) {
        let Some(table) = params.as_table() else {
            self.report(
                p,
                "parameters must be a table (a JSON schema with type = \"object\")",
            );
            return;
        };
        match table.get("type").and_then(|t| t.as_str()) {
            Some("object") => {}
            Some(other) => self.report(
                &p.key("type"),
                format!("parameters type must be \"object\" (got {other:?})"),
            ),
            None => self.report(&p.key("type"), "parameters must have type = \"object\""),
        }
        let properties = match table.get("properties") {
            None => None,
            Some(toml::Value::Table(props)) => {
                for (name, schema) in props {
                    if !schema.is_table() {
                        self.report(
                            &p.key("properties").key(name),
                            format!("property {name:?} must be a table (a JSON schema)"),
                        );
                    }
                }
                Some(props)
            }
            Some(_) => {
                self.report(&p.key("properties"), "properties must be a table");
                None
            }
        };
        match table.get("required") {
            None => {}
            Some(toml::Value::Array(required)) => {
                for (j, r) in required.iter().enumerate() {
                    match r.as_str() {
                        None => self.report(
                            &p.key("required").idx(j),
                            "required must list property names (strings)",
                        ),
                        Some(name) => {
                            if properties.is_some_and(|props| !props.contains_key(name)) {
                                self.report(
                                    &p.key("required").idx(j),
                                    format!("required property {name:?} is not in properties"),
                                );
                            }
                        }
                    }
                }
            }
            Some(_) => self.report(
                &p.key("required"),
                "required must be an array of property names",
            ),
        }
    }

    /// `approval = "always" | "never" | "POLICY"`.
    pub(super) fn approval(&mut self, p: &KeyPath, value: &str, policy_names: &[&str]) {
        if value == "always"
            || value == "never"
            || policy_names.contains(&value)
            || self.is_broken(value)
        {
            return;
        }
        self.report(
            p,
            format!(
                "unknown approval {value:?} (allowed: always, never or a policy name; {})",
                defined(policy_names, "[[policies]]")
            ),
        );
    }
}
