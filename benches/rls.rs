//! Row level security at scale (issues 15 and 28): every query the app sends as the
//! signed-in user (`db::app_queries`, in PostgREST's shape, as prepared statements) beside
//! the same query as the service role, in one run, interleaved, on `dev seed` data at two
//! sizes an order of magnitude apart (10,000 users, 2,000 channels; 100,000 and 1,000,000
//! messages by default); the same on a copy migrated down to 0008 (the policies before);
//! and the Realtime check, per (change, subscriber), as Supabase Realtime makes it.
//!
//! `cargo bench --bench rls [-- --sizes 100000,1000000] [--budget-ms 2000] [--fresh]`
//! against DATABASE_URL or the local cluster. The seeded databases (`bench_rls_N`) are kept
//! for the next run unless `--fresh`.
#![allow(clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use chatctl::db::app_queries::{self, AppQuery, MENTIONS_BEFORE, Picks, QUERIES};
use chatctl::db::migrate::{self, DownOptions, DownTarget, Migrations, Source};
use sqlx::{Connection as _, PgConnection};

/// Server-side EXPLAIN ANALYZE runs per query and role.
const EXPLAINS: usize = 25;

struct Opts {
    sizes: Vec<u64>,
    budget: Duration,
    fresh: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| common::flag(&args, name);
    let opts = Opts {
        sizes: common::sizes(&args),
        budget: Duration::from_millis(
            value("--budget-ms").map_or(2000, |v| v.parse().expect("--budget-ms N")),
        ),
        fresh: args.iter().any(|a| a == "--fresh"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&opts));
}

async fn run(opts: &Opts) {
    let (_, url) = common::target().await;
    let admin = common::with_db(&url, "postgres");
    println!(
        "# Row level security at scale\n\nbudget {} ms per query and role; p50/p99 of round trips of the prepared statement; server = median EXPLAIN ANALYZE execution time of {EXPLAINS}",
        opts.budget.as_millis()
    );
    for &size in &opts.sizes {
        let after = format!("bench_rls_{size}");
        let before = format!("bench_rls_{size}_before");
        prepare(&admin, &url, &after, &before, size, opts.fresh).await;
        let mut c = PgConnection::connect(&common::with_db(&url, &after))
            .await
            .unwrap();
        let picks = app_queries::pick(&mut c).await.unwrap();
        c.close().await.unwrap();
        println!(
            "\n## {size} messages\n\nme = {}, channel = {}, browsed = {:?}",
            picks.me, picks.channel, picks.browsed
        );
        println!("\n### after (migration 0009)\n");
        table(&common::with_db(&url, &after), &picks, QUERIES, opts.budget).await;
        println!("\n### before (the policies of 0008, same data)\n");
        let before_queries: Vec<AppQuery> = QUERIES
            .iter()
            .filter(|q| {
                [
                    "timeline",
                    "timeline_browsed",
                    "thread",
                    "reactions",
                    "channels",
                    "members",
                    "readable",
                ]
                .contains(&q.name)
            })
            .copied()
            .chain([MENTIONS_BEFORE])
            .collect();
        table(
            &common::with_db(&url, &before),
            &picks,
            &before_queries,
            opts.budget,
        )
        .await;
        println!("\n### Realtime: the `chat` SELECT policy per (change, subscriber)\n");
        realtime(&common::with_db(&url, &after), &picks, "after").await;
        realtime(&common::with_db(&url, &before), &picks, "before").await;
    }
}

