//! Carrying out a plan: every change in ONE transaction, in bulk (UNNEST) where there are
//! many, each recorded in the audit log.

use std::collections::BTreeMap;

use anyhow::Context as _;
use sqlx::PgConnection;
use uuid::Uuid;

use super::plan::{Change, Op};
use super::spec::DesiredUser;
use crate::audit;
use crate::error::{Error, Result};
use crate::users::accounts;

/// Who applies, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub operator: String,
    pub command: String,
}

/// Applies `changes` in one transaction; nothing is left half-done on error.
pub async fn apply(conn: &mut PgConnection, changes: &[Change], actor: &Actor) -> Result<()> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    apply_in(&mut tx, changes).await.map_err(explain)?;
    let entries: Vec<audit::Entry> = changes
        .iter()
        .map(|c| audit::Entry {
            action: serde_json::to_value(c.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            object_type: c.object_type.to_owned(),
            object_id: c.object.clone(),
            before: c.before.clone(),
            after: c.after.clone(),
        })
        .collect();
    audit::record(&mut tx, &actor.operator, &actor.command, &entries).await?;
    tx.commit().await.context("cannot commit the changes")?;
    Ok(())
}

/// Turns constraint violations into messages an operator can act on.
fn explain(e: anyhow::Error) -> anyhow::Error {
    let constraint = e
        .downcast_ref::<sqlx::Error>()
        .and_then(|s| s.as_database_error())
        .and_then(|d| d.constraint().map(str::to_owned));
    let message = match constraint.as_deref() {
        Some("users_username_key") => {
            "a username in the spec is taken by another user (set `username:` for that person)"
        }
        Some("users_email_key") => "an email in the spec belongs to another user",
        Some("users_email_partial_key") => {
            "an email in the spec already has an account in Supabase Auth (run the plan again)"
        }
        Some("workspaces_slug_key") => "a workspace slug in the spec is taken",
        Some("channels_workspace_name_key") => "a channel name is taken in its workspace",
        _ => return e,
    };
    e.context(Error::failed(format!("{message}; nothing was applied")))
}

/// Channels to create, as columns for one UNNEST insert.
#[derive(Default)]
struct NewChannels {
    id: Vec<Uuid>,
    workspace: Vec<Uuid>,
    name: Vec<String>,
    kind: Vec<String>,
    topic: Vec<String>,
    description: Vec<String>,
    purpose: Vec<Option<String>>,
}

struct Ids {
    users: BTreeMap<String, Uuid>,
    workspaces: BTreeMap<String, Uuid>,
    channels: BTreeMap<(String, String), Uuid>,
}

impl Ids {
    fn user(&self, email: &str) -> Result<Uuid> {
        self.users
            .get(email)
            .copied()
            .ok_or_else(|| Error::failed(format!("unknown user `{email}`")).into())
    }
    fn workspace(&self, slug: &str) -> Result<Uuid> {
        self.workspaces
            .get(slug)
            .copied()
            .ok_or_else(|| Error::failed(format!("unknown workspace `{slug}`")).into())
    }
    fn channel(&self, slug: &str, name: &str) -> Result<Uuid> {
        self.channels
            .get(&(slug.to_owned(), name.to_owned()))
            .copied()
            .ok_or_else(|| Error::failed(format!("unknown channel `{slug}/#{name}`")).into())
    }
}

