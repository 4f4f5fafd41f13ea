//! The messages the summarizers and AI replies read, as [`crate::ai::Message`]s: a digest's
//! window, a thread, a channel's recent context, messages by id. Deleted messages are never
//! read; the reading bot's own are left out.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// A window's messages for the summarizer, oldest first, each with its reactions and its
/// thread's size: deleted ones, the bot's own and every bot's left out (bots answer and
/// summarize; a digest is of what people said, not of earlier digests). A stream, read as
/// the summarizer takes the messages, never held whole.
pub fn window_stream(
    conn: &mut sqlx::PgConnection,
    bot: Uuid,
    channel: Uuid,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> crate::ai::MessageStream<'_> {
    static WINDOW: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{MESSAGE_ROW}
              where c.channel_id = $1 and c.created_at >= $2 and c.created_at < $3 and not c.is_deleted
                and c.user_id <> $4 and not u.is_bot
              order by c.created_at, c.id"
        )
    });
    sqlx::query_as::<_, MessageRow>(&WINDOW)
        .bind(channel)
        .bind(start)
        .bind(end)
        .bind(bot)
        .fetch(conn)
        .map_ok(MessageRow::into_message)
        .map_err(anyhow::Error::from)
        .boxed()
}

/// A thread for the summarizer, the root first then its replies (the bot's own messages and
/// commands left out), and the channel's name.
pub async fn thread_messages(
    pool: &PgPool,
    bot: Uuid,
    root: Uuid,
) -> Result<(String, Vec<crate::ai::Message>)> {
    let messages = thread_stream(pool, bot, root).try_collect().await?;
    Ok((thread_channel(pool, root).await?, messages))
}

/// [`thread_messages`]' messages as a stream, never held whole.
pub fn thread_stream(pool: &PgPool, bot: Uuid, root: Uuid) -> crate::ai::MessageStream<'_> {
    static THREAD: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{MESSAGE_ROW}
              where (c.id = $1 or c.parent_id = $1) and not c.is_deleted and c.user_id <> $2
                -- Commands (`/tldr`, `!help`) are requests, not conversation.
                and left(ltrim(coalesce(c.message ->> 'text', '')), 1) not in ('/', '!')
              order by c.parent_id is not null, c.created_at, c.id"
        )
    });
    sqlx::query_as::<_, MessageRow>(&THREAD)
        .bind(root)
        .bind(bot)
        .fetch(pool)
        .map_ok(MessageRow::into_message)
        .map_err(anyhow::Error::from)
        .boxed()
}

/// The name of the channel a thread is in (`direct message` for a DM's).
pub async fn thread_channel(pool: &PgPool, root: Uuid) -> Result<String> {
    let channel: Option<String> = sqlx::query_scalar(
        "select ch.name from public.chat c join public.channels ch on ch.id = c.channel_id where c.id = $1",
    )
    .bind(root)
    .fetch_optional(pool)
    .await?
    .flatten();
    Ok(channel.unwrap_or_else(|| "direct message".into()))
}

/// The `limit` messages of a channel before `before` (and it), oldest first: the context
/// of an AI reply.
pub async fn recent_messages(
    pool: &PgPool,
    bot: Uuid,
    channel: Uuid,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<crate::ai::Message>> {
    let mut rows: Vec<MessageRow> = sqlx::query_as(&format!(
        "{MESSAGE_ROW}
          where c.channel_id = $1 and c.created_at <= $2 and not c.is_deleted and c.user_id <> $3
          order by c.created_at desc, c.id desc limit $4"
    ))
    .bind(channel)
    .bind(before)
    .bind(bot)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.reverse();
    Ok(rows.into_iter().map(MessageRow::into_message).collect())
}

/// The columns a summarizer's message is read from (callers add the rest of the query).
pub(crate) const MESSAGE_ROW: &str = "
    select c.id, u.username, coalesce(c.message ->> 'text', '') as text, c.parent_id, c.created_at,
           (select count(*) from public.emojis e where e.chat_id = c.id) as reactions, c.total_replies
      from public.chat c join public.users u on u.id = c.user_id";

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: Uuid,
    username: String,
    text: String,
    parent_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    reactions: Option<i64>,
    total_replies: i32,
}

impl MessageRow {
    pub(crate) fn into_message(self) -> crate::ai::Message {
        crate::ai::Message {
            id: self.id.to_string(),
            author: self.username,
            text: self.text,
            parent: self.parent_id.map(|p| p.to_string()),
            created_at: self.created_at,
            reactions: u32::try_from(self.reactions.unwrap_or(0)).unwrap_or(u32::MAX),
            replies: u32::try_from(self.total_replies).unwrap_or(0),
        }
    }
}

/// The messages with these ids that are not deleted, in the order given.
pub async fn by_ids(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<crate::ai::Message>> {
    let rows: Vec<MessageRow> = sqlx::query_as(&format!(
        "{MESSAGE_ROW}
          where c.id = any($1) and not c.is_deleted
          order by array_position($1, c.id)"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(MessageRow::into_message).collect())
}
