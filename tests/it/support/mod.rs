//! Test support: one real PostgreSQL per test run (the embedded local cluster, started from
//! the system binaries by chatctl's own code), a template database migrated once, and a
//! fresh database per test cloned from it.
//!
//! The cluster lives in a directory derived from the checkout and keeps running between
//! runs (a second run starts in milliseconds); `.ci/run` stops it at the end. Databases of
//! passing tests are dropped; a failing test's database is kept for a look
//! (`CHATCTL_TEST_KEEP_DB=1` keeps all) and swept by the next run's template rebuild.

#![allow(dead_code, clippy::print_stderr)]

pub mod openai_server;
pub mod realtime_server;
pub mod s3_server;

use std::hash::{Hash as _, Hasher as _};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use chatctl::config::Env;
use chatctl::db::local::{LocalCluster, PgBinaries, ServerOptions};
use chatctl::db::migrate::{self, Migrations, Source, UpOptions};
use sqlx::Connection as _;
use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

pub const TEMPLATE: &str = "chatctl_template";

/// The newest migration in `migrations/` (tests that count them say so with this).
pub const LATEST_MIGRATION: i64 = 17;

/// Where the test cluster lives: `CHATCTL_TEST_PGDIR` (CI sets it, to stop the cluster at
/// the end), else a directory under /tmp derived from the checkout (reachable by the
/// `postgres` user when the tests run as root).
pub fn cluster_dir() -> PathBuf {
    if let Some(dir) = Env::from_process().get("CHATCTL_TEST_PGDIR") {
        return PathBuf::from(dir);
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_MANIFEST_DIR").hash(&mut h);
    std::env::temp_dir().join(format!("chatctl-it-{:x}", h.finish()))
}

struct Started {
    port: u16,
}

static STARTED: OnceLock<Started> = OnceLock::new();

/// The port of the test cluster, started (and the template migrated) on first use.
pub fn port() -> u16 {
    STARTED
        .get_or_init(|| {
            // Runs on a plain thread with its own runtime: the caller may be inside a runtime.
            std::thread::spawn(start)
                .join()
                .expect("test cluster start-up panicked")
        })
        .port
}

fn start() -> Started {
    let env = Env::from_process();
    let bins =
        PgBinaries::find(None, env.get("PATH")).expect("PostgreSQL server binaries (see README)");
    let cluster = LocalCluster::new(
        &cluster_dir(),
        bins,
        ServerOptions {
            durable: false,
            // PostgreSQL's default: every test's database is small.
            shared_buffers: 128 << 20,
        },
    )
    .expect("test cluster");
    let port = cluster.ensure_running().expect("start the test cluster");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(ensure_template(port));
    Started { port }
}

/// Migrates the template database, rebuilding it when the migrations changed. Several test
/// processes may race here (nextest): a file lock serialises them.
async fn ensure_template(port: u16) {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cluster_dir().join("template.lock"))
        .unwrap();
    lock.lock().unwrap();
    let migrations = Migrations::load(&Source::Embedded).await.unwrap();
    let admin = url(port, "postgres");
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(TEMPLATE)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let fresh = if exists {
        let mut t = sqlx::PgConnection::connect(&url(port, TEMPLATE))
            .await
            .unwrap();
        let status = migrate::status(&mut t, &migrations).await.unwrap();
        t.close().await.unwrap();
        status.pending == 0 && !status.has_drift()
    } else {
        false
    };
    if !fresh {
        // Sweep the previous run's leftovers with the stale template.
        let old: Vec<String> =
            sqlx::query_scalar("select datname::text from pg_database where datname like 't\\_%'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        for db in old {
            sqlx::raw_sql(&format!("drop database if exists \"{db}\" with (force)"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        sqlx::raw_sql(&format!("drop database if exists {TEMPLATE} with (force)"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(&format!("create database {TEMPLATE}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let mut t = migrate::connect(&url(port, TEMPLATE), std::time::Duration::from_secs(10))
            .await
            .unwrap();
        let opts = UpOptions {
            target: None,
            dry_run: false,
            lock_timeout: std::time::Duration::from_secs(60),
        };
        migrate::up(&mut t, &migrations, &opts).await.unwrap();
        t.close().await.unwrap();
    }
    conn.close().await.unwrap();
}

pub fn url(port: u16, db: &str) -> String {
    LocalCluster::url(port, db)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A fresh, fully migrated database.
    pub async fn new() -> TestDb {
        Self::create(Some(TEMPLATE)).await
    }

    /// An empty database: no migrations, nothing of Supabase's (roles exist: they are
    /// cluster-wide).
    pub async fn empty() -> TestDb {
        Self::create(None).await
    }

    /// A database name no one has made yet (for a command that creates it), dropped at the
    /// end if something did.
    pub fn absent() -> TestDb {
        let name = Self::fresh_name();
        TestDb {
            url: url(port(), &name),
            name,
        }
    }

    fn fresh_name() -> String {
        format!(
            "t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            &Uuid::new_v4().simple().to_string()[..6]
        )
    }

    async fn create(template: Option<&str>) -> TestDb {
        let port = port();
        let name = Self::fresh_name();
        let mut conn = sqlx::PgConnection::connect(&url(port, "postgres"))
            .await
            .unwrap();
        let sql = match template {
            Some(t) => format!("create database {name} template {t}"),
            None => format!("create database {name} template template0"),
        };
        sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        TestDb {
            url: url(port, &name),
            name,
        }
    }

    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
            .unwrap()
    }

    pub async fn conn(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() || Env::from_process().get("CHATCTL_TEST_KEEP_DB").is_some() {
            eprintln!(
                "kept database {} for inspection: psql {}",
                self.name, self.url
            );
            return;
        }
        let name = self.name.clone();
        let admin = url(port(), "postgres");
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(&format!("drop database if exists {name} with (force)"))
                        .execute(&mut c)
                        .await;
                    let _ = c.close().await;
                }
            })
        })
        .join();
    }
}

/// Creates a user as Supabase Auth would (auth.users + identity) plus its profile.
pub async fn user(conn: &mut sqlx::PgConnection, username: &str) -> Uuid {
    user_named_in(conn, username, "name").await
}

/// [`user`] on a schema whose profile name column is `column` (`display_name` before
/// migration 0012).
pub async fn user_named_in(conn: &mut sqlx::PgConnection, username: &str, column: &str) -> Uuid {
    let id = Uuid::new_v4();
    let email = format!("{username}@example.com");
    sqlx::query(
        "insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
            confirmation_token, recovery_token, email_change_token_new, email_change,
            raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
         values ('00000000-0000-0000-0000-000000000000', $1, 'authenticated', 'authenticated', $2, '', now(),
            '', '', '', '', '{\"provider\":\"email\",\"providers\":[\"email\"]}', '{}', now(), now())",
    )
    .bind(id)
    .bind(&email)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(&format!(
        "insert into public.users (id, username, {column}, email) values ($1, $2, $2, $3)"
    ))
    .bind(id)
    .bind(username)
    .bind(&email)
    .execute(&mut *conn)
    .await
    .unwrap();
    id
}

/// A directory of the shared fixtures (`../shared/fixtures/REL`, beside the project: real
/// data no one here wrote); a test that needs a missing one says which and where it goes.
pub fn fixtures(rel: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(rel);
    assert!(
        dir.is_dir(),
        "the shared fixtures are missing: {} is not a directory. They live beside the \
         project, in ../shared/fixtures (see README, \"Set up\"): put the shared directory \
         next to this checkout",
        dir.display()
    );
    dir
}

/// Runs the chatctl binary with a clean environment: PATH, a HOME of its own, and `env`.
pub fn chatctl(env: &[(&str, &str)]) -> assert_cmd::Command {
    assert_cmd::Command::from_std(chatctl_std(env))
}

/// [`chatctl`] as a plain `std::process::Command`, for a process to spawn and signal.
pub fn chatctl_std(env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("chatctl"));
    cmd.env_clear();
    let process = Env::from_process();
    if let Some(path) = process.get("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("HOME", std::env::temp_dir());
    cmd.current_dir(std::env::temp_dir());
    // No search index unless a test builds one: the default directory (under the shared
    // temporary directory) would be every test database's. A test with a data directory of
    // its own gets the default under it.
    if !env.iter().any(|(k, _)| *k == "CHATCTL_LOCAL__DATA_DIR") {
        static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let none =
            std::env::temp_dir().join(format!("chatctl-no-index-{}-{n}", std::process::id()));
        cmd.env("CHATCTL_SEARCH__INDEX_DIR", none);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// stdout and stderr of a finished command, as text.
pub fn outputs(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A process a test spawned, killed (and reaped) when it is dropped, a panic included: no
/// daemon outlives its test.
pub struct Spawned(Option<std::process::Child>);

impl Spawned {
    /// Waits for the end and collects the output (the process is the caller's then).
    pub fn wait_with_output(mut self) -> std::io::Result<std::process::Output> {
        self.0
            .take()
            .expect("not yet waited for")
            .wait_with_output()
    }
}

impl std::ops::Deref for Spawned {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("not yet waited for")
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("not yet waited for")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0
            && let Ok(None) = child.try_wait()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `Command::spawn` for tests: the child is a [`Spawned`], killed when the test ends.
pub trait SpawnGuarded {
    fn guarded(&mut self) -> Spawned;
}

impl SpawnGuarded for std::process::Command {
    fn guarded(&mut self) -> Spawned {
        Spawned(Some(self.spawn().expect("cannot start the process")))
    }
}

/// How often [`wait_for`] and [`wait_until`] ask again.
const ASK_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Asks `check` until it answers `Ok`, and returns that; fails after `within`, saying what
/// was awaited and the last answer. The way a test waits: for a condition, never for a time.
pub async fn wait_for<T>(
    what: &str,
    within: std::time::Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                std::time::Instant::now() < deadline,
                "waited {within:?} for {what}; last: {last}"
            ),
        }
        tokio::time::sleep(ASK_EVERY).await;
    }
}

/// [`wait_for`] outside an async runtime.
pub fn wait_until<T>(
    what: &str,
    within: std::time::Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) => assert!(
                std::time::Instant::now() < deadline,
                "waited {within:?} for {what}; last: {last}"
            ),
        }
        std::thread::sleep(ASK_EVERY);
    }
}

/// Runs `chatctl ARGS` on a pseudo-terminal `cols` columns wide (util-linux's `script`), as
/// an operator at a terminal runs it, with `input` typed in: its exit code and what the
/// terminal showed (stdout and stderr together, carriage returns dropped).
pub fn on_terminal(
    env: &[(&str, &str)],
    args: &[&str],
    cols: u16,
    input: &str,
) -> (Option<i32>, String) {
    use std::io::Write as _;
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let command = std::iter::once(env!("CARGO_BIN_EXE_chatctl"))
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        &format!("stty cols {cols} rows 50; exec {command}"),
        "/dev/null",
    ])
    .env_remove("DATABASE_URL")
    .env("TERM", "xterm")
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .expect("util-linux `script` runs commands on a terminal");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    (out.status.code(), shown)
}
