//! The CEL variables a rule's `when` sees, built straight into the interpreter's values.
//!
//! Strings borrow from the call (no copies); only the variables the chosen policy's
//! rules reference are built at all.

use super::{CallContext, Timestamp};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelTimestamp,
};
use cel::common::value::Val;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The variable names, in the order the docs list them.
pub const NAMES: [&str; 9] = [
    "tool",
    "tool_name",
    "server",
    "args",
    "agent",
    "run",
    "now",
    "identity",
    "context",
];

/// Which of [`NAMES`] a set of programs refers to, as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Used(u16);

impl Used {
    pub fn of(program: &cel::Program) -> Used {
        let refs = program.references();
        let mut bits = 0u16;
        for (i, name) in NAMES.iter().enumerate() {
            if refs.has_variable(name) {
                bits |= 1 << i;
            }
        }
        Used(bits)
    }

    pub fn union(self, other: Used) -> Used {
        Used(self.0 | other.0)
    }

    fn has(self, name: &str) -> bool {
        NAMES
            .iter()
            .position(|n| *n == name)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }
}

/// How deep JSON arguments may nest before a rule refuses to look at them.
const MAX_DEPTH: usize = 64;

/// Bind the variables `used` names into `ctx`. Fails (the caller asks) only when
/// the arguments or the run are nested deeper than [`MAX_DEPTH`].
pub fn bind<'v>(
    ctx: &mut cel::Context<'_, 'v>,
    used: Used,
    call: &CallContext<'v>,
    now: Timestamp,
) -> Result<(), String> {
    if used.has("tool") {
        let a = call.annotations;
        let mut m: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = HashMap::with_capacity(5);
        m.insert("name".into(), Box::new(CelString::from(call.tool)));
        m.insert("read_only".into(), Box::new(CelBool::from(a.read_only)));
        m.insert("destructive".into(), Box::new(CelBool::from(a.destructive)));
        m.insert("idempotent".into(), Box::new(CelBool::from(a.idempotent)));
        m.insert("open_world".into(), Box::new(CelBool::from(a.open_world)));
        ctx.add_variable_as_val("tool", Box::new(CelMap::from(m)));
    }
    if used.has("tool_name") {
        ctx.add_variable_as_val("tool_name", Box::new(CelString::from(call.tool)));
    }
    if used.has("server") {
        ctx.add_variable_as_val("server", opt_str(call.server));
    }
    if used.has("args") {
        ctx.add_variable_as_val(
            "args",
            object(call.args, 1).map_err(|_| too_deep("arguments"))?,
        );
    }
    if used.has("agent") {
        ctx.add_variable_as_val("agent", opt_str(call.agent));
    }
    if used.has("run") {
        let run = match call.run {
            Some(v) => json(v, 1).map_err(|_| too_deep("run"))?,
            None => Box::new(CelNull),
        };
        ctx.add_variable_as_val("run", run);
    }
    if used.has("identity") {
        let mut m: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = HashMap::with_capacity(2);
        m.insert("name".into(), Box::new(CelString::from(call.identity.name)));
        let roles: Vec<Box<dyn Val + 'v>> = call
            .identity
            .roles
            .iter()
            .map(|r| Box::new(CelString::from(r.as_str())) as Box<dyn Val + 'v>)
            .collect();
        m.insert("roles".into(), Box::new(CelList::from(roles)));
        ctx.add_variable_as_val("identity", Box::new(CelMap::from(m)));
    }
    if used.has("context") {
        // Absent context reads as an empty map, so `context.host == "x"` is simply false
        // (a missing key errors, and an error asks) rather than a type error on null.
        let mut m: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = HashMap::new();
        for (k, v) in call.context.into_iter().flatten() {
            m.insert(k.as_str().into(), Box::new(CelString::from(v.as_str())));
        }
        ctx.add_variable_as_val("context", Box::new(CelMap::from(m)));
    }
    if used.has("now") {
        ctx.add_variable_as_val("now", Box::new(CelTimestamp::from(now.fixed_offset())));
    }
    Ok(())
}

fn too_deep(what: &str) -> String {
    format!("{what} nested more than {MAX_DEPTH} levels deep")
}

fn opt_str<'v>(s: Option<&'v str>) -> Box<dyn Val + 'v> {
    match s {
        Some(s) => Box::new(CelString::from(s)),
        None => Box::new(CelNull),
    }
}

struct TooDeep;

/// JSON → CEL. Numbers become `int` when integral and within i64, else `double`
/// (cel 0.15 compares `int` with `double`, so `args.amount < 50` holds for 30 and 30.5).
fn json<'v>(v: &'v Value, depth: usize) -> Result<Box<dyn Val + 'v>, TooDeep> {
    if depth > MAX_DEPTH {
        return Err(TooDeep);
    }
    Ok(match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => number(n),
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|i| json(i, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Box::new(CelList::from(items))
        }
        Value::Object(m) => object(m, depth)?,
    })
}

fn object<'v>(m: &'v Map<String, Value>, depth: usize) -> Result<Box<dyn Val + 'v>, TooDeep> {
    let mut out: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = HashMap::with_capacity(m.len());
    for (k, v) in m {
        out.insert(k.as_str().into(), json(v, depth + 1)?);
    }
    Ok(Box::new(CelMap::from(out)))
}

fn number<'v>(n: &serde_json::Number) -> Box<dyn Val + 'v> {
    if let Some(i) = n.as_i64() {
        return Box::new(CelInt::from(i));
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    // -2^63 ..= 2^63 exclusive of the top: `i64::MAX as f64` rounds up to 2^63.
    if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
        Box::new(CelInt::from(f as i64))
    } else {
        Box::new(CelDouble::from(f))
    }
}

/// The first variable `program` refers to that is neither one of [`NAMES`] nor bound by one
/// of its own macros (`args.items.all(x, x > 0)` binds `x`).
pub fn unknown(program: &cel::Program) -> Option<String> {
    let mut bound = std::collections::HashSet::new();
    bound_names(program.expression(), &mut bound);
    let refs = program.references();
    let mut names = refs.variables();
    names.sort_unstable();
    names
        .into_iter()
        .find(|v| !NAMES.contains(v) && !bound.contains(*v))
        .map(str::to_string)
}

fn bound_names(e: &cel::IdedExpr, out: &mut std::collections::HashSet<String>) {
    use cel::common::ast::{EntryExpr, Expr};
    match &e.expr {
        Expr::Comprehension(c) => {
            out.insert(c.iter_var.clone());
            out.insert(c.accu_var.clone());
            if let Some(v) = &c.iter_var2 {
                out.insert(v.clone());
            }
            for part in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                bound_names(part, out);
            }
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                bound_names(t, out);
            }
            for a in &c.args {
                bound_names(a, out);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(|x| bound_names(x, out)),
        Expr::Select(s) => bound_names(&s.operand, out),
        Expr::Map(m) => m.entries.iter().for_each(|x| entry(&x.expr, out)),
        Expr::Struct(s) => s.entries.iter().for_each(|x| entry(&x.expr, out)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
    fn entry(e: &EntryExpr, out: &mut std::collections::HashSet<String>) {
        match e {
            EntryExpr::StructField(f) => bound_names(&f.value, out),
            EntryExpr::MapEntry(m) => {
                bound_names(&m.key, out);
                bound_names(&m.value, out);
            }
        }
    }
}
