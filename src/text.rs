//! Untrusted text shown as data (DESIGN §6): every character a terminal would act on, or
//! that changes how the text around it reads, is written as a visible `\u{..}` escape.

/// Whether `c` must be escaped before it reaches a terminal.
pub fn needs_escape(c: char) -> bool {
    let u = c as u32;
    u < 0x20                             // C0 controls, including ESC, CR, LF, TAB
        || u == 0x7f                     // DEL
        || (0x80..=0x9f).contains(&u)    // C1 controls (8-bit CSI, OSC …)
        || is_bidi_control(c)
        || is_invisible(c)
        || matches!(c, '\u{2028}' | '\u{2029}') // line/paragraph separators: some terminals break lines
}

/// Every Unicode Bidi_Control character.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c as u32, 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)
}

/// Zero-width and other invisible format characters that hide or join text.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD | 0x034F | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F | 0x200B..=0x200D
            | 0x2060..=0x2064 | 0x206A..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0
            | 0xFFF9..=0xFFFB | 0x1D173..=0x1D17A | 0xE0000..=0xE007F
    )
}

use std::borrow::Cow;

/// The visible form of an escaped character: `\u{1b}`.
pub fn escape_char(c: char, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(out, "\\u{{{:x}}}", c as u32);
}

/// Single-line text with every such character (`\n` included) escaped, and whether any
/// was. Borrows when nothing needs escaping.
pub fn escape(s: &str) -> (Cow<'_, str>, bool) {
    escape_with(s, false)
}

/// Like [`escape`], but `\n` stays a real line break (reasoning, where wrapping is meant).
pub fn escape_multiline(s: &str) -> (Cow<'_, str>, bool) {
    escape_with(s, true)
}

fn escape_with(s: &str, keep_newlines: bool) -> (Cow<'_, str>, bool) {
    let bad = |c: char| needs_escape(c) && !(keep_newlines && c == '\n');
    let Some(first) = s.find(bad) else {
        return (Cow::Borrowed(s), false);
    };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if bad(c) {
            escape_char(c, &mut out);
        } else {
            out.push(c);
        }
    }
    (Cow::Owned(out), true)
}

/// `text` cut to its first `max` characters, with `…` when anything was cut (messages that
/// quote outside text must stay readable).
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// How a JSON value's type reads in a message: "a string", "an object", …
pub fn json_type(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An error and its sources on one line ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Pretty JSON safe for a terminal: JSON already escapes C0 controls inside strings; the
/// rest (DEL, C1, bidi, invisible) become `\uXXXX`, which keeps the JSON valid.
pub fn json_for_terminal(v: &serde_json::Value) -> String {
    let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
    let mut out = String::with_capacity(pretty.len());
    for c in pretty.chars() {
        if needs_escape(c) && c != '\n' {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carriage_return_is_visible() {
        let (s, hit) = escape("/home\rls");
        assert_eq!((s.as_ref(), hit), ("/home\\u{d}ls", true));
    }

    #[test]
    fn escapes_ansi_bidi_and_zero_width() {
        let (s, hit) = escape("a\u{1b}[31mred\u{202e}txt\u{200b}\u{9b}\u{7f}");
        assert!(hit);
        assert_eq!(
            s.as_ref(),
            "a\\u{1b}[31mred\\u{202e}txt\\u{200b}\\u{9b}\\u{7f}"
        );
    }

    #[test]
    fn plain_text_untouched() {
        let (s, hit) = escape("refund €49.99 — ok");
        assert!(matches!(s, Cow::Borrowed("refund €49.99 — ok")) && !hit);
    }

    #[test]
    fn terminal_json_stays_valid_and_escaped() {
        let v = serde_json::json!({"path": "x\u{202e}y\u{1b}", "e": "\u{1F600}"});
        let s = json_for_terminal(&v);
        assert!(!s.contains('\u{202e}') && !s.contains('\u{1b}'));
        assert!(s.contains("\\u202e") && s.contains("\\u001b"));
        assert!(s.contains('\u{1F600}'));
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }
}
