//! Decisions: the guard on decide keys (on screen long enough, the whole arguments seen,
//! none already under way), the deny and edit prompts, sending, and the runner's answers.

use super::entries::{ascii_json, short_id};
use super::inbox::{InFlight, NoticeKind};
use super::intents::{DecideKind, Effect};
use super::keymap::Action;
use super::sanitize::sanitize;
use super::state::ConsoleState;
use super::views::{DenyPrompt, EditPrompt, Layer, Target};
use crate::domain::Verdict;
use crate::frontend::{DecisionOutcome, DecisionRequest};
use serde_json::{Map, Value};
use std::time::Instant;
use tui_input::Input;
use uuid::Uuid;

impl ConsoleState {
    /// The approval a decide key may act on: the one on screen, shown long enough, whose
    /// whole arguments the reviewer has had on screen, with no decision on it under way.
    fn guarded_target(&mut self, mono: Instant) -> Option<Uuid> {
        let Some(id) = self.decidable_on_screen() else {
            let text = match self.full() {
                Some(f) if f.decided => "already decided: this is the history",
                _ => "nothing selected",
            };
            self.notify(NoticeKind::Info, text.into(), mono);
            return None;
        };
        match self.on_screen {
            Some((shown, since, guard))
                if shown == id && mono.saturating_duration_since(since) >= guard => {}
            _ => {
                self.notify(
                    NoticeKind::Warn,
                    "key ignored: that approval had only just appeared — look, then press again"
                        .into(),
                    mono,
                );
                return None;
            }
        }
        if !self.arguments_seen(&id) {
            let open = self.keymap.hint(Action::Open);
            let text = if self.full().is_some() {
                format!(
                    "not yet: scroll through the whole arguments first ({} pages down)",
                    self.keymap.hint(Action::PageDown)
                )
            } else {
                format!(
                    "not yet: the arguments do not fit — press {open} to read them in full, \
                     then decide"
                )
            };
            self.notify(NoticeKind::Warn, text, mono);
            return None;
        }
        if self.inbox.inflight(&id).is_some() {
            self.notify(
                NoticeKind::Warn,
                format!("a decision on {} is already being sent", short_id(&id)),
                mono,
            );
            return None;
        }
        self.inbox.entry(&id).map(|e| e.approval.id)
    }

    pub(super) fn decide(&mut self, kind: DecideKind, mono: Instant) -> Option<Effect> {
        if self
            .stack
            .last()
            .is_some_and(|l| !matches!(l, Layer::Full(_)))
        {
            return None;
        }
        let id = self.guarded_target(mono)?;
        let a = self.inbox.entry(&id)?.approval.clone();
        let target = Target {
            id: a.id,
            arguments_sha256: a.arguments_sha256.clone(),
        };
        match kind {
            DecideKind::Approve => {
                Some(self.send(target, Verdict::Approve, None, None, None, mono))
            }
            DecideKind::ApproveRun => {
                if a.run_id.is_none() {
                    self.notify(
                        NoticeKind::Warn,
                        "approve-for-run needs a run: this is an external submission".into(),
                        mono,
                    );
                    return None;
                }
                Some(self.send(
                    target,
                    Verdict::Approve,
                    None,
                    None,
                    Some("run".into()),
                    mono,
                ))
            }
            DecideKind::Escalate => {
                self.notify(
                    NoticeKind::Info,
                    format!("escalating {} …", short_id(&a.id)),
                    mono,
                );
                Some(Effect::Escalate(a.id))
            }
            DecideKind::Deny => {
                self.stack.push(Layer::Deny(Box::new(DenyPrompt {
                    target,
                    input: Input::default(),
                    picked: None,
                    error: None,
                })));
                None
            }
            DecideKind::Edit => {
                if !Self::editable(&a) {
                    self.notify(
                        NoticeKind::Warn,
                        "editing is not offered: the submitter does not honour edited arguments"
                            .into(),
                        mono,
                    );
                    return None;
                }
                let text = ascii_json(&Value::Object(a.arguments.clone()));
                let mut p = EditPrompt {
                    target,
                    input: Input::new(text),
                    parsed: Err(String::new()),
                };
                p.reparse();
                self.stack.push(Layer::Edit(Box::new(p)));
                None
            }
        }
    }

