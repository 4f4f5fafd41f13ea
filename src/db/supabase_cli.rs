//! The Supabase CLI's migrations beside chatctl's own: `supabase/migrations/<version>_<name>.sql`
//! files and the history `supabase migration up` keeps in
//! `supabase_migrations.schema_migrations (version, statements, name)`.
//!
//! What is written is what the Supabase CLI writes (its `pkg/migration` and `pkg/parser`,
//! read at supabase/cli 1d1e719): the same history table, created the same way; the version
//! and name from the file name (`^([0-9]+)_(.*)\.sql$`); the statements as its splitter cuts
//! them (split at `;` outside quotes, comments, dollar quotes, parentheses and
//! `BEGIN ATOMIC … END`, trailing `;` and white space trimmed, empty ones dropped). So
//! `supabase migration list` and `chatctl migrate status` agree.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use sqlx::{Connection as _, PgConnection};

use crate::error::{Error, Kind, Result};
use crate::report::{self, Report};

const CREATE_HISTORY: [&str; 5] = [
    "SET lock_timeout = '4s'",
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY)",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text",
];

/// One migration file of the Supabase CLI's directory.
#[derive(Debug, Clone)]
pub struct LocalMigration {
    pub version: String,
    pub name: String,
    pub path: PathBuf,
}

impl LocalMigration {
    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn statements(&self) -> Result<Vec<String>> {
        let sql = std::fs::read_to_string(&self.path)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        Ok(split(&sql))
    }
}

/// The migration files of `dir`, in file name order, as the Supabase CLI lists them: files
/// named `<digits>_<name>.sql`; others are skipped with a warning. A missing directory
/// has none.
pub fn local(dir: &Path) -> Result<Vec<LocalMigration>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::usage(format!(
                "no Supabase migrations directory {}",
                dir.display()
            ))
            .into());
        }
        Err(e) => {
            return Err(anyhow::Error::from(e).context(format!("cannot read {}", dir.display())));
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        files.push(entry.path());
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        match parse_file_name(&file) {
            Some((version, name)) => out.push(LocalMigration {
                version,
                name,
                path,
            }),
            None => tracing::warn!(
                file,
                "skipping a Supabase migration file: its name must be <timestamp>_name.sql"
            ),
        }
    }
    Ok(out)
}

/// `^([0-9]+)_(.*)\.sql$`: the version and the name.
fn parse_file_name(file: &str) -> Option<(String, String)> {
    let stem = file.strip_suffix(".sql")?;
    let (version, name) = stem.split_once('_')?;
    (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()))
        .then(|| (version.to_owned(), name.to_owned()))
}

/// The versions recorded in the database, in order; none when there is no history table.
pub async fn remote(conn: &mut PgConnection) -> Result<Vec<String>> {
    let exists: bool = sqlx::query_scalar(
        "select to_regclass('supabase_migrations.schema_migrations') is not null",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let versions = sqlx::query_scalar(
        "SELECT version FROM supabase_migrations.schema_migrations ORDER BY version",
    )
    .fetch_all(&mut *conn)
    .await
    .context("cannot read supabase_migrations.schema_migrations")?;
    Ok(versions)
}

/// The files to apply: those after the last recorded version. As the Supabase CLI, it
/// refuses when a recorded version has no file, or a file older than the last recorded
/// version was never applied.
pub fn pending<'a>(
    local: &'a [LocalMigration],
    remote: &[String],
) -> Result<Vec<&'a LocalMigration>> {
    let (mut i, mut j) = (0, 0);
    let (mut unapplied, mut missing) = (Vec::new(), Vec::new());
    while i < remote.len() && j < local.len() {
        let (r, l) = (&remote[i], &local[j].version);
        if r == l {
            i += 1;
            j += 1;
        } else if r < l {
            missing.push(r.clone());
            i += 1;
        } else {
            unapplied.push(local[j].file_name());
            j += 1;
        }
    }
    if j == local.len() {
        missing.extend(remote[i..].iter().cloned());
    }
    if !missing.is_empty() {
        return Err(Error::new(
            Kind::Damaged,
            format!(
                "Supabase migration versions recorded in the database have no file: {}",
                missing.join(", ")
            ),
        )
        .with_help("restore the files, or `chatctl migrate repair --status reverted VERSION…` to drop them from the history")
        .into());
    }
    if !unapplied.is_empty() {
        return Err(Error::usage(format!(
            "Supabase migration files older than the last applied one were never applied: {}",
            unapplied.join(", ")
        ))
        .with_help("rename them after the last applied version, or `chatctl migrate repair --status applied VERSION…` if their changes are in the database already")
        .into());
    }
    Ok(local[remote.len()..].iter().collect())
}

