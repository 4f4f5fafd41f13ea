//! Reading people from files, a record at a time: CSV with a header, a JSON array, JSON
//! Lines, and `mongoexport` output (Extended JSON, as lines or as an array). Each record
//! keeps its line number and raw text, and becomes a [`Person`] or a [`Reject`] saying why
//! not: bad input never stops the good rows.
//!
//! Over 900 lines, on purpose: four formats share the record, the field mapping and the
//! reject kinds, and their tests (a third of the file) sit beside them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// An input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// From the extension, then the first bytes
    Auto,
    Csv,
    /// A JSON array of objects
    Json,
    /// One JSON object a line
    Jsonl,
    /// mongoexport output: Extended JSON ($oid, $date), one document a line or an array
    Mongo,
}

/// Why a record was not imported: a short kind (for counting) and the reason in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub kind: &'static str,
    pub reason: String,
}

impl Reject {
    pub fn new(kind: &'static str, reason: impl Into<String>) -> Reject {
        Reject {
            kind,
            reason: reason.into(),
        }
    }
}

/// A password as the input gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    None,
    /// A hash Supabase Auth reads (bcrypt, argon2, Firebase scrypt): kept as is.
    Hash(String),
    /// Plain text: hashed with bcrypt before it leaves this process.
    Plain(String),
}

/// One person, as read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Lower case.
    pub email: String,
    pub name: String,
    /// Given and valid; otherwise derived from the address.
    pub username: Option<String>,
    pub external_source: Option<String>,
    pub external_id: Option<String>,
    pub password: Password,
    pub created_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Workspace role: member, guest or admin.
    pub role: Option<String>,
    /// `Some(false)`: the input says deactivated; `Some(true)`: says active; `None`: silent.
    pub active: Option<bool>,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub avatar_url: Option<String>,
}

/// One record of an input file.
#[derive(Debug)]
pub struct Record {
    /// Where it starts (1-based; a CSV record may span lines).
    pub line: u64,
    pub raw: String,
    pub doc: std::result::Result<Map<String, Value>, Reject>,
}

/// Bytes read so far, shared with whoever shows progress.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Counting<R> {
    inner: R,
    count: Counter,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// An opened input: its name, resolved format, size when known, and its records.
pub struct Input {
    pub name: String,
    pub format: Format,
    pub size: Option<u64>,
    pub records: Box<dyn Iterator<Item = io::Result<Record>> + Send>,
}

/// Opens `path` (`-`: standard input) in `format` (`Auto` decides from the extension, then
/// the first bytes). `count` is advanced by the bytes read.
pub fn open(path: &str, format: Format, count: &Counter) -> Result<Input> {
    let (reader, size): (Box<dyn Read + Send>, Option<u64>) = if path == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let f = File::open(path).map_err(|e| {
            anyhow::Error::from(e).context(Error::usage(format!("cannot open `{path}`")))
        })?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    read(path, reader, size, format, count)
}

/// Reads records from `reader`, named `path` (its extension helps `Auto` decide).
pub fn read(
    path: &str,
    reader: Box<dyn Read + Send>,
    size: Option<u64>,
    format: Format,
    count: &Counter,
) -> Result<Input> {
    let mut reader = BufReader::with_capacity(
        1 << 16,
        Counting {
            inner: reader,
            count: count.clone(),
        },
    );
    let head = reader.fill_buf()?.to_vec();
    let format = match format {
        Format::Auto => detect(Path::new(path), &head).ok_or_else(|| {
            Error::usage(format!("cannot tell the format of `{path}`"))
                .with_help("say it with --format csv|json|jsonl|mongo")
        })?,
        f => f,
    };
    let first = head
        .iter()
        .copied()
        .find(|b| !(b.is_ascii_whitespace() || *b == 0xEF || *b == 0xBB || *b == 0xBF));
    let records: Box<dyn Iterator<Item = io::Result<Record>> + Send> = match format {
        Format::Csv => Box::new(csv_records(reader)?),
        Format::Json => Box::new(ArrayRecords::new(reader)),
        Format::Mongo if first == Some(b'[') => Box::new(ArrayRecords::new(reader)),
        Format::Jsonl | Format::Mongo => Box::new(LineRecords { reader, line: 0 }),
        Format::Auto => unreachable!("resolved above"),
    };
    Ok(Input {
        name: path.to_owned(),
        format,
        size,
        records,
    })
}

