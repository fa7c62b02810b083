//! The console: a full-screen ratatui approval dashboard.
//!
//! Fed only by a [`FrontendLink`](crate::frontend::FrontendLink): it cannot tell whether its
//! runner is in-process or across the network. Layout:
//!
//! - `inbox` (+ `entries`): what is known — pending approvals, history, runs, servers,
//!   notices. Data only: it knows no terminal.
//! - `views`: the stack of views over the dashboard, each with its state and its key
//!   bindings (one list that maps keys to intents and draws the hints).
//! - `state` (+ `intents`, `decisions`, `follow`, `seen`): the inbox and the view stack
//!   together; intents carried out; decisions guarded until the arguments were seen in full;
//!   views kept in step with the inbox.
//! - `panes`, `run_panes`, `servers`: drawing, which only reads the state.
//! - `keymap`, `theme`, `sanitize`, `json`: the rest, each on its own.
//! - `term`: the event loop and terminal handling.

pub mod attention;
pub mod decisions;
pub mod entries;
pub mod fixtures;
pub mod follow;
pub mod inbox;
pub mod intents;
pub mod json;
pub mod keymap;
pub mod panes;
pub mod run_panes;
pub mod runs;
pub mod sanitize;
pub mod seen;
pub mod servers;
pub mod state;
pub mod term;
pub mod theme;
pub mod views;

#[cfg(test)]
mod tests;

pub use keymap::{Action, Keymap, KeymapError};
pub use sanitize::sanitize;
pub use state::ConsoleState;
pub use term::run_console;
pub use theme::{Role, Theme, ThemeError};

use crate::frontend::FrontendEvent;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::time::{Duration, Instant};

/// How the console looks and which keys it answers to.
#[derive(Clone, Debug)]
pub struct ConsoleOptions {
    pub theme: Theme,
    pub keymap: Keymap,
    /// Shown at the left of the status line, e.g. "gatehouse demo".
    pub title: String,
    /// Bell and desktop notifications (`[ui] bell`, `[ui] desktop`).
    pub attention: attention::AttentionConfig,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            theme: Theme::default_theme(),
            keymap: Keymap::default(),
            title: "gatehouse".into(),
            attention: attention::AttentionConfig::default(),
        }
    }
}

/// For `gatehouse bench render`: a state with `pending` approvals, `frames` frames drawn into
/// a `TestBackend` of `width`×`height`, moving the selection one row each frame. Returns the
/// mean time per frame (state building excluded).
pub fn bench_render(pending: usize, width: u16, height: u16, frames: u32) -> Duration {
    let mut st = ConsoleState::new("gatehouse bench", "bench", Keymap::default());
    st.now = fixtures::fixed_now();
    st.apply(
        FrontendEvent::Snapshot {
            pending: fixtures::many(pending),
            recent: Vec::new(),
            runs: Vec::new(),
            seq: 0,
        },
        Instant::now(),
    );
    let theme = Theme::default_theme();
    let Ok(mut term) = Terminal::new(TestBackend::new(width, height));
    let draw = |st: &ConsoleState, term: &mut Terminal<TestBackend>| {
        let _ = term.draw(|f| {
            let area = f.area();
            if let Some(p) = panes::draw(st, &theme, area, f.buffer_mut()) {
                f.set_cursor_position(p);
            }
        });
    };
    draw(&st, &mut term); // warm-up
    let frames = frames.max(1);
    let start = Instant::now();
    for _ in 0..frames {
        st.apply_intent(
            intents::Intent::MoveSelection(intents::Move::By(1)),
            Instant::now(),
        );
        draw(&st, &mut term);
    }
    start.elapsed() / frames
}
