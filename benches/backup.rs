//! `chatctl backup` (issue 17) beside `pg_dump`/`pg_restore`, in one run, on the same
//! `dev seed` data (10,000 users, 2,000 channels; 100,000 and 1,000,000 messages by default):
//! - backup time and archive size against `pg_dump -Fc` (its default zlib), `pg_dump -Fd -j N
//!   -Z1` (the fastest gzip at equal parallelism) and `-Fc -Z0` (no compression); chatctl
//!   compresses with zstd (level 3); PostgreSQL 15's pg_dump has only gzip, so these are the
//!   pairings;
//! - the same backup uploaded to a local S3-compatible server (moto, when python3 has it);
//! - restore time into an empty database: chatctl in one transaction and with `-j N`,
//!   against `pg_restore`, `pg_restore --single-transaction` and `pg_restore -j N`, each way
//!   in turn `--rounds` times (default 3), the medians;
//! - chatctl's peak RSS (VmHWM, sampled).
//!
//! `cargo bench --bench backup [-- --sizes 100000,1000000] [--jobs 2] [--rounds 3] [--fresh]`
//! against DATABASE_URL or the local cluster; `pg_dump`/`pg_restore` from the server's bin
//! directory (or PATH). The seeded databases (`bench_backup_N`) are kept unless `--fresh`.
#![allow(clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use chatctl::db::seed::{self, SeedOptions};
use sqlx::{Connection as _, PgConnection};

fn tool(name: &str) -> PathBuf {
    for dir in std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = dir.path().join("bin").join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

fn size(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    } else {
        std::fs::metadata(path).unwrap().len()
    }
}

/// Runs a command, panicking on failure; its wall time.
fn timed(cmd: &mut Command) -> f64 {
    let started = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| common::flag(&args, name);
    let sizes = common::sizes(&args);
    let jobs: usize = value("--jobs").map_or(2, |v| v.parse().expect("--jobs N"));
    let fresh = args.iter().any(|a| a == "--fresh");
    let rounds: usize = value("--rounds").map_or(3, |v| v.parse().expect("--rounds N"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&sizes, jobs, rounds, fresh));
}

