//! `import slack` (issue 24) on the real exports of ../shared/fixtures/slack-export: every
//! message once with its own time, threads with their counts, reactions, files, DMs private
//! under row level security, bad pieces rejected with their place, a second import adding
//! nothing, the zip read in place (whole, truncated, or with an entry escaping the export).

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::support::{TestDb, chatctl, outputs};

/// `chatctl import slack EXPORT -w WS --rejects R -o json ARGS`: exit code, report, rejects.
fn import(db: &TestDb, export: &Path, ws: &str, args: &[&str]) -> (i32, Value, Vec<Value>) {
    import_with(&[("DATABASE_URL", &db.url)], export, ws, args)
}

/// [`import`] in the environment `env`.
fn import_with(
    env: &[(&str, &str)],
    export: &Path,
    ws: &str,
    args: &[&str],
) -> (i32, Value, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let out = chatctl(env)
        .args(["import", "slack"])
        .arg(export)
        .args(["-w", ws, "-o", "json", "--rejects"])
        .arg(&rejects)
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = outputs(&out);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    let lines = std::fs::read_to_string(&rejects)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status.code().unwrap_or(-1), report, lines)
}

fn workspace(db: &TestDb, slug: &str) {
    let out = chatctl(&[("DATABASE_URL", &db.url)])
        .args(["workspace", "create", slug])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", outputs(&out).1);
}

/// Zips `dir` (every file, paths relative to it) into `zip`, deflated.
fn zip_dir(dir: &Path, zip: &Path) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(zip).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut files = Vec::new();
    collect(dir, dir, &mut files);
    // The lists first, as Slack writes them: a cut-off zip then loses day files.
    files.sort_by_key(|f| (f.contains('/'), f.clone()));
    for rel in files {
        w.start_file(rel.as_str(), opts).unwrap();
        w.write_all(&std::fs::read(dir.join(&rel)).unwrap())
            .unwrap();
    }
    w.finish().unwrap();
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().to_str().unwrap().to_owned());
        }
    }
}

async fn count(c: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(c).await.unwrap()
}

/// The people, channels and rows an import leaves, for comparing two states.
async fn state(c: &mut PgConnection) -> Vec<i64> {
    let mut v = Vec::new();
    for t in [
        "public.users",
        "public.channels",
        "public.members",
        "public.chat",
        "public.emojis",
        "public.attachments",
        "public.mentions",
    ] {
        v.push(count(c, &format!("select count(*) from {t}")).await);
    }
    v.push(
        count(
            c,
            "select coalesce(sum(total_replies), 0)::bigint from public.chat",
        )
        .await,
    );
    v
}