/// The format of a file from its extension and first bytes.
fn detect(path: &Path, head: &[u8]) -> Option<Format> {
    let text = String::from_utf8_lossy(head);
    let body = text.trim_start_matches('\u{feff}').trim_start();
    let ejson = body.contains("\"$oid\"") || body.contains("\"$date\"");
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") | Some("tsv") | Some("txt") => Some(Format::Csv),
        Some("jsonl") | Some("ndjson") if ejson => Some(Format::Mongo),
        Some("jsonl") | Some("ndjson") => Some(Format::Jsonl),
        _ if body.starts_with('[') && ejson => Some(Format::Mongo),
        _ if body.starts_with('[') => Some(Format::Json),
        _ if body.starts_with('{') && ejson => Some(Format::Mongo),
        _ if body.starts_with('{') => Some(Format::Jsonl),
        Some("json") => None,
        _ if !body.is_empty() => Some(Format::Csv),
        _ => None,
    }
}

// ------------------------------------------------------------------------------------
// CSV
// ------------------------------------------------------------------------------------

fn csv_records<R: Read + Send + 'static>(
    reader: R,
) -> Result<impl Iterator<Item = io::Result<Record>> + Send> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut header = csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut header).map_err(csv_io)? {
        return Ok(CsvRecords {
            rdr,
            header: Vec::new(),
            done: true,
        });
    }
    let mut names = Vec::with_capacity(header.len());
    for (i, f) in header.iter().enumerate() {
        let f = if i == 0 {
            f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
        } else {
            f
        };
        let name = std::str::from_utf8(f)
            .map_err(|_| Error::usage("the CSV header is not valid UTF-8"))?;
        names.push(name.trim().to_owned());
    }
    Ok(CsvRecords {
        rdr,
        header: names,
        done: false,
    })
}

fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

struct CsvRecords<R> {
    rdr: csv::Reader<R>,
    header: Vec<String>,
    done: bool,
}

impl<R: Read> Iterator for CsvRecords<R> {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<io::Result<Record>> {
        if self.done {
            return None;
        }
        let mut rec = csv::ByteRecord::new();
        match self.rdr.read_byte_record(&mut rec) {
            Ok(false) => {
                self.done = true;
                return None;
            }
            Ok(true) => {}
            Err(e) => {
                self.done = true;
                return Some(Err(csv_io(e)));
            }
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.as_slice().len() > MAX_RECORD_BYTES {
            return Some(Ok(Record {
                line,
                raw: head_of(rec.as_slice()),
                doc: Err(too_large()),
            }));
        }
        let raw = {
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(Vec::new());
            let _ = w.write_byte_record(&rec);
            let bytes = w.into_inner().unwrap_or_default();
            String::from_utf8_lossy(&bytes).trim_end().to_owned()
        };
        let doc = if rec.len() != self.header.len() {
            Err(Reject::new(
                "bad_field_count",
                format!(
                    "the row has {} fields, the header {}",
                    rec.len(),
                    self.header.len()
                ),
            ))
        } else {
            let mut doc = Map::new();
            let mut bad = None;
            for (name, value) in self.header.iter().zip(rec.iter()) {
                match std::str::from_utf8(value) {
                    Ok(v) => {
                        if !v.trim().is_empty() {
                            doc.insert(name.clone(), Value::String(v.to_owned()));
                        }
                    }
                    Err(_) => {
                        bad = Some(Reject::new(
                            "invalid_utf8",
                            format!("the field `{name}` is not valid UTF-8"),
                        ));
                        break;
                    }
                }
            }
            bad.map_or(Ok(doc), Err)
        };
        Some(Ok(Record { line, raw, doc }))
    }
}

// ------------------------------------------------------------------------------------
// JSON Lines and JSON arrays
// ------------------------------------------------------------------------------------

/// The largest record (a CSV row, a JSON line, an array's element) an import reads: a
/// person is a few hundred bytes, so a larger one is a broken export, and is refused alone
/// (with its first bytes shown) instead of being held whole.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

fn too_large() -> Reject {
    Reject::new(
        "too_large",
        format!("the record is larger than {} KiB", MAX_RECORD_BYTES / 1024),
    )
}

/// The first bytes of an oversized record, as its `raw` text.
fn head_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned() + "…"
}

