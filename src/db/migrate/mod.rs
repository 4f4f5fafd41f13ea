//! The migration runner: apply, revert, inspect and verify the schema migrations.
//!
//! Migrations are sqlx's reversible pairs (`NNNN_name.up.sql` + `.down.sql`), embedded in the
//! binary by [`MIGRATOR`] or read from a directory at run time (`--source`). The history is
//! kept in `chatctl.schema_migrations` (sqlx's `_sqlx_migrations` columns, in chatctl's own
//! schema so PostgREST never exposes it).
//!
//! Guarantees: one run at a time per database (a session advisory lock, waited for with a
//! bound, whose holder is named when the wait runs out); each migration in its own
//! transaction together with its history row, so a failure leaves the previous version; a
//! failure names the file and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnection, PgDatabaseError, PgErrorPosition};
use sqlx::{Connection as _, Row as _};

use crate::error::{Error, Result};
use crate::report::{self, Report};

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

mod lock;
pub mod stake;
pub(crate) use lock::{acquire_lock, release_lock};

/// Where migrations come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The migrations built into this binary.
    Embedded,
    /// A directory read at run time (for developing migrations; `migrate --source`).
    Dir(PathBuf),
}

/// A loaded set of migrations: each version's up and (optional) down script.
#[derive(Debug, Clone)]
pub struct Migrations {
    ups: BTreeMap<i64, Migration>,
    downs: BTreeMap<i64, Migration>,
}

impl Migrations {
    /// Loads migrations from `source`.
    pub async fn load(source: &Source) -> Result<Migrations> {
        let all: Vec<Migration> = match source {
            Source::Embedded => MIGRATOR.iter().cloned().collect(),
            Source::Dir(dir) => {
                if !dir.is_dir() {
                    return Err(Error::usage(format!(
                        "migration directory {} does not exist",
                        dir.display()
                    ))
                    .with_help("pass --source DIR with the NNNN_name.up.sql files")
                    .into());
                }
                Migrator::new(dir.as_path())
                    .await
                    .with_context(|| format!("cannot read migrations from {}", dir.display()))?
                    .iter()
                    .cloned()
                    .collect()
            }
        };
        let mut ups = BTreeMap::new();
        let mut downs = BTreeMap::new();
        for m in all {
            match m.migration_type {
                MigrationType::ReversibleDown => {
                    downs.insert(m.version, m);
                }
                _ => {
                    ups.insert(m.version, m);
                }
            }
        }
        Ok(Migrations { ups, downs })
    }

    /// The newest version known.
    pub fn latest(&self) -> Option<i64> {
        self.ups.keys().next_back().copied()
    }
}

/// The file name a migration was read from.
pub fn file_name(m: &Migration) -> String {
    let kind = match m.migration_type {
        MigrationType::ReversibleDown => ".down",
        MigrationType::ReversibleUp => ".up",
        MigrationType::Simple => "",
    };
    format!(
        "{:04}_{}{kind}.sql",
        m.version,
        m.description.replace(' ', "_")
    )
}

/// Connects for a migration run: one dedicated session (advisory locks are per session),
/// named so that another run waiting for the lock can say who holds it.
pub async fn connect(url: &str, connect_timeout: Duration) -> Result<PgConnection> {
    if let Some(reason) = crate::urls::transaction_pooler_reason(url) {
        return Err(Error::usage(format!(
            "refusing to migrate through a transaction pooler: {reason}; advisory locks and \
             multi-statement migrations need a direct session"
        ))
        .with_help(
            "use the direct connection (Supabase: db.<project-ref>.supabase.co:5432) or the \
             session-mode pooler on port 5432",
        )
        .into());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = format!(
        "chatctl migrate (pid {} on {})",
        std::process::id(),
        host.trim()
    );
    let opts = crate::db::connect_options(url, &name)?;
    crate::db::connect_with(connect_timeout, url, PgConnection::connect_with(&opts)).await
}

/// Options of [`up`].
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Apply up to and including this version (default: all).
    pub target: Option<i64>,
    /// Print what would run; change nothing.
    pub dry_run: bool,
    /// How long to wait for another run's lock.
    pub lock_timeout: Duration,
}

