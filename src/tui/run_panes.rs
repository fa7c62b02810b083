//! The runs view and the run transcript, as panes: keys in, intents out; drawn from the state.

use super::json::{json_lines, wrap_line, wrap_line_indent};
use super::panes::{
    LABEL_W, col, field, fit, fmt_age, fmt_age_exact, pane_block, secs_between, untrusted,
};
use super::runs::{RunEntry, TranscriptView, run_has_escapes};
use super::state::{ConsoleState, short_id};
use super::theme::{Role, Theme};
use super::views::RunsView;
use crate::domain::Message;
use crate::domain::{CallState, Run, RunCall, RunStatus};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;
use serde_json::Value;
use std::collections::HashMap;
use unicode_width::UnicodeWidthStr;

/// Shown where an approval's run could be re-run or reported failed.
pub const OUTCOME_UNKNOWN: &str = "OUTCOME UNKNOWN — approve re-runs, deny reports failure";

pub fn run_status_role(s: RunStatus) -> Role {
    match s {
        RunStatus::Running => Role::Info,
        RunStatus::PendingApproval => Role::Pending,
        RunStatus::Completed => Role::Approved,
        RunStatus::Failed => Role::Denied,
        RunStatus::Cancelled => Role::Expired,
    }
}

fn call_state_role(s: &CallState) -> Role {
    match s {
        CallState::Waiting { .. } => Role::Pending,
        CallState::Approved { .. } => Role::Approved,
        CallState::Denied { .. } | CallState::Rejected { .. } => Role::Denied,
        CallState::Executing { .. } => Role::Sending,
        CallState::OutcomeUnknown { .. } => Role::Danger,
        CallState::Done { output } if output.is_ok() => Role::Approved,
        CallState::Done { .. } => Role::Denied,
    }
}

// ---------- runs list ----------

/// The runs view (`r`): one line per run.
pub fn render_runs(st: &ConsoleState, v: &RunsView, theme: &Theme, area: Rect, buf: &mut Buffer) {
    {
        let ids = st.runs();
        let title = format!(" Runs ({}) · {} active ", ids.len(), st.active_runs());
        let block = pane_block(Line::from(title), true, theme);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 2 || inner.width < 30 {
            return;
        }
        let w = inner.width as usize;
        // columns: badge(1) status(17) agent age(6) turns(5) outcome [input]
        let rest = w.saturating_sub(1 + 17 + 6 + 5);
        let agent_w = 21.min(rest / 2);
        let rest = rest - agent_w;
        let (outcome_w, input_w) = if rest >= 60 {
            (rest / 2, rest - rest / 2)
        } else {
            (rest, 0)
        };
        let mut header = format!(
            " {}{}{}{}{}",
            col("STATUS", 17),
            col("AGENT", agent_w),
            fit("AGE", 6),
            fit("TURN", 5),
            col("WAITING ON / RESULT", outcome_w),
        );
        if input_w > 0 {
            header.push_str(&fit("INPUT", input_w));
        }
        buf.set_stringn(inner.x, inner.y, header, w, theme.style(Role::Header));
        let rows = inner.height as usize - 1;
        if ids.is_empty() {
            buf.set_stringn(
                inner.x + 1,
                inner.y + 1,
                "No runs yet.",
                w.saturating_sub(1),
                theme.style(Role::Muted),
            );
            return;
        }
        let sel = st.selected_run_index();
        let off = super::panes::scroll_offset(v.offset, sel, ids.len(), rows);
        let sel_style = theme.style(Role::Selection);
        for (i, id) in ids.iter().enumerate().skip(off).take(rows) {
            let Some(e) = st.run(id) else { continue };
            let y = inner.y + 1 + (i - off) as u16;
            let selected = Some(i) == sel;
            let base = |r: Role| {
                if selected { sel_style } else { theme.style(r) }
            };
            let mut spans = run_row(e, st, &base, agent_w, outcome_w);
            if input_w > 0 {
                spans.push(Span::styled(fit(&e.input, input_w), base(Role::Muted)));
            }
            buf.set_line(inner.x, y, &Line::from(spans), inner.width);
        }
        if ids.len() > rows {
            let pos = format!(" {}/{} ", sel.map_or(0, |s| s + 1), ids.len());
            let x = area.x + area.width.saturating_sub(pos.width() as u16 + 2);
            buf.set_stringn(
                x,
                area.y + area.height - 1,
                pos,
                area.width as usize,
                theme.style(Role::Muted),
            );
        }
    }
}

