//! Tool executors (DESIGN §7 `[[tools]]`): `command`, `http` and `builtin` tools, with their
//! argument schemas compiled once and checked before a call goes anywhere.
//!
//! A tool's result is what the model sees as the tool message: `ToolOutput::Ok` with the
//! tool's output, or `ToolOutput::Error` with a one-paragraph explanation.

pub mod builtin;
pub(crate) mod command;
#[cfg(unix)]
pub mod guard;
mod http;
pub mod mcp;
#[cfg(test)]
mod tests;

use crate::config::{NeedsApproval, ToolConfig, ToolExec};
pub use crate::domain::ToolOutput;
use crate::model::ToolSpec;
use crate::text::json_type;
use builtin::Builtin;
use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Timeout of a `command` or `http` tool whose config names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest output (standard output, or response body) a tool may return.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Every tool the agents of one config can use: the `[[tools]]` entries, and the builtins
/// under their own names unless a `[[tools]]` entry takes the name.
pub struct Tools {
    tools: BTreeMap<String, Tool>,
    client: reqwest::Client,
}

struct Tool {
    spec: ToolSpec,
    validator: jsonschema::Validator,
    exec: Exec,
    needs_approval: NeedsApproval,
    approval_timeout: Option<Duration>,
}

enum Exec {
    Command {
        argv: Vec<String>,
        timeout: Duration,
        env: BTreeMap<String, String>,
    },
    Http {
        url: reqwest::Url,
        timeout: Duration,
    },
    Builtin(Builtin),
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tools")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Tools {
    /// Build the tools of `[[tools]]` plus the builtins. Errors are one line naming the tool.
    pub fn from_config(tools: &[ToolConfig]) -> Result<Tools, String> {
        let mut out = BTreeMap::new();
        for t in tools {
            let name = t.name.get_ref().clone();
            let tool = Tool::from_config(t).map_err(|e| format!("tools.{name}: {e}"))?;
            if out.insert(name.clone(), tool).is_some() {
                return Err(format!("tools.{name}: defined twice"));
            }
        }
        for b in Builtin::ALL {
            if !out.contains_key(b.name()) {
                out.insert(b.name().to_string(), Tool::builtin(*b)?);
            }
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Tools { tools: out, client })
    }

    /// The tool as the model sees it.
    pub fn spec(&self, name: &str) -> Option<ToolSpec> {
        self.tools.get(name).map(|t| t.spec.clone())
    }

    /// Names of every tool, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// The tool's `needs_approval`: as configured; for a builtin without a `[[tools]]` entry,
    /// the seed's (`get_order_details` is read-only and needs none, the others always ask);
    /// `None` for an unknown tool.
    pub fn needs_approval(&self, name: &str) -> Option<NeedsApproval> {
        self.tools.get(name).map(|t| t.needs_approval.clone())
    }

    /// `approval_timeout` of the tool, if it names one.
    pub fn approval_timeout(&self, name: &str) -> Option<Duration> {
        self.tools.get(name).and_then(|t| t.approval_timeout)
    }

    /// Parse the model's raw argument text, then `validate` it. Empty text counts as `{}`.
    pub fn validate_raw(&self, name: &str, raw: &str) -> Result<Map<String, Value>, String> {
        self.validate(name, &parse_args(name, raw)?)
    }

    /// Check `args` against the tool's JSON schema. The error names each offending field
    /// (`missing required field "amount"`, `field "amount": "ten" is not of type "number"`).
    pub fn validate(&self, name: &str, args: &Value) -> Result<Map<String, Value>, String> {
        let tool = self
            .tools
            .get(name)
            .ok_or_else(|| format!("unknown tool {name:?}"))?;
        check_args(&tool.validator, name, args)
    }

    /// Run the tool. Never panics and never hangs past the tool's timeout; every failure is
    /// an `Error` the model can read.
    pub async fn call(&self, name: &str, args: &Map<String, Value>) -> ToolOutput {
        let Some(tool) = self.tools.get(name) else {
            return ToolOutput::Error(format!("unknown tool {name:?}"));
        };
        match &tool.exec {
            Exec::Command { argv, timeout, env } => {
                let input = Value::Object(args.clone()).to_string();
                command::run(argv, env, input.as_bytes(), *timeout).await
            }
            Exec::Http { url, timeout } => http::post(&self.client, url, args, *timeout).await,
            Exec::Builtin(b) => b.call(args),
        }
    }
}

