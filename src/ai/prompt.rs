//! What is sent to a model: prompt templates (overridable per bot), the transcript a
//! conversation is written as, token counting and splitting to fit the context, and the
//! redaction of emails, phone numbers and tokens before anything leaves.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Message;

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "persona",
    "bot",
    "channel",
    "transcript",
    "author",
    "question",
    "related",
];

/// The prompt templates. Each is text with `{placeholder}`s; a bot's YAML overrides any of
/// them under `prompts:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prompts {
    /// The system message of every request. `{persona}` is the bot's `persona`.
    pub system: String,
    /// A channel digest of one part of a window, answered in JSON.
    pub digest: String,
    /// Merging the partial digests of a long window into one, answered in JSON.
    pub reduce: String,
    /// A thread summary, answered in plain text.
    pub thread_summary: String,
    /// A suggested reply to `{question}` by `{author}`, answered in plain text.
    pub reply: String,
}

const DIGEST_JSON: &str = r#"Answer with one JSON object and nothing else, of this shape:
{"highlights": [{"ref": "m3", "text": "..."}], "threads": [{"ref": "m1", "text": "..."}],
 "decisions": [...], "open_questions": [...], "action_items": [...]}
Each item cites, in "ref", the one message it comes from (the m-number at the start of its
line, never invented) and says in "text", in one short sentence, what matters in it.
"threads" cite the first message of the main threads. Leave a list empty when there is
nothing for it. At most 8 highlights and 5 items in every other list."#;

impl Default for Prompts {
    fn default() -> Self {
        Prompts {
            system: "{persona}\nYou work in the team chat channel #{channel}. Messages are \
                     written as `m<N> @author [time] (reply to m<K>): text`. Use only what the \
                     messages say; name people as @username."
                .into(),
            digest: format!(
                "Write the digest of this part of #{{channel}}: the highlights, the main \
                 threads, the decisions taken, the questions left open and the action items.\n\
                 {DIGEST_JSON}\n\nMessages:\n{{transcript}}"
            ),
            reduce: format!(
                "These are partial digests of consecutive parts of #{{channel}}, each item \
                 citing its message. Merge them into the digest of the whole: keep what \
                 matters most, merge repeats, keep each item's ref.\n{DIGEST_JSON}\n\n\
                 Partial digests:\n{{transcript}}"
            ),
            thread_summary: "Summarize this thread in at most five sentences of plain text: \
                             what it is about, what was decided or is still open, and who \
                             is doing what.\n\nThread:\n{transcript}"
                .into(),
            reply: "@{author} asked in #{channel}: \"{question}\"\nSuggest a short, helpful \
                    reply in plain text. When an earlier discussion answers it, point to it \
                    by its m-number.\n\nEarlier discussions:\n{related}\n\nRecent messages:\n\
                    {transcript}"
                .into(),
        }
    }
}

impl Prompts {
    /// The placeholders used in the templates that are not known, as (template, name).
    pub fn unknown_placeholders(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (name, text) in [
            ("system", &self.system),
            ("digest", &self.digest),
            ("reduce", &self.reduce),
            ("thread_summary", &self.thread_summary),
            ("reply", &self.reply),
        ] {
            for p in placeholders(text) {
                if !PLACEHOLDERS.contains(&p.as_str()) {
                    out.push((name, p));
                }
            }
        }
        out
    }
}

