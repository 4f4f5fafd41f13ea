//! `chatctl backup` (issue 17, the local archive): a round trip that gives back every table
//! as it was, damaged and truncated archives refused with the target untouched, a restore
//! killed half-way leaving nothing, a non-empty target and a newer archive refused.

use crate::support::SpawnGuarded as _;
use std::io::{Read as _, Write as _};
use std::path::Path;

use chatctl::db::seed::{self, SeedOptions};
use sqlx::PgConnection;

use crate::support::{TestDb, chatctl, chatctl_std, outputs, s3_server};

/// Every table a backup holds, with a digest of its rows (generated columns included: they
/// are computed again on restore and must come out the same).
async fn digests(c: &mut PgConnection) -> Vec<(String, i64, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind = 'r'
            and (n.nspname in ('public', 'chatctl') or (n.nspname = 'auth' and c.relname in ('users', 'identities'))
                 or (n.nspname = 'storage' and c.relname in ('buckets', 'objects')))
            and not (n.nspname = 'chatctl' and c.relname in ('schema_migrations', 'bootstrap_objects'))
          order by 1",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    let mut out = Vec::new();
    for t in tables {
        // A backup records itself in the source's audit log once it is whole, after its
        // snapshot: that entry is the one row a restore cannot have.
        let taken = match t.as_str() {
            "chatctl.audit_log" => " where x.action <> 'backup'",
            _ => "",
        };
        // A restored database gets a search key of its own (its index is rebuilt).
        let from = match t.as_str() {
            "chatctl.search_state" => "(select singleton, horizon from chatctl.search_state)",
            other => other,
        };
        let (n, d): (i64, String) = sqlx::query_as(&format!(
            "select count(*), md5(coalesce(string_agg(x::text, '|' order by x::text), '')) from {from} x{taken}"
        ))
        .fetch_one(&mut *c)
        .await
        .unwrap();
        out.push((t, n, d));
    }
    out
}

/// What a restore sets aside while it loads and must put back exactly: every trigger (and
/// whether it is enabled), constraint (and whether it is validated) and index.
async fn schema_objects(c: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "select format('trigger %s %s %s', tgrelid::regclass, tgenabled, pg_get_triggerdef(oid))
           from pg_trigger where not tgisinternal
         union all
         select format('constraint %s %s %s %s', conrelid::regclass, conname, convalidated,
                       pg_get_constraintdef(oid))
           from pg_constraint where conrelid <> 0
         union all
         select format('index %s', pg_get_indexdef(indexrelid)) from pg_index
          where indrelid::regclass::text !~ '^pg_'
         order by 1",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap()
}

async fn source() -> TestDb {
    let db = TestDb::new().await;
    seed::seed(
        &db.pool().await,
        &SeedOptions {
            until: chatctl::db::seed::REFERENCE,
            users: 40,
            channels: 12,
            messages: 2_000,
            workspaces: 2,
            seed: 17,
            progress: false,
        },
    )
    .await
    .unwrap();
    let mut c = db.conn().await;
    // The awkward values: emoji and other scripts, JSON with them, a large text, NULLs,
    // arrays, a bucket, an identity column (the audit log).
    sqlx::raw_sql(
        "insert into public.chat (channel_id, user_id, message)
         select m.channel_id, m.user_id, jsonb_build_object('text', '¡Hola! 🎉 日本語 ' || repeat('long ', 500), 'n', null)
           from public.members m join public.channels c on c.id = m.channel_id and c.kind = 'public' limit 1;
         insert into storage.buckets (id, name, public, allowed_mime_types, file_size_limit)
              values ('files', 'files', false, array['image/png', 'text/plain'], null);
         insert into chatctl.audit_log (actor, command, action, object_type, object_id, before, after)
              values ('tester', 'test', 'test', 'x', 'tab\there', null,
                      jsonb_build_object('emoji', '🙂', 'large', repeat('ünïcödé ', 50000)));",
    )
    .execute(&mut c)
    .await
    .unwrap();
    db
}

