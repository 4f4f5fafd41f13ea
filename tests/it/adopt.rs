//! `chatctl migrate adopt` (issue 20): a project built from the product's outline (its
//! tables, rows in them, some columns missing, no row level security, bad rows among the
//! good) is taken over in one transaction, keeping every row and every id; the rows that
//! break chatctl's rules are left out into `chatctl.adopt_rejects` with their reason.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::Connection as _;

use crate::migrate::{schema, schema_diff};
use crate::support::{LATEST_MIGRATION, TestDb, chatctl, outputs};

/// The outline's tables as a Supabase project made them (see the file).
const OUTLINE: &str = include_str!("outline.sql");

/// A few thousand rows: 200 people (150 with a Supabase Auth account), 3 workspaces, 30
/// channels, ~2,000 memberships, 3,500 messages, 1,000 reactions, and the bad rows the
/// issue names, each kind counted in [`expected_rejects`].
const ROWS: &str = "
create function pg_temp.id(t text) returns uuid language sql immutable as $$ select md5(t)::uuid $$;

insert into public.users (id, name, email, created_at, last_login)
select pg_temp.id('u' || g), 'Person ' || g,
       case g when 5 then null when 6 then ' PERSON6@Example.com ' when 160 then 'person1@example.com'
              else 'person' || g || '@example.com' end,
       timestamptz '2024-01-01' + g * interval '1 hour', timestamptz '2024-06-01'
  from generate_series(1, 200) g;
insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                        confirmation_token, recovery_token, email_change_token_new, email_change,
                        raw_app_meta_data, raw_user_meta_data, created_at, updated_at, last_sign_in_at)
select '00000000-0000-0000-0000-000000000000', pg_temp.id('u' || g), 'authenticated', 'authenticated',
       case g when 4 then 'ann4@corp.example' when 6 then 'person6@example.com' else 'person' || g || '@example.com' end,
       '', now(), '', '', '', '', '{}', '{}', now(), now(),
       case when g <= 10 then timestamptz '2024-07-01' end
  from generate_series(1, 150) g;

insert into public.workspaces (id, name, channel_id, created_at) values
    (pg_temp.id('w1'), 'Acme Corp', pg_temp.id('c1'), '2024-01-01'),
    (pg_temp.id('w2'), 'Beta Labs', pg_temp.id('c2'), '2024-01-02'),
    (pg_temp.id('w3'), 'Gamma', pg_temp.id('no such channel'), '2024-01-03');
insert into public.channels (id, name, description, created_at, is_private)
select pg_temp.id('c' || g),
       case g when 1 then 'General' when 2 then 'General' when 3 then 'Launch Plans' when 4 then 'Random Talk'
              when 5 then 'random-talk' when 6 then 'v1.2 release' when 7 then 'Secret Room' else 'Topic ' || g end,
       case when g = 8 then null else 'about ' || g end,
       timestamptz '2024-01-01' + g * interval '1 minute', g = 7
  from generate_series(1, 30) g;
insert into public.shared_channels (channel_id, workspace_id, target_workspace_id, origin_workspace_id, name, topic, is_private) values
    (pg_temp.id('c3'), pg_temp.id('w2'), pg_temp.id('w2'), pg_temp.id('w1'), 'Launch Plans', '', false),
    (pg_temp.id('c1'), pg_temp.id('w1'), pg_temp.id('w1'), pg_temp.id('w1'), 'General', '', false),
    (pg_temp.id('c4'), pg_temp.id('no such workspace'), null, null, 'Random Talk', '', false);

insert into public.members (user_id, channel_id, created_at)
select pg_temp.id('u' || u), pg_temp.id('c' || c), timestamptz '2024-02-01' + u * interval '1 minute'
  from generate_series(1, 200) u, generate_series(1, 30) c where (u + c) % 3 = 0;
-- Bad: five second memberships, three of people and two of channels that do not exist.
insert into public.members (user_id, channel_id, created_at)
select pg_temp.id('u' || (3 * g)), pg_temp.id('c3'), '2024-03-01' from generate_series(1, 5) g;
insert into public.members (user_id, channel_id) select pg_temp.id('ghost' || g), pg_temp.id('c1') from generate_series(1, 3) g;
insert into public.members (user_id, channel_id) select pg_temp.id('u1'), pg_temp.id('gone' || g) from generate_series(1, 2) g;

