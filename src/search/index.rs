//! The index on disk: its schema, its generations, and the two ways it is brought up to date.
//!
//! Layout under the index directory (`search.index_dir`, default `.chatctl/search`):
//! `gen-<time>-<pid>/` are tantivy indexes; `CURRENT` names the one in use. A full rebuild
//! writes a new generation and then replaces `CURRENT` by rename, so readers see the old
//! index or the new one, never a half-built one; a crash mid-build leaves `CURRENT` as it was
//! (the orphan is removed by the next rebuild). Each commit carries its watermark (see the
//! migration `0007_search_log`) as the commit's payload, so the documents and the watermark
//! they reflect can never disagree.
//!
//! Over 900 lines, on purpose: the index's generations, its full rebuild and its
//! incremental update share the on-disk layout and the locking described here.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use tantivy::schema::{
    DateOptions, DateTimePrecision, FAST, Field, INDEXED, IndexRecordOption, STORED, STRING,
    Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{Index, IndexWriter, TantivyDocument, Term};
use uuid::Uuid;

use super::analyzer;
use crate::db::Pool;
use crate::error::{Error, Kind, Result};

/// Bumped when the schema or the analyzer changes: an index of another format is rebuilt.
/// 4: `channel` is a fast field too (a user's readable channels filter through it).
/// 5: the words of a message's file names and its files' types (`file:`, `type:`).
const FORMAT: u32 = 5;

/// The fields of a document. Messages and channels share one index (`kind` tells them apart).
#[derive(Clone, Copy)]
pub struct Fields {
    pub kind: Field,
    pub id: Field,
    /// The id's two halves as columns, which `verify` reads (no dictionary to build).
    pub id_hi: Field,
    pub id_lo: Field,
    /// What `verify` compares: `updated_at` and, for a message, whether it has a file.
    pub version: Field,
    pub text: Field,
    pub name: Field,
    pub author: Field,
    pub channel: Field,
    pub workspace: Field,
    pub thread: Field,
    pub mentions: Field,
    pub flags: Field,
    /// The words of the message's file names (`file:`), and its files' families (`type:`).
    pub file_words: Field,
    pub file_types: Field,
    pub created_at: Field,
    /// The UTC day of `created_at` (days since 1970-01-01), indexed: date filters match whole
    /// days by term, where a range over `created_at` itself would scan its column.
    pub day: Field,
}

pub const MESSAGE: &str = "m";
pub const CHANNEL: &str = "c";

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text_options = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(analyzer::NAME)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        kind: b.add_text_field("kind", STRING),
        // The 16 bytes of the UUID: a third of the text form's terms to build (every document
        // has its own), and still a term to delete or replace a document by.
        id: b.add_bytes_field("id", INDEXED | STORED),
        id_hi: b.add_u64_field("id_hi", FAST),
        id_lo: b.add_u64_field("id_lo", FAST),
        version: b.add_i64_field("version", FAST),
        text: b.add_text_field("text", text_options),
        name: b.add_text_field("name", STRING | STORED),
        author: b.add_text_field("author", STRING | STORED),
        // Fast too: a search as a user keeps the documents of the channels they may read by
        // looking each candidate's channel up in its column (a few hundred lookups), where a
        // filter on the terms would read every readable channel's postings.
        channel: b.add_text_field("channel", STRING | STORED | FAST),
        workspace: b.add_text_field("workspace", STRING | STORED),
        // Shown with a hit, never searched.
        thread: b.add_text_field("thread", STORED),
        mentions: b.add_text_field("mentions", STRING),
        flags: b.add_text_field("flags", STRING | STORED),
        file_words: b.add_text_field("file_words", STRING),
        file_types: b.add_text_field("file_types", STRING),
        created_at: b.add_date_field(
            "created_at",
            DateOptions::from(STORED | FAST).set_precision(DateTimePrecision::Seconds),
        ),
        day: b.add_i64_field("day", INDEXED),
    };
    (b.build(), fields)
}

/// What a commit of the index records about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub format: u32,
    /// Every transaction below this id had finished when the documents were read.
    pub watermark: u64,
    pub synced_at: DateTime<Utc>,
    /// When this generation was built in full.
    pub built_at: DateTime<Utc>,
    /// The database it was built from: its key (`chatctl.search_state.database_key`) and
    /// its oid (a database made from a template, or a copy, has the template's key).
    #[serde(default)]
    pub database: Option<String>,
}