/// One JSON text (a line, or an array's element) as a document, Extended JSON decoded.
fn json_doc(bytes: &[u8]) -> std::result::Result<Map<String, Value>, Reject> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Reject::new("invalid_utf8", "the record is not valid UTF-8"))?;
    match serde_json::from_str::<Value>(text) {
        Ok(v) => match decode_ejson(v) {
            Value::Object(m) => Ok(m),
            _ => Err(Reject::new("bad_json", "the record is not a JSON object")),
        },
        Err(e) => Err(Reject::new("bad_json", format!("malformed JSON: {e}"))),
    }
}

struct LineRecords<R> {
    reader: R,
    line: u64,
}

impl<R: BufRead> Iterator for LineRecords<R> {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<io::Result<Record>> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let limit = MAX_RECORD_BYTES as u64 + 1;
            match (&mut self.reader).take(limit).read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            self.line += 1;
            if buf.len() > MAX_RECORD_BYTES && buf.last() != Some(&b'\n') {
                // Skip the rest of the line without holding it.
                let mut rest = Vec::new();
                loop {
                    rest.clear();
                    match (&mut self.reader)
                        .take(1 << 16)
                        .read_until(b'\n', &mut rest)
                    {
                        Ok(0) => break,
                        Ok(_) if rest.last() == Some(&b'\n') => break,
                        Ok(_) => {}
                        Err(e) => return Some(Err(e)),
                    }
                }
                return Some(Ok(Record {
                    line: self.line,
                    raw: head_of(&buf),
                    doc: Err(too_large()),
                }));
            }
            let mut body: &[u8] = &buf;
            if self.line == 1 {
                body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
            }
            let body = body.trim_ascii();
            if body.is_empty() {
                continue;
            }
            return Some(Ok(Record {
                line: self.line,
                raw: String::from_utf8_lossy(body).into_owned(),
                doc: json_doc(body),
            }));
        }
    }
}

/// The elements of a JSON array, one at a time (the array is never held whole).
struct ArrayRecords<R> {
    reader: R,
    line: u64,
    state: ArrayState,
}

#[derive(PartialEq)]
enum ArrayState {
    Start,
    Inside,
    Done,
}

impl<R: BufRead> ArrayRecords<R> {
    fn new(reader: R) -> Self {
        ArrayRecords {
            reader,
            line: 1,
            state: ArrayState::Start,
        }
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        Ok(self.reader.fill_buf()?.first().copied())
    }

    fn bump(&mut self) -> io::Result<Option<u8>> {
        let b = self.peek()?;
        if let Some(b) = b {
            self.reader.consume(1);
            if b == b'\n' {
                self.line += 1;
            }
        }
        Ok(b)
    }

    /// Skips whitespace (and a byte order mark).
    fn skip_ws(&mut self) -> io::Result<Option<u8>> {
        loop {
            match self.peek()? {
                Some(b) if b.is_ascii_whitespace() || b == 0xEF || b == 0xBB || b == 0xBF => {
                    self.bump()?;
                }
                other => return Ok(other),
            }
        }
    }

    fn element(&mut self) -> io::Result<Option<Record>> {
        if self.state == ArrayState::Start {
            match self.skip_ws()? {
                Some(b'[') => {
                    self.bump()?;
                    self.state = ArrayState::Inside;
                }
                _ => {
                    self.state = ArrayState::Done;
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the file is not a JSON array (try --format jsonl)",
                    ));
                }
            }
        }
        loop {
            match self.skip_ws()? {
                None | Some(b']') => {
                    self.state = ArrayState::Done;
                    return Ok(None);
                }
                Some(b',') => {
                    self.bump()?;
                }
                Some(_) => break,
            }
        }
        let line = self.line;
        let mut bytes = Vec::new();
        let (mut depth, mut in_str, mut esc) = (0u32, false, false);
        while let Some(b) = self.peek()? {
            if in_str {
                if esc {
                    esc = false;
                } else if b == b'\\' {
                    esc = true;
                } else if b == b'"' {
                    in_str = false;
                }
            } else {
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => break,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            bytes.push(b);
                            self.bump()?;
                            break;
                        }
                    }
                    b',' if depth == 0 => break,
                    _ => {}
                }
            }
            // Past the limit the element is still scanned to its end, not kept.
            if bytes.len() <= MAX_RECORD_BYTES {
                bytes.push(b);
            }
            self.bump()?;
        }
        if bytes.len() > MAX_RECORD_BYTES {
            return Ok(Some(Record {
                line,
                raw: head_of(&bytes),
                doc: Err(too_large()),
            }));
        }
        let doc = json_doc(&bytes);
        Ok(Some(Record {
            line,
            raw: String::from_utf8_lossy(bytes.trim_ascii()).into_owned(),
            doc,
        }))
    }
}

