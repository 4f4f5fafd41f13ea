//! `chatctl summarize`: the digest of a channel's window, printed or posted as a bot. Made for
//! cron: non-interactive, and with `--post` a re-run never posts the same window twice.

use chrono::{DateTime, Utc};

use super::Context;
use crate::ai::window::{self, Calendar};
use crate::bots::digest::{self, DigestPost, Summary, Window};
use crate::bots::runtime;
use crate::error::{Error, ExitCode, Result};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  chatctl summarize --channel engineering -w acme        # yesterday (UTC)
  chatctl summarize --channel engineering --since 6h --format json | jq .digest.decisions
  # cron, every morning: posted once per window however often it runs
  chatctl summarize --channel engineering -w acme --window day --tz Europe/Berlin --post --as-bot summarybot")]
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

pub async fn run(ctx: &Context, args: SummarizeArgs) -> Result<ExitCode> {
    let (start, end, tz) = resolve_window(&args, Utc::now())?;
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
        channel_id: channel,
        window: Window { start, end, tz },
        engine: voice.engine.name(),
        messages: 0,
        digest: None,
        text: None,
        post: None,
    };
    let span = format!(
        "#{name}, {} to {} {}",
        start.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        end.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        tz.name()
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
            tz,
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
            DigestPost::Running => ctx.out.status(&format!(
                "nothing to post: another run is writing the digest of {span} now"
            )),
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
        summary = digest::summary(&pool, &voice, summary, None).await?;
        if summary.digest.is_none() {
            ctx.out
                .status(&format!("nothing to summarize: {span} has no messages"));
        }
    }
    args.target.output(ctx).render(&summary)?;
    Ok(ExitCode::Success)
}

/// The window the flags name.
fn resolve_window(
    args: &SummarizeArgs,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>, chrono_tz::Tz)> {
    if args.since.is_some() && args.post {
        return Err(
            Error::usage("--post does not take a sliding --since window")
                .with_help(
                    "a sliding window names a different window on every run, so re-runs would \
                 post overlapping digests: use --window day|week or --from/--to",
                )
                .into(),
        );
    }
    let named = window::Named {
        since: args.since.clone(),
        window: args.window,
        from: args.from.clone(),
        to: args.to.clone(),
        tz: Some(args.tz.clone()),
    };
    let (start, end) = named.resolve(now).map_err(Error::usage)?;
    Ok((start, end, named.zone().map_err(Error::usage)?))
}
