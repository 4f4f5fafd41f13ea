//! Files in Supabase Storage: buckets from the spec, the policies as each person lists and
//! writes, signed URLs, and the reconciliation of attachments with objects.

use std::path::Path;

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::support::{TestDb, chatctl, outputs};

const PEOPLE: &str = "people:
  - {email: ada@example.com, name: Ada}
  - {email: bob@example.com, name: Bob}
  - {email: eve@example.com, name: Eve}
  - {email: sam@example.com, name: Sam}
workspaces:
  - slug: acme
    name: Acme
    owners: [ada@example.com]
    members: [bob@example.com, eve@example.com]
    channels:
      - name: general
        members: [ada@example.com, bob@example.com]
      - name: secret
        private: true
        members: [ada@example.com]
  - slug: other
    name: Other
    owners: [sam@example.com]
";

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs chatctl with `args` then `-o json`: its exit code, its JSON (or null) and its stderr.
fn json_run(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, Value, String) {
    let out = chatctl(env)
        .args(args)
        .args(["-o", "json"])
        .output()
        .unwrap();
    let (stdout, stderr) = outputs(&out);
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code(), json, stderr)
}

fn apply(env: &[(&str, &str)], file: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let mut args = vec!["apply", "-f", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    json_run(env, &args)
}

/// The bucket changes of a plan: (action, bucket).
fn bucket_changes(plan: &Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["object_type"] == "bucket")
        .map(|c| {
            (
                c["action"].as_str().unwrap().to_owned(),
                c["object"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn buckets(
    c: &mut PgConnection,
) -> Vec<(String, bool, Option<i64>, Option<Vec<String>>, bool)> {
    sqlx::query_as(
        "select b.id, b.public, b.file_size_limit, b.allowed_mime_types,
                exists (select 1 from chatctl.storage_buckets o where o.bucket_id = b.id)
           from storage.buckets b order by 1",
    )
    .fetch_all(c)
    .await
    .unwrap()
}

#[tokio::test]
async fn buckets_go_through_plan_apply_export_and_drift() {
    let db = TestDb::new().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let mut c = db.conn().await;

    // Silent about storage: the default, one private `attachments` bucket.
    let base = write(dir.path(), "base.yaml", PEOPLE);
    let (code, plan, err) = apply(&env, &base, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        bucket_changes(&plan),
        [("create".to_owned(), "attachments".to_owned())]
    );
    assert_eq!(
        buckets(&mut c).await,
        [("attachments".to_owned(), false, None, None, true)]
    );

    // A bucket the app made itself, which chatctl leaves alone until a spec declares it.
    sqlx::query("insert into storage.buckets (id, name, public) values ('legacy', 'legacy', true)")
        .execute(&mut c)
        .await
        .unwrap();
    let spec = format!(
        "{PEOPLE}storage:
  buckets:
    - name: attachments
      file_size_limit: 50MB
      allowed_mime_types: [image/*, application/pdf, image/*]
    - name: avatars
      public: true
      file_size_limit: 1048576
    - name: legacy
"
    );
    let full = write(dir.path(), "full.yaml", &spec);
    let (code, plan, _) = apply(&env, &full, &["--dry-run", "--detailed-exitcode"]);
    assert_eq!(code, Some(2), "drift is exit 2");
    assert_eq!(
        bucket_changes(&plan),
        [
            ("update".to_owned(), "attachments".to_owned()),
            ("create".to_owned(), "avatars".to_owned()),
            ("update".to_owned(), "legacy".to_owned()),
        ]
    );
    let legacy = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["object"] == "legacy")
        .unwrap();
    assert_eq!(legacy["before"]["owned_by_chatctl"], false);
    assert_eq!(legacy["after"]["owned_by_chatctl"], true);
    assert_eq!(
        legacy["after"]["public"], false,
        "the spec's default is private"
    );
    let (code, _, err) = apply(&env, &full, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        buckets(&mut c).await,
        [
            (
                "attachments".to_owned(),
                false,
                Some(50_000_000),
                Some(vec!["application/pdf".to_owned(), "image/*".to_owned()]),
                true
            ),
            ("avatars".to_owned(), true, Some(1_048_576), None, true),
            ("legacy".to_owned(), false, None, None, true),
        ]
    );
    let (code, plan, _) = apply(&env, &full, &["--dry-run", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "applied: no drift, {plan}");

    // Export, then the export is the same state here, and the same buckets elsewhere.
    let out = chatctl(&env)
        .args(["workspace", "export", "acme", "other"])
        .output()
        .unwrap();
    let (exported, err) = outputs(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        exported.contains("storage:") && exported.contains("avatars"),
        "{exported}"
    );
    let export = write(dir.path(), "export.yaml", &exported);
    let (code, plan, _) = apply(&env, &export, &["--dry-run", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "the export round-trips: {plan}");
    let fresh = TestDb::new().await;
    let fresh_env = [("DATABASE_URL", fresh.url.as_str())];
    let (code, _, err) = apply(&fresh_env, &export, &[]);
    assert_eq!(code, Some(0), "{err}");
    let mut fc = fresh.conn().await;
    assert_eq!(buckets(&mut fc).await, buckets(&mut c).await);

    // Dropped from the spec: removed only with --prune, and only when empty.
    let ws_id: Uuid = sqlx::query_scalar("select id from workspaces where slug = 'acme'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    sqlx::query("insert into storage.objects (bucket_id, name) values ('legacy', $1)")
        .bind(format!("{ws_id}/x/y/kept.pdf"))
        .execute(&mut c)
        .await
        .unwrap();
    let only_attachments = write(
        dir.path(),
        "fewer.yaml",
        &format!(
            "{PEOPLE}storage:\n  buckets:\n    - name: attachments\n      file_size_limit: 50MB\n      allowed_mime_types: [image/*, application/pdf]\n"
        ),
    );
    let (code, plan, _) = apply(&env, &only_attachments, &["--dry-run"]);
    assert_eq!(code, Some(0));
    assert_eq!(plan["skipped_removals"], 2, "{plan}");
    let (code, _, err) = apply(&env, &only_attachments, &["--prune", "--yes"]);
    assert_eq!(
        code,
        Some(64),
        "a bucket holding files is not removed: {err}"
    );
    assert!(err.contains("`legacy` still holds 1 file(s)"), "{err}");
    assert_eq!(buckets(&mut c).await.len(), 3, "nothing was applied");
    sqlx::query("select set_config('storage.allow_delete_query', 'true', false)")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("delete from storage.objects where bucket_id = 'legacy'")
        .execute(&mut c)
        .await
        .unwrap();
    let (code, plan, err) = apply(&env, &only_attachments, &["--prune", "--yes"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        bucket_changes(&plan),
        [
            ("remove".to_owned(), "avatars".to_owned()),
            ("remove".to_owned(), "legacy".to_owned())
        ]
    );
    assert_eq!(buckets(&mut c).await.len(), 1);
    let audited: i64 = sqlx::query_scalar(
        "select count(*) from chatctl.audit_log where object_type = 'bucket' and action = 'remove'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(audited, 2);

    // Mistakes are reported by file and line, all at once.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "storage:\n  buckets:\n    - name: Bad Name\n    - name: ok\n      file_size_limit: 5 parsecs\n    - name: pics\n      allowed_mime_types: [image]\n",
    );
    let (code, _, err) = apply(&env, &bad, &["--dry-run"]);
    assert_eq!(code, Some(64));
    assert!(
        err.contains("bad.yaml:3: invalid bucket name `Bad Name`"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:5: `5 parsecs` has an unknown unit"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:7: `image` is not a MIME type"),
        "{err}"
    );
}

/// Runs `sql` as an `authenticated` person (or `anon` with `None`), as Storage runs a
/// client's request, in a transaction rolled back; the names it returns (or the error).
async fn as_person(
    c: &mut PgConnection,
    who: Option<Uuid>,
    sql: &str,
) -> Result<Vec<String>, String> {
    let mut tx = sqlx::Connection::begin(&mut *c).await.unwrap();
    let (role, claims) = match who {
        Some(id) => (
            "authenticated",
            serde_json::json!({"sub": id, "role": "authenticated"}),
        ),
        None => ("anon", serde_json::json!({"role": "anon"})),
    };
    sqlx::query("select set_config('request.jwt.claims', $1, true), set_config('role', $2, true)")
        .bind(claims.to_string())
        .bind(role)
        .execute(&mut *tx)
        .await
        .unwrap();
    let out = sqlx::query_scalar::<_, String>(sql)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| e.to_string());
    tx.rollback().await.unwrap();
    out
}

/// A workspace (PEOPLE) with the default bucket, and its people's ids and folders.
struct Acme {
    db: TestDb,
    dir: tempfile::TempDir,
    ids: std::collections::BTreeMap<&'static str, Uuid>,
    general: String,
    secret: String,
}

async fn acme() -> Acme {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let base = write(dir.path(), "base.yaml", PEOPLE);
    let (code, _, err) = apply(&[("DATABASE_URL", db.url.as_str())], &base, &[]);
    assert_eq!(code, Some(0), "{err}");
    let mut c = db.conn().await;
    let mut ids = std::collections::BTreeMap::new();
    for who in ["ada", "bob", "eve", "sam"] {
        let id: Uuid = sqlx::query_scalar("select id from users where username = $1")
            .bind(who)
            .fetch_one(&mut c)
            .await
            .unwrap();
        ids.insert(who, id);
    }
    let folder = |name: &str| {
        format!(
            "(select w.id::text || '/' || c.id::text from channels c join workspaces w on w.id = c.workspace_id
               where w.slug = 'acme' and c.name = '{name}')"
        )
    };
    let general: String = sqlx::query_scalar(&format!("select {}", folder("general")))
        .fetch_one(&mut c)
        .await
        .unwrap();
    let secret: String = sqlx::query_scalar(&format!("select {}", folder("secret")))
        .fetch_one(&mut c)
        .await
        .unwrap();
    Acme {
        db,
        dir,
        ids,
        general,
        secret,
    }
}

#[tokio::test]
async fn people_list_upload_and_delete_files_as_their_channels_allow() {
    let a = acme().await;
    let mut c = a.db.conn().await;
    let (ada, bob, eve, sam) = (a.ids["ada"], a.ids["bob"], a.ids["eve"], a.ids["sam"]);
    for name in [
        format!("{}/{ada}/plan.pdf", a.general),
        format!("{}/{bob}/notes.txt", a.general),
        format!("{}/{ada}/salaries.xlsx", a.secret),
    ] {
        sqlx::query("insert into storage.objects (bucket_id, name) values ('attachments', $1)")
            .bind(name)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let list = "select split_part(name, '/', 4) from storage.objects where bucket_id = 'attachments' order by 1";
    let listed = |v: &[&str]| Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        as_person(&mut c, Some(ada), list).await,
        listed(&["notes.txt", "plan.pdf", "salaries.xlsx"])
    );
    assert_eq!(
        as_person(&mut c, Some(bob), list).await,
        listed(&["notes.txt", "plan.pdf"]),
        "bob is not in #secret"
    );
    assert_eq!(
        as_person(&mut c, Some(eve), list).await,
        listed(&["notes.txt", "plan.pdf"]),
        "eve reads the public channels of her workspace"
    );
    assert_eq!(
        as_person(&mut c, Some(sam), list).await,
        listed(&[]),
        "another workspace"
    );
    assert_eq!(as_person(&mut c, None, list).await, listed(&[]), "anon");
    let buckets = "select id from storage.buckets";
    assert_eq!(as_person(&mut c, Some(ada), buckets).await, listed(&[]));

    let upload = |folder: &str, uploader: Uuid| {
        format!(
            "insert into storage.objects (bucket_id, name, owner, owner_id) values
               ('attachments', '{folder}/{uploader}/new.png', auth.uid(), auth.uid()::text) returning name"
        )
    };
    assert!(
        as_person(&mut c, Some(bob), &upload(&a.general, bob))
            .await
            .is_ok()
    );
    let refused = as_person(&mut c, Some(bob), &upload(&a.general, ada)).await;
    assert!(
        refused.unwrap_err().contains("row-level security"),
        "into ada's folder"
    );
    let refused = as_person(&mut c, Some(bob), &upload(&a.secret, bob)).await;
    assert!(
        refused.unwrap_err().contains("row-level security"),
        "into #secret"
    );
    let refused = as_person(&mut c, Some(eve), &upload(&a.general, eve)).await;
    assert!(
        refused.unwrap_err().contains("row-level security"),
        "eve reads #general but is not in it"
    );

    let delete = |file: &str| {
        format!(
            "delete from storage.objects where split_part(name, '/', 4) = '{file}' returning name"
        )
    };
    // Each in a transaction rolled back: the file is there for the next one.
    for (who, file, deleted, why) in [
        (bob, "plan.pdf", 0, "not bob's"),
        (bob, "notes.txt", 1, "his own"),
        (
            ada,
            "notes.txt",
            1,
            "the workspace's owner, in a public channel",
        ),
        (
            eve,
            "notes.txt",
            0,
            "eve reads #general but is neither its uploader nor a moderator",
        ),
    ] {
        let n = as_person(&mut c, Some(who), &delete(file))
            .await
            .map(|v| v.len());
        assert_eq!(n, Ok(deleted), "{why}");
    }
}

/// The claims of a token, verified with `secret` as Storage verifies it (HS256, no key id).
fn verified(token: &str, secret: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
    assert_eq!(
        header.kid, None,
        "Storage picks the static secret for a token without kid"
    );
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_aud = false;
    v.required_spec_claims = ["exp".to_owned()].into();
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &v,
    )
    .map(|d| d.claims)
    .map_err(|e| e.to_string())
}

#[tokio::test]
async fn signed_urls_carry_the_claims_storage_checks() {
    let a = acme().await;
    let secret = "super-secret-jwt-token-with-at-least-32-characters";
    let env = [
        ("DATABASE_URL", a.db.url.as_str()),
        ("SUPABASE_JWT_SECRET", secret),
        ("SUPABASE_URL", "https://abc.supabase.co/"),
    ];
    let mut c = a.db.conn().await;
    let ada = a.ids["ada"];
    let object = format!("{}/{ada}/Q3 plan.pdf", a.general);
    sqlx::query("insert into storage.objects (bucket_id, name) values ('attachments', $1)")
        .bind(&object)
        .execute(&mut c)
        .await
        .unwrap();
    let sign = |args: &[&str]| {
        let mut all = vec!["files", "sign", "-w", "acme"];
        all.extend_from_slice(args);
        json_run(&env, &all)
    };

    let before = chrono::Utc::now().timestamp();
    let (code, json, err) = sign(&[
        "--channel",
        "#general",
        &format!("{ada}/Q3 plan.pdf"),
        "--expires",
        "10m",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let token = json["token"].as_str().unwrap();
    let claims = verified(token, secret).unwrap();
    assert_eq!(claims["url"], format!("attachments/{object}"));
    assert_eq!(claims["scope"], "download");
    assert!(
        claims.get("upsert").is_none() && claims.get("owner").is_none(),
        "{claims}"
    );
    let exp = claims["exp"].as_i64().unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(exp - iat, 600);
    assert!(iat >= before - 1 && iat <= chrono::Utc::now().timestamp() + 1);
    let url = json["url"].as_str().unwrap();
    let (ws, ch) = a.general.split_once('/').unwrap();
    assert_eq!(
        url,
        format!(
            "https://abc.supabase.co/storage/v1/object/sign/attachments/{ws}/{ch}/{ada}/Q3%20plan.pdf?token={token}"
        )
    );
    assert_eq!(json["method"], "GET");
    assert!(verified(token, "another-secret-another-secret-another-secret").is_err());

    // An upload URL for a member, into their own folder.
    let (code, json, err) = sign(&[
        "--channel",
        "general",
        "--as",
        "bob@example.com",
        "draft.png",
        "--upload",
        "--upsert",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let claims = verified(json["token"].as_str().unwrap(), secret).unwrap();
    let bob = a.ids["bob"];
    assert_eq!(
        claims["url"],
        format!("attachments/{}/{bob}/draft.png", a.general)
    );
    assert_eq!(claims["scope"], "upload");
    assert_eq!(claims["owner"], bob.to_string());
    assert_eq!(claims["upsert"], true);
    assert_eq!(exp_minus_iat(&claims), 3600, "the default: one hour");
    assert!(
        json["url"]
            .as_str()
            .unwrap()
            .contains("/storage/v1/object/upload/sign/attachments/")
    );
    assert_eq!(json["method"], "PUT");

    // Refusals: nobody the policies would let upload, nothing to download, paths that climb.
    let (code, _, err) = sign(&[
        "--channel",
        "secret",
        "--as",
        "bob@example.com",
        "x.png",
        "--upload",
    ]);
    assert_eq!(code, Some(64), "bob may not post in #secret");
    assert!(err.contains("may not post in #secret"), "{err}");
    let (code, _, err) = sign(&["--channel", "general", &format!("{ada}/missing.pdf")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no object"), "{err}");
    let (code, _, err) = sign(&["--channel", "general", &format!("{ada}/../../x.pdf")]);
    assert_eq!(code, Some(64), "{err}");
    let (code, _, _) = sign(&[
        "--channel",
        "general",
        "--bucket",
        "legacy",
        &format!("{ada}/a.pdf"),
    ]);
    assert_eq!(code, Some(64), "not chatctl's bucket");
    let (code, _, _) = sign(&[
        "--channel",
        "general",
        &format!("{ada}/Q3 plan.pdf"),
        "--expires",
        "400d",
    ]);
    assert_eq!(code, Some(64));
    let out = chatctl(&[("DATABASE_URL", a.db.url.as_str())])
        .args([
            "files",
            "sign",
            "-w",
            "acme",
            "--channel",
            "general",
            &format!("{ada}/Q3 plan.pdf"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "no JWT secret");

    let signed: i64 = sqlx::query_scalar(
        "select count(*) from chatctl.audit_log where action = 'sign' and object_type = 'storage_object'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(signed, 2, "each URL handed out is audited");
    drop(a.dir);
}

fn exp_minus_iat(claims: &Value) -> i64 {
    claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap()
}

#[tokio::test]
async fn reconcile_finds_missing_objects_and_orphans_and_deletes_only_when_told() {
    let a = acme().await;
    let env = [("DATABASE_URL", a.db.url.as_str())];
    let mut c = a.db.conn().await;
    let (ada, bob) = (a.ids["ada"], a.ids["bob"]);
    let general: Uuid = sqlx::query_scalar("select id from channels where name = 'general'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let message: Uuid = sqlx::query_scalar(
        "insert into chat (channel_id, user_id, message) values ($1, $2, '{\"text\":\"files\"}') returning id",
    )
    .bind(general)
    .bind(ada)
    .fetch_one(&mut c)
    .await
    .unwrap();
    let kept = format!("{}/{ada}/kept.pdf", a.general);
    let lost = format!("{}/{ada}/lost.pdf", a.general);
    let abandoned = format!("{}/{bob}/abandoned.bin", a.general);
    let uploading = format!("{}/{bob}/uploading.bin", a.general);
    for (name, age) in [
        (&kept, "3 days"),
        (&abandoned, "2 days"),
        (&uploading, "5 minutes"),
    ] {
        sqlx::query(
            "insert into storage.objects (bucket_id, name, created_at, metadata)
             values ('attachments', $1, now() - $2::interval, '{\"size\": 2048}')",
        )
        .bind(name)
        .bind(age)
        .execute(&mut c)
        .await
        .unwrap();
    }
    // Someone else's bucket: never chatctl's to judge.
    sqlx::query("insert into storage.buckets (id, name) values ('theirs', 'theirs')")
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query(
        "insert into storage.objects (bucket_id, name, created_at) values ('theirs', 'old.bin', now() - interval '9 days')",
    )
    .execute(&mut c)
    .await
    .unwrap();
    for (path, name) in [(&kept, "kept.pdf"), (&lost, "lost.pdf")] {
        sqlx::query(
            "insert into attachments (message_id, bucket_id, object_path, name, size_bytes) values ($1, 'attachments', $2, $3, 2048)",
        )
        .bind(message)
        .bind(path)
        .bind(name)
        .execute(&mut c)
        .await
        .unwrap();
    }
    // The bytes, laid out as Storage's file backend.
    let storage = a.dir.path().join("storage");
    for name in [&kept, &abandoned, &uploading] {
        let f = storage.join("attachments").join(name);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, b"bytes").unwrap();
    }

    let reconcile = |args: &[&str]| {
        let mut all = vec!["files", "reconcile"];
        all.extend_from_slice(args);
        json_run(&env, &all)
    };
    let (code, found, err) = reconcile(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(found["missing_total"], 1);
    assert_eq!(found["missing"][0]["path"], lost.as_str());
    assert_eq!(found["missing"][0]["channel"], "#general");
    assert_eq!(
        found["orphans_total"], 1,
        "the upload in progress is not an orphan: {found}"
    );
    assert_eq!(found["orphans"][0]["name"], abandoned.as_str());
    assert_eq!(found["orphan_bytes"], 2048);
    assert_eq!(found["dry_run"], true);
    let (_, found, _) = reconcile(&["--older-than", "1m"]);
    assert_eq!(found["orphans_total"], 2);
    let (_, found, _) = reconcile(&["-w", "other"]);
    assert_eq!(
        (
            found["missing_total"].as_i64(),
            found["orphans_total"].as_i64()
        ),
        (Some(0), Some(0))
    );

    let doctor = chatctl(&env)
        .args(["doctor", "-o", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "files")
        .unwrap()
        .clone();
    assert_eq!(check["status"], "warn");
    assert!(
        check["reason"]
            .as_str()
            .unwrap()
            .starts_with("1 attachment(s) whose object is missing, 1 orphaned"),
        "{check}"
    );

    // Not without --yes where no one can be asked; then only the orphan goes, bytes too.
    let (code, _, err) = reconcile(&["--delete"]);
    assert_eq!(code, Some(64), "{err}");
    let storage_arg = storage.to_str().unwrap();
    let (code, done, err) = reconcile(&["--delete", "--yes", "--storage-dir", storage_arg]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(done["deleted"], 1);
    assert_eq!(done["deleted_files"], 1);
    let names: Vec<String> = sqlx::query_scalar("select name from storage.objects order by name")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert!(!names.contains(&abandoned), "{names:?}");
    assert!(
        names.contains(&kept)
            && names.contains(&uploading)
            && names.contains(&"old.bin".to_owned())
    );
    assert!(!storage.join("attachments").join(&abandoned).exists());
    assert!(storage.join("attachments").join(&kept).exists());
    assert!(storage.join("attachments").join(&uploading).exists());
    let audit: Value = sqlx::query_scalar(
        "select before from chatctl.audit_log where object_type = 'storage_objects' and action = 'delete'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(audit["objects"][0], format!("attachments/{abandoned}"));
    let (_, found, _) = reconcile(&[]);
    assert_eq!(
        (
            found["missing_total"].as_i64(),
            found["orphans_total"].as_i64()
        ),
        (Some(1), Some(0))
    );
}

/// Every file under `dir`, relative, with its bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[tokio::test]
async fn backups_carry_the_objects_bytes_with_checksums_and_put_them_back() {
    let a = acme().await;
    let mut c = a.db.conn().await;
    let ada = a.ids["ada"];
    let plain = format!("{}/{ada}/notes.txt", a.general);
    let versioned = format!("{}/{ada}/photo.png", a.general);
    let lost = format!("{}/{ada}/lost.bin", a.general);
    for (name, version) in [(&plain, None), (&versioned, Some("v7")), (&lost, None)] {
        sqlx::query(
            "insert into storage.objects (bucket_id, name, version) values ('attachments', $1, $2)",
        )
        .bind(name)
        .bind(version)
        .execute(&mut c)
        .await
        .unwrap();
    }
    // As Storage's file backend keeps them: a versioned object is a folder of versions.
    let storage = a.dir.path().join("storage");
    let put = |rel: &str, bytes: &[u8]| {
        let p = storage.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    put(
        &format!("attachments/{plain}"),
        b"meeting notes: chatctl-unique-marker-1",
    );
    put(
        &format!("attachments/{versioned}/v7"),
        &[0x89, b'P', b'N', b'G', 0, 1, 2, 3],
    );
    let archive = a.dir.path().join("with-files.backup");
    let env = [("DATABASE_URL", a.db.url.as_str())];
    let run = |args: &[&str]| {
        let mut all = vec!["backup"];
        all.extend_from_slice(args);
        json_run(&env, &all)
    };
    let (code, made, err) = run(&[
        "create",
        "--out",
        archive.to_str().unwrap(),
        "--storage-dir",
        storage.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(made["files"], 2);
    assert_eq!(
        made["missing_files"],
        serde_json::json!([format!("attachments/{lost}")])
    );
    assert!(
        !made["left_out"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("Storage")),
        "{made}"
    );
    let (code, checked, err) = run(&["verify", archive.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(checked["files"], 2);

    // A changed byte in a file is found by its checksum, and nothing is restored.
    let bytes = std::fs::read(&archive).unwrap();
    let marker = b"chatctl-unique-marker-1";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap();
    let mut damaged = bytes.clone();
    damaged[at] ^= 0x20;
    let bad = a.dir.path().join("damaged.backup");
    std::fs::write(&bad, damaged).unwrap();
    let (code, _, err) = run(&["verify", bad.to_str().unwrap()]);
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("checksum mismatch: storage/"), "{err}");
    let target = TestDb::empty().await;
    let refused_dir = a.dir.path().join("refused");
    std::fs::create_dir(&refused_dir).unwrap();
    let (code, _, _) = run(&[
        "restore",
        bad.to_str().unwrap(),
        "--target-url",
        &target.url,
        "--storage-dir",
        refused_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(65));
    assert!(
        tree(&refused_dir).is_empty(),
        "nothing put back, nothing staged left"
    );

    // Restored: the rows, and the bytes where Storage keeps them.
    let restored_dir = a.dir.path().join("restored");
    std::fs::create_dir(&restored_dir).unwrap();
    let target = TestDb::empty().await;
    let (code, done, err) = run(&[
        "restore",
        archive.to_str().unwrap(),
        "--target-url",
        &target.url,
        "--storage-dir",
        restored_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(done["files"], 2);
    assert_eq!(tree(&restored_dir), tree(&storage));
    let mut t = target.conn().await;
    let names: Vec<String> = sqlx::query_scalar("select name from storage.objects order by name")
        .fetch_all(&mut t)
        .await
        .unwrap();
    assert_eq!(names.len(), 3);
    // Without --storage-dir the rows come back and the operator is told about the bytes.
    let target = TestDb::empty().await;
    let (code, done, err) = run(&[
        "restore",
        archive.to_str().unwrap(),
        "--target-url",
        &target.url,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(done["files"], 0);
    assert!(
        done["left_out"]
            .to_string()
            .contains("the bytes of 2 Storage object(s)"),
        "{done}"
    );
}

/// Storage with an S3 backend (`s3://<global bucket>/<tenant>/`, the file backend's layout
/// under a prefix): a backup reads the objects' bytes there, and a restore writes them to
/// another tenant's prefix.
#[tokio::test]
async fn backups_read_and_write_the_bytes_of_an_s3_storage_backend() {
    use crate::support::s3_server;
    let a = acme().await;
    let mut c = a.db.conn().await;
    let ada = a.ids["ada"];
    let plain = format!("{}/{ada}/notes.txt", a.general);
    let versioned = format!("{}/{ada}/photo.png", a.general);
    for (name, version) in [(&plain, None), (&versioned, Some("v1"))] {
        sqlx::query(
            "insert into storage.objects (bucket_id, name, version) values ('attachments', $1, $2)",
        )
        .bind(name)
        .bind(version)
        .execute(&mut c)
        .await
        .unwrap();
    }
    let bucket = s3_server::bucket().await;
    let http = s3_server::client();
    let object = |b: &str, key: String| format!("{}/{b}/{key}", s3_server::endpoint());
    for (key, body) in [
        (format!("stub/attachments/{plain}"), b"notes".to_vec()),
        (
            format!("stub/attachments/{versioned}/v1"),
            vec![0x89, b'P', b'N', b'G'],
        ),
    ] {
        let put = http
            .put(object(&bucket, key))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
    }
    let mut env = s3_server::env();
    env.push(("DATABASE_URL", a.db.url.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let archive = a.dir.path().join("s3.backup");
    let run = |args: &[&str]| {
        let mut all = vec!["backup"];
        all.extend_from_slice(args);
        json_run(&env, &all)
    };
    let source = format!("s3://{bucket}/stub/");
    let (code, made, err) = run(&[
        "create",
        "--out",
        archive.to_str().unwrap(),
        "--storage-dir",
        &source,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(made["files"], 2, "{made}");
    let target = TestDb::empty().await;
    let to = format!("s3://{bucket}/tenant2/");
    let (code, done, err) = run(&[
        "restore",
        archive.to_str().unwrap(),
        "--target-url",
        &target.url,
        "--storage-dir",
        &to,
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(done["files"], 2);
    for (key, body) in [
        (format!("tenant2/attachments/{plain}"), b"notes".to_vec()),
        (
            format!("tenant2/attachments/{versioned}/v1"),
            vec![0x89, b'P', b'N', b'G'],
        ),
    ] {
        let got = http.get(object(&bucket, key.clone())).send().await.unwrap();
        assert!(got.status().is_success(), "{key}");
        assert_eq!(got.bytes().await.unwrap().to_vec(), body, "{key}");
    }
}

/// A stand-in for Supabase Storage's `DELETE /storage/v1/object/{bucket}` (Storage cannot run
/// here): as the service role (its key in `Authorization` and `apikey`), deletes the named
/// objects of the database's `storage.objects` and answers with them, as Storage's
/// `deleteObjects` route does; records each call's names.
async fn storage_api(
    url: String,
    key: &'static str,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    type Calls = std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>;
    let calls: Calls = Default::default();
    async fn delete(
        State((db, key, calls)): State<(String, &'static str, Calls)>,
        UrlPath(bucket): UrlPath<String>,
        headers: HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> Result<axum::Json<Value>, StatusCode> {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        let apikey = headers.get("apikey").and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {key}")) || apikey != Some(key) {
            return Err(StatusCode::UNAUTHORIZED);
        }
        let names: Vec<String> = serde_json::from_value(body["prefixes"].clone())
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        calls.lock().unwrap().push(names.clone());
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&db)
            .await
            .unwrap();
        let gone: Vec<Value> = sqlx::query_scalar(
            "with d as (delete from storage.objects where bucket_id = $1 and name = any($2) returning *)
             select jsonb_build_object('name', name, 'bucket_id', bucket_id, 'id', id) from d",
        )
        .bind(&bucket)
        .bind(&names)
        .fetch_all(&mut c)
        .await
        .unwrap();
        Ok(axum::Json(Value::Array(gone)))
    }
    let app = axum::Router::new()
        .route("/storage/v1/object/{bucket}", axum::routing::delete(delete))
        .with_state((url, key, calls.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_hosted_project_orphans_are_deleted_through_storages_api() {
    let a = acme().await;
    let mut c = a.db.conn().await;
    let bob = a.ids["bob"];
    let names: Vec<String> = (0..3)
        .map(|i| format!("{}/{bob}/abandoned-{i}.bin", a.general))
        .collect();
    for n in &names {
        sqlx::query("insert into storage.objects (bucket_id, name, created_at) values ('attachments', $1, now() - interval '3 days')")
            .bind(n)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let (url, calls) = storage_api(a.db.url.clone(), "service-role-key-for-tests").await;
    let env = [
        ("DATABASE_URL", a.db.url.clone()),
        ("SUPABASE_URL", url),
        (
            "SUPABASE_SERVICE_ROLE_KEY",
            "service-role-key-for-tests".to_owned(),
        ),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        chatctl(&env)
            .args(["files", "reconcile", "--delete", "--yes", "-o", "json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let done: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(done["deleted"], 3, "{done}");
    assert_eq!(done["deleted_through"], "storage_api");
    let mut sent = calls.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "one call for the batch");
    sent[0].sort();
    assert_eq!(sent[0], names);
    let left: i64 = sqlx::query_scalar("select count(*) from storage.objects")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let audited: Value = sqlx::query_scalar(
        "select before from chatctl.audit_log where object_type = 'storage_objects'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(audited["through"], "storage_api");
    assert_eq!(audited["objects"].as_array().unwrap().len(), 3);
}
