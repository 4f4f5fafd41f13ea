//! Bot definitions (`bots/*.yaml`): who the bot is, where it listens, what triggers it.
//! Every invalid definition is reported with its file, line and reason.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::provision::spec::Problem;

/// One bot.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BotSpec {
    /// The bot's name; also its user's username (the user is created if missing).
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub scope: Scope,
    /// Each trigger is a one-key map: `- mention: {}`, `- keyword: {words: [..], reply: ..}`.
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    pub triggers: Vec<Trigger>,
    /// The persona / system prompt the AI engine uses for this bot.
    #[serde(default)]
    pub persona: Option<String>,
    /// Overrides of the AI's prompt templates (`system`, `digest`, `reduce`,
    /// `thread_summary`, `reply`); see `chatctl bots prompts`.
    #[serde(default)]
    pub prompts: crate::ai::Prompts,
    /// Tokens this bot may spend on a model per day (UTC); unset: `ai.daily_token_budget`.
    #[serde(default)]
    pub daily_token_budget: Option<u64>,
    #[serde(default)]
    pub limits: Limits,
    /// Answer other bots too (default: no, to prevent loops).
    #[serde(default)]
    pub reply_to_bots: bool,
}

impl BotSpec {
    /// The voice this bot writes with on `engine`: its persona, prompts and budget (else
    /// `default_budget`, the `ai` config's).
    pub fn voice(
        &self,
        engine: std::sync::Arc<dyn crate::ai::LanguageModel>,
        default_budget: Option<u64>,
        on_fallback: Option<crate::ai::voice::OnFallback>,
    ) -> crate::ai::voice::Voice {
        crate::ai::voice::Voice {
            engine,
            bot: self.name.clone(),
            persona: self.persona.clone(),
            prompts: self.prompts.clone(),
            budget: self.daily_token_budget.or(default_budget),
            payer: None,
            on_fallback,
        }
    }

    /// A bot with this name, no triggers, and every default (what `chatctl summarize
    /// --as-bot` posts as when the bot has no definition).
    pub fn named(name: &str) -> BotSpec {
        BotSpec {
            name: name.to_owned(),
            display_name: None,
            scope: Scope::default(),
            triggers: Vec::new(),
            persona: None,
            prompts: Default::default(),
            daily_token_budget: None,
            limits: Limits::default(),
            reply_to_bots: false,
        }
    }
}

/// Whether `name` can name a bot (and its user): a username, with no control character.
pub fn valid_name(name: &str) -> bool {
    crate::users::accounts::valid_username(name) && !name.contains(char::is_control)
}

/// Where a bot listens. Empty lists: every channel the bot is a member of.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Workspace slugs: every channel the bot is a member of in them.
    #[serde(default)]
    pub workspaces: Vec<String>,
    /// `slug/channel` names.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// Reply caps, per window of an hour.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_per_channel")]
    pub per_channel_per_hour: u32,
    #[serde(default = "default_per_thread")]
    pub per_thread_per_hour: u32,
}

fn default_per_channel() -> u32 {
    30
}
fn default_per_thread() -> u32 {
    10
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_channel_per_hour: default_per_channel(),
            per_thread_per_hour: default_per_thread(),
        }
    }
}

/// What makes a bot act.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// `@bot` in a message: reply in its thread, with the `reply` template, else the AI's
    /// suggested reply (with `prompt` as its instructions, when given).
    Mention {
        #[serde(default)]
        reply: Option<String>,
        #[serde(default)]
        prompt: Option<String>,
    },
    /// Any of these words (case-insensitive, whole words). `reply` (a template) or `prompt`
    /// (the AI answers, with these instructions).
    Keyword {
        words: Vec<String>,
        #[serde(default)]
        reply: Option<String>,
        #[serde(default)]
        prompt: Option<String>,
    },
    /// A regular expression; `reply` or `prompt` as for `keyword`.
    Regex {
        pattern: String,
        #[serde(default)]
        reply: Option<String>,
        #[serde(default)]
        prompt: Option<String>,
    },
    /// A message starting with this command (`/summarize`, `!help`); `reply` or `prompt` as
    /// for `keyword`.
    Command {
        name: String,
        #[serde(default)]
        reply: Option<String>,
        #[serde(default)]
        prompt: Option<String>,
    },
    /// A summary of a thread, posted in the thread: when a message starts with `command`
    /// (default `/tldr`), and, with `every: N`, each time the thread reaches a multiple of N
    /// replies.
    ThreadSummary {
        #[serde(default = "tldr")]
        command: String,
        #[serde(default)]
        every: Option<u32>,
    },
    /// A digest of each channel's window, posted on a cron schedule (`0 9 * * *`) in a time
    /// zone (default UTC). A digest missed while the daemon was down is posted when it
    /// starts, unless `post_missed: false`.
    Schedule {
        cron: String,
        #[serde(default)]
        tz: Option<String>,
        #[serde(default = "yes")]
        post_missed: bool,
    },
}

fn yes() -> bool {
    true
}

fn tldr() -> String {
    "/tldr".into()
}

/// A loaded bot and the file it came from.
#[derive(Debug, Clone)]
pub struct BotFile {
    pub path: PathBuf,
    pub spec: BotSpec,
}

