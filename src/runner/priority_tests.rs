//! Reviewers' decisions are served before queued submissions (`RunnerHandle::urgent`).

use super::*;
use crate::domain::AuditKind;
use crate::policy::PolicySet;
use crate::store::Store;
use serde_json::json;

fn submission(n: usize) -> SubmitRequest {
    SubmitRequest {
        tool: "issue_refund".into(),
        arguments: json!({"n": n}).as_object().cloned().unwrap_or_default(),
        ..Default::default()
    }
}

#[test]
fn a_decision_overtakes_the_submissions_queued_before_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (h, _task) = start(store, PolicySet::empty(), RunnerConfig::default()).unwrap();
        let first = h.submit("bot", submission(0)).await.unwrap().approval;
        // A flood queued on the ordinary channel (as 64 busy agents would keep it), then a
        // decision: it must not wait behind the whole flood. (Under the 1000 records one
        // audit page holds.)
        const FLOOD: usize = 900;
        let mut replies = Vec::with_capacity(FLOOD);
        for n in 1..=FLOOD {
            let (reply, rx) = oneshot::channel();
            let cmd = Command::Submit {
                who: "bot".into(),
                req: submission(n),
                reply,
            };
            h.tx.send(cmd).await.unwrap();
            replies.push(rx);
        }
        let decision = DecideRequest {
            id: first.id,
            verdict: Verdict::Approve,
            reason: None,
            arguments_sha256: None,
            edited_arguments: None,
            scope: None,
        };
        let decided = h.decide("alice", decision).await.unwrap();
        assert!(!decided.is_pending());
        let mut last = None;
        for rx in replies {
            last = Some(rx.await.unwrap().unwrap().approval.id);
        }
        let records = h.audit(0, 1000).await.unwrap();
        assert_eq!(
            records.len(),
            FLOOD + 2,
            "every submission and the decision"
        );
        let at = |f: &dyn Fn(&crate::domain::AuditRecord) -> bool| {
            records.iter().position(f).expect("record present")
        };
        let decision_at = at(&|r| r.kind == AuditKind::ApprovalDecided);
        let last_at = at(&|r| r.approval_id == last);
        assert!(
            decision_at < last_at,
            "the decision was handled after all {FLOOD} queued submissions (record {decision_at})"
        );
    });
}