insert into public.chat (id, user_id, channel_id, message, created_at)
select pg_temp.id('m' || g), pg_temp.id('u' || (1 + g % 200)), pg_temp.id('c' || (1 + g % 30)),
       jsonb_build_object('text', 'message ' || g, 'attachments', '[]'::jsonb),
       timestamptz '2024-04-01' + g * interval '1 minute'
  from generate_series(1, 3000) g;
insert into public.chat (id, user_id, channel_id, parent_id, message, created_at)
select pg_temp.id('r' || g), pg_temp.id('u' || (1 + g % 200)), pg_temp.id('c' || (1 + (5 * g) % 30)), pg_temp.id('m' || (5 * g)),
       jsonb_build_object('text', 'reply ' || g), timestamptz '2024-05-01' + g * interval '1 minute'
  from generate_series(1, 500) g;
-- Kept, with their message shaped: plain strings, two of them deleted.
insert into public.chat (id, user_id, channel_id, message) select pg_temp.id('plain' || g), pg_temp.id('u1'), pg_temp.id('c1'), to_jsonb('hello ' || g) from generate_series(1, 3) g;
insert into public.chat (id, user_id, channel_id, message, is_deleted) select pg_temp.id('del' || g), pg_temp.id('u2'), pg_temp.id('c2'), '{\"text\": \"gone\"}', true from generate_series(1, 2) g;
-- Bad: replies whose parent is missing; replies to replies; texts over 40,000 characters;
-- no message; a message that is a list; messages of people who do not exist; a reply to a
-- message left out; a reply in another channel than its parent's.
insert into public.chat (id, user_id, channel_id, parent_id, message) select pg_temp.id('orphan' || g), pg_temp.id('u1'), pg_temp.id('c1'), pg_temp.id('nothere' || g), '{\"text\": \"?\"}' from generate_series(1, 5) g;
insert into public.chat (id, user_id, channel_id, parent_id, message) select pg_temp.id('deep' || g), pg_temp.id('u1'), pg_temp.id('c' || (1 + (5 * g) % 30)), pg_temp.id('r' || g), '{\"text\": \"deeper\"}' from generate_series(1, 3) g;
insert into public.chat (id, user_id, channel_id, message) select pg_temp.id('long' || g), pg_temp.id('u1'), pg_temp.id('c1'), jsonb_build_object('text', repeat('x', 40001)) from generate_series(1, 2) g;
insert into public.chat (id, user_id, channel_id, message) select pg_temp.id('null' || g), pg_temp.id('u1'), pg_temp.id('c1'), null from generate_series(1, 2) g;
insert into public.chat (id, user_id, channel_id, message) values (pg_temp.id('list'), pg_temp.id('u1'), pg_temp.id('c1'), '[1, 2]');
insert into public.chat (id, user_id, channel_id, message) select pg_temp.id('ghostmsg' || g), pg_temp.id('ghost'), pg_temp.id('c1'), '{\"text\": \"boo\"}' from generate_series(1, 4) g;
insert into public.chat (id, user_id, channel_id, parent_id, message) values (pg_temp.id('tolong'), pg_temp.id('u1'), pg_temp.id('c1'), pg_temp.id('long1'), '{\"text\": \"re\"}');
insert into public.chat (id, user_id, channel_id, parent_id, message) values (pg_temp.id('elsewhere'), pg_temp.id('u1'), pg_temp.id('c9'), pg_temp.id('m30'), '{\"text\": \"re\"}');

insert into public.emojis (user_id, chat_id, emoji_uni_code)
select pg_temp.id('u' || (1 + g % 200)), pg_temp.id('m' || g), '👍' from generate_series(1, 1000) g;
-- Bad: on deleted messages, on missing ones, twice the same, empty, on a message left out.
insert into public.emojis values (pg_temp.id('u3'), pg_temp.id('del1'), '👀'), (pg_temp.id('u4'), pg_temp.id('del1'), '👀'), (pg_temp.id('u3'), pg_temp.id('del2'), '🎉');
insert into public.emojis select pg_temp.id('u3'), pg_temp.id('nomsg' || g), '👀' from generate_series(1, 3) g;
insert into public.emojis select pg_temp.id('u' || (1 + g % 200)), pg_temp.id('m' || g), '👍' from generate_series(1, 2) g;
insert into public.emojis values (pg_temp.id('u3'), pg_temp.id('m7'), ''), (pg_temp.id('u4'), pg_temp.id('m7'), '');
insert into public.emojis values (pg_temp.id('u3'), pg_temp.id('long1'), '👀');
";

