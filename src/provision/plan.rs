//! The plan: the current state of the spec's workspaces read from the database, compared
//! with the desired state, as a list of [`Change`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::identity::{self, Identities, Identity};
use super::spec::{Desired, DesiredUser};
use crate::error::Result;
use crate::report::{self, Report};

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Add,
    Archive,
    Unarchive,
    Remove,
}

impl Action {
    /// Whether the change takes something away (only with `--prune`).
    pub fn is_removal(self) -> bool {
        matches!(self, Action::Remove | Action::Archive)
    }
}

/// The operation behind a change, with the keys needed to carry it out.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    CreateUser(DesiredUser),
    /// A profile for an auth user who verified their address but has none yet.
    CreateProfile {
        user: DesiredUser,
        id: Uuid,
    },
    RenameUser {
        email: String,
        name: String,
    },
    DeleteWorkspace {
        slug: String,
    },
    RenameChannel {
        slug: String,
        name: String,
        to: String,
    },
    /// Creates the DM (two users) or group DM (more) of exactly these users.
    OpenDm {
        slug: String,
        emails: Vec<String>,
    },
    CreateWorkspace {
        slug: String,
        name: String,
    },
    RenameWorkspace {
        slug: String,
        name: String,
    },
    SetDefaultChannel {
        slug: String,
        channel: Option<String>,
    },
    AddWorkspaceMember {
        slug: String,
        email: String,
        role: String,
    },
    SetWorkspaceRole {
        slug: String,
        email: String,
        role: String,
    },
    RemoveWorkspaceMember {
        slug: String,
        email: String,
    },
    CreateChannel {
        slug: String,
        name: String,
        kind: String,
        topic: String,
        description: String,
        purpose: Option<String>,
    },
    UpdateChannel {
        slug: String,
        name: String,
        kind: String,
        topic: String,
        description: String,
        purpose: Option<String>,
    },
    ArchiveChannel {
        slug: String,
        name: String,
    },
    UnarchiveChannel {
        slug: String,
        name: String,
    },
    AddMember {
        slug: String,
        channel: String,
        email: String,
        role: String,
    },
    SetMemberRole {
        slug: String,
        channel: String,
        email: String,
        role: String,
    },
    RemoveMember {
        slug: String,
        channel: String,
        email: String,
    },
    Share {
        slug: String,
        channel: String,
        target: String,
    },
    Unshare {
        slug: String,
        channel: String,
        target: String,
    },
    /// Creates or updates a Storage bucket, and makes it chatctl's.
    PutBucket {
        name: String,
        bucket: super::storage::DesiredBucket,
        create: bool,
    },
    /// Deletes an empty bucket chatctl owns.
    RemoveBucket {
        name: String,
    },
}

/// One change of the plan, as shown and as recorded in the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub action: Action,
    /// user, workspace, workspace_member, channel, member, shared_channel
    pub object_type: &'static str,
    /// A readable key: `alice@example.com`, `acme`, `acme/#general`, `acme/#general alice@…`.
    pub object: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    #[serde(skip)]
    pub op: Op,
}

/// A plan and what it would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Removals left out because `--prune` was not given.
    pub skipped_removals: usize,
    /// What the operator should know (a workspace without an owner).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub applied: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn removals(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.action.is_removal())
            .count()
    }

    /// Counts per action, for the summary line.
    pub fn summary(&self) -> String {
        if self.changes.is_empty() {
            return "no changes".to_owned();
        }
        let mut counts: BTreeMap<Action, usize> = BTreeMap::new();
        for c in &self.changes {
            *counts.entry(c.action).or_default() += 1;
        }
        let parts: Vec<String> = counts
            .iter()
            .map(|(a, n)| {
                format!(
                    "{n} to {}",
                    serde_json::to_value(a)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )
            })
            .collect();
        parts.join(", ")
    }
}

