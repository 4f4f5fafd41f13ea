//! Files under the Storage policies (issue 27, migration 0015): what listing a folder,
//! looking an object up and listing a whole bucket cost a signed-in person, beside the same
//! query as the service role (no policy: what an app would otherwise run), in one run, on
//! `dev seed` data with one object per message in its channel's folder, at two sizes an order
//! of magnitude apart (10,000 and 100,000 objects by default).
//!
//! Storage's own listing queries filter the bucket's rows by name (`like`/`ilike` of the
//! prefix), which row level security applies after its policy: every row of the bucket pays
//! the policy, so its cost per row is what this measures.
//!
//! `cargo bench --bench storage [-- --sizes 10000,100000] [--budget-ms 2000]` against
//! DATABASE_URL or the local cluster (databases `bench_storage_N`, made anew each run).
#![allow(clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes = common::sizes_or(&args, "10000,100000");
    let budget = Duration::from_millis(
        common::flag(&args, "--budget-ms").map_or(2000, |v| v.parse().expect("--budget-ms N")),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&sizes, budget));
}

/// Who runs a query: the service role, or a person (`authenticated` with their claims).
#[derive(Clone, Copy)]
enum Who {
    Service,
    Person(Uuid),
}

/// Runs `sql` (binding `args`) as `who` for up to `budget` (at least 5, at most 500 runs),
/// in one transaction that takes the role once: p50 and p99 (or max) in ms, and the rows.
async fn time(
    c: &mut PgConnection,
    who: Who,
    sql: &str,
    args: &[String],
    budget: Duration,
) -> (f64, f64, usize, usize) {
    let mut tx = c.begin().await.unwrap();
    match who {
        Who::Service => sqlx::raw_sql("set local role service_role")
            .execute(&mut *tx)
            .await
            .unwrap(),
        Who::Person(id) => sqlx::query(
            "select set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)",
        )
        .bind(serde_json::json!({"sub": id, "role": "authenticated"}).to_string())
        .execute(&mut *tx)
        .await
        .unwrap(),
    };
    let mut runs = Vec::new();
    let mut rows = 0;
    let started = Instant::now();
    while runs.len() < 5 || (started.elapsed() < budget && runs.len() < 500) {
        let mut q = sqlx::query_scalar::<_, String>(sql);
        for a in args {
            q = q.bind(a);
        }
        let t = Instant::now();
        rows = q.fetch_all(&mut *tx).await.unwrap().len();
        runs.push(t.elapsed());
    }
    tx.rollback().await.unwrap();
    runs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99 = runs[((runs.len() - 1) as f64 * 0.99).round() as usize];
    (ms(runs[runs.len() / 2]), ms(p99), rows, runs.len())
}

