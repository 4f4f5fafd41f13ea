//! `chatctl import slack`: a Slack workspace export (the `.zip`, read in place, or its
//! directory) into a workspace: people, channels, DMs and group DMs, messages with their
//! threads, edits, reactions and file metadata.
//!
//! 1. **People,** through the user import ([`crate::users::import::import_inputs`]): the
//!    Slack id kept as the external id (`slack`), the address when the export has one, else
//!    a placeholder under `--email-domain` (listed in the report), roles from Slack's flags,
//!    deleted accounts deactivated, bots flagged as bots.
//! 2. **Conversations,** one transaction each, read on a thread of their own a day file at a
//!    time and COPYed into staging tables ([`read`], [`write`]). Ids are derived from the
//!    workspace, the conversation and the message's `ts`, so importing the same export again
//!    changes nothing, and a later export adds only what is new.
//! 3. **Search,** brought up to date once at the end (when an index exists).
//!
//! A bad piece (a malformed day file, a message whose author is not in users.json, an unknown
//! subtype, a NUL in a text) goes to the rejects file with its file, position and reason; the
//! rest imports. What is skipped and why: see [`read::SKIPPED`].

pub mod archive;
pub mod model;
pub mod read;
pub mod text;
mod uploads;
pub mod write;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::provision::Actor;
use crate::users::import::{Counts, ImportOptions, OnExisting, ProgressMode};
use crate::users::input;
use archive::Archive;
use read::{Conv, Event, Known, RejectLine};
use write::{Kind, Target, Writer};

/// What `import slack` was asked.
#[derive(Debug, Clone)]
pub struct SlackOptions {
    pub export: PathBuf,
    pub workspace: String,
    pub dry_run: bool,
    pub users_only: bool,
    /// Messages before this time are not imported.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub rejects: PathBuf,
    /// Where placeholder addresses go for people the export gives none.
    pub email_domain: String,
    pub progress: ProgressMode,
    /// The search index to bring up to date at the end, if it exists.
    pub search_index: Option<PathBuf>,
    /// Conversations written at once, each on its own connection.
    pub jobs: usize,
    /// Storage's file backend directory: the bytes of the files the export holds go there.
    pub storage_dir: Option<PathBuf>,
}

/// Where an export holds its files' bytes, when it does (`__uploads/<file id>/<name>`, as
/// slack-advanced-exporter's `fetch-attachments` adds them; Slack's own export has none).
pub const UPLOADS: &str = "__uploads/";

/// The placeholder address default: `.invalid` never delivers (RFC 2606).
pub const DEFAULT_EMAIL_DOMAIN: &str = "slack-import.invalid";

/// New and already-there counts of one kind.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    pub new: u64,
    pub existing: u64,
}