async fn load_ids(tx: &mut PgConnection, changes: &[Change]) -> Result<Ids> {
    let mut emails: Vec<String> = Vec::new();
    let mut slugs: Vec<String> = Vec::new();
    for c in changes {
        match &c.op {
            Op::CreateUser(u) | Op::CreateProfile { user: u, .. } => emails.push(u.email.clone()),
            Op::RenameUser { email, .. } => emails.push(email.clone()),
            Op::AddWorkspaceMember { slug, email, .. }
            | Op::SetWorkspaceRole { slug, email, .. }
            | Op::RemoveWorkspaceMember { slug, email }
            | Op::AddMember { slug, email, .. }
            | Op::SetMemberRole { slug, email, .. }
            | Op::RemoveMember { slug, email, .. } => {
                emails.push(email.clone());
                slugs.push(slug.clone());
            }
            Op::Share { slug, target, .. } | Op::Unshare { slug, target, .. } => {
                slugs.push(slug.clone());
                slugs.push(target.clone());
            }
            Op::OpenDm { slug, emails: list } => {
                emails.extend(list.iter().cloned());
                slugs.push(slug.clone());
            }
            Op::DeleteWorkspace { slug } | Op::RenameChannel { slug, .. } => {
                slugs.push(slug.clone())
            }
            Op::CreateWorkspace { slug, .. }
            | Op::RenameWorkspace { slug, .. }
            | Op::SetDefaultChannel { slug, .. }
            | Op::CreateChannel { slug, .. }
            | Op::UpdateChannel { slug, .. }
            | Op::ArchiveChannel { slug, .. }
            | Op::UnarchiveChannel { slug, .. } => slugs.push(slug.clone()),
            Op::PutBucket { .. } | Op::RemoveBucket { .. } => {}
        }
    }
    emails.sort();
    emails.dedup();
    slugs.sort();
    slugs.dedup();
    // People are who Supabase Auth says verified the address (see `identity`).
    let users: Vec<(Uuid, String)> = sqlx::query_as(
        "select a.id, lower(a.email) from auth.users a join public.users u on u.id = a.id
          where (a.instance_id = '00000000-0000-0000-0000-000000000000' or a.instance_id is null)
            and lower(a.email) = any($1) and a.email_confirmed_at is not null",
    )
    .bind(&emails)
    .fetch_all(&mut *tx)
    .await?;
    let workspaces: Vec<(Uuid, String)> =
        sqlx::query_as("select id, slug from public.workspaces where slug = any($1)")
            .bind(&slugs)
            .fetch_all(&mut *tx)
            .await?;
    let channels: Vec<(Uuid, String, String)> = sqlx::query_as(
        "select c.id, w.slug, c.name from public.channels c join public.workspaces w on w.id = c.workspace_id
          where w.slug = any($1) and c.name is not null",
    )
    .bind(&slugs)
    .fetch_all(&mut *tx)
    .await?;
    Ok(Ids {
        users: users.into_iter().map(|(id, e)| (e, id)).collect(),
        workspaces: workspaces.into_iter().map(|(id, s)| (s, id)).collect(),
        channels: channels
            .into_iter()
            .map(|(id, s, n)| ((s, n), id))
            .collect(),
    })
}