async fn create_history(conn: &mut PgConnection) -> Result<()> {
    for sql in CREATE_HISTORY {
        sqlx::raw_sql(sql)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("cannot create the Supabase migration history ({sql})"))?;
    }
    sqlx::raw_sql("RESET lock_timeout")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One applied Supabase migration.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub version: String,
    pub name: String,
    pub file: String,
    pub statements: usize,
    pub elapsed_ms: u64,
}

/// Applies the pending files of `dir` (or, with `dry_run`, lists them), each in one
/// transaction with its history row, as `supabase migration up` does. Another run at once
/// waits on the history table and then finds the file applied.
pub async fn up(conn: &mut PgConnection, dir: &Path, dry_run: bool) -> Result<Vec<Applied>> {
    let local = local(dir)?;
    let remote_versions = remote(conn).await?;
    let todo = pending(&local, &remote_versions)?;
    let mut done = Vec::new();
    if !todo.is_empty() && !dry_run {
        create_history(conn).await?;
    }
    for m in todo {
        let statements = m.statements()?;
        let started = std::time::Instant::now();
        if !dry_run && !apply(conn, m, &statements).await? {
            continue;
        }
        done.push(Applied {
            version: m.version.clone(),
            name: m.name.clone(),
            file: m.file_name(),
            statements: statements.len(),
            elapsed_ms: if dry_run {
                0
            } else {
                started.elapsed().as_millis() as u64
            },
        });
    }
    Ok(done)
}

/// Runs one file's statements and records it, in one transaction; `false`: another run
/// had applied it meanwhile.
async fn apply(conn: &mut PgConnection, m: &LocalMigration, statements: &[String]) -> Result<bool> {
    tracing::info!(file = %m.file_name(), "applying a Supabase migration");
    // A statement may have changed the session's settings (search_path, say).
    sqlx::raw_sql("RESET ALL").execute(&mut *conn).await?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql("LOCK TABLE supabase_migrations.schema_migrations IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let applied: bool = sqlx::query_scalar(
        "select exists (select 1 from supabase_migrations.schema_migrations where version = $1)",
    )
    .bind(&m.version)
    .fetch_one(&mut *tx)
    .await?;
    if applied {
        return Ok(false);
    }
    for (n, statement) in statements.iter().enumerate() {
        if let Err(e) = sqlx::raw_sql(statement).execute(&mut *tx).await {
            return Err(Error::new(
                Kind::Failed,
                format!(
                    "Supabase migration {} failed at statement {} of {}: {e}; rolled back, it is not recorded",
                    m.file_name(),
                    n + 1,
                    statements.len()
                ),
            )
            .with_help(format!(
                "the statement: {}",
                statement.lines().next().unwrap_or_default()
            ))
            .into());
        }
    }
    sqlx::query(
        "INSERT INTO supabase_migrations.schema_migrations(version, name, statements) VALUES($1, $2, $3)",
    )
    .bind(&m.version)
    .bind(&m.name)
    .bind(statements)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// `supabase migration repair`: mark versions applied (recorded with the file's name and
/// statements, as the CLI records them) or reverted (dropped from the history). Nothing
/// runs but the history change.
pub async fn repair(
    conn: &mut PgConnection,
    dir: &Path,
    versions: &[String],
    applied: bool,
) -> Result<RepairReport> {
    for v in versions {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::usage(format!("invalid version number `{v}`")).into());
        }
    }
    let mut rows = Vec::new();
    if applied {
        let local = local(dir)?;
        for v in versions {
            let m = local.iter().find(|m| &m.version == v).ok_or_else(|| {
                Error::usage(format!(
                    "no Supabase migration file {v}_*.sql in {}",
                    dir.display()
                ))
            })?;
            rows.push((m.clone(), m.statements()?));
        }
    }
    create_history(conn).await?;
    let mut tx = conn.begin().await?;
    if applied {
        for (m, statements) in &rows {
            sqlx::query(
                "INSERT INTO supabase_migrations.schema_migrations(version, name, statements) VALUES($1, $2, $3) \
                 ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, statements = EXCLUDED.statements",
            )
            .bind(&m.version)
            .bind(&m.name)
            .bind(statements)
            .execute(&mut *tx)
            .await?;
        }
    } else {
        sqlx::query("DELETE FROM supabase_migrations.schema_migrations WHERE version = ANY($1)")
            .bind(versions)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(RepairReport {
        versions: versions.to_vec(),
        status: if applied { "applied" } else { "reverted" },
    })
}

/// What `migrate repair` changed.
#[derive(Debug, Serialize)]
pub struct RepairReport {
    pub versions: Vec<String>,
    pub status: &'static str,
}

impl Report for RepairReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "repaired the Supabase migration history: {} => {}",
            self.versions.join(", "),
            self.status
        )
    }
}

/// A Supabase migration as `migrate status` lists it (`supabase migration list`'s
/// LOCAL and REMOTE columns).
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub version: String,
    pub name: String,
    pub local: bool,
    pub remote: bool,
}

