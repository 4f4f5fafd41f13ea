//! The one way chatctl creates accounts: `apply`'s people, the bots' accounts, `dev seed`
//! and `users import` all stage their new users in [`STAGE`] and call [`create_staged`],
//! which writes the `auth.users` row, its `auth.identities` row (as Supabase Auth's Admin
//! API writes them, see `../shared/SUPABASE_AUTH.md`) and the `public.users` profile, set-based,
//! inside the caller's transaction.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::Result;

/// The staging table of new accounts; rows live until the end of the transaction.
pub const STAGE: &str = "pg_temp.chatctl_new_users";

/// How long a ban lasts: "forever", as Supabase's Admin API spells it (a duration, not
/// `infinity`, which its Go model cannot read).
pub const BAN: &str = "interval '100 years'";

/// One account to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Any UUID; a bulk load gives time-ordered ones (v7), whose index entries land on the
    /// same few pages instead of anywhere in the index.
    pub id: Uuid,
    /// Lower case.
    pub email: String,
    pub username: String,
    pub display_name: String,
    pub is_bot: bool,
    /// A bcrypt (or other Supabase-readable) hash; `None`: no password (magic link, invite).
    pub password_hash: Option<String>,
    /// When the address was verified; `None`: now.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// When the account was made in the system it comes from; `None`: now.
    pub created_at: Option<DateTime<Utc>>,
    pub external: Option<(String, String)>,
    pub avatar_url: Option<String>,
    /// Created deactivated (banned, reaching nothing).
    pub deactivated_at: Option<DateTime<Utc>>,
}

