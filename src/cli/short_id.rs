//! Ids as scripts may give them: a full UUID, or the short id the console shows (the last 8
//! hex digits, see `tui::state::short_id`) or any unambiguous tail of at least 4 hex digits.
//! UUIDv7 ids share their leading (time) digits, so it is the tail that tells them apart.

use super::Failure;
use super::remote::{Remote, error_message};
use crate::domain::ApprovalStatus;
use crate::runner::{ListQuery, RunnerHandle};
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

/// Fewest hex digits accepted as a short id.
const MIN_DIGITS: usize = 4;
/// Ids listed per page while looking for a short one.
const PAGE: usize = 1000;
/// Matches named in an "ambiguous" error.
const SHOWN: usize = 5;

/// What the user typed: a whole id, or the hex tail of one.
pub enum IdArg {
    Full(Uuid),
    Tail(String),
}

/// `what` is "approval" or "run", for messages.
pub fn parse(raw: &str, what: &str) -> Result<IdArg, Failure> {
    if let Ok(id) = Uuid::parse_str(raw) {
        return Ok(IdArg::Full(id));
    }
    let tail = raw.trim().to_ascii_lowercase().replace('-', "");
    if tail.len() >= MIN_DIGITS && tail.len() < 32 && tail.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(IdArg::Tail(tail));
    }
    Err(Failure::usage(format!(
        "{raw:?} is not a{} {what} id: give the whole id or its last {MIN_DIGITS} or more hex \
         digits (the console shows the last 8)",
        if what.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "n"
        } else {
            ""
        }
    )))
}

/// The one id ending in `tail` among `ids`, or a usage error naming the problem.
fn pick(tail: &str, what: &str, ids: &[Uuid]) -> Result<Uuid, Failure> {
    let found: Vec<Uuid> = ids
        .iter()
        .copied()
        .filter(|id| id.simple().to_string().ends_with(tail))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure::usage(format!("no {what} id ends in {tail}"))),
        many => {
            let shown: Vec<String> = many.iter().take(SHOWN).map(Uuid::to_string).collect();
            Err(Failure::usage(format!(
                "{tail} is ambiguous: {} {what}s end in it ({}{}); give more digits",
                many.len(),
                shown.join(", "),
                if many.len() > SHOWN { ", …" } else { "" }
            )))
        }
    }
}

/// Which approvals a short id is looked up among.
#[derive(Clone, Copy, PartialEq)]
pub enum Among {
    /// Every approval (`show`).
    All,
    /// Pending ones first, the only ones a decision can act on; every approval if none
    /// matches (so the answer can say it was already decided). Also spares listing a large
    /// history for the common case.
    PendingFirst,
}

/// Resolve an approval id on a daemon, page by page.
pub async fn approval_remote(remote: &Remote, raw: &str, among: Among) -> Result<Uuid, Failure> {
    let tail = match parse(raw, "approval")? {
        IdArg::Full(id) => return Ok(id),
        IdArg::Tail(t) => t,
    };
    if among == Among::PendingFirst {
        let pending = remote_approval_ids(remote, "pending").await?;
        if let Some(found) = pick_if_any(&tail, &pending)? {
            return Ok(found);
        }
    }
    pick(
        &tail,
        "approval",
        &remote_approval_ids(remote, "all").await?,
    )
}

async fn remote_approval_ids(remote: &Remote, status: &str) -> Result<Vec<Uuid>, Failure> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/v1/approvals?status={status}&limit={PAGE}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page = remote_page(remote, &path).await?;
        ids.extend(page_ids(&page["approvals"], "id"));
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return Ok(ids),
        }
    }
}

/// Resolve an approval id in a local runner.
pub async fn approval_local(
    runner: &RunnerHandle,
    raw: &str,
    among: Among,
) -> Result<Uuid, Failure> {
    let tail = match parse(raw, "approval")? {
        IdArg::Full(id) => return Ok(id),
        IdArg::Tail(t) => t,
    };
    if among == Among::PendingFirst {
        let pending = local_approval_ids(runner, Some(ApprovalStatus::Pending)).await?;
        if let Some(found) = pick_if_any(&tail, &pending)? {
            return Ok(found);
        }
    }
    pick(&tail, "approval", &local_approval_ids(runner, None).await?)
}

