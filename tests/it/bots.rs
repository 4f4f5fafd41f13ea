//! The bot runtime on a real database: exactly-once replies, catch-up, replicas, caps,
//! LISTEN/NOTIFY wake-ups, and definitions checked with file and line.

use crate::support::SpawnGuarded as _;
use std::path::Path;
use std::time::Duration;

use chatctl::bots::runtime::{self, Bot, ListenSource, Runtime, RuntimeOptions};
use chatctl::bots::spec::BotSpec;
use chatctl::provision::{self, Actor, PlanOptions, spec};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::support::{TestDb, chatctl, outputs};

pub(crate) const BOT: &str = "
name: summarybot
triggers:
  - command: { name: /summarize, reply: 'summary for @{user}' }
  - mention: { reply: 'hello @{user}' }
limits: { per_channel_per_hour: 1000, per_thread_per_hour: 1000 }
";

fn actor() -> Actor {
    Actor {
        operator: "test".into(),
        command: "test".into(),
    }
}

pub(crate) fn options(instance: &str) -> RuntimeOptions {
    RuntimeOptions {
        instance: instance.into(),
        overlap: Duration::from_secs(10),
        lease: Duration::from_secs(60),
        poll: Duration::from_secs(600),
    }
}

/// The example workspace, and the bot ready to run.
pub(crate) async fn prepared(db: &TestDb, yaml: &str) -> (PgPool, Vec<Bot>) {
    let mut c = db.conn().await;
    let files =
        spec::read(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("config/workspace.example.yaml")])
            .unwrap();
    let plan = provision::plan(&mut c, &files, &PlanOptions { prune: false })
        .await
        .unwrap();
    provision::apply::apply(&mut c, &plan.changes, &actor())
        .await
        .unwrap();
    let pool = db.pool().await;
    let spec: BotSpec = serde_yaml::from_str(yaml).unwrap();
    let bots = runtime::prepare(&pool, vec![spec], &actor()).await.unwrap();
    (pool, bots)
}

/// [`prepared`], run once (its cursor starts now).
pub(crate) async fn setup(db: &TestDb, yaml: &str) -> (PgPool, Vec<Bot>) {
    let (pool, bots) = prepared(db, yaml).await;
    Runtime::new(pool.clone(), bots.clone(), options("setup"))
        .catch_up()
        .await
        .unwrap();
    (pool, bots)
}

pub(crate) async fn post(
    c: &mut PgConnection,
    email: &str,
    channel: &str,
    text: &str,
    parent: Option<Uuid>,
) -> Uuid {
    sqlx::query_scalar(
        "insert into chat (channel_id, user_id, parent_id, message)
         select c.id, u.id, $4, jsonb_build_object('text', $3::text) from channels c, users u
          where c.name = $2 and u.email = $1 returning chat.id",
    )
    .bind(email)
    .bind(channel)
    .bind(text)
    .bind(parent)
    .fetch_one(c)
    .await
    .unwrap()
}

/// A test's database with the example workspace and the bot of `yaml` run once (its cursor
/// at now), and a connection to it.
pub(crate) async fn with_bot(yaml: &str) -> (TestDb, PgPool, Vec<Bot>, PgConnection) {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, yaml).await;
    let c = db.conn().await;
    (db, pool, bots, c)
}

/// `who` (`who@example.com` of the example workspace) says `text` in #`channel`, at the top
/// level.
pub(crate) async fn say(c: &mut PgConnection, who: &str, channel: &str, text: &str) -> Uuid {
    post(c, &format!("{who}@example.com"), channel, text, None).await
}

