//! Bulk loading the way pg_restore does it: load rows first, then build indexes and check
//! foreign keys once over the whole table, instead of row by row.
//!
//! [`defer`] drops a table's secondary indexes and foreign keys inside the caller's
//! transaction and remembers their definitions (read from the catalog, so they can never drift
//! from the migrations); [`Deferred::restore`] recreates them, which also validates every row.
//! If anything fails the transaction rolls back and the definitions are back as they were.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Result;

/// Indexes and foreign keys dropped for a load, to be recreated after it.
#[derive(Debug, Default)]
pub struct Deferred {
    /// Primary keys and unique constraints (table, name, definition), rebuilt first.
    keys: Vec<(String, String, String)>,
    indexes: Vec<(String, String)>,
    foreign_keys: Vec<(String, String, String)>,
    triggers: Vec<Trigger>,
}

/// A trigger set aside: recreated from its definition, then enabled as it was.
#[derive(Debug)]
struct Trigger {
    table: String,
    name: String,
    definition: String,
    /// `pg_trigger.tgenabled`: `O` (origin, the default), `D`, `R` or `A`.
    enabled: String,
}

/// [`defer`], and the primary keys and unique constraints too, as `pg_restore` loads a
/// table before it adds them: for loading rows already known to be whole (a backup whose
/// checksums hold), into tables that hold nothing else. Rebuilding them checks every row.
/// Every foreign key pointing at a deferred key must be on one of `tables` (it is dropped
/// first, and added back last).
///
/// Also set aside: the triggers with transition tables (`REFERENCING NEW TABLE`). Even under
/// `session_replication_role = replica`, where they do not fire, PostgreSQL collects every
/// loaded row for them, which costs a third of a big load (pg_restore creates triggers after
/// the data).
pub async fn defer_with_keys(conn: &mut PgConnection, tables: &[&str]) -> Result<Deferred> {
    let mut d = defer(conn, tables).await?;
    for table in tables {
        let triggers: Vec<(String, String, String)> = sqlx::query_as(
            "select tgname::text, pg_get_triggerdef(oid), tgenabled::text from pg_trigger
              where tgrelid = $1::regclass and not tgisinternal
                and (tgnewtable is not null or tgoldtable is not null)
              order by tgname",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .with_context(|| format!("cannot read the triggers of {table}"))?;
        for (name, def, enabled) in triggers {
            sqlx::raw_sql(&format!("drop trigger \"{name}\" on {table}"))
                .execute(&mut *conn)
                .await
                .with_context(|| format!("cannot set the trigger {name} of {table} aside"))?;
            d.triggers.push(Trigger {
                table: table.to_string(),
                name,
                definition: def,
                enabled,
            });
        }
        let keys: Vec<(String, String)> = sqlx::query_as(
            "select conname::text, pg_get_constraintdef(oid) from pg_constraint
              where conrelid = $1::regclass and contype in ('p', 'u') order by contype, conname",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .with_context(|| format!("cannot read the keys of {table}"))?;
        for (name, def) in keys {
            sqlx::raw_sql(&format!("alter table {table} drop constraint \"{name}\""))
                .execute(&mut *conn)
                .await
                .with_context(|| format!("cannot set the key {name} of {table} aside"))?;
            d.keys.push((table.to_string(), name, def));
        }
    }
    Ok(d)
}

/// Drops the secondary indexes and foreign keys of `tables` (qualified names). Indexes that
/// back a primary key or unique constraint stay: they keep loading honest.
pub async fn defer(conn: &mut PgConnection, tables: &[&str]) -> Result<Deferred> {
    let mut d = Deferred::default();
    for table in tables {
        let fks: Vec<(String, String)> = sqlx::query_as(
            "select conname::text, pg_get_constraintdef(oid) from pg_constraint
              where conrelid = $1::regclass and contype = 'f' order by conname",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .with_context(|| format!("cannot read the foreign keys of {table}"))?;
        for (name, def) in fks {
            sqlx::raw_sql(&format!("alter table {table} drop constraint \"{name}\""))
                .execute(&mut *conn)
                .await?;
            d.foreign_keys.push((table.to_string(), name, def));
        }
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "select i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) from pg_index i
              where i.indrelid = $1::regclass
                and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid)
              order by 1",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .with_context(|| format!("cannot read the indexes of {table}"))?;
        for (name, def) in indexes {
            sqlx::raw_sql(&format!("drop index {name}"))
                .execute(&mut *conn)
                .await?;
            d.indexes.push((name, def));
        }
    }
    Ok(d)
}

/// One statement that puts something back, and what to say when it fails.
pub struct Step {
    pub sql: String,
    pub failure: String,
}

impl Deferred {
    /// Recreates the keys and indexes, then the foreign keys (each checked against every
    /// row), then the triggers.
    pub async fn restore(self, conn: &mut PgConnection) -> Result<()> {
        for phase in self.phases() {
            for step in phase {
                step.run(&mut *conn).await?;
            }
        }
        Ok(())
    }

    /// The statements that put everything back, in phases: those of one phase are
    /// independent of each other (several connections may run them at once), and each
    /// phase needs the one before (a foreign key needs the key it points at).
    pub fn phases(self) -> Vec<Vec<Step>> {
        let mut built: Vec<Step> = self
            .keys
            .into_iter()
            .map(|(table, name, def)| Step {
                sql: format!("alter table {table} add constraint \"{name}\" {def}"),
                failure: format!("key {name} of {table} does not hold for the loaded rows"),
            })
            .collect();
        built.extend(self.indexes.into_iter().map(|(name, def)| Step {
            sql: def,
            failure: format!("cannot rebuild index {name}"),
        }));
        let checked = self
            .foreign_keys
            .into_iter()
            .map(|(table, name, def)| Step {
                sql: format!("alter table {table} add constraint \"{name}\" {def}"),
                failure: format!("foreign key {name} of {table} does not hold for the loaded rows"),
            })
            .collect();
        let triggers = self
            .triggers
            .into_iter()
            .map(|t| {
                let state = match t.enabled.as_str() {
                    "D" => "disable trigger",
                    "R" => "enable replica trigger",
                    "A" => "enable always trigger",
                    _ => "enable trigger",
                };
                Step {
                    sql: format!(
                        "{}; alter table {} {state} \"{}\"",
                        t.definition, t.table, t.name
                    ),
                    failure: format!("cannot recreate the trigger {} of {}", t.name, t.table),
                }
            })
            .collect();
        vec![built, checked, triggers]
    }
}

impl Step {
    pub async fn run(&self, conn: &mut PgConnection) -> Result<()> {
        sqlx::raw_sql(&self.sql)
            .execute(conn)
            .await
            .with_context(|| self.failure.clone())?;
        Ok(())
    }
}

/// Escapes a value for COPY's text format.
pub fn esc(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A timestamp in COPY's text format (UTC).
pub fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// Streams COPY data in chunks.
pub struct CopyStream<'c> {
    copy: sqlx::postgres::PgCopyIn<&'c mut sqlx::PgConnection>,
    pub buf: String,
    pub rows: u64,
}

impl<'c> CopyStream<'c> {
    pub async fn open(conn: &'c mut sqlx::PgConnection, statement: &str) -> Result<CopyStream<'c>> {
        let copy = conn
            .copy_in_raw(statement)
            .await
            .with_context(|| format!("cannot start `{statement}`"))?;
        Ok(CopyStream {
            copy,
            buf: String::with_capacity(1 << 20),
            rows: 0,
        })
    }

    pub async fn row_done(&mut self) -> Result<()> {
        self.buf.push('\n');
        self.rows += 1;
        if self.buf.len() >= 1 << 20 {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.copy.send(self.buf.as_bytes()).await?;
            self.buf.clear();
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<u64> {
        self.flush().await?;
        self.copy.finish().await?;
        Ok(self.rows)
    }
}

/// Counts `user_activity` (a profile's statistics) from scratch, set-based: after a bulk
/// load that set its triggers aside.
pub async fn recount_activity(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql("select chat_private.recount_activity()")
        .execute(conn)
        .await
        .context("cannot count what each person did in each channel")?;
    Ok(())
}
