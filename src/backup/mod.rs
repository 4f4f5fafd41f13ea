//! Backups: one archive, from one snapshot, checked end to end, restored all or nothing.
//!
//! The archive is a tar stream, written front to back with nothing staged (so it can go to
//! a pipe, and later to an object store's multipart upload, or through an encryption
//! stream):
//! 1. `header.json`: format version, when, the server's version, the schema migration
//!    version, and every table with the columns it carries (generated columns are left
//!    out: they are computed again), and what was left out;
//! 2. `data/NNNN/MMMMMM.copy.zst`: the rows of table NNNN, in chunks of at most
//!    [`CHUNK`] bytes of `COPY … TO STDOUT` text cut at row ends, each a zstd frame and a
//!    self-contained `COPY … FROM STDIN`;
//! 3. `manifest.json`, last: each table's row count and every entry's size and sha256.
//!
//! `verify` reads it once and checks every checksum and count against the manifest.
//! `restore` migrates an empty target to the archive's schema version, then loads every
//! chunk in ONE transaction, with triggers off and indexes and foreign keys built after
//! the load, and commits only when the manifest agrees with what it read: a damaged,
//! truncated or interrupted restore leaves no row behind.

use std::io::{Read, Write};
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::error::{Error, Kind, Result};
use crate::progress::Progress;

pub mod seal;
pub mod store;

/// The archive format this binary writes and reads.
pub const FORMAT: u32 = 1;

/// Uncompressed bytes per chunk.
pub const CHUNK: usize = 8 << 20;

/// zstd's level: fast, and still smaller than `pg_dump -Fc`'s zlib.
const LEVEL: i32 = 3;

/// A table in the archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableSpec {
    pub schema: String,
    pub name: String,
    pub columns: Vec<String>,
}

impl TableSpec {
    /// The `COPY … FROM STDIN` that loads this table's chunks (`freeze`: as frozen rows).
    fn copy_from(&self, freeze: bool) -> String {
        format!(
            "copy {} ({}) from stdin{}",
            self.qualified(),
            self.column_list(),
            if freeze { " with (freeze)" } else { "" }
        )
    }

    fn qualified(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The archive's first entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    pub created_at: DateTime<Utc>,
    pub server_version: String,
    pub schema_version: i64,
    pub tables: Vec<TableSpec>,
    /// What a full backup would hold and this one does not (`--no-auth`,
    /// `--exclude-table`), and what no backup holds (Storage's file bytes).
    pub left_out: Vec<String>,
}

/// One entry's checksum.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntrySum {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// The archive's last entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Rows per table, in the header's order.
    pub rows: Vec<u64>,
    /// Every entry before the manifest, in order.
    pub entries: Vec<EntrySum>,
    /// Per table, the sha256 of its rows as `COPY` text, in the order read: what a deep
    /// verify compares a restored copy with.
    #[serde(default)]
    pub content: Vec<String>,
}

/// What `backup create` was asked.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `schema.table` or `table` (in `public`).
    pub exclude: Vec<String>,
    pub no_auth: bool,
    /// age recipients (`age1…`) to encrypt the archive to; none: not encrypted.
    pub encrypt_to: Vec<String>,
}

/// What a backup holds, for people and scripts.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub format: u32,
    pub created_at: DateTime<Utc>,
    pub schema_version: i64,
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
    pub left_out: Vec<String>,
    /// Encrypted with age.
    pub encrypted: bool,
    pub seconds: f64,
    /// Where the archive was written (`create`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Summary {
    /// The summary of an archive written at `location`.
    pub fn at(self, location: String) -> Summary {
        Summary {
            location: Some(location),
            ..self
        }
    }
}

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
    let mut left_out =
        vec!["Storage's file bytes (they live in Storage; their rows are here)".to_owned()];
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

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    };
    Ok((summary, out))
}

