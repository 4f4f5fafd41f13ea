//! What a bot does with a message, decided without IO: its triggers compiled ([`Bot`]),
//! matched against a message as the dispatcher reads it ([`Message`]), and the [`Reply`]
//! it would post.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::schedule::Schedule;
use super::spec::{BotSpec, Trigger};
use crate::error::{Error, Result};

/// A bot ready to run: its definition, its user, and its compiled triggers.
#[derive(Debug, Clone)]
pub struct Bot {
    pub spec: BotSpec,
    pub user_id: Uuid,
    matchers: Vec<Matcher>,
    /// (schedule, post missed windows)
    pub(crate) schedules: Vec<(Schedule, bool)>,
}

#[derive(Debug, Clone)]
enum Matcher {
    Mention(Action),
    Pattern(regex::Regex, Action),
    Command(String, Action),
    ThreadSummary(String, Option<u32>),
}

/// What a trigger answers with.
#[derive(Debug, Clone)]
enum Action {
    /// A template, filled in at once.
    Template(String),
    /// The AI's suggested reply, with these instructions (else the default reply prompt).
    Ai(Option<String>),
}

impl Action {
    fn new(reply: &Option<String>, prompt: &Option<String>) -> Action {
        match (reply, prompt) {
            (Some(t), _) => Action::Template(t.clone()),
            (None, p) => Action::Ai(p.clone()),
        }
    }
}

/// Whether `text` invokes `command` (`/tldr`, `/tldr please`; not `/tldrx`).
fn invokes(text: &str, command: &str) -> bool {
    text.trim_start()
        .strip_prefix(command)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
}

impl Bot {
    pub fn new(spec: BotSpec, user_id: Uuid) -> Result<Bot> {
        let mut matchers = Vec::new();
        let mut schedules = Vec::new();
        for t in &spec.triggers {
            matchers.push(match t {
                Trigger::Schedule {
                    cron,
                    tz,
                    post_missed,
                } => {
                    let s = Schedule::parse(cron, tz.as_deref())
                        .map_err(|e| Error::usage(format!("bot `{}`: {e}", spec.name)))?;
                    schedules.push((s, *post_missed));
                    continue;
                }
                Trigger::Mention { reply, prompt } => Matcher::Mention(Action::new(reply, prompt)),
                Trigger::Keyword {
                    words,
                    reply,
                    prompt,
                } => {
                    let alt: Vec<String> = words.iter().map(|w| regex::escape(w)).collect();
                    let re = regex::Regex::new(&format!(r"(?i)\b(?:{})\b", alt.join("|")))
                        .map_err(|e| Error::usage(format!("bot `{}`: {e}", spec.name)))?;
                    Matcher::Pattern(re, Action::new(reply, prompt))
                }
                Trigger::Regex {
                    pattern,
                    reply,
                    prompt,
                } => Matcher::Pattern(
                    regex::Regex::new(pattern)
                        .map_err(|e| Error::usage(format!("bot `{}`: {e}", spec.name)))?,
                    Action::new(reply, prompt),
                ),
                Trigger::Command {
                    name,
                    reply,
                    prompt,
                } => Matcher::Command(name.clone(), Action::new(reply, prompt)),
                Trigger::ThreadSummary { command, every } => {
                    Matcher::ThreadSummary(command.clone(), *every)
                }
            });
        }
        Ok(Bot {
            spec,
            user_id,
            matchers,
            schedules,
        })
    }

    /// What this bot would post for `m`, if anything.
    pub fn decide(&self, m: &Message) -> Option<Reply> {
        if m.imported || m.user_id == self.user_id || (m.author_is_bot && !self.spec.reply_to_bots)
        {
            return None;
        }
        if !self.in_scope(m) {
            return None;
        }
        let mentioned =
            m.mentions.contains(&self.user_id) || m.text.contains(&format!("@{}", self.spec.name));
        let thread_id = m.parent_id.unwrap_or(m.id);
        for matcher in &self.matchers {
            let action = match matcher {
                Matcher::Mention(action) if mentioned => action,
                Matcher::Pattern(re, action) if re.is_match(&m.text) => action,
                Matcher::Command(name, action) if invokes(&m.text, name) => action,
                Matcher::ThreadSummary(command, every)
                    if invokes(&m.text, command)
                        || every.is_some_and(|n| {
                            m.thread_position
                                .is_some_and(|p| p > 0 && p % i64::from(n) == 0)
                        }) =>
                {
                    return Some(Reply {
                        text: String::new(),
                        thread_id,
                        kind: ReplyKind::ThreadSummary,
                        prompt: None,
                    });
                }
                _ => continue,
            };
            let template = match action {
                Action::Template(t) => t,
                Action::Ai(prompt) => {
                    return Some(Reply {
                        text: String::new(),
                        thread_id,
                        kind: ReplyKind::Ai,
                        prompt: prompt.clone(),
                    });
                }
            };
            let text = template
                .replace("{user}", &m.author)
                .replace("{bot}", &self.spec.name)
                .replace("{text}", &m.text);
            return Some(Reply {
                text,
                thread_id,
                kind: ReplyKind::Template,
                prompt: None,
            });
        }
        None
    }