/// The bot's replies: (parent, text).
pub(crate) async fn replies(c: &mut PgConnection) -> Vec<(Option<Uuid>, String)> {
    sqlx::query_as(
        "select m.parent_id, m.message ->> 'text' from chat m join users u on u.id = m.user_id
          where u.username = 'summarybot' order by m.created_at, m.id",
    )
    .fetch_all(c)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_mention_gets_exactly_one_threaded_reply() {
    let (_db, pool, bots, mut c) = with_bot(BOT).await;
    let asked = say(&mut c, "ada", "general", "@summarybot are you there?").await;
    let rt = Runtime::new(pool, bots, options("a"));
    let pass = rt.catch_up().await.unwrap();
    assert_eq!(pass.replied, 1);
    assert_eq!(
        replies(&mut c).await,
        vec![(Some(asked), "hello @ada".to_owned())]
    );
    // Again: the overlap re-reads the message, the claim says it is done.
    rt.catch_up().await.unwrap();
    assert_eq!(replies(&mut c).await.len(), 1);
    let eyes: i64 = sqlx::query_scalar("select count(*) from emojis where emoji_uni_code = '👀'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(eyes, 0, "the in-flight reaction is removed after");
    // A reply inside a thread stays in that thread; commands work too.
    post(
        &mut c,
        "ken@example.com",
        "general",
        "/summarize please",
        Some(asked),
    )
    .await;
    rt.catch_up().await.unwrap();
    assert_eq!(
        replies(&mut c).await[1],
        (Some(asked), "summary for @ken".to_owned())
    );
}

#[tokio::test]
async fn bots_ignore_themselves_and_other_bots_and_channels_they_are_not_in() {
    let (_db, pool, bots, mut c) = with_bot(BOT).await;
    post(
        &mut c,
        "summarybot@bots.chatctl.invalid",
        "general",
        "@summarybot talking to myself",
        None,
    )
    .await;
    post(
        &mut c,
        "helpbot@bots.chatctl.invalid",
        "general",
        "/summarize from a bot",
        None,
    )
    .await;
    // summarybot is not a member of #support.
    say(&mut c, "grace", "support", "@summarybot psst").await;
    let pass = Runtime::new(pool, bots, options("a"))
        .catch_up()
        .await
        .unwrap();
    assert_eq!(pass.replied, 0);
    // Its only message is the one it wrote itself.
    assert_eq!(
        replies(&mut c).await,
        vec![(None, "@summarybot talking to myself".to_owned())]
    );
}

#[tokio::test]
async fn messages_posted_while_down_are_answered_on_start_and_history_is_not() {
    let db = TestDb::new().await;
    let (pool, bots) = prepared(&db, BOT).await;
    let mut c0 = db.conn().await;
    // Before the bot ever ran: history it must not answer.
    say(&mut c0, "ada", "engineering", "@summarybot old question").await;
    let first = Runtime::new(pool.clone(), bots.clone(), options("first"))
        .catch_up()
        .await
        .unwrap();
    assert_eq!(first.replied, 0, "a new bot does not answer history");
    // Down: nobody runs. Three mentions arrive.
    for i in 0..3 {
        say(
            &mut c0,
            "ada",
            "engineering",
            &format!("@summarybot question {i}"),
        )
        .await;
    }
    let pass = Runtime::new(pool, bots, options("second"))
        .catch_up()
        .await
        .unwrap();
    assert_eq!(pass.replied, 3);
}

// See: issue 15 (a message dated in the future moved every bot's cursor past all real
// messages; the sweep then read nothing and a mention sent while the daemon was down was
// never answered).
#[tokio::test]
async fn a_message_dated_in_the_future_never_carries_the_cursor_past_now() {
    let (_db, pool, bots, mut c) = with_bot(BOT).await;
    // An import (the service role may date messages) brings one dated 2099.
    let ahead = say(&mut c, "ada", "engineering", "@summarybot from the future").await;
    sqlx::query("update chat set created_at = '2099-01-01' where id = $1")
        .bind(ahead)
        .execute(&mut c)
        .await
        .unwrap();
    let pass = Runtime::new(pool.clone(), bots.clone(), options("a"))
        .catch_up()
        .await
        .unwrap();
    assert_eq!(pass.replied, 0, "it waits for its time");
    assert_eq!(pass.ahead, 1, "and the sweep says so");
    let cursor_ok: bool = sqlx::query_scalar(
        "select read_at <= now() + interval '1 minute' from chatctl.bot_cursors where bot = 'summarybot'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(cursor_ok, "the cursor stays at now");

    // Down, a mention arrives: the next start answers it.
    say(
        &mut c,
        "ada",
        "engineering",
        "@summarybot while you were down",
    )
    .await;
    let b = Runtime::new(pool.clone(), bots.clone(), options("b"));
    let pass = b.catch_up().await.unwrap();
    assert_eq!(pass.replied, 1);
    assert_eq!(pass.ahead, 1, "a new process logs it once");
    let pass = b.catch_up().await.unwrap();
    assert_eq!((pass.replied, pass.ahead), (0, 0), "once");

    // A cursor carried ahead before this release comes back to now.
    sqlx::raw_sql("update chatctl.bot_cursors set read_at = '2099-01-01' where bot = 'summarybot'")
        .execute(&mut c)
        .await
        .unwrap();
    say(&mut c, "ada", "engineering", "@summarybot after the repair").await;
    let pass = Runtime::new(pool, bots, options("c"))
        .catch_up()
        .await
        .unwrap();
    assert_eq!(pass.replied, 1);
    let texts: Vec<String> = replies(&mut c).await.into_iter().map(|r| r.1).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
}

#[tokio::test]
async fn two_replicas_on_a_burst_never_reply_twice() {
    let (_db, pool, bots, mut c) = with_bot(BOT).await;
    for i in 0..200 {
        say(
            &mut c,
            "linus",
            "engineering",
            &format!("@summarybot burst {i}"),
        )
        .await;
    }
    let a = Runtime::new(pool.clone(), bots.clone(), options("replica-a"));
    let b = Runtime::new(pool.clone(), bots.clone(), options("replica-b"));
    let (pa, pb) = tokio::join!(a.catch_up(), b.catch_up());
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    assert_eq!(pa.replied + pb.replied, 200, "{pa:?} {pb:?}");
    let replies = replies(&mut c).await;
    let mut parents: Vec<Option<Uuid>> = replies.iter().map(|r| r.0).collect();
    parents.sort();
    parents.dedup();
    assert_eq!(
        (replies.len(), parents.len()),
        (200, 200),
        "one reply per message"
    );
}

#[tokio::test]
async fn a_claim_held_past_its_lease_is_taken_over() {
    let (_db, pool, bots, mut c) = with_bot(BOT).await;
    let asked = say(&mut c, "ada", "general", "@summarybot hello?").await;
    // A replica claimed it and hangs (its session is alive) past the lease.
    sqlx::query("insert into chatctl.bot_claims (bot, message_id, channel_id, claimed_by, claimed_at) select 'summarybot', id, channel_id, 'hung:1', now() - interval '2 minutes' from chat where id = $1")
        .bind(asked)
        .execute(&mut c)
        .await
        .unwrap();
    let pass = Runtime::new(pool, bots, options("alive"))
        .catch_up()
        .await
        .unwrap();
    assert_eq!(pass.replied, 1);
    let by: String =
        sqlx::query_scalar("select claimed_by from chatctl.bot_claims where message_id = $1")
            .bind(asked)
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(by, "alive");
}

#[tokio::test]
async fn reply_caps_per_thread_hold() {
    let db = TestDb::new().await;
    let capped = BOT.replace("per_thread_per_hour: 1000", "per_thread_per_hour: 2");
    let (pool, bots) = setup(&db, &capped).await;
    let mut c = db.conn().await;
    let root = say(&mut c, "ada", "general", "thread").await;
    for i in 0..5 {
        post(
            &mut c,
            "ken@example.com",
            "general",
            &format!("@summarybot {i}"),
            Some(root),
        )
        .await;
    }
    let runtime = Runtime::new(pool.clone(), bots, options("a"));
    let pass = runtime.catch_up().await.unwrap();
    assert_eq!((pass.replied, pass.capped), (2, 3));
    // What the cap held back is dropped, counted once: not re-read by the next sweep, and not
    // answered when the hour rolls over (its counters gone, as at the next hour).
    let pass = runtime.catch_up().await.unwrap();
    assert_eq!((pass.replied, pass.capped), (0, 0));
    sqlx::raw_sql("delete from chatctl.bot_reply_counts")
        .execute(&pool)
        .await
        .unwrap();
    let pass = runtime.catch_up().await.unwrap();
    assert_eq!((pass.replied, pass.capped), (0, 0));
    let dropped: i64 = sqlx::query_scalar(
        "select count(*) from chatctl.bot_claims
          where done_at is not null and reply_id is null and claimed_by like '%reply cap reached%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dropped, 3);
}

#[tokio::test]
async fn a_backlog_across_channels_is_answered_once_each_in_order() {
    let (db, pool, bots, mut c) = with_bot(BOT).await;
    // 1,300 mentions while the bot was down, alternating between two channels, each in a
    // transaction of its own (its own created_at): more than two of the sweep's chunks.
    sqlx::raw_sql(
        "do $$ begin
           for i in 1..1300 loop
             insert into chat (channel_id, user_id, message)
             select c.id, u.id, jsonb_build_object('text', '@summarybot backlog ' || i)
               from channels c, users u
              where c.name = case when i % 2 = 0 then 'general' else 'engineering' end
                and u.email = 'ada@example.com';
             commit;
           end loop;
         end $$",
    )
    .execute(&mut c)
    .await
    .unwrap();
    // On a pool of one connection: the sweep holds none while it claims.
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .unwrap();
    let sweep = Runtime::new(one, bots.clone(), options("a"));
    let pass = tokio::time::timeout(Duration::from_secs(60), sweep.catch_up())
        .await
        .expect("the sweep finishes on a pool of one")
        .unwrap();
    assert_eq!(pass.replied, 1300);
    // Each mention has one reply, and the replies were posted in the mentions' order: a
    // batch of replies (one statement, one created_at) answers only mentions after those
    // the batch before answered.
    let out_of_order: i64 = sqlx::query_scalar(
        "with batches as (
             select r.created_at as posted, min(m.created_at) as first_asked, max(m.created_at) as last_asked
               from chat r join chat m on m.id = r.parent_id
               join users u on u.id = r.user_id where u.username = 'summarybot'
              group by r.created_at)
         select count(*) from (
             select first_asked, lag(last_asked) over (order by posted) as before from batches) b
          where b.first_asked < b.before",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(out_of_order, 0);
    let unanswered: i64 = sqlx::query_scalar(
        "select count(*) from chat m where m.message ->> 'text' like '@summarybot backlog %'
            and (select count(*) from chat r where r.parent_id = m.id) <> 1",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(unanswered, 0);
    let again = Runtime::new(pool, bots, options("b"))
        .catch_up()
        .await
        .unwrap();
    assert_eq!(again.replied, 0);
}

#[tokio::test]
async fn reply_counters_of_past_hours_are_deleted_and_this_hours_kept() {
    let (_db, pool, bots, mut c) = with_bot(BOT).await;
    say(&mut c, "ada", "general", "@summarybot hi").await;
    sqlx::query(
        "insert into chatctl.bot_reply_counts (bot, scope, scope_id, window_start, replies)
         select 'summarybot', 'thread', gen_random_uuid(), date_trunc('hour', now()) - h * interval '1 hour', 5
           from generate_series(1, 48) h",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let pass = Runtime::new(pool, bots, options("a"))
        .catch_up()
        .await
        .unwrap();
    assert_eq!(pass.replied, 1);
    let windows: Vec<(String, bool, i32)> = sqlx::query_as(
        "select scope, window_start = date_trunc('hour', now()), replies
           from chatctl.bot_reply_counts order by scope",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(
        windows,
        vec![("channel".into(), true, 1), ("thread".into(), true, 1)],
        "48 past windows deleted, this hour's reply counted"
    );
}

#[tokio::test]
async fn listen_notify_wakes_the_runtime_and_shutdown_is_clean() {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, BOT).await;
    let rt = Runtime::new(pool.clone(), bots, options("listener"));
    let metrics = rt.metrics();
    let mut source = ListenSource::connect(&pool).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        rt.run(&mut source, async {
            stopped.await.ok();
        })
        .await
    });
    // The catch-ups at start (the connection's, and the first poll tick's right after it)
    // have finished and no other runs: from here, with a poll interval of 10 minutes, only
    // the notification can wake the runtime in time to answer.
    let catch_ups = || metrics.catch_ups.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = (0, tokio::time::Instant::now());
    loop {
        let now = (catch_ups(), tokio::time::Instant::now());
        if now.0 != seen.0 {
            seen = now;
        } else if now.0 >= 1 && now.1 - seen.1 >= Duration::from_millis(200) {
            break;
        }
        assert!(
            now.1 < deadline,
            "the catch-ups at start did not settle in 10 s ({} so far)",
            now.0
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut c = db.conn().await;
    say(&mut c, "ada", "general", "@summarybot ping").await;
    let mut answered = false;
    for _ in 0..100 {
        if !replies(&mut c).await.is_empty() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered, "no reply within 5 s of the NOTIFY");
    assert!(
        metrics
            .events_received
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "the reply followed a notification"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn invalid_definitions_are_reported_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "name: a\ntriggers:\n  - regex: { pattern: '(unclosed', reply: x }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "name: b\ntriggers:\n  - telepathy: {}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("c.yaml"), "name: c\ntriggers: []\n").unwrap();
    std::fs::write(
        dir.path().join("d.yaml"),
        "name: d\ntriggers:\n  - mention: {}\n  - thread_summary: { every: 1 }\n",
    )
    .unwrap();
    // Lines a search for the text would get wrong: the zone under its cron, a second
    // bot of the same name, a scope entry written after the same word elsewhere.
    std::fs::write(
        dir.path().join("e.yaml"),
        "name: d\npersona: general help\ntriggers:\n  - schedule:\n      cron: \"0 9 * * *\"\n      tz: Mars/Base\n  - schedule: { cron: \"not a cron\" }\nscope:\n  channels: [acme/general, general]\n",
    )
    .unwrap();
    let out = chatctl(&[])
        .args(["bots", "validate", "--bots"])
        .arg(dir.path())
        .output()
        .unwrap();
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    let d = dir.path().display();
    assert!(
        stderr.contains(&format!("{d}/a.yaml:3: invalid regex `(unclosed`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{d}/b.yaml:3: ")) && stderr.contains("telepathy"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{d}/c.yaml:2: a bot needs at least one trigger")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{d}/d.yaml:4: thread_summary `every: 1` must be at least 2 replies"
        )),
        "{stderr}"
    );

    for want in [
        format!("{d}/e.yaml:1: two bots are named `d`: this one and {d}/d.yaml"),
        format!("{d}/e.yaml:6: unknown time zone `Mars/Base`"),
        format!("{d}/e.yaml:7: invalid cron expression `not a cron`: The 'Seconds' field"),
        format!("{d}/e.yaml:9: scope channel `general` must be `workspace/channel`"),
    ] {
        assert!(stderr.contains(&want), "missing `{want}` in:\n{stderr}");
    }

    let bots = Path::new(env!("CARGO_MANIFEST_DIR")).join("bots");
    chatctl(&[])
        .args(["bots", "validate", "--bots"])
        .arg(&bots)
        .assert()
        .success();
    let out = chatctl(&[])
        .args([
            "bots",
            "test",
            "helpbot",
            "--channel",
            "acme/support",
            "--message",
            "I forgot my password",
            "--offline",
            "-o",
            "json",
            "--bots",
        ])
        .arg(&bots)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["reply"],
        "@you, you can reset your password at https://example.com/reset."
    );
    assert_eq!(json["checked"], false);
}

/// `bots test` tells the truth about a channel: one that does not exist is an error; one the
/// bot is not in, or that is outside its scope, is one it would not hear.
#[tokio::test]
async fn bots_test_says_whether_the_bot_would_hear_the_message_at_all() {
    let db = TestDb::new().await;
    prepared(&db, BOT).await;
    let dir = tempfile::tempdir().unwrap();
    let helpbot =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("bots/helpbot.yaml"))
            .unwrap();
    std::fs::write(dir.path().join("helpbot.yaml"), &helpbot).unwrap();
    let test = |bots: &Path, channel: &str| {
        chatctl(&[("DATABASE_URL", db.url.as_str())])
            .args(["bots", "test", "helpbot", "--channel", channel])
            .args(["--message", "I forgot my password", "-o", "json", "--bots"])
            .arg(bots)
            .output()
            .unwrap()
    };
    let out = test(dir.path(), "acme/nowhere");
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("no channel #nowhere"), "{stderr}");

    let json = |out: std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", outputs(&out).1);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let heard = json(test(dir.path(), "acme/support"));
    assert_eq!(
        (&heard["heard"], &heard["checked"]),
        (&true.into(), &true.into())
    );
    assert!(
        heard["reply"]
            .as_str()
            .unwrap()
            .contains("reset your password")
    );

    let elsewhere = json(test(dir.path(), "acme/#general"));
    assert_eq!(elsewhere["heard"], false);
    assert!(elsewhere["reply"].is_null());
    assert!(
        elsewhere["why"].as_str().unwrap().contains("not a member"),
        "{elsewhere}"
    );

    std::fs::write(
        dir.path().join("helpbot.yaml"),
        format!("{helpbot}\nscope:\n  channels: [acme/general]\n"),
    )
    .unwrap();
    let scoped = json(test(dir.path(), "acme/support"));
    assert_eq!(scoped["heard"], false);
    assert!(
        scoped["why"].as_str().unwrap().contains("scope"),
        "{scoped}"
    );
}

/// `chatctl bots run` as a process, against `db`.
fn daemon(db: &TestDb) -> crate::support::Spawned {
    crate::support::chatctl_std(&[("DATABASE_URL", db.url.as_str())])
        .args(["bots", "run", "-q", "--metrics", "127.0.0.1:0", "--bots"])
        .arg(BOTS_DIR.get().unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .guarded()
}

static BOTS_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

#[tokio::test]
async fn kill_9_during_a_burst_and_restart_answers_every_mention_exactly_once() {
    let db = TestDb::new().await;
    let (_pool, _bots) = setup(&db, BOT).await;
    let dir = BOTS_DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("chatctl-bots-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("summarybot.yaml"), BOT).unwrap();
        d
    });
    assert!(dir.is_dir());
    let mut first = Some(daemon(&db));
    let mut c = db.conn().await;
    for i in 0..500 {
        say(
            &mut c,
            "ada",
            "engineering",
            &format!("@summarybot burst {i}"),
        )
        .await;
        if i == 150
            && let Some(mut d) = first.take()
        {
            // Mid-burst, once the first daemon has claimed some of it (else the kill proves
            // nothing): no graceful anything.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let claimed: i64 = sqlx::query_scalar("select count(*) from chatctl.bot_claims")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                if claimed > 0 {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the first daemon claimed nothing in 20 s: the kill would test nothing"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            d.kill().unwrap(); // SIGKILL
            d.wait().unwrap();
        }
    }
    let mut second = daemon(&db);
    let answered = crate::support::wait_for(
        "the burst's 500 answers",
        Duration::from_secs(30),
        async || match replies(&mut c).await.len() {
            n @ 500.. => Ok(n),
            n => Err(format!("{n} replies")),
        },
    )
    .await;
    // A last mention, answered, shows the daemon has passed everything before it: a
    // second answer to any of the burst would have come by then.
    say(&mut c, "ada", "engineering", "@summarybot last one").await;
    crate::support::wait_for(
        "the last mention's answer",
        Duration::from_secs(30),
        async || match replies(&mut c).await.len() {
            501.. => Ok(()),
            n => Err(format!("{n} replies")),
        },
    )
    .await;
    std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    let status = second.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
    let replies = replies(&mut c).await;
    let mut parents: Vec<Option<Uuid>> = replies.iter().map(|r| r.0).collect();
    parents.sort();
    parents.dedup();
    assert_eq!(
        (answered, replies.len(), parents.len()),
        (500, 501, 501),
        "every mention answered exactly once"
    );
}

/// A plain HTTP GET on loopback: (status code, body).
pub(crate) fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        code,
        text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned(),
    )
}

