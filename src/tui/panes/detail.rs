//! The detail of one approval: in the dashboard's detail pane or full-screen. A shell
//! command leads (it is what the reviewer must read); claims are marked as claims; a decided
//! approval shows its decision, and after an edit both the requested and the run arguments.

use super::{fmt_age_exact, left_role, pane_block, secs_between, status_role};
use crate::domain::{Approval, ApprovalStatus};
use crate::tui::entries::{shell_command, short_id};
use crate::tui::json::{json_lines, wrap_line, wrap_line_indent};
use crate::tui::keymap::Action;
use crate::tui::sanitize::{has_escapes, segments};
use crate::tui::state::{ConsoleState, Focus, FullView};
use crate::tui::theme::{Role, Theme};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;
use serde_json::Value;

/// Untrusted text as spans: escapes in the escape style.
pub(in crate::tui) fn untrusted(
    s: &str,
    style: Style,
    theme: &Theme,
    multiline: bool,
) -> Vec<Span<'static>> {
    segments(s, multiline)
        .into_iter()
        .map(|(t, esc)| {
            Span::styled(
                t.into_owned(),
                if esc {
                    theme.style(Role::Escape)
                } else {
                    style
                },
            )
        })
        .collect()
}

pub(in crate::tui) const LABEL_W: usize = 9;

pub(in crate::tui) fn field(
    label: &str,
    mut value: Vec<Span<'static>>,
    theme: &Theme,
) -> Line<'static> {
    let mut spans = vec![Span::styled(
        format!("{label:<LABEL_W$}"),
        theme.style(Role::Muted),
    )];
    spans.append(&mut value);
    Line::from(spans)
}

/// The detail of an approval wrapped to a width, and which rows show the arguments that
/// will run (each row: the index of its unwrapped arguments line), so that the console can
/// tell when the whole arguments have been on screen.
pub struct DetailText {
    pub lines: Vec<Line<'static>>,
    pub arg_rows: Vec<Option<usize>>,
    /// Unwrapped lines of the arguments that will run.
    pub arg_lines: usize,
}

/// How a raw line wraps.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Prose,
    Field,
    Json,
    /// A line of the arguments that will run (its index among them).
    Args(usize),
}

struct Out<'t> {
    raw: Vec<(Line<'static>, Kind)>,
    theme: &'t Theme,
}

impl Out<'_> {
    fn push(&mut self, l: Line<'static>) {
        self.raw.push((l, Kind::Prose));
    }
    fn field(&mut self, label: &str, value: Vec<Span<'static>>) {
        self.raw
            .push((field(label, value, self.theme), Kind::Field));
    }
    fn heading(&mut self, text: &str, note: Option<String>) {
        let mut spans = vec![Span::styled(
            text.to_string(),
            self.theme.style(Role::Header),
        )];
        if let Some(n) = note {
            spans.push(Span::styled(n, self.theme.style(Role::Muted)));
        }
        self.push(Line::from(spans));
    }
    fn json(&mut self, v: &Value, args: bool) {
        for (i, l) in json_lines(v, self.theme).into_iter().enumerate() {
            self.raw
                .push((l, if args { Kind::Args(i) } else { Kind::Json }));
        }
    }
}

/// `refunds · rule 2 · when amount >= 50` from the policy's reference and reason (whose own
/// text repeats the rule number: `rule 2 matched (amount >= 50)`).
fn policy_spans(a: &Approval, theme: &Theme) -> Vec<Span<'static>> {
    let text = theme.style(Role::Text);
    let muted = theme.style(Role::Muted);
    let badge = theme.style(Role::Badge);
    let mut v = match &a.policy.name {
        Some(n) => untrusted(n, badge, theme, false),
        None => vec![Span::styled("no policy", badge)],
    };
    let reason = a.policy.reason.as_str();
    if let Some(r) = a.policy.rule {
        v.push(Span::styled(format!(" · rule {r}"), badge));
        match rule_reason(reason, r) {
            Some((cond, rest)) => {
                if cond == "always" {
                    v.push(Span::styled(" · every call", muted));
                } else {
                    v.push(Span::styled(" · when ", muted));
                    v.extend(untrusted(cond, text, theme, false));
                }
                if !rest.is_empty() {
                    v.push(Span::styled(" · ", muted));
                    v.extend(untrusted(rest, text, theme, false));
                }
            }
            None if !reason.is_empty() => {
                v.push(Span::styled(" · ", muted));
                v.extend(untrusted(reason, text, theme, false));
            }
            None => {}
        }
    } else if !reason.is_empty() {
        v.push(Span::styled(" · ", muted));
        v.extend(untrusted(reason, text, theme, false));
    }
    v
}

