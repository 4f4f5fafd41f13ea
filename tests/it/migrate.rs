//! `chatctl migrate`: applying, reverting, drift, locking, failures.

use std::path::Path;
use std::time::Duration;

use chatctl::db::migrate::{self, DownOptions, DownTarget, Migrations, Source, State, UpOptions};
use sqlx::Connection as _;

use crate::support::{LATEST_MIGRATION, TestDb, chatctl, outputs};

fn up_all() -> UpOptions {
    UpOptions {
        target: None,
        dry_run: false,
        lock_timeout: Duration::from_secs(30),
    }
}

async fn embedded() -> Migrations {
    Migrations::load(&Source::Embedded).await.unwrap()
}

async fn tables(db: &TestDb) -> Vec<String> {
    let mut c = db.conn().await;
    sqlx::query_scalar(
        "select table_schema || '.' || table_name from information_schema.tables
          where table_schema in ('public', 'auth', 'storage', 'chatctl') order by 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
}

/// Everything a migration may change, as sorted lines: tables and their columns (type,
/// default, nullability), constraints, indexes, policies, triggers, functions (their whole
/// definition), grants on tables and columns, sequences, types and publications, in the
/// schemas chatctl's migrations touch. Two databases with the same lines have the same schema.
pub(crate) async fn schema(c: &mut sqlx::PgConnection) -> Vec<String> {
    const SCHEMAS: &str = "('public', 'auth', 'storage', 'chatctl', 'chat_private', 'extensions')";
    let queries = [
        format!(
            "select 'column ' || table_schema || '.' || table_name || '.' || column_name || ' ' || data_type
                    || ' null=' || is_nullable || ' default=' || coalesce(column_default, '-')
                    || ' generated=' || coalesce(generation_expression, '-')
               from information_schema.columns where table_schema in {SCHEMAS}"
        ),
        format!(
            "select 'relation ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' rls=' || c.relrowsecurity
                    || ' force=' || c.relforcerowsecurity || ' replica=' || c.relreplident::text
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname in {SCHEMAS} and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')"
        ),
        format!(
            "select 'constraint ' || n.nspname || '.' || r.conrelid::regclass::text || ' ' || r.conname || ' '
                    || pg_get_constraintdef(r.oid)
               from pg_constraint r join pg_namespace n on n.oid = r.connamespace
              where n.nspname in {SCHEMAS}"
        ),
        format!("select 'index ' || indexdef from pg_indexes where schemaname in {SCHEMAS}"),
        format!(
            "select 'policy ' || schemaname || '.' || tablename || ' ' || policyname || ' ' || cmd || ' '
                    || array_to_string(roles, ',') || ' using ' || coalesce(qual, '-') || ' check ' || coalesce(with_check, '-')
               from pg_policies where schemaname in {SCHEMAS}"
        ),
        format!(
            "select 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
               from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
              where not t.tgisinternal and n.nspname in {SCHEMAS}"
        ),
        format!(
            "select 'function ' || pg_get_functiondef(p.oid) || ' acl='
                    || array_to_string(array(select a::text from unnest(coalesce(p.proacl, acldefault('f', p.proowner))) a order by 1), ',')
               from pg_proc p join pg_namespace n on n.oid = p.pronamespace
              where n.nspname in {SCHEMAS} and p.prokind in ('f', 'p')"
        ),
        format!(
            "select 'grant ' || table_schema || '.' || table_name || ' ' || grantee || ' ' || privilege_type
               from information_schema.role_table_grants where table_schema in {SCHEMAS}"
        ),
        format!(
            "select 'column grant ' || table_schema || '.' || table_name || '.' || column_name || ' ' || grantee || ' ' || privilege_type
               from information_schema.column_privileges where table_schema in {SCHEMAS}"
        ),
        format!(
            "select 'type ' || n.nspname || '.' || t.typname || ' ' || t.typtype::text
               from pg_type t join pg_namespace n on n.oid = t.typnamespace
              where n.nspname in {SCHEMAS} and t.typtype in ('e', 'd')"
        ),
        "select 'publication ' || pubname || ' ' || schemaname || '.' || tablename from pg_publication_tables".to_owned(),
        format!("select 'schema ' || nspname from pg_namespace where nspname in {SCHEMAS}"),
    ];
    let mut lines = Vec::new();
    for q in queries {
        let rows: Vec<Option<String>> = sqlx::query_scalar(&q).fetch_all(&mut *c).await.unwrap();
        lines.extend(rows.into_iter().flatten());
    }
    lines.sort();
    lines
}

/// What differs between two schemas, line by line.
pub(crate) fn schema_diff(want: &[String], got: &[String]) -> String {
    let missing = want
        .iter()
        .filter(|l| !got.contains(l))
        .map(|l| format!("- {l}"));
    let extra = got
        .iter()
        .filter(|l| !want.contains(l))
        .map(|l| format!("+ {l}"));
    missing.chain(extra).collect::<Vec<_>>().join("\n")
}

/// A copy of the embedded migrations in a directory, to edit or extend.
fn copy_migrations(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
}

#[tokio::test]
async fn up_down_up_round_trips_every_migration() {
    let db = TestDb::empty().await;
    let m = embedded().await;
    let mut c = migrate::connect(&db.url, Duration::from_secs(10))
        .await
        .unwrap();
    let mut probe = db.conn().await;
    // The whole schema after each version, going up one at a time.
    let latest = m.latest().unwrap();
    let mut at = vec![schema(&mut probe).await];
    for v in 1..=latest {
        migrate::up(
            &mut c,
            &m,
            &UpOptions {
                target: Some(v),
                ..up_all()
            },
        )
        .await
        .unwrap();
        at.push(schema(&mut probe).await);
    }
    let after_up = tables(&db).await;
    assert!(after_up.contains(&"public.chat".to_owned()), "{after_up:?}");

    // One step at a time back to nothing: every down script gives exactly the schema the
    // version below had (columns, constraints, indexes, policies, triggers, functions,
    // grants), and up again gives the same schema as the first time.
    for v in (1..=latest).rev() {
        let opts = DownOptions {
            target: DownTarget::Steps(1),
            dry_run: false,
            lock_timeout: Duration::from_secs(5),
        };
        migrate::down(&mut c, &m, &opts).await.unwrap();
        let mut want = at[(v - 1) as usize].clone();
        let mut got = schema(&mut probe).await;
        // The history table stays once made (it was not there before the first up).
        if v == 1 {
            want.retain(|l| !l.contains("chatctl."));
            got.retain(|l| !l.contains("chatctl.") && l != "schema chatctl");
            want.retain(|l| l != "schema chatctl");
        }
        assert!(
            want == got,
            "reverting version {v} left another schema than version {}:\n{}",
            v - 1,
            schema_diff(&want, &got)
        );
    }
    let status = migrate::status(&mut c, &m).await.unwrap();
    assert_eq!(status.version, None);
    assert_eq!(
        tables(&db).await,
        vec!["chatctl.schema_migrations".to_owned()]
    );

    migrate::up(&mut c, &m, &up_all()).await.unwrap();
    assert_eq!(tables(&db).await, after_up);
    let again_schema = schema(&mut probe).await;
    assert!(
        again_schema == at[latest as usize],
        "up after down gave another schema:\n{}",
        schema_diff(&at[latest as usize], &again_schema)
    );
    let again = migrate::up(&mut c, &m, &up_all()).await.unwrap();
    assert!(again.steps.is_empty(), "a second up applies nothing");
}

#[tokio::test]
async fn up_to_a_version_and_dry_run_change_only_what_they_say() {
    let db = TestDb::empty().await;
    let m = embedded().await;
    let mut c = migrate::connect(&db.url, Duration::from_secs(10))
        .await
        .unwrap();

    let dry = migrate::up(
        &mut c,
        &m,
        &UpOptions {
            dry_run: true,
            ..up_all()
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.steps.len() as i64, LATEST_MIGRATION);
    assert!(
        dry.steps[1]
            .sql
            .as_deref()
            .unwrap()
            .contains("create table public.chat")
    );
    assert!(tables(&db).await.is_empty(), "a dry run changes nothing");

    migrate::up(
        &mut c,
        &m,
        &UpOptions {
            target: Some(1),
            ..up_all()
        },
    )
    .await
    .unwrap();
    let status = migrate::status(&mut c, &m).await.unwrap();
    assert_eq!(status.version, Some(1));
    assert_eq!(status.pending as i64, LATEST_MIGRATION - 1);
    assert!(!tables(&db).await.contains(&"public.chat".to_owned()));
}

#[tokio::test]
async fn two_concurrent_runs_apply_the_schema_once_and_both_succeed() {
    let db = TestDb::empty().await;
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                chatctl(&[("DATABASE_URL", &url)])
                    .args(["migrate", "up", "--output", "json"])
                    .timeout(Duration::from_secs(120))
                    .output()
                    .unwrap()
            })
        })
        .collect();
    let mut outs = runs.into_iter().map(|h| h.join().unwrap());
    let (a, b) = (outs.next().unwrap(), outs.next().unwrap());
    assert!(a.status.success(), "{:?}", outputs(&a));
    assert!(b.status.success(), "{:?}", outputs(&b));
    let ja: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let jb: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    let applied = ja["steps"].as_array().unwrap().len() + jb["steps"].as_array().unwrap().len();
    assert_eq!(
        applied as i64, LATEST_MIGRATION,
        "each migration applied exactly once between the two runs: {ja} {jb}"
    );
    let mut c = db.conn().await;
    let rows: i64 = sqlx::query_scalar("select count(*) from chatctl.schema_migrations")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(rows, LATEST_MIGRATION);
}

