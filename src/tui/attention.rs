//! Getting the reviewer's attention (DESIGN §13): the terminal bell, a desktop notification
//! through the terminal (OSC 9 or OSC 777), and the window title `gatehouse · N pending`.
//!
//! Pure: it turns events into the bytes to write, and `term` writes them. Rules:
//! - `bell = "new"` rings for an approval that arrives or escalates; `"escalated"` only for
//!   escalations. The desktop notification goes with the same events whatever the bell.
//! - Never more than one signal (bell and/or notification) per second: a burst of arrivals
//!   rings once.
//! - Nothing at all while the reviewer types in a prompt (deny reason, edit, filter): no
//!   bell, no notification, and the title waits until the prompt closes. Arrivals during a
//!   prompt are not rung later: the list shows them.
//! - Untrusted text (tool, agent, queue) is escaped visibly (`\u{1b}`), and `;` too, so no
//!   submitter can end the escape sequence or add fields to it. Sequences end with ST
//!   (ESC `\`), so the only BEL byte ever written is the bell itself.

use super::sanitize;
use crate::domain::{Approval, AuditKind, Subject};
use crate::frontend::FrontendEvent;
use std::time::{Duration, Instant};

/// What rings the bell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bell {
    #[default]
    Off,
    /// Arrivals and escalations.
    New,
    /// Escalations only.
    Escalated,
}

/// How a desktop notification is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Desktop {
    #[default]
    Off,
    /// `ESC ] 9 ; text ST` (iTerm2, Windows Terminal, WezTerm, kitty, …).
    Osc9,
    /// `ESC ] 777 ; notify ; title ; body ST` (rxvt-unicode, foot, Ghostty, VTE terminals).
    Osc777,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttentionConfig {
    pub bell: Bell,
    pub desktop: Desktop,
}

impl AttentionConfig {
    /// From `[ui] bell` and `[ui] desktop`; an unknown value names its key.
    pub fn parse(bell: Option<&str>, desktop: Option<&str>) -> Result<AttentionConfig, String> {
        let bell = match bell.unwrap_or("off") {
            "off" => Bell::Off,
            "new" => Bell::New,
            "escalated" => Bell::Escalated,
            other => {
                return Err(format!(
                    "ui.bell: unknown value {other:?} (allowed: off, new, escalated)"
                ));
            }
        };
        let desktop = match desktop.unwrap_or("off") {
            "off" => Desktop::Off,
            "osc9" => Desktop::Osc9,
            "osc777" => Desktop::Osc777,
            other => {
                return Err(format!(
                    "ui.desktop: unknown value {other:?} (allowed: off, osc9, osc777)"
                ));
            }
        };
        Ok(AttentionConfig { bell, desktop })
    }
}

/// Push the window title on the terminal's title stack (restored by [`POP_TITLE`]).
pub const PUSH_TITLE: &[u8] = b"\x1b[22;0t";
pub const POP_TITLE: &[u8] = b"\x1b[23;0t";
const ST: &[u8] = b"\x1b\\";
/// At most one signal per this long.
pub const MIN_GAP: Duration = Duration::from_secs(1);
/// Untrusted text in a notification is cut to this many characters.
const MAX_FIELD: usize = 60;

#[derive(Debug, Default)]
pub struct Attention {
    cfg: AttentionConfig,
    last_signal: Option<Instant>,
    /// The pending count the title shows now.
    title_count: Option<usize>,
}

impl Attention {
    pub fn new(cfg: AttentionConfig) -> Attention {
        Attention {
            cfg,
            ..Attention::default()
        }
    }

    /// The bytes (bell, notification) one event calls for; empty for most.
    pub fn on_event(&mut self, ev: &FrontendEvent, typing: bool, mono: Instant) -> Vec<u8> {
        let FrontendEvent::Change(e) = ev else {
            return Vec::new();
        };
        let Subject::Approval(a) = &e.subject else {
            return Vec::new();
        };
        if !a.is_pending() {
            return Vec::new();
        }
        let escalated = match e.kind {
            AuditKind::ApprovalCreated => false,
            AuditKind::ApprovalEscalated => true,
            _ => return Vec::new(),
        };
        let ring = match self.cfg.bell {
            Bell::Off => false,
            Bell::New => true,
            Bell::Escalated => escalated,
        };
        let notify = self.cfg.desktop != Desktop::Off;
        if typing || !(ring || notify) {
            return Vec::new();
        }
        if self.last_signal.is_some_and(|t| mono < t + MIN_GAP) {
            return Vec::new();
        }
        self.last_signal = Some(mono);
        let mut out = Vec::new();
        if ring {
            out.push(0x07);
        }
        if notify {
            out.extend(self.notification(a, escalated));
        }
        out
    }

