//! `backup create`: every table from one snapshot, read by `--jobs` connections that share it,
//! cut into self-contained COPY chunks, compressed and written front to back.

use super::*;

/// The tables a backup holds: `public` and `chatctl` (but the migration history, the
/// bootstrap record and an import's staging), Supabase Auth's users and identities unless
/// `no_auth`, Storage's buckets and objects (their rows; the bytes live in Storage).
async fn tables(
    conn: &mut PgConnection,
    opts: &CreateOptions,
) -> Result<(Vec<TableSpec>, Vec<String>)> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select n.nspname::text, c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind in ('r', 'p') and not c.relispartition
            and (n.nspname in ('public', 'chatctl')
                 or (n.nspname = 'auth' and c.relname in ('users', 'identities'))
                 or (n.nspname = 'storage' and c.relname in ('buckets', 'objects')))
            and not (n.nspname = 'chatctl' and (c.relname in ('schema_migrations', 'bootstrap_objects')
                                                 or c.relname like 'user\\_import\\_%'))
          order by case n.nspname when 'auth' then 0 when 'storage' then 1 when 'public' then 2 else 3 end,
                   c.relname",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut left_out = Vec::new();
    if opts.storage.is_none() {
        left_out.push(
            "Storage's file bytes (their rows are here; --storage-dir adds the bytes)".to_owned(),
        );
    }
    let mut out = Vec::new();
    for (schema, name) in rows {
        let full = format!("{schema}.{name}");
        let excluded = opts
            .exclude
            .iter()
            .any(|e| *e == full || (schema == "public" && *e == name));
        if excluded {
            left_out.push(format!("{full} (--exclude-table)"));
            continue;
        }
        if opts.no_auth && schema == "auth" {
            left_out.push(format!("{full} (--no-auth)"));
            continue;
        }
        let columns: Vec<String> = sqlx::query_scalar(
            "select a.attname::text from pg_attribute a
              where a.attrelid = format('%I.%I', $1::text, $2::text)::regclass
                and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
              order by a.attnum",
        )
        .bind(&schema)
        .bind(&name)
        .fetch_all(&mut *conn)
        .await?;
        out.push(TableSpec {
            schema,
            name,
            columns,
        });
    }
    for e in &opts.exclude {
        let known = out.iter().any(|t| {
            format!("{}.{}", t.schema, t.name) == *e || (t.schema == "public" && t.name == *e)
        }) || left_out
            .iter()
            .any(|l| l.starts_with(&format!("{e} ")) || l.starts_with(&format!("public.{e} ")));
        if !known {
            return Err(Error::usage(format!(
                "--exclude-table `{e}`: no such table in the backup"
            ))
            .into());
        }
    }
    Ok((out, left_out))
}

/// Appends one entry, recording its checksum.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    sums: &mut Vec<EntrySum>,
    name: &str,
    bytes: &[u8],
) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, name, bytes)
        .with_context(|| format!("cannot write {name} to the archive"))?;
    sums.push(EntrySum {
        name: name.to_owned(),
        size: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    });
    Ok(())
}

/// One compressed chunk of a table, on its way to the archive.
struct Produced {
    table: usize,
    chunk: u64,
    rows: u64,
    /// Its size as COPY text.
    raw: u64,
    bytes: Vec<u8>,
}

/// Reads table `ti` on `conn` (inside the shared snapshot), sending its chunks.
async fn read_table(
    conn: &mut PgConnection,
    ti: usize,
    t: &TableSpec,
    tx: &tokio::sync::mpsc::Sender<Produced>,
) -> Result<String> {
    let mut content = Sha256::new();
    // Each frame carries a checksum of its content: a damaged chunk is refused before a
    // row of it is loaded (the manifest's sha256 is only read at the end).
    let mut compressor = zstd::bulk::Compressor::new(LEVEL)?;
    compressor.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(true))?;
    let mut chunk = 0u64;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + (1 << 16));
    let mut stream = conn
        .copy_out_raw(&format!(
            "copy {} ({}) to stdout",
            t.qualified(),
            t.column_list()
        ))
        .await
        .with_context(|| format!("cannot read {}.{}", t.schema, t.name))?;
    let mut done = false;
    while !done {
        match stream.try_next().await? {
            Some(bytes) => buf.extend_from_slice(&bytes),
            None => done = true,
        }
        // Cut after the last whole row once a chunk is full, and at the end.
        let cut = if done {
            buf.len()
        } else if buf.len() >= CHUNK {
            buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
        } else {
            0
        };
        if cut == 0 {
            continue;
        }
        let part: Vec<u8> = buf.drain(..cut).collect();
        content.update(&part);
        let rows = part.iter().filter(|b| **b == b'\n').count() as u64;
        let bytes = compressor.compress(&part)?;
        let sent = tx
            .send(Produced {
                table: ti,
                chunk,
                rows,
                raw: cut as u64,
                bytes,
            })
            .await;
        if sent.is_err() {
            // The writer stopped; its error is the one to report.
            return Ok(String::new());
        }
        chunk += 1;
    }
    Ok(hex(&content.finalize()))
}

