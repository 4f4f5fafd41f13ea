//! The database: connecting (to `DATABASE_URL` or the embedded local cluster), the local
//! cluster itself ([`local`]), the migration runner ([`migrate`]) and the data generator
//! ([`seed`]).

pub mod adopt;
pub mod app_queries;
pub mod bulk;
pub mod local;
pub mod messages;
pub mod migrate;
pub mod migration_files;
pub mod seed;
pub mod supabase_cli;

use std::future::Future;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::config::Config;
use crate::error::{Error, Kind, Result};

/// A single database session.
pub type Connection = sqlx::PgConnection;
/// A pool of connections (the daemon, and commands that run concurrent work).
pub type Pool = sqlx::PgPool;

/// Which database a command talks to, and how it was found.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    /// Set when the URL is the embedded local cluster's.
    pub local: Option<local::LocalCluster>,
}

/// The local cluster the config describes (not started).
pub fn local_cluster(config: &Config) -> Result<local::LocalCluster> {
    let bins = local::PgBinaries::find(config.pg_bin_dir().as_deref(), config.path_env.as_deref())?;
    local::LocalCluster::new(
        &config.data_dir(),
        bins,
        local::ServerOptions {
            durable: true,
            shared_buffers: config
                .shared_buffers
                .unwrap_or_else(local::auto_shared_buffers),
        },
    )
}

/// Resolves the database: `database.url` when set, else the local cluster, started on
/// demand, with its `chatctl` database created if missing.
pub async fn target(config: &Config) -> Result<Target> {
    if let Some(url) = config.database_url() {
        return Ok(Target {
            url: url.to_owned(),
            local: None,
        });
    }
    let cluster = local_cluster(config)?;
    let port = {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.ensure_running())
            .await
            .map_err(|e| anyhow::anyhow!("the local cluster task failed: {e}"))??
    };
    let admin = local::LocalCluster::url(port, "postgres");
    create_database_if_missing(&admin, local::DATABASE, config.database.connect_timeout).await?;
    Ok(Target {
        url: local::LocalCluster::url(port, local::DATABASE),
        local: Some(cluster),
    })
}

/// Creates `name` through the maintenance database at `admin_url`, if it does not exist.
pub async fn create_database_if_missing(
    admin_url: &str,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    use sqlx::Connection as _;
    let opts = connect_options(admin_url, "chatctl")?;
    let mut conn =
        connect_with(timeout, admin_url, sqlx::PgConnection::connect_with(&opts)).await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let sql = format!("create database {}", quote_ident(name));
        if let Err(e) = sqlx::raw_sql(&sql).execute(&mut conn).await {
            // Another chatctl process created it first.
            let duplicate =
                e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04");
            if !duplicate {
                return Err(e.into());
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// Runs a connection attempt with a time bound, turning failures into one clear
/// "cannot connect" error (exit code 69) that names the server but never the password.
pub async fn connect_with<T>(
    timeout: Duration,
    url: &str,
    attempt: impl Future<Output = sqlx::Result<T>>,
) -> Result<T> {
    let shown = crate::urls::redact(url);
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(Error::new(
            Kind::Unavailable,
            format!("cannot connect to the database at {shown}: {}", crate::error::scrub(&e.to_string())),
        )
        .with_help("check DATABASE_URL (or --database-url) and that the server is up; unset it to use the local cluster")
        .into()),
        Err(_) => Err(Error::new(
            Kind::Unavailable,
            format!("cannot connect to the database at {shown}: no answer within {timeout:?}"),
        )
        .with_help("check the host and port, or raise database.connect_timeout")
        .into()),
    }
}

/// Connection options for `url`, naming the session `application_name` (visible in
/// pg_stat_activity, and in the error when another session holds the migration lock).
pub fn connect_options(url: &str, application_name: &str) -> Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| {
            Error::usage(format!(
                "invalid database URL: {}",
                crate::error::scrub(&e.to_string())
            ))
        })?
        .application_name(application_name))
}

/// A connection pool to `url`.
pub async fn pool(url: &str, config: &Config) -> Result<PgPool> {
    let timeout = config.database.connect_timeout;
    let opts = connect_options(url, "chatctl")?;
    connect_with(timeout, url, pool_options(config)?.connect_with(opts)).await
}

/// The pool settings every chatctl pool shares: size and acquire timeout from the config.
fn pool_options(config: &Config) -> Result<PgPoolOptions> {
    Ok(PgPoolOptions::new()
        .max_connections(config.database.max_connections)
        .acquire_timeout(config.database.connect_timeout))
}

/// The bot daemon's pool: like [`pool`], and its inserts (bot replies, digests) send no
/// LISTEN/NOTIFY wake-up (`chatctl.notify = off`, read by the `chat_notify` trigger): the
/// daemon never needs to hear itself, and a NOTIFY queues its commit behind every writer's.
pub async fn daemon_pool(url: &str, config: &Config) -> Result<PgPool> {
    let timeout = config.database.connect_timeout;
    let opts = connect_options(url, "chatctl bots")?;
    connect_with(
        timeout,
        url,
        pool_options(config)?
            .after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor as _;
                    conn.execute("set chatctl.notify = off").await?;
                    Ok(())
                })
            })
            .connect_with(opts),
    )
    .await
}

/// One connection to `url` (for work done in one transaction).
pub async fn connect(url: &str, config: &Config) -> Result<sqlx::PgConnection> {
    use sqlx::Connection as _;
    let opts = connect_options(url, "chatctl")?;
    connect_with(
        config.database.connect_timeout,
        url,
        sqlx::PgConnection::connect_with(&opts),
    )
    .await
}

/// `name` as a quoted SQL identifier (`"a""b"` for `a"b`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