impl<R: BufRead> Iterator for ArrayRecords<R> {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<io::Result<Record>> {
        if self.state == ArrayState::Done {
            return None;
        }
        self.element().transpose()
    }
}

/// Decodes MongoDB Extended JSON (canonical and relaxed v2, legacy v1): `{"$oid": h}` is
/// `h`; a `$date` (ISO text, `{"$numberLong": ms}` or plain ms) is RFC 3339 text (or text
/// no date parser reads, when it is none of these); `$numberInt`/`$numberLong`/`$numberDouble`
/// are numbers.
pub fn decode_ejson(v: Value) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 => {
            let (k, inner) = m.into_iter().next().expect("one entry");
            match (k.as_str(), inner) {
                ("$oid", Value::String(s)) => Value::String(s),
                ("$date", d) => Value::String(ejson_date(&d).unwrap_or_else(|| {
                    format!(
                        "invalid $date {}",
                        serde_json::to_string(&d).unwrap_or_default()
                    )
                })),
                ("$numberInt" | "$numberLong", Value::String(s)) => s
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(Value::String(s)),
                ("$numberDouble" | "$numberDecimal", Value::String(s)) => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::String(s)),
                (_, inner) => {
                    let mut m = Map::new();
                    m.insert(k, decode_ejson(inner));
                    Value::Object(m)
                }
            }
        }
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, decode_ejson(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(decode_ejson).collect()),
        other => other,
    }
}

fn ejson_date(d: &Value) -> Option<String> {
    let ms = match d {
        Value::String(s) => return parse_date(s).map(|t| t.to_rfc3339()),
        Value::Number(n) => n.as_i64()?,
        Value::Object(m) => m.get("$numberLong")?.as_str()?.parse::<i64>().ok()?,
        _ => return None,
    };
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339())
}

/// Parses a date: RFC 3339, PostgreSQL's text form, or a date and time without a zone
/// (UTC), or a bare date (midnight UTC).
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

// ------------------------------------------------------------------------------------
// Mapping a document to a person
// ------------------------------------------------------------------------------------

/// The fields chatctl reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Email,
    Name,
    FirstName,
    LastName,
    Username,
    ExternalId,
    ExternalSource,
    Password,
    PasswordHash,
    CreatedAt,
    ConfirmedAt,
    Role,
    DeactivatedAt,
    Active,
    Deactivated,
    AvatarUrl,
    /// Read nothing from this column.
    Ignore,
}

/// Every field, by the name `--map` uses, with the column names recognised without it
/// (compared without case, spaces, dashes or underscores; dotted paths reach into nested
/// objects, e.g. Meteor's `emails.0.address`).
pub const FIELDS: &[(&str, Field, &[&str])] = &[
    (
        "email",
        Field::Email,
        &[
            "email",
            "emailaddress",
            "mail",
            "workemail",
            "primaryemail",
            "emails.0.address",
        ],
    ),
    (
        "name",
        Field::Name,
        &[
            "name",
            "fullname",
            "displayname",
            "profile.name",
            "profile.fullname",
        ],
    ),
    (
        "first_name",
        Field::FirstName,
        &["firstname", "givenname", "profile.firstname"],
    ),
    (
        "last_name",
        Field::LastName,
        &["lastname", "surname", "familyname", "profile.lastname"],
    ),
    (
        "username",
        Field::Username,
        &["username", "login", "handle"],
    ),
    (
        "external_id",
        Field::ExternalId,
        &["externalid", "id", "userid", "employeeid", "uid"],
    ),
    (
        "external_source",
        Field::ExternalSource,
        &["externalsource", "source"],
    ),
    ("password", Field::Password, &["password"]),
    (
        "password_hash",
        Field::PasswordHash,
        &[
            "passwordhash",
            "encryptedpassword",
            "hashedpassword",
            "services.password.bcrypt",
        ],
    ),
    (
        "created_at",
        Field::CreatedAt,
        &["createdat", "created", "signupdate", "joinedat"],
    ),
    (
        "email_confirmed_at",
        Field::ConfirmedAt,
        &["emailconfirmedat", "emailverifiedat", "confirmedat"],
    ),
    ("role", Field::Role, &["role", "workspacerole"]),
    (
        "deactivated_at",
        Field::DeactivatedAt,
        &["deactivatedat", "disabledat"],
    ),
    ("active", Field::Active, &["active", "enabled", "isactive"]),
    (
        "deactivated",
        Field::Deactivated,
        &["deactivated", "disabled", "isdeactivated"],
    ),
    (
        "avatar_url",
        Field::AvatarUrl,
        &["avatarurl", "avatar", "photourl", "pictureurl"],
    ),
    ("ignore", Field::Ignore, &[]),
];

