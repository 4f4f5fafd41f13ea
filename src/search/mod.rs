//! Search: a tantivy index of messages and channels (a cache of the database, rebuilt or
//! brought up to date from it at any time), Slack's query language, and the same language on
//! PostgreSQL full-text search for comparison.
//!
//! Permissions are not stored in the index. A search as a user reads the channels that user
//! may read from the database, through the row level security policies themselves (as the
//! `authenticated` role with the user's JWT claims), and filters on them: a membership or
//! privacy change is in effect for the very next search, and the two engines cannot differ
//! from RLS or from each other.

pub mod analyzer;
pub mod files;
pub mod index;
pub mod indexer;
pub mod postgres;
pub mod query;
mod related;
mod results;
mod tantivy_engine;

use std::collections::HashMap;

use anyhow::Context as _;
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use index::{Generation, IndexDir, IndexReport};
pub use query::{ParseError, Query};
pub use related::{RelatedSource, related_messages};
pub use results::{ChannelRow, Request, ResultRow, Results, search};
pub use tantivy_engine::Reader;

use crate::db::Pool;
use crate::error::Result;

/// Which engine runs a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Tantivy,
    Postgres,
}

/// A flag a message may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    File,
    Link,
    Thread,
}

impl Flag {
    pub fn term(self) -> &'static str {
        match self {
            Flag::File => "file",
            Flag::Link => "link",
            Flag::Thread => "thread",
        }
    }
}

/// A word or phrase of the query.
#[derive(Debug, Clone)]
pub struct Text {
    pub negated: bool,
    pub phrase: bool,
    pub text: String,
}

/// A query with its names resolved to ids and its dates to one time range.
#[derive(Debug, Clone)]
pub struct Plan {
    pub query: Query,
    pub text: Vec<Text>,
    pub authors: Vec<(bool, Uuid)>,
    pub channels: Vec<(bool, Vec<Uuid>)>,
    pub mentions: Vec<(bool, Uuid)>,
    /// Sent at or after.
    pub since: Option<DateTime<Utc>>,
    /// Sent before.
    pub until: Option<DateTime<Utc>>,
    pub flags: Vec<(bool, Flag)>,
    /// `file:NAME`: the words a message's file names must all have.
    pub file_words: Vec<(bool, Vec<String>)>,
    /// `type:FAMILY`.
    pub file_types: Vec<(bool, &'static str)>,
}

impl Plan {
    /// Whether the query ranks by relevance (it has words or phrases to match).
    pub fn ranked(&self) -> bool {
        self.text.iter().any(|t| !t.negated)
    }
}

/// Whose search it is, and where.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Search as this user: only channels they may read. `None`: the service role, everything.
    pub as_user: Option<Uuid>,
    /// The channels `as_user` may read, as RLS decides it (for the tantivy engine).
    pub readable: Option<Vec<Uuid>>,
    pub workspace: Option<Uuid>,
}

/// A matching message.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub author_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// The thread it belongs to (its first message), if any.
    pub thread: Option<Uuid>,
    pub score: f32,
    /// The best fragment of the text, matches between `**`.
    pub snippet: String,
}

/// A matching channel (by name, topic or description).
#[derive(Debug, Clone, Serialize)]
pub struct ChannelHit {
    pub id: Uuid,
    pub score: f32,
}

/// What a search found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Found {
    pub hits: Vec<Hit>,
    pub channels: Vec<ChannelHit>,
    /// How many messages match in all (the tantivy engine counts them; Postgres does not).
    pub total: Option<u64>,
}

