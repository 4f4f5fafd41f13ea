//! The reading half of a Slack import, on a thread of its own: each conversation's day files,
//! one at a time, parsed, checked and turned into COPY rows for the writer, which it
//! receives in chunks. Memory holds one day file and one chunk, whatever the export's size.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Deserialize as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::archive::{Archive, Entry};
use super::model::{self, Message};
use super::text::{self, Names};
use crate::db::bulk::{esc, ts};

/// Rows per chunk sent to the writer.
const CHUNK: u64 = 5_000;

/// The longest message text the schema takes.
const MAX_TEXT: usize = 40_000;

/// Subtypes imported as messages.
const IMPORTED: &[&str] = &[
    "bot_message",
    "me_message",
    "file_share",
    "thread_broadcast",
    "reply_broadcast",
    "tombstone",
    "slackbot_response",
];

/// Subtypes not imported: what they record is imported otherwise (membership, topic, purpose,
/// name and archival come from the conversation lists), or is Slack's own bookkeeping.
pub const SKIPPED: &[&str] = &[
    "channel_join",
    "channel_leave",
    "group_join",
    "group_leave",
    "channel_topic",
    "group_topic",
    "channel_purpose",
    "group_purpose",
    "channel_name",
    "group_name",
    "channel_archive",
    "group_archive",
    "channel_unarchive",
    "group_unarchive",
    "channel_convert_to_private",
    "channel_convert_to_public",
    "bot_add",
    "bot_remove",
    "bot_enable",
    "bot_disable",
    "pinned_item",
    "unpinned_item",
    "file_comment",
    "file_mention",
    "reminder_add",
    "sh_room_created",
    "huddle_thread",
    "channel_canvas_updated",
    "joiner_notification",
    "joiner_notification_for_inviter",
    "app_conversation_leave",
];

/// A conversation to read, and where its day files are.
#[derive(Debug, Clone)]
pub struct Conv {
    pub slack_id: String,
    pub folder: String,
}

/// What the reader knows of the export before it reads messages.
pub struct Known {
    pub workspace: Uuid,
    /// Slack user id → (our id, username).
    pub users: HashMap<String, (Uuid, String)>,
    /// A Slack bot id → the Slack user that is that bot (from the users' profiles).
    pub bot_users: HashMap<String, String>,
    /// Slack conversation id → our channel name (for `<#C…>` links).
    pub channels: HashMap<String, String>,
    /// Microseconds since the epoch: older messages are not read.
    pub since: Option<i64>,
}

/// One rejected piece of the export.
#[derive(Debug, Clone)]
pub struct RejectLine {
    pub file: String,
    pub position: String,
    pub kind: &'static str,
    pub reason: String,
    pub raw: String,
}

/// COPY rows for the writer's three staging tables.
#[derive(Debug, Default)]
pub struct Chunk {
    pub chat: String,
    pub emojis: String,
    pub files: String,
    pub rows: u64,
}

/// What one conversation held.
#[derive(Debug, Default)]
pub struct ConvStats {
    pub messages: u64,
    pub reactions: u64,
    pub files: u64,
    /// Skipped messages by subtype (and `before --since`).
    pub skipped: BTreeMap<String, u64>,
    /// Integration bots that wrote without a user: their id → their name.
    pub bots: BTreeMap<String, String>,
    /// Reactions of people the export does not list.
    pub unknown_reactors: u64,
    pub bytes: u64,
}

pub enum Event {
    Begin(usize),
    Chunk(Chunk),
    Reject(RejectLine),
    End(ConvStats),
    /// Reading failed as a whole (not one piece of it).
    Failed(anyhow::Error),
}

/// A UUID named by `parts` (RFC 9562 version 8, from SHA-256): the same parts give the same
/// id, so importing the same export again finds what it wrote.
pub fn derived_id(parts: &[&[u8]]) -> Uuid {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u32).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    Uuid::new_v8(b)
}

/// The id of a message: its workspace, conversation and `ts`.
pub fn message_id(workspace: Uuid, conv: &str, ts: &str) -> Uuid {
    derived_id(&[
        b"slack-message",
        workspace.as_bytes(),
        conv.as_bytes(),
        ts.as_bytes(),
    ])
}

