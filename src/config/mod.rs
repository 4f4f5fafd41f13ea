//! Layered configuration: built-in defaults < config file < environment < command-line flags.
//!
//! Every key is declared once in [`KEYS`], with its environment variables, default and whether
//! it is a secret. Each effective value remembers its [`Origin`], so errors can say where a bad
//! value came from and `chatctl config show` can print it. This is the only module that reads
//! the process environment ([`Env::from_process`]); everything else receives a [`Config`].
//!
//! Over 900 lines, on purpose: each key is declared once here (`KEYS`), and read from the file,
//! the environment and the flags, parsed into its typed section and shown (`config show`)
//! here; a third of it is that declaration table.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{self, Error, Result};

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Origin {
    BuiltIn,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in default"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// How a value is kept out of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrecy {
    /// Printed as is.
    Public,
    /// Never printed.
    Secret,
    /// A URL whose password is never printed.
    UrlPassword,
}

/// One configuration key.
struct Key {
    name: &'static str,
    /// Unprefixed, well-known variables read before `CHATCTL_*` (which wins over them).
    aliases: &'static [&'static str],
    default: Option<&'static str>,
    secrecy: Secrecy,
    help: &'static str,
}

/// Every configuration key. The `CHATCTL_*` variable of a key is its name upper-cased with
/// `.` replaced by `__` (`database.url` ↔ `CHATCTL_DATABASE__URL`).
const KEYS: &[Key] = &[
    Key {
        name: "database.url",
        aliases: &["DATABASE_URL"],
        default: None,
        secrecy: Secrecy::UrlPassword,
        help: "PostgreSQL URL; unset: the embedded local cluster",
    },
    Key {
        name: "database.max_connections",
        aliases: &[],
        default: Some("10"),
        secrecy: Secrecy::Public,
        help: "connection pool size",
    },
    Key {
        name: "database.connect_timeout",
        aliases: &[],
        default: Some("10s"),
        secrecy: Secrecy::Public,
        help: "how long to wait for a connection",
    },
    Key {
        name: "local.data_dir",
        aliases: &[],
        default: Some(".chatctl"),
        secrecy: Secrecy::Public,
        help: "where the embedded cluster (and other local state) lives",
    },
    Key {
        name: "local.pg_bin_dir",
        aliases: &[],
        default: None,
        secrecy: Secrecy::Public,
        help: "PostgreSQL binaries; unset: PATH, then /usr/lib/postgresql/*/bin",
    },
    Key {
        name: "local.shared_buffers",
        aliases: &[],
        default: Some("auto"),
        secrecy: Secrecy::Public,
        help: "the embedded cluster's shared_buffers; auto: a quarter of the memory, 128MiB to 4GiB",
    },
    Key {
        name: "migrate.lock_timeout",
        aliases: &[],
        default: Some("60s"),
        secrecy: Secrecy::Public,
        help: "how long `migrate` waits for another migration run",
    },
    Key {
        name: "output",
        aliases: &[],
        default: Some("table"),
        secrecy: Secrecy::Public,
        help: "table, json or yaml",
    },
    Key {
        name: "log.format",
        aliases: &[],
        default: Some("text"),
        secrecy: Secrecy::Public,
        help: "text or json (logs go to stderr)",
    },
    Key {
        name: "supabase.url",
        aliases: &["SUPABASE_URL"],
        default: None,
        secrecy: Secrecy::Public,
        help: "the Supabase project URL",
    },
    Key {
        name: "supabase.service_role_key",
        aliases: &["SUPABASE_SERVICE_ROLE_KEY"],
        default: None,
        secrecy: Secrecy::Secret,
        help: "the project's service-role key",
    },
    Key {
        name: "supabase.jwt_secret",
        aliases: &["SUPABASE_JWT_SECRET"],
        default: None,
        secrecy: Secrecy::Secret,
        help: "the project's JWT secret",
    },
    Key {
        name: "search.index_dir",
        aliases: &[],
        default: None,
        secrecy: Secrecy::Public,
        help: "the search index's directory; unset: search/ under local.data_dir",
    },
    Key {
        name: "bots.event_source",
        aliases: &[],
        default: Some("auto"),
        secrecy: Secrecy::Public,
        help: "auto (Realtime when a Supabase URL is set, else LISTEN/NOTIFY), listen or realtime",
    },
    Key {
        name: "realtime.url",
        aliases: &[],
        default: None,
        secrecy: Secrecy::Public,
        help: "the Realtime websocket endpoint; unset: derived from supabase.url",
    },
    Key {
        name: "realtime.heartbeat",
        aliases: &[],
        default: Some("25s"),
        secrecy: Secrecy::Public,
        help: "how often the Realtime client sends a heartbeat",
    },
    Key {
        name: "realtime.token_ttl",
        aliases: &[],
        default: Some("1h"),
        secrecy: Secrecy::Public,
        help: "lifetime of the tokens minted for bots (needs supabase.jwt_secret)",
    },
    Key {
        name: "openai.api_key",
        aliases: &["OPENAI_API_KEY"],
        default: None,
        secrecy: Secrecy::Secret,
        help: "key of an OpenAI-compatible API",
    },
    Key {
        name: "openai.base_url",
        aliases: &["OPENAI_BASE_URL"],
        default: None,
        secrecy: Secrecy::Public,
        help: "base URL of an OpenAI-compatible API; unset: https://api.openai.com/v1",
    },
    Key {
        name: "openai.model",
        aliases: &[],
        default: None,
        secrecy: Secrecy::Public,
        help: "the chat model; set: the AI uses this OpenAI-compatible model, unset: the offline engine",
    },
    Key {
        name: "openai.timeout",
        aliases: &[],
        default: Some("60s"),
        secrecy: Secrecy::Public,
        help: "how long one request may take",
    },
    Key {
        name: "openai.max_tokens",
        aliases: &[],
        default: Some("1024"),
        secrecy: Secrecy::Public,
        help: "the most tokens one answer may have",
    },
    Key {
        name: "openai.temperature",
        aliases: &[],
        default: Some("0.2"),
        secrecy: Secrecy::Public,
        help: "sampling temperature, 0 to 2",
    },
    Key {
        name: "openai.context_tokens",
        aliases: &[],
        default: Some("8192"),
        secrecy: Secrecy::Public,
        help: "the model's context window; longer windows are summarized in parts, then merged",
    },
    Key {
        name: "openai.concurrency",
        aliases: &[],
        default: Some("4"),
        secrecy: Secrecy::Public,
        help: "requests in flight at once",
    },
    Key {
        name: "openai.max_retries",
        aliases: &[],
        default: Some("3"),
        secrecy: Secrecy::Public,
        help: "retries after a 429, a 5xx, a timeout or a connection error",
    },
    Key {
        name: "openai.max_retry_wait",
        aliases: &[],
        default: Some("60s"),
        secrecy: Secrecy::Public,
        help: "the longest Retry-After honoured; a longer one fails the request at once",
    },
    Key {
        name: "ai.redact",
        aliases: &[],
        default: Some("true"),
        secrecy: Secrecy::Public,
        help: "replace emails, phone numbers and tokens before sending text to a model",
    },
    Key {
        name: "ai.daily_token_budget",
        aliases: &[],
        default: None,
        secrecy: Secrecy::Public,
        help: "tokens each bot (and the CLI) may spend per day, UTC; unset: unlimited",
    },
    Key {
        name: "serve.listen",
        aliases: &[],
        default: Some("127.0.0.1:8080"),
        secrecy: Secrecy::Public,
        help: "where `chatctl serve` (and `up`) serves the HTTP API",
    },
    Key {
        name: "serve.cors_origins",
        aliases: &[],
        default: None,
        secrecy: Secrecy::Public,
        help: "origins browsers may call the API from, comma-separated; unset: none",
    },
    Key {
        name: "serve.body_limit",
        aliases: &[],
        default: Some("64KiB"),
        secrecy: Secrecy::Public,
        help: "the largest request body the API reads (bytes, KiB or MiB)",
    },
    Key {
        name: "serve.request_timeout",
        aliases: &[],
        default: Some("90s"),
        secrecy: Secrecy::Public,
        help: "how long the API works on one request before answering 503",
    },
    Key {
        name: "serve.rate_limit",
        aliases: &[],
        default: Some("600"),
        secrecy: Secrecy::Public,
        help: "requests per minute each user may make to one API replica",
    },
    Key {
        name: "serve.max_in_flight",
        aliases: &[],
        default: Some("256"),
        secrecy: Secrecy::Public,
        help: "requests one API replica answers at once; more are refused with 503 at once",
    },
    Key {
        name: "serve.daily_token_budget",
        aliases: &[],
        default: None,
        secrecy: Secrecy::Public,
        help: "AI tokens each user may spend per day through the API, UTC; unset: ai.daily_token_budget",
    },
    Key {
        name: "serve.jwks_url",
        aliases: &[],
        default: None,
        secrecy: Secrecy::Public,
        help: "the JWKS of the project's asymmetric signing keys; unset: derived from supabase.url",
    },
];