/// `chatctl bots run` with `/metrics` on a free port: the process, the address it printed,
/// and the rest of its stderr (kept open, so the daemon can go on logging).
pub(crate) fn daemon_with_metrics(
    env: &[(&str, &str)],
    bots: &Path,
) -> (
    crate::support::Spawned,
    String,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::{BufRead as _, BufReader};
    let mut child = crate::support::chatctl_std(env)
        .args(["bots", "run", "--metrics", "127.0.0.1:0", "--bots"])
        .arg(bots)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .guarded();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find_map(|l| {
            l.split("http://")
                .nth(1)
                .map(|a| a.trim_end_matches("/metrics").to_owned())
        })
        .unwrap();
    (child, addr, lines)
}

#[tokio::test]
async fn the_daemon_serves_health_readiness_and_metrics() {
    let db = TestDb::new().await;
    let (_pool, _bots) = setup(&db, BOT).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summarybot.yaml"), BOT).unwrap();
    let (mut child, addr, stderr) =
        daemon_with_metrics(&[("DATABASE_URL", db.url.as_str())], dir.path());
    let (send, logged) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in stderr.map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    assert_eq!(get(&addr, "/healthz"), (200, "ok\n".to_owned()));
    let mut c = db.conn().await;
    let asked = say(&mut c, "ada", "general", "@summarybot metrics?").await;
    // One info line per action, at the default level: the bot, where, the message, what it
    // did, how long after the message.
    let line =
        crate::support::wait_until(
            "the reply's log line",
            Duration::from_secs(20),
            || match logged.recv_timeout(Duration::from_secs(20)) {
                Ok(l) if l.contains(&asked.to_string()) => Ok(l),
                Ok(l) => Err(format!("not yet: {l}")),
                Err(e) => Err(e.to_string()),
            },
        );
    for part in [
        " INFO ",
        "replied",
        "bot=summarybot",
        "channel=general",
        "latency_ms=",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = get(&addr, "/metrics").1;
        if metrics.contains("chatctl_bot_replies_posted_total 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.contains("chatctl_bot_replies_posted_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("chatctl_bot_dispatch_latency_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE chatctl_bot_dispatch_latency_seconds histogram"),
        "{metrics}"
    );
    // By bot, and the process's own.
    for series in [
        "chatctl_bot_replies_total{bot=\"summarybot\"} 1",
        "chatctl_bot_messages_total{bot=\"summarybot\"} ",
        "chatctl_bot_capped_total{bot=\"summarybot\"} 0",
        "chatctl_bot_reply_errors_total{bot=\"summarybot\"} 0",
        "chatctl_bot_latency_seconds_count{bot=\"summarybot\"} 1",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    // The build, as Prometheus's own *_build_info metrics give it: what `version` says.
    let build = chatctl::build_info::get();
    assert!(
        metrics.contains(&format!(
            "chatctl_build_info{{version=\"{}\",commit=\"{}\",build_date=\"{}\",target=\"{}\",rustc=\"{}\",features=\"{}\"}} 1",
            build.version,
            build.commit,
            build.build_date,
            build.target,
            build.rustc,
            build.features.join(",")
        )),
        "{metrics}"
    );
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("event source: connected"), "{body}");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

struct TestClock(std::sync::Mutex<chrono::DateTime<chrono::Utc>>);

impl chatctl::bots::schedule::Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

async fn post_at(c: &mut PgConnection, email: &str, channel: &str, text: &str, when: &str) {
    sqlx::query(
        "insert into chat (channel_id, user_id, message, created_at)
         select c.id, u.id, jsonb_build_object('text', $3::text), $4 from channels c, users u where c.name = $2 and u.email = $1",
    )
    .bind(email)
    .bind(channel)
    .bind(text)
    .bind(at(when))
    .execute(c)
    .await
    .unwrap();
}

async fn digests(c: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "select m.message ->> 'text' from chat m join users u on u.id = m.user_id
          where u.username = 'summarybot' and m.message ->> 'text' like 'Digest of%' order by m.created_at",
    )
    .fetch_all(c)
    .await
    .unwrap()
}

const DIGEST_BOT: &str = "
name: summarybot
triggers:
  - schedule: { cron: '0 9 * * *', tz: UTC }
";

#[tokio::test]
async fn a_scheduled_digest_is_posted_once_per_window_across_replicas_and_restarts() {
    let (_db, pool, bots, mut c) = with_bot(DIGEST_BOT).await;
    post_at(
        &mut c,
        "ada@example.com",
        "general",
        "release plan?",
        "2026-01-09T12:00:00Z",
    )
    .await;
    post_at(
        &mut c,
        "ken@example.com",
        "general",
        "friday",
        "2026-01-09T12:05:00Z",
    )
    .await;
    post_at(
        &mut c,
        "ada@example.com",
        "general",
        "ok",
        "2026-01-09T12:06:00Z",
    )
    .await;
    let clock = std::sync::Arc::new(TestClock(std::sync::Mutex::new(at("2026-01-10T09:00:30Z"))));
    let a = Runtime::new(pool.clone(), bots.clone(), options("a")).with_clock(clock.clone());
    let b = Runtime::new(pool.clone(), bots.clone(), options("b")).with_clock(clock.clone());
    let (pa, pb) = tokio::join!(a.catch_up(), b.catch_up());
    assert_eq!(
        pa.unwrap().digests + pb.unwrap().digests,
        1,
        "one digest: #general (#engineering's window is empty)"
    );
    a.catch_up().await.unwrap();
    let posted = digests(&mut c).await;
    assert_eq!(posted.len(), 1);
    assert!(
        posted[0].starts_with(
            "Digest of #general, 2026-01-09 09:00 to 2026-01-10 09:00 UTC: 3 message(s) from 2"
        ),
        "{}",
        posted[0]
    );
    // The offline engine's digest: what mattered, each message cited by its id.
    assert!(posted[0].contains("### Highlights\n\n- @"), "{}", posted[0]);

    // Down over two firings: on start, the latest missed window is posted.
    post_at(
        &mut c,
        "ken@example.com",
        "general",
        "late news",
        "2026-01-11T15:00:00Z",
    )
    .await;
    *clock.0.lock().unwrap() = at("2026-01-12T10:00:00Z");
    let restarted =
        Runtime::new(pool.clone(), bots.clone(), options("restarted")).with_clock(clock.clone());
    assert_eq!(restarted.catch_up().await.unwrap().digests, 1);
    assert!(digests(&mut c).await[1].contains("2026-01-11 09:00 to 2026-01-12 09:00"));

    // With post_missed: false, a window missed by more than a few minutes is skipped.
    let strict: BotSpec =
        serde_yaml::from_str(&DIGEST_BOT.replace("tz: UTC", "tz: UTC, post_missed: false"))
            .unwrap();
    let strict = vec![Bot::new(strict, bots[0].user_id).unwrap()];
    post_at(
        &mut c,
        "ken@example.com",
        "general",
        "more",
        "2026-01-12T15:00:00Z",
    )
    .await;
    *clock.0.lock().unwrap() = at("2026-01-13T11:00:00Z");
    let late = Runtime::new(pool, strict, options("late")).with_clock(clock);
    assert_eq!(late.catch_up().await.unwrap().digests, 0);
}

const SUMMARIZER: &str = "
name: summarybot
triggers:
  - thread_summary: { command: /tldr, every: 3 }
limits: { per_channel_per_hour: 1000, per_thread_per_hour: 1000 }
";

#[tokio::test]
async fn thread_summaries_come_every_n_replies_and_on_request_once_each() {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, SUMMARIZER).await;
    let rt = Runtime::new(pool, bots, options("a"));
    let mut c = db.conn().await;
    let root = say(&mut c, "ada", "general", "Shall we ship on Friday?").await;
    post(
        &mut c,
        "ken@example.com",
        "general",
        "yes, if CI is green",
        Some(root),
    )
    .await;
    post(
        &mut c,
        "linus@example.com",
        "general",
        "CI is green",
        Some(root),
    )
    .await;
    rt.catch_up().await.unwrap();
    assert!(replies(&mut c).await.is_empty(), "two replies: not yet");
    post(
        &mut c,
        "grace@example.com",
        "general",
        "ship it",
        Some(root),
    )
    .await;
    rt.catch_up().await.unwrap();
    rt.catch_up().await.unwrap();
    assert_eq!(
        replies(&mut c).await,
        vec![(
            Some(root),
            "Thread summary: @ada started with \"Shall we ship on Friday?\". 3 replies from @ken, \
             @linus, @grace. Latest, from @grace: \"ship it\""
                .to_owned()
        )]
    );
    // On request; the request itself and the bot's own summary are not conversation.
    post(&mut c, "ken@example.com", "general", "/tldr", Some(root)).await;
    rt.catch_up().await.unwrap();
    let got = replies(&mut c).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].1, got[0].1, "nothing new was said since");
    // At the top level there is no thread yet.
    say(&mut c, "ken", "general", "/tldr please").await;
    rt.catch_up().await.unwrap();
    assert_eq!(
        replies(&mut c).await[2].1,
        "This thread has no replies to summarize yet."
    );
    // Not a command: `/tldrx`.
    say(&mut c, "ken", "general", "/tldrx").await;
    rt.catch_up().await.unwrap();
    assert_eq!(replies(&mut c).await.len(), 3);

    // A long thread (6 replies): the summary also lists what mattered, by the offline
    // engine; the substantial replies, not the filler.
    for (who, text) in [
        ("ken@example.com", "ok"),
        (
            "linus@example.com",
            "Friday works, but the migration needs a freeze from Thursday noon",
        ),
        (
            "ada@example.com",
            "Agreed: freeze Thursday noon, ship Friday morning",
        ),
    ] {
        post(&mut c, who, "general", text, Some(root)).await;
    }
    rt.catch_up().await.unwrap();
    let got = replies(&mut c).await;
    assert_eq!(got.len(), 4);
    let summary = &got[3].1;
    assert!(
        summary.starts_with("Thread summary: @ada started with"),
        "{summary}"
    );
    let (_, mattered) = summary.split_once("\nWhat mattered:").expect(summary);
    assert!(
        mattered.contains("- @ada: Agreed: freeze Thursday noon, ship Friday morning"),
        "{summary}"
    );
    assert!(!mattered.contains("- @ken: ok"), "{summary}");
}

