//! `chatctl migrate`: apply, revert, inspect and verify schema migrations.

use std::path::PathBuf;
use std::time::Duration;

use super::Context;
use crate::db::migrate::{self, DownOptions, DownTarget, Migrations, Source, UpOptions};
use crate::db::supabase_cli;
use crate::error::{ExitCode, Result};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chatctl migrate up --dry-run                           # what would run
  chatctl migrate status -o json | jq .pending
  DATABASE_URL=postgres://... chatctl migrate verify     # CI: exit 2 on drift
  chatctl migrate down --steps 1                         # names what it drops, then asks
  chatctl migrate up --supabase-dir supabase/migrations  # theirs after ours")]
pub struct MigrateArgs {
    /// Read migrations from this directory instead of the ones built into chatctl
    #[arg(long, global = true, value_name = "DIR")]
    source: Option<PathBuf>,
    /// How long to wait for another migration run to finish (e.g. 60s, 5m)
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    lock_timeout: Option<Duration>,
    /// The Supabase CLI's migrations directory (supabase/migrations): `up` applies its
    /// pending files after chatctl's own, `status` lists them, recorded as the CLI records them
    #[arg(long, global = true, value_name = "DIR")]
    supabase_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: MigrateCmd,
}

#[derive(Debug, clap::Subcommand)]
enum MigrateCmd {
    /// Apply pending migrations (all, or up to --to)
    Up {
        /// Apply up to and including this version
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
        /// Print the SQL that would run; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Revert applied migrations (to a version, or a number of steps)
    Down {
        /// Revert every migration newer than this version (0: all)
        #[arg(
            long,
            value_name = "VERSION",
            required_unless_present = "steps",
            conflicts_with = "steps"
        )]
        to: Option<i64>,
        /// Revert this many of the newest migrations
        #[arg(long, value_name = "N")]
        steps: Option<u32>,
        /// Print the SQL that would run; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Do not ask first (required when stdin is not a terminal): reverting drops
        /// tables and their rows
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List migrations: applied, pending, or drifted (edited, unknown, missing, failed)
    Status,
    /// Exit 2 when the applied migrations drifted from the files (edited, missing, unknown)
    Verify,
    /// Mark Supabase CLI migrations applied or reverted in their history, as
    /// `supabase migration repair` does (runs none of their SQL)
    Repair {
        /// applied: record the versions (with their files' statements); reverted: drop them
        #[arg(long, value_parser = ["applied", "reverted"])]
        status: String,
        /// The versions (the digits before `_` in the file names)
        #[arg(value_name = "VERSION", required = true)]
        versions: Vec<String>,
    },
    /// Take over a project whose tables were made from the product's outline: set them
    /// aside in schema chatctl_adopted, migrate, and copy their rows in (keeping every id;
    /// rows that break a rule go to chatctl.adopt_rejects), in one transaction
    Adopt {
        /// Do all of it, show the plan, and roll back
        #[arg(long)]
        dry_run: bool,
    },
    /// Create the next NNNN_NAME.up.sql / .down.sql pair in the migrations directory
    New {
        /// The migration's name, in snake_case
        #[arg(value_name = "NAME")]
        name: String,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

pub async fn run(ctx: &Context, args: MigrateArgs) -> Result<ExitCode> {
    if let MigrateCmd::New { name } = &args.cmd {
        let dir = args
            .source
            .clone()
            .unwrap_or_else(|| ctx.config.base_dir.join("migrations"));
        ctx.out
            .render(&crate::db::migration_files::new_migration(&dir, name)?)?;
        return Ok(ExitCode::Success);
    }
    let source = match args.source {
        Some(dir) => Source::Dir(dir),
        None => Source::Embedded,
    };
    let migrations = Migrations::load(&source).await?;
    let lock_timeout = match args.lock_timeout {
        Some(t) => t,
        None => ctx.config.migrate.lock_timeout,
    };
    let supabase_dir = args.supabase_dir.as_ref().map(|d| ctx.cwd.join(d));
    let url = ctx.database_url().await?;
    let mut conn = migrate::connect(&url, ctx.config.database.connect_timeout).await?;
    match args.cmd {
        MigrateCmd::Up { to, dry_run } => {
            let mut report = migrate::up(
                &mut conn,
                &migrations,
                &UpOptions {
                    target: to,
                    dry_run,
                    lock_timeout,
                },
            )
            .await?;
            if let Some(dir) = &supabase_dir {
                report.supabase = Some(supabase_cli::up(&mut conn, dir, dry_run).await?);
            }
            ctx.out.render(&report)?;
            Ok(ExitCode::Success)
        }
        MigrateCmd::Repair { status, versions } => {
            let applied = status == "applied";
            let dir = match (&supabase_dir, applied) {
                (Some(d), _) => d.clone(),
                (None, false) => PathBuf::new(),
                (None, true) => {
                    return Err(crate::error::Error::usage(
                        "marking a version applied reads its file: give --supabase-dir",
                    )
                    .into());
                }
            };
            let report = supabase_cli::repair(&mut conn, &dir, &versions, applied).await?;
            ctx.out.render(&report)?;
            Ok(ExitCode::Success)
        }
        MigrateCmd::Down {
            to,
            steps,
            dry_run,
            yes,
        } => {
            if supabase_dir.is_some() {
                return Err(crate::error::Error::usage(
                    "the Supabase CLI's migrations have no down files: `migrate down` reverts chatctl's own",
                )
                .with_help("to drop a Supabase version from the history, `chatctl migrate repair --status reverted VERSION`")
                .into());
            }
            let target = match (to, steps) {
                (Some(v), _) => DownTarget::Version(v),
                (None, Some(n)) => DownTarget::Steps(n),
                (None, None) => unreachable!("clap requires --to or --steps"),
            };
            if !dry_run && !yes {
                confirm_down(ctx, &mut conn, &migrations, target, lock_timeout).await?;
            }
            let report = migrate::down(
                &mut conn,
                &migrations,
                &DownOptions {
                    target,
                    dry_run,
                    lock_timeout,
                },
            )
            .await?;
            ctx.out.render(&report)?;
            Ok(ExitCode::Success)
        }
        MigrateCmd::Adopt { dry_run } => {
            if supabase_dir.is_some() {
                return Err(crate::error::Error::usage(
                    "adopt applies chatctl's own migrations: run `migrate up --supabase-dir` after it",
                )
                .into());
            }
            let report = crate::db::adopt::adopt(
                &mut conn,
                &migrations,
                &crate::db::adopt::AdoptOptions {
                    dry_run,
                    lock_timeout,
                    progress: !ctx.out.quiet,
                },
            )
            .await?;
            ctx.out.render(&report)?;
            Ok(ExitCode::Success)
        }
        MigrateCmd::Status => {
            let mut report = migrate::status(&mut conn, &migrations).await?;
            report.supabase = supabase_cli::list(&mut conn, supabase_dir.as_deref()).await?;
            ctx.out.render(&report)?;
            Ok(ExitCode::Success)
        }
        MigrateCmd::Verify => {
            let mut report = migrate::status(&mut conn, &migrations).await?;
            report.supabase = supabase_cli::list(&mut conn, supabase_dir.as_deref()).await?;
            ctx.out.render(&report)?;
            Ok(if report.has_drift() {
                ExitCode::ChangesPending
            } else {
                ExitCode::Success
            })
        }
        MigrateCmd::New { .. } => unreachable!("handled above"),
    }
}

/// Says what reverting would drop (each table and its rows) and asks; without a terminal,
/// refuses unless `--yes` was given.
async fn confirm_down(
    ctx: &Context,
    conn: &mut crate::db::Connection,
    migrations: &Migrations,
    target: DownTarget,
    lock_timeout: Duration,
) -> Result<()> {
    let preview = migrate::down(
        conn,
        migrations,
        &DownOptions {
            target,
            dry_run: true,
            lock_timeout,
        },
    )
    .await?;
    if preview.steps.is_empty() {
        return Ok(());
    }
    let dropped = migrate::stake::dropped(conn, &preview.steps).await?;
    let files: Vec<&str> = preview.steps.iter().map(|s| s.file.as_str()).collect();
    let tables = match dropped.is_empty() {
        true => "no table".to_owned(),
        false => dropped
            .iter()
            .map(|d| format!("{} ({} rows)", d.table, d.rows))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let what = format!(
        "reverting {} migration(s) ({}) drops {tables}",
        files.len(),
        files.join(", ")
    );
    super::confirm_destructive(
        ctx,
        &what,
        false,
        "see the SQL with --dry-run; back up first (`chatctl backup create`)",
    )
}
