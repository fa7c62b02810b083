//! Waiting on the daemon without sleeping on a guess: conditions it reports (the
//! subscriber gauge of `/metrics`), and the few waits where wall-clock time must really pass
//! because a deadline of the real binary is the thing under test.

use super::{ALICE, Api};
use serde_json::Value;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How long a condition the daemon reports may take to hold on a loaded machine.
pub const CONDITION_TIMEOUT: Duration = Duration::from_secs(20);

/// Open subscriptions as `/metrics` counts them: long polls wait on their approval
/// (`gatehouse_approval_waiters`), event streams and waiting hooks hold a subscription to the
/// event feed (`gatehouse_event_subscribers`).
pub async fn subscribers(api: &Api) -> u64 {
    let r = api.get(Some(ALICE), "/metrics").await;
    assert_eq!(r.status, 200, "metrics: {r:?}");
    let text = r.body.as_str().expect("metrics text");
    let gauge = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} gauge in:\n{text}"))
    };
    gauge("gatehouse_event_subscribers") + gauge("gatehouse_approval_waiters")
}

/// Wait (bounded) until the daemon counts at least `n` open subscriptions: a long poll or
/// stream started elsewhere has registered, so an event from now on reaches it.
pub async fn wait_subscribers(api: &Api, n: u64, what: &str) {
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    loop {
        let now = subscribers(api).await;
        if now >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {now} open subscriptions after {CONDITION_TIMEOUT:?}, expected {n}"
        );
        // A metrics read is cheap; a short pause keeps the loop from hogging a shared CPU.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How long from now until `margin` past the wall-clock instant `at` (an RFC 3339 string the
/// API gave, e.g. an approval's `expires_at`); zero if that is already past.
///
/// For waits where time must really pass: the daemon's deadlines are wall-clock and
/// persisted, so a test of "it fell due while the daemon was down" has to stay down until
/// the instant the API named. Waiting for that instant, not a guessed span, keeps it exact.
#[track_caller]
pub fn until_past(at: &Value, margin: Duration) -> Duration {
    let text = at
        .as_str()
        .unwrap_or_else(|| panic!("not an RFC 3339 instant: {at}"));
    let due = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("not an RFC 3339 instant {text:?}: {e}"))
        .with_timezone(&chrono::Utc);
    let left = (due - chrono::Utc::now()).to_std().unwrap_or_default();
    left + margin
}

/// Whether the child exits within `limit`: its status if it does, `None` if it is still
/// running then (it is left running). A bounded poll: std offers no wait with a timeout.
pub fn exits_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait (bounded) until process `pid` has exited (any process, not only our child): `true`
/// once it has, `false` if it still runs at `limit`. The kernel wakes us: a pidfd turns
/// readable when its process exits.
pub async fn process_exits_within(pid: i32, limit: Duration) -> bool {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        let e = std::io::Error::last_os_error();
        // No such process: it exited and was reaped already.
        assert_eq!(
            e.raw_os_error(),
            Some(libc::ESRCH),
            "pidfd_open({pid}): {e}"
        );
        return true;
    }
    // SAFETY: `raw` is a descriptor pidfd_open just opened for us alone.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same for
    // the AsyncFd's whole life.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }
    .unwrap_or_else(|e| panic!("watch the pidfd of {pid}: {e}"));
    tokio::time::timeout(limit, fd.readable()).await.is_ok()
}

/// An approval with this status (`pending`, `cancelled`, …), waiting up to `limit` for one:
/// the first the list shows, else the first that reaches the status afterwards, as the event
/// stream announces it.
pub async fn approval_with_status(api: &Api, status: &str, limit: Duration) -> Value {
    // Subscribe before looking: an approval that gets there after the look is on the stream.
    let mut events = super::sse::SseStream::connect(api, None).await;
    if let Some(a) = api.list_all(status).await.into_iter().next() {
        return a;
    }
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.next(left).await {
            Some(e) if e.data["approval"]["status"] == status => {
                return e.data["approval"].clone();
            }
            Some(_) => {}
            None => panic!(
                "no {status} approval within {limit:?}: {:#?}",
                api.list_all("all").await
            ),
        }
    }
}