/// Resolves the names of a parsed query (`from:@ada`, `in:#general`) to ids. An unknown
/// name is an error pointing at it; a channel the searching user may not read is unknown
/// to them too.
pub async fn resolve(pool: &Pool, query: Query, scope: &Scope) -> Result<Plan, ResolveError> {
    let mut plan = Plan {
        query: query.clone(),
        text: Vec::new(),
        authors: Vec::new(),
        channels: Vec::new(),
        mentions: Vec::new(),
        since: None,
        until: None,
        flags: Vec::new(),
        file_words: Vec::new(),
        file_types: Vec::new(),
    };
    let unknown = |c: &query::Clause, reason: String| {
        ResolveError::Query(ParseError {
            query: String::new(),
            at: c.span.0,
            len: c.span.1 - c.span.0,
            reason,
        })
    };
    let day = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    for c in &query.clauses {
        use query::Term as T;
        match &c.term {
            T::Word(w) => plan.text.push(Text {
                negated: c.negated,
                phrase: false,
                text: w.clone(),
            }),
            T::Phrase(p) => plan.text.push(Text {
                negated: c.negated,
                phrase: true,
                text: p.clone(),
            }),
            T::From(u) | T::Mentions(u) => {
                let id = user_id(pool, u)
                    .await?
                    .ok_or_else(|| unknown(c, format!("there is no user @{u}")))?;
                if matches!(c.term, T::From(_)) {
                    plan.authors.push((c.negated, id));
                } else {
                    plan.mentions.push((c.negated, id));
                }
            }
            T::In(name) => {
                let mut ids = channel_ids(pool, name, scope.workspace).await?;
                if let Some(readable) = &scope.readable {
                    ids.retain(|id| readable.contains(id));
                }
                if ids.is_empty() {
                    return Err(unknown(c, format!("there is no channel #{name}")));
                }
                plan.channels.push((c.negated, ids));
            }
            T::Before(d) => {
                let t = day(*d);
                plan.until = plan.until.min(t).or(t);
            }
            T::After(d) => {
                let t = d.checked_add_days(Days::new(1)).and_then(day);
                plan.since = plan.since.max(t);
            }
            T::On(d) => {
                let start = day(*d);
                let end = d.checked_add_days(Days::new(1)).and_then(day);
                plan.since = plan.since.max(start);
                plan.until = plan.until.min(end).or(end);
            }
            T::Has(query::Has::File) => plan.flags.push((c.negated, Flag::File)),
            T::Has(query::Has::Link) => plan.flags.push((c.negated, Flag::Link)),
            T::IsThread => plan.flags.push((c.negated, Flag::Thread)),
            T::File(words) => plan.file_words.push((c.negated, words.clone())),
            T::Type(family) => plan.file_types.push((c.negated, family)),
        }
    }
    Ok(plan)
}

/// A query that cannot run: bad syntax or an unknown name (with where it is), or a
/// database error.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Query(ParseError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ResolveError {
    fn from(e: sqlx::Error) -> Self {
        ResolveError::Other(e.into())
    }
}

async fn user_id(pool: &Pool, username: &str) -> Result<Option<Uuid>> {
    Ok(
        sqlx::query_scalar("select id from public.users where username = $1")
            .bind(username)
            .fetch_optional(pool)
            .await?,
    )
}

async fn channel_ids(pool: &Pool, name: &str, workspace: Option<Uuid>) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "select id from public.channels where name = $1 and ($2::uuid is null or workspace_id = $2)",
    )
    .bind(name)
    .bind(workspace)
    .fetch_all(pool)
    .await?)
}

/// Runs the rest of a transaction as `user` through PostgREST's eyes: the `authenticated`
/// role with the user's JWT claims, so every row level security policy applies.
pub async fn act_as(conn: &mut crate::db::Connection, user: Uuid) -> Result<()> {
    crate::db::app_queries::act_as(conn, "authenticated", Some(user))
        .await
        .context("cannot switch to the authenticated role to search as a user")
}

