//! One pass over a JSON text already known to be valid, refusing what would not stay exact:
//! an integer outside ±(2^53−1) (JavaScript reviewers' tools, RFC 8785 hashing and many tools
//! read numbers as doubles, so `9007199254740993` would be shown, hashed or run as `…992`), and
//! a key given twice in one object (serde keeps the last, a reviewer's eye or another parser
//! may take the first). Each refusal names the JSON path, e.g. `arguments.items[2].id`.

use std::borrow::Cow;
use std::collections::HashSet;

/// 2^53 − 1: the largest integer every JSON reader holds exactly.
const MAX_SAFE: u64 = 9_007_199_254_740_991;
/// Objects up to this many keys are checked for duplicates by comparing with each earlier key;
/// past it a set keeps wide objects linear.
const LINEAR_KEYS: usize = 16;

#[derive(Debug, PartialEq)]
pub struct Inexact {
    pub code: &'static str,
    pub message: String,
}

pub fn check(text: &str) -> Result<(), Inexact> {
    let mut scan = Scan {
        b: text.as_bytes(),
        text,
        i: 0,
        path: Vec::new(),
    };
    scan.value()
}

enum Seg<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

struct Scan<'a> {
    b: &'a [u8],
    text: &'a str,
    i: usize,
    path: Vec<Seg<'a>>,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    fn value(&mut self) -> Result<(), Inexact> {
        self.ws();
        match self.peek() {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => {
                self.string();
                Ok(())
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => {
                // true, false, null: the text is valid, so letters run to the literal's end.
                while self.peek().is_ascii_alphabetic() {
                    self.i += 1;
                }
                Ok(())
            }
        }
    }

    fn object(&mut self) -> Result<(), Inexact> {
        self.i += 1;
        let mut keys: Vec<Cow<'a, str>> = Vec::new();
        let mut wide: Option<HashSet<Cow<'a, str>>> = None;
        loop {
            self.ws();
            match self.peek() {
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                b',' => {
                    self.i += 1;
                    continue;
                }
                _ => {}
            }
            let key = self.key();
            let seen = match &mut wide {
                Some(set) => !set.insert(key.clone()),
                None => {
                    let seen = keys.contains(&key);
                    keys.push(key.clone());
                    if keys.len() > LINEAR_KEYS {
                        wide = Some(std::mem::take(&mut keys).into_iter().collect());
                    }
                    seen
                }
            };
            self.path.push(Seg::Key(key));
            if seen {
                return Err(Inexact {
                    code: "duplicate_key",
                    message: format!(
                        "{}: this key appears more than once in its object; send it once",
                        self.path_text()
                    ),
                });
            }
            self.ws();
            self.i += 1; // ':'
            self.value()?;
            self.path.pop();
        }
    }

    fn array(&mut self) -> Result<(), Inexact> {
        self.i += 1;
        let mut index = 0;
        loop {
            self.ws();
            match self.peek() {
                b']' => {
                    self.i += 1;
                    return Ok(());
                }
                b',' => {
                    self.i += 1;
                    continue;
                }
                _ => {}
            }
            self.path.push(Seg::Index(index));
            self.value()?;
            self.path.pop();
            index += 1;
        }
    }

    /// Skips a string and returns its raw contents (between the quotes).
    fn string(&mut self) -> &'a str {
        self.i += 1;
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => break,
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
        let end = self.i.min(self.b.len());
        self.i = end + 1;
        // Quotes and backslashes are ASCII, so both ends are on char boundaries.
        self.text.get(start..end).unwrap_or("")
    }

    /// An object key, decoded: `"a"` and `"\u0061"` are the same key.
    fn key(&mut self) -> Cow<'a, str> {
        let start = self.i;
        let raw = self.string();
        if !raw.contains('\\') {
            return Cow::Borrowed(raw);
        }
        let quoted = self.text.get(start..self.i).unwrap_or("\"\"");
        match serde_json::from_str::<String>(quoted) {
            Ok(s) => Cow::Owned(s),
            Err(_) => Cow::Borrowed(raw),
        }
    }

    fn number(&mut self) -> Result<(), Inexact> {
        let start = self.i;
        let mut integer = true;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => integer = false,
                _ => break,
            }
            self.i += 1;
        }
        if !integer {
            return Ok(());
        }
        let literal = self.text.get(start..self.i).unwrap_or("");
        let digits = literal.trim_start_matches('-');
        // JSON forbids leading zeros, so more than 16 digits is always past 2^53 − 1.
        let safe = digits.len() < 16
            || (digits.len() == 16 && digits.parse::<u64>().is_ok_and(|n| n <= MAX_SAFE));
        if safe {
            return Ok(());
        }
        let shown = if literal.len() > 40 {
            format!("{}… ({} digits)", &literal[..24], digits.len())
        } else {
            literal.to_string()
        };
        Err(Inexact {
            code: "integer_out_of_range",
            message: format!(
                "{}: the integer {shown} is outside ±(2^53−1) = ±9007199254740991 and would not \
                 stay exact (it would be shown, hashed or run as a nearby number); send it as a \
                 string",
                self.path_text()
            ),
        })
    }

    fn path_text(&self) -> String {
        if self.path.is_empty() {
            return "the body".to_string();
        }
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
                Seg::Key(k) => {
                    let plain = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if plain {
                        if !out.is_empty() {
                            out.push('.');
                        }
                        out.push_str(k);
                    } else {
                        // Quoted and escaped, so an odd key cannot forge a path or a control
                        // sequence in the message.
                        out.push('[');
                        out.push_str(&serde_json::to_string(k.as_ref()).unwrap_or_default());
                        out.push(']');
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Inexact {
        check(text).expect_err(text)
    }

    #[test]
    fn safe_integers_and_floats_pass() {
        for ok in [
            r#"{"a": 9007199254740991, "b": -9007199254740991, "c": 0, "d": -0}"#,
            r#"{"a": 1e300, "b": 9007199254740993.5, "c": [1, 2.5, -3e-7]}"#,
            r#"{"a": {"x": 1}, "b": {"x": 1}, "c": [{"x": 1}, {"x": 2}]}"#,
            r#"{"a": "9007199254740993", "s": "\"a\": 1, \"a\": 2"}"#,
            r#"[true, false, null, "x", {}]"#,
            "123",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn big_integers_are_refused_with_their_path() {
        let e = refused(r#"{"arguments": {"to_account": 9007199254740993}}"#);
        assert_eq!(e.code, "integer_out_of_range");
        assert!(
            e.message
                .starts_with("arguments.to_account: the integer 9007199254740993")
        );
        let e = refused(
            r#"{"arguments": {"items": [{"id": 1}, {"id": 2}, {"id": -9007199254740992}]}}"#,
        );
        assert!(
            e.message.starts_with("arguments.items[2].id: "),
            "{}",
            e.message
        );
        let e = refused(&format!(r#"{{"a b": [{}]}}"#, "9".repeat(400)));
        assert!(
            e.message.starts_with(r#"["a b"][0]: the integer 999"#),
            "{}",
            e.message
        );
        assert!(e.message.contains("(400 digits)"), "{}", e.message);
        assert!(
            refused("18446744073709551616")
                .message
                .starts_with("the body:")
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_and_spelling() {
        let e = refused(r#"{"arguments": {"amount": 900, "amount": 10}}"#);
        assert_eq!(e.code, "duplicate_key");
        assert!(e.message.starts_with("arguments.amount: "), "{}", e.message);
        let e = refused(r#"{"x": [0, {"y": {"k": 1, "\u006b": 2}}]}"#);
        assert!(e.message.starts_with("x[1].y.k: "), "{}", e.message);
        let wide: Vec<String> = (0..40).map(|i| format!("\"k{i}\": {i}")).collect();
        let e = refused(&format!("{{{}, \"k7\": 0}}", wide.join(", ")));
        assert!(e.message.starts_with("k7: "), "{}", e.message);
        assert_eq!(check(&format!("{{{}}}", wide.join(", "))), Ok(()));
    }
}
