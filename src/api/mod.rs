//! `chatctl serve`: the product's backend endpoints, for the web app, behind Supabase access
//! tokens. Each endpoint calls the library path the CLI and the daemon use (a reply is
//! [`crate::bots::reply::suggest_reply`], a summary [`crate::bots::digest::summary`], a search
//! [`crate::search::search`]), and what a caller may reach is decided by running the reading
//! queries as the caller under row level security, not by checks written here.
//!
//! A replica keeps nothing another needs: tokens are verified on their own, the AI's daily
//! budgets live in the database, and each replica keeps its own search index fresh from the
//! change log. Only the rate limit is per replica (see [`limits`]).

pub mod auth;
mod endpoints;
mod error;
pub mod limits;
mod metrics;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sqlx::PgPool;

pub use auth::{Caller, Verifier};
pub use endpoints::{Profile, Role, Stats, read_profile as profile};
pub use error::ApiError;
pub use metrics::ROUTES;

use crate::config::{Config, ServeSettings};
use crate::error::Result;
use crate::search::indexer::Indexer;

/// How often a replica applies the change log to its search index without being told.
const INDEX_EVERY: Duration = Duration::from_secs(1);

/// What the endpoints share.
pub struct Api {
    pool: PgPool,
    verifier: Verifier,
    engine: Arc<dyn crate::ai::LanguageModel>,
    settings: ServeSettings,
    indexer: Arc<Indexer>,
    limiter: limits::RateLimiter,
    /// Requests being answered; past `serve.max_in_flight` a request is refused at once (503)
    /// instead of queueing without bound.
    in_flight: Arc<tokio::sync::Semaphore>,
    metrics: metrics::Metrics,
    /// The open index, and the indexer's sync count it has seen.
    reader: std::sync::Mutex<Option<(String, u64, Arc<crate::search::Reader>)>>,
}

/// A server bound and ready: [`serve`] runs it.
pub struct Bound {
    pub addr: std::net::SocketAddr,
    pub listener: tokio::net::TcpListener,
    pub api: Arc<Api>,
}

/// The API of the database at `url`, bound to `listen` (port 0: any free one).
pub async fn bind(config: &Config, url: &str, listen: &str) -> Result<Bound> {
    let secret = auth::project_secret(config)?;
    let jwks = config.serve.jwks_url.clone();
    if secret.is_none() && jwks.is_none() {
        return Err(crate::error::Error::usage(
            "serve needs the project's JWT secret or its JWKS to verify access tokens",
        )
        .with_help(
            "set SUPABASE_JWT_SECRET (Supabase dashboard: Settings, API, JWT secret), or \
             SUPABASE_URL for a project with asymmetric signing keys",
        )
        .into());
    }
    let pool = crate::db::daemon_pool(url, config).await?;
    let ai_stats: Arc<crate::ai::Stats> = Default::default();
    let engine = crate::ai::engine(config, Some(pool.clone()), ai_stats.clone())?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        anyhow::Error::from(e).context(crate::error::Error::usage(format!(
            "cannot listen on {listen}"
        )))
    })?;
    let addr = listener.local_addr()?;
    let dir = crate::search::IndexDir::new(config.search_index_dir());
    // An index of another database is never served, not even until the first sync.
    if crate::search::index::retire_if_foreign(&pool, &dir).await? {
        tracing::warn!(dir = %dir.path.display(), "the search index was built from another database: rebuilding it (searches use PostgreSQL meanwhile)");
    }
    let indexer = Arc::new(Indexer::new(pool.clone(), dir, INDEX_EVERY));
    Ok(Bound {
        addr,
        listener,
        api: Arc::new(Api {
            metrics: metrics::Metrics::new(ai_stats, indexer.stats.clone()),
            pool,
            verifier: Verifier::new(secret.as_deref(), jwks),
            engine,
            limiter: limits::RateLimiter::new(config.serve.rate_limit),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.serve.max_in_flight)),
            settings: config.serve.clone(),
            indexer,
            reader: Default::default(),
        }),
    })
}

