//! `chatctl search`: build, query, check and inspect the search index.

use std::io::Write;

use serde::Serialize;

use super::Context;
use crate::error::{Error, ExitCode, Result};
use crate::progress::Progress;
use crate::report::{self, Report};
use crate::search::{self, Engine, IndexDir, IndexReport, ResolveError};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chatctl search reindex                                 # build or update the index
  chatctl search query 'deploy from:@ada in:#engineering after:2026-11-01'
  chatctl search query '\"release notes\" has:link' --as ken -o json   # as a user sees it
  chatctl search verify                                  # the index against the database")]
pub struct SearchArgs {
    #[command(subcommand)]
    cmd: SearchCmd,
}

#[derive(Debug, clap::Subcommand)]
enum SearchCmd {
    /// Bring the index up to date from the change log (or build it in full)
    Reindex {
        /// Build a new index from the whole database and swap it in when done
        #[arg(long)]
        full: bool,
        /// Rebuild only this workspace's documents (in the index in use, in one commit)
        #[arg(long, short = 'w', value_name = "SLUG")]
        workspace: Option<String>,
    },
    /// Search messages (and channels) with Slack's operators
    ///
    /// Words, "quoted phrases", -excluded, from:@user, in:#channel, mentions:@user (or @user),
    /// before:/after:/on:YYYY-MM-DD (UTC; after: and before: exclude the day itself),
    /// has:file, has:link, is:thread.
    Query {
        /// The query
        query: String,
        /// Search as this user (username, e-mail or id): only what they may read
        #[arg(long = "as", value_name = "USER")]
        as_user: Option<String>,
        /// Only this workspace (slug)
        #[arg(long, short = 'w', value_name = "SLUG")]
        workspace: Option<String>,
        /// How many messages to show
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// tantivy (the index) or postgres (full-text search on the chat table)
        #[arg(long, value_enum, default_value = "tantivy")]
        engine: Engine,
    },
    /// Compare the index with the database; exit 2 when they differ
    Verify,
    /// Show the index: documents, size, watermark and backlog
    Status,
}

pub async fn run(ctx: &Context, args: SearchArgs) -> Result<ExitCode> {
    let url = ctx.database_url().await?;
    let pool = crate::db::pool(&url, &ctx.config).await?;
    let dir = IndexDir::new(ctx.config.search_index_dir());
    match args.cmd {
        SearchCmd::Reindex { full, workspace } => reindex(ctx, &pool, &dir, full, workspace).await,
        SearchCmd::Query {
            query,
            as_user,
            workspace,
            limit,
            engine,
        } => {
            search_messages(
                ctx,
                &pool,
                &dir,
                &query,
                as_user.as_deref(),
                workspace,
                limit.into(),
                engine,
            )
            .await
        }
        SearchCmd::Verify => {
            let g = dir.open_existing()?;
            let diff = crate::search::index::verify(&pool, &g).await?;
            let same = diff.is_empty();
            ctx.out.render(&Verified(diff))?;
            Ok(if same {
                ExitCode::Success
            } else {
                ExitCode::ChangesPending
            })
        }
        SearchCmd::Status => {
            ctx.out
                .render(&StatusReport(search::status(&pool, &dir).await?))?;
            Ok(ExitCode::Success)
        }
    }
}

async fn reindex(
    ctx: &Context,
    pool: &crate::db::Pool,
    dir: &IndexDir,
    full: bool,
    workspace: Option<String>,
) -> Result<ExitCode> {
    let total = search::index::message_count(pool).await?;
    let bar = Progress::new(total, "messages", ctx.out.quiet);
    bar.set_message("indexing");
    let on_progress = |n: u64| bar.set_position(n);
    let report = match (workspace, full) {
        (Some(slug), _) => {
            let ws = search::workspace_id(pool, &slug).await?;
            search::index::rebuild_workspace(pool, dir, ws, &on_progress).await?
        }
        (None, true) => search::index::build(pool, dir, &Default::default(), &on_progress).await?,
        (None, false) => search::index::sync(pool, dir, &on_progress).await?,
    };
    bar.finish();
    if let Some(note) = &report.note {
        ctx.out.status(note);
    }
    ctx.out.render(&Reindexed(report))?;
    Ok(ExitCode::Success)
}

