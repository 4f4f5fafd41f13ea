//! `chatctl dev seed`: deterministic, realistic, consistent.

use chatctl::db::seed::{self, SeedOptions};

use crate::support::TestDb;

fn opts(seed: u64) -> SeedOptions {
    SeedOptions {
        until: chatctl::db::seed::REFERENCE,
        users: 60,
        channels: 30,
        messages: 3_000,
        workspaces: 2,
        seed,
        progress: false,
    }
}

/// A fingerprint of everything generated.
async fn fingerprint(db: &TestDb) -> Vec<String> {
    let mut c = db.conn().await;
    sqlx::query_scalar(
        "select 'users ' || md5(string_agg(id::text || username, ',' order by id)) from users
         union all select 'channels ' || md5(string_agg(id::text || coalesce(name, '') || kind, ',' order by id)) from channels
         union all select 'chat ' || md5(string_agg(id::text || message::text || coalesce(parent_id::text, ''), ',' order by id)) from chat
         union all select 'emojis ' || count(*) from emojis",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_same_seed_gives_the_same_data() {
    let (a, b, c) = (
        TestDb::new().await,
        TestDb::new().await,
        TestDb::new().await,
    );
    seed::seed(&a.pool().await, &opts(7)).await.unwrap();
    seed::seed(&b.pool().await, &opts(7)).await.unwrap();
    seed::seed(&c.pool().await, &opts(8)).await.unwrap();
    assert_eq!(fingerprint(&a).await, fingerprint(&b).await);
    assert_ne!(fingerprint(&a).await, fingerprint(&c).await);
}

#[tokio::test]
async fn seeded_data_is_realistic_and_consistent() {
    let db = TestDb::new().await;
    let report = seed::seed(&db.pool().await, &opts(42)).await.unwrap();
    assert_eq!(report.messages, 3_000);
    let mut c = db.conn().await;
    let one = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let kinds: Vec<(String, i64)> =
        sqlx::query_as("select kind, count(*) from channels group by kind order by kind")
            .fetch_all(&mut c)
            .await
            .unwrap();
    let kinds: Vec<&str> = kinds.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["dm", "group_dm", "private", "public"],
        "every kind of channel"
    );
    assert!(
        one("select count(*) from chat where parent_id is not null")
            .fetch_one(&mut c)
            .await
            .unwrap()
            > 300,
        "threads"
    );
    assert!(
        one("select count(*) from chat where jsonb_array_length(message -> 'mentions') > 0")
            .fetch_one(&mut c)
            .await
            .unwrap()
            > 50,
        "mentions"
    );
    assert!(
        one("select count(*) from chat where message ->> 'text' like '%https://%'")
            .fetch_one(&mut c)
            .await
            .unwrap()
            > 20,
        "links"
    );
    assert!(
        one("select count(*) from emojis")
            .fetch_one(&mut c)
            .await
            .unwrap()
            > 200,
        "reactions"
    );
    // Zipf: the most frequent word is far more frequent than the 50th.
    let freq: Vec<i64> = sqlx::query_scalar("select count(*) from chat, regexp_split_to_table(message ->> 'text', '\\s+') w group by w order by 1 desc limit 50")
        .fetch_all(&mut c).await.unwrap();
    assert!(freq[0] > 10 * freq[49], "{freq:?}");
    // The trigger-kept counts agree with the rows, and authors belong to their channels.
    assert_eq!(one("select count(*) from chat p where p.total_replies <> (select count(*) from chat r where r.parent_id = p.id)").fetch_one(&mut c).await.unwrap(), 0);
    assert_eq!(one("select count(*) from chat m where not exists (select 1 from members x where x.channel_id = m.channel_id and x.user_id = m.user_id)").fetch_one(&mut c).await.unwrap(), 0);
    // Indexes and keys that the bulk load deferred are back.
    assert_eq!(
        one("select count(*) from pg_indexes where tablename = 'chat'")
            .fetch_one(&mut c)
            .await
            .unwrap(),
        6
    );
    assert_eq!(one("select count(*) from pg_constraint where conrelid = 'public.chat'::regclass and contype = 'f'").fetch_one(&mut c).await.unwrap(), 3);

    let disabled = one(
        "select count(*) from pg_trigger where tgrelid = 'public.chat'::regclass and tgname in ('chat_check_parent', 'chat_replies_insert') and tgenabled = 'D'",
    );
    assert_eq!(
        disabled.fetch_one(&mut c).await.unwrap(),
        0,
        "the bulk load switched its triggers back on"
    );

    // A second seed into the same database is refused, and changes nothing.
    let err = seed::seed(&db.pool().await, &opts(1)).await.unwrap_err();
    assert!(
        err.to_string().contains("already holds seeded data"),
        "{err}"
    );
}