fn key(name: &str) -> &'static Key {
    KEYS.iter()
        .find(|k| k.name == name)
        .expect("config keys are declared in KEYS")
}

/// The environment variable `CHATCTL_*` for a key.
pub fn env_name(key: &str) -> String {
    format!("CHATCTL_{}", key.to_uppercase().replace('.', "__"))
}

/// A snapshot of the process environment (tests build one by hand).
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// The process environment. The only place chatctl reads it.
    #[allow(clippy::disallowed_methods)]
    pub fn from_process() -> Env {
        Env(std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect())
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Env
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The configuration file's values by their dotted keys (`database.url`, `output`). The file's
/// shape comes from [`KEYS`], where each key is declared once: a section is the part of a
/// key before its dot. Anything else (a typo) is collected in `unknown` (dotted), and
/// `read_file` refuses it naming its line.
struct FileValues {
    values: Vec<(&'static str, String)>,
    unknown: Vec<String>,
}

/// Finds `name` among [`KEYS`].
fn declared(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

impl<'de> Deserialize<'de> for FileValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(Sections)
    }
}

/// The file's top level: sections, and the keys that have none (`output`).
struct Sections;

impl<'de> serde::de::Visitor<'de> for Sections {
    type Value = FileValues;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of configuration sections")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<FileValues, A::Error> {
        let mut file = FileValues {
            values: Vec::new(),
            unknown: Vec::new(),
        };
        while let Some(name) = map.next_key::<String>()? {
            if let Some(k) = declared(&name) {
                let v = map.next_value::<Scalar>()?.0;
                put(&mut file.values, k.name, v)?;
                continue;
            }
            let prefix = format!("{name}.");
            if !KEYS.iter().any(|k| k.name.starts_with(&prefix)) {
                map.next_value::<serde::de::IgnoredAny>()?;
                file.unknown.push(name);
                continue;
            }
            map.next_value_seed(Section {
                prefix,
                file: &mut file,
            })?;
        }
        Ok(file)
    }
}