/// How far [`down`] reverts.
#[derive(Debug, Clone, Copy)]
pub enum DownTarget {
    /// Revert every applied migration newer than this version (0: all).
    Version(i64),
    /// Revert the newest N applied migrations.
    Steps(u32),
}

/// Options of [`down`].
#[derive(Debug, Clone)]
pub struct DownOptions {
    pub target: DownTarget,
    pub dry_run: bool,
    pub lock_timeout: Duration,
}

/// One migration applied or reverted (or that would be, under `--dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub version: i64,
    pub file: String,
    pub elapsed_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

/// The outcome of [`up`] or [`down`].
#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    pub direction: &'static str,
    pub dry_run: bool,
    pub steps: Vec<Step>,
    /// The database's version afterwards (under `--dry-run`: now).
    pub version: Option<i64>,
    pub waited_for_lock_ms: u64,
    /// With `--supabase-dir`: the Supabase CLI's migrations applied after chatctl's own
    /// (under `--dry-run`: those that would be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supabase: Option<Vec<crate::db::supabase_cli::Applied>>,
}

impl Report for MigrateReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.human_own(out)?;
        let Some(supabase) = &self.supabase else {
            return Ok(());
        };
        if supabase.is_empty() {
            return writeln!(out, "Supabase CLI migrations: none to apply");
        }
        for a in supabase {
            let file = &a.file;
            if self.dry_run {
                writeln!(
                    out,
                    "-- would apply Supabase CLI migration {file} ({} statements)",
                    a.statements
                )?;
            } else {
                writeln!(
                    out,
                    "applied Supabase CLI migration {file} ({} statements, {} ms)",
                    a.statements, a.elapsed_ms
                )?;
            }
        }
        Ok(())
    }
}

impl MigrateReport {
    /// chatctl's own migrations.
    fn human_own(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.dry_run {
            if self.steps.is_empty() {
                return writeln!(
                    out,
                    "-- nothing to {}",
                    if self.direction == "up" {
                        "apply"
                    } else {
                        "revert"
                    }
                );
            }
            for s in &self.steps {
                writeln!(out, "-- {}", s.file)?;
                writeln!(out, "{}", s.sql.as_deref().unwrap_or("").trim_end())?;
                writeln!(out)?;
            }
            return Ok(());
        }
        if self.steps.is_empty() {
            return writeln!(out, "up to date at version {}", fmt_version(self.version));
        }
        let verb = if self.direction == "up" {
            "applied"
        } else {
            "reverted"
        };
        for s in &self.steps {
            writeln!(out, "{verb} {} ({} ms)", s.file, s.elapsed_ms.unwrap_or(0))?;
        }
        writeln!(out, "now at version {}", fmt_version(self.version))
    }
}

fn fmt_version(v: Option<i64>) -> String {
    v.map_or_else(|| "0 (empty)".to_owned(), |v| v.to_string())
}

/// A row of the history table.
#[derive(Debug, Clone)]
struct Applied {
    version: i64,
    description: String,
    installed_on: DateTime<Utc>,
    success: bool,
    checksum: Vec<u8>,
}

async fn ensure_history(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql(
        "create schema if not exists chatctl;
         create table if not exists chatctl.schema_migrations (
             version bigint primary key,
             description text not null,
             installed_on timestamptz not null default now(),
             success boolean not null,
             checksum bytea not null,
             execution_time bigint not null
         );",
    )
    .execute(conn)
    .await
    .context("cannot create the migration history table chatctl.schema_migrations")?;
    Ok(())
}

async fn applied(conn: &mut PgConnection) -> Result<BTreeMap<i64, Applied>> {
    let exists: bool =
        sqlx::query_scalar("select to_regclass('chatctl.schema_migrations') is not null")
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        return Ok(BTreeMap::new());
    }
    let rows = sqlx::query(
        "select version, description, installed_on, success, checksum
           from chatctl.schema_migrations order by version",
    )
    .fetch_all(&mut *conn)
    .await
    .context("cannot read chatctl.schema_migrations")?;
    rows.into_iter()
        .map(|r| {
            Ok((
                r.try_get("version")?,
                Applied {
                    version: r.try_get("version")?,
                    description: r.try_get("description")?,
                    installed_on: r.try_get("installed_on")?,
                    success: r.try_get("success")?,
                    checksum: r.try_get("checksum")?,
                },
            ))
        })
        .collect()
}

