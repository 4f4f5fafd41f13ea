//! The offline digest of a window of any size, in one pass over its messages and in bounded
//! memory: [`DigestBuilder`].
//!
//! A window of up to [`PART`] messages is ranked whole, exactly as [`offline::digest`] always
//! ranked it. A longer one is ranked part by part, as Slack's recaps summarize each hour and
//! then the hours: each part's best messages (its highlights and its decision, question and
//! action candidates) go on to a pool, which is ranked again when it outgrows a part, and
//! whose ranking at the end is the digest. Counting (participants, threads) is done on every
//! message as it passes. Time grows with the window, memory with a part and the pool (and
//! the people and threads counted), never with the window.
//!
//! [`offline::digest`]: super::offline::digest

use std::collections::{HashMap, HashSet};

use super::Message;
use super::offline::{
    self, ACTION, Cited, Counts, DECISION, Digest, Participant, Thread, budget, clip,
    clip_sentence, has_any, readable,
};

/// How many messages are ranked at once.
pub const PART: usize = 2_000;

/// How many highlight candidates a part sends on to the pool.
const KEEP: usize = 24;

/// How many items a digest lists in each section.
const SECTION: usize = 5;

/// Participants and threads, counted as messages pass. Compact, because a long window has
/// many threads (175,000 in a million seeded messages): ids as 128-bit keys, root texts in
/// one buffer, participants as indexes.
#[derive(Debug, Default)]
struct Tally {
    messages: usize,
    /// Name → (messages, order of first appearance, which is also its index in `names`).
    participants: HashMap<String, (usize, usize)>,
    names: Vec<String>,
    /// Root → its thread so far.
    threads: HashMap<u128, ThreadTally>,
    /// Roots known to draw replies (`Message::replies`) and not replied to yet in the
    /// window, for threads whose root has left the current part by the time a reply comes.
    roots: HashMap<u128, Root>,
    /// The roots' texts (cut to 120 characters), one after another.
    text: String,
    /// The ids that are not UUIDs (written back as they were), by key.
    odd_ids: HashMap<u128, String>,
}

/// A thread's root: its author (an index in `Tally::names`) and its text in `Tally::text`.
#[derive(Debug, Clone, Copy)]
struct Root {
    author: u32,
    at: u32,
    len: u32,
}

#[derive(Debug)]
struct ThreadTally {
    first: u32,
    replies: u32,
    root: Option<Root>,
    /// Indexes in `Tally::names`, in order of first reply.
    participants: Vec<u32>,
}