/// An open generation of the index.
pub struct Generation {
    pub name: String,
    pub index: Index,
    pub fields: Fields,
    pub payload: Payload,
}

impl Generation {
    fn open(dir: &Path, name: &str) -> Result<Generation> {
        let path = dir.join(name);
        let index = Index::open_in_dir(&path)
            .with_context(|| format!("cannot open the search index {}", path.display()))?;
        index
            .tokenizers()
            .register(analyzer::NAME, analyzer::ChatTokenizer);
        let (schema, fields) = schema();
        let payload: Option<Payload> = index
            .load_metas()?
            .payload
            .and_then(|p| serde_json::from_str(&p).ok());
        let payload = match payload {
            Some(p) if p.format == FORMAT && index.schema() == schema => p,
            _ => {
                return Err(Error::new(
                    Kind::Failed,
                    format!(
                        "the search index {} was written by another version of chatctl",
                        path.display()
                    ),
                )
                .with_help("rebuild it: chatctl search reindex --full")
                .into());
            }
        };
        Ok(Generation {
            name: name.to_owned(),
            index,
            fields,
            payload,
        })
    }

    /// Documents by kind: (messages, channels).
    pub fn counts(&self) -> Result<(u64, u64)> {
        let searcher = self.index.reader()?.searcher();
        let count = |kind: &str| -> Result<u64> {
            let q = tantivy::query::TermQuery::new(
                Term::from_field_text(self.fields.kind, kind),
                IndexRecordOption::Basic,
            );
            Ok(searcher.search(&q, &tantivy::collector::Count)? as u64)
        };
        Ok((count(MESSAGE)?, count(CHANNEL)?))
    }
}

/// The index directory.
#[derive(Debug, Clone)]
pub struct IndexDir {
    pub path: PathBuf,
}

impl IndexDir {
    pub fn new(path: impl Into<PathBuf>) -> IndexDir {
        IndexDir { path: path.into() }
    }

    fn current_file(&self) -> PathBuf {
        self.path.join("CURRENT")
    }

    /// The generation in use, if there is one.
    pub fn current_name(&self) -> Result<Option<String>> {
        match std::fs::read_to_string(self.current_file()) {
            Ok(s) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read {}", self.current_file().display()))
            }
        }
    }

    /// Opens the generation in use; `None` when no index has been built.
    pub fn open(&self) -> Result<Option<Generation>> {
        match self.current_name()? {
            Some(name) => Ok(Some(Generation::open(&self.path, &name)?)),
            None => Ok(None),
        }
    }

    /// Opens the generation in use, or says how to build one.
    pub fn open_existing(&self) -> Result<Generation> {
        self.open()?.ok_or_else(|| {
            Error::usage(format!(
                "there is no search index in {}",
                self.path.display()
            ))
            .with_help("build it: chatctl search reindex")
            .into()
        })
    }

    /// Makes `name` the generation in use, atomically.
    fn publish(&self, name: &str) -> Result<()> {
        let tmp = self
            .path
            .join(format!("CURRENT.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{name}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.current_file())?;
        std::fs::File::open(&self.path)?.sync_all()?;
        Ok(())
    }

    /// Removes every generation but the one in use (orphans of crashed builds included).
    /// Called with the build lock held, so no other build is in progress.
    fn remove_old(&self, keep: &str) {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("gen-")
                && name != keep
                && let Err(err) = std::fs::remove_dir_all(e.path())
            {
                tracing::warn!(%err, generation = %name, "could not remove an old search index generation");
            }
        }
    }

    /// Takes the lock only one full build at a time may hold.
    fn build_lock(&self) -> Result<std::fs::File> {
        crate::owner_only::create_dir_all(&self.path)
            .with_context(|| format!("cannot create {}", self.path.display()))?;
        let f = std::fs::File::create(self.path.join("build.lock"))?;
        match f.try_lock() {
            Ok(()) => Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
                Kind::TempFail,
                format!(
                    "another chatctl is rebuilding the search index in {}",
                    self.path.display()
                ),
            )
            .into()),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}

/// One message as the index holds it.
struct MessageRow {
    id: Uuid,
    channel: Uuid,
    workspace: Uuid,
    author: Uuid,
    parent: Option<Uuid>,
    text: String,
    mentions: Option<String>,
    has_file: bool,
    total_replies: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    edited: bool,
    /// Its files as `[[name, mime], …]` (attachments rows) and as the message lists them.
    attached: Option<String>,
    listed: Option<String>,
}

