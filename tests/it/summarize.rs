//! `chatctl summarize` and `chatctl ai reply` as a cron job and an operator run them: the
//! binary, a real database, the offline engine, and the OpenAI stand-in for the failure
//! exit codes.

use crate::support::SpawnGuarded as _;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::bots::{BOT, prepared};
use crate::support::openai_server::{Answer, StandIn};
use crate::support::{TestDb, chatctl_std, outputs};

/// Posts `text` in `channel` as `email` at `at`.
async fn post_at(
    c: &mut PgConnection,
    email: &str,
    channel: &str,
    text: &str,
    parent: Option<Uuid>,
    at: DateTime<Utc>,
) -> Uuid {
    sqlx::query_scalar(
        "insert into chat (channel_id, user_id, parent_id, message, created_at)
         select c.id, u.id, $4, jsonb_build_object('text', $3::text), $5 from channels c, users u
          where c.name = $2 and u.email = $1 returning chat.id",
    )
    .bind(email)
    .bind(channel)
    .bind(text)
    .bind(parent)
    .bind(at)
    .fetch_one(c)
    .await
    .unwrap()
}

/// Runs chatctl against `db` (off the test's runtime, which may serve a stand-in).
async fn run(db: &TestDb, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("DATABASE_URL".into(), db.url.clone()));
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let out = chatctl_std(&env).args(&args).output().unwrap();
        let (stdout, stderr) = outputs(&out);
        (out.status.code(), stdout, stderr)
    })
    .await
    .unwrap()
}

