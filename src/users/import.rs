//! `users import`: people from files into Supabase Auth and the profiles, at COPY speed.
//!
//! 1. **Load.** The inputs are read on a thread of their own, a record at a time; each
//!    record becomes a person or a reject (with its line, raw text and reason), plaintext
//!    passwords are hashed with bcrypt on every core, and everything is COPYed into a
//!    session's staging table. Memory holds a chunk of records, whatever the file size.
//! 2. **Plan.** Set-based, over the whole staging table: a repeated email or external id
//!    is rejected after its first line; every other row is matched to an existing user (on
//!    external id first, then on the auth user's address) and given its action: insert,
//!    update, unchanged, skip, or reject with a reason.
//! 3. **Write,** in batches of lines, each one transaction: new accounts through
//!    [`accounts::create_staged`] (the path `apply` and the bots use), updates, deactivations,
//!    workspace and channel memberships. A killed import leaves whole batches; running it
//!    again finds them unchanged and completes the rest. If a batch collides with a change
//!    made since the plan (someone signed up with an address meanwhile), its plan is made
//!    again inside its transaction and it is retried once.
//!
//! `--dry-run` runs 1 and 2 and counts what 3 would do: the same numbers and rejects.
//!
//! Over 900 lines, on purpose: the four steps below share one pair of staging tables, their
//! SQL placeholders and the batch counters; apart, one step's SQL would be read without the
//! tables it works on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::TryStreamExt as _;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::accounts;
use super::input::{self, Counter, Field, Format, Mapper, Password, Person, Reject};
use crate::audit;
use crate::db::bulk::{CopyStream, esc, ts};
use crate::error::{Error, Kind, Result};
use crate::provision::Actor;

/// What to do with a row that matches an existing user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExisting {
    /// Update a changed name, email, avatar or activation
    Update,
    /// Leave the existing user as they are
    Skip,
    /// Reject the row
    Error,
}

impl OnExisting {
    fn as_str(self) -> &'static str {
        match self {
            OnExisting::Update => "update",
            OnExisting::Skip => "skip",
            OnExisting::Error => "error",
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    None,
    /// A bar on the terminal.
    Bar,
    /// One JSON object a line on stderr.
    Json,
}

/// What `users import` was asked.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub files: Vec<String>,
    pub format: Format,
    pub maps: Vec<(String, Field)>,
    /// The source of external ids (`mongo` for mongo input, else `import`).
    pub source: Option<String>,
    pub workspace: Option<String>,
    /// The workspace role given with `--role`; without it new members are members and
    /// existing ones keep their role.
    pub role: Option<String>,
    pub channels: Vec<String>,
    pub on_existing: OnExisting,
    pub dry_run: bool,
    /// Where rejected rows go (JSON Lines).
    pub rejects: PathBuf,
    pub batch_size: usize,
    /// Connections writing batches at once.
    pub jobs: usize,
    pub progress: ProgressMode,
}

/// Rows per action.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub rejected: u64,
}

/// One input's part.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub name: String,
    pub format: Format,
    pub rows: u64,
}

/// Plaintext passwords hashed, and how fast.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Hashing {
    pub hashed: u64,
    pub seconds: f64,
    pub per_second: f64,
}

/// Where the time went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    pub load: f64,
    pub plan: f64,
    pub write: f64,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub files: Vec<FileReport>,
    pub rows: u64,
    pub users: Counts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_memberships: Option<Counts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_memberships: Option<Counts>,
    /// Rejected rows by kind of reason.
    pub rejected_by_kind: BTreeMap<String, u64>,
    /// Where the rejected rows were written (absent when none were).
    pub rejects_file: Option<String>,
    pub passwords: Hashing,
    /// Seconds spent reading and loading, planning, and writing (or counting).
    pub phases: Phases,
    pub seconds: f64,
    pub rows_per_second: f64,
}

/// Fails with exit code 77 unless the connected role may write `auth.users` and
/// `auth.identities`: INSERT and UPDATE granted, and past their row level security (the
/// tables' owner, a member of it, or a role that bypasses it); and it may create the
/// staging tables in `chatctl`.
pub async fn check_may_write_auth(conn: &mut PgConnection) -> Result<()> {
    let rows: Vec<(String, bool, bool)> = sqlx::query_as(
        "select c.oid::regclass::text,
                has_table_privilege(c.oid, 'INSERT') and has_table_privilege(c.oid, 'UPDATE'),
                not c.relrowsecurity or r.rolsuper or r.rolbypassrls or pg_has_role(c.relowner, 'USAGE')
           from pg_class c, pg_roles r
          where c.oid in (to_regclass('auth.users'), to_regclass('auth.identities'))
            and r.rolname = current_user",
    )
    .fetch_all(&mut *conn)
    .await?;
    let role: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&mut *conn)
        .await?;
    let help = "connect as `postgres` over the direct connection (on a hosted project: \
                db.<project-ref>.supabase.co:5432, not the pooler's tenant user), or as the \
                owner of the auth schema";
    if rows.len() < 2 {
        return Err(Error::new(
            Kind::NoPermission,
            "Supabase Auth's tables (auth.users, auth.identities) are missing or not visible",
        )
        .with_help("run `chatctl migrate up`, or connect to the project's database")
        .into());
    }
    let blocked: Vec<String> = rows
        .into_iter()
        .filter(|(_, granted, past_rls)| !(*granted && *past_rls))
        .map(|(t, granted, _)| {
            if granted {
                format!("{t} (row level security)")
            } else {
                format!("{t} (INSERT/UPDATE not granted)")
            }
        })
        .collect();
    if !blocked.is_empty() {
        return Err(Error::new(
            Kind::NoPermission,
            format!(
                "the role `{role}` may not write Supabase Auth's tables: {}",
                blocked.join(", ")
            ),
        )
        .with_help(help)
        .into());
    }
    let staging: bool = sqlx::query_scalar(
        "select coalesce(has_schema_privilege(to_regnamespace('chatctl')::oid, 'CREATE'), false)",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !staging {
        return Err(Error::new(
            Kind::NoPermission,
            format!("the role `{role}` may not create the import's staging tables in the `chatctl` schema"),
        )
        .with_help(help)
        .into());
    }
    Ok(())
}

