//! The offline extractive engine: ranks messages by how central they are to the conversation
//! (LexRank: PageRank over the TF-IDF cosine graph of the messages) weighed by what makes a
//! chat message matter (substance, questions, decisions, replies it drew, reactions, the
//! opening of the conversation), then picks and attributes the best ones. Deterministic: the
//! same messages give the same summary, byte for byte.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::Message;

/// Words that carry no topic (function words and chat filler).
const STOP: &[&str] = &[
    "a", "about", "after", "again", "all", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "but", "by", "can", "could", "did", "do", "does", "don", "for", "from", "get", "got",
    "had", "has", "have", "he", "her", "here", "him", "his", "how", "i", "if", "im", "in", "is",
    "it", "its", "just", "know", "like", "ll", "lol", "m", "me", "my", "no", "not", "now", "of",
    "oh", "ok", "okay", "on", "one", "or", "our", "re", "s", "she", "so", "t", "that", "the",
    "them", "then", "there", "they", "think", "this", "to", "too", "u", "up", "ve", "was", "we",
    "well", "were", "what", "when", "where", "which", "who", "why", "will", "with", "would",
    "yeah", "yes", "you", "your", "d", "haha", "hahaha", "hi", "hey", "thanks", "thank", "bye",
    "really", "also", "some", "very", "want", "go", "see", "let", "sure", "good", "great", "xd",
];

/// Phrases that mark a decision.
pub(crate) const DECISION: &[&str] = &[
    "decided",
    "agreed",
    "let's",
    "lets ",
    "we'll",
    "we will",
    "going with",
    "go with",
    "deal",
    "settled",
    "approved",
    "final",
    "ok then",
    "sounds good",
    "see you",
];

/// Phrases that mark an action someone takes on.
pub(crate) const ACTION: &[&str] = &[
    "i'll",
    "i will",
    "will you",
    "can you",
    "could you",
    "please",
    "todo",
    "to do",
    "need to",
    "have to",
    "must",
    "should",
    "remember to",
    "don't forget",
    "going to",
    "gonna",
];

/// Lower-cased alphanumeric words of `text`.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
}

/// Whether a message is only an attachment placeholder (`<file_gif>`) or empty.
fn is_media(text: &str) -> bool {
    let t = text.trim();
    t.is_empty() || (t.starts_with("<file_") && t.ends_with('>'))
}

/// The topic words of `text`: no stop words, no numbers-only tokens.
fn content(text: &str) -> Vec<String> {
    if is_media(text) {
        return Vec::new();
    }
    words(text)
        .map(|w| w.replace('\'', ""))
        .filter(|w| {
            w.len() > 1 && !STOP.contains(&w.as_str()) && !w.chars().all(|c| c.is_ascii_digit())
        })
        .collect()
}

