//! Looking people up and changing their standing: list, show, deactivate, reactivate,
//! set a workspace role. Each change is one transaction with its audit entry.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::accounts;
use crate::audit;
use crate::error::{Error, Result};
use crate::provision::Actor;

/// A person as `users list` shows them.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Listed {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    pub is_bot: bool,
    pub created_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
    /// The workspace role, when listing a workspace.
    pub role: Option<String>,
}

/// Which people to list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub workspace: Option<String>,
    pub deactivated_only: bool,
    pub search: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// A page of people, and how many match in all.
#[derive(Debug, Clone, Serialize)]
pub struct UserList {
    pub total: i64,
    pub users: Vec<Listed>,
}

pub async fn list(conn: &mut PgConnection, opts: &ListOptions) -> Result<UserList> {
    let ws = match &opts.workspace {
        Some(slug) => Some(workspace_id(conn, slug).await?),
        None => None,
    };
    let filter = "from public.users u
                  left join public.workspace_members w on w.workspace_id = $1 and w.user_id = u.id
                 where ($1::uuid is null or w.user_id is not null)
                   and (not $2 or u.deactivated_at is not null)
                   and ($3::text is null or u.username ilike '%' || $3 || '%'
                        or u.name ilike '%' || $3 || '%' or u.email ilike '%' || $3 || '%')";
    let total: i64 = sqlx::query_scalar(&format!("select count(*) {filter}"))
        .bind(ws)
        .bind(opts.deactivated_only)
        .bind(&opts.search)
        .fetch_one(&mut *conn)
        .await?;
    let users: Vec<Listed> = sqlx::query_as(&format!(
        "select u.id, u.username, u.name as display_name, u.email, u.external_source, u.external_id, u.is_bot,
                u.created_at, u.deactivated_at, w.role
           {filter} order by u.username limit $4 offset $5"
    ))
    .bind(ws)
    .bind(opts.deactivated_only)
    .bind(&opts.search)
    .bind(opts.limit)
    .bind(opts.offset)
    .fetch_all(&mut *conn)
    .await?;
    Ok(UserList { total, users })
}

/// Everything chatctl knows of one person.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    #[serde(flatten)]
    pub user: Listed,
    pub email_confirmed_at: Option<DateTime<Utc>>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    pub banned_until: Option<DateTime<Utc>>,
    pub has_password: bool,
    pub workspaces: Vec<(String, String)>,
    pub channels: i64,
    pub messages: i64,
}

/// The person `who` names: an id, an address (the verified one of their auth user, or
/// their profile's) or a username.
pub async fn find(conn: &mut PgConnection, who: &str) -> Result<Uuid> {
    let who = who.trim();
    // Each probe by an index: the id, the username, the profile's address, the auth user's.
    let id: Option<Uuid> = sqlx::query_scalar(
        "select coalesce(
                (select u.id from public.users u where u.id = $2),
                (select u.id from public.users u where u.username = lower($1)),
                (select u.id from public.users u where u.email = lower($1)),
                (select u.id from auth.users a join public.users u on u.id = a.id
                  where (a.instance_id = '00000000-0000-0000-0000-000000000000' or a.instance_id is null)
                    and lower(a.email) = lower($1) and a.email_confirmed_at is not null
                  limit 1))",
    )
    .bind(who)
    .bind(Uuid::parse_str(who).ok())
    .fetch_one(&mut *conn)
    .await?;
    id.ok_or_else(|| {
        Error::usage(format!(
            "no user `{who}` (an id, email address or username)"
        ))
        .with_help("`chatctl users list --search TEXT` finds people")
        .into()
    })
}

pub async fn show(conn: &mut PgConnection, who: &str) -> Result<Shown> {
    let id = find(conn, who).await?;
    let user: Listed = sqlx::query_as(
        "select u.id, u.username, u.name as display_name, u.email, u.external_source, u.external_id, u.is_bot,
                u.created_at, u.deactivated_at, null::text as role
           from public.users u where u.id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    type Auth = (
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        bool,
    );
    let (confirmed, last, banned, has_password): Auth = sqlx::query_as(
        "select email_confirmed_at, last_sign_in_at, banned_until, coalesce(encrypted_password, '') <> ''
           from auth.users where id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .unwrap_or((None, None, None, false));
    let workspaces: Vec<(String, String)> = sqlx::query_as(
        "select w.slug, m.role from public.workspace_members m join public.workspaces w on w.id = m.workspace_id
          where m.user_id = $1 order by w.slug",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let (channels, messages): (i64, i64) = sqlx::query_as(
        "select (select count(*) from public.members where user_id = $1),
                (select count(*) from public.chat where user_id = $1)",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Shown {
        user,
        email_confirmed_at: confirmed,
        last_sign_in_at: last,
        banned_until: banned,
        has_password,
        workspaces,
        channels,
        messages,
    })
}

/// What a deactivate, reactivate or set-role did.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    pub action: String,
    pub users: Vec<String>,
    /// How many of them changed (the rest already were so).
    pub changed: u64,
}

