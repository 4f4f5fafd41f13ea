//! Benchmark: `chatctl migrate adopt` on a project built from the product outline, against
//! the baseline an operator would otherwise write: the outline's tables moved aside, `migrate
//! up`, and one plain `INSERT … SELECT` per table (made-up usernames, slugs and channel
//! names, every trigger and index on, no checks: it only works on data without a bad row,
//! which this data is). Same run, same data, same machine.
//!
//! `cargo bench --bench adopt -- [--sizes 100000,1000000] [--runs 3]`: the sizes are messages
//! (plus a tenth as replies and a third as reactions; 10,000 people, 1,000 channels, 100,000
//! memberships). Uses DATABASE_URL, or the local cluster under .chatctl/.
#![allow(clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use common::{drop_db, median, recreate, with_db};
use sqlx::Connection as _;

const OUTLINE: &str = include_str!("../tests/it/outline.sql");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes = common::sizes(&args);
    let runs: usize = common::flag(&args, "--runs")
        .map(|r| r.parse().expect("--runs N"))
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&sizes, runs));
}

/// An outline project of `messages` messages in database `db`.
async fn build(admin: &str, url: &str, db: &str, messages: u64) {
    recreate(admin, db, None).await;
    let m = chatctl::db::migrate::Migrations::load(&chatctl::db::migrate::Source::Embedded)
        .await
        .unwrap();
    let mut c = chatctl::db::migrate::connect(url, Duration::from_secs(10))
        .await
        .unwrap();
    chatctl::db::migrate::up(
        &mut c,
        &m,
        &chatctl::db::migrate::UpOptions {
            target: Some(1),
            dry_run: false,
            lock_timeout: Duration::from_secs(60),
        },
    )
    .await
    .unwrap();
    sqlx::raw_sql(OUTLINE).execute(&mut c).await.unwrap();
    let rows = format!(
        "create function pg_temp.id(t text) returns uuid language sql immutable as $$ select md5(t)::uuid $$;
         insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                confirmation_token, recovery_token, email_change_token_new, email_change,
                raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
         select '00000000-0000-0000-0000-000000000000', pg_temp.id('u' || g), 'authenticated', 'authenticated',
                'person' || g || '@example.com', '', now(), '', '', '', '', '{{}}', '{{}}', now(), now()
           from generate_series(1, 10000) g;
         insert into public.users select pg_temp.id('u' || g), 'Person ' || g, 'person' || g || '@example.com', now(), null
           from generate_series(1, 10000) g;
         insert into public.workspaces values (pg_temp.id('w1'), 'Acme', pg_temp.id('c1'), now());
         insert into public.channels select pg_temp.id('c' || g), 'Channel ' || g, '', now(), g % 10 = 0
           from generate_series(1, 1000) g;
         insert into public.members (user_id, channel_id)
         select pg_temp.id('u' || u), pg_temp.id('c' || (1 + (u * 7 + k * 131) % 1000))
           from generate_series(1, 10000) u, generate_series(1, 10) k;
         insert into public.chat (id, user_id, channel_id, message, created_at)
         select pg_temp.id('m' || g), pg_temp.id('u' || (1 + g % 10000)), pg_temp.id('c' || (1 + g % 1000)),
                jsonb_build_object('text', 'message number ' || g || ' about the launch', 'attachments', '[]'::jsonb),
                now() - g * interval '1 second'
           from generate_series(1, {messages}) g;
         insert into public.chat (id, user_id, channel_id, parent_id, message, created_at)
         select pg_temp.id('r' || g), pg_temp.id('u' || (1 + g % 10000)), pg_temp.id('c' || (1 + (g * 3) % 1000)),
                pg_temp.id('m' || (g * 3)), '{{\"text\": \"a reply\"}}', now()
           from generate_series(1, {messages} / 10) g;
         insert into public.emojis select pg_temp.id('u' || (1 + g % 10000)), pg_temp.id('m' || g), '👍'
           from generate_series(1, {messages} / 3) g;"
    );
    sqlx::raw_sql(&rows).execute(&mut c).await.unwrap();
    sqlx::raw_sql("vacuum analyze")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
}