/// Refuses to go on when the history disagrees with the source (edited, unknown or failed).
fn check_history(migrations: &Migrations, applied: &BTreeMap<i64, Applied>) -> Result<()> {
    let drift = drift(migrations, applied);
    if let Some(first) = drift.first() {
        return Err(Error::failed(format!(
            "the database's migration history does not match the migrations: {}{}",
            first.problem,
            if drift.len() > 1 { format!(" (and {} more)", drift.len() - 1) } else { String::new() }
        ))
        .with_help("run `chatctl migrate verify` for the full list; never edit an applied migration, add a new one")
        .into());
    }
    Ok(())
}

/// Applies pending migrations in order.
pub async fn up(
    conn: &mut PgConnection,
    migrations: &Migrations,
    opts: &UpOptions,
) -> Result<MigrateReport> {
    if let Some(t) = opts.target
        && !migrations.ups.contains_key(&t)
    {
        return Err(
            Error::usage(format!("there is no migration with version {t}"))
                .with_help("see `chatctl migrate status` for the versions")
                .into(),
        );
    }
    run_locked(conn, migrations, Plan::Up(opts)).await
}

async fn up_locked(
    conn: &mut PgConnection,
    migrations: &Migrations,
    opts: &UpOptions,
) -> Result<MigrateReport> {
    let applied = applied(conn).await?;
    check_history(migrations, &applied)?;
    let pending: Vec<&Migration> = migrations
        .ups
        .values()
        .filter(|m| !applied.contains_key(&m.version))
        .filter(|m| opts.target.is_none_or(|t| m.version <= t))
        .collect();
    // Before anything is written: a table a pending migration would create is not
    // someone else's already (a project built from the product's outline, say).
    crate::db::adopt::check_tables_free(conn, &pending).await?;
    if !opts.dry_run {
        ensure_history(conn).await?;
    }
    let mut version = applied.keys().next_back().copied();
    let mut steps = Vec::new();
    for m in pending {
        if opts.dry_run {
            steps.push(Step {
                version: m.version,
                file: file_name(m),
                elapsed_ms: None,
                sql: Some(m.sql.to_string()),
            });
            continue;
        }
        let start = Instant::now();
        tracing::info!(file = %file_name(m), "applying migration");
        run_in_tx(conn, m, Record::Applied, version).await?;
        version = Some(m.version);
        steps.push(Step {
            version: m.version,
            file: file_name(m),
            elapsed_ms: Some(start.elapsed().as_millis() as u64),
            sql: None,
        });
    }
    Ok(MigrateReport {
        direction: "up",
        dry_run: opts.dry_run,
        steps,
        version,
        waited_for_lock_ms: 0,
        supabase: None,
    })
}

/// Applies every pending migration inside the caller's transaction, each with its history
/// row, and returns their file names (`migrate adopt`: the schema and the adopted rows
/// commit together or not at all). Refuses a history that drifted, as `up` does, and a
/// script that must run outside a transaction.
pub(crate) async fn apply_pending_in(
    conn: &mut PgConnection,
    migrations: &Migrations,
) -> Result<Vec<String>> {
    let applied = applied(conn).await?;
    check_history(migrations, &applied)?;
    ensure_history(conn).await?;
    let mut version = applied.keys().next_back().copied();
    let mut files = Vec::new();
    for m in migrations
        .ups
        .values()
        .filter(|m| !applied.contains_key(&m.version))
    {
        if m.no_tx {
            return Err(Error::failed(format!(
                "{} runs outside a transaction, so it cannot be part of an adoption",
                file_name(m)
            ))
            .with_help("run `chatctl migrate up --to` the version before it, then adopt")
            .into());
        }
        let start = Instant::now();
        sqlx::raw_sql(&m.sql)
            .execute(&mut *conn)
            .await
            .map_err(|e| script_error(m, &e, version, true))?;
        write_history(conn, m, &Record::Applied, true, start.elapsed()).await?;
        version = Some(m.version);
        files.push(file_name(m));
    }
    Ok(files)
}

