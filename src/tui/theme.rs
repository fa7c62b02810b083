//! Themes: a palette of named colours plus styles by meaning (roles).
//!
//! The format is documented in `themes/default.toml`. Every theme inherits from the shipped
//! default, so a user theme may set a single role. Shipped themes are embedded in the binary.

use ratatui::style::{Color, Modifier, Style};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

macro_rules! roles {
    ($($variant:ident => $name:literal : $doc:literal,)*) => {
        /// A style by meaning. Panes ask the theme for a role, never for a colour.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Role { $(#[doc = $doc] $variant,)* }
        impl Role {
            pub const ALL: &'static [Role] = &[$(Role::$variant,)*];
            pub fn name(self) -> &'static str { match self { $(Role::$variant => $name,)* } }
            pub fn from_name(s: &str) -> Option<Role> {
                match s { $($name => Some(Role::$variant),)* _ => None }
            }
        }
    };
}

roles! {
    Text => "text": "ordinary text",
    Muted => "muted": "secondary text, labels, hints",
    Border => "border": "pane borders",
    Focus => "focus": "border and title of the focused pane",
    Title => "title": "pane titles",
    Header => "header": "column headers",
    Selection => "selection": "the selected row in the focused pane",
    SelectionInactive => "selection_inactive": "the selected row in other panes",
    Pending => "pending": "pending approvals",
    Approved => "approved": "approved decisions",
    Denied => "denied": "denied decisions",
    Expired => "expired": "expired or cancelled approvals",
    Danger => "danger": "urgent: little time left, errors",
    Warning => "warning": "warnings: escaped text, reconnecting",
    Info => "info": "neutral notices",
    Badge => "badge": "policy badges",
    Escape => "escape": "visible escapes of untrusted control characters",
    Sending => "sending": "a decision in flight",
    Status => "status": "the status line",
    StatusKey => "status_key": "key names in hints",
    Overlay => "overlay": "help and prompt overlays",
    Input => "input": "text inputs",
    JsonKey => "json_key": "JSON object keys",
    JsonString => "json_string": "JSON strings",
    JsonNumber => "json_number": "JSON numbers",
    JsonLiteral => "json_literal": "JSON true, false, null",
    JsonPunct => "json_punct": "JSON brackets, commas, colons",
}

/// A loaded theme.
#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    pub name: String,
    styles: Vec<Style>,
}

/// A theme that could not be loaded: names the file and the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ThemeError {
    pub file: String,
    pub key: String,
    pub message: String,
}