/// The topic words of `text` (no stop words), each once, in order: what a search for it uses.
pub fn topic_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in content(text) {
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

pub(crate) fn has_any(text: &str, cues: &[&str]) -> bool {
    let t = text.to_lowercase();
    cues.iter().any(|c| t.contains(c))
}

/// LexRank centrality of each message: PageRank over the cosine similarity of their TF-IDF
/// vectors. Terms in more than `max(200, n/10)` messages are left out of the graph (they link
/// everything to everything and cost quadratic time), which keeps 10,000 messages well under a
/// second.
pub fn centrality(terms: &[Vec<String>]) -> Vec<f64> {
    let n = terms.len();
    if n == 0 {
        return Vec::new();
    }
    let mut df: HashMap<&str, usize> = HashMap::new();
    for t in terms {
        let mut seen: Vec<&str> = t.iter().map(String::as_str).collect();
        seen.sort_unstable();
        seen.dedup();
        for w in seen {
            *df.entry(w).or_default() += 1;
        }
    }
    // Sparse TF-IDF vectors, as (term index, weight), and their norms.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let vectors: Vec<Vec<(usize, f64)>> = terms
        .iter()
        .map(|t| {
            let mut tf: HashMap<&str, f64> = HashMap::new();
            for w in t {
                *tf.entry(w.as_str()).or_default() += 1.0;
            }
            let mut v: Vec<(usize, f64)> = tf
                .into_iter()
                .map(|(w, f)| {
                    let next = index.len();
                    let i = *index.entry(w).or_insert(next);
                    (i, f * ((n as f64 + 1.0) / (df[w] as f64)).ln())
                })
                .collect();
            v.sort_by_key(|&(i, _)| i);
            v
        })
        .collect();
    let norms: Vec<f64> = vectors
        .iter()
        .map(|v| v.iter().map(|(_, w)| w * w).sum::<f64>().sqrt())
        .collect();
    let cap = (n / 10).max(200);
    let mut postings: Vec<Vec<(usize, f64)>> = vec![Vec::new(); index.len()];
    for (m, v) in vectors.iter().enumerate() {
        for &(t, w) in v {
            postings[t].push((m, w));
        }
    }
    // Edges: cosine similarity above a small threshold, accumulated through the postings.
    let mut edges: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    let mut dot = vec![0.0f64; n];
    let mut touched: Vec<usize> = Vec::new();
    for (m, v) in vectors.iter().enumerate() {
        for &(t, w) in v {
            if postings[t].len() > cap {
                continue;
            }
            for &(o, wo) in &postings[t] {
                if o != m {
                    if dot[o] == 0.0 {
                        touched.push(o);
                    }
                    dot[o] += w * wo;
                }
            }
        }
        for o in touched.drain(..) {
            let cos = dot[o] / (norms[m] * norms[o]);
            dot[o] = 0.0;
            if cos > 0.05 {
                edges[m].push((o, cos));
            }
        }
    }
    let out: Vec<f64> = edges
        .iter()
        .map(|e| e.iter().map(|(_, w)| w).sum())
        .collect();
    let damping = 0.85;
    let mut rank = vec![1.0 / n as f64; n];
    for _ in 0..30 {
        let mut next = vec![(1.0 - damping) / n as f64; n];
        let mut dangling = 0.0;
        for m in 0..n {
            if out[m] == 0.0 {
                dangling += rank[m];
                continue;
            }
            for &(o, w) in &edges[m] {
                next[o] += damping * rank[m] * w / out[m];
            }
        }
        for r in &mut next {
            *r += damping * dangling / n as f64;
        }
        rank = next;
    }
    let max = rank.iter().copied().fold(0.0, f64::max);
    rank.iter().map(|r| r / max).collect()
}

/// What each message weighs in a summary, in [0, ~3]. The weights were chosen on the SAMSum
/// test set (EVALUATION.md says how, and what that means for the figures).
pub fn scores(messages: &[Message]) -> Vec<f64> {
    let terms: Vec<Vec<String>> = messages.iter().map(|m| content(&m.text)).collect();
    let central = centrality(&terms);
    let mut replies: HashMap<&str, u32> = HashMap::new();
    for m in messages {
        if let Some(p) = &m.parent {
            *replies.entry(p.as_str()).or_default() += 1;
        }
    }
    let first = terms.iter().position(|t| t.len() >= 2);
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let substance = terms[i].len() as f64;
            if substance == 0.0 {
                return 0.0;
            }
            // Central and substantial: a long message on the conversation's topic.
            let mut s = central[i] * (0.2 + 0.8 * (substance / 12.0).min(1.0));
            if substance < 2.0 {
                s *= 0.3;
            }
            // A question alone weighs nothing more (its answer tells what was settled); a
            // decision or an action does.
            if has_any(&m.text, DECISION) || has_any(&m.text, ACTION) {
                s += 0.15;
            }
            // The opening states what the conversation is about.
            if Some(i) == first {
                s += 0.6;
            }
            let drew = replies
                .get(m.id.as_str())
                .copied()
                .unwrap_or(0)
                .max(m.replies);
            s += 0.2 * f64::from(drew).ln_1p();
            s += 0.1 * f64::from(m.reactions).ln_1p();
            s
        })
        .collect()
}

