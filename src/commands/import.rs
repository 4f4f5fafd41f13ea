//! `chatctl import slack`: a Slack workspace export into a workspace.

use std::io::Write;
use std::path::PathBuf;

use super::Context;
use crate::config::OutputFormat;
use crate::error::{ExitCode, Result};
use crate::report::{self, Report};
use crate::slack::{SlackOptions, SlackReport};
use crate::users::import::ProgressMode;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chatctl import slack export.zip -w acme --dry-run       # counts and rejects, nothing written
  chatctl import slack export.zip -w acme --users-only    # people first, to fix their addresses
  chatctl import slack export.zip -w acme --email-domain acme.example -o json | jq .messages
  chatctl import slack later-export.zip -w acme --since 2026-11-01  # only what is new")]
pub struct ImportArgs {
    #[command(subcommand)]
    cmd: ImportCmd,
}

#[derive(Debug, clap::Subcommand)]
enum ImportCmd {
    /// Import a Slack workspace export (its .zip, read in place, or its directory): people,
    /// channels, DMs, messages, threads, reactions, file metadata
    ///
    /// Idempotent: the same export again changes nothing; a later export of the same
    /// workspace adds what is new. Bad pieces go to the rejects file; the rest imports.
    Slack(SlackArgs),
}

#[derive(Debug, clap::Args)]
struct SlackArgs {
    /// The export: a .zip file or its unpacked directory
    #[arg(value_name = "EXPORT")]
    export: PathBuf,
    #[command(flatten)]
    workspace: super::InWorkspace,
    /// Report what would be imported (the same counts and rejects); write nothing
    #[arg(long)]
    dry_run: bool,
    /// Import the people only
    #[arg(long)]
    users_only: bool,
    /// Only messages from this date or time on (YYYY-MM-DD or RFC 3339)
    #[arg(long, value_name = "DATE", value_parser = parse_since)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Where rejected pieces go, as JSON Lines [default: slack-import-<time>.rejects.jsonl]
    #[arg(long, value_name = "PATH")]
    rejects: Option<PathBuf>,
    /// The domain of placeholder addresses for people the export gives none
    #[arg(long, value_name = "DOMAIN", default_value = crate::slack::DEFAULT_EMAIL_DOMAIN)]
    email_domain: String,
    /// Conversations written at once, each on its own connection [default: the number of
    /// cores, at most 4]
    #[arg(long, short = 'j', value_name = "N", value_parser = super::count(1, super::MAX_JOBS))]
    jobs: Option<usize>,
    /// Exit 0 even when pieces were rejected
    #[arg(long)]
    allow_rejects: bool,
    /// Storage's file backend directory: the files' bytes an export holds (`__uploads/`,
    /// as slack-advanced-exporter fetches them) go there, each with its Storage object
    #[arg(long, value_name = "DIR")]
    storage_dir: Option<PathBuf>,
}

