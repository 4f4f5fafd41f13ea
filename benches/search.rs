//! Search: full reindex speed and size, and query latency (p50/p99) of the tantivy index
//! beside Postgres full-text search (the generated tsvector, GIN index, ts_rank ordering) on
//! the same queries, in one run, on two data sets: `chatctl dev seed` data of N messages
//! (default 1,000,000) and the Ubuntu IRC corpus of ../shared/fixtures/corpus/ loaded as
//! messages (read from there, never copied).
//!
//! `cargo bench --bench search [-- MESSAGES]` against DATABASE_URL or the local cluster.
#![allow(clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use chatctl::db::seed::{self, SeedOptions};
use chatctl::search::{self, IndexDir, Reader, Scope, index};
use sqlx::PgPool;

/// Runs per query and engine: up to this many, within `BUDGET`, at least `MIN_RUNS` (a p99
/// of a few runs is their maximum: one hiccup of a shared machine).
const MAX_RUNS: usize = 1000;
const MIN_RUNS: usize = 20;
const BUDGET: Duration = Duration::from_secs(4);
const LIMIT: usize = 20;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

/// p50/p99 on tantivy, p50/p99 on Postgres, hits, whether the query is ranked, and the runs
/// of each engine.
type Measured = (f64, f64, f64, f64, usize, bool, (usize, usize));

async fn measure(pool: &PgPool, reader: &Reader, q: &str) -> Measured {
    let plan = search::resolve(pool, search::query::parse(q).unwrap(), &Scope::default())
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    let scope = Scope::default();
    let mut t = Vec::new();
    let mut hits = 0;
    let started = Instant::now();
    while t.len() < MAX_RUNS && (t.len() < MIN_RUNS || started.elapsed() < BUDGET) {
        let s = Instant::now();
        hits = search::run(pool, Some(reader), &plan, &scope, LIMIT)
            .await
            .unwrap()
            .hits
            .len();
        t.push(s.elapsed());
    }
    let mut p = Vec::new();
    let started = Instant::now();
    while p.len() < MAX_RUNS && (p.len() < MIN_RUNS || started.elapsed() < BUDGET) {
        let s = Instant::now();
        search::run(pool, None, &plan, &scope, LIMIT).await.unwrap();
        p.push(s.elapsed());
    }
    let runs = (t.len(), p.len());
    (
        pct(&mut t, 0.5),
        pct(&mut t, 0.99),
        pct(&mut p, 0.5),
        pct(&mut p, 0.99),
        hits,
        plan.ranked(),
        runs,
    )
}