/// The `{name}`s in a template (`{` followed by a word and `}`; JSON braces are not names).
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        rest = &rest[i + 1..];
        if let Some(j) = rest.find('}') {
            let name = &rest[..j];
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// Fills a template's placeholders; the ones not given are left empty.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let name_end = after.find('}');
        match name_end.map(|j| &after[..j]) {
            Some(name) if PLACEHOLDERS.contains(&name) => {
                let value = values
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map_or("", |(_, v)| *v);
                out.push_str(value);
                rest = &after[name.len() + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A conservative count of the tokens `text` takes: one per three bytes, plus one. Every
/// OpenAI tokenizer averages about four bytes of English per token, and the llama-family ones
/// about 3.5, so this over-counts (the split leaves room rather than overflowing the context).
/// The server's own count, reported after each call, is what the budget is charged.
pub fn tokens(text: &str) -> usize {
    text.len().div_ceil(3) + 1
}

/// The short reference of the `i`-th message in a transcript (`m1`, `m2`, ...): short for the
/// model, mapped back to the real id by [`Transcript::id`].
pub fn reference(i: usize) -> String {
    format!("m{}", i + 1)
}

/// A conversation written for a model: one line a message, `m<N> @author [HH:MM] (reply to
/// m<K>): text`, redacted if asked.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub lines: Vec<String>,
    ids: Vec<String>,
    /// The window position of the first message (a part of a window read as a stream).
    offset: usize,
}

impl Transcript {
    pub fn new(messages: &[Message], redact_text: bool) -> Transcript {
        Transcript::part(messages, 0, redact_text)
    }

    /// The transcript of a part of a window that starts at the window's `offset`-th message:
    /// its references go on from the parts before (`m2001`), so they name one message of
    /// the window whichever part they come from.
    pub fn part(messages: &[Message], offset: usize, redact_text: bool) -> Transcript {
        let index: std::collections::HashMap<&str, usize> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.as_str(), i))
            .collect();
        let lines = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let reply_to = m
                    .parent
                    .as_deref()
                    .and_then(|p| index.get(p))
                    .map(|&k| format!(" (reply to {})", reference(offset + k)))
                    .unwrap_or_default();
                let text = m.text.split_whitespace().collect::<Vec<_>>().join(" ");
                let text = if redact_text { redact(&text) } else { text };
                format!(
                    "{} @{} [{}]{reply_to}: {text}",
                    reference(offset + i),
                    m.author,
                    m.created_at.format("%H:%M")
                )
            })
            .collect();
        Transcript {
            lines,
            ids: messages.iter().map(|m| m.id.clone()).collect(),
            offset,
        }
    }

    /// The message id a reference (`m3`) stands for, if it names one.
    pub fn id(&self, reference: &str) -> Option<&str> {
        let n: usize = reference.trim().trim_start_matches('m').parse().ok()?;
        self.ids
            .get(n.checked_sub(1)?.checked_sub(self.offset)?)
            .map(String::as_str)
    }

    /// Splits the lines into consecutive parts of at most `limit` tokens each. A line longer
    /// than `limit` is cut into pieces that each fit (marked `(part i/n)`), so nothing is
    /// dropped.
    pub fn chunks(&self, limit: usize) -> Vec<String> {
        let limit = limit.max(16);
        let mut out: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut used = 0;
        for line in &self.lines {
            for piece in pieces(line, limit) {
                let t = tokens(&piece);
                if used + t > limit && !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                    used = 0;
                }
                current.push_str(&piece);
                current.push('\n');
                used += t;
            }
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }
}

/// `line` whole when it fits in `limit` tokens, else cut on character boundaries into pieces
/// that do, each after the first repeating the line's reference.
fn pieces(line: &str, limit: usize) -> Vec<String> {
    if tokens(line) <= limit {
        return vec![line.to_owned()];
    }
    let reference = line.split(' ').next().unwrap_or("");
    // Room for the "m12 (part 10/10): " prefix.
    let max_bytes = (limit.saturating_sub(12)).max(4) * 3;
    let mut parts: Vec<&str> = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let mut end = rest.len().min(max_bytes);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        // Cut between words when there is a space in the second half.
        if end < rest.len()
            && let Some(space) = rest[..end].rfind(' ').filter(|&s| s > end / 2)
        {
            end = space + 1;
        }
        parts.push(&rest[..end]);
        rest = &rest[end..];
    }
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            if i == 0 {
                format!("{p} (part 1/{n})")
            } else {
                format!("{reference} (part {}/{n}): {p}", i + 1)
            }
        })
        .collect()
}