    fn notification(&self, a: &Approval, escalated: bool) -> Vec<u8> {
        let field = |s: &str| {
            let shown = sanitize(s).0.replace(';', "\\u{3b}");
            if shown.chars().count() > MAX_FIELD {
                let cut: String = shown.chars().take(MAX_FIELD).collect();
                format!("{cut}…")
            } else {
                shown
            }
        };
        let what = if escalated { "escalated" } else { "approval" };
        let agent = a
            .agent
            .as_deref()
            .map(|g| {
                // a claim the submitter may not make is marked, as on screen (DESIGN §9)
                let mark = if a.agent_verified { "" } else { " (claimed)" };
                format!(" by {}{mark}", field(g))
            })
            .unwrap_or_default();
        let body = format!(
            "{what}: {}{agent} in queue {}",
            field(&a.tool),
            field(&a.queue)
        );
        let mut out = Vec::new();
        match self.cfg.desktop {
            Desktop::Off => {}
            Desktop::Osc9 => {
                out.extend(b"\x1b]9;gatehouse ");
                out.extend(body.as_bytes());
                out.extend(ST);
            }
            Desktop::Osc777 => {
                out.extend(b"\x1b]777;notify;gatehouse;");
                out.extend(body.as_bytes());
                out.extend(ST);
            }
        }
        out
    }

    /// The title sequence when the pending count changed (and nobody is typing).
    pub fn title(&mut self, pending: usize, typing: bool) -> Vec<u8> {
        if typing || self.title_count == Some(pending) {
            return Vec::new();
        }
        self.title_count = Some(pending);
        let mut out = format!("\x1b]2;gatehouse · {pending} pending").into_bytes();
        out.extend(ST);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Event;
    use crate::tui::fixtures;

    fn event(kind: AuditKind, a: Approval) -> FrontendEvent {
        FrontendEvent::Change(Box::new(Event {
            seq: 1,
            kind,
            at: fixtures::fixed_now(),
            subject: Subject::Approval(a),
        }))
    }

    fn hostile() -> Approval {
        let mut a = fixtures::scene().0.remove(0);
        a.tool = "rm\x1b]9;pwned\x07;x".into();
        a.agent = Some("bot\u{9c}\u{202e}".into());
        a.queue = "q;1".into();
        a
    }

    #[test]
    fn untrusted_text_cannot_end_or_extend_the_sequence() {
        for desktop in [Desktop::Osc9, Desktop::Osc777] {
            let mut at = Attention::new(AttentionConfig {
                bell: Bell::Off,
                desktop,
            });
            let out = at.on_event(
                &event(AuditKind::ApprovalCreated, hostile()),
                false,
                Instant::now(),
            );
            let s = String::from_utf8(out).unwrap();
            // one ESC to open, one in the ST that closes; no BEL, no C1, no other ESC
            assert_eq!(s.matches('\x1b').count(), 2, "{s:?}");
            assert!(s.ends_with("\x1b\\"), "{s:?}");
            assert!(!s.contains('\x07') && !s.contains('\u{9c}'), "{s:?}");
            let fields = if desktop == Desktop::Osc9 { 1 } else { 3 };
            assert_eq!(s.matches(';').count(), fields, "{s:?}");
            assert!(s.contains("\\u{1b}]9\\u{3b}pwned\\u{7}"), "{s:?}");
            assert!(s.contains("in queue q\\u{3b}1"), "{s:?}");
        }
    }

    #[test]
    fn one_signal_per_second_and_none_while_typing() {
        let mut at = Attention::new(AttentionConfig {
            bell: Bell::New,
            desktop: Desktop::Off,
        });
        let a = fixtures::scene().0.remove(0);
        let t0 = Instant::now();
        let created = event(AuditKind::ApprovalCreated, a.clone());
        assert_eq!(at.on_event(&created, true, t0), b"");
        assert_eq!(at.on_event(&created, false, t0), b"\x07");
        assert_eq!(
            at.on_event(&created, false, t0 + Duration::from_millis(999)),
            b""
        );
        assert_eq!(at.on_event(&created, false, t0 + MIN_GAP), b"\x07");
        // a partial approval, a decision: no bell
        let partial = event(AuditKind::ApprovalApprovedPartially, a);
        assert_eq!(at.on_event(&partial, false, t0 + 5 * MIN_GAP), b"");
    }

    #[test]
    fn escalated_mode_rings_for_escalations_only() {
        let mut at = Attention::new(AttentionConfig {
            bell: Bell::Escalated,
            desktop: Desktop::Off,
        });
        let a = fixtures::scene().0.remove(0);
        let t0 = Instant::now();
        assert_eq!(
            at.on_event(&event(AuditKind::ApprovalCreated, a.clone()), false, t0),
            b""
        );
        assert_eq!(
            at.on_event(&event(AuditKind::ApprovalEscalated, a), false, t0),
            b"\x07"
        );
    }

    #[test]
    fn the_title_changes_with_the_count_and_waits_for_the_prompt() {
        let mut at = Attention::default();
        assert_eq!(
            at.title(2, false),
            "\x1b]2;gatehouse · 2 pending\x1b\\".as_bytes()
        );
        assert_eq!(at.title(2, false), b"");
        assert_eq!(at.title(3, true), b"");
        assert_eq!(
            at.title(3, false),
            "\x1b]2;gatehouse · 3 pending\x1b\\".as_bytes()
        );
    }

    #[test]
    fn unknown_values_name_their_key() {
        assert_eq!(
            AttentionConfig::parse(Some("loud"), None).unwrap_err(),
            "ui.bell: unknown value \"loud\" (allowed: off, new, escalated)"
        );
        assert!(
            AttentionConfig::parse(None, Some("osc99"))
                .unwrap_err()
                .starts_with("ui.desktop")
        );
        assert_eq!(
            AttentionConfig::parse(Some("new"), Some("osc9")).unwrap(),
            AttentionConfig {
                bell: Bell::New,
                desktop: Desktop::Osc9
            }
        );
    }
}