/// What to say of an unknown key (dotted): which keys its place takes instead.
fn expected_instead(unknown: &str) -> String {
    let choices: Vec<String> = match unknown.rsplit_once('.') {
        Some((section, _)) => KEYS
            .iter()
            .filter_map(|k| k.name.strip_prefix(&format!("{section}.")))
            .map(|k| format!("`{k}`"))
            .collect(),
        None => {
            let mut out: Vec<String> = Vec::new();
            for k in KEYS {
                let s = format!("`{}`", k.name.split('.').next().unwrap_or(k.name));
                if !out.contains(&s) {
                    out.push(s);
                }
            }
            out
        }
    };
    let (place, name) = match unknown.rsplit_once('.') {
        Some((section, key)) => (format!(" in `{section}`"), key),
        None => (String::new(), unknown),
    };
    format!(
        "unknown field `{name}`{place}, expected one of {}",
        choices.join(", ")
    )
}

/// Records a key's value; a key written twice is an error (which one would count?).
fn put<E: serde::de::Error>(
    out: &mut Vec<(&'static str, String)>,
    name: &'static str,
    value: Option<String>,
) -> std::result::Result<(), E> {
    if out.iter().any(|(n, _)| *n == name) {
        return Err(E::custom(format!("duplicate field `{name}`")));
    }
    if let Some(v) = value {
        out.push((name, v));
    }
    Ok(())
}

/// One section's keys (`prefix` is `section.`).
struct Section<'a> {
    prefix: String,
    file: &'a mut FileValues,
}

impl<'de> serde::de::DeserializeSeed<'de> for Section<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Section<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "the keys of `{}`", self.prefix.trim_end_matches('.'))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<(), A::Error> {
        while let Some(name) = map.next_key::<String>()? {
            let dotted = format!("{}{name}", self.prefix);
            let Some(k) = declared(&dotted) else {
                map.next_value::<serde::de::IgnoredAny>()?;
                self.file.unknown.push(dotted);
                continue;
            };
            let v = map.next_value::<Scalar>()?.0;
            put(&mut self.file.values, k.name, v)?;
        }
        Ok(())
    }
}