fn damaged(message: impl Into<String>) -> anyhow::Error {
    Error::new(Kind::Damaged, message)
        .with_help("the archive is damaged or incomplete: use another backup")
        .into()
}

/// Reads an archive's entries in order, checking each against what came before: the
/// header first, data entries of the header's tables, the manifest last, and at the end
/// every size, checksum and row count against the manifest.
struct Reader<'a, R: Read> {
    entries: tar::Entries<'a, R>,
    seen: Seen,
}

/// What a [`Reader`] has read so far.
struct Seen {
    header: Header,
    sums: Vec<EntrySum>,
    rows: Vec<u64>,
    /// The manifest's content digests, once read.
    content: Vec<String>,
}

/// One chunk of rows.
struct Chunk {
    table: usize,
    text: Vec<u8>,
    /// Its size in the archive (compressed).
    stored: u64,
}

impl<'a, R: Read> Reader<'a, R> {
    fn open(archive: &'a mut tar::Archive<R>) -> Result<Reader<'a, R>> {
        let mut entries = archive
            .entries()
            .map_err(|e| damaged(format!("not a chatctl backup: {e}")))?;
        let mut first = entries
            .next()
            .ok_or_else(|| damaged("the archive is empty"))?
            .map_err(|e| damaged(format!("not a chatctl backup: {e}")))?;
        let name = first
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name != "header.json" {
            return Err(damaged(format!(
                "not a chatctl backup: it starts with `{name}`"
            )));
        }
        let mut bytes = Vec::new();
        first
            .read_to_end(&mut bytes)
            .map_err(|e| damaged(format!("cannot read the header: {e}")))?;
        let header: Header = serde_json::from_slice(&bytes)
            .map_err(|e| damaged(format!("the header is not readable: {e}")))?;
        if header.format > FORMAT {
            return Err(Error::new(
                Kind::TooNew,
                format!(
                    "the archive's format {} is newer than this chatctl's ({FORMAT})",
                    header.format
                ),
            )
            .with_help("restore it with a newer chatctl")
            .into());
        }
        let rows = vec![0; header.tables.len()];
        let sums = vec![EntrySum {
            name,
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        }];
        Ok(Reader {
            entries,
            seen: Seen {
                header,
                sums,
                rows,
                content: Vec::new(),
            },
        })
    }

    /// The next chunk, or `None` after the manifest, once everything is checked.
    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        let Some(entry) = self.entries.next() else {
            return Err(damaged(
                "the archive ends before its manifest: it is truncated",
            ));
        };
        let mut entry =
            entry.map_err(|e| damaged(format!("the archive is truncated or damaged: {e}")))?;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| damaged(format!("cannot read {name}: {e}")))?;
        if name == "manifest.json" {
            let manifest: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| damaged(format!("the manifest is not readable: {e}")))?;
            if manifest.entries != self.seen.sums {
                let bad = manifest
                    .entries
                    .iter()
                    .zip(self.seen.sums.iter())
                    .find(|(a, b)| a != b)
                    .map(|(a, _)| a.name.clone())
                    .unwrap_or_else(|| "the list of entries".into());
                return Err(damaged(format!("checksum mismatch: {bad}")));
            }
            if manifest.rows != self.seen.rows {
                return Err(damaged("the row counts differ from the manifest"));
            }
            self.seen.content = manifest.content;
            return Ok(None);
        }
        let table = name
            .strip_prefix("data/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n < self.seen.header.tables.len())
            .ok_or_else(|| damaged(format!("unexpected entry `{name}`")))?;
        self.seen.sums.push(EntrySum {
            name: name.clone(),
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        });
        let text = zstd::stream::decode_all(&bytes[..])
            .map_err(|e| damaged(format!("{name} does not decompress: {e}")))?;
        self.seen.rows[table] += text.iter().filter(|b| **b == b'\n').count() as u64;
        Ok(Some(Chunk {
            table,
            text,
            stored: bytes.len() as u64,
        }))
    }
}