/// The pending migrations (not yet in the history), oldest first.
pub(crate) async fn pending<'a>(
    conn: &mut PgConnection,
    migrations: &'a Migrations,
) -> Result<Vec<&'a Migration>> {
    let applied = applied(conn).await?;
    Ok(migrations
        .ups
        .values()
        .filter(|m| !applied.contains_key(&m.version))
        .collect())
}

/// What a locked run does.
enum Plan<'a> {
    Up(&'a UpOptions),
    Down(&'a DownOptions),
}

/// Takes the migration lock (not for a dry run), runs the plan, releases the lock.
async fn run_locked(
    conn: &mut PgConnection,
    migrations: &Migrations,
    plan: Plan<'_>,
) -> Result<MigrateReport> {
    let (dry_run, lock_timeout) = match &plan {
        Plan::Up(o) => (o.dry_run, o.lock_timeout),
        Plan::Down(o) => (o.dry_run, o.lock_timeout),
    };
    let waited = if dry_run {
        Duration::ZERO
    } else {
        acquire_lock(conn, lock_timeout).await?
    };
    let result = match plan {
        Plan::Up(o) => up_locked(conn, migrations, o).await,
        Plan::Down(o) => down_locked(conn, migrations, o).await,
    };
    if !dry_run {
        release_lock(conn).await;
    }
    let mut report = result?;
    report.waited_for_lock_ms = waited.as_millis() as u64;
    Ok(report)
}

/// How a migration's history row changes with it.
enum Record {
    Applied,
    Reverted,
}

/// Runs one migration script and its history change in one transaction (or, for a script
/// marked `-- no-transaction`, one after the other, recording a failure as such).
async fn run_in_tx(
    conn: &mut PgConnection,
    m: &Migration,
    record: Record,
    version_before: Option<i64>,
) -> Result<()> {
    if m.no_tx {
        return run_without_tx(conn, m, record, version_before).await;
    }
    let start = Instant::now();
    let mut tx = conn.begin().await.context("cannot begin a transaction")?;
    if let Err(e) = sqlx::raw_sql(&m.sql).execute(&mut *tx).await {
        drop(tx);
        return Err(script_error(m, &e, version_before, true));
    }
    write_history(&mut tx, m, &record, true, start.elapsed()).await?;
    tx.commit()
        .await
        .with_context(|| format!("cannot commit {}", file_name(m)))?;
    Ok(())
}

async fn run_without_tx(
    conn: &mut PgConnection,
    m: &Migration,
    record: Record,
    version_before: Option<i64>,
) -> Result<()> {
    let start = Instant::now();
    match sqlx::raw_sql(&m.sql).execute(&mut *conn).await {
        Ok(_) => write_history(conn, m, &record, true, start.elapsed()).await,
        Err(e) => {
            if matches!(record, Record::Applied) {
                write_history(conn, m, &record, false, start.elapsed()).await?;
            }
            Err(script_error(m, &e, version_before, false))
        }
    }
}

async fn write_history(
    conn: &mut PgConnection,
    m: &Migration,
    record: &Record,
    success: bool,
    elapsed: Duration,
) -> Result<()> {
    let recorded = match record {
        Record::Applied => sqlx::query(
            "insert into chatctl.schema_migrations (version, description, success, checksum, execution_time)
             values ($1, $2, $3, $4, $5)
             on conflict (version) do update set success = excluded.success, installed_on = now()",
        )
        .bind(m.version)
        .bind(&*m.description)
        .bind(success)
        .bind(&*m.checksum)
        .bind(elapsed.as_nanos() as i64)
        .execute(conn)
        .await,
        Record::Reverted => {
            sqlx::query("delete from chatctl.schema_migrations where version = $1")
                .bind(m.version)
                .execute(conn)
                .await
        }
    };
    recorded.context("cannot record the migration in chatctl.schema_migrations")?;
    Ok(())
}

/// Names the file and line of a failed script.
fn script_error(
    m: &Migration,
    e: &sqlx::Error,
    version_before: Option<i64>,
    transactional: bool,
) -> anyhow::Error {
    let file = file_name(m);
    let mut location = String::new();
    let mut message = e.to_string();
    if let Some(db) = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<PgDatabaseError>())
    {
        message = db.message().to_owned();
        match db.position() {
            Some(PgErrorPosition::Original(pos)) => {
                let line = m
                    .sql
                    .chars()
                    .take(pos.saturating_sub(1))
                    .filter(|c| *c == '\n')
                    .count()
                    + 1;
                location = format!(" at line {line}");
            }
            Some(PgErrorPosition::Internal { .. }) | None => {
                if let Some(w) = db.r#where() {
                    location = format!(" ({})", w.lines().next().unwrap_or(w));
                }
            }
        }
        if let Some(detail) = db.detail() {
            message = format!("{message} ({detail})");
        }
    }
    if !transactional {
        return Error::failed(format!(
            "migration {file} failed{location}: {message}; it runs outside a transaction \
             (-- no-transaction), so it may be partly applied, and it is recorded as failed"
        ))
        .with_help(format!(
            "repair by hand what {file} left behind, delete version {} from \
             chatctl.schema_migrations, fix the file and run `chatctl migrate up` again",
            m.version
        ))
        .into();
    }
    Error::failed(format!(
        "migration {file} failed{location}: {message}; rolled back, the database is still at version {}",
        fmt_version(version_before)
    ))
    .with_help(format!("fix {file} and run `chatctl migrate up` again"))
    .into()
}

