//! Untrusted text is shown as data.
//!
//! Everything an agent or a submitter controls (arguments, reasoning, names, reasons) passes
//! through here before it reaches the terminal. Characters that a terminal would interpret, or
//! that change how the surrounding text reads without being visible, are replaced by a visible
//! escape such as `\u{1b}`; nothing is silently dropped. Callers learn whether anything was
//! escaped, so the approval can carry a warning badge.

use std::borrow::Cow;

/// The rule (`crate::text::needs_escape`: C0/C1 controls, DEL, every Bidi_Control, zero-width
/// and other invisible characters, U+2028/U+2029) and the escaping itself are shared with the
/// command line: one rule, one implementation.
pub use crate::text::{
    escape as sanitize, escape_char, escape_multiline as sanitize_multiline, needs_escape,
};

/// Whether any character of `s` would be escaped by [`sanitize`].
pub fn has_escapes(s: &str) -> bool {
    s.chars().any(needs_escape)
}

/// Sanitise into runs of `(text, is_escape)`, so escapes like `\u{1b}` can be drawn in a
/// warning style. Built from the raw text, so a literal `\u{1b}` typed by an agent is never
/// mistaken for (or highlighted as) a real escape.
pub fn segments(s: &str, keep_newlines: bool) -> Vec<(Cow<'_, str>, bool)> {
    let bad = |c: char| needs_escape(c) && !(keep_newlines && c == '\n');
    let mut parts: Vec<(Cow<'_, str>, bool)> = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if bad(c) {
            if start < i {
                parts.push((Cow::Borrowed(&s[start..i]), false));
            }
            let mut e = String::with_capacity(8);
            escape_char(c, &mut e);
            match parts.last_mut() {
                Some((Cow::Owned(prev), true)) => prev.push_str(&e),
                _ => parts.push((Cow::Owned(e), true)),
            }
            start = i + c.len_utf8();
        }
    }
    if start < s.len() {
        parts.push((Cow::Borrowed(&s[start..]), false));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> (String, bool) {
        let (t, e) = sanitize(x);
        (t.into_owned(), e)
    }

    #[test]
    fn carriage_return_is_visible() {
        assert_eq!(s("/home\rls"), ("/home\\u{d}ls".into(), true));
    }

    #[test]
    fn plain_text_is_borrowed_and_unflagged() {
        let (t, e) = sanitize("issue_refund — 42 € ✓ 日本");
        assert!(matches!(t, Cow::Borrowed(_)));
        assert!(!e);
    }

    #[test]
    fn ansi_and_osc_sequences_are_escaped() {
        assert_eq!(s("\x1b[31mred\x1b[0m").0, "\\u{1b}[31mred\\u{1b}[0m");
        assert_eq!(
            s("\x1b]0;title\x07x").0,
            "\\u{1b}]0;title\\u{7}x",
            "OSC with BEL terminator"
        );
        assert_eq!(
            s("\x1b]8;;http://evil\x1b\\").0,
            "\\u{1b}]8;;http://evil\\u{1b}\\"
        );
        // 8-bit CSI and ST (C1)
        assert_eq!(s("\u{9b}2J\u{9c}").0, "\\u{9b}2J\\u{9c}");
    }

    #[test]
    fn c0_del_and_c1_are_escaped() {
        for c in (0u32..0x20).chain([0x7f]).chain(0x80..0xa0) {
            let ch = char::from_u32(c).unwrap();
            let (t, e) = s(&format!("a{ch}b"));
            assert!(e, "U+{c:04X}");
            assert_eq!(t, format!("a\\u{{{c:x}}}b"));
        }
    }

    #[test]
    fn every_bidi_control_is_escaped() {
        let bidi = [
            0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068,
            0x2069,
        ];
        for c in bidi {
            let ch = char::from_u32(c).unwrap();
            let (t, e) = s(&format!("x{ch}y"));
            assert!(e, "U+{c:04X}");
            assert_eq!(t, format!("x\\u{{{c:x}}}y"));
        }
        assert_eq!(s("invoice\u{202e}fdp.exe").0, "invoice\\u{202e}fdp.exe");
    }

    #[test]
    fn zero_width_characters_are_escaped() {
        for c in [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x180E] {
            let ch = char::from_u32(c).unwrap();
            let (t, e) = s(&format!("ad{ch}min"));
            assert!(e, "U+{c:04X}");
            assert_eq!(t, format!("ad\\u{{{c:x}}}min"));
        }
        // tag characters smuggling "hi"
        assert_eq!(s("\u{e0068}\u{e0069}").0, "\\u{e0068}\\u{e0069}");
    }

    #[test]
    fn newlines_kept_only_in_multiline() {
        assert_eq!(s("a\nb").0, "a\\u{a}b");
        let (t, e) = sanitize_multiline("a\nb");
        assert_eq!((t.as_ref(), e), ("a\nb", false));
        let (t, e) = sanitize_multiline("a\r\nb\tc");
        assert_eq!((t.as_ref(), e), ("a\\u{d}\nb\\u{9}c", true));
    }

    #[test]
    fn nothing_is_dropped() {
        let input = "\u{0}\u{1b}\u{7f}\u{85}\u{202e}\u{200b}\u{feff}";
        let (t, _) = s(input);
        assert_eq!(t.matches("\\u{").count(), input.chars().count());
        assert!(!t.chars().any(needs_escape));
    }

    #[test]
    fn output_never_contains_escapable_chars() {
        // A cheap exhaustive sweep over the BMP plus the tag block.
        let mut text = String::new();
        for c in (0u32..0x10000).chain(0xE0000..0xE0080) {
            if let Some(ch) = char::from_u32(c) {
                text.push(ch);
            }
        }
        let (t, e) = s(&text);
        assert!(e);
        assert!(!t.chars().any(needs_escape));
    }

    #[test]
    fn segments_mark_escapes() {
        let segs = segments("a\x1b\x07b\u{202e}", false);
        let v: Vec<(&str, bool)> = segs.iter().map(|(t, e)| (t.as_ref(), *e)).collect();
        assert_eq!(
            v,
            vec![
                ("a", false),
                ("\\u{1b}\\u{7}", true),
                ("b", false),
                ("\\u{202e}", true)
            ]
        );
        // a literal, harmless "\u{41}" typed by the agent is plain text
        let segs = segments("x\\u{1b}", false);
        assert_eq!(segs.len(), 1);
        assert!(!segs[0].1);
    }
}