/// Checks an archive: its header, every entry's checksum and size, every table's row count.
pub fn verify<R: Read>(input: R, progress: &Progress) -> Result<Summary> {
    let started = Instant::now();
    let mut archive = tar::Archive::new(input);
    let mut r = Reader::open(&mut archive)?;
    progress.set_message("verifying");
    while let Some(chunk) = r.next_chunk()? {
        progress.advance(chunk.stored);
    }
    progress.finish();
    Ok(summary(&r.seen, started))
}

fn summary(r: &Seen, started: Instant) -> Summary {
    Summary {
        format: r.header.format,
        created_at: r.header.created_at,
        schema_version: r.header.schema_version,
        tables: r.header.tables.len(),
        rows: r.rows.iter().sum(),
        bytes: r.sums.iter().map(|s| s.size).sum(),
        left_out: r.header.left_out.clone(),
        encrypted: false,
        seconds: started.elapsed().as_secs_f64(),
        location: None,
    }
}

/// What `backup restore` was asked.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Empty the archive's tables of a target that holds rows first.
    pub force: bool,
    /// Connections loading at once. Above 1, the target must not exist: the archive is
    /// loaded into a scratch database beside it, which is renamed to the target's name
    /// once whole (all or nothing, by the rename).
    pub jobs: usize,
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
    let done = restore_reading(target_url, input, opts, config, progress).await;
    progress.finish();
    Ok(done?.0)
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
    fn start<R: Read + Send + 'static>(input: R) -> ReadAhead {
        let (header_tx, header) = tokio::sync::oneshot::channel();
        let (tx, chunks) = tokio::sync::mpsc::channel(2);
        let done = tokio::task::spawn_blocking(move || {
            let mut archive = tar::Archive::new(input);
            let mut r = Reader::open(&mut archive)?;
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
    config: &crate::config::Config,
    progress: &Progress,
) -> Result<(Summary, Vec<TableSpec>, Vec<String>)> {
    progress.set_message("restoring");
    let started = Instant::now();
    let mut read = ReadAhead::start(input);
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
    let mut conn = crate::db::migrate::connect(target_url, config.connect_timeout()?).await?;
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
    let mut conn = crate::db::migrate::connect(url, config.connect_timeout()?).await?;
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
    crate::db::create_database_if_missing(admin.as_str(), &name, config.connect_timeout()?).await?;
    let result = async {
        let (summary, tables, content) = restore_reading(
            scratch.as_str(),
            input,
            &RestoreOptions::default(),
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

/// An archive found by `list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub path: String,
    pub created_at: DateTime<Utc>,
    pub bytes: u64,
    /// Unknown for an encrypted archive (its header is encrypted too).
    pub schema_version: Option<i64>,
    pub rows: Option<u64>,
    pub encrypted: bool,
    /// Whole (its manifest read), or why not.
    pub complete: bool,
}

/// Where backups are listed and pruned: a directory, or an object store prefix.
pub enum Place {
    Local(std::path::PathBuf),
    Remote(store::Remote),
}

impl Place {
    pub fn parse(s: &str, endpoint: Option<&str>) -> Result<Place> {
        Ok(if store::is_remote(s) {
            Place::Remote(store::Remote::parse(s, endpoint)?)
        } else {
            Place::Local(s.into())
        })
    }
}

/// A listed archive of an encrypted one: only the object is known (its header is
/// encrypted too): when it was written, which is when the backup ended, and its size.
fn sealed(path: String, bytes: u64, written: DateTime<Utc>) -> Listed {
    Listed {
        path,
        created_at: written,
        bytes,
        schema_version: None,
        rows: None,
        encrypted: true,
        complete: true,
    }
}

/// What an archive's header and manifest (when found) say of it.
fn listed(path: String, bytes: u64, header: &Header, manifest: Option<&[u8]>) -> Listed {
    let rows = manifest
        .and_then(|m| serde_json::from_slice::<Manifest>(m).ok())
        .map(|m| m.rows.iter().sum());
    Listed {
        path,
        created_at: header.created_at,
        bytes,
        schema_version: Some(header.schema_version),
        complete: rows.is_some(),
        rows,
        encrypted: false,
    }
}

/// Reads a local archive's header and manifest (the data entries are skipped, not
/// decompressed).
fn describe(path: &std::path::Path) -> Option<Listed> {
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let bytes = meta.len();
    let name = path.display().to_string();
    let mut input = std::io::BufReader::new(file);
    if seal::is_sealed(&mut input).ok()? {
        return Some(sealed(name, bytes, meta.modified().ok()?.into()));
    }
    let mut archive = tar::Archive::new(input);
    let mut entries = archive.entries().ok()?;
    let mut first = entries.next()?.ok()?;
    if first.path().ok()?.to_string_lossy() != "header.json" {
        return None;
    }
    let mut text = Vec::new();
    first.read_to_end(&mut text).ok()?;
    let header: Header = serde_json::from_slice(&text).ok()?;
    drop(first);
    let mut manifest = None;
    for e in entries {
        let Ok(mut e) = e else { break };
        if e.path()
            .ok()
            .is_some_and(|p| p.to_string_lossy() == "manifest.json")
        {
            let mut text = Vec::new();
            if e.read_to_end(&mut text).is_ok() {
                manifest = Some(text);
            }
        }
    }
    Some(listed(name, bytes, &header, manifest.as_deref()))
}

/// Reads an object's header (its first bytes) and manifest (its last bytes: the manifest is
/// the last entry), without downloading the rest.
fn describe_remote(r: &store::Remote, bytes: u64, written: DateTime<Utc>) -> Option<Listed> {
    let head = r.range(0, bytes.min(1 << 20)).ok()?;
    if head.starts_with(b"age-encryption.org/v1") {
        return Some(sealed(r.location(), bytes, written));
    }
    let mut archive = tar::Archive::new(&head[..]);
    let mut first = archive.entries().ok()?.next()?.ok()?;
    if first.path().ok()?.to_string_lossy() != "header.json" {
        return None;
    }
    let mut text = Vec::new();
    first.read_to_end(&mut text).ok()?;
    let header: Header = serde_json::from_slice(&text).ok()?;
    // Tar blocks are 512 bytes from the start of the archive: look for the manifest's.
    let len = bytes.min(4 << 20);
    let start = bytes - len;
    let tail = r.range(start, len).ok()?;
    let skip = ((512 - start % 512) % 512) as usize;
    let manifest = (skip..tail.len().saturating_sub(512))
        .step_by(512)
        .find_map(|at| {
            let h = tar::Header::from_byte_slice(&tail[at..at + 512]);
            if h.path().ok()?.to_string_lossy() != "manifest.json" {
                return None;
            }
            let size = h.entry_size().ok()? as usize;
            tail.get(at + 512..at + 512 + size)
        });
    Some(listed(r.location(), bytes, &header, manifest))
}

/// The backups in a place, newest first (partial files and other files are not backups).
pub fn list(place: &Place) -> Result<Vec<Listed>> {
    let mut out: Vec<Listed> = match place {
        Place::Local(dir) => {
            let read = std::fs::read_dir(dir).map_err(|e| {
                anyhow::Error::from(e)
                    .context(Error::usage(format!("cannot read {}", dir.display())))
            })?;
            read.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "partial"))
                .filter_map(|p| describe(&p))
                .collect()
        }
        Place::Remote(r) => r
            .list()?
            .iter()
            .filter_map(|(at, bytes, written)| describe_remote(at, *bytes, *written))
            .collect(),
    };
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.path.cmp(&b.path)));
    Ok(out)
}

