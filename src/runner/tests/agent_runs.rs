//! Agent runs through the runner: the loop, its approvals and grants, and run timeouts.

use super::*;

pub(super) mod runs_support {
    use super::*;
    use crate::agent::{Agent, Agents};
    use crate::model::{Model, ScriptedModel};
    use crate::tools::Tools;
    use std::sync::Arc;

    /// One agent `cs`: the scripted CustomerServiceAgent with the builtin tools.
    pub fn agents() -> Arc<Agents> {
        let model = Ok(Arc::new(Model::Scripted(ScriptedModel::customer_service())));
        let mut agents = std::collections::BTreeMap::new();
        agents.insert(
            "cs".to_string(),
            Agent {
                name: "cs".into(),
                instructions: "Be helpful.".into(),
                model,
                tools: vec![
                    "get_order_details".into(),
                    "issue_refund".into(),
                    "delete_user_account".into(),
                ],
                mcp_servers: Vec::new(),
                max_turns: 10,
            },
        );
        Arc::new(Agents {
            agents,
            tools: Arc::new(Tools::from_config(&[]).unwrap()),
            mcp: None,
            mcp_configs: Default::default(),
        })
    }

    pub fn cfg() -> RunnerConfig {
        RunnerConfig {
            agents: Some(agents()),
            ..Default::default()
        }
    }

    pub async fn wait_for(h: &RunnerHandle, id: Uuid, what: impl Fn(&Run) -> bool) -> Run {
        for _ in 0..500 {
            if let Some(r) = h.run(id).await.unwrap()
                && what(&r)
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("run {id} never got there: {:#?}", h.run(id).await.unwrap());
    }
}

mod runs {
    use super::runs_support::*;
    use super::*;
    use crate::domain::{ApprovalStatus, CallState, RunStatus};

    #[tokio::test]
    async fn refund_pauses_at_the_gate_and_resumes_on_approval() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _t) = runner(dir.path(), cfg());
        let s = h
            .start_run(
                "bot",
                "cs",
                "Please refund order ORD-1002, it never arrived",
            )
            .await
            .unwrap();
        let run = wait_for(&h, s.run_id, |r| r.status == RunStatus::PendingApproval).await;
        let waiting = &run.calls[0];
        assert_eq!(waiting.tool, "issue_refund");
        let CallState::Waiting { approval_id } = waiting.state else {
            panic!("{run:#?}")
        };
        let a = h.get(approval_id).await.unwrap().unwrap();
        assert_eq!(a.run_id.as_deref(), Some(s.run_id.to_string().as_str()));
        assert!(a.reasoning.unwrap().contains("ORD-1002"));
        h.decide(
            "alice",
            DecideRequest {
                id: approval_id,
                verdict: Verdict::Approve,
                reason: None,
                arguments_sha256: None,
                edited_arguments: None,
                scope: None,
            },
        )
        .await
        .unwrap();
        let done = wait_for(&h, s.run_id, |r| r.status.is_finished()).await;
        assert_eq!(done.status, RunStatus::Completed, "{done:#?}");
        assert!(done.output.unwrap().contains("issued a refund"));
        let tools: Vec<_> = h
            .audit(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == crate::domain::AuditKind::ToolExecuted)
            .map(|r| r.details["tool"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(tools, ["get_order_details", "issue_refund"]);
    }

    #[tokio::test]
    async fn denial_reaches_the_model_and_cancel_cancels_approvals() {
        let dir = tempfile::tempdir().unwrap();
        let (h, _t) = runner(dir.path(), cfg());
        let s = h
            .start_run("bot", "cs", "Please refund order ORD-1005")
            .await
            .unwrap();
        let run = wait_for(&h, s.run_id, |r| r.status == RunStatus::PendingApproval).await;
        let id = run.calls[0].state.awaited_approval().unwrap();
        h.decide(
            "alice",
            DecideRequest {
                id,
                verdict: Verdict::Deny,
                reason: Some("over the limit".into()),
                arguments_sha256: None,
                edited_arguments: None,
                scope: None,
            },
        )
        .await
        .unwrap();
        let done = wait_for(&h, s.run_id, |r| r.status.is_finished()).await;
        let denial = done.messages.iter().any(|m| {
            matches!(m, crate::model::Message::Tool { content, .. }
                if content == "The reviewer denied this action: over the limit")
        });
        assert!(denial, "{done:#?}");
        assert!(done.output.unwrap().contains("over the limit"));

        let s = h
            .start_run("bot", "cs", "Delete user U-77 please")
            .await
            .unwrap();
        let run = wait_for(&h, s.run_id, |r| r.status == RunStatus::PendingApproval).await;
        let id = run.calls[0].state.awaited_approval().unwrap();
        h.cancel_run("alice", s.run_id).await.unwrap();
        let a = h.get(id).await.unwrap().unwrap();
        assert_eq!(a.status, ApprovalStatus::Cancelled);
        let r = h.run(s.run_id).await.unwrap().unwrap();
        assert_eq!(r.status, RunStatus::Cancelled);
        assert!(h.cancel_run("alice", s.run_id).await.is_err());
    }
}

mod run_timeouts {
    use super::runs_support::*;
    use super::*;
    use crate::domain::{ApprovalStatus, RunStatus};

    #[tokio::test]
    async fn a_run_waiting_on_an_expired_approval_is_told_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = tiers();
        cfg.tiers[0].after = Duration::from_millis(200);
        cfg.tiers[1].after = Duration::from_millis(200);
        cfg.agents = Some(agents());
        let (h, _t) = runner(dir.path(), cfg);
        let s = h
            .start_run("bot", "cs", "Delete user U-12 because they asked")
            .await
            .unwrap();
        let run = wait_for(&h, s.run_id, |r| r.status == RunStatus::PendingApproval).await;
        let id = run.calls[0].state.awaited_approval().unwrap();
        let done = wait_for(&h, s.run_id, |r| r.status.is_finished()).await;
        assert_eq!(
            h.get(id).await.unwrap().unwrap().status,
            ApprovalStatus::Expired
        );
        let told = done.messages.iter().any(|m| {
            matches!(m, crate::model::Message::Tool { content, .. }
                if content.starts_with("No reviewer decided in time, so this action was not taken: approval timed out"))
        });
        assert!(told, "{done:#?}");
        assert_eq!(done.status, RunStatus::Completed);
        assert!(done.output.unwrap().contains("was not deleted"));
    }
}
