//! Keeping the index fresh from a running daemon. The bot runtime calls
//! [`Indexer::notify`] with each batch of new or changed messages as it hears of them; the
//! indexer applies them (with everything else the change log holds: edits, deletes, channel
//! renames) within moments, and on a timer catches what no event announced.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::index::{self, IndexDir};
use crate::db::Pool;
use crate::error::Result;

/// How long the indexer waits after a wake-up for more, so a burst is one commit.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The indexer's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub backlog: AtomicU64,
    pub indexed: AtomicU64,
    pub removed: AtomicU64,
    pub syncs: AtomicU64,
    pub errors: AtomicU64,
}

impl Stats {
    /// Prometheus lines: (name, help, kind, value).
    pub fn metrics(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let v = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            (
                "chatctl_search_backlog",
                "Change-log entries the search index has not applied yet",
                "gauge",
                v(&self.backlog),
            ),
            (
                "chatctl_search_documents_indexed_total",
                "Messages and channels (re)indexed by the daemon",
                "counter",
                v(&self.indexed),
            ),
            (
                "chatctl_search_documents_removed_total",
                "Documents removed from the index (deleted messages and channels)",
                "counter",
                v(&self.removed),
            ),
            (
                "chatctl_search_syncs_total",
                "Index syncs run by the daemon",
                "counter",
                v(&self.syncs),
            ),
            (
                "chatctl_search_errors_total",
                "Index syncs that failed (retried on the next wake-up)",
                "counter",
                v(&self.errors),
            ),
        ]
    }
}

/// The daemon's indexer.
pub struct Indexer {
    pool: Pool,
    dir: IndexDir,
    wake: Notify,
    every: Duration,
    pub stats: Arc<Stats>,
}

impl Indexer {
    /// The index it keeps fresh.
    pub fn dir(&self) -> &IndexDir {
        &self.dir
    }

    /// The database it reads.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// An indexer of `dir` that also syncs every `every` without being told.
    pub fn new(pool: Pool, dir: IndexDir, every: Duration) -> Indexer {
        Indexer {
            pool,
            dir,
            wake: Notify::new(),
            every,
            stats: Default::default(),
        }
    }

    /// Messages arrived or changed: bring the index up to date soon.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Applies what the change log holds now. With no index yet it does nothing: `chatctl up`
    /// or `chatctl search reindex` builds one, and from then on the daemon keeps it fresh.
    pub async fn sync(&self) -> Result<Option<index::IndexReport>> {
        if self.dir.current_name()?.is_none() {
            return Ok(None);
        }
        let report = index::sync(&self.pool, &self.dir, &|_| {}).await?;
        let s = &self.stats;
        s.syncs.fetch_add(1, Ordering::Relaxed);
        s.indexed
            .fetch_add(report.messages + report.channels, Ordering::Relaxed);
        s.removed.fetch_add(report.deleted, Ordering::Relaxed);
        if let Some(note) = &report.note {
            tracing::info!(messages = report.messages, "search index: {note}");
        }
        let backlog = index::backlog(&self.pool, report.watermark).await?;
        s.backlog.store(backlog, Ordering::Relaxed);
        Ok(Some(report))
    }

    /// Runs until dropped (the daemon aborts it on shutdown; a commit is atomic, so an abort
    /// at any point leaves the index whole).
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned_at = std::time::Instant::now() - Duration::from_secs(3600);
        loop {
            tokio::select! {
                _ = self.wake.notified() => tokio::time::sleep(DEBOUNCE).await,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.sync().await {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %format!("{e:#}"), "search index sync failed; retrying on the next wake-up");
            }
            if pruned_at.elapsed() >= Duration::from_secs(3600) {
                pruned_at = std::time::Instant::now();
                match index::prune(&self.pool, index::retention()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(entries = n, "pruned the search change log"),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot prune the search change log")
                    }
                }
            }
        }
    }
}