/// How many of the newest backups to keep in all and per period (restic's and borg's
/// policy: in each of the last N days, weeks, months, the newest backup of that period).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub last: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
}

/// A period a time falls in: (year, day of the year / ISO week / month).
type Period = fn(&DateTime<Utc>) -> (i32, u32);

/// Which of `times` (newest first) the policy keeps, by index.
pub fn kept(times: &[DateTime<Utc>], policy: Retention) -> std::collections::BTreeSet<usize> {
    use chrono::Datelike as _;
    let mut keep: std::collections::BTreeSet<usize> = (0..times.len().min(policy.last)).collect();
    let periods: [(usize, Period); 3] = [
        (policy.daily, |t| (t.year(), t.ordinal())),
        (policy.weekly, |t| {
            (t.iso_week().year(), t.iso_week().week())
        }),
        (policy.monthly, |t| (t.year(), t.month())),
    ];
    for (n, period) in periods {
        let mut seen = Vec::new();
        for (i, t) in times.iter().enumerate() {
            if seen.len() == n {
                break;
            }
            let p = period(t);
            if !seen.contains(&p) {
                seen.push(p);
                keep.insert(i);
            }
        }
    }
    keep
}

/// What `prune` kept and removed.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub dry_run: bool,
    pub kept: Vec<Listed>,
    pub removed: Vec<Listed>,
}

