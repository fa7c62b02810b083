//! `GET /v1/events`: Server-Sent Events, resumable with `Last-Event-ID`.

use super::routes::Caller;
use super::{ApiError, ApiState};
use crate::api::auth::Role;
use crate::domain::Event;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{self, KeepAlive, Sse};
use futures::Stream;
use std::collections::HashMap;
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

const REPLAY_PAGE: usize = 1000;

/// Response header of `GET /v1/events`: the sequence number of the newest durable event when
/// the stream was opened; everything after it comes on the stream.
pub const POSITION_HEADER: &str = "x-gatehouse-position";

pub async fn stream(
    State(state): State<ApiState>,
    Caller(who): Caller,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<
    (
        [(&'static str, String); 1],
        Sse<impl Stream<Item = Result<sse::Event, Infallible>>>,
    ),
    ApiError,
> {
    if !who.has(Role::Reviewer) {
        state.inner.refused(axum::http::StatusCode::FORBIDDEN);
        return Err(ApiError::forbidden(
            "forbidden",
            format!(
                "{} may not read events (it needs the reviewer role)",
                who.name
            ),
        ));
    }
    let raw_after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| params.get("after").cloned());
    let after: Option<u64> = match raw_after {
        None => None,
        Some(s) => Some(s.trim().parse().map_err(|_| {
            ApiError::unprocessable(format!("Last-Event-ID: {s:?} is not a sequence number"))
        })?),
    };
    // The stream holds one of the identity's wait slots for as long as it is open.
    let slot = state.inner.wait_permit(&who.name)?;
    let runner = state.inner.runner.clone();
    // Subscribe first: anything published from now on is either replayed or received live.
    let mut live = runner.subscribe();
    let position = runner.position().await?;
    let mut last = match after {
        // Only durable events are ever sent, so a client cannot legitimately be ahead of the
        // log (it saw another data directory, or another daemon). Resuming "after" it would
        // silently drop every event until the log caught up: refuse instead.
        Some(a) if a > position => {
            return Err(ApiError::unprocessable(format!(
                "Last-Event-ID: {a} is ahead of the newest event ({position}); reconnect without it"
            )));
        }
        Some(a) => a,
        None => position,
    };
    let (tx, rx) = mpsc::channel::<Event>(256);
    let drain = state.inner.drain.clone();
    tokio::spawn(async move {
        let _slot = slot;
        if after.is_some() && replay(&runner, &tx, &mut last).await.is_err() {
            return;
        }
        loop {
            // A draining daemon ends the stream (the client reconnects with Last-Event-ID).
            let next = tokio::select! {
                e = live.recv() => e,
                _ = drain.started() => return,
            };
            match next {
                Ok(e) => {
                    if e.seq <= last {
                        continue;
                    }
                    last = e.seq;
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // Too slow for the live stream: catch up from the log instead.
                    if replay(&runner, &tx, &mut last).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let stream = futures::StreamExt::map(stream, |e: Event| {
        let data = serde_json::to_string(&e).unwrap_or_default();
        Ok(sse::Event::default()
            .id(e.seq.to_string())
            .event(e.kind.event_name())
            .data(data))
    });
    // Where the stream starts: a client that loses the link before the first event resumes
    // from here, not from the beginning of the log.
    Ok((
        [(POSITION_HEADER, position.to_string())],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    ))
}

/// Send every stored event after `last`, advancing it. Err when the client is gone.
async fn replay(
    runner: &crate::runner::RunnerHandle,
    tx: &mpsc::Sender<Event>,
    last: &mut u64,
) -> Result<(), ()> {
    loop {
        // The audit log interleaves non-event records, so page by records, not events.
        let records = runner.audit(*last, REPLAY_PAGE).await.map_err(|_| ())?;
        let n = records.len();
        for r in &records {
            if let Some(e) = Event::from_record(r) {
                tx.send(e).await.map_err(|_| ())?;
            }
            *last = r.seq;
        }
        if n < REPLAY_PAGE {
            return Ok(());
        }
    }
}
