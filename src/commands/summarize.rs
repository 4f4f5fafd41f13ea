//! `chatctl summarize`: the digest of a channel's window, printed or posted as a bot. Made for
//! cron: non-interactive, and with `--post` a re-run never posts the same window twice.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Context;
use crate::ai::window::{self, Calendar};
use crate::bots::digest::{self, DigestPost};
use crate::bots::runtime;
use crate::error::{Error, ExitCode, Result};
use crate::report::Report;

#[derive(Debug, clap::Args)]
pub struct SummarizeArgs {
    #[command(flatten)]
    target: super::AsBotInChannel,
    /// A sliding window up to now (`24h`, `90m`, `7d`); not with --post
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["window", "from"])]
    since: Option<String>,
    /// The last complete calendar day or week (Monday to Monday) in --tz [default: day]
    #[arg(long, value_name = "UNIT", conflicts_with = "from")]
    window: Option<Calendar>,
    /// The time zone of --window and of dates in --from/--to
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    tz: String,
    /// Start of an explicit window (2026-11-22 or 2026-11-22T09:00:00Z)
    #[arg(long, value_name = "TIME", requires = "to")]
    from: Option<String>,
    /// End of an explicit window (exclusive)
    #[arg(long, value_name = "TIME", requires = "from")]
    to: Option<String>,
    /// Post the digest in the channel as --as-bot, once per (bot, channel, window)
    #[arg(long, requires = "as_bot")]
    post: bool,
    /// Create the account of an --as-bot that neither bots/ nor the database knows
    #[arg(long, requires = "post")]
    create_bot: bool,
}

/// What `summarize` did.
#[derive(Debug, Serialize)]
struct Summary {
    workspace: String,
    channel: String,
    window: Window,
    engine: String,
    messages: usize,
    /// The digest; `null` for an empty window or a window posted already.
    digest: Option<crate::ai::Digest>,
    /// The digest as text (as posted).
    text: Option<String>,
    /// With `--post`: what happened to the (bot, channel, window) claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    post: Option<DigestPost>,
}

#[derive(Debug, Serialize)]
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Report for Summary {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        match &self.text {
            Some(text) => writeln!(out, "{text}"),
            None => Ok(()),
        }
    }
}

pub async fn run(ctx: &Context, args: SummarizeArgs) -> Result<ExitCode> {
    let tz: chrono_tz::Tz = args.tz.parse().map_err(|_| {
        Error::usage(format!("unknown time zone `{}`", args.tz))
            .with_help("use an IANA name such as UTC, Europe/Berlin or America/New_York")
    })?;
    let (start, end) = resolve_window(&args, tz, Utc::now())?;
    let mut conn = ctx.connect().await?;
    let slug = ctx
        .workspace_or_only(&mut conn, args.target.workspace.clone())
        .await?;
    let name = args.target.channel.trim_start_matches('#').to_owned();
    let channel = crate::provision::ops::channel_id(&mut conn, &slug, &name).await?;
    drop(conn);

    let url = ctx.database_url().await?;
    let pool = crate::db::pool(&url, &ctx.config).await?;
    let (spec, voice) = super::voice(ctx, &pool, args.target.as_bot.as_deref())?;
    if let Some(name) = &args.target.as_bot {
        super::require_bot(ctx, &pool, name, args.create_bot).await?;
    }
    let mut summary = Summary {
        workspace: slug,
        channel: name.clone(),
        window: Window { start, end },
        engine: voice.engine.name(),
        messages: 0,
        digest: None,
        text: None,
        post: None,
    };
    let span = format!(
        "#{name}, {} to {} UTC",
        start.format("%Y-%m-%d %H:%M"),
        end.format("%Y-%m-%d %H:%M")
    );
    if args.post {
        let bots = runtime::prepare(&pool, vec![spec], &ctx.actor()).await?;
        let instance = format!("chatctl summarize ({})", ctx.config.operator);
        let posted = digest::post_digest(
            &pool,
            &voice,
            bots[0].user_id,
            &instance,
            channel,
            &name,
            (start, end),
            true,
        )
        .await?;
        match &posted {
            DigestPost::Posted {
                message_id,
                digest,
                text,
            } => {
                ctx.out.status(&format!(
                    "posted the digest of {span} as @{} (message {message_id})",
                    voice.bot
                ));
                summary.messages = digest.messages;
                summary.digest = Some(digest.clone());
                summary.text = Some(text.clone());
            }
            DigestPost::Empty => ctx.out.status(&format!(
                "nothing to post: {span} has no messages (the window is marked done)"
            )),
            DigestPost::AlreadyClaimed {
                claimed_by,
                claimed_at,
                message_id,
            } => ctx.out.status(&format!(
                "nothing to post: the digest of {span} was {} by {claimed_by} at {}",
                if message_id.is_some() {
                    "posted"
                } else {
                    "claimed (an empty window)"
                },
                claimed_at.format("%Y-%m-%d %H:%M:%S UTC")
            )),
        }
        summary.post = Some(posted);
    } else {
        let written = digest::window_digest(&pool, &voice, channel, &name, (start, end)).await?;
        summary.messages = written.messages;
        match written.digest {
            Some((digest, text)) => {
                summary.text = Some(text);
                summary.digest = Some(digest);
            }
            None => ctx
                .out
                .status(&format!("nothing to summarize: {span} has no messages")),
        }
    }
    args.target.output(ctx).render(&summary)?;
    Ok(ExitCode::Success)
}

/// The window the flags name.
fn resolve_window(
    args: &SummarizeArgs,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    if let Some(since) = &args.since {
        if args.post {
            return Err(
                Error::usage("--post does not take a sliding --since window")
                    .with_help(
                        "a sliding window names a different window on every run, so re-runs would \
                     post overlapping digests: use --window day|week or --from/--to",
                    )
                    .into(),
            );
        }
        let d = crate::config::parse_duration(since).map_err(Error::usage)?;
        let d = chrono::Duration::from_std(d)
            .ok()
            .filter(|d| *d > chrono::Duration::zero())
            .ok_or_else(|| {
                Error::usage(format!("--since `{since}` must be a positive duration"))
            })?;
        return Ok((now - d, now));
    }
    if let (Some(from), Some(to)) = (&args.from, &args.to) {
        let from = window::parse_time(from, tz).map_err(Error::usage)?;
        let to = window::parse_time(to, tz).map_err(Error::usage)?;
        if from >= to {
            return Err(Error::usage("--from must be before --to").into());
        }
        return Ok((from, to));
    }
    Ok(window::last_complete(
        args.window.unwrap_or(Calendar::Day),
        tz,
        now,
    ))
}
