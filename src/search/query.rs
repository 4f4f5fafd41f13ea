//! The search query language, Slack's: words, `"quoted phrases"`, `-excluded` terms, and the
//! operators `from:@user`, `in:#channel`, `mentions:@user` (or a bare `@user`), `before:`,
//! `after:` and `on:` dates (`YYYY-MM-DD`, UTC), `has:file`, `has:link`, `is:thread`, and
//! `file:NAME` / `type:FAMILY` for attached files (see [`super::files`]).
//!
//! Parsing needs no database; names are resolved to ids later. Every error names the column
//! it is about and shows the query with a caret under it.

use std::fmt;

use chrono::NaiveDate;

/// A parsed query: its clauses, all of which must hold (excluded ones must not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub clauses: Vec<Clause>,
}

/// One clause, as written at `span` (byte offsets) of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub negated: bool,
    pub term: Term,
    pub span: (usize, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Word(String),
    Phrase(String),
    /// `from:@user`: a username.
    From(String),
    /// `in:#channel`: a channel name.
    In(String),
    /// `mentions:@user` or `@user`: a username.
    Mentions(String),
    /// `before:D`: sent before day D began.
    Before(NaiveDate),
    /// `after:D`: sent after day D ended.
    After(NaiveDate),
    /// `on:D`: sent on day D.
    On(NaiveDate),
    Has(Has),
    /// `is:thread`: a thread's first message (with replies) or a reply.
    IsThread,
    /// `file:NAME`: a file whose name has NAME's words (lowercased, at least one).
    File(Vec<String>),
    /// `type:FAMILY`: a file of that family (`image`, `pdf`, …).
    Type(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Has {
    File,
    Link,
}

impl Query {
    /// Whether any clause matches on the text (words or phrases, not excluded ones).
    pub fn has_text(&self) -> bool {
        self.clauses
            .iter()
            .any(|c| !c.negated && matches!(c.term, Term::Word(_) | Term::Phrase(_)))
    }

    /// Whether the query is about text only (so channels can match it too).
    pub fn text_only(&self) -> bool {
        self.clauses
            .iter()
            .all(|c| matches!(c.term, Term::Word(_) | Term::Phrase(_)))
    }
}

/// A query that cannot be parsed: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub query: String,
    /// Byte offset of the problem in `query`.
    pub at: usize,
    /// How many bytes the caret underlines (at least 1).
    pub len: usize,
    pub reason: String,
}

impl ParseError {
    /// The column (1-based, in characters) the error points at.
    pub fn column(&self) -> usize {
        self.query[..self.at.min(self.query.len())].chars().count() + 1
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.query[self.at.min(self.query.len())..]
            .char_indices()
            .take_while(|(i, _)| *i < self.len)
            .count()
            .max(1);
        write!(
            f,
            "bad search query at column {}: {}\n  {}\n  {}{}",
            self.column(),
            self.reason,
            self.query,
            " ".repeat(self.column() - 1),
            "^".repeat(width)
        )
    }
}

impl std::error::Error for ParseError {}

const OPERATORS: &str = "from:, in:, mentions:, before:, after:, on:, has:, is:, file:, type:";

/// The longest query, in bytes: what a person types, with room to spare (a longer one is
/// a pasted document, and 20,000 words took PostgreSQL's engine past its stack depth).
pub const MAX_QUERY_BYTES: usize = 1024;
/// The most words a query may have, counting each word of a quoted phrase.
pub const MAX_QUERY_WORDS: usize = 64;

/// Parses a query.
pub fn parse(query: &str) -> Result<Query, ParseError> {
    let err = |at: usize, len: usize, reason: String| ParseError {
        query: query.to_owned(),
        at,
        len,
        reason,
    };
    if query.trim().is_empty() {
        return Err(err(0, 1, "the query is empty".to_owned()));
    }
    if query.len() > MAX_QUERY_BYTES {
        let at = (0..=MAX_QUERY_BYTES)
            .rev()
            .find(|&i| query.is_char_boundary(i))
            .unwrap_or(0);
        return Err(err(
            at,
            1,
            format!("the query is longer than {MAX_QUERY_BYTES} bytes: search for fewer words"),
        ));
    }
    let bytes = query.as_bytes();
    let mut words = 0;
    let mut clauses = Vec::new();
    let mut i = 0;
    while i < query.len() {
        let c = query[i..].chars().next().unwrap_or(' ');
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        let negated = bytes[i] == b'-' && i + 1 < query.len() && !is_space_at(query, i + 1);
        if bytes[i] == b'-' && !negated {
            return Err(err(
                i,
                1,
                "`-` excludes the word or phrase right after it, and nothing follows".to_owned(),
            ));
        }
        if negated {
            i += 1;
        }
        if bytes[i] == b'"' {
            let Some(close) = query[i + 1..].find('"') else {
                return Err(err(i, 1, "this quote is never closed".to_owned()));
            };
            let phrase = &query[i + 1..i + 1 + close];
            let end = i + close + 2;
            if phrase.trim().is_empty() {
                return Err(err(i, end - i, "the quoted phrase is empty".to_owned()));
            }
            words += phrase.split_whitespace().count();
            if words > MAX_QUERY_WORDS {
                return Err(err(start, end - start, too_many_words()));
            }
            clauses.push(Clause {
                negated,
                term: Term::Phrase(phrase.to_owned()),
                span: (start, end),
            });
            i = end;
            continue;
        }
        let end = query[i..]
            .find(char::is_whitespace)
            .map_or(query.len(), |n| i + n);
        let word = &query[i..end];
        words += 1;
        if words > MAX_QUERY_WORDS {
            return Err(err(i, end - i, too_many_words()));
        }
        if let Some(q) = word.find('"') {
            return Err(err(
                i + q,
                1,
                "a quote inside a word: put a space before a quoted phrase".to_owned(),
            ));
        }
        let term = match operator(word) {
            Some((name, value)) => {
                let value_at = i + name.len() + 1;
                operand(name, value).map_err(|reason| match reason {
                    Operand::UnknownOperator => err(
                        i,
                        name.len() + 1,
                        format!("unknown operator `{name}:` (the operators are {OPERATORS})"),
                    ),
                    Operand::Bad(reason) => err(value_at, value.len().max(1), reason),
                })?
            }
            None => match word.strip_prefix('@') {
                Some(user) if !user.is_empty() => Term::Mentions(user.to_lowercase()),
                _ => Term::Word(word.to_owned()),
            },
        };
        if negated && matches!(term, Term::Before(_) | Term::After(_) | Term::On(_)) {
            return Err(err(
                start,
                end - start,
                "a date cannot be excluded: use before: and after: for a range".to_owned(),
            ));
        }
        clauses.push(Clause {
            negated,
            term,
            span: (start, end),
        });
        i = end;
    }
    Ok(Query { clauses })
}

fn too_many_words() -> String {
    format!("the query has more than {MAX_QUERY_WORDS} words: search for fewer")
}

fn is_space_at(s: &str, i: usize) -> bool {
    s[i..].starts_with(char::is_whitespace)
}

/// `name:value` where name is a run of ASCII letters; not `http://…` and not `word:` alone.
fn operator(word: &str) -> Option<(&str, &str)> {
    let colon = word.find(':')?;
    let (name, value) = (&word[..colon], &word[colon + 1..]);
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphabetic()) || value.is_empty() {
        return None;
    }
    if value.starts_with("//") {
        return None; // a URL
    }
    Some((name, value))
}