/// A value as the file writes it: a string, a number or a boolean, kept as text (each key's
/// parser reads it, whatever layer it came from); `null` is no value.
struct Scalar(Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a number or true/false")
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Scalar, E> {
                Ok(Scalar(Some(v.to_owned())))
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_unit<E>(self) -> std::result::Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_none<E>(self) -> std::result::Result<Scalar, E> {
                Ok(Scalar(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a duration as people write one (`500ms`, `60s`, `1h30m`, `2 days`, `1w`, `1.5h`;
/// humantime's units: `m` is minutes, `M` months) or a bare number of seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    // A bare number is seconds.
    if let Ok(secs) = t.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("`{text}` is not a duration"));
        }
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("`{text}` is too long a duration"));
    }
    humantime::parse_duration(t).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => format!("`{text}` is too long a duration"),
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!(
                "unknown duration unit `{unit}` in `{text}` (e.g. `60s`, `1h30m`, `2 days`, `1w`)"
            )
        }
        _ => format!("`{text}` is not a duration (e.g. `60s`, `1h30m`, `2 days`, `1w`)"),
    })
}

/// The AI settings ([`Config::ai`]).
#[derive(Debug, Clone)]
pub struct AiConfig {
    /// The OpenAI-compatible model; `None`: the offline engine.
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub max_tokens: u32,
    pub temperature: f32,
    pub context_tokens: usize,
    pub concurrency: usize,
    pub max_retries: u32,
    pub max_retry_wait: Duration,
    pub redact: bool,
    pub daily_token_budget: Option<u64>,
}

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

/// How logs are printed on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Values given on the command line, which win over every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// (key, flag name, value)
    pub values: Vec<(&'static str, &'static str, String)>,
    /// `--config PATH`
    pub config_file: Option<PathBuf>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    values: BTreeMap<&'static str, (String, Origin)>,
    /// `database.*`, parsed.
    pub database: DatabaseSettings,
    /// `migrate.*`, parsed.
    pub migrate: MigrateSettings,
    /// `output`: the format of results on stdout.
    pub output: OutputFormat,
    /// `log.*`, parsed.
    pub log: LogSettings,
    /// `bots.*`, parsed.
    pub bots: BotsSettings,
    /// `realtime.*` (and `supabase.url`), parsed.
    pub realtime: RealtimeSettings,
    /// `ai.*` and `openai.*`, parsed.
    pub ai: AiConfig,
    /// `serve.*`, parsed.
    pub serve: ServeSettings,
    /// `local.shared_buffers` in bytes; `None`: auto (a quarter of the memory, bounded).
    pub shared_buffers: Option<usize>,
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
    /// The directory relative paths in the config resolve against (the working directory).
    pub base_dir: PathBuf,
    /// `PATH`, where the PostgreSQL binaries are looked for first.
    pub path_env: Option<String>,
    /// Who runs chatctl, for the audit log: `CHATCTL_OPERATOR`, else `$USER@host`.
    pub operator: String,
}

/// `database.*`.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

/// `migrate.*`.
#[derive(Debug, Clone)]
pub struct MigrateSettings {
    pub lock_timeout: Duration,
}

/// `log.*`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// `bots.*`.
#[derive(Debug, Clone)]
pub struct BotsSettings {
    pub event_source: SourceKind,
}

/// `realtime.*`: where Realtime is (`realtime.url`, else `supabase.url`;
/// `realtime::websocket_url` derives the websocket endpoint), the heartbeat and how long a
/// minted token lives.
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    pub url: Option<url::Url>,
    pub heartbeat: Duration,
    pub token_ttl: Duration,
}

/// `serve.*`: the HTTP API.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: String,
    /// Origins allowed to call from a browser (exactly as browsers send them).
    pub cors_origins: Vec<String>,
    pub body_limit: usize,
    pub request_timeout: Duration,
    /// Requests per minute per user, per replica.
    pub rate_limit: u32,
    /// Requests a replica answers at once.
    pub max_in_flight: usize,
    /// Tokens per user per day (UTC); `None`: unlimited.
    pub daily_token_budget: Option<u64>,
    /// Where the project's public signing keys are (`None`: HS256 tokens only).
    pub jwks_url: Option<url::Url>,
}

/// The layered values, before they are parsed into [`Config`]'s sections.
struct Layers {
    values: BTreeMap<&'static str, (String, Origin)>,
    /// The line of each value the file gave.
    lines: BTreeMap<&'static str, usize>,
}

