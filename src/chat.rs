//! Messages as operators post and watch them (`chatctl post`, `chatctl tail`): a message
//! written as a member or a bot, audited; and the messages that arrive in a workspace, read
//! in the order they were written, none missed when commits come out of order.

use std::collections::HashMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::provision::Actor;
use crate::report::Report;

/// Who a message is written as.
#[derive(Debug, Clone)]
pub enum Author {
    /// A person: an email address, username or id.
    Member(String),
    /// A bot account, by name.
    Bot(String),
}

/// A message to post.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub workspace: String,
    pub channel: String,
    /// A reply in this thread (the root message's id).
    pub thread: Option<Uuid>,
    pub author: Author,
    pub text: String,
}

/// A message as written (what `post` prints, and each line `tail` follows).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Line {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub workspace: String,
    /// `#name`, or `direct message`.
    pub channel: String,
    pub author: String,
    pub author_is_bot: bool,
    pub thread: Option<Uuid>,
    pub text: String,
}

impl Line {
    fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let reply = if self.thread.is_some() { " ↳" } else { "" };
        writeln!(
            out,
            "{} {}{reply} @{}{}: {}",
            self.created_at.format("%H:%M:%S"),
            self.channel,
            self.author,
            if self.author_is_bot { " (bot)" } else { "" },
            self.text
        )
    }
}

impl Report for Line {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.write(out)
    }
}

/// Many lines, one after another (`tail` without following).
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Lines(pub Vec<Line>);

impl Report for Lines {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.0.iter().try_for_each(|l| l.write(out))
    }
}

/// The columns of a [`Line`], from `chat m` joined with its channel `c`, workspace `w` and
/// author `u`.
const LINE: &str = "m.id, m.created_at, w.slug as workspace,
       coalesce('#' || c.name, 'direct message') as channel, u.username as author,
       u.is_bot as author_is_bot, m.parent_id as thread, coalesce(m.message ->> 'text', '') as text
  from public.chat m join public.channels c on c.id = m.channel_id
  join public.workspaces w on w.id = c.workspace_id join public.users u on u.id = m.user_id";