/// The source database, a directory, and a backup of it there.
async fn backed_up() -> (TestDb, tempfile::TempDir, std::path::PathBuf) {
    let src = source().await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("chat.backup");
    let out = backup(&src, &["create", "--out", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", outputs(&out).1);
    // Everything is in it: no other local user reads it.
    use std::os::unix::fs::MetadataExt as _;
    let mode = std::fs::metadata(&archive).unwrap().mode();
    assert_eq!(mode & 0o077, 0, "the archive is {mode:o}");
    (src, dir, archive)
}

/// `chatctl backup restore ARCHIVE --target-url TARGET`.
fn restore(src: &TestDb, archive: &Path, target: &TestDb) -> std::process::Output {
    restore_with(src, archive, target, &[])
}

/// [`restore`] with more flags.
fn restore_with(
    src: &TestDb,
    archive: &Path,
    target: &TestDb,
    flags: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "restore",
        archive.to_str().unwrap(),
        "--target-url",
        &target.url,
    ];
    args.extend_from_slice(flags);
    backup(src, &args)
}

fn backup(db: &TestDb, args: &[&str]) -> std::process::Output {
    chatctl(&[("DATABASE_URL", &db.url)])
        .arg("backup")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_backup_restored_into_an_empty_database_gives_back_every_table() {
    let src = source().await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("chat.backup");
    let out = backup(
        &src,
        &["create", "--out", archive.to_str().unwrap(), "-o", "json"],
    );
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let made: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(made["action"], "created");
    assert!(!dir.path().join("chat.backup.partial").exists());

    let out = backup(&src, &["verify", archive.to_str().unwrap(), "-o", "json"]);
    assert!(out.status.success(), "{}", outputs(&out).1);
    let verified: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verified["rows"], made["rows"]);

    let target = TestDb::empty().await;
    let out = restore(&src, &archive, &target);
    assert!(out.status.success(), "{}", outputs(&out).1);
    let (mut a, mut b) = (src.conn().await, target.conn().await);
    let (before, after) = (digests(&mut a).await, digests(&mut b).await);
    assert!(
        before
            .iter()
            .any(|(t, n, _)| t == "public.chat" && *n > 2000)
    );
    assert_eq!(before, after);
    // The keys, indexes, foreign keys and triggers set aside for the load are all back.
    let objects = schema_objects(&mut a).await;
    assert!(objects.iter().any(|o| o.contains("chat_search_insert")));
    assert!(objects.iter().any(|o| o.contains("trigger chat D")));
    assert_eq!(objects, schema_objects(&mut b).await);
    // Sequences continue after the restored rows.
    let next: i64 = sqlx::query_scalar(
        "insert into chatctl.audit_log (actor, command, action, object_type, object_id)
         values ('t', 't', 't', 't', 't') returning id",
    )
    .fetch_one(&mut b)
    .await
    .unwrap();
    let max: i64 = sqlx::query_scalar(
        "select max(id) from chatctl.audit_log where actor <> 't' and action <> 'backup'",
    )
    .fetch_one(&mut a)
    .await
    .unwrap();
    assert!(next > max);

    // Into a database that holds rows: refused (73), unless --force.
    let out = restore(&src, &archive, &target);
    assert_eq!(out.status.code(), Some(73), "{}", outputs(&out).1);
    let out = restore_with(&src, &archive, &target, &["--force"]);
    assert!(out.status.success(), "{}", outputs(&out).1);
    assert_eq!(digests(&mut b).await, before);
}

async fn empty_after(target: &TestDb) -> i64 {
    let mut c = target.conn().await;
    let exists: bool = sqlx::query_scalar("select to_regclass('public.users') is not null")
        .fetch_one(&mut c)
        .await
        .unwrap();
    if !exists {
        return 0;
    }
    sqlx::query_scalar(
        "select (select count(*) from public.users) + (select count(*) from public.chat)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap()
}

/// `bytes` with one bit flipped at `at`.
fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] ^= 0x40;
    out
}

#[tokio::test]
async fn a_damaged_or_truncated_archive_is_refused_and_the_target_stays_untouched() {
    let (src, dir, archive) = backed_up().await;
    let bytes = std::fs::read(&archive).unwrap();
    let flipped = flip(&bytes, bytes.len() / 2);
    let cases = [
        ("flipped.backup", flipped),
        ("truncated.backup", bytes[..bytes.len() * 2 / 3].to_vec()),
    ];
    for (name, content) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let out = backup(&src, &["verify", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(65), "{name}: {}", outputs(&out).1);
        let target = TestDb::empty().await;
        let out = restore(&src, &path, &target);
        assert_eq!(out.status.code(), Some(65), "{name}: {}", outputs(&out).1);
        assert_eq!(
            empty_after(&target).await,
            0,
            "{name}: rows were left behind"
        );
    }
}