async fn run(sizes: &[u64], budget: Duration) {
    let (_, url) = common::target().await;
    let admin = common::with_db(&url, "postgres");
    println!(
        "# Files under the Storage policies\n\nbudget {} ms per query and actor; p50 / p99 of round trips (max when fewer than 100 runs)\n",
        budget.as_millis()
    );
    println!(
        "| objects | query | actor | rows | p50 | p99 | service role p50 | p50 ratio |\n| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for &size in sizes {
        let db = format!("bench_storage_{size}");
        common::recreate(&admin, &db, None).await;
        let db_url = common::with_db(&url, &db);
        common::migrate_db(&db_url).await;
        let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
        chatctl::db::seed::seed(
            &pool,
            &chatctl::db::seed::SeedOptions {
                until: chatctl::db::seed::REFERENCE,
                users: 2_000,
                channels: 400,
                messages: size,
                workspaces: 4,
                seed: 42,
                progress: false,
            },
        )
        .await
        .unwrap();
        let mut c = PgConnection::connect(&db_url).await.unwrap();
        sqlx::raw_sql(
            "insert into storage.buckets (id, name) values ('attachments', 'attachments');
             insert into chatctl.storage_buckets (bucket_id) values ('attachments');
             insert into storage.objects (bucket_id, name, owner)
             select 'attachments', ch.workspace_id || '/' || ch.id || '/' || m.user_id || '/' || m.id || '.pdf', m.user_id
               from public.chat m join public.channels ch on ch.id = m.channel_id;",
        )
        .execute(&mut c)
        .await
        .unwrap();
        sqlx::raw_sql("vacuum analyze storage.objects")
            .execute(&mut c)
            .await
            .unwrap();
        // The busiest channel's folder; one of its members; a person of its workspace who
        // is not in it (reads it as a public channel), when there is one.
        let (channel, workspace): (Uuid, Uuid) = sqlx::query_as(
            "select ch.id, ch.workspace_id from public.channels ch join public.chat m on m.channel_id = ch.id
              where ch.kind = 'public'
                and exists (select 1 from public.workspace_members w
                             where w.workspace_id = ch.workspace_id and w.role <> 'guest'
                               and not exists (select 1 from public.members x
                                                where x.channel_id = ch.id and x.user_id = w.user_id))
              group by 1, 2 order by count(*) desc limit 1",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        let member: Uuid = sqlx::query_scalar(
            "select user_id from public.members where channel_id = $1 order by user_id limit 1",
        )
        .bind(channel)
        .fetch_one(&mut c)
        .await
        .unwrap();
        let reader: Option<Uuid> = sqlx::query_scalar(
            "select w.user_id from public.workspace_members w
              where w.workspace_id = $1 and w.role <> 'guest'
                and not exists (select 1 from public.members m where m.channel_id = $2 and m.user_id = w.user_id)
              order by 1 limit 1",
        )
        .bind(workspace)
        .bind(channel)
        .fetch_optional(&mut c)
        .await
        .unwrap();
        let one: String = sqlx::query_scalar(
            "select name from storage.objects where name like $1 order by name limit 1",
        )
        .bind(format!("{workspace}/{channel}/%"))
        .fetch_one(&mut c)
        .await
        .unwrap();
        let prefix = format!("{workspace}/{channel}/%");
        // The folder as a range of names (`/` + 1 is `0`): comparisons are leakproof, so the
        // index narrows the rows before the policy sees them (newer Storage lists so).
        let (from, to) = (
            format!("{workspace}/{channel}/"),
            format!("{workspace}/{channel}0"),
        );
        let queries: [(&str, &str, Vec<String>); 4] = [
            (
                "a folder's first 100 (`like`)",
                "select name from storage.objects where bucket_id = 'attachments' and name like $1 order by name limit 100",
                vec![prefix],
            ),
            (
                "a folder's first 100 (a range of names)",
                "select name from storage.objects where bucket_id = 'attachments' and name >= $1 and name < $2 order by name limit 100",
                vec![from, to],
            ),
            (
                "one object (a download)",
                "select name from storage.objects where bucket_id = 'attachments' and name = $1",
                vec![one],
            ),
            (
                "the whole bucket",
                "select name from storage.objects where bucket_id = 'attachments'",
                vec![],
            ),
        ];
        let mut actors = vec![("a member of the channel", Who::Person(member))];
        if let Some(r) = reader {
            actors.push(("a reader of the public channel", Who::Person(r)));
        }
        for (what, sql, args) in &queries {
            let (base, ..) = time(&mut c, Who::Service, sql, args, budget).await;
            for (actor, who) in &actors {
                let (p50, p99, rows, runs) = time(&mut c, *who, sql, args, budget).await;
                let tail = if runs >= 100 {
                    format!("{p99:.2} ms")
                } else {
                    format!("max {p99:.2} ms ({runs} runs)")
                };
                println!(
                    "| {size} | {what} | {actor} | {rows} | {p50:.2} ms | {tail} | {base:.2} ms | {:.1}× |",
                    p50 / base.max(0.001)
                );
            }
        }
        c.close().await.unwrap();
        pool.close().await;
        common::drop_db(&admin, &db).await;
    }
}