/// Files listed in the message itself (besides rows of `public.attachments`).
const LISTED_FILES: &str = "coalesce(jsonb_array_length(c.message -> 'attachments'), 0) > 0";

/// `a.message_id` is set for every message `c` with attachments (a hash join on a full read).
const ATTACHED_JOIN: &str =
    "left join (select distinct message_id from public.attachments) a on a.message_id = c.id";

/// For a full read: each message with attachments, their `[[name, mime], …]`.
const ATTACHED_FILES_JOIN: &str = "left join (select message_id, jsonb_agg(jsonb_build_array(name, mime_type)) as files \
     from public.attachments group by message_id) a on a.message_id = c.id";

/// For a few messages: each one's attachments, by the attachments' index (one probe each).
const ATTACHED_FILES_OF_EACH: &str = "left join lateral (select jsonb_agg(jsonb_build_array(a.name, a.mime_type)) as files \
     from public.attachments a where a.message_id = c.id) a on true";

/// What a document's version is, and `verify` compares: the row's `updated_at` in µs,
/// doubled, plus 1 for a message with a file (an attachment added later changes the file
/// flag, not `updated_at`).
fn version(updated_at: DateTime<Utc>, has_file: bool) -> i64 {
    updated_at.timestamp_micros() * 2 + i64::from(has_file)
}

/// The select of [`MessageRow`]s (callers add a `where`): every message (`full`), with
/// the messages that have attachments hash-joined, or a few, each probing the attachments'
/// index (hashing the whole table for a handful of rows would cost more).
fn message_select(full: bool) -> String {
    let (attached, files, join) = if full {
        ("a.message_id is not null", "a.files", ATTACHED_FILES_JOIN)
    } else {
        ("a.files is not null", "a.files", ATTACHED_FILES_OF_EACH)
    };
    format!(
        "select c.id, c.channel_id, ch.workspace_id, c.user_id, c.parent_id, c.message ->> 'text', \
           (c.message -> 'mentions')::text, \
           {LISTED_FILES} or {attached}, \
           c.total_replies, c.created_at, c.updated_at, c.modified_at is not null, \
           {files}::text, (c.message -> 'attachments')::text \
         from public.chat c join public.channels ch on ch.id = c.channel_id {join}"
    )
}

fn message_row(row: &sqlx::postgres::PgRow) -> Result<MessageRow, sqlx::Error> {
    Ok(MessageRow {
        id: row.try_get(0)?,
        channel: row.try_get(1)?,
        workspace: row.try_get(2)?,
        author: row.try_get(3)?,
        parent: row.try_get(4)?,
        text: row.try_get(5)?,
        mentions: row.try_get(6)?,
        has_file: row.try_get(7)?,
        total_replies: row.try_get(8)?,
        created_at: row.try_get(9)?,
        updated_at: row.try_get(10)?,
        edited: row.try_get(11)?,
        attached: row.try_get(12)?,
        listed: row.try_get(13)?,
    })
}

/// The `(name, mime)` of a message's files, from both places they are kept.
fn message_files(m: &MessageRow) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(rows) = m
        .attached
        .as_deref()
        .and_then(|t| serde_json::from_str::<Vec<(Option<String>, Option<String>)>>(t).ok())
    {
        out.extend(
            rows.into_iter()
                .map(|(n, t)| (n.unwrap_or_default(), t.unwrap_or_default())),
        );
    }
    if let Some(list) = m
        .listed
        .as_deref()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
    {
        for e in list.as_array().into_iter().flatten() {
            let field = |k: &str| {
                e.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            out.push((field("name"), field("mime_type")));
        }
    }
    out
}

static LINK: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"(?i)https?://").expect("a valid regex"));

/// Whether text has a link, as `search --engine postgres` decides it (`~* 'https?://'`).
pub fn has_link(text: &str) -> bool {
    LINK.is_match(text)
}

fn tantivy_date(t: DateTime<Utc>) -> tantivy::DateTime {
    tantivy::DateTime::from_timestamp_micros(t.timestamp_micros())
}