/// A person given a placeholder address.
#[derive(Debug, Clone, Serialize)]
pub struct Placeholder {
    pub slack_id: String,
    pub name: String,
    pub email: String,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct SlackReport {
    pub dry_run: bool,
    pub export: String,
    pub workspace: String,
    pub users: Counts,
    pub bots: u64,
    pub placeholder_emails: Vec<Placeholder>,
    pub channels: Tally,
    pub direct_messages: Tally,
    pub group_dms: Tally,
    pub conversations_rejected: u64,
    pub messages: Tally,
    pub replies: u64,
    /// Replies whose thread is not in the export (nor imported before): top-level messages.
    pub replies_without_thread: u64,
    pub reactions: u64,
    /// Reactions of people users.json does not list: not imported.
    pub reactions_of_unknown_people: u64,
    pub files: u64,
    /// Files whose bytes the export holds and that were put in Storage (their object made).
    pub file_bytes: u64,
    /// Files whose bytes the export holds and that were not put in Storage (no
    /// `--storage-dir`, a dry run, or no `attachments` bucket yet).
    pub file_bytes_left: u64,
    /// Messages not imported, by subtype (see the module's documentation).
    pub skipped: BTreeMap<String, u64>,
    pub rejects: u64,
    pub rejected_by_kind: BTreeMap<String, u64>,
    pub rejects_file: Option<String>,
    /// Messages the search index took in at the end.
    pub indexed: Option<u64>,
    pub seconds: f64,
    pub messages_per_second: f64,
}

/// Imports a Slack export; see the module's documentation.
pub async fn import(pool: &PgPool, opts: &SlackOptions, actor: &Actor) -> Result<SlackReport> {
    let started = Instant::now();
    let mut archive = Archive::open(&opts.export)?;
    let mut rejects = Rejects::new(opts.rejects.clone());
    if let Some(why) = &archive.damaged {
        rejects.write(&RejectLine {
            file: archive.name.clone(),
            position: "the end of the file".into(),
            kind: "truncated_zip",
            reason: why.clone(),
            raw: String::new(),
        })?;
    }
    let users_rejects = {
        let mut name = opts.rejects.clone().into_os_string();
        name.push(".users");
        PathBuf::from(name)
    };
    let workspace: Uuid = {
        let mut conn = pool.acquire().await?;
        sqlx::query_scalar("select id from public.workspaces where slug = $1")
            .bind(&opts.workspace)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| {
                Error::usage(format!("no workspace `{}`", opts.workspace))
                    .with_help("create it first: `chatctl workspace create SLUG`")
            })?
    };