impl Layers {
    fn raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|(v, _)| v.as_str())
    }

    fn parsed<T>(
        &self,
        name: &str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T> {
        let (value, origin) = &self.values[name];
        let at = match (origin, self.lines.get(name)) {
            (Origin::File(_), Some(line)) => format!(", line {line}"),
            _ => String::new(),
        };
        parse(value).ok_or_else(|| {
            Error::usage(format!(
                "invalid `{name}` = `{value}` (from {origin}{at}): expected {expected}"
            ))
            .into()
        })
    }

    fn max_connections(&self) -> Result<u32> {
        self.parsed("database.max_connections", "a positive integer", |v| {
            v.trim().parse::<u32>().ok().filter(|n| *n > 0)
        })
    }

    fn connect_timeout(&self) -> Result<Duration> {
        self.parsed(
            "database.connect_timeout",
            "a duration such as `10s`",
            |v| parse_duration(v).ok(),
        )
    }

    fn shared_buffers(&self) -> Result<Option<usize>> {
        self.parsed(
            "local.shared_buffers",
            "`auto` or a size of at least 1MiB such as `512MiB` or `2GiB`",
            |v| match v.trim() {
                "auto" => Some(None),
                v => parse_size(v).filter(|n| *n >= 1 << 20).map(Some),
            },
        )
    }

    fn lock_timeout(&self) -> Result<Duration> {
        self.parsed("migrate.lock_timeout", "a duration such as `60s`", |v| {
            parse_duration(v).ok()
        })
    }

    fn output(&self) -> Result<OutputFormat> {
        self.parsed("output", "one of table, json, yaml", |v| {
            clap::ValueEnum::from_str(v, true).ok()
        })
    }

    fn log_format(&self) -> Result<LogFormat> {
        self.parsed("log.format", "one of text, json", |v| {
            clap::ValueEnum::from_str(v, true).ok()
        })
    }

    /// Which event source the bot daemon uses.
    fn event_source(&self) -> Result<SourceKind> {
        self.parsed("bots.event_source", "one of auto, listen, realtime", |v| {
            clap::ValueEnum::from_str(v, true).ok()
        })
    }

    /// Where Realtime is: `realtime.url`, else `supabase.url` (`realtime::websocket_url`
    /// derives the websocket endpoint).
    fn realtime_url(&self) -> Result<Option<url::Url>> {
        for name in ["realtime.url", "supabase.url"] {
            if self.raw(name).is_some() {
                return self
                    .parsed(name, "an https://, http://, wss:// or ws:// URL", |v| {
                        url::Url::parse(v.trim())
                            .ok()
                            .filter(|u| ["https", "http", "wss", "ws"].contains(&u.scheme()))
                    })
                    .map(Some);
            }
        }
        Ok(None)
    }

    fn realtime_heartbeat(&self) -> Result<Duration> {
        self.parsed("realtime.heartbeat", "a duration such as `25s`", |v| {
            parse_duration(v).ok().filter(|d| !d.is_zero())
        })
    }

    fn realtime_token_ttl(&self) -> Result<Duration> {
        self.parsed("realtime.token_ttl", "a duration of at least `10s`", |v| {
            parse_duration(v).ok().filter(|d| d.as_secs() >= 10)
        })
    }

    /// The AI settings: the OpenAI-compatible model (when one is configured) and the
    /// options of every engine.
    fn ai(&self) -> Result<AiConfig> {
        let count = |name: &str, min: u64| {
            self.parsed(name, &format!("an integer of at least {min}"), |v| {
                v.trim().parse::<u64>().ok().filter(|n| *n >= min)
            })
        };
        let budget = match self.raw("ai.daily_token_budget") {
            None => None,
            Some(_) => Some(count("ai.daily_token_budget", 1)?),
        };
        let max_tokens = u32::try_from(count("openai.max_tokens", 16)?).unwrap_or(u32::MAX);
        let context_tokens =
            usize::try_from(count("openai.context_tokens", 1024)?).unwrap_or(usize::MAX);
        if max_tokens as usize * 2 >= context_tokens {
            return Err(Error::usage(format!(
                "`openai.max_tokens` ({max_tokens}) must be less than half of `openai.context_tokens` ({context_tokens})"
            ))
            .into());
        }
        Ok(AiConfig {
            model: self.raw("openai.model").map(str::to_owned),
            base_url: self.raw("openai.base_url").map(str::to_owned),
            api_key: self.raw("openai.api_key").map(str::to_owned),
            timeout: self.parsed("openai.timeout", "a duration such as `60s`", |v| {
                parse_duration(v).ok().filter(|d| !d.is_zero())
            })?,
            max_tokens,
            temperature: self.parsed("openai.temperature", "a number from 0 to 2", |v| {
                v.trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|t| (0.0..=2.0).contains(t))
            })?,
            context_tokens,
            concurrency: usize::try_from(count("openai.concurrency", 1)?).unwrap_or(1),
            max_retries: u32::try_from(count("openai.max_retries", 0)?).unwrap_or(u32::MAX),
            max_retry_wait: self.parsed(
                "openai.max_retry_wait",
                "a duration such as `60s`",
                |v| parse_duration(v).ok(),
            )?,
            redact: self.parsed("ai.redact", "true or false", |v| {
                v.trim().parse::<bool>().ok()
            })?,
            daily_token_budget: budget,
        })
    }
}

