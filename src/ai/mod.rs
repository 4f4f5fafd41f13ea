//! What the bots and `chatctl summarize` say: channel digests, thread summaries and suggested
//! replies, behind one [`LanguageModel`] interface with two engines.
//!
//! - [`offline`]: the default when no model is configured. Extractive, deterministic, no
//!   network: it picks and attributes the messages that matter.
//! - [`openai`]: any OpenAI-compatible chat-completions server (OpenAI, Azure-style gateways,
//!   Ollama, vLLM, llama.cpp), with retries, a concurrency limit, a daily token budget per bot
//!   kept in the database, redaction before anything leaves, and map-reduce over long windows.
//!
//! Whatever the engine, a digest comes back as the same [`offline::Digest`] structure, checked
//! against the source (every cited id real, every name a participant), so Markdown, JSON and
//! the posted text are rendered by one piece of code. [`rouge`] measures summaries against
//! human references (EVALUATION.md).

pub mod builder;
pub mod offline;
pub mod openai;
pub mod prompt;
pub mod rouge;
pub mod voice;
pub mod window;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

pub use offline::Digest;
pub use prompt::Prompts;

/// One message as the summarizers see it: who wrote what, where in a thread, how it was
/// received.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The message id, cited in summaries so a reader can jump to it.
    pub id: String,
    pub author: String,
    pub text: String,
    /// The thread root it replies to, if any.
    pub parent: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Reactions it received (all emojis counted).
    pub reactions: u32,
    /// Replies it drew (its thread's size, wherever the replies are; 0 when unknown).
    pub replies: u32,
}

impl Message {
    /// A message without thread or reactions (a plain chat line).
    pub fn line(id: impl Into<String>, author: &str, text: &str, at: DateTime<Utc>) -> Message {
        Message {
            id: id.into(),
            author: author.to_owned(),
            text: text.to_owned(),
            parent: None,
            created_at: at,
            reactions: 0,
            replies: 0,
        }
    }
}

/// A window's messages, oldest first, as they are read.
pub type MessageStream<'a> = futures_util::stream::BoxStream<'a, crate::error::Result<Message>>;

/// `messages` as a [`MessageStream`].
pub fn stream_of(messages: &[Message]) -> MessageStream<'_> {
    use futures_util::StreamExt as _;
    futures_util::stream::iter(messages.iter().cloned().map(Ok)).boxed()
}

/// A future an engine returns.
pub type AiFuture<'a, T> = Pin<Box<dyn Future<Output = crate::error::Result<T>> + Send + 'a>>;

/// What an engine is asked about, and on whose behalf.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Who asks: a bot's name, or `chatctl` for the command line. The daily token budget is
    /// kept per asker.
    pub bot: &'a str,
    /// The channel's name, for the prompt.
    pub channel: &'a str,
    /// The conversation, oldest first: a channel's window, or a thread (root first).
    pub messages: &'a [Message],
    /// The prompt templates, with the bot's overrides applied.
    pub prompts: &'a Prompts,
    /// The bot's persona (its system prompt), if it has one.
    pub persona: Option<&'a str>,
    /// The asker's daily token budget (`None`: unlimited).
    pub budget: Option<u64>,
    /// Whose budget pays: the bot's name (`bot`), or `user:<id>` for a user of the HTTP API.
    pub payer: &'a str,
}

/// A question to suggest a reply to, and earlier messages where it may have been discussed.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// Who asked (their username).
    pub author: &'a str,
    pub text: &'a str,
    /// Earlier messages that match the question (search results), best first.
    pub related: &'a [Message],
}

/// A summarizer and reply writer. Object-safe: the runtime holds an `Arc<dyn LanguageModel>`
/// chosen by configuration.
pub trait LanguageModel: Send + Sync {
    /// `offline`, or `openai:MODEL`: for logs and the digest's footer.
    fn name(&self) -> String;

    /// The digest of a channel's window held in memory (`ask.messages` not empty): the
    /// stream's digest, read from the slice.
    fn digest<'a>(&'a self, ask: Ask<'a>) -> AiFuture<'a, Digest> {
        self.digest_stream(ask, stream_of(ask.messages))
    }

    /// The digest of a window read as it streams in (`ask.messages` unused), holding a part
    /// of it at a time; an empty window gives a digest of no messages.
    fn digest_stream<'a>(
        &'a self,
        ask: Ask<'a>,
        messages: MessageStream<'a>,
    ) -> AiFuture<'a, Digest>;

    /// A summary of a thread held in memory (`ask.messages`: the root first, then its
    /// replies): the stream's summary, read from the slice.
    fn thread_summary<'a>(&'a self, ask: Ask<'a>) -> AiFuture<'a, String> {
        self.thread_summary_stream(ask, stream_of(ask.messages))
    }

    /// A summary of a thread read as it streams in (the root first; `ask.messages` unused),
    /// holding a part of it at a time.
    fn thread_summary_stream<'a>(
        &'a self,
        ask: Ask<'a>,
        messages: MessageStream<'a>,
    ) -> AiFuture<'a, String>;

    /// A suggested reply to `question`, from the recent context in `ask.messages`.
    fn reply<'a>(&'a self, ask: Ask<'a>, question: Question<'a>) -> AiFuture<'a, String>;
}