#[tokio::test]
async fn a_lock_wait_is_bounded_and_names_the_holder() {
    let db = TestDb::new().await;
    let opts = sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(crate::support::port())
        .username("postgres")
        .database(&db.name)
        .application_name("nightly-deploy job 4711");
    let mut holder = sqlx::PgConnection::connect_with(&opts).await.unwrap();
    sqlx::query("select pg_advisory_lock(x'6368617463746c00'::bigint)")
        .execute(&mut holder)
        .await
        .unwrap();

    let out = chatctl(&[("DATABASE_URL", &db.url)])
        .args(["migrate", "up", "--lock-timeout", "1s"])
        .output()
        .unwrap();
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("waiting for the migration lock"),
        "{stderr}"
    );
    assert!(
        stderr.contains("nightly-deploy job 4711"),
        "the holder is named: {stderr}"
    );
    holder.close().await.unwrap();
}

#[tokio::test]
async fn a_transaction_pooler_url_is_refused() {
    let out = chatctl(&[(
        "DATABASE_URL",
        "postgres://postgres.abcd:s3cret-pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
    )])
    .args(["migrate", "up"])
    .output()
    .unwrap();
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("transaction pooler"), "{stderr}");
    assert!(stderr.contains("direct connection"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw") && !stdout.contains("s3cret-pw"));
}

#[tokio::test]
async fn a_failing_migration_names_file_and_line_and_leaves_the_previous_version() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    copy_migrations(dir.path());
    std::fs::write(
        dir.path().join("0900_broken.up.sql"),
        "create table public.half_done (id int);\n\ninsert into public.half_done values (1);\nselect * from public.no_such_table;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0900_broken.down.sql"),
        "drop table public.half_done;\n",
    )
    .unwrap();

    let out = chatctl(&[("DATABASE_URL", &db.url)])
        .args(["migrate", "up", "--output", "json", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("0900_broken.up.sql failed at line 4"),
        "{stderr}"
    );
    assert!(stderr.contains("no_such_table"), "{stderr}");
    assert!(
        stderr.contains(&format!("still at version {LATEST_MIGRATION}")),
        "{stderr}"
    );
    // Under --output json, stdout is JSON on failure too.
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("0900_broken.up.sql")
    );

    let mut c = db.conn().await;
    let exists: bool = sqlx::query_scalar("select to_regclass('public.half_done') is not null")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(!exists, "nothing of the failed migration remains");
    let m = Migrations::load(&Source::Dir(dir.path().to_owned()))
        .await
        .unwrap();
    let status = migrate::status(&mut c, &m).await.unwrap();
    assert_eq!(status.version, Some(LATEST_MIGRATION));
}