/// The shipped themes, embedded so the console works from any directory.
pub const SHIPPED: &[(&str, &str)] = &[
    ("default", include_str!("../../themes/default.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("mono", include_str!("../../themes/mono.toml")),
];

const STYLE_KEYS: &str = "fg, bg, bold, dim, italic, underline, reversed";

impl Theme {
    /// A shipped theme by name (`default`, `light`, `high-contrast`, `mono`) or a path to a
    /// `.toml` file. `no_color` keeps the theme's text attributes but takes the mono theme's
    /// styles and drops every colour (for `NO_COLOR`).
    pub fn load(name_or_path: &str, no_color: bool) -> Result<Theme, ThemeError> {
        let theme = if let Some((name, text)) = SHIPPED.iter().find(|(n, _)| *n == name_or_path) {
            Theme::parse(name, &format!("themes/{name}.toml"), text)?
        } else {
            let path = Path::new(name_or_path);
            let looks_like_path = name_or_path.ends_with(".toml")
                || name_or_path.contains('/')
                || name_or_path.contains(std::path::MAIN_SEPARATOR);
            if !looks_like_path {
                let known: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
                return Err(ThemeError {
                    file: name_or_path.to_string(),
                    key: "theme".into(),
                    message: format!(
                        "no such theme (shipped: {}; or give a path to a .toml file)",
                        known.join(", ")
                    ),
                });
            }
            let text = std::fs::read_to_string(path).map_err(|e| ThemeError {
                file: name_or_path.to_string(),
                key: "file".into(),
                message: format!("cannot read: {e}"),
            })?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| name_or_path.to_string());
            Theme::parse(&name, name_or_path, &text)?
        };
        Ok(if no_color { theme.no_color() } else { theme })
    }

    /// Whether the `NO_COLOR` convention asks for no colour (set and not empty).
    pub fn no_color_env() -> bool {
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
    }

    /// The shipped default theme. Infallible: a test parses every shipped theme.
    pub fn default_theme() -> Theme {
        Theme::load("default", false).expect("shipped default theme parses")
    }

    /// The mono theme: attributes only, no colours.
    pub fn mono() -> Theme {
        Theme::load("mono", false).expect("shipped mono theme parses")
    }

    /// Parse theme text; `file` names it in errors. Roles not set inherit from the default.
    pub fn parse(name: &str, file: &str, text: &str) -> Result<Theme, ThemeError> {
        let base = if name == "default" && file == "themes/default.toml" {
            Theme {
                name: "default".into(),
                styles: vec![Style::default(); Role::ALL.len()],
            }
        } else {
            Theme::default_theme()
        };
        let err = |key: &str, message: String| ThemeError {
            file: file.to_string(),
            key: key.to_string(),
            message,
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| err("toml", e.message().to_string()))?;
        let mut palette: BTreeMap<String, Color> = BTreeMap::new();
        let mut theme = Theme {
            name: name.to_string(),
            styles: base.styles,
        };
        for key in table.keys() {
            if !matches!(key.as_str(), "name" | "description" | "palette" | "roles") {
                return Err(err(
                    key,
                    "unknown key (expected name, description, [palette], [roles])".into(),
                ));
            }
        }
        if let Some(v) = table.get("name") {
            match v.as_str() {
                Some(s) => theme.name = s.to_string(),
                None => return Err(err("name", "expected a string".into())),
            }
        }
        if let Some(v) = table.get("description")
            && !v.is_str()
        {
            return Err(err("description", "expected a string".into()));
        }
        if let Some(p) = table.get("palette") {
            let p = p
                .as_table()
                .ok_or_else(|| err("palette", "expected a table of colours".into()))?;
            for (k, v) in p {
                let key = format!("palette.{k}");
                let s = v
                    .as_str()
                    .ok_or_else(|| err(&key, "expected a colour string".into()))?;
                let c = parse_colour(s, &palette)
                    .ok_or_else(|| err(&key, format!("invalid colour {s:?}")))?;
                palette.insert(k.clone(), c);
            }
        }
        if let Some(r) = table.get("roles") {
            let r = r
                .as_table()
                .ok_or_else(|| err("roles", "expected a table of roles".into()))?;
            for (role_name, spec) in r {
                let key = format!("roles.{role_name}");
                let role = Role::from_name(role_name).ok_or_else(|| {
                    let known: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
                    err(&key, format!("unknown role (known: {})", known.join(", ")))
                })?;
                let spec = spec.as_table().ok_or_else(|| {
                    err(
                        &key,
                        "expected a table like { fg = \"red\", bold = true }".to_string(),
                    )
                })?;
                theme.styles[role as usize] = parse_style(spec, &palette, &key, &err)?;
            }
        }
        Ok(theme)
    }

    /// The style of a role.
    pub fn style(&self, role: Role) -> Style {
        self.styles[role as usize]
    }

    /// Mono-style output: the mono theme's roles, without any colour.
    pub fn no_color(&self) -> Theme {
        let mono = Theme::mono();
        Theme {
            name: format!("{} (no colour)", self.name),
            styles: mono
                .styles
                .iter()
                .map(|s| Style {
                    fg: None,
                    bg: None,
                    underline_color: None,
                    ..*s
                })
                .collect(),
        }
    }
}

impl Default for Theme {
    fn default() -> Self {
        Theme::default_theme()
    }
}

fn parse_colour(s: &str, palette: &BTreeMap<String, Color>) -> Option<Color> {
    if let Some(c) = palette.get(s) {
        return Some(*c);
    }
    Color::from_str(s).ok()
}

fn parse_style(
    spec: &toml::Table,
    palette: &BTreeMap<String, Color>,
    key: &str,
    err: &dyn Fn(&str, String) -> ThemeError,
) -> Result<Style, ThemeError> {
    let mut style = Style::default();
    for (k, v) in spec {
        let key = format!("{key}.{k}");
        match k.as_str() {
            "fg" | "bg" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| err(&key, "expected a colour string".into()))?;
                let c = parse_colour(s, palette).ok_or_else(|| {
                    err(
                        &key,
                        format!(
                            "invalid colour {s:?} (a palette name, an ANSI name like \"red\", \
                             \"#rrggbb\" or an index 0-255)"
                        ),
                    )
                })?;
                style = if k == "fg" { style.fg(c) } else { style.bg(c) };
            }
            "bold" | "dim" | "italic" | "underline" | "reversed" => {
                let on = v
                    .as_bool()
                    .ok_or_else(|| err(&key, "expected true or false".into()))?;
                let m = match k.as_str() {
                    "bold" => Modifier::BOLD,
                    "dim" => Modifier::DIM,
                    "italic" => Modifier::ITALIC,
                    "underline" => Modifier::UNDERLINED,
                    _ => Modifier::REVERSED,
                };
                style = if on {
                    style.add_modifier(m)
                } else {
                    style.remove_modifier(m)
                };
            }
            _ => return Err(err(&key, format!("unknown key (expected {STYLE_KEYS})"))),
        }
    }
    Ok(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_theme_parses_and_is_embedded() {
        for (name, _) in SHIPPED {
            let t = Theme::load(name, false).unwrap_or_else(|e| panic!("{e}"));
            assert!(!t.name.is_empty());
        }
        // and every file in themes/ is shipped and parses
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("themes");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                n += 1;
                let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
                assert!(
                    SHIPPED.iter().any(|(s, _)| *s == stem),
                    "{stem} is not embedded"
                );
                Theme::load(path.to_str().unwrap(), false).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        assert_eq!(n, SHIPPED.len());
    }

    #[test]
    fn default_sets_every_role() {
        let text = SHIPPED[0].1;
        let table: toml::Table = text.parse().unwrap();
        let roles = table["roles"].as_table().unwrap();
        for r in Role::ALL {
            assert!(
                roles.contains_key(r.name()),
                "default lacks role {}",
                r.name()
            );
        }
    }

    #[test]
    fn shipped_themes_use_only_the_16_ansi_colours() {
        // so they work on 16-colour terminals too
        for (name, _) in SHIPPED {
            let t = Theme::load(name, false).unwrap();
            for r in Role::ALL {
                let s = t.style(*r);
                for c in [s.fg, s.bg].into_iter().flatten() {
                    assert!(
                        !matches!(c, Color::Rgb(..) | Color::Indexed(_)),
                        "{name}: {} uses {c:?}",
                        r.name()
                    );
                }
            }
        }
    }

    #[test]
    fn mono_has_no_colours() {
        let t = Theme::mono();
        for r in Role::ALL {
            let s = t.style(*r);
            assert!(s.fg.is_none() && s.bg.is_none(), "{}", r.name());
        }
    }

    #[test]
    fn no_color_strips_colours() {
        for (name, _) in SHIPPED {
            let t = Theme::load(name, true).unwrap();
            for r in Role::ALL {
                let s = t.style(*r);
                assert!(s.fg.is_none() && s.bg.is_none());
            }
            // the selection stays visible without colour
            assert_ne!(t.style(Role::Selection), Style::default());
        }
    }

    #[test]
    fn partial_theme_inherits_from_default() {
        let t = Theme::parse(
            "mine",
            "mine.toml",
            "[palette]\nhot = \"#ff0000\"\n[roles]\ndanger = { fg = \"hot\", bold = true }\n",
        )
        .unwrap();
        let d = Theme::default_theme();
        assert_eq!(
            t.style(Role::Danger),
            Style::default()
                .fg(Color::Rgb(255, 0, 0))
                .add_modifier(Modifier::BOLD)
        );
        for r in Role::ALL.iter().filter(|r| **r != Role::Danger) {
            assert_eq!(t.style(*r), d.style(*r), "{}", r.name());
        }
    }

    #[test]
    fn bad_theme_errors_name_file_and_key() {
        let cases = [
            (
                "[roles]\npending = { fgg = \"red\" }\n",
                "bad.toml: roles.pending.fgg: unknown key (expected fg, bg, bold, dim, italic, underline, reversed)",
            ),
            (
                "[roles]\npending = { fg = \"nope\" }\n",
                "bad.toml: roles.pending.fg: invalid colour \"nope\" (a palette name, an ANSI name like \"red\", \"#rrggbb\" or an index 0-255)",
            ),
            (
                "[palette]\nx = \"#12345\"\n",
                "bad.toml: palette.x: invalid colour \"#12345\"",
            ),
            (
                "[roles]\npendng = { fg = \"red\" }\n",
                "bad.toml: roles.pendng: unknown role (known: text, muted, border, focus, title, header, selection, selection_inactive, pending, approved, denied, expired, danger, warning, info, badge, escape, sending, status, status_key, overlay, input, json_key, json_string, json_number, json_literal, json_punct)",
            ),
            (
                "[roles]\npending = { bold = \"yes\" }\n",
                "bad.toml: roles.pending.bold: expected true or false",
            ),
            (
                "[colours]\n",
                "bad.toml: colours: unknown key (expected name, description, [palette], [roles])",
            ),
        ];
        for (text, want) in cases {
            let e = Theme::parse("bad", "bad.toml", text).unwrap_err();
            assert_eq!(e.to_string(), want);
        }
        let e = Theme::parse("bad", "bad.toml", "[roles\n").unwrap_err();
        assert!(e.to_string().starts_with("bad.toml: toml: "), "{e}");
    }

    #[test]
    fn bad_theme_file_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "[roles]\ndenied = { fg = 3 }\n").unwrap();
        let e = Theme::load(p.to_str().unwrap(), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: roles.denied.fg: expected a colour string", p.display())
        );
        let e = Theme::load("solarized", false).unwrap_err();
        assert!(
            e.to_string().starts_with("solarized: theme: no such theme"),
            "{e}"
        );
    }
}