/// Reverts applied migrations, newest first.
pub async fn down(
    conn: &mut PgConnection,
    migrations: &Migrations,
    opts: &DownOptions,
) -> Result<MigrateReport> {
    run_locked(conn, migrations, Plan::Down(opts)).await
}

async fn down_locked(
    conn: &mut PgConnection,
    migrations: &Migrations,
    opts: &DownOptions,
) -> Result<MigrateReport> {
    let applied = applied(conn).await?;
    check_history(migrations, &applied)?;
    let newest_first: Vec<i64> = applied.keys().rev().copied().collect();
    let to_revert: Vec<i64> = match opts.target {
        DownTarget::Version(v) => {
            if v != 0 && !applied.contains_key(&v) {
                return Err(Error::usage(format!("version {v} is not applied"))
                    .with_help("see `chatctl migrate status`; --to 0 reverts everything")
                    .into());
            }
            newest_first.into_iter().filter(|x| *x > v).collect()
        }
        DownTarget::Steps(n) => newest_first.into_iter().take(n as usize).collect(),
    };
    let mut steps = Vec::new();
    let mut version = applied.keys().next_back().copied();
    for v in to_revert {
        let m = migrations.downs.get(&v).ok_or_else(|| {
            Error::failed(format!(
                "migration {v} has no .down.sql, so it cannot be reverted"
            ))
        })?;
        let remaining = applied.range(..v).next_back().map(|(k, _)| *k);
        if opts.dry_run {
            steps.push(Step {
                version: v,
                file: file_name(m),
                elapsed_ms: None,
                sql: Some(m.sql.to_string()),
            });
            continue;
        }
        let start = Instant::now();
        tracing::info!(file = %file_name(m), "reverting migration");
        run_in_tx(conn, m, Record::Reverted, version).await?;
        version = remaining;
        steps.push(Step {
            version: v,
            file: file_name(m),
            elapsed_ms: Some(start.elapsed().as_millis() as u64),
            sql: None,
        });
    }
    Ok(MigrateReport {
        direction: "down",
        dry_run: opts.dry_run,
        steps,
        version,
        waited_for_lock_ms: 0,
        supabase: None,
    })
}

/// The state of one migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Applied,
    Pending,
    /// Applied, but the file changed since.
    ChecksumMismatch,
    /// Applied, but not among the migrations (a newer binary applied it, or a file was deleted).
    Unknown,
    /// Pending, yet older than the newest applied one (merged out of order).
    Missing,
    /// Recorded as failed (a no-transaction migration that stopped half way).
    Failed,
}

impl State {
    fn is_drift(self) -> bool {
        !matches!(self, State::Applied | State::Pending)
    }
}