/// Restores `archive` into `target` with `args` through a pipe: half of it, then, once the
/// restore has loaded what it was given and waits for the rest, it is killed.
async fn killed_half_way(src: &TestDb, archive: &Path, target: &str, args: &[&str]) {
    let bytes = std::fs::read(archive).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.backup");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut child = chatctl_std(&[("DATABASE_URL", &src.url)])
        .args(["backup", "restore", fifo.to_str().unwrap()])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .guarded();
    let writer = {
        let fifo = fifo.clone();
        tokio::task::spawn_blocking(move || {
            let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            pipe.write_all(&bytes[..bytes.len() / 2]).unwrap();
            pipe.flush().unwrap();
            pipe
        })
    };
    // The pipe holds at most 64 KiB: once half is written, the restore has read the rest.
    let pipe = writer.await.unwrap();
    // Its sessions (in the target, or the scratch database of a parallel restore) are then
    // all waiting, and, in one transaction, hold the rows loaded so far.
    let mut c = src.conn().await;
    let one_transaction = !args.contains(&"-j");
    crate::support::wait_for(
        "the restore to load what it was given and wait for the rest",
        std::time::Duration::from_secs(60),
        async || {
            let (sessions, busy, writing): (i64, i64, i64) = sqlx::query_as(
                // A COPY waiting for its client's next rows is active in ClientRead.
                "select count(*),
                        count(*) filter (where state = 'active'
                                           and wait_event is distinct from 'ClientRead'),
                        count(*) filter (where backend_xid is not null)
                   from pg_stat_activity
                  where datname = $1 or datname like 'chatctl\\_restoring\\_%'",
            )
            .bind(target)
            .fetch_one(&mut c)
            .await
            .unwrap();
            let waiting = sessions > 0 && busy == 0 && (writing > 0 || !one_transaction);
            if waiting {
                Ok(())
            } else {
                Err(format!(
                    "{sessions} sessions, {busy} busy, {writing} holding writes"
                ))
            }
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    drop(pipe);
}

#[tokio::test]
async fn a_restore_killed_half_way_leaves_nothing_and_the_next_one_succeeds() {
    let (src, _dir, archive) = backed_up().await;
    let target = TestDb::empty().await;
    killed_half_way(&src, &archive, &target.name, &["--target-url", &target.url]).await;
    assert_eq!(empty_after(&target).await, 0);
    let out = restore(&src, &archive, &target);
    assert!(out.status.success(), "{}", outputs(&out).1);
    let (mut a, mut b) = (src.conn().await, target.conn().await);
    assert_eq!(digests(&mut a).await, digests(&mut b).await);
}

/// Whether database `name` exists, and the scratch databases of parallel restores to it.
async fn databases(src: &TestDb, name: &str) -> (bool, i64) {
    let mut c = src.conn().await;
    sqlx::query_as(
        "select exists (select 1 from pg_database where datname = $1),
                (select count(*) from pg_database
                  where datname like 'chatctl\\_restoring\\_%'
                    and shobj_description(oid, 'pg_database') = 'chatctl restore of ' || $1)",
    )
    .bind(name)
    .fetch_one(&mut c)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_parallel_restore_makes_the_target_whole_or_not_at_all() {
    let (src, dir, archive) = backed_up().await;
    let path = archive.to_str().unwrap();
    let parallel = |target: &TestDb, path: &str| {
        backup(
            &src,
            &["restore", path, "--target-url", &target.url, "-j", "3"],
        )
    };

    // An existing database is not one chatctl makes: refused and left alone.
    let existing = TestDb::empty().await;
    let out = parallel(&existing, path);
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("--jobs 1"), "{stderr}");
    assert_eq!(empty_after(&existing).await, 0);

    // A damaged archive: the target never appears, and no scratch database is left.
    let bytes = std::fs::read(&archive).unwrap();
    let flipped = flip(&bytes, bytes.len() * 3 / 4);
    let bad = dir.path().join("flipped.backup");
    std::fs::write(&bad, flipped).unwrap();
    let target = TestDb::absent();
    let out = parallel(&target, bad.to_str().unwrap());
    assert_eq!(out.status.code(), Some(65), "{}", outputs(&out).1);
    assert_eq!(databases(&src, &target.name).await, (false, 0));

    // Killed half-way: still no target; the next restore succeeds and clears the scratch
    // database the killed one left.
    killed_half_way(
        &src,
        &archive,
        &target.name,
        &["--target-url", &target.url, "-j", "3"],
    )
    .await;
    assert_eq!(databases(&src, &target.name).await, (false, 1));

    let out = parallel(&target, path);
    assert!(out.status.success(), "{}", outputs(&out).1);
    assert_eq!(databases(&src, &target.name).await, (true, 0));
    let (mut a, mut b) = (src.conn().await, target.conn().await);
    assert_eq!(digests(&mut a).await, digests(&mut b).await);
    assert_eq!(schema_objects(&mut a).await, schema_objects(&mut b).await);
}

/// Rewrites the JSON entry `entry` (the header or the manifest) of an archive with `edit`.
fn rewrite(from: &Path, to: &Path, entry: &str, edit: impl Fn(&mut serde_json::Value)) {
    let mut input = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut out = tar::Builder::new(std::fs::File::create(to).unwrap());
    for e in input.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        if name == entry {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            edit(&mut v);
            bytes = serde_json::to_vec(&v).unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        out.append_data(&mut header, &name, &bytes[..]).unwrap();
    }
    out.finish().unwrap();
}

#[tokio::test]
async fn an_archive_from_a_newer_chatctl_is_refused_with_its_own_exit_code() {
    let (src, dir, archive) = backed_up().await;
    for (name, edit) in [
        (
            "schema.backup",
            Box::new(|h: &mut serde_json::Value| h["schema_version"] = 9999.into())
                as Box<dyn Fn(&mut serde_json::Value)>,
        ),
        (
            "format.backup",
            Box::new(|h: &mut serde_json::Value| h["format"] = 99.into()),
        ),
    ] {
        let path = dir.path().join(name);
        rewrite(&archive, &path, "header.json", edit);
        let target = TestDb::empty().await;
        let out = restore(&src, &path, &target);
        let (_, stderr) = outputs(&out);
        assert_eq!(out.status.code(), Some(76), "{name}: {stderr}");
        assert!(stderr.contains("newer"), "{stderr}");
        assert_eq!(empty_after(&target).await, 0);
    }
}

// Multi-threaded: the writer runs while this thread waits for chatctl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_readers_share_one_snapshot_while_someone_writes() {
    let src = source().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Each transaction adds a workspace and its channel: two tables, read by different
    // connections. A backup that mixed moments would hold one without the other.
    let writer = {
        let stop = stop.clone();
        let mut c = src.conn().await;
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut tx = sqlx::Connection::begin(&mut c).await.unwrap();
                sqlx::query(
                    "with w as (insert into public.workspaces (slug, name) values ($1, $1) returning id)
                     insert into public.channels (workspace_id, name, kind) select id, 'only', 'public' from w",
                )
                .bind(format!("w-{n}"))
                .execute(&mut *tx)
                .await
                .unwrap();
                tx.commit().await.unwrap();
                n += 1;
            }
            n
        })
    };
    let mut c = src.conn().await;
    crate::support::wait_for(
        "the writer to commit its first workspaces",
        std::time::Duration::from_secs(30),
        async || {
            let n: i64 =
                sqlx::query_scalar("select count(*) from public.workspaces where slug like 'w-%'")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
            if n >= 3 {
                Ok(())
            } else {
                Err(format!("{n} committed"))
            }
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("chat.backup");
    let out = backup(
        &src,
        &["create", "--out", archive.to_str().unwrap(), "--jobs", "4"],
    );
    assert!(out.status.success(), "{}", outputs(&out).1);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(
        written > 10,
        "the writer wrote during the backup ({written})"
    );
    let target = TestDb::empty().await;
    let out = restore(&src, &archive, &target);
    assert!(out.status.success(), "{}", outputs(&out).1);
    let mut c = target.conn().await;
    let (workspaces, channels, orphans): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from public.workspaces where slug like 'w-%'),
                (select count(*) from public.channels c join public.workspaces w on w.id = c.workspace_id
                  where w.slug like 'w-%'),
                (select count(*) from public.workspaces w where w.slug like 'w-%'
                    and not exists (select 1 from public.channels c where c.workspace_id = w.id))",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(
        workspaces > 0,
        "the writer's rows before the backup are in it"
    );
    assert_eq!((channels, orphans), (workspaces, 0));
}

