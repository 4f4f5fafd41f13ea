//! The HTTP API under load (issue 19): `chatctl serve` (the release binary, its own process)
//! on `dev seed` data of 10,000 users and 2,000 channels at two sizes an order of magnitude
//! apart (100,000 and 1,000,000 messages by default), asked for profiles and searches by
//! 1,000 different users with valid tokens, half and half.
//!
//! - A bounded load: an open loop at `--rate` requests/s (default 1,000) for `--secs`
//!   seconds, each request sent at its scheduled time whatever the previous ones did, its
//!   latency counted from that time (no coordinated omission): p50, p99, max, errors.
//! - Saturation: `--workers` closed loops as fast as answers come: throughput and p99; then
//!   open loops at 25, 50, 70 and 85% of it, and the highest rate with p99 under 20 ms.
//! - The floor, in the same run on the same requests: the same work called in-process (the
//!   library's search as the user, the profile's queries as the user), at the same
//!   concurrency: what the HTTP layer, the token check and the JSON cost on top.
//! - The server's peak RSS (`VmHWM`) at each size.
//!
//! `cargo bench --bench api [-- --sizes 100000,1000000] [--rate 1000] [--secs 20]
//! [--workers 32] [--only profile|search] [--connections 16] [--rates N,M] [--bin PATH]` against DATABASE_URL or the local cluster. The seeded databases
//! (`bench_api_N`) and their indexes are kept for the next run.
#![allow(clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::prelude::*;
use uuid::Uuid;

const SECRET: &str = "bench-jwt-secret-with-at-least-32-characters";
const CALLERS: usize = 1000;
/// Words of the seed's vocabulary, as people search them.
const WORDS: &[&str] = &[
    "deploy", "release", "meeting", "customer", "review", "build", "test", "design", "bug",
    "lunch", "metrics", "server", "friday", "plan", "docs",
];

struct Opts {
    sizes: Vec<u64>,
    rate: u32,
    secs: u64,
    workers: usize,
    /// Only this kind of ask (`profile` or `search`), to see each one's cost.
    only: Option<String>,
    /// The server's `database.max_connections`.
    connections: u32,
    /// Only open loops at these rates (no saturation, sweep or floor): a quick look.
    rates: Option<Vec<u32>>,
    /// Another build of chatctl to serve, to compare two builds in turns.
    bin: Option<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| common::flag(&args, name);
    let opts = Opts {
        sizes: common::sizes(&args),
        rate: value("--rate").map_or(1000, |v| v.parse().expect("--rate N")),
        secs: value("--secs").map_or(20, |v| v.parse().expect("--secs N")),
        workers: value("--workers").map_or(32, |v| v.parse().expect("--workers N")),
        only: value("--only"),
        connections: value("--connections").map_or(16, |v| v.parse().expect("--connections N")),
        bin: value("--bin"),
        rates: value("--rates").map(|v| {
            v.split(',')
                .map(|r| r.parse().expect("--rates N,M"))
                .collect()
        }),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&opts));
}

/// One request of the mix: a caller and what they ask.
#[derive(Clone)]
enum Ask {
    Profile { caller: usize, user: Uuid },
    Search { caller: usize, q: String },
}

#[derive(Clone)]
struct Data {
    pool: sqlx::PgPool,
    callers: Vec<(Uuid, String)>,
    tokens: Vec<String>,
    asks: Vec<Ask>,
}