/// Why an engine gave no answer. Kept in the error chain, so callers (the runtime, the exit
/// code) can tell a spent budget from a broken server.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// The asker's token budget for the day (UTC) is spent: nothing was sent.
    #[error(
        "the daily token budget of `{bot}` is spent ({used} of {budget} tokens used today, UTC); nothing was sent to the model"
    )]
    BudgetSpent { bot: String, used: u64, budget: u64 },
    /// The server refused the request (a 4xx other than 429): retrying will not help.
    #[error("the model server refused the request: HTTP {status}: {message}")]
    Refused { status: u16, message: String },
    /// Still failing after every retry (429, 5xx, timeouts, connection errors).
    #[error("the model server did not answer after {attempts} attempt(s): {last}")]
    Unavailable { attempts: u32, last: String },
    /// The answer was not what the prompt asked for.
    #[error("the model's answer could not be used: {0}")]
    Malformed(String),
}

/// Counters of the AI engines, exported by the daemon's `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests sent to a model server (each retry counts).
    pub requests: AtomicU64,
    /// Retries after a 429, a 5xx, a timeout or a connection error.
    pub retries: AtomicU64,
    /// Requests refused before sending because a daily token budget was spent.
    pub budget_refusals: AtomicU64,
    /// Answers that failed for good (after retries, refused, malformed).
    pub failures: AtomicU64,
    /// Tokens used (prompt and completion, as the server reported them).
    pub tokens: AtomicU64,
    /// Citations of the model dropped because the id was not in the source.
    pub invented_citations: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// (name, help, value) of each counter, for the Prometheus exposition.
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 6] {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "chatctl_ai_requests_total",
                "Requests sent to the model server, retries included",
                v(&self.requests),
            ),
            (
                "chatctl_ai_retries_total",
                "Retries after a 429, 5xx, timeout or connection error",
                v(&self.retries),
            ),
            (
                "chatctl_ai_budget_refusals_total",
                "Requests refused because a bot's daily token budget was spent",
                v(&self.budget_refusals),
            ),
            (
                "chatctl_ai_failures_total",
                "AI answers that failed for good",
                v(&self.failures),
            ),
            (
                "chatctl_ai_tokens_total",
                "Tokens used, as the model server reported them",
                v(&self.tokens),
            ),
            (
                "chatctl_ai_invented_citations_total",
                "Citations of the model dropped because the message id was not in the source",
                v(&self.invented_citations),
            ),
        ]
    }
}

/// The engine the configuration asks for: the OpenAI-compatible one when a model is
/// configured (`openai.model`), else the offline one. `pool` keeps the token budgets.
pub fn engine(
    config: &crate::config::Config,
    pool: Option<sqlx::PgPool>,
    stats: Arc<Stats>,
) -> crate::error::Result<Arc<dyn LanguageModel>> {
    let ai = config.ai.clone();
    if ai.model.is_none() {
        return Ok(Arc::new(offline::OfflineEngine));
    }
    Ok(Arc::new(openai::OpenAiEngine::new(ai, pool, stats)?))
}

/// How many participants a digest names before "and N others".
const NAMED: usize = 5;

/// The most active participants, then how many others: `@ann, @bob and 3 others`.
pub fn people(participants: &[offline::Participant]) -> String {
    let named: Vec<String> = participants
        .iter()
        .take(NAMED)
        .map(|p| format!("@{}", p.name))
        .collect();
    match participants.len().saturating_sub(NAMED) {
        0 => named.join(", "),
        1 => format!("{} and 1 other", named.join(", ")),
        n => format!("{} and {n} others", named.join(", ")),
    }
}

/// The text a digest is posted as (and `chatctl summarize` prints): a header naming the
/// channel, the window in the channel's time zone and who took part (the most active few),
/// then the digest's sections.
pub fn digest_post(
    digest: &Digest,
    channel: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> String {
    format!(
        "Digest of #{channel}, {} to {} {}: {} message(s) from {} ({}).\n\n{}",
        start.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        end.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        tz.name(),
        digest.messages,
        digest.participants.len(),
        people(&digest.participants),
        digest.sections()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header names the window in the channel's time zone and the most active few.
    #[test]
    fn a_digest_header_says_the_window_in_its_time_zone_and_the_most_active_few() {
        let t0 = DateTime::<Utc>::from_timestamp(1_767_250_800, 0).unwrap(); // 2026-01-01 07:00 UTC
        let messages: Vec<Message> = (0..40)
            .map(|i| {
                Message::line(
                    format!("{i}"),
                    &format!("person{}", i % 8),
                    "the release plan for the new billing export",
                    t0,
                )
            })
            .collect();
        let d = offline::digest(&messages);
        let text = digest_post(
            &d,
            "general",
            t0,
            t0 + chrono::Duration::days(1),
            chrono_tz::Europe::Paris,
        );
        assert!(
            text.starts_with(
                "Digest of #general, 2026-01-01 08:00 to 2026-01-02 08:00 Europe/Paris: 40 message(s) from 8 (@person0, @person1, @person2, @person3, @person4 and 3 others)."
            ),
            "{text}"
        );
    }
}
