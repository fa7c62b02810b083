//! The keymap: every action's keys, defined once, used both to match input and to draw hints.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::BTreeMap;
use std::fmt;

macro_rules! actions {
    ($($variant:ident => $name:literal, $desc:literal, [$($key:literal),*];)*) => {
        /// Something the reviewer can ask for with a key.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action { $($variant,)* }
        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];
            /// The name used in `[ui.keys]`.
            pub fn name(self) -> &'static str { match self { $(Action::$variant => $name,)* } }
            pub fn describe(self) -> &'static str { match self { $(Action::$variant => $desc,)* } }
            pub fn from_name(s: &str) -> Option<Action> {
                match s { $($name => Some(Action::$variant),)* _ => None }
            }
            fn default_keys(self) -> &'static [&'static str] {
                match self { $(Action::$variant => &[$($key),*],)* }
            }
        }
    };
}

actions! {
    Down => "down", "move the selection down", ["j", "down"];
    Up => "up", "move the selection up", ["k", "up"];
    PageDown => "page_down", "move a page down", ["pagedown", "ctrl-d"];
    PageUp => "page_up", "move a page up", ["pageup", "ctrl-u"];
    Top => "top", "go to the first item", ["home", "g"];
    Bottom => "bottom", "go to the last item", ["end", "G"];
    NextPane => "next_pane", "next pane", ["tab"];
    PrevPane => "prev_pane", "previous pane", ["backtab"];
    Approve => "approve", "approve the selected approval", ["a"];
    ApproveRun => "approve_run", "approve, and allow this tool for the rest of the run", ["A"];
    Deny => "deny", "deny, with a reason", ["d"];
    Edit => "edit", "edit the arguments and approve the edited call", ["e"];
    Escalate => "escalate", "move the approval to the next escalation tier now", ["x"];
    Open => "open", "open the selected approval full-screen (in history: the decided one)", ["enter"];
    Close => "close", "close the view or prompt on top, or clear the filter", ["esc"];
    Runs => "runs", "show or hide the runs view", ["r"];
    Servers => "servers", "show or hide the MCP servers view", ["S"];
    Transcript => "transcript", "open the run transcript of the selected approval or run", ["t"];
    Filter => "filter", "filter the list by text", ["/"];
    Help => "help", "show or hide this help", ["?"];
    Quit => "quit", "quit (in a prompt, Ctrl-C cancels it)", ["q", "ctrl-c"];
}

impl Action {
    /// Actions that decide (or open a prompt that decides): these are guarded against keys
    /// typed before the approval was on screen, and never fire on key repeat.
    pub fn decides(self) -> bool {
        matches!(
            self,
            Action::Approve | Action::ApproveRun | Action::Deny | Action::Edit | Action::Escalate
        )
    }
}