/// The tables left to read, shared by the readers, and each table's content digest.
#[derive(Clone, Copy)]
struct Queue<'a> {
    next: &'a std::sync::atomic::AtomicUsize,
    specs: &'a [TableSpec],
    digests: &'a std::sync::Mutex<Vec<String>>,
}

impl Queue<'_> {
    /// Reads tables on `conn` until none is left.
    async fn drain(
        self,
        conn: &mut PgConnection,
        send: &tokio::sync::mpsc::Sender<Produced>,
    ) -> Result<()> {
        loop {
            let ti = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Some(t) = self.specs.get(ti) else {
                return Ok(());
            };
            let d = read_table(conn, ti, t, send).await?;
            self.digests.lock().unwrap_or_else(|e| e.into_inner())[ti] = d;
        }
    }
}

/// Writes a backup of the database to `out`: every table from ONE snapshot, read by `jobs`
/// connections that share it (`pg_export_snapshot`), written front to back. Gives `out`
/// back, flushed.
pub async fn create<W: Write>(
    pool: &sqlx::PgPool,
    opts: &CreateOptions,
    jobs: usize,
    out: W,
    progress: &Progress,
) -> Result<(Summary, W)> {
    let started = Instant::now();
    let mut lead = pool.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *lead).await?;
    sqlx::raw_sql("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    // One backup of a database at a time, wherever each writes: a session lock, released
    // at the end (or when the process dies and its session with it).
    let alone: bool =
        sqlx::query_scalar("select pg_try_advisory_lock(hashtext('chatctl backup create'))")
            .fetch_one(&mut *tx)
            .await?;
    if !alone {
        return Err(Error::new(
            Kind::TempFail,
            "another `chatctl backup create` is running on this database",
        )
        .with_help("wait for it, or run this one later (cron: space the runs)")
        .into());
    }
    let snapshot: String = sqlx::query_scalar("select pg_export_snapshot()")
        .fetch_one(&mut *tx)
        .await?;
    let server_version: String = sqlx::query_scalar("show server_version")
        .fetch_one(&mut *tx)
        .await?;
    let schema_version: Option<i64> =
        sqlx::query_scalar("select max(version) from chatctl.schema_migrations where success")
            .fetch_one(&mut *tx)
            .await
            .context("cannot read the schema version; has `chatctl migrate up` run?")?;
    let schema_version = schema_version
        .ok_or_else(|| Error::failed("the database has no chatctl schema: nothing to back up"))?;
    let (specs, left_out) = tables(&mut tx, opts).await?;
    // What the progress bar measures: the tables' size on disk, near their size as text.
    let mut estimate = 0i64;
    for t in &specs {
        let size: Option<i64> = sqlx::query_scalar("select pg_table_size($1::regclass)")
            .bind(t.qualified())
            .fetch_one(&mut *tx)
            .await?;
        estimate += size.unwrap_or(0);
    }
    if opts.storage.is_some() {
        // And the objects' bytes, as Storage recorded their sizes.
        let bytes: Option<i64> = sqlx::query_scalar(
            "select sum(case when metadata ->> 'size' ~ '^[0-9]{1,18}$' then (metadata ->> 'size')::bigint end)::bigint
               from storage.objects",
        )
        .fetch_one(&mut *tx)
        .await?;
        estimate += bytes.unwrap_or(0);
    }
    progress.set_length(estimate.max(0) as u64);
    progress.set_message("backing up");
    let header = Header {
        format: FORMAT,
        created_at: Utc::now(),
        server_version,
        schema_version,
        tables: specs.clone(),
        left_out: left_out.clone(),
    };
    let mut tar = tar::Builder::new(seal::Sink::new(out, &opts.encrypt_to)?);
    let mut sums = Vec::new();
    append(
        &mut tar,
        &mut sums,
        "header.json",
        &serde_json::to_vec_pretty(&header)?,
    )?;

    // The objects' bytes, as the snapshot lists the objects (before the tables: a restore
    // stages them and puts them in place once the rows are committed).
    let mut stored = Vec::new();
    let mut missing_files = Vec::new();
    if let Some(source) = &opts.storage {
        let mut objects = sqlx::query_as::<_, (String, String, Option<String>)>(
            "select bucket_id, name, version from storage.objects
              where bucket_id is not null and name is not null order by bucket_id, name",
        )
        .fetch(&mut *tx);
        while let Some((bucket, name, version)) = objects.try_next().await? {
            let Some((body, size)) = source.open(&bucket, &name, version.as_deref())? else {
                missing_files.push(format!("{bucket}/{name}"));
                continue;
            };
            let path = format!("{bucket}/{name}");
            let entry = format!("storage/{:08}", stored.len());
            let mut h = tar::Header::new_gnu();
            h.set_size(size);
            h.set_mode(0o600);
            h.set_mtime(0);
            h.set_cksum();
            let mut hashing = super::Hashing {
                inner: std::io::Read::take(body, size),
                hash: Sha256::new(),
                size: 0,
            };
            tar.append_data(&mut h, &entry, &mut hashing)
                .with_context(|| format!("cannot write {path} to the archive"))?;
            if hashing.size != size {
                return Err(Error::failed(format!(
                    "{path} changed while it was read: take the backup again"
                ))
                .into());
            }
            let sha256 = hex(&hashing.hash.finalize());
            sums.push(EntrySum {
                name: entry.clone(),
                size,
                sha256: sha256.clone(),
            });
            progress.advance(size);
            stored.push(StoredFile {
                entry,
                bucket,
                name,
                version,
                size,
                sha256,
            });
        }
    }

    // Readers: the lead transaction and jobs - 1 more, each in the same snapshot.
    let room = pool
        .options()
        .get_max_connections()
        .saturating_sub(1)
        .max(1) as usize;
    let jobs = jobs.clamp(1, room);
    let mut readers = Vec::with_capacity(jobs);
    for _ in 1..jobs {
        let mut c = pool.acquire().await?;
        sqlx::raw_sql(&format!(
            "begin isolation level repeatable read read only; set transaction snapshot '{}'",
            snapshot.replace('\'', "")
        ))
        .execute(&mut *c)
        .await
        .context("cannot share the backup's snapshot with another connection")?;
        readers.push(c);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (send, mut recv) = tokio::sync::mpsc::channel::<Produced>(2 * jobs);
    let digests = std::sync::Mutex::new(vec![String::new(); specs.len()]);
    let queue = Queue {
        next: &next,
        specs: &specs,
        digests: &digests,
    };
    let lead_work = {
        let send = send.clone();
        async move {
            queue.drain(&mut tx, &send).await?;
            tx.rollback().await?;
            Ok::<(), anyhow::Error>(())
        }
    };
    let others: Vec<_> = readers
        .into_iter()
        .map(|mut c| {
            let send = send.clone();
            async move {
                queue.drain(&mut c, &send).await?;
                sqlx::raw_sql("rollback").execute(&mut *c).await?;
                Ok::<(), anyhow::Error>(())
            }
        })
        .collect();
    // The writer's channel closes when every reader is done.
    drop(send);
    let work = async move {
        futures_util::future::try_join(lead_work, futures_util::future::try_join_all(others))
            .await
            .map(|_| ())
    };
    let mut counts = vec![0u64; specs.len()];
    let write = async {
        while let Some(p) = recv.recv().await {
            counts[p.table] += p.rows;
            progress.advance(p.raw);
            append(
                &mut tar,
                &mut sums,
                &format!("data/{:04}/{:06}.copy.zst", p.table, p.chunk),
                &p.bytes,
            )?;
        }
        Ok::<(), anyhow::Error>(())
    };
    let (read, written) = tokio::join!(work, write);
    written?;
    read?;
    sqlx::query("select pg_advisory_unlock(hashtext('chatctl backup create'))")
        .execute(&mut *lead)
        .await?;
    let manifest = Manifest {
        format: FORMAT,
        rows: counts.clone(),
        entries: sums,
        content: digests.into_inner().unwrap_or_else(|e| e.into_inner()),
        files: stored.clone(),
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    progress.finish();
    let mut ignored = Vec::new();
    append(&mut tar, &mut ignored, "manifest.json", &manifest_bytes)?;
    let mut out = tar
        .into_inner()
        .and_then(seal::Sink::finish)
        .context("cannot finish the archive")?;
    out.flush().context("cannot finish the archive")?;
    let bytes = manifest.entries.iter().map(|e| e.size).sum::<u64>() + manifest_bytes.len() as u64;
    let summary = Summary {
        format: FORMAT,
        created_at: header.created_at,
        schema_version,
        tables: specs.len(),
        rows: counts.iter().sum(),
        bytes,
        left_out,
        encrypted: !opts.encrypt_to.is_empty(),
        seconds: started.elapsed().as_secs_f64(),
        location: None,
        files: stored.len() as u64,
        missing_files,
        stored,
    };
    Ok((summary, out))
}