/// The id of the account made for an integration bot that posted without a user.
pub fn bot_account(workspace: Uuid, bot: &str) -> Uuid {
    derived_id(&[b"slack-bot", workspace.as_bytes(), bot.as_bytes()])
}

/// Reads `convs` in order, sending their events; then rejects the folders no conversation
/// names. Stops when the receiver is gone.
pub fn read_all(
    mut archive: Archive,
    convs: Vec<Conv>,
    known: Known,
    tx: tokio::sync::mpsc::Sender<Event>,
) -> Archive {
    read_conversations(&mut archive, convs, known, tx);
    archive
}

fn read_conversations(
    archive: &mut Archive,
    convs: Vec<Conv>,
    known: Known,
    tx: tokio::sync::mpsc::Sender<Event>,
) {
    let mut by_folder: HashMap<String, Vec<Entry>> = HashMap::new();
    // The entries move into their folders (the lists are read already): one copy of the
    // export's index, whatever its size. The uploaded files' bytes stay, for the end.
    let (uploads, entries): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut archive.entries)
        .into_iter()
        .partition(|e| e.path.starts_with(super::UPLOADS));
    archive.entries = uploads;
    for e in entries {
        let folder = match e.path.split_once('/') {
            Some((folder, file)) if file.ends_with(".json") && !file.contains('/') => {
                folder.to_owned()
            }
            _ => continue,
        };
        by_folder.entry(folder).or_default().push(e);
    }
    for files in by_folder.values_mut() {
        files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    let send = |e: Event| tx.blocking_send(e).is_ok();
    for (i, conv) in convs.iter().enumerate() {
        if !send(Event::Begin(i)) {
            return;
        }
        let files = by_folder.remove(&conv.folder).unwrap_or_default();
        let mut reader = ConvReader {
            known: &known,
            conv,
            chunk: Chunk::default(),
            stats: ConvStats::default(),
        };
        for entry in &files {
            let bytes = match archive.read(entry) {
                Ok(b) => b,
                Err(e) => {
                    if !send(Event::Reject(RejectLine {
                        file: entry.path.clone(),
                        position: "the whole file".into(),
                        kind: "unreadable_file",
                        reason: format!("cannot read it from the export: {e}"),
                        raw: String::new(),
                    })) {
                        return;
                    }
                    continue;
                }
            };
            reader.stats.bytes += entry.size;
            let mut rejects = Vec::new();
            let mut flush = |c: Chunk| send(Event::Chunk(c));
            if !reader.day_file(&entry.path, &bytes, &mut rejects, &mut flush) {
                return;
            }
            for r in rejects {
                if !send(Event::Reject(r)) {
                    return;
                }
            }
        }
        if reader.chunk.rows > 0 && !send(Event::Chunk(std::mem::take(&mut reader.chunk))) {
            return;
        }
        if !send(Event::End(reader.stats)) {
            return;
        }
    }
    let mut left: Vec<(String, Vec<Entry>)> = by_folder.into_iter().collect();
    left.sort_by(|a, b| a.0.cmp(&b.0));
    for (folder, files) in left {
        if !send(Event::Reject(RejectLine {
            file: format!("{folder}/"),
            position: format!("{} day files", files.len()),
            kind: "unknown_folder",
            reason: "no conversation of channels.json, groups.json, mpims.json or dms.json \
                     has this folder"
                .into(),
            raw: String::new(),
        })) {
            return;
        }
    }
}

struct ConvReader<'a> {
    known: &'a Known,
    conv: &'a Conv,
    chunk: Chunk,
    stats: ConvStats,
}

/// Why one message is not imported.
struct Refused {
    kind: &'static str,
    reason: String,
}

fn refused(kind: &'static str, reason: impl Into<String>) -> Refused {
    Refused {
        kind,
        reason: reason.into(),
    }
}

