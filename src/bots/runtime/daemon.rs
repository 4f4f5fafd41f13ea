//! The daemon's loop ([`Runtime::run`]): a catch-up at start, on every wake-up and every
//! poll interval, the posting tasks in flight, and a graceful shutdown.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{EventSource, Metrics, Pass, Runtime, Wake};
use crate::error::Result;

impl Runtime {
    /// Logs the outcome of posting tasks that have finished.
    fn reap_inflight(&self) {
        let mut set = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(done) = set.try_join_next() {
            match done {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    Metrics::inc(&self.metrics.errors);
                    tracing::warn!(error = %e, "posting replies failed; the claims will be retried after their lease");
                }
                Err(e) => {
                    Metrics::inc(&self.metrics.errors);
                    tracing::error!(error = %e, "a posting task panicked; this is a bug");
                }
            }
        }
    }

    /// Waits (at most `grace`) for posting tasks still running; what does not finish stays
    /// claimed and is taken over after its lease.
    async fn finish_inflight(&self, grace: Duration) {
        let mut set = std::mem::take(&mut *self.inflight.lock().unwrap_or_else(|e| e.into_inner()));
        let drained = tokio::time::timeout(grace, async {
            while let Some(done) = set.join_next().await {
                if let Ok(Err(e)) = done {
                    tracing::warn!(error = %e, "posting replies failed during shutdown");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = set.len(),
                "shutdown grace ran out with replies still being posted"
            );
        }
    }

    /// Runs until `shutdown` resolves: a catch-up at start, on every wake-up and every poll
    /// interval. Work in progress finishes before it returns; errors are logged and retried.
    pub async fn run(
        &self,
        source: &mut dyn EventSource,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        self.pipelined
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(sink) = source.typing_sink() {
            let _ = self.typing.set(sink);
        }
        let mut watched = self.watches().await?;
        source.watch(&watched);
        // Aborted when the daemon stops (an index commit is atomic: nothing is left half).
        let _indexer = self
            .indexer
            .clone()
            .map(|ix| AbortOnDrop(tokio::spawn(ix.run())));
        let mut was_connected = false;
        tokio::pin!(shutdown);
        let mut poll = tokio::time::interval(self.opts.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut failures = 0u32;
        // The catch-up (a sweep from the cursor through the overlap) runs beside the handling
        // of named new messages, so a long sweep never holds up the hot path. Claims make the
        // two safe together: a message either may reach is replied to once.
        let mut sweep: Option<Pin<Box<dyn Future<Output = Result<Pass>> + Send + '_>>> = None;
        let mut sweep_again = false;
        loop {
            let mut start_sweep = false;
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    self.finish_inflight(Duration::from_secs(30)).await;
                    return Ok(());
                }
                done = async { sweep.as_mut().expect("guarded").await }, if sweep.is_some() => {
                    sweep = None;
                    self.swept(done, &mut failures);
                    start_sweep = std::mem::take(&mut sweep_again);
                }
                wake = source.next() => {
                    match wake {
                        Ok(Wake::Inserted(ids)) => {
                            Metrics::inc(&self.metrics.events_received);
                            self.index_soon();
                            self.reap_inflight();
                            // The sweep is driven meanwhile: it may hold what this waits for
                            // (the claim lock), and only being polled lets it go.
                            // One span per event: every log line of its handling carries it.
                            let span = tracing::info_span!("event", source = source.name(), kind = "inserted", messages = ids.len());
                            let handled = tracing::Instrument::instrument(self.handle_inserted(&ids), span);
                            tokio::pin!(handled);
                            let handled = loop {
                                tokio::select! {
                                    biased;
                                    r = &mut handled => break r,
                                    done = async { sweep.as_mut().expect("guarded").await }, if sweep.is_some() => {
                                        sweep = None;
                                        self.swept(done, &mut failures);
                                        start_sweep = std::mem::take(&mut sweep_again);
                                    }
                                }
                            };
                            if let Err(e) = handled {
                                Metrics::inc(&self.metrics.errors);
                                tracing::warn!(error = %e, "handling new messages failed; the next catch-up retries");
                            }
                        }
                        Ok(Wake::Notified) => {
                            Metrics::inc(&self.metrics.events_received);
                            self.index_soon();
                            start_sweep = true;
                        }
                        Ok(Wake::Connected) => {
                            self.metrics.source_connected.store(true, std::sync::atomic::Ordering::Relaxed);
                            if was_connected {
                                Metrics::inc(&self.metrics.reconnects);
                            }
                            was_connected = true;
                            start_sweep = true;
                        }
                        Ok(Wake::Disconnected) => {
                            self.metrics.source_connected.store(false, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!(source = source.name(), "event source disconnected; polling until it is back");
                        }
                        Err(e) => {
                            self.metrics.source_connected.store(false, std::sync::atomic::Ordering::Relaxed);
                            Metrics::inc(&self.metrics.errors);
                            failures += 1;
                            let backoff = Duration::from_millis(200 * u64::from(failures.min(50)));
                            tracing::warn!(source = source.name(), attempt = failures, error = %e, "event source failed; retrying");
                            tokio::time::sleep(backoff).await;
                            start_sweep = true;
                        }
                    }
                }
                _ = poll.tick() => {
                    // Channels joined or left since: listen to what the bots serve now.
                    match self.watches().await {
                        Ok(w) if w != watched => {
                            source.watch(&w);
                            watched = w;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot list the bots' channels"),
                    }
                    start_sweep = true;
                }
            }
            if start_sweep {
                self.reap_inflight();
                if sweep.is_some() {
                    // What this one has passed may have changed: sweep again after it.
                    sweep_again = true;
                } else {
                    let span = tracing::info_span!("sweep", source = source.name());
                    sweep = Some(Box::pin(tracing::Instrument::instrument(
                        self.catch_up(),
                        span,
                    )));
                }
            }
        }
    }

    /// Logs how a sweep (catch-up) ended.
    fn swept(&self, done: Result<Pass>, failures: &mut u32) {
        Metrics::inc(&self.metrics.catch_ups);
        match done {
            Ok(p) => {
                *failures = 0;
                if p.read > 0 {
                    tracing::debug!(
                        read = p.read,
                        replied = p.replied,
                        lost = p.lost_claims,
                        "catch-up"
                    );
                }
            }
            Err(e) => {
                Metrics::inc(&self.metrics.errors);
                tracing::warn!(error = %e, "catch-up failed; will retry");
            }
        }
    }
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
