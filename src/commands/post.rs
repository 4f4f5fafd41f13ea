//! `chatctl post`: a message in a channel, written as a member or a bot (audited).

use super::Context;
use crate::chat::{self, Author, NewMessage};
use crate::error::{ExitCode, Result};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("author").required(true).args(["as_user", "as_bot"])))]
pub struct PostArgs {
    #[command(flatten)]
    workspace: super::InWorkspace,
    /// The channel (name, with or without #)
    #[arg(long, value_name = "CHANNEL", value_parser = super::channel_name)]
    channel: String,
    /// Reply in this thread (the id of its first message)
    #[arg(long, value_name = "ID")]
    thread: Option<uuid::Uuid>,
    /// Post as this member (email address, username or id)
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
    /// Post as this bot's account
    #[arg(long, value_name = "NAME")]
    as_bot: Option<String>,
    /// The message (`@name` mentions someone)
    #[arg(value_name = "TEXT")]
    text: String,
}

pub async fn run(ctx: &Context, args: PostArgs) -> Result<ExitCode> {
    let mut conn = ctx.connect().await?;
    let workspace = ctx
        .workspace_or_only(&mut conn, args.workspace.workspace)
        .await?;
    let author = match (args.as_user, args.as_bot) {
        (Some(user), _) => Author::Member(user),
        (None, Some(bot)) => Author::Bot(bot),
        (None, None) => unreachable!("clap requires --as or --as-bot"),
    };
    let message = NewMessage {
        workspace,
        channel: args.channel,
        thread: args.thread,
        author,
        text: args.text,
    };
    let line = chat::post(&mut conn, &ctx.actor(), &message).await?;
    ctx.out.render(&line)?;
    Ok(ExitCode::Success)
}
