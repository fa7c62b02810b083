//! Replies wait for the commit that covers what they report (group commit); on a shared store
//! a reply about a change another daemon made first becomes a 409.

use super::super::commit::{Deferred, Outcome};
use super::list::standing;
use super::*;

impl Runner {
    pub(super) fn reply<T: Send + 'static>(&mut self, tx: Reply<T>, value: Result<T, RunnerError>) {
        self.reply_about(tx, value, None);
    }

    /// A reply about a change to the approval `about`: on a shared store the change may not
    /// apply (another daemon changed the approval first), and the reply is then a 409 with
    /// the approval as stored.
    pub(super) fn reply_about<T: Send + 'static>(
        &mut self,
        tx: Reply<T>,
        value: Result<T, RunnerError>,
        about: Option<Uuid>,
    ) {
        // A change that leaves the approval pending (an escalation) conflicts with any lost
        // race; a decision or withdrawal only with one the approval did not survive pending
        // (an escalation elsewhere leaves it decidable, and the decision then lands).
        let leaves_pending = (&value as &dyn std::any::Any)
            .downcast_ref::<Result<Approval, RunnerError>>()
            .and_then(|r| r.as_ref().ok())
            .is_some_and(|a| a.is_pending());
        let deferred: Deferred = Box::new(move |outcome| {
            let _ = tx.send(match outcome {
                Outcome::Failed(e) => Err(RunnerError::Unavailable(e.to_string())),
                Outcome::Durable { conflicts, .. } => {
                    match about.and_then(|id| conflicts.get(&id)) {
                        Some(a) if value.is_ok() && (leaves_pending || !a.is_pending()) => {
                            Err(RunnerError::Conflict {
                                code: "already_decided",
                                message: standing(a),
                                approval: Box::new(a.clone()),
                            })
                        }
                        _ => value,
                    }
                }
            });
        });
        self.ledger.commit.defer(deferred, self.ledger.published);
    }

    /// A reply built once the commit it waits for has ended, from the newest published
    /// record (where a subscriber asking now starts).
    pub(super) fn reply_published<T: Send + 'static>(
        &mut self,
        tx: Reply<T>,
        make: impl FnOnce(u64) -> T + Send + 'static,
    ) {
        let deferred: Deferred = Box::new(move |outcome| {
            let _ = tx.send(match outcome {
                Outcome::Failed(e) => Err(RunnerError::Unavailable(e.to_string())),
                Outcome::Durable { published, .. } => Ok(make(*published)),
            });
        });
        self.ledger.commit.defer(deferred, self.ledger.published);
    }
}