impl Layers {
    /// `serve.*`; the per-user AI budget falls back to `ai_budget` (`ai.daily_token_budget`).
    fn serve(&self, ai_budget: Option<u64>) -> Result<ServeSettings> {
        let budget = match self.raw("serve.daily_token_budget") {
            Some(_) => Some(self.parsed(
                "serve.daily_token_budget",
                "an integer of at least 1",
                |v| v.trim().parse::<u64>().ok().filter(|n| *n >= 1),
            )?),
            None => ai_budget,
        };
        let jwks_url = match (self.raw("serve.jwks_url"), self.raw("supabase.url")) {
            (Some(_), _) => {
                Some(
                    self.parsed("serve.jwks_url", "an https:// or http:// URL", |v| {
                        url::Url::parse(v.trim())
                            .ok()
                            .filter(|u| ["https", "http"].contains(&u.scheme()))
                    })?,
                )
            }
            (None, Some(_)) => self
                .parsed("supabase.url", "an https:// or http:// URL", |v| {
                    url::Url::parse(v.trim())
                        .ok()
                        .filter(|u| ["https", "http"].contains(&u.scheme()))
                })?
                .join("auth/v1/.well-known/jwks.json")
                .ok(),
            (None, None) => None,
        };
        Ok(ServeSettings {
            listen: self
                .raw("serve.listen")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            cors_origins: self
                .raw("serve.cors_origins")
                .unwrap_or_default()
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            body_limit: self.parsed(
                "serve.body_limit",
                "a size such as `64KiB` or `1MiB`",
                parse_size,
            )?,
            request_timeout: self.parsed(
                "serve.request_timeout",
                "a duration such as `90s`",
                |v| parse_duration(v).ok().filter(|d| !d.is_zero()),
            )?,
            rate_limit: self.parsed(
                "serve.rate_limit",
                "a positive number of requests per minute",
                |v| v.trim().parse::<u32>().ok().filter(|n| *n > 0),
            )?,
            max_in_flight: self.parsed(
                "serve.max_in_flight",
                "a positive number of requests",
                |v| {
                    v.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1_000_000).contains(n))
                },
            )?,
            daily_token_budget: budget,
            jwks_url,
        })
    }
}

/// A size in bytes: `65536`, `64KiB`, `1MiB`, `2GiB` (at least 1 KiB).
fn parse_size(v: &str) -> Option<usize> {
    let v = v.trim();
    let (digits, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    let n: usize = digits.parse().ok()?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale).filter(|n| *n >= 1024)
}

/// Where the default config file is looked for, relative to the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "config/chatctl.yaml";

