//! The imperative commands (`workspace create`, `channel archive`, `dm open`, ...): each
//! builds the same [`Change`]s a spec would, checked against the database, and applies them
//! through [`apply`](super::apply::apply), so they are transactional and audited alike.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::apply::{self, Actor};
use super::plan::{self, Action, Change, Current, CurrentChannel, CurrentWorkspace, Op, Plan};
use super::spec;
use crate::error::{Error, Result};
use crate::report::{self, Report};

/// Applies changes and returns them as an applied plan.
async fn run(conn: &mut PgConnection, actor: &Actor, changes: Vec<Change>) -> Result<Plan> {
    if !changes.is_empty() {
        apply::apply(conn, &changes, actor).await?;
    }
    Ok(Plan {
        changes,
        skipped_removals: 0,
        warnings: Vec::new(),
        applied: true,
        files: Vec::new(),
    })
}

fn change(
    action: Action,
    object_type: &'static str,
    object: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    op: Op,
) -> Change {
    Change {
        action,
        object_type,
        object,
        before,
        after,
        op,
    }
}

/// What deleting workspace `slug` deletes with it: its channels and their messages
/// (`None`: there is no such workspace).
pub async fn workspace_holdings(conn: &mut PgConnection, slug: &str) -> Result<Option<(i64, i64)>> {
    let held = sqlx::query_as(
        "select (select count(*) from public.channels c where c.workspace_id = w.id),
                (select count(*) from public.chat m join public.channels c on c.id = m.channel_id
                  where c.workspace_id = w.id)
           from public.workspaces w where w.slug = $1",
    )
    .bind(slug)
    .fetch_optional(conn)
    .await?;
    Ok(held)
}

/// The current state of one workspace (and of `emails`), or a usage error naming it.
async fn workspace(
    conn: &mut PgConnection,
    slug: &str,
    emails: &[String],
) -> Result<(Current, String)> {
    let cur = plan::load(conn, &[slug.to_owned()], emails).await?;
    if !cur.workspaces.contains_key(slug) {
        return Err(Error::usage(format!("no workspace `{slug}`"))
            .with_help("see `chatctl workspace list`")
            .into());
    }
    Ok((cur, slug.to_owned()))
}

fn ws<'a>(cur: &'a Current, slug: &str) -> &'a CurrentWorkspace {
    &cur.workspaces[slug]
}

fn channel<'a>(cur: &'a Current, slug: &str, name: &str) -> Result<&'a CurrentChannel> {
    ws(cur, slug).channels.get(name).ok_or_else(|| {
        Error::usage(format!("no channel `#{name}` in workspace `{slug}`"))
            .with_help(format!("see `chatctl channel list --workspace {slug}`"))
            .into()
    })
}