/// The whole genuine 2016 export (158 messages: 146 to import, 8 joins, 3 bot_add and a
/// file_comment skipped), from its directory and from a zip of it: every message once, at
/// its `ts` (day files are bucketed in US Pacific time), integration bots given accounts;
/// the zip into the same workspace, and the directory again, add nothing.
#[tokio::test]
async fn a_real_export_imports_whole_once_from_its_directory_or_its_zip() {
    let db = TestDb::new().await;
    workspace(&db, "mesos");
    workspace(&db, "other");
    let export = crate::support::fixtures("slack-export/hfaran-slack-export-viewer");
    let (code, r, rejects) = import(&db, &export, "mesos", &[]);
    assert_eq!(code, 0, "{r}");
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(r["users"]["inserted"], 4, "{r}");
    assert_eq!(r["channels"], json!({"new": 2, "existing": 0}));
    assert_eq!(r["messages"], json!({"new": 146, "existing": 0}));
    assert_eq!(
        r["skipped"],
        json!({"bot_add": 3, "channel_join": 8, "file_comment": 1})
    );
    assert_eq!(r["reactions"], 1);
    assert_eq!(r["files"], 3);
    assert_eq!(
        r["bots"], 3,
        "GitHub, Travis and one more wrote without a user"
    );
    assert_eq!(
        r["placeholder_emails"].as_array().unwrap().len(),
        4,
        "the export has no addresses"
    );

    let mut c = db.conn().await;
    // Each message once, at its own time: the day file's name is local time, `ts` is not.
    let day_files = std::fs::read_dir(export.join("enrique")).unwrap();
    let mut checked = 0;
    for f in day_files {
        let msgs: Vec<Value> =
            serde_json::from_slice(&std::fs::read(f.unwrap().path()).unwrap()).unwrap();
        for m in msgs.iter().filter(|m| m.get("subtype").is_none()) {
            let ts = m["ts"].as_str().unwrap();
            let n: i64 = sqlx::query_scalar(
                "select count(*) from public.chat c join public.channels h on h.id = c.channel_id
                  where h.name = 'enrique' and c.message -> 'imported' ->> 'ts' = $1
                    and c.created_at = to_timestamp($1::numeric)",
            )
            .bind(ts)
            .fetch_one(&mut c)
            .await
            .unwrap();
            assert_eq!(n, 1, "message {ts}");
            checked += 1;
        }
    }
    assert!(checked > 10);
    let bots = count(
        &mut c,
        "select count(*) from public.users where is_bot and external_source = 'slack'",
    )
    .await;
    assert_eq!(bots, 3);
    let linked = count(
        &mut c,
        "select count(*) from public.users where external_source = 'slack' and external_id = 'U0BMQB6JE'
            and name = 'Hamza Faran' and email is null",
    )
    .await;
    assert_eq!(
        linked, 1,
        "the Slack id kept; a placeholder address is not a verified one"
    );
    // The operator gives Hermione her real address; no later import takes it back.
    sqlx::raw_sql(
        "update auth.users set email = 'hermione@example.com', email_confirmed_at = now()
          where id = (select id from public.users where external_id = 'U0BMS113R');
         update public.users set email = 'hermione@example.com' where external_id = 'U0BMS113R'",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let before = state(&mut c).await;

    // Again, from a zip of it: nothing new.
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("export.zip");
    zip_dir(&export, &zip);
    let (code, r, _) = import(&db, &zip, "mesos", &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["messages"], json!({"new": 0, "existing": 146}));
    assert_eq!(r["channels"], json!({"new": 0, "existing": 2}));
    assert_eq!(
        (
            r["users"]["inserted"].as_u64(),
            r["users"]["updated"].as_u64()
        ),
        (Some(0), Some(0)),
        "{r}"
    );
    assert_eq!(
        (r["reactions"].as_u64(), r["files"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        state(&mut c).await,
        before,
        "a second import changes nothing"
    );
    assert_eq!(r["placeholder_emails"].as_array().unwrap().len(), 3, "{r}");
    let email: String = sqlx::query_scalar(
        "select a.email from auth.users a join public.users u on u.id = a.id
          where u.external_id = 'U0BMS113R' and u.email = a.email and a.email_confirmed_at is not null",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(email, "hermione@example.com");

    // The zip into another workspace: everything, its own.
    let (code, r, _) = import(&db, &zip, "other", &["--dry-run"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["messages"], json!({"new": 146, "existing": 0}), "{r}");
    assert_eq!(state(&mut c).await, before, "a dry run writes nothing");

    // Its people only: the same accounts, members of that workspace too; nothing else.
    let (code, r, _) = import(&db, &zip, "other", &["--users-only"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["users"]["unchanged"], 4, "{r}");
    assert_eq!(r["messages"], json!({"new": 0, "existing": 0}), "{r}");
    let members = count(
        &mut c,
        "select count(*) from public.workspace_members m join public.workspaces w
            on w.id = m.workspace_id where w.slug = 'other'",
    )
    .await;
    assert_eq!(members, 4);
    let channels = count(&mut c, "select count(*) from public.channels").await;
    assert_eq!(channels, before[1], "no channel made");
}

/// Files land in the bucket's layout (`<workspace>/<channel>/<uploader>/<file id>/<name>`);
/// the bytes an export holds (`__uploads/<file id>/<name>`) go to Storage with their object
/// row, once; a file without bytes is an attachment `files reconcile` reports missing.
#[tokio::test]
async fn files_take_the_buckets_layout_and_their_bytes_come_from_the_uploads() {
    let db = TestDb::new().await;
    workspace(&db, "mesos");
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("export");
    let src = crate::support::fixtures("slack-export/hfaran-slack-export-viewer");
    let mut files = Vec::new();
    collect(&src, &src, &mut files);
    for rel in files {
        let to = export.join(&rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(&rel), to).unwrap();
    }
    let upload = export.join("__uploads/F0VNAKDE2/100_cities.js");
    std::fs::create_dir_all(upload.parent().unwrap()).unwrap();
    std::fs::write(&upload, b"var cities = 100;").unwrap();
    let storage = tmp.path().join("storage");
    std::fs::create_dir(&storage).unwrap();
    let env = [("DATABASE_URL", db.url.as_str())];
    // Without the bucket (no spec applied yet) the bytes stay in the export, and it says so.
    let (code, r, rejects) = import(
        &db,
        &export,
        "mesos",
        &["--storage-dir", storage.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{r} {rejects:?}");
    assert_eq!(
        (
            r["files"].as_u64(),
            r["file_bytes"].as_u64(),
            r["file_bytes_left"].as_u64()
        ),
        (Some(3), Some(0), Some(1))
    );
    let mut c = db.conn().await;
    let (ws, channel, uploader): (uuid::Uuid, uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "select ch.workspace_id, ch.id, m.user_id from attachments a join chat m on m.id = a.message_id
           join channels ch on ch.id = m.channel_id where a.name = '100_cities.js'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    let path = format!("{ws}/{channel}/{uploader}/F0VNAKDE2/100_cities.js");
    let stored: (String, String) = sqlx::query_as(
        "select bucket_id, object_path from attachments where name = '100_cities.js'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(stored, ("attachments".to_owned(), path.clone()));
    sqlx::query("insert into storage.buckets (id, name) values ('attachments', 'attachments')")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("insert into chatctl.storage_buckets (bucket_id) values ('attachments')")
        .execute(&mut c)
        .await
        .unwrap();
    // Again: nothing new but the bytes, which now have somewhere to go.
    let (code, r, _) = import(
        &db,
        &export,
        "mesos",
        &["--storage-dir", storage.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["messages"]["new"], 0);
    assert_eq!(
        (r["file_bytes"].as_u64(), r["file_bytes_left"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        std::fs::read(storage.join("attachments").join(&path)).unwrap(),
        b"var cities = 100;"
    );
    let (owner, size): (uuid::Uuid, serde_json::Value) =
        sqlx::query_as("select owner, metadata -> 'size' from storage.objects where name = $1")
            .bind(&path)
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!((owner, size), (uploader, json!(17)));
    let (_, r, _) = import(
        &db,
        &export,
        "mesos",
        &["--storage-dir", storage.to_str().unwrap()],
    );
    assert_eq!(r["file_bytes"], 0, "once");
    // The two files the export has no bytes for are what reconcile calls missing.
    let out = chatctl(&env)
        .args(["files", "reconcile", "-o", "json"])
        .output()
        .unwrap();
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found["missing_total"], 2, "{found}");
}

/// Builds an export from Zulip's real Slack fixtures (users with non-Latin names, channels
/// with an archived one, DMs with a self-DM, group DMs two of which are the same people, day
/// files, a thread with a broadcast reply), plus the bad pieces an importer meets.
fn zulip_export(dir: &Path) {
    let z = crate::support::fixtures("slack-export/zulip");
    let read =
        |p: &str| -> Value { serde_json::from_slice(&std::fs::read(z.join(p)).unwrap()).unwrap() };
    let mut users = read("test_slack_importer/users.json")
        .as_array()
        .unwrap()
        .clone();
    users.extend(
        read("exported_messages_fixtures/users.json")
            .as_array()
            .unwrap()
            .clone(),
    );
    // The DMs name one more person; U061A3E0G stays missing (a group DM and a message name
    // them).
    users.push(json!({"id": "U064KUGRJ", "name": "kim", "real_name": "Kim"}));
    // The author of the 2024-era message with a `files` array (a Canvas and a snippet).
    users.push(json!({"id": "U06NU4E26M9", "name": "lee", "real_name": "Lee"}));
    // Someone who left (deactivated, their message kept) and an app's bot user.
    users.push(json!({"id": "U0GONE", "name": "gone", "real_name": "Gone", "deleted": true}));
    users.push(json!({"id": "U0DEPLOY", "name": "deploybot", "is_bot": true}));
    let write = |p: &str, v: &[u8]| {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, v).unwrap();
    };
    write("users.json", &serde_json::to_vec(&users).unwrap());
    for f in ["channels.json", "dms.json", "mpims.json"] {
        write(f, &std::fs::read(z.join(f)).unwrap());
    }
    for f in ["2017-06-25.json", "2018-01-20.json"] {
        write(
            &format!("random/{f}"),
            &std::fs::read(z.join("test_slack_importer/random").join(f)).unwrap(),
        );
    }
    write(
        "random/2015-06-12.json",
        &std::fs::read(z.join("exported_messages_fixtures/thread_with_broadcast_reply.json"))
            .unwrap(),
    );
    // One message object, not an array, as Zulip's fixture holds it.
    write(
        "general/2026-03-04.json",
        &std::fs::read(
            z.join("exported_messages_fixtures/message_with_variety_files_and_rich_text.json"),
        )
        .unwrap(),
    );
    write(
        "groups.json",
        &serde_json::to_vec(
            &json!([{"id": "G0SECRET", "name": "secret", "is_private": true,
                     "members": ["U061A1R2R", "U061A5N1G"]},
                    // #general under our rules, as the public one is.
                    {"id": "G0CLASH", "name": "General", "is_private": true,
                     "members": ["U061A1R2R"]}]),
        )
        .unwrap(),
    );
    write(
        "secret/2020-01-05.json",
        &serde_json::to_vec(&json!([{"type": "message", "user": "U061A5N1G",
                                     "ts": "1578182400.000100", "text": "the plan"}]))
        .unwrap(),
    );
    write(
        "general/2020-01-01.json",
        b"[{\"type\": \"message\", \"ts\": \"1577",
    );
    let day = json!([
        {"type": "message", "user": "U061A5N1G", "ts": "1577923200.000100",
         "text": "<@U061A1R2R> see <#C061A0WJG|random> &amp; <https://example.com|the page>",
         "edited": {"user": "U061A5N1G", "ts": "1577923260.000000"},
         "reactions": [{"name": "thumbsup", "users": ["U061A1R2R", "U064KUGRJ"], "count": 2},
                       {"name": "wave::skin-tone-3", "users": ["U061A1R2R"], "count": 1}]},
        {"type": "message", "user": "U061A3E0G", "ts": "1577923300.000100", "text": "who am I"},
        {"type": "message", "user": "U061A5N1G", "ts": "1577923400.000100",
         "subtype": "something_new", "text": "from the future"},
        {"type": "message", "user": "U061A5N1G", "ts": "1577923500.000100", "text": "nul \u{0} here"},
        {"type": "message", "user": "U061A1R2R", "ts": "1577923600.000100", "text": "still here"},
        {"type": "message", "user": "U0GONE", "ts": "1577923650.000100", "text": "before I left"}
    ]);
    write(
        "general/2020-01-02.json",
        &serde_json::to_vec(&day).unwrap(),
    );
    let dm = json!([{"type": "message", "user": "U061A1R2R", "ts": "1577923700.000100",
                     "text": "just between us"}]);
    write(
        "DJ47BL849/2020-01-02.json",
        &serde_json::to_vec(&dm).unwrap(),
    );
    write("ghost/2020-01-01.json", b"[]");
}

/// Threads, DMs, group DMs, reactions, mentions and markup from Zulip's real fixtures, with
/// bad pieces rejected (file, position, reason) and the rest imported; DMs private under row
/// level security; a second import adds nothing.
#[tokio::test]
async fn threads_dms_reactions_and_bad_pieces_from_zulips_fixtures() {
    let db = TestDb::new().await;
    workspace(&db, "acme");
    let dir = tempfile::tempdir().unwrap();
    zulip_export(dir.path());
    let (code, r, rejects) = import(&db, dir.path(), "acme", &[]);
    assert_eq!(code, 1, "rejects make the exit code 1: {r}");
    let mut got: Vec<(String, String, String)> = rejects
        .iter()
        .map(|l| {
            (
                l["file"].as_str().unwrap().to_owned(),
                l["position"].as_str().unwrap().to_owned(),
                l["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("general/2020-01-01.json", "line 1, column 32", "bad_json"),
            ("general/2020-01-02.json", "message 2", "unknown_user"),
            ("general/2020-01-02.json", "message 3", "unknown_subtype"),
            ("general/2020-01-02.json", "message 4", "nul_character"),
            ("ghost/", "1 day files", "unknown_folder"),
            ("groups.json", "conversation 2", "bad_channel"),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())),
        "{rejects:#?}"
    );
    let raw = &rejects
        .iter()
        .find(|l| l["kind"] == "unknown_user")
        .unwrap()["raw"];
    assert!(
        raw.as_str().unwrap().contains("who am I"),
        "the raw message is kept"
    );

    assert_eq!(r["users"]["inserted"], 11, "{r}");
    assert_eq!(r["placeholder_emails"].as_array().unwrap().len(), 10);
    assert_eq!(
        r["channels"],
        json!({"new": 5, "existing": 0}),
        "four public, one private"
    );
    // U061A3E0G is missing: two group DMs are then the same three people, and one is Kim
    // alone, as Kim's self-DM is: one conversation each.
    assert_eq!(
        r["group_dms"],
        json!({"new": 2, "existing": 1}),
        "two group DMs of the same people are one"
    );
    assert_eq!(r["direct_messages"], json!({"new": 3, "existing": 1}));
    // random: 1 + 8 (joins skipped) + the thread's 3; general: 4; secret: 1; the DM: 1.
    assert_eq!(r["messages"], json!({"new": 18, "existing": 0}), "{r}");
    assert_eq!(r["replies"], 2);
    assert_eq!(r["reactions"], 3);
    assert_eq!(
        r["files"], 3,
        "an old-style `file`, and a `files` array of two"
    );
    let files: Vec<(String, i64, String)> =
        sqlx::query_as("select name, size_bytes, mime_type from public.attachments order by name")
            .fetch_all(&mut db.conn().await)
            .await
            .unwrap();
    assert_eq!(files.len(), 3);
    for file in [
        ("Untitled", 602, "application/vnd.slack-docs"),
        ("channels.json", 1563, "text/plain"),
    ] {
        assert!(
            files.contains(&(file.0.to_owned(), file.1, file.2.to_owned())),
            "{files:?}"
        );
    }

    let mut c = db.conn().await;
    let (root_replies, root_at): (i32, String) = sqlx::query_as(
        "select total_replies, to_char(created_at at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS.US')
           from public.chat where message ->> 'text' = 'thread message'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(root_replies, 2, "a reply and a broadcast reply");
    assert_eq!(root_at, "2015-06-12 19:58:22.000002");
    let broadcast = count(
        &mut c,
        "select count(*) from public.chat where parent_id is not null
            and (message ->> 'broadcast')::boolean and message ->> 'text' = 'everyone should see this'",
    )
    .await;
    assert_eq!(broadcast, 1);

    let jon: Uuid =
        sqlx::query_scalar("select id from public.users where email = 'jon@example.com'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    let (text, edited): (String, bool) = sqlx::query_as(
        "select message ->> 'text', modified_at = to_timestamp(1577923260) from public.chat
          where message -> 'mentions' ? $1",
    )
    .bind(jon.to_string())
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(text, "@jon see #random & the page (https://example.com)");
    assert!(edited);
    let mentions = count(
        &mut c,
        &format!("select count(*) from public.mentions where user_id = '{jon}'"),
    )
    .await;
    assert_eq!(mentions, 1);
    let emojis: Vec<String> =
        sqlx::query_scalar("select emoji_uni_code from public.emojis order by emoji_uni_code")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(emojis, ["👋🏼", "👍", "👍"]);
    let (gone, bot): (bool, bool) = sqlx::query_as(
        "select (select deactivated_at is not null from public.users where external_id = 'U0GONE'),
                (select is_bot from public.users where external_id = 'U0DEPLOY')",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(gone, "a deleted Slack account is deactivated");
    assert!(bot, "a bot user is a bot");
    let kept = count(
        &mut c,
        "select count(*) from public.chat where message ->> 'text' = 'before I left'",
    )
    .await;
    assert_eq!(kept, 1, "their message is kept");
    let channel_text = count(
        &mut c,
        "select count(*) from public.chat where message ->> 'text' = '@channel'",
    )
    .await;
    assert_eq!(channel_text, 2, "<!channel> is @channel");
    let archived = count(
        &mut c,
        "select count(*) from public.channels where name = 'random' and archived_at is not null",
    )
    .await;
    assert_eq!(archived, 1);
    let unicode = count(
        &mut c,
        "select count(*) from public.users where name ~ '[\\u0900-\\u097F]'",
    )
    .await;
    assert_eq!(unicode, 1, "a Devanagari name kept");
    let kim_alone = count(
        &mut c,
        "select count(*) from public.channels
          where dm_key = (select id::text from public.users where external_id = 'U064KUGRJ')",
    )
    .await;
    assert_eq!(kim_alone, 1, "a self-DM is a conversation of one");

    // The DM and the private channel are readable by their two people only.
    let dm: Vec<Uuid> = sqlx::query_scalar(
        "select id from public.channels where external_id in ('DJ47BL849', 'G0SECRET')",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(dm.len(), 2);
    let pool = db.pool().await;
    for (who, sees) in [
        ("U061A1R2R", 2),
        ("U061A5N1G", 2),
        ("U066MTL5U", 0),
        ("U064KUGRJ", 0),
    ] {
        let user: Uuid = sqlx::query_scalar("select id from public.users where external_id = $1")
            .bind(who)
            .fetch_one(&pool)
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        chatctl::search::act_as(&mut tx, user).await.unwrap();
        let n: i64 =
            sqlx::query_scalar("select count(*) from public.chat where channel_id = any($1)")
                .bind(&dm)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(n, sees, "{who} reads the DM's and #secret's messages");
    }

    let before = state(&mut c).await;
    let (code, r, again) = import(&db, dir.path(), "acme", &["--allow-rejects"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["messages"], json!({"new": 0, "existing": 18}));
    assert_eq!(again.len(), rejects.len(), "the same rejects");
    assert_eq!(
        state(&mut c).await,
        before,
        "a second import changes nothing"
    );
}

/// A zip cut short still gives what it holds (its lost entries rejected), and a zip with an
/// entry that escapes the export is refused before anything is written.
#[tokio::test]
async fn a_truncated_zip_imports_what_it_holds_and_an_escaping_entry_is_refused() {
    let db = TestDb::new().await;
    workspace(&db, "mesos");
    let export = crate::support::fixtures("slack-export/hfaran-slack-export-viewer");
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.zip");
    zip_dir(&export, &whole);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.zip");
    std::fs::write(&cut, &bytes[..bytes.len() * 9 / 10]).unwrap();
    let (code, r, rejects) = import(&db, &cut, "mesos", &[]);
    assert_eq!(code, 1, "{r}");
    assert!(
        rejects.iter().any(|l| l["kind"] == "truncated_zip"),
        "{rejects:?}"
    );
    let got = r["messages"]["new"].as_u64().unwrap();
    assert!(got > 50 && got < 146, "most messages, not all: {r}");
    // What the cut lost is named; importing the whole zip afterwards completes it.
    let (code, r, _) = import(&db, &whole, "mesos", &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["messages"]["new"].as_u64().unwrap() + got, 146);

    let mut c = db.conn().await;
    let before = state(&mut c).await;
    let evil = dir.path().join("evil.zip");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&evil).unwrap());
    for (name, body) in [("users.json", &b"[]"[..]), ("../outside.json", &b"[]"[..])] {
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap();
    let out = chatctl(&[("DATABASE_URL", &db.url)])
        .args(["import", "slack"])
        .arg(&evil)
        .args(["-w", "mesos"])
        .output()
        .unwrap();
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("escapes the export"), "{stderr}");
    assert_eq!(state(&mut c).await, before, "nothing written");
}

/// Imported history is history: a running daemon answers none of its mentions (not even one
/// seconds old, inside its catch-up's overlap), while a mention posted after it is answered;
/// and the search index is brought up to date once, at the end.
#[tokio::test]
async fn bots_never_answer_imported_mentions_and_search_finds_the_history() {
    let db = TestDb::new().await;
    let (_pool, _bots) = crate::bots::setup(&db, crate::bots::BOT).await;
    let index = tempfile::tempdir().unwrap();
    let index_dir = index.path().join("index");
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("CHATCTL_SEARCH__INDEX_DIR", index_dir.to_str().unwrap()),
    ];
    let reindex = chatctl(&env)
        .args(["search", "reindex", "--full"])
        .output()
        .unwrap();
    assert!(reindex.status.success(), "{}", outputs(&reindex).1);
    let bots = tempfile::tempdir().unwrap();
    std::fs::write(bots.path().join("summarybot.yaml"), crate::bots::BOT).unwrap();
    let (_daemon, addr, _stderr) = crate::bots::daemon_with_metrics(&env, bots.path());
    let catch_ups = || -> u64 {
        let (_, text) = crate::bots::get(&addr, "/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix("chatctl_bot_catch_ups_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };

    // Ada of the example workspace, in Slack; #general, with her mentions of the bot: one
    // from 2016 and one from a moment ago.
    let dir = tempfile::tempdir().unwrap();
    // After the bot started, inside the overlap its catch-ups read back through.
    let recent = chrono::Utc::now();
    let recent = format!(
        "{}.{:06}",
        recent.timestamp(),
        recent.timestamp_subsec_micros()
    );
    let write = |p: &str, v: Value| {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    write(
        "users.json",
        json!([{"id": "UADA", "name": "ada", "real_name": "Ada",
                "profile": {"email": "ada@example.com"}}]),
    );
    write(
        "channels.json",
        json!([{"id": "CGEN", "name": "general", "members": ["UADA"], "created": "1452837318"}]),
    );
    write(
        "general/2016-01-15.json",
        json!([
            {"type": "message", "user": "UADA", "ts": "1452837400.000100",
             "text": "@summarybot what about the zeppelin rollout"},
            {"type": "message", "user": "UADA", "ts": recent,
             "text": "@summarybot are you there"}
        ]),
    );
    let (code, r, rejects) =
        import_with(&env, dir.path(), "acme", &["--email-domain", "example.org"]);
    assert_eq!(code, 0, "{r} {rejects:?}");
    assert_eq!(r["users"]["inserted"], 0, "Ada is Ada: {r}");
    assert_eq!(
        r["channels"],
        json!({"new": 0, "existing": 1}),
        "#general is ours"
    );
    assert_eq!(r["messages"]["new"], 2);
    assert!(r["indexed"].is_u64(), "the index brought up to date: {r}");
    let found = chatctl(&env)
        .args(["search", "query", "zeppelin", "-o", "json"])
        .output()
        .unwrap();
    let (stdout, stderr) = outputs(&found);
    assert!(found.status.success(), "{stderr}");
    let found: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(found["total"], 1, "{stdout}");
    assert_eq!(
        found["results"][0]["created_at"],
        "2016-01-15T05:56:40.000100Z"
    );

    // Two catch-ups more: the second began after the import, and read back through its
    // overlap, where the newest imported mention lies.
    let after_import = catch_ups();
    crate::support::wait_for(
        "two catch-ups after the import",
        Duration::from_secs(20),
        async || match catch_ups() {
            n if n >= after_import + 2 => Ok(()),
            n => Err(format!("{n} catch-ups")),
        },
    )
    .await;
    let mut c = db.conn().await;
    let posted = chatctl(&env)
        .args([
            "post",
            "-w",
            "acme",
            "--channel",
            "general",
            "--as",
            "ada@example.com",
        ])
        .args(["@summarybot and now?", "-o", "json"])
        .output()
        .unwrap();
    assert!(posted.status.success(), "{}", outputs(&posted).1);
    let fresh: Value = serde_json::from_slice(&posted.stdout).unwrap();
    let fresh: Uuid = fresh["id"].as_str().unwrap().parse().unwrap();
    crate::support::wait_for(
        "the bot's answer to the fresh mention",
        Duration::from_secs(20),
        async || {
            let r = crate::bots::replies(&mut c).await;
            match r.iter().any(|(p, _)| *p == Some(fresh)) {
                true => Ok(()),
                false => Err(format!("replies so far: {r:?}")),
            }
        },
    )
    .await;
    let answered: Vec<Option<Uuid>> = crate::bots::replies(&mut c)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        answered,
        [Some(fresh)],
        "only the mention posted after the import"
    );
}

/// On a terminal the import shows its progress (messages and messages per second) and then
/// its table; piped, neither bar nor colour (the other tests read its JSON).
#[tokio::test]
async fn on_a_terminal_the_import_shows_messages_per_second() {
    let db = TestDb::new().await;
    workspace(&db, "mesos");
    let export = crate::support::fixtures("slack-export/hfaran-slack-export-viewer");
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let (code, shown) = crate::support::on_terminal(
        &[("DATABASE_URL", db.url.as_str())],
        &[
            "import",
            "slack",
            export.to_str().unwrap(),
            "-w",
            "mesos",
            "--rejects",
            rejects.to_str().unwrap(),
        ],
        120,
        "",
    );
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("146 messages, "), "{shown}");
    assert!(shown.contains("/s"), "{shown}");
    assert!(shown.contains("ALREADY THERE"), "{shown}");
}