impl Tally {
    /// The key of a message id: the UUID itself, else a 128-bit hash (the id kept aside).
    fn key(&mut self, id: &str) -> u128 {
        if id.len() == 36
            && !id.bytes().any(|b| b.is_ascii_uppercase())
            && let Ok(u) = uuid::Uuid::try_parse(id)
        {
            return u.as_u128();
        }
        use std::hash::{Hash as _, Hasher as _};
        let half = |salt: u8| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            salt.hash(&mut h);
            id.hash(&mut h);
            h.finish()
        };
        let k = (u128::from(half(1)) << 64) | u128::from(half(2));
        self.odd_ids.entry(k).or_insert_with(|| id.to_owned());
        k
    }

    fn id(&self, key: u128) -> String {
        match self.odd_ids.get(&key) {
            Some(id) => id.clone(),
            None => uuid::Uuid::from_u128(key).to_string(),
        }
    }

    /// The author's index, counting the message.
    fn person(&mut self, name: &str) -> u32 {
        let n = self.participants.len();
        let who = match self.participants.get_mut(name) {
            Some(p) => {
                p.0 += 1;
                p.1
            }
            None => {
                self.participants.insert(name.to_owned(), (1, n));
                self.names.push(name.to_owned());
                n
            }
        };
        who as u32
    }

    fn root(&mut self, m: &Message) -> Root {
        let author = self.participants.get(&m.author).map_or(0, |p| p.1) as u32;
        let at = self.text.len() as u32;
        self.text.push_str(&clip(&m.text, 120));
        Root {
            author,
            at,
            len: self.text.len() as u32 - at,
        }
    }

    fn add(&mut self, m: &Message, part: &[Message], index: &HashMap<String, usize>) {
        let who = self.person(&m.author);
        if m.parent.is_none() && m.replies > 0 {
            let key = self.key(&m.id);
            let root = self.root(m);
            self.roots.insert(key, root);
        }
        if let Some(parent) = m.parent.as_deref() {
            let key = self.key(parent);
            if !self.threads.contains_key(&key) {
                let root = match self.roots.remove(&key) {
                    Some(r) => Some(r),
                    None => index.get(parent).map(|&i| self.root(&part[i])),
                };
                let first = self.threads.len() as u32;
                self.threads.insert(
                    key,
                    ThreadTally {
                        first,
                        replies: 0,
                        root,
                        participants: Vec::new(),
                    },
                );
            }
            let t = self.threads.get_mut(&key).expect("inserted above");
            t.replies += 1;
            if !t.participants.contains(&who) {
                t.participants.push(who);
            }
        }
        self.messages += 1;
    }

    /// Most active first (ties: who came first); the `threads` threads with most replies
    /// first (ties: the one replied to first).
    fn counts(self, threads: usize) -> Counts {
        let mut people: Vec<(String, (usize, usize))> = self
            .participants
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        people.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
        let mut top: Vec<(&u128, &ThreadTally)> = self.threads.iter().collect();
        let order = |a: &(&u128, &ThreadTally), b: &(&u128, &ThreadTally)| {
            b.1.replies
                .cmp(&a.1.replies)
                .then(a.1.first.cmp(&b.1.first))
        };
        if top.len() > threads && threads > 0 {
            top.select_nth_unstable_by(threads - 1, order);
        }
        top.truncate(threads);
        top.sort_by(order);
        Counts {
            messages: self.messages,
            threads: top
                .into_iter()
                .map(|(&key, t)| {
                    let (author, text) = match t.root {
                        Some(r) => (
                            self.names[r.author as usize].clone(),
                            self.text[r.at as usize..(r.at + r.len) as usize].to_owned(),
                        ),
                        None => (String::new(), String::new()),
                    };
                    Thread {
                        id: self.id(key),
                        author,
                        text,
                        replies: t.replies as usize,
                        participants: t
                            .participants
                            .iter()
                            .map(|&i| self.names[i as usize].clone())
                            .collect(),
                    }
                })
                .collect(),
            participants: people
                .into_iter()
                .map(|(name, (messages, _))| Participant { name, messages })
                .collect(),
        }
    }
}

/// Questions sent on to the pool whose answer may still come.
#[derive(Debug, Default)]
struct Pending {
    /// A reply in the question's own thread (or to it) by someone else answers it.
    by_thread: HashMap<String, Vec<(String, String)>>,
    /// A top-level question is answered by any later top-level message of someone else.
    top_level: Vec<(String, String)>,
}

/// A digest built one message at a time, oldest first.
#[derive(Debug, Default)]
pub struct DigestBuilder {
    tally: Tally,
    part: Vec<Message>,
    /// The current part's messages by id (a reply's root, while it is still here).
    index: HashMap<String, usize>,
    pool: Vec<Message>,
    /// Whether any part was ranked (the window is longer than one part).
    split: bool,
    answered: HashSet<String>,
    pending: Pending,
}

impl DigestBuilder {
    pub fn new() -> DigestBuilder {
        DigestBuilder::default()
    }

    /// Adds the next message of the window.
    pub fn push(&mut self, m: Message) {
        self.tally.add(&m, &self.part, &self.index);
        self.answer_pending(&m);
        self.index.insert(m.id.clone(), self.part.len());
        self.part.push(m);
        if self.part.len() == PART {
            self.rank_part();
        }
    }