fn known_users(cur: &Current, emails: &[String]) -> Result<()> {
    for e in emails {
        if let Some(problem) = cur.identities.problem(e, super::spec::is_bot_email(e)) {
            return Err(Error::usage(problem).into());
        }
    }
    let unknown: Vec<&String> = emails
        .iter()
        .filter(|e| !cur.users.contains_key(*e))
        .collect();
    if !unknown.is_empty() {
        let list = unknown
            .iter()
            .map(|e| format!("`{e}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Error::usage(format!("unknown user(s) {list}"))
            .with_help("add them to a spec's `people` and `chatctl apply` it")
            .into());
    }
    Ok(())
}

fn normalise(emails: &[String]) -> Vec<String> {
    let mut v: Vec<String> = emails.iter().map(|e| e.trim().to_lowercase()).collect();
    v.sort();
    v.dedup();
    v
}

pub async fn workspace_create(
    conn: &mut PgConnection,
    actor: &Actor,
    slug: &str,
    name: &str,
) -> Result<Plan> {
    if !spec::valid_slug(slug) {
        return Err(Error::usage(format!(
            "invalid workspace slug `{slug}`: lowercase letters, digits and dashes"
        ))
        .into());
    }
    let cur = plan::load(conn, &[slug.to_owned()], &[]).await?;
    if cur.workspaces.contains_key(slug) {
        return Err(Error::usage(format!("workspace `{slug}` already exists")).into());
    }
    let c = change(
        Action::Create,
        "workspace",
        slug.to_owned(),
        None,
        Some(json!({ "name": name })),
        Op::CreateWorkspace {
            slug: slug.to_owned(),
            name: name.to_owned(),
        },
    );
    run(conn, actor, vec![c]).await
}

pub async fn workspace_rename(
    conn: &mut PgConnection,
    actor: &Actor,
    slug: &str,
    name: &str,
) -> Result<Plan> {
    let (cur, slug) = workspace(conn, slug, &[]).await?;
    let before = ws(&cur, &slug).name.clone();
    if before == name {
        return run(conn, actor, Vec::new()).await;
    }
    let c = change(
        Action::Update,
        "workspace",
        slug.clone(),
        Some(json!({ "name": before })),
        Some(json!({ "name": name })),
        Op::RenameWorkspace {
            slug,
            name: name.to_owned(),
        },
    );
    run(conn, actor, vec![c]).await
}

pub async fn workspace_delete(conn: &mut PgConnection, actor: &Actor, slug: &str) -> Result<Plan> {
    let (cur, slug) = workspace(conn, slug, &[]).await?;
    let w = ws(&cur, &slug);
    let before =
        json!({ "name": w.name, "channels": w.channels.len(), "members": w.members.len() });
    let c = change(
        Action::Remove,
        "workspace",
        slug.clone(),
        Some(before),
        None,
        Op::DeleteWorkspace { slug },
    );
    run(conn, actor, vec![c]).await
}

/// What `channel create` sets.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub name: String,
    pub private: bool,
    pub topic: String,
    pub description: String,
    pub purpose: Option<String>,
}

pub async fn channel_create(
    conn: &mut PgConnection,
    actor: &Actor,
    slug: &str,
    new: &NewChannel,
) -> Result<Plan> {
    check_channel_name(&new.name)?;
    if let Some(p) = &new.purpose
        && !["department", "project", "support", "general"].contains(&p.as_str())
    {
        return Err(Error::usage(format!(
            "unknown purpose `{p}`: one of department, project, support, general"
        ))
        .into());
    }
    let (cur, slug) = workspace(conn, slug, &[]).await?;
    if ws(&cur, &slug).channels.contains_key(&new.name) {
        return Err(Error::usage(format!(
            "channel `#{}` already exists in `{slug}`",
            new.name
        ))
        .into());
    }
    let kind = if new.private { "private" } else { "public" };
    let after = json!({ "kind": kind, "topic": new.topic, "description": new.description, "purpose": new.purpose });
    let c = change(
        Action::Create,
        "channel",
        format!("{slug}/#{}", new.name),
        None,
        Some(after),
        Op::CreateChannel {
            slug,
            name: new.name.clone(),
            kind: kind.to_owned(),
            topic: new.topic.clone(),
            description: new.description.clone(),
            purpose: new.purpose.clone(),
        },
    );
    run(conn, actor, vec![c]).await
}

fn check_channel_name(name: &str) -> Result<()> {
    if !spec::valid_channel_name(name) {
        return Err(Error::usage(format!(
            "invalid channel name `{name}`: lowercase letters, digits, `-` and `_`, at most 80 characters"
        ))
        .into());
    }
    Ok(())
}

pub async fn channel_archive(
    conn: &mut PgConnection,
    actor: &Actor,
    slug: &str,
    name: &str,
    archive: bool,
) -> Result<Plan> {
    let (cur, slug) = workspace(conn, slug, &[]).await?;
    let ch = channel(&cur, &slug, name)?;
    if ch.archived == archive {
        return run(conn, actor, Vec::new()).await;
    }
    let key = format!("{slug}/#{name}");
    let c = if archive {
        change(
            Action::Archive,
            "channel",
            key,
            None,
            None,
            Op::ArchiveChannel {
                slug,
                name: name.to_owned(),
            },
        )
    } else {
        change(
            Action::Unarchive,
            "channel",
            key,
            None,
            None,
            Op::UnarchiveChannel {
                slug,
                name: name.to_owned(),
            },
        )
    };
    run(conn, actor, vec![c]).await
}

