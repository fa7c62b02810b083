//! The event loop: terminal in, channels in and out, frames out — only when something changed.

use super::ConsoleOptions;
use super::attention::Attention;
use super::panes;
use super::state::{ConsoleState, Effect};
use super::theme::Theme;
use crate::frontend::{DecisionOutcome, FrontendCommand, FrontendLink};
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, EventStream};
use crossterm::terminal::{
    BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen, LeaveAlternateScreen,
    disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute, queue};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use std::io::{self, Stdout, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// At most this many frames per second; redraw requests in between are merged.
pub const FRAME: Duration = Duration::from_millis(33);
/// Events drained from a channel before a frame is considered.
const DRAIN: usize = 4096;

static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Put the terminal back. Idempotent; safe from a panic hook or a signal path.
fn restore_terminal() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let mut out = io::stdout();
        let _ = execute!(
            out,
            EndSynchronizedUpdate,
            DisableBracketedPaste,
            LeaveAlternateScreen,
            cursor::Show
        );
        // the title we set goes with us: the one from before the console comes back
        let _ = out.write_all(super::attention::POP_TITLE);
        let _ = disable_raw_mode();
        let _ = out.flush();
    }
}

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Owns the terminal modes and the chained panic hook; `Drop` restores both.
struct TerminalGuard {
    prev_hook: Option<Arc<PanicHook>>,
}

/// Raw mode, alternate screen, bracketed paste, hidden cursor.
fn enter_modes() -> io::Result<()> {
    ACTIVE.store(true, Ordering::SeqCst);
    enable_raw_mode()?;
    execute!(
        io::stdout(),
        EnterAlternateScreen,
        EnableBracketedPaste,
        cursor::Hide
    )?;
    io::stdout().write_all(super::attention::PUSH_TITLE)?;
    io::stdout().flush()
}

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        let prev: Arc<PanicHook> = Arc::new(std::panic::take_hook());
        let chained = prev.clone();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            chained(info);
        }));
        let guard = TerminalGuard {
            prev_hook: Some(prev),
        };
        enter_modes()?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        if let Some(prev) = self.prev_hook.take() {
            if std::thread::panicking() {
                return; // leave the chain in place while unwinding
            }
            let _ = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| prev(info)));
        }
    }
}

/// Bytes outside the frame (bell, notifications, title): they move no cursor.
fn write_raw(bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut out = io::stdout();
    out.write_all(bytes)?;
    out.flush()
}

/// The last frame written to the terminal. A redraw that would leave every cell as it is (a
/// clock tick while no visible clock counts seconds) writes nothing at all, not even the
/// frame's markers.
#[derive(Default)]
struct Shown(Option<(Buffer, Option<Position>)>);

fn draw(
    term: &mut Terminal<CrosstermBackend<Stdout>>,
    st: &ConsoleState,
    theme: &Theme,
    shown: &mut Shown,
) -> io::Result<()> {
    // (the state learnt the size before: see `resize` in the loop)
    let size = term.size()?;
    let area = Rect::new(0, 0, size.width, size.height);
    let mut buf = Buffer::empty(area);
    let cursor = panes::draw(st, theme, area, &mut buf);
    if shown
        .0
        .as_ref()
        .is_some_and(|(b, c)| *c == cursor && *b == buf)
    {
        return Ok(());
    }
    queue!(term.backend_mut(), BeginSynchronizedUpdate)?;
    term.draw(|f| {
        // the same size: `draw` resizes the terminal's buffers to it first
        if f.area() == area {
            f.buffer_mut().clone_from(&buf);
        } else {
            let _ = panes::draw(st, theme, f.area(), f.buffer_mut());
        }
        if let Some(p) = cursor {
            f.set_cursor_position(p);
        }
    })?;
    execute!(term.backend_mut(), EndSynchronizedUpdate)?;
    shown.0 = Some((buf, cursor));
    Ok(())
}

/// Clear the screen and forget what is on it, so the next frame draws every cell.
fn full_repaint(term: &mut Terminal<CrosstermBackend<Stdout>>) -> io::Result<()> {
    let size = term.size()?;
    execute!(
        term.backend_mut(),
        crossterm::terminal::Clear(crossterm::terminal::ClearType::All)
    )?;
    // resizing to the current size resets the back buffer without querying the cursor
    term.resize(ratatui::layout::Rect::new(0, 0, size.width, size.height))
}

