//! Search: full reindex speed and size, and query latency (p50/p99) of the tantivy index
//! beside Postgres full-text search (the generated tsvector, GIN index, ts_rank ordering) on
//! the same queries, in one run, on two data sets: `chatctl dev seed` data of N messages
//! (default 1,000,000) and the Ubuntu IRC corpus of ../shared/fixtures/corpus/ loaded as
//! messages (read from there, never copied).
//!
//! Like with like: both engines answer through `search::run` with the same plan, limit and
//! snippets; the Postgres query is one round trip (no ping before it, no transaction around
//! it as the service role). The query set is fixed for a data set (its words come from a
//! repeatable sample). A p99 is shown only from at least 200 runs; below that, the maximum,
//! called so. Each query's matches are compared between the engines (untimed, up to 100,000
//! each), and the Postgres plan of a ranked query is printed, showing the GIN index.
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
/// Fewer runs than this give no p99: their maximum is shown instead, and called so.
const P99_RUNS: usize = 200;
const BUDGET: Duration = Duration::from_secs(4);
const LIMIT: usize = 20;
/// Matches compared between the engines, per query, at most.
const COMPARED: usize = 100_000;

/// The runs of one engine on one query.
struct Runs(Vec<Duration>);

impl Runs {
    fn ms(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i].as_secs_f64() * 1000.0
    }

    /// The p99 when there are enough runs for one, else the maximum; and which it is.
    fn tail(&self) -> (f64, bool) {
        match self.0.len() >= P99_RUNS {
            true => (self.ms(0.99), true),
            false => (self.ms(1.0), false),
        }
    }

    fn show_tail(&self) -> String {
        match self.tail() {
            (ms, true) => format!("{ms:.2} ms"),
            (ms, false) => format!("max {ms:.2} ms ({} runs)", self.0.len()),
        }
    }
}

/// Runs `q` on one engine (`reader` or Postgres) up to MAX_RUNS times within BUDGET.
async fn time(pool: &PgPool, reader: Option<&Reader>, plan: &search::Plan) -> (Runs, usize) {
    let scope = Scope::default();
    let mut runs = Vec::new();
    let mut hits = 0;
    let started = Instant::now();
    while runs.len() < MAX_RUNS && (runs.len() < MIN_RUNS || started.elapsed() < BUDGET) {
        let s = Instant::now();
        hits = search::run(pool, reader, plan, &scope, LIMIT)
            .await
            .unwrap()
            .hits
            .len();
        runs.push(s.elapsed());
    }
    (Runs(runs), hits)
}

/// How the two engines' matches compare: the same set, or how many each has and share.
async fn agreement(pool: &PgPool, reader: &Reader, plan: &search::Plan) -> String {
    let scope = Scope::default();
    let ids = |found: search::Found| -> std::collections::HashSet<uuid::Uuid> {
        found.hits.into_iter().map(|h| h.id).collect()
    };
    let t = ids(search::run(pool, Some(reader), plan, &scope, COMPARED)
        .await
        .unwrap());
    let p = ids(search::run(pool, None, plan, &scope, COMPARED)
        .await
        .unwrap());
    let capped = if t.len() >= COMPARED || p.len() >= COMPARED {
        " (capped)"
    } else {
        ""
    };
    if t == p {
        format!("same {}{capped}", t.len())
    } else {
        format!(
            "{} / {}, {} shared{capped}",
            t.len(),
            p.len(),
            t.intersection(&p).count()
        )
    }
}

struct Measured {
    tantivy: Runs,
    postgres: Runs,
    hits: usize,
    ranked: bool,
    agreement: String,
}

async fn measure(pool: &PgPool, reader: &Reader, q: &str) -> Measured {
    let plan = search::resolve(pool, search::query::parse(q).unwrap(), &Scope::default())
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    let (tantivy, hits) = time(pool, Some(reader), &plan).await;
    let (postgres, _) = time(pool, None, &plan).await;
    Measured {
        tantivy,
        postgres,
        hits,
        ranked: plan.ranked(),
        agreement: agreement(pool, reader, &plan).await,
    }
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
    // The Postgres engine's plan for the first ranked query: the GIN index on `search`.
    if let Some(q) = queries.iter().find(|q| !q.contains(':')) {
        let plan = search::resolve(pool, search::query::parse(q).unwrap(), &Scope::default())
            .await
            .unwrap();
        let lines = search::postgres::explain(pool, &plan, &Scope::default(), LIMIT)
            .await
            .unwrap();
        println!("\nPostgres plan of `{q}`:\n```\n{}\n```", lines.join("\n"));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("Bitmap Index Scan on chat_search")),
            "the Postgres query does not use the GIN index"
        );
    }
    println!(
        "\n| query | hits | tantivy p50 | tantivy p99 | postgres p50 | postgres p99 | p99 ratio | runs (tantivy/postgres) | matches (tantivy / postgres) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut ratios = Vec::new();
    let mut ranked_ratios = Vec::new();
    let mut worst: f64 = 0.0;
    for q in queries {
        let m = measure(pool, &reader, q).await;
        let (t99, p99) = (m.tantivy.tail().0, m.postgres.tail().0);
        worst = worst.max(t99);
        ratios.push(p99 / t99);
        if m.ranked {
            ranked_ratios.push(p99 / t99);
        }
        println!(
            "| `{q}`{} | {} | {:.2} ms | {} | {:.1} ms | {} | {:.0}× | {}/{} | {} |",
            if m.ranked { "" } else { " (unranked)" },
            m.hits,
            m.tantivy.ms(0.5),
            m.tantivy.show_tail(),
            m.postgres.ms(0.5),
            m.postgres.show_tail(),
            p99 / t99,
            m.tantivy.0.len(),
            m.postgres.0.len(),
            m.agreement
        );
    }
    ratios.sort_by(f64::total_cmp);
    ranked_ratios.sort_by(f64::total_cmp);
    println!(
        "worst tantivy p99 {worst:.2} ms; median p99 (or max) ratio {:.0}×; lowest on ranked queries {:.0}×, on all {:.0}×",
        ratios[ratios.len() / 2],
        ranked_ratios[0],
        ratios[0]
    );
}

async fn words(pool: &PgPool) -> Vec<(String, i32)> {
    sqlx::query_as(
        "select word, ndoc from ts_stat('select search from public.chat tablesample system (2) repeatable (42)')
          where word ~ '^[a-z]{4,}$' order by ndoc desc, word",
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
          where message ->> 'text' ~ '\\m[a-z]{4,} [a-z]{4,}\\M' order by id limit 200",
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
    // No ping before each query: Postgres pays only its query's round trip.
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
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
            until: chatctl::db::seed::REFERENCE,
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
