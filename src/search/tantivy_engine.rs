//! Running a resolved query on the tantivy index.

use std::ops::Bound;

use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{IndexRecordOption, Value as _};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, IndexReader, Order, ReloadPolicy, Searcher, TantivyDocument, Term};
use uuid::Uuid;

use super::index::{CHANNEL, Fields, Generation, IndexDir, MESSAGE, day_number};
use super::{ChannelHit, Found, Hit, Plan, Scope, analyzer};
use crate::error::Result;

/// How long a snippet is, in characters.
const SNIPPET_CHARS: usize = 200;
/// How many channels a text query lists beside its messages.
const CHANNEL_HITS: usize = 5;

/// An open index to search.
pub struct Reader {
    pub generation: Generation,
    reader: IndexReader,
    /// Each segment's `channel` column dictionary as channel id → ordinal, read once per
    /// segment (segments never change; merged-away ones are dropped at the next search).
    channel_ords: std::sync::Mutex<ChannelOrds>,
}

/// Channel id → ordinal in a segment's `channel` column, by segment.
type ChannelOrds = std::collections::HashMap<
    tantivy::index::SegmentId,
    std::sync::Arc<std::collections::HashMap<Uuid, u64>>,
>;

impl Reader {
    pub fn open(dir: &IndexDir) -> Result<Reader> {
        let generation = dir.open_existing()?;
        let reader = generation
            .index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Reader {
            generation,
            reader,
            channel_ords: Default::default(),
        })
    }

    /// Sees the latest commit (after a sync).
    pub fn reload(&self) -> Result<()> {
        Ok(self.reader.reload()?)
    }

    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    pub fn search(&self, plan: &Plan, scope: &Scope, limit: usize) -> Result<Found> {
        let f = &self.generation.fields;
        let searcher = self.reader.searcher();
        let Some(text) = text_query(f, plan) else {
            // Words that are all stop words match nothing (as in Postgres).
            return Ok(Found {
                total: Some(0),
                ..Found::default()
            });
        };
        let ords = match scope.readable {
            Some(_) => self.channel_ords(&searcher)?,
            None => ChannelOrds::new(),
        };
        // Messages only. Channels are few: leaving them out costs a skip over their short
        // list, where requiring `kind:m` would intersect every query with all the messages.
        let mut clauses = vec![(Occur::MustNot, term(f.kind, CHANNEL))];
        if let Some(t) = &text {
            clauses.push((Occur::Must, t.box_clone()));
        }
        clauses.extend(scope_filters(f, scope, &ords));
        for (negated, id) in &plan.authors {
            clauses.push(occur(*negated, term(f.author, &id.to_string())));
        }
        for (negated, id) in &plan.mentions {
            clauses.push(occur(*negated, term(f.mentions, &id.to_string())));
        }
        for (negated, ids) in &plan.channels {
            clauses.push(occur(*negated, any_of(f.channel, ids)));
        }
        for (negated, flag) in &plan.flags {
            clauses.push(occur(*negated, term(f.flags, flag.term())));
        }
        for (negated, words) in &plan.file_words {
            let all: Vec<(Occur, Box<dyn Query>)> = words
                .iter()
                .map(|w| (Occur::Must, term(f.file_words, w)))
                .collect();
            clauses.push(occur(*negated, Box::new(BooleanQuery::new(all))));
        }
        for (negated, family) in &plan.file_types {
            clauses.push(occur(*negated, term(f.file_types, family)));
        }
        clauses.extend(date_filters(f, plan.since, plan.until));
        if !clauses.iter().any(|(o, _)| *o == Occur::Must) {
            // Only exclusions (`-word`): from all the messages.
            clauses.push(filter(term(f.kind, MESSAGE)));
        }
        let query = BooleanQuery::new(clauses);
        let limit = limit.max(1);
        let (addresses, total): (Vec<(f32, DocAddress)>, usize) = if plan.ranked() {
            searcher.search(
                &query,
                &(TopDocs::with_limit(limit).order_by_score(), Count),
            )?
        } else {
            let (top, n) = searcher.search(
                &query,
                &(
                    TopDocs::with_limit(limit)
                        .order_by_fast_field::<tantivy::DateTime>("created_at", Order::Desc),
                    Count,
                ),
            )?;
            (top.into_iter().map(|(_, a)| (0.0, a)).collect(), n)
        };
        let snippets = match &text {
            Some(t) if plan.ranked() => {
                let mut g = SnippetGenerator::create(&searcher, t.as_ref(), f.text)?;
                g.set_max_num_chars(SNIPPET_CHARS);
                Some(g)
            }
            _ => None,
        };
        let mut hits = Vec::with_capacity(addresses.len());
        for (score, address) in addresses {
            let doc: TantivyDocument = searcher.doc(address)?;
            hits.push(hit(f, &doc, score, snippets.as_ref()));
        }
        let channels = match &text {
            Some(t) if plan.ranked() && plan.query.text_only() => {
                self.channel_hits(&searcher, t.box_clone(), scope, &ords)?
            }
            _ => Vec::new(),
        };
        Ok(Found {
            hits,
            channels,
            total: Some(total as u64),
        })
    }

    /// Messages of `channel` sent before `before` (not by `exclude`) that contain any of
    /// `words`, best first: where a question was discussed before.
    pub fn related(
        &self,
        channel: Uuid,
        words: &[String],
        before: chrono::DateTime<chrono::Utc>,
        exclude: Uuid,
        limit: usize,
    ) -> Result<Vec<Uuid>> {
        let f = &self.generation.fields;
        let any: Vec<(Occur, Box<dyn Query>)> = words
            .iter()
            .flat_map(|w| analyzer::analyze(w))
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(f.text, &t.text),
                    IndexRecordOption::WithFreqs,
                ));
                (Occur::Should, q)
            })
            .collect();
        if any.is_empty() {
            return Ok(Vec::new());
        }
        let before = Term::from_field_date_for_search(
            f.created_at,
            tantivy::DateTime::from_timestamp_micros(before.timestamp_micros()),
        );
        let query = BooleanQuery::new(vec![
            filter(term(f.kind, MESSAGE)),
            filter(term(f.channel, &channel.to_string())),
            filter(Box::new(RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(before),
            ))),
            (Occur::MustNot, term(f.author, &exclude.to_string())),
            (Occur::Must, Box::new(BooleanQuery::new(any))),
        ]);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit.max(1)).order_by_score())?;
        let mut ids = Vec::with_capacity(top.len());
        for (_, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            ids.extend(id_of(&doc, f));
        }
        Ok(ids)
    }

    /// The channel ordinals of every segment `searcher` sees, read for the new ones.
    fn channel_ords(&self, searcher: &Searcher) -> Result<ChannelOrds> {
        let mut cache = self
            .channel_ords
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut seen = ChannelOrds::new();
        for segment in searcher.segment_readers() {
            let id = segment.segment_id();
            let ords = match cache.get(&id) {
                Some(o) => o.clone(),
                None => std::sync::Arc::new(read_channel_ords(segment)?),
            };
            seen.insert(id, ords);
        }
        *cache = seen.clone();
        Ok(seen)
    }

    fn channel_hits(
        &self,
        searcher: &Searcher,
        text: Box<dyn Query>,
        scope: &Scope,
        ords: &ChannelOrds,
    ) -> Result<Vec<ChannelHit>> {
        let f = &self.generation.fields;
        let mut clauses = vec![filter(term(f.kind, CHANNEL)), (Occur::Must, text)];
        clauses.extend(scope_filters(f, scope, ords));
        let top = searcher.search(
            &BooleanQuery::new(clauses),
            &TopDocs::with_limit(CHANNEL_HITS).order_by_score(),
        )?;
        let mut out = Vec::new();
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = id_of(&doc, f) {
                out.push(ChannelHit { id, score });
            }
        }
        Ok(out)
    }
}

