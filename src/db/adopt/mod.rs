//! Databases that already hold tables chatctl's migrations create: a project whose schema
//! was made another way (from the product's outline, with the Supabase dashboard).
//!
//! `migrate up` refuses such a database before changing anything and says what it found
//! ([`check_tables_free`]). `migrate adopt` takes it over ([`adopt`]), in one transaction:
//!
//! 1. It inspects the outline's tables (users, workspaces, channels, members,
//!    shared_channels, chat, emojis) and refuses, listing every problem at once, what it
//!    cannot take over without losing something: a view or another table's foreign key
//!    that depends on them, a column of a type it cannot convert, a missing id column, a
//!    chatctl table that is not in the outline.
//! 2. It moves them, as they are, into schema `chatctl_adopted` (closed to every client),
//!    so nothing a project had is lost, extra columns, triggers and policies included.
//! 3. It applies every pending migration: the schema is then exactly a fresh chatctl's.
//! 4. It copies the rows over, table by table ([`copy`]), keeping every id; what it must
//!    make up (a username, a workspace's slug, a channel's workspace) it makes up the same
//!    way every time and reports; a row that breaks one of chatctl's rules is left out into
//!    `chatctl.adopt_rejects` with its reason, never dropped.
//!
//! A dry run does all of it and rolls back: the plan it shows is what a real run does.

mod copy;
mod names;
mod stage;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use sqlx::migrate::Migration;
use sqlx::{Connection as _, PgConnection};

use crate::db::migrate::{self, Migrations};
use crate::db::quote_ident;
use crate::error::{Error, Kind, Result};
use crate::progress::Progress;
use crate::report::{self, Report};

/// The schema the adopted tables are kept in, as they were.
pub const KEPT: &str = "chatctl_adopted";

/// The product outline's tables, in the order they are copied (a row's references first).
pub const OUTLINE: &[&str] = &[
    "users",
    "workspaces",
    "channels",
    "shared_channels",
    "members",
    "chat",
    "emojis",
];