/// The UTC day of `t`, as days since 1970-01-01.
pub fn day_number(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

fn add_id(f: &Fields, d: &mut TantivyDocument, id: Uuid) {
    let (hi, lo) = id.as_u64_pair();
    d.add_bytes(f.id, id.as_bytes().as_slice());
    d.add_u64(f.id_hi, hi);
    d.add_u64(f.id_lo, lo);
}

/// The term a document is found by to delete or replace it.
fn id_term(f: &Fields, id: Uuid) -> Term {
    Term::from_field_bytes(f.id, id.as_bytes())
}

fn message_doc(f: &Fields, m: &MessageRow) -> TantivyDocument {
    let mut d = TantivyDocument::default();
    d.add_text(f.kind, MESSAGE);
    add_id(f, &mut d, m.id);
    d.add_i64(f.version, version(m.updated_at, m.has_file));
    d.add_text(f.text, &m.text);
    d.add_text(f.author, m.author.to_string());
    d.add_text(f.channel, m.channel.to_string());
    d.add_text(f.workspace, m.workspace.to_string());
    let in_thread = m.parent.is_some() || m.total_replies > 0;
    if in_thread {
        d.add_text(f.thread, m.parent.unwrap_or(m.id).to_string());
        d.add_text(f.flags, "thread");
    }
    if let Some(mentions) = &m.mentions
        && let Ok(ids) = serde_json::from_str::<Vec<serde_json::Value>>(mentions)
    {
        for id in ids.iter().filter_map(|v| v.as_str()) {
            d.add_text(f.mentions, id.to_lowercase());
        }
    }
    if m.has_file {
        d.add_text(f.flags, "file");
    }
    let mut words = HashSet::new();
    let mut types = HashSet::new();
    for (name, mime) in message_files(m) {
        words.extend(super::files::name_words(&name));
        types.extend(super::files::families(&mime));
    }
    for w in words {
        d.add_text(f.file_words, w);
    }
    for t in types {
        d.add_text(f.file_types, t);
    }
    if has_link(&m.text) {
        d.add_text(f.flags, "link");
    }
    if m.edited {
        d.add_text(f.flags, "edited");
    }
    d.add_date(f.created_at, tantivy_date(m.created_at));
    d.add_i64(f.day, day_number(m.created_at));
    d
}

struct ChannelRow {
    id: Uuid,
    workspace: Uuid,
    name: Option<String>,
    kind: String,
    topic: String,
    description: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const CHANNEL_COLUMNS: &str =
    "id, workspace_id, name, kind, topic, description, created_at, updated_at";

fn channel_row(row: &sqlx::postgres::PgRow) -> Result<ChannelRow, sqlx::Error> {
    Ok(ChannelRow {
        id: row.try_get(0)?,
        workspace: row.try_get(1)?,
        name: row.try_get(2)?,
        kind: row.try_get(3)?,
        topic: row.try_get(4)?,
        description: row.try_get(5)?,
        created_at: row.try_get(6)?,
        updated_at: row.try_get(7)?,
    })
}

fn channel_doc(f: &Fields, c: &ChannelRow) -> TantivyDocument {
    let mut d = TantivyDocument::default();
    d.add_text(f.kind, CHANNEL);
    add_id(f, &mut d, c.id);
    d.add_i64(f.version, version(c.updated_at, false));
    // Direct messages have no name, topic or description worth finding; they are indexed
    // (so verify can account for every channel) with no text.
    let text = [c.name.as_deref().unwrap_or(""), &c.topic, &c.description]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    d.add_text(f.text, text);
    if let Some(name) = &c.name {
        d.add_text(f.name, name);
    }
    d.add_text(f.flags, &c.kind);
    d.add_text(f.channel, c.id.to_string());
    d.add_text(f.workspace, c.workspace.to_string());
    d.add_date(f.created_at, tantivy_date(c.created_at));
    d.add_i64(f.day, day_number(c.created_at));
    d
}

/// Begins the read of a sync or build: a repeatable-read, read-only transaction, and the
/// xmin of its snapshot (the watermark the documents read in it will reflect).
/// Which database an index reflects: its key (`chatctl.search_state.database_key`, new
/// with each migrated or restored database) and its oid (new with each database made, from
/// a template or not), as `key/oid`.
async fn database_key(conn: &mut sqlx::PgConnection) -> Result<String> {
    sqlx::query_scalar(&format!("select {DATABASE_KEY} {DATABASE_KEY_FROM}"))
        .fetch_one(conn)
        .await
        .context("cannot read the search state (is the database migrated?)")
}

/// [`database_key`]'s expression and its `from`, read as JSON: a database not yet migrated to
/// 0017 has no key (`unkeyed`), and its index is rebuilt once after the migration.
const DATABASE_KEY: &str =
    "coalesce(to_jsonb(s) ->> 'database_key', 'unkeyed') || '/' || d.oid::text";
const DATABASE_KEY_FROM: &str =
    "from chatctl.search_state s, pg_database d where d.datname = current_database()";

/// Stops using an index built from another database than `pool`'s (its generation stays on
/// disk until the next build removes it): until one is built, searches have no index (the
/// API answers them with PostgreSQL) rather than another database's documents. Whether it
/// did.
pub async fn retire_if_foreign(pool: &Pool, dir: &IndexDir) -> Result<bool> {
    let Ok(Some(g)) = dir.open() else {
        return Ok(false);
    };
    if check_database(pool, &g).await.is_ok() {
        return Ok(false);
    }
    match std::fs::remove_file(dir.current_file()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot retire {}", dir.current_file().display())),
    }
}

/// Refuses an index built from another database than `pool`'s (its documents are not this
/// database's): for a query, which does not rebuild.
pub async fn check_database(pool: &Pool, g: &Generation) -> Result<()> {
    let mut conn = pool.acquire().await?;
    if g.payload.database.as_deref() != Some(database_key(&mut conn).await?.as_str()) {
        return Err(Error::new(
            Kind::Failed,
            "the search index was built from another database (or before chatctl recorded which)",
        )
        .with_help("bring it up to date: chatctl search reindex (it rebuilds it in full)")
        .into());
    }
    Ok(())
}

async fn begin_snapshot(pool: &Pool) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, u64)> {
    let mut tx = pool.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let xmin: i64 =
        sqlx::query_scalar("select pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&mut *tx)
            .await?;
    Ok((tx, xmin as u64))
}

/// What a full build or a sync did.
#[derive(Debug, Clone, Serialize)]
pub struct IndexReport {
    pub mode: &'static str,
    pub generation: String,
    pub messages: u64,
    pub channels: u64,
    pub deleted: u64,
    pub watermark: u64,
    pub elapsed_ms: u64,
    pub docs_per_sec: u64,
    pub size_bytes: u64,
    /// Why a sync turned into a full build, if it did.
    pub note: Option<String>,
}

/// Progress of a full build: called with the number of documents added so far.
pub type OnProgress<'a> = &'a (dyn Fn(u64) + Sync);

/// Options of a full build.
pub struct BuildOptions {
    /// Indexing threads.
    pub threads: usize,
    /// Memory budget of the indexing threads together, in bytes.
    pub memory: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4);
        BuildOptions {
            threads,
            memory: threads * (64 << 20),
        }
    }
}