    // 1. People.
    let users: Vec<model::User> = match list(&mut archive, "users.json", &mut rejects)? {
        Some(u) => u,
        None => {
            return Err(Error::new(
                crate::error::Kind::Damaged,
                format!("`{}` has no users.json: not a Slack export", archive.name),
            )
            .into());
        }
    };
    // People imported before keep the address they have now (an operator may have set the
    // real one in place of a placeholder); the export's own address wins when it has one.
    let known_emails: HashMap<String, String> = {
        let mut conn = pool.acquire().await?;
        let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
        sqlx::query_as::<_, (String, String)>(
            "select u.external_id, a.email from public.users u join auth.users a on a.id = u.id
              where u.external_source = 'slack' and u.external_id = any($1) and a.email is not null",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    let (people, placeholders) = people_of(&users, &opts.email_domain, &known_emails);
    let user_report = {
        let raw: Vec<input::Record> = people
            .into_iter()
            .enumerate()
            .map(|(i, doc)| input::Record {
                line: i as u64 + 1,
                raw: Value::Object(doc.clone()).to_string(),
                doc: Ok(doc),
            })
            .collect();
        let inp = input::Input {
            name: "users.json".into(),
            format: input::Format::Json,
            size: Some(0),
            records: Box::new(raw.into_iter().map(Ok)),
        };
        let uopts = ImportOptions {
            files: Vec::new(),
            format: input::Format::Json,
            maps: Vec::new(),
            source: Some("slack".into()),
            workspace: Some(opts.workspace.clone()),
            role: None,
            channels: Vec::new(),
            on_existing: OnExisting::Update,
            dry_run: opts.dry_run,
            rejects: users_rejects.clone(),
            batch_size: 5_000,
            jobs: 1,
            progress: ProgressMode::None,
        };
        crate::users::import::import_inputs(
            pool,
            vec![inp],
            &input::Counter::default(),
            &uopts,
            actor,
        )
        .await?
    };
    // The user import's rejects join the others, named as users.json's items.
    if user_report.rejects_file.is_some() {
        let text = std::fs::read_to_string(&users_rejects)?;
        for line in text.lines() {
            let r: Value = serde_json::from_str(line)?;
            let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
            rejects.write(&RejectLine {
                file: "users.json".into(),
                position: format!(
                    "item {}",
                    r.get("line").and_then(Value::as_u64).unwrap_or(0)
                ),
                kind: "user",
                reason: format!("{}: {}", field("kind"), field("reason")),
                raw: field("raw").to_owned(),
            })?;
        }
        std::fs::remove_file(&users_rejects)?;
    }
    if !opts.dry_run {
        mark_people(pool, &placeholders, &users).await?;
    }
    let known_users = user_map(pool, &users, opts.dry_run).await?;
    let mut report = SlackReport {
        dry_run: opts.dry_run,
        export: archive.name.clone(),
        workspace: opts.workspace.clone(),
        users: user_report.users.clone(),
        bots: 0,
        placeholder_emails: placeholders.clone(),
        channels: Tally::default(),
        direct_messages: Tally::default(),
        group_dms: Tally::default(),
        conversations_rejected: 0,
        messages: Tally::default(),
        replies: 0,
        replies_without_thread: 0,
        reactions: 0,
        reactions_of_unknown_people: 0,
        files: 0,
        file_bytes: 0,
        file_bytes_left: 0,
        skipped: BTreeMap::new(),
        rejects: 0,
        rejected_by_kind: BTreeMap::new(),
        rejects_file: None,
        indexed: None,
        seconds: 0.0,
        messages_per_second: 0.0,
    };
    if opts.users_only {
        return finish(report, rejects, started, pool, opts, actor).await;
    }

    // 2. Conversations.
    let members_of_workspace: HashSet<Uuid> = {
        let mut conn = pool.acquire().await?;
        sqlx::query_scalar::<_, Uuid>(
            "select user_id from public.workspace_members where workspace_id = $1",
        )
        .bind(workspace)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    let mut targets: Vec<Target> = Vec::new();
    let mut convs: Vec<Conv> = Vec::new();
    let mut channel_names: HashMap<String, String> = HashMap::new();
    let mut names_taken: HashSet<String> = HashSet::new();
    for (file, kind) in [
        ("channels.json", Kind::Public),
        ("groups.json", Kind::Private),
        ("mpims.json", Kind::GroupDm),
        ("dms.json", Kind::Dm),
    ] {
        let Some(list) = list::<model::Conversation>(&mut archive, file, &mut rejects)? else {
            continue;
        };
        for (i, c) in list.into_iter().enumerate() {
            let folder = match (&c.name, kind) {
                (Some(n), Kind::Public | Kind::Private | Kind::GroupDm) => n.clone(),
                _ => c.id.clone(),
            };
            let name = match kind {
                Kind::Public | Kind::Private => match channel_name(c.name.as_deref()) {
                    Some(n) => Some(n),
                    None => {
                        rejects.write(&RejectLine {
                            file: file.into(),
                            position: format!("conversation {}", i + 1),
                            kind: "bad_channel",
                            reason: format!("no usable channel name for {}", c.id),
                            raw: String::new(),
                        })?;
                        report.conversations_rejected += 1;
                        continue;
                    }
                },
                _ => None,
            };
            if let Some(n) = &name {
                // Two of the export's channels with one name under our rules ("Team.Ops",
                // "team-ops") cannot both be #team-ops: the second is refused, before any
                // writer could race the first for the name.
                if !names_taken.insert(n.clone()) {
                    rejects.write(&RejectLine {
                        file: file.into(),
                        position: format!("conversation {}", i + 1),
                        kind: "bad_channel",
                        reason: format!(
                            "{} would be #{n}, the name of another channel of the export",
                            c.id
                        ),
                        raw: String::new(),
                    })?;
                    report.conversations_rejected += 1;
                    continue;
                }
                channel_names.insert(c.id.clone(), n.clone());
            }
            let mut members: Vec<Uuid> = c
                .members
                .iter()
                .flatten()
                .filter_map(|m| known_users.get(m).map(|(id, _)| *id))
                .filter(|id| opts.dry_run || members_of_workspace.contains(id))
                .collect();
            members.sort();
            members.dedup();
            let creator = c
                .creator
                .as_deref()
                .and_then(|m| known_users.get(m))
                .map(|(id, _)| *id)
                .filter(|id| members.contains(id));
            convs.push(Conv {
                slack_id: c.id.clone(),
                folder,
            });
            targets.push(Target {
                slack: c,
                kind,
                name,
                members,
                creator,
            });
        }
    }
    let bot_users: HashMap<String, String> = users
        .iter()
        .filter_map(|u| {
            let b = u.profile.as_ref()?.bot_id.clone()?;
            Some((b, u.id.clone()))
        })
        .collect();
    let total_bytes: u64 = archive
        .entries
        .iter()
        .filter(|e| e.path.contains('/'))
        .map(|e| e.size)
        .sum();
    let known = Known {
        workspace,
        users: known_users,
        bot_users,
        channels: channel_names,
        since: opts.since.map(|s| s.timestamp_micros()),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(4);
    let reader = tokio::task::spawn_blocking(move || read::read_all(archive, convs, known, tx));
    let bar = match opts.progress {
        ProgressMode::Bar => crate::progress::Progress::bytes(total_bytes.max(1), false),
        _ => crate::progress::Progress::hidden(),
    };
    let targets = std::sync::Arc::new(targets);
    let messages_done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..opts.jobs.max(1) {
        let (wtx, wrx) = tokio::sync::mpsc::channel::<Event>(4);
        let writer = Writer::new(
            pool.clone(),
            workspace,
            opts.dry_run,
            opts.email_domain.clone(),
        );
        let progress = Progress {
            bar: bar.clone(),
            messages: messages_done.clone(),
            started,
        };
        senders.push(wtx);
        writers.push(work(writer, wrx, targets.clone(), progress));
    }
    // Each conversation goes whole to one writer: the least busy, and every DM and group DM
    // to the first (two of them may be the same people, found by the same key). The writers
    // run beside the routing, on connections of their own.
    let rejects_ref = &mut rejects;
    let route = async move {
        let mut to = 0usize;
        let mut next = 0usize;
        while let Some(event) = rx.recv().await {
            match event {
                Event::Begin(i) => {
                    to = if matches!(targets[i].kind, Kind::Dm | Kind::GroupDm) {
                        0
                    } else {
                        next = (next + 1) % senders.len();
                        (0..senders.len())
                            .map(|k| (k + next) % senders.len())
                            .max_by_key(|k| senders[*k].capacity())
                            .unwrap_or(0)
                    };
                    if senders[to].send(Event::Begin(i)).await.is_err() {
                        break;
                    }
                }
                Event::Reject(r) => rejects_ref.write(&r)?,
                Event::Failed(e) => return Err(e),
                other => {
                    if senders[to].send(other).await.is_err() {
                        break;
                    }
                }
            }
        }
        // The writers end when their channels close; the reader when this one does.
        drop(senders);
        drop(rx);
        Ok::<(), anyhow::Error>(())
    };
    let (routed, written) = tokio::join!(route, futures_util::future::join_all(writers));
    let archive = reader.await.map_err(anyhow::Error::from)?;
    let mut parts = Vec::new();
    let mut failed = routed.err();
    for w in written {
        match w {
            Ok(part) => parts.push(part),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    bar.finish();
    let mut bots: HashSet<String> = HashSet::new();
    for part in parts {
        for r in &part.rejects {
            rejects.write(r)?;
        }
        part.add_to(&mut report, &mut bots);
    }
    report.bots = bots.len() as u64;
    (report.file_bytes, report.file_bytes_left) =
        uploads::put(pool, archive, workspace, opts).await?;
    finish(report, rejects, started, pool, opts, actor).await
}

/// The progress every writer advances.
struct Progress {
    bar: crate::progress::Progress,
    messages: std::sync::Arc<std::sync::atomic::AtomicU64>,
    started: Instant,
}

/// What one writer did.
#[derive(Default)]
struct Part {
    channels: Tally,
    direct_messages: Tally,
    group_dms: Tally,
    conversations_rejected: u64,
    messages: Tally,
    replies: u64,
    replies_without_thread: u64,
    reactions: u64,
    reactions_of_unknown_people: u64,
    files: u64,
    skipped: BTreeMap<String, u64>,
    bots: HashSet<String>,
    rejects: Vec<RejectLine>,
}

impl Part {
    /// What one conversation wrote, and what its reader counted.
    fn add_conversation(&mut self, kind: Kind, w: &write::Written, stats: read::ConvStats) {
        let tally = match kind {
            Kind::Public | Kind::Private => &mut self.channels,
            Kind::Dm => &mut self.direct_messages,
            Kind::GroupDm => &mut self.group_dms,
        };
        if w.channel_new {
            tally.new += 1;
        } else {
            tally.existing += 1;
        }
        self.messages.new += w.messages + w.replies;
        self.messages.existing += w.messages_there;
        self.replies += w.replies;
        self.replies_without_thread += w.orphans;
        self.reactions += w.reactions;
        self.reactions_of_unknown_people += stats.unknown_reactors;
        self.files += w.files;
        for (k, n) in stats.skipped {
            *self.skipped.entry(k).or_default() += n;
        }
        self.bots.extend(stats.bots.into_keys());
    }

    fn add_to(self, r: &mut SlackReport, bots: &mut HashSet<String>) {
        let add = |a: &mut Tally, b: Tally| {
            a.new += b.new;
            a.existing += b.existing;
        };
        add(&mut r.channels, self.channels);
        add(&mut r.direct_messages, self.direct_messages);
        add(&mut r.group_dms, self.group_dms);
        add(&mut r.messages, self.messages);
        r.conversations_rejected += self.conversations_rejected;
        r.replies += self.replies;
        r.replies_without_thread += self.replies_without_thread;
        r.reactions += self.reactions;
        r.reactions_of_unknown_people += self.reactions_of_unknown_people;
        r.files += self.files;
        for (k, n) in self.skipped {
            *r.skipped.entry(k).or_default() += n;
        }
        bots.extend(self.bots);
    }
}

/// One writer: the conversations routed to it, each in its own transaction.
async fn work(
    mut writer: Writer,
    mut rx: tokio::sync::mpsc::Receiver<Event>,
    targets: std::sync::Arc<Vec<Target>>,
    progress: Progress,
) -> Result<Part> {
    let mut part = Part::default();
    let mut current: Option<usize> = None;
    let mut refused = false;
    let result: Result<()> = async {
        while let Some(event) = rx.recv().await {
            match event {
                Event::Begin(i) => {
                    current = Some(i);
                    refused = false;
                    if let Err(why) = writer.begin(&targets[i]).await? {
                        refused = true;
                        part.conversations_rejected += 1;
                        part.rejects.push(RejectLine {
                            file: targets[i].slack.id.clone(),
                            position: "the conversation".into(),
                            kind: "channel_taken",
                            reason: why,
                            raw: String::new(),
                        });
                    }
                }
                Event::Chunk(c) if !refused => writer.chunk(c).await?,
                Event::End(stats) => {
                    progress.bar.advance(stats.bytes);
                    if refused {
                        writer.abandon().await?;
                        continue;
                    }
                    let w = writer.end(&stats).await?;
                    let kind = targets[current.take().expect("begun")].kind;
                    part.add_conversation(kind, &w, stats);
                    let n = w.messages + w.replies + w.messages_there;
                    let done = n + progress
                        .messages
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    let rate = done as f64 / progress.started.elapsed().as_secs_f64().max(1e-9);
                    progress
                        .bar
                        .set_message(&format!("{done} messages, {rate:.0}/s"));
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = writer.abandon().await;
    }
    result.map(|()| part)
}

/// Rejects counted, the search index brought up to date, the import audited.
async fn finish(
    mut report: SlackReport,
    mut rejects: Rejects,
    started: Instant,
    pool: &PgPool,
    opts: &SlackOptions,
    actor: &Actor,
) -> Result<SlackReport> {
    report.rejects_file = rejects.0.finish()?;
    report.rejects = rejects.0.count;
    report.rejected_by_kind = rejects.0.by_kind;
    if !opts.dry_run
        && let Some(dir) = &opts.search_index
    {
        let dir = crate::search::IndexDir::new(dir.clone());
        if dir.current_name()?.is_some() {
            let r = crate::search::index::sync(pool, &dir, &|_| {}).await?;
            report.indexed = Some(r.messages);
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.messages_per_second =
        (report.messages.new + report.messages.existing) as f64 / report.seconds.max(1e-9);
    if !opts.dry_run {
        let mut conn = pool.acquire().await?;
        crate::audit::record(
            &mut conn,
            &actor.operator,
            &actor.command,
            &[crate::audit::Entry {
                action: "import".into(),
                object_type: "slack".into(),
                object_id: report.workspace.clone(),
                before: None,
                after: Some(serde_json::json!({
                    "export": report.export,
                    "users": report.users,
                    "channels": report.channels,
                    "direct_messages": report.direct_messages,
                    "group_dms": report.group_dms,
                    "messages": report.messages,
                    "replies": report.replies,
                    "reactions": report.reactions,
                    "files": report.files,
                    "rejects": report.rejects,
                })),
            }],
        )
        .await?;
    }
    Ok(report)
}

/// A top-level list of the export (`users.json`, `channels.json`, …), `None` when the export
/// has none. A list that is not JSON is rejected whole (its conversations are then unknown).
fn list<T: serde::de::DeserializeOwned>(
    archive: &mut Archive,
    path: &str,
    rejects: &mut Rejects,
) -> Result<Option<Vec<T>>> {
    let Some(entry) = archive.entry(path).cloned() else {
        return Ok(None);
    };
    let bytes = match archive.read(&entry) {
        Ok(b) => b,
        Err(e) => {
            rejects.write(&RejectLine {
                file: path.into(),
                position: "the whole file".into(),
                kind: "unreadable_file",
                reason: format!("cannot read it from the export: {e}"),
                raw: String::new(),
            })?;
            return Ok(Some(Vec::new()));
        }
    };
    let values: Vec<Value> = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            rejects.write(&RejectLine {
                file: path.into(),
                position: format!("line {}, column {}", e.line(), e.column()),
                kind: "bad_json",
                reason: format!("not a JSON array: {e}"),
                raw: String::new(),
            })?;
            return Ok(Some(Vec::new()));
        }
    };
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        match T::deserialize(&v) {
            Ok(t) => out.push(t),
            Err(e) => rejects.write(&RejectLine {
                file: path.into(),
                position: format!("item {}", i + 1),
                kind: "bad_item",
                reason: e.to_string(),
                raw: v.to_string(),
            })?,
        }
    }
    Ok(Some(out))
}

/// The user import's documents for the export's people, and who got a placeholder address.
fn people_of(
    users: &[model::User],
    domain: &str,
    known_emails: &HashMap<String, String>,
) -> (Vec<Map<String, Value>>, Vec<Placeholder>) {
    let mut docs = Vec::with_capacity(users.len());
    let mut placeholders = Vec::new();
    for u in users {
        let given = u
            .profile
            .as_ref()
            .and_then(|p| p.email.as_deref())
            .map(|e| e.trim().to_lowercase())
            .filter(|e| input::valid_email(e));
        let placeholder = format!("{}@{domain}", u.id.to_lowercase());
        let email = match (given, known_emails.get(&u.id)) {
            (Some(e), _) => e,
            (None, Some(known)) if *known != placeholder => known.clone(),
            (None, _) => {
                placeholders.push(Placeholder {
                    slack_id: u.id.clone(),
                    name: u.display_name(),
                    email: placeholder.clone(),
                });
                placeholder
            }
        };
        let mut doc = Map::new();
        doc.insert("email".into(), Value::String(email));
        doc.insert("name".into(), Value::String(u.display_name()));
        if let Some(n) = &u.name {
            doc.insert("username".into(), Value::String(n.clone()));
        }
        doc.insert("external_id".into(), Value::String(u.id.clone()));
        doc.insert("external_source".into(), Value::String("slack".into()));
        doc.insert("role".into(), Value::String(u.role().into()));
        doc.insert("active".into(), Value::Bool(u.deleted != Some(true)));
        if let Some(a) = u
            .profile
            .as_ref()
            .and_then(|p| p.image_192.clone().or(p.image_72.clone()))
        {
            doc.insert("avatar_url".into(), Value::String(a));
        }
        docs.push(doc);
    }
    (docs, placeholders)
}

/// What the user import does not know of Slack's people: placeholder addresses are nobody's
/// (not verified, so no one signs in with them and the profile shows none, until the operator
/// sets the real one), and bots and apps are bots.
async fn mark_people(
    pool: &PgPool,
    placeholders: &[Placeholder],
    users: &[model::User],
) -> Result<()> {
    let emails: Vec<&str> = placeholders.iter().map(|p| p.email.as_str()).collect();
    let bots: Vec<&str> = users
        .iter()
        .filter(|u| u.is_bot())
        .map(|u| u.id.as_str())
        .collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "update auth.users set email_confirmed_at = null
          where email = any($1) and email_confirmed_at is not null",
    )
    .bind(&emails)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "update auth.identities set identity_data = identity_data || '{\"email_verified\": false}'
          where provider = 'email' and identity_data ->> 'email' = any($1)
            and identity_data ->> 'email_verified' is distinct from 'false'",
    )
    .bind(&emails)
    .execute(&mut *tx)
    .await?;
    sqlx::query("update public.users set email = null where email = any($1)")
        .bind(&emails)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "update public.users set is_bot = true
          where external_source = 'slack' and external_id = any($1) and not is_bot",
    )
    .bind(&bots)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Slack user id → (our id, username). A dry run's new people get ids of their own (their
/// rows are counted, not written).
async fn user_map(
    pool: &PgPool,
    users: &[model::User],
    dry_run: bool,
) -> Result<HashMap<String, (Uuid, String)>> {
    let mut conn = pool.acquire().await?;
    let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    let found: Vec<(String, Uuid, String)> = sqlx::query_as(
        "select external_id, id, username from public.users
          where external_source = 'slack' and external_id = any($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut map: HashMap<String, (Uuid, String)> = found
        .into_iter()
        .map(|(slack, id, username)| (slack, (id, username)))
        .collect();
    if dry_run {
        for u in users {
            map.entry(u.id.clone()).or_insert_with(|| {
                let name = u.name.clone().unwrap_or_else(|| u.id.to_lowercase());
                (Uuid::now_v7(), name)
            });
        }
    }
    Ok(map)
}

/// A Slack channel name under our rules (lower case, no spaces or dots, 80 characters).
fn channel_name(name: Option<&str>) -> Option<String> {
    let n: String = name?
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| {
            if c.is_whitespace() || c == '.' {
                '-'
            } else {
                c
            }
        })
        .take(80)
        .collect();
    (!n.is_empty()).then_some(n)
}

/// The rejects file: JSON Lines of file, position, kind, reason and the raw piece.
struct Rejects(crate::rejects::RejectsFile);

impl Rejects {
    fn new(path: PathBuf) -> Rejects {
        Rejects(crate::rejects::RejectsFile::new(path))
    }

    fn write(&mut self, r: &RejectLine) -> Result<()> {
        let doc = serde_json::json!({
            "file": r.file,
            "position": r.position,
            "kind": r.kind,
            "reason": r.reason,
            "raw": r.raw,
        });
        self.0.write(r.kind, &doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_ours() {
        assert_eq!(channel_name(Some("General")).as_deref(), Some("general"));
        assert_eq!(
            channel_name(Some("team.ops notes")).as_deref(),
            Some("team-ops-notes")
        );
        assert_eq!(channel_name(Some("  ")), None);
        assert_eq!(channel_name(None), None);
    }
}