impl ConvReader<'_> {
    /// Reads one day file, a message at a time (memory holds the file's bytes and one
    /// message, not the file parsed whole), handing `flush` every full chunk. `false` when
    /// the writer is gone.
    fn day_file(
        &mut self,
        path: &str,
        bytes: &[u8],
        rejects: &mut Vec<RejectLine>,
        flush: &mut dyn FnMut(Chunk) -> bool,
    ) -> bool {
        let mut day = Day {
            reader: self,
            path,
            rejects,
            flush,
            n: 0,
            stopped: false,
        };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let read = serde::Deserializer::deserialize_any(&mut de, &mut day).and_then(|()| de.end());
        let stopped = day.stopped;
        if let Err(e) = read
            && !stopped
        {
            let (kind, reason) = if e.is_data() {
                (
                    "bad_json",
                    "a day file is a JSON array of messages".to_owned(),
                )
            } else {
                ("bad_json", format!("not JSON: {e}"))
            };
            rejects.push(RejectLine {
                file: path.to_owned(),
                position: format!("line {}, column {}", e.line(), e.column()),
                kind,
                reason,
                raw: String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned(),
            });
        }
        !stopped
    }

    /// Turns one message into COPY rows, or says why not. `Ok` also for a skipped one.
    fn message(&mut self, v: &Value) -> Result<(), Refused> {
        let m = Message::deserialize(v)
            .map_err(|e| refused("bad_message", format!("not a Slack message: {e}")))?;
        let subtype = m.subtype.as_deref();
        if let Some(s) = subtype
            && !IMPORTED.contains(&s)
        {
            if SKIPPED.contains(&s) {
                *self.stats.skipped.entry(s.to_owned()).or_default() += 1;
                return Ok(());
            }
            return Err(refused(
                "unknown_subtype",
                format!("unknown subtype `{s}`: not imported"),
            ));
        }
        let ts_text =
            m.ts.as_deref()
                .ok_or_else(|| refused("bad_ts", "no `ts`"))?;
        let at = model::ts_micros(ts_text)
            .and_then(DateTime::<Utc>::from_timestamp_micros)
            .ok_or_else(|| refused("bad_ts", format!("`ts` is not a Slack time: {ts_text:?}")))?;
        if self.known.since.is_some_and(|s| at.timestamp_micros() < s) {
            *self
                .stats
                .skipped
                .entry("before --since".into())
                .or_default() += 1;
            return Ok(());
        }
        let author = self.author(&m)?;
        let uploader = author.id(self.known.workspace);
        let mut raw_text = m.text.clone().unwrap_or_default();
        if raw_text.is_empty()
            && let Some(atts) = &m.attachments
        {
            // Integrations write into attachments; their fallback is the plain text.
            let parts: Vec<&str> = atts
                .iter()
                .filter_map(|a| {
                    a.get("fallback")
                        .or_else(|| a.get("text"))
                        .or_else(|| a.get("pretext"))
                        .and_then(Value::as_str)
                })
                .collect();
            raw_text = parts.join("\n");
        }
        if raw_text.contains('\0') {
            return Err(refused(
                "nul_character",
                "the text holds a NUL character, which PostgreSQL cannot store",
            ));
        }
        let names = Names {
            users: &self.known.users,
            channels: &self.known.channels,
        };
        let (body, mentions) = text::convert(&raw_text, &names);
        if body.chars().count() > MAX_TEXT {
            return Err(refused(
                "too_long",
                format!("the text is longer than {MAX_TEXT} characters"),
            ));
        }
        let ws = self.known.workspace;
        let id = message_id(ws, &self.conv.slack_id, ts_text);
        let parent = match m.thread_ts.as_deref() {
            Some(t) if t != ts_text => {
                model::ts_micros(t).ok_or_else(|| {
                    refused("bad_ts", format!("`thread_ts` is not a Slack time: {t:?}"))
                })?;
                Some(message_id(ws, &self.conv.slack_id, t))
            }
            _ => None,
        };
        let edited = m
            .edited
            .as_ref()
            .and_then(|e| e.ts.as_deref())
            .and_then(model::ts_micros)
            .and_then(DateTime::<Utc>::from_timestamp_micros);
        let mut message = serde_json::json!({ "text": body });
        if !mentions.is_empty() {
            message["mentions"] = serde_json::json!(mentions);
        }
        if matches!(subtype, Some("thread_broadcast" | "reply_broadcast")) {
            message["broadcast"] = Value::Bool(true);
        }
        let mut imported = serde_json::json!({ "from": "slack", "ts": ts_text });
        if let Author::Bot(_, name) = &author {
            imported["bot"] = Value::String(name.clone());
        }
        message["imported"] = imported;

        let c = &mut self.chunk;
        let _ = write!(c.chat, "{id}\t");
        match parent {
            Some(p) => {
                let _ = write!(c.chat, "{p}\t");
            }
            None => c.chat.push_str("\\N\t"),
        }
        let _ = write!(c.chat, "{}\t", author.id(ws));
        esc(&mut c.chat, &message.to_string());
        let _ = write!(
            c.chat,
            "\t{}\t{}\t",
            if subtype == Some("tombstone") {
                't'
            } else {
                'f'
            },
            ts(at)
        );
        match edited {
            Some(e) => c.chat.push_str(&ts(e)),
            None => c.chat.push_str("\\N"),
        }
        c.chat.push('\n');
        c.rows += 1;
        self.stats.messages += 1;
        if let Author::Bot(bot, name) = author {
            self.stats.bots.entry(bot).or_insert(name);
        }

        for r in m.reactions.iter().flatten() {
            if r.name.is_empty() {
                continue;
            }
            let emoji = text::emoji(&r.name);
            for u in &r.users {
                match self.known.users.get(u) {
                    Some((uid, _)) => {
                        let _ = write!(c.emojis, "{id}\t{uid}\t");
                        esc(&mut c.emojis, &emoji);
                        let _ = writeln!(c.emojis, "\t{}", ts(at));
                        self.stats.reactions += 1;
                    }
                    None => self.stats.unknown_reactors += 1,
                }
            }
        }
        for (n, f) in m.files.iter().flatten().chain(m.file.iter()).enumerate() {
            if matches!(f.mode.as_deref(), Some("tombstone" | "hidden_by_limit")) {
                continue;
            }
            let file_id = f.id.clone().unwrap_or_else(|| format!("file-{n}"));
            let name: String = f
                .name
                .as_deref()
                .or(f.title.as_deref())
                .unwrap_or(&file_id)
                .replace('\0', "")
                .chars()
                .take(255)
                .collect();
            let name = if name.trim().is_empty() {
                file_id.clone()
            } else {
                name
            };
            let size = f.size.as_ref().and_then(model::number).unwrap_or(0).max(0);
            let mime = f
                .mimetype
                .as_deref()
                .filter(|m| !m.is_empty() && !m.contains('\0'))
                .unwrap_or("application/octet-stream");
            let file_row = derived_id(&[b"slack-file", id.as_bytes(), file_id.as_bytes()]);
            let _ = write!(c.files, "{file_row}\t{id}\t");
            // The object's path in its channel's folder (the writer puts the workspace's and
            // the channel's ids before it): `<uploader>/<Slack file id>/<name>`, the name
            // kept to the characters Storage accepts in a key.
            esc(
                &mut c.files,
                &format!("{uploader}/{}/{}", key_part(&file_id), key_part(&name)),
            );
            c.files.push('\t');
            esc(&mut c.files, &name);
            let _ = write!(c.files, "\t{size}\t");
            esc(&mut c.files, mime);
            let _ = writeln!(c.files, "\t{}", ts(at));
            self.stats.files += 1;
        }
        Ok(())
    }

    fn author(&self, m: &Message) -> Result<Author, Refused> {
        if let Some(u) = m.user.as_deref().filter(|u| !u.is_empty()) {
            return match self.known.users.get(u) {
                Some((id, _)) => Ok(Author::User(*id)),
                None => Err(refused(
                    "unknown_user",
                    format!("its author {u} is not in users.json (or was rejected there)"),
                )),
            };
        }
        let Some(bot) = m.bot_id.as_deref().filter(|b| !b.is_empty()) else {
            return Err(refused("no_author", "neither `user` nor `bot_id`"));
        };
        if let Some((id, _)) = self
            .known
            .bot_users
            .get(bot)
            .and_then(|u| self.known.users.get(u))
        {
            return Ok(Author::User(*id));
        }
        let name = m
            .username
            .as_deref()
            .or(m.bot_profile.as_ref().and_then(|p| p.name.as_deref()))
            .map(str::trim)
            .filter(|n| !n.is_empty() && !n.contains('\0'))
            .unwrap_or(bot)
            .chars()
            .take(80)
            .collect();
        Ok(Author::Bot(bot.to_owned(), name))
    }
}