/// Posts `m` as its author, who must be a member of the channel (a bot too), in one
/// transaction with its audit entry.
pub async fn post(conn: &mut PgConnection, actor: &Actor, m: &NewMessage) -> Result<Line> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let channel: Option<(Uuid, bool)> = sqlx::query_as(
        "select c.id, c.archived_at is not null from public.channels c
           join public.workspaces w on w.id = c.workspace_id
          where w.slug = $1 and c.name = $2",
    )
    .bind(&m.workspace)
    .bind(&m.channel)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((channel, archived)) = channel else {
        return Err(Error::usage(format!(
            "no channel #{} in workspace `{}`",
            m.channel, m.workspace
        ))
        .with_help(format!("see `chatctl channel list -w {}`", m.workspace))
        .into());
    };
    if archived {
        return Err(Error::usage(format!(
            "#{} is archived: nothing can be posted in it",
            m.channel
        ))
        .into());
    }
    let (author, username) = find_author(&mut tx, &m.author).await?;
    let member: bool = sqlx::query_scalar(
        "select exists (select 1 from public.members where channel_id = $1 and user_id = $2)",
    )
    .bind(channel)
    .bind(author)
    .fetch_one(&mut *tx)
    .await?;
    if !member {
        return Err(Error::usage(format!(
            "@{username} is not a member of #{}: they could not post there",
            m.channel
        ))
        .with_help(format!(
            "add them first: chatctl channel add-members {} -w {} EMAIL",
            m.channel, m.workspace
        ))
        .into());
    }
    if let Some(root) = m.thread {
        let ok: bool = sqlx::query_scalar(
            "select exists (select 1 from public.chat where id = $1 and channel_id = $2 and parent_id is null)",
        )
        .bind(root)
        .bind(channel)
        .fetch_one(&mut *tx)
        .await?;
        if !ok {
            return Err(Error::usage(format!(
                "there is no thread {root} in #{}: --thread takes the id of a top-level message of the channel",
                m.channel
            ))
            .into());
        }
    }
    let id: Uuid = sqlx::query_scalar(
        "insert into public.chat (channel_id, user_id, parent_id, message)
         values ($1, $2, $3, jsonb_build_object('text', $4::text)) returning id",
    )
    .bind(channel)
    .bind(author)
    .bind(m.thread)
    .bind(&m.text)
    .fetch_one(&mut *tx)
    .await?;
    crate::audit::record(
        &mut tx,
        &actor.operator,
        &actor.command,
        &[crate::audit::Entry {
            action: "post".into(),
            object_type: "message".into(),
            object_id: id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "channel": format!("{}/#{}", m.workspace, m.channel),
                "as": username,
                "thread": m.thread,
            })),
        }],
    )
    .await?;
    let line = sqlx::query_as::<_, Line>(&format!("select {LINE} where m.id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(line)
}

/// What `tail` follows: a workspace, or one channel of it.
#[derive(Debug, Clone)]
pub struct Follow {
    pub workspace: String,
    pub channel: Option<String>,
}

/// Reads the messages of a [`Follow`] as they arrive. A message's time is its transaction's
/// start, so one can commit after a later one: each read looks back [`LOOK_BACK`] and skips
/// what it has shown.
pub struct Tail {
    follow: Follow,
    /// Shown, by id, with their times (kept for the look-back only).
    shown: HashMap<Uuid, DateTime<Utc>>,
    since: DateTime<Utc>,
}

/// How far each read looks back for messages committed late.
pub const LOOK_BACK: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

impl Tail {
    /// Checks that the workspace (and channel) exist; the last `last` messages are the first
    /// read's.
    pub async fn start(
        conn: &mut PgConnection,
        follow: Follow,
        last: u32,
    ) -> Result<(Tail, Vec<Line>)> {
        let found: Option<bool> = sqlx::query_scalar(
            "select $2::text is null or exists (select 1 from public.channels c
                      where c.workspace_id = w.id and c.name = $2)
               from public.workspaces w where w.slug = $1",
        )
        .bind(&follow.workspace)
        .bind(&follow.channel)
        .fetch_optional(&mut *conn)
        .await?;
        match found {
            None => {
                return Err(Error::usage(format!("no workspace `{}`", follow.workspace))
                    .with_help("see `chatctl workspace list`")
                    .into());
            }
            Some(false) => {
                return Err(Error::usage(format!(
                    "no channel #{} in workspace `{}`",
                    follow.channel.as_deref().unwrap_or_default(),
                    follow.workspace
                ))
                .into());
            }
            Some(true) => {}
        }
        let mut recent: Vec<Line> = sqlx::query_as(&format!(
            "select {LINE} where w.slug = $1 and ($2::text is null or c.name = $2)
              order by m.created_at desc, m.id desc limit $3"
        ))
        .bind(&follow.workspace)
        .bind(&follow.channel)
        .bind(i64::from(last))
        .fetch_all(&mut *conn)
        .await?;
        recent.reverse();
        let now: DateTime<Utc> = sqlx::query_scalar("select now()")
            .fetch_one(&mut *conn)
            .await?;
        let mut tail = Tail {
            follow,
            shown: HashMap::new(),
            since: now,
        };
        // What was read (or is older than the start) is not shown again.
        let older: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "select m.id, m.created_at from public.chat m
               join public.channels c on c.id = m.channel_id
               join public.workspaces w on w.id = c.workspace_id
              where w.slug = $1 and ($2::text is null or c.name = $2) and m.created_at > $3",
        )
        .bind(&tail.follow.workspace)
        .bind(&tail.follow.channel)
        .bind(now - LOOK_BACK)
        .fetch_all(&mut *conn)
        .await?;
        tail.shown.extend(older);
        tail.shown
            .extend(recent.iter().map(|l| (l.id, l.created_at)));
        Ok((tail, recent))
    }

    /// The messages that arrived since the last read, oldest first.
    pub async fn next(&mut self, conn: &mut PgConnection) -> Result<Vec<Line>> {
        let from = self.since - LOOK_BACK;
        let lines: Vec<Line> = sqlx::query_as(&format!(
            "select {LINE} where w.slug = $1 and ($2::text is null or c.name = $2)
                and m.created_at > $3 order by m.created_at, m.id"
        ))
        .bind(&self.follow.workspace)
        .bind(&self.follow.channel)
        .bind(from)
        .fetch_all(&mut *conn)
        .await?;
        let new: Vec<Line> = lines
            .into_iter()
            .filter(|l| !self.shown.contains_key(&l.id))
            .collect();
        for l in &new {
            self.shown.insert(l.id, l.created_at);
            self.since = self.since.max(l.created_at);
        }
        self.shown.retain(|_, at| *at > from);
        Ok(new)
    }
}

/// The account an [`Author`] names: its id and username, or a usage error saying who is missing.
pub async fn find_author(conn: &mut PgConnection, who: &Author) -> Result<(Uuid, String)> {
    let (key, bot) = match who {
        Author::Member(name) => (name.trim_start_matches('@').to_lowercase(), false),
        Author::Bot(name) => (crate::provision::spec::bot_email(name), true),
    };
    let author: Option<(Uuid, String, bool)> = sqlx::query_as(
        "select id, username, is_bot from public.users
          where email = $1 or username = $1 or id::text = $1
          order by email = $1 desc, username = $1 desc limit 1",
    )
    .bind(&key)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((author, username, _)) = author.filter(|a| a.2 == bot) else {
        return Err(match who {
            Author::Member(name) => Error::usage(format!("there is no person `{name}`"))
                .with_help("give an email address, a username or an id; bots post with --as-bot"),
            Author::Bot(name) => Error::usage(format!("there is no bot account `{name}`"))
                .with_help("a spec that lists `bot:NAME` makes it, and so does `bots run`"),
        }
        .into());
    };
    Ok((author, username))
}