pub async fn channel_rename(
    conn: &mut PgConnection,
    actor: &Actor,
    slug: &str,
    name: &str,
    to: &str,
) -> Result<Plan> {
    check_channel_name(to)?;
    let (cur, slug) = workspace(conn, slug, &[]).await?;
    channel(&cur, &slug, name)?;
    if ws(&cur, &slug).channels.contains_key(to) {
        return Err(Error::usage(format!("channel `#{to}` already exists in `{slug}`")).into());
    }
    let c = change(
        Action::Update,
        "channel",
        format!("{slug}/#{name}"),
        Some(json!({ "name": name })),
        Some(json!({ "name": to })),
        Op::RenameChannel {
            slug,
            name: name.to_owned(),
            to: to.to_owned(),
        },
    );
    run(conn, actor, vec![c]).await
}

pub async fn channel_set_topic(
    conn: &mut PgConnection,
    actor: &Actor,
    slug: &str,
    name: &str,
    topic: &str,
) -> Result<Plan> {
    if topic.chars().count() > 250 {
        return Err(Error::usage("a topic is at most 250 characters").into());
    }
    let (cur, slug) = workspace(conn, slug, &[]).await?;
    let ch = channel(&cur, &slug, name)?;
    if ch.topic == topic {
        return run(conn, actor, Vec::new()).await;
    }
    let c = change(
        Action::Update,
        "channel",
        format!("{slug}/#{name}"),
        Some(json!({ "topic": ch.topic })),
        Some(json!({ "topic": topic })),
        Op::UpdateChannel {
            slug: slug.clone(),
            name: name.to_owned(),
            kind: ch.kind.clone(),
            topic: topic.to_owned(),
            description: ch.description.clone(),
            purpose: ch.purpose.clone(),
        },
    );
    run(conn, actor, vec![c]).await
}

/// Adds members (joining them to the workspace too) or, with `role: None`, removes them.
pub async fn channel_members(
    conn: &mut PgConnection,
    actor: &Actor,
    slug: &str,
    name: &str,
    emails: &[String],
    role: Option<&str>,
) -> Result<Plan> {
    let emails = normalise(emails);
    let (cur, slug) = workspace(conn, slug, &emails).await?;
    known_users(&cur, &emails)?;
    let ch = channel(&cur, &slug, name)?;
    let key = format!("{slug}/#{name}");
    let mut changes = Vec::new();
    for email in &emails {
        match (role, ch.members.get(email)) {
            (Some(role), None) => {
                if !ws(&cur, &slug).members.contains_key(email) {
                    changes.push(change(
                        Action::Add,
                        "workspace_member",
                        format!("{slug} {email}"),
                        None,
                        Some(json!({ "role": "member" })),
                        Op::AddWorkspaceMember {
                            slug: slug.clone(),
                            email: email.clone(),
                            role: "member".into(),
                        },
                    ));
                }
                changes.push(change(
                    Action::Add,
                    "member",
                    format!("{key} {email}"),
                    None,
                    Some(json!({ "role": role })),
                    Op::AddMember {
                        slug: slug.clone(),
                        channel: name.to_owned(),
                        email: email.clone(),
                        role: role.to_owned(),
                    },
                ));
            }
            (Some(role), Some(r)) if r != role => {
                changes.push(change(
                    Action::Update,
                    "member",
                    format!("{key} {email}"),
                    Some(json!({ "role": r })),
                    Some(json!({ "role": role })),
                    Op::SetMemberRole {
                        slug: slug.clone(),
                        channel: name.to_owned(),
                        email: email.clone(),
                        role: role.to_owned(),
                    },
                ));
            }
            (None, Some(r)) => {
                changes.push(change(
                    Action::Remove,
                    "member",
                    format!("{key} {email}"),
                    Some(json!({ "role": r })),
                    None,
                    Op::RemoveMember {
                        slug: slug.clone(),
                        channel: name.to_owned(),
                        email: email.clone(),
                    },
                ));
            }
            _ => {}
        }
    }
    run(conn, actor, changes).await
}