/// The Supabase CLI's migrations, local files and recorded versions side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub migrations: Vec<Listed>,
    pub pending: usize,
}

pub async fn list(conn: &mut PgConnection, dir: Option<&Path>) -> Result<Option<Listing>> {
    let remote_versions = remote(conn).await?;
    let local = match dir {
        Some(d) => local(d)?,
        None if remote_versions.is_empty() => return Ok(None),
        None => Vec::new(),
    };
    let mut migrations: Vec<Listed> = local
        .iter()
        .map(|m| Listed {
            version: m.version.clone(),
            name: m.name.clone(),
            local: true,
            remote: remote_versions.contains(&m.version),
        })
        .collect();
    for r in &remote_versions {
        if !migrations.iter().any(|m| &m.version == r) {
            migrations.push(Listed {
                version: r.clone(),
                name: String::new(),
                local: false,
                remote: true,
            });
        }
    }
    migrations.sort_by(|a, b| a.version.cmp(&b.version));
    let pending = if dir.is_some() {
        migrations.iter().filter(|m| m.local && !m.remote).count()
    } else {
        0
    };
    Ok(Some(Listing {
        migrations,
        pending,
    }))
}

impl Listing {
    pub fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "\nSupabase CLI migrations (supabase_migrations.schema_migrations):"
        )?;
        let mut t = report::table(["LOCAL", "REMOTE", "NAME"]);
        for m in &self.migrations {
            t.add_row(vec![
                if m.local {
                    m.version.clone()
                } else {
                    String::new()
                },
                if m.remote {
                    m.version.clone()
                } else {
                    String::new()
                },
                m.name.clone(),
            ]);
        }
        writeln!(out, "{t}")
    }
}

/// The Supabase CLI's statement splitter (`pkg/parser`), state by state, so the statements
/// recorded are the ones it records.
pub fn split(sql: &str) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut state = State::Ready;
    let mut emit = |token: &str| {
        let t = token.trim_end_matches(';').trim();
        if !t.is_empty() {
            out.push(t.to_owned());
        }
    };
    let mut i = 0;
    while i < sql.len() {
        let r = sql[i..].chars().next().expect("in bounds");
        let end = i + r.len_utf8();
        let data = &bytes[start..end];
        match state.next(r, data) {
            Some(s) => state = s,
            None => {
                emit(&sql[start..end]);
                start = end;
                state = State::Ready;
            }
        }
        i = end;
    }
    if start < sql.len() {
        emit(&sql[start..]);
    }
    out
}

#[derive(Debug, Clone)]
enum State {
    Ready,
    Comment,
    Block {
        depth: u32,
    },
    Quote {
        delimiter: char,
        escape: bool,
    },
    Dollar {
        delimiter: Vec<u8>,
    },
    Tag {
        offset: usize,
    },
    Escape,
    Atomic {
        prev: Box<State>,
        delimiter: Vec<u8>,
    },
}

/// The last `n` bytes of `data` (all of it when shorter).
fn window(data: &[u8], n: usize) -> &[u8] {
    &data[data.len().saturating_sub(n)..]
}

impl State {
    /// The next state after rune `r`; `None`: the statement ends here. `data` is the
    /// statement so far, `r` included.
    fn next(self, r: char, data: &[u8]) -> Option<State> {
        match self {
            State::Ready => match r {
                '$' => Some(State::Tag {
                    offset: data.len() - r.len_utf8(),
                }),
                '\'' | '"' => Some(State::Quote {
                    delimiter: r,
                    escape: false,
                }),
                '-' => Some(State::Comment),
                '/' => Some(State::Block { depth: 0 }),
                '\\' => Some(State::Escape),
                ';' => None,
                '(' => Some(State::Atomic {
                    prev: Box::new(State::Ready),
                    delimiter: b")".to_vec(),
                }),
                'c' | 'C' if is_begin_atomic(data) => Some(State::Atomic {
                    prev: Box::new(State::Ready),
                    delimiter: b"END".to_vec(),
                }),
                _ => Some(State::Ready),
            },
            State::Comment => {
                if r == '-' {
                    Some(State::Dollar {
                        delimiter: b"\n".to_vec(),
                    })
                } else {
                    State::Ready.next(r, data)
                }
            }
            State::Block { depth } => {
                let w = window(data, 2);
                if w == b"/*" {
                    return Some(State::Block { depth: depth + 1 });
                }
                if depth == 0 {
                    return State::Ready.next(r, data);
                }
                if w == b"*/" {
                    if depth - 1 == 0 {
                        return Some(State::Ready);
                    }
                    return Some(State::Block { depth: depth - 1 });
                }
                Some(State::Block { depth })
            }
            State::Quote { delimiter, escape } => {
                if escape {
                    if r == delimiter {
                        return Some(State::Quote {
                            delimiter,
                            escape: false,
                        });
                    }
                    return State::Ready.next(r, data);
                }
                Some(State::Quote {
                    delimiter,
                    escape: r == delimiter,
                })
            }
            State::Dollar { delimiter } => {
                if window(data, delimiter.len()) == delimiter.as_slice() {
                    Some(State::Ready)
                } else {
                    Some(State::Dollar { delimiter })
                }
            }
            State::Tag { offset } => {
                if r == '$' {
                    return Some(State::Dollar {
                        delimiter: data[offset..].to_vec(),
                    });
                }
                if r.is_alphanumeric() || r == '_' {
                    return Some(State::Tag { offset });
                }
                State::Ready.next(r, data)
            }
            State::Escape => Some(State::Ready),
            State::Atomic { prev, delimiter } => {
                let before = (*prev).clone();
                let prev = match prev.next(r, data) {
                    Some(p) => p,
                    None => before,
                };
                if matches!(prev, State::Ready)
                    && window(data, delimiter.len()).eq_ignore_ascii_case(&delimiter)
                {
                    return Some(State::Ready);
                }
                Some(State::Atomic {
                    prev: Box::new(prev),
                    delimiter,
                })
            }
        }
    }
}