/// The instant of the next wall-clock second, so countdowns tick together.
fn next_second(now: Instant) -> Instant {
    let ms = chrono::Utc::now().timestamp_subsec_millis() as u64;
    now + Duration::from_millis(1000 - ms.min(999))
}

type Reply = (Uuid, Result<DecisionOutcome, String>);

fn send_decision(
    commands: &mpsc::Sender<FrontendCommand>,
    out: &mpsc::UnboundedSender<Reply>,
    request: crate::frontend::DecisionRequest,
) {
    let commands = commands.clone();
    let out = out.clone();
    let id = request.approval_id;
    tokio::spawn(async move {
        let (tx, rx) = oneshot::channel();
        let result = match commands
            .send(FrontendCommand::Decide { request, reply: tx })
            .await
        {
            Err(_) => Ok(DecisionOutcome::NotSent {
                message: "the runner is not reachable".into(),
            }),
            Ok(()) => rx.await.map_err(|_| {
                "no answer from the runner: watch the list to see whether it applied".to_string()
            }),
        };
        let _ = out.send((id, result));
    });
}

/// Ask the runner to escalate; success shows as the `approval.escalated` event, so only a
/// failure comes back, as a notice.
fn send_escalation(
    commands: &mpsc::Sender<FrontendCommand>,
    out: &mpsc::UnboundedSender<Reply>,
    id: Uuid,
) {
    let commands = commands.clone();
    let out = out.clone();
    tokio::spawn(async move {
        let (tx, rx) = oneshot::channel();
        let failure = match commands
            .send(FrontendCommand::Escalate {
                approval_id: id,
                reply: tx,
            })
            .await
        {
            Err(_) => Some("not escalated: the runner is not reachable".to_string()),
            Ok(()) => match rx.await {
                Ok(Ok(())) => None,
                Ok(Err(m)) => Some(format!("not escalated: {m}")),
                Err(_) => Some("no answer from the runner about the escalation".to_string()),
            },
        };
        if let Some(m) = failure {
            let _ = out.send((id, Err(m)));
        }
    });
}

type Fetched = (Uuid, Result<crate::domain::Run, String>);

/// Fetch a run for the transcript; the answer (or why not) comes back on `out`.
fn send_fetch(
    commands: &mpsc::Sender<FrontendCommand>,
    out: &mpsc::UnboundedSender<Fetched>,
    run_id: Uuid,
) {
    let commands = commands.clone();
    let out = out.clone();
    tokio::spawn(async move {
        let (tx, rx) = oneshot::channel();
        let result = match commands
            .send(FrontendCommand::FetchRun { run_id, reply: tx })
            .await
        {
            Err(_) => Err("the runner is not reachable".to_string()),
            Ok(()) => rx
                .await
                .unwrap_or_else(|_| Err("no answer from the runner".to_string())),
        };
        let _ = out.send((run_id, result));
    });
}

