//! The follower's wake-up: one dedicated connection (not from the pool, which would drop
//! notifications) that `LISTEN`s for the commits of other daemons. A notification is only a
//! hint to read the table now instead of at the next poll; after every reconnect the table is
//! read again, since notifications sent meanwhile are lost.

use super::Shared;
use super::commit::lock;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

/// Keep a `LISTEN gatehouse_audit` connection up for as long as the daemon runs, waking
/// `wake` when another daemon committed past what this one has seen.
pub(super) async fn listen(url: String, shared: Arc<Shared>, wake: Arc<Notify>) {
    loop {
        match tokio_postgres::connect(&url, NoTls).await {
            Ok((client, mut conn)) => {
                let (shared2, wake2) = (shared.clone(), wake.clone());
                let driver = tokio::spawn(async move {
                    let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(Ok(m)) = messages.next().await {
                        let AsyncMessage::Notification(n) = m else {
                            continue;
                        };
                        // This daemon's own commits notify too: only newer ones matter.
                        let seq = n.payload().parse::<i64>().unwrap_or(i64::MAX);
                        if seq > *lock(&shared2.known) {
                            wake2.notify_one();
                        }
                    }
                });
                if client.batch_execute("LISTEN gatehouse_audit").await.is_ok() {
                    wake.notify_one();
                }
                let _ = driver.await;
            }
            Err(e) => tracing::debug!("LISTEN connection: {e}"),
        }
        // Backoff before reconnecting to a database that is down; the poll covers meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
