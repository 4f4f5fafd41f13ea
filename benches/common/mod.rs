//! Helpers the benchmark programs share: a database of their own in the configured server
//! (DATABASE_URL, or the local cluster), migrated with chatctl's own runner.
#![allow(dead_code)]

use std::time::Duration;

use chatctl::config::{Config, Env, Overrides};
use chatctl::db::migrate::{self, Migrations, Source, UpOptions};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// The configuration and the server's URL, started on demand.
pub async fn target() -> (Config, String) {
    let env = Env::from_process();
    let config = Config::load(
        &env,
        &Overrides::default(),
        &std::env::current_dir().unwrap(),
    )
    .unwrap();
    let url = chatctl::db::target(&config).await.unwrap().url;
    (config, url)
}

/// `url` pointing at database `db`.
pub fn with_db(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(db);
    u.to_string()
}

/// Drops and creates `db` (from `template` when given) through the maintenance database.
/// A template must have no other session: a closed pool's may linger a moment, and after a
/// big load an autovacuum worker may be on it, so they are ended first.
pub async fn recreate(admin: &str, db: &str, template: Option<&str>) {
    drop_db(admin, db).await;
    let mut c = PgConnection::connect(admin).await.unwrap();
    if let Some(t) = template {
        sqlx::query(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
        )
        .bind(t)
        .execute(&mut c)
        .await
        .unwrap();
    }
    let sql = match template {
        Some(t) => format!("create database {db} template {t}"),
        None => format!("create database {db}"),
    };
    sqlx::raw_sql(&sql).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

pub async fn drop_db(admin: &str, db: &str) {
    let mut c = PgConnection::connect(admin).await.unwrap();
    sqlx::raw_sql(&format!("drop database if exists {db} with (force)"))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
}

/// Applies the embedded migrations to `url`.
pub async fn migrate_db(url: &str) {
    let m = Migrations::load(&Source::Embedded).await.unwrap();
    let mut c = migrate::connect(url, Duration::from_secs(10))
        .await
        .unwrap();
    migrate::up(
        &mut c,
        &m,
        &UpOptions {
            target: None,
            dry_run: false,
            lock_timeout: Duration::from_secs(60),
        },
    )
    .await
    .unwrap();
    c.close().await.unwrap();
}

/// Seeds `pool` with `dev seed` data of 10,000 users and 2,000 channels (seed 42) over
/// `workspaces`, with `messages` messages, then `vacuum analyze`.
pub async fn seed_10k(pool: &sqlx::PgPool, messages: u64, workspaces: u32) {
    chatctl::db::seed::seed(
        pool,
        &chatctl::db::seed::SeedOptions {
            users: 10_000,
            channels: 2_000,
            messages,
            workspaces,
            seed: 42,
            progress: false,
        },
    )
    .await
    .unwrap();
    sqlx::raw_sql("vacuum analyze").execute(pool).await.unwrap();
}

/// The median of some durations.
pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The value after `--name` on the bench's command line.
pub fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// `--sizes N,N` (default 100,000 and 1,000,000): the sizes a benchmark measures, an order
/// of magnitude apart.
pub fn sizes(args: &[String]) -> Vec<u64> {
    flag(args, "--sizes")
        .unwrap_or_else(|| "100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("--sizes N,N"))
        .collect()
}

/// Runs `cmd` to the end, sampling its peak RSS (`VmHWM`, every 20 ms): the wall time in
/// seconds, the peak in KiB, and its stdout. Panics when it fails.
pub fn run_sampled(cmd: &mut std::process::Command) -> (f64, u64, String) {
    use std::process::Stdio;
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        {
            peak = peak.max(kb);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = started.elapsed().as_secs_f64();
    let out = reader.join().unwrap();
    let err = errors.join().unwrap();
    assert!(exit.success(), "{cmd:?} failed: {err}");
    (secs, peak, out)
}