/// The `public` tables `pending` create (`create table public.NAME`, not `if not exists`).
fn created_tables(pending: &[&Migration]) -> Vec<String> {
    let mut names = Vec::new();
    for m in pending {
        let sql = m.sql.to_ascii_lowercase();
        for (i, _) in sql.match_indices("create table public.") {
            let rest = &sql[i + "create table public.".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// The tables of `public` among `names`, with their row counts (exact below 100,000 rows,
/// the planner's estimate above), in the order of `names`.
async fn present(conn: &mut PgConnection, names: &[String]) -> Result<Vec<(String, i64)>> {
    let found: Vec<(String, i64)> = sqlx::query_as(
        "select c.relname::text, c.reltuples::bigint
           from pg_class c
          where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f')
            and c.relname = any($1)
          order by array_position($1, c.relname::text)",
    )
    .bind(names)
    .fetch_all(&mut *conn)
    .await
    .context("cannot list the tables of schema public")?;
    let mut counted = Vec::new();
    for (name, estimate) in found {
        let rows: i64 = if estimate < 100_000 {
            sqlx::query_scalar(&format!(
                "select count(*) from public.{}",
                quote_ident(&name)
            ))
            .fetch_one(&mut *conn)
            .await
            .unwrap_or(estimate)
        } else {
            estimate
        };
        counted.push((name, rows));
    }
    Ok(counted)
}

fn rows(n: i64) -> String {
    format!("{n} {}", if n == 1 { "row" } else { "rows" })
}

/// Refuses, before changing anything, when tables the pending migrations create already
/// exist: the run would stop half-way at the first of them. Says what it found.
pub async fn check_tables_free(conn: &mut PgConnection, pending: &[&Migration]) -> Result<()> {
    let names = created_tables(pending);
    if names.is_empty() {
        return Ok(());
    }
    let found = present(conn, &names).await?;
    if found.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = found
        .iter()
        .map(|(name, n)| format!("public.{name} ({})", rows(*n)))
        .collect();
    Err(Error::new(
        Kind::NotEmpty,
        format!(
            "nothing was changed: the database already has {} table(s) these migrations create: {}",
            found.len(),
            listed.join(", ")
        ),
    )
    .with_help(
        "this looks like a project whose tables were made another way (the product outline's \
         schema, say): `chatctl migrate adopt --dry-run` shows how chatctl would take them \
         over, keeping every row",
    )
    .into())
}

/// How `adopt` runs.
#[derive(Debug, Clone)]
pub struct AdoptOptions {
    /// Do everything, report, and roll back.
    pub dry_run: bool,
    /// How long to wait for the migration lock, and for each table's lock.
    pub lock_timeout: Duration,
    /// Show a progress bar (a terminal only).
    pub progress: bool,
}

/// One outline table as the project has it.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub name: &'static str,
    /// Column name → type name (`pg_type.typname`).
    pub columns: BTreeMap<String, String>,
    /// Exact below 100,000 rows, the planner's estimate above (for the progress bar).
    pub rows: i64,
    pub rls: bool,
    pub policies: Vec<String>,
    pub triggers: Vec<String>,
    pub constraints: Vec<String>,
}

/// What `adopt` did (or, in a dry run, would do).
#[derive(Debug, Serialize)]
pub struct AdoptReport {
    pub dry_run: bool,
    /// The migrations applied, by file.
    pub migrations: Vec<String>,
    /// Where the tables are kept as they were.
    pub kept_in: String,
    pub tables: Vec<TableReport>,
    /// How many rows were left out, by table and reason (all in `chatctl.adopt_rejects`).
    pub rejects: Vec<RejectCount>,
    /// What else an operator should know: rows made, values chatctl's rules replaced.
    pub notes: Vec<String>,
}

/// One outline table's adoption.
#[derive(Debug, Default, Serialize)]
pub struct TableReport {
    pub table: String,
    /// Whether the project had the table (else chatctl's is created empty).
    pub found: bool,
    pub rows: i64,
    pub kept: i64,
    pub rejected: i64,
    /// chatctl's columns the project's table had not (filled with their defaults, or
    /// backfilled).
    pub columns_added: Vec<String>,
    /// Columns read under another name (`old → new`).
    pub renamed: Vec<String>,
    /// Values chatctl made or changed, and how many (`column: how (N)`).
    pub backfilled: Vec<String>,
    /// The project's columns chatctl has no place for: kept only in `chatctl_adopted`.
    pub extra_columns: Vec<String>,
    /// chatctl's constraints the project's table did not have.
    pub constraints_added: Vec<String>,
    /// Row level security before → after, with chatctl's policy count.
    pub rls: String,
}

#[derive(Debug, Serialize)]
pub struct RejectCount {
    pub table: String,
    pub reason: String,
    pub rows: i64,
}

/// Takes over the outline's tables: see the module's documentation. Holds the migration
/// lock throughout; everything is one transaction, rolled back for a dry run or a failure.
pub async fn adopt(
    conn: &mut PgConnection,
    migrations: &Migrations,
    opts: &AdoptOptions,
) -> Result<AdoptReport> {
    migrate::acquire_lock(conn, opts.lock_timeout).await?;
    let result = adopt_locked(conn, migrations, opts).await;
    migrate::release_lock(conn).await;
    result
}

async fn adopt_locked(
    conn: &mut PgConnection,
    migrations: &Migrations,
    opts: &AdoptOptions,
) -> Result<AdoptReport> {
    let mut tx = conn.begin().await.context("cannot begin a transaction")?;
    // Times without a zone are read as UTC; a table lock an application holds is waited
    // for only so long (while waiting, the lock queue stalls that application's queries).
    sqlx::raw_sql(&format!(
        "set local timezone = 'UTC'; set local lock_timeout = '{}ms'",
        opts.lock_timeout.as_millis().max(1)
    ))
    .execute(&mut *tx)
    .await?;
    let pending = migrate::pending(&mut tx, migrations).await?;
    let found = inspect(&mut tx, &pending).await?;
    let total: i64 = found.iter().map(|f| f.rows).sum();
    let bar = if opts.progress {
        Progress::new(total as u64, "rows", false)
    } else {
        Progress::hidden()
    };
    bar.set_message("moving");
    set_aside(&mut tx, &found).await?;
    bar.set_message("migrating");
    let applied = migrate::apply_pending_in(&mut tx, migrations).await?;
    seal_kept(&mut tx).await?;
    let (tables, notes) = copy::copy_all(&mut tx, &found, &bar).await?;
    let tables = describe(&mut tx, tables, &found).await?;
    let rejects: Vec<(String, String, i64)> = sqlx::query_as(
        "select table_name, reason, count(*) from chatctl.adopt_rejects
          where adopted_at = now() group by 1, 2 order by array_position($1, table_name), 3 desc, 2",
    )
    .bind(OUTLINE)
    .fetch_all(&mut *tx)
    .await?;
    bar.finish();
    if opts.dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await.context("cannot commit the adoption")?;
    }
    Ok(AdoptReport {
        dry_run: opts.dry_run,
        migrations: applied,
        kept_in: KEPT.into(),
        tables,
        rejects: rejects
            .into_iter()
            .map(|(table, reason, rows)| RejectCount {
                table,
                reason,
                rows,
            })
            .collect(),
        notes,
    })
}

/// Reads the outline's tables, and refuses (every problem at once) what adopting would lose.
async fn inspect(conn: &mut PgConnection, pending: &[&Migration]) -> Result<Vec<Found>> {
    let created = created_tables(pending);
    let present = present(conn, &created).await?;
    if present.is_empty() {
        return Err(Error::usage(
            "nothing to adopt: schema public has none of the tables chatctl's pending migrations create",
        )
        .with_help("`chatctl migrate up` applies them")
        .into());
    }
    let mut problems = Vec::new();
    let kept_exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_namespace where nspname = $1)")
            .bind(KEPT)
            .fetch_one(&mut *conn)
            .await?;
    if kept_exists {
        problems.push(format!(
            "schema {KEPT} exists already (an earlier adoption's?): rename or drop it"
        ));
    }
    let mut found = Vec::new();
    for (name, rows) in &present {
        let Some(outline) = OUTLINE.iter().find(|t| *t == name) else {
            problems.push(format!(
                "public.{name} ({}) is a chatctl table the outline does not have: adopt takes over only {}",
                self::rows(*rows),
                OUTLINE.join(", ")
            ));
            continue;
        };
        let kind: String = sqlx::query_scalar(
            "select relkind::text from pg_class where oid = to_regclass('public.' || quote_ident($1))",
        )
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
        if !matches!(kind.as_str(), "r" | "p") {
            problems.push(format!(
                "public.{name} is not a table (a view?): adopt copies tables"
            ));
            continue;
        }
        found.push(read_table(conn, outline, *rows).await?);
    }
    problems.extend(dependents(conn, &found).await?);
    for f in &found {
        problems.extend(stage::column_problems(f));
    }
    if !problems.is_empty() {
        return Err(Error::new(
            Kind::NotEmpty,
            format!(
                "nothing was changed: adopting would lose something ({} problem(s)):\n  - {}",
                problems.len(),
                problems.join("\n  - ")
            ),
        )
        .with_help("mend these in the project, then run `chatctl migrate adopt --dry-run` again")
        .into());
    }
    Ok(found)
}

/// `name`'s columns, policies, triggers and constraints; `rows` as [`present`] counted them.
async fn read_table(conn: &mut PgConnection, name: &'static str, rows: i64) -> Result<Found> {
    let table = format!("public.{}", quote_ident(name));
    let columns: Vec<(String, String)> = sqlx::query_as(
        "select a.attname::text, t.typname::text from pg_attribute a join pg_type t on t.oid = a.atttypid
          where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum",
    )
    .bind(&table)
    .fetch_all(&mut *conn)
    .await?;
    let rls: bool =
        sqlx::query_scalar("select relrowsecurity from pg_class where oid = $1::regclass")
            .bind(&table)
            .fetch_one(&mut *conn)
            .await?;
    let policies: Vec<String> = sqlx::query_scalar(
        "select polname::text from pg_policy where polrelid = $1::regclass order by 1",
    )
    .bind(&table)
    .fetch_all(&mut *conn)
    .await?;
    let triggers: Vec<String> = sqlx::query_scalar(
        "select tgname::text from pg_trigger where tgrelid = $1::regclass and not tgisinternal order by 1",
    )
    .bind(&table)
    .fetch_all(&mut *conn)
    .await?;
    let constraints: Vec<String> = sqlx::query_scalar(
        "select conname::text from pg_constraint where conrelid = $1::regclass order by 1",
    )
    .bind(&table)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Found {
        name,
        columns: columns.into_iter().collect(),
        rows,
        rls,
        policies,
        triggers,
        constraints,
    })
}