pub async fn channel_share(
    conn: &mut PgConnection,
    actor: &Actor,
    slug: &str,
    name: &str,
    target: &str,
    share: bool,
) -> Result<Plan> {
    let (cur, slug) = workspace(conn, slug, &[]).await?;
    let ch = channel(&cur, &slug, name)?;
    if target == slug {
        return Err(Error::usage(format!(
            "`#{name}` cannot be shared into its own workspace `{slug}`"
        ))
        .into());
    }
    if !cur.all_slugs.contains(target) {
        return Err(Error::usage(format!("no workspace `{target}`")).into());
    }
    let key = format!("{slug}/#{name} -> {target}");
    let changes = match (share, ch.shared_with.contains(target)) {
        (true, false) => vec![change(
            Action::Add,
            "shared_channel",
            key,
            None,
            None,
            Op::Share {
                slug,
                channel: name.to_owned(),
                target: target.to_owned(),
            },
        )],
        (false, true) => vec![change(
            Action::Remove,
            "shared_channel",
            key,
            None,
            None,
            Op::Unshare {
                slug,
                channel: name.to_owned(),
                target: target.to_owned(),
            },
        )],
        _ => Vec::new(),
    };
    run(conn, actor, changes).await
}

/// The DM of exactly these users in a workspace, created if missing.
#[derive(Debug, Clone, Serialize)]
pub struct DmReport {
    pub channel_id: Uuid,
    pub kind: String,
    pub members: Vec<String>,
    pub created: bool,
}

impl Report for DmReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let verb = if self.created {
            "opened new"
        } else {
            "existing"
        };
        writeln!(
            out,
            "{verb} {} {} with {}",
            self.kind.replace('_', " "),
            self.channel_id,
            self.members.join(", ")
        )
    }
}

pub async fn dm_open(
    conn: &mut PgConnection,
    actor: &Actor,
    slug: &str,
    emails: &[String],
) -> Result<DmReport> {
    let emails = normalise(emails);
    if emails.len() < 2 {
        return Err(Error::usage("a DM needs at least two different users").into());
    }
    if emails.len() > 9 {
        return Err(Error::usage("a group DM has at most 9 people").into());
    }
    let (cur, slug) = workspace(conn, slug, &emails).await?;
    known_users(&cur, &emails)?;
    let mut ids: Vec<Uuid> = emails.iter().map(|e| cur.users[e].0).collect();
    ids.sort();
    let key = ids
        .iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let kind = if emails.len() == 2 { "dm" } else { "group_dm" };
    let ws_id = cur.workspaces[&slug].id;
    if let Some(id) = find_dm(conn, ws_id, &key).await? {
        return Ok(DmReport {
            channel_id: id,
            kind: kind.into(),
            members: emails,
            created: false,
        });
    }
    let mut changes = Vec::new();
    for email in &emails {
        if !ws(&cur, &slug).members.contains_key(email) {
            return Err(
                Error::usage(format!("`{email}` is not a member of workspace `{slug}`")).into(),
            );
        }
    }
    changes.push(change(
        Action::Create,
        "channel",
        format!("{slug}/{kind} {}", emails.join(",")),
        None,
        Some(json!({ "kind": kind, "members": emails })),
        Op::OpenDm {
            slug: slug.clone(),
            emails: emails.clone(),
        },
    ));
    run(conn, actor, changes).await?;
    let id = find_dm(conn, ws_id, &key)
        .await?
        .ok_or_else(|| Error::failed("the DM was created but cannot be found"))?;
    Ok(DmReport {
        channel_id: id,
        kind: kind.into(),
        members: emails,
        created: true,
    })
}

async fn find_dm(conn: &mut PgConnection, workspace: Uuid, key: &str) -> Result<Option<Uuid>> {
    Ok(
        sqlx::query_scalar(
            "select id from public.channels where workspace_id = $1 and dm_key = $2",
        )
        .bind(workspace)
        .bind(key)
        .fetch_optional(conn)
        .await?,
    )
}

