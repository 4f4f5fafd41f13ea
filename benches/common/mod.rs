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
            until: chatctl::db::seed::REFERENCE,
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
    sizes_or(args, "100000,1000000")
}

/// [`sizes`] with another default.
pub fn sizes_or(args: &[String], default: &str) -> Vec<u64> {
    flag(args, "--sizes")
        .unwrap_or_else(|| default.into())
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

/// Loads the IRC corpus (../shared/fixtures/corpus/irc-disentanglement-ubuntu, its chat lines
/// `[HH:MM] <nick> text`): one workspace `ubuntu` and channel `ubuntu`, a user per nick, a
/// message per line, `copies` times over (each copy after the one before, as if the channel
/// went on). Returns how many messages.
pub async fn load_irc(pool: &sqlx::PgPool, root: &std::path::Path, copies: u32) -> u64 {
    use std::collections::HashMap;
    use uuid::Uuid;
    let mut lines: Vec<(String, String, chrono::DateTime<chrono::Utc>)> = Vec::new();
    for split in ["train", "dev", "test"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(split))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".raw.txt"))
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let Ok(day) = chrono::NaiveDate::parse_from_str(&name[..10], "%Y-%m-%d") else {
                continue;
            };
            for l in std::fs::read_to_string(&f).unwrap().lines() {
                let Some((time, rest)) = l.strip_prefix('[').and_then(|l| l.split_once("] <"))
                else {
                    continue;
                };
                let Some((nick, text)) = rest.split_once("> ") else {
                    continue;
                };
                let Ok(t) = chrono::NaiveTime::parse_from_str(time, "%H:%M") else {
                    continue;
                };
                lines.push((
                    nick.to_lowercase(),
                    text.to_owned(),
                    day.and_time(t).and_utc(),
                ));
            }
        }
    }
    let mut users: HashMap<String, Uuid> = HashMap::new();
    for (nick, _, _) in &lines {
        let n = users.len();
        users
            .entry(nick.clone())
            .or_insert_with(|| Uuid::from_u128(n as u128 + 1));
    }
    let (ids, names): (Vec<Uuid>, Vec<String>) = users
        .iter()
        .map(|(n, id)| {
            (
                *id,
                format!(
                    "{}-{}",
                    n.replace(|c: char| c.is_whitespace() || c == '@', "_"),
                    id.as_u128()
                ),
            )
        })
        .unzip();
    sqlx::query("insert into auth.users (id) select unnest($1::uuid[])")
        .bind(&ids)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "insert into public.users (id, username) select * from unnest($1::uuid[], $2::text[])",
    )
    .bind(&ids)
    .bind(&names)
    .execute(pool)
    .await
    .unwrap();
    let channel: Uuid = sqlx::query_scalar(
        "with w as (insert into workspaces (slug, name) values ('ubuntu', 'Ubuntu') returning id)
        insert into channels (workspace_id, name) select id, 'ubuntu' from w returning id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let span = lines.last().map(|l| l.2).unwrap() - lines[0].2 + chrono::Duration::days(1);
    for copy in 0..copies {
        let shift = span * copy as i32;
        for chunk in lines.chunks(20_000) {
            let authors: Vec<Uuid> = chunk.iter().map(|(n, _, _)| users[n]).collect();
            let texts: Vec<serde_json::Value> = chunk
                .iter()
                .map(|(_, t, _)| serde_json::json!({ "text": t }))
                .collect();
            let times: Vec<chrono::DateTime<chrono::Utc>> =
                chunk.iter().map(|(_, _, t)| *t + shift).collect();
            sqlx::query(
                "insert into chat (channel_id, user_id, message, created_at)
                     select $1, * from unnest($2::uuid[], $3::jsonb[], $4::timestamptz[])",
            )
            .bind(channel)
            .bind(&authors)
            .bind(&texts)
            .bind(&times)
            .execute(pool)
            .await
            .unwrap();
        }
    }
    sqlx::query("vacuum analyze").execute(pool).await.unwrap();
    lines.len() as u64 * u64::from(copies)
}