/// A column name as compared: lower case, without spaces, dashes or underscores.
fn normal(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Parses a `--map COLUMN=FIELD`.
pub fn parse_map(arg: &str) -> std::result::Result<(String, Field), String> {
    let (col, field) = arg
        .rsplit_once('=')
        .ok_or_else(|| format!("`{arg}` is not COLUMN=FIELD"))?;
    let f = FIELDS
        .iter()
        .find(|(n, ..)| *n == field.trim())
        .map(|(_, f, _)| *f)
        .ok_or_else(|| {
            let names: Vec<&str> = FIELDS.iter().map(|(n, ..)| *n).collect();
            format!("unknown field `{field}` (one of {})", names.join(", "))
        })?;
    Ok((col.trim().to_owned(), f))
}

/// Maps documents to people: `--map` first, then the recognised names.
pub struct Mapper {
    maps: HashMap<String, Field>,
    cache: HashMap<String, Option<Field>>,
    /// The source recorded beside external ids the input gives without one.
    pub source: String,
}

impl Mapper {
    pub fn new(maps: &[(String, Field)], source: &str) -> Mapper {
        Mapper {
            maps: maps.iter().map(|(c, f)| (normal(c), *f)).collect(),
            cache: HashMap::new(),
            source: source.to_owned(),
        }
    }

    fn field(&mut self, path: &str) -> Option<Field> {
        if let Some(f) = self.cache.get(path) {
            return *f;
        }
        let n = normal(path);
        let f = self.maps.get(&n).copied().or_else(|| {
            // `_id` is Mongo's id: an external id, as is `id`.
            FIELDS
                .iter()
                .find(|(_, _, names)| names.contains(&n.as_str()))
                .map(|(_, f, _)| *f)
        });
        self.cache.insert(path.to_owned(), f);
        f
    }

    /// The person a document describes, or why it is rejected.
    pub fn person(&mut self, doc: &Map<String, Value>) -> std::result::Result<Person, Reject> {
        let mut found: HashMap<Field, &Value> = HashMap::new();
        let mut stack: Vec<(String, &Value, u8)> =
            doc.iter().map(|(k, v)| (k.clone(), v, 0)).collect();
        stack.reverse();
        while let Some((path, v, depth)) = stack.pop() {
            if let Some(f) = self.field(&path) {
                if f != Field::Ignore {
                    found.entry(f).or_insert(v);
                }
                continue;
            }
            if depth < 3 {
                match v {
                    Value::Object(m) => {
                        for (k, v) in m.iter().rev() {
                            stack.push((format!("{path}.{k}"), v, depth + 1));
                        }
                    }
                    Value::Array(a) => {
                        for (i, v) in a.iter().enumerate().rev().take(4) {
                            stack.push((format!("{path}.{i}"), v, depth + 1));
                        }
                    }
                    _ => {}
                }
            }
        }
        let text = |f: Field| -> std::result::Result<Option<String>, Reject> {
            match found.get(&f) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(Value::Bool(b)) => Ok(Some(b.to_string())),
                Some(_) => Err(Reject::new(
                    "bad_value",
                    format!("`{}` is not a single value", field_name(f)),
                )),
            }
        };
        let date = |f: Field| -> std::result::Result<Option<DateTime<Utc>>, Reject> {
            match text(f)? {
                None => Ok(None),
                Some(s) => parse_date(&s).map(Some).ok_or_else(|| {
                    Reject::new(
                        "bad_date",
                        format!("`{}` is not a date: `{s}`", field_name(f)),
                    )
                }),
            }
        };
        let flag = |f: Field| -> std::result::Result<Option<bool>, Reject> {
            match text(f)?.map(|s| s.to_ascii_lowercase()).as_deref() {
                None => Ok(None),
                Some("true" | "t" | "yes" | "y" | "1") => Ok(Some(true)),
                Some("false" | "f" | "no" | "n" | "0") => Ok(Some(false)),
                Some(other) => Err(Reject::new(
                    "bad_value",
                    format!("`{}` is not true or false: `{other}`", field_name(f)),
                )),
            }
        };

        let email = match text(Field::Email)? {
            None => return Err(Reject::new("missing_email", "no email address")),
            Some(e) => e.to_lowercase(),
        };
        if !valid_email(&email) {
            return Err(Reject::new(
                "bad_email",
                format!("`{email}` is not an email address"),
            ));
        }
        let name = match text(Field::Name)? {
            Some(n) => n,
            None => {
                let parts: Vec<String> = [text(Field::FirstName)?, text(Field::LastName)?]
                    .into_iter()
                    .flatten()
                    .collect();
                parts.join(" ")
            }
        };
        if name.is_empty() {
            return Err(Reject::new("bad_name", "the name is empty"));
        }
        if name.chars().count() > MAX_NAME {
            return Err(Reject::new(
                "bad_name",
                format!("the name is longer than {MAX_NAME} characters"),
            ));
        }
        let username = text(Field::Username)?
            .map(|u| u.to_lowercase())
            .filter(|u| super::accounts::valid_username(u));
        let external_id = text(Field::ExternalId)?;
        if external_id.as_ref().is_some_and(|x| x.len() > 255) {
            return Err(Reject::new(
                "bad_value",
                "the external id is longer than 255 bytes",
            ));
        }
        let external_source = match (&external_id, text(Field::ExternalSource)?) {
            (None, _) => None,
            (Some(_), Some(s)) => Some(s),
            (Some(_), None) => Some(self.source.clone()),
        };
        let password = match (text(Field::PasswordHash)?, text(Field::Password)?) {
            (Some(h), _) if supabase_hash(&h) => Password::Hash(h),
            (Some(_), _) => {
                return Err(Reject::new(
                    "bad_password",
                    "the password hash is not one Supabase Auth reads (bcrypt, argon2)",
                ));
            }
            (None, Some(p)) if is_bcrypt(&p) => Password::Hash(p),
            (None, Some(p)) if p.len() > 72 => {
                return Err(Reject::new(
                    "bad_password",
                    "the password is longer than 72 bytes (bcrypt reads no more)",
                ));
            }
            (None, Some(p)) => Password::Plain(p),
            (None, None) => Password::None,
        };
        let role = match text(Field::Role)?.map(|r| r.to_lowercase()) {
            None => None,
            Some(r) if ROLES.contains(&r.as_str()) || r == "owner" => Some(r),
            Some(r) => {
                return Err(Reject::new(
                    "unknown_role",
                    format!("unknown role `{r}` (member, guest, admin or owner)"),
                ));
            }
        };
        let deactivated_at = date(Field::DeactivatedAt)?;
        let active = match (flag(Field::Active)?, flag(Field::Deactivated)?) {
            (Some(a), _) => Some(a),
            (None, Some(d)) => Some(!d),
            (None, None) => deactivated_at.map(|_| false),
        };
        let avatar_url = text(Field::AvatarUrl)?;
        Ok(Person {
            email,
            name,
            username,
            external_source,
            external_id,
            password,
            created_at: date(Field::CreatedAt)?,
            confirmed_at: date(Field::ConfirmedAt)?,
            role,
            active,
            deactivated_at,
            avatar_url,
        })
    }
}