/// Builds a new generation from the whole database and makes it the one in use.
pub async fn build(
    pool: &Pool,
    dir: &IndexDir,
    opts: &BuildOptions,
    on_progress: OnProgress<'_>,
) -> Result<IndexReport> {
    let started = Instant::now();
    let _lock = dir.build_lock()?;
    let name = format!(
        "gen-{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    );
    let path = dir.path.join(&name);
    crate::owner_only::create_dir_all(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let (schema, fields) = schema();
    let index = Index::create_in_dir(&path, schema)
        .with_context(|| format!("cannot create a search index in {}", path.display()))?;
    index
        .tokenizers()
        .register(analyzer::NAME, analyzer::ChatTokenizer);
    let writer = open_writer(&index, opts.threads, opts.memory)?;

    let (mut tx, watermark) = begin_snapshot(pool).await?;
    let database = database_key(&mut tx).await?;
    let (messages, channels) = add_all(&mut tx, &writer, &fields, None, on_progress).await?;
    tx.commit().await?;
    on_progress(messages);
    let now = Utc::now();
    let payload = Payload {
        format: FORMAT,
        watermark,
        synced_at: now,
        built_at: now,
        database: Some(database),
    };
    commit(writer, payload).await?;
    dir.publish(&name)?;
    dir.remove_old(&name);
    let elapsed = started.elapsed();
    Ok(IndexReport {
        mode: "full",
        generation: name,
        messages,
        channels,
        deleted: 0,
        watermark,
        elapsed_ms: elapsed.as_millis() as u64,
        docs_per_sec: ((messages + channels) as f64 / elapsed.as_secs_f64().max(1e-3)) as u64,
        size_bytes: dir_size(&path),
        note: None,
    })
}

/// Adds every channel and message (not deleted) of the database, or of one workspace, as the
/// transaction sees them. Returns (messages, channels).
async fn add_all(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    writer: &IndexWriter<TantivyDocument>,
    fields: &Fields,
    workspace: Option<Uuid>,
    on_progress: OnProgress<'_>,
) -> Result<(u64, u64)> {
    let mut channels = 0u64;
    let sql = format!(
        "select {CHANNEL_COLUMNS} from public.channels where $1::uuid is null or workspace_id = $1"
    );
    let mut rows = sqlx::query(&sql).bind(workspace).fetch(&mut **tx);
    while let Some(row) = rows.try_next().await? {
        writer.add_document(channel_doc(fields, &channel_row(&row)?))?;
        channels += 1;
    }
    drop(rows);
    let mut messages = 0u64;
    let sql = format!(
        "{} where not c.is_deleted and ($1::uuid is null or ch.workspace_id = $1)",
        message_select(true)
    );
    let mut rows = sqlx::query(&sql).bind(workspace).fetch(&mut **tx);
    while let Some(row) = rows.try_next().await? {
        writer.add_document(message_doc(fields, &message_row(&row)?))?;
        messages += 1;
        if messages.is_multiple_of(4096) {
            on_progress(messages);
        }
    }
    Ok((messages, channels))
}

/// Rebuilds one workspace's documents in the index in use, in one commit (readers see the
/// old documents or the new ones). The watermark stays: changes elsewhere are applied by the
/// next sync.
pub async fn rebuild_workspace(
    pool: &Pool,
    dir: &IndexDir,
    workspace: Uuid,
    on_progress: OnProgress<'_>,
) -> Result<IndexReport> {
    let started = Instant::now();
    let g = dir.open_existing()?;
    let writer = open_writer(&g.index, BuildOptions::default().threads, 64 << 20)?;
    writer.delete_term(Term::from_field_text(
        g.fields.workspace,
        &workspace.to_string(),
    ));
    let (mut tx, _) = begin_snapshot(pool).await?;
    let (messages, channels) =
        add_all(&mut tx, &writer, &g.fields, Some(workspace), on_progress).await?;
    tx.commit().await?;
    let payload = g.payload.clone();
    commit(writer, payload).await?;
    let elapsed = started.elapsed();
    Ok(IndexReport {
        mode: "workspace",
        generation: g.name.clone(),
        messages,
        channels,
        deleted: 0,
        watermark: g.payload.watermark,
        elapsed_ms: elapsed.as_millis() as u64,
        docs_per_sec: ((messages + channels) as f64 / elapsed.as_secs_f64().max(1e-3)) as u64,
        size_bytes: dir_size(&dir.path.join(&g.name)),
        note: None,
    })
}

/// A writer on an index; another process writing to it is a clear, retryable error.
fn open_writer(
    index: &Index,
    threads: usize,
    memory: usize,
) -> Result<IndexWriter<TantivyDocument>> {
    let threads = threads.max(1);
    match index.writer_with_num_threads(threads, memory.max(threads * 15_000_000)) {
        Ok(w) => Ok(w),
        Err(tantivy::TantivyError::LockFailure(..)) => Err(Error::new(
            Kind::TempFail,
            "another chatctl (the bot daemon?) is writing to the search index",
        )
        .with_help("the daemon keeps the index up to date by itself; try again in a moment")
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// Commits what the writer holds, with its payload, and waits for its merges.
async fn commit(mut writer: IndexWriter<TantivyDocument>, payload: Payload) -> Result<()> {
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&serde_json::to_string(&payload)?);
        prepared.commit()?;
        writer.wait_merging_threads()?;
        Ok(())
    })
    .await
    .context("the indexing task failed")?
}

/// Bytes on disk under `path`.
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// How many messages (not deleted) there are: the size of a full build.
pub async fn message_count(pool: &Pool) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("select count(*) from public.chat where not is_deleted")
        .fetch_one(pool)
        .await?;
    Ok(n as u64)
}

/// The oldest watermark the change log can still bring up to date.
pub async fn horizon(pool: &Pool) -> Result<u64> {
    let h: i64 = sqlx::query_scalar("select horizon::text::bigint from chatctl.search_state")
        .fetch_one(pool)
        .await
        .context("cannot read the search change log's state (is the database migrated?)")?;
    Ok(h as u64)
}

/// Entries of the change log at or past a watermark: the work a sync would do.
pub async fn backlog(pool: &Pool, watermark: u64) -> Result<u64> {
    let n: i64 =
        sqlx::query_scalar("select count(*) from chatctl.search_log where xid >= $1::text::xid8")
            .bind(watermark.to_string())
            .fetch_one(pool)
            .await?;
    Ok(n as u64)
}

/// Deletes change-log entries older than `retention`, moving the horizon past them.
pub async fn prune(pool: &Pool, retention: chrono::Duration) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let (n, newest): (i64, Option<String>) = sqlx::query_as(
        "with gone as (delete from chatctl.search_log where at < now() - $1::interval returning xid)
         select count(*), max(xid)::text from gone",
    )
    .bind(format!("{} seconds", retention.num_seconds()))
    .fetch_one(&mut *tx)
    .await?;
    if let Some(newest) = newest {
        sqlx::query(
            "update chatctl.search_state set horizon = greatest(horizon, ($1::text::bigint + 1)::text::xid8)",
        )
        .bind(newest)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(n as u64)
}

/// How long the change log keeps entries: an index not synced for longer is rebuilt in full.
pub fn retention() -> chrono::Duration {
    chrono::Duration::days(7)
}

/// Brings the index up to date from the change log; builds it in full when there is none,
/// when it is of another format, or when its watermark is older than the log's horizon.
pub async fn sync(pool: &Pool, dir: &IndexDir, on_progress: OnProgress<'_>) -> Result<IndexReport> {
    let generation = match dir.open() {
        Ok(Some(g)) => g,
        Ok(None) => {
            let mut r = build(pool, dir, &BuildOptions::default(), on_progress).await?;
            r.note = Some("there was no index: built it in full".to_owned());
            return Ok(r);
        }
        Err(e) => {
            let mut r = build(pool, dir, &BuildOptions::default(), on_progress).await?;
            r.note = Some(format!("{e:#}: rebuilt it in full"));
            return Ok(r);
        }
    };
    let why = match apply_changes(pool, dir, generation).await? {
        Ok(report) => return Ok(report),
        Err(Rebuild::TooOld) => "the index was older than the change log's retention",
        Err(Rebuild::OtherDatabase) => {
            "the index was built from another database (or before chatctl recorded which)"
        }
    };
    let mut r = build(pool, dir, &BuildOptions::default(), on_progress).await?;
    r.note = Some(format!("{why}: rebuilt it in full"));
    Ok(r)
}

/// Why an index cannot be brought up to date from the change log.
enum Rebuild {
    /// The log no longer goes back to its watermark.
    TooOld,
    /// It was built from another database.
    OtherDatabase,
}

/// Applies the change log since the index's watermark, or says why it cannot. The horizon
/// and the database's key are read in the same snapshot as the log, so a prune that commits
/// meanwhile cannot hide entries from it.
async fn apply_changes(
    pool: &Pool,
    dir: &IndexDir,
    g: Generation,
) -> Result<std::result::Result<IndexReport, Rebuild>> {
    let started = Instant::now();
    let since = g.payload.watermark;
    let (mut tx, watermark) = begin_snapshot(pool).await?;
    let (horizon, database): (i64, String) = sqlx::query_as(&format!(
        "select s.horizon::text::bigint, {DATABASE_KEY} {DATABASE_KEY_FROM}"
    ))
    .fetch_one(&mut *tx)
    .await?;
    if g.payload.database.as_deref() != Some(database.as_str()) {
        return Ok(Err(Rebuild::OtherDatabase));
    }
    if since < horizon as u64 {
        return Ok(Err(Rebuild::TooOld));
    }
    let changed: Vec<(String, Uuid)> = sqlx::query_as(
        "select distinct kind::text, id from chatctl.search_log where xid >= $1::text::xid8",
    )
    .bind(since.to_string())
    .fetch_all(&mut *tx)
    .await?;
    let (mut message_ids, mut channel_ids) = (Vec::new(), Vec::new());
    for (kind, id) in changed {
        if kind == CHANNEL {
            channel_ids.push(id);
        } else {
            message_ids.push(id);
        }
    }
    if message_ids.is_empty() && channel_ids.is_empty() {
        tx.commit().await?;
        // Nothing changed: the index stays as it is, its watermark too (still correct: every
        // later change is logged at or past it).
        return Ok(Ok(IndexReport {
            mode: "incremental",
            generation: g.name.clone(),
            messages: 0,
            channels: 0,
            deleted: 0,
            watermark: since,
            elapsed_ms: started.elapsed().as_millis() as u64,
            docs_per_sec: 0,
            size_bytes: dir_size(&dir.path.join(&g.name)),
            note: None,
        }));
    }
    let f = g.fields;
    let mut docs: Vec<TantivyDocument> = Vec::new();
    let mut alive: HashSet<Uuid> = HashSet::new();
    for ids in message_ids.chunks(10_000) {
        let sql = format!(
            "{} where c.id = any($1) and not c.is_deleted",
            message_select(false)
        );
        let rows = sqlx::query(&sql).bind(ids).fetch_all(&mut *tx).await?;
        for row in &rows {
            let m = message_row(row)?;
            alive.insert(m.id);
            docs.push(message_doc(&f, &m));
        }
    }
    let mut channels = 0u64;
    if !channel_ids.is_empty() {
        let rows = sqlx::query(&format!(
            "select {CHANNEL_COLUMNS} from public.channels where id = any($1)"
        ))
        .bind(&channel_ids)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let c = channel_row(row)?;
            alive.insert(c.id);
            docs.push(channel_doc(&f, &c));
            channels += 1;
        }
    }
    tx.commit().await?;
    let messages = docs.len() as u64 - channels;
    let deleted = (message_ids.len() + channel_ids.len()) as u64 - messages - channels;
    let removed: Vec<Uuid> = message_ids.into_iter().chain(channel_ids).collect();
    let now = Utc::now();
    let payload = Payload {
        watermark,
        synced_at: now,
        ..g.payload.clone()
    };
    let writer = open_writer(&g.index, 1, 15_000_000)?;
    for id in &removed {
        writer.delete_term(id_term(&f, *id));
    }
    for d in docs {
        writer.add_document(d)?;
    }
    commit(writer, payload).await?;
    let elapsed = started.elapsed();
    Ok(Ok(IndexReport {
        mode: "incremental",
        generation: g.name.clone(),
        messages,
        channels,
        deleted,
        watermark,
        elapsed_ms: elapsed.as_millis() as u64,
        docs_per_sec: ((messages + channels) as f64 / elapsed.as_secs_f64().max(1e-3)) as u64,
        size_bytes: dir_size(&dir.path.join(&g.name)),
        note: None,
    }))
}