impl Tool {
    fn from_config(t: &ToolConfig) -> Result<Tool, String> {
        let name = t.name.get_ref();
        let timeout = t.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            return Err("timeout must be positive".into());
        }
        let mut builtin = None;
        let exec = match &t.exec {
            ToolExec::Command { command } => match command.as_slice() {
                [program, ..] if !program.trim().is_empty() => Exec::Command {
                    argv: command.clone(),
                    timeout,
                    env: t.env.clone(),
                },
                _ => return Err("empty command (expected [\"program\", \"arg\", …])".into()),
            },
            ToolExec::Http { url } => {
                let url =
                    reqwest::Url::parse(url).map_err(|e| format!("invalid url {url:?}: {e}"))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(format!(
                        "invalid url {:?} (expected an http:// or https:// URL)",
                        url.as_str()
                    ));
                }
                Exec::Http { url, timeout }
            }
            ToolExec::Builtin { builtin: which } => {
                let which = which.as_deref().unwrap_or(name);
                let b = Builtin::by_name(which).ok_or_else(|| {
                    format!(
                        "unknown builtin tool {which:?} (built in: {})",
                        Builtin::ALL
                            .iter()
                            .map(|b| b.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
                builtin = Some(b);
                Exec::Builtin(b)
            }
        };
        let parameters = match (&t.parameters, builtin) {
            (Some(p), _) => serde_json::to_value(p)
                .map_err(|e| format!("parameters cannot be read as JSON: {e}"))?,
            (None, Some(b)) => b.parameters(),
            (None, None) => json!({ "type": "object", "properties": {} }),
        };
        let description = match (t.description.trim().is_empty(), builtin) {
            (true, Some(b)) => b.description().to_string(),
            _ => t.description.clone(),
        };
        let needs_approval = match (&t.needs_approval, builtin) {
            (Some(na), _) => na.get_ref().clone(),
            (None, Some(b)) => b.needs_approval(),
            (None, None) => NeedsApproval::default(),
        };
        let mut tool = Tool::new(name, description, parameters, exec, needs_approval)?;
        tool.approval_timeout = t.approval_timeout;
        Ok(tool)
    }

    fn builtin(b: Builtin) -> Result<Tool, String> {
        Tool::new(
            b.name(),
            b.description().to_string(),
            b.parameters(),
            Exec::Builtin(b),
            b.needs_approval(),
        )
    }

    fn new(
        name: &str,
        description: String,
        parameters: Value,
        exec: Exec,
        needs_approval: NeedsApproval,
    ) -> Result<Tool, String> {
        if parameters.get("type").and_then(Value::as_str) != Some("object") {
            return Err("parameters must be a JSON schema with type = \"object\"".into());
        }
        let validator = jsonschema::validator_for(&parameters)
            .map_err(|e| format!("invalid parameters schema: {}", clip(&e.to_string())))?;
        Ok(Tool {
            spec: ToolSpec {
                name: name.to_string(),
                description,
                parameters,
            },
            validator,
            exec,
            needs_approval,
            approval_timeout: None,
        })
    }
}

/// The model's argument text as JSON; empty text counts as `{}`.
pub fn parse_args(name: &str, raw: &str) -> Result<Value, String> {
    if raw.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(raw)
        .map_err(|e| format!("the arguments of {name} are not valid JSON: {e}"))
}

/// Check `args` against `schema`, for tools whose schema comes from elsewhere (MCP
/// servers). Errors name each offending field, as for our own tools.
pub fn validate_against(
    schema: &Value,
    name: &str,
    args: &Value,
) -> Result<Map<String, Value>, String> {
    let validator = jsonschema::validator_for(schema).map_err(|e| {
        format!(
            "the schema of {name} is not usable: {}",
            clip(&e.to_string())
        )
    })?;
    check_args(&validator, name, args)
}

/// `args` must be an object that `validator` accepts.
fn check_args(
    validator: &jsonschema::Validator,
    name: &str,
    args: &Value,
) -> Result<Map<String, Value>, String> {
    let Value::Object(map) = args else {
        return Err(format!(
            "the arguments of {name} must be a JSON object, not {}",
            json_type(args)
        ));
    };
    let problems: Vec<String> = validator.iter_errors(args).map(describe).collect();
    if problems.is_empty() {
        Ok(map.clone())
    } else {
        Err(format!(
            "invalid arguments for {name}: {}",
            problems.join("; ")
        ))
    }
}

/// One schema violation, naming the field.
fn describe(e: jsonschema::ValidationError<'_>) -> String {
    let path = field_path(e.instance_path());
    let within = |field: &str| {
        if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    };
    match e.kind() {
        ValidationErrorKind::Required { property } => {
            let field = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            format!("missing required field {:?}", within(&field))
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let fields: Vec<String> = unexpected
                .iter()
                .map(|f| format!("{:?}", within(f)))
                .collect();
            if fields.len() == 1 {
                format!("unexpected field {}", fields[0])
            } else {
                format!("unexpected fields {}", fields.join(", "))
            }
        }
        _ if path.is_empty() => clip(&e.to_string()),
        _ => format!("field {path:?}: {}", clip(&e.to_string())),
    }
}

/// `/items/0/sku` → `items[0].sku`.
fn field_path(location: &jsonschema::paths::Location) -> String {
    let mut out = String::new();
    for segment in location.segments() {
        match segment {
            jsonschema::paths::LocationSegment::Index(i) => out.push_str(&format!("[{i}]")),
            jsonschema::paths::LocationSegment::Property(p) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&p);
            }
        }
    }
    out
}

/// At most 200 characters: error messages quote the offending value.
fn clip(text: &str) -> String {
    crate::text::clip(text, 200)
}

/// The last `n` non-empty lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `Tools` is shared between tasks.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Tools>();
};
