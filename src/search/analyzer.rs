//! The text analyzer of the index: how a message becomes terms. It follows PostgreSQL's
//! `to_tsvector('english', …)` (the `search` column of `public.chat`) so that the two engines
//! agree on what a word matches: URLs, host names, e-mail addresses, file paths and dotted
//! names (`node.js`, `v1.2.3`) stay whole, as Postgres's parser keeps them; a hyphenated word
//! is indexed whole and by its parts; words are lower-cased, Postgres's English stop words
//! dropped (their positions kept, so phrases line up), and the rest stemmed with the same
//! Snowball English stemmer.

use std::sync::{Arc, LazyLock};

use rust_stemmers::{Algorithm, Stemmer};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// The analyzer's name in the index's tokenizer manager.
pub const NAME: &str = "chat";

/// PostgreSQL's `english.stop` (the Snowball English stop word list), as its English
/// configuration applies it.
const STOP_WORDS: [&str; 127] = [
    "i",
    "me",
    "my",
    "myself",
    "we",
    "our",
    "ours",
    "ourselves",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "he",
    "him",
    "his",
    "himself",
    "she",
    "her",
    "hers",
    "herself",
    "it",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "themselves",
    "what",
    "which",
    "who",
    "whom",
    "this",
    "that",
    "these",
    "those",
    "am",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "having",
    "do",
    "does",
    "did",
    "doing",
    "a",
    "an",
    "the",
    "and",
    "but",
    "if",
    "or",
    "because",
    "as",
    "until",
    "while",
    "of",
    "at",
    "by",
    "for",
    "with",
    "about",
    "against",
    "between",
    "into",
    "through",
    "during",
    "before",
    "after",
    "above",
    "below",
    "to",
    "from",
    "up",
    "down",
    "in",
    "out",
    "on",
    "off",
    "over",
    "under",
    "again",
    "further",
    "then",
    "once",
    "here",
    "there",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "both",
    "each",
    "few",
    "more",
    "most",
    "other",
    "some",
    "such",
    "no",
    "nor",
    "not",
    "only",
    "own",
    "same",
    "so",
    "than",
    "too",
    "very",
    "s",
    "t",
    "can",
    "will",
    "just",
    "don",
    "should",
    "now",
];

/// Postgres indexes no word longer than this (in bytes).
const MAX_WORD: usize = 2047;

static STEMMER: LazyLock<Arc<Stemmer>> =
    LazyLock::new(|| Arc::new(Stemmer::create(Algorithm::English)));

/// The stop words sorted, for a binary search (a scan compared each word 127 times).
static SORTED_STOP_WORDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut words = STOP_WORDS.to_vec();
    words.sort_unstable();
    words
});

/// The longest stop word (`ourselves`, `yourselves`, `themselves`).
const LONGEST_STOP_WORD: usize = 10;

fn is_stop_word(word: &str) -> bool {
    word.len() <= LONGEST_STOP_WORD && SORTED_STOP_WORDS.binary_search(&word).is_ok()
}

/// How many stems each thread remembers: chat reuses a small vocabulary, and a lookup costs
/// less than the Snowball algorithm.
const STEM_CACHE: usize = 100_000;

thread_local! {
    static STEMS: std::cell::RefCell<std::collections::HashMap<String, String>> =
        Default::default();
}

/// The Snowball English stem of a lower-case word.
fn stem(word: String) -> String {
    STEMS.with_borrow_mut(|stems| {
        if let Some(s) = stems.get(&word) {
            return s.clone();
        }
        let s = STEMMER.stem(&word).into_owned();
        if stems.len() >= STEM_CACHE {
            stems.clear();
        }
        stems.insert(word, s.clone());
        s
    })
}

/// One analyzed term: its text, its position (stop words use positions too) and where it
/// came from in the input (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub text: String,
    pub position: usize,
    pub from: usize,
    pub to: usize,
}

/// Analyzes `text` into terms.
pub fn analyze(text: &str) -> Vec<Term> {
    let mut out = Analysis {
        terms: Vec::new(),
        position: 0,
    };
    for (start, chunk) in chunks(text) {
        out.chunk(start, chunk);
    }
    out.terms
}