    /// How many messages were pushed.
    pub fn len(&self) -> usize {
        self.tally.messages
    }

    pub fn is_empty(&self) -> bool {
        self.tally.messages == 0
    }

    /// The digest of every message pushed.
    pub fn finish(mut self) -> Digest {
        if !self.split {
            let counts = std::mem::take(&mut self.tally).counts(SECTION);
            return whole(&self.part, counts);
        }
        self.rank_part();
        let counts = std::mem::take(&mut self.tally).counts(SECTION);
        let answered = std::mem::take(&mut self.answered);
        let pool = std::mem::take(&mut self.pool);
        assemble(&pool, counts, &|i| answered.contains(&pool[i].id))
    }

    /// Sends the current part's best messages on to the pool, and ranks the pool again when
    /// it outgrows a part.
    fn rank_part(&mut self) {
        self.split = true;
        let part = std::mem::take(&mut self.part);
        self.index.clear();
        let answered = answered_in(&part);
        let chosen = candidates(&part, &|i| answered[i]);
        for i in chosen {
            let m = &part[i];
            if m.text.contains('?') {
                if answered[i] {
                    self.answered.insert(m.id.clone());
                } else {
                    self.wait_for_answer(m);
                }
            }
            self.pool.push(m.clone());
        }
        if self.pool.len() > PART {
            let pool = std::mem::take(&mut self.pool);
            let answered = &self.answered;
            let chosen = candidates(&pool, &|i| answered.contains(&pool[i].id));
            self.pool = chosen.into_iter().map(|i| pool[i].clone()).collect();
        }
    }

    fn wait_for_answer(&mut self, q: &Message) {
        let entry = (q.id.clone(), q.author.clone());
        match &q.parent {
            Some(p) => self
                .pending
                .by_thread
                .entry(p.clone())
                .or_default()
                .push(entry.clone()),
            None => self.pending.top_level.push(entry.clone()),
        }
        self.pending
            .by_thread
            .entry(q.id.clone())
            .or_default()
            .push(entry);
    }

    /// Marks the questions `m` answers.
    fn answer_pending(&mut self, m: &Message) {
        let waiting = match &m.parent {
            Some(p) => self.pending.by_thread.get_mut(p),
            None => Some(&mut self.pending.top_level),
        };
        if let Some(waiting) = waiting {
            waiting.retain(|(id, author)| {
                if *author == m.author {
                    return true;
                }
                self.answered.insert(id.clone());
                false
            });
        }
    }
}

/// Whether each message of `part` is answered later in it: a reply to it, or a later
/// message of its thread (the channel's top level for a top-level message) by someone else.
/// One pass from the end, keeping for each thread two of the people who write in it later
/// (enough to know whether anyone but the asker does).
fn answered_in(part: &[Message]) -> Vec<bool> {
    let mut later: HashMap<Option<&str>, [Option<&str>; 2]> = HashMap::new();
    let mut answered = vec![false; part.len()];
    for (i, m) in part.iter().enumerate().rev() {
        let someone_else = |thread: Option<&str>| {
            later
                .get(&thread)
                .is_some_and(|people| people.iter().flatten().any(|p| *p != m.author))
        };
        answered[i] = someone_else(Some(m.id.as_str())) || someone_else(m.parent.as_deref());
        let people = later.entry(m.parent.as_deref()).or_insert([None, None]);
        match people {
            [None, _] => people[0] = Some(&m.author),
            [Some(first), None] if *first != m.author => people[1] = Some(&m.author),
            _ => {}
        }
    }
    answered
}