/// Sent in `[since, until)`. Whole days (what `before:`/`after:`/`on:` give) are matched by
/// the indexed day number: one term for `on:`, a term range otherwise. A bound inside a day
/// is then checked exactly on the `created_at` column.
fn date_filters(
    f: &Fields,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> Vec<(Occur, Box<dyn Query>)> {
    if since.is_none() && until.is_none() {
        return Vec::new();
    }
    let day = |d: i64| Term::from_field_i64(f.day, d);
    let first = since.map(day_number);
    // The day after the last one `until` reaches into.
    let end = until.map(|t| day_number(t - chrono::Duration::microseconds(1)) + 1);
    let days: Box<dyn Query> = match (first, end) {
        (Some(a), Some(b)) if b == a + 1 => {
            Box::new(TermQuery::new(day(a), IndexRecordOption::Basic))
        }
        (Some(a), Some(b)) if b <= a => Box::new(tantivy::query::EmptyQuery),
        _ => Box::new(RangeQuery::new(
            first.map_or(Bound::Unbounded, |a| Bound::Included(day(a))),
            end.map_or(Bound::Unbounded, |b| Bound::Excluded(day(b))),
        )),
    };
    let mut out = vec![filter(days)];
    let midnight =
        |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros().rem_euclid(86_400_000_000) == 0;
    if !since.is_none_or(midnight) || !until.is_none_or(midnight) {
        let bound = |t: Option<chrono::DateTime<chrono::Utc>>, inclusive: bool| match t {
            None => Bound::Unbounded,
            Some(t) => {
                let v = Term::from_field_date_for_search(
                    f.created_at,
                    tantivy::DateTime::from_timestamp_micros(t.timestamp_micros()),
                );
                if inclusive {
                    Bound::Included(v)
                } else {
                    Bound::Excluded(v)
                }
            }
        };
        let exact = RangeQuery::new(bound(since, true), bound(until, false));
        out.push(filter(Box::new(exact)));
    }
    out
}

fn term(field: tantivy::schema::Field, value: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, value),
        IndexRecordOption::Basic,
    ))
}