async fn apply_in(tx: &mut PgConnection, changes: &[Change]) -> Result<()> {
    // 1. Users (auth.users + identity + profile, as Supabase Auth writes them).
    let new_users: Vec<_> = changes
        .iter()
        .filter_map(|c| match &c.op {
            Op::CreateUser(u) => Some(u),
            _ => None,
        })
        .collect();
    if !new_users.is_empty() {
        let staged: Vec<accounts::NewUser> = new_users
            .iter()
            .map(|u| accounts::NewUser {
                id: Uuid::new_v4(),
                email: u.email.clone(),
                username: u.username.clone(),
                display_name: u.display_name.clone(),
                is_bot: u.is_bot,
                ..Default::default()
            })
            .collect();
        accounts::stage(tx, &staged).await?;
        accounts::create_staged(tx).await?;
    }

    // Profiles of auth users who have none yet (the database fills in their email).
    let profiles: Vec<(&DesiredUser, Uuid)> = changes
        .iter()
        .filter_map(|c| match &c.op {
            Op::CreateProfile { user, id } => Some((user, *id)),
            _ => None,
        })
        .collect();
    if !profiles.is_empty() {
        let ids: Vec<Uuid> = profiles.iter().map(|(_, id)| *id).collect();
        let usernames: Vec<&str> = profiles.iter().map(|(u, _)| u.username.as_str()).collect();
        let names: Vec<&str> = profiles
            .iter()
            .map(|(u, _)| u.display_name.as_str())
            .collect();
        let bots: Vec<bool> = profiles.iter().map(|(u, _)| u.is_bot).collect();
        sqlx::query(
            "insert into public.users (id, username, name, is_bot)
             select * from unnest($1::uuid[], $2::text[], $3::text[], $4::bool[])",
        )
        .bind(&ids)
        .bind(&usernames)
        .bind(&names)
        .bind(&bots)
        .execute(&mut *tx)
        .await?;
    }

    // 2. Workspaces.
    for c in changes {
        match &c.op {
            Op::CreateWorkspace { slug, name } => {
                sqlx::query("insert into public.workspaces (slug, name) values ($1, $2)")
                    .bind(slug)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            Op::RenameWorkspace { slug, name } => {
                sqlx::query("update public.workspaces set name = $2 where slug = $1")
                    .bind(slug)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
    }
    let mut ids = load_ids(tx, changes).await?;
    for c in changes {
        if let Op::RenameUser { email, name } = &c.op {
            sqlx::query("update public.users set name = $2 where id = $1")
                .bind(ids.user(email)?)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
    }
    for c in changes {
        match &c.op {
            Op::RenameChannel { slug, name, to } => {
                let id = ids.channel(slug, name)?;
                sqlx::query("update public.channels set name = $2 where id = $1")
                    .bind(id)
                    .bind(to)
                    .execute(&mut *tx)
                    .await?;
                ids.channels.remove(&(slug.clone(), name.clone()));
                ids.channels.insert((slug.clone(), to.clone()), id);
            }
            Op::OpenDm { slug, emails } => {
                let mut users: Vec<Uuid> =
                    emails.iter().map(|e| ids.user(e)).collect::<Result<_>>()?;
                users.sort();
                users.dedup();
                let key = users
                    .iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                let kind = if users.len() == 2 { "dm" } else { "group_dm" };
                let id = Uuid::new_v4();
                sqlx::query("insert into public.channels (id, workspace_id, kind, dm_key) values ($1, $2, $3, $4)")
                    .bind(id).bind(ids.workspace(slug)?).bind(kind).bind(&key).execute(&mut *tx).await?;
                sqlx::query("insert into public.members (channel_id, user_id) select $1, u from unnest($2::uuid[]) u")
                    .bind(id).bind(&users).execute(&mut *tx).await?;
            }
            _ => {}
        }
    }

    // 3. Workspace members.
    let (mut ws, mut us, mut roles) = (Vec::new(), Vec::new(), Vec::new());
    for c in changes {
        match &c.op {
            Op::AddWorkspaceMember { slug, email, role } => {
                ws.push(ids.workspace(slug)?);
                us.push(ids.user(email)?);
                roles.push(role.clone());
            }
            Op::SetWorkspaceRole { slug, email, role } => {
                sqlx::query("update public.workspace_members set role = $3 where workspace_id = $1 and user_id = $2")
                    .bind(ids.workspace(slug)?).bind(ids.user(email)?).bind(role).execute(&mut *tx).await?;
            }
            Op::RemoveWorkspaceMember { slug, email } => {
                sqlx::query(
                    "delete from public.workspace_members where workspace_id = $1 and user_id = $2",
                )
                .bind(ids.workspace(slug)?)
                .bind(ids.user(email)?)
                .execute(&mut *tx)
                .await?;
            }
            _ => {}
        }
    }
    if !ws.is_empty() {
        sqlx::query("insert into public.workspace_members (workspace_id, user_id, role) select * from unnest($1::uuid[], $2::uuid[], $3::text[])")
            .bind(&ws).bind(&us).bind(&roles).execute(&mut *tx).await?;
    }

    // 4. Channels.
    let mut new_ch = NewChannels::default();
    for c in changes {
        match &c.op {
            Op::CreateChannel {
                slug,
                name,
                kind,
                topic,
                description,
                purpose,
            } => {
                let id = Uuid::new_v4();
                new_ch.id.push(id);
                new_ch.workspace.push(ids.workspace(slug)?);
                new_ch.name.push(name.clone());
                new_ch.kind.push(kind.clone());
                new_ch.topic.push(topic.clone());
                new_ch.description.push(description.clone());
                new_ch.purpose.push(purpose.clone());
                ids.channels.insert((slug.clone(), name.clone()), id);
            }
            Op::UpdateChannel {
                slug,
                name,
                kind,
                topic,
                description,
                purpose,
            } => {
                sqlx::query("update public.channels set kind = $2, topic = $3, description = $4, purpose = $5 where id = $1")
                    .bind(ids.channel(slug, name)?).bind(kind).bind(topic).bind(description).bind(purpose)
                    .execute(&mut *tx).await?;
            }
            _ => {}
        }
    }
    if !new_ch.id.is_empty() {
        sqlx::query(
            "insert into public.channels (id, workspace_id, name, kind, topic, description, purpose)
             select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])",
        )
        .bind(&new_ch.id).bind(&new_ch.workspace).bind(&new_ch.name).bind(&new_ch.kind).bind(&new_ch.topic).bind(&new_ch.description).bind(&new_ch.purpose)
        .execute(&mut *tx)
        .await?;
    }
    for c in changes {
        match &c.op {
            Op::ArchiveChannel { slug, name } => {
                sqlx::query("update public.channels set archived_at = now() where id = $1")
                    .bind(ids.channel(slug, name)?)
                    .execute(&mut *tx)
                    .await?;
            }
            Op::UnarchiveChannel { slug, name } => {
                sqlx::query("update public.channels set archived_at = null where id = $1")
                    .bind(ids.channel(slug, name)?)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
    }

    // 5. Channel members, in bulk.
    let (mut add_c, mut add_u, mut add_r) = (Vec::new(), Vec::new(), Vec::new());
    let (mut set_c, mut set_u, mut set_r) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rm_c, mut rm_u) = (Vec::new(), Vec::new());
    for c in changes {
        match &c.op {
            Op::AddMember {
                slug,
                channel,
                email,
                role,
            } => {
                add_c.push(ids.channel(slug, channel)?);
                add_u.push(ids.user(email)?);
                add_r.push(role.clone());
            }
            Op::SetMemberRole {
                slug,
                channel,
                email,
                role,
            } => {
                set_c.push(ids.channel(slug, channel)?);
                set_u.push(ids.user(email)?);
                set_r.push(role.clone());
            }
            Op::RemoveMember {
                slug,
                channel,
                email,
            } => {
                rm_c.push(ids.channel(slug, channel)?);
                rm_u.push(ids.user(email)?);
            }
            _ => {}
        }
    }
    if !add_c.is_empty() {
        sqlx::query("insert into public.members (channel_id, user_id, role) select * from unnest($1::uuid[], $2::uuid[], $3::text[])")
            .bind(&add_c).bind(&add_u).bind(&add_r).execute(&mut *tx).await?;
    }
    if !set_c.is_empty() {
        sqlx::query(
            "update public.members m set role = x.r from unnest($1::uuid[], $2::uuid[], $3::text[]) as x(c, u, r)
              where m.channel_id = x.c and m.user_id = x.u",
        )
        .bind(&set_c).bind(&set_u).bind(&set_r).execute(&mut *tx).await?;
    }
    if !rm_c.is_empty() {
        sqlx::query(
            "delete from public.members m using unnest($1::uuid[], $2::uuid[]) as x(c, u)
              where m.channel_id = x.c and m.user_id = x.u",
        )
        .bind(&rm_c)
        .bind(&rm_u)
        .execute(&mut *tx)
        .await?;
    }

    // 6. Sharing and default channels.
    for c in changes {
        match &c.op {
            Op::Share {
                slug,
                channel,
                target,
            } => {
                sqlx::query(
                    "insert into public.shared_channels (channel_id, workspace_id) values ($1, $2)",
                )
                .bind(ids.channel(slug, channel)?)
                .bind(ids.workspace(target)?)
                .execute(&mut *tx)
                .await?;
            }
            Op::Unshare {
                slug,
                channel,
                target,
            } => {
                sqlx::query("delete from public.shared_channels where channel_id = $1 and workspace_id = $2")
                    .bind(ids.channel(slug, channel)?).bind(ids.workspace(target)?).execute(&mut *tx).await?;
            }
            Op::SetDefaultChannel { slug, channel } => {
                let ch = match channel {
                    Some(n) => Some(ids.channel(slug, n)?),
                    None => None,
                };
                sqlx::query("update public.workspaces set channel_id = $2 where slug = $1")
                    .bind(slug)
                    .bind(ch)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
    }
    super::storage::apply(tx, changes).await?;
    for c in changes {
        if let Op::DeleteWorkspace { slug } = &c.op {
            sqlx::query("delete from public.workspaces where slug = $1")
                .bind(slug)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}