/// Deactivates (`active` false) or reactivates people, in one transaction.
pub async fn set_active(
    conn: &mut PgConnection,
    who: &[String],
    active: bool,
    actor: &Actor,
) -> Result<Changed> {
    let mut ids = Vec::new();
    for w in who {
        ids.push(find(conn, w).await?);
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let before: Vec<(Uuid, String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "select id, username, deactivated_at from public.users where id = any($1) order by username",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let changed = if active {
        accounts::reactivate(&mut tx, &ids).await?
    } else {
        accounts::deactivate(&mut tx, &ids).await?
    };
    let action = if active { "reactivate" } else { "deactivate" };
    let entries: Vec<audit::Entry> = before
        .iter()
        .filter(|(_, _, d)| d.is_none() != active)
        .map(|(id, username, d)| audit::Entry {
            action: action.into(),
            object_type: "user".into(),
            object_id: username.clone(),
            before: Some(serde_json::json!({ "id": id, "deactivated_at": d })),
            after: Some(serde_json::json!({ "id": id, "active": active })),
        })
        .collect();
    audit::record(&mut tx, &actor.operator, &actor.command, &entries).await?;
    tx.commit().await?;
    Ok(Changed {
        action: action.into(),
        users: before.into_iter().map(|(_, u, _)| u).collect(),
        changed,
    })
}

/// Sets a person's role in a workspace they belong to.
pub async fn set_role(
    conn: &mut PgConnection,
    who: &str,
    slug: &str,
    role: &str,
    actor: &Actor,
) -> Result<Changed> {
    if !["owner", "admin", "member", "guest"].contains(&role) {
        return Err(Error::usage(format!(
            "unknown role `{role}` (owner, admin, member or guest)"
        ))
        .into());
    }
    let id = find(conn, who).await?;
    let ws = workspace_id(conn, slug).await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let current: Option<(String, String)> = sqlx::query_as(
        "select m.role, u.username from public.workspace_members m join public.users u on u.id = m.user_id
          where m.workspace_id = $1 and m.user_id = $2 for update of m",
    )
    .bind(ws)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((old, username)) = current else {
        return Err(Error::usage(format!("`{who}` is not a member of `{slug}`"))
            .with_help("add people with `chatctl apply` or `chatctl users import -w`")
            .into());
    };
    let changed = if old == role {
        0
    } else {
        sqlx::query(
            "update public.workspace_members set role = $3 where workspace_id = $1 and user_id = $2",
        )
        .bind(ws)
        .bind(id)
        .bind(role)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            &actor.operator,
            &actor.command,
            &[audit::Entry {
                action: "update".into(),
                object_type: "workspace_member".into(),
                object_id: format!("{slug}/{username}"),
                before: Some(serde_json::json!({ "role": old })),
                after: Some(serde_json::json!({ "role": role })),
            }],
        )
        .await?;
        1
    };
    tx.commit().await.map_err(|e| {
        let owner_kept = e
            .as_database_error()
            .and_then(|d| d.constraint())
            .is_some_and(|c| c == "workspace_members_owner_kept");
        let err = anyhow::Error::from(e);
        if owner_kept {
            err.context(
                Error::failed(format!(
                    "`{slug}` would be left without an owner; nothing changed"
                ))
                .with_help("make someone else an owner first"),
            )
        } else {
            err
        }
    })?;
    Ok(Changed {
        action: format!("set-role {role}"),
        users: vec![username],
        changed,
    })
}

async fn workspace_id(conn: &mut PgConnection, slug: &str) -> Result<Uuid> {
    let id: Option<Uuid> = sqlx::query_scalar("select id from public.workspaces where slug = $1")
        .bind(slug)
        .fetch_optional(&mut *conn)
        .await?;
    id.ok_or_else(|| {
        Error::usage(format!("no workspace `{slug}`"))
            .with_help("`chatctl workspace list` shows them")
            .into()
    })
}
