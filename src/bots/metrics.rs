//! The daemon's health and metrics: `/healthz` (alive), `/readyz` (database and event source
//! connected) and `/metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::error::Result;

/// A label value as the exposition format writes it: `\\`, `\"` and `\n` escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counters the runtime updates; cheap to share.
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_received: AtomicU64,
    pub messages_handled: AtomicU64,
    pub replies_posted: AtomicU64,
    pub claims_lost: AtomicU64,
    pub replies_capped: AtomicU64,
    pub reconnects: AtomicU64,
    /// Catch-ups (sweeps from the cursor) that finished, failed ones included.
    pub catch_ups: AtomicU64,
    pub errors: AtomicU64,
    pub source_connected: AtomicBool,
    /// The AI engine's counters (requests, retries, budget refusals, tokens...).
    pub ai: std::sync::Arc<crate::ai::Stats>,
    /// The search indexer's counters, when the daemon keeps an index fresh.
    pub search: std::sync::OnceLock<std::sync::Arc<crate::search::indexer::Stats>>,
    /// Message committed → handler started.
    latency: crate::prom::Histogram,
    /// The same, bot by bot.
    bots: std::sync::Mutex<std::collections::BTreeMap<String, Arc<BotMetrics>>>,
}

/// Reads one counter of a bot's.
type Counter = fn(&BotMetrics) -> &AtomicU64;

/// One bot's counters, exported with a `bot` label.
#[derive(Debug, Default)]
pub struct BotMetrics {
    /// Messages the bot looked at.
    pub messages: AtomicU64,
    pub replies: AtomicU64,
    pub capped: AtomicU64,
    /// Replies that failed (posting, or the AI engine falling back).
    pub errors: AtomicU64,
    latency: crate::prom::Histogram,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one dispatch latency, of `bot`.
    pub fn observe_latency(&self, bot: &str, seconds: f64) {
        self.latency.observe(seconds);
        self.bot(bot).latency.observe(seconds);
    }

    /// The counters of `bot` (made at its first use).
    pub fn bot(&self, bot: &str) -> Arc<BotMetrics> {
        let mut bots = self.bots.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up without allocating: this runs for every batch and every reply.
        if let Some(m) = bots.get(bot) {
            return m.clone();
        }
        bots.entry(bot.to_owned()).or_default().clone()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = crate::build_info::metric();
        let counters = [
            (
                "chatctl_bot_events_received_total",
                "Wake-ups from the event source",
                &self.events_received,
            ),
            (
                "chatctl_bot_messages_handled_total",
                "Messages read by the dispatcher",
                &self.messages_handled,
            ),
            (
                "chatctl_bot_replies_posted_total",
                "Replies posted",
                &self.replies_posted,
            ),
            (
                "chatctl_bot_claims_lost_total",
                "Messages another replica claimed first",
                &self.claims_lost,
            ),
            (
                "chatctl_bot_replies_capped_total",
                "Replies not posted because of a reply cap",
                &self.replies_capped,
            ),
            (
                "chatctl_bot_reconnects_total",
                "Event source reconnections",
                &self.reconnects,
            ),
            (
                "chatctl_bot_catch_ups_total",
                "Catch-ups (reads of what the event source may have missed) finished",
                &self.catch_ups,
            ),
            (
                "chatctl_bot_errors_total",
                "Failed catch-ups and event source errors",
                &self.errors,
            ),
        ];
        let counters = counters
            .into_iter()
            .map(|(name, help, v)| (name, help, v.load(Ordering::Relaxed)))
            .chain(self.ai.counters());
        for (name, help, v) in counters {
            crate::prom::single(&mut out, name, help, "counter", v);
        }
        if let Some(search) = self.search.get() {
            for (name, help, kind, v) in search.metrics() {
                crate::prom::single(&mut out, name, help, kind, v);
            }
        }
        let name = "chatctl_bot_dispatch_latency_seconds";
        crate::prom::header(
            &mut out,
            name,
            "Message committed to handler started",
            "histogram",
        );
        self.latency.render(&mut out, name, "");
        let bots: Vec<(String, Arc<BotMetrics>)> = self
            .bots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let per_bot: [(&str, &str, Counter); 4] = [
            (
                "chatctl_bot_messages_total",
                "Messages each bot looked at",
                |b| &b.messages,
            ),
            (
                "chatctl_bot_replies_total",
                "Replies each bot posted",
                |b| &b.replies,
            ),
            (
                "chatctl_bot_capped_total",
                "Replies each bot did not post because of a reply cap",
                |b| &b.capped,
            ),
            (
                "chatctl_bot_reply_errors_total",
                "Replies that failed, or fell back to the offline engine, by bot",
                |b| &b.errors,
            ),
        ];
        for (name, help, counter) in per_bot {
            crate::prom::header(&mut out, name, help, "counter");
            for (bot, m) in &bots {
                let _ = writeln!(
                    out,
                    "{name}{{bot=\"{}\"}} {}",
                    label(bot),
                    counter(m).load(Ordering::Relaxed)
                );
            }
        }
        let name = "chatctl_bot_latency_seconds";
        crate::prom::header(
            &mut out,
            name,
            "Message committed to handler started, by bot",
            "histogram",
        );
        for (bot, m) in &bots {
            m.latency
                .render(&mut out, name, &format!("bot=\"{}\"", label(bot)));
        }
        crate::prom::process(&mut out);
        out
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    pool: PgPool,
}

/// Serves the endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    pool: PgPool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move { s.metrics.render() }),
        )
        .with_state(AppState { metrics, pool });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn ready(State(s): State<AppState>) -> (StatusCode, String) {
    let db = sqlx::query("select 1").execute(&s.pool).await.is_ok();
    let source = s.metrics.source_connected.load(Ordering::Relaxed);
    let body = format!(
        "database: {}\nevent source: {}\n",
        if db { "ok" } else { "down" },
        if source { "connected" } else { "disconnected" }
    );
    (
        if db && source {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body,
    )
}
