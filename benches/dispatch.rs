//! Benchmark: bot dispatch latency over LISTEN/NOTIFY at a given message rate (no LLM: the
//! handler posts a template reply), and the daemon's RSS idle and loaded. The daemon is the
//! real `chatctl bots run` process (release build).
//!
//! Two latencies per answered message, both from the moment the mention was committed (its
//! transaction's commit timestamp, `pg_xact_commit_timestamp`: the server needs
//! `track_commit_timestamp = on`): "claimed", to the commit of the bot's claim (the handler
//! decided, and no other replica will act), and "posted", to the commit of the reply (the
//! reply is there for everyone). A template reply is claimed and posted in one statement,
//! so the two coincide here; an AI reply claims first. (`claimed_at` is its transaction's
//! start, which can precede the mention's commit when a sweep's transaction began earlier.)
//! All on the server's clock, so neither can be negative; one that is stops the benchmark.
//! Every table row says the writers' batching and the share of mentions.
//! `--async-commit` runs the writers with `synchronous_commit = off`: every NOTIFY serialises
//! committing writers on one lock, so with fsync'd commits the writers cannot go faster than
//! one fsync at a time.
//!
//! `--batch N` has each writer insert N messages per transaction (one multi-row INSERT): on 2
//! cores, one message per transaction cannot reach 5,000/s, even with the trigger off.
//! `--mention-every K` makes one message in K mention the bot (1: every message is answered).
//! `--runs N` repeats each rate and prints the median p50 and p99 over the runs.
//!
//! `cargo build --release && cargo bench --bench dispatch -- [RATE...] [--seconds S]
//! [--batch N] [--mention-every K] [--runs N] [--async-commit] [--no-daemon]`
//! (defaults: 1000 5000, 5 s each). Uses DATABASE_URL or the local cluster. The daemon's log
//! is kept in target/bench-dispatch-daemon.log.
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
    let flag = |name: &str| args.iter().position(|a| a == name);
    // A flag's number, at least 1.
    let value = |name: &str, default: u64| {
        flag(name)
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(default)
            .max(1)
    };
    // Rates are the bare numbers that are no flag's value.
    let mut rates: Vec<u64> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || !args[i - 1].starts_with("--"))
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    if rates.is_empty() {
        rates = vec![1000, 5000];
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = Opts {
        seconds: value("--seconds", 5),
        async_commit: flag("--async-commit").is_some(),
        daemon: flag("--no-daemon").is_none(),
        mention_every: value("--mention-every", 1),
        runs: value("--runs", 1),
        batch: value("--batch", 1),
    };
    rt.block_on(run(&rates, &opts));
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

struct Opts {
    seconds: u64,
    async_commit: bool,
    /// Run the daemon (else: the writers alone, the trigger off: their ceiling).
    daemon: bool,
    /// One message in this many mentions the bot (1: every message is answered).
    mention_every: u64,
    /// Runs per rate (the medians over runs are printed when more than one).
    runs: u64,
    /// Messages per writer transaction (one multi-row INSERT): one message per transaction
    /// cannot reach 5,000/s on 2 cores even without the NOTIFY trigger.
    batch: u64,
}

async fn run(rates: &[u64], opts: &Opts) {
    let (seconds, async_commit) = (opts.seconds, opts.async_commit);
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

    // Commit times are what the latencies start and end at.
    let tracked: String = sqlx::query_scalar("show track_commit_timestamp")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        tracked, "on",
        "the latencies are measured between commits: `alter system set track_commit_timestamp = on` and restart the server (`chatctl dev down && chatctl dev up`)"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summarybot.yaml"), BOT).unwrap();
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/chatctl");
    let mut daemon = Command::new(if opts.daemon {
        bin.as_path()
    } else {
        Path::new("sleep")
    })
    .args(if opts.daemon {
        vec!["bots", "run", "--metrics", "127.0.0.1:0", "--bots"]
    } else {
        vec!["3600"]
    })
    .args(opts.daemon.then(|| dir.path()))
    .env("DATABASE_URL", &url)
    .stdout(Stdio::null())
    // Its log (slow statements, errors) is kept to read after a bad run.
    .stderr(
        std::fs::File::create(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-dispatch-daemon.log"),
        )
        .unwrap(),
    )
    .spawn()
    .expect("build the release binary first: cargo build --release");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_kb(&daemon);
    println!("daemon idle RSS: {:.1} MB", idle as f64 / 1024.0);

    let mut writer_options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    if async_commit {
        writer_options = writer_options.options([("synchronous_commit", "off")]);
    }
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(writer_options)
        .await
        .unwrap();
    let (channel, user): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "select c.id, u.id from channels c, users u where c.name = 'general' and u.email = 'ada@example.com'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    println!(
        "\nwriters commit with synchronous_commit = {}, {} message(s) per transaction; {}; one message in {} mentions the bot",
        if async_commit { "off" } else { "on" },
        opts.batch,
        if opts.daemon {
            "daemon running"
        } else {
            "no daemon, NOTIFY trigger off"
        },
        opts.mention_every
    );
    println!(
        "\n| rate (msg/s) | per transaction | mentions | sent | claimed | claimed p50 | claimed p99 | posted p50 | posted p99 | posted max | daemon RSS |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    // Per rate: each run's claimed p50 and p99 and posted p99, for the medians over runs.
    let mut results: Vec<(u64, f64, f64, f64)> = Vec::new();
    for (rate, _run) in rates
        .iter()
        .flat_map(|&r| (0..opts.runs).map(move |k| (r, k)))
    {
        let since: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select now()")
            .fetch_one(&pool)
            .await
            .unwrap();
        let start = Instant::now();
        let total = rate * seconds;
        // 8 writers, each paced to rate/8; each message's commit time is when its commit was
        // acknowledged (the same machine clock the database's claim times use).
        let mut tasks = Vec::new();
        let mention_every = opts.mention_every;
        let batch = opts.batch;
        for w in 0..8u64 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let per = total / 8 / batch;
                let interval = Duration::from_secs_f64(8.0 * batch as f64 / rate as f64);
                let t0 = Instant::now();
                let mut committed = Vec::with_capacity((per * batch) as usize);
                for i in 0..per {
                    let due = t0 + interval.mul_f64(i as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                    let texts: Vec<String> = (0..batch)
                        .map(|j| {
                            let k = (w * per + i) * batch + j;
                            if k.is_multiple_of(mention_every) {
                                format!("@summarybot ping {k}")
                            } else {
                                format!("just chatting {k}")
                            }
                        })
                        .collect();
                    // Each message with its transaction's id: a mention's row is rewritten when
                    // it is answered (its reply count), so its own xmin cannot tell when it
                    // was committed; the writer's transaction id can.
                    let written: Vec<(uuid::Uuid, i64)> = sqlx::query_as("insert into chat (channel_id, user_id, message) select $1, $2, jsonb_build_object('text', t) from unnest($3::text[]) t returning id, pg_current_xact_id()::text::bigint")
                        .bind(channel)
                        .bind(user)
                        .bind(texts)
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                    committed.extend(written);
                }
                committed
            }));
        }
        let mut committed: Vec<(uuid::Uuid, i64)> = Vec::new();
        for t in tasks {
            committed.extend(t.await.unwrap());
        }
        let sent_in = start.elapsed();
        let mut loaded = rss_kb(&daemon);
        let deadline = Instant::now() + Duration::from_secs(60);
        let sent = committed.len() as u64;
        let expected = if opts.daemon {
            (0..sent)
                .filter(|k| k.is_multiple_of(opts.mention_every))
                .count() as u64
        } else {
            0
        };
        loop {
            let n: i64 = sqlx::query_scalar(
                "select count(*) from chatctl.bot_claims b join chat c on c.id = b.message_id where c.created_at >= $1",
            )
            .bind(since)
            .fetch_one(&pool)
            .await
            .unwrap();
            loaded = loaded.max(rss_kb(&daemon));
            if n as u64 >= expected || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Each answered mention: its commit, its claim, its reply's commit.
        type At = chrono::DateTime<chrono::Utc>;
        let (ids, xids): (Vec<uuid::Uuid>, Vec<i64>) = committed.iter().copied().unzip();
        let answered: Vec<(At, At, Option<At>)> = sqlx::query_as(
            "select pg_xact_commit_timestamp(((w.x % 4294967296)::text)::xid),
                    pg_xact_commit_timestamp(b.xmin), pg_xact_commit_timestamp(r.xmin)
               from unnest($1::uuid[], $2::bigint[]) w(id, x)
               join chatctl.bot_claims b on b.message_id = w.id
               left join chat r on r.id = b.reply_id",
        )
        .bind(&ids)
        .bind(&xids)
        .fetch_all(&pool)
        .await
        .unwrap();
        let ms = |what: &str, d: chrono::TimeDelta| {
            let us = d.num_microseconds().unwrap();
            assert!(
                us >= 0,
                "a negative {what} latency ({us} µs): the measure is wrong"
            );
            us as f64 / 1000.0
        };
        let mut claimed: Vec<f64> = answered
            .iter()
            .map(|(committed, at, _)| ms("claim", *at - *committed))
            .collect();
        let mut posted: Vec<f64> = answered
            .iter()
            .filter_map(|(committed, _, reply)| Some(ms("posting", (*reply)? - *committed)))
            .collect();
        assert_eq!(posted.len(), answered.len(), "every claim has its reply");
        let claims = answered;
        claimed.sort_by(f64::total_cmp);
        posted.sort_by(f64::total_cmp);
        let pct = |v: &[f64], q: f64| {
            v.get(((v.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "| {rate} | {} | 1 in {} | {sent} at {:.0}/s | {}/{expected} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} MB |",
            opts.batch,
            opts.mention_every,
            sent as f64 / sent_in.as_secs_f64(),
            claims.len(),
            pct(&claimed, 0.5),
            pct(&claimed, 0.99),
            pct(&posted, 0.5),
            pct(&posted, 0.99),
            posted.last().copied().unwrap_or(0.0),
            loaded as f64 / 1024.0
        );
        results.push((
            rate,
            pct(&claimed, 0.5),
            pct(&claimed, 0.99),
            pct(&posted, 0.99),
        ));
        sqlx::raw_sql("delete from chat where parent_id is not null")
            .execute(&pool)
            .await
            .unwrap();
    }
    if opts.runs > 1 {
        println!(
            "\n| rate (msg/s) | per transaction | mentions | runs | median claimed p50 | median claimed p99 (range) | median posted p99 (range) |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for &rate in rates {
            let of = |pick: fn(&(u64, f64, f64, f64)) -> f64| {
                let mut v: Vec<f64> = results.iter().filter(|r| r.0 == rate).map(pick).collect();
                v.sort_by(f64::total_cmp);
                v
            };
            let (p50, p99, posted) = (of(|r| r.1), of(|r| r.2), of(|r| r.3));
            println!(
                "| {rate} | {} | 1 in {} | {} | {:.1} ms | {:.1} ms ({:.1}–{:.1}) | {:.1} ms ({:.1}–{:.1}) |",
                opts.batch,
                opts.mention_every,
                p99.len(),
                p50[p50.len() / 2],
                p99[p99.len() / 2],
                p99[0],
                p99[p99.len() - 1],
                posted[posted.len() / 2],
                posted[0],
                posted[posted.len() - 1]
            );
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    common::drop_db(&admin, "chatctl_bench_dispatch").await;
}