fn expected_rejects() -> BTreeMap<(String, String), i64> {
    [
        (
            "shared_channels",
            "shared into the channel's own workspace",
            1,
        ),
        (
            "shared_channels",
            "the workspace it is shared into is missing",
            1,
        ),
        (
            "members",
            "a second membership of the same person in the same channel",
            5,
        ),
        ("members", "its person is missing", 3),
        ("members", "its channel is missing", 2),
        ("chat", "its parent message is missing", 5),
        (
            "chat",
            "its parent is itself a reply (threads are one level deep)",
            3,
        ),
        ("chat", "text is longer than 40,000 characters", 2),
        ("chat", "has no message", 2),
        ("chat", "message is not {text, attachments}", 1),
        ("chat", "its author is missing", 4),
        (
            "chat",
            "its parent message was left out (see its own reject)",
            1,
        ),
        ("chat", "its parent message is in another channel", 1),
        ("emojis", "an emoji on a deleted message", 3),
        ("emojis", "its message is missing", 3),
        (
            "emojis",
            "a second identical reaction of the same person",
            2,
        ),
        (
            "emojis",
            "is not an emoji (empty, with spaces, or over 100 characters)",
            2,
        ),
        ("emojis", "its message was left out (see its own reject)", 1),
    ]
    .into_iter()
    .map(|(t, r, n)| ((t.to_string(), r.to_string()), n))
    .collect()
}

