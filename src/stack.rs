//! The local stack `chatctl up` runs ([`up`]): the database (the local cluster, or
//! DATABASE_URL) and its migrations, the example workspace, the search index and the bots
//! with their health and metrics endpoints; how to reach each, and stopping it.

use std::io::Write;

use serde::Serialize;

use crate::config::Config;
use crate::db::local::{ClusterState, LocalCluster};
use crate::db::migrate::MigrateReport;
use crate::error::{Error, Result};
use crate::report::Report;

/// What `up` brought up.
#[derive(Debug, Clone)]
pub struct Started {
    pub url: String,
    pub cluster: Option<LocalCluster>,
    /// Whether this process started the local cluster (and so stops it on the way out).
    pub started_cluster: bool,
}

/// Brings the database up: the configured one, or the local cluster (started if needed).
pub async fn start(config: &Config) -> Result<Started> {
    let was_running = match config.database_url() {
        Some(_) => true,
        None => {
            let cluster = crate::db::local_cluster(config)?;
            let state = tokio::task::spawn_blocking(move || cluster.state())
                .await
                .map_err(|e| Error::failed(format!("the local cluster task failed: {e}")))??;
            matches!(state, ClusterState::Running { .. })
        }
    };
    let target = crate::db::target(config).await?;
    Ok(Started {
        url: target.url,
        started_cluster: target.local.is_some() && !was_running,
        cluster: target.local,
    })
}

/// Stops what [`start`] started.
pub async fn stop(started: &Started) -> Result<()> {
    if let (Some(cluster), true) = (&started.cluster, started.started_cluster) {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.stop())
            .await
            .map_err(|e| Error::failed(format!("the local cluster task failed: {e}")))??;
    }
    Ok(())
}

/// The spec `up` applies when it exists, relative to the working directory.
pub const EXAMPLE_SPEC: &str = "config/workspace.example.yaml";

/// What `up` provisioned from a spec file.
#[derive(Debug, Serialize)]
pub struct Provisioned {
    pub file: String,
    pub summary: String,
    pub workspaces: Vec<String>,
}

/// Applies a spec file (no pruning: `up` never removes anything).
pub async fn provision(
    url: &str,
    config: &Config,
    file: &std::path::Path,
    actor: &crate::provision::Actor,
) -> Result<Provisioned> {
    let files = crate::provision::spec::read(&[file.to_owned()])?;
    let mut conn = crate::db::connect(url, config).await?;
    let plan = crate::provision::plan(
        &mut conn,
        &files,
        &crate::provision::PlanOptions { prune: false },
    )
    .await?;
    if !plan.is_empty() {
        crate::provision::apply::apply(&mut conn, &plan.changes, actor).await?;
    }
    Ok(Provisioned {
        file: file.display().to_string(),
        summary: plan.summary(),
        workspaces: files
            .iter()
            .flat_map(|f| f.spec.workspaces.iter().map(|w| w.slug.clone()))
            .collect(),
    })
}

/// The bots `up` runs.
pub struct RunningBots {
    pub names: Vec<String>,
    pub runtime: crate::bots::runtime::Runtime,
    pub source: Box<dyn crate::realtime::EventSource>,
}

/// Loads `dir`'s bots, creates their users if missing, and connects their event source.
pub async fn bots(
    url: &str,
    config: &Config,
    dir: &std::path::Path,
    actor: &crate::provision::Actor,
) -> Result<RunningBots> {
    use crate::bots::runtime::{self, Runtime, RuntimeOptions};
    let files = crate::bots::spec::load_dir(dir)?;
    let pool = crate::db::daemon_pool(url, config).await?;
    let bots = runtime::prepare(&pool, files.into_iter().map(|f| f.spec).collect(), actor).await?;
    let names = bots.iter().map(|b| b.spec.name.clone()).collect();
    let source = crate::realtime::connect(config, &pool).await?;
    let runtime = Runtime::new(pool.clone(), bots, RuntimeOptions::for_this_process());
    let pool_for_index = pool.clone();
    let engine = crate::ai::engine(config, Some(pool), runtime.metrics().ai.clone())?;
    tracing::info!(engine = %engine.name(), "AI engine");
    let runtime = runtime.with_engine(engine, config.ai.daily_token_budget);
    let indexer = crate::search::indexer::Indexer::new(
        pool_for_index,
        crate::search::IndexDir::new(config.search_index_dir()),
        std::time::Duration::from_secs(5),
    );
    let runtime = runtime.with_indexer(std::sync::Arc::new(indexer));
    Ok(RunningBots {
        names,
        runtime,
        source,
    })
}

