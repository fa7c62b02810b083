//! The pty harness for console tests: the real `gatehouse` binary in a pseudo-terminal, read
//! back with vt100, and a real daemon (`gatehouse serve`) to talk to over HTTP.

#![allow(dead_code)]

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
pub const CONFIG: &str = r#"
[[identities]]
name = "alice"
roles = ["reviewer"]
token = "alice-token-1234"

[[identities]]
name = "bot"
roles = ["agent"]
token = "bot-token-1234"
"#;

pub struct Console {
    pub screen: Arc<Mutex<vt100::Parser>>,
    /// Every byte the console wrote, for what the screen does not keep (bell, OSC, title).
    pub raw: Arc<Mutex<Vec<u8>>>,
    pub writer: Box<dyn Write + Send>,
    pub child: Box<dyn portable_pty::Child + Send + Sync>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Console {
    pub fn start(args: &[&str], env: &[(&str, &str)], cols: u16, rows: u16) -> Console {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(BIN);
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        cmd.env("USER", "tester");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            NonZeroU16::new(rows).unwrap(),
            NonZeroU16::new(cols).unwrap(),
            0,
        )));
        let mut reader = pty.master.try_clone_reader().unwrap();
        let s = screen.clone();
        let raw = Arc::new(Mutex::new(Vec::new()));
        let r = raw.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                r.lock().unwrap().extend_from_slice(&buf[..n]);
                s.lock().unwrap().process(&buf[..n]);
            }
        });
        let writer = pty.master.take_writer().unwrap();
        Console {
            screen,
            raw,
            writer,
            child,
            _master: pty.master,
        }
    }

    pub fn text(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    pub fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if f(&self.text()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("timed out waiting for {what}; screen:\n{}", self.text());
    }

    pub fn send(&mut self, bytes: &str) {
        self.writer.write_all(bytes.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    pub fn wait_exit(&mut self) -> portable_pty::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "console did not exit"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn assert_restored(&self) {
        std::thread::sleep(Duration::from_millis(200));
        let p = self.screen.lock().unwrap();
        let s = p.screen();
        assert!(!s.alternate_screen(), "still on the alternate screen");
        assert!(!s.bracketed_paste(), "bracketed paste left on");
        assert!(!s.hide_cursor(), "cursor left hidden");
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub fn http(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client
            .request(method.parse().unwrap(), url)
            .bearer_auth(token)
            .timeout(Duration::from_secs(10));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

pub fn submit(base: &str, tool: &str, args: Value, reasoning: &str) -> String {
    let (code, v) = http(
        "POST",
        &format!("{base}/v1/approvals"),
        "bot-token-1234",
        Some(
            json!({"tool": tool, "arguments": args, "reasoning": reasoning, "agent": "billing-bot"}),
        ),
    );
    assert_eq!(code, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// Poll an approval until it leaves `pending` (bounded).
pub fn decided(base: &str, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (code, v) = http(
            "GET",
            &format!("{base}/v1/approvals/{id}"),
            "alice-token-1234",
            None,
        );
        assert_eq!(code, 200, "{v}");
        if v["status"] != "pending" {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "approval {id} stayed pending"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn write_config(dir: &Path) -> PathBuf {
    let p = dir.join("gatehouse.toml");
    std::fs::write(&p, CONFIG).unwrap();
    p
}

/// The API address the embedded console logged.
pub fn api_from_log(log: &Path) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(i) = text.find("serving the API on http://") {
            let rest = &text[i + "serving the API on http://".len()..];
            return rest.split_whitespace().next().unwrap().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no API address in {log:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Wait until the console has handled every key sent so far: keys are read in order, so
/// once help (opened by a key sent now) is on screen, the keys before it were handled.
/// Help closes again, leaving the console as it was.
pub fn keys_handled(c: &mut Console) {
    c.send("?");
    c.wait_for("help, after the keys sent before it", |s| {
        s.contains("Help · Esc closes")
    });
    c.send("\x1b");
    c.wait_for("help closed", |s| !s.contains("Help · Esc closes"));
}

/// Wait until the decide guard for an approval that just appeared has passed.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(1300));
}

pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn serve(dir: &Path) -> (Daemon, String) {
    serve_on(dir, "127.0.0.1:0")
}

pub fn serve_on(dir: &Path, listen: &str) -> (Daemon, String) {
    let cfg = write_config(dir);
    serve_config(dir, &cfg, listen)
}

pub fn serve_config(dir: &Path, cfg: &Path, listen: &str) -> (Daemon, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap(), "--data"])
        .arg(dir.join("data"))
        .args(["--listen", listen])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(i) = all.find("listening on http://") {
                let rest = &all[i + "listening on ".len()..];
                if let Some(url) = rest
                    .split_whitespace()
                    .next()
                    .filter(|_| rest.contains('\n'))
                {
                    let _ = tx.send(url.to_string());
                    all.clear();
                }
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("daemon did not start");
    (Daemon(child), url)
}

/// How the notice of a decide key refused by the guard begins (src/tui/decisions.rs); the
/// rest may not fit a narrow screen.
pub const GUARD_REFUSED: &str = "key ignored:";

/// Press `key` and wait (bounded) for the screen to show `want`. A decide key pressed within
/// the console's guard (at most 1 s after the approval came on screen) is refused with a
/// notice; the guard runs on the console's own clock, so then time must really pass: wait out
/// the guard's longest span from the refusal and press once more.
pub fn press_until(c: &mut Console, key: &str, what: &str, want: impl Fn(&str) -> bool) {
    c.send(key);
    c.wait_for(what, |s| want(s) || s.contains(GUARD_REFUSED));
    if want(&c.text()) {
        return;
    }
    std::thread::sleep(gatehouse::tui::state::DECIDE_GUARD_UNASKED + Duration::from_millis(100));
    c.send(key);
    c.wait_for(what, want);
}