    /// Whether deciding needs each reply's position in its thread (`thread_summary.every`).
    pub(crate) fn needs_thread_position(&self) -> bool {
        self.matchers
            .iter()
            .any(|m| matches!(m, Matcher::ThreadSummary(_, Some(_))))
    }

    pub(crate) fn in_scope(&self, m: &Message) -> bool {
        self.covers(&m.workspace, m.channel_name.as_deref())
    }

    /// Whether the bot's scope takes in this workspace's channel (a DM has no name).
    pub(crate) fn covers(&self, workspace: &str, channel: Option<&str>) -> bool {
        let s = &self.spec.scope;
        (s.workspaces.is_empty() && s.channels.is_empty())
            || s.workspaces.iter().any(|w| w == workspace)
            || channel.is_some_and(|c| s.channels.contains(&format!("{workspace}/{c}")))
    }
}

/// A message as the dispatcher sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Message {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub user_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub text: String,
    #[sqlx(json)]
    pub mentions: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub author: String,
    pub author_is_bot: bool,
    pub workspace: String,
    pub channel_name: Option<String>,
    /// For a reply: how many replies its thread has up to and including it (read only when
    /// a bot needs it).
    pub thread_position: Option<i64>,
    /// Brought in by an import (`message.imported`): history, never answered.
    pub imported: bool,
}

/// What a bot posts: text, in a thread.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reply {
    /// Empty until written, for a summary or an AI reply.
    pub text: String,
    pub thread_id: Uuid,
    pub kind: ReplyKind,
    /// An AI reply's instructions (the trigger's `prompt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// How a reply's text is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// The trigger's template, filled in.
    Template,
    /// A summary of the thread, written when the message is claimed.
    ThreadSummary,
    /// The AI's suggested reply, written when the message is claimed.
    Ai,
}