async fn run(opts: &Opts) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (_, url) = common::target().await;
    let admin = common::with_db(&url, "postgres");
    println!(
        "# HTTP API under load\n\n{} users' tokens, profiles and searches half and half; open loop at {} req/s for {} s; saturation with {} workers",
        CALLERS, opts.rate, opts.secs, opts.workers
    );
    for &size in &opts.sizes {
        let db = format!("bench_api_{size}");
        let db_url = common::with_db(&url, &db);
        let seeded = prepare(&admin, &db_url, &db, size).await;
        let index = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(format!("bench-api-index-{size}"));
        if seeded && index.exists() {
            std::fs::remove_dir_all(&index).unwrap();
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(opts.workers as u32)
            .connect(&db_url)
            .await
            .unwrap();
        let dir = chatctl::search::IndexDir::new(&index);
        if !matches!(dir.open(), Ok(Some(_))) {
            let s = Instant::now();
            chatctl::search::index::build(&pool, &dir, &Default::default(), &|_| {})
                .await
                .unwrap();
            println!(
                "\nbuilt the index of {db} in {:.1} s",
                s.elapsed().as_secs_f64()
            );
        }
        let mut data = data(pool).await;
        if let Some(only) = &opts.only {
            data.asks.retain(|a| match a {
                Ask::Profile { .. } => only == "profile",
                Ask::Search { .. } => only == "search",
            });
        }

        // The server, as operators run it.
        let bin = opts
            .bin
            .clone()
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_chatctl").to_owned());
        let mut server = std::process::Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", &db_url)
            .env("SUPABASE_JWT_SECRET", SECRET)
            .env("CHATCTL_SEARCH__INDEX_DIR", &index)
            .env("CHATCTL_SERVE__RATE_LIMIT", "1000000")
            .env(
                "CHATCTL_DATABASE__MAX_CONNECTIONS",
                opts.connections.to_string(),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let base = {
            use std::io::BufRead as _;
            let mut line = String::new();
            std::io::BufReader::new(server.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            line.trim()
                .strip_prefix("serving the API on ")
                .unwrap_or_else(|| panic!("{line}"))
                .to_owned()
        };
        let pid = server.id();
        let _stop = Stop(pid);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        // Warm-up: every caller once (caches, prepared statements, the index's pages).
        let warm: Vec<Ask> = data.asks.iter().take(2000).cloned().collect();
        closed_loop(
            &client,
            &base,
            &data,
            &warm,
            opts.workers,
            Duration::from_secs(5),
        )
        .await;

        println!("\n## {size} messages\n");
        if let Some(rates) = &opts.rates {
            for &rate in rates {
                let m = open_loop(&client, &base, &data, rate, opts.secs).await;
                println!(
                    "open loop, {rate} req/s, {} connections: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} errors",
                    opts.connections, m.p50, m.p99, m.max, m.errors
                );
            }
            continue;
        }
        let open = open_loop(&client, &base, &data, opts.rate, opts.secs).await;
        println!(
            "open loop, {} req/s for {} s: {} requests, {} errors, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (achieved {:.0} req/s)",
            opts.rate,
            opts.secs,
            open.n,
            open.errors,
            open.p50,
            open.p99,
            open.max,
            open.throughput
        );
        let sat = closed_loop(
            &client,
            &base,
            &data,
            &data.asks,
            opts.workers,
            Duration::from_secs(10),
        )
        .await;
        println!(
            "saturation over HTTP, {} workers: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors",
            opts.workers, sat.throughput, sat.p50, sat.p99, sat.errors
        );
        // The curve below saturation: the highest open-loop rate that keeps p99 under 20 ms
        // without errors.
        let mut best = None;
        for share in [0.25, 0.5, 0.7, 0.85] {
            let rate = ((sat.throughput * share) / 10.0).round() as u32 * 10;
            let m = open_loop(&client, &base, &data, rate.max(10), opts.secs.min(10)).await;
            println!(
                "open loop, {rate} req/s ({:.0}% of saturation): p50 {:.1} ms, p99 {:.1} ms, {} errors",
                share * 100.0,
                m.p50,
                m.p99,
                m.errors
            );
            if m.p99 < 20.0 && m.errors == 0 {
                best = Some(rate);
            }
        }
        match best {
            Some(rate) => {
                println!("highest measured rate with p99 < 20 ms and no errors: {rate} req/s")
            }
            None => println!("no measured rate kept p99 under 20 ms without errors"),
        }
        let floor = in_process(&data, &dir, opts.workers, Duration::from_secs(10)).await;
        println!(
            "floor, the same work in-process, {} workers: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms (HTTP at {:.0}% of it)",
            opts.workers,
            floor.throughput,
            floor.p50,
            floor.p99,
            100.0 * sat.throughput / floor.throughput
        );
        println!("server peak RSS: {} MiB", peak_rss_kib(pid) / 1024);
        drop(_stop);
        let _ = server.wait();
    }
}

/// Stops the server (SIGTERM) when dropped, a panic of the bench included.
struct Stop(u32);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.to_string()])
            .status();
    }
}