#[tokio::test]
async fn a_backup_already_being_written_stops_the_second_one() {
    let src = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("chat.backup");
    std::fs::write(dir.path().join("chat.backup.partial"), b"someone else's").unwrap();
    let out = backup(&src, &["create", "--out", archive.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(75), "{}", outputs(&out).1);
    assert!(!archive.exists());
    assert_eq!(
        std::fs::read(dir.path().join("chat.backup.partial")).unwrap(),
        b"someone else's"
    );
}

#[tokio::test]
async fn list_shows_the_backups_and_prune_keeps_exactly_what_the_policy_says() {
    let src = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("made.backup");
    assert!(
        backup(&src, &["create", "--out", made.to_str().unwrap()])
            .status
            .success()
    );
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    // Backups of made-up dates (newest first: two today, yesterday, last month, a year ago).
    let dates = [
        "2026-12-02T18:00:00Z",
        "2026-12-02T06:00:00Z",
        "2026-12-01T06:00:00Z",
        "2026-11-10T06:00:00Z",
        "2025-12-01T06:00:00Z",
    ];
    for (i, d) in dates.iter().enumerate() {
        rewrite(
            &made,
            &store.join(format!("b{i}.backup")),
            "header.json",
            |h| h["created_at"] = (*d).into(),
        );
    }
    std::fs::write(store.join("b9.backup.partial"), b"half").unwrap();
    let out = backup(&src, &["list", store.to_str().unwrap(), "-o", "json"]);
    assert!(out.status.success(), "{}", outputs(&out).1);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<String> = listed
        .iter()
        .map(|l| {
            Path::new(l["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "b0.backup",
            "b1.backup",
            "b2.backup",
            "b3.backup",
            "b4.backup"
        ]
    );
    assert!(
        listed
            .iter()
            .all(|l| l["complete"] == true && l["encrypted"] == false)
    );

    // The newest of each of the last 2 days, and of the last 2 months.
    let policy = ["--keep-daily", "2", "--keep-monthly", "2"];
    let out = backup(
        &src,
        &[
            &["prune", store.to_str().unwrap(), "--dry-run", "-o", "json"][..],
            &policy[..],
        ]
        .concat(),
    );
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["removed"].as_array().unwrap().len(), 2);
    assert!(
        store.join("b1.backup").exists(),
        "a dry run removes nothing"
    );
    // In a script, deleting needs --yes: refused without, naming how many would go.
    let prune = [&["prune", store.to_str().unwrap()][..], &policy[..]].concat();
    let out = backup(&src, &prune);
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("deletes 2 backup(s)"), "{stderr}");
    assert!(store.join("b1.backup").exists(), "refused: nothing removed");
    let out = backup(&src, &[&prune[..], &["--yes"][..]].concat());
    assert!(out.status.success(), "{}", outputs(&out).1);
    let mut left: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["b0.backup", "b2.backup", "b3.backup", "b9.backup.partial"]
    );
}