/// What depends on the outline's tables from outside them: views and other tables' foreign
/// keys would keep pointing at the tables set aside, reading or guarding stale rows.
async fn dependents(conn: &mut PgConnection, found: &[Found]) -> Result<Vec<String>> {
    let tables: Vec<String> = found.iter().map(|f| format!("public.{}", f.name)).collect();
    let views: Vec<(String, String)> = sqlx::query_as(
        "select distinct format('%I.%I', v.relnamespace::regnamespace, v.relname),
                format('%I.%I', t.relnamespace::regnamespace, t.relname)
           from pg_depend d
           join pg_rewrite r on r.oid = d.objid
           join pg_class v on v.oid = r.ev_class
           join pg_class t on t.oid = d.refobjid
          where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_class'::regclass
            and t.oid = any($1::regclass[]) and v.oid <> t.oid
          order by 1, 2",
    )
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await?;
    let keys: Vec<(String, String, String)> = sqlx::query_as(
        "select format('%I.%I', r.relnamespace::regnamespace, r.relname), conname::text,
                format('%I.%I', t.relnamespace::regnamespace, t.relname)
           from pg_constraint join pg_class r on r.oid = conrelid join pg_class t on t.oid = confrelid
          where contype = 'f' and confrelid = any($1::regclass[]) and not conrelid = any($1::regclass[])
          order by 1, 2",
    )
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await?;
    let mut problems: Vec<String> = views
        .into_iter()
        .map(|(v, t)| {
            format!("view {v} reads {t}: drop it before adopting and make it again after")
        })
        .collect();
    problems.extend(keys.into_iter().map(|(t, c, r)| {
        format!(
            "{t}'s foreign key {c} refers to {r}: drop it before adopting and make it again after"
        )
    }));
    Ok(problems)
}