/// One record on its way to the staging table.
struct Row {
    seq: u64,
    /// The id the person gets if they are new: time-ordered (UUID v7), so a million new
    /// accounts fill the indexes on their ids in order.
    new_id: Uuid,
    file: u32,
    line: u64,
    raw: String,
    person: std::result::Result<Person, Reject>,
}

enum Loaded {
    Rows(Vec<Row>),
    FileDone { rows: u64 },
    Failed(anyhow::Error),
}

const CHUNK: usize = 2048;

/// Reads every input on this thread, sending chunks of rows; plaintext passwords are
/// hashed here, on every core.
fn read_inputs(
    inputs: Vec<input::Input>,
    mut mapper: Vec<Mapper>,
    tx: tokio::sync::mpsc::Sender<Loaded>,
    hashing: std::sync::Arc<std::sync::Mutex<Hashing>>,
) {
    let mut seq = 0u64;
    for (fi, (inp, mapper)) in inputs.into_iter().zip(mapper.iter_mut()).enumerate() {
        let mut chunk: Vec<Row> = Vec::with_capacity(CHUNK);
        let mut rows = 0u64;
        for rec in inp.records {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    let e = anyhow::Error::from(e)
                        .context(Error::usage(format!("cannot read `{}`", inp.name)));
                    let _ = tx.blocking_send(Loaded::Failed(e));
                    return;
                }
            };
            seq += 1;
            rows += 1;
            let person = rec.doc.and_then(|d| mapper.person(&d));
            chunk.push(Row {
                seq,
                new_id: Uuid::now_v7(),
                file: fi as u32,
                line: rec.line,
                raw: rec.raw,
                person,
            });
            if chunk.len() == CHUNK {
                hash_plaintext(&mut chunk, &hashing);
                if tx
                    .blocking_send(Loaded::Rows(std::mem::take(&mut chunk)))
                    .is_err()
                {
                    return;
                }
            }
        }
        hash_plaintext(&mut chunk, &hashing);
        if tx.blocking_send(Loaded::Rows(chunk)).is_err()
            || tx.blocking_send(Loaded::FileDone { rows }).is_err()
        {
            return;
        }
    }
}

/// The bcrypt cost Supabase Auth uses (Go's default).
pub const BCRYPT_COST: u32 = 10;

/// Hashes the chunk's plaintext passwords in parallel, one thread per core.
fn hash_plaintext(chunk: &mut [Row], hashing: &std::sync::Mutex<Hashing>) {
    let mut plain: Vec<&mut Password> = chunk
        .iter_mut()
        .filter_map(|r| match &mut r.person {
            Ok(p) if matches!(p.password, Password::Plain(_)) => Some(&mut p.password),
            _ => None,
        })
        .collect();
    if plain.is_empty() {
        return;
    }
    let started = Instant::now();
    let n = plain.len();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(n);
    let per = n.div_ceil(workers);
    std::thread::scope(|s| {
        for part in plain.chunks_mut(per) {
            s.spawn(move || {
                for pw in part.iter_mut() {
                    if let Password::Plain(p) = &**pw {
                        // `$2a$`, as Supabase Auth (Go's bcrypt) and pgcrypto write it. A
                        // hashing failure is not possible for ≤ 72 bytes (checked on read).
                        if let Ok(h) = bcrypt::hash_with_result(p, BCRYPT_COST) {
                            **pw = Password::Hash(h.format_for_version(bcrypt::Version::TwoA));
                        }
                    }
                }
            });
        }
    });
    let mut h = hashing.lock().unwrap_or_else(|e| e.into_inner());
    h.hashed += n as u64;
    h.seconds += started.elapsed().as_secs_f64();
}

/// Shows progress: a bar, NDJSON lines, or nothing.
struct Meter {
    mode: ProgressMode,
    bar: crate::progress::Progress,
    phase: &'static str,
    total: u64,
    started: Instant,
    last: Instant,
}

impl Meter {
    fn new(mode: ProgressMode, phase: &'static str, total: u64, unit: &str) -> Meter {
        let quiet = mode != ProgressMode::Bar;
        let bar = if total > 0 {
            crate::progress::Progress::new(total, unit, quiet)
        } else {
            crate::progress::Progress::spinner(quiet)
        };
        bar.set_message(phase);
        Meter {
            mode,
            bar,
            phase,
            total,
            started: Instant::now(),
            last: Instant::now() - Duration::from_secs(10),
        }
    }

    fn update(&mut self, done: u64, rows: u64, force: bool) {
        self.bar.set_position(done);
        if self.mode == ProgressMode::Bar {
            let rate = rows as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            self.bar
                .set_message(&format!("{} {rows} rows, {rate:.0} rows/s", self.phase));
        }
        if self.mode != ProgressMode::Json
            || (!force && self.last.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = rows as f64 / secs;
        let eta = if done > 0 && self.total > done {
            Some(secs * (self.total - done) as f64 / done as f64)
        } else {
            None
        };
        let line = serde_json::json!({
            "event": "progress",
            "phase": self.phase,
            "rows": rows,
            "done": done,
            "total": self.total,
            "rows_per_second": (rate * 10.0).round() / 10.0,
            "eta_seconds": eta.map(|e| (e * 10.0).round() / 10.0),
        });
        crate::progress::json_line(&line);
    }

    fn finish(&self) {
        self.bar.finish();
    }
}

/// Where rejected rows go: JSON Lines of file, line, kind, reason and the raw row.
struct Rejects {
    file: crate::rejects::RejectsFile,
    files: Vec<String>,
}

impl Rejects {
    fn write(&mut self, file: u32, line: u64, kind: &str, reason: &str, raw: &str) -> Result<()> {
        let doc = serde_json::json!({
            "file": self.files.get(file as usize).cloned().unwrap_or_default(),
            "line": line,
            "kind": kind,
            "reason": reason,
            "raw": raw,
        });
        self.file.write(kind, &doc)
    }
}

/// The staging table of one import and the plan made from it: unlogged tables in the
/// `chatctl` schema (so every writer's session reads them; no WAL), named for the run, held
/// by a session advisory lock while it runs, dropped at its end. A killed run's tables are
/// dropped by the next import (their lock is free).
pub struct Stage {
    import: String,
    plan: String,
    key: String,
}

impl Stage {
    /// The SQL with the placeholders `@import` and `@plan` replaced by this run's tables.
    fn q(&self, sql: &str) -> String {
        sql.replace("@import", &self.import)
            .replace("@plan", &self.plan)
    }

