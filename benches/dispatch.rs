//! Benchmark: bot dispatch latency over LISTEN/NOTIFY (message committed → handler started,
//! i.e. the claim taken; no LLM) at a given message rate, and the daemon's RSS idle and
//! loaded. The daemon is the real `chatctl bots run` process (release build).
//!
//! `cargo build --release && cargo bench --bench dispatch -- [RATE...] [--seconds S]`
//! (defaults: 1000 5000, 5 s each). Uses DATABASE_URL or the local cluster.
#![allow(clippy::print_stdout)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chatctl::provision::{self, Actor, PlanOptions, spec};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnection, PgPoolOptions};

const BOT: &str = "name: summarybot\ntriggers:\n  - mention: { reply: 'ok' }\nlimits: { per_channel_per_hour: 100000000, per_thread_per_hour: 100000000 }\n";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(5);
    let mut rates: Vec<u64> = args
        .iter()
        .filter_map(|a| a.parse().ok())
        .filter(|r| *r != seconds)
        .collect();
    if rates.is_empty() {
        rates = vec![1000, 5000];
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&rates, seconds));
}

fn rss_kb(child: &Child) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn run(rates: &[u64], seconds: u64) {
    let (_, target_url) = common::target().await;
    let mut u = url::Url::parse(&target_url).unwrap();
    u.set_path("postgres");
    let admin = u.to_string();
    u.set_path("chatctl_bench_dispatch");
    let url = u.to_string();
    common::recreate(&admin, "chatctl_bench_dispatch", None).await;
    common::migrate_db(&url).await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let files =
        spec::read(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("config/workspace.example.yaml")])
            .unwrap();
    let plan = provision::plan(&mut conn, &files, &PlanOptions { prune: false })
        .await
        .unwrap();
    provision::apply::apply(
        &mut conn,
        &plan.changes,
        &Actor {
            operator: "bench".into(),
            command: "bench".into(),
        },
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summarybot.yaml"), BOT).unwrap();
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/chatctl");
    let mut daemon = Command::new(&bin)
        .args(["bots", "run", "-q", "--metrics", "127.0.0.1:0", "--bots"])
        .arg(dir.path())
        .env("DATABASE_URL", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("build the release binary first: cargo build --release");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kb(&daemon);
    println!("daemon idle RSS: {:.1} MB", idle as f64 / 1024.0);

    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .unwrap();
    let (channel, user): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "select c.id, u.id from channels c, users u where c.name = 'general' and u.email = 'ada@example.com'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    println!("\n| rate (msg/s) | sent | handled | p50 | p99 | max | daemon RSS |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for &rate in rates {
        let since: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select now()")
            .fetch_one(&pool)
            .await
            .unwrap();
        let start = Instant::now();
        let total = rate * seconds;
        // 8 writers, each paced to rate/8.
        let mut tasks = Vec::new();
        for w in 0..8u64 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let per = total / 8;
                let interval = Duration::from_secs_f64(8.0 / rate as f64);
                let t0 = Instant::now();
                for i in 0..per {
                    let due = t0 + interval.mul_f64(i as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                    sqlx::query("insert into chat (channel_id, user_id, message) values ($1, $2, jsonb_build_object('text', '@summarybot ping ' || $3::text))")
                        .bind(channel)
                        .bind(user)
                        .bind(format!("{w}-{i}"))
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let sent_in = start.elapsed();
        let mut loaded = rss_kb(&daemon);
        let deadline = Instant::now() + Duration::from_secs(60);
        let sent = (total / 8) * 8;
        loop {
            let n: i64 = sqlx::query_scalar(
                "select count(*) from chatctl.bot_claims b join chat c on c.id = b.message_id where c.created_at >= $1",
            )
            .bind(since)
            .fetch_one(&pool)
            .await
            .unwrap();
            loaded = loaded.max(rss_kb(&daemon));
            if n as u64 >= sent || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (handled, p50, p99, max): (i64, f64, f64, f64) = sqlx::query_as(
            "select count(*),
                    coalesce(percentile_cont(0.5) within group (order by l), 0),
                    coalesce(percentile_cont(0.99) within group (order by l), 0),
                    coalesce(max(l), 0)::float8
               from (select (extract(epoch from (b.claimed_at - c.created_at)) * 1000)::float8 as l
                       from chatctl.bot_claims b join chat c on c.id = b.message_id where c.created_at >= $1) x",
        )
        .bind(since)
        .fetch_one(&pool)
        .await
        .unwrap();
        println!(
            "| {rate} (sent at {:.0}/s) | {sent} | {handled} | {p50:.1} ms | {p99:.1} ms | {max:.1} ms | {:.1} MB |",
            sent as f64 / sent_in.as_secs_f64(),
            loaded as f64 / 1024.0
        );
        sqlx::raw_sql("delete from chat where parent_id is not null")
            .execute(&pool)
            .await
            .unwrap();
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    common::drop_db(&admin, "chatctl_bench_dispatch").await;
}