/// The endpoints, with their limits.
pub fn router(api: Arc<Api>) -> axum::Router {
    let mut router = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(endpoints::ready))
        .route("/metrics", get(endpoints::metrics))
        .route("/api/openapi.json", get(endpoints::openapi))
        .route(
            "/api/chat/generate-response",
            post(endpoints::generate_response),
        )
        .route("/api/users/{user_id}/profile", get(endpoints::profile))
        .route(
            "/api/channels/{channel_id}/summary",
            post(endpoints::summary),
        )
        .route("/api/search", get(endpoints::search))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(api.settings.body_limit))
        .layer(axum::middleware::from_fn_with_state(api.clone(), track));
    if !api.settings.cors_origins.is_empty() {
        router = router.layer(cors(&api.settings.cors_origins));
    }
    router.with_state(api)
}

/// CORS for the configured origins: the web app's requests (a bearer token, a JSON body),
/// no cookies.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderValue, Method, header};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(3600))
}

/// Every request: a place among those in flight (503 `overloaded` when there is none), the
/// time limit, then its route, status and latency in the metrics.
async fn track(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| api.metrics.route_name(p.as_str()));
    // Probes and the document are cheap and never shed (a replica at capacity is alive).
    let sheddable = route.starts_with("/api/") && route != "/api/openapi.json";
    let place = api.in_flight.clone().try_acquire_owned();
    let response = if sheddable && place.is_err() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "this replica is answering {} requests already; try again",
                api.settings.max_in_flight
            ),
        )
        .retry_after(1)
        .into_response()
    } else {
        match tokio::time::timeout(api.settings.request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request took longer than {} s and was stopped",
                    api.settings.request_timeout.as_secs_f64()
                ),
            )
            .retry_after(1)
            .into_response(),
        }
    };
    drop(place);
    api.metrics
        .observe(route, response.status(), started.elapsed());
    response
}

/// Serves `bound` until `shutdown` resolves; requests in flight finish first. The replica's
/// search index is built if there is none, then kept fresh from the change log.
pub async fn serve(
    bound: Bound,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let indexer = bound.api.indexer.clone();
    let keep_fresh = tokio::spawn(async move {
        // None yet, or one an older chatctl wrote: build one (it is a cache of the database).
        if !matches!(indexer.dir().open(), Ok(Some(_))) {
            tracing::info!(dir = %indexer.dir().path.display(), "no usable search index: building one (searches use PostgreSQL meanwhile)");
            if let Err(e) = crate::search::index::build(
                indexer.pool(),
                indexer.dir(),
                &Default::default(),
                &|_| {},
            )
            .await
            {
                tracing::warn!(error = %format!("{e:#}"), "cannot build the search index; searches use PostgreSQL");
            }
        }
        indexer.run().await;
    });
    let result = axum::serve(bound.listener, router(bound.api))
        .with_graceful_shutdown(shutdown)
        .await;
    keep_fresh.abort();
    result?;
    Ok(())
}

impl Api {
    /// The search index as of its latest sync, or `None` while there is none (searches then
    /// run on PostgreSQL).
    fn reader(&self) -> Result<Option<Arc<crate::search::Reader>>> {
        let Some(name) = self.indexer.dir().current_name()? else {
            return Ok(None);
        };
        let syncs = self
            .indexer
            .stats
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut cached = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        match cached.as_mut() {
            Some((n, seen, r)) if *n == name => {
                if *seen != syncs {
                    r.reload()?;
                    *seen = syncs;
                }
                Ok(Some(r.clone()))
            }
            _ => match crate::search::Reader::open(self.indexer.dir()) {
                Ok(r) => {
                    let r = Arc::new(r);
                    *cached = Some((name, syncs, r.clone()));
                    Ok(Some(r))
                }
                // An index of an older format, until the replica's rebuild swaps a new one in.
                Err(e) => {
                    tracing::debug!(error = %format!("{e:#}"), "search index unusable; searching PostgreSQL");
                    Ok(None)
                }
            },
        }
    }
}

impl FromRequestParts<Arc<Api>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        api: &Arc<Api>,
    ) -> std::result::Result<Caller, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "send the user's Supabase access token: Authorization: Bearer TOKEN",
                )
            })?;
        let caller = api
            .verifier
            .verify(token.trim())
            .await
            .map_err(|e| ApiError::unauthorized(e.0))?;
        if let Err(wait) = api.limiter.take(caller.user_id) {
            api.metrics.rate_limited();
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} requests in a minute; try again in {wait} s",
                    api.settings.rate_limit
                ),
            )
            .retry_after(wait));
        }
        Ok(caller)
    }
}