async fn local_approval_ids(
    runner: &RunnerHandle,
    status: Option<ApprovalStatus>,
) -> Result<Vec<Uuid>, Failure> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = runner
            .list(ListQuery {
                status,
                limit: PAGE,
                after,
                ..Default::default()
            })
            .await
            .map_err(|e| Failure::runtime(e.to_string()))?;
        ids.extend(page.approvals.iter().map(|a| a.id));
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(ids),
        }
    }
}

/// `pick` among `ids`, but `None` instead of "no match".
fn pick_if_any(tail: &str, ids: &[Uuid]) -> Result<Option<Uuid>, Failure> {
    if ids.iter().any(|id| id.simple().to_string().ends_with(tail)) {
        pick(tail, "pending approval", ids).map(Some)
    } else {
        Ok(None)
    }
}

/// Resolve a run id on a daemon.
pub async fn run_remote(remote: &Remote, raw: &str) -> Result<Uuid, Failure> {
    let tail = match parse(raw, "run")? {
        IdArg::Full(id) => return Ok(id),
        IdArg::Tail(t) => t,
    };
    let mut ids = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut path = format!("/v1/runs?limit={PAGE}");
        if let Some(b) = &before {
            path.push_str(&format!("&before={b}"));
        }
        let page = remote_page(remote, &path).await?;
        ids.extend(page_ids(&page["runs"], "run_id"));
        match page["next"].as_str() {
            Some(n) => before = Some(n.to_string()),
            None => break,
        }
    }
    pick(&tail, "run", &ids)
}

/// Resolve a run id in a local runner.
pub async fn run_local(runner: &RunnerHandle, raw: &str) -> Result<Uuid, Failure> {
    let tail = match parse(raw, "run")? {
        IdArg::Full(id) => return Ok(id),
        IdArg::Tail(t) => t,
    };
    let mut ids = Vec::new();
    let mut before = None;
    loop {
        let page = runner
            .runs(before, PAGE)
            .await
            .map_err(|e| Failure::runtime(e.to_string()))?;
        ids.extend(page.runs.iter().map(|r| r.run_id));
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    pick(&tail, "run", &ids)
}

async fn remote_page(remote: &Remote, path: &str) -> Result<Value, Failure> {
    let (code, v) = remote.call(Method::GET, path, None).await?;
    if code != 200 {
        return Err(Failure::runtime(format!(
            "looking up the id: {} (HTTP {code})",
            error_message(&v)
        )));
    }
    Ok(v)
}

fn page_ids(list: &Value, field: &str) -> Vec<Uuid> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|a| a[field].as_str())
                .filter_map(|s| Uuid::parse_str(s).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<Uuid> {
        [
            "019ad000-0000-7000-8000-00000000abcd",
            "019ad000-0000-7000-8000-00001234abcd",
            "019ad000-0000-7000-8000-000000001111",
        ]
        .iter()
        .map(|s| Uuid::parse_str(s).unwrap())
        .collect()
    }

    #[test]
    fn tails_pick_one_or_say_why_not() {
        let ids = ids();
        assert_eq!(pick("1111", "run", &ids).ok(), Some(ids[2]));
        assert_eq!(pick("1234abcd", "run", &ids).ok(), Some(ids[1]));
        let e = pick("abcd", "approval", &ids).err().unwrap();
        assert!(
            e.message.contains("ambiguous: 2 approvals"),
            "{}",
            e.message
        );
        assert_eq!(e.code, 2);
        let e = pick("9999", "run", &ids).err().unwrap();
        assert_eq!(e.message, "no run id ends in 9999");
    }

    #[test]
    fn what_counts_as_an_id() {
        assert!(matches!(
            parse("019ad000-0000-7000-8000-00000000abcd", "run"),
            Ok(IdArg::Full(_))
        ));
        assert!(matches!(parse("ABCD1234", "run"), Ok(IdArg::Tail(t)) if t == "abcd1234"));
        for bad in ["abc", "xyz12345", "", "../etc"] {
            let e = parse(bad, "approval").err().unwrap();
            assert!(e.message.contains("is not an approval id"), "{}", e.message);
        }
    }
}