/// Seeds `after` (unless kept from an earlier run) and copies it to `before`, migrated
/// down to 0008.
async fn prepare(admin: &str, url: &str, after: &str, before: &str, size: u64, fresh: bool) {
    let mut a = PgConnection::connect(admin).await.unwrap();
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(after)
            .fetch_one(&mut a)
            .await
            .unwrap();
    a.close().await.unwrap();
    if fresh || !exists {
        common::recreate(admin, after, None).await;
        common::migrate_db(&common::with_db(url, after)).await;
        let pool = sqlx::PgPool::connect(&common::with_db(url, after))
            .await
            .unwrap();
        let started = Instant::now();
        common::seed_10k(&pool, size, 1).await;
        pool.close().await;
        println!(
            "\n(seeded {after}: {size} messages in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        common::recreate(admin, before, Some(after)).await;
        let mut b = migrate::connect(&common::with_db(url, before), Duration::from_secs(10))
            .await
            .unwrap();
        let m = Migrations::load(&Source::Embedded).await.unwrap();
        migrate::down(
            &mut b,
            &m,
            &DownOptions {
                target: DownTarget::Version(8),
                dry_run: false,
                lock_timeout: Duration::from_secs(60),
            },
        )
        .await
        .unwrap();
        sqlx::raw_sql("analyze").execute(&mut b).await.unwrap();
        b.close().await.unwrap();
    }
}

struct Stats {
    p50: f64,
    p99: f64,
    runs: usize,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
    Stats {
        p50: at(0.5),
        p99: at(0.99),
        runs: v.len(),
    }
}

/// One run of `q` as `role` (PostgREST's transaction: role and claims, the query), its
/// round trip only.
async fn once(c: &mut PgConnection, role: &str, picks: &Picks, q: &AppQuery) -> Duration {
    let mut tx = c.begin().await.unwrap();
    app_queries::act_as(&mut tx, role, Some(picks.me))
        .await
        .unwrap();
    let s = Instant::now();
    picks
        .bind(q)
        .expect("the data has every value")
        .fetch_all(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", q.name));
    let took = s.elapsed();
    tx.commit().await.unwrap();
    took
}

/// The median server-side execution time (ms) of `q` as `role`.
async fn server(c: &mut PgConnection, role: &str, picks: &Picks, q: &AppQuery) -> f64 {
    let sql = format!(
        "explain (analyze, timing off, summary on, format json) {}",
        picks.inline(q).expect("the data has every value")
    );
    let mut times = Vec::new();
    for _ in 0..EXPLAINS {
        let mut tx = c.begin().await.unwrap();
        app_queries::act_as(&mut tx, role, Some(picks.me))
            .await
            .unwrap();
        let plan: serde_json::Value = sqlx::query_scalar(&sql).fetch_one(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        times.push(plan[0]["Execution Time"].as_f64().unwrap_or(0.0));
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Peak resident memory of a connection's server process (kB), when the server is local.
async fn backend_peak_kb(c: &mut PgConnection) -> Option<u64> {
    let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(c)
        .await
        .ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

async fn table(url: &str, picks: &Picks, queries: &[AppQuery], budget: Duration) {
    let mut svc = PgConnection::connect(url).await.unwrap();
    let mut auth = PgConnection::connect(url).await.unwrap();
    println!(
        "| query | service p50 | service p99 | signed-in p50 | signed-in p99 | ratio p50 | ratio p99 | runs | server: service | server: signed-in | server ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for q in queries {
        if picks.values(q).is_none() {
            continue;
        }
        // Warm both connections' statement caches and plans (PostgREST's are warm; after
        // five runs Postgres may cache a generic plan), unless a run takes seconds.
        let slow = once(&mut auth, "authenticated", picks, q).await > Duration::from_secs(1);
        for _ in 0..if slow { 0 } else { 6 } {
            once(&mut svc, "service_role", picks, q).await;
            once(&mut auth, "authenticated", picks, q).await;
        }
        let (mut s, mut a) = (Vec::new(), Vec::new());
        let started = Instant::now();
        while s.len() < 3 || (!slow && started.elapsed() < budget && s.len() < 2000) {
            s.push(once(&mut svc, "service_role", picks, q).await);
            a.push(once(&mut auth, "authenticated", picks, q).await);
        }
        let (s, a) = (stats(s), stats(a));
        let (ss, sa) = if a.p50 < 1000.0 {
            (
                server(&mut svc, "service_role", picks, q).await,
                server(&mut auth, "authenticated", picks, q).await,
            )
        } else {
            (f64::NAN, f64::NAN)
        };
        println!(
            "| {} ({}) | {:.3} | {:.3} | {:.3} | {:.3} | {:.2}x | {:.2}x | {} | {:.3} | {:.3} | {:.1}x |",
            q.name,
            q.what,
            s.p50,
            s.p99,
            a.p50,
            a.p99,
            a.p50 / s.p50,
            a.p99 / s.p99,
            a.runs,
            ss,
            sa,
            sa / ss
        );
    }
    let peak = |kb: Option<u64>| {
        kb.map_or("n/a".to_owned(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        })
    };
    println!(
        "\npeak RSS of the server process: service {}, signed-in {}",
        peak(backend_peak_kb(&mut svc).await),
        peak(backend_peak_kb(&mut auth).await)
    );
}

/// What Supabase Realtime does for each change and subscriber (its `walrus` code): the
/// change's row read by primary key through a prepared statement, as the subscriber (role
/// and claims set). Timed inside the server, as Realtime runs it.
const REALTIME_CHECK: &str = r#"
create or replace function pg_temp.realtime_checks(changes uuid[], subscribers uuid[], check_role text)
returns double precision language plpgsql as $$
declare
    c uuid;
    s uuid;
    ok boolean;
    n bigint := 0;
    t0 timestamptz;
    spent interval := '0';
begin
    foreach c in array changes loop
        if exists (select 1 from pg_prepared_statements where name = 'walrus_rls_stmt') then
            deallocate walrus_rls_stmt;
        end if;
        execute format('prepare walrus_rls_stmt as select exists (select 1 from public.chat where id = %L)', c);
        foreach s in array subscribers loop
            perform set_config('role', check_role, true);
            perform set_config('request.jwt.claims', json_build_object('sub', s, 'role', check_role)::text, true);
            t0 := clock_timestamp();
            execute 'execute walrus_rls_stmt' into ok;
            spent := spent + (clock_timestamp() - t0);
            perform set_config('role', 'none', true);
            n := n + 1;
        end loop;
    end loop;
    return extract(epoch from spent) * 1000000 / n;
end
$$;
"#;

async fn realtime(url: &str, picks: &Picks, label: &str) {
    let mut c = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(REALTIME_CHECK).execute(&mut c).await.unwrap();
    // Subscribers to a channel's changes: its members; and, on a public channel, people of
    // the workspace reading it without having joined.
    let members: Vec<uuid::Uuid> = sqlx::query_scalar(
        "select user_id from public.members where channel_id = $1 order by user_id limit 200",
    )
    .bind(picks.channel)
    .fetch_all(&mut c)
    .await
    .unwrap();
    let browsed = picks.browsed.expect("a public channel to browse");
    let readers: Vec<uuid::Uuid> = sqlx::query_scalar(
        "select w.user_id from public.workspace_members w
          where w.workspace_id = $1 and w.role <> 'guest'
            and not exists (select 1 from public.members m where m.channel_id = $2 and m.user_id = w.user_id)
          order by w.user_id limit 200",
    )
    .bind(picks.workspace)
    .bind(browsed)
    .fetch_all(&mut c)
    .await
    .unwrap();
    let newest = |channel: uuid::Uuid| {
        sqlx::query_scalar::<_, uuid::Uuid>(
            "select id from public.chat where channel_id = $1 order by created_at desc limit 50",
        )
        .bind(channel)
    };
    let changes = newest(picks.channel).fetch_all(&mut c).await.unwrap();
    let browsed_changes = newest(browsed).fetch_all(&mut c).await.unwrap();
    let line = |name: &str, v: f64| println!("| {label} | {name} | {v:.1} |");
    if label == "after" {
        println!("| policies | subscribers | µs per (change, subscriber) |");
        println!("|---|---|---:|");
    }
    for (name, changes, subs, role) in [
        (
            "service role (no policy)",
            &changes,
            &members,
            "service_role",
        ),
        (
            "members of the channel",
            &changes,
            &members,
            "authenticated",
        ),
        (
            "readers of a public channel they have not joined",
            &browsed_changes,
            &readers,
            "authenticated",
        ),
    ] {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let us: f64 = sqlx::query_scalar("select pg_temp.realtime_checks($1, $2, $3)")
                .bind(changes)
                .bind(subs)
                .bind(role)
                .fetch_one(&mut c)
                .await
                .unwrap();
            runs.push(us);
        }
        runs.sort_by(f64::total_cmp);
        line(
            &format!("{name}: {} checks x 3 runs", changes.len() * subs.len()),
            runs[1],
        );
    }
    c.close().await.unwrap();
}
