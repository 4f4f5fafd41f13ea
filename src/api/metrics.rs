//! `/metrics` of `chatctl serve`: requests by route and status, latency by route, rate-limit
//! refusals, and the AI engine's and the search indexer's counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;

use crate::prom::{self, Histogram};

/// The routes the router serves, as metric labels (a closed set: a label per path pattern,
/// never per id). The OpenAPI document describes exactly these (a test holds them equal).
pub const ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/openapi.json",
    "/api/chat/generate-response",
    "/api/users/{user_id}/profile",
    "/api/channels/{channel_id}/summary",
    "/api/search",
];

pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: BTreeMap<&'static str, Histogram>,
    rate_limited: AtomicU64,
    ai: Arc<crate::ai::Stats>,
    search: Arc<crate::search::indexer::Stats>,
}

impl Metrics {
    pub fn new(ai: Arc<crate::ai::Stats>, search: Arc<crate::search::indexer::Stats>) -> Metrics {
        Metrics {
            requests: Default::default(),
            latency: ROUTES
                .iter()
                .chain(&["unmatched"])
                .map(|r| (*r, Histogram::default()))
                .collect(),
            rate_limited: AtomicU64::new(0),
            ai,
            search,
        }
    }

    /// The label of a matched path pattern.
    pub fn route_name(&self, path: &str) -> &'static str {
        ROUTES
            .iter()
            .find(|r| **r == path)
            .copied()
            .unwrap_or("unmatched")
    }

    pub fn observe(&self, route: &'static str, status: StatusCode, took: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((route, status.as_u16()))
            .or_default() += 1;
        if let Some(h) = self.latency.get(route) {
            h.observe(took.as_secs_f64());
        }
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = crate::build_info::metric();
        let name = "chatctl_api_requests_total";
        prom::header(
            &mut out,
            name,
            "Requests answered, by route and status",
            "counter",
        );
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "{name}{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let name = "chatctl_api_request_duration_seconds";
        prom::header(
            &mut out,
            name,
            "Time to answer a request, by route",
            "histogram",
        );
        for (route, h) in &self.latency {
            h.render(&mut out, name, &format!("route=\"{route}\""));
        }
        prom::single(
            &mut out,
            "chatctl_api_rate_limited_total",
            "Requests refused by the per-user rate limit",
            "counter",
            self.rate_limited.load(Ordering::Relaxed),
        );
        for (name, help, v) in self.ai.counters() {
            prom::single(&mut out, name, help, "counter", v);
        }
        for (name, help, kind, v) in self.search.metrics() {
            prom::single(&mut out, name, help, kind, v);
        }
        prom::process(&mut out);
        out
    }
}
