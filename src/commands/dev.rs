//! `chatctl dev`: the embedded local PostgreSQL (up, down, status, url) and `dev seed`.

use super::Context;
use crate::db::local::LocalCluster;
use crate::db::seed::{self, SeedOptions};
use crate::error::{Error, ExitCode, Result};
use crate::report::Report;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    #[command(subcommand)]
    cmd: DevCmd,
}

#[derive(Debug, clap::Subcommand)]
enum DevCmd {
    /// Initialise (first time) and start the local cluster
    Up,
    /// Stop the local cluster (its data stays)
    Down,
    /// Show whether the local cluster is running, where, and on which port
    Status,
    /// Print the local cluster's database URL (starting it if needed)
    Url,
    /// Generate realistic data and load it with COPY (deterministic for a given --seed)
    Seed {
        /// Number of users
        #[arg(long, default_value_t = 200, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=i64::from(seed::MAX_USERS)))]
        users: u32,
        /// Number of channels (public, private, DMs and group DMs)
        #[arg(long, default_value_t = 40, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(seed::MAX_CHANNELS)))]
        channels: u32,
        /// Number of messages (about a fifth are thread replies)
        #[arg(long, default_value_t = 10_000, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=seed::MAX_MESSAGES))]
        messages: u64,
        /// Number of workspaces the users and channels are spread over
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(seed::MAX_WORKSPACES)))]
        workspaces: u32,
        /// Random seed: the same seed (and --until) gives the same data
        #[arg(long, default_value_t = 42, value_name = "S")]
        seed: u64,
        /// When the messages end (they span the 90 days before): RFC 3339 or a date
        /// [default: now]
        #[arg(long, value_name = "TIME", value_parser = parse_until)]
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Mint an access token for a user, as Supabase Auth signs one (to call `chatctl serve`)
    Token {
        /// The user (e-mail address, username or id)
        #[arg(long, value_name = "USER")]
        user: String,
        /// How long it is valid
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        ttl: String,
    },
}

pub async fn run(ctx: &Context, args: DevArgs) -> Result<ExitCode> {
    match args.cmd {
        DevCmd::Seed {
            users,
            channels,
            messages,
            workspaces,
            seed,
            until,
        } => {
            let url = ctx.database_url().await?;
            let pool = crate::db::pool(&url, &ctx.config).await?;
            let opts = SeedOptions {
                users,
                channels,
                messages,
                workspaces,
                seed,
                until: until.unwrap_or_else(|| {
                    chrono::DurationRound::duration_trunc(
                        chrono::Utc::now(),
                        chrono::TimeDelta::seconds(1),
                    )
                    .unwrap_or_else(|_| chrono::Utc::now())
                }),
                progress: !ctx.out.quiet,
            };
            let report = seed::seed(&pool, &opts).await?;
            ctx.out.render(&report)?;
            Ok(ExitCode::Success)
        }
        DevCmd::Token { user, ttl } => {
            let ttl = crate::config::parse_duration(&ttl)
                .ok()
                .filter(|d| d.as_secs() >= 1 && d.as_secs() <= 366 * 86400)
                .ok_or_else(|| {
                    Error::usage(format!("--ttl `{ttl}` must be a duration from 1s to 366d"))
                })?;
            let secret = crate::api::auth::project_secret(&ctx.config)?.ok_or_else(|| {
                Error::usage("minting a token needs the project's JWT secret").with_help(
                    "set SUPABASE_JWT_SECRET (on the embedded default, chatctl keeps its own)",
                )
            })?;
            let url = ctx.database_url().await?;
            let pool = crate::db::pool(&url, &ctx.config).await?;
            let minted = crate::api::auth::mint_for(&pool, &secret, &user, ttl).await?;
            ctx.out.render(&TokenReport(minted))?;
            Ok(ExitCode::Success)
        }
        cmd => {
            if ctx.config.database_url().is_some() {
                ctx.out.status("note: DATABASE_URL is set, so other commands use that database, not the local cluster");
            }
            let cluster = crate::db::local_cluster(&ctx.config)?;
            match cmd {
                DevCmd::Up => {
                    ctx.database_url_local().await?;
                    ctx.out.render(&blocking(&cluster, |c| c.status()).await?)?;
                }
                DevCmd::Down => {
                    let was_running = blocking(&cluster, |c| c.stop()).await?;
                    ctx.out.status(if was_running {
                        "stopped the local cluster"
                    } else {
                        "the local cluster was not running"
                    });
                    ctx.out.render(&blocking(&cluster, |c| c.status()).await?)?;
                }
                DevCmd::Status => ctx.out.render(&blocking(&cluster, |c| c.status()).await?)?,
                DevCmd::Url => {
                    let url = ctx.database_url_local().await?;
                    ctx.out.render(&UrlReport { url })?;
                }
                DevCmd::Seed { .. } | DevCmd::Token { .. } => unreachable!("handled above"),
            }
            Ok(ExitCode::Success)
        }
    }
}

async fn blocking<T: Send + 'static>(
    cluster: &LocalCluster,
    f: impl FnOnce(&LocalCluster) -> Result<T> + Send + 'static,
) -> Result<T> {
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .map_err(|e| Error::failed(format!("the local cluster task failed: {e}")))?
}

/// A minted access token.
#[derive(serde::Serialize)]
struct TokenReport(crate::api::auth::Minted);

impl Report for TokenReport {
    /// The token alone, for `$(chatctl dev token --user ...)`.
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(out, "{}", self.0.token)
    }
}

#[derive(serde::Serialize)]
struct UrlReport {
    url: String,
}

impl Report for UrlReport {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(out, "{}", self.url)
    }
}

impl Report for crate::db::local::ClusterStatus {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        use crate::db::local::ClusterState;
        let state = match &self.state {
            ClusterState::NotInitialized => "not initialised".to_owned(),
            ClusterState::Stopped => "stopped".to_owned(),
            ClusterState::Running { port } => format!("running on 127.0.0.1:{port}"),
        };
        writeln!(out, "local PostgreSQL {}: {state}", self.postgres_version)?;
        writeln!(out, "  data:  {}", self.data_dir.display())?;
        if let Some(wanted) = &self.moved_from {
            writeln!(
                out,
                "         (not in {}: the postgres user cannot reach it)",
                wanted.display()
            )?;
        }
        writeln!(out, "  log:   {}", self.log_file.display())?;
        writeln!(out, "  bin:   {}", self.bin_dir.display())?;
        if let Some(user) = &self.run_as {
            writeln!(out, "  runs as the `{user}` user (chatctl is root)")?;
        }
        if let Some(url) = &self.url {
            writeln!(out, "  url:   {url}")?;
        }
        Ok(())
    }
}

/// `--until`: an RFC 3339 time, or a date (its midnight, UTC).
fn parse_until(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!("`{text}` is not a time (2026-12-01T09:00:00Z) or a date (2026-12-01)")
        })
}
