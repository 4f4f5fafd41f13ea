//! Posting a batch's replies: showing 👀, writing what takes time (thread summaries, AI
//! replies through [`crate::bots::reply`]), completing the claims still held and posting
//! their replies in one statement, removing the 👀.

use sqlx::PgPool;
use uuid::Uuid;

use super::{Message, Metrics, Pass, Voice};
use crate::error::Result;

/// Showing 👀, writing what takes time (summaries, AI replies), completing the claims still
/// held and posting their replies, removing the 👀: the part of handling a batch that can run
/// beside reading and claiming the next one.
pub(super) struct PostJob {
    pub(super) pool: PgPool,
    pub(super) posted: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Uuid>>>,
    pub(super) metrics: std::sync::Arc<Metrics>,
    pub(super) voice: std::sync::Arc<Voice>,
    pub(super) bot_user: Uuid,
    pub(super) instance: String,
    /// Each message answered, and how; `threads` and `work` are in the same order.
    pub(super) messages: Vec<(Message, crate::bots::trigger::ReplyKind)>,
    pub(super) threads: Vec<Uuid>,
    pub(super) work: Vec<Work>,
    /// The search index AI replies look for earlier discussions in, when the daemon keeps one.
    pub(super) index: Option<crate::search::IndexDir>,
}

/// How a reply's text is written.
pub(super) enum Work {
    Ready(String),
    /// A summary of the thread with this root.
    ThreadSummary(Uuid),
    /// The AI's suggested reply to its message.
    Reply {
        prompt: Option<String>,
    },
}

/// The info line of one reply: the bot, where, the message answered, how, and how long after
/// the message was committed.
pub(super) fn log_reply(
    bot: &str,
    m: &Message,
    kind: crate::bots::trigger::ReplyKind,
    after_seconds: f64,
) {
    let how = match kind {
        crate::bots::trigger::ReplyKind::Template => "replied",
        crate::bots::trigger::ReplyKind::ThreadSummary => "summarized the thread",
        crate::bots::trigger::ReplyKind::Ai => "replied with the AI",
    };
    tracing::info!(
        target: "chatctl::action",
        bot = %bot,
        workspace = %m.workspace,
        channel = %m.channel_name.as_deref().unwrap_or("direct message"),
        message = %m.id,
        latency_ms = (after_seconds * 1000.0).round() as i64,
        "{how}"
    );
}

impl PostJob {
    /// [`PostJob::post`], its failure counted against the bot.
    pub(super) async fn run(self) -> Result<Pass> {
        let per_bot = self.metrics.bot(&self.voice.bot);
        let result = self.post().await;
        if result.is_err() {
            Metrics::inc(&per_bot.errors);
        }
        result
    }

