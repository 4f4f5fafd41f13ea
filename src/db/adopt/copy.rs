//! Copying an adopted project's rows into chatctl's tables.
//!
//! Each table is read into a staging table (`pg_temp.adopt_NAME`: where the project's row is
//! (its ctid), the outline's columns converted to chatctl's types, a `reject` reason), checked
//! rule by rule (the first broken rule is the reason), and then inserted; a rejected row
//! goes to `chatctl.adopt_rejects` whole. A row that refers to a rejected one is rejected
//! in turn, saying so (a reply whose parent was left out), so nothing is left dangling.
//!
//! What chatctl needs and the outline lacks is made up the same way on every run:
//! usernames from the address (else the name), a workspace's slug from its name, a channel's
//! workspace from what the project says about it (its workspace's default channel, the
//! origin of its sharing, the only workspace), workspace memberships from channel ones.

use std::collections::HashSet;

use sqlx::PgConnection;
use uuid::Uuid;

use super::names::{channel_name_from, slug_from, unique, username_from};
use super::stage::{Stage, check_ids, count};
use super::{Found, KEPT, TableReport};
use crate::error::Result;
use crate::progress::Progress;
use crate::users::accounts;

/// Copies every outline table; returns each table's report and the notes.
pub(super) async fn copy_all(
    conn: &mut PgConnection,
    found: &[Found],
    bar: &Progress,
) -> Result<(Vec<TableReport>, Vec<String>)> {
    let mut notes = Vec::new();
    for f in found {
        if !f.policies.is_empty() || !f.triggers.is_empty() {
            notes.push(format!(
                "the project's policies ({}) and triggers ({}) of {} stay on {KEPT}.{}: chatctl's own replace them",
                list(&f.policies),
                list(&f.triggers),
                f.name,
                f.name
            ));
        }
    }
    // Every stage first: placing a channel reads the workspaces' and the sharings' rows.
    let mut users = Stage::new(conn, found, "users", "has_auth boolean").await?;
    let mut workspaces = Stage::new(conn, found, "workspaces", "").await?;
    let mut channels = Stage::new(conn, found, "channels", "ws uuid, placed text").await?;
    let mut shared = Stage::new(conn, found, "shared_channels", "target uuid").await?;
    let mut members = Stage::new(conn, found, "members", "").await?;
    let mut chat = Stage::new(conn, found, "chat", "").await?;
    let mut emojis = Stage::new(conn, found, "emojis", "").await?;

    bar.set_message("users");
    copy_users(conn, &mut users, &mut notes).await?;
    let mut reports = vec![users.finish(conn, bar).await?];
    bar.set_message("workspaces");
    copy_workspaces(conn, &mut workspaces).await?;
    bar.set_message("channels");
    copy_channels(conn, &mut channels, &mut notes).await?;
    set_default_channels(conn, &mut workspaces).await?;
    reports.push(workspaces.finish(conn, bar).await?);
    reports.push(channels.finish(conn, bar).await?);
    bar.set_message("sharings");
    copy_shared(conn, &mut shared).await?;
    reports.push(shared.finish(conn, bar).await?);
    bar.set_message("members");
    copy_members(conn, &mut members, &mut notes).await?;
    reports.push(members.finish(conn, bar).await?);
    // Messages and reactions, the bulk of a project, load as pg_restore loads: their
    // secondary indexes and foreign keys built (and every row checked against them) once
    // after, the thread counts written with the rows. The staging rules have already
    // checked what the per-row triggers would (a reply's parent kept, a root, in its channel).
    sqlx::raw_sql(
        "set local maintenance_work_mem = '256MB';
         alter table public.chat disable trigger chat_check_parent, disable trigger chat_replies_insert",
    )
    .execute(&mut *conn)
    .await?;
    let deferred = crate::db::bulk::defer(conn, &["public.chat", "public.emojis"]).await?;
    bar.set_message("messages");
    copy_chat(conn, &mut chat).await?;
    reports.push(chat.finish(conn, bar).await?);
    bar.set_message("emojis");
    copy_emojis(conn, &mut emojis).await?;
    reports.push(emojis.finish(conn, bar).await?);
    bar.set_message("indexes");
    deferred.restore(conn).await?;
    crate::db::bulk::recount_activity(conn).await?;
    sqlx::raw_sql(
        "alter table public.chat enable trigger chat_check_parent, enable trigger chat_replies_insert",
    )
    .execute(&mut *conn)
    .await?;
    Ok((reports, notes))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

async fn copy_users(conn: &mut PgConnection, s: &mut Stage, notes: &mut Vec<String>) -> Result<()> {
    check_ids(conn, s, "created_at nulls last, seq").await?;
    let t = s.t.clone();
    sqlx::raw_sql(&format!(
        "update {t} s set has_auth = exists (select 1 from auth.users a where a.id = s.id)"
    ))
    .execute(&mut *conn)
    .await?;
    s.backfill(
        conn,
        "name = ''",
        "s.name is null",
        "name: empty, none was given",
    )
    .await?;
    // Usernames: the project's where they follow chatctl's rules, else made; unique.
    type Person = (i64, Option<String>, Option<String>, Option<String>);
    let rows: Vec<Person> = sqlx::query_as(&format!(
        "select seq, username, email, name from {t} where reject is null order by created_at nulls last, seq"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut taken = HashSet::new();
    let names: Vec<(i64, String)> = rows
        .into_iter()
        .map(|(seq, username, email, name)| {
            let base = username_from(username.as_deref(), email.as_deref(), name.as_deref());
            (seq, unique(&mut taken, "", &base, 80))
        })
        .collect();
    let changed = s.write(conn, "username", &names).await?;
    let how = if s.has.contains("username") {
        "username: made to follow chatctl's rules or to be unique"
    } else {
        "username: made from the address, else the name"
    };
    s.note(how, changed);

    // The project's own triggers on auth.users run for the accounts made here, and at
    // every sign-up after.
    let auth_triggers: Vec<String> = sqlx::query_scalar(
        "select format('%s (runs %s)', tgname, tgfoid::regproc) from pg_trigger
          where tgrelid = 'auth.users'::regclass and not tgisinternal and tgname not like 'chatctl\\_%'
          order by 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    if !auth_triggers.is_empty() {
        notes.push(format!(
            "auth.users has the project's trigger(s) {}: they ran for the accounts made here and run at every sign-up; check that what they write fits chatctl's public.users (a username is required)",
            auth_triggers.join(", ")
        ));
    }
    // People without an auth account get one, as an invitation would make it: no
    // password, the address unverified (their profile shows none until they verify it).
    accounts::prepare(conn).await?;
    let made = sqlx::query(&format!(
        "insert into {stage} (id, email, username, display_name, created_at, unverified)
         select id,
                case when ok and row_number() over (partition by ok, lower(btrim(email)) order by created_at nulls last, seq) = 1
                     then lower(btrim(email)) end,
                username, name, created_at, true
           from (select s.*, coalesce(btrim(s.email) ~ '^[^@[:space:]]+@[^@[:space:]]+$'
                          and not exists (select 1 from auth.users a where lower(a.email) = lower(btrim(s.email))), false) as ok
                   from {t} s where s.reject is null and not s.has_auth) s",
        stage = accounts::STAGE
    ))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if made > 0 {
        let without: i64 = sqlx::query_scalar(&format!(
            "select count(*) from {} where email is null",
            accounts::STAGE
        ))
        .fetch_one(&mut *conn)
        .await?;
        accounts::create_staged(conn).await?;
        notes.push(format!(
            "{made} people had no Supabase Auth account and got one, as an invitation makes it: no password, the address unverified (the profile shows it once they verify it){}",
            if without > 0 {
                format!("; {without} of them had no usable address (none, malformed, or another account's) and cannot sign in until an operator gives them one")
            } else {
                String::new()
            }
        ));
    }
    sqlx::raw_sql(&format!(
        "insert into public.users (id, username, name, avatar_url, created_at)
         select id, username, name, avatar_url, coalesce(created_at, now())
           from {t} where reject is null and has_auth"
    ))
    .execute(&mut *conn)
    .await?;
    s.note(
        "created_at: now, none was given",
        count(
            conn,
            &format!("select count(*) from {t} where reject is null and created_at is null"),
        )
        .await?,
    );
    s.differing(
        conn,
        "email",
        "public.users",
        "lower(btrim(s.email)) is distinct from x.email",
        "email: the auth account's verified address, none while unverified (differed from the project's)",
    )
    .await?;
    s.differing(
        conn,
        "last_login",
        "public.users",
        "s.last_login is distinct from x.last_login",
        "last_login: Supabase Auth's last sign-in (differed from the project's)",
    )
    .await?;
    Ok(())
}

async fn copy_workspaces(conn: &mut PgConnection, s: &mut Stage) -> Result<()> {
    check_ids(conn, s, "created_at nulls last, seq").await?;
    s.backfill(
        conn,
        "name = 'Workspace'",
        "s.name is null or btrim(s.name) = ''",
        "name: `Workspace`, none was given",
    )
    .await?;
    s.backfill(
        conn,
        "name = left(s.name, 200)",
        "char_length(s.name) > 200",
        "name: cut to 200 characters",
    )
    .await?;
    let t = s.t.clone();
    let rows: Vec<(i64, Option<String>, String)> = sqlx::query_as(&format!(
        "select seq, slug, name from {t} where reject is null order by created_at nulls last, seq"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut taken = HashSet::new();
    let slugs: Vec<(i64, String)> = rows
        .into_iter()
        .map(|(seq, slug, name)| {
            (
                seq,
                unique(&mut taken, "", &slug_from(slug.as_deref(), &name), 63),
            )
        })
        .collect();
    let changed = s.write(conn, "slug", &slugs).await?;
    s.note("slug: made from the name", changed);
    sqlx::raw_sql(&format!(
        "insert into public.workspaces (id, slug, name, created_at)
         select id, slug, name, coalesce(created_at, now()) from {t} where reject is null"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Places each channel in a workspace, names it by chatctl's rules, and copies it.
async fn copy_channels(
    conn: &mut PgConnection,
    s: &mut Stage,
    notes: &mut Vec<String>,
) -> Result<()> {
    check_ids(conn, s, "created_at nulls last, seq").await?;
    let t = s.t.clone();
    let mut rules = Vec::new();
    if s.has.contains("workspace_id") {
        rules.push((
            "its workspace_id",
            "select s.seq, s.workspace_id as ws from {t} s join public.workspaces w on w.id = s.workspace_id",
        ));
    }
    rules.extend([
        (
            "the workspace whose default channel it is",
            "select s.seq, w.id as ws from {t} s
               join lateral (select w.id from pg_temp.adopt_workspaces w
                              where w.reject is null and w.channel_id = s.id
                              order by w.created_at nulls last, w.seq limit 1) w on true",
        ),
        (
            "the origin workspace of its sharing",
            "select s.seq, o.ws from {t} s
               join lateral (select x.origin_workspace_id as ws from pg_temp.adopt_shared_channels x
                               join public.workspaces w on w.id = x.origin_workspace_id
                              where x.channel_id = s.id order by x.seq limit 1) o on true",
        ),
        (
            "the project's only workspace",
            "select s.seq, w.id as ws from {t} s cross join public.workspaces w
              where (select count(*) from public.workspaces) = 1",
        ),
    ]);
    for (how, source) in rules {
        let n = sqlx::query(&format!(
            "update {t} s set ws = p.ws, placed = $1 from ({}) p
              where p.seq = s.seq and s.reject is null and s.ws is null",
            source.replace("{t}", &t)
        ))
        .bind(how)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        s.note(&format!("workspace: {how}"), n);
    }
    let unplaced = count(
        conn,
        &format!("select count(*) from {t} where reject is null and ws is null"),
    )
    .await?;
    if unplaced > 0 {
        let taken: Vec<String> = sqlx::query_scalar("select slug from public.workspaces")
            .fetch_all(&mut *conn)
            .await?;
        let mut taken: HashSet<(String, String)> =
            taken.into_iter().map(|t| (String::new(), t)).collect();
        let slug = unique(&mut taken, "", "adopted", 63);
        let id: Uuid = sqlx::query_scalar(
            "insert into public.workspaces (slug, name) values ($1, 'Adopted channels') returning id",
        )
        .bind(&slug)
        .fetch_one(&mut *conn)
        .await?;
        sqlx::query(&format!(
            "update {t} set ws = $1, placed = 'a workspace made for them' where reject is null and ws is null"
        ))
        .bind(id)
        .execute(&mut *conn)
        .await?;
        s.note(
            "workspace: a workspace made for channels nothing placed",
            unplaced,
        );
        notes.push(format!(
            "{unplaced} channel(s) belonged to no workspace the project names (the outline's channels have none): they are in a new workspace `{slug}`; its members are their members"
        ));
    }
    // Names: chatctl's rules (lowercase, no spaces or periods), unique in the workspace.
    let rows: Vec<(i64, String, Option<String>, Uuid)> = sqlx::query_as(&format!(
        "select seq, ws::text, name, id from {t} where reject is null order by created_at nulls last, seq"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut taken = HashSet::new();
    let names: Vec<(i64, String)> = rows
        .into_iter()
        .map(|(seq, ws, name, id)| {
            (
                seq,
                unique(&mut taken, &ws, &channel_name_from(name.as_deref(), id), 80),
            )
        })
        .collect();
    let changed = s.write(conn, "name", &names).await?;
    s.note(
        "name: made to follow chatctl's rules or to be unique in the workspace",
        changed,
    );
    s.backfill(
        conn,
        "description = ''",
        "s.description is null",
        "description: empty, none was given",
    )
    .await?;
    s.backfill(
        conn,
        "topic = left(s.topic, 250)",
        "char_length(s.topic) > 250",
        "topic: cut to 250 characters",
    )
    .await?;
    sqlx::raw_sql(&format!(
        "insert into public.channels (id, workspace_id, name, kind, topic, description, created_at)
         select id, ws, name, case when is_private then 'private' else 'public' end,
                coalesce(topic, ''), description, coalesce(created_at, now())
           from {t} where reject is null"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sets each workspace's default channel where the project's is one of its channels.
async fn set_default_channels(conn: &mut PgConnection, s: &mut Stage) -> Result<()> {
    let t = s.t.clone();
    let set = sqlx::raw_sql(&format!(
        "update public.workspaces w set channel_id = s.channel_id from {t} s
          where s.reject is null and s.id = w.id and exists (
                select 1 from public.channels c
                 where c.id = s.channel_id and c.workspace_id = w.id and c.kind in ('public', 'private'))"
    ))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let named = count(
        conn,
        &format!("select count(*) from {t} where reject is null and channel_id is not null"),
    )
    .await?;
    s.note(
        "channel_id: none, the project's is not one of the workspace's kept channels",
        named - set,
    );
    Ok(())
}

async fn copy_shared(conn: &mut PgConnection, s: &mut Stage) -> Result<()> {
    let t = s.t.clone();
    s.refers(conn, "channel_id", "channels", "its channel")
        .await?;
    // The workspace it is shared into: target_workspace_id, else workspace_id; when both
    // are there and differ, workspace_id may only be the channel's own (the origin).
    sqlx::raw_sql(&format!(
        "update {t} s set target = coalesce(s.target_workspace_id, s.workspace_id) where s.reject is null"
    ))
    .execute(&mut *conn)
    .await?;
    s.reject(
        conn,
        "workspace_id and target_workspace_id name different workspaces",
        "s.workspace_id <> s.target_workspace_id and s.workspace_id is distinct from
           (select c.workspace_id from public.channels c where c.id = s.channel_id)",
    )
    .await?;
    s.reject(conn, "names no workspace to share into", "s.target is null")
        .await?;
    s.reject(
        conn,
        "the workspace it is shared into was left out (see its own reject)",
        "not exists (select 1 from public.workspaces w where w.id = s.target)
         and exists (select 1 from pg_temp.adopt_workspaces w where w.id = s.target and w.reject is not null)",
    )
    .await?;
    s.reject(
        conn,
        "the workspace it is shared into is missing",
        "not exists (select 1 from public.workspaces w where w.id = s.target)",
    )
    .await?;
    s.reject(
        conn,
        "shared into the channel's own workspace",
        "s.target = (select c.workspace_id from public.channels c where c.id = s.channel_id)",
    )
    .await?;
    s.reject_duplicates(
        conn,
        "channel_id, target",
        "seq",
        "a second sharing of the channel with the same workspace",
    )
    .await?;
    sqlx::raw_sql(&format!(
        "insert into public.shared_channels (channel_id, workspace_id)
         select channel_id, target from {t} where reject is null"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn copy_members(
    conn: &mut PgConnection,
    s: &mut Stage,
    notes: &mut Vec<String>,
) -> Result<()> {
    let t = s.t.clone();
    s.reject_duplicates(
        conn,
        "id",
        "created_at nulls last, seq",
        "a second row with the same id",
    )
    .await?;
    s.refers(conn, "channel_id", "channels", "its channel")
        .await?;
    s.refers(conn, "user_id", "users", "its person").await?;
    s.reject_duplicates(
        conn,
        "channel_id, user_id",
        "created_at nulls last, seq",
        "a second membership of the same person in the same channel",
    )
    .await?;
    // The outline has no workspace memberships; a channel's members are members of its
    // workspace. A member of a shared channel who is a member of none of its workspaces
    // through another channel joins the channel's own.
    let m = format!(
        "select s.user_id, c.id as channel_id, c.workspace_id, s.created_at,
                exists (select 1 from public.shared_channels x where x.channel_id = c.id) as shared
           from {t} s join public.channels c on c.id = s.channel_id where s.reject is null"
    );
    let direct = sqlx::raw_sql(&format!(
        "insert into public.workspace_members (workspace_id, user_id, joined_at)
         select workspace_id, user_id, coalesce(min(created_at), now()) from ({m}) m
          where not shared group by 1, 2"
    ))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let via_shared = sqlx::raw_sql(&format!(
        "insert into public.workspace_members (workspace_id, user_id, joined_at)
         select workspace_id, user_id, coalesce(min(created_at), now()) from ({m}) m
          where shared and not exists (
                select 1 from public.workspace_members w
                 where w.user_id = m.user_id
                   and (w.workspace_id = m.workspace_id or w.workspace_id in (
                        select x.workspace_id from public.shared_channels x where x.channel_id = m.channel_id)))
          group by 1, 2"
    ))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if direct + via_shared > 0 {
        notes.push(format!(
            "{} workspace membership(s) were made from channel memberships (the outline has none){}; nobody owns or administers a workspace yet: `chatctl users set-role USER owner -w SLUG`",
            direct + via_shared,
            if via_shared > 0 {
                format!(", {via_shared} of them for members of a shared channel only, in the channel's own workspace")
            } else {
                String::new()
            }
        ));
    }
    sqlx::raw_sql(&format!(
        "insert into public.members (id, channel_id, user_id, created_at)
         select coalesce(id, gen_random_uuid()), channel_id, user_id, coalesce(created_at, now())
           from {t} where reject is null"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn copy_chat(conn: &mut PgConnection, s: &mut Stage) -> Result<()> {
    let t = s.t.clone();
    check_ids(conn, s, "created_at nulls last, seq").await?;
    s.reject(conn, "has no message", "s.message is null")
        .await?;
    // The outline's message is {text, attachments}: a plain string is its text, a text
    // that is a number is written as one, a missing text is empty.
    s.backfill(
        conn,
        "message = jsonb_build_object('text', s.message #>> '{}')",
        "jsonb_typeof(s.message) = 'string'",
        "message: a plain string, now {text}",
    )
    .await?;
    s.backfill(
        conn,
        "message = s.message || jsonb_build_object('text', coalesce(s.message ->> 'text', ''))",
        "jsonb_typeof(s.message) = 'object'
         and coalesce(jsonb_typeof(s.message -> 'text'), 'null') in ('null', 'number', 'boolean')",
        "message: text missing or not a string, now a string",
    )
    .await?;
    s.backfill(
        conn,
        "message = s.message - 'attachments'",
        "jsonb_typeof(s.message -> 'attachments') = 'null'",
        "message: attachments null, now none",
    )
    .await?;
    s.backfill(
        conn,
        "message = s.message - 'mentions'",
        "s.message ? 'mentions' and jsonb_typeof(s.message -> 'mentions') <> 'array'",
        "message: mentions not a list, dropped",
    )
    .await?;
    s.reject(
        conn,
        "message is not {text, attachments}",
        "not (jsonb_typeof(s.message) = 'object' and jsonb_typeof(s.message -> 'text') = 'string'
              and coalesce(jsonb_typeof(s.message -> 'attachments'), 'array') = 'array')",
    )
    .await?;
    s.reject(
        conn,
        "text is longer than 40,000 characters",
        "char_length(s.message ->> 'text') > 40000",
    )
    .await?;
    s.refers(conn, "channel_id", "channels", "its channel")
        .await?;
    s.refers(conn, "user_id", "users", "its author").await?;
    // Replies last: their parent's own fate is known by then.
    s.reject(conn, "is its own parent", "s.parent_id = s.id")
        .await?;
    s.reject(
        conn,
        "its parent message was left out (see its own reject)",
        &format!(
            "exists (select 1 from {t} p where p.id = s.parent_id and p.reject is not null)
             and not exists (select 1 from {t} p where p.id = s.parent_id and p.reject is null)"
        ),
    )
    .await?;
    s.reject(
        conn,
        "its parent message is missing",
        &format!(
            "s.parent_id is not null and not exists (select 1 from {t} p where p.id = s.parent_id)"
        ),
    )
    .await?;
    s.reject(
        conn,
        "its parent message is in another channel",
        &format!(
            "exists (select 1 from {t} p where p.id = s.parent_id and p.reject is null and p.channel_id <> s.channel_id)"
        ),
    )
    .await?;
    s.reject(
        conn,
        "its parent is itself a reply (threads are one level deep)",
        &format!(
            "exists (select 1 from {t} p where p.id = s.parent_id and p.reject is null and p.parent_id is not null)"
        ),
    )
    .await?;
    s.backfill(
        conn,
        "is_deleted = false",
        "s.is_deleted is null",
        "is_deleted: false, none was given",
    )
    .await?;
    s.backfill(
        conn,
        "created_at = now()",
        "s.created_at is null",
        "created_at: now, none was given",
    )
    .await?;
    // A thread's counters as the reply triggers keep them: replies not deleted.
    sqlx::raw_sql(&format!(
        "insert into public.chat (id, channel_id, user_id, parent_id, message, is_deleted, created_at,
                modified_at, total_replies, last_reply_at)
         select s.id, s.channel_id, s.user_id, s.parent_id, s.message, s.is_deleted, s.created_at,
                s.modified_at, coalesce(r.n, 0), r.last_at
           from {t} s
           left join (select parent_id, count(*) as n, max(created_at) as last_at from {t}
                       where reject is null and parent_id is not null and not is_deleted
                       group by parent_id) r on r.parent_id = s.id
          where s.reject is null
          order by s.created_at, s.id"
    ))
    .execute(&mut *conn)
    .await?;
    s.differing(
        conn,
        "total_replies",
        "public.chat",
        "s.total_replies is distinct from x.total_replies",
        "total_replies: counted from the replies kept (differed from the project's)",
    )
    .await?;
    Ok(())
}

async fn copy_emojis(conn: &mut PgConnection, s: &mut Stage) -> Result<()> {
    let t = s.t.clone();
    s.reject_duplicates(
        conn,
        "id",
        "created_at nulls last, seq",
        "a second row with the same id",
    )
    .await?;
    s.refers(conn, "chat_id", "chat", "its message").await?;
    s.reject(
        conn,
        "an emoji on a deleted message",
        "exists (select 1 from public.chat c where c.id = s.chat_id and c.is_deleted)",
    )
    .await?;
    s.refers(conn, "user_id", "users", "its person").await?;
    s.reject(
        conn,
        "is not an emoji (empty, with spaces, or over 100 characters)",
        "s.emoji_uni_code is null or char_length(s.emoji_uni_code) not between 1 and 100
         or s.emoji_uni_code ~ '[[:space:]]'",
    )
    .await?;
    s.reject_duplicates(
        conn,
        "chat_id, user_id, emoji_uni_code",
        "created_at nulls last, seq",
        "a second identical reaction of the same person",
    )
    .await?;
    sqlx::raw_sql(&format!(
        "insert into public.emojis (id, chat_id, user_id, emoji_uni_code, created_at)
         select coalesce(id, gen_random_uuid()), chat_id, user_id, emoji_uni_code, coalesce(created_at, now())
           from {t} where reject is null"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