/// `text` with emails, phone numbers and secrets (API keys, JWTs, Slack, GitHub and AWS
/// tokens, long random strings) replaced by `[email]`, `[phone]` and `[token]`.
pub fn redact(text: &str) -> String {
    use std::sync::LazyLock;
    static TOKEN: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r"\b(?:sk-[A-Za-z0-9_-]{16,}|xox[abposr]-[A-Za-z0-9-]{10,}|gh[pousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})|[A-Za-z0-9_+/=-]{32,}",
        )
        .expect("token pattern")
    });
    static EMAIL: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
            .expect("email pattern")
    });
    static PHONE: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?:\+|\b)\d(?:[\d\s().-]{6,18})\d\b").expect("phone pattern")
    });
    let text = TOKEN.replace_all(text, |c: &regex::Captures<'_>| {
        let m = &c[0];
        // A long run of one kind of character (a path, a word, a number) is not a secret.
        let mixed = m.chars().any(|c| c.is_ascii_digit()) && m.chars().any(|c| c.is_alphabetic());
        if m.len() < 32 || mixed || m.starts_with("eyJ") {
            "[token]".to_owned()
        } else {
            m.to_owned()
        }
    });
    let text = EMAIL.replace_all(&text, "[email]");
    PHONE
        .replace_all(&text, |c: &regex::Captures<'_>| {
            let m = &c[0];
            let digits = m.chars().filter(char::is_ascii_digit).count();
            let date_or_time = regex_is_date(m);
            if (9..=15).contains(&digits) && !date_or_time {
                "[phone]".to_owned()
            } else {
                m.to_owned()
            }
        })
        .into_owned()
}

/// Dates (`2026-11-23`), times and version-like dotted numbers are not phone numbers.
fn regex_is_date(s: &str) -> bool {
    let t = s.trim();
    let seps: Vec<char> = t.chars().filter(|c| !c.is_ascii_digit()).collect();
    let dotted = !seps.is_empty() && seps.iter().all(|&c| c == '.' || c == ':');
    let iso = t.len() >= 10
        && t.as_bytes()[4] == b'-'
        && t.as_bytes()[7] == b'-'
        && t[..4].chars().all(|c| c.is_ascii_digit());
    dotted || iso
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_emails_phones_and_tokens_but_not_ordinary_text() {
        let text = "mail jane.doe+ops@example.co.uk or call +1 (415) 555-0134, key \
                    sk-proj-abcdefghijklmnop1234 and eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXh5 \
                    slack xoxb-123456789012-abcdefghij; release 2026-11-23, v1.2.3, build 20261123, \
                    at 10:30, see /usr/lib/postgresql/16/bin and issue #4521";
        let out = redact(text);
        assert!(
            out.contains("mail [email] or call [phone], key [token] and [token]"),
            "{out}"
        );
        assert!(out.contains("slack [token];"), "{out}");
        for kept in [
            "2026-11-23",
            "v1.2.3",
            "build 20261123",
            "10:30",
            "/usr/lib/postgresql/16/bin",
            "#4521",
        ] {
            assert!(out.contains(kept), "`{kept}` was redacted: {out}");
        }
        assert!(!out.contains("example") && !out.contains("555") && !out.contains("sk-"));
    }

    #[test]
    fn render_fills_known_placeholders_and_leaves_json_braces() {
        let t = "{persona} in #{channel}: {\"ref\": \"m1\"} {unknown}";
        assert_eq!(
            render(t, &[("persona", "Bob"), ("channel", "ops")]),
            "Bob in #ops: {\"ref\": \"m1\"} {unknown}"
        );
        let mut p = Prompts::default();
        assert!(p.unknown_placeholders().is_empty());
        p.reply = "{question} {oops}".into();
        assert_eq!(p.unknown_placeholders(), vec![("reply", "oops".to_owned())]);
    }

    #[test]
    fn chunks_fit_the_limit_and_keep_every_line() {
        let t0 = chrono::DateTime::<chrono::Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let mut messages: Vec<Message> = (0..50)
            .map(|i| Message::line(format!("id{i}"), "ann", &format!("message number {i}"), t0))
            .collect();
        messages.push(Message::line("long", "bob", &"word ".repeat(400), t0));
        let tr = Transcript::new(&messages, false);
        let chunks = tr.chunks(100);
        assert!(chunks.len() > 3);
        for c in &chunks {
            assert!(tokens(c) <= 100 + c.lines().count(), "chunk over the limit");
        }
        let all = chunks.concat();
        for i in 0..50 {
            assert!(all.contains(&format!("message number {i}\n")));
        }
        // The long message is cut into parts, none lost.
        assert_eq!(all.matches("word").count(), 400);
        assert!(all.contains("m51 (part 2/"));
        assert_eq!(tr.id("m51"), Some("long"));
        assert_eq!(tr.id("m52"), None);
        assert_eq!(tr.id("m0"), None);
    }
}