/// Up to this many ids, a filter on any of them is a union of their postings, read lazily
/// (an intersection skips through them); beyond, one pass marks all their documents.
const LAZY_UNION: usize = 16;

fn any_of(field: tantivy::schema::Field, ids: &[Uuid]) -> Box<dyn Query> {
    let terms = ids
        .iter()
        .map(|id| Term::from_field_text(field, &id.to_string()));
    match ids.len() {
        1 => term(field, &ids[0].to_string()),
        n if n <= LAZY_UNION => Box::new(BooleanQuery::new(
            terms
                .map(|t| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(t, IndexRecordOption::Basic));
                    (Occur::Should, q)
                })
                .collect(),
        )),
        _ => Box::new(TermSetQuery::new(terms)),
    }
}

/// A clause that filters without changing the score.
fn filter(q: Box<dyn Query>) -> (Occur, Box<dyn Query>) {
    (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)))
}

fn occur(negated: bool, q: Box<dyn Query>) -> (Occur, Box<dyn Query>) {
    if negated {
        (Occur::MustNot, q)
    } else {
        filter(q)
    }
}

fn scope_filters(f: &Fields, scope: &Scope, ords: &ChannelOrds) -> Vec<(Occur, Box<dyn Query>)> {
    let mut out = Vec::new();
    if let Some(w) = scope.workspace {
        out.push(filter(term(f.workspace, &w.to_string())));
    }
    if let Some(readable) = &scope.readable {
        out.push(filter(channel_in(readable, ords)));
    }
    out
}

/// A segment's `channel` column dictionary as channel id → ordinal (one pass over its terms).
fn read_channel_ords(
    segment: &tantivy::SegmentReader,
) -> Result<std::collections::HashMap<Uuid, u64>> {
    let mut ords = std::collections::HashMap::new();
    if let Some(column) = segment.fast_fields().str(CHANNEL_FIELD)? {
        let mut terms = column.dictionary().stream()?;
        while terms.advance() {
            let id = std::str::from_utf8(terms.key())
                .ok()
                .and_then(|t| t.parse::<Uuid>().ok());
            if let Some(id) = id {
                ords.insert(id, terms.term_ord());
            }
        }
    }
    Ok(ords)
}

/// Documents of any of `channels`, decided per candidate from the `channel` column: each
/// segment marks the ordinals of `channels` (found in `ords`, the searcher's segments'
/// maps), then a document is kept when its channel's ordinal is marked. Cheap however many
/// channels a user may read (a filter on their terms reads all their postings first).
fn channel_in(channels: &[Uuid], ords: &ChannelOrds) -> Box<dyn Query> {
    use tantivy::query::doc_predicate_query::{DocPredicateQuery, FunctionPredicate};
    let channels = std::sync::Arc::new(channels.to_vec());
    let ords = std::sync::Arc::new(ords.clone());
    let predicate = FunctionPredicate::from(move |segment: &tantivy::SegmentReader| {
        let column = segment.fast_fields().str(CHANNEL_FIELD)?;
        let mut allowed = Vec::new();
        let mut doc_ords = None;
        if let Some(column) = column {
            allowed = vec![false; column.num_terms()];
            let by_id = ords.get(&segment.segment_id()).ok_or_else(|| {
                tantivy::TantivyError::InternalError(
                    "a segment outside the searcher the channel ordinals were read from".into(),
                )
            })?;
            for c in channels.iter() {
                if let Some(&ord) = by_id.get(c) {
                    allowed[ord as usize] = true;
                }
            }
            doc_ords = Some(column.ords().clone());
        }
        Ok(move |doc: tantivy::DocId| {
            doc_ords
                .as_ref()
                .and_then(|o| o.first(doc))
                .is_some_and(|ord| allowed.get(ord as usize).copied().unwrap_or(false))
        })
    });
    Box::new(DocPredicateQuery::from(predicate))
}