    pub(super) fn submit_prompt(&mut self, mono: Instant) -> Option<Effect> {
        match self.stack.pop() {
            Some(Layer::Deny(mut p)) => {
                let reason = p.input.value().trim().to_string();
                if reason.is_empty() {
                    p.error = Some(format!(
                        "type a reason, or pick one with {}/{}",
                        self.keymap.hint_in_prompt(Action::Up),
                        self.keymap.hint_in_prompt(Action::Down)
                    ));
                    self.stack.push(Layer::Deny(p));
                    return None;
                }
                if !self.inbox.is_pending(&p.target.id) {
                    return None;
                }
                Some(self.send(p.target, Verdict::Deny, Some(reason), None, None, mono))
            }
            Some(Layer::Edit(p)) => match &p.parsed {
                Ok(m) => {
                    if !self.inbox.is_pending(&p.target.id) {
                        return None;
                    }
                    let m = m.clone();
                    Some(self.send(p.target, Verdict::Approve, None, Some(m), None, mono))
                }
                Err(_) => {
                    self.stack.push(Layer::Edit(p));
                    None
                }
            },
            Some(Layer::Filter(i)) => {
                self.dashboard.filter = i.value().to_string();
                self.rebuild_filter();
                self.reselect();
                None
            }
            Some(other) => {
                self.stack.push(other);
                None
            }
            None => None,
        }
    }

    fn send(
        &mut self,
        target: Target,
        verdict: Verdict,
        reason: Option<String>,
        edited: Option<Map<String, Value>>,
        scope: Option<String>,
        mono: Instant,
    ) -> Effect {
        let label = match (verdict, &edited, &scope) {
            (Verdict::Deny, _, _) => "deny",
            (Verdict::Approve, Some(_), _) => "approve (edited)",
            (Verdict::Approve, None, Some(_)) => "approve for run",
            (Verdict::Approve, None, None) => "approve",
        };
        self.inbox.start_flight(
            target.id,
            InFlight {
                verdict,
                label,
                since: mono,
            },
        );
        self.notify(
            NoticeKind::Info,
            format!("sending {label} for {}…", short_id(&target.id)),
            mono,
        );
        Effect::Send(DecisionRequest {
            approval_id: target.id,
            verdict,
            reason,
            arguments_sha256: target.arguments_sha256,
            edited_arguments: edited,
            scope,
        })
    }

    // ----- outcomes of decisions we sent -----

    pub fn on_outcome(&mut self, id: Uuid, outcome: DecisionOutcome, mono: Instant) {
        let before = self.dashboard.selected;
        let old_index = self.selected_index();
        let history_before = self.history_len();
        self.on_outcome_inner(id, outcome, old_index, history_before, mono);
        if self.dashboard.selected != before {
            self.selection_by_event = true;
        }
        self.dirty = true;
    }

    fn on_outcome_inner(
        &mut self,
        id: Uuid,
        outcome: DecisionOutcome,
        old_index: Option<usize>,
        history_before: usize,
        mono: Instant,
    ) {
        let flight = self.inbox.end_flight(&id);
        let label = flight.as_ref().map_or("decision", |f| f.label);
        let what = format!("{} ({})", self.inbox.tool_of(&id), short_id(&id));
        match outcome {
            DecisionOutcome::Applied(a) => {
                // Under a two-person rule our approval may not be the last: the call stays
                // pending, and the status line says what it still waits for.
                if a.is_pending()
                    && let (Some(count), Some(awaits)) = (a.quorum_summary(), a.quorum_awaits())
                {
                    let text = format!("{what} approved {}: {awaits}", sanitize(&count).0);
                    self.notify(NoticeKind::Ok, text, mono);
                    let ch = self.inbox.apply_decided_elsewhere(a, mono);
                    self.follow(ch, old_index, history_before, mono);
                    return;
                }
                let verb = a.status.as_str();
                self.notify(NoticeKind::Ok, format!("{what} {verb}"), mono);
                if !a.is_pending() {
                    let ch = self.inbox.decided(a);
                    self.follow(ch, old_index, history_before, mono);
                }
            }
            DecisionOutcome::Conflict { message, approval } => {
                if let Some(a) = approval {
                    let ch = self.inbox.apply_decided_elsewhere(a, mono);
                    self.follow(ch, old_index, history_before, mono);
                }
                self.notify(
                    NoticeKind::Error,
                    format!("{label} of {what} not applied: {}", sanitize(&message).0),
                    mono,
                );
            }
            DecisionOutcome::Refused { message } => self.notify(
                NoticeKind::Error,
                format!("{label} of {what} refused: {}", sanitize(&message).0),
                mono,
            ),
            DecisionOutcome::NotSent { message } => self.notify(
                NoticeKind::Error,
                format!(
                    "{label} of {what} NOT SENT ({}): nothing was decided",
                    sanitize(&message).0
                ),
                mono,
            ),
        }
    }

    /// The runner took the decision but never answered: it may or may not have applied.
    pub fn on_unknown_outcome(&mut self, id: Uuid, message: String, mono: Instant) {
        self.inbox.end_flight(&id);
        self.notify(
            NoticeKind::Warn,
            format!("{}: {}", short_id(&id), sanitize(&message).0),
            mono,
        );
    }
}
