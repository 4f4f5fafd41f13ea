//! `chatctl tail`: the messages of a workspace (or one channel) as they arrive, bots'
//! replies included, until Ctrl-C.

use std::time::Duration;

use super::Context;
use crate::chat::{Follow, Lines, Tail};
use crate::error::{ExitCode, Result};

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    workspace: super::InWorkspace,
    /// Only this channel (name, with or without #)
    #[arg(long, value_name = "CHANNEL", value_parser = super::channel_name)]
    channel: Option<String>,
    /// Show this many of the latest messages first
    #[arg(long, short = 'n', value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    lines: u32,
    /// Print the latest messages and exit instead of following
    #[arg(long)]
    no_follow: bool,
    /// How often to look for new messages
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::config::parse_duration)]
    interval: Duration,
}

pub async fn run(ctx: &Context, args: TailArgs) -> Result<ExitCode> {
    let mut conn = ctx.connect().await?;
    let workspace = ctx
        .workspace_or_only(&mut conn, args.workspace.workspace)
        .await?;
    let follow = Follow {
        workspace,
        channel: args.channel,
    };
    let (mut tail, latest) = Tail::start(&mut conn, follow, args.lines).await?;
    if args.no_follow {
        ctx.out.render(&Lines(latest))?;
        return Ok(ExitCode::Success);
    }
    for line in &latest {
        ctx.out.record(line)?;
    }
    let mut tick = tokio::time::interval(args.interval.max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        for line in tail.next(&mut conn).await? {
            ctx.out.record(&line)?;
        }
    }
}
