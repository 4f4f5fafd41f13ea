//! Databases that already hold tables chatctl's migrations create: a project whose schema
//! was made another way (from the product's outline, with the Supabase dashboard). Today
//! `migrate up` refuses such a database before changing anything and says what it found.

use anyhow::Context as _;
use sqlx::PgConnection;
use sqlx::migrate::Migration;

use crate::error::{Error, Kind, Result};

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

/// Refuses, before changing anything, when tables the pending migrations create already
/// exist: the run would stop half-way at the first of them. Says what it found.
pub async fn check_tables_free(conn: &mut PgConnection, pending: &[&Migration]) -> Result<()> {
    let names = created_tables(pending);
    if names.is_empty() {
        return Ok(());
    }
    let found: Vec<(String, i64)> = sqlx::query_as(
        "select c.relname::text, c.reltuples::bigint
           from pg_class c
          where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f')
            and c.relname = any($1)
          order by array_position($1, c.relname::text)",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await
    .context("cannot list the tables of schema public")?;
    if found.is_empty() {
        return Ok(());
    }
    let mut listed = Vec::new();
    for (name, estimate) in &found {
        let rows: i64 = if *estimate < 100_000 {
            sqlx::query_scalar(&format!(
                "select count(*) from public.{}",
                crate::db::quote_ident(name)
            ))
            .fetch_one(&mut *conn)
            .await
            .unwrap_or(*estimate)
        } else {
            *estimate
        };
        let noun = if rows == 1 { "row" } else { "rows" };
        listed.push(format!("public.{name} ({rows} {noun})"));
    }
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
         schema, say); chatctl cannot take such tables over yet: migrate an empty database, \
         or move these tables out of schema public first",
    )
    .into())
}