/// The indexes (in order) of `part`'s messages that go on: the best by score, and the best
/// decisions, open questions and action items.
fn candidates(part: &[Message], answered: &dyn Fn(usize) -> bool) -> Vec<usize> {
    let s = offline::scores(part);
    let mut keep: HashSet<usize> = HashSet::new();
    keep.extend(best(part, &s, &|_| true, KEEP));
    keep.extend(best(
        part,
        &s,
        &|i| has_any(&part[i].text, DECISION),
        SECTION,
    ));
    keep.extend(best(part, &s, &|i| has_any(&part[i].text, ACTION), SECTION));
    keep.extend(best(
        part,
        &s,
        &|i| part[i].text.contains('?') && !answered(i),
        SECTION,
    ));
    let mut keep: Vec<usize> = keep.into_iter().collect();
    keep.sort_unstable();
    keep
}

/// The `n` best of `messages` passing `filter` (score above 0), best first; ties to the
/// earlier.
fn best(messages: &[Message], s: &[f64], filter: &dyn Fn(usize) -> bool, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..messages.len())
        .filter(|&i| s[i] > 0.0 && filter(i))
        .collect();
    v.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
    v.truncate(n);
    v
}

/// The digest of a window ranked whole.
fn whole(messages: &[Message], counts: Counts) -> Digest {
    let answered = answered_in(messages);
    assemble(messages, counts, &|i| answered[i])
}

/// The digest: its sections from `messages` (the window, or the pool of a long one), its
/// counts from the whole window.
fn assemble(messages: &[Message], counts: Counts, answered: &dyn Fn(usize) -> bool) -> Digest {
    let s = offline::scores(messages);
    let cite = |i: usize| Cited {
        id: messages[i].id.clone(),
        author: messages[i].author.clone(),
        text: clip_sentence(&messages[i].text, 200),
    };
    // The same words twice (a bot's canned answer, a pasted line) are listed once.
    let section = |filter: &dyn Fn(usize) -> bool, n: usize| {
        let mut seen = HashSet::new();
        let mut v: Vec<usize> = best(messages, &s, filter, usize::MAX)
            .into_iter()
            .filter(|&i| seen.insert(offline::topic_words(unaddressed(&messages[i].text))))
            .take(n)
            .collect();
        v.sort_unstable();
        v.into_iter().map(cite).collect::<Vec<_>>()
    };
    let Counts {
        messages: total,
        participants,
        mut threads,
    } = counts;
    threads.truncate(SECTION);
    Digest {
        messages: total,
        participants,
        threads,
        decisions: section(&|i| has_any(&messages[i].text, DECISION), SECTION),
        open_questions: section(&|i| messages[i].text.contains('?') && !answered(i), SECTION),
        action_items: section(&|i| has_any(&messages[i].text, ACTION), SECTION),
        // Highlights a person reads: whole thoughts, not a word or a filler line.
        highlights: section(&|i| readable(&messages[i].text), budget(total)),
    }
}

/// Participants and threads counted as messages stream by, with nothing else kept (a model
/// engine writes the rest). A thread's root text is known when the root said it draws
/// replies (`Message::replies`).
#[derive(Debug, Default)]
pub struct Counter(Tally);

impl Counter {
    pub fn add(&mut self, m: &Message) {
        self.0.add(m, &[], &HashMap::new());
    }

    pub fn messages(&self) -> usize {
        self.0.messages
    }

    /// Every thread, most replies first.
    pub fn counts(self) -> Counts {
        self.0.counts(usize::MAX)
    }
}

/// `text` without the name it is addressed to (`ann: `, `ann, `), as chat answers start.
fn unaddressed(text: &str) -> &str {
    let t = text.trim_start();
    match t.split_once(' ') {
        Some((first, rest))
            if first.len() > 1 && (first.ends_with(':') || first.ends_with(',')) =>
        {
            rest
        }
        _ => t,
    }
}