fn run_row(
    e: &RunEntry,
    st: &ConsoleState,
    base: &dyn Fn(Role) -> Style,
    agent_w: usize,
    outcome_w: usize,
) -> Vec<Span<'static>> {
    let s = &e.summary;
    let badge = if e.escaped {
        Span::styled("⚠", base(Role::Warning))
    } else {
        Span::styled(" ", base(Role::Text))
    };
    let (outcome, role) = match s.status {
        RunStatus::PendingApproval => (e.outcome.clone(), Role::Pending),
        RunStatus::Running => (e.outcome.clone(), Role::Muted),
        RunStatus::Completed => (e.outcome.clone(), Role::Text),
        RunStatus::Failed => (e.outcome.clone(), Role::Danger),
        RunStatus::Cancelled if e.outcome.is_empty() => ("cancelled".into(), Role::Muted),
        RunStatus::Cancelled => (e.outcome.clone(), Role::Muted),
    };
    vec![
        badge,
        Span::styled(col(s.status.as_str(), 17), base(run_status_role(s.status))),
        Span::styled(col(&e.agent, agent_w), base(Role::Text)),
        Span::styled(
            fit(&fmt_age(secs_between(s.created_at, st.now)), 6),
            base(Role::Muted),
        ),
        Span::styled(fit(&s.turns.to_string(), 5), base(Role::Muted)),
        Span::styled(col(&outcome, outcome_w), base(role)),
    ]
}

// ---------- transcript ----------

/// The conversation of one run (`t`, or `Enter` in the runs view).
pub fn render_transcript(
    st: &ConsoleState,
    t: &TranscriptView,
    theme: &Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    {
        let mut title = vec![Span::raw(format!(
            " Transcript · run {} ",
            short_id(&t.run_id)
        ))];
        if let Some(run) = &t.run {
            title.push(Span::raw("· "));
            title.extend(untrusted(&run.agent, Style::default(), theme, false));
            title.push(Span::raw(" "));
            if run_has_escapes(run) {
                title.push(Span::styled(" ⚠ text escaped ", theme.style(Role::Warning)));
                title.push(Span::raw(" "));
            }
        }
        if t.loading {
            title.push(Span::styled(" loading… ", theme.style(Role::Sending)));
        }
        let block = pane_block(Line::from(title), true, theme);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 || inner.width < 10 {
            return;
        }
        let lines = transcript_lines(st, theme, inner.width as usize);
        super::panes::draw_scrolled(buf, area, inner, &lines, t.scroll, theme.style(Role::Muted));
    }
}

/// How a raw line is wrapped: prose by words, JSON by characters, fields under their label.
#[derive(Clone, Copy, PartialEq)]
enum Wrap {
    Words,
    /// Prose whose continuation lines keep its indent.
    Indented(usize),
    Json,
    Field,
}

struct Out {
    lines: Vec<(Line<'static>, Wrap)>,
}

impl Out {
    fn push(&mut self, l: Line<'static>) {
        self.lines.push((l, Wrap::Words));
    }

    fn field(&mut self, l: Line<'static>) {
        self.lines.push((l, Wrap::Field));
    }

    fn heading(&mut self, text: String, theme: &Theme) {
        self.push(Line::from(""));
        self.push(Line::from(Span::styled(text, theme.style(Role::Header))));
    }

    /// Untrusted text, its line breaks kept, indented by `indent` spaces.
    fn text(&mut self, s: &str, style: Style, theme: &Theme, indent: usize) {
        let pad = " ".repeat(indent);
        let mut cur: Vec<Span<'static>> = vec![Span::raw(pad.clone())];
        for sp in untrusted(s, style, theme, true) {
            let style = sp.style;
            let content = sp.content.into_owned();
            let mut parts = content.split('\n').peekable();
            while let Some(p) = parts.next() {
                if !p.is_empty() {
                    cur.push(Span::styled(p.to_string(), style));
                }
                if parts.peek().is_some() {
                    let done = std::mem::replace(&mut cur, vec![Span::raw(pad.clone())]);
                    self.lines.push((Line::from(done), Wrap::Indented(indent)));
                }
            }
        }
        self.lines.push((Line::from(cur), Wrap::Indented(indent)));
    }