/// The messages of one day file as they are parsed: a JSON array of them, or (as some tools
/// export) one message object.
struct Day<'d, 'a> {
    reader: &'d mut ConvReader<'a>,
    path: &'d str,
    rejects: &'d mut Vec<RejectLine>,
    flush: &'d mut dyn FnMut(Chunk) -> bool,
    /// Messages read so far.
    n: usize,
    /// The writer is gone.
    stopped: bool,
}

impl Day<'_, '_> {
    /// One message; `false` when the writer is gone.
    fn one(&mut self, v: &Value) -> bool {
        self.n += 1;
        if let Err(r) = self.reader.message(v) {
            self.rejects.push(RejectLine {
                file: self.path.to_owned(),
                position: format!("message {}", self.n),
                kind: r.kind,
                reason: r.reason,
                raw: v.to_string(),
            });
        }
        if self.reader.chunk.rows >= CHUNK {
            let chunk = std::mem::take(&mut self.reader.chunk);
            if !(self.flush)(chunk) {
                self.stopped = true;
                return false;
            }
        }
        true
    }
}

impl<'de> serde::de::Visitor<'de> for &mut Day<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of messages")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Value>()? {
            if !self.one(&v) {
                return Err(serde::de::Error::custom("the writer is gone"));
            }
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let v = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        if !self.one(&v) {
            return Err(serde::de::Error::custom("the writer is gone"));
        }
        Ok(())
    }
}