/// The slug of the only workspace, for commands that default to it.
pub async fn only_workspace(conn: &mut PgConnection) -> Result<String> {
    let slugs: Vec<String> =
        sqlx::query_scalar("select slug from public.workspaces order by slug limit 2")
            .fetch_all(conn)
            .await?;
    match slugs.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::usage("there is no workspace yet")
            .with_help("create one: `chatctl workspace create SLUG` or `chatctl apply -f SPEC`")
            .into()),
        _ => {
            Err(Error::usage("there are several workspaces: name one with --workspace SLUG").into())
        }
    }
}

/// `workspace list`.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct WorkspaceRow {
    pub slug: String,
    pub name: String,
    pub members: i64,
    pub channels: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize)]
pub struct WorkspaceList {
    pub workspaces: Vec<WorkspaceRow>,
}

impl Report for WorkspaceList {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = report::table(["SLUG", "NAME", "MEMBERS", "CHANNELS", "CREATED"]);
        for w in &self.workspaces {
            t.add_row(vec![
                w.slug.clone(),
                w.name.clone(),
                w.members.to_string(),
                w.channels.to_string(),
                w.created_at.format("%Y-%m-%d").to_string(),
            ]);
        }
        report::write_table(out, &t)
    }
}

pub async fn workspace_list(conn: &mut PgConnection) -> Result<WorkspaceList> {
    let workspaces = sqlx::query_as::<_, WorkspaceRow>(
        "select w.slug, w.name,
                (select count(*) from public.workspace_members m where m.workspace_id = w.id) as members,
                (select count(*) from public.channels c where c.workspace_id = w.id and c.name is not null) as channels,
                w.created_at
           from public.workspaces w order by w.slug",
    )
    .fetch_all(conn)
    .await?;
    Ok(WorkspaceList { workspaces })
}

/// `channel list`.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ChannelRow {
    pub name: String,
    pub kind: String,
    pub purpose: Option<String>,
    pub topic: String,
    pub members: i64,
    pub archived: bool,
    pub shared_with: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ChannelList {
    pub workspace: String,
    pub channels: Vec<ChannelRow>,
}

impl Report for ChannelList {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = report::table([
            "CHANNEL",
            "KIND",
            "PURPOSE",
            "MEMBERS",
            "STATE",
            "SHARED WITH",
            "TOPIC",
        ]);
        for c in &self.channels {
            t.add_row(vec![
                format!("#{}", c.name),
                c.kind.clone(),
                c.purpose.clone().unwrap_or_default(),
                c.members.to_string(),
                if c.archived {
                    "archived".into()
                } else {
                    "active".into()
                },
                c.shared_with.join(", "),
                c.topic.clone(),
            ]);
        }
        report::write_table(out, &t)
    }
}

pub async fn channel_list(
    conn: &mut PgConnection,
    slug: &str,
    name: Option<&str>,
) -> Result<ChannelList> {
    workspace(conn, slug, &[]).await?;
    let channels = sqlx::query_as::<_, ChannelRow>(
        "select c.name, c.kind, c.purpose, c.topic,
                (select count(*) from public.members m where m.channel_id = c.id) as members,
                c.archived_at is not null as archived,
                array(select t.slug from public.shared_channels s join public.workspaces t on t.id = s.workspace_id
                       where s.channel_id = c.id order by 1) as shared_with
           from public.channels c join public.workspaces w on w.id = c.workspace_id
          where w.slug = $1 and c.name is not null and ($2::text is null or c.name = $2)
          order by c.name",
    )
    .bind(slug)
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    if let Some(n) = name
        && channels.is_empty()
    {
        return Err(Error::usage(format!("no channel `#{n}` in workspace `{slug}`")).into());
    }
    Ok(ChannelList {
        workspace: slug.to_owned(),
        channels,
    })
}

/// `channel show`: the channel and its members.
#[derive(Debug, Serialize)]
pub struct ChannelShow {
    #[serde(flatten)]
    pub channel: ChannelRow,
    pub description: String,
    /// email → role
    pub members: BTreeMap<String, String>,
}