#[allow(clippy::too_many_arguments)]
async fn search_messages(
    ctx: &Context,
    pool: &crate::db::Pool,
    dir: &IndexDir,
    text: &str,
    as_user: Option<&str>,
    workspace: Option<String>,
    limit: usize,
    engine: Engine,
) -> Result<ExitCode> {
    let workspace = match &workspace {
        Some(slug) => Some(search::workspace_id(pool, slug).await?),
        None => None,
    };
    let as_user = match as_user {
        Some(who) => Some(search::find_user(pool, who).await?),
        None => {
            ctx.out.status(
                "searching as the service role: every channel, private ones and direct messages \
                 included (--as USER searches as a user)",
            );
            None
        }
    };
    let reader = match engine {
        Engine::Tantivy => {
            let r = search::Reader::open(dir)?;
            search::index::check_database(pool, &r.generation).await?;
            Some(r)
        }
        Engine::Postgres => None,
    };
    let request = search::Request {
        text,
        as_user,
        readable: None,
        workspace,
        limit,
    };
    match search::search(pool, reader.as_ref(), &request).await {
        Ok(results) => ctx.out.render(&results)?,
        Err(ResolveError::Query(e)) => return Err(Error::usage(e.to_string()).into()),
        Err(ResolveError::Other(e)) => return Err(e),
    }
    Ok(ExitCode::Success)
}

#[derive(Debug, Serialize)]
struct Reindexed(IndexReport);

impl Report for Reindexed {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let r = &self.0;
        let what = match r.mode {
            "full" => "built the index in full",
            "workspace" => "rebuilt the workspace",
            _ => "applied the changes",
        };
        writeln!(
            out,
            "{what}: {} messages and {} channels indexed, {} removed, in {:.1} s ({} docs/s)",
            r.messages,
            r.channels,
            r.deleted,
            r.elapsed_ms as f64 / 1000.0,
            r.docs_per_sec
        )?;
        writeln!(
            out,
            "index {} ({}), watermark {}",
            r.generation,
            human_bytes(r.size_bytes),
            r.watermark
        )
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

#[derive(Debug, Serialize)]
struct Verified(search::index::Differences);

impl Report for Verified {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let d = &self.0;
        if d.is_empty() {
            return writeln!(
                out,
                "the index matches the database: {} documents",
                d.checked_documents
            );
        }
        writeln!(
            out,
            "the index differs from the database: {} missing, {} stale, {} extra",
            d.missing.len(),
            d.stale.len(),
            d.extra.len()
        )?;
        for (what, ids) in [
            ("missing", &d.missing),
            ("stale", &d.stale),
            ("extra", &d.extra),
        ] {
            for id in ids.iter().take(10) {
                writeln!(out, "  {what} {id}")?;
            }
            if ids.len() > 10 {
                writeln!(out, "  … and {} more {what}", ids.len() - 10)?;
            }
        }
        writeln!(out, "bring it up to date with: chatctl search reindex")
    }
}

#[derive(Debug, Serialize)]
struct StatusReport(search::Status);

impl Report for StatusReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let s = &self.0;
        let mut t = report::table(["", ""]);
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        for (k, v) in [
            ("index", s.index_dir.clone()),
            ("generation", opt(s.generation.clone())),
            ("messages", s.messages.to_string()),
            ("channels", s.channels.to_string()),
            ("size", human_bytes(s.size_bytes)),
            ("watermark", opt(s.watermark.map(|w| w.to_string()))),
            ("built", opt(s.built_at.map(|t| t.to_rfc3339()))),
            (
                "last change applied",
                opt(s.synced_at.map(|t| t.to_rfc3339())),
            ),
            ("backlog", opt(s.backlog.map(|b| b.to_string()))),
        ] {
            t.add_row([k.to_owned(), v]);
        }
        report::write_table(out, &t)?;
        if s.generation.is_none() {
            writeln!(out, "no index yet: build it with chatctl search reindex")?;
        }
        Ok(())
    }
}
