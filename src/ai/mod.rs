//! What the bots and `chatctl summarize` say: summaries of a channel's window or of a thread.
//!
//! The offline extractive engine ([`offline`]) is the default: deterministic, no network, it
//! picks and attributes the messages that matter. An OpenAI-compatible engine comes behind the
//! same interface (issue 5, not yet built). [`rouge`] is the scorer that measures summaries
//! against human references (EVALUATION.md).

pub mod offline;
pub mod rouge;

use chrono::{DateTime, Utc};

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
        }
    }
}