/// Yesterday's conversation in #engineering (UTC), and one message of today.
async fn yesterday(c: &mut PgConnection) -> Vec<Uuid> {
    let day = Utc::now().date_naive() - Duration::days(1);
    let at = |h: i64| day.and_hms_opt(0, 0, 0).unwrap().and_utc() + Duration::minutes(h * 50);
    let mut ids = Vec::new();
    let root = post_at(
        c,
        "ada@example.com",
        "engineering",
        "The release build fails on the arm runners since the compiler upgrade, anyone seen this?",
        None,
        at(1),
    )
    .await;
    ids.push(root);
    for (i, (who, text)) in [
        (
            "linus@example.com",
            "Yes, the linker runs out of memory with LTO on those runners",
        ),
        (
            "grace@example.com",
            "We could switch LTO to thin for arm builds only",
        ),
        ("ada@example.com", "ok"),
        (
            "linus@example.com",
            "Thin LTO fixed it on my branch, the binary is 3% bigger",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        ids.push(post_at(c, who, "engineering", text, Some(root), at(2 + i as i64)).await);
    }
    for (i, (who, text)) in [
        (
            "grace@example.com",
            "We decided to ship the release with thin LTO on friday",
        ),
        (
            "ken@example.com",
            "I will update the CI config tomorrow morning",
        ),
        ("margaret@example.com", "Who owns the arm runners budget?"),
    ]
    .into_iter()
    .enumerate()
    {
        ids.push(post_at(c, who, "engineering", text, None, at(8 + i as i64)).await);
    }
    post_at(
        c,
        "ada@example.com",
        "engineering",
        "today's news",
        None,
        Utc::now(),
    )
    .await;
    ids
}

async fn bot_messages(c: &mut PgConnection, bot: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select m.message ->> 'text' from chat m join users u on u.id = m.user_id
          where u.username = $1 and u.is_bot order by m.created_at",
    )
    .bind(bot)
    .fetch_all(c)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_daily_digest_is_printed_and_posted_once_per_window() {
    let db = TestDb::new().await;
    prepared(&db, BOT).await;
    let mut c = db.conn().await;
    let ids = yesterday(&mut c).await;
    let day = Utc::now().date_naive() - Duration::days(1);
    let base = ["summarize", "--channel", "#engineering", "-w", "acme"];

    let (code, md, stderr) = run(&db, &[], &base).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        md.starts_with(&format!(
            "Digest of #engineering, {day} 00:00 to {} 00:00 UTC: 8 message(s) from 5",
            day + Duration::days(1)
        )),
        "{md}"
    );
    assert!(
        md.contains("### Decisions") && md.contains("thin LTO on friday"),
        "{md}"
    );
    assert!(!md.contains("today's news"), "only the last complete day");

    let json_args: Vec<&str> = base.iter().copied().chain(["--format", "json"]).collect();
    let (code, json, _) = run(&db, &[], &json_args).await;
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["engine"], "offline");
    assert_eq!(v["messages"], 8);
    assert_eq!(v["window"]["start"], format!("{day}T00:00:00Z"));
    let cited = v["digest"]["highlights"].as_array().unwrap();
    assert!(!cited.is_empty());
    for h in cited {
        let id: Uuid = h["id"].as_str().unwrap().parse().unwrap();
        assert!(ids.contains(&id), "cites a message of the window");
    }
    assert_eq!(v["digest"]["threads"][0]["id"], ids[0].to_string());
    assert_eq!(v["digest"]["threads"][0]["replies"], 4);
    // The global --output is obeyed when --format is not given: the same result as YAML.
    let yaml_args: Vec<&str> = base.iter().copied().chain(["-o", "yaml"]).collect();
    let (code, yaml, _) = run(&db, &[], &yaml_args).await;
    assert_eq!(code, Some(0));
    let y: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(y["digest"], v["digest"], "{yaml}");

    // A bot nothing knows (no bots/NAME.yaml, no account) is a typo until asked for.
    let typo: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--post", "--as-bot", "digestbot"])
        .collect();
    let (code, _, stderr) = run(&db, &[], &typo).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("no bot `digestbot`") && stderr.contains("--create-bot"),
        "{stderr}"
    );
    assert!(bot_messages(&mut c, "digestbot").await.is_empty());

    // Posted as the bot (created when asked), once: a re-run of the cron job posts nothing.
    let post: Vec<&str> = typo.iter().copied().chain(["--create-bot"]).collect();
    let (code, _, stderr) = run(&db, &[], &post).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("posted the digest of #engineering"),
        "{stderr}"
    );
    let posted = bot_messages(&mut c, "digestbot").await;
    assert_eq!(posted.len(), 1);
    assert_eq!(
        posted[0].trim(),
        md.trim(),
        "what is posted is what is printed"
    );
    let (code, _, stderr) = run(&db, &[], &post).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("nothing to post") && stderr.contains("was posted by chatctl summarize"),
        "{stderr}"
    );
    assert_eq!(bot_messages(&mut c, "digestbot").await.len(), 1);

    // A sliding window cannot be posted: every run would name another window.
    let sliding: Vec<&str> = post.iter().copied().chain(["--since", "24h"]).collect();
    let (code, _, stderr) = run(&db, &[], &sliding).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("--post does not take a sliding --since window"),
        "{stderr}"
    );
    // But it can be printed.
    let since: Vec<&str> = base.iter().copied().chain(["--since", "48h"]).collect();
    let (code, md, _) = run(&db, &[], &since).await;
    assert_eq!(code, Some(0));
    assert!(md.contains(": 9 message(s)"), "{md}");

    // An empty window posts nothing and says so.
    let empty: Vec<&str> = post
        .iter()
        .copied()
        .chain(["--from", "2020-01-01", "--to", "2020-01-02"])
        .collect();
    let (code, out, stderr) = run(&db, &[], &empty).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(out.is_empty() && stderr.contains("nothing to post: #engineering, 2020-01-01 00:00 to 2020-01-02 00:00 UTC has no messages"), "{stderr}");
    assert_eq!(bot_messages(&mut c, "digestbot").await.len(), 1);

    let (code, _, stderr) = run(&db, &[], &["summarize", "--channel", "nope", "-w", "acme"]).await;
    assert_eq!(code, Some(64));
    assert!(
        stderr.contains("no channel #nope in workspace `acme`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_failing_model_posts_nothing_and_the_window_stays_open() {
    let db = TestDb::new().await;
    prepared(&db, BOT).await;
    let mut c = db.conn().await;
    yesterday(&mut c).await;
    let server = StandIn::start(|_, _| Answer::recorded(503, "error_503_overloaded.json")).await;
    let model = [
        ("CHATCTL_OPENAI__MODEL", "gpt-4o-mini"),
        ("OPENAI_BASE_URL", server.url.as_str()),
        ("OPENAI_API_KEY", "sk-test-abcdefghijklmnopqrstuv"),
        ("CHATCTL_OPENAI__MAX_RETRIES", "0"),
    ];
    let post = [
        "summarize",
        "--channel",
        "engineering",
        "-w",
        "acme",
        "--post",
        "--as-bot",
        "digestbot",
        "--create-bot",
    ];
    let (code, _, stderr) = run(&db, &model, &post).await;
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stderr.contains("HTTP 503"), "{stderr}");
    assert!(
        !stderr.contains("abcdefghijklmnopqrstuv"),
        "the key never shows"
    );
    let claims: i64 = sqlx::query_scalar("select count(*) from chatctl.bot_digests")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(claims, 0, "nothing half-applied: the window is not claimed");
    assert!(bot_messages(&mut c, "digestbot").await.is_empty());

    // A spent budget: refused before sending, exit 75.
    let mut budget = model.to_vec();
    budget.push(("CHATCTL_AI__DAILY_TOKEN_BUDGET", "10"));
    let sent = server.requests().len();
    let (code, _, stderr) = run(&db, &budget, &post).await;
    assert_eq!(code, Some(75), "{stderr}");
    assert!(
        stderr.contains("daily token budget of `digestbot` is spent"),
        "{stderr}"
    );
    assert_eq!(server.requests().len(), sent);

    // The next run, with the model back (here: the offline engine), posts the window.
    let (code, _, stderr) = run(&db, &[], &post).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(bot_messages(&mut c, "digestbot").await.len(), 1);
}