/// An outline project: chatctl's bootstrap (the stand-in of Supabase's schemas), then the
/// outline's tables and rows.
async fn outline_project() -> TestDb {
    let db = TestDb::empty().await;
    let out = chatctl(&[("DATABASE_URL", db.url.as_str())])
        .args(["migrate", "up", "--to", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", outputs(&out));
    let mut c = db.conn().await;
    sqlx::raw_sql(OUTLINE).execute(&mut c).await.unwrap();
    sqlx::raw_sql(ROWS).execute(&mut c).await.unwrap();
    db
}

fn run(db: &TestDb, args: &[&str]) -> (Option<i32>, String, String) {
    let out = chatctl(&[("DATABASE_URL", db.url.as_str())])
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = outputs(&out);
    (out.status.code(), stdout, stderr)
}

fn rejects(report: &Value) -> BTreeMap<(String, String), i64> {
    report["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["table"].as_str().unwrap().to_string(),
                    r["reason"].as_str().unwrap().to_string(),
                ),
                r["rows"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

async fn scalar(c: &mut sqlx::PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(c).await.unwrap()
}

#[tokio::test]
async fn adopt_takes_over_an_outline_project_keeping_every_row_and_id_and_leaving_out_bad_rows_with_reasons()
 {
    let db = outline_project().await;
    let mut c = db.conn().await;
    let outline_chat = scalar(&mut c, "select count(*) from public.chat").await;
    assert_eq!(outline_chat, 3524);

    // `up` refuses and points at adopt.
    let (code, _, stderr) = run(&db, &["migrate", "up"]);
    assert_eq!(code, Some(73), "{stderr}");
    assert!(stderr.contains("migrate adopt"), "{stderr}");

    // The dry run shows the plan and changes nothing.
    let (code, stdout, stderr) = run(&db, &["migrate", "adopt", "--dry-run", "-o", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(rejects(&plan), expected_rejects(), "{plan:#}");
    let users = table(&plan, "users");
    assert_eq!(
        (users["rows"].as_i64(), users["kept"].as_i64()),
        (Some(200), Some(200))
    );
    assert!(
        users["columns_added"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "username"),
        "{users}"
    );
    assert_eq!(table(&plan, "users")["rls"], "off → on (3 policies)");
    let chat = table(&plan, "chat");
    assert_eq!(
        (
            chat["rows"].as_i64(),
            chat["kept"].as_i64(),
            chat["rejected"].as_i64()
        ),
        (Some(3524), Some(3505), Some(19))
    );
    assert_eq!(chat["extra_columns"], serde_json::json!(["pinned"]));
    let backfilled = chat["backfilled"].to_string();
    assert!(
        backfilled.contains("message: a plain string, now {text} (3)"),
        "{backfilled}"
    );
    assert!(backfilled.contains("total_replies"), "{backfilled}");
    let emojis = table(&plan, "emojis");
    assert!(
        emojis["columns_added"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "id"),
        "{emojis}"
    );
    assert_eq!(
        plan["migrations"].as_array().unwrap().len() as i64,
        LATEST_MIGRATION - 1
    );
    let unchanged: (i64, bool, bool, i64) = sqlx::query_as(
        "select (select count(*) from public.chat),
                to_regclass('chatctl_adopted.chat') is null,
                exists (select 1 from information_schema.columns where table_name = 'chat' and column_name = 'pinned'),
                (select max(version) from chatctl.schema_migrations)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(
        unchanged,
        (outline_chat, true, true, 1),
        "the dry run changed nothing"
    );

    // The real run does what the plan said.
    let (code, stdout, stderr) = run(&db, &["migrate", "adopt", "-o", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let done: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        done["tables"], plan["tables"],
        "the dry run's plan is what the run did"
    );
    assert_eq!(rejects(&done), expected_rejects());

    // Nothing silently dropped: every row of the project is kept under its id, or is among
    // the rejects with its reason.
    for t in ["users", "workspaces", "channels", "chat"] {
        let lost = scalar(
            &mut c,
            &format!(
                "select count(*) from chatctl_adopted.{t} k
                  where not exists (select 1 from public.{t} x where x.id = k.id)
                    and not exists (select 1 from chatctl.adopt_rejects r where r.table_name = '{t}' and r.row_id = k.id::text)"
            ),
        )
        .await;
        assert_eq!(lost, 0, "{t}");
    }
    let kept_members = scalar(
        &mut c,
        "select count(*) from public.members m join chatctl_adopted.members k on k.id = m.id",
    )
    .await;
    let rejected_members = scalar(
        &mut c,
        "select count(*) from chatctl.adopt_rejects where table_name = 'members'",
    )
    .await;
    let outline_members = scalar(&mut c, "select count(*) from chatctl_adopted.members").await;
    assert_eq!(
        kept_members + rejected_members,
        outline_members,
        "every membership kept with its id, or rejected"
    );
    let emojis = scalar(&mut c, "select count(*) from public.emojis").await;
    assert_eq!(emojis + 11, 1011);
    // A rejected row is whole, with its reason.
    let (whole, reason): (bool, String) = sqlx::query_as(
        "select row ->> 'parent_id' = md5('nothere1')::uuid::text and row ->> 'message' is not null, reason
           from chatctl.adopt_rejects where table_name = 'chat' and row_id = md5('orphan1')::uuid::text",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(
        (whole, reason.as_str()),
        (true, "its parent message is missing")
    );

    // The values: texts, threads counted again, people's identities from Supabase Auth.
    let text: String = sqlx::query_scalar(
        "select message ->> 'text' from public.chat where id = md5('m42')::uuid",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(text, "message 42");
    let replies = scalar(
        &mut c,
        "select total_replies::bigint from public.chat where id = md5('m5')::uuid",
    )
    .await;
    assert_eq!(replies, 1);
    let people: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "select u.id::text, u.username, u.email from public.users u
          where u.id in (md5('u4')::uuid, md5('u5')::uuid, md5('u6')::uuid, md5('u151')::uuid) order by u.created_at",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let by_name: Vec<(&str, Option<&str>)> = people
        .iter()
        .map(|p| (p.1.as_str(), p.2.as_deref()))
        .collect();
    assert_eq!(
        by_name,
        [
            ("person4", Some("ann4@corp.example")),
            ("person.5", Some("person5@example.com")),
            ("person6", Some("person6@example.com")),
            ("person151", None),
        ]
    );
    let (made, unverified): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where email_confirmed_at is null) from auth.users
          where id in (select id from public.users) and encrypted_password = ''
            and id not in (select md5('u' || g)::uuid from generate_series(1, 150) g)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(
        (made, unverified),
        (50, 50),
        "the 50 people without an account got one, unverified"
    );

    // Channels: placed, named by chatctl's rules; the shared one shared; a private one private.
    let channels: Vec<(String, String, bool)> = sqlx::query_as(
        "select w.slug, c.name, c.is_private from public.channels c join public.workspaces w on w.id = c.workspace_id
          where c.id in (select md5('c' || g)::uuid from generate_series(1, 7) g) order by c.created_at",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let channels: Vec<(&str, &str, bool)> = channels
        .iter()
        .map(|(w, n, p)| (w.as_str(), n.as_str(), *p))
        .collect();
    assert_eq!(
        channels,
        [
            ("acme-corp", "general", false),
            ("beta-labs", "general", false),
            ("acme-corp", "launch-plans", false),
            ("adopted", "random-talk", false),
            ("adopted", "random-talk2", false),
            ("adopted", "v1-2-release", false),
            ("adopted", "secret-room", true),
        ]
    );
    let shared = scalar(&mut c, "select count(*) from public.shared_channels where channel_id = md5('c3')::uuid and target_workspace_id = md5('w2')::uuid and origin_workspace_id = md5('w1')::uuid").await;
    assert_eq!(shared, 1);
    let defaults: Vec<Option<bool>> = sqlx::query_scalar(
        "select channel_id = md5('c1')::uuid from public.workspaces
          where id in (md5('w1')::uuid, md5('w3')::uuid) order by created_at",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(
        defaults,
        [Some(true), None],
        "w3's default channel did not exist"
    );

    // The schema is exactly a fresh chatctl's.
    let fresh = TestDb::new().await;
    let mut f = fresh.conn().await;
    let (want, got) = (schema(&mut f).await, schema(&mut c).await);
    assert!(
        want == got,
        "the adopted schema differs from a fresh one:\n{}",
        schema_diff(&want, &got)
    );
    let (code, _, stderr) = run(&db, &["migrate", "up"]);
    assert_eq!(code, Some(0), "{stderr}");

    // Row level security: a member reads the private channel, another person does not, and
    // nobody reaches the tables as they were.
    let read = |who: &'static str| {
        let url = db.url.clone();
        async move {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut tx = c.begin().await.unwrap();
            sqlx::query("select set_config('request.jwt.claims', json_build_object('sub', md5($1)::uuid, 'role', 'authenticated')::text, true)")
                .bind(who)
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::raw_sql("set local role authenticated")
                .execute(&mut *tx)
                .await
                .unwrap();
            let seen = scalar(
                &mut tx,
                "select count(*) from public.chat where channel_id = md5('c7')::uuid",
            )
            .await;
            let kept = sqlx::raw_sql("select count(*) from chatctl_adopted.chat")
                .execute(&mut *tx)
                .await;
            (seen, kept.is_err())
        }
    };
    let (member, denied) = read("u2").await;
    assert!(
        member > 0 && denied,
        "a member reads the private channel ({member}), not the kept tables"
    );
    let (stranger, _) = read("u3").await;
    assert_eq!(
        stranger, 0,
        "someone not in the private channel reads none of it"
    );
}

/// The project refuses what adopting would lose: a view over an outline table, a column of
/// a type chatctl cannot convert. Every problem is listed at once; nothing changes.
#[tokio::test]
async fn adopt_refuses_what_it_would_lose_and_changes_nothing() {
    let db = outline_project().await;
    let mut c = db.conn().await;
    sqlx::raw_sql(
        "create view public.recent_chat as select * from public.chat order by created_at desc limit 10;
         alter table public.emojis add column id bigint;
         alter table public.channels alter column created_at type text using created_at::text;",
    )
    .execute(&mut c)
    .await
    .unwrap();
    for args in [
        ["migrate", "adopt", "--dry-run"],
        ["migrate", "adopt", "-q"],
    ] {
        let (code, _, stderr) = run(&db, &args);
        assert_eq!(code, Some(73), "{stderr}");
        assert!(stderr.contains("nothing was changed"), "{stderr}");
        assert!(
            stderr.contains("view public.recent_chat reads public.chat"),
            "{stderr}"
        );
        assert!(
            stderr.contains("public.emojis.id is of type int8"),
            "{stderr}"
        );
        assert!(
            stderr.contains("public.channels.created_at is of type text"),
            "{stderr}"
        );
    }
    let (version, kept): (i64, bool) = sqlx::query_as(
        "select (select max(version) from chatctl.schema_migrations), to_regnamespace('chatctl_adopted') is null",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!((version, kept), (1, true));
}