/// The [`Counts`] of `messages`, in one pass.
pub fn counts(messages: &[Message]) -> Counts {
    let mut tally = Tally::default();
    let mut index = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        tally.add(m, messages, &index);
        index.insert(m.id.clone(), i);
    }
    tally.counts(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window of three parts and a half: filler, with a decision, a question answered two
    /// parts later, one never answered (in a thread nobody else writes in again), and a thread whose root is long gone when its
    /// replies come.
    #[test]
    fn a_long_window_is_ranked_part_by_part_and_keeps_what_spans_the_parts() {
        let t0 = chrono::DateTime::<chrono::Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let n = 3 * PART + PART / 2;
        let mut messages: Vec<Message> = (0..n)
            .map(|i| {
                let who = ["ann", "bob", "cyd", "dan"][i % 4];
                let text = ["ok", "lol", "sure thing", "nice one"][i % 4];
                Message::line(
                    format!("id{i}"),
                    who,
                    text,
                    t0 + chrono::Duration::seconds(i as i64),
                )
            })
            .collect();
        messages[10].text = "Should we move the database migration to Friday night?".into();
        messages[10].author = "ann".into();
        messages[10].parent = Some("id40".into());
        messages[20].text = "Who owns the flaky billing export job these days?".into();
        messages[20].author = "bob".into();
        // Asked in a thread nobody else writes in again: open.
        messages[20].parent = Some("id30".into());
        messages[100].text = "The release train leaves Tuesday with the new billing export".into();
        messages[100].replies = 2;
        messages[PART + 5].text =
            "Agreed: we decided to move the database migration to Friday".into();
        messages[PART + 5].author = "cyd".into();
        for (k, i) in [2 * PART + 1, 2 * PART + 2].into_iter().enumerate() {
            messages[i].parent = Some("id100".into());
            messages[i].text = format!("reply {k} about the release train and billing");
        }
        // An answer to the first question, in its thread, two parts later.
        messages[2 * PART + 50].parent = Some("id40".into());
        messages[2 * PART + 50].author = "dan".into();

        let mut b = DigestBuilder::new();
        for m in messages.iter().cloned() {
            b.push(m);
        }
        let d = b.finish();
        assert_eq!(d.messages, n);
        assert_eq!(
            d.participants.iter().map(|p| p.messages).sum::<usize>(),
            n,
            "every message counted"
        );
        let ids = |c: &[Cited]| c.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert!(
            ids(&d.decisions).contains(&format!("id{}", PART + 5)),
            "{d:#?}"
        );
        assert!(
            ids(&d.open_questions).contains(&"id20".to_owned()),
            "{d:#?}"
        );
        assert!(
            !ids(&d.open_questions).contains(&"id10".to_owned()),
            "answered two parts later: {d:#?}"
        );
        let thread = d
            .threads
            .iter()
            .find(|t| t.id == "id100")
            .expect("the thread");
        assert_eq!(thread.replies, 2);
        assert!(thread.text.starts_with("The release train"), "{thread:?}");
        assert!(
            d.highlights.iter().all(|h| readable(&h.text)),
            "no filler among the highlights: {:?}",
            d.highlights
        );
    }

    /// The one-pass answer finder says what the definition says, on every message of a
    /// conversation of threads, top-level lines and people answering themselves.
    #[test]
    fn answered_in_one_pass_is_the_definition() {
        let t0 = chrono::DateTime::<chrono::Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let m: Vec<Message> = (0..400)
            .map(|i| {
                let mut m =
                    Message::line(format!("{i}"), ["a", "b", "c"][(i * 7 / 5) % 3], "x?", t0);
                if i % 3 != 0 {
                    m.parent = Some(format!("{}", (i / 3) * 3 - (i / 7) % 2 * 3));
                }
                m
            })
            .collect();
        let definition = |i: usize| {
            let q = &m[i];
            m[i + 1..].iter().any(|o| {
                o.author != q.author
                    && (o.parent.as_deref() == Some(q.id.as_str()) || o.parent == q.parent)
            })
        };
        let fast = answered_in(&m);
        assert!(fast.iter().any(|a| *a) && fast.iter().any(|a| !*a));
        for (i, got) in fast.into_iter().enumerate() {
            assert_eq!(got, definition(i), "message {i}");
        }
    }
}