/// What `bot` would post for `text` in `workspace/#channel`, by a human author, without a
/// database (`bots test`).
pub fn dry_run(
    spec: &BotSpec,
    workspace: &str,
    channel: &str,
    text: &str,
) -> Result<Option<Reply>> {
    let bot = Bot::new(spec.clone(), Uuid::from_u128(1))?;
    let m = Message {
        id: Uuid::from_u128(2),
        channel_id: Uuid::from_u128(3),
        user_id: Uuid::from_u128(4),
        parent_id: None,
        text: text.to_owned(),
        mentions: Vec::new(),
        created_at: Utc::now(),
        author: "you".into(),
        author_is_bot: false,
        workspace: workspace.to_owned(),
        channel_name: Some(channel.to_owned()),
        thread_position: None,
        imported: false,
    };
    Ok(bot.decide(&m).map(|mut r| {
        match r.kind {
            ReplyKind::ThreadSummary => r.text = "(a summary of this message's thread)".into(),
            ReplyKind::Ai => {
                r.text = "(the AI's suggested reply, from the channel's recent messages)".into()
            }
            ReplyKind::Template => {}
        }
        r
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bots::spec::Scope;

    fn bot(triggers: Vec<Trigger>) -> Bot {
        let mut spec = BotSpec::named("helpbot");
        spec.triggers = triggers;
        Bot::new(spec, Uuid::from_u128(1)).unwrap()
    }

    fn message(text: &str) -> Message {
        Message {
            id: Uuid::from_u128(10),
            channel_id: Uuid::from_u128(20),
            user_id: Uuid::from_u128(30),
            parent_id: None,
            text: text.into(),
            mentions: Vec::new(),
            created_at: Utc::now(),
            author: "ada".into(),
            author_is_bot: false,
            workspace: "acme".into(),
            channel_name: Some("general".into()),
            thread_position: None,
            imported: false,
        }
    }

    fn template(reply: &str) -> Option<String> {
        Some(reply.into())
    }

    #[test]
    fn a_command_is_its_word_and_not_a_longer_one() {
        assert!(invokes("/tldr", "/tldr"));
        assert!(invokes("  /tldr please", "/tldr"));
        assert!(!invokes("/tldrx", "/tldr"));
        assert!(!invokes("say /tldr", "/tldr"));
    }

    #[test]
    fn a_template_is_filled_in_and_answers_in_the_thread() {
        let b = bot(vec![Trigger::Keyword {
            words: vec!["deploy".into()],
            reply: template("{user}: {bot} saw `{text}`"),
            prompt: None,
        }]);
        let mut m = message("When do we DEPLOY?");
        m.parent_id = Some(Uuid::from_u128(99));
        let r = b.decide(&m).unwrap();
        assert_eq!(r.kind, ReplyKind::Template);
        assert_eq!(r.text, "ada: helpbot saw `When do we DEPLOY?`");
        assert_eq!(r.thread_id, Uuid::from_u128(99));
        // Whole words only.
        assert!(b.decide(&message("redeployment")).is_none());
    }

    #[test]
    fn a_mention_without_a_template_asks_the_ai_with_the_prompt() {
        let b = bot(vec![Trigger::Mention {
            reply: None,
            prompt: Some("be brief".into()),
        }]);
        assert!(b.decide(&message("no one called")).is_none());
        let r = b.decide(&message("@helpbot how?")).unwrap();
        assert_eq!(
            (r.kind, r.prompt.as_deref()),
            (ReplyKind::Ai, Some("be brief"))
        );
        let mut m = message("how?");
        m.mentions = vec![b.user_id];
        assert_eq!(b.decide(&m).unwrap().thread_id, m.id);
    }

    #[test]
    fn the_bot_never_answers_itself_nor_other_bots_unless_asked() {
        let mut b = bot(vec![Trigger::Regex {
            pattern: "help".into(),
            reply: template("here"),
            prompt: None,
        }]);
        let mut own = message("help");
        own.user_id = b.user_id;
        assert!(b.decide(&own).is_none());
        let mut other = message("help");
        other.author_is_bot = true;
        assert!(b.decide(&other).is_none());
        b.spec.reply_to_bots = true;
        assert!(b.decide(&other).is_some());
    }

    #[test]
    fn outside_its_scope_the_bot_is_silent() {
        let mut b = bot(vec![Trigger::Command {
            name: "!help".into(),
            reply: template("here"),
            prompt: None,
        }]);
        b.spec.scope = Scope {
            workspaces: vec![],
            channels: vec!["acme/support".into()],
        };
        assert!(b.decide(&message("!help")).is_none());
        let mut m = message("!help");
        m.channel_name = Some("support".into());
        assert!(b.decide(&m).is_some());
        // A direct message has no channel name: only a workspace scope takes it in.
        m.channel_name = None;
        assert!(b.decide(&m).is_none());
    }

    #[test]
    fn a_thread_summary_comes_on_its_command_and_every_n_replies() {
        let b = bot(vec![Trigger::ThreadSummary {
            command: "/tldr".into(),
            every: Some(10),
        }]);
        assert!(b.needs_thread_position());
        let r = b.decide(&message("/tldr")).unwrap();
        assert_eq!(r.kind, ReplyKind::ThreadSummary);
        let mut m = message("ok");
        m.parent_id = Some(Uuid::from_u128(5));
        for (position, expected) in [(9, false), (10, true), (20, true), (0, false)] {
            m.thread_position = Some(position);
            assert_eq!(b.decide(&m).is_some(), expected, "at reply {position}");
        }
    }

    #[test]
    fn the_first_matching_trigger_wins_and_bad_patterns_are_refused() {
        let b = bot(vec![
            Trigger::Command {
                name: "/deploy".into(),
                reply: template("first"),
                prompt: None,
            },
            Trigger::Keyword {
                words: vec!["deploy".into()],
                reply: template("second"),
                prompt: None,
            },
        ]);
        assert_eq!(b.decide(&message("/deploy now")).unwrap().text, "first");
        let mut spec = BotSpec::named("bad");
        spec.triggers = vec![Trigger::Regex {
            pattern: "(".into(),
            reply: None,
            prompt: None,
        }];
        assert!(Bot::new(spec, Uuid::nil()).is_err());
    }
}
