//! Webhook notifications (`[notify] webhook`): a JSON POST on escalation, on automatic
//! denial and, with `on_create`, on every new approval.
//!
//! The runner never waits for a webhook: notices go into a bounded queue (dropped and
//! counted when it is full) and a task of their own delivers them, retrying with backoff.
//! Notices are queued only once the change they tell of is durable.

use crate::domain::{Approval, AuditKind, Timestamp};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const QUEUE: usize = 10_000;
const ATTEMPTS: u32 = 5;

/// What the webhook receives.
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    pub event: &'static str,
    pub at: Timestamp,
    pub approval_id: uuid::Uuid,
    pub tool: String,
    pub server: Option<String>,
    pub agent: Option<String>,
    pub run_id: Option<String>,
    pub queue: String,
    pub tier: u32,
    /// Who should look: the reviewers of the approval's (new) tier.
    pub reviewers: Vec<String>,
    pub reason: String,
}

impl Notice {
    pub fn new(kind: AuditKind, a: &Approval, reviewers: Vec<String>, reason: String) -> Notice {
        Notice {
            event: kind.as_str(),
            at: crate::domain::now(),
            approval_id: a.id,
            tool: a.tool.clone(),
            server: a.server.clone(),
            agent: a.agent.clone(),
            run_id: a.run_id.clone(),
            queue: a.queue.clone(),
            tier: a.tier,
            reviewers,
            reason,
        }
    }
}

/// The runner's end: queue a notice without ever waiting.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Notice>,
    pub on_create: bool,
    /// `gatehouse_webhook_total{outcome}` counts each notice's fate.
    pub metrics: crate::metrics::Metrics,
}

impl Notifier {
    /// Start the delivery task for `webhook`.
    pub fn start(webhook: String, on_create: bool, metrics: crate::metrics::Metrics) -> Notifier {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(webhook, rx, metrics.clone()));
        Notifier {
            tx,
            on_create,
            metrics,
        }
    }

    pub fn send(&self, n: Notice) {
        if self.tx.try_send(n).is_err() {
            self.metrics.webhook("dropped");
            tracing::warn!("webhook queue full: a notice was dropped");
        }
    }
}

/// How many notices are delivered at once: a dead or slow receiver holds only its own slots,
/// never the notices behind it in the queue.
const CONCURRENT: usize = 16;

async fn deliver(url: String, mut rx: mpsc::Receiver<Notice>, counters: crate::metrics::Metrics) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhook disabled: cannot build an HTTP client: {e}");
            return;
        }
    };
    let url: Arc<str> = url.into();
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
    while let Some(n) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (client, url, counters) = (client.clone(), url.clone(), counters.clone());
        tokio::spawn(async move {
            deliver_one(&client, &url, &n, &counters).await;
            drop(slot);
        });
    }
}

/// One notice, with its own retries and backoff.
async fn deliver_one(
    client: &reqwest::Client,
    url: &str,
    n: &Notice,
    counters: &crate::metrics::Metrics,
) {
    let mut wait = Duration::from_millis(250);
    for attempt in 1..=ATTEMPTS {
        let r = client.post(url).json(n).send().await;
        let error = match r {
            Ok(resp) if resp.status().is_success() => {
                counters.webhook("sent");
                return;
            }
            Ok(resp) => format!("HTTP {}", resp.status()),
            Err(e) => crate::text::error_chain(&e),
        };
        if attempt == ATTEMPTS {
            counters.webhook("failed");
            tracing::warn!(
                "webhook {url} gave up on {} for approval {} after {ATTEMPTS} attempts: {error}",
                n.event,
                n.approval_id
            );
            return;
        }
        counters.webhook("retried");
        // The first failure is what an operator needs to see; the retries only repeat it.
        if attempt == 1 {
            tracing::warn!(
                "webhook {url} failed for {} of approval {} ({error}); retrying",
                n.event,
                n.approval_id
            );
        } else {
            tracing::debug!("webhook attempt {attempt} failed ({error}); retrying in {wait:?}");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}
