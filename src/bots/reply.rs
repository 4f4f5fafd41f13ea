//! A suggested reply: the one path the daemon's AI replies and `chatctl ai reply` take (and
//! the HTTP API's `generate-response`): the context (a thread, or the channel's recent
//! messages up to the one replied to), where the question was discussed before
//! ([`crate::search::related_messages`]), and the [`Voice`] that writes it.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ai::voice::Voice;
use crate::error::Result;
use crate::search::{IndexDir, RelatedSource};

/// How many messages before the one replied to are its context.
const CONTEXT: i64 = 50;

/// What to reply to, and how.
pub struct ReplyRequest<'a> {
    /// Who reads: the bot's user, whose own messages are left out (nil: no one's).
    pub reader: Uuid,
    pub channel: Uuid,
    /// The channel's name as the reply should say it (`direct message` for a DM).
    pub channel_name: &'a str,
    /// Reply in this thread (its root's id): its messages are the context, instead of the
    /// channel's recent ones.
    pub thread: Option<Uuid>,
    /// When the message replied to was sent: the context ends there.
    pub at: DateTime<Utc>,
    pub author: &'a str,
    pub text: &'a str,
    /// Instructions added to the reply prompt (a trigger's `prompt`).
    pub prompt: Option<&'a str>,
    /// The search index to look for earlier discussions in, when one is kept.
    pub index: Option<&'a IndexDir>,
    /// An engine failure fails the reply (the command line) instead of falling back to the
    /// offline engine (the daemon, which must answer).
    pub strict: bool,
}

/// A suggested reply and what it was written from.
#[derive(Debug)]
pub struct SuggestedReply {
    pub text: String,
    /// How many messages were the context.
    pub context_messages: usize,
    /// The earlier messages found about the question (ids), best first.
    pub related: Vec<String>,
    /// Where they were looked for.
    pub related_from: RelatedSource,
}

/// Writes the reply to `request` in `voice`.
pub async fn suggest_reply(
    pool: &PgPool,
    voice: &Voice,
    request: &ReplyRequest<'_>,
) -> Result<SuggestedReply> {
    let r = request;
    let context = match r.thread {
        Some(root) => {
            crate::db::messages::thread_messages(pool, r.reader, root)
                .await?
                .1
        }
        None => {
            crate::db::messages::recent_messages(pool, r.reader, r.channel, r.at, CONTEXT).await?
        }
    };
    let since = context.first().map_or(r.at, |m| m.created_at);
    let (related, related_from) =
        crate::search::related_messages(pool, r.index, r.reader, r.channel, r.text, since).await?;
    let question = crate::ai::Question {
        author: r.author,
        text: r.text,
        related: &related,
    };
    let text = voice
        .reply(r.channel_name, &context, question, r.prompt, r.strict)
        .await?;
    Ok(SuggestedReply {
        text,
        context_messages: context.len(),
        related: related.into_iter().map(|m| m.id).collect(),
        related_from,
    })
}
