//! `backup restore` and `verify --deep`: the archive read and checked on a thread of its own
//! while the database loads, in one transaction, or on N connections into a scratch
//! database renamed into place.

use super::*;

/// What `backup restore` was asked.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Empty the archive's tables of a target that holds rows first.
    pub force: bool,
    /// Connections loading at once. Above 1, the target must not exist: the archive is
    /// loaded into a scratch database beside it, which is renamed to the target's name
    /// once whole (all or nothing, by the rename).
    pub jobs: usize,
    /// Where Storage keeps the objects' bytes: those the archive holds go back there.
    pub storage: Option<StorageSource>,
    /// Keep the archive's database key (a rehearsal compared with the archive, `verify
    /// --deep`); a restore proper gives the database a key of its own.
    pub keep_identity: bool,
}

/// Restores an archive into the database at `target_url` (migrated to the archive's schema
/// version first), all or nothing.
pub async fn restore<R: Read + Send + 'static>(
    target_url: &str,
    input: R,
    opts: &RestoreOptions,
    config: &crate::config::Config,
    progress: &Progress,
) -> Result<Summary> {
    // The objects' bytes are staged while the rows load (beside where they go, so each is
    // put in place by a rename, or locally for S3) and put in place once the rows are
    // committed.
    let staging = match &opts.storage {
        None => None,
        Some(source) => {
            let s = source.staging();
            crate::owner_only::create_dir_all(&s)
                .with_context(|| format!("cannot create {}", s.display()))?;
            Some(s)
        }
    };
    let done = restore_reading(target_url, input, opts, staging.clone(), config, progress).await;
    progress.finish();
    let placed = match (&done, &opts.storage, &staging) {
        (Ok((summary, ..)), Some(source), Some(staged)) => {
            place_files(staged, source, &summary.stored)
        }
        _ => Ok(0),
    };
    if let Some(s) = &staging {
        let _ = std::fs::remove_dir_all(s);
    }
    let (mut summary, ..) = done?;
    let in_archive = summary.stored.len();
    summary.files = placed?;
    if opts.storage.is_none() && in_archive > 0 {
        summary.left_out.push(format!(
            "the bytes of {in_archive} Storage object(s) in the archive (--storage-dir puts them back)"
        ));
    }
    Ok(summary)
}

/// Puts each staged object's bytes where Storage keeps it.
fn place_files(staged: &std::path::Path, to: &StorageSource, files: &[StoredFile]) -> Result<u64> {
    let mut placed = 0;
    for f in files {
        to.put(f, &staged.join(f.entry.trim_start_matches("storage/")))?;
        placed += 1;
    }
    Ok(placed)
}

/// An archive read on a thread of its own, checked as it goes, so that reading, checksums
/// and decompression overlap the database's work: the header first, then each chunk in
/// order; [`ReadAhead::finish`] gives what was seen once every check against the manifest
/// has passed. At most a few chunks wait in memory.
struct ReadAhead {
    header: Option<tokio::sync::oneshot::Receiver<Header>>,
    chunks: tokio::sync::mpsc::Receiver<Chunk>,
    done: tokio::task::JoinHandle<Result<Seen>>,
}

impl ReadAhead {
    fn start<R: Read + Send + 'static>(
        input: R,
        files_to: Option<std::path::PathBuf>,
    ) -> ReadAhead {
        let (header_tx, header) = tokio::sync::oneshot::channel();
        let (tx, chunks) = tokio::sync::mpsc::channel(2);
        let done = tokio::task::spawn_blocking(move || {
            let mut archive = tar::Archive::new(input);
            let mut r = Reader::open(&mut archive, files_to)?;
            let _ = header_tx.send(r.seen.header.clone());
            while let Some(chunk) = r.next_chunk()? {
                if tx.blocking_send(chunk).is_err() {
                    anyhow::bail!("the restore stopped reading");
                }
            }
            Ok(r.seen)
        });
        ReadAhead {
            header: Some(header),
            chunks,
            done,
        }
    }

    /// The archive's header, or why it could not be read.
    async fn header(&mut self) -> Result<Header> {
        match self.header.take() {
            Some(rx) => match rx.await {
                Ok(h) => Ok(h),
                Err(_) => Err(self.failure().await),
            },
            None => anyhow::bail!("the header was already read"),
        }
    }

    /// The next chunk; `None` once the reader has stopped (at the manifest, or on damage:
    /// [`ReadAhead::finish`] says which).
    async fn next(&mut self) -> Option<Chunk> {
        self.chunks.recv().await
    }

    async fn failure(&mut self) -> anyhow::Error {
        match (&mut self.done).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => anyhow::anyhow!("the archive reader stopped early"),
            Err(e) => anyhow::anyhow!("the archive reader failed: {e}"),
        }
    }

    /// Everything read and checked, once the last chunk was taken.
    async fn finish(mut self) -> Result<Seen> {
        match (&mut self.done).await {
            Ok(seen) => seen,
            Err(e) => Err(anyhow::anyhow!("the archive reader failed: {e}")),
        }
    }
}