    async fn create(conn: &mut PgConnection) -> Result<Stage> {
        // Leftovers of killed runs: their sessions (and locks) are gone.
        let stale: Vec<String> = sqlx::query_scalar(
            "select c.relname::text from pg_class c
              where c.relnamespace = 'chatctl'::regnamespace and c.relkind = 'r'
                and c.relname ~ '^user_import_[0-9a-f]{12}$'",
        )
        .fetch_all(&mut *conn)
        .await?;
        for name in stale {
            let key = format!("chatctl.{name}");
            let free: bool = sqlx::query_scalar("select pg_try_advisory_lock(hashtext($1))")
                .bind(&key)
                .fetch_one(&mut *conn)
                .await?;
            if free {
                sqlx::raw_sql(&format!("drop table if exists {key}, {key}_plan"))
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("select pg_advisory_unlock(hashtext($1))")
                    .bind(&key)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        let id = &Uuid::new_v4().simple().to_string()[..12];
        let st = Stage {
            import: format!("chatctl.user_import_{id}"),
            plan: format!("chatctl.user_import_{id}_plan"),
            key: format!("chatctl.user_import_{id}"),
        };
        sqlx::query("select pg_advisory_lock(hashtext($1))")
            .bind(&st.key)
            .execute(&mut *conn)
            .await?;
        sqlx::raw_sql(&st.q("create unlogged table @import (
                seq bigint not null,
                new_id uuid not null,
                file integer not null,
                line bigint not null,
                raw text not null,
                email text,
                name text,
                username text,
                external_source text,
                external_id text,
                password_hash text,
                created_at timestamptz,
                confirmed_at timestamptz,
                role text,
                active boolean,
                deactivated_at timestamptz,
                avatar_url text,
                reject text,
                reason text
            ) with (autovacuum_enabled = off);
            create unlogged table @plan (
                seq bigint not null,
                user_id uuid,
                action text not null,
                kind text,
                reason text
            ) with (autovacuum_enabled = off);"))
        .execute(&mut *conn)
        .await?;
        Ok(st)
    }

    async fn drop(&self, conn: &mut PgConnection) -> Result<()> {
        sqlx::raw_sql(&self.q("drop table if exists @import, @plan"))
            .execute(&mut *conn)
            .await?;
        sqlx::query("select pg_advisory_unlock(hashtext($1))")
            .bind(&self.key)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Imports people; see the module's documentation.
pub async fn import(pool: &PgPool, opts: &ImportOptions, actor: &Actor) -> Result<ImportReport> {
    let counter = Counter::default();
    let inputs = opts
        .files
        .iter()
        .map(|f| input::open(f, opts.format, &counter))
        .collect::<Result<Vec<_>>>()?;
    import_inputs(pool, inputs, &counter, opts, actor).await
}

/// [`import`] of inputs already open (another importer's people: a Slack export's users);
/// `counter` counts the bytes they read. `opts.files` is not read.
pub async fn import_inputs(
    pool: &PgPool,
    inputs: Vec<input::Input>,
    counter: &Counter,
    opts: &ImportOptions,
    actor: &Actor,
) -> Result<ImportReport> {
    let mut conn = pool.acquire().await?;
    check_may_write_auth(&mut conn).await?;
    let target = Target::resolve(&mut conn, opts).await?;
    let st = Stage::create(&mut conn).await?;
    let result = run(
        pool,
        &mut conn,
        &st,
        &target,
        (inputs, counter),
        opts,
        actor,
    )
    .await;
    let dropped = st.drop(&mut conn).await;
    let report = result?;
    dropped?;
    Ok(report)
}

async fn run(
    pool: &PgPool,
    conn: &mut PgConnection,
    st: &Stage,
    target: &Target,
    (inputs, counter): (Vec<input::Input>, &Counter),
    opts: &ImportOptions,
    actor: &Actor,
) -> Result<ImportReport> {
    let started = Instant::now();

    // 1. Load.
    let mut mappers = Vec::new();
    let mut files = Vec::new();
    for inp in &inputs {
        let source = opts.source.clone().unwrap_or_else(|| {
            if inp.format == Format::Mongo {
                "mongo".into()
            } else {
                "import".into()
            }
        });
        mappers.push(Mapper::new(&opts.maps, &source));
        files.push(FileReport {
            name: inp.name.clone(),
            format: inp.format,
            rows: 0,
        });
    }
    let total_bytes: u64 = inputs.iter().filter_map(|i| i.size).sum();
    let sizes_unknown = inputs.iter().any(|i| i.size.is_none());
    let hashing = std::sync::Arc::new(std::sync::Mutex::new(Hashing::default()));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Loaded>(8);
    let reader = {
        let hashing = hashing.clone();
        tokio::task::spawn_blocking(move || read_inputs(inputs, mappers, tx, hashing))
    };
    // The size of standard input is unknown: a spinner then, and no ETA.
    let stdin = sizes_unknown;
    let total = if stdin { 0 } else { total_bytes.max(1) };
    let mut meter = Meter::new(opts.progress, "reading", total, "bytes");
    let mut rows = 0u64;
    let mut file_no = 0usize;
    {
        let mut copy = CopyStream::open(
            conn,
            &st.q("copy @import (seq, new_id, file, line, raw, email, name, username, external_source,
                external_id, password_hash, created_at, confirmed_at, role, active, deactivated_at,
                avatar_url, reject, reason) from stdin"),
        )
        .await?;
        while let Some(msg) = rx.recv().await {
            match msg {
                Loaded::Rows(chunk) => {
                    for r in &chunk {
                        copy_row(&mut copy.buf, r);
                        copy.row_done().await?;
                    }
                    rows += chunk.len() as u64;
                    meter.update(counter.get(), rows, false);
                }
                Loaded::FileDone { rows } => {
                    files[file_no].rows = rows;
                    file_no += 1;
                }
                Loaded::Failed(e) => return Err(e),
            }
        }
        copy.finish().await?;
    }
    reader.await.context("the input reader failed")?;
    meter.update(counter.get(), rows, true);
    meter.finish();
    let load = started.elapsed().as_secs_f64();

    // 2. Plan.
    let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    plan_all(conn, st, &names, opts.on_existing).await?;
    let plan = started.elapsed().as_secs_f64() - load;

    // 3. Write (or count), batch by batch, on `jobs` connections.
    let mut report = ImportReport {
        dry_run: opts.dry_run,
        files,
        rows,
        users: Counts::default(),
        workspace: opts.workspace.clone(),
        workspace_memberships: target.workspace.map(|_| Counts::default()),
        channel_memberships: (!target.channels.is_empty()).then(Counts::default),
        rejected_by_kind: BTreeMap::new(),
        rejects_file: None,
        passwords: Hashing::default(),
        phases: Phases {
            load,
            plan,
            write: 0.0,
        },
        seconds: 0.0,
        rows_per_second: 0.0,
    };
    let meter = std::sync::Mutex::new(Meter::new(
        opts.progress,
        if opts.dry_run { "planning" } else { "writing" },
        rows.max(1),
        "rows",
    ));
    // The pool also holds this connection.
    let room = pool
        .options()
        .get_max_connections()
        .saturating_sub(1)
        .max(1) as usize;
    let jobs = if opts.dry_run {
        1
    } else {
        opts.jobs.clamp(1, room)
    };
    let batch = opts.batch_size.max(1) as i64;
    let next = std::sync::atomic::AtomicI64::new(1);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let totals = std::sync::Mutex::new((BatchCounts::default(), 0u64));
    let mut writers = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        writers.push(pool.acquire().await?);
    }
    let work = writers.into_iter().map(|mut c| {
        let (next, stop, totals, meter) = (&next, &stop, &totals, &meter);
        async move {
            accounts::prepare(&mut c).await?;
            loop {
                use std::sync::atomic::Ordering::SeqCst;
                if stop.load(SeqCst) {
                    return Ok(());
                }
                let lo = next.fetch_add(batch, SeqCst);
                if lo > rows as i64 {
                    return Ok(());
                }
                let hi = lo + batch - 1;
                match run_batch(&mut c, st, opts, target, lo, hi).await {
                    Ok(counts) => {
                        let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                        t.0.add(&counts);
                        t.1 += (hi.min(rows as i64) - lo + 1) as u64;
                        let done = t.1;
                        drop(t);
                        meter
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .update(done, done, false);
                    }
                    Err(e) => {
                        stop.store(true, SeqCst);
                        return Err::<(), anyhow::Error>(e);
                    }
                }
            }
        }
    });
    futures_util::future::try_join_all(work).await?;
    {
        let m = meter.lock().unwrap_or_else(|e| e.into_inner());
        let mut m = m;
        m.update(rows, rows, true);
        m.finish();
    }
    let (counts, _) = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    report.users = counts.users;
    if let Some(w) = report.workspace_memberships.as_mut() {
        *w = counts.workspace;
    }
    if let Some(c) = report.channel_memberships.as_mut() {
        *c = counts.channels;
    }
    report.phases.write = started.elapsed().as_secs_f64() - load - plan;

    // The rejects, in the order of the input.
    let mut rejects = Rejects {
        file: crate::rejects::RejectsFile::new(opts.rejects.clone()),
        files: names.clone(),
    };
    {
        let q = st.q(
            "select s.file, s.line, coalesce(s.reject, p.kind), coalesce(s.reason, p.reason), s.raw
               from @import s
               left join @plan p on p.seq = s.seq
              where s.reject is not null or p.action = 'reject'
              order by s.seq",
        );
        let mut found =
            sqlx::query_as::<_, (i32, i64, String, String, String)>(&q).fetch(&mut *conn);
        while let Some((file, line, kind, reason, raw)) = found.try_next().await? {
            rejects.write((file - 1) as u32, line as u64, &kind, &reason, &raw)?;
        }
    }
    report.rejects_file = rejects.file.finish()?;
    report.rejected_by_kind = rejects.file.by_kind;
    report.users.rejected = report.rejected_by_kind.values().sum();
    report.passwords = {
        let h = hashing.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Hashing {
            per_second: if h.seconds > 0.0 {
                h.hashed as f64 / h.seconds
            } else {
                0.0
            },
            ..h
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    report.rows_per_second = rows as f64 / report.seconds.max(1e-9);
    if !opts.dry_run {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        audit::record(
            &mut tx,
            &actor.operator,
            &actor.command,
            &[audit::Entry {
                action: "import".into(),
                object_type: "users".into(),
                object_id: names.join(","),
                before: None,
                after: Some(serde_json::json!({
                    "rows": report.rows,
                    "users": report.users,
                    "workspace": report.workspace,
                    "workspace_memberships": report.workspace_memberships,
                    "channel_memberships": report.channel_memberships,
                    "rejected_by_kind": report.rejected_by_kind,
                })),
            }],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(report)
}

/// Writes one staging row in COPY's text format.
fn copy_row(buf: &mut String, r: &Row) {
    let _ = write!(buf, "{}\t{}\t{}\t{}\t", r.seq, r.new_id, r.file + 1, r.line);
    esc(buf, &r.raw);
    let opt = |buf: &mut String, v: Option<&str>| {
        buf.push('\t');
        match v {
            Some(v) => esc(buf, v),
            None => buf.push_str("\\N"),
        }
    };
    let date = |buf: &mut String, v: Option<chrono::DateTime<chrono::Utc>>| {
        buf.push('\t');
        match v {
            Some(t) => buf.push_str(&ts(t)),
            None => buf.push_str("\\N"),
        }
    };
    match &r.person {
        Ok(p) => {
            let username = p.username.clone().unwrap_or_else(|| {
                let d = accounts::derive_username(&p.email);
                d.chars().take(60).collect()
            });
            opt(buf, Some(&p.email));
            opt(buf, Some(&p.name));
            opt(buf, Some(&username));
            opt(buf, p.external_source.as_deref());
            opt(buf, p.external_id.as_deref());
            opt(
                buf,
                match &p.password {
                    Password::Hash(h) => Some(h),
                    _ => None,
                },
            );
            date(buf, p.created_at);
            date(buf, p.confirmed_at);
            opt(buf, p.role.as_deref());
            opt(buf, p.active.map(|a| if a { "t" } else { "f" }));
            date(buf, p.deactivated_at);
            opt(buf, p.avatar_url.as_deref());
            opt(buf, None);
            opt(buf, None);
        }
        Err(rej) => {
            for _ in 0..12 {
                opt(buf, None);
            }
            opt(buf, Some(rej.kind));
            opt(buf, Some(&rej.reason));
        }
    }
}

/// The workspace and channels memberships go to.
struct Target {
    /// Inserts may skip triggers (see [`accounts::bulk_allowed`]).
    bulk: bool,
    workspace: Option<Uuid>,
    channels: Vec<Uuid>,
    role: String,
    role_given: bool,
}

impl Target {
    async fn resolve(conn: &mut PgConnection, opts: &ImportOptions) -> Result<Target> {
        let mut t = Target {
            bulk: !opts.dry_run && accounts::bulk_allowed(conn).await?,
            workspace: None,
            channels: Vec::new(),
            role: opts.role.clone().unwrap_or_else(|| "member".into()),
            role_given: opts.role.is_some(),
        };
        if !input::ROLES.contains(&t.role.as_str()) {
            return Err(Error::usage(format!(
                "unknown role `{}` (member, guest or admin)",
                t.role
            ))
            .into());
        }
        let Some(slug) = &opts.workspace else {
            if !opts.channels.is_empty() {
                return Err(Error::usage("--channels needs the workspace (-w SLUG)").into());
            }
            return Ok(t);
        };
        let ws: Option<Uuid> =
            sqlx::query_scalar("select id from public.workspaces where slug = $1")
                .bind(slug)
                .fetch_optional(&mut *conn)
                .await?;
        let ws = ws.ok_or_else(|| {
            Error::usage(format!("no workspace `{slug}`"))
                .with_help("`chatctl workspace list` shows them")
        })?;
        t.workspace = Some(ws);
        for name in &opts.channels {
            let name = name.trim().trim_start_matches('#');
            let found: Option<(Uuid, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
                "select id, archived_at from public.channels where workspace_id = $1 and name = $2",
            )
            .bind(ws)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
            match found {
                None => {
                    return Err(Error::usage(format!("no channel `#{name}` in `{slug}`"))
                        .with_help(format!("`chatctl channel list -w {slug}` shows them"))
                        .into());
                }
                Some((_, Some(_))) => {
                    return Err(Error::usage(format!(
                        "the channel `#{name}` is archived: nobody joins it"
                    ))
                    .into());
                }
                Some((id, None)) => t.channels.push(id),
            }
        }
        t.channels.sort();
        t.channels.dedup();
        Ok(t)
    }
}

/// Rejects repeated emails and external ids after their first line, then plans every row.
async fn plan_all(
    conn: &mut PgConnection,
    st: &Stage,
    names: &[String],
    on_existing: OnExisting,
) -> Result<()> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::raw_sql(&st.q("set local work_mem = '64MB';
         create index on @import (seq);
         analyze @import;"))
    .execute(&mut *tx)
    .await?;
    // A repeated address or external id: the first line wins, the later ones are rejected.
    for (kind, what, key, shown) in [
        ("duplicate_email", "email", "email", "s.email"),
        (
            "duplicate_external_id",
            "external id",
            "(external_source, external_id)",
            "s.external_source || '/' || s.external_id",
        ),
    ] {
        sqlx::query(&st.q(&format!(
            "update @import s
                set reject = '{kind}',
                    reason = format('duplicate {what} `%s` within the input (first at %s:%s)',
                                    {shown}, ($1::text[])[f.file], f.line)
               from (select {key} as k, min(seq) as first from @import
                      where reject is null and {key} is not null
                      group by {key} having count(*) > 1) d
               join @import f on f.seq = d.first
              where (s.{key_s}) = d.k and s.seq > d.first and s.reject is null",
            key_s = key
                .trim_matches(|c| c == '(' || c == ')')
                .replace(", ", ", s."),
        )))
        .bind(names)
        .execute(&mut *tx)
        .await?;
    }
    plan(&mut tx, st, None, on_existing).await?;
    sqlx::raw_sql(&st.q("create index on @plan (seq);
         analyze @plan;"))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Plans the rows of `range` (all when `None`): matches each to an existing user and gives
/// it its action.
async fn plan(
    conn: &mut PgConnection,
    st: &Stage,
    range: Option<(i64, i64)>,
    on_existing: OnExisting,
) -> Result<()> {
    let (lo, hi) = range.unwrap_or((i64::MIN, i64::MAX));
    sqlx::query(&st.q("insert into @plan (seq, user_id, action, kind, reason)
         select m.seq,
                case when m.verdict = 'insert' then m.new_id else m.uid end,
                case when m.verdict in ('insert', 'update', 'unchanged', 'skip') then m.verdict else 'reject' end,
                case when m.verdict in ('insert', 'update', 'unchanged', 'skip') then null else m.verdict end,
                case m.verdict
                  when 'email_taken' then format('`%s` belongs to another account (%s) than the user of external id %s/%s',
                                                 m.email, m.holder, m.external_source, m.external_id)
                  when 'unverified_account' then format('an account (%s) holds `%s` without having verified it: it is not adopted',
                                                        m.holder, m.email)
                  when 'bot_account' then format('`%s` is a bot account', m.email)
                  when 'external_id_taken' then format('`%s` belongs to an existing user of another external id (%s/%s)',
                                                       m.email, m.held_source, m.held_id)
                  when 'exists' then format('`%s` already has an account (--on-existing error)', m.email)
                end
           from (
             select s.seq, s.new_id, s.email, s.external_source, s.external_id,
                    coalesce(pe.id, ae.id) as uid, ae.id as holder,
                    p.external_source as held_source, p.external_id as held_id,
                    -- p is the matched person's profile: by external id, else the address's.
                    case
                      when pe.id is not null and ae.id is not null and ae.id <> pe.id then 'email_taken'
                      when pe.id is null and ae.id is not null and not ae.verified then 'unverified_account'
                      when pe.id is null and p.is_bot then 'bot_account'
                      when pe.id is null and p.external_id is not null and s.external_id is not null then 'external_id_taken'
                      when pe.id is null and ae.id is null then 'insert'
                      when $3 = 'error' then 'exists'
                      when $3 = 'skip' then 'skip'
                      when p.id is null
                        or lower(au.email) is distinct from s.email
                        or p.name is distinct from s.name
                        or (p.external_id is null and s.external_id is not null)
                        or (s.active is not null and (p.deactivated_at is null) <> s.active)
                        or (s.avatar_url is not null and p.avatar_url is distinct from s.avatar_url) then 'update'
                      else 'unchanged'
                    end as verdict
               from @import s
               left join public.users pe
                      on pe.external_source = s.external_source and pe.external_id = s.external_id
               left join (
                      select distinct on (lower(a.email)) lower(a.email) as email, a.id,
                             a.email_confirmed_at is not null as verified
                        from auth.users a
                       where (a.instance_id = '00000000-0000-0000-0000-000000000000' or a.instance_id is null)
                         and lower(a.email) in (select i.email from @import i
                                                 where i.seq between $1 and $2 and i.reject is null)
                       order by lower(a.email), a.email_confirmed_at is null, a.created_at) ae
                      on ae.email = s.email
               left join auth.users au on au.id = coalesce(pe.id, ae.id)
               left join public.users p on p.id = coalesce(pe.id, ae.id)
              where s.seq between $1 and $2 and s.reject is null
           ) m",))
    .bind(lo)
    .bind(hi)
    .bind(on_existing.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Counts (and, unless dry, writes) the lines `lo..=hi`, in one transaction.
async fn run_batch(
    conn: &mut PgConnection,
    st: &Stage,
    opts: &ImportOptions,
    target: &Target,
    lo: i64,
    hi: i64,
) -> Result<BatchCounts> {
    let mut replanned = false;
    loop {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        if replanned {
            sqlx::query(&st.q("delete from @plan where seq between $1 and $2"))
                .bind(lo)
                .bind(hi)
                .execute(&mut *tx)
                .await?;
            plan(&mut tx, st, Some((lo, hi)), opts.on_existing).await?;
        }
        let outcome = if opts.dry_run {
            count_batch(&mut tx, st, target, lo, hi).await
        } else {
            write_batch(&mut tx, st, target, lo, hi).await
        };
        match outcome {
            Ok(counts) => {
                if opts.dry_run {
                    tx.rollback().await?;
                } else {
                    tx.commit().await.context("cannot commit a batch")?;
                }
                return Ok(counts);
            }
            Err(e) if !replanned && is_unique_violation(&e) => {
                tracing::info!(
                    lo,
                    hi,
                    "a batch met a change made since the plan; planning it again"
                );
                tx.rollback().await?;
                replanned = true;
            }
            Err(e) => {
                return Err(e.context(format!(
                    "the batch of rows {lo}..{hi} failed; the batches written so far stay, and running the import again completes it"
                )));
            }
        }
    }
}

fn is_unique_violation(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<sqlx::Error>()
            .and_then(|s| s.as_database_error())
            .is_some_and(|d| d.code().as_deref() == Some("23505"))
    })
}

impl Counts {
    fn add(&mut self, c: &Counts) {
        self.inserted += c.inserted;
        self.updated += c.updated;
        self.unchanged += c.unchanged;
        self.skipped += c.skipped;
    }
}

#[derive(Default)]
struct BatchCounts {
    users: Counts,
    workspace: Counts,
    channels: Counts,
}

impl BatchCounts {
    fn add(&mut self, c: &BatchCounts) {
        self.users.add(&c.users);
        self.workspace.add(&c.workspace);
        self.channels.add(&c.channels);
    }
}

async fn user_counts(tx: &mut PgConnection, st: &Stage, lo: i64, hi: i64) -> Result<Counts> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        &st.q("select action, count(*) from @plan where seq between $1 and $2 group by action"),
    )
    .bind(lo)
    .bind(hi)
    .fetch_all(&mut *tx)
    .await?;
    let mut c = Counts::default();
    for (action, n) in rows {
        let n = n as u64;
        match action.as_str() {
            "insert" => c.inserted = n,
            "update" => c.updated = n,
            "unchanged" => c.unchanged = n,
            "skip" => c.skipped = n,
            _ => {}
        }
    }
    Ok(c)
}

/// The rows of a batch whose people get memberships: everyone not rejected or skipped.
const MEMBERS: &str = "from @plan p join @import s on s.seq = p.seq
                        where p.seq between $1 and $2 and p.action in ('insert', 'update', 'unchanged')";

/// What a batch would do, written nowhere.
async fn count_batch(
    tx: &mut PgConnection,
    st: &Stage,
    target: &Target,
    lo: i64,
    hi: i64,
) -> Result<BatchCounts> {
    let mut c = BatchCounts {
        users: user_counts(tx, st, lo, hi).await?,
        ..Default::default()
    };
    if let Some(ws) = target.workspace {
        let (eligible, new, changed): (i64, i64, i64) = sqlx::query_as(&st.q(
            "select count(*), count(*) filter (where w.user_id is null),
                    count(*) filter (where w.user_id is not null and (s.role is not null or $5)
                                       and w.role <> coalesce(s.role, $4) and w.role <> 'owner')
               from @plan p join @import s on s.seq = p.seq
               left join public.workspace_members w on w.workspace_id = $3 and w.user_id = p.user_id
              where p.seq between $1 and $2 and p.action in ('insert', 'update', 'unchanged')",
        ))
        .bind(lo)
        .bind(hi)
        .bind(ws)
        .bind(&target.role)
        .bind(target.role_given)
        .fetch_one(&mut *tx)
        .await?;
        c.workspace = Counts {
            inserted: new as u64,
            updated: changed as u64,
            unchanged: (eligible - new - changed) as u64,
            ..Default::default()
        };
    }
    if !target.channels.is_empty() {
        let (eligible, new): (i64, i64) = sqlx::query_as(&st.q(&format!(
            "select count(*), count(*) filter (where not exists (
                        select 1 from public.members m where m.channel_id = c and m.user_id = p.user_id))
               {MEMBERS_CHANNELS}"
        )))
        .bind(lo)
        .bind(hi)
        .bind(&target.channels)
        .fetch_one(&mut *tx)
        .await?;
        c.channels = Counts {
            inserted: new as u64,
            unchanged: (eligible - new) as u64,
            ..Default::default()
        };
    }
    Ok(c)
}

const MEMBERS_CHANNELS: &str = "from @plan p cross join unnest($3::uuid[]) c
                                 where p.seq between $1 and $2 and p.action in ('insert', 'update', 'unchanged')";

/// Writes a batch: new accounts, updates, activation changes, memberships.
async fn write_batch(
    tx: &mut PgConnection,
    st: &Stage,
    target: &Target,
    lo: i64,
    hi: i64,
) -> Result<BatchCounts> {
    let mut c = BatchCounts {
        users: user_counts(tx, st, lo, hi).await?,
        ..Default::default()
    };
    // New accounts, through the one path that creates them.
    if c.users.inserted > 0 {
        sqlx::query(&st.q("insert into pg_temp.chatctl_new_users (id, email, username, display_name, password_hash,
                    confirmed_at, created_at, external_source, external_id, avatar_url, deactivated_at)
             select p.user_id, s.email, lower(s.username), s.name, s.password_hash, s.confirmed_at,
                    s.created_at, s.external_source, s.external_id, s.avatar_url,
                    case when s.active = false then coalesce(s.deactivated_at, now()) end
               from @plan p join @import s on s.seq = p.seq
              where p.seq between $1 and $2 and p.action = 'insert'",))
        .bind(lo)
        .bind(hi)
        .execute(&mut *tx)
        .await?;
        if target.bulk {
            accounts::set_bulk(tx, true).await?;
        }
        create_with_free_usernames(tx).await?;
        if target.bulk {
            accounts::set_bulk(tx, false).await?;
        }
    }
    if c.users.updated > 0 {
        update_existing(tx, st, lo, hi).await?;
    }
    if let Some(ws) = target.workspace {
        let changed = sqlx::query(&st.q("update public.workspace_members w set role = coalesce(s.role, $4)
               from @plan p join @import s on s.seq = p.seq
              where p.seq between $1 and $2 and p.action in ('insert', 'update', 'unchanged')
                and w.workspace_id = $3 and w.user_id = p.user_id
                and (s.role is not null or $5) and w.role <> coalesce(s.role, $4) and w.role <> 'owner'",))
        .bind(lo)
        .bind(hi)
        .bind(ws)
        .bind(&target.role)
        .bind(target.role_given)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if target.bulk {
            // What the skipped foreign key checks would lock: the workspace, the channels,
            // and the existing people the new memberships refer to.
            sqlx::query("select 1 from public.workspaces where id = $1 for key share")
                .bind(ws)
                .execute(&mut *tx)
                .await?;
            sqlx::query("select 1 from public.channels where id = any($1) for key share")
                .bind(&target.channels)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&st.q(
                "select 1 from public.users u join @plan p on p.user_id = u.id
                  where p.seq between $1 and $2 and p.action in ('update', 'unchanged')
                    and (not exists (select 1 from public.workspace_members w
                                      where w.workspace_id = $3 and w.user_id = u.id)
                         or exists (select 1 from unnest($4::uuid[]) c
                                     where not exists (select 1 from public.members m
                                                        where m.channel_id = c and m.user_id = u.id)))
                    for key share of u",
            ))
            .bind(lo)
            .bind(hi)
            .bind(ws)
            .bind(&target.channels)
            .execute(&mut *tx)
            .await?;
            accounts::set_bulk(tx, true).await?;
        }
        let new = sqlx::query(&st.q(&format!(
            "insert into public.workspace_members (workspace_id, user_id, role)
             select $3, p.user_id, coalesce(s.role, $4) {MEMBERS}
                and not exists (select 1 from public.workspace_members w
                                 where w.workspace_id = $3 and w.user_id = p.user_id)
             on conflict (workspace_id, user_id) do nothing"
        )))
        .bind(lo)
        .bind(hi)
        .bind(ws)
        .bind(&target.role)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let eligible = c.users.inserted + c.users.updated + c.users.unchanged;
        c.workspace = Counts {
            inserted: new,
            updated: changed,
            unchanged: eligible - new - changed,
            ..Default::default()
        };
    }
    if !target.channels.is_empty() {
        let new = sqlx::query(&st.q(&format!(
            "insert into public.members (channel_id, user_id) select c, p.user_id {MEMBERS_CHANNELS}
                and not exists (select 1 from public.members m where m.channel_id = c and m.user_id = p.user_id)
             on conflict (channel_id, user_id) do nothing"
        )))
        .bind(lo)
        .bind(hi)
        .bind(&target.channels)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let eligible =
            (c.users.inserted + c.users.updated + c.users.unchanged) * target.channels.len() as u64;
        c.channels = Counts {
            inserted: new,
            unchanged: eligible - new,
            ..Default::default()
        };
    }
    if target.bulk {
        accounts::set_bulk(tx, false).await?;
    }
    Ok(c)
}

/// Creates the staged accounts; a username someone has (or another new account of the
/// batch) gets a number, as Slack does: `ann`, `ann2`, `ann3`.
async fn create_with_free_usernames(tx: &mut PgConnection) -> Result<()> {
    for round in 0..6 {
        sqlx::raw_sql("savepoint chatctl_usernames")
            .execute(&mut *tx)
            .await?;
        match accounts::create_staged(tx).await {
            Ok(_) => {
                sqlx::raw_sql("release savepoint chatctl_usernames")
                    .execute(&mut *tx)
                    .await?;
                return Ok(());
            }
            Err(e) if round < 5 && username_taken(&e) => {
                sqlx::raw_sql("rollback to savepoint chatctl_usernames")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "with ranked as (
                         select n.id, n.username,
                                row_number() over (partition by n.username order by n.email) as r,
                                exists (select 1 from public.users u where u.username = n.username) as taken
                           from pg_temp.chatctl_new_users n)
                     update pg_temp.chatctl_new_users n
                        set username = left(r.username, 70) ||
                                case when $1 = 0 then (r.r + r.taken::int)::text
                                     else (2 + floor(random() * 1000000))::int::text end
                       from ranked r
                      where n.id = r.id and (r.r > 1 or r.taken)",
                )
                .bind(round)
                .execute(&mut *tx)
                .await?;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last round returns")
}

fn username_taken(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<sqlx::Error>()
            .and_then(|s| s.as_database_error())
            .and_then(|d| d.constraint())
            == Some("users_username_key")
    })
}

/// Updates the batch's existing users whose row says something new.
async fn update_existing(tx: &mut PgConnection, st: &Stage, lo: i64, hi: i64) -> Result<()> {
    const UPDATED: &str = "from @plan p join @import s on s.seq = p.seq
                            where p.seq between $1 and $2 and p.action = 'update'";
    sqlx::query(&st.q(&format!(
        "update auth.users a
            set email = s.email, updated_at = now(),
                raw_user_meta_data = coalesce(a.raw_user_meta_data, '{{}}'::jsonb) || jsonb_build_object('full_name', s.name)
           {UPDATED} and a.id = p.user_id
            and (lower(a.email) is distinct from s.email or a.raw_user_meta_data ->> 'full_name' is distinct from s.name)"
    )))
    .bind(lo)
    .bind(hi)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&st.q(&format!(
        "update auth.identities i
            set identity_data = i.identity_data || jsonb_build_object('email', s.email), updated_at = now()
           {UPDATED} and i.user_id = p.user_id and i.provider = 'email'
            and i.identity_data ->> 'email' is distinct from s.email"
    )))
    .bind(lo)
    .bind(hi)
    .execute(&mut *tx)
    .await?;
    // An auth user without a profile (signed up, never opened the app) gets one.
    sqlx::query(&st.q(&format!(
        "insert into public.users (id, username, name, external_source, external_id, avatar_url)
         select p.user_id,
                case when exists (select 1 from public.users u where u.username = lower(s.username))
                     then left(lower(s.username), 70) || '-' || left(p.user_id::text, 8)
                     else lower(s.username) end,
                s.name, s.external_source, s.external_id, s.avatar_url
           {UPDATED} and not exists (select 1 from public.users u where u.id = p.user_id)"
    )))
    .bind(lo)
    .bind(hi)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&st.q(&format!(
        "update public.users u
            set name = s.name,
                external_source = case when u.external_id is null then s.external_source else u.external_source end,
                external_id = coalesce(u.external_id, s.external_id),
                avatar_url = coalesce(s.avatar_url, u.avatar_url)
           {UPDATED} and u.id = p.user_id
            and (u.name <> s.name or (u.external_id is null and s.external_id is not null)
                 or (s.avatar_url is not null and u.avatar_url is distinct from s.avatar_url))"
    )))
    .bind(lo)
    .bind(hi)
    .execute(&mut *tx)
    .await?;
    let flips: Vec<(Uuid, bool)> = sqlx::query_as(&st.q(&format!(
        "select p.user_id, s.active
           {UPDATED} and s.active is not null
            and exists (select 1 from public.users u where u.id = p.user_id
                         and (u.deactivated_at is null) <> s.active)"
    )))
    .bind(lo)
    .bind(hi)
    .fetch_all(&mut *tx)
    .await?;
    let (on, off): (Vec<_>, Vec<_>) = flips.into_iter().partition(|(_, active)| *active);
    let ids = |v: Vec<(Uuid, bool)>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    if !off.is_empty() {
        accounts::deactivate(tx, &ids(off)).await?;
    }
    if !on.is_empty() {
        accounts::reactivate(tx, &ids(on)).await?;
    }
    Ok(())
}
