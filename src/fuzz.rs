//! The fuzzing campaign's targets (FUZZING.md): each takes arbitrary bytes and runs them
//! through what chatctl does with that kind of input, as the commands do. A target may
//! refuse its input; it must not panic, hang or grow without bound. `fuzz/fuzz_targets/`
//! calls these under libFuzzer, and `tests/it/fuzz.rs` replays the kept corpus and every
//! crash reproducer through the same functions in the normal suite.

use std::io::Write as _;
use std::path::PathBuf;

/// A target: arbitrary bytes in, nothing out.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` and the corpus folders name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("search_query", search_query),
    ("workspace_spec", workspace_spec),
    ("bot_definition", bot_definition),
    ("config_file", config_file),
    ("durations_and_dates", durations_and_dates),
    ("realtime_frame", realtime_frame),
    ("user_import", user_import),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `chatctl search query TEXT`: the parser, and its error as printed.
pub fn search_query(data: &[u8]) {
    let Some(q) = text(data) else { return };
    match crate::search::query::parse(q) {
        Ok(query) => {
            let _ = query.text_only();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// `chatctl apply -f FILE --dry-run` up to the database: the YAML, then every check.
pub fn workspace_spec(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(spec) = crate::provision::spec::parse(text) else {
        return;
    };
    let file =
        crate::provision::spec::SpecFile::new(PathBuf::from("fuzz.yaml"), text.to_owned(), spec);
    let (_, problems) = crate::provision::spec::resolve_collecting(&[file]);
    for p in problems {
        let _ = p.to_string();
    }
}

/// A file of `bots/`: the YAML, then the definition's checks.
pub fn bot_definition(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(spec) = crate::yaml::from_str::<crate::bots::spec::BotSpec>(text) {
        let _ = crate::bots::spec::check(&spec);
    }
}

/// `chatctl --config FILE …`: the file read, every value parsed and checked as at start.
pub fn config_file(data: &[u8]) {
    thread_local! {
        static FILE: PathBuf = std::env::temp_dir()
            .join(format!("chatctl-fuzz-config-{}-{:?}.yaml", std::process::id(), std::thread::current().id()));
    }
    FILE.with(|path| {
        let written = std::fs::File::create(path).and_then(|mut f| f.write_all(data));
        if written.is_err() {
            return;
        }
        let env = crate::config::Env::from_pairs([("CHATCTL_CONFIG", path.to_string_lossy())]);
        if let Ok(config) = crate::config::Config::load(
            &env,
            &crate::config::Overrides::default(),
            std::path::Path::new("/"),
        ) {
            let _ = serde_json::to_string(&config.show());
        }
    });
}

/// Durations and dates as flags, settings, API bodies and import files give them: the
/// input's lines in turn, and the whole input as a summary request's JSON.
pub fn durations_and_dates(data: &[u8]) {
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    if let Some(text) = text(data) {
        for line in text.lines().take(16) {
            let _ = crate::config::parse_duration(line);
            let _ = crate::ai::window::parse_time(line, chrono_tz::UTC);
            let _ = crate::ai::window::parse_time(line, chrono_tz::Pacific::Kiritimati);
            let _ = crate::users::input::parse_date(line);
        }
    }
    if let Ok(named) = serde_json::from_slice::<crate::ai::window::Named>(data) {
        let _ = named.resolve(now);
    }
}

/// A websocket text frame from Supabase Realtime, and a `chat_notify` payload.
pub fn realtime_frame(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Some(f) = crate::realtime::phoenix::Frame::decode(text) {
        let _ = f.status();
        let _ = f.reason();
        let _ = crate::realtime::supabase::channel_of(&f.topic);
        let _ = f.encode();
    }
    let _ = crate::realtime::listen::inserted_id(text);
}

/// `chatctl users import FILE` up to the database: each format's records, mapped to people.
pub fn user_import(data: &[u8]) {
    use crate::users::input::{Counter, Format, Mapper};
    for (name, format) in [
        ("fuzz.csv", Format::Csv),
        ("fuzz.json", Format::Json),
        ("fuzz.jsonl", Format::Jsonl),
        ("fuzz.json", Format::Mongo),
        ("fuzz", Format::Auto),
    ] {
        let reader = Box::new(std::io::Cursor::new(data.to_vec()));
        let Ok(input) = crate::users::input::read(
            name,
            reader,
            Some(data.len() as u64),
            format,
            &Counter::default(),
        ) else {
            continue;
        };
        let mut mapper = Mapper::new(&[], "fuzz");
        for record in input.records.take(1000) {
            let Ok(record) = record else { break };
            if let Ok(doc) = &record.doc {
                let _ = mapper.person(doc);
            }
        }
    }
}