/// The hand-written adoption: move aside, migrate, copy table by table.
async fn baseline(url: &str) -> Duration {
    let m = chatctl::db::migrate::Migrations::load(&chatctl::db::migrate::Source::Embedded)
        .await
        .unwrap();
    let mut c = chatctl::db::migrate::connect(url, Duration::from_secs(10))
        .await
        .unwrap();
    let start = Instant::now();
    sqlx::raw_sql(
        "create schema old;
         alter table public.users set schema old; alter table public.workspaces set schema old;
         alter table public.channels set schema old; alter table public.members set schema old;
         alter table public.shared_channels set schema old; alter table public.emojis set schema old;
         alter publication supabase_realtime drop table public.chat; alter table public.chat set schema old;",
    )
    .execute(&mut c)
    .await
    .unwrap();
    chatctl::db::migrate::up(
        &mut c,
        &m,
        &chatctl::db::migrate::UpOptions {
            target: None,
            dry_run: false,
            lock_timeout: Duration::from_secs(60),
        },
    )
    .await
    .unwrap();
    let mut tx = c.begin().await.unwrap();
    sqlx::raw_sql(
        "insert into public.users (id, username, name, created_at)
         select id, 'u' || replace(id::text, '-', ''), coalesce(name, ''), created_at from old.users;
         insert into public.workspaces (id, slug, name, created_at)
         select id, 'w' || left(md5(id::text), 12), name, created_at from old.workspaces;
         insert into public.channels (id, workspace_id, name, kind, description, created_at)
         select c.id, (select id from public.workspaces limit 1), 'c-' || replace(c.id::text, '-', ''),
                case when c.is_private then 'private' else 'public' end, coalesce(c.description, ''), c.created_at
           from old.channels c;
         update public.workspaces w set channel_id = o.channel_id from old.workspaces o where o.id = w.id;
         insert into public.workspace_members (workspace_id, user_id)
         select distinct c.workspace_id, m.user_id from old.members m join public.channels c on c.id = m.channel_id;
         insert into public.members (id, channel_id, user_id, created_at)
         select id, channel_id, user_id, created_at from old.members;
         insert into public.chat (id, channel_id, user_id, message, is_deleted, created_at, modified_at)
         select id, channel_id, user_id, message, is_deleted, created_at, modified_at from old.chat where parent_id is null;
         insert into public.chat (id, channel_id, user_id, parent_id, message, is_deleted, created_at, modified_at)
         select id, channel_id, user_id, parent_id, message, is_deleted, created_at, modified_at from old.chat where parent_id is not null;
         insert into public.emojis (chat_id, user_id, emoji_uni_code) select chat_id, user_id, emoji_uni_code from old.emojis;",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let took = start.elapsed();
    c.close().await.unwrap();
    took
}

async fn run(sizes: &[u64], runs: usize) {
    let (_config, target_url) = common::target().await;
    let admin = with_db(&target_url, "postgres");
    let chatctl = env!("CARGO_BIN_EXE_chatctl");
    let mut lines = Vec::new();
    for &messages in sizes {
        let template = format!("chatctl_bench_outline_{messages}");
        build(
            &admin,
            &with_db(&target_url, &template),
            &template,
            messages,
        )
        .await;
        let (mut adopt_times, mut base_times, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            let db = "chatctl_bench_adopt";
            recreate(&admin, db, Some(&template)).await;
            let (secs, peak, out) = common::run_sampled(
                std::process::Command::new(chatctl)
                    .args(["migrate", "adopt", "-q", "-o", "json"])
                    .env("DATABASE_URL", with_db(&target_url, db)),
            );
            let report: serde_json::Value = serde_json::from_str(&out).unwrap();
            let rejected: i64 = report["rejects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["rows"].as_i64().unwrap())
                .sum();
            assert_eq!(rejected, 0, "the benchmark's data has no bad row");
            adopt_times.push(Duration::from_secs_f64(secs));
            peaks.push(peak);
            recreate(&admin, db, Some(&template)).await;
            let base = baseline(&with_db(&target_url, db)).await;
            base_times.push(base);
            println!(
                "{messages} messages, run {}: adopt {secs:.1} s (peak RSS {} MiB), hand-written copy {:.1} s",
                run + 1,
                peak / 1024,
                base.as_secs_f64()
            );
            drop_db(&admin, db).await;
        }
        drop_db(&admin, &template).await;
        let (a, b) = (median(&mut adopt_times), median(&mut base_times));
        peaks.sort();
        lines.push(format!(
            "| {messages} | {:.1} s | {:.1} s | {:.2} | {} MiB |",
            a.as_secs_f64(),
            b.as_secs_f64(),
            a.as_secs_f64() / b.as_secs_f64(),
            peaks[peaks.len() / 2] / 1024
        ));
    }
    println!();
    println!(
        "| messages | `migrate adopt` | hand-written copy | ratio (adopt / copy) | adopt peak RSS |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for l in lines {
        println!("{l}");
    }
    println!("\nmedians of {runs} runs");
}