/// Creates the staging table of this session if it does not exist yet.
pub async fn prepare(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql(
        "create temp table if not exists chatctl_new_users (
             id uuid not null,
             email text,
             username text not null,
             display_name text not null,
             is_bot boolean not null default false,
             password_hash text,
             confirmed_at timestamptz,
             created_at timestamptz,
             external_source text,
             external_id text,
             avatar_url text,
             deactivated_at timestamptz,
             unverified boolean not null default false
         ) on commit delete rows",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stages `users` (few: one statement of arrays). Staged rows live until the end of the
/// transaction: stage and [`create_staged`] inside one.
pub async fn stage(conn: &mut PgConnection, users: &[NewUser]) -> Result<()> {
    prepare(conn).await?;
    let col = |f: fn(&NewUser) -> Option<String>| users.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
    let bots: Vec<bool> = users.iter().map(|u| u.is_bot).collect();
    let confirmed: Vec<Option<DateTime<Utc>>> = users.iter().map(|u| u.confirmed_at).collect();
    let created: Vec<Option<DateTime<Utc>>> = users.iter().map(|u| u.created_at).collect();
    let deactivated: Vec<Option<DateTime<Utc>>> = users.iter().map(|u| u.deactivated_at).collect();
    sqlx::query(
        "insert into pg_temp.chatctl_new_users (id, email, username, display_name, is_bot, password_hash,
                confirmed_at, created_at, external_source, external_id, avatar_url, deactivated_at)
         select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::text[],
                $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::timestamptz[])",
    )
    .bind(&ids)
    .bind(col(|u| Some(u.email.clone())))
    .bind(col(|u| Some(u.username.clone())))
    .bind(col(|u| Some(u.display_name.clone())))
    .bind(&bots)
    .bind(col(|u| u.password_hash.clone()))
    .bind(&confirmed)
    .bind(&created)
    .bind(col(|u| u.external.as_ref().map(|e| e.0.clone())))
    .bind(col(|u| u.external.as_ref().map(|e| e.1.clone())))
    .bind(col(|u| u.avatar_url.clone()))
    .bind(&deactivated)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Creates every staged account: the auth user (the token columns `''`, never NULL; the
/// provider metadata; the address verified unless staged `unverified`), its email identity
/// (`provider_id` and `sub` the user's id; its own id the user's with the version digit 8,
/// RFC 9562's custom UUID, so that it sorts as the user's does; none for an account staged
/// without an address), and the profile. Returns how many.
pub async fn create_staged(conn: &mut PgConnection) -> Result<u64> {
    let made = sqlx::query(&format!(
        "insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                confirmation_token, recovery_token, email_change_token_new, email_change,
                raw_app_meta_data, raw_user_meta_data, created_at, updated_at, banned_until)
         select '00000000-0000-0000-0000-000000000000', id, 'authenticated', 'authenticated', email,
                coalesce(password_hash, ''),
                case when not unverified and email is not null then coalesce(confirmed_at, now()) end,
                '', '', '', '',
                '{{\"provider\":\"email\",\"providers\":[\"email\"]}}',
                jsonb_build_object('full_name', display_name), coalesce(created_at, now()), now(),
                case when deactivated_at is not null then now() + {BAN} end
           from {STAGE}"
    ))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(&format!(
        "insert into auth.identities (id, provider_id, user_id, identity_data, provider, created_at, updated_at)
         select overlay(id::text placing '8' from 15 for 1)::uuid, id::text, id,
                jsonb_build_object('sub', id::text, 'email', email, 'email_verified', not unverified),
                'email', coalesce(created_at, now()), now()
           from {STAGE} where email is not null"
    ))
    .execute(&mut *conn)
    .await?;
    // The profile shows the verified auth address (the database's `users_identity` trigger
    // would set the same, and does where it runs).
    sqlx::query(&format!(
        "insert into public.users (id, username, name, email, is_bot, external_source,
                external_id, avatar_url, created_at, deactivated_at)
         select id, username, display_name, case when not unverified then email end, is_bot,
                external_source, external_id, avatar_url,
                coalesce(created_at, now()), deactivated_at
           from {STAGE}"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(made)
}

/// The triggers chatctl's migrations put on the tables a bulk load writes. A load may run
/// without triggers (see [`bulk_allowed`]) only when these are all there is: what they do
/// on insert, the load does itself.
const KNOWN_TRIGGERS: &[&str] = &[
    "chatctl_follow_email",
    "users_identity",
    "users_updated_at",
    "workspace_members_drop_channels",
    "workspace_members_owner_kept",
    "members_boundary_insert",
    "members_boundary_update",
    "members_stamp",
];

/// Whether a bulk load may skip triggers (`session_replication_role = replica`, as Supabase
/// documents for data imports): the role may set it, and the tables it writes carry no
/// trigger but chatctl's own (a project's own trigger, say one that sends a welcome email or
/// fills another profile table, must run, so then nothing is skipped). Skipping saves the
/// per-row foreign key checks and the profile's identity trigger; the loader keeps their
/// promises itself: it writes each profile's verified address, inserts an account's rows
/// together, and locks the rows its new rows refer to, as a foreign key check would (`for key share`).
pub async fn bulk_allowed(conn: &mut PgConnection) -> Result<bool> {
    let foreign: Vec<String> = sqlx::query_scalar(
        "select tgrelid::regclass::text || '.' || tgname from pg_trigger
          where tgrelid in (to_regclass('auth.users'), to_regclass('auth.identities'),
                            to_regclass('public.users'), to_regclass('public.workspace_members'),
                            to_regclass('public.members'))
            and not tgisinternal and (tgenabled <> 'O' or not (tgname = any($1)))",
    )
    .bind(KNOWN_TRIGGERS)
    .fetch_all(&mut *conn)
    .await?;
    if !foreign.is_empty() {
        tracing::info!(triggers = ?foreign, "the tables carry triggers chatctl does not know: the load runs them");
        return Ok(false);
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let allowed = sqlx::raw_sql("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .is_ok();
    tx.rollback().await?;
    if !allowed {
        tracing::info!(
            "this role may not set session_replication_role: the load runs every trigger"
        );
    }
    Ok(allowed)
}

/// Turns trigger skipping on (`true`) or off for the rest of the transaction.
pub async fn set_bulk(conn: &mut PgConnection, on: bool) -> Result<()> {
    let role = if on { "replica" } else { "origin" };
    sqlx::raw_sql(&format!("set local session_replication_role = {role}"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Deactivates people: their profile says since when, their auth user is banned (no new
/// token), and row level security shows them nothing through their memberships, which are
/// kept (as are their messages). Returns how many were active.
pub async fn deactivate(conn: &mut PgConnection, ids: &[Uuid]) -> Result<u64> {
    let n = sqlx::query(
        "update public.users set deactivated_at = now() where id = any($1) and deactivated_at is null",
    )
    .bind(ids)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(&format!(
        "update auth.users set banned_until = now() + {BAN}, updated_at = now() where id = any($1)"
    ))
    .bind(ids)
    .execute(&mut *conn)
    .await?;
    Ok(n)
}

/// Undoes [`deactivate`]: the ban is lifted and the memberships reach their channels again.
pub async fn reactivate(conn: &mut PgConnection, ids: &[Uuid]) -> Result<u64> {
    let n = sqlx::query(
        "update public.users set deactivated_at = null where id = any($1) and deactivated_at is not null",
    )
    .bind(ids)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(
        "update auth.users set banned_until = null, updated_at = now()
          where id = any($1) and banned_until is not null",
    )
    .bind(ids)
    .execute(&mut *conn)
    .await?;
    Ok(n)
}

/// The username `apply` and the import derive from an address: its local part, lower case.
pub fn derive_username(email: &str) -> String {
    email.split('@').next().unwrap_or_default().to_lowercase()
}

/// What [`valid_username`] asks, as errors say it.
pub const USERNAME_RULES: &str = "1 to 80 characters, lowercase, no spaces or `@`";

/// Whether `name` may be a username (the `users_username_format` constraint).
pub fn valid_username(name: &str) -> bool {
    let n = name.chars().count();
    (1..=80).contains(&n)
        && name == name.to_lowercase()
        && !name.chars().any(|c| c.is_whitespace() || c == '@')
}