impl Report for Plan {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if !self.changes.is_empty() {
            let mut t = report::table(["ACTION", "TYPE", "OBJECT", "CHANGE"]);
            // A big first apply: show the first rows and a count, not 200,000 lines.
            const SHOWN: usize = 200;
            for c in self.changes.iter().take(SHOWN) {
                let action = serde_json::to_value(c.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let detail = match (&c.before, &c.after) {
                    (Some(b), Some(a)) => format!("{} -> {}", compact(b), compact(a)),
                    (None, Some(a)) => compact(a),
                    (Some(b), None) => compact(b),
                    (None, None) => String::new(),
                };
                t.add_row(vec![
                    action,
                    c.object_type.to_owned(),
                    c.object.clone(),
                    detail,
                ]);
            }
            report::write_table(out, &t)?;
            if self.changes.len() > SHOWN {
                writeln!(
                    out,
                    "... and {} more (see --output json)",
                    self.changes.len() - SHOWN
                )?;
            }
            writeln!(out)?;
        }
        let verb = if self.applied { "applied" } else { "plan" };
        writeln!(out, "{verb}: {}", self.summary())?;
        for w in &self.warnings {
            writeln!(out, "warning: {w}")?;
        }
        if self.skipped_removals > 0 {
            writeln!(
                out,
                "{} removal(s) not in the plan: pass --prune to remove what the spec does not list",
                self.skipped_removals
            )?;
        }
        Ok(())
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null() && v.as_str() != Some(""))
            .map(|(k, v)| format!("{k}={}", compact(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// The database's state of the workspaces a spec names.
#[derive(Debug, Default)]
pub struct Current {
    /// email → (id, username, display name, is_bot): the people whose auth user verified
    /// the address, with a profile.
    pub users: BTreeMap<String, (Uuid, String, String, bool)>,
    /// Everything the database knows of the spec's addresses (see [`identity`]).
    pub identities: Identities,
    pub workspaces: BTreeMap<String, CurrentWorkspace>,
    /// Every workspace slug in the database.
    pub all_slugs: BTreeSet<String>,
    /// Every Storage bucket; `None` before migration 0015.
    pub buckets: Option<BTreeMap<String, super::storage::CurrentBucket>>,
}

#[derive(Debug, Default)]
pub struct CurrentWorkspace {
    pub id: Uuid,
    pub name: String,
    pub default_channel: Option<String>,
    pub members: BTreeMap<String, String>,
    pub channels: BTreeMap<String, CurrentChannel>,
}

#[derive(Debug, Default)]
pub struct CurrentChannel {
    pub id: Uuid,
    pub kind: String,
    pub topic: String,
    pub description: String,
    pub purpose: Option<String>,
    pub archived: bool,
    pub members: BTreeMap<String, String>,
    pub shared_with: BTreeSet<String>,
}

/// A named channel as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct ChannelRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub kind: String,
    pub topic: String,
    pub description: String,
    pub purpose: Option<String>,
    pub archived: bool,
}

/// Reads the current state of `slugs` and of the users `emails`.
pub async fn load(conn: &mut PgConnection, slugs: &[String], emails: &[String]) -> Result<Current> {
    let mut cur = Current {
        identities: identity::lookup(conn, emails).await?,
        ..Default::default()
    };
    for (email, who) in &cur.identities.by_email {
        if let Identity::Known(p) = who {
            cur.users.insert(
                email.clone(),
                (p.id, p.username.clone(), p.display_name.clone(), p.is_bot),
            );
        }
    }
    cur.buckets = super::storage::load(conn).await?;
    cur.all_slugs = sqlx::query_scalar::<_, String>("select slug from public.workspaces")
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    let wss: Vec<(Uuid, String, String, Option<String>)> = sqlx::query_as(
        "select w.id, w.slug, w.name, c.name from public.workspaces w
           left join public.channels c on c.id = w.channel_id
          where w.slug = any($1)",
    )
    .bind(slugs)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_id: BTreeMap<Uuid, String> = BTreeMap::new();
    for (id, slug, name, default_channel) in wss {
        by_id.insert(id, slug.clone());
        cur.workspaces.insert(
            slug,
            CurrentWorkspace {
                id,
                name,
                default_channel,
                ..Default::default()
            },
        );
    }
    let ids: Vec<Uuid> = by_id.keys().copied().collect();
    let wm: Vec<(Uuid, String, String)> = sqlx::query_as(
        "select m.workspace_id, u.email, m.role from public.workspace_members m
           join public.users u on u.id = m.user_id
          where m.workspace_id = any($1) and u.email is not null",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    for (ws, email, role) in wm {
        if let Some(w) = cur.workspaces.get_mut(&by_id[&ws]) {
            w.members.insert(email, role);
        }
    }
    let chans: Vec<ChannelRow> = sqlx::query_as(
        "select id, workspace_id, name, kind, topic, description, purpose, archived_at is not null as archived
           from public.channels where workspace_id = any($1) and name is not null",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut chan_key: BTreeMap<Uuid, (String, String)> = BTreeMap::new();
    for ChannelRow {
        id,
        workspace_id: ws,
        name,
        kind,
        topic,
        description,
        purpose,
        archived,
    } in chans
    {
        let slug = by_id[&ws].clone();
        chan_key.insert(id, (slug.clone(), name.clone()));
        if let Some(w) = cur.workspaces.get_mut(&slug) {
            w.channels.insert(
                name,
                CurrentChannel {
                    id,
                    kind,
                    topic,
                    description,
                    purpose,
                    archived,
                    ..Default::default()
                },
            );
        }
    }
    let chan_ids: Vec<Uuid> = chan_key.keys().copied().collect();
    let members: Vec<(Uuid, String, String)> = sqlx::query_as(
        "select m.channel_id, u.email, m.role from public.members m join public.users u on u.id = m.user_id
          where m.channel_id = any($1) and u.email is not null",
    )
    .bind(&chan_ids)
    .fetch_all(&mut *conn)
    .await?;
    for (ch, email, role) in members {
        let (slug, name) = &chan_key[&ch];
        if let Some(c) = cur
            .workspaces
            .get_mut(slug)
            .and_then(|w| w.channels.get_mut(name))
        {
            c.members.insert(email, role);
        }
    }
    let shares: Vec<(Uuid, String)> = sqlx::query_as(
        "select s.channel_id, w.slug from public.shared_channels s join public.workspaces w on w.id = s.workspace_id
          where s.channel_id = any($1)",
    )
    .bind(&chan_ids)
    .fetch_all(&mut *conn)
    .await?;
    for (ch, target) in shares {
        let (slug, name) = &chan_key[&ch];
        if let Some(c) = cur
            .workspaces
            .get_mut(slug)
            .and_then(|w| w.channels.get_mut(name))
        {
            c.shared_with.insert(target);
        }
    }
    Ok(cur)
}

/// The additions and role changes (into `changes`) and removals (into `gone`) that turn the
/// `have` members (email → role) into the `want` ones; `op` builds each change's operation.
fn diff_members(
    object_type: &'static str,
    key: &str,
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
    changes: &mut Vec<Change>,
    gone: &mut Vec<Change>,
    op: &dyn Fn(Action, &str, &str) -> Op,
) {
    for (email, role) in want {
        let (action, before) = match have.get(email) {
            None => (Action::Add, None),
            Some(r) if r != role => (Action::Update, Some(json!({ "role": r }))),
            Some(_) => continue,
        };
        changes.push(Change {
            action,
            object_type,
            object: format!("{key} {email}"),
            before,
            after: Some(json!({ "role": role })),
            op: op(action, email, role),
        });
    }
    for (email, role) in have {
        if !want.contains_key(email) {
            gone.push(Change {
                action: Action::Remove,
                object_type,
                object: format!("{key} {email}"),
                before: Some(json!({ "role": role })),
                after: None,
                op: op(Action::Remove, email, role),
            });
        }
    }
}

/// Compares the desired state with the current one.
pub fn diff(d: &Desired, cur: &Current, prune: bool) -> Plan {
    let mut changes = Vec::new();
    let mut skipped = 0usize;
    let mut removal = |c: Change, changes: &mut Vec<Change>| {
        if prune {
            changes.push(c);
        } else {
            skipped += 1;
        }
    };

    for u in d.users.values().filter(|u| u.declared) {
        if !cur.users.contains_key(&u.email) {
            let op = match cur.identities.by_email.get(&u.email) {
                Some(Identity::NoProfile { id }) => Op::CreateProfile {
                    user: u.clone(),
                    id: *id,
                },
                _ => Op::CreateUser(u.clone()),
            };
            changes.push(Change {
                action: Action::Create,
                object_type: "user",
                object: u.email.clone(),
                before: None,
                after: Some(
                    json!({ "username": u.username, "name": u.display_name, "bot": u.is_bot }),
                ),
                op,
            });
        } else if let Some((_, _, name, _)) = cur.users.get(&u.email)
            && *name != u.display_name
        {
            changes.push(Change {
                action: Action::Update,
                object_type: "user",
                object: u.email.clone(),
                before: Some(json!({ "name": name })),
                after: Some(json!({ "name": u.display_name })),
                op: Op::RenameUser {
                    email: u.email.clone(),
                    name: u.display_name.clone(),
                },
            });
        }
    }

    for (slug, w) in &d.workspaces {
        let cw = cur.workspaces.get(slug);
        match cw {
            None => changes.push(Change {
                action: Action::Create,
                object_type: "workspace",
                object: slug.clone(),
                before: None,
                after: Some(json!({ "name": w.name })),
                op: Op::CreateWorkspace {
                    slug: slug.clone(),
                    name: w.name.clone(),
                },
            }),
            Some(c) if c.name != w.name => changes.push(Change {
                action: Action::Update,
                object_type: "workspace",
                object: slug.clone(),
                before: Some(json!({ "name": c.name })),
                after: Some(json!({ "name": w.name })),
                op: Op::RenameWorkspace {
                    slug: slug.clone(),
                    name: w.name.clone(),
                },
            }),
            Some(_) => {}
        }
        let empty = BTreeMap::new();
        let cur_members = cw.map_or(&empty, |c| &c.members);
        // People in only through a channel keep their role, or join as members.
        let mut want = w.members.clone();
        for email in &w.implied {
            let role = cur_members.get(email).map_or("member", String::as_str);
            want.insert(email.clone(), role.to_owned());
        }
        let mut gone = Vec::new();
        diff_members(
            "workspace_member",
            slug,
            &want,
            cur_members,
            &mut changes,
            &mut gone,
            &|action, email, role| match action {
                Action::Add => Op::AddWorkspaceMember {
                    slug: slug.clone(),
                    email: email.to_owned(),
                    role: role.to_owned(),
                },
                Action::Update => Op::SetWorkspaceRole {
                    slug: slug.clone(),
                    email: email.to_owned(),
                    role: role.to_owned(),
                },
                _ => Op::RemoveWorkspaceMember {
                    slug: slug.clone(),
                    email: email.to_owned(),
                },
            },
        );
        for c in gone {
            removal(c, &mut changes);
        }

        let empty_ch = BTreeMap::new();
        let cur_channels = cw.map_or(&empty_ch, |c| &c.channels);
        for (name, ch) in &w.channels {
            let key = format!("{slug}/#{name}");
            let after_attrs = json!({ "kind": ch.kind, "topic": ch.topic, "description": ch.description, "purpose": ch.purpose });
            let cc = cur_channels.get(name);
            match cc {
                None => changes.push(Change {
                    action: Action::Create,
                    object_type: "channel",
                    object: key.clone(),
                    before: None,
                    after: Some(after_attrs),
                    op: Op::CreateChannel {
                        slug: slug.clone(),
                        name: name.clone(),
                        kind: ch.kind.clone(),
                        topic: ch.topic.clone(),
                        description: ch.description.clone(),
                        purpose: ch.purpose.clone(),
                    },
                }),
                Some(c) => {
                    if (&c.kind, &c.topic, &c.description, &c.purpose)
                        != (&ch.kind, &ch.topic, &ch.description, &ch.purpose)
                    {
                        changes.push(Change {
                            action: Action::Update,
                            object_type: "channel",
                            object: key.clone(),
                            before: Some(json!({ "kind": c.kind, "topic": c.topic, "description": c.description, "purpose": c.purpose })),
                            after: Some(after_attrs),
                            op: Op::UpdateChannel { slug: slug.clone(), name: name.clone(), kind: ch.kind.clone(), topic: ch.topic.clone(), description: ch.description.clone(), purpose: ch.purpose.clone() },
                        });
                    }
                }
            }
            let archived_now = cc.is_some_and(|c| c.archived);
            if ch.archived && !archived_now {
                changes.push(Change {
                    action: Action::Archive,
                    object_type: "channel",
                    object: key.clone(),
                    before: None,
                    after: None,
                    op: Op::ArchiveChannel {
                        slug: slug.clone(),
                        name: name.clone(),
                    },
                });
            } else if !ch.archived && archived_now {
                changes.push(Change {
                    action: Action::Unarchive,
                    object_type: "channel",
                    object: key.clone(),
                    before: None,
                    after: None,
                    op: Op::UnarchiveChannel {
                        slug: slug.clone(),
                        name: name.clone(),
                    },
                });
            }
            let empty_m = BTreeMap::new();
            let cur_m = cc.map_or(&empty_m, |c| &c.members);
            let mut gone = Vec::new();
            diff_members(
                "member",
                &key,
                &ch.members,
                cur_m,
                &mut changes,
                &mut gone,
                &|action, email, role| {
                    let (slug, channel, email) = (slug.clone(), name.clone(), email.to_owned());
                    match action {
                        Action::Add => Op::AddMember {
                            slug,
                            channel,
                            email,
                            role: role.to_owned(),
                        },
                        Action::Update => Op::SetMemberRole {
                            slug,
                            channel,
                            email,
                            role: role.to_owned(),
                        },
                        _ => Op::RemoveMember {
                            slug,
                            channel,
                            email,
                        },
                    }
                },
            );
            for c in gone {
                removal(c, &mut changes);
            }
            let empty_s = BTreeSet::new();
            let cur_s = cc.map_or(&empty_s, |c| &c.shared_with);
            for target in ch.shared_with.difference(cur_s) {
                changes.push(Change {
                    action: Action::Add,
                    object_type: "shared_channel",
                    object: format!("{key} -> {target}"),
                    before: None,
                    after: None,
                    op: Op::Share {
                        slug: slug.clone(),
                        channel: name.clone(),
                        target: target.clone(),
                    },
                });
            }
            for target in cur_s.difference(&ch.shared_with) {
                removal(
                    Change {
                        action: Action::Remove,
                        object_type: "shared_channel",
                        object: format!("{key} -> {target}"),
                        before: None,
                        after: None,
                        op: Op::Unshare {
                            slug: slug.clone(),
                            channel: name.clone(),
                            target: target.clone(),
                        },
                    },
                    &mut changes,
                );
            }
        }
        for (name, c) in cur_channels {
            if !w.channels.contains_key(name) && !c.archived {
                removal(
                    Change {
                        action: Action::Archive,
                        object_type: "channel",
                        object: format!("{slug}/#{name}"),
                        before: None,
                        after: None,
                        op: Op::ArchiveChannel {
                            slug: slug.clone(),
                            name: name.clone(),
                        },
                    },
                    &mut changes,
                );
            }
        }
        let cur_default = cw.and_then(|c| c.default_channel.clone());
        if w.default_channel.is_some() && w.default_channel != cur_default {
            changes.push(Change {
                action: Action::Update,
                object_type: "workspace",
                object: slug.clone(),
                before: Some(json!({ "default_channel": cur_default })),
                after: Some(json!({ "default_channel": w.default_channel })),
                op: Op::SetDefaultChannel {
                    slug: slug.clone(),
                    channel: w.default_channel.clone(),
                },
            });
        }
    }
    let mut gone = Vec::new();
    if let Some(buckets) = &cur.buckets {
        super::storage::diff(&d.buckets, buckets, &mut changes, &mut gone);
    }
    for c in gone {
        removal(c, &mut changes);
    }
    let mut warnings = owner_warnings(d, cur, &changes);
    if cur.buckets.is_none() {
        warnings.push(
            "the database predates chatctl's Storage buckets: `storage:` is not planned (run `chatctl migrate up`)"
                .to_owned(),
        );
    }
    Plan {
        changes,
        skipped_removals: skipped,
        warnings,
        applied: false,
        files: Vec::new(),
    }
}

/// The spec's workspaces that will have no owner once `changes` are applied. (One that has
/// an owner cannot lose it: the database refuses, and [`owner_problems`] says so first.)
fn owner_warnings(d: &Desired, cur: &Current, changes: &[Change]) -> Vec<String> {
    d.workspaces
        .keys()
        .filter(|slug| owners_after(slug, cur, changes).is_empty())
        .map(|slug| {
            format!("workspace `{slug}` has no owner: name one under `owners:` (the database then keeps one)")
        })
        .collect()
}

/// The owners of workspace `slug` once `changes` are applied.
fn owners_after(slug: &str, cur: &Current, changes: &[Change]) -> BTreeSet<String> {
    let mut owners: BTreeSet<String> = cur
        .workspaces
        .get(slug)
        .map(|w| {
            w.members
                .iter()
                .filter(|(_, r)| *r == "owner")
                .map(|(e, _)| e.clone())
                .collect()
        })
        .unwrap_or_default();
    for c in changes {
        match &c.op {
            Op::AddWorkspaceMember {
                slug: s,
                email,
                role,
            }
            | Op::SetWorkspaceRole {
                slug: s,
                email,
                role,
            } if s == slug => {
                if role == "owner" {
                    owners.insert(email.clone());
                } else {
                    owners.remove(email);
                }
            }
            Op::RemoveWorkspaceMember { slug: s, email } if s == slug => {
                owners.remove(email);
            }
            _ => {}
        }
    }
    owners
}

/// Workspaces that have an owner and would lose every one: refused before anything runs.
pub fn owner_problems(cur: &Current, changes: &[Change]) -> Vec<String> {
    cur.workspaces
        .iter()
        .filter(|(_, w)| w.members.values().any(|r| r == "owner"))
        .filter(|(slug, _)| owners_after(slug, cur, changes).is_empty())
        .map(|(slug, _)| {
            format!("workspace `{slug}` would be left without an owner: keep one under `owners:` (or name its new owner first)")
        })
        .collect()
}
