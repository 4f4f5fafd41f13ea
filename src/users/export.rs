//! `users export`: people out in every format `users import` reads, streamed, in a stable
//! order (by address), so that export → import into an empty database → export gives the
//! same bytes.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::TryStreamExt as _;
use serde_json::{Map, Value, json};
use sqlx::PgConnection;

use super::input::Format;
use crate::error::{Error, Result};

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: Format,
    pub workspace: Option<String>,
    /// Include the bcrypt hashes (a file to keep as carefully as the database).
    pub password_hashes: bool,
    pub include_deactivated: bool,
}

#[derive(sqlx::FromRow)]
struct Exported {
    email: Option<String>,
    display_name: String,
    username: String,
    external_source: Option<String>,
    external_id: Option<String>,
    password_hash: Option<String>,
    created_at: DateTime<Utc>,
    email_confirmed_at: Option<DateTime<Utc>>,
    deactivated_at: Option<DateTime<Utc>>,
    avatar_url: Option<String>,
    role: Option<String>,
}

const COLUMNS: &[&str] = &[
    "email",
    "name",
    "username",
    "external_source",
    "external_id",
    "password_hash",
    "created_at",
    "email_confirmed_at",
    "deactivated_at",
    "avatar_url",
    "role",
];

fn date(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

impl Exported {
    fn values(&self) -> [Option<String>; 11] {
        [
            self.email.clone(),
            Some(self.display_name.clone()),
            Some(self.username.clone()),
            self.external_source.clone(),
            self.external_id.clone(),
            self.password_hash.clone(),
            date(Some(self.created_at)),
            date(self.email_confirmed_at),
            date(self.deactivated_at),
            self.avatar_url.clone(),
            self.role.clone(),
        ]
    }

    fn doc(&self, mongo: bool) -> Value {
        let mut m = Map::new();
        if mongo && let Some(id) = &self.external_id {
            let oid = id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit());
            m.insert(
                "_id".into(),
                if oid {
                    json!({ "$oid": id })
                } else {
                    json!(id)
                },
            );
        }
        for (name, value) in COLUMNS.iter().zip(self.values()) {
            let Some(v) = value else { continue };
            if mongo && *name == "external_id" {
                continue;
            }
            let v = match *name {
                "created_at" | "email_confirmed_at" | "deactivated_at" if mongo => {
                    json!({ "$date": v })
                }
                _ => Value::String(v),
            };
            m.insert((*name).into(), v);
        }
        Value::Object(m)
    }
}

/// Writes the people to `out`; returns how many.
pub async fn export(
    conn: &mut PgConnection,
    opts: &ExportOptions,
    out: &mut dyn Write,
) -> Result<u64> {
    let ws: Option<uuid::Uuid> = match &opts.workspace {
        Some(slug) => Some(
            sqlx::query_scalar("select id from public.workspaces where slug = $1")
                .bind(slug)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| Error::usage(format!("no workspace `{slug}`")))?,
        ),
        None => None,
    };
    let mut rows = sqlx::query_as::<_, Exported>(
        "select u.email, u.name as display_name, u.username, u.external_source, u.external_id,
                case when $2 then nullif(a.encrypted_password, '') end as password_hash,
                u.created_at, a.email_confirmed_at, u.deactivated_at, u.avatar_url, w.role
           from public.users u
           join auth.users a on a.id = u.id
           left join public.workspace_members w on w.workspace_id = $1 and w.user_id = u.id
          where not u.is_bot and ($1::uuid is null or w.user_id is not null)
            and ($3 or u.deactivated_at is null)
          order by u.email, u.username",
    )
    .bind(ws)
    .bind(opts.password_hashes)
    .bind(opts.include_deactivated)
    .fetch(&mut *conn);
    let mut n = 0u64;
    if matches!(opts.format, Format::Csv | Format::Auto) {
        out.write_all(&csv_line(COLUMNS.iter().map(|c| Some(c.to_string())))?)?;
    }
    if opts.format == Format::Json {
        out.write_all(b"[")?;
    }
    while let Some(row) = rows.try_next().await? {
        match opts.format {
            Format::Csv | Format::Auto => {
                out.write_all(&csv_line(row.values())?)?;
            }
            Format::Json => {
                out.write_all(if n == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut *out, &row.doc(false))?;
            }
            Format::Jsonl | Format::Mongo => {
                serde_json::to_writer(&mut *out, &row.doc(opts.format == Format::Mongo))?;
                out.write_all(b"\n")?;
            }
        }
        n += 1;
    }
    if opts.format == Format::Json {
        out.write_all(b"\n]\n")?;
    }
    out.flush()?;
    Ok(n)
}

/// One CSV line (quoted where needed).
fn csv_line(values: impl IntoIterator<Item = Option<String>>) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(values.into_iter().map(|v| v.unwrap_or_default()))?;
    Ok(w.into_inner().map_err(|e| e.into_error())?)
}
