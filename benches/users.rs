//! `chatctl users import` (issue 16): people from a generated CSV (email, name, employee id,
//! half of them with a bcrypt hash to keep) into Supabase Auth, the profiles and one
//! workspace's memberships, at two sizes an order of magnitude apart, into fresh databases
//! carrying Supabase's own indexes on `auth.users`. Beside it, in the same run, on the same
//! rows:
//! - the baseline a script calling an API would be: one transaction per user (the auth
//!   user, its identity, the profile, the membership: one INSERT each), on the first
//!   `--baseline` rows;
//! - the floor: the same rows written by four `INSERT … SELECT` from a staging table, the
//!   least work PostgreSQL can do for them (no matching, no checks, no rejects);
//! - the import run again on the same file (everything unchanged);
//! - and, apart, `--plaintext N` people with plaintext passwords (hashed with bcrypt).
//!
//! `cargo bench --bench users [-- --sizes 100000,1000000] [--baseline 10000] [--runs 3]
//! [--plaintext 500]`
//! against DATABASE_URL or the local cluster. Peak RSS is chatctl's (`VmHWM`, sampled).
#![allow(clippy::print_stdout)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

/// A bcrypt hash (cost 10) to pass through.
const HASH: &str = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| common::flag(&args, name);
    let sizes = common::sizes(&args);
    let baseline: u64 = value("--baseline").map_or(10_000, |v| v.parse().expect("--baseline N"));
    let runs: usize = value("--runs").map_or(3, |v| v.parse().expect("--runs N"));
    let plaintext: u64 = value("--plaintext").map_or(500, |v| v.parse().expect("--plaintext N"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&sizes, baseline, runs, plaintext));
}

fn generate(path: &Path, n: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "email,name,employee id,password_hash").unwrap();
    for i in 0..n {
        let hash = if i % 2 == 0 { HASH } else { "" };
        writeln!(
            f,
            "person{i}.x@example.com,Person {i} Example,EMP{i:08},{hash}"
        )
        .unwrap();
    }
    f.flush().unwrap();
}

async fn fresh(admin: &str, url: &str, db: &str) -> String {
    common::recreate(admin, db, None).await;
    let url = common::with_db(url, db);
    common::migrate_db(&url).await;
    let mut c = PgConnection::connect(&url).await.unwrap();
    sqlx::query("insert into public.workspaces (slug, name) values ('acme', 'Acme')")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    url
}

/// Runs the import; seconds, chatctl's peak RSS (kB), and its JSON report.
fn import(url: &str, file: &Path) -> (f64, u64, serde_json::Value) {
    let (secs, peak, out) = common::run_sampled(
        Command::new(env!("CARGO_BIN_EXE_chatctl"))
            .args([
                "users",
                "import",
                file.to_str().unwrap(),
                "-w",
                "acme",
                "-q",
                "-o",
                "json",
            ])
            .args(["--rejects", "/dev/null"])
            .env("DATABASE_URL", url),
    );
    (
        secs,
        peak,
        serde_json::from_str(&out).expect("a JSON report"),
    )
}