impl Report for ChannelShow {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let c = &self.channel;
        writeln!(
            out,
            "#{} ({}{})",
            c.name,
            c.kind,
            if c.archived { ", archived" } else { "" }
        )?;
        if !c.topic.is_empty() {
            writeln!(out, "topic: {}", c.topic)?;
        }
        if !self.description.is_empty() {
            writeln!(out, "description: {}", self.description)?;
        }
        if let Some(p) = &c.purpose {
            writeln!(out, "purpose: {p}")?;
        }
        if !c.shared_with.is_empty() {
            writeln!(out, "shared with: {}", c.shared_with.join(", "))?;
        }
        let mut t = report::table(["MEMBER", "ROLE"]);
        for (email, role) in &self.members {
            t.add_row(vec![email.clone(), role.clone()]);
        }
        report::write_table(out, &t)
    }
}

pub async fn channel_show(conn: &mut PgConnection, slug: &str, name: &str) -> Result<ChannelShow> {
    let mut list = channel_list(conn, slug, Some(name)).await?;
    let row = list.channels.remove(0);
    let cur = plan::load(conn, &[slug.to_owned()], &[]).await?;
    let ch = channel(&cur, slug, name)?;
    Ok(ChannelShow {
        description: ch.description.clone(),
        members: ch.members.clone(),
        channel: row,
    })
}

/// `workspace show`.
#[derive(Debug, Serialize)]
pub struct WorkspaceShow {
    pub slug: String,
    pub name: String,
    pub default_channel: Option<String>,
    /// email → role
    pub members: BTreeMap<String, String>,
    pub channels: Vec<ChannelRow>,
}

impl Report for WorkspaceShow {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} ({}), default channel: {}",
            self.name,
            self.slug,
            self.default_channel
                .as_deref()
                .map_or("-".to_owned(), |c| format!("#{c}"))
        )?;
        writeln!(
            out,
            "{} members, {} channels\n",
            self.members.len(),
            self.channels.len()
        )?;
        let mut t = report::table(["CHANNEL", "KIND", "MEMBERS", "STATE"]);
        for c in &self.channels {
            t.add_row(vec![
                format!("#{}", c.name),
                c.kind.clone(),
                c.members.to_string(),
                if c.archived {
                    "archived".into()
                } else {
                    "active".into()
                },
            ]);
        }
        report::write_table(out, &t)
    }
}

pub async fn workspace_show(conn: &mut PgConnection, slug: &str) -> Result<WorkspaceShow> {
    let (cur, slug) = workspace(conn, slug, &[]).await?;
    let w = ws(&cur, &slug);
    let (name, default_channel, members) =
        (w.name.clone(), w.default_channel.clone(), w.members.clone());
    let channels = channel_list(conn, &slug, None).await?.channels;
    Ok(WorkspaceShow {
        slug,
        name,
        default_channel,
        members,
        channels,
    })
}

/// The id of workspace `slug`; a usage error when there is none.
pub async fn workspace_id(conn: &mut PgConnection, slug: &str) -> Result<Uuid> {
    sqlx::query_scalar("select id from public.workspaces where slug = $1")
        .bind(slug)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| {
            Error::usage(format!("no workspace `{slug}`"))
                .with_help("see `chatctl workspace list`")
                .into()
        })
}

/// The id of `#name` in workspace `slug`; a usage error naming both when there is none.
pub async fn channel_id(conn: &mut PgConnection, slug: &str, name: &str) -> Result<Uuid> {
    sqlx::query_scalar(
        "select c.id from public.channels c join public.workspaces w on w.id = c.workspace_id
          where w.slug = $1 and c.name = $2",
    )
    .bind(slug)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| {
        Error::usage(format!("no channel #{name} in workspace `{slug}`"))
            .with_help(format!("see `chatctl channel list -w {slug}`"))
            .into()
    })
}

/// Whether `root` is the first message of a thread in `channel` (not a reply, not deleted).
pub async fn is_thread_root(conn: &mut PgConnection, root: Uuid, channel: Uuid) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "select exists (select 1 from public.chat
                         where id = $1 and channel_id = $2 and parent_id is null and not is_deleted)",
    )
    .bind(root)
    .bind(channel)
    .fetch_one(&mut *conn)
    .await?)
}
