//! Pretty-printed, highlighted JSON for the detail pane, and wrapping of styled lines.

use super::sanitize::needs_escape;
use super::theme::{Role, Theme};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use serde_json::Value;
use unicode_width::UnicodeWidthChar;

/// Pretty JSON (2-space indent) as styled lines. Strings and keys are shown JSON-escaped
/// (`\"`, `\\`, `\n`, `\t`); every other character that needs escaping is shown as `\u{..}` in
/// the `escape` style. Nothing is dropped.
pub fn json_lines(v: &Value, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    write_value(v, 0, Vec::new(), false, theme, &mut out);
    out
}

fn punct(s: &str, theme: &Theme) -> Span<'static> {
    Span::styled(s.to_string(), theme.style(Role::JsonPunct))
}

fn write_value(
    v: &Value,
    indent: usize,
    mut prefix: Vec<Span<'static>>,
    comma: bool,
    theme: &Theme,
    out: &mut Vec<Line<'static>>,
) {
    let pad = " ".repeat(indent);
    let end = |mut spans: Vec<Span<'static>>| {
        if comma {
            spans.push(punct(",", theme));
        }
        Line::from(spans)
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            prefix.push(punct("{", theme));
            out.push(Line::from(prefix));
            let n = m.len();
            for (i, (k, v)) in m.iter().enumerate() {
                let mut p = vec![Span::raw(format!("{pad}  "))];
                p.extend(string_spans(k, theme.style(Role::JsonKey), theme));
                p.push(punct(": ", theme));
                write_value(v, indent + 2, p, i + 1 < n, theme, out);
            }
            out.push(end(vec![Span::raw(pad.clone()), punct("}", theme)]));
        }
        Value::Array(a) if !a.is_empty() => {
            prefix.push(punct("[", theme));
            out.push(Line::from(prefix));
            let n = a.len();
            for (i, v) in a.iter().enumerate() {
                let p = vec![Span::raw(format!("{pad}  "))];
                write_value(v, indent + 2, p, i + 1 < n, theme, out);
            }
            out.push(end(vec![Span::raw(pad.clone()), punct("]", theme)]));
        }
        Value::Object(_) => {
            prefix.push(punct("{}", theme));
            out.push(end(prefix));
        }
        Value::Array(_) => {
            prefix.push(punct("[]", theme));
            out.push(end(prefix));
        }
        Value::String(s) => {
            prefix.extend(string_spans(s, theme.style(Role::JsonString), theme));
            out.push(end(prefix));
        }
        Value::Number(n) => {
            prefix.push(Span::styled(n.to_string(), theme.style(Role::JsonNumber)));
            out.push(end(prefix));
        }
        Value::Bool(b) => {
            prefix.push(Span::styled(b.to_string(), theme.style(Role::JsonLiteral)));
            out.push(end(prefix));
        }
        Value::Null => {
            prefix.push(Span::styled("null", theme.style(Role::JsonLiteral)));
            out.push(end(prefix));
        }
    }
}

/// A JSON string literal as spans, with escapes highlighted.
pub fn string_spans(s: &str, style: Style, theme: &Theme) -> Vec<Span<'static>> {
    let esc = theme.style(Role::Escape);
    let mut spans = Vec::new();
    let mut plain = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => plain.push_str("\\\""),
            '\\' => plain.push_str("\\\\"),
            '\n' => plain.push_str("\\n"),
            '\t' => plain.push_str("\\t"),
            c if needs_escape(c) => {
                if !plain.is_empty() {
                    spans.push(Span::styled(std::mem::take(&mut plain), style));
                }
                let mut e = String::new();
                super::sanitize::escape_char(c, &mut e);
                spans.push(Span::styled(e, esc));
            }
            c => plain.push(c),
        }
    }
    plain.push('"');
    spans.push(Span::styled(plain, style));
    spans
}