/// One transaction per user, four INSERTs (prepared), as a script calling an API would.
async fn per_user(url: &str, n: u64) -> f64 {
    let mut c = PgConnection::connect(url).await.unwrap();
    let ws: Uuid = sqlx::query_scalar("select id from public.workspaces where slug = 'acme'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..n {
        let id = Uuid::new_v4();
        let email = format!("person{i}.x@example.com");
        let hash = if i % 2 == 0 { HASH } else { "" };
        let mut tx = c.begin().await.unwrap();
        sqlx::query(
            "insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                confirmation_token, recovery_token, email_change_token_new, email_change,
                raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
             values ('00000000-0000-0000-0000-000000000000', $1, 'authenticated', 'authenticated', $2, $3, now(),
                '', '', '', '', '{\"provider\":\"email\",\"providers\":[\"email\"]}', jsonb_build_object('full_name', $4::text), now(), now())",
        )
        .bind(id)
        .bind(&email)
        .bind(hash)
        .bind(format!("Person {i} Example"))
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "insert into auth.identities (provider_id, user_id, identity_data, provider, created_at, updated_at)
             values ($1::text, $1, jsonb_build_object('sub', $1::text, 'email', $2::text, 'email_verified', true), 'email', now(), now())",
        )
        .bind(id)
        .bind(&email)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "insert into public.users (id, username, name, external_source, external_id)
             values ($1, $2, $3, 'import', $4)",
        )
        .bind(id)
        .bind(format!("person{i}.x"))
        .bind(format!("Person {i} Example"))
        .bind(format!("EMP{i:08}"))
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("insert into public.workspace_members (workspace_id, user_id) values ($1, $2)")
            .bind(ws)
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// The least work: COPY into a staging table, four INSERT … SELECT, one transaction,
/// triggers and per-row foreign key checks off, ids in order (as the import writes them).
async fn floor(url: &str, file: &Path) -> f64 {
    let mut c = PgConnection::connect(url).await.unwrap();
    let started = Instant::now();
    let mut tx = c.begin().await.unwrap();
    sqlx::raw_sql("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::raw_sql(
        "create temp table s (email text, name text, external_id text, hash text,
                              n bigserial,
                              id uuid generated always as (('01900000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid) stored)
             on commit drop",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let mut copy = tx
        .copy_in_raw("copy s (email, name, external_id, hash) from stdin with (format csv, header)")
        .await
        .unwrap();
    copy.send(std::fs::read(file).unwrap()).await.unwrap();
    copy.finish().await.unwrap();
    sqlx::raw_sql(
        "insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
            confirmation_token, recovery_token, email_change_token_new, email_change,
            raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
         select '00000000-0000-0000-0000-000000000000', id, 'authenticated', 'authenticated', email,
            coalesce(hash, ''), now(), '', '', '', '', '{\"provider\":\"email\",\"providers\":[\"email\"]}',
            jsonb_build_object('full_name', name), now(), now() from s;
         insert into auth.identities (id, provider_id, user_id, identity_data, provider, created_at, updated_at)
         select overlay(id::text placing '8' from 15 for 1)::uuid, id::text, id, jsonb_build_object('sub', id::text, 'email', email, 'email_verified', true),
            'email', now(), now() from s;
         insert into public.users (id, username, name, email, external_source, external_id)
         select id, split_part(email, '@', 1), name, email, 'import', external_id from s;
         insert into public.workspace_members (workspace_id, user_id)
         select (select id from public.workspaces where slug = 'acme'), id from s;",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

async fn run(sizes: &[u64], baseline: u64, runs: usize, plaintext: u64) {
    let (_, url) = common::target().await;
    let admin = common::with_db(&url, "postgres");
    let dir = tempfile::tempdir().unwrap();
    println!("| users | what | median time | users/s | chatctl peak RSS | runs |");
    println!("| ---: | --- | ---: | ---: | ---: | --- |");
    for &n in sizes {
        let file = dir.path().join(format!("people-{n}.csv"));
        generate(&file, n);
        let db = format!("bench_users_{n}");
        let (mut times, mut peaks) = (Vec::new(), Vec::new());
        let mut again = Vec::new();
        for _ in 0..runs {
            let url = fresh(&admin, &url, &db).await;
            let (secs, peak, report) = import(&url, &file);
            assert_eq!(report["users"]["inserted"], n, "{report}");
            times.push(secs);
            peaks.push(peak);
            println!(
                "  run: {secs:.2} s, {:.0} users/s, phases {}, peak {:.1} MiB",
                n as f64 / secs,
                report["phases"],
                peak as f64 / 1024.0
            );
            let (secs, _, report) = import(&url, &file);
            assert_eq!(report["users"]["unchanged"], n, "{report}");
            again.push(secs);
        }
        let t = median(times.clone());
        let peak = peaks.iter().max().copied().unwrap_or(0);
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|t| format!("{t:.2}"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!(
            "| {n} | `users import` | {t:.2} s | {:.0} | {:.1} MiB | {} |",
            n as f64 / t,
            peak as f64 / 1024.0,
            fmt(&times)
        );
        let a = median(again.clone());
        println!(
            "| {n} | `users import` again (all unchanged) | {a:.2} s | {:.0} | | {} |",
            n as f64 / a,
            fmt(&again)
        );
        let url_f = fresh(&admin, &url, &db).await;
        let f = floor(&url_f, &file).await;
        println!(
            "| {n} | floor: 4 × INSERT … SELECT from staging, one transaction, triggers off | {f:.2} s | {:.0} | | 1 |",
            n as f64 / f
        );
        let k = baseline.min(n);
        let url_b = fresh(&admin, &url, &db).await;
        let b = per_user(&url_b, k).await;
        let ratio = (n as f64 / t) / (k as f64 / b);
        println!(
            "| {n} | baseline: one transaction per user (4 INSERTs), first {k} rows | {b:.2} s | {:.0} | | 1 |",
            k as f64 / b
        );
        println!(
            "\n  at {n}: import {ratio:.1}× the per-user baseline, {:.0}% of the floor's rate\n",
            100.0 * f / t
        );
        common::drop_db(&admin, &db).await;
    }
    if plaintext > 0 {
        // Plaintext passwords: each is hashed with bcrypt (cost 10) before it is written.
        let file = dir.path().join("plaintext.csv");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        writeln!(f, "email,name,password").unwrap();
        for i in 0..plaintext {
            writeln!(f, "plain{i}@example.com,Plain {i},correct horse {i}").unwrap();
        }
        f.flush().unwrap();
        drop(f);
        let db = "bench_users_plaintext";
        let url_p = fresh(&admin, &url, db).await;
        let (secs, peak, report) = import(&url_p, &file);
        println!(
            "| {plaintext} | `users import`, plaintext passwords (bcrypt cost 10 on every core) | {secs:.2} s | {:.0} | {:.1} MiB | hashing {:.0}/s |",
            plaintext as f64 / secs,
            peak as f64 / 1024.0,
            report["passwords"]["per_second"].as_f64().unwrap_or(0.0)
        );
        common::drop_db(&admin, db).await;
    }
}