struct Analysis {
    terms: Vec<Term>,
    position: usize,
}

impl Analysis {
    /// A term that is kept as it is, lower-cased (a URL, host, path, address).
    fn whole(&mut self, text: &str, from: usize, to: usize) {
        if !text.is_empty() && text.len() <= MAX_WORD {
            self.terms.push(Term {
                text: text.to_lowercase(),
                position: self.position,
                from,
                to,
            });
        }
        self.position += 1;
    }

    /// A word: lower-cased, dropped if a stop word, else stemmed.
    fn word(&mut self, text: &str, from: usize, to: usize) {
        let lower = if text.is_ascii() {
            text.to_ascii_lowercase()
        } else {
            text.to_lowercase()
        };
        if !is_stop_word(&lower) && lower.len() <= MAX_WORD {
            let stemmed = if lower.chars().any(char::is_alphabetic) {
                stem(lower)
            } else {
                lower
            };
            self.terms.push(Term {
                text: stemmed,
                position: self.position,
                from,
                to,
            });
        }
        self.position += 1;
    }

    fn chunk(&mut self, start: usize, chunk: &str) {
        if let Some(rest_at) = url_rest(chunk) {
            let rest = trim_end_punct(&chunk[rest_at..]);
            let from = start + rest_at;
            let to = from + rest.len();
            match rest.find('/') {
                Some(slash) if slash > 0 && slash + 1 < rest.len() => {
                    self.whole(rest, from, to);
                    self.whole(&rest[..slash], from, from + slash);
                    self.whole(&rest[slash..], from + slash, to);
                }
                _ => self.whole(rest.trim_end_matches('/'), from, to),
            }
            return;
        }
        let lead = chunk.len() - chunk.trim_start_matches(is_leading_punct).len();
        let core = trim_end_punct(&chunk[lead..]);
        let from = start + lead;
        if is_compound(core) {
            self.whole(core, from, from + core.len());
            return;
        }
        self.plain(from, core);
    }

    /// Words split at every character that is not a letter or digit; words joined by single
    /// hyphens are also indexed together (`apt-get` → `apt-get`, `apt`, `get`).
    fn plain(&mut self, start: usize, text: &str) {
        let runs = alnum_runs(text);
        let mut i = 0;
        while i < runs.len() {
            let mut j = i;
            while j + 1 < runs.len() && text[runs[j].1..runs[j + 1].0] == *"-" {
                j += 1;
            }
            if j > i {
                let (from, to) = (runs[i].0, runs[j].1);
                self.word(&text[from..to], start + from, start + to);
            }
            for &(from, to) in &runs[i..=j] {
                self.word(&text[from..to], start + from, start + to);
            }
            i = j + 1;
        }
    }
}

/// Runs of non-whitespace, with their byte offsets.
fn chunks(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split(char::is_whitespace)
        .filter(|c| !c.is_empty())
        .map(move |c| (c.as_ptr() as usize - text.as_ptr() as usize, c))
}

/// Byte ranges of the runs of letters and digits.
fn alnum_runs(text: &str) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, text.len()));
    }
    runs
}

/// For `scheme://rest`, where `rest` starts.
fn url_rest(chunk: &str) -> Option<usize> {
    // A byte search for `:` first: most chunks have none (cheaper than a substring search).
    let colon = chunk.bytes().position(|b| b == b':')?;
    let sep = colon + chunk[colon..].find("://")?;
    let scheme = &chunk[..sep];
    let valid = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    let rest_at = sep + 3;
    (valid && chunk[rest_at..].starts_with(char::is_alphanumeric)).then_some(rest_at)
}

fn is_leading_punct(c: char) -> bool {
    !c.is_alphanumeric() && c != '/' && c != '~'
}

fn trim_end_punct(s: &str) -> &str {
    s.trim_end_matches(|c: char| !c.is_alphanumeric())
}

