//! The writing half of a Slack import: one transaction per conversation. Its channel and
//! members are found or made, its rows COPYed into staging tables, then inserted where they
//! are not yet (`on conflict do nothing`: ids are derived from the export, so a second import
//! finds them). A dry run stages the same rows, counts what is new, and rolls back.

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::model::Conversation;
use super::read::{Chunk, ConvStats};
use crate::db::bulk::CopyStream;
use crate::error::Result;
use crate::users::accounts::{self, NewUser};

/// The kind of a conversation, as our channels name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Public,
    Private,
    GroupDm,
    Dm,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Public => "public",
            Kind::Private => "private",
            Kind::GroupDm => "group_dm",
            Kind::Dm => "dm",
        }
    }
}

/// One conversation as it will be written.
#[derive(Debug)]
pub struct Target {
    pub slack: Conversation,
    pub kind: Kind,
    /// Our channel name (channels only).
    pub name: Option<String>,
    /// Our ids of its members (those who are members of the workspace), sorted, once each.
    pub members: Vec<Uuid>,
    pub creator: Option<Uuid>,
}

/// What one conversation wrote (or, dry, would write).
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub channel_new: bool,
    pub messages: u64,
    pub replies: u64,
    pub messages_there: u64,
    pub reactions: u64,
    pub files: u64,
    /// Replies whose thread is in neither the export nor the database: top-level instead.
    pub orphans: u64,
}

pub struct Writer {
    pool: PgPool,
    workspace: Uuid,
    dry_run: bool,
    email_domain: String,
    tx: Option<Transaction<'static, Postgres>>,
    channel: Option<Uuid>,
    channel_new: bool,
}

impl Writer {
    pub fn new(pool: PgPool, workspace: Uuid, dry_run: bool, email_domain: String) -> Writer {
        Writer {
            pool,
            workspace,
            dry_run,
            email_domain,
            tx: None,
            channel: None,
            channel_new: false,
        }
    }

    /// Starts a conversation: its transaction, its channel and members. An `Err` of the
    /// outer result is a failure; of the inner one, why the conversation is refused.
    pub async fn begin(&mut self, t: &Target) -> Result<std::result::Result<(), String>> {
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(
            "set local chatctl.notify = 'off';
             create temp table if not exists slack_chat (id uuid, parent_id uuid, user_id uuid,
                 message jsonb, is_deleted boolean, created_at timestamptz, modified_at timestamptz)
                 on commit delete rows;
             create temp table if not exists slack_emojis (chat_id uuid, user_id uuid, emoji text,
                 created_at timestamptz) on commit delete rows;
             create temp table if not exists slack_files (id uuid, message_id uuid, object_path text,
                 name text, size_bytes bigint, mime_type text, created_at timestamptz)
                 on commit delete rows;",
        )
        .execute(&mut *tx)
        .await?;
        let found = find_channel(&mut tx, self.workspace, t).await?;
        let channel = match found {
            Found::Channel(id) => {
                self.channel_new = false;
                Some(id)
            }
            Found::Taken(why) => return Ok(Err(why)),
            Found::None if self.dry_run => {
                self.channel_new = true;
                None
            }
            Found::None => {
                self.channel_new = true;
                Some(create_channel(&mut tx, self.workspace, t).await?)
            }
        };
        if let (Some(id), false) = (channel, self.dry_run) {
            sqlx::query(
                "insert into public.members (channel_id, user_id, role)
                 select $1, u, case when u = $3 and $4 then 'owner' else 'member' end
                   from unnest($2::uuid[]) as u
                 on conflict do nothing",
            )
            .bind(id)
            .bind(&t.members)
            .bind(t.creator)
            .bind(matches!(t.kind, Kind::Public | Kind::Private))
            .execute(&mut *tx)
            .await?;
        }
        self.channel = channel;
        self.tx = Some(tx);
        Ok(Ok(()))
    }

    /// Stages a chunk of the conversation's rows.
    pub async fn chunk(&mut self, c: Chunk) -> Result<()> {
        let tx = self.tx.as_mut().expect("begun");
        for (table, rows) in [
            (
                "slack_chat (id, parent_id, user_id, message, is_deleted, created_at, modified_at)",
                c.chat,
            ),
            (
                "slack_emojis (chat_id, user_id, emoji, created_at)",
                c.emojis,
            ),
            (
                "slack_files (id, message_id, object_path, name, size_bytes, mime_type, created_at)",
                c.files,
            ),
        ] {
            if rows.is_empty() {
                continue;
            }
            let mut copy =
                CopyStream::open(&mut *tx, &format!("copy pg_temp.{table} from stdin")).await?;
            copy.buf = rows;
            copy.finish().await?;
        }
        Ok(())
    }