/// The roles `--role` gives in a workspace (a row may also say `owner`).
pub const ROLES: &[&str] = &["member", "guest", "admin"];

/// The longest display name accepted.
pub const MAX_NAME: usize = 200;

fn field_name(f: Field) -> &'static str {
    FIELDS
        .iter()
        .find(|(_, g, _)| *g == f)
        .map(|(n, ..)| *n)
        .unwrap_or("?")
}

/// Whether `e` (lower case) is an address Supabase Auth would take: one `@`, a local part of
/// at most 64 bytes, a dotted domain, no spaces or characters mail reserves, 255 bytes at
/// most (the column's width). Non-ASCII letters are allowed (RFC 6531).
pub fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || "\"(),:;<>@[\\]`".contains(c);
    e.len() <= 255
        && !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !local.chars().any(bad)
        && domain.contains('.')
        && !domain.chars().any(|c| bad(c) || c == '\'')
        && domain
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
}

/// `$2a$`/`$2b$`/`$2y$`, a two-digit cost, 53 characters of bcrypt's base64.
pub fn is_bcrypt(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 60
        && b[0] == b'$'
        && b[1] == b'2'
        && matches!(b[2], b'a' | b'b' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

/// A hash Supabase Auth verifies: bcrypt, argon2, or Firebase's scrypt form.
fn supabase_hash(s: &str) -> bool {
    s.len() <= 255 && (is_bcrypt(s) || s.starts_with("$argon2") || s.starts_with("$fbscrypt$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(format: Format, text: &str) -> Vec<Record> {
        let dir = tempfile::tempdir().unwrap();
        let ext = match format {
            Format::Csv => "csv",
            Format::Json => "json",
            _ => "jsonl",
        };
        let p = dir.path().join(format!("in.{ext}"));
        std::fs::write(&p, text).unwrap();
        open(p.to_str().unwrap(), format, &Counter::default())
            .unwrap()
            .records
            .collect::<io::Result<Vec<_>>>()
            .unwrap()
    }

    #[test]
    fn mongo_dates_in_every_spelling() {
        let d = |v: &str| decode_ejson(serde_json::from_str(v).unwrap());
        assert_eq!(
            d(r#"{"$date":{"$numberLong":"-3600000"}}"#),
            Value::String("1969-12-31T23:00:00+00:00".into())
        );
        assert_eq!(
            d(r#"{"$date":1609687444800}"#),
            Value::String("2021-01-03T15:24:04.800+00:00".into())
        );
        assert_eq!(
            d(r#"{"$date":"2019-02-01T19:43:57.068Z"}"#),
            Value::String("2019-02-01T19:43:57.068+00:00".into())
        );
        assert_eq!(
            d(r#"{"$oid":"59b99db4cfa9a34dcd7885b6"}"#),
            Value::String("59b99db4cfa9a34dcd7885b6".into())
        );
        let bad = d(r#"{"$date":"yesterday"}"#);
        assert!(parse_date(bad.as_str().unwrap()).is_none());
    }

    #[test]
    fn an_oversized_record_is_refused_alone_in_every_format() {
        let big = "x".repeat(MAX_RECORD_BYTES + 10);
        for (format, text) in [
            (
                Format::Jsonl,
                format!(
                    "{{\"email\":\"a@x.io\"}}\n{{\"name\":\"{big}\"}}\n{{\"email\":\"c@x.io\"}}\n"
                ),
            ),
            (
                Format::Json,
                format!(
                    "[{{\"email\":\"a@x.io\"}},\n{{\"name\":\"{big}\",\"n\":[1]}},\n{{\"email\":\"c@x.io\"}}]"
                ),
            ),
            (
                Format::Csv,
                format!("email,name\na@x.io,A\nb@x.io,{big}\nc@x.io,C\n"),
            ),
        ] {
            let r = records(format, &text);
            assert_eq!(r.len(), 3, "{format:?}");
            assert!(r[0].doc.is_ok(), "{format:?}");
            assert_eq!(
                r[1].doc.as_ref().unwrap_err().kind,
                "too_large",
                "{format:?}"
            );
            assert!(r[1].raw.len() < 300, "{format:?}: the raw text is its head");
            assert_eq!(
                r[2].doc.as_ref().unwrap().get("email"),
                Some(&Value::String("c@x.io".into())),
                "{format:?}: the next record is read"
            );
        }
    }

    #[test]
    fn json_array_elements_keep_their_lines_and_a_bad_one_is_rejected_alone() {
        let r = records(
            Format::Json,
            "[\n {\"email\": \"a@x.io\", \"name\": \"A, \\\"]\"},\n {\"email\": oops},\n\n {\"email\":\"c@x.io\",\"name\":\"C\"}\n]\n",
        );
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].line, 2);
        assert!(r[0].doc.is_ok());
        assert_eq!(r[1].line, 3);
        assert_eq!(r[1].doc.as_ref().unwrap_err().kind, "bad_json");
        assert_eq!(r[1].raw, "{\"email\": oops}");
        assert_eq!(r[2].line, 5);
    }

    #[test]
    fn csv_rows_with_the_wrong_field_count_or_bad_utf8_are_rejected() {
        let r = records(
            Format::Csv,
            "\u{feff}Email,Full Name\na@x.io,A\nb@x.io,B,extra\n\"c@x.io\",\"C\nD\"\n",
        );
        assert_eq!(r.len(), 3);
        assert!(
            r[0].doc.as_ref().unwrap().contains_key("Email"),
            "the BOM is not part of the name"
        );
        assert_eq!(r[1].doc.as_ref().unwrap_err().kind, "bad_field_count");
        assert_eq!(r[1].line, 3);
        assert_eq!(r[2].line, 4);
        let mut m = Mapper::new(&[], "import");
        let p = m.person(r[2].doc.as_ref().unwrap()).unwrap();
        assert_eq!(p.name, "C\nD");
    }

    #[test]
    fn mongoexport_json_array_with_legacy_dates() {
        let r = records(
            Format::Mongo,
            "[{\"_id\":{\"$oid\":\"5ca4bbcea2dd94ee58162a68\"},\"email\":\"a@x.io\",\"name\":\"A\",\"createdAt\":{\"$date\":1609687444800}},\n{\"_id\":{\"$oid\":\"5ca4bbcea2dd94ee58162a69\"},\"email\":\"b@x.io\",\"name\":\"B\",\"createdAt\":{\"$date\":\"not a date\"}}]",
        );
        assert_eq!(r.len(), 2);
        let mut m = Mapper::new(&[], "mongo");
        let a = m.person(r[0].doc.as_ref().unwrap()).unwrap();
        assert_eq!(a.external_id.as_deref(), Some("5ca4bbcea2dd94ee58162a68"));
        assert_eq!(
            a.created_at.unwrap().to_rfc3339(),
            "2021-01-03T15:24:04.800+00:00"
        );
        assert_eq!(r[1].line, 2);
        assert_eq!(
            m.person(r[1].doc.as_ref().unwrap()).unwrap_err().kind,
            "bad_date"
        );
    }

    #[test]
    fn emails() {
        for ok in [
            "a@b.co",
            "hafthór_júlíus_björnsson@gameofthron.es",
            "x.y+z@sub.example.org",
        ] {
            assert!(valid_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a b@c.co", "a@@b.co", "a@b..co", ".a@b.co", "a@-b.co",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn mapping_recognises_common_names_and_meteor_shapes() {
        let doc: Map<String, Value> = serde_json::from_str(
            r#"{"_id":"u1","emails":[{"address":"Ann@X.io","verified":true}],
                "profile":{"name":"Ann"},"services":{"password":{"bcrypt":"$2b$10$abcdefghijklmnopqrstuuNh1pXrsIGeF0k9t7Qu1pKPgBxe3oQLi"}},
                "createdAt":"2020-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        let p = Mapper::new(&[], "mongo").person(&doc).unwrap();
        assert_eq!(p.email, "ann@x.io");
        assert_eq!(p.name, "Ann");
        assert_eq!(p.external_id.as_deref(), Some("u1"));
        assert_eq!(p.external_source.as_deref(), Some("mongo"));
        assert!(matches!(p.password, Password::Hash(_)));
        assert!(p.created_at.is_some());
        let mut m = Mapper::new(
            &[
                ("profile.name".into(), Field::Ignore),
                ("nick".into(), Field::Name),
            ],
            "x",
        );
        let doc: Map<String, Value> = serde_json::from_str(
            r#"{"email":"b@x.io","profile":{"name":"B"},"nick":"Bee","role":"owner"}"#,
        )
        .unwrap();
        let p = m.person(&doc).unwrap();
        assert_eq!((p.name.as_str(), p.role.as_deref()), ("Bee", Some("owner")));
        let doc: Map<String, Value> =
            serde_json::from_str(r#"{"email":"b@x.io","nick":"Bee","role":"root"}"#).unwrap();
        assert_eq!(m.person(&doc).unwrap_err().kind, "unknown_role");
    }
}
