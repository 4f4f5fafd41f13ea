//! Benchmark: a channel digest (`chatctl summarize`, the offline engine, release build) over
//! the first 10,000, 100,000 and 1,000,000 messages of one channel, on the `dev seed` data and
//! on the Ubuntu IRC corpus (real chat, ../shared/fixtures/corpus/, repeated after itself to
//! reach a million lines): wall time and the process's peak RSS at each size, beside what
//! the engine took before it ranked long windows part by part (issue 21's figures).
//!
//! `cargo bench --bench digests -- [--sizes 10000,100000,1000000] [--runs 3]`. Uses
//! DATABASE_URL, or the local cluster under .chatctl/.
#![allow(clippy::print_stdout)]

mod common;

use std::time::Duration;

use common::{drop_db, median, recreate, with_db};

/// Issue 21's measurements of the engine before: messages, seconds, peak RSS in MB.
const BEFORE: &[(u64, f64, u64)] = &[
    (5_000, 0.13, 31),
    (10_000, 0.65, 75),
    (20_000, 2.3, 236),
    (40_000, 8.5, 823),
    (67_832, 23.6, 2_200),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes = common::sizes_or(&args, "10000,100000,1000000");
    let runs: usize = common::flag(&args, "--runs")
        .map(|r| r.parse().expect("--runs N"))
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&sizes, runs));
}

/// The `--from`/`--to` of the channel's first `n` messages.
async fn window(pool: &sqlx::PgPool, channel: &str, n: u64) -> (String, String) {
    sqlx::query_as(
        "with c as (select id from channels where name = $1)
         select to_char((select min(created_at) from chat where channel_id = (select id from c)) at time zone 'UTC',
                        'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                to_char(((select created_at from chat where channel_id = (select id from c)
                           order by created_at, id offset $2 - 1 limit 1) + interval '1 microsecond') at time zone 'UTC',
                        'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .bind(channel)
    .bind(n as i64)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn run(sizes: &[u64], runs: usize) {
    let (config, target_url) = common::target().await;
    let admin = with_db(&target_url, "postgres");
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let chatctl = env!("CARGO_BIN_EXE_chatctl");
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/corpus/irc-disentanglement-ubuntu");
    let mut table = Vec::new();
    for source in ["seed", "irc"] {
        let db = format!("chatctl_bench_digests_{source}");
        recreate(&admin, &db, None).await;
        let url = with_db(&target_url, &db);
        common::migrate_db(&url).await;
        let pool = chatctl::db::pool(&url, &config).await.unwrap();
        let (workspace, channel) = if source == "seed" {
            chatctl::db::seed::seed(
                &pool,
                &chatctl::db::seed::SeedOptions {
                    until: chatctl::db::seed::REFERENCE,
                    users: 2_000,
                    channels: 1,
                    messages: largest,
                    workspaces: 1,
                    seed: 42,
                    progress: false,
                },
            )
            .await
            .unwrap();
            sqlx::raw_sql("vacuum analyze")
                .execute(&pool)
                .await
                .unwrap();
            ("seed-0", "general")
        } else {
            // 221,597 chat lines a copy.
            let copies = largest.div_ceil(221_597).max(1) as u32;
            common::load_irc(&pool, &corpus, copies).await;
            ("ubuntu", "ubuntu")
        };
        for &n in sizes {
            let (from, to) = window(&pool, channel, n).await;
            let (mut times, mut peaks, mut got) = (Vec::new(), Vec::new(), 0);
            for _ in 0..runs {
                let (secs, peak, out) = common::run_sampled(
                    std::process::Command::new(chatctl)
                        .args(["summarize", "-w", workspace, "--channel", channel])
                        .args(["--from", &from, "--to", &to, "--format", "json"])
                        .env("DATABASE_URL", &url),
                );
                // The IRC corpus has minutes only: the window ends with the minute of the n-th
                // line, and holds the lines of that minute too.
                let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
                got = summary["messages"].as_u64().unwrap();
                assert!(
                    (n..n + 1_000).contains(&got),
                    "the window holds {got} messages, not about {n}"
                );
                times.push(Duration::from_secs_f64(secs));
                peaks.push(peak);
            }
            peaks.sort();
            let (t, rss) = (
                median(&mut times).as_secs_f64(),
                peaks[peaks.len() / 2] / 1024,
            );
            println!("{source} {got}: {t:.2} s, peak RSS {rss} MiB");
            table.push(format!("| {source} | {got} | {t:.2} s | {rss} MiB |"));
        }
        pool.close().await;
        drop_db(&admin, &db).await;
    }
    println!("\n| data | messages | time (median of {runs}) | peak RSS |");
    println!("| --- | ---: | ---: | ---: |");
    for l in table {
        println!("{l}");
    }
    println!(
        "\nbefore (issue 21, the seed):\n\n| messages | time | peak RSS |\n| ---: | ---: | ---: |"
    );
    for (n, t, mb) in BEFORE {
        println!("| {n} | {t} s | {mb} MB |");
    }
}