/// moto's S3-compatible server on a free port, when python3 has moto (`pip install
/// 'moto[server]'`): the child (it stops when its standard input closes) and the endpoint.
fn moto() -> Option<(std::process::Child, String)> {
    use std::io::BufRead as _;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let run = include_str!("../tests/it/support/moto.py");
    let mut child = Command::new("python3")
        .args(["-c", run, &port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    (line.trim() == "ready").then(|| (child, format!("http://127.0.0.1:{port}")))
}

async fn run(sizes: &[u64], jobs: usize, rounds: usize, fresh: bool) {
    let (_, url) = common::target().await;
    let s3 = moto();
    if let Some((_, endpoint)) = &s3 {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let made = reqwest::Client::new()
            .put(format!("{endpoint}/bench"))
            .send()
            .await
            .unwrap();
        assert!(made.status().is_success());
    }
    let admin = common::with_db(&url, "postgres");
    let dir = tempfile::tempdir().unwrap();
    let chatctl = env!("CARGO_BIN_EXE_chatctl");
    println!("| messages | what | time | size | chatctl's peak RSS |");
    println!("| ---: | --- | ---: | ---: | ---: |");
    for &n in sizes {
        let db = format!("bench_backup_{n}");
        let src = common::with_db(&url, &db);
        let exists = PgConnection::connect(&src).await.is_ok();
        if fresh || !exists {
            common::recreate(&admin, &db, None).await;
            common::migrate_db(&src).await;
            let pool = sqlx::PgPool::connect(&src).await.unwrap();
            seed::seed(
                &pool,
                &SeedOptions {
                    until: chatctl::db::seed::REFERENCE,
                    users: 10_000,
                    channels: 2_000,
                    messages: n,
                    workspaces: 10,
                    seed: 42,
                    progress: false,
                },
            )
            .await
            .unwrap();
            pool.close().await;
            let mut c = PgConnection::connect(&src).await.unwrap();
            sqlx::raw_sql("vacuum analyze")
                .execute(&mut c)
                .await
                .unwrap();
        }
        let row = |what: &str, t: f64, bytes: Option<u64>, rss: Option<u64>| {
            println!(
                "| {n} | {what} | {t:.2} s | {} | {} |",
                bytes.map_or_else(String::new, |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
                rss.map_or_else(String::new, |kb| format!("{:.0} MiB", kb as f64 / 1024.0))
            );
        };
        let schemas = [
            "-n",
            "public",
            "-n",
            "chatctl",
            "-n",
            "auth",
            "-n",
            "storage",
            "-n",
            "chat_private",
        ];

        // Backups.
        let ours: Vec<(usize, PathBuf)> = [1, jobs]
            .into_iter()
            .map(|j| (j, dir.path().join(format!("{n}-j{j}.backup"))))
            .collect();
        for (j, path) in &ours {
            let (t, rss, _) = common::run_sampled(
                Command::new(chatctl)
                    .args(["backup", "create", "-q", "--jobs", &j.to_string(), "--out"])
                    .arg(path)
                    .env("DATABASE_URL", &src),
            );
            row(
                &format!("`chatctl backup create --jobs {j}` (zstd 3)"),
                t,
                Some(size(path)),
                Some(rss),
            );
        }
        let fc = dir.path().join(format!("{n}.dump"));
        let t = timed(
            Command::new(tool("pg_dump"))
                .args(["-Fc", "-f"])
                .arg(&fc)
                .args(schemas)
                .arg(&src),
        );
        row(
            "`pg_dump -Fc` (zlib, default level)",
            t,
            Some(size(&fc)),
            None,
        );
        let fd = dir.path().join(format!("{n}.dir"));
        let t = timed(
            Command::new(tool("pg_dump"))
                .args(["-Fd", "-Z1", "-j", &jobs.to_string(), "-f"])
                .arg(&fd)
                .args(schemas)
                .arg(&src),
        );
        row(
            &format!("`pg_dump -Fd -j {jobs} -Z1` (zlib, fastest)"),
            t,
            Some(size(&fd)),
            None,
        );
        let z0 = dir.path().join(format!("{n}-z0.dump"));
        let t = timed(
            Command::new(tool("pg_dump"))
                .args(["-Fc", "-Z0", "-f"])
                .arg(&z0)
                .args(schemas)
                .arg(&src),
        );
        row(
            "`pg_dump -Fc -Z0` (no compression)",
            t,
            Some(size(&z0)),
            None,
        );

        // The same backup uploaded to a local S3-compatible server (moto: an in-memory
        // Python server, so this is its pace as much as chatctl's).
        if let Some((_, endpoint)) = &s3 {
            let (t, rss, _) = common::run_sampled(
                Command::new(chatctl)
                    .args(["backup", "create", "-q", "--jobs", &jobs.to_string()])
                    .args(["--out", &format!("s3://bench/{n}/")])
                    .env("DATABASE_URL", &src)
                    .env("AWS_ENDPOINT_URL", endpoint)
                    .env("AWS_ACCESS_KEY_ID", "bench")
                    .env("AWS_SECRET_ACCESS_KEY", "bench")
                    .env("AWS_REGION", "us-east-1"),
            );
            let bytes = size(&ours[1].1);
            row(
                &format!(
                    "`chatctl backup create --jobs {jobs} --out s3://…` to moto ({:.1} MiB/s uploaded)",
                    bytes as f64 / 1048576.0 / t
                ),
                t,
                Some(bytes),
                Some(rss),
            );
        }

        // Restores into empty databases, each way in turn, `rounds` times: the medians.
        let target = format!("bench_backup_restore_{n}");
        let dst = common::with_db(&url, &target);
        let ways: Vec<(String, Vec<std::ffi::OsString>)> = vec![
            (
                "`chatctl backup restore` (one transaction)".into(),
                vec!["chatctl".into(), ours[0].1.clone().into()],
            ),
            (
                format!("`chatctl backup restore -j {jobs}` (scratch database, renamed)"),
                vec![
                    "chatctl".into(),
                    "-j".into(),
                    jobs.to_string().into(),
                    ours[0].1.clone().into(),
                ],
            ),
            ("`pg_restore` of `-Fc`".into(), vec![fc.clone().into()]),
            (
                "`pg_restore --single-transaction` of `-Fc`".into(),
                vec!["--single-transaction".into(), fc.clone().into()],
            ),
            (
                format!("`pg_restore -j {jobs}` of `-Fd`"),
                vec!["-j".into(), jobs.to_string().into(), fd.clone().into()],
            ),
        ];
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
        let mut peaks: Vec<u64> = vec![0; ways.len()];
        for _ in 0..rounds {
            for (i, (_, args)) in ways.iter().enumerate() {
                common::drop_db(&admin, &target).await;
                let ours = args[0] == "chatctl";
                // `-j` makes its own database; the others restore into an empty one.
                if !(ours && args.len() > 2) {
                    common::recreate(&admin, &target, None).await;
                }
                // One transaction stops at the first error: the dump makes `public` itself.
                if args.iter().any(|a| a == "--single-transaction") {
                    let mut c = PgConnection::connect(&dst).await.unwrap();
                    sqlx::raw_sql("drop schema public")
                        .execute(&mut c)
                        .await
                        .unwrap();
                }
                let started = Instant::now();
                if ours {
                    let (_, rss, _) = common::run_sampled(
                        Command::new(chatctl)
                            .args(["backup", "restore", "-q", "--target-url", &dst])
                            .args(&args[1..])
                            .env("DATABASE_URL", &src),
                    );
                    peaks[i] = peaks[i].max(rss);
                } else {
                    // pg_restore reports what an empty database lacks (extensions made
                    // outside the dumped schemas) as errors it ignores; the time is what
                    // counts.
                    let _ = Command::new(tool("pg_restore"))
                        .args(["--no-owner", "-d", &dst])
                        .args(args)
                        .output()
                        .unwrap();
                }
                times[i].push(started.elapsed().as_secs_f64());
            }
        }
        for (((what, _), t), rss) in ways.iter().zip(&mut times).zip(&peaks) {
            t.sort_by(f64::total_cmp);
            row(what, t[t.len() / 2], None, (*rss > 0).then_some(*rss));
        }
        common::drop_db(&admin, &target).await;
        if fresh {
            common::drop_db(&admin, &db).await;
        }
    }
}
