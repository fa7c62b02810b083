//! How long the runner is busy: it alone makes every change, so the share of time it spends
//! handling (rather than waiting for work) says how near the daemon is to its limit.

use prometheus_client::metrics::counter::Counter;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Instant;

/// The runner's future, timed: every poll's duration is added to `busy`.
pub struct Timed<F> {
    inner: Pin<Box<F>>,
    busy: Counter<f64, AtomicU64>,
}

impl<F> Timed<F> {
    pub fn new(inner: F, busy: Counter<f64, AtomicU64>) -> Self {
        Timed {
            inner: Box::pin(inner),
            busy,
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let started = Instant::now();
        let r = self.inner.as_mut().poll(cx);
        self.busy.inc_by(started.elapsed().as_secs_f64());
        r
    }
}