/// One row of `migrate status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusEntry {
    pub version: i64,
    pub description: String,
    pub state: State,
    pub installed_on: Option<DateTime<Utc>>,
    pub problem: String,
}

/// `migrate status` / `migrate verify`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub version: Option<i64>,
    pub latest: Option<i64>,
    pub pending: usize,
    pub drift: usize,
    pub migrations: Vec<StatusEntry>,
    /// The Supabase CLI's migrations, when the database records some or `--supabase-dir`
    /// names their directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supabase: Option<crate::db::supabase_cli::Listing>,
}

impl StatusReport {
    pub fn has_drift(&self) -> bool {
        self.drift > 0
    }
}

impl Report for StatusReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = report::table(["VERSION", "DESCRIPTION", "STATE", "INSTALLED"]);
        for e in &self.migrations {
            let state = serde_json::to_value(e.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            t.add_row(vec![
                format!("{:04}", e.version),
                e.description.clone(),
                state.replace('_', " "),
                e.installed_on
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
            ]);
        }
        report::write_table(out, &t)?;
        writeln!(
            out,
            "\ndatabase at version {}, newest known {}; {} pending, {} drifted",
            fmt_version(self.version),
            fmt_version(self.latest),
            self.pending,
            self.drift
        )?;
        for e in self.migrations.iter().filter(|e| e.state.is_drift()) {
            writeln!(out, "drift: {}", e.problem)?;
        }
        if let Some(supabase) = &self.supabase {
            supabase.human(out)?;
        }
        Ok(())
    }
}

fn drift(migrations: &Migrations, applied: &BTreeMap<i64, Applied>) -> Vec<StatusEntry> {
    entries(migrations, applied)
        .into_iter()
        .filter(|e| e.state.is_drift())
        .collect()
}

fn entries(migrations: &Migrations, applied: &BTreeMap<i64, Applied>) -> Vec<StatusEntry> {
    let newest_applied = applied.keys().next_back().copied();
    let versions: BTreeSet<i64> = migrations
        .ups
        .keys()
        .chain(applied.keys())
        .copied()
        .collect();
    versions
        .into_iter()
        .map(|v| {
            let m = migrations.ups.get(&v);
            let a = applied.get(&v);
            let (state, problem) = match (m, a) {
                (Some(m), Some(a)) if !a.success => (State::Failed, format!("{} is recorded as failed", file_name(m))),
                (Some(m), Some(a)) if a.checksum != *m.checksum => (
                    State::ChecksumMismatch,
                    format!("{} was edited after it was applied (checksum mismatch)", file_name(m)),
                ),
                (Some(_), Some(_)) => (State::Applied, String::new()),
                (Some(m), None) if newest_applied.is_some_and(|n| n > v) => (
                    State::Missing,
                    format!("{} is older than the newest applied migration but was never applied", file_name(m)),
                ),
                (Some(_), None) => (State::Pending, String::new()),
                (None, Some(a)) => (
                    State::Unknown,
                    format!(
                        "version {} ({}) is applied but not among the migrations (applied by a newer chatctl, or its file was removed)",
                        a.version, a.description
                    ),
                ),
                (None, None) => unreachable!("version comes from one of the two maps"),
            };
            StatusEntry {
                version: v,
                description: m.map(|m| m.description.to_string()).or_else(|| a.map(|a| a.description.clone())).unwrap_or_default(),
                state,
                installed_on: a.map(|a| a.installed_on),
                problem,
            }
        })
        .collect()
}

/// Compares the database's history with the migrations.
pub async fn status(conn: &mut PgConnection, migrations: &Migrations) -> Result<StatusReport> {
    let applied = applied(conn).await?;
    let migrations_list = entries(migrations, &applied);
    Ok(StatusReport {
        version: applied.keys().next_back().copied(),
        latest: migrations.latest(),
        pending: migrations_list
            .iter()
            .filter(|e| matches!(e.state, State::Pending | State::Missing))
            .count(),
        drift: migrations_list
            .iter()
            .filter(|e| e.state.is_drift())
            .count(),
        migrations: migrations_list,
        supabase: None,
    })
}