async fn scratch_databases(c: &mut PgConnection) -> i64 {
    sqlx::query_scalar("select count(*) from pg_database where datname like 'chatctl_verify_%'")
        .fetch_one(c)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_deep_verify_restores_into_a_scratch_database_compares_every_table_and_drops_it() {
    let (src, dir, archive) = backed_up().await;
    let mut c = src.conn().await;
    let before = scratch_databases(&mut c).await;
    let out = backup(
        &src,
        &["verify", "--deep", archive.to_str().unwrap(), "-o", "json"],
    );
    assert!(out.status.success(), "{}", outputs(&out).1);
    assert_eq!(
        scratch_databases(&mut c).await,
        before,
        "the scratch database is dropped"
    );
    // A table that does not come back as it was backed up is caught (here: its digest).
    let edited = dir.path().join("edited.backup");
    rewrite(&archive, &edited, "manifest.json", |m| {
        m["content"][5] = "0".repeat(64).into()
    });
    let out = backup(&src, &["verify", edited.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "a shallow verify reads only checksums and counts"
    );
    let out = backup(&src, &["verify", "--deep", edited.to_str().unwrap()]);
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("differs from what was backed up"),
        "{stderr}"
    );
    assert_eq!(scratch_databases(&mut c).await, before);
}

#[tokio::test]
async fn two_backups_of_one_database_never_overlap() {
    let src = TestDb::new().await;
    let mut other = src.conn().await;
    // Another backup holds the database's backup lock.
    sqlx::query("select pg_advisory_lock(hashtext('chatctl backup create'))")
        .execute(&mut other)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("second.backup");
    let out = backup(&src, &["create", "--out", archive.to_str().unwrap()]);
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("another `chatctl backup create`"),
        "{stderr}"
    );
    assert!(!archive.exists() && !dir.path().join("second.backup.partial").exists());
    sqlx::query("select pg_advisory_unlock(hashtext('chatctl backup create'))")
        .execute(&mut other)
        .await
        .unwrap();
    let out = backup(&src, &["create", "--out", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", outputs(&out).1);
}

/// A fresh age key pair: the identity file written in `dir`, and the recipient.
fn age_key(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    use age::secrecy::ExposeSecret as _;
    let key = age::x25519::Identity::generate();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("# {name}\n{}\n", key.to_string().expose_secret()),
    )
    .unwrap();
    (path, key.to_public().to_string())
}

#[tokio::test]
async fn an_encrypted_backup_is_unreadable_without_its_key_and_restores_with_it() {
    let src = source().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = age_key(dir.path(), "ops.key");
    let (other_key, other) = age_key(dir.path(), "other.key");
    let (stranger, _) = age_key(dir.path(), "stranger.key");
    let archive = dir.path().join("sealed.backup");
    let out = backup(
        &src,
        &[
            "create",
            "--out",
            archive.to_str().unwrap(),
            "--encrypt-to",
            &recipient,
            "--encrypt-to",
            &other,
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", outputs(&out).1);
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["encrypted"], true);
    // An age file, with nothing of the chat in the clear.
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
    for clear in [&b"header.json"[..], b"manifest.json", "日本語".as_bytes()] {
        assert!(!bytes.windows(clear.len()).any(|w| w == clear));
    }
    let path = archive.to_str().unwrap();

    // No key: a usage error that says what is missing.
    let out = backup(&src, &["verify", path]);
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("encrypted") && stderr.contains("--identity"),
        "{stderr}"
    );
    // Someone else's key: refused as such (77), the target untouched.
    let target = TestDb::empty().await;
    let out = restore_with(
        &src,
        Path::new(path),
        &target,
        &["--identity", stranger.to_str().unwrap()],
    );
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(stderr.contains("none of the identities"), "{stderr}");
    assert_eq!(empty_after(&target).await, 0);
    // A flipped byte in the encrypted stream: damaged (65), the target untouched.
    let flipped = flip(&bytes, bytes.len() * 2 / 3);
    let bad = dir.path().join("flipped.backup");
    std::fs::write(&bad, flipped).unwrap();
    let out = restore_with(&src, &bad, &target, &["-i", key.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65), "{}", outputs(&out).1);
    assert_eq!(empty_after(&target).await, 0);

    // Either recipient's key opens it: verify with one, restore with the other.
    let out = backup(
        &src,
        &["verify", path, "-i", key.to_str().unwrap(), "-o", "json"],
    );
    assert!(out.status.success(), "{}", outputs(&out).1);
    let verified: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (verified["rows"].clone(), verified["encrypted"].clone()),
        (made["rows"].clone(), true.into())
    );
    let out = restore_with(
        &src,
        Path::new(path),
        &target,
        &["-i", other_key.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", outputs(&out).1);
    let (mut a, mut b) = (src.conn().await, target.conn().await);
    assert_eq!(digests(&mut a).await, digests(&mut b).await);

    // Listed as encrypted, with its time and size; what is inside is not known.
    let out = backup(&src, &["list", dir.path().to_str().unwrap(), "-o", "json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let sealed = listed
        .iter()
        .find(|l| l["path"].as_str().unwrap().ends_with("sealed.backup"))
        .unwrap();
    assert_eq!(sealed["encrypted"], true);
    assert_eq!(sealed["bytes"], bytes.len() as u64);
    assert!(sealed["schema_version"].is_null());
}

// Multi-threaded: the test polls the S3 server while a backup uploads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_site_backups_go_to_an_s3_server_and_come_back() {
    let src = source().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = age_key(dir.path(), "ops.key");
    let (stranger, _) = age_key(dir.path(), "stranger.key");
    let bucket = s3_server::bucket().await;
    let mut env = s3_server::env();
    env.push(("DATABASE_URL", src.url.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| chatctl(&env).arg("backup").args(args).output().unwrap();
    let prefix = format!("s3://{bucket}/nightly/");

    // To a prefix: named by the time, and a warning that it is not encrypted.
    let out = run(&["create", "--out", &prefix, "-o", "json"]);
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("not encrypted"), "{stderr}");
    let plain: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let plain_url = plain["location"].as_str().unwrap().to_owned();
    assert!(
        plain_url.starts_with(&format!("{prefix}chat-")),
        "{plain_url}"
    );
    // Encrypted, to a name of its own: no warning. (An encrypted object's time is its
    // last-modified, to the second: it is made once the clock is past the plain one's
    // second, so that it is the newer.)
    let plain_at: chrono::DateTime<chrono::Utc> =
        plain["created_at"].as_str().unwrap().parse().unwrap();
    crate::support::wait_for(
        "the clock to pass the plain backup's second",
        std::time::Duration::from_secs(5),
        async || {
            let now = chrono::Utc::now();
            match now.timestamp() > plain_at.timestamp() {
                true => Ok(()),
                false => Err(format!("now {now}, plain backup at {plain_at}")),
            }
        },
    )
    .await;
    let sealed_url = format!("{prefix}sealed.backup");
    let out = run(&["create", "--out", &sealed_url, "--encrypt-to", &recipient]);
    let (_, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("not encrypted"), "{stderr}");

    // Listed from the bucket: the plain one read from its header and manifest.
    let out = run(&["list", &prefix, "-o", "json"]);
    assert!(out.status.success(), "{}", outputs(&out).1);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let find = |url: &str| listed.iter().find(|l| l["path"] == url).unwrap().clone();
    let (p, s) = (find(&plain_url), find(&sealed_url));
    assert_eq!(
        (p["rows"].clone(), p["encrypted"].clone()),
        (plain["rows"].clone(), false.into())
    );
    assert_eq!(p["complete"], true);
    assert_eq!(s["encrypted"], true);

    // Verified and restored from the bucket, as it downloads.
    let out = run(&["verify", &plain_url]);
    assert!(out.status.success(), "{}", outputs(&out).1);
    let out = run(&["verify", &sealed_url, "-i", stranger.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(77), "{}", outputs(&out).1);
    let target = TestDb::empty().await;
    let out = run(&[
        "restore",
        &sealed_url,
        "-i",
        key.to_str().unwrap(),
        "--target-url",
        &target.url,
    ]);
    assert!(out.status.success(), "{}", outputs(&out).1);
    let (mut a, mut b) = (src.conn().await, target.conn().await);
    assert_eq!(digests(&mut a).await, digests(&mut b).await);

    // Pruned in the bucket: the newest kept.
    let out = run(&["prune", &prefix, "--keep-last", "1", "--yes", "-o", "json"]);
    assert!(out.status.success(), "{}", outputs(&out).1);
    let out = run(&["list", &prefix, "-o", "json"]);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["path"], sealed_url.as_str());

    // A backup killed while it uploads leaves no object: its upload stays unfinished,
    // invisible to `list` (and to anyone reading the bucket).
    let killed = format!("s3://{bucket}/killed/");
    let mut child = chatctl_std(&env)
        .args(["backup", "create", "--out", &killed])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .guarded();
    let mut seen = false;
    for _ in 0..2000 {
        if s3_server::uploads_in_progress(&bucket).await > 0 {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen, "the upload was never seen in progress");
    let out = run(&["list", &killed, "-o", "json"]);
    assert!(out.status.success(), "{}", outputs(&out).1);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test]
async fn a_terminal_sees_the_progress_with_its_rate_and_a_pipe_does_not() {
    let src = source().await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("chat.backup");
    let bin = assert_cmd::cargo::cargo_bin!("chatctl");
    // `script` gives the command a pseudo-terminal.
    let shown = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} backup create --out {}",
            bin.display(),
            archive.display()
        ))
        .arg("/dev/null")
        .env("DATABASE_URL", &src.url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    assert!(
        text.contains("backing up") && text.contains("/s, eta"),
        "{text}"
    );
    // In a pipe: the result only.
    let out = backup(&src, &["verify", archive.to_str().unwrap()]);
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("eta") && !stdout.contains("eta"),
        "{stderr}"
    );
}