/// Removes the complete backups in `dir` the policy does not keep (incomplete ones are
/// left for a person to look at).
pub fn prune(place: &Place, policy: Retention, dry_run: bool) -> Result<Pruned> {
    if policy == Retention::default() {
        return Err(Error::usage(
            "prune needs a policy: --keep-last, --keep-daily, --keep-weekly or --keep-monthly",
        )
        .into());
    }
    let all: Vec<Listed> = list(place)?.into_iter().filter(|l| l.complete).collect();
    let times: Vec<DateTime<Utc>> = all.iter().map(|l| l.created_at).collect();
    let keep = kept(&times, policy);
    let (mut kept_list, mut removed) = (Vec::new(), Vec::new());
    for (i, l) in all.into_iter().enumerate() {
        if keep.contains(&i) {
            kept_list.push(l);
        } else {
            if !dry_run {
                match place {
                    Place::Local(_) => std::fs::remove_file(&l.path)
                        .with_context(|| format!("cannot remove {}", l.path))?,
                    Place::Remote(r) => r.at(&l.path).delete()?,
                }
            }
            removed.push(l);
        }
    }
    Ok(Pruned {
        dry_run,
        kept: kept_list,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn retention_keeps_the_newest_of_each_period() {
        // Newest first: three today, one a day for a week back, then monthly ones.
        let times: Vec<DateTime<Utc>> = [
            "2026-12-02T18:00:00Z",
            "2026-12-02T12:00:00Z",
            "2026-12-02T06:00:00Z",
            "2026-12-01T06:00:00Z",
            "2026-11-30T06:00:00Z",
            "2026-11-29T06:00:00Z",
            "2026-11-23T06:00:00Z",
            "2026-11-01T06:00:00Z",
            "2026-10-15T06:00:00Z",
            "2026-09-15T06:00:00Z",
        ]
        .iter()
        .map(|s| at(s))
        .collect();
        let k = |last, daily, weekly, monthly| {
            kept(
                &times,
                Retention {
                    last,
                    daily,
                    weekly,
                    monthly,
                },
            )
            .into_iter()
            .collect::<Vec<_>>()
        };
        assert_eq!(k(2, 0, 0, 0), [0, 1]);
        // The newest of each of the last 3 days: Dec 2 (18:00), Dec 1, Nov 30.
        assert_eq!(k(0, 3, 0, 0), [0, 3, 4]);
        // ISO weeks: Dec 2/1/Nov 30 are week 49, Nov 29 and 23 are week 48, Nov 1 week 44.
        assert_eq!(k(0, 0, 3, 0), [0, 5, 7]);
        // Months: December, November, October.
        assert_eq!(k(0, 0, 0, 3), [0, 4, 8]);
        assert_eq!(k(1, 2, 2, 4), [0, 3, 4, 5, 8, 9]);
    }
}
