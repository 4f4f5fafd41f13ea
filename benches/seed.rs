//! Benchmark: `chatctl dev seed` (generator + COPY + deferred indexes) against the baseline a
//! user would otherwise write: the same messages inserted one `INSERT` at a time (prepared,
//! one transaction). Same run, same machine, same data.
//!
//! `cargo bench --bench seed -- [MESSAGES] [BASELINE_MESSAGES] [RUNS]`
//! (defaults 1000000 100000 3). Uses DATABASE_URL, or the local cluster under .chatctl/.
#![allow(clippy::print_stdout)]

mod common;

use common::{drop_db, median, migrate_db, recreate, with_db};

use std::time::Instant;

use chatctl::db::seed::{self, SeedOptions};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// A message as the baseline inserts it.
type MessageRow = (
    uuid::Uuid,
    uuid::Uuid,
    uuid::Uuid,
    Option<uuid::Uuid>,
    serde_json::Value,
    chrono::DateTime<chrono::Utc>,
);

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let messages = args.first().copied().unwrap_or(1_000_000);
    let baseline = args.get(1).copied().unwrap_or(100_000);
    let runs = args.get(2).copied().unwrap_or(3) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(messages, baseline, runs));
}

async fn run(messages: u64, baseline: u64, runs: usize) {
    let (config, target_url) = common::target().await;
    let admin = with_db(&target_url, "postgres");
    let users = (messages / 100).clamp(200, 10_000) as u32;
    let channels = (users / 5).max(40);

    let mut copy_times = Vec::new();
    let mut insert_times = Vec::new();
    for run in 0..runs {
        let db = "chatctl_bench_copy";
        recreate(&admin, db, None).await;
        migrate_db(&with_db(&target_url, db)).await;
        let pool = chatctl::db::pool(&with_db(&target_url, db), &config)
            .await
            .unwrap();
        let opts = SeedOptions {
            until: chatctl::db::seed::REFERENCE,
            users,
            channels,
            messages,
            workspaces: 1,
            seed: 42,
            progress: false,
        };
        let start = Instant::now();
        seed::seed(&pool, &opts).await.unwrap();
        let copy = start.elapsed();
        pool.close().await;
        copy_times.push(copy);

        // Baseline: the first BASELINE messages of the same data, one INSERT each.
        let base = "chatctl_bench_insert";
        recreate(&admin, base, Some(db)).await;
        let mut src = PgConnection::connect(&with_db(&target_url, db))
            .await
            .unwrap();
        let rows: Vec<MessageRow> =
            sqlx::query_as("select id, channel_id, user_id, parent_id, message, created_at from chat order by created_at limit $1")
                .bind(baseline as i64)
                .fetch_all(&mut src)
                .await
                .unwrap();
        let mut dst = PgConnection::connect(&with_db(&target_url, base))
            .await
            .unwrap();
        sqlx::raw_sql("truncate chat, emojis cascade")
            .execute(&mut dst)
            .await
            .unwrap();
        let start = Instant::now();
        let mut tx = dst.begin().await.unwrap();
        for (id, ch, user, parent, message, at) in &rows {
            sqlx::query("insert into chat (id, channel_id, user_id, parent_id, message, created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $6)")
                .bind(id).bind(ch).bind(user).bind(parent).bind(message).bind(at)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let insert = start.elapsed();
        insert_times.push(insert);
        // Checked as the seed's load is: the same messages, whole, in threads that add up.
        let digest = "select count(*), md5(string_agg(concat_ws('|', id, channel_id, user_id, parent_id, message::text, created_at), ',' order by id))
                        from chat where id = any($1)";
        let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.0).collect();
        let (a, b): ((i64, String), (i64, String)) = (
            sqlx::query_as(digest)
                .bind(&ids)
                .fetch_one(&mut src)
                .await
                .unwrap(),
            sqlx::query_as(digest)
                .bind(&ids)
                .fetch_one(&mut dst)
                .await
                .unwrap(),
        );
        assert_eq!(
            (a.0, &a.1),
            (rows.len() as i64, &b.1),
            "the baseline wrote other messages"
        );
        let wrong_counts: i64 = sqlx::query_scalar(
            "select count(*) from chat r
              where r.total_replies <> (select count(*) from chat c where c.parent_id = r.id)",
        )
        .fetch_one(&mut dst)
        .await
        .unwrap();
        assert_eq!(wrong_counts, 0, "the baseline's reply counts do not add up");
        println!(
            "run {}: seed {messages} messages (+ users, channels, reactions) {:.2} s = {:.0} msg/s; per-row INSERT of {} messages {:.2} s = {:.0} msg/s",
            run + 1,
            copy.as_secs_f64(),
            messages as f64 / copy.as_secs_f64(),
            rows.len(),
            insert.as_secs_f64(),
            rows.len() as f64 / insert.as_secs_f64()
        );
        src.close().await.unwrap();
        dst.close().await.unwrap();
        drop_db(&admin, base).await;
        drop_db(&admin, db).await;
    }
    let copy = median(&mut copy_times);
    let insert = median(&mut insert_times);
    let copy_rate = messages as f64 / copy.as_secs_f64();
    let insert_rate = baseline as f64 / insert.as_secs_f64();
    println!();
    println!("| what | messages | median time | messages/s |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| `dev seed` (COPY, deferred indexes) | {messages} | {:.2} s | {:.0} |",
        copy.as_secs_f64(),
        copy_rate
    );
    println!(
        "| per-row INSERT, one transaction | {baseline} | {:.2} s | {:.0} |",
        insert.as_secs_f64(),
        insert_rate
    );
    println!(
        "\nratio (messages/s): {:.1}x, median of {runs} runs",
        copy_rate / insert_rate
    );
}
