//! Benchmark: `chatctl apply` of one workspace with 2,000 channels and 200,000 memberships
//! into an empty database, then a re-plan and re-apply with 1% changed; against the baseline
//! of issuing the same first-apply changes as individual SQL statements (one transaction).
//!
//! `cargo bench --bench apply -- [CHANNELS] [MEMBERS_PER_CHANNEL] [RUNS]` (defaults 2000 100 3).
//! Uses DATABASE_URL, or the local cluster under .chatctl/.
#![allow(clippy::print_stdout)]

mod common;

use common::{drop_db, migrate_db, recreate, with_db};

use std::fmt::Write as _;

use std::time::{Duration, Instant};

use chatctl::provision::{self, Actor, Op, PlanOptions, spec};
use rand::{Rng, SeedableRng};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let channels = args.first().copied().unwrap_or(2000);
    let per_channel = args.get(1).copied().unwrap_or(100);
    let runs = args.get(2).copied().unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(channels, per_channel, runs));
}

/// The spec: PEOPLE people, one workspace, `channels` channels of `per_channel` members.
/// `variant` 1 changes 1% of the memberships and topics.
fn spec_text(channels: usize, per_channel: usize, people: usize, variant: u32) -> String {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut s = String::from("people:\n");
    for i in 0..people {
        let _ = writeln!(s, "  - {{ email: user{i}@bench.example, name: User {i} }}");
    }
    s.push_str("workspaces:\n  - slug: bench\n    name: Bench\n    members:\n");
    for i in 0..people {
        let _ = writeln!(s, "      - user{i}@bench.example");
    }
    s.push_str("    channels:\n");
    for c in 0..channels {
        let changed = variant == 1 && c % 100 == 0;
        let topic = if changed { "changed topic" } else { "topic" };
        let _ = writeln!(
            s,
            "      - name: channel-{c}\n        topic: {topic}\n        members:"
        );
        let start = rng.random_range(0..people);
        for k in 0..per_channel {
            // 1% of memberships move to someone else in the variant.
            let who = if variant == 1 && (c * per_channel + k).is_multiple_of(100) {
                (start + k + per_channel) % people
            } else {
                (start + k) % people
            };
            let _ = writeln!(s, "          - user{who}@bench.example");
        }
    }
    s
}

struct Timing {
    first: Duration,
    first_plan: Duration,
    replan: Duration,
    reapply: Duration,
    baseline: Duration,
    changes: usize,
    rechanges: usize,
}

