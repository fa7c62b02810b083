//! The in-process link when its console falls far behind the runner's events.

use super::*;
use crate::policy::PolicySet;
use crate::runner::{RunnerConfig, SubmitRequest};
use crate::store::Store;

/// More submissions than the event feed and the link's queue hold together, made while the
/// console reads nothing: once it reads, every one arrives as a change, in order, and no
/// second snapshot is taken (over many pending approvals that would hold the runner). Then a
/// new console starts from all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_that_falls_behind_catches_up_from_the_audit_log() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(dir.path()).expect("a store");
    let (runner, task) =
        crate::runner::start(store, PolicySet::empty(), RunnerConfig::default()).expect("a runner");
    let mut first = link(runner.clone(), "alice".into());
    // The snapshot comes first (after the connection and servers notes).
    let first_seq = loop {
        match first.events.recv().await.expect("an event") {
            FrontendEvent::Snapshot { seq, .. } => break seq,
            _ => continue,
        }
    };
    // 8,192 events in the feed and 4,096 in the link's queue: this is more than both.
    const N: usize = 14_000;
    let mut submitters = Vec::new();
    for w in 0..8 {
        let runner = runner.clone();
        submitters.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..N / 8 {
                let mut arguments = serde_json::Map::new();
                arguments.insert("n".into(), (w * N + n).into());
                let s = runner
                    .submit(
                        "bot",
                        SubmitRequest {
                            tool: "lag_probe".into(),
                            arguments,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("submitted");
                ids.push(s.approval.id);
            }
            ids
        }));
    }
    let mut submitted = std::collections::BTreeSet::new();
    for s in submitters {
        submitted.extend(s.await.expect("a submitter"));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut last = first_seq;
    while seen.len() < submitted.len() {
        // Bounded: a change that never comes fails here instead of hanging the suite.
        let next = tokio::time::timeout(std::time::Duration::from_secs(60), first.events.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {} changes arrived", seen.len(), submitted.len()));
        match next.expect("an event") {
            FrontendEvent::Change(e) => {
                assert!(e.seq > last, "changes in order: {} after {last}", e.seq);
                last = e.seq;
                if let crate::domain::Subject::Approval(a) = &e.subject {
                    assert!(seen.insert(a.id), "{} arrived twice", a.id);
                }
            }
            FrontendEvent::Snapshot { .. } => panic!("a second snapshot"),
            _ => {}
        }
    }
    assert_eq!(seen, submitted);

    // A console opened now starts from every pending approval, whole: most are no longer
    // held in memory and are read back from the store, a page at a time.
    let mut second = link(runner.clone(), "bob".into());
    let pending = loop {
        match second.events.recv().await.expect("an event") {
            FrontendEvent::Snapshot { pending, .. } => break pending,
            _ => continue,
        }
    };
    assert_eq!(pending.len(), submitted.len());
    let ids: std::collections::BTreeSet<_> = pending.iter().map(|a| a.id).collect();
    assert_eq!(ids, submitted);
    for a in pending.iter().take(50).chain(pending.iter().rev().take(50)) {
        let stored = runner.get(a.id).await.expect("a read").expect("known");
        assert_eq!(&stored, a, "the snapshot's copy of {} is whole", a.id);
    }
    runner.shutdown().await;
    task.await.expect("the runner stopped");
}