    /// Ends the conversation: its bots' accounts, then its rows where they are new.
    pub async fn end(&mut self, stats: &ConvStats) -> Result<Written> {
        let mut tx = self.tx.take().expect("begun");
        let mut w = Written {
            channel_new: self.channel_new,
            ..Written::default()
        };
        // Replies whose thread is in neither the export nor the database: top-level messages.
        w.orphans = sqlx::query(
            "update pg_temp.slack_chat s set parent_id = null
              where s.parent_id is not null
                and not exists (select 1 from pg_temp.slack_chat r
                                 where r.id = s.parent_id and r.parent_id is null)
                and not exists (select 1 from public.chat c
                                 where c.id = s.parent_id and c.parent_id is null)",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let staged: i64 = sqlx::query_scalar("select count(*) from pg_temp.slack_chat")
            .fetch_one(&mut *tx)
            .await?;
        match (self.channel, self.dry_run) {
            (Some(channel), false) => {
                self.bots(&mut tx, stats).await?;
                let insert = |replies: bool| {
                    format!(
                        "insert into public.chat (id, channel_id, user_id, parent_id, message, is_deleted,
                                created_at, updated_at, modified_at)
                         select id, $1, user_id, parent_id, message, is_deleted, created_at,
                                coalesce(modified_at, created_at), modified_at
                           from pg_temp.slack_chat where parent_id is {}null
                          order by created_at
                         on conflict (id) do nothing",
                        if replies { "not " } else { "" }
                    )
                };
                w.messages = sqlx::query(&insert(false))
                    .bind(channel)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                w.replies = sqlx::query(&insert(true))
                    .bind(channel)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                w.reactions = sqlx::query(
                    "insert into public.emojis (chat_id, user_id, emoji_uni_code, created_at)
                     select chat_id, user_id, emoji, created_at from pg_temp.slack_emojis
                     on conflict do nothing",
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                // In the bucket's layout: `<workspace>/<channel>/<uploader>/<file id>/<name>`.
                w.files = sqlx::query(
                    "insert into public.attachments (id, message_id, bucket_id, object_path, name,
                            size_bytes, mime_type, created_at)
                     select id, message_id, $3, $2::text || '/' || $1::text || '/' || object_path,
                            name, size_bytes, mime_type, created_at
                       from pg_temp.slack_files
                     on conflict (id) do nothing",
                )
                .bind(channel)
                .bind(self.workspace)
                .bind(crate::provision::storage::DEFAULT_BUCKET)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
            }
            _ => {
                // Dry, or a channel not made yet: what is not in the database is new.
                let (roots, replies, reactions, files): (i64, i64, i64, i64) = sqlx::query_as(
                    "select (select count(*) from pg_temp.slack_chat s where s.parent_id is null
                               and not exists (select 1 from public.chat c where c.id = s.id)),
                            (select count(*) from pg_temp.slack_chat s where s.parent_id is not null
                               and not exists (select 1 from public.chat c where c.id = s.id)),
                            (select count(*) from pg_temp.slack_emojis s
                              where not exists (select 1 from public.emojis e
                                                 where e.chat_id = s.chat_id and e.user_id = s.user_id
                                                   and e.emoji_uni_code = s.emoji)),
                            (select count(*) from pg_temp.slack_files s
                              where not exists (select 1 from public.attachments a where a.id = s.id))",
                )
                .fetch_one(&mut *tx)
                .await?;
                (w.messages, w.replies, w.reactions, w.files) =
                    (roots as u64, replies as u64, reactions as u64, files as u64);
                tx.rollback().await?;
            }
        }
        w.messages_there = (staged as u64).saturating_sub(w.messages + w.replies);
        Ok(w)
    }

    /// Drops a refused or failed conversation's transaction.
    pub async fn abandon(&mut self) -> Result<()> {
        if let Some(tx) = self.tx.take() {
            tx.rollback().await?;
        }
        Ok(())
    }

    /// Accounts for the integration bots that wrote without a user, made as the user import
    /// makes accounts, and members of the workspace.
    async fn bots(&self, tx: &mut Transaction<'static, Postgres>, stats: &ConvStats) -> Result<()> {
        if stats.bots.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = stats
            .bots
            .keys()
            .map(|b| super::read::bot_account(self.workspace, b))
            .collect();
        // Writers beside this one may meet the same bot: one makes its account at a time.
        sqlx::query("select pg_advisory_xact_lock(hashtext('chatctl.slack_import.bots'))")
            .execute(&mut **tx)
            .await?;
        let existing: Vec<Uuid> =
            sqlx::query_scalar("select id from public.users where id = any($1)")
                .bind(&ids)
                .fetch_all(&mut **tx)
                .await?;
        let new: Vec<NewUser> = stats
            .bots
            .iter()
            .zip(&ids)
            .filter(|(_, id)| !existing.contains(id))
            .map(|((bot, name), id)| NewUser {
                id: *id,
                email: format!("{}@{}", bot.to_lowercase(), self.email_domain),
                username: format!("slack-{}", bot.to_lowercase()),
                display_name: name.clone(),
                is_bot: true,
                external: Some(("slack".into(), bot.clone())),
                ..NewUser::default()
            })
            .collect();
        if !new.is_empty() {
            accounts::stage(tx, &new).await?;
            accounts::create_staged(tx).await?;
        }
        sqlx::query(
            "insert into public.workspace_members (workspace_id, user_id, role)
             select $1, u, 'member' from unnest($2::uuid[]) as u on conflict do nothing",
        )
        .bind(self.workspace)
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

enum Found {
    Channel(Uuid),
    /// The name or the people are another channel's.
    Taken(String),
    None,
}

/// The channel a conversation was imported into before (its Slack id), or the one of ours
/// it is (a channel of that name and kind made without Slack, a DM of the same people).
async fn find_channel(
    tx: &mut Transaction<'static, Postgres>,
    workspace: Uuid,
    t: &Target,
) -> Result<Found> {
    let by_id: Option<Uuid> = sqlx::query_scalar(
        "select id from public.channels
          where external_source = 'slack' and external_id = $1 and workspace_id = $2",
    )
    .bind(&t.slack.id)
    .bind(workspace)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = by_id {
        return Ok(Found::Channel(id));
    }
    let same: Option<(Uuid, String, Option<String>)> = match &t.name {
        Some(name) => {
            sqlx::query_as(
                "select id, kind, external_id from public.channels
                  where workspace_id = $1 and name = $2",
            )
            .bind(workspace)
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?
        }
        None => {
            sqlx::query_as(
                "select id, kind, external_id from public.channels
                  where workspace_id = $1 and dm_key = $2",
            )
            .bind(workspace)
            .bind(dm_key(&t.members))
            .fetch_optional(&mut **tx)
            .await?
        }
    };
    Ok(match same {
        None => Found::None,
        // Slack allows two group DMs of the same people: both are ours.
        Some((id, _, _)) if t.name.is_none() => Found::Channel(id),
        Some((id, kind, None)) if kind == t.kind.as_str() => {
            sqlx::query(
                "update public.channels set external_source = 'slack', external_id = $2 where id = $1",
            )
            .bind(id)
            .bind(&t.slack.id)
            .execute(&mut **tx)
            .await?;
            Found::Channel(id)
        }
        Some((_, kind, external)) => Found::Taken(format!(
            "the workspace already has a {kind} channel #{}{}",
            t.name.as_deref().unwrap_or_default(),
            match external {
                Some(x) => format!(" (imported from {x})"),
                None => String::new(),
            }
        )),
    })
}

fn dm_key(members: &[Uuid]) -> String {
    let mut ids: Vec<String> = members.iter().map(Uuid::to_string).collect();
    ids.sort();
    ids.dedup();
    ids.join(",")
}

async fn create_channel(
    tx: &mut Transaction<'static, Postgres>,
    workspace: Uuid,
    t: &Target,
) -> Result<Uuid> {
    let dm = matches!(t.kind, Kind::Dm | Kind::GroupDm);
    let text = |v: &Option<super::model::Titled>, max: usize| -> String {
        v.as_ref()
            .and_then(|t| t.value.as_deref())
            .unwrap_or_default()
            .replace('\0', "")
            .chars()
            .take(max)
            .collect()
    };
    let id: Uuid = sqlx::query_scalar(
        "insert into public.channels (workspace_id, name, kind, topic, description, external_source,
                external_id, dm_key, archived_at, created_by)
         values ($1, $2, $3, $4, $5, 'slack', $6, $7, case when $8 then now() end, $9)
         returning id",
    )
    .bind(workspace)
    .bind(&t.name)
    .bind(t.kind.as_str())
    .bind(if dm { String::new() } else { text(&t.slack.topic, 250) })
    .bind(if dm { String::new() } else { text(&t.slack.purpose, 4000) })
    .bind(&t.slack.id)
    .bind(dm.then(|| dm_key(&t.members)))
    .bind(t.slack.is_archived == Some(true))
    .bind(if dm { None } else { t.creator })
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}