async fn run(channels: usize, per_channel: usize, runs: usize) {
    let (_, target_url) = common::target().await;
    let admin = with_db(&target_url, "postgres");
    let people = 5000.min(channels * per_channel);
    let dir = tempfile::tempdir().unwrap();
    let first_file = dir.path().join("spec.yaml");
    let second_file = dir.path().join("spec-1pct.yaml");
    std::fs::write(&first_file, spec_text(channels, per_channel, people, 0)).unwrap();
    std::fs::write(&second_file, spec_text(channels, per_channel, people, 1)).unwrap();
    let actor = Actor {
        operator: "bench".into(),
        command: "bench".into(),
    };

    let mut timings = Vec::new();
    for run in 0..runs {
        let db = "chatctl_bench_apply";
        recreate(&admin, db, None).await;
        migrate_db(&with_db(&target_url, db)).await;
        let mut conn = PgConnection::connect(&with_db(&target_url, db))
            .await
            .unwrap();

        let start = Instant::now();
        let files = spec::read(std::slice::from_ref(&first_file)).unwrap();
        let plan = provision::plan(&mut conn, &files, &PlanOptions { prune: true })
            .await
            .unwrap();
        let first_plan = start.elapsed();
        provision::apply::apply(&mut conn, &plan.changes, &actor)
            .await
            .unwrap();
        let first = start.elapsed();
        let applied = contents(&mut conn).await;

        let start = Instant::now();
        let files = spec::read(std::slice::from_ref(&second_file)).unwrap();
        let replan = provision::plan(&mut conn, &files, &PlanOptions { prune: true })
            .await
            .unwrap();
        let replan_time = start.elapsed();
        provision::apply::apply(&mut conn, &replan.changes, &actor)
            .await
            .unwrap();
        let reapply = start.elapsed();
        conn.close().await.unwrap();

        // Baseline: the first plan's changes as one SQL statement each.
        recreate(&admin, db, None).await;
        migrate_db(&with_db(&target_url, db)).await;
        let mut conn = PgConnection::connect(&with_db(&target_url, db))
            .await
            .unwrap();
        let start = Instant::now();
        baseline(&mut conn, &plan.changes).await;
        let baseline_time = start.elapsed();
        // Checked as apply is: every statement changed its one row (in `baseline`), and the
        // result is what the first apply made.
        assert_eq!(
            contents(&mut conn).await,
            applied,
            "the baseline made another state"
        );
        conn.close().await.unwrap();
        drop_db(&admin, db).await;

        println!(
            "run {}: first apply {} changes {:.2} s (plan {:.2} s); re-plan 1% {:.2} s ({} changes), re-apply total {:.2} s; per-statement baseline {:.2} s",
            run + 1,
            plan.changes.len(),
            first.as_secs_f64(),
            first_plan.as_secs_f64(),
            replan_time.as_secs_f64(),
            replan.changes.len(),
            reapply.as_secs_f64(),
            baseline_time.as_secs_f64()
        );
        timings.push(Timing {
            first,
            first_plan,
            replan: replan_time,
            reapply,
            baseline: baseline_time,
            changes: plan.changes.len(),
            rechanges: replan.changes.len(),
        });
    }
    let med = |f: &dyn Fn(&Timing) -> Duration| {
        let mut v: Vec<Duration> = timings.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    let (first, first_plan, replan, reapply, base) = (
        med(&|t| t.first),
        med(&|t| t.first_plan),
        med(&|t| t.replan),
        med(&|t| t.reapply),
        med(&|t| t.baseline),
    );
    println!();
    println!("| step | changes | median |");
    println!("| --- | ---: | ---: |");
    println!(
        "| first apply (read + plan + apply), {channels} channels x {per_channel} members | {} | {:.2} s |",
        timings[0].changes,
        first.as_secs_f64()
    );
    println!(
        "| of which read + plan | | {:.2} s |",
        first_plan.as_secs_f64()
    );
    println!(
        "| re-plan with 1% changed (read + plan) | {} | {:.2} s |",
        timings[0].rechanges,
        replan.as_secs_f64()
    );
    println!(
        "| re-plan + re-apply | {} | {:.2} s |",
        timings[0].rechanges,
        reapply.as_secs_f64()
    );
    println!(
        "| baseline: the first apply's changes as individual statements | {} | {:.2} s |",
        timings[0].changes,
        base.as_secs_f64()
    );
    println!(
        "\nfirst apply is {:.1}x faster than individual statements (median of {runs} runs)",
        base.as_secs_f64() / first.as_secs_f64()
    );
}

/// What a workspace holds, by key: who is in which workspace and channel, with which role.
async fn contents(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "select concat_ws(' ', 'workspace', w.slug, w.name) from workspaces w
         union all
         select concat_ws(' ', 'channel', w.slug, c.name, c.kind, c.topic, c.description, c.purpose)
           from channels c join workspaces w on w.id = c.workspace_id
         union all
         select concat_ws(' ', 'user', u.email, u.username, u.name) from users u
         union all
         select concat_ws(' ', 'in', w.slug, u.email, m.role)
           from workspace_members m join workspaces w on w.id = m.workspace_id join users u on u.id = m.user_id
         union all
         select concat_ws(' ', 'in', w.slug, c.name, u.email, m.role)
           from members m join channels c on c.id = m.channel_id
           join workspaces w on w.id = c.workspace_id join users u on u.id = m.user_id
         order by 1",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

/// What a script without chatctl would do: one statement per change, ids looked up by key,
/// each checked to have written its one row.
async fn baseline(conn: &mut PgConnection, changes: &[provision::Change]) {
    let mut tx = conn.begin().await.unwrap();
    for c in changes {
        match &c.op {
            Op::CreateUser(u) => {
                let id = uuid::Uuid::new_v4();
                // Verified, as apply makes them: the profile's email is the verified one.
                sqlx::query("insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at, confirmation_token, recovery_token, email_change_token_new, email_change, raw_app_meta_data, raw_user_meta_data, created_at, updated_at) values ('00000000-0000-0000-0000-000000000000', $1, 'authenticated', 'authenticated', $2, '', now(), '', '', '', '', '{}', '{}', now(), now())")
                    .bind(id).bind(&u.email).execute(&mut *tx).await.unwrap();
                sqlx::query("insert into auth.identities (provider_id, user_id, identity_data, provider, created_at, updated_at) values ($1::text, $1, jsonb_build_object('sub', $1::text), 'email', now(), now())")
                    .bind(id).execute(&mut *tx).await.unwrap();
                sqlx::query(
                    "insert into public.users (id, username, name, email) values ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(&u.username)
                .bind(&u.display_name)
                .bind(&u.email)
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            Op::CreateWorkspace { slug, name } => {
                sqlx::query("insert into workspaces (slug, name) values ($1, $2)")
                    .bind(slug)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            Op::AddWorkspaceMember { slug, email, role } => {
                let written = sqlx::query("insert into workspace_members (workspace_id, user_id, role) select w.id, u.id, $3 from workspaces w, users u where w.slug = $1 and u.email = $2")
                    .bind(slug).bind(email).bind(role).execute(&mut *tx).await.unwrap().rows_affected();
                assert_eq!(written, 1, "{c:?} wrote {written} rows");
            }
            Op::CreateChannel {
                slug,
                name,
                kind,
                topic,
                description,
                purpose,
            } => {
                let written = sqlx::query("insert into channels (workspace_id, name, kind, topic, description, purpose) select id, $2, $3, $4, $5, $6 from workspaces where slug = $1")
                    .bind(slug).bind(name).bind(kind).bind(topic).bind(description).bind(purpose).execute(&mut *tx).await.unwrap().rows_affected();
                assert_eq!(written, 1, "{c:?} wrote {written} rows");
            }
            Op::AddMember {
                slug,
                channel,
                email,
                role,
            } => {
                let written = sqlx::query("insert into members (channel_id, user_id, role) select c.id, u.id, $4 from channels c join workspaces w on w.id = c.workspace_id, users u where w.slug = $1 and c.name = $2 and u.email = $3")
                    .bind(slug).bind(channel).bind(email).bind(role).execute(&mut *tx).await.unwrap().rows_affected();
                assert_eq!(written, 1, "{c:?} wrote {written} rows");
            }
            other => panic!("the baseline does not cover {other:?}"),
        }
    }
    tx.commit().await.unwrap();
}
