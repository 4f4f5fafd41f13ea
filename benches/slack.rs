//! `chatctl import slack` (issue 24): a generated Slack export (a zip of 1,000 messages per
//! channel over 100 days, 1,000 people, a thread reply in ten, reactions, mentions and
//! files) at two sizes an order of magnitude apart, imported end to end by the release
//! binary into a fresh database (time, messages/s, chatctl's peak RSS), then again (nothing
//! new). Beside it, in the same run, the baseline a script would be: the same messages, one
//! INSERT each (autocommit), on the first `--baseline` of them, into a database holding the
//! same people and channels; and the floor: all of them written by two `INSERT … SELECT` from
//! a staging table in one transaction, the least work PostgreSQL does to add them to the
//! live, indexed table.
//!
//! `cargo bench --bench slack [-- --sizes 100000,1000000] [--runs 3] [--baseline 50000]
//! [--keep DIR]`
//! against DATABASE_URL or the local cluster.
#![allow(clippy::print_stdout)]

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

const PER_CHANNEL: u64 = 1_000;
const PEOPLE: u64 = 1_000;
const DAYS: u64 = 100;
const WORDS: &[&str] = &[
    "deploy",
    "release",
    "review",
    "the",
    "build",
    "is",
    "green",
    "again",
    "can",
    "someone",
    "look",
    "at",
    "this",
    "error",
    "in",
    "staging",
    "we",
    "should",
    "roll",
    "back",
    "merged",
    "thanks",
    "meeting",
    "tomorrow",
    "ticket",
    "customer",
    "reported",
    "latency",
    "database",
    "migration",
    "done",
    "tests",
    "flaky",
    "on",
    "main",
    "please",
    "approve",
    "my",
    "PR",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes = common::sizes(&args);
    let runs: usize = common::flag(&args, "--runs").map_or(3, |v| v.parse().expect("--runs N"));
    let baseline: u64 =
        common::flag(&args, "--baseline").map_or(50_000, |v| v.parse().expect("--baseline N"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // `--keep DIR`: the exports are written there and kept (to profile an import by hand).
    rt.block_on(run(&sizes, runs, baseline, common::flag(&args, "--keep")));
}

/// Writes the export of `messages` messages to `zip`.
fn generate(zip: &Path, messages: u64) {
    let channels = messages.div_ceil(PER_CHANNEL);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let mut w = zip::ZipWriter::new(std::io::BufWriter::new(std::fs::File::create(zip).unwrap()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let user = |i: u64| format!("U{i:08}");
    let users: Vec<Value> = (0..PEOPLE)
        .map(|i| {
            let mut u = json!({"id": user(i), "name": format!("user{i}"),
                               "real_name": format!("Person {i}"), "deleted": false});
            if i % 2 == 0 {
                u["profile"] = json!({"email": format!("user{i}@example.com")});
            }
            u
        })
        .collect();
    w.start_file("users.json", opts).unwrap();
    w.write_all(&serde_json::to_vec(&users).unwrap()).unwrap();
    let mut members_of = Vec::new();
    let list: Vec<Value> = (0..channels)
        .map(|c| {
            let members: Vec<u64> = (0..30).map(|_| rng.random_range(0..PEOPLE)).collect();
            members_of.push(members.clone());
            json!({"id": format!("C{c:08}"), "name": format!("chan-{c}"), "created": "1704067200",
                   "members": members.iter().map(|m| user(*m)).collect::<Vec<_>>(),
                   "topic": {"value": "generated"}, "purpose": {"value": "benchmark"}})
        })
        .collect();
    w.start_file("channels.json", opts).unwrap();
    w.write_all(&serde_json::to_vec(&list).unwrap()).unwrap();
    let start = 1_704_067_200u64; // 2024-01-01
    let mut left = messages;
    for (c, members) in members_of.iter().enumerate() {
        let n = left.min(PER_CHANNEL);
        left -= n;
        let per_day = n.div_ceil(DAYS);
        let mut roots: Vec<String> = Vec::new();
        let mut written = 0;
        for day in 0..DAYS {
            if written == n {
                break;
            }
            let mut msgs = Vec::new();
            for k in 0..per_day.min(n - written) {
                let ts = format!("{}.{:06}", start + day * 86_400 + k * 60, c);
                let author = user(members[rng.random_range(0..members.len())]);
                let words = rng.random_range(4..20);
                let mut text: Vec<String> = (0..words)
                    .map(|_| WORDS[rng.random_range(0..WORDS.len())].to_owned())
                    .collect();
                if rng.random_bool(0.02) {
                    text.insert(0, format!("<@{}>", user(members[0])));
                }
                let mut m = json!({"type": "message", "user": author, "ts": ts,
                                   "text": text.join(" ")});
                if !roots.is_empty() && rng.random_bool(0.1) {
                    m["thread_ts"] = json!(roots[rng.random_range(0..roots.len())]);
                } else {
                    roots.push(ts.clone());
                    if roots.len() > 20 {
                        roots.remove(0);
                    }
                }
                if rng.random_bool(0.05) {
                    m["reactions"] =
                        json!([{"name": "thumbsup", "users": [user(members[1])], "count": 1}]);
                }
                if rng.random_bool(0.01) {
                    m["subtype"] = json!("file_share");
                    m["files"] = json!([{"id": format!("F{c}x{k}x{day}"), "name": "report.pdf",
                                         "mimetype": "application/pdf", "size": 12345}]);
                }
                msgs.push(m);
                written += 1;
            }
            let date = chrono::DateTime::from_timestamp((start + day * 86_400) as i64, 0)
                .unwrap()
                .format("%Y-%m-%d");
            w.start_file(format!("chan-{c}/{date}.json"), opts).unwrap();
            w.write_all(&serde_json::to_vec(&msgs).unwrap()).unwrap();
        }
    }
    w.finish().unwrap();
}

async fn fresh(admin: &str, url: &str, db: &str) -> String {
    common::recreate(admin, db, None).await;
    let url = common::with_db(url, db);
    common::migrate_db(&url).await;
    let mut c = PgConnection::connect(&url).await.unwrap();
    sqlx::query("insert into public.workspaces (slug, name) values ('bench', 'Bench')")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    url
}

fn import(url: &str, zip: &Path, extra: &[&str]) -> (f64, u64, Value) {
    let (secs, peak, out) = common::run_sampled(
        Command::new(env!("CARGO_BIN_EXE_chatctl"))
            .args([
                "import",
                "slack",
                zip.to_str().unwrap(),
                "-w",
                "bench",
                "-o",
                "json",
            ])
            .args(["--rejects", "/dev/null", "--email-domain", "bench.invalid"])
            .args(extra)
            .env("DATABASE_URL", url)
            .env("CHATCTL_SEARCH__INDEX_DIR", "/nonexistent/chatctl-bench"),
    );
    (secs, peak, serde_json::from_str(&out).unwrap())
}

/// A message as the baseline and the floor write it.
struct Row {
    id: Uuid,
    channel: Uuid,
    user: Uuid,
    parent: Option<Uuid>,
    message: Value,
    at: chrono::DateTime<chrono::Utc>,
}

/// The first `limit` messages of the export, with our ids (as the import derives them), for
/// a database holding its people and channels.
async fn rows(url: &str, zip: &Path, limit: u64) -> Vec<Row> {
    let mut c = PgConnection::connect(url).await.unwrap();
    let ws: Uuid = sqlx::query_scalar("select id from public.workspaces where slug = 'bench'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let users: std::collections::HashMap<String, Uuid> = sqlx::query_as::<_, (String, Uuid)>(
        "select external_id, id from public.users where external_source = 'slack'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let channels: std::collections::HashMap<String, Uuid> =
        sqlx::query_as::<_, (String, Uuid)>("select name, id from public.channels")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let mut z = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let names: Vec<String> = z
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .filter(|n| n.contains('/'))
        .collect();
    let mut out = Vec::new();
    'files: for name in names {
        let (folder, _) = name.split_once('/').unwrap();
        let channel = channels[folder];
        let slack_id = format!(
            "C{:08}",
            folder.trim_start_matches("chan-").parse::<u64>().unwrap()
        );
        let mut text = String::new();
        z.by_name(&name).unwrap().read_to_string(&mut text).unwrap();
        let msgs: Vec<Value> = serde_json::from_str(&text).unwrap();
        for m in msgs {
            if out.len() as u64 == limit {
                break 'files;
            }
            let ts = m["ts"].as_str().unwrap();
            out.push(Row {
                id: chatctl::slack::read::message_id(ws, &slack_id, ts),
                channel,
                user: users[m["user"].as_str().unwrap()],
                parent: m["thread_ts"]
                    .as_str()
                    .map(|t| chatctl::slack::read::message_id(ws, &slack_id, t)),
                message: json!({"text": m["text"], "imported": {"from": "slack", "ts": ts}}),
                at: chrono::DateTime::from_timestamp_micros(
                    chatctl::slack::model::ts_micros(ts).unwrap(),
                )
                .unwrap(),
            });
        }
    }
    out
}

/// The baseline: `rows`, one autocommitted INSERT each. Seconds.
async fn one_insert_each(url: &str, rows: &[Row]) -> f64 {
    let mut c = PgConnection::connect(url).await.unwrap();
    let started = Instant::now();
    for r in rows {
        sqlx::query(
            "insert into public.chat (id, channel_id, user_id, parent_id, message, created_at, updated_at)
             values ($1, $2, $3, $4, $5, $6, $6) on conflict (id) do nothing",
        )
        .bind(r.id)
        .bind(r.channel)
        .bind(r.user)
        .bind(r.parent)
        .bind(&r.message)
        .bind(r.at)
        .execute(&mut c)
        .await
        .unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// The floor: `rows` COPYed into a staging table (not timed), then written by two
/// `INSERT … SELECT` (threads' first messages, then replies) in one transaction, every index,
/// trigger and foreign key of `public.chat` in place: the least work PostgreSQL does to add
/// these rows to the live table. Seconds.
async fn floor(url: &str, rows: &[Row]) -> f64 {
    use std::fmt::Write as _;
    let mut c = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(
        "create unlogged table floor_rows (id uuid, channel_id uuid, user_id uuid, parent_id uuid,
             message jsonb, created_at timestamptz)",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let mut copy = chatctl::db::bulk::CopyStream::open(&mut c, "copy floor_rows from stdin")
        .await
        .unwrap();
    for r in rows {
        let _ = write!(copy.buf, "{}\t{}\t{}\t", r.id, r.channel, r.user);
        match r.parent {
            Some(p) => {
                let _ = write!(copy.buf, "{p}\t");
            }
            None => copy.buf.push_str("\\N\t"),
        }
        chatctl::db::bulk::esc(&mut copy.buf, &r.message.to_string());
        let _ = write!(copy.buf, "\t{}", chatctl::db::bulk::ts(r.at));
        copy.row_done().await.unwrap();
    }
    copy.finish().await.unwrap();
    sqlx::raw_sql("analyze floor_rows")
        .execute(&mut c)
        .await
        .unwrap();
    let started = Instant::now();
    sqlx::raw_sql(
        "begin;
         insert into public.chat (id, channel_id, user_id, parent_id, message, created_at, updated_at)
         select id, channel_id, user_id, parent_id, message, created_at, created_at from floor_rows
          where parent_id is null order by channel_id, created_at;
         insert into public.chat (id, channel_id, user_id, parent_id, message, created_at, updated_at)
         select id, channel_id, user_id, parent_id, message, created_at, created_at from floor_rows
          where parent_id is not null order by channel_id, created_at;
         commit;",
    )
    .execute(&mut c)
    .await
    .unwrap();
    started.elapsed().as_secs_f64()
}

async fn run(sizes: &[u64], runs: usize, baseline: u64, keep: Option<String>) {
    let (_config, url) = common::target().await;
    let admin = common::with_db(&url, "postgres");
    let dir = tempfile::tempdir().unwrap();
    let dir = keep.map_or(dir.path().to_owned(), std::path::PathBuf::from);
    println!(
        "| messages | channels | zip | import (median of {runs}) | messages/s | peak RSS | again (nothing new) | floor | one INSERT each | import / one INSERT each |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        let zip = dir.join(format!("export-{n}.zip"));
        generate(&zip, n);
        let zip_mb = std::fs::metadata(&zip).unwrap().len() as f64 / 1048576.0;
        let mut times = Vec::new();
        let mut peaks = Vec::new();
        let mut again = Duration::ZERO;
        for r in 0..runs {
            let db = format!("bench_slack_{n}");
            let target = fresh(&admin, &url, &db).await;
            let (secs, peak, report) = import(&target, &zip, &[]);
            assert_eq!(report["messages"]["new"].as_u64(), Some(n), "{report}");
            assert_eq!(report["rejects"], 0, "{report}");
            times.push(Duration::from_secs_f64(secs));
            peaks.push(peak);
            if r == 0 {
                let (secs, _, report) = import(&target, &zip, &[]);
                assert_eq!(report["messages"]["existing"].as_u64(), Some(n), "{report}");
                again = Duration::from_secs_f64(secs);
            }
            common::drop_db(&admin, &db).await;
        }
        let t = common::median(&mut times);
        peaks.sort();
        let peak = peaks[peaks.len() / 2];
        // The baseline and the floor, each in a database holding the same people and
        // channels (the import with no messages: --since after the last).
        let db = format!("bench_slack_{n}_baseline");
        let target = fresh(&admin, &url, &db).await;
        import(&target, &zip, &["--since", "2030-01-01"]);
        let some = rows(&target, &zip, baseline.min(n)).await;
        let done = some.len();
        let secs = one_insert_each(&target, &some).await;
        drop(some);
        common::drop_db(&admin, &db).await;
        let target = fresh(&admin, &url, &db).await;
        import(&target, &zip, &["--since", "2030-01-01"]);
        let all = rows(&target, &zip, n).await;
        let floor_secs = floor(&target, &all).await;
        drop(all);
        common::drop_db(&admin, &db).await;
        let rate = n as f64 / t.as_secs_f64();
        let base_rate = done as f64 / secs;
        println!(
            "| {n} | {} | {zip_mb:.1} MiB | {:.2} s | {rate:.0} | {:.0} MiB | {:.2} s | {floor_secs:.2} s ({:.0}/s) | {base_rate:.0}/s ({done} messages) | {:.1}x |",
            n.div_ceil(PER_CHANNEL),
            t.as_secs_f64(),
            peak as f64 / 1024.0,
            again.as_secs_f64(),
            n as f64 / floor_secs,
            rate / base_rate
        );
    }
}
