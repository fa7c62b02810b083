//! What the daemons say about a load: their runner's busy time and their group commits, read
//! from `/metrics` before and after it, so a figure comes with where its time went.

use super::load::Target;
use std::sync::Arc;

/// Totals of the counters read, summed over the daemons.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    pub runner_busy_seconds: f64,
    pub commits: f64,
    pub committed_writes: f64,
    pub commit_seconds: f64,
}

/// Read every daemon's counters; `Err` says which could not be read and why.
pub async fn read(targets: &[Arc<Target>]) -> Result<Counters, String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let mut sum = Counters::default();
    for t in targets {
        let url = format!("http://{}/metrics", t.host);
        let mut req = client.get(&url);
        if let Some(auth) = &t.auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: {}", resp.status()));
        }
        let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
        let c = parse(&text).ok_or_else(|| format!("{url}: no runner or commit counters"))?;
        sum.runner_busy_seconds += c.runner_busy_seconds;
        sum.commits += c.commits;
        sum.committed_writes += c.committed_writes;
        sum.commit_seconds += c.commit_seconds;
    }
    Ok(sum)
}

fn parse(text: &str) -> Option<Counters> {
    let value = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
    };
    Some(Counters {
        runner_busy_seconds: value("gatehouse_runner_busy_seconds_total")?,
        commits: value("gatehouse_commits_total")?,
        committed_writes: value("gatehouse_committed_writes_total")?,
        commit_seconds: value("gatehouse_commit_seconds_total")?,
    })
}

/// One line on where the daemons' time went between `before` and `after`.
pub fn summary(
    before: Counters,
    after: Counters,
    elapsed: f64,
    answered: u64,
    daemons: usize,
) -> String {
    let busy = after.runner_busy_seconds - before.runner_busy_seconds;
    let commits = after.commits - before.commits;
    let writes = after.committed_writes - before.committed_writes;
    let per = |x: f64, n: f64| if n > 0.0 { x / n } else { 0.0 };
    format!(
        "busy {:.1}% of the run{}, {:.1} µs per submission; {:.0} commits, {:.1} writes and {:.2} ms each",
        per(busy, elapsed * daemons as f64) * 100.0,
        if daemons > 1 {
            " (mean of the daemons)"
        } else {
            ""
        },
        per(busy, answered as f64) * 1e6,
        commits,
        per(writes, commits),
        per(after.commit_seconds - before.commit_seconds, commits) * 1e3,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_counters_from_openmetrics_text() {
        let text = "# HELP gatehouse_commits Group commits\n# TYPE gatehouse_commits counter\n\
                    gatehouse_commits_total 120\ngatehouse_committed_writes_total 1500\n\
                    gatehouse_commit_seconds_total 0.5\ngatehouse_runner_busy_seconds_total 2.25\n# EOF\n";
        let c = parse(text).unwrap();
        assert_eq!(
            c,
            Counters {
                runner_busy_seconds: 2.25,
                commits: 120.0,
                committed_writes: 1500.0,
                commit_seconds: 0.5,
            }
        );
        assert_eq!(parse("gatehouse_commits_total 1\n"), None);
    }
}