    async fn post(self) -> Result<Pass> {
        let ids: &Vec<Uuid> = &self.messages.iter().map(|(m, _)| m.id).collect();
        let chans: Vec<Uuid> = self.messages.iter().map(|(m, _)| m.channel_id).collect();
        sqlx::query(
            "insert into public.emojis (chat_id, user_id, emoji_uni_code) select m, $2, '👀' from unnest($1::uuid[]) m
             on conflict do nothing",
        )
        .bind(ids)
        .bind(self.bot_user)
        .execute(&self.pool)
        .await?;
        let texts = self.write().await?;
        let reply_ids: Vec<Uuid> = ids.iter().map(|_| Uuid::new_v4()).collect();
        self.posted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(reply_ids.iter().copied());
        let (chans, threads, texts) = (&chans, &self.threads, &texts);
        // Completing the claims and posting their replies is one statement: atomic, and only
        // for the claims this process still holds.
        let answered: Vec<Uuid> = sqlx::query_scalar(
            "with done as (
                 update chatctl.bot_claims b set done_at = now(), reply_id = x.r
                   from unnest($2::uuid[], $3::uuid[]) as x(m, r)
                  where b.bot = $1 and b.message_id = x.m and b.claimed_by = $4 and b.done_at is null
                 returning b.message_id, b.reply_id),
             posted as (
                 insert into public.chat (id, channel_id, user_id, parent_id, message)
                 select d.reply_id, x.c, $5, x.t, jsonb_build_object('text', x.txt)
                   from done d join unnest($2::uuid[], $6::uuid[], $7::uuid[], $8::text[]) as x(m, c, t, txt) on x.m = d.message_id
                 returning id)
             select d.message_id from done d join posted p on p.id = d.reply_id",
        )
        .bind(&self.voice.bot)
        .bind(ids)
        .bind(&reply_ids)
        .bind(&self.instance)
        .bind(self.bot_user)
        .bind(chans)
        .bind(threads)
        .bind(texts)
        .fetch_all(&self.pool)
        .await?;
        let posted = answered.len();
        sqlx::query("delete from public.emojis where chat_id = any($1) and user_id = $2 and emoji_uni_code = '👀'")
            .bind(ids)
            .bind(self.bot_user)
            .execute(&self.pool)
            .await?;
        let mut pass = Pass::default();
        pass.replied += posted;
        pass.lost_claims += ids.len() - posted;
        let per_bot = self.metrics.bot(&self.voice.bot);
        let now = chrono::Utc::now();
        for (m, kind) in self
            .messages
            .iter()
            .filter(|(m, _)| answered.contains(&m.id))
        {
            Metrics::inc(&self.metrics.replies_posted);
            Metrics::inc(&per_bot.replies);
            let after = (now - m.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            log_reply(&self.voice.bot, m, *kind, after);
        }
        tracing::debug!(bot = %self.voice.bot, posted, "replies posted");
        Ok(pass)
    }

    /// A thread's summary in the bot's voice, the thread read as a stream; the offline
    /// engine's (the thread read again) when the engine fails.
    async fn thread_summary(&self, root: Uuid) -> Result<String> {
        use crate::db::messages::{thread_channel, thread_stream};
        let channel = thread_channel(&self.pool, root).await?;
        let messages = thread_stream(&self.pool, self.bot_user, root);
        match self
            .voice
            .engine
            .thread_summary_stream(self.voice.ask(&channel, &[]), messages)
            .await
        {
            Ok(text) => Ok(text),
            Err(e) => {
                self.voice.fell_back("thread summary", &e);
                let messages = thread_stream(&self.pool, self.bot_user, root);
                crate::ai::offline::thread_summary_stream(messages).await
            }
        }
    }

    /// The text of each reply: ready ones as they are, one summary per thread, AI replies
    /// from the channel's recent context and where the question was discussed before.
    async fn write(&self) -> Result<Vec<String>> {
        let mut summaries: std::collections::HashMap<Uuid, String> =
            std::collections::HashMap::new();
        let mut texts = Vec::with_capacity(self.work.len());
        for (w, (message, _)) in self.work.iter().zip(&self.messages) {
            texts.push(match w {
                Work::Ready(t) => t.clone(),
                Work::ThreadSummary(root) => {
                    if !summaries.contains_key(root) {
                        let text = self.thread_summary(*root).await?;
                        summaries.insert(*root, text);
                    }
                    summaries[root].clone()
                }
                Work::Reply { prompt } => {
                    let request = crate::bots::reply::ReplyRequest {
                        reader: self.bot_user,
                        channel: message.channel_id,
                        channel_name: message.channel_name.as_deref().unwrap_or("direct message"),
                        thread: None,
                        at: message.created_at,
                        author: &message.author,
                        text: &message.text,
                        prompt: prompt.as_deref(),
                        index: self.index.as_ref(),
                        strict: false,
                    };
                    crate::bots::reply::suggest_reply(&self.pool, &self.voice, &request)
                        .await?
                        .text
                }
            });
        }
        Ok(texts)
    }
}