/// The name of the `channel` field (its fast column).
const CHANNEL_FIELD: &str = "channel";

/// The text part of the query: every word and phrase (excluded ones as MustNot). `None`
/// when there were words to match and all were stop words; `Some(None)` when the query has
/// no text at all.
fn text_query(f: &Fields, plan: &Plan) -> Option<Option<Box<dyn Query>>> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let mut wanted = false;
    for t in &plan.text {
        wanted |= !t.negated;
        let terms = analyzer::analyze(&t.text);
        if terms.is_empty() {
            continue;
        }
        let q: Box<dyn Query> = if terms.len() == 1 {
            Box::new(TermQuery::new(
                Term::from_field_text(f.text, &terms[0].text),
                IndexRecordOption::WithFreqs,
            ))
        } else if t.phrase {
            let first = terms[0].position;
            Box::new(PhraseQuery::new_with_offset(
                terms
                    .iter()
                    .map(|a| (a.position - first, Term::from_field_text(f.text, &a.text)))
                    .collect(),
            ))
        } else {
            // A word the analyzer splits (`apt-get`): all of its parts, as plainto_tsquery.
            Box::new(BooleanQuery::new(
                terms
                    .iter()
                    .map(|a| {
                        let q: Box<dyn Query> = Box::new(TermQuery::new(
                            Term::from_field_text(f.text, &a.text),
                            IndexRecordOption::WithFreqs,
                        ));
                        (Occur::Must, q)
                    })
                    .collect(),
            ))
        };
        clauses.push((
            if t.negated {
                Occur::MustNot
            } else {
                Occur::Must
            },
            q,
        ));
    }
    let positive = clauses.iter().any(|(o, _)| *o == Occur::Must);
    match (wanted, positive) {
        (true, false) => None,
        _ if clauses.is_empty() => Some(None),
        (_, false) => {
            // Only exclusions: everything but them (exclusions alone match nothing).
            clauses.push((Occur::Must, Box::new(tantivy::query::AllQuery)));
            Some(Some(Box::new(BooleanQuery::new(clauses))))
        }
        _ => Some(Some(Box::new(BooleanQuery::new(clauses)))),
    }
}

fn id_of(doc: &TantivyDocument, f: &Fields) -> Option<Uuid> {
    doc.get_first(f.id)
        .and_then(|v| v.as_bytes())
        .and_then(|b| Uuid::from_slice(b).ok())
}

fn uuid_of(doc: &TantivyDocument, field: tantivy::schema::Field) -> Option<Uuid> {
    doc.get_first(field)
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::parse_str(s).ok())
}

fn hit(f: &Fields, doc: &TantivyDocument, score: f32, snippets: Option<&SnippetGenerator>) -> Hit {
    let text = doc.get_first(f.text).and_then(|v| v.as_str()).unwrap_or("");
    let snippet = match snippets {
        Some(g) => {
            let s = g.snippet_from_doc(doc);
            if s.fragment().is_empty() {
                excerpt(text)
            } else {
                mark(s.fragment(), s.highlighted())
            }
        }
        None => excerpt(text),
    };
    Hit {
        id: id_of(doc, f).unwrap_or_default(),
        channel_id: uuid_of(doc, f.channel).unwrap_or_default(),
        author_id: uuid_of(doc, f.author).unwrap_or_default(),
        created_at: doc
            .get_first(f.created_at)
            .and_then(|v| v.as_datetime())
            .and_then(|d| chrono::DateTime::from_timestamp_micros(d.into_timestamp_micros()))
            .unwrap_or_default(),
        thread: uuid_of(doc, f.thread),
        score,
        snippet,
    }
}

/// The start of a text, cut at a character boundary.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// A fragment with its highlighted ranges between `**`.
fn mark(fragment: &str, ranges: &[std::ops::Range<usize>]) -> String {
    let mut out = String::with_capacity(fragment.len() + 4 * ranges.len());
    let mut at = 0;
    for r in ranges {
        if r.start < at || r.end > fragment.len() {
            continue;
        }
        out.push_str(&fragment[at..r.start]);
        out.push_str("**");
        out.push_str(&fragment[r.clone()]);
        out.push_str("**");
        at = r.end;
    }
    out.push_str(&fragment[at..]);
    out
}