    fn json(&mut self, v: &Value, theme: &Theme, indent: usize) {
        for mut l in json_lines(v, theme) {
            l.spans.insert(0, Span::raw(" ".repeat(indent)));
            self.lines.push((l, Wrap::Json));
        }
    }
}

/// The open transcript, wrapped to `width`.
pub fn transcript_lines(st: &ConsoleState, theme: &Theme, width: usize) -> Vec<Line<'static>> {
    let Some(t) = st.transcript() else {
        return Vec::new();
    };
    let mut out = Out { lines: Vec::new() };
    let muted = theme.style(Role::Muted);
    if let Some(e) = &t.error {
        let what = if t.run.is_some() {
            "could not refresh"
        } else {
            "could not load the run"
        };
        let mut l = vec![Span::styled(
            format!("✗ {what}: "),
            theme.style(Role::Danger),
        )];
        l.extend(untrusted(e, theme.style(Role::Danger), theme, false));
        out.push(Line::from(l));
    }
    match &t.run {
        Some(run) => run_lines(run, st, theme, &mut out),
        None if t.loading => out.push(Line::from(Span::styled("Loading the run…", muted))),
        None => {}
    }
    let mut lines = Vec::with_capacity(out.lines.len());
    for (l, how) in &out.lines {
        match how {
            Wrap::Words => lines.extend(wrap_line(l, width, true)),
            Wrap::Indented(n) => lines.extend(wrap_line_indent(l, width, true, *n)),
            Wrap::Json => lines.extend(wrap_line(l, width, false)),
            Wrap::Field => lines.extend(wrap_line_indent(l, width, true, LABEL_W)),
        }
    }
    lines
}

fn run_lines(run: &Run, st: &ConsoleState, theme: &Theme, out: &mut Out) {
    let muted = theme.style(Role::Muted);
    let text = theme.style(Role::Text);
    let sep = || Span::styled(" · ", muted);
    out.field(field(
        "Run",
        vec![Span::styled(run.id.to_string(), muted)],
        theme,
    ));
    let mut agent = untrusted(&run.agent, text, theme, false);
    agent.push(sep());
    agent.push(Span::styled("started by ", muted));
    agent.extend(untrusted(&run.started_by, text, theme, false));
    out.field(field("Agent", agent, theme));
    let mut status = vec![
        Span::styled(
            run.status.as_str(),
            theme.style(run_status_role(run.status)),
        ),
        sep(),
        Span::styled(format!("turn {}/{}", run.turns, run.max_turns), muted),
        sep(),
        Span::styled(
            format!(
                "{} old",
                fmt_age_exact(secs_between(run.created_at, st.now))
            ),
            muted,
        ),
    ];
    if let Some(w) = run.waiting_on() {
        status.push(sep());
        status.push(Span::styled("waiting on ", muted));
        status.extend(untrusted(&w, theme.style(Role::Pending), theme, false));
    }
    out.field(field("Status", status, theme));

    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut turn = 0;
    for m in &run.messages {
        match m {
            Message::System { content } => {
                out.heading("── Instructions".into(), theme);
                out.text(content, muted, theme, 2);
            }
            Message::User { content } => {
                out.heading("── User".into(), theme);
                out.text(content, text, theme, 2);
            }
            Message::Assistant {
                content,
                tool_calls,
            } => {
                turn += 1;
                out.heading(format!("── Assistant · turn {turn}"), theme);
                match content.as_deref().map(str::trim) {
                    Some(c) if !c.is_empty() => out.text(c, text, theme, 2),
                    _ if tool_calls.is_empty() => {
                        out.push(Line::from(Span::styled("  (no text)", muted)))
                    }
                    _ => {}
                }
                for c in tool_calls {
                    names.insert(c.id.as_str(), c.name.as_str());
                    let mut head = vec![Span::styled("  → ", muted)];
                    head.extend(untrusted(&c.name, theme.style(Role::Title), theme, false));
                    head.push(Span::styled("  call ", muted));
                    head.extend(untrusted(&c.id, muted, theme, false));
                    out.push(Line::from(head));
                    match serde_json::from_str::<Value>(&c.arguments) {
                        Ok(v) => out.json(&v, theme, 4),
                        Err(_) => {
                            out.push(Line::from(Span::styled(
                                "    arguments (not valid JSON):",
                                theme.style(Role::Warning),
                            )));
                            out.text(&c.arguments, text, theme, 4);
                        }
                    }
                }
            }
            Message::Tool {
                tool_call_id,
                content,
            } => {
                let mut head = vec![Span::styled("── Result of ", theme.style(Role::Header))];
                match names.get(tool_call_id.as_str()) {
                    Some(n) => head.extend(untrusted(n, theme.style(Role::Header), theme, false)),
                    None => head.push(Span::styled("a tool", theme.style(Role::Header))),
                }
                head.push(Span::styled("  call ", muted));
                head.extend(untrusted(tool_call_id, muted, theme, false));
                out.push(Line::from(""));
                out.push(Line::from(head));
                out.text(content, text, theme, 2);
            }
        }
    }
    if !run.calls.is_empty() {
        out.heading(
            format!(
                "── This turn: {} call{}",
                run.calls.len(),
                if run.calls.len() == 1 { "" } else { "s" }
            ),
            theme,
        );
        for c in &run.calls {
            call_lines(c, st, theme, out);
        }
    }
    if let Some(o) = &run.output {
        out.heading("── Final output".into(), theme);
        out.text(o, text, theme, 2);
    }
    if let Some(e) = &run.error {
        out.heading("── Error".into(), theme);
        out.text(e, theme.style(Role::Danger), theme, 2);
    }
}