/// Serves `/healthz`, `/readyz` and `/metrics` for `runtime` on `addr` until SIGINT or
/// SIGTERM; returns the address bound (port 0 picks a free one).
pub async fn serve_metrics(
    addr: &str,
    runtime: &crate::bots::runtime::Runtime,
) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::usage(format!("cannot listen on {addr} for /metrics: {e}"))
            .with_help("pass --metrics HOST:PORT (port 0 picks a free one)")
    })?;
    let bound = listener.local_addr()?;
    let (metrics, pool) = (runtime.metrics(), runtime.pool().clone());
    let shutdown = wait_for_shutdown();
    tokio::spawn(async move {
        if let Err(e) = crate::bots::metrics::serve(listener, metrics, pool, shutdown).await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(bound)
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called (inside the runtime), not when the future is first polled, so a signal that comes
/// early is not lost to the default action.
pub fn wait_for_shutdown() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt()).ok();
    let terminate = signal(SignalKind::terminate()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(interrupt) => {}
            _ = wait(terminate) => {}
        }
    }
}

/// What `up` prints once everything runs.
#[derive(Debug, Serialize)]
pub struct StackReport {
    pub database_url: String,
    pub local_cluster: bool,
    /// Where the local cluster lives, and the data directory it was asked to be in when the
    /// `postgres` user cannot reach that one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_moved_from: Option<String>,
    pub schema_version: Option<i64>,
    pub migrations_applied: Vec<String>,
    pub running: Vec<&'static str>,
    pub foreground: bool,
    pub provisioned: Option<Provisioned>,
    pub bots: Vec<String>,
    pub metrics: Option<String>,
    /// Where `chatctl serve`'s API listens (`up` serves it unless detached).
    pub api: Option<String>,
    /// Why the API is not served (no way to verify tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_skipped: Option<String>,
    pub search_index: Option<SearchIndex>,
}

/// The search index `up` found or built.
#[derive(Debug, Serialize)]
pub struct SearchIndex {
    pub dir: String,
    /// Whether `up` built it (there was none).
    pub built: bool,
    pub messages: u64,
}

/// Builds the search index if there is none; returns what is there.
pub async fn search_index(url: &str, config: &Config) -> Result<SearchIndex> {
    let dir = crate::search::IndexDir::new(config.search_index_dir());
    let shown = dir.path.display().to_string();
    // An index an older chatctl wrote is rebuilt (it is a cache of the database).
    if let Ok(Some(g)) = dir.open() {
        return Ok(SearchIndex {
            dir: shown,
            built: false,
            messages: g.counts()?.0,
        });
    }
    let pool = crate::db::pool(url, config).await?;
    let r = crate::search::index::build(&pool, &dir, &Default::default(), &|_| {}).await?;
    pool.close().await;
    Ok(SearchIndex {
        dir: shown,
        built: true,
        messages: r.messages,
    })
}

impl StackReport {
    pub fn new(started: &Started, migrated: &MigrateReport, detach: bool) -> StackReport {
        StackReport {
            database_url: crate::urls::redact(&started.url),
            local_cluster: started.cluster.is_some(),
            cluster_dir: started
                .cluster
                .as_ref()
                .map(|c| c.root().display().to_string()),
            cluster_moved_from: started
                .cluster
                .as_ref()
                .and_then(|c| c.moved_from())
                .map(|p| p.display().to_string()),
            schema_version: migrated.version,
            migrations_applied: migrated.steps.iter().map(|s| s.file.clone()).collect(),
            running: vec!["postgres"],
            foreground: !detach,
            provisioned: None,
            bots: Vec::new(),
            metrics: None,
            api: None,
            api_skipped: None,
            search_index: None,
        }
    }
}

impl Report for StackReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let what = if self.local_cluster {
            "local PostgreSQL"
        } else {
            "PostgreSQL (DATABASE_URL)"
        };
        writeln!(out, "chatctl is up")?;
        writeln!(out, "  database:  {what} at {}", self.database_url)?;
        writeln!(out, "  connect:   psql {}", self.database_url)?;
        if let Some(dir) = &self.cluster_dir {
            writeln!(out, "  cluster:   {dir}")?;
        }
        if let Some(wanted) = &self.cluster_moved_from {
            writeln!(
                out,
                "             (not in {wanted}: the postgres user cannot reach it, so it lives in /var/tmp)"
            )?;
        }
        match self.migrations_applied.len() {
            0 => writeln!(
                out,
                "  schema:    up to date at version {}",
                self.schema_version.unwrap_or(0)
            )?,
            n => writeln!(
                out,
                "  schema:    applied {n} migration(s), now at version {}",
                self.schema_version.unwrap_or(0)
            )?,
        }
        match &self.provisioned {
            Some(p) => writeln!(
                out,
                "  workspaces: {} from {} ({})",
                p.workspaces.join(", "),
                p.file,
                p.summary
            )?,
            None => writeln!(out, "  workspaces: none applied ({EXAMPLE_SPEC} not found)")?,
        }
        if !self.foreground {
            writeln!(
                out,
                "  bots:      not run: --detach brings the stack up and returns (`chatctl bots run` runs them)"
            )?;
        } else if self.bots.is_empty() {
            writeln!(
                out,
                "  bots:      none running (the project has no bots/ folder)"
            )?;
        } else {
            writeln!(out, "  bots:      {} (LISTEN/NOTIFY)", self.bots.join(", "))?;
            if let Some(m) = &self.metrics {
                writeln!(out, "  health:    http://{m}/healthz, /readyz, /metrics")?;
            }
        }
        if let Some(api) = &self.api {
            writeln!(
                out,
                "  api:       http://{api} (a token: chatctl dev token --user EMAIL)"
            )?;
        }
        if let Some(why) = &self.api_skipped {
            writeln!(out, "  api:       {why}")?;
        }
        if let Some(s) = &self.search_index {
            let how = if s.built { "built" } else { "found" };
            let fresh = if self.bots.is_empty() {
                "`chatctl search reindex` brings it up to date"
            } else {
                "the bots keep it fresh"
            };
            writeln!(
                out,
                "  search:    index {how} in {} ({} messages); {fresh}",
                s.dir, s.messages
            )?;
        }
        if self.foreground {
            writeln!(out, "press Ctrl-C to stop")?;
        }
        Ok(())
    }
}