/// Moves the outline's tables into [`KEPT`], out of every publication.
async fn set_aside(conn: &mut PgConnection, found: &[Found]) -> Result<()> {
    sqlx::raw_sql(&format!(
        "create schema {KEPT};
         comment on schema {KEPT} is 'The tables chatctl migrate adopt took over, as they were. Drop it once the adoption is checked.'"
    ))
    .execute(&mut *conn)
    .await?;
    for f in found {
        let name = quote_ident(f.name);
        let publications: Vec<String> = sqlx::query_scalar(
            "select p.pubname::text from pg_publication_rel r join pg_publication p on p.oid = r.prpubid
              where r.prrelid = $1::regclass",
        )
        .bind(format!("public.{name}"))
        .fetch_all(&mut *conn)
        .await?;
        for p in publications {
            sqlx::raw_sql(&format!(
                "alter publication {} drop table public.{name}",
                quote_ident(&p)
            ))
            .execute(&mut *conn)
            .await?;
        }
        sqlx::raw_sql(&format!("alter table public.{name} set schema {KEPT}"))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("cannot move public.{} aside", f.name))?;
    }
    Ok(())
}

/// Closes [`KEPT`] to every client: no schema privilege, row level security on (no policy).
async fn seal_kept(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql(&format!(
        "revoke all on schema {KEPT} from public;
         do $$
         declare r record;
         begin
             for r in select c.oid::regclass as t from pg_class c
                      where c.relnamespace = '{KEPT}'::regnamespace and c.relkind in ('r', 'p') loop
                 execute format('alter table %s enable row level security', r.t);
                 execute format('revoke all on %s from public', r.t);
                 if exists (select 1 from pg_roles where rolname = 'anon') then
                     execute format('revoke all on %s from anon, authenticated', r.t);
                 end if;
             end loop;
             if exists (select 1 from pg_roles where rolname = 'anon') then
                 execute 'revoke all on schema {KEPT} from anon, authenticated';
             end if;
         end
         $$;"
    ))
    .execute(&mut *conn)
    .await
    .context("cannot close the kept tables to clients")?;
    Ok(())
}