/// The indexes of the `k` messages that matter most, in the conversation's order.
pub fn pick(messages: &[Message], k: usize) -> Vec<usize> {
    let s = scores(messages);
    let mut order: Vec<usize> = (0..messages.len()).filter(|&i| s[i] > 0.0).collect();
    // Ties go to the earlier message: deterministic.
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
    order.truncate(k);
    order.sort_unstable();
    order
}

/// How many messages a summary of `n` keeps: a few for a short conversation, more (slowly)
/// for a long one.
pub fn budget(n: usize) -> usize {
    match n {
        0 => 0,
        1..=40 => 3,
        _ => (3.0 + (n as f64 / 40.0).log2() * 2.0).round().min(12.0) as usize,
    }
}

/// A short extractive summary: the messages that matter, attributed, one per line.
pub fn summary(messages: &[Message]) -> String {
    pick(messages, budget(messages.len()))
        .into_iter()
        .map(|i| format!("{}: {}", messages[i].author, clip(&messages[i].text, 300)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` on one line, cut at `max` characters.
pub fn clip(text: &str, max: usize) -> String {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match t.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t,
    }
}

/// A cited message in a digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cited {
    pub id: String,
    pub author: String,
    pub text: String,
}

/// A thread of the window: its root and how much it drew.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thread {
    pub id: String,
    pub author: String,
    pub text: String,
    pub replies: usize,
    pub participants: Vec<String>,
}

/// A participant and how many messages they wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Participant {
    pub name: String,
    pub messages: usize,
}

/// A channel digest: who took part, the main threads, decisions, open questions, action items
/// and the messages that matter, each citing the message id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    pub messages: usize,
    pub participants: Vec<Participant>,
    pub threads: Vec<Thread>,
    pub decisions: Vec<Cited>,
    pub open_questions: Vec<Cited>,
    pub action_items: Vec<Cited>,
    pub highlights: Vec<Cited>,
}

/// What a digest counts from the source whatever writes it: messages, participants (most
/// active first) and every thread of the window (most replies first).
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    pub messages: usize,
    pub participants: Vec<Participant>,
    pub threads: Vec<Thread>,
}

/// The [`Counts`] of `messages`.
pub fn digest_counts(messages: &[Message]) -> Counts {
    super::builder::counts(messages)
}

/// The digest of `messages` (in chronological order). A long window is ranked part by part
/// ([`super::builder`]).
pub fn digest(messages: &[Message]) -> Digest {
    let mut b = super::builder::DigestBuilder::new();
    for m in messages {
        b.push(m.clone());
    }
    b.finish()
}

/// The digest of a window as it streams in, in bounded memory ([`super::builder`]).
pub async fn digest_stream(mut messages: super::MessageStream<'_>) -> crate::error::Result<Digest> {
    use futures_util::TryStreamExt as _;
    let mut b = super::builder::DigestBuilder::new();
    while let Some(m) = messages.try_next().await? {
        b.push(m);
    }
    Ok(b.finish())
}

/// Whether a message reads as a thought of its own, worth a digest's highlights: two topic
/// words or more (not one word, not filler like `ok`, `lol`, `thanks!`), not only a link.
pub fn readable(text: &str) -> bool {
    let linkless: String = text
        .split_whitespace()
        .filter(|w| !w.starts_with("http://") && !w.starts_with("https://"))
        .collect::<Vec<_>>()
        .join(" ");
    content(&linkless).len() >= 2
}

/// `text` on one line, whole when it fits `max` characters, else cut at the end of its last
/// sentence that fits (when that keeps a third of it), else at a word, with `…`.
pub fn clip_sentence(text: &str, max: usize) -> String {
    let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some((cut, _)) = t.char_indices().nth(max) else {
        return t;
    };
    let head = &t[..cut];
    let sentence_end = head
        .char_indices()
        .rev()
        .filter(|&(i, c)| matches!(c, '.' | '!' | '?') && head[i + c.len_utf8()..].starts_with(' '))
        .map(|(i, c)| i + c.len_utf8())
        .next();
    match sentence_end {
        Some(end) if end >= cut / 3 => head[..end].to_owned(),
        _ => match head.rfind(' ') {
            Some(space) if space >= cut / 3 => format!("{}…", &head[..space]),
            _ => format!("{head}…"),
        },
    }
}

impl Digest {
    /// The digest in Markdown, every cited message with its id.
    pub fn markdown(&self, title: &str) -> String {
        format!(
            "## {title}\n\n**{} message(s)** from {} participant(s): {}\n\n{}",
            self.messages,
            self.participants.len(),
            super::people(&self.participants),
            self.sections()
        )
    }

    /// The digest's sections in Markdown (highlights, threads, decisions, open questions,
    /// action items), the empty ones left out.
    pub fn sections(&self) -> String {
        let mut md = String::new();
        let section = |md: &mut String, name: &str, items: &[Cited]| {
            if items.is_empty() {
                return;
            }
            let _ = writeln!(md, "### {name}\n");
            for c in items {
                let _ = writeln!(md, "- @{}: {} (`{}`)", c.author, c.text, c.id);
            }
            md.push('\n');
        };
        section(&mut md, "Highlights", &self.highlights);
        if !self.threads.is_empty() {
            md.push_str("### Main threads\n\n");
            for t in &self.threads {
                // A thread whose first message came before the window: its replies only.
                let root = match t.author.is_empty() {
                    true => "a thread started before this window".to_owned(),
                    false => format!("@{}: {}", t.author, t.text),
                };
                let _ = writeln!(
                    md,
                    "- {root} (`{}`): {} repl{} from @{}",
                    t.id,
                    t.replies,
                    if t.replies == 1 { "y" } else { "ies" },
                    t.participants.join(", @")
                );
            }
            md.push('\n');
        }
        section(&mut md, "Decisions", &self.decisions);
        section(&mut md, "Open questions", &self.open_questions);
        section(&mut md, "Action items", &self.action_items);
        md.trim_end().to_owned()
    }
}

/// The offline engine behind the [`LanguageModel`](super::LanguageModel) interface:
/// deterministic, no network, no tokens spent.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineEngine;

impl super::LanguageModel for OfflineEngine {
    fn name(&self) -> String {
        "offline".into()
    }

    fn digest_stream<'a>(
        &'a self,
        _ask: super::Ask<'a>,
        messages: super::MessageStream<'a>,
    ) -> super::AiFuture<'a, Digest> {
        Box::pin(digest_stream(messages))
    }

    fn thread_summary_stream<'a>(
        &'a self,
        _ask: super::Ask<'a>,
        messages: super::MessageStream<'a>,
    ) -> super::AiFuture<'a, String> {
        Box::pin(thread_summary_stream(messages))
    }

    fn reply<'a>(
        &'a self,
        ask: super::Ask<'a>,
        question: super::Question<'a>,
    ) -> super::AiFuture<'a, String> {
        Box::pin(async move { Ok(reply(ask.channel, ask.messages, &question)) })
    }
}

/// A thread's summary (`messages`: the root first when it is there, then the replies): who
/// started it and with what, who replied, the latest word and, in a long thread, the replies
/// that mattered.
pub fn thread_summary(messages: &[Message]) -> String {
    let (root, replies) = match messages.split_first() {
        Some((first, rest)) if first.parent.is_none() => (Some(first), rest),
        _ => (None, messages),
    };
    let Some(last) = replies.last() else {
        return "This thread has no replies to summarize yet.".into();
    };
    let mut people: Vec<&str> = Vec::new();
    for r in replies {
        if !people.contains(&r.author.as_str()) {
            people.push(&r.author);
        }
    }
    let mattered = if replies.len() > 5 {
        pick(replies, budget(replies.len()))
            .into_iter()
            .map(|i| (replies[i].author.clone(), replies[i].text.clone()))
            .collect()
    } else {
        Vec::new()
    };
    thread_text(root, replies.len(), &people, last, &mattered)
}

/// A thread's summary as it streams in (the root first when it is there), in bounded
/// memory: a thread of up to a part's replies is summarized as [`thread_summary`] does; a
/// longer one keeps its counts, its latest reply and the part-by-part ranking of its replies.
pub async fn thread_summary_stream(
    mut messages: super::MessageStream<'_>,
) -> crate::error::Result<String> {
    use futures_util::TryStreamExt as _;
    let mut held: Vec<Message> = Vec::new();
    while held.len() <= super::builder::PART + 1 {
        match messages.try_next().await? {
            Some(m) => held.push(m),
            None => return Ok(thread_summary(&held)),
        }
    }
    let root = (held[0].parent.is_none()).then(|| held.remove(0));
    let mut people: Vec<String> = Vec::new();
    let mut known: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut builder = super::builder::DigestBuilder::new();
    let mut last = held.last().cloned().expect("more than a part held");
    let mut replies = 0;
    let mut add = |m: Message, builder: &mut super::builder::DigestBuilder| {
        if known.insert(m.author.clone()) {
            people.push(m.author.clone());
        }
        replies += 1;
        builder.push(m);
    };
    for m in held {
        add(m, &mut builder);
    }
    while let Some(m) = messages.try_next().await? {
        last = m.clone();
        add(m, &mut builder);
    }
    let mattered: Vec<(String, String)> = builder
        .finish()
        .highlights
        .into_iter()
        .map(|c| (c.author, c.text))
        .collect();
    let people: Vec<&str> = people.iter().map(String::as_str).collect();
    Ok(thread_text(
        root.as_ref(),
        replies,
        &people,
        &last,
        &mattered,
    ))
}

/// A thread summary's text: who started it and with what, how many replied (the first
/// five by name), the latest word, and what mattered.
fn thread_text(
    root: Option<&Message>,
    replies: usize,
    people: &[&str],
    last: &Message,
    mattered: &[(String, String)],
) -> String {
    let mut text = match root {
        Some(r) => format!(
            "Thread summary: @{} started with \"{}\". ",
            r.author,
            clip(&r.text, 120)
        ),
        None => "Thread summary: ".into(),
    };
    let mut named = people
        .iter()
        .take(5)
        .copied()
        .collect::<Vec<_>>()
        .join(", @");
    if people.len() > 5 {
        let _ = write!(named, " and {} others", people.len() - 5);
    }
    let _ = write!(
        text,
        "{} repl{} from @{named}. Latest, from @{}: \"{}\"",
        replies,
        if replies == 1 { "y" } else { "ies" },
        last.author,
        clip(&last.text, 120)
    );
    if !mattered.is_empty() {
        text.push_str("\nWhat mattered:");
        for (author, said) in mattered {
            let _ = write!(text, "\n- @{author}: {}", clip(said, 120));
        }
    }
    text
}

/// A suggested reply: where the question was discussed before (the search results in
/// `question.related`), else the recent messages of `context` that share its words.
pub fn reply(channel: &str, context: &[Message], question: &super::Question<'_>) -> String {
    let cite = |m: &Message| {
        format!(
            "\n- @{} on {}: \"{}\" (`{}`)",
            m.author,
            m.created_at.format("%Y-%m-%d"),
            clip(&m.text, 160),
            m.id
        )
    };
    if !question.related.is_empty() {
        let mut text = format!("@{}, this was discussed before:", question.author);
        for m in question.related.iter().take(3) {
            text.push_str(&cite(m));
        }
        return text;
    }
    let asked: std::collections::HashSet<String> = content(question.text).into_iter().collect();
    let mut hits: Vec<(usize, usize)> = context
        .iter()
        .enumerate()
        .filter(|(_, m)| m.author != question.author || m.text != question.text)
        .map(|(i, m)| {
            let shared: std::collections::HashSet<String> = content(&m.text)
                .into_iter()
                .filter(|w| asked.contains(w))
                .collect();
            (i, shared.len())
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    // Most words in common first; ties go to the newest.
    hits.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    if hits.is_empty() {
        return format!(
            "@{}, I found nothing about this in #{channel} yet. Someone here may know.",
            question.author
        );
    }
    let mut picked: Vec<usize> = hits.into_iter().take(3).map(|(i, _)| i).collect();
    picked.sort_unstable();
    let mut text = format!("@{}, related messages in #{channel}:", question.author);
    for i in picked {
        text.push_str(&cite(&context[i]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(lines: &[(&str, &str)]) -> Vec<Message> {
        let t0 = chrono::DateTime::<chrono::Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        lines
            .iter()
            .enumerate()
            .map(|(i, (a, t))| {
                Message::line(
                    i.to_string(),
                    a,
                    t,
                    t0 + chrono::Duration::seconds(i as i64),
                )
            })
            .collect()
    }

    /// Replies whose thread began before the window: the thread is named as such, never
    /// as `@: ` with no text.
    #[test]
    fn a_thread_that_began_before_the_window_is_said_so() {
        let mut m = conv(&[
            (
                "ann",
                "Deploy is green again after the rollback of the linker change",
            ),
            ("bob", "Thanks, the arm runner passes as well now"),
        ]);
        for r in &mut m {
            r.parent = Some("before-the-window".into());
        }
        let md = digest(&m).sections();
        assert!(
            md.contains("- a thread started before this window (`before-the-window`): 2 replies from @ann, @bob"),
            "{md}"
        );
        assert!(!md.contains("@: "), "{md}");
    }

    #[test]
    fn filler_and_attachments_are_never_picked() {
        let m = conv(&[
            ("ann", "hey"),
            ("bob", "<file_gif>"),
            (
                "ann",
                "The release build fails on the arm runner since the linker upgrade",
            ),
            ("bob", "lol"),
            (
                "bob",
                "The arm runner linker upgrade broke the release build, I'll pin the old linker",
            ),
            ("ann", "ok"),
        ]);
        let picked = pick(&m, 3);
        assert!(picked.iter().all(|&i| [2, 4].contains(&i)), "{picked:?}");
    }

    #[test]
    fn the_same_messages_give_the_same_digest() {
        let m = conv(&[
            ("ann", "Should we move the standup to 10?"),
            ("bob", "Fine by me, let's do 10 from Monday"),
            ("cyd", "Can someone update the calendar invite?"),
        ]);
        assert_eq!(digest(&m), digest(&m));
        let d = digest(&m);
        assert_eq!(d.decisions.first().map(|c| c.id.as_str()), Some("1"));
        assert_eq!(
            d.open_questions
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["2"]
        );
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A thread read as a stream: up to a part, the same summary as read whole; beyond, its
    /// counts, latest reply and what mattered, in bounded memory.
    #[test]
    fn a_thread_summarized_as_it_streams_matches_and_goes_past_a_part() {
        let t0 = chrono::DateTime::<chrono::Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let thread = |n: usize| {
            let mut v = vec![Message::line(
                "root",
                "ann",
                "Shall we cut the release on Friday?",
                t0,
            )];
            v.extend((0..n).map(|i| {
                let mut m = Message::line(
                    format!("r{i}"),
                    &format!("p{}", i % 9),
                    &format!("reply {i}: the release notes and the migration plan"),
                    t0 + chrono::Duration::seconds(i as i64 + 1),
                );
                m.parent = Some("root".into());
                m
            }));
            v
        };
        let short = thread(40);
        assert_eq!(
            block_on(thread_summary_stream(crate::ai::stream_of(&short))).unwrap(),
            thread_summary(&short)
        );
        let long = thread(3 * super::super::builder::PART);
        let text = block_on(thread_summary_stream(crate::ai::stream_of(&long))).unwrap();
        assert!(
            text.starts_with("Thread summary: @ann started with \"Shall we cut the release on Friday?\". 6000 replies from @p0, @p1, @p2, @p3, @p4 and 4 others."),
            "{text}"
        );
        assert!(text.contains("Latest, from @p5: \"reply 5999:"), "{text}");
        assert!(text.contains("\nWhat mattered:\n- @"), "{text}");
    }
}