/// The condition and the rest of a policy reason that names its rule, as the policy engine
/// writes it: `rule 2 matched (amount >= 50)` or `rule 1 matched (always): a message`.
pub fn rule_reason(reason: &str, rule: usize) -> Option<(&str, &str)> {
    let body = reason.strip_prefix(&format!("rule {rule} matched ("))?;
    // the condition may hold parentheses of its own
    let mut depth = 1usize;
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let rest = body[i + 1..].trim_start_matches(':').trim();
                    return Some((&body[..i], rest));
                }
            }
            _ => {}
        }
    }
    None
}

/// A name with its claim mark: `(claimed)` when the submitter said so and nobody checked.
fn claimed(name: &Option<String>, verified: bool, theme: &Theme) -> Vec<Span<'static>> {
    match name {
        Some(s) => {
            let mut v = untrusted(s, theme.style(Role::Text), theme, false);
            if !verified {
                v.push(Span::styled(" (claimed)", theme.style(Role::Warning)));
            }
            v
        }
        None => vec![Span::styled("—", theme.style(Role::Muted))],
    }
}

/// The detail of `a`, wrapped to `width`.
pub fn detail_lines(st: &ConsoleState, a: &Approval, theme: &Theme, width: usize) -> DetailText {
    let text = theme.style(Role::Text);
    let muted = theme.style(Role::Muted);
    let sep = || Span::styled(" · ", muted);
    let mut o = Out {
        raw: Vec::new(),
        theme,
    };
    if let Some(f) = st.inflight(&a.id) {
        o.push(Line::from(Span::styled(
            format!(
                "⏳ sending {}… (not decided until the runner confirms)",
                f.label
            ),
            theme.style(Role::Sending),
        )));
    }
    if a.outcome_unknown && a.is_pending() {
        o.push(Line::from(Span::styled(
            format!("‼ {}", crate::tui::run_panes::OUTCOME_UNKNOWN),
            theme.style(Role::Danger),
        )));
        o.push(Line::from(Span::styled(
            "  gatehouse stopped while this call ran: it may or may not have taken effect.",
            theme.style(Role::Danger),
        )));
    }
    if !a.is_pending() {
        decision_lines(a, theme, &mut o);
    }
    // a shell command is the first thing to read
    if let Some(cmd) = shell_command(&a.arguments) {
        let mut v = vec![Span::styled("$ ", theme.style(Role::Header))];
        v.extend(untrusted(&cmd, theme.style(Role::Title), theme, false));
        o.push(Line::from(v));
    }
    // tool @ server, and the warning badge
    let mut tool = untrusted(&a.tool, theme.style(Role::Title), theme, false);
    if let Some(server) = &a.server {
        tool.push(Span::styled(" @ ", muted));
        tool.extend(untrusted(server, text, theme, false));
        if !a.server_verified {
            tool.push(Span::styled(" (claimed)", theme.style(Role::Warning)));
        }
    }
    if crate::tui::entries::approval_has_escapes(a) {
        tool.push(Span::raw("  "));
        tool.push(Span::styled(
            "⚠ escaped characters",
            theme.style(Role::Warning),
        ));
    }
    o.push(Line::from(tool));
    // who
    let mut who = claimed(&a.agent, a.agent_verified, theme);
    if a.run_id.is_none() {
        who.push(sep());
        who.push(Span::styled("external submission", muted));
    }
    if a.agent.as_deref() != Some(a.requested_by.as_str()) {
        who.push(sep());
        who.push(Span::styled("from ", muted));
        who.extend(untrusted(&a.requested_by, text, theme, false));
    }
    o.field("Agent", who);
    // where the call comes from (agent hooks, MCP clients)
    if let Some(ctx) = &a.context {
        for key in ["host", "cwd", "session", "client"] {
            if let Some(v) = ctx.get(key) {
                let label = match key {
                    "cwd" => "Dir",
                    "host" => "Host",
                    "session" => "Session",
                    _ => "Client",
                };
                o.field(label, untrusted(v, text, theme, false));
            }
        }
    }
    // the run, what it is doing, and how to see what led here
    if let Some(r) = &a.run_id {
        let mut run = untrusted(r, text, theme, false);
        match ConsoleState::run_of(a) {
            Some(id) => {
                if let Some(re) = st.run(&id) {
                    run.push(sep());
                    run.push(Span::styled(
                        re.summary.status.as_str(),
                        theme.style(crate::tui::run_panes::run_status_role(re.summary.status)),
                    ));
                    run.push(Span::styled(format!(" turn {}", re.summary.turns), muted));
                }
                run.push(sep());
                run.push(Span::styled(
                    st.keymap.hint(Action::Transcript),
                    theme.style(Role::StatusKey),
                ));
                run.push(Span::styled(" opens the transcript", muted));
            }
            None => {
                run.push(sep());
                run.push(Span::styled("the submitter's run (no transcript)", muted));
            }
        }
        o.field("Run", run);
    }
    o.field("Policy", policy_spans(a, theme));
    if a.is_pending() {
        let mut queue = untrusted(&a.queue, text, theme, false);
        queue.push(Span::styled(format!(" tier {}", a.tier), muted));
        queue.push(sep());
        queue.push(Span::styled(
            format!("{} old", fmt_age_exact(secs_between(a.created_at, st.now))),
            muted,
        ));
        queue.push(sep());
        queue.push(match a.expires_at {
            Some(t) => {
                let s = secs_between(st.now, t);
                let long = if s < 0 {
                    "overdue".to_string()
                } else if s >= 3600 {
                    format!("{}h {}m {:02}s left", s / 3600, (s % 3600) / 60, s % 60)
                } else {
                    format!("{}m {:02}s left", s / 60, s % 60)
                };
                Span::styled(long, theme.style(left_role(s)))
            }
            None => Span::styled("no deadline", muted),
        });
        o.field("Queue", queue);
        if let Some(count) = a.quorum_summary() {
            let mut q = vec![Span::styled(
                crate::tui::sanitize(&count).0.into_owned(),
                theme.style(Role::Badge),
            )];
            if let Some(awaits) = a.quorum_awaits() {
                q.push(sep());
                q.push(Span::styled(awaits, muted));
            }
            o.field("Quorum", q);
        }
    } else {
        o.field("Queue", untrusted(&a.queue, text, theme, false));
    }
    // the arguments: exactly what will run (or ran)
    let sha = &a.arguments_sha256[..a.arguments_sha256.len().min(16)];
    let edited = a.requested_arguments.is_some();
    let heading = if edited {
        "Arguments (edited by the reviewer: this ran)"
    } else {
        "Arguments"
    };
    o.heading(heading, Some(format!("  sha256 {sha}…")));
    o.json(&Value::Object(a.arguments.clone()), true);
    if let Some(req) = &a.requested_arguments {
        o.heading("Requested arguments (as submitted)", None);
        o.json(&Value::Object(req.clone()), false);
    }
    o.heading("Reasoning", None);
    match a.reasoning.as_deref() {
        Some(r) if !r.is_empty() => {
            // keep real line breaks; escape everything else
            let spans = untrusted(r, text, theme, true);
            let mut cur: Vec<Span<'static>> = Vec::new();
            for sp in spans {
                let style = sp.style;
                let content = sp.content.into_owned();
                let mut parts = content.split('\n').peekable();
                while let Some(p) = parts.next() {
                    if !p.is_empty() {
                        cur.push(Span::styled(p.to_string(), style));
                    }
                    if parts.peek().is_some() {
                        o.push(Line::from(std::mem::take(&mut cur)));
                    }
                }
            }
            o.push(Line::from(cur));
        }
        _ => o.push(Line::from(Span::styled("(no reasoning given)", muted))),
    }
    if let Some(ctx) = &a.context {
        let rest: Vec<String> = ctx
            .iter()
            .filter(|(k, _)| !["host", "cwd", "session", "client"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !rest.is_empty() {
            o.field("Context", untrusted(&rest.join(" "), muted, theme, false));
        }
    }
    let editable = if ConsoleState::editable(a) {
        "edits honoured"
    } else {
        "edits not offered"
    };
    o.field(
        "Id",
        vec![Span::styled(format!("{}  {editable}", a.id), muted)],
    );
    o.field(
        "Created",
        vec![Span::styled(
            a.created_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            muted,
        )],
    );
    let mut out = DetailText {
        lines: Vec::with_capacity(o.raw.len()),
        arg_rows: Vec::with_capacity(o.raw.len()),
        arg_lines: 0,
    };
    for (l, kind) in &o.raw {
        let wrapped = match kind {
            Kind::Json | Kind::Args(_) => wrap_line(l, width, false),
            Kind::Field => wrap_line_indent(l, width, true, LABEL_W),
            Kind::Prose => wrap_line(l, width, true),
        };
        let arg = match kind {
            Kind::Args(i) => {
                out.arg_lines = out.arg_lines.max(i + 1);
                Some(*i)
            }
            _ => None,
        };
        out.arg_rows.extend(std::iter::repeat_n(arg, wrapped.len()));
        out.lines.extend(wrapped);
    }
    out
}

/// What was decided, by whom and why: first, for a decided approval.
fn decision_lines(a: &Approval, theme: &Theme, o: &mut Out) {
    let muted = theme.style(Role::Muted);
    let text = theme.style(Role::Text);
    let role = theme.style(status_role(a.status));
    let mut v = vec![Span::styled(a.status.as_str().to_uppercase(), role)];
    if let Some(d) = &a.decision {
        v.push(Span::styled(" by ", muted));
        v.extend(untrusted(&d.by, text, theme, false));
        v.push(Span::styled(
            format!(" at {}", d.at.format("%Y-%m-%d %H:%M:%SZ")),
            muted,
        ));
        if d.scope.as_deref() == Some("run") {
            v.push(Span::styled(" · for the rest of the run", muted));
        }
    }
    if a.requested_arguments.is_some() || a.decision.as_ref().is_some_and(|d| d.arguments.is_some())
    {
        v.push(Span::styled(" · edited", theme.style(Role::Warning)));
    }
    o.field("Decision", v);
    if let Some(r) = a.decision.as_ref().and_then(|d| d.reason.as_deref()) {
        o.field("Reason", untrusted(r, text, theme, false));
    }
    if a.status == ApprovalStatus::Approved
        && a.requested_arguments.is_none()
        && let Some(edit) = a.decision.as_ref().and_then(|d| d.arguments.as_ref())
    {
        // an older daemon keeps the edit only in the decision
        o.heading("Edited arguments (this ran)", None);
        o.json(&Value::Object(edit.clone()), false);
    }
}

/// The detail pane (`full`: the approval open full-screen).
pub(super) fn render_detail(
    st: &ConsoleState,
    full: Option<&FullView>,
    theme: &Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let focused = full.is_some() || st.focus() == Focus::Detail;
    let Some(a) = st.shown_approval() else {
        let block = pane_block(Line::from(" Detail "), focused, theme);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height > 0 {
            buf.set_stringn(
                inner.x + 1,
                inner.y,
                "Select an approval to see it here.",
                inner.width.saturating_sub(1) as usize,
                theme.style(Role::Muted),
            );
        }
        return;
    };
    let tool = crate::tui::sanitize::sanitize(&a.tool).0.into_owned();
    let mut title = vec![Span::raw(format!(" {tool} · {} ", short_id(&a.id)))];
    if !a.is_pending() {
        title.push(Span::styled(
            format!(" {} ", a.status.as_str()),
            theme.style(status_role(a.status)),
        ));
        title.push(Span::raw(" "));
    }
    if a.outcome_unknown && a.is_pending() {
        title.push(Span::styled(" OUTCOME UNKNOWN ", theme.style(Role::Danger)));
        title.push(Span::raw(" "));
    }
    if crate::tui::entries::approval_has_escapes(a) || has_escapes(&a.tool) {
        title.push(Span::styled(" ⚠ text escaped ", theme.style(Role::Warning)));
        title.push(Span::raw(" "));
    }
    let block = pane_block(Line::from(title), focused, theme);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width < 10 {
        return;
    }
    let d = detail_lines(st, a, theme, inner.width as usize);
    let scroll = full.map_or(st.dashboard.detail_scroll, |f| f.scroll);
    super::draw_scrolled(buf, area, inner, &d.lines, scroll, theme.style(Role::Muted));
}

#[cfg(test)]
mod tests {
    use super::rule_reason;

    #[test]
    fn policy_reasons_read_once() {
        assert_eq!(
            rule_reason("rule 2 matched (always)", 2),
            Some(("always", ""))
        );
        assert_eq!(
            rule_reason("rule 1 matched (size(args.x) < 5): small ones pass", 1),
            Some(("size(args.x) < 5", "small ones pass"))
        );
        assert_eq!(rule_reason("rule 1 matched (always)", 2), None);
        assert_eq!(rule_reason("refunds need a human", 1), None);
    }
}