impl Config {
    /// Loads the layers: defaults, the config file (`--config`, `CHATCTL_CONFIG`, or
    /// `config/chatctl.yaml` when present), the environment, then `overrides`.
    pub fn load(env: &Env, overrides: &Overrides, base_dir: &Path) -> Result<Config> {
        let mut values: BTreeMap<&'static str, (String, Origin)> = BTreeMap::new();
        for k in KEYS {
            if let Some(d) = k.default {
                values.insert(k.name, (d.to_owned(), Origin::BuiltIn));
            }
        }

        let file = match (&overrides.config_file, env.get("CHATCTL_CONFIG")) {
            (Some(p), _) => Some(base_dir.join(p)),
            (None, Some(p)) => Some(base_dir.join(p)),
            (None, None) => {
                let p = base_dir.join(DEFAULT_CONFIG_FILE);
                p.is_file().then_some(p)
            }
        };
        let mut lines = BTreeMap::new();
        if let Some(path) = &file {
            for (name, value, line) in read_file(path)? {
                values.insert(name, (value, Origin::File(path.clone())));
                lines.extend(line.map(|l| (name, l)));
            }
        }

        for k in KEYS {
            for alias in k.aliases {
                if let Some(v) = env.get(alias) {
                    values.insert(k.name, (v.to_owned(), Origin::Env((*alias).to_owned())));
                }
            }
            let name = env_name(k.name);
            if let Some(v) = env.get(&name) {
                values.insert(k.name, (v.to_owned(), Origin::Env(name)));
            }
        }

        for (name, flag, value) in &overrides.values {
            values.insert(
                key(name).name,
                (value.clone(), Origin::Flag((*flag).to_owned())),
            );
        }

        let layers = Layers { values, lines };
        // Every value is parsed here, once: a bad one fails at start with its origin named.
        let ai = layers.ai()?;
        let config = Config {
            database: DatabaseSettings {
                max_connections: layers.max_connections()?,
                connect_timeout: layers.connect_timeout()?,
            },
            migrate: MigrateSettings {
                lock_timeout: layers.lock_timeout()?,
            },
            output: layers.output()?,
            log: LogSettings {
                format: layers.log_format()?,
            },
            bots: BotsSettings {
                event_source: layers.event_source()?,
            },
            realtime: RealtimeSettings {
                url: layers.realtime_url()?,
                heartbeat: layers.realtime_heartbeat()?,
                token_ttl: layers.realtime_token_ttl()?,
            },
            serve: layers.serve(ai.daily_token_budget)?,
            shared_buffers: layers.shared_buffers()?,
            ai,
            values: layers.values,
            file,
            base_dir: base_dir.to_owned(),
            path_env: env.get("PATH").map(str::to_owned),
            operator: operator(env),
        };
        config.check_database_url()?;
        config.register_secrets();
        Ok(config)
    }

    /// Checks `database.url` parses, so a bad one fails at start with its origin named.
    fn check_database_url(&self) -> Result<()> {
        if let Some(url) = self.database_url() {
            crate::urls::parse(url).map_err(|e| {
                let origin = &self.values["database.url"].1;
                anyhow::Error::from(
                    Error::usage(format!("invalid `database.url` (from {origin}): {e}"))
                        .with_help("expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
                )
            })?;
        }
        Ok(())
    }

    fn register_secrets(&self) {
        for k in KEYS {
            let Some((value, _)) = self.values.get(k.name) else {
                continue;
            };
            match k.secrecy {
                Secrecy::Secret => error::register_secret(value),
                // Any URL-shaped value may carry a password (`openai.base_url`, a proxy).
                Secrecy::Public | Secrecy::UrlPassword => {
                    for p in crate::urls::secrets(value) {
                        error::register_secret(&p);
                    }
                }
            }
        }
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|(v, _)| v.as_str())
    }

    /// Forgets `database.url`, so the local cluster is used.
    pub fn clear_database_url(&mut self) {
        self.values.remove("database.url");
    }

    /// The database URL, or `None` for the embedded local cluster.
    pub fn database_url(&self) -> Option<&str> {
        self.raw("database.url")
    }

    pub fn supabase_service_role_key(&self) -> Option<&str> {
        self.raw("supabase.service_role_key")
    }

    /// The Supabase project URL (`https://<ref>.supabase.co`).
    pub fn supabase_url(&self) -> Option<&str> {
        self.raw("supabase.url")
    }

    pub fn supabase_jwt_secret(&self) -> Option<&str> {
        self.raw("supabase.jwt_secret")
    }

    /// The local state directory (the embedded cluster, the search index), absolute.
    pub fn data_dir(&self) -> PathBuf {
        self.base_dir
            .join(self.raw("local.data_dir").unwrap_or(".chatctl"))
    }

    /// The search index's directory, absolute.
    pub fn search_index_dir(&self) -> PathBuf {
        match self.raw("search.index_dir") {
            Some(p) => self.base_dir.join(p),
            None => self.data_dir().join("search"),
        }
    }

    pub fn pg_bin_dir(&self) -> Option<PathBuf> {
        self.raw("local.pg_bin_dir").map(|p| self.base_dir.join(p))
    }

    /// The effective configuration, every key, secrets masked, with origins.
    pub fn show(&self) -> ConfigReport {
        let entries = KEYS
            .iter()
            .map(|k| {
                let (value, origin) = match self.values.get(k.name) {
                    Some((v, o)) => (Some(mask(k.secrecy, v)), Some(o.clone())),
                    None => (None, None),
                };
                ConfigEntry {
                    key: k.name,
                    value,
                    origin,
                    env: env_name(k.name),
                    help: k.help,
                }
            })
            .collect();
        ConfigReport {
            file: self.file.clone(),
            entries,
        }
    }
}

