//! The console in a real pseudo-terminal, against a fake in-process runner: keys decide,
//! pasted text does not, hostile text is shown escaped, and the terminal is restored on `q`,
//! SIGHUP and SIGTERM. The test binary re-runs itself as the child (`child_console`).

use gatehouse::domain::{ApprovalStatus, AuditKind, Event, Verdict};
use gatehouse::frontend::{DecisionOutcome, FrontendCommand, FrontendEvent, FrontendLink};
use gatehouse::tui::{ConsoleOptions, fixtures, run_console};
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "GATEHOUSE_TUI_PTY_CHILD";

/// The child: a console fed by a fake runner that applies every decision and logs it.
#[test]
fn child_console() {
    let Ok(log) = std::env::var(CHILD_ENV) else {
        return; // only meaningful when spawned by the tests below
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let (ev_tx, ev_rx) = tokio::sync::mpsc::channel(64);
        let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::channel::<FrontendCommand>(16);
        let (pending, recent) = fixtures::scene();
        ev_tx
            .send(FrontendEvent::Snapshot {
                pending: pending.clone(),
                recent,
                seq: 1,
            })
            .await
            .unwrap();
        let panic_runner = std::env::var("GATEHOUSE_TUI_PTY_PANIC").is_ok();
        tokio::spawn(async move {
            let mut seq = 1;
            while let Some(FrontendCommand::Decide { request, reply }) = cmd_rx.recv().await {
                if panic_runner {
                    drop(reply);
                    panic!("the fake runner panics");
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                writeln!(
                    f,
                    "{} {:?} {:?} {:?} {}",
                    request.approval_id,
                    request.verdict,
                    request.reason,
                    request.scope,
                    request.arguments_sha256
                )
                .unwrap();
                let mut a = pending
                    .iter()
                    .find(|a| a.id == request.approval_id)
                    .cloned()
                    .unwrap();
                a.status = match request.verdict {
                    Verdict::Approve => ApprovalStatus::Approved,
                    Verdict::Deny => ApprovalStatus::Denied,
                };
                a.decision = Some(gatehouse::domain::Decision {
                    by: "alice".into(),
                    at: gatehouse::domain::now(),
                    reason: request.reason.clone(),
                    arguments_sha256: Some(request.arguments_sha256.clone()),
                });
                let _ = reply.send(DecisionOutcome::Applied(a.clone()));
                seq += 1;
                let _ = ev_tx
                    .send(FrontendEvent::Change(Box::new(Event {
                        seq,
                        kind: AuditKind::ApprovalDecided,
                        at: gatehouse::domain::now(),
                        approval: a,
                    })))
                    .await;
            }
        });
        let link = FrontendLink {
            events: ev_rx,
            commands: cmd_tx,
            reviewer: "alice".into(),
        };
        let opts = ConsoleOptions {
            title: "pty test".into(),
            ..Default::default()
        };
        run_console(link, opts).await.unwrap();
    });
}

struct Console {
    screen: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Console {
    fn start(log: &Path) -> Console {
        Console::start_with(log, &[])
    }

    fn start_with(log: &Path, env: &[(&str, &str)]) -> Console {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 80,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(std::env::current_exe().unwrap());
        cmd.args([
            "child_console",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ]);
        cmd.env(CHILD_ENV, log);
        cmd.env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            NonZeroU16::new(24).unwrap(),
            NonZeroU16::new(80).unwrap(),
            0,
        )));
        let mut reader = pty.master.try_clone_reader().unwrap();
        let s = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().process(&buf[..n]);
            }
        });
        let writer = pty.master.take_writer().unwrap();
        Console {
            screen,
            writer,
            child,
            _master: pty.master,
        }
    }

    fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    fn wait_for(&self, what: &str, f: impl Fn(&vt100::Screen) -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if f(self.screen.lock().unwrap().screen()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}; screen:\n{}", self.text());
    }

    fn send(&mut self, bytes: &str) {
        self.writer.write_all(bytes.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    fn wait_exit(&mut self) -> portable_pty::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "child did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_restored(&self) {
        // let the reader drain the last bytes
        std::thread::sleep(Duration::from_millis(200));
        let p = self.screen.lock().unwrap();
        let s = p.screen();
        assert!(!s.alternate_screen(), "left the alternate screen");
        assert!(!s.bracketed_paste(), "bracketed paste off");
        assert!(!s.hide_cursor(), "cursor shown");
    }
}