#[tokio::test]
async fn notifications_name_the_message_and_the_daemon_does_not_wake_itself() {
    let db = TestDb::new().await;
    let (pool, _bots) = setup(&db, BOT).await;
    let mut source = ListenSource::connect(&pool).await.unwrap();
    use chatctl::realtime::EventSource as _;
    assert_eq!(
        source.next().await.unwrap(),
        chatctl::realtime::Wake::Connected
    );
    // The daemon's sessions: their inserts wake nobody.
    let mut quiet = db.conn().await;
    sqlx::raw_sql("set chatctl.notify = off")
        .execute(&mut quiet)
        .await
        .unwrap();
    say(&mut quiet, "ada", "general", "from the daemon").await;
    let mut c = db.conn().await;
    let id = say(&mut c, "ken", "general", "from a person").await;
    let wake = tokio::time::timeout(Duration::from_secs(5), source.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(wake, chatctl::realtime::Wake::Inserted(vec![id]));
}

#[tokio::test]
async fn sweeps_beside_the_hot_path_never_stall_it_during_a_burst() {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, BOT).await;
    // A sweep every 20 ms: catch-ups constantly overlap the handling of notified messages.
    let mut opts = options("busy");
    opts.poll = Duration::from_millis(20);
    let rt = Runtime::new(pool.clone(), bots, opts);
    let mut source = ListenSource::connect(&pool).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        rt.run(&mut source, async {
            stopped.await.ok();
        })
        .await
    });
    let mut writers = Vec::new();
    for w in 0..4 {
        let db_url = db.url.clone();
        writers.push(tokio::spawn(async move {
            let mut c = <PgConnection as sqlx::Connection>::connect(&db_url)
                .await
                .unwrap();
            for i in 0..75 {
                let channel = if i % 2 == 0 { "general" } else { "engineering" };
                post(
                    &mut c,
                    "ada@example.com",
                    channel,
                    &format!("@summarybot {w}-{i}"),
                    None,
                )
                .await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut c = db.conn().await;
    let mut answered = 0;
    for _ in 0..200 {
        answered = replies(&mut c).await.len();
        if answered >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered, 300, "every mention answered within 10 s");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the daemon stops: nothing is stuck")
        .unwrap()
        .unwrap();
    assert_eq!(replies(&mut c).await.len(), 300, "nothing answered twice");
}

/// A bot whose mention trigger has no template answers with the AI: the model's reply when
/// it answers, the offline engine's when it fails (counted), in the message's thread.
#[tokio::test]
async fn a_mention_without_a_template_gets_the_ai_reply_or_the_offline_one() {
    use crate::support::openai_server::{Answer, StandIn};
    use chatctl::ai::openai::OpenAiEngine;
    use chatctl::config::AiConfig;
    let yaml = "name: summarybot\ntriggers:\n  - mention: {}\npersona: You are terse.\n";
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, yaml).await;
    let server = StandIn::start(|n, req| {
        if n == 0 {
            assert!(
                req.to_string().contains("You are terse."),
                "the persona is the system prompt"
            );
            Answer::completion("Run `make db-reset`.", 50)
        } else {
            Answer::recorded(500, "error_500_server_error.json")
        }
    })
    .await;
    let settings = AiConfig {
        model: Some("gpt-4o-mini".into()),
        base_url: Some(server.url.clone()),
        api_key: None,
        timeout: Duration::from_secs(5),
        max_tokens: 256,
        temperature: 0.0,
        context_tokens: 4096,
        concurrency: 1,
        max_retries: 0,
        max_retry_wait: Duration::from_secs(1),
        redact: true,
        daily_token_budget: None,
    };
    let rt = Runtime::new(pool.clone(), bots, options("a"));
    let engine = OpenAiEngine::new(settings, Some(pool), rt.metrics().ai.clone()).unwrap();
    let rt = rt.with_engine(std::sync::Arc::new(engine), None);
    let mut c = db.conn().await;
    let first = say(
        &mut c,
        "ada",
        "general",
        "@summarybot how do I reset staging?",
    )
    .await;
    assert_eq!(rt.catch_up().await.unwrap().replied, 1);
    assert_eq!(
        replies(&mut c).await,
        vec![(Some(first), "Run `make db-reset`.".to_owned())]
    );

    let second = say(
        &mut c,
        "ken",
        "general",
        "@summarybot what about the staging reset?",
    )
    .await;
    assert_eq!(rt.catch_up().await.unwrap().replied, 1);
    let all = replies(&mut c).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].0, Some(second));
    assert!(
        all[1].1.starts_with("@ken, "),
        "the offline engine's reply: {}",
        all[1].1
    );
    assert!(
        all[1].1.contains("reset staging"),
        "it points at the earlier question: {}",
        all[1].1
    );
    assert!(
        rt.metrics()
            .render()
            .contains("chatctl_ai_failures_total 1")
    );
}

/// `--log-format json`: every log line of an event's handling carries that event's span (and
/// one event span only), with its source, kind and message count.
#[tokio::test]
async fn each_event_is_handled_under_one_span_of_its_own_in_json_logs() {
    let db = TestDb::new().await;
    let (_pool, _bots) = setup(&db, BOT).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summarybot.yaml"), BOT).unwrap();
    let child = crate::support::chatctl_std(&[
        ("DATABASE_URL", db.url.as_str()),
        ("CHATCTL_LOG", "chatctl=debug"),
    ])
    .args([
        "--log-format",
        "json",
        "bots",
        "run",
        "--metrics",
        "127.0.0.1:0",
        "--bots",
    ])
    .arg(dir.path())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .guarded();
    let mut c = db.conn().await;
    // Wait until the daemon listens (its first catch-up answers this one).
    say(&mut c, "ada", "general", "@summarybot first").await;
    for i in 1..=3usize {
        for _ in 0..100 {
            if replies(&mut c).await.len() >= i {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(replies(&mut c).await.len(), i);
        say(&mut c, "ken", "general", &format!("@summarybot number {i}")).await;
    }
    for _ in 0..100 {
        if replies(&mut c).await.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let handled: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "event handled")
        .collect();
    assert!(
        handled.len() >= 3,
        "one line per event handled: {handled:?}"
    );
    for l in handled {
        let events: Vec<&serde_json::Value> = l["spans"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["name"] == "event")
            .collect();
        assert_eq!(events.len(), 1, "exactly one event span: {l}");
        assert_eq!(events[0]["source"], "listen");
        assert_eq!(events[0]["kind"], "inserted");
        assert!(events[0]["messages"].as_u64().unwrap() >= 1);
    }
}

/// Operators post and watch without SQL: `tail` follows #general, `post` writes a mention as
/// a member, and the bot's answer shows in the tail; `post` refuses what a member could not
/// do, and is audited.
#[tokio::test]
async fn post_a_mention_and_tail_shows_the_bots_answer() {
    use std::io::BufRead as _;
    let db = TestDb::new().await;
    let (_pool, _bots) = setup(&db, BOT).await;
    let env = [("DATABASE_URL", db.url.as_str())];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summarybot.yaml"), BOT).unwrap();
    let (_daemon, _addr, _stderr) = daemon_with_metrics(&env, dir.path());
    let mut tail = crate::support::chatctl_std(&env)
        .args(["tail", "-w", "acme", "--channel", "#general", "-n", "0"])
        .args(["--interval", "100ms", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .guarded();
    let (send, seen) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if send.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });

    let post = |text: &str| {
        let out = chatctl(&env)
            .args(["post", "-w", "acme", "--channel", "general"])
            .args(["--as", "ada@example.com", text, "-o", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", outputs(&out).1);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // `-n 0` shows nothing posted before the tail started: a first message, seen in the
    // tail, says it is following.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        post("good morning");
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match seen.recv_timeout(left.min(Duration::from_secs(2))) {
            Ok(line) if line["text"] == "good morning" => break,
            Ok(line) => panic!("the tail showed {line} before the first message"),
            Err(_) if left.is_zero() => panic!("the tail never showed a message"),
            Err(_) => continue,
        }
    }
    let posted = post("@summarybot are you there?");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|l: &serde_json::Value| l["author"] == "summarybot")
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = seen
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the tail showed no answer; it showed {lines:?}"));
        if line["text"] != "good morning" {
            lines.push(line);
        }
    }
    assert_eq!(lines[0]["id"], posted["id"], "the mention first: {lines:?}");
    assert_eq!(lines[0]["author"], "ada");
    let answer = lines.iter().find(|l| l["author"] == "summarybot").unwrap();
    assert_eq!(answer["thread"], posted["id"]);
    assert_eq!(answer["author_is_bot"], true);

    // A person not in the channel cannot post there; nor can a name that is no one.
    for (who, says) in [
        (
            ["--as", "barbara@partner.example"],
            "is not a member of #general",
        ),
        (["--as", "nobody@example.com"], "there is no person"),
    ] {
        let out = chatctl(&env)
            .args(["post", "-w", "acme", "--channel", "general"])
            .args(who)
            .arg("hello")
            .output()
            .unwrap();
        let (_, stderr) = outputs(&out);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
    let mut c = db.conn().await;
    let audited: i64 = sqlx::query_scalar(
        "select count(*) from chatctl.audit_log where action = 'post' and object_id = $1",
    )
    .bind(posted["id"].as_str().unwrap())
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}

/// An upgrade as the README describes it: `migrate up` while `bots run` is running. The
/// migration does not wait on the daemon (nor the daemon on it), and the daemon, not
/// restarted, answers a mention posted afterwards.
#[tokio::test]
async fn migrate_up_under_a_running_daemon_keeps_it_answering() {
    let db = TestDb::new().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    let down = chatctl(&env)
        .args(["migrate", "down", "--steps", "1", "--yes"])
        .output()
        .unwrap();
    assert!(down.status.success(), "{}", outputs(&down).1);
    let (_pool, _bots) = setup(&db, BOT).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summarybot.yaml"), BOT).unwrap();
    let (_daemon, addr, _stderr) = daemon_with_metrics(&env, dir.path());

    let up = chatctl(&env)
        .args(["migrate", "up", "--lock-timeout", "20s"])
        .output()
        .unwrap();
    let (stdout, stderr) = outputs(&up);
    assert!(up.status.success(), "{stderr}");
    assert!(stdout.contains("now at version"), "{stdout}");

    let mut c = db.conn().await;
    let mention = say(&mut c, "ada", "general", "@summarybot after the upgrade?").await;
    crate::support::wait_for(
        "the daemon's answer after the upgrade",
        Duration::from_secs(20),
        async || {
            let r = replies(&mut c).await;
            match r.iter().any(|(p, _)| *p == Some(mention)) {
                true => Ok(()),
                false => Err(format!("replies: {r:?}")),
            }
        },
    )
    .await;
    assert_eq!(get(&addr, "/readyz").0, 200, "still ready");
}