/// The operator's identity: `CHATCTL_OPERATOR`, else `user@host`.
fn operator(env: &Env) -> String {
    if let Some(op) = env.get("CHATCTL_OPERATOR") {
        return op.to_owned();
    }
    let user = env
        .get("USER")
        .or_else(|| env.get("LOGNAME"))
        .map(str::to_owned)
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if host.is_empty() {
        user.to_owned()
    } else {
        format!("{user}@{host}")
    }
}

/// The name of the effective user, from /etc/passwd.
fn user_from_passwd() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid).then(|| f[0].to_owned())
    })
}

fn mask(secrecy: Secrecy, value: &str) -> String {
    match secrecy {
        // A URL-shaped setting with a password in it is shown without it, whatever the key.
        Secrecy::Public if crate::urls::secrets(value).is_empty() => value.to_owned(),
        Secrecy::Public => crate::urls::redact(value),
        Secrecy::Secret => "***".to_owned(),
        Secrecy::UrlPassword => crate::urls::redact(value),
    }
}

/// Reads the config file into (key, value) pairs.
fn read_file(path: &Path) -> Result<Vec<(&'static str, String, Option<usize>)>> {
    let text = crate::yaml::read_file(path).map_err(|e| {
        Error::usage(format!("cannot read config file {}: {e}", path.display()))
            .with_help("pass an existing file with --config, or unset CHATCTL_CONFIG")
    })?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let invalid = |problem: String| {
        Error::usage(format!(
            "invalid config file {}: {}",
            path.display(),
            error::scrub(&problem)
        ))
        .with_help(format!(
            "fix the file, or see `chatctl config show` for the keys; {} lists them with examples",
            "config/chatctl.example.yaml"
        ))
    };
    let file: FileValues = crate::yaml::from_str(&text).map_err(|e| match e {
        crate::yaml::YamlError::TooDeep { line } => invalid(format!("{e} at line {line}")),
        e => invalid(e.to_string()),
    })?;
    if let Some(unknown) = file.unknown.first() {
        let at = line_of(&text, unknown).map_or_else(String::new, |l| format!(" at line {l}"));
        return Err(invalid(format!("{}{at}", expected_instead(unknown))).into());
    }
    Ok(file
        .values
        .into_iter()
        .map(|(name, value)| (name, value, line_of(&text, name)))
        .collect())
}

/// The line (1-based) where `text` sets the dotted key `name`: its section's line, then the
/// key's first line after it (or, for a key without a section, its own line).
fn line_of(text: &str, name: &str) -> Option<usize> {
    let sets = |line: &str, key: &str| {
        line.trim_start()
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    };
    let lines: Vec<&str> = text.lines().collect();
    let (section, key) = match name.split_once('.') {
        Some((s, k)) => (Some(s), k),
        None => (None, name),
    };
    let from = match section {
        Some(s) => {
            lines
                .iter()
                .position(|l| !l.starts_with(' ') && sets(l, s))?
                + 1
        }
        None => 0,
    };
    lines[from..]
        .iter()
        .position(|l| sets(l, key))
        .map(|i| from + i + 1)
}

/// `chatctl config show`.
#[derive(Debug, Serialize)]
pub struct ConfigReport {
    pub file: Option<PathBuf>,
    pub entries: Vec<ConfigEntry>,
}

#[derive(Debug, Serialize)]
pub struct ConfigEntry {
    pub key: &'static str,
    pub value: Option<String>,
    pub origin: Option<Origin>,
    pub env: String,
    #[serde(skip)]
    pub help: &'static str,
}

/// Which event source the daemon uses (`bots.event_source`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Realtime when `supabase.url` (or `realtime.url`) is set, else LISTEN/NOTIFY.
    Auto,
    Listen,
    Realtime,
}

#[cfg(test)]
mod tests;

impl crate::report::Report for ConfigReport {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut t = crate::report::table(["KEY", "VALUE", "ORIGIN", "ENV"]);
        for e in &self.entries {
            t.add_row(vec![
                e.key.to_owned(),
                e.value.clone().unwrap_or_else(|| "-".into()),
                e.origin
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_else(|| "unset".into()),
                e.env.clone(),
            ]);
        }
        crate::report::write_table(out, &t)?;
        match &self.file {
            Some(f) => writeln!(out, "\nconfig file: {}", f.display()),
            None => writeln!(out, "\nconfig file: none"),
        }
    }
}