/// The channels `user` may read, as the row level security policies decide it.
pub async fn readable_channels(pool: &Pool, user: Uuid) -> Result<Vec<Uuid>> {
    let mut tx = pool.begin().await?;
    act_as(&mut tx, user).await?;
    let ids = sqlx::query_scalar("select id from public.channels")
        .fetch_all(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(ids)
}

/// Runs a resolved query on the chosen engine.
pub async fn run(
    pool: &Pool,
    reader: Option<&Reader>,
    plan: &Plan,
    scope: &Scope,
    limit: usize,
) -> Result<Found> {
    match reader {
        Some(r) => r.search(plan, scope, limit),
        None => postgres::search(pool, plan, scope, limit).await,
    }
}

/// Display names of what hits refer to: usernames by user id; `#name` (or `direct message`)
/// and the workspace slug by channel id.
#[derive(Debug, Default)]
pub struct Names {
    pub users: HashMap<Uuid, String>,
    pub channels: HashMap<Uuid, (String, String)>,
}

pub async fn names(pool: &Pool, found: &Found) -> Result<Names> {
    let users: Vec<Uuid> = found.hits.iter().map(|h| h.author_id).collect();
    let channels: Vec<Uuid> = found
        .hits
        .iter()
        .map(|h| h.channel_id)
        .chain(found.channels.iter().map(|c| c.id))
        .collect();
    // One round trip: users (no slug) and channels (with their workspace's slug).
    let rows = sqlx::query_as::<_, (Uuid, String, Option<String>)>(
        "select id, username, null from public.users where id = any($1)
         union all
         select c.id, coalesce('#' || c.name, 'direct message'), w.slug
           from public.channels c join public.workspaces w on w.id = c.workspace_id
          where c.id = any($2)",
    )
    .bind(&users)
    .bind(&channels)
    .fetch_all(pool)
    .await?;
    let mut names = Names::default();
    for (id, name, slug) in rows {
        match slug {
            Some(slug) => {
                names.channels.insert(id, (name, slug));
            }
            None => {
                names.users.insert(id, name);
            }
        }
    }
    Ok(names)
}

/// A workspace's id by slug.
pub async fn workspace_id(pool: &Pool, slug: &str) -> Result<Uuid> {
    sqlx::query_scalar("select id from public.workspaces where slug = $1")
        .bind(slug)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| crate::error::Error::usage(format!("there is no workspace `{slug}`")).into())
}

/// A user by username (with or without `@`), e-mail address or id.
pub async fn find_user(pool: &Pool, who: &str) -> Result<(Uuid, String)> {
    let key = who.trim_start_matches('@').to_lowercase();
    sqlx::query_as(
        "select id, username from public.users
          where username = $1 or email = $1 or id::text = $1
          order by username = $1 desc limit 1",
    )
    .bind(&key)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| {
        crate::error::Error::usage(format!("there is no user `{who}`"))
            .with_help("give a username, an e-mail address or a user id")
            .into()
    })
}

/// What `search status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    pub index_dir: String,
    pub generation: Option<String>,
    pub messages: u64,
    pub channels: u64,
    pub size_bytes: u64,
    pub watermark: Option<u64>,
    pub built_at: Option<DateTime<Utc>>,
    pub synced_at: Option<DateTime<Utc>>,
    /// Change-log entries at or past the watermark: what the next sync reads.
    pub backlog: Option<u64>,
    /// The oldest watermark the change log can still bring up to date.
    pub horizon: u64,
}

pub async fn status(pool: &Pool, dir: &IndexDir) -> Result<Status> {
    let horizon = index::horizon(pool).await?;
    let mut s = Status {
        index_dir: dir.path.display().to_string(),
        generation: None,
        messages: 0,
        channels: 0,
        size_bytes: 0,
        watermark: None,
        built_at: None,
        synced_at: None,
        backlog: None,
        horizon,
    };
    if let Some(g) = dir.open()? {
        let (messages, channels) = g.counts()?;
        s.messages = messages;
        s.channels = channels;
        s.size_bytes = index::dir_size(&dir.path.join(&g.name));
        s.watermark = Some(g.payload.watermark);
        s.built_at = Some(g.payload.built_at);
        s.synced_at = Some(g.payload.synced_at);
        s.backlog = Some(index::backlog(pool, g.payload.watermark).await?);
        s.generation = Some(g.name);
    }
    Ok(s)
}
