//! Where a question was discussed before: earlier messages of a channel about its topic
//! words, from the search index when one has been built, else from PostgreSQL's full-text
//! search, ranked alike. AI replies (the daemon's and `chatctl ai reply`) quote them.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{IndexDir, Reader};
use crate::db::messages::{MESSAGE_ROW, MessageRow};
use crate::error::Result;

/// Where [`related_messages`] looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelatedSource {
    /// The search index.
    Index,
    /// PostgreSQL full-text search: no index has been built.
    Postgres,
}

/// Earlier messages of the same channel (before `before`) that match any topic word of
/// `text`, best first: where a question was discussed before. The search index when one has
/// been built in `index`, else PostgreSQL full-text search, ranked alike.
pub async fn related_messages(
    pool: &PgPool,
    index: Option<&IndexDir>,
    bot: Uuid,
    channel: Uuid,
    text: &str,
    before: DateTime<Utc>,
) -> Result<(Vec<crate::ai::Message>, RelatedSource)> {
    const RELATED: usize = 3;
    let words = crate::ai::offline::topic_words(text);
    let found = match index {
        Some(dir) if !words.is_empty() => {
            in_index(dir, channel, words.clone(), before, bot, RELATED).await?
        }
        _ => None,
    };
    if let Some(ids) = found {
        // The index is a cache: the database has the final word (a message deleted since).
        let messages = crate::db::messages::by_ids(pool, &ids).await?;
        return Ok((messages, RelatedSource::Index));
    }
    if words.is_empty() {
        return Ok((Vec::new(), RelatedSource::Postgres));
    }
    let rows: Vec<MessageRow> = sqlx::query_as(&format!(
        "{MESSAGE_ROW}, websearch_to_tsquery('english', $4) q
          where c.channel_id = $1 and c.created_at < $2 and not c.is_deleted and c.user_id <> $3
            and c.search @@ q
          order by ts_rank(c.search, q) desc, c.created_at desc limit {RELATED}"
    ))
    .bind(channel)
    .bind(before)
    .bind(bot)
    .bind(words.join(" or "))
    .fetch_all(pool)
    .await?;
    let messages = rows.into_iter().map(MessageRow::into_message).collect();
    Ok((messages, RelatedSource::Postgres))
}

/// Earlier messages of `channel` (sent before `before`, not by `exclude`) about any of
/// `words`, best first, from the index in `dir`: `None` when no index has been built or the
/// one there cannot be read (an older chatctl's, until the indexer rebuilds it).
async fn in_index(
    dir: &IndexDir,
    channel: Uuid,
    words: Vec<String>,
    before: DateTime<Utc>,
    exclude: Uuid,
    limit: usize,
) -> Result<Option<Vec<Uuid>>> {
    let dir = dir.clone();
    tokio::task::spawn_blocking(move || {
        if dir.current_name()?.is_none() {
            return Ok(None);
        }
        let reader = match Reader::open(&dir) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "search index unusable; asking PostgreSQL");
                return Ok(None);
            }
        };
        reader
            .related(channel, &words, before, exclude, limit)
            .map(Some)
    })
    .await?
}
