//! Provisioning: a declarative spec of workspaces, channels, memberships and sharing
//! ([`spec`]), compared with the database into a [`Plan`] ([`plan`]), applied in one
//! transaction with an audit trail ([`apply`]); and the reverse, [`export`].

pub mod apply;
pub mod identity;
pub mod ops;
pub mod plan;
pub mod spec;
pub mod storage;

use std::collections::BTreeMap;

use sqlx::PgConnection;
use uuid::Uuid;

pub use apply::Actor;
pub use plan::{Action, Change, Op, Plan};
pub use spec::{SpecErrors, SpecFile};

use crate::error::{Error, Result};
use crate::report::Report;

/// Options of [`plan`].
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Also remove (archive, unshare, drop memberships) what the spec does not list.
    pub prune: bool,
}

/// Reads the spec files and computes the changes that would make the database match.
pub async fn plan(conn: &mut PgConnection, files: &[SpecFile], opts: &PlanOptions) -> Result<Plan> {
    let (desired, mut problems) = spec::resolve_collecting(files);
    let slugs: Vec<String> = desired.workspaces.keys().cloned().collect();
    let mut emails: Vec<String> = desired.users.keys().cloned().collect();
    emails.extend(desired.references.keys().cloned());
    emails.sort();
    emails.dedup();
    let current = plan::load(conn, &slugs, &emails).await?;
    let mut known: std::collections::BTreeSet<String> = current.users.keys().cloned().collect();
    // Who each address is comes from Supabase Auth's verified address, never a column a
    // user can write: an unverified holder or a person behind a bot's address is refused.
    for email in &emails {
        let declared = desired.users.get(email);
        let bot = declared.map_or(spec::is_bot_email(email), |u| u.is_bot);
        let message = match current.identities.by_email.get(email) {
            Some(identity::Identity::NoProfile { .. }) if declared.is_none() => Some(format!(
                "`{email}` has signed up but has no profile yet: declare them under `people:` to create it"
            )),
            _ => current.identities.problem(email, bot),
        };
        if let Some(message) = message {
            known.insert(email.clone());
            problems.push(spec::problem_about(&desired, files, email, message));
        }
    }
    problems.extend(spec::unknown_reference_problems(
        &desired,
        &known,
        &current.all_slugs,
        files,
    ));
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    if !problems.is_empty() {
        return Err(anyhow::Error::from(SpecErrors(problems))
            .context(Error::usage("invalid workspace spec; nothing was applied")));
    }
    let mut p = plan::diff(&desired, &current, opts.prune);
    let orphaned = plan::owner_problems(&current, &p.changes);
    if !orphaned.is_empty() {
        return Err(Error::usage(format!("{}; nothing was applied", orphaned.join("; "))).into());
    }
    p.files = files.iter().map(|f| f.path.display().to_string()).collect();
    Ok(p)
}

/// Exports workspaces as a spec that [`plan`] turns into "no changes" on the same database,
/// and into the same workspaces on an empty one.
pub async fn export(conn: &mut PgConnection, slugs: &[String]) -> Result<spec::Spec> {
    let wss: Vec<(Uuid, String, String, Option<String>)> = sqlx::query_as(
        "select w.id, w.slug, w.name, c.name from public.workspaces w
           left join public.channels c on c.id = w.channel_id
          where w.slug = any($1) order by w.slug",
    )
    .bind(slugs)
    .fetch_all(&mut *conn)
    .await?;
    for s in slugs {
        if !wss.iter().any(|w| &w.1 == s) {
            return Err(Error::usage(format!("no workspace `{s}`"))
                .with_help("see `chatctl workspace list`")
                .into());
        }
    }
    let ids: Vec<Uuid> = wss.iter().map(|w| w.0).collect();
    let users: Vec<(String, String, String, bool)> = sqlx::query_as(
        "select distinct u.email, u.username, u.name, u.is_bot
           from public.users u
          where u.email is not null and (
                exists (select 1 from public.workspace_members m where m.user_id = u.id and m.workspace_id = any($1))
             or exists (select 1 from public.members m join public.channels c on c.id = m.channel_id
                         where m.user_id = u.id and c.workspace_id = any($1) and c.name is not null))
          order by 1",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = spec::Spec::default();
    let mut reference: BTreeMap<String, String> = BTreeMap::new();
    for (email, username, name, bot) in users {
        if bot {
            let r = format!("bot:{username}");
            out.bots.push(spec::Bot {
                name: username.clone(),
                display_name: (name != username).then_some(name),
            });
            reference.insert(email, r);
        } else {
            let local = email.split('@').next().unwrap_or_default().to_owned();
            out.people.push(spec::Person {
                email: email.clone(),
                name,
                username: (username != local).then_some(username),
            });
            reference.insert(email.clone(), email);
        }
    }
    let refer = |email: &String| {
        reference
            .get(email)
            .cloned()
            .unwrap_or_else(|| email.clone())
    };
    for (id, slug, name, default_channel) in wss {
        let members: Vec<(String, String)> = sqlx::query_as(
            "select u.email, m.role from public.workspace_members m join public.users u on u.id = m.user_id
              where m.workspace_id = $1 and u.email is not null order by u.email",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let members_as = |role: &str| by_role(&members, role, &refer);
        let mut ws = spec::WorkspaceSpec {
            slug,
            name,
            default_channel,
            owners: members_as("owner"),
            admins: members_as("admin"),
            members: members_as("member"),
            guests: members_as("guest"),
            channels: Vec::new(),
        };
        let channels: Vec<plan::ChannelRow> = sqlx::query_as(
            "select id, workspace_id, name, kind, topic, description, purpose, archived_at is not null as archived
               from public.channels
              where workspace_id = $1 and name is not null order by name",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        for plan::ChannelRow {
            id: cid,
            name,
            kind,
            topic,
            description,
            purpose,
            archived,
            ..
        } in channels
        {
            let members: Vec<(String, String)> = sqlx::query_as(
                "select u.email, m.role from public.members m join public.users u on u.id = m.user_id
                  where m.channel_id = $1 and u.email is not null order by u.email",
            )
            .bind(cid)
            .fetch_all(&mut *conn)
            .await?;
            let members_as = |role: &str| by_role(&members, role, &refer);
            let shared_with: Vec<String> = sqlx::query_scalar(
                "select w.slug from public.shared_channels s join public.workspaces w on w.id = s.workspace_id
                  where s.channel_id = $1 order by 1",
            )
            .bind(cid)
            .fetch_all(&mut *conn)
            .await?;
            ws.channels.push(spec::ChannelSpec {
                name,
                topic,
                description,
                private: kind == "private",
                purpose,
                archived,
                owners: members_as("owner"),
                moderators: members_as("moderator"),
                members: members_as("member"),
                shared_with,
            });
        }
        out.workspaces.push(ws);
    }
    out.storage = Some(storage::export(conn).await?);
    Ok(out)
}

/// The members with `role`, as spec references, sorted.
fn by_role(
    members: &[(String, String)],
    role: &str,
    refer: &dyn Fn(&String) -> String,
) -> Vec<String> {
    let mut v: Vec<String> = members
        .iter()
        .filter(|(_, r)| r == role)
        .map(|(e, _)| refer(e))
        .collect();
    v.sort();
    v
}

impl Report for spec::Spec {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let text = serde_yaml::to_string(self).map_err(std::io::Error::other)?;
        out.write_all(text.as_bytes())
    }
}