/// One key, with modifiers (`ctrl-`, `alt-`). Letters are case-sensitive: `A` is shift-a.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn parse(s: &str) -> Option<Key> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = s;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.len() > 1 && (lower.starts_with("ctrl-") || lower.starts_with("ctrl+")) {
                ctrl = true;
                rest = &rest[5..];
            } else if rest.len() > 1 && (lower.starts_with("alt-") || lower.starts_with("alt+")) {
                alt = true;
                rest = &rest[4..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(if ctrl { c.to_ascii_lowercase() } else { c }),
            _ => match rest.to_ascii_lowercase().as_str() {
                "enter" | "return" => KeyCode::Enter,
                "esc" | "escape" => KeyCode::Esc,
                "tab" => KeyCode::Tab,
                "backtab" | "shift-tab" | "shift+tab" => KeyCode::BackTab,
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "pageup" | "pgup" => KeyCode::PageUp,
                "pagedown" | "pgdn" => KeyCode::PageDown,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "space" => KeyCode::Char(' '),
                "backspace" => KeyCode::Backspace,
                "delete" | "del" => KeyCode::Delete,
                f if f.starts_with('f') && f.len() > 1 => {
                    let n: u8 = f[1..].parse().ok()?;
                    if !(1..=12).contains(&n) {
                        return None;
                    }
                    KeyCode::F(n)
                }
                _ => return None,
            },
        };
        Some(Key { code, ctrl, alt })
    }

    /// The key as typed, normalised: shift is folded into the character.
    pub fn from_event(ev: &KeyEvent) -> Key {
        let code = match ev.code {
            KeyCode::Char(c) if ev.modifiers.contains(KeyModifiers::CONTROL) => {
                KeyCode::Char(c.to_ascii_lowercase())
            }
            c => c,
        };
        Key {
            code,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
            alt: ev.modifiers.contains(KeyModifiers::ALT),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("^")?;
        }
        if self.alt {
            f.write_str("M-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("Space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Enter => f.write_str("Enter"),
            KeyCode::Esc => f.write_str("Esc"),
            KeyCode::Tab => f.write_str("Tab"),
            KeyCode::BackTab => f.write_str("S-Tab"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::Left => f.write_str("←"),
            KeyCode::Right => f.write_str("→"),
            KeyCode::PageUp => f.write_str("PgUp"),
            KeyCode::PageDown => f.write_str("PgDn"),
            KeyCode::Home => f.write_str("Home"),
            KeyCode::End => f.write_str("End"),
            KeyCode::Backspace => f.write_str("Bksp"),
            KeyCode::Delete => f.write_str("Del"),
            KeyCode::F(n) => write!(f, "F{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A keymap problem, naming the `[ui.keys]` entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ui.keys.{action}: {message}")]
pub struct KeymapError {
    pub action: String,
    pub message: String,
}

/// Action → keys. Built from defaults, optionally overridden by `[ui.keys]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Keymap {
    keys: BTreeMap<Action, Vec<Key>>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap::default()
    }
}

impl Keymap {
    #[allow(clippy::should_implement_trait)]
    pub fn default() -> Keymap {
        let keys = Action::ALL
            .iter()
            .map(|a| {
                let ks = a
                    .default_keys()
                    .iter()
                    .map(|k| Key::parse(k).expect("default keys parse"))
                    .collect();
                (*a, ks)
            })
            .collect();
        Keymap { keys }
    }

    /// Apply `[ui.keys]`: `action = "key"` or `action = ["key", "key"]`. An override replaces
    /// that action's default keys. Unknown actions, unparsable keys and a key bound to two
    /// actions are errors.
    pub fn with_overrides(
        overrides: &BTreeMap<String, toml::Value>,
    ) -> Result<Keymap, KeymapError> {
        let mut map = Keymap::default();
        for (name, value) in overrides {
            let err = |message: String| KeymapError {
                action: name.clone(),
                message,
            };
            let action = Action::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                err(format!("unknown action (known: {})", known.join(", ")))
            })?;
            let strings: Vec<&str> = match value {
                toml::Value::String(s) => vec![s.as_str()],
                toml::Value::Array(a) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .ok_or_else(|| err("expected a key string or a list of them".into()))
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(err("expected a key string or a list of them".into())),
            };
            if strings.is_empty() {
                return Err(err("no key given".into()));
            }
            let keys = strings
                .iter()
                .map(|s| Key::parse(s).ok_or_else(|| err(format!("unknown key {s:?}"))))
                .collect::<Result<Vec<_>, _>>()?;
            map.keys.insert(action, keys);
        }
        // one key, one action
        let mut seen: BTreeMap<String, Action> = BTreeMap::new();
        for (action, keys) in &map.keys {
            for k in keys {
                if let Some(other) = seen.insert(format!("{k:?}"), *action)
                    && other != *action
                {
                    let (first, second) = if overrides.contains_key(action.name()) {
                        (other, *action)
                    } else {
                        (*action, other)
                    };
                    return Err(KeymapError {
                        action: second.name().to_string(),
                        message: format!("key {k} is already bound to {}", first.name()),
                    });
                }
            }
        }
        Ok(map)
    }

    /// The action bound to a key press, if any. Releases are ignored; repeats only move.
    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        if ev.kind == KeyEventKind::Release {
            return None;
        }
        let key = Key::from_event(ev);
        let action = self
            .keys
            .iter()
            .find(|(_, ks)| ks.contains(&key))
            .map(|(a, _)| *a)?;
        if ev.kind == KeyEventKind::Repeat && action.decides() {
            return None;
        }
        Some(action)
    }

    pub fn keys(&self, action: Action) -> &[Key] {
        self.keys.get(&action).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The first key of an action, for hints ("a").
    pub fn hint(&self, action: Action) -> String {
        self.keys(action)
            .first()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "—".into())
    }

    /// The first key of an action that is not typed text (for prompts, where `k` is a
    /// letter of the reason and only `↑` picks): "↑", or "—" when it has none.
    pub fn hint_in_prompt(&self, action: Action) -> String {
        self.keys(action)
            .iter()
            .find(|k| !(matches!(k.code, KeyCode::Char(_)) && !k.ctrl && !k.alt))
            .map(|k| k.to_string())
            .unwrap_or_else(|| "—".into())
    }

    /// All keys of an action ("j/↓").
    pub fn hint_all(&self, action: Action) -> String {
        let v: Vec<String> = self.keys(action).iter().map(|k| k.to_string()).collect();
        if v.is_empty() {
            "—".into()
        } else {
            v.join("/")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventState;

    pub(crate) fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent {
            code,
            modifiers,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        }
    }

    #[test]
    fn design_keys() {
        let k = Keymap::default();
        let n = KeyModifiers::NONE;
        let cases = [
            (press(KeyCode::Char('j'), n), Action::Down),
            (press(KeyCode::Down, n), Action::Down),
            (press(KeyCode::Char('k'), n), Action::Up),
            (press(KeyCode::Up, n), Action::Up),
            (press(KeyCode::Tab, n), Action::NextPane),
            (
                press(KeyCode::BackTab, KeyModifiers::SHIFT),
                Action::PrevPane,
            ),
            (press(KeyCode::Char('a'), n), Action::Approve),
            (
                press(KeyCode::Char('A'), KeyModifiers::SHIFT),
                Action::ApproveRun,
            ),
            (press(KeyCode::Char('A'), n), Action::ApproveRun),
            (press(KeyCode::Char('d'), n), Action::Deny),
            (press(KeyCode::Char('e'), n), Action::Edit),
            (press(KeyCode::Enter, n), Action::Open),
            (press(KeyCode::Char('/'), n), Action::Filter),
            (press(KeyCode::Char('?'), KeyModifiers::SHIFT), Action::Help),
            (press(KeyCode::Char('q'), n), Action::Quit),
            (
                press(KeyCode::Char('S'), KeyModifiers::SHIFT),
                Action::Servers,
            ),
            (press(KeyCode::Char('S'), n), Action::Servers),
            (press(KeyCode::Char('r'), n), Action::Runs),
            (press(KeyCode::Char('t'), n), Action::Transcript),
            (
                press(KeyCode::Char('c'), KeyModifiers::CONTROL),
                Action::Quit,
            ),
        ];
        for (ev, want) in cases {
            assert_eq!(k.action(&ev), Some(want), "{ev:?}");
        }
        assert_eq!(
            k.action(&press(KeyCode::Char('x'), n)),
            Some(Action::Escalate)
        );
        assert_eq!(k.action(&press(KeyCode::Char('z'), n)), None);
        assert_eq!(
            k.action(&press(KeyCode::Char('a'), KeyModifiers::CONTROL)),
            None
        );
    }

    #[test]
    fn repeats_and_releases_never_decide() {
        let k = Keymap::default();
        let mut ev = press(KeyCode::Char('a'), KeyModifiers::NONE);
        ev.kind = KeyEventKind::Repeat;
        assert_eq!(k.action(&ev), None);
        ev.kind = KeyEventKind::Release;
        assert_eq!(k.action(&ev), None);
        let mut ev = press(KeyCode::Char('j'), KeyModifiers::NONE);
        ev.kind = KeyEventKind::Repeat;
        assert_eq!(k.action(&ev), Some(Action::Down));
    }

    #[test]
    fn overrides() {
        let mut o = BTreeMap::new();
        o.insert("approve".to_string(), toml::Value::String("y".into()));
        o.insert(
            "quit".to_string(),
            toml::Value::Array(vec!["ctrl-q".into(), "F10".into()]),
        );
        let k = Keymap::with_overrides(&o).unwrap();
        let n = KeyModifiers::NONE;
        assert_eq!(
            k.action(&press(KeyCode::Char('y'), n)),
            Some(Action::Approve)
        );
        assert_eq!(k.action(&press(KeyCode::Char('a'), n)), None);
        assert_eq!(
            k.action(&press(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(k.action(&press(KeyCode::F(10), n)), Some(Action::Quit));
        assert_eq!(k.action(&press(KeyCode::Char('q'), n)), None);
        assert_eq!(k.hint(Action::Approve), "y");
        assert_eq!(k.hint_all(Action::Quit), "^q/F10");
    }

    #[test]
    fn override_errors() {
        let one = |a: &str, v: toml::Value| {
            let mut o = BTreeMap::new();
            o.insert(a.to_string(), v);
            Keymap::with_overrides(&o).unwrap_err().to_string()
        };
        assert!(
            one("aprove", "x".into())
                .starts_with("ui.keys.aprove: unknown action (known: down, up,")
        );
        assert_eq!(
            one("approve", "hyper-x".into()),
            "ui.keys.approve: unknown key \"hyper-x\""
        );
        assert_eq!(
            one("approve", "d".into()),
            "ui.keys.approve: key d is already bound to deny"
        );
        assert_eq!(
            one("approve", toml::Value::Integer(1)),
            "ui.keys.approve: expected a key string or a list of them"
        );
    }

    #[test]
    fn key_parse_and_display_roundtrip() {
        for s in [
            "a", "A", "?", "/", "enter", "esc", "tab", "backtab", "ctrl-c", "alt-x", "f5", "space",
            "pgup",
        ] {
            let k = Key::parse(s).unwrap();
            assert!(!k.to_string().is_empty());
        }
        assert_eq!(Key::parse("ctrl-C"), Key::parse("ctrl-c"));
        assert_ne!(Key::parse("A"), Key::parse("a"));
        assert_eq!(Key::parse("f13"), None);
    }
}