#[tokio::test]
async fn seeding_beside_existing_messages_uses_the_triggers_and_stays_consistent() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let alice = crate::support::user(&mut c, "alice").await;
    sqlx::raw_sql(&format!(
        "with w as (insert into workspaces (slug, name) values ('mine', 'Mine') returning id),
              ch as (insert into channels (workspace_id, name) select id, 'existing' from w returning id)
         insert into chat (channel_id, user_id, message) select id, '{alice}', '{{\"text\":\"already here\"}}' from ch"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    seed::seed(&db.pool().await, &opts(3)).await.unwrap();
    let wrong: i64 = sqlx::query_scalar("select count(*) from chat p where p.total_replies <> (select count(*) from chat r where r.parent_id = p.id)")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(wrong, 0);
    let replies: i64 = sqlx::query_scalar("select count(*) from chat where parent_id is not null")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(replies > 300);
}

/// `dev seed` ends its messages now, so the README's `--since` examples find some; with
/// `--until` the same seed gives the same rows again.
#[tokio::test]
async fn dev_seed_ends_now_and_until_makes_it_repeatable() {
    let db = TestDb::new().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    let small = [
        "dev",
        "seed",
        "--users",
        "20",
        "--channels",
        "4",
        "--messages",
        "2000",
        "-o",
        "json",
    ];
    let out = crate::support::chatctl(&env).args(small).output().unwrap();
    let (stdout, stderr) = crate::support::outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let until: chrono::DateTime<chrono::Utc> = report["until"].as_str().unwrap().parse().unwrap();
    let now = chrono::Utc::now();
    assert!(
        until <= now && now - until < chrono::TimeDelta::minutes(5),
        "{until}"
    );
    let mut c = db.conn().await;
    let (newest, recent): (chrono::DateTime<chrono::Utc>, i64) = sqlx::query_as(
        "select max(created_at), count(*) filter (where created_at > now() - interval '2 days')
           from chat",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(
        newest <= until && until - newest < chrono::TimeDelta::days(1),
        "{newest}"
    );
    assert!(recent > 0, "the last two days have messages");
    let (slug, channel): (String, String) = sqlx::query_as(
        "select w.slug, ch.name from chat m join channels ch on ch.id = m.channel_id
           join workspaces w on w.id = ch.workspace_id
          where ch.name is not null and m.created_at > now() - interval '2 days'
          group by 1, 2 order by count(*) desc, 2 limit 1",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    let out = crate::support::chatctl(&env)
        .args([
            "summarize",
            "-w",
            &slug,
            "--channel",
            &channel,
            "--since",
            "2 days",
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    let (stdout, stderr) = crate::support::outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let digest: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        digest["digest"]["messages"].as_u64().unwrap() > 0,
        "{stdout}"
    );

    // The same seed and time, into another database: the same messages.
    let again = TestDb::new().await;
    let stamp = until.to_rfc3339();
    let out = crate::support::chatctl(&[("DATABASE_URL", again.url.as_str())])
        .args(small)
        .args(["--until", &stamp])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::support::outputs(&out).1);
    assert_eq!(fingerprint(&db).await, fingerprint(&again).await);
}