fn read_log(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn wait_log(p: &Path, needle: &str) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let l = read_log(p);
        if l.contains(needle) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {needle:?} in decision log: {}", read_log(p));
}

#[test]
fn keys_decide_paste_does_not_and_q_restores() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.log");
    let mut c = Console::start(&log);
    c.wait_for("the dashboard", |s| {
        s.contents().contains("Pending · all queues (5)")
    });
    {
        let p = c.screen.lock().unwrap();
        assert!(p.screen().alternate_screen());
        assert!(p.screen().bracketed_paste());
    }
    // the hostile approval is selected and shown escaped, with its badge
    let text = c.text();
    assert!(text.contains("\"/home\\u{d}ls\""), "{text}");
    assert!(text.contains("invoice\\u{202e}fdp.exe"), "{text}");
    assert!(text.contains('⚠'));

    // a decide key before the approval has been on screen long enough is ignored
    c.send("a");
    c.wait_for("the guard notice", |s| s.contents().contains("key ignored"));
    std::thread::sleep(Duration::from_millis(1200));
    // pasted text never decides
    c.send("\x1b[200~aAd\r\x1b[201~");
    c.wait_for("the paste notice", |s| {
        s.contents().contains("paste ignored")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read_log(&log), "", "paste decided something");

    // move to the first refund (deploy, then issue_refund), look, approve
    c.send("jj");
    c.wait_for("the refund detail", |s| s.contents().contains("ORD-1042"));
    std::thread::sleep(Duration::from_millis(400));
    c.send("a");
    let l = wait_log(&log, "Approve");
    assert!(l.contains("00000001 Approve None None 3daad918"), "{l}");
    c.wait_for("the outcome", |s| s.contents().contains("approved"));
    c.wait_for("the list to shrink", |s| {
        s.contents().contains("Pending · all queues (4)")
    });

    // deny the next one with a typed reason ("q" is text in the prompt)
    std::thread::sleep(Duration::from_millis(1200));
    c.send("d");
    c.wait_for("the deny prompt", |s| {
        s.contents().contains("Common reasons")
    });
    c.send("quite risky\r");
    let l = wait_log(&log, "Deny");
    assert!(l.contains("Deny Some(\"quite risky\") None"), "{l}");
    c.wait_for("the list to shrink", |s| {
        s.contents().contains("Pending · all queues (3)")
    });

    c.send("q");
    let st = c.wait_exit();
    assert!(st.success(), "{st:?}");
    c.assert_restored();
}

fn signal_restores(sig: libc::c_int) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.log");
    let mut c = Console::start(&log);
    c.wait_for("the dashboard", |s| {
        s.contents().contains("Pending · all queues (5)")
    });
    let pid = c.child.process_id().unwrap() as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(pid, sig);
    }
    let st = c.wait_exit();
    assert!(st.success(), "{st:?}");
    c.assert_restored();
    assert_eq!(read_log(&log), "");
}

#[test]
fn sighup_restores_the_terminal() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    signal_restores(libc::SIGHUP);
}

#[test]
fn sigterm_restores_the_terminal() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    signal_restores(libc::SIGTERM);
}

#[test]
fn a_panic_elsewhere_does_not_wreck_the_console() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.log");
    let mut c = Console::start_with(&log, &[("GATEHOUSE_TUI_PTY_PANIC", "1")]);
    c.wait_for("the dashboard", |s| {
        s.contents().contains("Pending · all queues (5)")
    });
    std::thread::sleep(Duration::from_millis(1200));
    c.send("a");
    // the runner task panics: the hook restores the terminal, the console takes it back
    c.wait_for("the console to come back", |s| {
        s.alternate_screen() && s.contents().contains("no answer from the runner")
    });
    c.send("q");
    let st = c.wait_exit();
    assert!(st.success(), "{st:?}");
    c.assert_restored();
}