/// `db` with `size` messages of 10,000 users and 2,000 channels (kept between runs).
/// Seeds `db` unless it holds `size` messages already; true when it seeded (an index kept
/// from an earlier seed then describes other messages and must be built again).
async fn prepare(admin: &str, db_url: &str, db: &str, size: u64) -> bool {
    // Seeded again only when the database is missing or holds another size: a refused
    // connection (a previous run's server still holding them) must not drop it.
    match sqlx::PgPool::connect(db_url).await {
        Ok(pool) => {
            let n: Option<i64> = sqlx::query_scalar("select count(*) from public.chat")
                .fetch_one(&pool)
                .await
                .ok();
            pool.close().await;
            if n == Some(size as i64) {
                // Kept from an earlier run: brought to this build's schema.
                common::migrate_db(db_url).await;
                return false;
            }
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {}
        Err(e) => panic!("cannot connect to {db}: {e}"),
    }
    common::recreate(admin, db, None).await;
    common::migrate_db(db_url).await;
    let pool = sqlx::PgPool::connect(db_url).await.unwrap();
    let s = Instant::now();
    common::seed_10k(&pool, size, 10).await;
    println!("\nseeded {db} in {:.1} s", s.elapsed().as_secs_f64());
    pool.close().await;
    true
}

/// Callers, their tokens, and a shuffled mix of asks: each caller's profile requests are of
/// people of their own workspace (what the app shows), searches of a word or two.
async fn data(pool: sqlx::PgPool) -> Data {
    let rows: Vec<(Uuid, String, Uuid)> = sqlx::query_as(
        "select u.id, u.username, wm.workspace_id from users u
           join workspace_members wm on wm.user_id = u.id
          where not u.is_bot order by u.username",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut callers: Vec<(Uuid, String, Uuid)> = rows.clone();
    callers.shuffle(&mut rng);
    callers.truncate(CALLERS);
    let tokens = callers
        .iter()
        .map(|(id, _, _)| {
            chatctl::api::auth::mint(SECRET, *id, None, Duration::from_secs(3600)).unwrap()
        })
        .collect();
    let mut asks = Vec::new();
    for i in 0..20_000 {
        let caller = i % callers.len();
        let ws = callers[caller].2;
        if i % 2 == 0 {
            let same: Vec<&(Uuid, String, Uuid)> = rows.iter().filter(|r| r.2 == ws).collect();
            let user = same.choose(&mut rng).unwrap().0;
            asks.push(Ask::Profile { caller, user });
        } else {
            let q = if rng.random_bool(0.3) {
                format!(
                    "{} {}",
                    WORDS.choose(&mut rng).unwrap(),
                    WORDS.choose(&mut rng).unwrap()
                )
            } else {
                (*WORDS.choose(&mut rng).unwrap()).to_owned()
            };
            asks.push(Ask::Search { caller, q });
        }
    }
    asks.shuffle(&mut rng);
    Data {
        pool,
        callers: callers
            .into_iter()
            .map(|(id, name, _)| (id, name))
            .collect(),
        tokens,
        asks,
    }
}

/// Sends one ask over HTTP: whether it was answered 200.
async fn send(client: &reqwest::Client, base: &str, data: &Data, ask: &Ask) -> bool {
    let req = match ask {
        Ask::Profile { caller, user } => client
            .get(format!("{base}/api/users/{user}/profile"))
            .bearer_auth(&data.tokens[*caller]),
        Ask::Search { caller, q } => client
            .get(format!("{base}/api/search"))
            .query(&[("q", q.as_str()), ("limit", "20")])
            .bearer_auth(&data.tokens[*caller]),
    };
    match req.send().await {
        Ok(res) => {
            let ok = res.status().is_success();
            let _ = res.bytes().await;
            ok
        }
        Err(_) => false,
    }
}

struct Measured {
    n: usize,
    errors: usize,
    p50: f64,
    p99: f64,
    max: f64,
    throughput: f64,
}

fn measured(mut lat: Vec<Duration>, errors: usize, took: Duration) -> Measured {
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |p: f64| ms(lat[((lat.len() as f64 - 1.0) * p).round() as usize]);
    Measured {
        n: lat.len(),
        errors,
        p50: at(0.5),
        p99: at(0.99),
        max: ms(*lat.last().unwrap()),
        throughput: lat.len() as f64 / took.as_secs_f64(),
    }
}

/// Request i is sent at start + i/rate, whatever happened before; its latency runs from then.
async fn open_loop(
    client: &reqwest::Client,
    base: &str,
    data: &Data,
    rate: u32,
    secs: u64,
) -> Measured {
    let total = rate as usize * secs as usize;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let data = Arc::new(data.clone());
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
        let (client, base, data) = (client.clone(), base.to_owned(), data.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let ok = send(&client, &base, &data, &data.asks[i % data.asks.len()]).await;
            (at.elapsed(), ok)
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (d, ok) = t.await.unwrap();
        lat.push(d);
        errors += usize::from(!ok);
    }
    measured(lat, errors, start.elapsed())
}

/// `workers` loops, each sending its next ask when the last is answered, for `secs`.
async fn closed_loop(
    client: &reqwest::Client,
    base: &str,
    data: &Data,
    asks: &[Ask],
    workers: usize,
    secs: Duration,
) -> Measured {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let data = Arc::new(Data {
        asks: asks.to_vec(),
        ..data.clone()
    });
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, base, data, next) =
            (client.clone(), base.to_owned(), data.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while started.elapsed() < secs {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let s = Instant::now();
                let ok = send(&client, &base, &data, &data.asks[i % data.asks.len()]).await;
                lat.push(s.elapsed());
                errors += usize::from(!ok);
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    measured(lat, errors, started.elapsed())
}

/// The same asks without HTTP: the profile's reads and the library's search, as the caller.
async fn in_process(
    data: &Data,
    dir: &chatctl::search::IndexDir,
    workers: usize,
    secs: Duration,
) -> Measured {
    let reader = Arc::new(chatctl::search::Reader::open(dir).unwrap());
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let data = Arc::new(data.clone());
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (data, next, reader) = (data.clone(), next.clone(), reader.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while started.elapsed() < secs {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let s = Instant::now();
                match &data.asks[i % data.asks.len()] {
                    Ask::Profile { caller, user } => {
                        let claims = serde_json::json!({
                            "sub": data.callers[*caller].0, "role": "authenticated", "aud": "authenticated"
                        });
                        chatctl::api::profile(&data.pool, &claims, *user).await.unwrap();
                    }
                    Ask::Search { caller, q } => {
                        let req = chatctl::search::Request {
                            text: q,
                            as_user: Some(data.callers[*caller].clone()),
                            readable: None,
                            workspace: None,
                            limit: 20,
                        };
                        chatctl::search::search(&data.pool, Some(&reader), &req).await.unwrap();
                    }
                }
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    measured(lat, 0, started.elapsed())
}

/// The peak resident set of process `pid`, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
