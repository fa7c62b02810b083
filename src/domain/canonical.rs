//! RFC 8785 (JCS) canonical JSON: sorted keys (by UTF-16 code units), no whitespace,
//! ECMAScript number formatting. Used for `arguments_sha256` and the audit hash chain.

pub mod direct;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write;

pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

pub fn arguments_sha256(args: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_object(&mut out, args);
    hex::encode(Sha256::digest(out.as_bytes()))
}

pub fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => write_object(out, m),
    }
}

fn write_object(out: &mut String, m: &Map<String, Value>) {
    // Entries, not keys: looking each key up again cost more than writing its value.
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    // JCS orders by UTF-16 code units. That differs from UTF-8 byte order only for keys with
    // a character at or above U+E000 (UTF-8 lead byte 0xEE or more), which sort below the
    // surrogate pairs in UTF-16; other keys compare as bytes, far cheaper than re-encoding,
    // and a map that iterates in byte order already (serde_json's default) needs no sort.
    if entries.iter().all(|(k, _)| k.bytes().all(|b| b < 0xEE)) {
        if !entries.is_sorted_by(|a, b| a.0.as_bytes() <= b.0.as_bytes()) {
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        }
    } else {
        entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    }
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

/// Whether the canonical text of `v` parses back to `v` itself: no integer beyond 2^53 (it is
/// written as a double) and no float written without a fraction or exponent (it would read
/// back as an integer, e.g. `2.0` as `2`).
pub fn reads_back_exactly(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return i.unsigned_abs() <= (1u64 << 53);
            }
            if n.is_u64() {
                return false;
            }
            let mut text = String::new();
            write_number(&mut text, n);
            text.contains(['.', 'e'])
        }
        Value::Array(a) => a.iter().all(reads_back_exactly),
        Value::Object(m) => m.values().all(reads_back_exactly),
        _ => true,
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        // Integers beyond 2^53 are not exactly representable as IEEE doubles; JCS
        // serialises the double, so do the same to agree with other implementations.
        if i.unsigned_abs() <= (1u64 << 53) {
            let _ = write!(out, "{i}");
            return;
        }
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f == 0.0 {
        out.push('0');
        return;
    }
    let mut buf = ryu_js::Buffer::new();
    out.push_str(buf.format_finite(f));
}

pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    // Most strings need no escaping at all: one branch-free pass (which the compiler turns
    // into vector compares) finds that, and the string is copied whole.
    if !s.as_bytes().iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    }) {
        out.push_str(s);
        out.push('"');
        return;
    }
    // Copy runs that need no escaping in one go. Every character that needs it is ASCII, and
    // no byte of a multi-byte UTF-8 character is ASCII, so a byte scan finds them all.
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_strips_whitespace() {
        let v = json!({"b": 1, "a": [true, null, "x"], "c": {"z": 1, "y": 2}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":[true,null,"x"],"b":1,"c":{"y":2,"z":1}}"#
        );
    }

    #[test]
    fn rfc8785_numbers() {
        // Examples from RFC 8785 appendix B.
        let cases = [
            (json!(1e21), "1e+21"),
            (json!(1e-7), "1e-7"),
            (json!(0.000001), "0.000001"),
            (json!(333333333.3333333), "333333333.3333333"),
            (json!(-0.0), "0"),
            (json!(4.5), "4.5"),
            (json!(9007199254740992u64), "9007199254740992"),
        ];
        for (v, want) in cases {
            assert_eq!(canonical_json(&v), want, "for {v}");
        }
    }

    #[test]
    fn escapes_controls_lowercase_and_keeps_unicode() {
        let v = json!("a\u{1b}[31m\u{202e}é\n");
        assert_eq!(canonical_json(&v), "\"a\\u001b[31m\u{202e}é\\n\"");
    }

    #[test]
    fn utf16_key_order() {
        // U+1F600 (surrogate pair D83D..) sorts before U+FB01 in UTF-16 but after it in UTF-8.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2});
        assert_eq!(canonical_json(&v), "{\"\u{1f600}\":2,\"\u{fb01}\":1}");
    }

    #[test]
    fn byte_order_fast_path_agrees_with_utf16_order() {
        // Keys below U+E000 take the byte comparison: it must give the UTF-16 order.
        let keys = [
            "b", "B", "a\u{7f}", "\u{e9}", "\u{ff}x", "\u{d7ff}", "\u{800}", "", "a",
        ];
        let m: Map<String, Value> = keys.iter().map(|k| (k.to_string(), json!(0))).collect();
        let mut by_utf16: Vec<&str> = keys.to_vec();
        by_utf16.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
        let expected = format!(
            "{{{}}}",
            by_utf16
                .iter()
                .map(|k| format!("{}:0", serde_json::to_string(k).unwrap()))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(canonical_json(&Value::Object(m)), expected);
    }

    #[test]
    fn sha_is_stable_across_key_order() {
        let a: Map<String, Value> = serde_json::from_str(r#"{"x":1,"y":"z"}"#).unwrap();
        let b: Map<String, Value> = serde_json::from_str(r#"{ "y" : "z", "x" : 1 }"#).unwrap();
        assert_eq!(arguments_sha256(&a), arguments_sha256(&b));
        assert_eq!(arguments_sha256(&a).len(), 64);
    }
}
