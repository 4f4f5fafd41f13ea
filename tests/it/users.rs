//! `users import` and friends (issue 16): every format, every reject reason, idempotency,
//! updates, crash and resume, sign-in as Supabase Auth checks it, export round trips,
//! deactivation under row level security.

use crate::support::SpawnGuarded as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::support::{TestDb, chatctl, chatctl_std, outputs};

fn fixture(rel: &str) -> String {
    let p = crate::support::fixtures("mongo-users/mcampo2-mongodb-sample-databases").join(rel);
    p.to_str().unwrap().to_owned()
}

/// Runs `chatctl users import ARGS --output json` on `db`; the exit code, the report, stderr.
fn import(db: &TestDb, args: &[&str]) -> (i32, Value, String) {
    let out = chatctl(&[("DATABASE_URL", &db.url)])
        .args(["users", "import", "--output", "json"])
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = outputs(&out);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap_or(-1), report, stderr)
}

fn counts(report: &Value, kind: &str) -> [u64; 4] {
    let c = &report[kind];
    ["inserted", "updated", "unchanged", "rejected"].map(|k| c[k].as_u64().unwrap_or(0))
}

fn rejects(path: &Path) -> Vec<Value> {
    // The rejected records are people's data: owner-only.
    use std::os::unix::fs::MetadataExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        assert_eq!(
            meta.mode() & 0o077,
            0,
            "the rejects file is {:o}",
            meta.mode()
        );
    }
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn workspace_with_channel(db: &TestDb) {
    for args in [
        vec!["workspace", "create", "acme"],
        vec!["channel", "create", "general", "-w", "acme"],
        vec!["channel", "create", "random", "-w", "acme"],
    ] {
        chatctl(&[("DATABASE_URL", &db.url)])
            .args(&args)
            .assert()
            .success();
    }
}

async fn scalar_i64(c: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&mut *c).await.unwrap()
}

#[tokio::test]
async fn mongo_exports_import_once_and_again_changes_nothing() {
    let db = TestDb::new().await;
    workspace_with_channel(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let rej = dir.path().join("rejects.jsonl");
    let mflix = fixture("sample_mflix/users.json");
    let customers = fixture("sample_analytics/customers.json");
    let args = [
        mflix.as_str(),
        customers.as_str(),
        "--map",
        "birthdate=created_at",
        "-w",
        "acme",
        "--channels",
        "general,random",
        "--rejects",
        rej.to_str().unwrap(),
    ];
    let (code, report, _) = import(&db, &args);
    assert_eq!(code, 1, "a rejected row makes the exit code 1: {report}");
    assert_eq!(report["rows"], 685);
    assert_eq!(counts(&report, "users"), [684, 0, 0, 1]);
    assert_eq!(counts(&report, "workspace_memberships"), [684, 0, 0, 0]);
    assert_eq!(counts(&report, "channel_memberships"), [2 * 684, 0, 0, 0]);
    // The same address under two ObjectIds: the second is rejected, not merged.
    let r = rejects(&rej);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["kind"], "duplicate_email");
    assert_eq!(r[0]["line"], 145);
    assert!(
        r[0]["raw"]
            .as_str()
            .unwrap()
            .contains("5ca4bbcea2dd94ee58162afa")
    );
    assert!(
        r[0]["reason"]
            .as_str()
            .unwrap()
            .contains("customers.json:111")
    );

    let mut c = db.conn().await;
    // ObjectIds are the external ids; the non-ASCII address is kept; a date before 1970.
    let (source, id): (String, String) = sqlx::query_as(
        "select external_source, external_id from public.users where email = 'sean_bean@gameofthron.es'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(
        (source.as_str(), id.as_str()),
        ("mongo", "59b99db4cfa9a34dcd7885b6")
    );
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from public.users where email = 'hafthór_júlíus_björnsson@gameofthron.es'").await,
        1
    );
    let before_1970 = scalar_i64(
        &mut c,
        "select count(*) from public.users where created_at < '1970-01-01'",
    )
    .await;
    assert!(
        before_1970 >= 1,
        "the dates before 1970 ($numberLong < 0) were lost"
    );
    // Imported usernames as given, and derived from the address where none is given.
    assert_eq!(
        scalar_i64(
            &mut c,
            "select count(*) from public.users where username in ('fmiller', 'sean_bean')"
        )
        .await,
        2
    );

    // Again: nothing changes, and the report says so.
    let (code, report, _) = import(&db, &[&args[..], &["--allow-rejects"]].concat());
    assert_eq!(code, 0, "--allow-rejects: {report}");
    assert_eq!(counts(&report, "users"), [0, 0, 684, 1]);
    assert_eq!(counts(&report, "workspace_memberships"), [0, 0, 684, 0]);
    assert_eq!(counts(&report, "channel_memberships"), [0, 0, 2 * 684, 0]);
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from auth.users").await,
        684
    );
    // One audit entry per run, with its counts.
    let audit: Vec<Value> = sqlx::query_scalar(
        "select after from chatctl.audit_log where action = 'import' and object_type = 'users' order by id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0]["users"]["inserted"], 684);
    assert_eq!(audit[1]["users"]["unchanged"], 684);
}