/// A host, address, path or dotted name that Postgres's parser keeps as one token: letters,
/// digits and `.-_/@~` only, with a `.`, `/` or `@` inside, no `..`, and an `@` only before
/// a dotted domain.
fn is_compound(core: &str) -> bool {
    if core.is_empty()
        || !core
            .chars()
            .all(|c| c.is_alphanumeric() || ".-_/@~".contains(c))
        || core.contains("..")
    {
        return false;
    }
    if let Some(at) = core.find('@') {
        let domain = &core[at + 1..];
        return at > 0 && !domain.contains('@') && !domain.contains('/') && is_dotted(domain);
    }
    core.contains('/') || is_dotted(core)
}

/// `a.b`, `a.b.c`: every dot between letters or digits.
fn is_dotted(s: &str) -> bool {
    s.contains('.')
        && s.split('.')
            .all(|p| p.starts_with(char::is_alphanumeric) && p.ends_with(char::is_alphanumeric))
}

/// The analyzer as a tantivy tokenizer.
#[derive(Clone, Default)]
pub struct ChatTokenizer;

pub struct ChatTokenStream {
    terms: std::vec::IntoIter<Term>,
    token: Token,
}

impl Tokenizer for ChatTokenizer {
    type TokenStream<'a> = ChatTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> ChatTokenStream {
        ChatTokenStream {
            terms: analyze(text).into_iter(),
            token: Token::default(),
        }
    }
}

impl TokenStream for ChatTokenStream {
    fn advance(&mut self) -> bool {
        match self.terms.next() {
            Some(t) => {
                self.token = Token {
                    offset_from: t.from,
                    offset_to: t.to,
                    position: t.position,
                    text: t.text,
                    position_length: 1,
                };
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<(String, usize)> {
        analyze(text)
            .into_iter()
            .map(|t| (t.text, t.position))
            .collect()
    }

    fn texts(text: &str) -> Vec<String> {
        analyze(text).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn every_stop_word_is_one_and_no_longer_than_the_longest() {
        for w in STOP_WORDS {
            assert!(is_stop_word(w), "{w}");
            assert!(w.len() <= LONGEST_STOP_WORD, "{w}");
        }
        assert!(!is_stop_word("deploy") && !is_stop_word("ourselvesx"));
    }

    #[test]
    fn words_are_stemmed_and_stop_words_keep_their_positions() {
        assert_eq!(
            terms("Deploying the servers"),
            [("deploy".to_owned(), 0), ("server".to_owned(), 2)]
        );
        assert_eq!(texts("don't it's"), Vec::<String>::new());
    }

    #[test]
    fn urls_hosts_paths_and_addresses_stay_whole_as_in_postgres() {
        // What `to_tsvector('english', …)` gives for each (PostgreSQL 15).
        assert_eq!(
            texts("https://example.com/deploy/12"),
            ["example.com/deploy/12", "example.com", "/deploy/12"]
        );
        assert_eq!(texts("http://ubuntu.com."), ["ubuntu.com"]);
        assert_eq!(texts("mail ada@example.com"), ["mail", "ada@example.com"]);
        assert_eq!(texts("user@host"), ["user", "host"]);
        assert_eq!(texts("/etc/fstab and/or"), ["/etc/fstab", "and/or"]);
        assert_eq!(texts("node.js v1.2.3 e.g."), ["node.js", "v1.2.3", "e.g"]);
        assert_eq!(texts("hello...world"), ["hello", "world"]);
        assert_eq!(texts("#general @ada"), ["general", "ada"]);
    }

    #[test]
    fn hyphenated_words_are_indexed_whole_and_by_parts() {
        assert_eq!(
            terms("sudo apt-get install"),
            [
                ("sudo".to_owned(), 0),
                ("apt-get".to_owned(), 1),
                ("apt".to_owned(), 2),
                ("get".to_owned(), 3),
                ("instal".to_owned(), 4)
            ]
        );
        assert_eq!(texts("foo_bar 12:30"), ["foo", "bar", "12", "30"]);
    }

    #[test]
    fn offsets_point_into_the_original_text() {
        let text = "Ünïcode  Deploys!";
        for t in analyze(text) {
            assert!(text.is_char_boundary(t.from) && text.is_char_boundary(t.to));
        }
        let last = analyze(text).pop().unwrap();
        assert_eq!(&text[last.from..last.to], "Deploys");
    }
}