/// Takes over the terminal (alternate screen, raw mode, bracketed paste), runs until `q`,
/// SIGTERM or SIGHUP, and restores the terminal on every exit path including panic.
pub async fn run_console(link: FrontendLink, opts: ConsoleOptions) -> io::Result<()> {
    let FrontendLink {
        mut events,
        commands,
        reviewer,
    } = link;
    let ConsoleOptions {
        theme,
        keymap,
        title,
        attention,
    } = opts;
    let mut attention = Attention::new(attention);
    let mut st = ConsoleState::new(title, reviewer, keymap);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let _guard = TerminalGuard::enter()?;
    let mut term = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    // Not `term.clear()`: it asks the terminal where the cursor is (ESC [6n) and fails when
    // no answer comes within 2 s, which a slow SSH link or a plain terminal emulator can cause.
    full_repaint(&mut term)?;
    let mut input = EventStream::new();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Reply>();
    let (fetch_tx, mut fetch_rx) = mpsc::unbounded_channel::<Fetched>();
    let mut events_open = true;
    // When the last frame that showed a change was drawn: the frame cap merges bursts of
    // changes. A frame for the clock alone does not count, so an approval arriving just
    // after a tick is drawn at once instead of waiting out the cap.
    let mut last_draw: Option<Instant> = None;
    let mut clock_only = false;
    let mut shown = Shown::default();

    loop {
        // the open transcript's run changed: fetch it again (one fetch at a time)
        if let Some(id) = st.next_fetch() {
            send_fetch(&commands, &fetch_tx, id);
        }
        if !ACTIVE.load(Ordering::SeqCst) {
            // a panic elsewhere in the process (say, a runner task) restored the terminal
            // and the console lives on: take the terminal back and repaint everything
            enter_modes()?;
            full_repaint(&mut term)?;
            shown = Shown::default();
            st.dirty = true;
        }
        let now = Instant::now();
        let notice_end = st.expire_notice(now);
        if st.dirty && last_draw.is_none_or(|t| now >= t + FRAME) {
            st.now = crate::domain::now();
            st.mono = now;
            // the layout keys page by is the one about to be drawn
            let size = term.size()?;
            st.resize(ratatui::layout::Rect::new(0, 0, size.width, size.height));
            draw(&mut term, &st, &theme, &mut shown)?;
            write_raw(&attention.title(st.pending_count(), st.is_typing()))?;
            let drawn = Instant::now();
            st.mark_drawn(drawn);
            last_draw = if clock_only { None } else { Some(drawn) };
        }
        // a frame held back by the cap may show changes by the time it is drawn
        clock_only = false;
        // when to wake up without input
        let mut wake = now + Duration::from_secs(3600);
        if st.dirty
            && let Some(t) = last_draw
        {
            wake = wake.min(t + FRAME);
        }
        if let Some(t) = notice_end {
            wake = wake.min(t);
        }
        let tick = st.needs_tick();
        if tick {
            wake = wake.min(next_second(now));
        }
        // a decide key is guarded until the approval has been on screen a while: redraw-free
        let sleep = tokio::time::sleep_until(wake.into());

        let mut quit = false;
        tokio::select! {
            biased;
            _ = sigterm.recv() => quit = true,
            _ = sighup.recv() => quit = true,
            _ = sigint.recv() => quit = true,
            // One input event per turn. Never drain the stream with `now_or_never()`: a
            // pending poll hands crossterm's wake thread that poll's (no-op) waker and keeps
            // it, so later keys would wake nobody and show only on the next clock tick.
            ev = input.next() => {
                match ev {
                    Some(Ok(ev)) => match st.handle_event(&ev, Instant::now()) {
                        Some(Effect::Quit) => quit = true,
                        Some(Effect::Send(req)) => send_decision(&commands, &out_tx, req),
                        Some(Effect::Escalate(id)) => send_escalation(&commands, &out_tx, id),
                        Some(Effect::FetchRun(id)) => send_fetch(&commands, &fetch_tx, id),
                        None => {}
                    },
                    Some(Err(e)) => return Err(e),
                    None => quit = true,
                }
            }
            ev = events.recv(), if events_open => {
                match ev {
                    Some(ev) => {
                        let mono = Instant::now();
                        let mut signal = attention.on_event(&ev, st.is_typing(), mono);
                        st.apply(ev, mono);
                        for _ in 0..DRAIN {
                            match events.try_recv() {
                                Ok(ev) => {
                                    signal.extend(attention.on_event(&ev, st.is_typing(), mono));
                                    st.apply(ev, mono);
                                }
                                Err(_) => break,
                            }
                        }
                        write_raw(&signal)?;
                    }
                    None => {
                        events_open = false;
                        st.inbox.link_closed = true;
                        st.dirty = true;
                    }
                }
            }
            Some((id, result)) = out_rx.recv() => {
                let mut next = Some((id, result));
                while let Some((id, result)) = next {
                    let mono = Instant::now();
                    match result {
                        Ok(outcome) => st.on_outcome(id, outcome, mono),
                        Err(msg) => st.on_unknown_outcome(id, msg, mono),
                    }
                    next = out_rx.try_recv().ok();
                }
            }
            Some((id, result)) = fetch_rx.recv() => st.on_run_fetched(id, result),
            _ = sleep => {
                if tick {
                    clock_only = !st.dirty;
                    st.dirty = true;
                }
            }
        }
        if quit {
            break;
        }
    }
    // Decisions already handed to the runner finish (or fail) before we go, so quitting
    // right after a key never leaves the reviewer unsure; bounded, for a dead link.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while st.inflight_count() > 0 {
        st.notify(
            super::state::NoticeKind::Info,
            format!(
                "waiting for {} decision(s) to be confirmed…",
                st.inflight_count()
            ),
            Instant::now(),
        );
        let _ = draw(&mut term, &st, &theme, &mut shown);
        match tokio::time::timeout_at(deadline, out_rx.recv()).await {
            Ok(Some((id, Ok(outcome)))) => st.on_outcome(id, outcome, Instant::now()),
            Ok(Some((id, Err(msg)))) => st.on_unknown_outcome(id, msg, Instant::now()),
            Ok(None) | Err(_) => break,
        }
    }
    drop(term);
    Ok(())
}
