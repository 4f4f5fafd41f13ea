//! `chatctl ai`: the AI features on demand. `ai reply` suggests a reply to a message from the
//! channel's (or thread's) recent context and where the question was discussed before.

use std::io::Write;

use serde::Serialize;
use uuid::Uuid;

use super::Context;
use crate::error::{Error, ExitCode, Result};
use crate::report::Report;

#[derive(Debug, clap::Args)]
pub struct AiArgs {
    #[command(subcommand)]
    cmd: AiCmd,
}

#[derive(Debug, clap::Subcommand)]
enum AiCmd {
    /// Suggest a reply to a message from the channel's recent context (posts nothing)
    Reply {
        #[command(flatten)]
        target: super::AsBotInChannel,
        /// Reply in this thread (the root message's id): its messages are the context
        #[arg(long, value_name = "ID")]
        thread: Option<Uuid>,
        /// The message to reply to
        #[arg(long, value_name = "TEXT")]
        message: String,
    },
}

/// A suggested reply and what it was written from.
#[derive(Debug, Serialize)]
struct Suggestion {
    channel: String,
    thread: Option<Uuid>,
    engine: String,
    reply: String,
    /// How many recent messages were the context.
    context_messages: usize,
    /// Earlier messages found about the question (ids), best first.
    related: Vec<String>,
    /// Where they were looked for: the search index, or Postgres when none is built.
    related_from: crate::search::RelatedSource,
}

impl Report for Suggestion {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "{}", self.reply)
    }
}

pub async fn run(ctx: &Context, args: AiArgs) -> Result<ExitCode> {
    let AiCmd::Reply {
        target,
        thread,
        message,
    } = args.cmd;
    if message.trim().is_empty() {
        return Err(Error::usage("--message is empty").into());
    }
    let mut conn = ctx.connect().await?;
    let slug = ctx
        .workspace_or_only(&mut conn, target.workspace.clone())
        .await?;
    let name = target.channel.trim_start_matches('#').to_owned();
    let channel_id = crate::provision::ops::channel_id(&mut conn, &slug, &name).await?;
    if let Some(root) = thread {
        let found = crate::provision::ops::is_thread_root(&mut conn, root, channel_id).await?;
        if !found {
            return Err(Error::usage(format!(
                "no thread {root} in #{name}: --thread takes the id of a thread's first message"
            ))
            .into());
        }
    }
    drop(conn);

    let url = ctx.database_url().await?;
    let pool = crate::db::pool(&url, &ctx.config).await?;
    let (_, voice) = super::voice(ctx, &pool, target.as_bot.as_deref())?;
    if let Some(name) = &target.as_bot {
        super::require_bot(ctx, &pool, name, false).await?;
    }
    let index = crate::search::IndexDir::new(ctx.config.search_index_dir());
    let suggested = crate::bots::reply::suggest_reply(
        &pool,
        &voice,
        &crate::bots::reply::ReplyRequest {
            reader: Uuid::nil(),
            channel: channel_id,
            channel_name: &name,
            thread,
            at: chrono::Utc::now(),
            author: "you",
            text: &message,
            prompt: None,
            index: Some(&index),
            strict: true,
        },
    )
    .await?;
    target.output(ctx).render(&Suggestion {
        channel: name,
        thread,
        engine: voice.engine.name(),
        reply: suggested.text,
        context_messages: suggested.context_messages,
        related: suggested.related,
        related_from: suggested.related_from,
    })?;
    Ok(ExitCode::Success)
}