enum Author {
    User(Uuid),
    /// An integration's bot id and name.
    Bot(String, String),
}

impl Author {
    fn id(&self, workspace: Uuid) -> Uuid {
        match self {
            Author::User(id) => *id,
            Author::Bot(bot, _) => bot_account(workspace, bot),
        }
    }
}

/// A file id or name as a part of a Storage key: ASCII letters, digits and `-._ ()`, anything
/// else `_` (Storage refuses many characters in keys; the name itself is kept as it was).
fn key_part(s: &str) -> String {
    let out: String = s
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._ ()".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match out.trim() {
        "" | "." | ".." => "file".to_owned(),
        _ => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known {
        Known {
            workspace: Uuid::nil(),
            users: HashMap::from([("U1".to_owned(), (Uuid::now_v7(), "ada".to_owned()))]),
            bot_users: HashMap::new(),
            channels: HashMap::new(),
            since: None,
        }
    }

    /// Reads `text` as one day file: the chunks flushed on the way and at the end, rejects.
    fn read_day(text: &str) -> (Vec<u64>, Vec<RejectLine>) {
        let known = known();
        let conv = Conv {
            slack_id: "C1".into(),
            folder: "general".into(),
        };
        let mut reader = ConvReader {
            known: &known,
            conv: &conv,
            chunk: Chunk::default(),
            stats: ConvStats::default(),
        };
        let mut flushed = Vec::new();
        let mut rejects = Vec::new();
        let mut flush = |c: Chunk| {
            flushed.push(c.rows);
            true
        };
        assert!(reader.day_file("general/d.json", text.as_bytes(), &mut rejects, &mut flush));
        flushed.push(reader.chunk.rows);
        (flushed, rejects)
    }

    #[test]
    fn a_day_file_is_read_a_message_at_a_time_and_flushed_in_chunks() {
        let n = CHUNK * 2 + 7;
        let messages: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"type":"message","user":"U1","ts":"1700000000.{i:06}","text":"m{i}"}}"#
                )
            })
            .collect();
        let (flushed, rejects) = read_day(&format!("[{}]", messages.join(",")));
        assert!(rejects.is_empty());
        assert_eq!(flushed, [CHUNK, CHUNK, 7], "chunks within one day file");
    }

    #[test]
    fn a_broken_day_file_keeps_what_came_before_the_break() {
        let (flushed, rejects) = read_day(
            r#"[{"type":"message","user":"U1","ts":"1700000000.000001","text":"whole"},
                {"type":"message","user":"U1","ts":"17"#,
        );
        assert_eq!(flushed, [1]);
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].kind, "bad_json");
        assert_eq!(rejects[0].position, "line 2, column 54");
        let (flushed, rejects) = read_day("42");
        assert_eq!(flushed, [0]);
        assert_eq!(rejects[0].reason, "a day file is a JSON array of messages");
    }
}