/// Adds what the new tables have that the project's had not: columns, constraints, policies.
async fn describe(
    conn: &mut PgConnection,
    mut tables: Vec<TableReport>,
    found: &[Found],
) -> Result<Vec<TableReport>> {
    for t in &mut tables {
        let source = found.iter().find(|f| f.name == t.table);
        let target = format!("public.{}", quote_ident(&t.table));
        let columns: Vec<String> = sqlx::query_scalar(
            "select a.attname::text from pg_attribute a
              where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
              order by a.attnum",
        )
        .bind(&target)
        .fetch_all(&mut *conn)
        .await?;
        let read = source.map(stage::read_columns).unwrap_or_default();
        t.columns_added = columns.into_iter().filter(|c| !read.contains(c)).collect();
        let constraints: Vec<String> = sqlx::query_scalar(
            "select conname::text from pg_constraint where conrelid = $1::regclass order by 1",
        )
        .bind(&target)
        .fetch_all(&mut *conn)
        .await?;
        t.constraints_added = constraints
            .into_iter()
            .filter(|c| source.is_none_or(|s| !s.constraints.contains(c)))
            .collect();
        let policies: i64 =
            sqlx::query_scalar("select count(*) from pg_policy where polrelid = $1::regclass")
                .bind(&target)
                .fetch_one(&mut *conn)
                .await?;
        let before = match source {
            None => "none".to_string(),
            Some(s) if s.rls => format!("on ({} policies)", s.policies.len()),
            Some(_) => "off".to_string(),
        };
        t.rls = format!("{before} → on ({policies} policies)");
    }
    Ok(tables)
}

impl Report for AdoptReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = report::table([
            "table",
            "rows",
            "kept",
            "rejected",
            "columns added",
            "renamed",
            "row level security",
        ]);
        for r in &self.tables {
            t.add_row(vec![
                if r.found {
                    r.table.clone()
                } else {
                    format!("{} (new)", r.table)
                },
                r.rows.to_string(),
                r.kept.to_string(),
                r.rejected.to_string(),
                r.columns_added.len().to_string(),
                r.renamed.join(", "),
                r.rls.clone(),
            ]);
        }
        report::write_table(out, &t)?;
        for r in &self.tables {
            let mut lines = Vec::new();
            lines.extend(r.backfilled.iter().map(|b| format!("backfilled {b}")));
            if !r.extra_columns.is_empty() {
                lines.push(format!(
                    "kept only in {}.{}: {}",
                    self.kept_in,
                    r.table,
                    r.extra_columns.join(", ")
                ));
            }
            if !r.columns_added.is_empty() {
                lines.push(format!("columns added: {}", r.columns_added.join(", ")));
            }
            if !r.constraints_added.is_empty() {
                lines.push(format!(
                    "constraints added: {}",
                    r.constraints_added.join(", ")
                ));
            }
            if !lines.is_empty() {
                writeln!(out, "\n{}:", r.table)?;
                for l in lines {
                    writeln!(out, "  {l}")?;
                }
            }
        }
        if !self.rejects.is_empty() {
            writeln!(out, "\nleft out into chatctl.adopt_rejects:")?;
            for r in &self.rejects {
                writeln!(out, "  {}: {} ({})", r.table, r.reason, r.rows)?;
            }
        }
        for n in &self.notes {
            writeln!(out, "\nnote: {n}")?;
        }
        writeln!(out)?;
        if self.dry_run {
            writeln!(
                out,
                "dry run: all of it was done in a transaction and rolled back; nothing was changed"
            )
        } else {
            writeln!(
                out,
                "adopted in one transaction ({} migration(s) applied); the tables as they were are in schema {}: drop it once satisfied",
                self.migrations.len(),
                self.kept_in
            )
        }
    }
}