/// Writes `text` to `dir/name`.
fn file(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn every_format_is_read_and_every_bad_row_is_rejected_with_its_line_and_reason() {
    let db = TestDb::new().await;
    workspace_with_channel(&db).await;
    let mut c = db.conn().await;
    // An existing user of another external id holds this address.
    chatctl(&[("DATABASE_URL", &db.url)])
        .args(["users", "import", "-", "--format", "csv", "--source", "hr"])
        .write_stdin("email,name,employee id\ntaken@x.io,Taken,E-9\n")
        .assert()
        .success();
    let dir = tempfile::tempdir().unwrap();
    let mut csv = b"E-mail,First Name,Last Name,Employee ID,Role,Created\n".to_vec();
    csv.extend_from_slice(b"ann@x.io,Ann,Lee,E-1,admin,2020-01-02\n"); // 2 ok
    csv.extend_from_slice(b"not-an-address,Bob,B,E-2,,\n"); // 3 bad_email
    csv.extend_from_slice(b",Cy,C,E-3,,\n"); // 4 missing_email
    csv.extend_from_slice(b"ANN@x.io,Ann,Again,E-4,,\n"); // 5 duplicate_email
    csv.extend_from_slice(b"dee@x.io,Dee,D,E-1,,\n"); // 6 duplicate_external_id
    csv.extend_from_slice(b"taken@x.io,Tak,En,E-5,,\n"); // 7 external_id_taken
    csv.extend_from_slice(format!("eve@x.io,{},E,E-6,,\n", "e".repeat(300)).as_bytes()); // 8 bad_name
    csv.extend_from_slice(b"fay@x.io,,,E-7,,\n"); // 9 bad_name (empty)
    csv.extend_from_slice(b"gus@x.io,Gus\xff,G,E-8,,\n"); // 10 invalid_utf8
    csv.extend_from_slice(b"hal@x.io,Hal,H,E-9,,last tuesday\n"); // 11 bad_date
    csv.extend_from_slice(b"ivy@x.io,Ivy,I,E-10,superuser,\n"); // 12 unknown_role
    csv.extend_from_slice(b"jo@x.io,Jo,J,E-11\n"); // 13 bad_field_count
    csv.extend_from_slice(b"\"kim@x.io\",\"Kim, the\nsecond\",K,E-12,guest,2021-03-04T05:06:07Z\n"); // 14-15 ok
    let csv = file(dir.path(), "people.csv", &csv);
    let jsonl = file(
        dir.path(),
        "people.jsonl",
        b"{\"email\":\"lou@x.io\",\"name\":\"Lou\",\"id\":1}\n{\"email\": \"mo@x.io\", \"name\": \n\n{\"email\":\"ned@x.io\",\"full_name\":\"Ned\"}\n",
    );
    let json = file(
        dir.path(),
        "people.json",
        b"[\n  {\"email\": \"oz@x.io\", \"name\": \"Oz\"},\n  {\"email\": \"pia@x.io\", \"name\": \"Pia\", \"deactivated_at\": \"2024-05-06\"}\n]\n",
    );
    let rej = dir.path().join("rejects.jsonl");
    let (code, report, _) = import(
        &db,
        &[
            csv.to_str().unwrap(),
            jsonl.to_str().unwrap(),
            json.to_str().unwrap(),
            "-w",
            "acme",
            "--rejects",
            rej.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    let formats: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["csv", "jsonl", "json"]);
    let got: Vec<(String, u64, String)> = rejects(&rej)
        .iter()
        .map(|r| {
            (
                Path::new(r["file"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                r["line"].as_u64().unwrap(),
                r["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, u64, String)> = [
        ("people.csv", 3, "bad_email"),
        ("people.csv", 4, "missing_email"),
        ("people.csv", 5, "duplicate_email"),
        ("people.csv", 6, "duplicate_external_id"),
        ("people.csv", 7, "external_id_taken"),
        ("people.csv", 8, "bad_name"),
        ("people.csv", 9, "bad_name"),
        ("people.csv", 10, "invalid_utf8"),
        ("people.csv", 11, "bad_date"),
        ("people.csv", 12, "unknown_role"),
        ("people.csv", 13, "bad_field_count"),
        ("people.jsonl", 2, "bad_json"),
    ]
    .iter()
    .map(|(f, l, k)| (f.to_string(), *l, k.to_string()))
    .collect();
    assert_eq!(got, want);
    for r in rejects(&rej) {
        assert!(!r["reason"].as_str().unwrap().is_empty());
        assert!(!r["raw"].as_str().unwrap().is_empty(), "{r}");
    }
    assert_eq!(counts(&report, "users"), [6, 0, 0, 12]);
    assert_eq!(report["rejected_by_kind"]["bad_name"], 2);
    // The good rows, with what they said.
    let rows: Vec<(String, String, Option<String>, String, bool)> = sqlx::query_as(
        "select u.email, u.name, u.external_id, coalesce(w.role, '-'), u.deactivated_at is not null
           from public.users u left join public.workspace_members w on w.user_id = u.id
          where u.email <> 'taken@x.io' order by u.email",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let rows: Vec<(&str, &str, Option<&str>, &str, bool)> = rows
        .iter()
        .map(|(e, n, x, r, d)| (e.as_str(), n.as_str(), x.as_deref(), r.as_str(), *d))
        .collect();
    assert_eq!(
        rows,
        [
            ("ann@x.io", "Ann Lee", Some("E-1"), "admin", false),
            (
                "kim@x.io",
                "Kim, the\nsecond K",
                Some("E-12"),
                "guest",
                false
            ),
            ("lou@x.io", "Lou", Some("1"), "member", false),
            ("ned@x.io", "Ned", None, "member", false),
            ("oz@x.io", "Oz", None, "member", false),
            ("pia@x.io", "Pia", None, "member", true),
        ]
    );
    let created: String =
        sqlx::query_scalar("select created_at::text from public.users where email = 'kim@x.io'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(created, "2021-03-04 05:06:07+00");
}

#[tokio::test]
async fn a_changed_name_or_email_updates_and_deactivated_people_stay_so() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let csv = |rows: &str| format!("id,email,name\n{rows}");
    let run = |args: &[&str], stdin: String| {
        let out = chatctl(&[("DATABASE_URL", &db.url)])
            .args([
                "users", "import", "-", "--format", "csv", "--output", "json",
            ])
            .args(args)
            .write_stdin(stdin)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code().unwrap(), report)
    };
    let (_, r) = run(&[], csv("1,a@x.io,A\n2,b@x.io,B\n3,c@x.io,C\n"));
    assert_eq!(counts(&r, "users"), [3, 0, 0, 0]);
    // A person who signed up by themselves is adopted by address (case-insensitively).
    chatctl(&[("DATABASE_URL", &db.url)])
        .args(["users", "deactivate", "c@x.io"])
        .assert()
        .success();
    let (_, r) = run(&[], csv("1,a2@x.io,A\n2,b@x.io,Bea\n3,C@X.IO,C\n"));
    assert_eq!(counts(&r, "users"), [0, 2, 1, 0], "{r}");
    let (email, auth_email, identity): (String, String, String) = sqlx::query_as(
        "select u.email, a.email, i.identity_data ->> 'email' from public.users u
           join auth.users a on a.id = u.id join auth.identities i on i.user_id = u.id
          where u.external_id = '1'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(
        (email.as_str(), auth_email.as_str(), identity.as_str()),
        ("a2@x.io", "a2@x.io", "a2@x.io")
    );
    assert_eq!(
        scalar_i64(
            &mut c,
            "select count(*) from public.users where name = 'Bea'"
        )
        .await,
        1
    );
    // c stayed deactivated (the input said nothing about it); `active` says otherwise.
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from public.users where email = 'c@x.io' and deactivated_at is not null").await,
        1
    );
    let (_, r) = run(&[], "id,email,name,active\n3,c@x.io,C,true\n".into());
    assert_eq!(counts(&r, "users"), [0, 1, 0, 0]);
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from public.users u join auth.users a using (id) where u.email = 'c@x.io' and u.deactivated_at is null and a.banned_until is null").await,
        1
    );
    // --on-existing skip leaves people alone; error rejects them.
    let (code, r) = run(&["--on-existing", "skip"], csv("1,a@x.io,Z\n"));
    assert_eq!((code, r["users"]["skipped"].as_u64()), (0, Some(1)));
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from public.users where name = 'Z'").await,
        0
    );
    let dir = tempfile::tempdir().unwrap();
    let rej = dir.path().join("r.jsonl");
    let (code, r) = run(
        &["--on-existing", "error", "--rejects", rej.to_str().unwrap()],
        csv("1,a2@x.io,A\n4,d@x.io,D\n"),
    );
    assert_eq!(code, 1);
    assert_eq!(counts(&r, "users"), [1, 0, 0, 1]);
    assert_eq!(rejects(&rej)[0]["kind"], "exists");
}

#[tokio::test]
async fn a_dry_run_reports_the_same_and_writes_nothing() {
    let db = TestDb::new().await;
    workspace_with_channel(&db).await;
    let mflix = fixture("sample_mflix/users.json");
    let customers = fixture("sample_analytics/customers.json");
    let dir = tempfile::tempdir().unwrap();
    let (r1, r2) = (dir.path().join("1.jsonl"), dir.path().join("2.jsonl"));
    let base = [
        mflix.as_str(),
        customers.as_str(),
        "-w",
        "acme",
        "--channels",
        "general",
    ];
    let (code, dry, _) = import(
        &db,
        &[&base[..], &["--dry-run", "--rejects", r1.to_str().unwrap()]].concat(),
    );
    assert_eq!(code, 1);
    assert_eq!(dry["dry_run"], true);
    let mut c = db.conn().await;
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from auth.users").await,
        0
    );
    assert_eq!(
        scalar_i64(
            &mut c,
            "select count(*) from chatctl.audit_log where action = 'import'"
        )
        .await,
        0
    );
    let (_, real, _) = import(
        &db,
        &[&base[..], &["--rejects", r2.to_str().unwrap()]].concat(),
    );
    for kind in ["users", "workspace_memberships", "channel_memberships"] {
        assert_eq!(dry[kind], real[kind], "{kind}");
    }
    assert_eq!(rejects(&r1), rejects(&r2));
}

#[tokio::test]
async fn imported_people_can_sign_in_as_supabase_auth_checks_it() {
    let db = TestDb::new().await;
    workspace_with_channel(&db).await;
    let mut c = db.conn().await;
    sqlx::raw_sql("create extension if not exists pgcrypto")
        .execute(&mut c)
        .await
        .unwrap();
    let hash: String = sqlx::query_scalar("select crypt('correct horse', gen_salt('bf', 10))")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let stdin = format!(
        "email,name,password_hash,password\nhash@x.io,Hash,{hash},\nplain@x.io,Plain,,battery staple\nnone@x.io,None,,\n"
    );
    let out = chatctl(&[("DATABASE_URL", &db.url)])
        .args([
            "users",
            "import",
            "-",
            "--format",
            "csv",
            "-w",
            "acme",
            "--channels",
            "general",
            "--output",
            "json",
        ])
        .write_stdin(stdin)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert_eq!(report["passwords"]["hashed"], 1);

    // Every column the server reads as a string is a string; metadata present; generated
    // columns computed; the identity as the Admin API writes it.
    let bad: i64 = scalar_i64(
        &mut c,
        "select count(*) from auth.users
          where instance_id <> '00000000-0000-0000-0000-000000000000' or aud <> 'authenticated'
             or role <> 'authenticated' or email <> lower(email)
             or confirmation_token is null or recovery_token is null or email_change_token_new is null
             or email_change is null or email_change_token_current is null or phone_change is null
             or phone_change_token is null or reauthentication_token is null
             or raw_app_meta_data is null or raw_app_meta_data ->> 'provider' <> 'email'
             or raw_app_meta_data -> 'providers' <> '[\"email\"]' or raw_user_meta_data is null
             or created_at is null or updated_at is null or email_confirmed_at is null
             or confirmed_at is distinct from email_confirmed_at or encrypted_password is null
             or is_sso_user or is_anonymous",
    )
    .await;
    assert_eq!(bad, 0);
    let bad_identities: i64 = scalar_i64(
        &mut c,
        "select count(*) from auth.users a left join auth.identities i on i.user_id = a.id and i.provider = 'email'
          where i.id is null or i.provider_id <> a.id::text or i.identity_data ->> 'sub' <> a.id::text
             or i.identity_data ->> 'email' <> a.email or (i.identity_data ->> 'email_verified')::boolean is not true
             or i.email <> a.email or i.created_at is null or i.updated_at is null",
    )
    .await;
    assert_eq!(bad_identities, 0);
    // The passwords verify the way GoTrue's bcrypt (and pgcrypto's crypt) check them.
    for (email, password) in [
        ("hash@x.io", "correct horse"),
        ("plain@x.io", "battery staple"),
    ] {
        let ok: bool = sqlx::query_scalar(
            "select encrypted_password = crypt($2, encrypted_password) from auth.users where email = $1",
        )
        .bind(email)
        .bind(password)
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert!(ok, "{email}'s password does not verify");
    }
    let kept: String =
        sqlx::query_scalar("select encrypted_password from auth.users where email = 'hash@x.io'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(kept, hash, "an imported hash is kept as it is");
    assert_eq!(
        scalar_i64(
            &mut c,
            "select count(*) from auth.users where email = 'none@x.io' and encrypted_password = ''"
        )
        .await,
        1
    );
    // Signed in, auth.uid() is them: their own profile and their channel are readable.
    let id: Uuid = sqlx::query_scalar("select id from auth.users where email = 'plain@x.io'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let mut tx = sqlx::Connection::begin(&mut c).await.unwrap();
    chatctl::db::app_queries::act_as(&mut tx, "authenticated", Some(id))
        .await
        .unwrap();
    let (me, channels): (Option<String>, i64) = sqlx::query_as(
        "select (select username from public.users where id = auth.uid()),
                (select count(*) from public.channels where name = 'general')",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!((me.as_deref(), channels), (Some("plain"), 1));
}

#[tokio::test]
async fn a_killed_import_leaves_whole_batches_and_running_it_again_completes_it() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let mut child = chatctl_std(&[("DATABASE_URL", &db.url)])
        .args([
            "users",
            "import",
            "-",
            "--format",
            "csv",
            "--batch-size",
            "100",
            "-q",
            "--allow-rejects",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .guarded();
    let rows: Vec<String> = (0..1000)
        .map(|i| format!("{i},p{i}@x.io,Person {i}"))
        .collect();
    {
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "id,email,name").unwrap();
        for r in &rows[..600] {
            writeln!(stdin, "{r}").unwrap();
        }
        stdin.flush().unwrap();
        // The import loads what it is given into its staging COPY, then waits for the
        // rest: the load never ends, so nothing is written yet. Killing it now is a crash
        // during the load.
        crate::support::wait_for(
            "the import's staging COPY, waiting for more rows",
            std::time::Duration::from_secs(30),
            async || {
                let loading: i64 = sqlx::query_scalar(
                    "select count(*) from pg_stat_activity
                      where datname = current_database() and application_name = 'chatctl'
                        and query ilike 'copy%' and state = 'active' and wait_event = 'ClientRead'",
                )
                .fetch_one(&mut c)
                .await
                .unwrap();
                match loading {
                    1 => Ok(()),
                    n => Err(format!("{n} such sessions")),
                }
            },
        )
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from public.users").await,
        0
    );

    // A crash during the writes: batches commit one by one; kill it when some are in.
    let dir = tempfile::tempdir().unwrap();
    let all = file(
        dir.path(),
        "all.csv",
        format!("id,email,name\n{}\n", rows.join("\n")).as_bytes(),
    );
    let mut child = chatctl_std(&[("DATABASE_URL", &db.url)])
        .args([
            "users",
            "import",
            all.to_str().unwrap(),
            "--batch-size",
            "1",
            "-q",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .guarded();
    crate::support::wait_for(
        "the import to commit its first batches",
        std::time::Duration::from_secs(60),
        async || {
            let n = scalar_i64(&mut c, "select count(*) from public.users").await;
            assert!(
                child.try_wait().unwrap().is_none(),
                "the import ended before it could be killed ({n} written)"
            );
            if n >= 5 {
                Ok(())
            } else {
                Err(format!("{n} written"))
            }
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    // The server notices the killed client's connections close (and frees their advisory
    // locks) a moment later.
    crate::support::wait_for(
        "the killed import's sessions to end",
        std::time::Duration::from_secs(10),
        async || {
            let n = scalar_i64(
                &mut c,
                "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
            )
            .await;
            if n == 0 { Ok(()) } else { Err(format!("{n} sessions")) }
        },
    )
    .await;
    let written = scalar_i64(&mut c, "select count(*) from public.users").await;
    assert!(
        written > 0 && written < 1000,
        "killed after {written} of 1000"
    );
    // Whole batches: each written person has all their rows.
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from auth.users").await,
        written
    );
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from auth.identities").await,
        written
    );

    let (code, report, _) = import(&db, &[all.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!(
        counts(&report, "users"),
        [1000 - written as u64, 0, written as u64, 0]
    );
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from public.users").await,
        1000
    );
    assert_eq!(
        scalar_i64(
            &mut c,
            "select count(distinct external_id) from public.users"
        )
        .await,
        1000
    );
    // The killed runs' staging tables are gone too.
    assert_eq!(
        scalar_i64(
            &mut c,
            "select count(*) from pg_class where relnamespace = 'chatctl'::regnamespace and relname like 'user_import%'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_role_that_cannot_write_supabase_auth_is_stopped_before_anything_is_written() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let role = format!("reader_{}", db.name);
    sqlx::raw_sql(&format!(
        "create role {role} login; grant usage on schema public, auth, chatctl to {role};
         grant select on all tables in schema auth to {role};"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&role).unwrap();
    let out = chatctl(&[("DATABASE_URL", url.as_str())])
        .args(["users", "import", "-", "--format", "csv"])
        .write_stdin("email,name\na@x.io,A\n")
        .output()
        .unwrap();
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(
        stderr.contains("may not write Supabase Auth's tables"),
        "{stderr}"
    );
    assert!(stderr.contains("postgres"), "the help says how: {stderr}");
    // Past the auth tables' row level security, but without a place for the staging tables.
    sqlx::raw_sql(&format!(
        "alter role {role} bypassrls; grant insert, update on auth.users, auth.identities to {role};"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    let out = chatctl(&[("DATABASE_URL", url.as_str())])
        .args(["users", "import", "-", "--format", "csv"])
        .write_stdin("email,name\na@x.io,A\n")
        .output()
        .unwrap();
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(stderr.contains("staging tables"), "{stderr}");
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from auth.users").await,
        0
    );
    sqlx::raw_sql(&format!("drop owned by {role}; drop role {role}"))
        .execute(&mut c)
        .await
        .unwrap();
}

#[tokio::test]
async fn export_then_import_into_an_empty_database_then_export_gives_the_same_bytes() {
    let a = TestDb::new().await;
    workspace_with_channel(&a).await;
    let mflix = fixture("sample_mflix/users.json");
    let customers = fixture("sample_analytics/customers.json");
    import(&a, &[&mflix, &customers, "-w", "acme", "--allow-rejects"]);
    chatctl(&[("DATABASE_URL", &a.url)])
        .args(["users", "deactivate", "sean_bean@gameofthron.es"])
        .assert()
        .success();
    let export = |db: &TestDb, format: &str| -> Vec<u8> {
        let out = chatctl(&[("DATABASE_URL", &db.url)])
            .args([
                "users",
                "export",
                "--format",
                format,
                "-w",
                "acme",
                "--with-password-hashes",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", outputs(&out).1);
        out.stdout
    };
    // Written to a file, the export (password hashes included) is owner-only.
    let dir = tempfile::tempdir().unwrap();
    let written = dir.path().join("people.csv");
    chatctl(&[("DATABASE_URL", &a.url)])
        .args([
            "users",
            "export",
            "-w",
            "acme",
            "--with-password-hashes",
            "--out",
        ])
        .arg(&written)
        .assert()
        .success();
    use std::os::unix::fs::MetadataExt as _;
    let mode = std::fs::metadata(&written).unwrap().mode();
    assert_eq!(mode & 0o077, 0, "the export is {mode:o}");
    for format in ["csv", "json", "jsonl", "mongo"] {
        let first = export(&a, format);
        let b = TestDb::new().await;
        workspace_with_channel(&b).await;
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), &format!("people.{format}"), &first);
        let (code, report, _) =
            import(&b, &[f.to_str().unwrap(), "--format", format, "-w", "acme"]);
        assert_eq!(code, 0, "{format}: {report}");
        assert_eq!(counts(&report, "users"), [684, 0, 0, 0], "{format}");
        let second = export(&b, format);
        assert!(
            first == second,
            "{format} export differs after a round trip:\n{}\n---\n{}",
            String::from_utf8_lossy(&first[..first.len().min(600)]),
            String::from_utf8_lossy(&second[..second.len().min(600)])
        );
    }
}

#[tokio::test]
async fn deactivating_hides_every_channel_keeps_the_messages_and_is_reversible() {
    let db = TestDb::new().await;
    workspace_with_channel(&db).await;
    chatctl(&[("DATABASE_URL", &db.url)])
        .args([
            "users",
            "import",
            "-",
            "--format",
            "csv",
            "-w",
            "acme",
            "--channels",
            "general",
        ])
        .write_stdin("email,name\nann@x.io,Ann\n")
        .assert()
        .success();
    let mut c = db.conn().await;
    let id: Uuid = sqlx::query_scalar("select id from public.users where email = 'ann@x.io'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    sqlx::query(
        "insert into public.chat (channel_id, user_id, message)
         select id, $1, '{\"text\":\"hello\"}' from public.channels where name = 'general'",
    )
    .bind(id)
    .execute(&mut c)
    .await
    .unwrap();
    async fn seen(c: &mut PgConnection, id: Uuid) -> (i64, i64, bool) {
        let mut tx = sqlx::Connection::begin(&mut *c).await.unwrap();
        chatctl::db::app_queries::act_as(&mut tx, "authenticated", Some(id))
            .await
            .unwrap();
        let (channels, messages): (i64, i64) = sqlx::query_as(
            "select (select count(*) from public.channels), (select count(*) from public.chat)",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let posted = sqlx::query(
            "insert into public.chat (channel_id, user_id, message)
             select id, auth.uid(), '{\"text\":\"again\"}' from public.channels where name = 'general'",
        )
        .execute(&mut *tx)
        .await
        .is_ok_and(|r| r.rows_affected() == 1);
        tx.rollback().await.unwrap();
        (channels, messages, posted)
    }
    assert_eq!(seen(&mut c, id).await, (2, 1, true));
    chatctl(&[("DATABASE_URL", &db.url)])
        .args(["users", "deactivate", "ann@x.io"])
        .assert()
        .success();
    let (channels, messages, posted) = seen(&mut c, id).await;
    assert_eq!(
        (channels, posted),
        (0, false),
        "a deactivated person reaches no channel"
    );
    assert!(messages <= 1);
    let (banned, members, kept): (bool, i64, i64) = sqlx::query_as(
        "select (select banned_until > now() + interval '50 years' from auth.users where id = $1),
                (select count(*) from public.members where user_id = $1),
                (select count(*) from public.chat where user_id = $1)",
    )
    .bind(id)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!((banned, members, kept), (true, 1, 1));
    let out = chatctl(&[("DATABASE_URL", &db.url)])
        .args(["users", "show", "ann", "--output", "json"])
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(shown["deactivated_at"].is_string() && shown["banned_until"].is_string());
    chatctl(&[("DATABASE_URL", &db.url)])
        .args(["users", "reactivate", "ann"])
        .assert()
        .success();
    assert_eq!(seen(&mut c, id).await, (2, 1, true));
    let out = chatctl(&[("DATABASE_URL", &db.url)])
        .args(["users", "list", "-w", "acme", "--output", "json"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["total"], 1);
    chatctl(&[("DATABASE_URL", &db.url)])
        .args(["users", "set-role", "ann", "admin", "-w", "acme"])
        .assert()
        .success();
    assert_eq!(
        scalar_i64(
            &mut c,
            "select count(*) from public.workspace_members where role = 'admin'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn progress_is_ndjson_under_output_json_and_nothing_under_quiet() {
    let db = TestDb::new().await;
    let out = chatctl(&[("DATABASE_URL", &db.url)])
        .args([
            "users", "import", "-", "--format", "csv", "--output", "json",
        ])
        .write_stdin("email,name\na@x.io,A\nb@x.io,B\n")
        .output()
        .unwrap();
    let (_, stderr) = outputs(&out);
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "progress" && l["phase"] == "writing" && l["rows"] == 2),
        "{stderr}"
    );
    let out = chatctl(&[("DATABASE_URL", &db.url)])
        .args([
            "users", "import", "-", "--format", "csv", "--output", "json", "-q",
        ])
        .write_stdin("email,name\na@x.io,A\n")
        .output()
        .unwrap();
    assert_eq!(outputs(&out).1, "");
}

#[tokio::test]
async fn an_address_held_by_someone_else_is_never_merged() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    // An account that never verified its address, a bot, and a person of another external id.
    sqlx::raw_sql(
        "insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
            confirmation_token, recovery_token, email_change_token_new, email_change,
            raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
         values ('00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'authenticated', 'authenticated',
            'Unverified@X.io', '', null, '', '', '', '', '{}', '{}', now(), now())",
    )
    .execute(&mut c)
    .await
    .unwrap();
    chatctl(&[("DATABASE_URL", &db.url)])
        .args(["users", "import", "-", "--format", "csv"])
        .write_stdin("id,email,name\nA,held@x.io,Held\nQ,q@x.io,Q\nR,r@x.io,R\n")
        .assert()
        .success();
    let bot = chatctl::provision::spec::bot_email("helper");
    // Staged rows live until the end of the transaction: stage and create in one.
    let mut tx = sqlx::Connection::begin(&mut c).await.unwrap();
    chatctl::users::accounts::stage(
        &mut tx,
        &[chatctl::users::accounts::NewUser {
            id: Uuid::new_v4(),
            email: bot.clone(),
            username: "helper".into(),
            display_name: "Helper".into(),
            is_bot: true,
            ..Default::default()
        }],
    )
    .await
    .unwrap();
    chatctl::users::accounts::create_staged(&mut tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rej = dir.path().join("r.jsonl");
    let input = file(
        dir.path(),
        "in.csv",
        format!("id,email,name\nU,unverified@x.io,U\nB,{bot},B\nZ,HELD@x.io,Z\nA,new@x.io,Held\nC,new@x.io,C\nQ,r@x.io,Q\n").as_bytes(),
    );
    let (code, report, _) = import(
        &db,
        &[input.to_str().unwrap(), "--rejects", rej.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    let kinds: Vec<String> = rejects(&rej)
        .iter()
        .map(|r| format!("{}:{}", r["line"], r["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            "2:unverified_account",
            "3:bot_account",
            "4:external_id_taken",
            "6:duplicate_email",
            "7:email_taken"
        ]
    );
    // A (external id) moved to a new address: updated, not a second account.
    assert_eq!(counts(&report, "users"), [0, 1, 0, 5]);
    assert_eq!(
        scalar_i64(
            &mut c,
            "select count(*) from public.users where external_id = 'A' and email = 'new@x.io'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_sign_up_made_after_the_plan_is_adopted_not_duplicated() {
    let db = TestDb::new().await;
    workspace_with_channel(&db).await;
    let mut c = db.conn().await;
    let mut locker = db.conn().await;
    // Hold the import's first batch inside its transaction, at its membership writes.
    let mut hold = sqlx::Connection::begin(&mut locker).await.unwrap();
    sqlx::raw_sql("lock table public.workspace_members in exclusive mode")
        .execute(&mut *hold)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = file(
        dir.path(),
        "in.csv",
        b"id,email,name\n1,a@x.io,A\n2,b@x.io,B\n3,late@x.io,Late\n4,d@x.io,D\n",
    );
    let child = chatctl_std(&[("DATABASE_URL", &db.url)])
        .args([
            "users",
            "import",
            input.to_str().unwrap(),
            "-w",
            "acme",
            "--batch-size",
            "2",
            "--jobs",
            "1",
            "-o",
            "json",
            "-q",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .guarded();
    // Wait until the first batch waits for the lock: the plan is made by then.
    let started = std::time::Instant::now();
    loop {
        let waiting = scalar_i64(
            &mut c,
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
        )
        .await;
        if waiting > 0 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the import never reached its writes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Meanwhile someone signs up with the third row's address (and verifies it).
    let late = Uuid::new_v4();
    sqlx::query(
        "insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
            confirmation_token, recovery_token, email_change_token_new, email_change,
            raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
         values ('00000000-0000-0000-0000-000000000000', $1, 'authenticated', 'authenticated', 'late@x.io', '',
            now(), '', '', '', '', '{}', '{}', now(), now())",
    )
    .bind(late)
    .execute(&mut c)
    .await
    .unwrap();
    hold.rollback().await.unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    // The batch met the sign-up, was planned again, and adopted that account.
    assert_eq!(counts(&report, "users"), [3, 1, 0, 0], "{report}");
    let (id, external): (Uuid, Option<String>) =
        sqlx::query_as("select id, external_id from public.users where email = 'late@x.io'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!((id, external.as_deref()), (late, Some("3")));
    assert_eq!(
        scalar_i64(&mut c, "select count(*) from auth.users").await,
        4
    );
}