/// What `chatctl up` was asked.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Bring everything up and return: no bots, nothing waits.
    pub detach: bool,
    /// Where the bots serve `/healthz`, `/readyz` and `/metrics` (port 0: any free one).
    pub metrics: String,
    /// Where the HTTP API listens (port 0: any free one).
    pub api: String,
}

/// The stack, up: what it is ([`Up::report`]), running until [`Up::wait`] returns.
pub struct Up {
    pub report: StackReport,
    started: Started,
    bots: Option<RunningBots>,
    api: Option<ServingApi>,
}

/// The API `up` serves, and how to stop it.
struct ServingApi {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<()>>,
}

/// Brings the stack up: the database, its migrations, the example workspace (when
/// [`EXAMPLE_SPEC`] is there), the search index, and (unless detached) the
/// bots of `bots/` with their endpoints.
pub async fn up(config: &Config, opts: &UpOptions, actor: &crate::provision::Actor) -> Result<Up> {
    use crate::db::migrate::{self, Migrations, Source};
    let started = start(config).await?;
    let migrations = Migrations::load(&Source::Embedded).await?;
    let mut conn = migrate::connect(&started.url, config.database.connect_timeout).await?;
    let migrate_opts = migrate::UpOptions {
        target: None,
        dry_run: false,
        lock_timeout: config.migrate.lock_timeout,
    };
    let migrated = migrate::up(&mut conn, &migrations, &migrate_opts).await?;
    drop(conn);
    let mut report = StackReport::new(&started, &migrated, opts.detach);
    let spec = config.base_dir.join(EXAMPLE_SPEC);
    if spec.is_file() {
        report.provisioned = Some(provision(&started.url, config, &spec, actor).await?);
    }
    report.search_index = Some(search_index(&started.url, config).await?);
    let bots_dir = config.base_dir.join("bots");
    let bots = if !opts.detach && bots_dir.is_dir() {
        let running = bots(&started.url, config, &bots_dir, actor).await?;
        report.bots = running.names.clone();
        report.running.push("bots");
        report.metrics = Some(
            serve_metrics(&opts.metrics, &running.runtime)
                .await?
                .to_string(),
        );
        Some(running)
    } else {
        None
    };
    let verifiable =
        crate::api::auth::project_secret(config)?.is_some() || config.serve.jwks_url.is_some();
    let api = if opts.detach {
        None
    } else if !verifiable {
        report.api_skipped =
            Some("not served: set SUPABASE_JWT_SECRET so the API can verify access tokens".into());
        None
    } else {
        let bound = crate::api::bind(config, &started.url, &opts.api).await?;
        report.api = Some(bound.addr.to_string());
        report.running.push("api");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::api::serve(bound, async move {
            let _ = stopped.await;
        }));
        Some(ServingApi { stop, task })
    };
    Ok(Up {
        report,
        started,
        bots,
        api,
    })
}

impl Up {
    /// Runs the bots (when there are any) until SIGINT or SIGTERM; work in progress
    /// finishes first.
    pub async fn wait(&mut self) -> Result<()> {
        let ran = match &mut self.bots {
            Some(b) => b.runtime.run(&mut *b.source, wait_for_shutdown()).await,
            None => {
                wait_for_shutdown().await;
                Ok(())
            }
        };
        // Then the API, its requests in flight answered first.
        if let Some(api) = self.api.take() {
            let _ = api.stop.send(());
            match api.task.await {
                Ok(served) => served?,
                Err(e) => return Err(Error::failed(format!("the API task failed: {e}")).into()),
            }
        }
        ran
    }

    /// Stops what `up` started (the local cluster, when it started it).
    pub async fn stop(self) -> Result<()> {
        stop(&self.started).await
    }
}
