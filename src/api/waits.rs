//! Long polls and event streams held open per identity (DESIGN §9): capped, so that one agent
//! token cannot fill the connection cap and lock every reviewer out. Past the cap a request
//! gets 429 with `Retry-After`; a permit is given back when its wait ends (or its stream is
//! dropped).

use super::{ApiError, ApiState};
use crate::domain::Approval;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// A long poll (`GET /v1/approvals/{id}?wait=`): the approval once it is no longer pending,
/// or as it stands when `wait` is over or the server drains.
///
/// The runner registers the wait under the approval's id and answers it when that approval
/// is decided, expires or is cancelled (and that is durable); the poll costs nothing while
/// other approvals come and go.
pub(super) async fn long_poll(
    state: &ApiState,
    id: Uuid,
    wait: Duration,
    visible: impl Fn(&Approval) -> bool,
) -> Result<Approval, ApiError> {
    let runner = &state.inner.runner;
    let watched = runner
        .watch(id)
        .await?
        .filter(|w| visible(&w.current))
        .ok_or_else(|| ApiError::not_found(format!("no approval {id}")))?;
    let Some(decided) = watched.decided else {
        return Ok(watched.current);
    };
    let deadline = tokio::time::Instant::now() + wait;
    match state.inner.drain.within(deadline, decided).await {
        Ok(Ok(a)) => Ok(a),
        // The runner let the wait go without an answer: its store failed or it stopped, and
        // asking it again reports which (503).
        Ok(Err(_)) => runner
            .get(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no approval {id}"))),
        // Time is up or the server drains: the approval as it stands now (an escalation or
        // the first of two approvals may have changed it meanwhile).
        Err(()) => Ok(runner
            .get(id)
            .await
            .ok()
            .flatten()
            .unwrap_or(watched.current)),
    }
}

#[derive(Debug, Default)]
pub struct Waits {
    open: Mutex<HashMap<String, usize>>,
}

/// One open wait of an identity; dropping it gives the slot back.
#[derive(Debug)]
pub struct WaitPermit {
    waits: Arc<Waits>,
    identity: String,
}

impl Waits {
    /// A slot for `identity`, or 429 when it already holds `max` open waits.
    pub fn acquire(self: &Arc<Self>, identity: &str, max: usize) -> Result<WaitPermit, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(identity.to_string()).or_default();
        if *n >= max {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_waits",
                format!(
                    "{identity} already holds {max} open long polls or event streams \
                     ([server] max_waits_per_identity); retry when one has ended"
                ),
            ));
        }
        *n += 1;
        Ok(WaitPermit {
            waits: self.clone(),
            identity: identity.to_string(),
        })
    }

    /// Open waits of `identity`.
    #[cfg(test)]
    pub fn held(&self, identity: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(identity).copied().unwrap_or(0)
    }
}

impl Drop for WaitPermit {
    fn drop(&mut self) {
        let mut open = self.waits.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.identity) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_per_identity_given_back_on_drop() {
        let w = Arc::new(Waits::default());
        let a = w.acquire("bot", 2).expect("first");
        let _b = w.acquire("bot", 2).expect("second");
        let e = w.acquire("bot", 2).expect_err("third");
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code, "too_many_waits");
        // Another identity is not affected.
        let _c = w.acquire("alice", 2).expect("alice");
        drop(a);
        assert_eq!(w.held("bot"), 1);
        let _d = w.acquire("bot", 2).expect("a slot came back");
    }
}