fn parse_since(s: &str) -> std::result::Result<chrono::DateTime<chrono::Utc>, String> {
    crate::users::input::parse_date(s)
        .ok_or_else(|| format!("`{s}` is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

pub async fn run(ctx: &Context, args: ImportArgs) -> Result<ExitCode> {
    let ImportCmd::Slack(a) = args.cmd;
    if let Some(d) = &a.storage_dir
        && !d.is_dir()
    {
        return Err(crate::error::Error::usage(format!(
            "--storage-dir {}: not a directory",
            d.display()
        ))
        .into());
    }
    if a.email_domain.contains('@') || !a.email_domain.contains('.') {
        return Err(crate::error::Error::usage(format!(
            "--email-domain `{}` is not a domain (like example.com)",
            a.email_domain
        ))
        .into());
    }
    let mut conn = ctx.connect().await?;
    let workspace = ctx
        .workspace_or_only(&mut conn, a.workspace.workspace)
        .await?;
    drop(conn);
    let rejects = a.rejects.unwrap_or_else(|| {
        PathBuf::from(format!(
            "slack-import-{}.rejects.jsonl",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        ))
    });
    let progress = if ctx.out.quiet || ctx.out.format == OutputFormat::Json {
        ProgressMode::None
    } else {
        ProgressMode::Bar
    };
    let opts = SlackOptions {
        export: a.export,
        workspace,
        dry_run: a.dry_run,
        users_only: a.users_only,
        since: a.since,
        rejects,
        email_domain: a.email_domain.to_lowercase(),
        progress,
        search_index: Some(ctx.config.search_index_dir()),
        jobs: a.jobs.unwrap_or_else(super::default_jobs),
        storage_dir: a.storage_dir,
    };
    let url = ctx.database_url().await?;
    let pool = crate::db::pool(&url, &ctx.config).await?;
    let report = crate::slack::import(&pool, &opts, &ctx.actor()).await?;
    ctx.out.render(&report)?;
    if report.rejects > 0 && !a.allow_rejects {
        return Ok(ExitCode::Failure);
    }
    Ok(ExitCode::Success)
}

impl Report for SlackReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let verb = if self.dry_run {
            "would import"
        } else {
            "imported"
        };
        writeln!(
            out,
            "{verb} {} into workspace `{}` in {:.1} s ({:.0} messages/s)",
            self.export, self.workspace, self.seconds, self.messages_per_second
        )?;
        let mut t = report::table(["", "NEW", "ALREADY THERE", "REJECTED"]);
        let row = |kind: &str, new: u64, existing: String, rejected: String| {
            vec![kind.to_owned(), new.to_string(), existing, rejected]
        };
        let u = &self.users;
        t.add_row(row(
            "users",
            u.inserted,
            (u.updated + u.unchanged + u.skipped).to_string(),
            u.rejected.to_string(),
        ));
        for (kind, tally) in [
            ("channels", self.channels),
            ("direct messages", self.direct_messages),
            ("group DMs", self.group_dms),
        ] {
            t.add_row(row(
                kind,
                tally.new,
                tally.existing.to_string(),
                String::new(),
            ));
        }
        let rejected_messages: u64 = self
            .rejected_by_kind
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "user" | "unknown_folder" | "channel_taken"))
            .map(|(_, n)| n)
            .sum();
        t.add_row(row(
            "messages",
            self.messages.new,
            self.messages.existing.to_string(),
            rejected_messages.to_string(),
        ));
        t.add_row(row("replies", self.replies, String::new(), String::new()));
        t.add_row(row(
            "reactions",
            self.reactions,
            String::new(),
            String::new(),
        ));
        t.add_row(row("files", self.files, String::new(), String::new()));
        report::write_table(out, &t)?;
        if self.file_bytes > 0 {
            writeln!(
                out,
                "files put in Storage from the export: {}",
                self.file_bytes
            )?;
        }
        if self.file_bytes_left > 0 {
            writeln!(
                out,
                "{} files' bytes are in the export and were not put in Storage (--storage-dir DIR, and the `attachments` bucket, which `chatctl apply` creates)",
                self.file_bytes_left
            )?;
        }
        if self.bots > 0 {
            writeln!(out, "integration bots given accounts: {}", self.bots)?;
        }
        if !self.placeholder_emails.is_empty() {
            let shown: Vec<String> = self
                .placeholder_emails
                .iter()
                .take(5)
                .map(|p| format!("{} ({})", p.email, p.name))
                .collect();
            writeln!(
                out,
                "{} people have no address in the export and got a placeholder: {}{}",
                self.placeholder_emails.len(),
                shown.join(", "),
                if self.placeholder_emails.len() > 5 {
                    ", … (all in -o json)"
                } else {
                    ""
                }
            )?;
        }
        if self.replies_without_thread > 0 {
            writeln!(
                out,
                "{} replies whose thread is not in the export were imported as messages",
                self.replies_without_thread
            )?;
        }
        if !self.skipped.is_empty() {
            let s: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(out, "skipped: {}", s.join(", "))?;
        }
        if let Some(path) = &self.rejects_file {
            let kinds: Vec<String> = self
                .rejected_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(
                out,
                "rejected {} ({}): see {path}",
                self.rejects,
                kinds.join(", ")
            )?;
        }
        if let Some(n) = self.indexed {
            writeln!(out, "search index brought up to date ({n} messages)")?;
        }
        if self.dry_run {
            writeln!(out, "dry run: nothing was written")?;
        }
        Ok(())
    }
}