#[tokio::test]
async fn verify_reports_an_edited_migration_with_exit_2() {
    let db = TestDb::empty().await;
    let dir = tempfile::tempdir().unwrap();
    copy_migrations(dir.path());
    let env = [("DATABASE_URL", db.url.as_str())];
    chatctl(&env)
        .args(["migrate", "up", "--source"])
        .arg(dir.path())
        .assert()
        .success();
    chatctl(&env)
        .args(["migrate", "verify", "--source"])
        .arg(dir.path())
        .assert()
        .code(0);

    let file = dir.path().join("0002_chat_schema.up.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text + "\n-- an innocent-looking edit\n").unwrap();

    let out = chatctl(&env)
        .args(["migrate", "verify", "--output", "json", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout} {stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["drift"], 1);
    assert_eq!(json["migrations"][1]["state"], "checksum_mismatch");

    // And `up` refuses to build on a drifted history.
    let out = chatctl(&env)
        .args(["migrate", "up", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(outputs(&out).1.contains("was edited after it was applied"));
}

#[tokio::test]
async fn status_knows_unknown_and_missing_migrations() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    sqlx::query("insert into chatctl.schema_migrations (version, description, success, checksum, execution_time) values (99, 'from the future', true, '\\x00', 0)")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("delete from chatctl.schema_migrations where version = 2")
        .execute(&mut c)
        .await
        .unwrap();
    let status = migrate::status(&mut c, &embedded().await).await.unwrap();
    let states: Vec<(i64, State)> = status
        .migrations
        .iter()
        .map(|e| (e.version, e.state))
        .collect();
    let expected: Vec<(i64, State)> = (1..=LATEST_MIGRATION)
        .map(|v| {
            (
                v,
                if v == 2 {
                    State::Missing
                } else {
                    State::Applied
                },
            )
        })
        .chain([(99, State::Unknown)])
        .collect();
    assert_eq!(states, expected);
    assert_eq!(status.drift, 2);
}

#[tokio::test]
async fn down_to_a_version_and_its_dry_run() {
    let db = TestDb::new().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    let out = chatctl(&env)
        .args(["migrate", "down", "--to", "1", "--dry-run"])
        .output()
        .unwrap();
    let (stdout, _) = outputs(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("-- 0003_row_level_security.down.sql"),
        "{stdout}"
    );
    assert!(
        stdout.find("0003_row").unwrap() < stdout.find("0002_chat").unwrap(),
        "newest first: {stdout}"
    );

    // In a script: refused without --yes, naming what would go, and nothing reverted.
    let out = chatctl(&env)
        .args(["migrate", "down", "--to", "1"])
        .output()
        .unwrap();
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("drops")
            && stderr.contains("public.chat (0 rows)")
            && stderr.contains("without --yes"),
        "{stderr}"
    );
    let mut c = db.conn().await;
    let m = embedded().await;
    assert_eq!(
        migrate::status(&mut c, &m).await.unwrap().version,
        Some(crate::support::LATEST_MIGRATION)
    );
    chatctl(&env)
        .args(["migrate", "down", "--to", "1", "--yes"])
        .assert()
        .success();
    assert_eq!(migrate::status(&mut c, &m).await.unwrap().version, Some(1));
    chatctl(&env).args(["migrate", "down"]).assert().code(64);
}

/// At a terminal `migrate down` names what it drops and asks: "n" leaves everything as it
/// was (exit 1), "y" reverts.
#[tokio::test]
async fn down_asks_at_a_terminal_and_does_only_what_it_is_told() {
    let db = TestDb::new().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    let mut c = db.conn().await;
    sqlx::query("insert into chatctl.storage_buckets (bucket_id) values ('x')")
        .execute(&mut c)
        .await
        .unwrap();
    let m = embedded().await;
    // Back past 0015, which made the table holding that row.
    let down = ["migrate", "down", "--steps", "3"];
    let (code, shown) = crate::support::on_terminal(&env, &down, 120, "n\n");
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("chatctl.storage_buckets (1 rows)") && shown.contains("[y/N]"),
        "{shown}"
    );
    assert_eq!(
        migrate::status(&mut c, &m).await.unwrap().version,
        Some(crate::support::LATEST_MIGRATION),
        "declined: nothing reverted"
    );
    let (code, shown) = crate::support::on_terminal(&env, &down, 120, "y\n");
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(
        migrate::status(&mut c, &m).await.unwrap().version,
        Some(crate::support::LATEST_MIGRATION - 3)
    );
}

#[tokio::test]
async fn new_creates_the_next_pair() {
    let dir = tempfile::tempdir().unwrap();
    copy_migrations(dir.path());
    let out = chatctl(&[])
        .args(["migrate", "new", "add_channel_pins", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", outputs(&out));
    let next = format!("{:04}_add_channel_pins", LATEST_MIGRATION + 1);
    assert!(dir.path().join(format!("{next}.up.sql")).is_file());
    assert!(dir.path().join(format!("{next}.down.sql")).is_file());
    let out = chatctl(&[])
        .args(["migrate", "new", "Bad Name", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test]
async fn a_no_transaction_migration_runs_outside_one_and_a_failure_is_recorded() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    copy_migrations(dir.path());
    // CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    std::fs::write(
        dir.path().join("0900_concurrent_index.up.sql"),
        "-- no-transaction\ncreate index concurrently chat_created_idx on public.chat (created_at);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0900_concurrent_index.down.sql"),
        "-- no-transaction\ndrop index concurrently public.chat_created_idx;\n",
    )
    .unwrap();
    let env = [("DATABASE_URL", db.url.as_str())];
    let out = chatctl(&env)
        .args(["migrate", "up", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", outputs(&out));
    chatctl(&env)
        .args(["migrate", "down", "--steps", "1", "--yes", "--source"])
        .arg(dir.path())
        .assert()
        .success();

    std::fs::write(
        dir.path().join("0901_broken.up.sql"),
        "-- no-transaction\nselect * from public.nope;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0901_broken.down.sql"),
        "-- no-transaction\nselect 1;\n",
    )
    .unwrap();
    let out = chatctl(&env)
        .args(["migrate", "up", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("may be partly applied"), "{stderr}");
    let out = chatctl(&env)
        .args(["migrate", "verify", "-o", "json", "--source"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let broken = json["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == 901)
        .unwrap();
    assert_eq!(broken["state"], "failed", "{json}");
}

/// 0012 gives reactions the outline's names (`chat_id`, `emoji_uni_code`, an `id`) and turns
/// the names chatctl wrote before into the Unicode they name, one per person and message.
#[tokio::test]
async fn the_contract_names_keep_every_reaction_and_turn_chatctls_names_into_unicode() {
    let db = TestDb::empty().await;
    let m = embedded().await;
    let mut c = migrate::connect(&db.url, Duration::from_secs(10))
        .await
        .unwrap();
    let before = UpOptions {
        target: Some(11),
        ..up_all()
    };
    migrate::up(&mut c, &m, &before).await.unwrap();
    let ada = crate::support::user_named_in(&mut c, "ada", "display_name").await;
    let bob = crate::support::user_named_in(&mut c, "bob", "display_name").await;
    let message: uuid::Uuid = sqlx::query_scalar(
        "with w as (insert into workspaces (slug, name) values ('acme', 'Acme') returning id),
              ch as (insert into channels (workspace_id, name) select id, 'general' from w returning id)
         insert into chat (channel_id, user_id, message)
         select ch.id, $1, '{\"text\":\"hi\"}' from ch returning id",
    )
    .bind(ada)
    .fetch_one(&mut c)
    .await
    .unwrap();
    // ada reacted 👀 twice (by name, then as Unicode); bob by name, and with a custom one.
    sqlx::query(
        "insert into emojis (message_id, user_id, emoji) values
            ($1, $2, 'eyes'), ($1, $2, '👀'), ($1, $3, 'eyes'), ($1, $3, 'tada'), ($1, $3, ':shipit:')",
    )
    .bind(message)
    .bind(ada)
    .bind(bob)
    .execute(&mut c)
    .await
    .unwrap();

    // ada signed in before the upgrade: her profile's last_login is filled from it.
    sqlx::query("update auth.users set last_sign_in_at = '2026-11-30 10:00:00+00' where id = $1")
        .bind(ada)
        .execute(&mut c)
        .await
        .unwrap();

    migrate::up(&mut c, &m, &up_all()).await.unwrap();
    let logins: Vec<(String, Option<String>)> = sqlx::query_as(
        "select username, to_char(last_login at time zone 'UTC', 'YYYY-MM-DD HH24:MI') from users order by 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(
        logins,
        [
            ("ada".to_owned(), Some("2026-11-30 10:00".to_owned())),
            ("bob".to_owned(), None)
        ]
    );
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "select u.username, e.emoji_uni_code, e.id is not null from emojis e join users u on u.id = e.user_id
          where e.chat_id = $1 order by 1, 2",
    )
    .bind(message)
    .fetch_all(&mut c)
    .await
    .unwrap();
    let want = [
        ("ada", "👀"),
        ("bob", ":shipit:"),
        ("bob", "🎉"),
        ("bob", "👀"),
    ];
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|(u, e, _)| (u.as_str(), e.as_str()))
        .collect();
    let mut want = want.to_vec();
    want.sort();
    assert_eq!(got, want);
    assert!(rows.iter().all(|r| r.2), "every reaction has an id");

    // Clients write through the outline's names, as the web app does (row level security on).
    for join in [
        "insert into workspace_members (workspace_id, user_id, role)
         select workspace_id, $2, 'member' from channels c join chat m on m.channel_id = c.id where m.id = $1",
        "insert into members (channel_id, user_id) select channel_id, $2 from chat where id = $1",
    ] {
        sqlx::query(join)
            .bind(message)
            .bind(ada)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let mut tx = c.begin().await.unwrap();
    chatctl::db::app_queries::act_as(&mut tx, "authenticated", Some(ada))
        .await
        .unwrap();
    let id: uuid::Uuid = sqlx::query_scalar(
        "insert into public.emojis (chat_id, user_id, emoji_uni_code) values ($1, $2, '🚀') returning id",
    )
    .bind(message)
    .bind(ada)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let code: String = sqlx::query_scalar("select emoji_uni_code from emojis where id = $1")
        .bind(id)
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(code, "🚀");
}

/// A project whose tables were made from the product's outline (no chatctl history):
/// `migrate up` stops before changing anything and says what it found (issue 20), instead of
/// applying the bootstrap and failing at the first `create table`.
#[tokio::test]
async fn up_on_a_database_with_the_outlines_tables_changes_nothing_and_says_what_it_found() {
    let db = TestDb::empty().await;
    let mut c = db.conn().await;
    sqlx::raw_sql(
        "create table public.users (id uuid primary key, name text, email text, created_at timestamptz, last_login timestamptz);
         create table public.chat (id uuid primary key, user_id uuid, channel_id uuid, message jsonb);
         insert into public.users (id, name) select gen_random_uuid(), 'person ' || g from generate_series(1, 3) g;",
    )
    .execute(&mut c)
    .await
    .unwrap();
    const SCHEMAS: &str = "select string_agg(nspname, ',' order by nspname) from pg_namespace
                            where nspname not like 'pg\\_%' and nspname <> 'information_schema'";
    let before: String = sqlx::query_scalar(SCHEMAS).fetch_one(&mut c).await.unwrap();
    for args in [vec!["migrate", "up", "--dry-run"], vec!["migrate", "up"]] {
        let out = chatctl(&[("DATABASE_URL", db.url.as_str())])
            .args(&args)
            .output()
            .unwrap();
        let (_, stderr) = outputs(&out);
        assert_eq!(out.status.code(), Some(73), "{args:?}: {stderr}");
        assert!(stderr.contains("nothing was changed"), "{stderr}");
        assert!(
            stderr.contains("public.users (3 rows)") && stderr.contains("public.chat (0 rows)"),
            "{stderr}"
        );
    }
    let after: String = sqlx::query_scalar(SCHEMAS).fetch_one(&mut c).await.unwrap();
    assert_eq!(after, before, "no schema was made");
    let users: i64 = sqlx::query_scalar("select count(*) from public.users")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(users, 3);

    // `adopt` takes it over, Supabase's schemas (the bootstrap) included, in one run: the
    // three people get accounts (no address to sign in with: they had none).
    let out = chatctl(&[("DATABASE_URL", db.url.as_str())])
        .args(["migrate", "adopt"])
        .output()
        .unwrap();
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("3 people had no Supabase Auth account"),
        "{stdout}"
    );
    let adopted: (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from public.users u join auth.users a using (id) where u.username like 'person%'),
                (select count(*) from chatctl_adopted.users),
                (select max(version) from chatctl.schema_migrations)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(adopted, (3, 3, LATEST_MIGRATION));
}

/// The Supabase CLI's migrations beside chatctl's (issue 20): `up --supabase-dir` applies
/// the pending files after chatctl's own and records them as the CLI does (version, name,
/// statements as its splitter cuts them); `status` lists them; `repair` marks versions
/// applied or reverted; a failing file is rolled back and not recorded.
#[tokio::test]
async fn supabase_cli_migrations_are_applied_listed_and_repaired_as_the_cli_records_them() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("supabase").join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("20240101000000_app_settings.sql"),
        "create table public.app_settings (key text primary key, value text default 'a;b');\n\n\
         -- one row; a comment\n\
         insert into public.app_settings (key) values ('theme');\n",
    )
    .unwrap();
    std::fs::write(
        migrations.join("20240102000000_settings_fn.sql"),
        "create function public.setting(k text) returns text language plpgsql stable as $$\n\
         begin\n  return (select value from public.app_settings where key = k);\nend\n$$;\n",
    )
    .unwrap();
    std::fs::write(migrations.join("README.md"), "not a migration").unwrap();
    let env = [("DATABASE_URL", db.url.as_str())];
    let dir_arg = migrations.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = chatctl(&env).args(args).output().unwrap();
        let (stdout, stderr) = outputs(&out);
        (out.status.code(), stdout, stderr)
    };

    let (code, stdout, stderr) = run(&["migrate", "up", "--supabase-dir", dir_arg, "-o", "json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["supabase"].as_array().unwrap().len(), 2, "{report}");
    let history: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "select version, name, statements from supabase_migrations.schema_migrations order by version",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(
        history,
        [
            (
                "20240101000000".to_owned(),
                "app_settings".to_owned(),
                vec![
                    "create table public.app_settings (key text primary key, value text default 'a;b')".to_owned(),
                    "-- one row; a comment\ninsert into public.app_settings (key) values ('theme')".to_owned(),
                ]
            ),
            (
                "20240102000000".to_owned(),
                "settings_fn".to_owned(),
                vec!["create function public.setting(k text) returns text language plpgsql stable as $$\nbegin\n  return (select value from public.app_settings where key = k);\nend\n$$".to_owned()]
            ),
        ]
    );
    let value: String = sqlx::query_scalar("select public.setting('theme')")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(value, "a;b");

    // Listed beside chatctl's own; nothing pending; a second run applies nothing.
    let (code, stdout, _) = run(&["migrate", "status", "--supabase-dir", dir_arg, "-o", "json"]);
    assert_eq!(code, Some(0));
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["supabase"]["pending"], 0, "{status}");
    assert_eq!(status["supabase"]["migrations"][1]["remote"], true);
    let (code, stdout, _) = run(&["migrate", "up", "--supabase-dir", dir_arg]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("Supabase CLI migrations: none to apply"),
        "{stdout}"
    );

    // repair: reverted drops the row (the SQL stays applied), applied records it again.
    let (code, _, stderr) = run(&[
        "migrate",
        "repair",
        "--status",
        "reverted",
        "20240102000000",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let (_, stdout, _) = run(&["migrate", "status", "--supabase-dir", dir_arg, "-o", "json"]);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["supabase"]["pending"], 1, "{status}");
    let (code, _, stderr) = run(&[
        "migrate",
        "repair",
        "--supabase-dir",
        dir_arg,
        "--status",
        "applied",
        "20240102000000",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let statements: Vec<String> = sqlx::query_scalar(
        "select statements from supabase_migrations.schema_migrations where version = '20240102000000'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(statements, history[1].2);

    // They have no down files: `down` says so instead of ignoring the flag.
    let (code, _, stderr) = run(&["migrate", "down", "--steps", "1", "--supabase-dir", dir_arg]);
    assert_eq!(code, Some(64), "{stderr}");

    // A file that fails: rolled back whole, not recorded, the error names file and statement.
    std::fs::write(
        migrations.join("20240103000000_broken.sql"),
        "insert into public.app_settings (key) values ('half');\nselect no_such_function();\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["migrate", "up", "--supabase-dir", dir_arg]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("20240103000000_broken.sql") && stderr.contains("statement 2 of 2"),
        "{stderr}"
    );
    let half: i64 =
        sqlx::query_scalar("select count(*) from public.app_settings where key = 'half'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(half, 0, "the file's first statement was rolled back");
    let recorded: i64 = sqlx::query_scalar(
        "select count(*) from supabase_migrations.schema_migrations where version = '20240103000000'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(recorded, 0);
}