/// Where the index and the database disagree.
#[derive(Debug, Default, Serialize)]
pub struct Differences {
    pub checked_documents: u64,
    pub checked_rows: u64,
    /// In the database, not in the index.
    pub missing: Vec<String>,
    /// In both, but the index holds an older version.
    pub stale: Vec<String>,
    /// In the index, not in the database (or deleted there).
    pub extra: Vec<String>,
}

impl Differences {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.stale.is_empty() && self.extra.is_empty()
    }
}

/// Compares every document of the index with the database: messages (not deleted) and
/// channels, by id and version (the row's `updated_at`, and for a message whether it has a
/// file).
pub async fn verify(pool: &Pool, g: &Generation) -> Result<Differences> {
    let searcher = g.index.reader()?.searcher();
    let mut docs: HashMap<Uuid, i64> = HashMap::new();
    for segment in searcher.segment_readers() {
        let columns = segment.fast_fields();
        let (hi, lo) = (columns.u64("id_hi")?, columns.u64("id_lo")?);
        let versions = columns.i64("version")?;
        for doc in segment.doc_ids_alive() {
            if let (Some(hi), Some(lo), Some(v)) =
                (hi.first(doc), lo.first(doc), versions.first(doc))
            {
                docs.insert(Uuid::from_u64_pair(hi, lo), v);
            }
        }
    }
    let mut diff = Differences {
        checked_documents: docs.len() as u64,
        ..Default::default()
    };
    let sql = format!(
        "select c.id, c.updated_at, {LISTED_FILES} or a.message_id is not null
           from public.chat c {ATTACHED_JOIN}
          where not c.is_deleted
         union all
         select id, updated_at, false from public.channels"
    );
    let mut rows = sqlx::query_as::<_, (Uuid, DateTime<Utc>, bool)>(&sql).fetch(pool);
    while let Some((id, updated_at, has_file)) = rows.try_next().await? {
        diff.checked_rows += 1;
        match docs.remove(&id) {
            None => diff.missing.push(id.to_string()),
            Some(v) if v != version(updated_at, has_file) => diff.stale.push(id.to_string()),
            Some(_) => {}
        }
    }
    diff.extra = docs.into_keys().map(|id| id.to_string()).collect();
    for list in [&mut diff.missing, &mut diff.stale, &mut diff.extra] {
        list.sort();
    }
    Ok(diff)
}