fn call_lines(c: &RunCall, st: &ConsoleState, theme: &Theme, out: &mut Out) {
    let muted = theme.style(Role::Muted);
    let text = theme.style(Role::Text);
    let role = call_state_role(&c.state);
    let mut head = vec![
        Span::styled("  ", muted),
        Span::styled(format!("[{}]", c.state.name()), theme.style(role)),
        Span::raw(" "),
    ];
    head.extend(untrusted(&c.tool, theme.style(Role::Title), theme, false));
    if let Some(s) = &c.server {
        head.push(Span::styled(" @ ", muted));
        head.extend(untrusted(s, text, theme, false));
    }
    head.push(Span::styled("  call ", muted));
    head.extend(untrusted(&c.call_id, muted, theme, false));
    out.push(Line::from(head));
    let edited = |args: &serde_json::Map<String, Value>| c.arguments.as_ref() != Some(args);
    match &c.state {
        CallState::Waiting { approval_id } => {
            let here = st.selected_id() == Some(*approval_id);
            out.push(Line::from(vec![Span::styled(
                format!(
                    "    waiting for a reviewer: approval {}{}",
                    short_id(approval_id),
                    if here {
                        " (selected on the dashboard)"
                    } else {
                        ""
                    }
                ),
                theme.style(Role::Pending),
            )]));
        }
        CallState::Approved { by, arguments, .. } => {
            let mut l = vec![Span::styled("    approved by ", muted)];
            l.extend(untrusted(by, text, theme, false));
            out.push(Line::from(l));
            if edited(arguments) {
                out.push(Line::from(Span::styled(
                    "    with edited arguments:",
                    theme.style(Role::Warning),
                )));
                out.json(&Value::Object(arguments.clone()), theme, 4);
            }
        }
        CallState::Denied { by, message, .. } => {
            let mut l = vec![Span::styled("    denied by ", muted)];
            l.extend(untrusted(by, text, theme, false));
            l.push(Span::styled(":", muted));
            out.push(Line::from(l));
            out.text(message, theme.style(Role::Denied), theme, 6);
        }
        CallState::Rejected { message } => {
            out.push(Line::from(Span::styled("    rejected:", muted)));
            out.text(message, theme.style(Role::Denied), theme, 6);
        }
        CallState::Executing {
            started_at,
            arguments,
        } => {
            out.push(Line::from(Span::styled(
                format!(
                    "    executing for {}",
                    fmt_age_exact(secs_between(*started_at, st.now))
                ),
                theme.style(Role::Sending),
            )));
            if edited(arguments) {
                out.push(Line::from(Span::styled(
                    "    with edited arguments:",
                    theme.style(Role::Warning),
                )));
                out.json(&Value::Object(arguments.clone()), theme, 4);
            }
        }
        CallState::OutcomeUnknown {
            approval_id,
            arguments,
        } => {
            out.push(Line::from(Span::styled(
                format!(
                    "    ‼ {OUTCOME_UNKNOWN} (approval {})",
                    short_id(approval_id)
                ),
                theme.style(Role::Danger),
            )));
            if edited(arguments) {
                out.push(Line::from(Span::styled(
                    "    with edited arguments:",
                    theme.style(Role::Warning),
                )));
                out.json(&Value::Object(arguments.clone()), theme, 4);
            }
        }
        CallState::Done { output } => {
            let (label, role) = if output.is_ok() {
                ("    done:", Role::Approved)
            } else {
                ("    done, with an error:", Role::Denied)
            };
            out.push(Line::from(Span::styled(label, theme.style(role))));
            out.text(output.text(), text, theme, 6);
        }
    }
}