/// Wrap a styled line to `width` columns. With `words`, breaks at spaces where it can;
/// otherwise (JSON) breaks anywhere. Nothing is dropped except the spaces at word breaks.
pub fn wrap_line(line: &Line<'_>, width: usize, words: bool) -> Vec<Line<'static>> {
    wrap_line_indent(line, width, words, 0)
}

/// Like [`wrap_line`], with continuation lines indented by `indent` columns.
pub fn wrap_line_indent(
    line: &Line<'_>,
    width: usize,
    words: bool,
    indent: usize,
) -> Vec<Line<'static>> {
    let width = width.max(1);
    let indent = if indent * 2 > width { 0 } else { indent };
    let chars: Vec<(char, Style)> = line
        .spans
        .iter()
        .flat_map(|sp| {
            let st = line.style.patch(sp.style);
            sp.content.chars().map(move |c| (c, st))
        })
        .collect();
    let w = |c: char| c.width().unwrap_or(0);
    let total: usize = chars.iter().map(|(c, _)| w(*c)).sum();
    if total <= width {
        return vec![build(&chars)];
    }
    let mut out: Vec<Line<'static>> = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let width = if out.is_empty() {
            width
        } else {
            width - indent
        };
        // take as many as fit
        let mut cols = 0;
        let mut end = start;
        while end < chars.len() && cols + w(chars[end].0) <= width {
            cols += w(chars[end].0);
            end += 1;
        }
        if end == start {
            end = start + 1; // a char wider than the line: take it anyway
        }
        if end < chars.len() && words && chars[end].0 == ' ' {
            // the chunk ends exactly at a word boundary
            out.push(build(&chars[start..end]));
            start = end + 1;
            continue;
        }
        if end < chars.len() && words {
            // break after the last space in the chunk, if any
            if let Some(sp) = chars[start..end].iter().rposition(|(c, _)| *c == ' ')
                && sp > 0
            {
                let brk = start + sp;
                out.push(build(&chars[start..brk]));
                // (indent is added after the loop)
                start = brk + 1;
                continue;
            }
        }
        out.push(build(&chars[start..end]));
        start = end;
    }
    if indent > 0 {
        for l in out.iter_mut().skip(1) {
            l.spans.insert(0, Span::raw(" ".repeat(indent)));
        }
    }
    out
}

fn build(chars: &[(char, Style)]) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut cur = String::new();
    let mut cur_style: Option<Style> = None;
    for (c, st) in chars {
        if cur_style != Some(*st) {
            if let Some(s) = cur_style {
                spans.push(Span::styled(std::mem::take(&mut cur), s));
            }
            cur_style = Some(*st);
        }
        cur.push(*c);
    }
    if let Some(s) = cur_style {
        spans.push(Span::styled(cur, s));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn pretty_prints() {
        let t = Theme::mono();
        let v = json!({"a": 1, "b": [true, null, "x\"y"], "c": {}, "d": []});
        assert_eq!(
            text(&json_lines(&v, &t)),
            vec![
                "{",
                "  \"a\": 1,",
                "  \"b\": [",
                "    true,",
                "    null,",
                "    \"x\\\"y\"",
                "  ],",
                "  \"c\": {},",
                "  \"d\": []",
                "}"
            ]
        );
    }

    #[test]
    fn strings_are_escaped_visibly() {
        let t = Theme::mono();
        let v = json!({"cmd\u{202e}": "/home\rls\n\u{1b}[2J"});
        assert_eq!(
            text(&json_lines(&v, &t))[1],
            "  \"cmd\\u{202e}\": \"/home\\u{d}ls\\n\\u{1b}[2J\""
        );
    }

    #[test]
    fn wraps() {
        let l = Line::from("hello wide world");
        assert_eq!(text(&wrap_line(&l, 11, true)), vec!["hello wide", "world"]);
        assert_eq!(
            text(&wrap_line(&l, 6, false)),
            vec!["hello ", "wide w", "orld"]
        );
        assert_eq!(
            text(&wrap_line(&Line::from("日本語"), 4, false)),
            vec!["日本", "語"]
        );
        assert_eq!(
            text(&wrap_line_indent(
                &Line::from("Label  one two three four"),
                14,
                true,
                7
            )),
            vec!["Label  one two", "       three", "       four"]
        );
    }
}