/// Reads every `*.yaml` in `dir`; all problems at once.
pub fn load_dir(dir: &Path) -> Result<Vec<BotFile>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            Error::usage(format!("cannot read bot directory {}: {e}", dir.display()))
                .with_help("pass --bots DIR")
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    let mut bots = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let text = crate::yaml::read_file(&path)
            .map_err(|e| Error::usage(format!("cannot read {}: {e}", path.display())))?;
        match crate::yaml::from_str::<BotSpec>(&text) {
            Ok(spec) => {
                let mut found = check(&spec);
                if let Some(first) = bots.iter().find(|b: &&BotFile| b.spec.name == spec.name) {
                    found.push((
                        format!(
                            "two bots are named `{}`: this one and {}",
                            spec.name,
                            first.path.display()
                        ),
                        "name".into(),
                    ));
                }
                let positions = match found.is_empty() {
                    true => crate::yaml::Positions::default(),
                    false => crate::yaml::Positions::of(&text),
                };
                for (message, at) in found {
                    problems.push(Problem {
                        file: path.clone(),
                        line: positions.line(&at),
                        message,
                    });
                }
                bots.push(BotFile { path, spec });
            }
            Err(e) => problems.push(Problem {
                file: path,
                line: e.line(),
                message: e.message(),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(anyhow::Error::from(crate::provision::SpecErrors(problems))
            .context(Error::usage("invalid bot definitions")));
    }
    Ok(bots)
}

impl Trigger {
    /// The key that names the trigger in a definition (`mention`, `schedule`, …).
    fn key(&self) -> &'static str {
        match self {
            Trigger::Mention { .. } => "mention",
            Trigger::Keyword { .. } => "keyword",
            Trigger::Regex { .. } => "regex",
            Trigger::Command { .. } => "command",
            Trigger::ThreadSummary { .. } => "thread_summary",
            Trigger::Schedule { .. } => "schedule",
        }
    }
}

/// Problems in one definition: (message, the path of the value it is about, as
/// [`crate::yaml::Positions`] finds its line).
pub(crate) fn check(b: &BotSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !valid_name(&b.name) {
        out.push((
            format!(
                "invalid bot name `{}`: {}",
                b.name,
                crate::users::accounts::USERNAME_RULES
            ),
            "name".into(),
        ));
    }
    if b.triggers.is_empty() {
        out.push(("a bot needs at least one trigger".into(), "triggers".into()));
    }
    for (template, name) in b.prompts.unknown_placeholders() {
        out.push((
            format!(
                "unknown placeholder `{{{name}}}` in prompts.{template} (known: {})",
                crate::ai::prompt::PLACEHOLDERS.join(", ")
            ),
            format!("prompts/{template}"),
        ));
    }
    for (i, t) in b.triggers.iter().enumerate() {
        let at = |field: &str| format!("triggers/{i}/{}/{field}", t.key());
        match t {
            Trigger::Keyword { reply, prompt, .. }
            | Trigger::Regex { reply, prompt, .. }
            | Trigger::Command { reply, prompt, .. }
                if reply.is_some() == prompt.is_some() =>
            {
                out.push((
                    "a keyword, regex or command trigger needs `reply` (a template) or `prompt` (an AI answer), not both".into(),
                    match reply {
                        Some(_) => at("prompt"),
                        None => format!("triggers/{i}/{}", t.key()),
                    },
                ))
            }
            Trigger::Mention {
                reply: Some(_),
                prompt: Some(_),
            } => out.push((
                "a mention trigger takes `reply` or `prompt`, not both".into(),
                at("prompt"),
            )),
            Trigger::Regex { pattern, .. } => {
                if let Err(e) = regex::Regex::new(pattern) {
                    out.push((
                        format!(
                            "invalid regex `{pattern}`: {}",
                            e.to_string().lines().last().unwrap_or_default()
                        ),
                        at("pattern"),
                    ));
                }
            }
            Trigger::Schedule { cron, tz, .. } => {
                if let Err(e) = super::schedule::Schedule::parse(cron, tz.as_deref()) {
                    let field = if e.starts_with("unknown time zone") { "tz" } else { "cron" };
                    out.push((e, at(field)));
                }
            }
            Trigger::Keyword { words, .. } if words.is_empty() => {
                out.push(("a keyword trigger needs words".into(), at("words")))
            }
            Trigger::Command { name, .. } | Trigger::ThreadSummary { command: name, .. }
                if !(name.starts_with('/') || name.starts_with('!')) || name.len() < 2 =>
            {
                out.push((
                    format!("command `{name}` must start with / or !"),
                    at(if t.key() == "command" { "name" } else { "command" }),
                ))
            }
            Trigger::ThreadSummary {
                every: Some(n @ 0..2),
                ..
            } => out.push((
                format!("thread_summary `every: {n}` must be at least 2 replies"),
                at("every"),
            )),
            _ => {}
        }
    }
    for (i, c) in b.scope.channels.iter().enumerate() {
        if !c.contains('/') {
            out.push((
                format!("scope channel `{c}` must be `workspace/channel`"),
                format!("scope/channels/{i}"),
            ));
        }
    }
    out
}

/// The bot `name` as `dir/NAME.yaml` defines it, or, when no file does, a bot of that name
/// with the default prompts.
pub fn load_named(dir: &Path, name: &str) -> Result<BotSpec> {
    if !valid_name(name) {
        return Err(crate::error::Error::usage(format!(
            "invalid bot name `{name}`: {}",
            crate::users::accounts::USERNAME_RULES
        ))
        .into());
    }
    let path = dir.join(format!("{name}.yaml"));
    if path.is_file() {
        let text = crate::yaml::read_file(&path).map_err(|e| {
            crate::error::Error::usage(format!("cannot read {}: {e}", path.display()))
        })?;
        let spec: BotSpec = crate::yaml::from_str(&text)
            .map_err(|e| crate::error::Error::usage(format!("invalid {}: {e}", path.display())))?;
        if spec.name == name {
            return Ok(spec);
        }
    }
    Ok(BotSpec::named(name))
}