/// Whether `data` ends in `BEGIN <space> ATOMIC` as whole words.
fn is_begin_atomic(data: &[u8]) -> bool {
    const ATOMIC: &[u8] = b"ATOMIC";
    if data.len() < ATOMIC.len() || !window(data, ATOMIC.len()).eq_ignore_ascii_case(ATOMIC) {
        return false;
    }
    let offset = data.len() - ATOMIC.len();
    if offset > 0 && ends_in_identifier(&data[..offset]) {
        return false;
    }
    let prefix = trim_end_space(&data[..offset]);
    const BEGIN: &[u8] = b"BEGIN";
    if prefix.len() < BEGIN.len() || !window(prefix, BEGIN.len()).eq_ignore_ascii_case(BEGIN) {
        return false;
    }
    let offset = prefix.len() - BEGIN.len();
    offset == 0 || !ends_in_identifier(&prefix[..offset])
}

fn ends_in_identifier(data: &[u8]) -> bool {
    String::from_utf8_lossy(data)
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
}

fn trim_end_space(data: &[u8]) -> &[u8] {
    let text = String::from_utf8_lossy(data);
    let trimmed = text.trim_end();
    &data[..trimmed.len().min(data.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_cut_at_semicolons_outside_quotes_comments_and_bodies() {
        let sql = "create table t (a int, b text default 'x;y');\n\
                   -- a comment; with a semicolon\n\
                   insert into t values (1, 'it''s; fine');\n\
                   /* block; /* nested; */ still; */ select 1;\n\
                   create function f() returns int language plpgsql as $body$ begin return 1; end $body$;\n\
                   create function g() returns int language sql begin atomic select 1; select 2; end;\n\
                   select $$a;b$$;;\n  ;\n\
                   select \"odd;name\" from t";
        let got = split(sql);
        assert_eq!(
            got,
            [
                "create table t (a int, b text default 'x;y')",
                "-- a comment; with a semicolon\ninsert into t values (1, 'it''s; fine')",
                "/* block; /* nested; */ still; */ select 1",
                "create function f() returns int language plpgsql as $body$ begin return 1; end $body$",
                "create function g() returns int language sql begin atomic select 1; select 2; end",
                "select $$a;b$$",
                "select \"odd;name\" from t",
            ]
        );
    }

    #[test]
    fn file_names_give_version_and_name_as_the_cli_reads_them() {
        assert_eq!(
            parse_file_name("20240101120000_add_profiles.sql"),
            Some(("20240101120000".into(), "add_profiles".into()))
        );
        assert_eq!(
            parse_file_name("1_a_b.sql"),
            Some(("1".into(), "a_b".into()))
        );
        assert_eq!(parse_file_name("notes.sql"), None);
        assert_eq!(parse_file_name("2024_x.txt"), None);
        assert_eq!(parse_file_name("_x.sql"), None);
    }

    fn m(v: &str) -> LocalMigration {
        LocalMigration {
            version: v.into(),
            name: "n".into(),
            path: PathBuf::from(format!("{v}_n.sql")),
        }
    }

    #[test]
    fn pending_is_what_follows_the_last_recorded_version() {
        let local = [m("1"), m("2"), m("3")];
        let p = pending(&local, &["1".into()]).unwrap();
        assert_eq!(
            p.iter().map(|m| m.version.as_str()).collect::<Vec<_>>(),
            ["2", "3"]
        );
        assert!(
            pending(&local, &["1".into(), "3".into()]).is_err(),
            "2 skipped"
        );
        assert!(pending(&local, &["4".into()]).is_err(), "4 has no file");
    }
}