async fn report(name: &str, pool: &PgPool, dir: &IndexDir, queries: &[String]) {
    // The median of three full builds (each a new generation, swapped in).
    let mut builds = Vec::new();
    for _ in 0..3 {
        let s = Instant::now();
        let r = index::build(pool, dir, &Default::default(), &|_| {})
            .await
            .unwrap();
        builds.push((s.elapsed().as_secs_f64(), r));
    }
    builds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (secs, r) = &builds[1];
    println!(
        "\n## {name}: full reindex of {} messages + {} channels in {secs:.1} s (median of 3: {}) = {:.0} messages/s; index {:.1} MiB",
        r.messages,
        r.channels,
        builds
            .iter()
            .map(|(s, _)| format!("{s:.1} s"))
            .collect::<Vec<_>>()
            .join(", "),
        r.messages as f64 / secs,
        r.size_bytes as f64 / (1 << 20) as f64
    );
    let reader = Reader::open(dir).unwrap();
    println!(
        "| query | hits | tantivy p50 | tantivy p99 | postgres p50 | postgres p99 | p99 ratio | runs (tantivy/postgres) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut ratios = Vec::new();
    let mut ranked_ratios = Vec::new();
    let mut worst: f64 = 0.0;
    for q in queries {
        let (t50, t99, p50, p99, hits, ranked, (tr, pr)) = measure(pool, &reader, q).await;
        worst = worst.max(t99);
        ratios.push(p99 / t99);
        if ranked {
            ranked_ratios.push(p99 / t99);
        }
        println!(
            "| `{q}`{} | {hits} | {t50:.2} ms | {t99:.2} ms | {p50:.1} ms | {p99:.1} ms | {:.0}× | {tr}/{pr} |",
            if ranked { "" } else { " (unranked)" },
            p99 / t99
        );
    }
    ratios.sort_by(f64::total_cmp);
    ranked_ratios.sort_by(f64::total_cmp);
    println!(
        "worst tantivy p99 {worst:.2} ms; median p99 ratio {:.0}×; lowest on ranked queries {:.0}×, on all {:.0}×",
        ratios[ratios.len() / 2],
        ranked_ratios[0],
        ratios[0]
    );
}

async fn words(pool: &PgPool) -> Vec<(String, i32)> {
    sqlx::query_as(
        "select word, ndoc from ts_stat('select search from public.chat tablesample system (2)')
          where word ~ '^[a-z]{4,}$' order by ndoc desc",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn one<
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
>(
    pool: &PgPool,
    sql: &str,
) -> T {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn seeded_queries(pool: &PgPool) -> Vec<String> {
    let w = words(pool).await;
    let common = &w[0].0;
    let common2 = &w[1].0;
    let medium = &w[w.len() / 20].0;
    let rare = &w[w.len() - 1].0;
    let author: String = one(pool, "select u.username from chat c join users u on u.id = c.user_id group by 1 order by count(*) desc limit 1").await;
    let channel: String = one(pool, "select ch.name from chat c join channels ch on ch.id = c.channel_id where ch.name is not null group by 1 order by count(*) desc limit 1").await;
    let mentioned: String = one(pool, "select u.username from chat c join users u on (c.message -> 'mentions') ? u.id::text where c.message ? 'mentions' limit 1").await;
    let day: chrono::NaiveDate = one(
        pool,
        "select (percentile_disc(0.5) within group (order by created_at))::date from chat",
    )
    .await;
    // Two neighbouring words that are both content words (no stop word): a real phrase.
    let pairs: Vec<String> = sqlx::query_scalar(
        "select substring(message ->> 'text' from '\\m[a-z]{4,} [a-z]{4,}\\M') from chat
          where message ->> 'text' ~ '\\m[a-z]{4,} [a-z]{4,}\\M' limit 200",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let phrase = pairs
        .into_iter()
        .find(|p| search::analyzer::analyze(p).len() == 2)
        .expect("a phrase of two content words");
    let week = day + chrono::Days::new(7);
    vec![
        rare.clone(),
        medium.clone(),
        common.clone(),
        format!("{common} {common2}"),
        format!("\"{phrase}\""),
        format!("from:@{author} {medium}"),
        format!("in:#{channel} after:{day} before:{week}"),
        format!("in:#{channel} {common}"),
        format!("mentions:@{mentioned}"),
        "has:file".to_owned(),
        format!("has:file {medium}"),
        format!("has:link {common}"),
        format!("is:thread {medium}"),
        format!("{common} -{common2}"),
        format!("{medium} on:{day}"),
        format!("{rare} from:@{author}"),
    ]
}

fn irc_queries(top_nick: &str) -> Vec<String> {
    [
        "dapper",
        "ubuntu",
        "install",
        "grub",
        "nvidia driver",
        "\"apt-get install\"",
        "\"sound card\"",
        "wireless -ndiswrapper",
        "kernel panic",
        &format!("from:@{top_nick} ubuntu"),
        "in:#ubuntu after:2005-05-31 before:2005-07-01 sound",
        "xorg on:2005-06-16",
        "has:link",
        "has:link iso",
        "synaptic",
        "\"sudo apt-get\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A new, migrated database `db` on the server of `url`, and a pool on it.
async fn fresh_db(url: &str, admin: &str, db: &str) -> PgPool {
    common::recreate(admin, db, None).await;
    let db_url = common::with_db(url, db);
    common::migrate_db(&db_url).await;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&db_url)
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    let messages: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let (_, url) = common::target().await;
    let admin = common::with_db(&url, "postgres");
    let tmp = std::env::temp_dir().join(format!("chatctl-bench-search-{}", std::process::id()));

    let db = "chatctl_bench_search";
    let pool = fresh_db(&url, &admin, db).await;
    let s = Instant::now();
    seed::seed(
        &pool,
        &SeedOptions {
            users: 2_000,
            channels: 400,
            messages,
            workspaces: 4,
            seed: 42,
            progress: false,
        },
    )
    .await
    .unwrap();
    sqlx::query("vacuum analyze").execute(&pool).await.unwrap();
    println!(
        "seeded {messages} messages in {:.1} s",
        s.elapsed().as_secs_f64()
    );
    let queries = seeded_queries(&pool).await;
    report(
        &format!("chatctl dev seed, {messages} messages"),
        &pool,
        &IndexDir::new(tmp.join("seed")),
        &queries,
    )
    .await;
    pool.close().await;
    common::drop_db(&admin, db).await;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/corpus/irc-disentanglement-ubuntu");
    let db = "chatctl_bench_search_irc";
    let pool = fresh_db(&url, &admin, db).await;
    let n = common::load_irc(&pool, &root, 1).await;
    println!("\nloaded {n} IRC lines");
    let top: String = one(&pool, "select u.username from chat c join users u on u.id = c.user_id group by 1 order by count(*) desc limit 1").await;
    report(
        "Ubuntu IRC corpus",
        &pool,
        &IndexDir::new(tmp.join("irc")),
        &irc_queries(&top),
    )
    .await;
    pool.close().await;
    common::drop_db(&admin, db).await;
    let _ = std::fs::remove_dir_all(&tmp);
}