enum Operand {
    UnknownOperator,
    Bad(String),
}

fn operand(name: &str, value: &str) -> Result<Term, Operand> {
    let name_of = |v: &str, sigil: char, what: &str| {
        let v = v.strip_prefix(sigil).unwrap_or(v);
        if v.is_empty() {
            Err(Operand::Bad(format!("{what} is missing after `{sigil}`")))
        } else {
            Ok(v.to_lowercase())
        }
    };
    Ok(match name.to_ascii_lowercase().as_str() {
        "from" => Term::From(name_of(value, '@', "a username")?),
        "in" => Term::In(name_of(value, '#', "a channel name")?),
        "mentions" => Term::Mentions(name_of(value, '@', "a username")?),
        "before" => Term::Before(date(value)?),
        "after" => Term::After(date(value)?),
        "on" | "during" => Term::On(date(value)?),
        "has" => match value.to_ascii_lowercase().as_str() {
            "file" | "files" | "attachment" => Term::Has(Has::File),
            "link" | "links" => Term::Has(Has::Link),
            _ => {
                return Err(Operand::Bad(format!(
                    "has: takes `file` or `link`, not `{value}`"
                )));
            }
        },
        "is" => match value.to_ascii_lowercase().as_str() {
            "thread" => Term::IsThread,
            _ => return Err(Operand::Bad(format!("is: takes `thread`, not `{value}`"))),
        },
        "file" => {
            let words = super::files::name_words(value);
            if words.is_empty() {
                return Err(Operand::Bad(format!(
                    "file: takes a file name with letters or digits, not `{value}`"
                )));
            }
            Term::File(words)
        }
        "type" => Term::Type(super::files::family(value).ok_or_else(|| {
            Operand::Bad(format!(
                "type: takes one of {}, not `{value}`",
                super::files::FILE_TYPES
                    .iter()
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?),
        _ => return Err(Operand::UnknownOperator),
    })
}

fn date(value: &str) -> Result<NaiveDate, Operand> {
    let bad = || Operand::Bad(format!("`{value}` is not a date: write YYYY-MM-DD"));
    if value.len() != 10 {
        return Err(bad());
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_queries_are_refused_with_the_limit() {
        let words = vec!["deploy"; MAX_QUERY_WORDS + 1].join(" ");
        let e = parse(&words).unwrap_err();
        assert!(e.reason.contains("more than 64 words"), "{e}");
        assert_eq!(e.column(), MAX_QUERY_WORDS * 7 + 1);
        let phrase = format!("\"{}\"", vec!["a"; MAX_QUERY_WORDS + 1].join(" "));
        assert!(
            parse(&phrase)
                .unwrap_err()
                .reason
                .contains("more than 64 words")
        );
        let long = "é".repeat(MAX_QUERY_BYTES);
        let e = parse(&long).unwrap_err();
        assert!(e.reason.contains("longer than 1024 bytes"), "{e}");
        assert!(e.to_string().contains('^'), "{e}");
        assert!(parse(&vec!["deploy"; MAX_QUERY_WORDS].join(" ")).is_ok());
    }

    fn terms(q: &str) -> Vec<(bool, Term)> {
        parse(q)
            .unwrap()
            .clauses
            .into_iter()
            .map(|c| (c.negated, c.term))
            .collect()
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn every_kind_of_clause() {
        assert_eq!(
            terms(
                r#"deploy "release train" -friday from:@Ada in:#general mentions:@ken @grace before:2027-01-02 after:2026-12-31 on:2027-01-01 has:file has:link is:thread -"not this" -from:linus"#
            ),
            [
                (false, Term::Word("deploy".into())),
                (false, Term::Phrase("release train".into())),
                (true, Term::Word("friday".into())),
                (false, Term::From("ada".into())),
                (false, Term::In("general".into())),
                (false, Term::Mentions("ken".into())),
                (false, Term::Mentions("grace".into())),
                (false, Term::Before(day("2027-01-02"))),
                (false, Term::After(day("2026-12-31"))),
                (false, Term::On(day("2027-01-01"))),
                (false, Term::Has(Has::File)),
                (false, Term::Has(Has::Link)),
                (false, Term::IsThread),
                (true, Term::Phrase("not this".into())),
                (true, Term::From("linus".into())),
            ]
        );
    }

    #[test]
    fn urls_times_and_trailing_colons_are_words() {
        assert_eq!(
            terms("https://example.com/x 10:30 error: a-b"),
            [
                (false, Term::Word("https://example.com/x".into())),
                (false, Term::Word("10:30".into())),
                (false, Term::Word("error:".into())),
                (false, Term::Word("a-b".into())),
            ]
        );
    }

    fn error(q: &str) -> (usize, String) {
        let e = parse(q).unwrap_err();
        (e.column(), e.reason)
    }

    #[test]
    fn errors_point_at_the_column() {
        assert_eq!(error("deploy \"friday").0, 8);
        assert!(error("deploy \"friday").1.contains("never closed"));
        let (col, reason) = error("deploy frm:@ada");
        assert_eq!(col, 8);
        assert!(reason.contains("unknown operator `frm:`"), "{reason}");
        let (col, reason) = error("x before:2027-13-01");
        assert_eq!(col, 10);
        assert!(reason.contains("not a date"), "{reason}");
        assert_eq!(error("   ").1, "the query is empty");
        assert_eq!(error("a - b").0, 3);
        assert_eq!(error("has:pdf").0, 5);
        assert_eq!(error("-on:2027-01-01").0, 1);
        assert_eq!(error("\"\"").1, "the quoted phrase is empty");
        assert_eq!(error("from:@").0, 6);
    }

    #[test]
    fn the_message_shows_the_query_and_a_caret() {
        let e = parse("ünï \"x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad search query at column 5: this quote is never closed\n  ünï \"x\n      ^"
        );
    }

    /// Every failure points inside the query, at a character, and renders.
    fn check(q: &str) {
        match parse(q) {
            Ok(parsed) => {
                for c in parsed.clauses {
                    assert!(c.span.0 < c.span.1 && c.span.1 <= q.len());
                }
            }
            Err(e) => {
                assert!(e.at <= q.len() && q.is_char_boundary(e.at), "{e:?}");
                assert!(e.to_string().contains('^'));
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn any_text_parses_or_fails_cleanly(q in proptest::prelude::any::<String>()) {
            check(&q);
            for t in crate::search::analyzer::analyze(&q) {
                assert!(q.is_char_boundary(t.from) && q.is_char_boundary(t.to) && t.from <= t.to);
            }
        }

        #[test]
        fn query_like_text_parses_or_fails_cleanly(
            parts in proptest::collection::vec(
                r#"(-|"|@|#|:|from:|in:|mentions:|before:|after:|on:|has:|is:|http://|[a-zé0-9]{1,4}|2027-0[1-9]-[0-3][0-9]| |  |é|\t)"#,
                0..14,
            )
        ) {
            check(&parts.concat());
        }
    }
}
