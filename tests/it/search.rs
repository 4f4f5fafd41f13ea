//! Search: the tantivy index against the database it caches, the query language on both
//! engines, permissions against row level security, and the commands as operators run them.

use crate::support::SpawnGuarded as _;
use std::collections::BTreeSet;

use chatctl::db::seed::{self, SeedOptions};
use chatctl::search::{self, Engine, IndexDir, Reader, Scope, index};
use sqlx::PgPool;
use uuid::Uuid;

use crate::bots::{BOT, post, prepared, say};
use crate::support::{TestDb, chatctl_std, outputs};

/// Runs a query on an engine, as `user` (by username) or the service role.
async fn ids(
    pool: &PgPool,
    dir: &IndexDir,
    engine: Engine,
    q: &str,
    user: Option<&str>,
    limit: usize,
) -> Vec<Uuid> {
    let mut scope = Scope::default();
    if let Some(u) = user {
        let (id, _) = search::find_user(pool, u).await.unwrap();
        scope.as_user = Some(id);
        if engine == Engine::Tantivy {
            scope.readable = Some(search::readable_channels(pool, id).await.unwrap());
        }
    }
    let plan = plan_as(pool, q, &scope).await;
    let reader = match engine {
        Engine::Tantivy => Some(Reader::open(dir).unwrap()),
        Engine::Postgres => None,
    };
    search::run(pool, reader.as_ref(), &plan, &scope, limit)
        .await
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.id)
        .collect()
}

/// A query resolved for the service role.
async fn resolved(pool: &PgPool, q: &str) -> search::Plan {
    plan_as(pool, q, &Scope::default()).await
}