#[tokio::test]
async fn a_suggested_reply_points_to_where_the_question_was_discussed() {
    let db = TestDb::new().await;
    prepared(&db, BOT).await;
    let mut c = db.conn().await;
    let long_ago = Utc::now() - Duration::days(20);
    let answer = post_at(
        &mut c,
        "grace@example.com",
        "support",
        "To reset the staging database, run `make db-reset` from the ops repository",
        None,
        long_ago,
    )
    .await;
    for i in 0..60 {
        post_at(
            &mut c,
            "ken@example.com",
            "support",
            &format!("ticket {i} closed, customer happy"),
            None,
            Utc::now() - Duration::minutes(120 - i),
        )
        .await;
    }
    let args = [
        "ai",
        "reply",
        "--channel",
        "support",
        "-w",
        "acme",
        "--message",
        "how do I reset the staging database?",
        "--format",
        "json",
    ];
    // No index built: Postgres full-text search finds it.
    let (code, out, stderr) = run(&db, &[], &args).await;
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let yaml_args: Vec<&str> = args[..args.len() - 2]
        .iter()
        .copied()
        .chain(["-o", "yaml"])
        .collect();
    let (code, yaml, stderr) = run(&db, &[], &yaml_args).await;
    assert_eq!(code, Some(0), "{stderr}");
    let y: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(y["reply"], v["reply"], "-o yaml is obeyed: {yaml}");
    assert_eq!(v["engine"], "offline");
    assert_eq!(v["context_messages"], 50);
    assert_eq!(v["related_from"], "postgres");
    assert_eq!(v["related"][0], answer.to_string());
    let reply = v["reply"].as_str().unwrap();
    assert!(
        reply.contains("this was discussed before") && reply.contains(&answer.to_string()),
        "{reply}"
    );
    assert!(
        reply.contains("@grace") && reply.contains("make db-reset"),
        "{reply}"
    );

    // With an index, the index finds it, and the same reply is written.
    let index = tempfile::tempdir().unwrap();
    let with_index = [("CHATCTL_SEARCH__INDEX_DIR", index.path().to_str().unwrap())];
    let (code, _, stderr) = run(&db, &with_index, &["search", "reindex"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (code, out, stderr) = run(&db, &with_index, &args).await;
    assert_eq!(code, Some(0), "{stderr}");
    let w: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(w["related_from"], "index");
    assert_eq!(w["related"][0], answer.to_string());
    assert_eq!(w["reply"], v["reply"]);

    // The index is a cache: a message deleted since it was built is not pointed to.
    sqlx::query("update public.chat set is_deleted = true where id = $1")
        .bind(answer)
        .execute(&mut c)
        .await
        .unwrap();
    let (code, out, stderr) = run(&db, &with_index, &args).await;
    assert_eq!(code, Some(0), "{stderr}");
    let w: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(w["related_from"], "index");
    assert!(
        !w["related"].to_string().contains(&answer.to_string()),
        "{w}"
    );
    assert!(
        !w["reply"].as_str().unwrap().contains("make db-reset"),
        "{w}"
    );

    let (code, _, stderr) = run(
        &db,
        &[],
        &[
            "ai",
            "reply",
            "--channel",
            "support",
            "-w",
            "acme",
            "--message",
            " ",
        ],
    )
    .await;
    assert_eq!(code, Some(64), "{stderr}");
}

/// A window whose digest another run is writing (a replica, the previous firing still at a
/// long window) is not started a second time, nor waited for: the second `--post` says so
/// at once, and one digest is posted (issue 21).
#[tokio::test]
async fn a_digest_being_written_is_not_started_twice_nor_waited_for() {
    let db = TestDb::new().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    let seed = chatctl_std(&env)
        .args([
            "dev",
            "seed",
            "--users",
            "200",
            "--channels",
            "1",
            "--workspaces",
            "1",
        ])
        .args(["--messages", "40000", "-q"])
        .output()
        .unwrap();
    assert!(seed.status.success(), "{:?}", outputs(&seed));
    let post = [
        "summarize",
        "--channel",
        "general",
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--post",
        "--as-bot",
        "digestbot",
        "--create-bot",
    ];
    let mut first = chatctl_std(&env)
        .args(post)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .guarded();
    // The first run holds the window once it starts writing.
    let mut c = db.conn().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let writing: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_locks l join pg_stat_activity a on a.pid = l.pid
                             where l.locktype = 'advisory' and l.granted and a.datname = current_database())",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        if writing {
            break;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended before it was seen writing: the test tested nothing"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never started writing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (code, _, stderr) = run(&db, &[], &post).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("another run is writing the digest"),
        "{stderr}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the second run waited for the first instead of moving on"
    );
    let first = first.wait_with_output().unwrap();
    let (_, stderr) = outputs(&first);
    assert!(first.status.success(), "{stderr}");
    assert!(stderr.contains("posted the digest"), "{stderr}");
    assert_eq!(bot_messages(&mut c, "digestbot").await.len(), 1);
}