/// [`restore`], also giving back the tables and the manifest's content digests it read.
async fn restore_reading<R: Read + Send + 'static>(
    target_url: &str,
    input: R,
    opts: &RestoreOptions,
    files_to: Option<std::path::PathBuf>,
    config: &crate::config::Config,
    progress: &Progress,
) -> Result<(Summary, Vec<TableSpec>, Vec<String>)> {
    progress.set_message("restoring");
    let started = Instant::now();
    let mut read = ReadAhead::start(input, files_to);
    let header = read.header().await?;
    let migrations =
        crate::db::migrate::Migrations::load(&crate::db::migrate::Source::Embedded).await?;
    let known = migrations.latest().unwrap_or(0);
    if header.schema_version > known {
        return Err(Error::new(
            Kind::TooNew,
            format!(
                "the archive needs schema version {}, and this chatctl knows up to {known}",
                header.schema_version
            ),
        )
        .with_help("restore it with a newer chatctl")
        .into());
    }
    if opts.jobs > 1 {
        return restore_parallel(
            target_url,
            read,
            header,
            &migrations,
            opts.jobs,
            config,
            progress,
        )
        .await;
    }
    let mut conn = crate::db::migrate::connect(target_url, config.database.connect_timeout).await?;
    migrate_to(&mut conn, &migrations, &header).await?;
    let mut tx = sqlx::Connection::begin(&mut conn).await?;
    // Empty: no rows in the tables people's data lives in. `chatctl`'s own tables hold
    // what the migrations put there (the search index's state): the archive's replace it.
    let mut holding = Vec::new();
    for t in header.tables.iter().filter(|t| t.schema != "chatctl") {
        let has: bool =
            sqlx::query_scalar(&format!("select exists (select 1 from {})", t.qualified()))
                .fetch_one(&mut *tx)
                .await
                .with_context(|| format!("the target has no table {}.{}", t.schema, t.name))?;
        if has {
            holding.push(format!("{}.{}", t.schema, t.name));
        }
    }
    if !holding.is_empty() && !opts.force {
        return Err(Error::new(
            Kind::NotEmpty,
            format!(
                "the target is not empty ({} hold rows: {})",
                holding.len(),
                holding.join(", ")
            ),
        )
        .with_help(
            "restore into an empty database (--create makes one), or --force to replace its rows",
        )
        .into());
    }
    sqlx::raw_sql("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .context("restoring needs to load rows without firing triggers (session_replication_role): connect as postgres")?;
    // Index builds sort whole tables: give them room (for this transaction only), and so
    // the parallel workers PostgreSQL allows for each.
    sqlx::raw_sql("set local maintenance_work_mem = '256MB'")
        .execute(&mut *tx)
        .await?;
    let replaced: Vec<String> = header
        .tables
        .iter()
        .filter(|t| !holding.is_empty() || t.schema == "chatctl")
        .map(TableSpec::qualified)
        .collect();
    if !replaced.is_empty() {
        sqlx::raw_sql(&format!("truncate {}", replaced.join(", ")))
            .execute(&mut *tx)
            .await?;
    }
    let deferred = set_aside(&mut tx, &header.tables).await?;
    let frozen = truncated_here(&mut tx, &header.tables).await?;
    // One COPY per table: its chunks follow each other in the archive.
    let mut pending = read.next().await;
    while let Some(first) = pending.take() {
        let ti = first.table;
        let t = &header.tables[ti];
        let mut copy = tx.copy_in_raw(&t.copy_from(frozen[ti])).await?;
        copy.send(first.text).await?;
        progress.advance(first.stored);
        loop {
            match read.next().await {
                Some(chunk) if chunk.table == ti => {
                    copy.send(chunk.text).await?;
                    progress.advance(chunk.stored);
                }
                next => {
                    pending = next;
                    break;
                }
            }
        }
        copy.finish()
            .await
            .with_context(|| format!("cannot load {}.{}", t.schema, t.name))?;
    }
    // Every check against the manifest, before anything is built on the rows.
    let seen = read.finish().await?;
    deferred.restore(&mut tx).await?;
    reset_sequences(&mut tx, &header.tables).await?;
    if !opts.keep_identity {
        new_identity(&mut tx).await?;
    }
    tx.commit().await.context("cannot commit the restore")?;
    let done = summary(&seen, started);
    Ok((done, seen.header.tables, seen.content))
}

/// Migrates the target to the archive's schema version (each migration its own
/// transaction, as `migrate up` runs them), and refuses a target already past it.
async fn migrate_to(
    conn: &mut PgConnection,
    migrations: &crate::db::migrate::Migrations,
    header: &Header,
) -> Result<()> {
    crate::db::migrate::up(
        &mut *conn,
        migrations,
        &crate::db::migrate::UpOptions {
            target: Some(header.schema_version),
            dry_run: false,
            lock_timeout: std::time::Duration::from_secs(60),
        },
    )
    .await?;
    let at: Option<i64> =
        sqlx::query_scalar("select max(version) from chatctl.schema_migrations where success")
            .fetch_one(&mut *conn)
            .await?;
    if at != Some(header.schema_version) {
        return Err(Error::new(
            Kind::TooNew,
            format!(
                "the target is at schema version {}, newer than the archive's {}",
                at.unwrap_or(0),
                header.schema_version
            ),
        )
        .with_help("restore into an empty database (--create makes one)")
        .into());
    }
    Ok(())
}

/// Sequences (serial and identity columns) continue after the restored rows.
async fn reset_sequences(conn: &mut PgConnection, tables: &[TableSpec]) -> Result<()> {
    for t in tables {
        for c in &t.columns {
            let seq: Option<String> = sqlx::query_scalar("select pg_get_serial_sequence($1, $2)")
                .bind(t.qualified())
                .bind(c)
                .fetch_one(&mut *conn)
                .await?;
            if let Some(seq) = seq {
                sqlx::query(&format!(
                    "select setval($1, coalesce((select max({}) from {}), 0) + 1, false)",
                    quote(c),
                    t.qualified()
                ))
                .bind(&seq)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// A restored database is another database than the one backed up: a search index built
/// from that one must be rebuilt for this one (its watermark and documents are the other's),
/// so the restore gives it a key of its own (schema version 17 on).
async fn new_identity(conn: &mut PgConnection) -> Result<()> {
    let keyed: bool = sqlx::query_scalar(
        "select exists (select 1 from pg_attribute
                         where attrelid = to_regclass('chatctl.search_state')
                           and attname = 'database_key' and not attisdropped)",
    )
    .fetch_one(&mut *conn)
    .await?;
    if keyed {
        sqlx::query("update chatctl.search_state set database_key = gen_random_uuid()")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The prefix of the scratch databases a parallel restore loads into.
const RESTORING: &str = "chatctl_restoring_";

/// [`restore`] with `jobs` connections: into a scratch database made beside the target
/// (which must not exist), renamed to the target's name once loaded, indexed and checked.
/// Until that rename the target does not exist, so a failed or killed restore leaves
/// nothing under its name; the scratch database of a killed one is dropped by the next
/// restore to the same target.
async fn restore_parallel(
    target_url: &str,
    read: ReadAhead,
    header: Header,
    migrations: &crate::db::migrate::Migrations,
    jobs: usize,
    config: &crate::config::Config,
    progress: &Progress,
) -> Result<(Summary, Vec<TableSpec>, Vec<String>)> {
    let started = Instant::now();
    let target = url::Url::parse(target_url)
        .map_err(|e| Error::usage(format!("not a database URL: {e}")))?;
    let name = target.path().trim_start_matches('/').to_owned();
    let mut admin_url = target.clone();
    admin_url.set_path("postgres");
    let mut admin = crate::db::connect(admin_url.as_str(), config).await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if exists {
        return Err(Error::usage(format!(
            "--jobs loads into a database chatctl creates, and `{name}` exists"
        ))
        .with_help("restore into it with --jobs 1 (one transaction), or drop it first")
        .into());
    }
    // Scratch databases of killed restores to this target, no longer in use.
    let stale: Vec<String> = sqlx::query_scalar(
        "select d.datname::text from pg_database d
          where d.datname like $1 || '%' and shobj_description(d.oid, 'pg_database') = $2
            and not exists (select 1 from pg_stat_activity a where a.datid = d.oid)",
    )
    .bind(RESTORING)
    .bind(format!("chatctl restore of {name}"))
    .fetch_all(&mut admin)
    .await?;
    for db in stale {
        sqlx::raw_sql(&format!(
            "drop database if exists {} with (force)",
            quote(&db)
        ))
        .execute(&mut admin)
        .await?;
    }
    let scratch = format!(
        "{RESTORING}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    sqlx::raw_sql(&format!("create database {}", quote(&scratch)))
        .execute(&mut admin)
        .await?;
    sqlx::raw_sql(&format!(
        "comment on database {} is '{}'",
        quote(&scratch),
        format!("chatctl restore of {name}").replace('\'', "''")
    ))
    .execute(&mut admin)
    .await?;
    let mut scratch_url = target.clone();
    scratch_url.set_path(&scratch);
    let loaded = load_parallel(
        scratch_url.as_str(),
        read,
        &header,
        migrations,
        jobs,
        config,
        progress,
    )
    .await;
    let placed = match &loaded {
        Ok(_) => sqlx::raw_sql(&format!(
            "alter database {} rename to {}",
            quote(&scratch),
            quote(&name)
        ))
        .execute(&mut admin)
        .await
        .with_context(|| format!("cannot rename the restored database to `{name}`")),
        Err(_) => Err(anyhow::anyhow!("not loaded")),
    };
    if placed.is_ok() {
        // It is the target now, no longer a scratch database (which only the name says).
        let _ = sqlx::raw_sql(&format!("comment on database {} is null", quote(&name)))
            .execute(&mut admin)
            .await;
    }
    if placed.is_err() {
        let _ = sqlx::raw_sql(&format!(
            "drop database if exists {} with (force)",
            quote(&scratch)
        ))
        .execute(&mut admin)
        .await;
    }
    let seen = loaded?;
    placed?;
    let done = summary(&seen, started);
    Ok((done, seen.header.tables, seen.content))
}

/// Loads an archive into the empty database at `url` on `jobs` connections: keys, indexes,
/// foreign keys and transition-table triggers set aside, chunks loaded as they come by
/// whichever connection is free, everything checked against the manifest, then the keys,
/// indexes, foreign keys and triggers rebuilt phase by phase, each phase's statements
/// shared out among the connections.
async fn load_parallel(
    url: &str,
    mut read: ReadAhead,
    header: &Header,
    migrations: &crate::db::migrate::Migrations,
    jobs: usize,
    config: &crate::config::Config,
    progress: &Progress,
) -> Result<Seen> {
    use futures_util::future::try_join_all;
    let mut conn = crate::db::migrate::connect(url, config.database.connect_timeout).await?;
    migrate_to(&mut conn, migrations, header).await?;
    let mut tx = sqlx::Connection::begin(&mut conn).await?;
    let deferred = set_aside(&mut tx, &header.tables).await?;
    let chatctl: Vec<String> = header
        .tables
        .iter()
        .filter(|t| t.schema == "chatctl")
        .map(TableSpec::qualified)
        .collect();
    if !chatctl.is_empty() {
        sqlx::raw_sql(&format!("truncate {}", chatctl.join(", ")))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let mut conns = vec![conn];
    for _ in 1..jobs {
        conns.push(crate::db::connect(url, config).await?);
    }
    for c in &mut conns {
        // Each chunk commits on its own; none needs to wait for its flush to disk: the
        // rename that makes the database the target's is the commit that counts.
        sqlx::raw_sql(
            "set session_replication_role = replica; set maintenance_work_mem = '256MB';
             set synchronous_commit = off",
        )
        .execute(&mut *c)
        .await
        .context("restoring needs to load rows without firing triggers (session_replication_role): connect as postgres")?;
    }
    let chunks = tokio::sync::Mutex::new(&mut read);
    try_join_all(conns.iter_mut().map(|c| {
        let chunks = &chunks;
        async move {
            loop {
                let next = chunks.lock().await.next().await;
                let Some(chunk) = next else {
                    return Ok::<(), anyhow::Error>(());
                };
                let t = &header.tables[chunk.table];
                let mut copy = c.copy_in_raw(&t.copy_from(false)).await?;
                copy.send(chunk.text).await?;
                copy.finish()
                    .await
                    .with_context(|| format!("cannot load {}.{}", t.schema, t.name))?;
                progress.advance(chunk.stored);
            }
        }
    }))
    .await?;
    let seen = read.finish().await?;
    for phase in deferred.phases() {
        let steps = std::sync::Mutex::new(phase.into_iter());
        try_join_all(conns.iter_mut().map(|c| {
            let steps = &steps;
            async move {
                loop {
                    let next = steps.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some(step) = next else {
                        return Ok::<(), anyhow::Error>(());
                    };
                    step.run(&mut *c).await?;
                }
            }
        }))
        .await?;
    }
    reset_sequences(&mut conns[0], &header.tables).await?;
    new_identity(&mut conns[0]).await?;
    for c in conns {
        let _ = sqlx::Connection::close(c).await;
    }
    Ok(seen)
}

/// Sets aside the keys, indexes, foreign keys and transition-table triggers of the
/// archive's tables in `public` and `chatctl` (Supabase's own schemas keep theirs: other
/// tables of theirs may point at them).
async fn set_aside(
    conn: &mut PgConnection,
    tables: &[TableSpec],
) -> Result<crate::db::bulk::Deferred> {
    let ours: Vec<String> = tables
        .iter()
        .filter(|t| t.schema == "public" || t.schema == "chatctl")
        .map(TableSpec::qualified)
        .collect();
    let refs: Vec<&str> = ours.iter().map(String::as_str).collect();
    crate::db::bulk::defer_with_keys(conn, &refs).await
}

/// Truncates those of `tables` (all empty by now) that nothing else refers to, in this
/// transaction, so that `COPY … FREEZE` may load them: rows written frozen and visible to
/// all, as a fresh table's are after its first `VACUUM`, without that vacuum rewriting every
/// page later. Which ones were.
///
/// A table still referenced by a foreign key (auth.users, from the identities and, on
/// Supabase, the sessions) cannot be truncated alone: it loads unfrozen. (Trying and
/// rolling back to a savepoint is no way to find out: the failed attempt also voids the
/// referencing table's truncation for FREEZE.)
async fn truncated_here(conn: &mut PgConnection, tables: &[TableSpec]) -> Result<Vec<bool>> {
    let mut frozen = Vec::with_capacity(tables.len());
    for t in tables {
        let alone: bool = sqlx::query_scalar(
            "select not exists (select 1 from pg_constraint
                                 where contype = 'f' and confrelid = $1::regclass
                                   and conrelid <> confrelid)",
        )
        .bind(t.qualified())
        .fetch_one(&mut *conn)
        .await?;
        frozen.push(alone);
    }
    let names: Vec<String> = tables
        .iter()
        .zip(&frozen)
        .filter(|(_, f)| **f)
        .map(|(t, _)| t.qualified())
        .collect();
    if !names.is_empty() {
        sqlx::raw_sql(&format!("truncate {}", names.join(", ")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(frozen)
}

/// The sha256 of each table's rows as `COPY` text (in the order a scan returns them),
/// read from the database at `url`: on a database just restored, that is the order the
/// rows were loaded in, the archive's.
async fn content_digests(
    url: &str,
    tables: &[TableSpec],
    config: &crate::config::Config,
) -> Result<Vec<String>> {
    let mut conn = crate::db::connect(url, config).await?;
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        let mut h = Sha256::new();
        let mut stream = conn
            .copy_out_raw(&format!(
                "copy {} ({}) to stdout",
                t.qualified(),
                t.column_list()
            ))
            .await?;
        while let Some(bytes) = stream.try_next().await? {
            h.update(&bytes);
        }
        drop(stream);
        out.push(hex(&h.finalize()));
    }
    Ok(out)
}

/// A rehearsal of the restore that touches nothing live: the archive is restored into a
/// scratch database made beside `url`'s (and dropped after, whatever happens), and every
/// table's rows are compared with the archive's content digests.
pub async fn verify_deep<R: Read + Send + 'static>(
    url: &str,
    input: R,
    config: &crate::config::Config,
    progress: &Progress,
) -> Result<Summary> {
    let mut admin =
        url::Url::parse(url).map_err(|e| Error::usage(format!("not a database URL: {e}")))?;
    admin.set_path("postgres");
    let name = format!(
        "chatctl_verify_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut scratch = admin.clone();
    scratch.set_path(&name);
    crate::db::create_database_if_missing(admin.as_str(), &name, config.database.connect_timeout)
        .await?;
    let result = async {
        let (summary, tables, content) = restore_reading(
            scratch.as_str(),
            input,
            &RestoreOptions {
                keep_identity: true,
                ..RestoreOptions::default()
            },
            None,
            config,
            progress,
        )
        .await?;
        let found = content_digests(scratch.as_str(), &tables, config).await?;
        if content.len() != found.len() {
            return Err(damaged(
                "the manifest has no content digests to compare with",
            ));
        }
        for ((t, want), got) in tables.iter().zip(&content).zip(&found) {
            if want != got {
                return Err(damaged(format!(
                    "{}.{} restored differs from what was backed up",
                    t.schema, t.name
                )));
            }
        }
        Ok(summary)
    }
    .await;
    let dropped = async {
        let mut c = crate::db::connect(admin.as_str(), config).await?;
        sqlx::raw_sql(&format!("drop database if exists \"{name}\" with (force)"))
            .execute(&mut c)
            .await?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    let summary = result?;
    dropped.context("cannot drop the scratch database")?;
    Ok(summary)
}