async fn plan_as(pool: &PgPool, q: &str, scope: &Scope) -> search::Plan {
    search::resolve(pool, search::query::parse(q).unwrap(), scope)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// The same query on both engines: the same set of messages (returned in full).
async fn both(pool: &PgPool, dir: &IndexDir, q: &str, user: Option<&str>) -> BTreeSet<Uuid> {
    let t: BTreeSet<Uuid> = ids(pool, dir, Engine::Tantivy, q, user, 10_000)
        .await
        .into_iter()
        .collect();
    let p: BTreeSet<Uuid> = ids(pool, dir, Engine::Postgres, q, user, 10_000)
        .await
        .into_iter()
        .collect();
    assert_eq!(t, p, "the engines disagree on {q:?} as {user:?}");
    t
}

async fn sync(pool: &PgPool, dir: &IndexDir) -> index::IndexReport {
    index::sync(pool, dir, &|_| {}).await.unwrap()
}

async fn set_at(pool: &PgPool, id: Uuid, at: &str) {
    sqlx::query("update chat set created_at = $2::timestamptz where id = $1")
        .bind(id)
        .bind(at)
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_operator_finds_what_slack_would_on_both_engines() {
    let db = TestDb::new().await;
    let (pool, _) = prepared(&db, BOT).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = IndexDir::new(tmp.path().join("search"));
    let mut c = db.conn().await;
    let ken: Uuid = sqlx::query_scalar("select id from users where username = 'ken'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let deploy = say(
        &mut c,
        "ada",
        "engineering",
        "Deploying the release train on Friday",
    )
    .await;
    let reply = post(
        &mut c,
        "linus@example.com",
        "engineering",
        "the release train leaves at noon, see https://example.com/train",
        Some(deploy),
    )
    .await;
    let mention = say(
        &mut c,
        "grace",
        "general",
        "@ken can you review the deploy script?",
    )
    .await;
    sqlx::query("update chat set message = message || jsonb_build_object('mentions', jsonb_build_array($2::text)) where id = $1")
        .bind(mention)
        .bind(ken.to_string())
        .execute(&mut c)
        .await
        .unwrap();
    let file = say(&mut c, "ken", "general", "Quarterly numbers attached").await;
    sqlx::query("insert into attachments (message_id, bucket_id, object_path, name, size_bytes) values ($1, 'files', 'q.pdf', 'q.pdf', 10)")
        .bind(file)
        .execute(&mut c)
        .await
        .unwrap();
    let secret = say(
        &mut c,
        "grace",
        "support",
        "A customer cannot deploy on Friday",
    )
    .await;
    let old = say(&mut c, "ada", "general", "Friday train was late").await;
    set_at(&pool, old, "2026-01-15T12:00:00Z").await;
    set_at(&pool, deploy, "2026-02-01T09:00:00Z").await;
    set_at(&pool, reply, "2026-02-01T10:00:00Z").await;

    index::build(&pool, &dir, &Default::default(), &|_| {})
        .await
        .unwrap();
    let set = |v: &[Uuid]| v.iter().copied().collect::<BTreeSet<Uuid>>();

    // Slack's after: and before: leave the day itself out.
    let cases: [(&str, &[Uuid]); 14] = [
        ("deploy", &[deploy, mention, secret]),
        ("\"release train\"", &[deploy, reply]),
        ("deploy -friday", &[mention]),
        ("friday from:@ada", &[deploy, old]),
        ("friday in:#general", &[old]),
        ("mentions:@ken", &[mention]),
        ("@ken review", &[mention]),
        ("has:file", &[file]),
        ("has:link", &[reply]),
        ("is:thread train", &[deploy, reply]),
        ("train on:2026-02-01", &[deploy, reply]),
        ("train after:2026-01-15", &[deploy, reply]),
        ("train before:2026-02-01", &[old]),
        ("train after:2026-01-14 before:2026-01-16", &[old]),
    ];
    for (q, expected) in cases {
        assert_eq!(both(&pool, &dir, q, None).await, set(expected), "{q}");
    }
    // Stop words alone match nothing, on both.
    assert!(both(&pool, &dir, "the of", None).await.is_empty());
    // Only filters or only exclusions: messages, never the channels' own documents.
    for q in ["in:#general", "-friday", "in:#general -friday"] {
        assert!(!both(&pool, &dir, q, None).await.is_empty(), "{q}");
    }
    // A plan may bound times within a day too (the query language gives whole days): the
    // index checks such a bound on the exact time.
    let reader = Reader::open(&dir).unwrap();
    let mut plan = resolved(&pool, "train").await;
    plan.since = Some("2026-02-01T09:30:00Z".parse().unwrap());
    plan.until = Some("2026-02-01T11:00:00Z".parse().unwrap());
    for r in [Some(&reader), None] {
        let found = search::run(&pool, r, &plan, &Scope::default(), 10)
            .await
            .unwrap();
        let found: Vec<Uuid> = found.hits.iter().map(|h| h.id).collect();
        assert_eq!(found, [reply], "index: {}", r.is_some());
    }

    // Permissions: the private channel only for its members.
    assert!(
        both(&pool, &dir, "deploy", Some("ada"))
            .await
            .contains(&mention)
    );
    assert!(
        !both(&pool, &dir, "deploy", Some("ada"))
            .await
            .contains(&secret)
    );
    assert!(
        both(&pool, &dir, "deploy", Some("grace"))
            .await
            .contains(&secret)
    );
    // A channel the user may not read is unknown to them.
    let scope = Scope {
        as_user: Some(search::find_user(&pool, "ada").await.unwrap().0),
        readable: Some(
            search::readable_channels(&pool, search::find_user(&pool, "ada").await.unwrap().0)
                .await
                .unwrap(),
        ),
        workspace: None,
    };
    let err = search::resolve(
        &pool,
        search::query::parse("x in:#support").unwrap(),
        &scope,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no channel #support"), "{err}");

    // Ranked, with a highlighted snippet and the names to show.
    let reader = Reader::open(&dir).unwrap();
    let plan = resolved(&pool, "release train").await;
    let found = search::run(&pool, Some(&reader), &plan, &Scope::default(), 10)
        .await
        .unwrap();
    assert_eq!(found.total, Some(2));
    assert!(
        found.hits[0].snippet.contains("**release** **train**"),
        "{:?}",
        found.hits[0]
    );
    let in_thread = found.hits.iter().find(|h| h.id == reply).unwrap();
    assert_eq!(in_thread.thread, Some(deploy));
    // Channels match on their topic.
    let plan = resolved(&pool, "deploys").await;
    let found = search::run(&pool, Some(&reader), &plan, &Scope::default(), 10)
        .await
        .unwrap();
    let names = search::names(&pool, &found).await.unwrap();
    let channels: Vec<&str> = found
        .channels
        .iter()
        .map(|c| names.channels[&c.id].0.as_str())
        .collect();
    assert_eq!(channels, ["#engineering"]);
}

/// `file:NAME` and `type:FAMILY`: the words of a message's file names and its files' MIME
/// families, from attachment rows and from the files a message lists, on both engines, kept
/// up to date as attachments come and go.
#[tokio::test]
async fn file_names_and_types_match_on_both_engines() {
    let db = TestDb::new().await;
    let (pool, _) = prepared(&db, BOT).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = IndexDir::new(tmp.path().join("search"));
    let mut c = db.conn().await;
    let attach = async |c: &mut sqlx::PgConnection, message: Uuid, name: &str, mime: &str| {
        sqlx::query(
            "insert into attachments (message_id, bucket_id, object_path, name, size_bytes, mime_type)
             values ($1, 'attachments', $2, $2, 10, $3)",
        )
        .bind(message)
        .bind(name)
        .bind(mime)
        .execute(&mut *c)
        .await
        .unwrap();
    };
    let report = say(&mut c, "ada", "general", "the numbers").await;
    attach(&mut c, report, "Q3 Report (final).pdf", "application/pdf").await;
    let photo = say(&mut c, "ken", "general", "look at this").await;
    sqlx::query(
        "update chat set message = message || '{\"attachments\": [{\"name\": \"whiteboard.PNG\", \"mime_type\": \"image/png\"}]}' where id = $1",
    )
    .bind(photo)
    .execute(&mut c)
    .await
    .unwrap();
    let sheet = say(&mut c, "grace", "general", "raw data").await;
    attach(&mut c, sheet, "q3-raw.csv", "text/csv").await;
    let doc = say(&mut c, "grace", "general", "the plan").await;
    attach(
        &mut c,
        doc,
        "plan.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    )
    .await;
    let plain = say(
        &mut c,
        "ada",
        "general",
        "no files here, the report is late",
    )
    .await;

    index::build(&pool, &dir, &Default::default(), &|_| {})
        .await
        .unwrap();
    let set = |v: &[Uuid]| v.iter().copied().collect::<BTreeSet<Uuid>>();
    let cases: [(&str, &[Uuid]); 12] = [
        ("file:report", &[report]),
        ("file:q3-report", &[report]),
        ("file:final.pdf", &[report]),
        ("file:q3", &[report, sheet]),
        ("file:WHITEBOARD", &[photo]),
        ("type:pdf", &[report]),
        ("type:image", &[photo]),
        ("type:spreadsheet", &[sheet]),
        ("type:text", &[sheet]),
        ("type:docs", &[doc]),
        ("has:file -type:image -type:pdf", &[sheet, doc]),
        ("report -file:report", &[plain]),
    ];
    for (q, expected) in cases {
        assert_eq!(both(&pool, &dir, q, None).await, set(expected), "{q}");
    }
    assert!(
        both(&pool, &dir, "file:report type:image", None)
            .await
            .is_empty()
    );

    // Incremental: an attachment added, another removed.
    attach(&mut c, plain, "late-report.pdf", "application/pdf").await;
    sqlx::query("delete from attachments where message_id = $1")
        .bind(report)
        .execute(&mut c)
        .await
        .unwrap();
    sync(&pool, &dir).await;
    assert_eq!(both(&pool, &dir, "type:pdf", None).await, set(&[plain]));
    assert_eq!(both(&pool, &dir, "file:report", None).await, set(&[plain]));

    for (q, says) in [
        ("type:xls", "type: takes one of image, video"),
        ("file:--", "file: takes a file name"),
    ] {
        let err = search::query::parse(q).unwrap_err().to_string();
        assert!(err.contains(says), "{q}: {err}");
    }
}

/// An index directory outlives its database: pointed at another one (a restore into a new
/// database, staging then production), it is rebuilt from that one, never topped up with
/// its change log; a query refuses it until then. A restored database has a key of its own.
#[tokio::test]
async fn an_index_of_another_database_is_rebuilt_not_topped_up() {
    let a = TestDb::new().await;
    let (pool_a, _) = prepared(&a, BOT).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = IndexDir::new(tmp.path().join("search"));
    let mut ca = a.conn().await;
    let only_a = say(&mut ca, "ada", "general", "zanzibar quarterly numbers").await;
    index::build(&pool_a, &dir, &Default::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(
        ids(&pool_a, &dir, Engine::Tantivy, "zanzibar", None, 10).await,
        [only_a]
    );

    let b = TestDb::new().await;
    let (pool_b, _) = prepared(&b, BOT).await;
    let mut cb = b.conn().await;
    let only_b = say(&mut cb, "ada", "general", "zanzibar weekly plans").await;
    let reader = Reader::open(&dir).unwrap();
    let refused = index::check_database(&pool_b, &reader.generation)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("another database"),
        "{refused}"
    );
    let report = sync(&pool_b, &dir).await;
    assert_eq!(report.mode, "full");
    assert!(report.note.unwrap_or_default().contains("another database"));
    assert_eq!(
        ids(&pool_b, &dir, Engine::Tantivy, "zanzibar", None, 10).await,
        [only_b]
    );
    let reader = Reader::open(&dir).unwrap();
    index::check_database(&pool_b, &reader.generation)
        .await
        .unwrap();
    // Back on the first: rebuilt again, then topped up as usual.
    assert_eq!(sync(&pool_a, &dir).await.mode, "full");
    assert_eq!(sync(&pool_a, &dir).await.mode, "incremental");

    // A restore of `a` is another database.
    let archive = tmp.path().join("a.backup");
    let out = chatctl_std(&[("DATABASE_URL", &a.url)])
        .args(["backup", "create", "--out", archive.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", outputs(&out).1);
    let c = TestDb::empty().await;
    let out = chatctl_std(&[("DATABASE_URL", &a.url)])
        .args([
            "backup",
            "restore",
            archive.to_str().unwrap(),
            "--target-url",
            &c.url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", outputs(&out).1);
    let key = |url: String| async move {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::query_scalar::<_, Uuid>("select database_key from chatctl.search_state")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_ne!(key(a.url.clone()).await, key(c.url.clone()).await);
}

/// What an incremental run must not miss: a row committed after a later one (a cursor on
/// time or on a sequence would skip it), edits, soft and hard deletes, attachments, channel
/// renames; and membership changes, which need no reindex at all.
#[tokio::test]
async fn an_incremental_run_misses_nothing_committed_out_of_order() {
    let db = TestDb::new().await;
    let (pool, _) = prepared(&db, BOT).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = IndexDir::new(tmp.path().join("search"));
    let mut c = db.conn().await;
    let edited = say(&mut c, "ada", "general", "first draft of the plan").await;
    let doomed = say(&mut c, "ada", "general", "delete me later").await;
    let gone = say(&mut c, "ada", "general", "remove me for good").await;
    index::build(&pool, &dir, &Default::default(), &|_| {})
        .await
        .unwrap();

    // A long transaction inserts first (created_at = its start) and commits last.
    let mut slow = pool.begin().await.unwrap();
    let late: Uuid = sqlx::query_scalar(
        "insert into chat (channel_id, user_id, message)
         select c.id, u.id, '{\"text\": \"slowpoke arrives\"}' from channels c, users u
          where c.name = 'general' and u.username = 'ken' returning chat.id",
    )
    .fetch_one(&mut *slow)
    .await
    .unwrap();
    let quick = say(&mut c, "grace", "general", "quickfox was here").await;
    let r = sync(&pool, &dir).await;
    assert_eq!(r.mode, "incremental");
    assert_eq!(
        both(&pool, &dir, "quickfox", None)
            .await
            .into_iter()
            .collect::<Vec<_>>(),
        [quick]
    );
    assert!(both(&pool, &dir, "slowpoke", None).await.is_empty());
    slow.commit().await.unwrap();
    sync(&pool, &dir).await;
    assert_eq!(
        both(&pool, &dir, "slowpoke", None)
            .await
            .into_iter()
            .collect::<Vec<_>>(),
        [late]
    );

    sqlx::query("update chat set message = '{\"text\": \"final version of the roadmap\"}', modified_at = now() where id = $1")
        .bind(edited)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("update chat set is_deleted = true where id = $1")
        .bind(doomed)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("delete from chat where id = $1")
        .bind(gone)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("insert into attachments (message_id, bucket_id, object_path, name, size_bytes) values ($1, 'files', 'a', 'a', 1)")
        .bind(quick)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query(
        "update channels set name = 'announcements', topic = 'Company news' where name = 'general'",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let r = sync(&pool, &dir).await;
    assert_eq!(r.deleted, 2, "{r:?}");
    assert!(both(&pool, &dir, "draft", None).await.is_empty());
    assert_eq!(
        both(&pool, &dir, "roadmap", None)
            .await
            .into_iter()
            .collect::<Vec<_>>(),
        [edited]
    );
    assert!(both(&pool, &dir, "delete", None).await.is_empty());
    assert!(both(&pool, &dir, "remove", None).await.is_empty());
    assert_eq!(
        both(&pool, &dir, "has:file", None)
            .await
            .into_iter()
            .collect::<Vec<_>>(),
        [quick]
    );
    assert_eq!(
        both(&pool, &dir, "in:#announcements quickfox", None)
            .await
            .len(),
        1
    );
    let g = dir.open_existing().unwrap();
    assert!(index::verify(&pool, &g).await.unwrap().is_empty());

    // Membership: ken leaves #engineering and no longer finds its messages, at once.
    let eng = say(&mut c, "ada", "engineering", "zebra crossing").await;
    sync(&pool, &dir).await;
    assert_eq!(both(&pool, &dir, "zebra", Some("ken")).await.len(), 1);
    sqlx::query("update channels set kind = 'private' where name = 'engineering'")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("delete from members where user_id = (select id from users where username = 'ken') and channel_id = (select id from channels where name = 'engineering')")
        .execute(&mut c)
        .await
        .unwrap();
    assert!(both(&pool, &dir, "zebra", Some("ken")).await.is_empty());
    assert_eq!(
        both(&pool, &dir, "zebra", Some("ada"))
            .await
            .into_iter()
            .collect::<Vec<_>>(),
        [eng]
    );

    // A pruned change log: an index older than its horizon is rebuilt in full.
    sqlx::query("update chatctl.search_log set at = now() - interval '30 days'")
        .execute(&mut c)
        .await
        .unwrap();
    assert!(index::prune(&pool, index::retention()).await.unwrap() > 0);
    say(&mut c, "ada", "engineering", "after the prune").await;
    let r = sync(&pool, &dir).await;
    assert_eq!(r.mode, "full", "{r:?}");
    assert_eq!(both(&pool, &dir, "prune", None).await.len(), 1);
}

async fn seeded(messages: u64) -> (TestDb, PgPool) {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    seed::seed(
        &pool,
        &SeedOptions {
            until: chatctl::db::seed::REFERENCE,
            users: 60,
            channels: 30,
            messages,
            workspaces: 2,
            seed: 5,
            progress: false,
        },
    )
    .await
    .unwrap();
    (db, pool)
}

/// The words of the data, most frequent first (Postgres's own lexemes).
async fn common_words(pool: &PgPool, n: i64) -> Vec<String> {
    sqlx::query_scalar(
        "select word from ts_stat('select search from public.chat') where word ~ '^[a-z]+$'
          order by ndoc desc, word limit $1",
    )
    .bind(n)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn search_as_a_user_matches_row_level_security_for_every_user() {
    let (_db, pool) = seeded(4_000).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = IndexDir::new(tmp.path().join("search"));
    index::build(&pool, &dir, &Default::default(), &|_| {})
        .await
        .unwrap();
    let words = common_words(&pool, 40).await;
    // Simple keyword queries: both engines, the same set of matches.
    for w in words.iter().step_by(4) {
        assert!(!both(&pool, &dir, w, None).await.is_empty(), "{w}");
    }
    let users: Vec<String> = sqlx::query_scalar("select username from users order by username")
        .fetch_all(&pool)
        .await
        .unwrap();
    let everything = both(&pool, &dir, &words[0], None).await;
    let mut restricted = 0;
    for u in &users {
        let seen = both(&pool, &dir, &words[0], Some(u)).await;
        // What RLS lets the user read, straight from the table.
        let mut tx = pool.begin().await.unwrap();
        let uid = search::find_user(&pool, u).await.unwrap().0;
        search::act_as(&mut tx, uid).await.unwrap();
        let rls: BTreeSet<Uuid> = sqlx::query_scalar(
            "select id from public.chat where not is_deleted and search @@ plainto_tsquery('english', $1)",
        )
        .bind(&words[0])
        .fetch_all(&mut *tx)
        .await
        .unwrap()
        .into_iter()
        .collect();
        tx.rollback().await.unwrap();
        assert_eq!(
            seen, rls,
            "search as {u} differs from what RLS lets them read"
        );
        assert!(seen.is_subset(&everything));
        restricted += usize::from(seen.len() < everything.len());
    }
    assert!(
        restricted > users.len() / 2,
        "private channels and DMs were found by non-members"
    );
}

/// Runs chatctl on `db` with its own index directory.
fn run(db: &TestDb, index: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = chatctl_std(&[
        ("DATABASE_URL", db.url.as_str()),
        ("CHATCTL_SEARCH__INDEX_DIR", index.to_str().unwrap()),
    ])
    .args(args)
    .output()
    .unwrap();
    let (stdout, stderr) = outputs(&out);
    (out.status.code(), stdout, stderr)
}

#[tokio::test]
async fn the_commands_reindex_query_verify_and_report_status() {
    let (db, pool) = seeded(3_000).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("search");
    let (code, out, err) = run(&db, &dir, &["search", "status", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["generation"],
        serde_json::Value::Null
    );
    let (code, _, err) = run(&db, &dir, &["search", "query", "hello"]);
    assert_eq!(code, Some(64));
    assert!(err.contains("chatctl search reindex"), "{err}");

    let (code, out, err) = run(&db, &dir, &["search", "reindex", "--full", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["messages"], 3_000);
    assert!(r["docs_per_sec"].as_u64().unwrap() > 0);

    let word = &common_words(&pool, 1).await[0];
    let (code, out, err) = run(
        &db,
        &dir,
        &["search", "query", word, "-n", "5", "-o", "json"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("service role"), "the operator is told: {err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["results"].as_array().unwrap().len(), 5);
    let first = &r["results"][0];
    assert!(
        first["channel"].as_str().unwrap().starts_with('#') || first["channel"] == "direct message"
    );
    assert!(first["snippet"].as_str().unwrap().contains("**"), "{first}");
    assert!(!first["author"].as_str().unwrap().is_empty());
    let user: String = sqlx::query_scalar("select username from users order by username limit 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (code, out, err) = run(
        &db,
        &dir,
        &[
            "search", "query", word, "--as", &user, "--engine", "postgres", "-o", "json",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("service role"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["as"],
        user.as_str()
    );

    // Bad queries: one clear error, pointing at the column.
    for (q, col, what) in [
        ("deploy \"friday", 8, "never closed"),
        ("deploy frm:@ada", 8, "unknown operator `frm:`"),
        ("x before:2027-02-30", 10, "not a date"),
        ("x from:@nobody", 3, "no user @nobody"),
        ("", 1, "empty"),
    ] {
        let (code, _, err) = run(&db, &dir, &["search", "query", q]);
        assert_eq!(code, Some(64), "{q}: {err}");
        assert!(
            err.contains(&format!("at column {col}: ")) && err.contains(what),
            "{q}: {err}"
        );
        assert!(
            err.contains(&format!("\n  {q}\n")),
            "the query is shown: {err}"
        );
    }
    // A pasted document is refused on both engines before it reaches either (20,000 words
    // took PostgreSQL's engine past its stack depth; one argument holds at most 128 KiB).
    let pasted = vec!["deploy"; 15_000].join(" ");
    for engine in ["postgres", "tantivy"] {
        let (code, _, err) = run(&db, &dir, &["search", "query", &pasted, "--engine", engine]);
        assert_eq!(code, Some(64), "{engine}: {err}");
        assert!(err.contains("longer than 1024 bytes"), "{engine}: {err}");
    }
    let many = vec!["deploy"; 65].join(" ");
    let (code, _, err) = run(
        &db,
        &dir,
        &["search", "query", &many, "--engine", "postgres"],
    );
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("more than 64 words"), "{err}");

    let (code, out, _) = run(&db, &dir, &["search", "verify"]);
    assert_eq!(code, Some(0), "{out}");
    // Change the database behind the index's back: verify says how, and exits 2.
    sqlx::query("update chat set message = '{\"text\": \"changed\"}' where id = (select id from chat order by id limit 1)").execute(&pool).await.unwrap();
    sqlx::query("update chat set is_deleted = true where id = (select id from chat order by id desc limit 1)").execute(&pool).await.unwrap();
    // A file attached later leaves the message's updated_at as it was; verify still sees it.
    sqlx::query("insert into attachments (message_id, bucket_id, object_path, name, size_bytes) select id, 'files', 'later.pdf', 'later.pdf', 10 from chat order by id limit 1 offset 1").execute(&pool).await.unwrap();
    let (code, out, _) = run(&db, &dir, &["search", "verify", "-o", "json"]);
    assert_eq!(code, Some(2), "{out}");
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            d["stale"].as_array().unwrap().len(),
            d["extra"].as_array().unwrap().len()
        ),
        (2, 1),
        "{d}"
    );
    let (code, out, _) = run(&db, &dir, &["search", "status", "-o", "json"]);
    assert_eq!(code, Some(0));
    assert!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["backlog"]
            .as_u64()
            .unwrap()
            >= 2
    );
    let (code, out, err) = run(&db, &dir, &["search", "reindex"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("applied the changes"), "{out}");
    let (code, _, _) = run(&db, &dir, &["search", "verify"]);
    assert_eq!(code, Some(0));
    let (code, out, _) = run(
        &db,
        &dir,
        &["search", "reindex", "--workspace", "seed-1", "-o", "json"],
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, _, _) = run(&db, &dir, &["search", "verify"]);
    assert_eq!(code, Some(0));
}

/// kill -9 during a full rebuild: the old index keeps serving, and the next rebuild clears
/// what the crashed one left. Meanwhile a second rebuild stops at once (exit 75: another is
/// writing), and Ctrl-C during a rebuild ends it (SIGINT: a shell's 130) with the old index
/// still serving.
#[tokio::test]
async fn a_crash_mid_rebuild_leaves_the_old_index_serving() {
    let (db, pool) = seeded(40_000).await;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("search");
    let dir = IndexDir::new(&path);
    index::build(&pool, &dir, &Default::default(), &|_| {})
        .await
        .unwrap();
    let before = dir.current_name().unwrap().unwrap();
    let word = common_words(&pool, 1).await.remove(0);
    let expected = ids(&pool, &dir, Engine::Tantivy, &word, None, 50).await;
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("CHATCTL_SEARCH__INDEX_DIR", path.to_str().unwrap()),
    ];
    let generations = || {
        std::fs::read_dir(&path)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("gen-")
            })
            .count()
    };
    // A rebuild, once its new generation exists (before it can finish: the test proves
    // nothing if the signal comes before the rebuild wrote anything).
    let rebuilding = || {
        let mut child = chatctl_std(&env)
            .args(["search", "reindex", "--full", "-q"])
            .guarded();
        crate::support::wait_until(
            "the rebuild's new generation",
            std::time::Duration::from_secs(30),
            || {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "the rebuild ended before a new generation was seen"
                );
                match generations() {
                    2.. => Ok(()),
                    n => Err(format!("{n} generation(s)")),
                }
            },
        );
        child
    };

    let mut child = rebuilding();
    let out = chatctl_std(&env)
        .args(["search", "reindex", "--full"])
        .output()
        .unwrap();
    let (_, stderr) = crate::support::outputs(&out);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("another chatctl is rebuilding"), "{stderr}");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the rebuild finished before it could be killed"
    );
    assert_eq!(dir.current_name().unwrap().unwrap(), before);
    assert_eq!(
        ids(&pool, &dir, Engine::Tantivy, &word, None, 50).await,
        expected
    );

    index::build(&pool, &dir, &Default::default(), &|_| {})
        .await
        .unwrap();
    let gens: Vec<String> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    assert_eq!(gens, [dir.current_name().unwrap().unwrap()]);

    let serving = dir.current_name().unwrap().unwrap();
    let expected = ids(&pool, &dir, Engine::Tantivy, &word, None, 50).await;
    let mut child = rebuilding();
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "ended by Ctrl-C: {status:?}"
    );
    assert_eq!(dir.current_name().unwrap().unwrap(), serving);
    assert_eq!(
        ids(&pool, &dir, Engine::Tantivy, &word, None, 50).await,
        expected
    );
}

/// The daemon keeps the index fresh: a new message is found within moments, an edit too,
/// and /metrics shows the backlog.
#[tokio::test]
async fn the_daemon_keeps_the_index_fresh_and_exports_the_backlog() {
    let db = TestDb::new().await;
    let (pool, _) = crate::bots::setup(&db, BOT).await;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("search");
    let dir = IndexDir::new(&path);
    index::build(&pool, &dir, &Default::default(), &|_| {})
        .await
        .unwrap();
    std::fs::write(tmp.path().join("summarybot.yaml"), BOT).unwrap();
    let (mut child, addr, _stderr) = crate::bots::daemon_with_metrics(
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("CHATCTL_SEARCH__INDEX_DIR", path.to_str().unwrap()),
        ],
        tmp.path(),
    );
    let mut c = db.conn().await;
    let id = say(&mut c, "ada", "general", "the aardvark has landed").await;
    // What the daemon's index finds for `word`, once it finds anything (10 s at most).
    let found = async |word: &str| {
        for _ in 0..100 {
            let found = ids(&pool, &dir, Engine::Tantivy, word, None, 5).await;
            if !found.is_empty() {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Vec::new()
    };
    assert_eq!(
        found("aardvark").await,
        [id],
        "the daemon did not index the new message"
    );
    sqlx::query("update chat set message = '{\"text\": \"the okapi has landed\"}' where id = $1")
        .bind(id)
        .execute(&mut c)
        .await
        .unwrap();
    assert_eq!(
        found("okapi").await,
        [id],
        "the daemon did not apply the edit"
    );
    // Other tests' transactions may hold the snapshot horizon back for a moment: wait for
    // the backlog to drain.
    let mut metrics = String::new();
    for _ in 0..150 {
        metrics = crate::bots::get(&addr, "/metrics").1;
        if metrics.contains("chatctl_search_backlog 0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("# TYPE chatctl_search_backlog gauge"),
        "{metrics}"
    );
    assert!(metrics.contains("chatctl_search_backlog 0"), "{metrics}");
    assert!(
        !metrics.contains("chatctl_search_documents_indexed_total 0\n"),
        "{metrics}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let g = dir.open_existing().unwrap();
    assert!(index::verify(&pool, &g).await.unwrap().is_empty());
}

/// A member's message (or a channel's topic) written to take over a terminal is shown, not
/// obeyed, wherever the operator reads it as text; JSON carries it escaped as JSON does.
#[tokio::test]
async fn chat_content_cannot_drive_the_operators_terminal() {
    let db = TestDb::new().await;
    let _ = prepared(&db, BOT).await;
    let mut c = db.conn().await;
    let hostile = "zq \u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31mFAKE\u{1b}[0m txt.exe\u{202E}gpj";
    say(&mut c, "ken", "general", hostile).await;
    sqlx::query("update channels set topic = $1 where name = 'general'")
        .bind(hostile)
        .execute(&mut c)
        .await
        .unwrap();
    let env = [("DATABASE_URL", db.url.as_str())];
    for args in [
        &[
            "search", "query", "zq", "--engine", "postgres", "--as", "ada",
        ][..],
        &[
            "summarize",
            "-w",
            "acme",
            "--channel",
            "general",
            "--since",
            "1h",
        ],
        &["channel", "list", "-w", "acme"],
        // The offline reply quotes the earlier message about the question's words.
        &[
            "ai",
            "reply",
            "-w",
            "acme",
            "--channel",
            "general",
            "--message",
            "zq txt.exe",
        ],
        // The plan shows the topic the database has before the spec's.
        &[
            "apply",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/workspace.example.yaml"),
            "--dry-run",
        ],
    ] {
        let out = chatctl_std(&env).args(args).output().unwrap();
        let (stdout, stderr) = outputs(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        for raw in ['\u{1b}', '\u{7}', '\u{202E}'] {
            assert!(
                !stdout.contains(raw) && !stderr.contains(raw),
                "{args:?}: {stdout:?}"
            );
        }
        assert!(
            stdout.contains(r"\u{1b}]0;pwned\u{7}"),
            "{args:?}: {stdout}"
        );
    }
    let out = chatctl_std(&env)
        .args([
            "search", "query", "zq", "--engine", "postgres", "-o", "json",
        ])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["results"][0]["snippet"]
            .as_str()
            .unwrap()
            .contains('\u{1b}')
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\u{1b}'));
}
